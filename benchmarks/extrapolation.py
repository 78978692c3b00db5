"""Extrapolation of the defaults: recall success at 1x, 10x, 100x, 1000x the training length.

For each task of a family (recall tasks of ``d3rlpy_elmur.envs.recall``, named like
``cue3-flag``, and ``tmaze``) and each training seed: build 600 expert episodes whose delays
(T-Maze: corridors) are uniform in 1..S*K-2, so the longest training episode has S*K - 1 steps
and some decisions fall inside the attention window while others need memory; train
``DiscreteELMURDTConfig`` / ``ELMURDTConfig`` with only K and S set (plus ``--set`` overrides,
so a candidate default is compared with the same command); then evaluate with
``d3rlpy_elmur.evaluate`` on episodes of m times the longest training episode (cues or goals
balanced, the same episode seeds for every model).

Lengths are episode lengths in steps: a recall episode of delay d has d + 1 steps, a T-Maze
episode of corridor L has L + 1 (the expert's; its time limit is L + 2). Success: the answer at
the flag (T-Maze: the goal) is right; for ``every`` tasks every answer of the episode is right
(``return_mean`` is then the fraction of answers right). Each row also has the success per cue
(``success_by_cue``; T-Maze: per goal side): a memory that fails loses whole cues.

Each (task, seed) cell writes ``<out>/<overrides>/<task>/seed<seed>.json`` after every length,
and its model beside it, so ``--resume`` skips what is written and evaluates missing lengths
without retraining. The dataset and evaluation episodes depend on ``--seed`` only; ``--seeds``
are training seeds (``d3rlpy.seed``: model init, and ``fit(seed=...)``: window sampling).

    python benchmarks/extrapolation.py --threads 1 --resume            # the family, 3 seeds
    python benchmarks/extrapolation.py --resume --set encoder.attention_window=0
    python benchmarks/extrapolation.py --tasks cue3-flag --seeds 0 --updates 100 \\
        --lengths 1x 10x --episodes 20 --out results/extrapolation-smoke
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import add_common_arguments, apply_overrides, emit, machine_info, parse_overrides

# a late cue (shown at a step in 0..delay // 2, so often in a later segment) is what a memory
# that stops writing after the first segment cannot hold
FAMILY = [
    "cue2-flag",
    "cue3-flag",
    "cue8-flag",
    "cue3-every",
    "cue3-flag-onehot",
    "cue3-flag-late",
    "cue8-flag-late",
    "tmaze",
]
MULTIPLES = ["1x", "10x", "100x", "1000x"]
# Shorter evaluations finish in seconds: a progress bar each would only add noise.
PROGRESS_FROM = 10_000


def overrides_slug(overrides: dict[str, Any]) -> str:
    """Folder name of a set of overrides: ``defaults`` or ``encoder.attention_window=0,...``."""
    if not overrides:
        return "defaults"
    text = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(overrides.items()))
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def episode_lengths(items: list[str], longest: int) -> list[int]:
    """``10x`` is 10 times the longest training episode; a bare number is steps."""
    lengths = []
    for item in items:
        if item.endswith("x"):
            lengths.append(round(float(item[:-1]) * longest))
        else:
            lengths.append(int(item))
        if lengths[-1] < 2:
            raise SystemExit(f"--lengths: {item} is under 2 steps")
    return lengths


# ---------------------------------------------------------------------------- tasks
class Task:
    """A task of the family: its expert dataset and its evaluation at one episode length."""

    def __init__(self, name: str) -> None:
        from d3rlpy_elmur.envs import RecallTask

        self.name = name
        self.recall = None if name == "tmaze" else RecallTask.from_name(name)

    @property
    def discrete(self) -> bool:
        return self.recall is None or self.recall.discrete

    def dataset(self, n_episodes: int, max_delay: int, seed: int, minari_root: Path) -> Any:
        """Expert episodes with delays (corridors) uniform in 1..max_delay."""
        from d3rlpy_elmur.envs import recall_dataset

        if self.recall is not None:
            return recall_dataset(self.recall, n_episodes, max_delay, seed)
        # T-Maze through the project's own recipe (Minari on disk, then our loader), cached
        from d3rlpy_elmur.datasets import load_minari, make_tmaze_dataset

        dataset_id = f"extrapolation/tmaze-c{max_delay}-n{n_episodes}-s{seed}-v0"
        path = minari_root / dataset_id
        if not (path / "data" / "metadata.json").exists():
            old = os.environ.get("MINARI_DATASETS_PATH")
            os.environ["MINARI_DATASETS_PATH"] = str(minari_root.resolve())
            try:
                path = make_tmaze_dataset(dataset_id, n_episodes, max_delay, seed, overwrite=True)
            finally:
                if old is None:
                    del os.environ["MINARI_DATASETS_PATH"]
                else:
                    os.environ["MINARI_DATASETS_PATH"] = old
        return load_minari(path)

    def evaluate(self, algo: Any, length: int, episodes: int, seed: int) -> dict[str, Any]:
        """``d3rlpy_elmur.evaluate`` on ``episodes`` balanced episodes of ``length`` steps."""
        import d3rlpy_elmur
        from d3rlpy_elmur.envs import TMazeVectorEnv, balanced_cue_options, balanced_goal_options

        n_envs = min(episodes, 100)
        options: Callable[[int, int], dict[str, Any]]
        if self.recall is None:
            venv: Any = TMazeVectorEnv(n_envs, corridor_length=length - 1)
            options = balanced_goal_options(corridor_length=length - 1)
        else:
            venv = self.recall.make_vector_env(n_envs, delay=length - 1)
            options = balanced_cue_options(self.recall.num_cues, delay=length - 1)
        return dict(
            d3rlpy_elmur.evaluate(
                algo,
                venv,
                n_episodes=episodes,
                seed=seed,
                reset_options=options,
                show_progress=length >= PROGRESS_FROM,
                per_episode=True,
            )
        )

    @property
    def num_cues(self) -> int:
        """Classes of the balanced evaluation: episode i has cue (T-Maze: goal) i % this."""
        return 2 if self.recall is None else self.recall.num_cues


# ---------------------------------------------------------------------------- one cell
def make_config(task: Task, context_size: int, num_segments: int, overrides: dict[str, Any]) -> Any:
    """The library defaults with only K and S set, plus the overrides."""
    from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig

    cls = DiscreteELMURDTConfig if task.discrete else ELMURDTConfig
    return apply_overrides(cls(context_size=context_size, num_segments=num_segments), overrides)


def train(config: Any, dataset: Any, updates: int, seed: int, device: str, progress: bool) -> Any:
    """A reproducible fit: ``fit(seed=)`` seeds the model init (built in fit) and the windows."""
    import d3rlpy

    algo = config.create(device=device)
    algo.fit(
        dataset,
        n_steps=updates,
        n_steps_per_epoch=updates,
        seed=seed,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=progress,
    )
    return algo


def write_json(path: Path, record: dict[str, Any]) -> None:
    from d3rlpy_elmur.io import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def run_cell(
    args: argparse.Namespace,
    task: Task,
    seed: int,
    overrides: dict[str, Any],
    settings: dict[str, Any],
    lengths: list[int],
    machine: dict[str, Any],
    datasets: dict[str, tuple[Any, float]],
) -> dict[str, Any]:
    """Trains (or reloads) one (task, seed) model and evaluates the lengths not yet written."""
    from d3rlpy_elmur.io import load_learnable, save_learnable

    folder = Path(args.out) / overrides_slug(overrides) / task.name
    folder.mkdir(parents=True, exist_ok=True)
    path, model_path = folder / f"seed{seed}.json", folder / f"seed{seed}.d3"
    record: dict[str, Any] | None = None
    config = make_config(task, args.context_size, args.num_segments, overrides)
    if args.resume and path.exists():
        record = json.loads(path.read_text())
        if record["settings"] != settings:  # what the model was trained on
            raise SystemExit(
                f"{path} was written with other settings ({record['settings']}); use another "
                "--out, or run without --resume to overwrite it"
            )
        # the same overrides name another model once a default changes (issue 33 changed some)
        if record["config"] != json.loads(config.serialize()):
            raise SystemExit(
                f"{path} was written with another model config (a default has changed since?); "
                "use another --out, or run without --resume to overwrite it"
            )
    # a length is done when it was evaluated on as many episodes as asked now
    done = {(r["length"], r["episodes"]) for r in record["eval"]} if record else set()
    todo = [length for length in lengths if (length, args.episodes) not in done]
    if record is not None and not todo:
        return record

    if record is not None and model_path.exists():
        algo = load_learnable(model_path, device=args.device)
    else:
        if task.name not in datasets:  # one dataset per task, for every training seed
            start = time.perf_counter()
            dataset = task.dataset(
                args.train_episodes, settings["max_delay"], args.seed, Path(args.out) / "datasets"
            )
            datasets[task.name] = (dataset, time.perf_counter() - start)
        dataset, dataset_seconds = datasets[task.name]
        start = time.perf_counter()
        algo = train(config, dataset, args.updates, seed, args.device, args.progress)
        seconds = time.perf_counter() - start
        save_learnable(algo, model_path)
        record = {
            "benchmark": "extrapolation",
            "task": task.name,
            "seed": seed,
            "overrides": overrides,
            "settings": settings,
            "device": args.device,
            "config": json.loads(algo.config.serialize()),
            "dataset_seconds": round(dataset_seconds, 2),
            "train_seconds": round(seconds, 1),
            "updates_per_second": round(args.updates / seconds, 2),
            "machine": machine,
            "eval": [],
        }
        todo = lengths
    assert record is not None
    for length in todo:
        result = task.evaluate(algo, length, args.episodes, args.seed)
        row = {
            "length": length,
            "multiple": round(length / settings["longest_episode"], 3),
            **{k: result[k] for k in ("success_rate", "return_mean", "return_std", "episodes")},
            "eval_seed": args.seed,
            "eval_seconds": round(result["seconds"], 2),
            "env_steps_per_second": round(result["env_steps_per_second"], 1),
            # memory fails by losing whole cues, which the mean alone does not show
            "success_by_cue": success_by_cue(result["episode_successes"], task.num_cues),
        }
        rows = [r for r in record["eval"] if r["length"] != length]
        record["eval"] = sorted([*rows, row], key=lambda r: r["length"])
        write_json(path, record)  # after every length: a killed run resumes at the next one
    return record


def success_by_cue(successes: list[float | None], num_cues: int) -> list[float | None]:
    """Success rate per cue of a balanced evaluation (episode i has cue i % num_cues); None
    for a cue no episode had."""
    rates: list[float | None] = []
    for cue in range(num_cues):
        episodes = successes[cue::num_cues]
        rates.append(round(sum(bool(x) for x in episodes) / len(episodes), 3) if episodes else None)
    return rates


# ---------------------------------------------------------------------------- report
def summarize(
    records: list[dict[str, Any]], tasks: list[str], lengths: list[int]
) -> list[dict[str, Any]]:
    """Mean and std over seeds of success (and return) per task and length."""
    rows = []
    for name in tasks:
        for length in lengths:
            cells = [
                row
                for record in records
                if record["task"] == name
                for row in record["eval"]
                if row["length"] == length
            ]
            success = [c["success_rate"] for c in cells if c["success_rate"] is not None]
            returns = [c["return_mean"] for c in cells]
            rows.append(
                {
                    "task": name,
                    "length": length,
                    "seeds": len(cells),
                    "success_mean": statistics.fmean(success) if success else None,
                    "success_std": statistics.pstdev(success) if success else None,
                    "return_mean": statistics.fmean(returns) if returns else None,
                }
            )
    return rows


def format_table(summary: list[dict[str, Any]], lengths: list[int], longest: int) -> str:
    """A Markdown table: one row per task, one column per length, success mean +- std."""
    head = [f"{length / longest:g}x ({length})" for length in lengths]
    lines = ["| task | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in dict.fromkeys(row["task"] for row in summary):
        cells = []
        for length in lengths:
            row = next(r for r in summary if r["task"] == name and r["length"] == length)
            if row["success_mean"] is None:
                cells.append("")
            else:
                cells.append(
                    f"{row['success_mean']:.2f} ± {row['success_std']:.2f} (n={row['seeds']})"
                )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], title: str, path: Path) -> bool:
    """Success against length (log x), one line per task; False without matplotlib."""
    from d3rlpy_elmur.extras import available, missing_message

    if not available("matplotlib"):
        warnings.warn(missing_message("the plot", "matplotlib"), stacklevel=2)
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in dict.fromkeys(row["task"] for row in summary):
        rows = [r for r in summary if r["task"] == name and r["success_mean"] is not None]
        ax.errorbar(
            [r["length"] for r in rows],
            [r["success_mean"] for r in rows],
            yerr=[r["success_std"] for r in rows],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("episode length (steps)")
    ax.set_ylabel("success (mean ± std over seeds)")
    ax.set_title(textwrap.fill(title, 90), fontsize=9)  # a long --set list wraps
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)  # --seed: dataset and evaluation episodes (not training)
    parser.add_argument("--tasks", nargs="+", default=FAMILY, help="recall task names, tmaze")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--context-size", type=int, default=10, help="K")
    parser.add_argument("--num-segments", type=int, default=3, help="S")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--train-episodes", type=int, default=600)
    parser.add_argument("--max-delay", type=int, default=None, help="default S*K - 2")
    parser.add_argument(
        "--lengths", nargs="+", default=MULTIPLES, help="10x: times the longest training episode"
    )
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per cell")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config field (repeat the flag); encoder.FIELD=VALUE sets an ELMUR encoder option",
    )
    parser.add_argument("--out", default="results/extrapolation")
    parser.add_argument("--resume", action="store_true", help="skip cells already written")
    parser.add_argument("--png", default=None, help="default <out>/<overrides>.png")
    parser.add_argument("--device", default="cpu:0")
    parser.add_argument("--progress", action="store_true", help="d3rlpy's training bars")
    args = parser.parse_args()

    from tqdm.auto import tqdm

    from d3rlpy_elmur_cli.bench.workers import configure_worker

    configure_worker(args.threads)  # torch threads; d3rlpy's info lines would drown the bars
    overrides = parse_overrides(args.set)
    tasks = [Task(name) for name in args.tasks]
    max_delay = args.max_delay or args.num_segments * args.context_size - 2
    longest = max_delay + 1
    lengths = episode_lengths(args.lengths, longest)
    settings = {
        "context_size": args.context_size,
        "num_segments": args.num_segments,
        "updates": args.updates,
        "train_episodes": args.train_episodes,
        "min_delay": 1,
        "max_delay": max_delay,
        "longest_episode": longest,
        "data_seed": args.seed,
    }
    machine = machine_info(args.threads)
    datasets: dict[str, tuple[Any, float]] = {}
    records = []
    cells = [(task, seed) for task in tasks for seed in args.seeds]
    start = time.perf_counter()
    for task, seed in tqdm(cells, desc="extrapolation", unit="cell"):
        records.append(run_cell(args, task, seed, overrides, settings, lengths, machine, datasets))
    summary = summarize(records, args.tasks, lengths)
    slug = overrides_slug(overrides)
    png = Path(args.png) if args.png else Path(args.out) / f"{slug}.png"
    title = (
        f"ELMURDT K={args.context_size}, S={args.num_segments}, {slug}, {args.updates} updates, "
        f"delays 1..{max_delay}, {len(args.seeds)} seed(s)"
    )
    drawn = plot(summary, title, png)
    result = {
        "benchmark": "extrapolation",
        "overrides": overrides,
        "settings": settings,
        "machine": machine,
        "seconds": round(time.perf_counter() - start, 1),
        "summary": summary,
        "png": str(png) if drawn else None,
        "files": [
            str(Path(args.out) / slug / r["task"] / f"seed{r['seed']}.json") for r in records
        ],
    }
    if args.json:
        emit(result, True)
    else:
        print(title)
        print(format_table(summary, lengths, longest))
        if drawn:
            print(f"plot: {png}")


if __name__ == "__main__":
    main()

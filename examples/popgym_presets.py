"""Choose the POPGym suite's presets per task: one `elmur sweep` per task and tuned algorithm.

For every task of the suite and every algorithm given a search space here, the sweep starts
from the config the suite would train on that task (its task config, else its continuous or
plain config), trains each config of the space once (training seed 0, the suite's budget) and
scores it on validation episodes (seeds from 5,000,000; the suite evaluates from 1,000,000).
Each sweep's folder (study, trial table, plot, best.yaml) goes under OUT/<task>/<config>/;
running the command again resumes where it stopped. At the end the script prints the
``task_configs`` that point the suite at the chosen configs. With ``--install CONFIGS`` it also
copies each chosen config to CONFIGS/popgym_presets/<task>/best_<config>.yaml and prints the
``task_configs`` by those names, which the suite finds in the configs folder (from the
repository: ``--install d3rlpy_elmur/data/configs``, so the presets ship in the wheel).

    python examples/popgym_presets.py --out docs/results/popgym_presets --jobs 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from d3rlpy_elmur.datasets import ensure_dataset
from d3rlpy_elmur_cli.bench.configs import config_reference, load_yaml, resolve_config_path
from d3rlpy_elmur_cli.bench.suite import is_discrete_dataset
from d3rlpy_elmur_cli.bench.suite_config import load_suite
from d3rlpy_elmur_cli.bench.sweep import run_sweep

SPACES = Path(__file__).resolve().parent / "sweeps"
# where --install puts the chosen configs, inside the configs folder
INSTALLED = "popgym_presets"
# label in the suite -> search space; BC-MLP and CQL cannot remember and are not tuned
TUNED = {
    "ELMURDT": SPACES / "popgym_sequence.yaml",
    "BC-GRU": SPACES / "popgym_sequence.yaml",
    "DT": SPACES / "popgym_dt.yaml",
}


def base_of(config: Path) -> Path:
    """The config file that ``config`` names as its ``base``."""
    return resolve_config_path(load_yaml(config.read_text())["base"], relative_to=config.parent)


def install(best: Path, target: Path) -> None:
    """Copy a sweep's ``best.yaml`` to ``target``, its ``base`` named as seen from there."""
    text = best.read_text()
    reference = config_reference(base_of(best), target.parent)
    lines = [
        f"base: {reference}" if line.startswith("base: ") else line for line in text.splitlines()
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


def sweep_start(config: str) -> str:
    """The config a task's sweep starts from: the suite's, or, once a preset chosen by this
    script is installed there, that preset's base (so the sweep and its folder stay the same)."""
    path = resolve_config_path(config)
    if INSTALLED not in path.parts:
        return config
    return str(base_of(path))


def main(argv: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Run the sweeps; returns label -> task -> the chosen config's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="popgym", help="suite name or YAML (default popgym)")
    parser.add_argument("--out", required=True, help="folder of the sweeps")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: the suite's)")
    parser.add_argument("--algorithms", nargs="+", default=list(TUNED), choices=list(TUNED))
    parser.add_argument("--trials", type=int, default=4, help="trials per sweep (default 4)")
    parser.add_argument("--episodes", type=int, default=100, help="validation episodes")
    parser.add_argument("--steps", type=int, help="training updates (default: each config's)")
    parser.add_argument("--jobs", type=int, default=1, help="trials trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument(
        "--install",
        metavar="CONFIGS",
        help="train nothing: copy the finished sweeps' chosen configs into this configs folder",
    )
    args = parser.parse_args(argv)

    import logging

    import structlog
    import torch

    torch.set_num_threads(args.threads)
    # d3rlpy's per-epoch info lines would bury the one line per trial
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    suite = load_suite(args.suite)
    entries = {entry.label: entry for entry in suite.algorithms}
    chosen: dict[str, dict[str, str]] = {}
    for task in args.tasks or suite.tasks:
        discrete = is_discrete_dataset(ensure_dataset(task, progress=False))
        for label in args.algorithms:
            config, skipped = entries[label].config_for(task, discrete)
            if skipped:
                print(f"{task}, {label}: skipped ({skipped})", flush=True)
                continue
            config = sweep_start(config)
            out = Path(args.out) / task / Path(config).stem
            best = out / "best.yaml"
            if args.install:  # trains nothing: installs what the sweeps chose
                if not best.is_file():
                    print(f"{task}, {label}: no finished sweep in {out}", flush=True)
                    continue
                # not the base config's own name: a base is looked up beside the file first
                name = f"{INSTALLED}/{task}/best_{best.parent.name}.yaml"
                install(best, Path(args.install) / name)
                chosen.setdefault(label, {})[task] = name
                continue
            print(f"{task}, {label}: sweep of {config} -> {out}", flush=True)
            summary = run_sweep(
                config,
                TUNED[label],
                out,
                args.trials,
                dataset=task,
                episodes=args.episodes,
                steps=args.steps,
                jobs=args.jobs,
                threads=args.threads,
                show_progress=False,
                log=lambda line: print(f"  {line}", flush=True),
            )
            if summary["best"] is not None:
                chosen.setdefault(label, {})[task] = str(best)
    where = "names in the configs folder" if args.install else "paths from the current folder"
    print(f"\ntask_configs chosen ({where}):")
    for label, configs in chosen.items():
        print(f"  {label}:")
        for task, path in configs.items():
            print(f"    {task}: {path}")
    return chosen


if __name__ == "__main__":
    main()

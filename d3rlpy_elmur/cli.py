"""Command line: ``elmur`` or ``python -m d3rlpy_elmur``.

One function per subcommand, wired in :func:`build_parser`: ``dataset build|list``,
``train``, ``eval``, ``bench``, ``report``, ``sweep`` and ``demo``. The work happens in
:mod:`d3rlpy_elmur.bench`; this module only parses arguments and prints. Expected errors
(a bad config, a missing dataset or model, an output that exists) are printed as one line,
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]


# ---------------------------------------------------------------- dataset build
def cmd_dataset_build(args: argparse.Namespace) -> int:
    from .datasets import build_recipe, get_recipe, open_minari
    from .datasets.writer import ELMUR_METADATA_KEY

    recipe = get_recipe(args.name)
    path = build_recipe(
        recipe,
        overwrite=args.overwrite,
        n_episodes=args.n_episodes,
        seed=args.seed,
        progress=not args.quiet,
    )
    info = open_minari(recipe.id).storage.metadata.get(ELMUR_METADATA_KEY, {})
    print(
        f"built {recipe.id} at {path}: {info.get('n_episodes')} episodes, "
        f"{info.get('total_steps')} steps, expert mean return "
        f"{info.get('expert_return_mean', float('nan')):.4f} "
        f"(expected {recipe.expected_return})"
    )
    return 0


# ---------------------------------------------------------------- dataset list
def _dataset_rows() -> dict[str, Any]:
    from minari.dataset.minari_storage import MinariStorage

    from .datasets import datasets_root, load_recipes, local_dataset_ids
    from .datasets.writer import ELMUR_METADATA_KEY

    root = datasets_root()
    rows = []
    for recipe in load_recipes().values():
        row: dict[str, Any] = {
            "name": recipe.name,
            "id": recipe.id,
            "kind": recipe.kind,
            "env": recipe.env,
            "n_episodes": recipe.n_episodes,
            "seed": recipe.seed,
            "expected_return": recipe.expected_return,
            "built": recipe.is_built,
        }
        if recipe.is_built:
            path = root / recipe.id
            row["path"] = str(path)
            try:
                meta = MinariStorage.read_raw_metadata(path / "data")
                row["built_info"] = meta.get(ELMUR_METADATA_KEY, {})
            except (ValueError, OSError) as e:  # unreadable: show, do not fail
                row["built_info"] = {"error": str(e)}
        rows.append(row)
    recipe_ids = {row["id"] for row in rows}
    others = [d for d in local_dataset_ids() if d not in recipe_ids]
    return {"root": str(root), "recipes": rows, "other_local_datasets": others}


def cmd_dataset_list(args: argparse.Namespace) -> int:
    listing = _dataset_rows()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print(f"datasets root: {listing['root']}")
    header = ("NAME", "ID", "EPISODES", "EXPECTED", "BUILT")
    table = [header]
    for row in listing["recipes"]:
        built = "no"
        if row["built"]:
            info = row.get("built_info", {})
            mean = info.get("expert_return_mean")
            built = "yes" if mean is None else f"yes (return {mean:.3f}, "
            if mean is not None:
                built += f"{info.get('n_episodes')} ep)"
        table.append(
            (
                row["name"],
                row["id"],
                str(row["n_episodes"]),
                f"{row['expected_return']:g}",
                built,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    others = listing["other_local_datasets"]
    print(f"other local datasets: {', '.join(others) if others else 'none'}")
    return 0


# ---------------------------------------------------------------- common
def _setup(args: argparse.Namespace) -> None:
    """Torch threads (1 by default: faster than 2 on a shared 2-core machine) and d3rlpy's
    log level (its per-epoch info lines drown the progress bars unless --verbose)."""
    import structlog
    import torch

    # A config warning fires at load, create and every model load: say it once.
    warnings.simplefilter("once", UserWarning)
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if not getattr(args, "verbose", False):
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _command_line(argv: Sequence[str] | None) -> str:
    return shlex.join(["elmur", *(sys.argv[1:] if argv is None else argv)])


def _write_json(data: Any, target: str) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    from .io import atomic_write

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from .bench.configs import load_run_config
    from .bench.train import resume_run, train_run

    _setup(args)
    if args.resume:
        flags = {"dataset": "--dataset", "steps": "--steps", "seed": "--seed", "out": "--out"}
        flags["checkpoint_every"] = "--checkpoint-every"
        flags["steps_per_epoch"] = "--steps-per-epoch"
        extra = [flag for name, flag in flags.items() if getattr(args, name) is not None]
        extra += ["--overwrite"] if args.overwrite else []
        extra = ([args.config] if args.config else []) + extra
        if extra:
            raise ValueError(
                f"--resume continues with the folder's own config.yaml; drop {', '.join(extra)}"
            )
        out = args.resume
        result = resume_run(
            out, device=args.device, show_progress=not args.quiet, loggers=args.logger
        )
    else:
        if not args.config or not args.out:
            raise ValueError("give a CONFIG and --out DIR, or --resume DIR")
        out = args.out
        result = train_run(
            load_run_config(args.config),
            out,
            dataset=args.dataset,
            steps=args.steps,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
            steps_per_epoch=args.steps_per_epoch,
            device=args.device,
            show_progress=not args.quiet,
            overwrite=args.overwrite,
            loggers=args.logger,
        )
    if args.json:
        _write_json(json.loads((Path(out) / "train.json").read_text()), "-")
    else:
        print(result.summary())
    return 0


# ---------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from .bench.evaluate import evaluate_model
    from .bench.runinfo import run_info
    from .bench.tmaze import format_length
    from .bench.train import load_model

    _setup(args)
    algo = load_model(args.model)
    rows = evaluate_model(
        algo,
        args.env,
        args.episodes,
        args.seed,
        corridors=args.corridor,
        target_return=args.target_return,
        show_progress=not args.quiet,
    )
    report = {
        "model": str(args.model),
        "algo": algo.config.get_type(),
        "env": args.env,
        "episodes": args.episodes,
        "seed": args.seed,
        "rows": rows,
        **run_info(_command_line(args.argv)),
    }
    header = ("LENGTH T", "CORRIDOR L", "SUCCESS", "RETURN", "EPISODES", "ENV-STEPS/S")
    table = [header]
    for row in rows:
        success = row.get("success_rate")
        table.append(
            (
                format_length(row["length"]) if "length" in row else "-",
                str(row.get("corridor_length", "-")),
                "-" if success is None else f"{success:.2f}",
                f"{row['return_mean']:.3f}",
                str(row["episodes"]),
                f"{row['env_steps_per_second']:,.0f}",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    out = sys.stderr if args.json == "-" else sys.stdout  # keep stdout pure JSON
    print(f"{args.model} on {args.env}, seed {args.seed}:", file=out)
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)), file=out)
    if args.json:
        _write_json(report, args.json)
        if args.json != "-":
            print(f"json: {args.json}")
    return 0


# ---------------------------------------------------------------- bench / report / demo
def _run_suite(args: argparse.Namespace, suite_name: str, seeds: list[int]) -> dict[str, Any]:
    from .bench.suite import load_suite, run_suite

    suite = load_suite(suite_name)
    if getattr(args, "quick", False):
        suite = suite.as_quick()
    return run_suite(
        suite,
        args.out,
        seeds,
        command=_command_line(args.argv),
        resume=getattr(args, "resume", False),
        show_progress=not args.quiet,
        jobs=args.jobs,
        threads=args.threads,
        loggers=getattr(args, "logger", ()),
        backend=getattr(args, "backend", "local"),
        address=getattr(args, "address", None),
    )


def cmd_bench(args: argparse.Namespace) -> int:
    _setup(args)
    # --quick is a smoke run of the whole pipeline: one seed unless asked for more
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    results = _run_suite(args, args.suite, list(range(n_seeds)))
    print(
        f"{results['suite']}: {len(results['algorithms'])} algorithm(s), seeds "
        f"{results['seeds']}, {results['wall_seconds'] / 60:.1f} min"
    )
    print(f"results: {Path(args.out) / 'results.md'}")
    if results.get("failed_runs"):
        print(
            f"{results['failed_runs']} run(s) failed: their errors are in results.json; "
            "fix and rerun with --resume",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .bench.report import write_report

    source = Path(args.dir) / "results.json"
    if not source.is_file():
        raise FileNotFoundError(
            f"{args.dir} holds no results.json: `elmur report` reads the output folder of "
            "`elmur bench` or `elmur demo` (a `train` folder has train.json and logs/ instead)"
        )
    results = json.loads(source.read_text())
    for path in write_report(results, args.dir)[1:]:
        print(f"wrote {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .bench.sweep import run_sweep

    _setup(args)
    summary = run_sweep(
        args.config,
        args.space,
        args.out,
        args.trials,
        dataset=args.dataset,
        env=args.env,
        episodes=args.episodes,
        eval_seed=args.eval_seed,
        corridors=args.corridor or (),
        target_return=args.target_return,
        steps=args.steps,
        seed=args.seed,
        sampler_seed=args.sampler_seed,
        jobs=args.jobs,
        threads=args.threads,
        backend=args.backend,
        address=args.address,
        show_progress=not args.quiet,
        command=_command_line(args.argv),
        loggers=args.logger,
    )
    best = summary["best"]
    if best is None:
        print(f"no trial finished; see {Path(args.out) / 'sweep.md'}", file=sys.stderr)
        return 1
    print(f"best: trial {best['number']}, score {best['score']:.4f}")
    print(f"config: {Path(args.out) / 'best.yaml'}; all trials: {Path(args.out) / 'sweep.md'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .bench.report import render_markdown

    _setup(args)
    start = time.perf_counter()
    results = _run_suite(args, "demo", [0])
    print()
    print(render_markdown(results), end="")
    print(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min")
    print(f"results: {Path(args.out).resolve()}")
    return 0


# ---------------------------------------------------------------- parser
def _add_dataset(commands: argparse._SubParsersAction[Any]) -> None:
    dataset = commands.add_parser("dataset", help="build and list Minari datasets")
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION")
    actions.required = True

    build = actions.add_parser("build", help="build a dataset from its recipe in datasets/")
    build.add_argument("name", help="recipe name (see `elmur dataset list`)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    build.add_argument("--n-episodes", type=int, default=None, help="override the recipe's count")
    build.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=cmd_dataset_build)

    listing = actions.add_parser(
        "list", help="list recipes and which are built under MINARI_DATASETS_PATH"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_dataset_list)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1; 0 keeps torch's)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="d3rlpy's info logs")


def _logger_option(parser: argparse.ArgumentParser) -> None:
    from .bench.loggers import LOGGERS

    parser.add_argument(
        "--logger",
        nargs="+",
        choices=LOGGERS,
        default=["csv"],
        metavar="NAME",
        help="csv (always on), tensorboard (events in each run folder's tensorboard/; needs "
        "tensorboardX), wandb (needs wandb; WANDB_MODE=offline keeps it local); several at once",
    )


def _backend_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help=f"local: {what} in worker processes here (default); ray: one Ray task each "
        "(needs the ray extra)",
    )
    parser.add_argument(
        "--address",
        help="Ray cluster to use (e.g. auto, or HOST:6379); default: start one on this machine",
    )


def _add_train(commands: argparse._SubParsersAction[Any]) -> None:
    train = commands.add_parser(
        "train",
        help="train one config (examples/configs/*.yaml); builds its dataset if needed",
    )
    train.add_argument(
        "config", nargs="?", help="run config: a path, or a name in examples/configs"
    )
    train.add_argument("--dataset", help="recipe name or local Minari id (default: config's)")
    train.add_argument(
        "--steps",
        "--n-steps",
        type=int,
        help="training updates (d3rlpy's n_steps; default: config's)",
    )
    train.add_argument(
        "--steps-per-epoch",
        "--n-steps-per-epoch",
        type=int,
        help="updates per epoch: logs and checkpoints come once per epoch (d3rlpy's "
        "n_steps_per_epoch; default: config's)",
    )
    train.add_argument("--seed", type=int, help="training seed (default: config's)")
    train.add_argument("--out", help="output folder (model.d3, config.yaml, checkpoint, logs)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="save checkpoint.pt every N steps, a multiple of the epoch (default: every "
        "epoch; 0: never)",
    )
    train.add_argument(
        "--device", default="cpu:0", help="torch device, e.g. cuda:0 (default cpu:0)"
    )
    train.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the interrupted run in DIR from its last checkpoint (exactly)",
    )
    train.add_argument("--json", action="store_true", help="print the summary as JSON")
    _logger_option(train)
    _common(train)
    train.set_defaults(func=cmd_train)


def _add_eval(commands: argparse._SubParsersAction[Any]) -> None:
    ev = commands.add_parser("eval", help="batched greedy online evaluation of a model")
    ev.add_argument("model", help="a .d3 file (ELMURDT or a d3rlpy baseline)")
    ev.add_argument("--env", required=True, help="gymnasium id, e.g. d3rlpy_elmur/TMaze-v0")
    ev.add_argument(
        "--corridor",
        type=int,
        nargs="+",
        metavar="L",
        help="T-Maze corridor lengths, one row each (T = L + 2; default: T = 9 ... 10^4)",
    )
    ev.add_argument("--episodes", type=int, default=100, help="episodes per row (default 100)")
    ev.add_argument("--seed", type=int, default=1_000_000, help="first episode seed")
    ev.add_argument("--target-return", type=float, default=1.0, help="return-to-go for DT models")
    ev.add_argument("--json", metavar="OUT", help="write the rows as JSON to OUT ('-': stdout)")
    _common(ev)
    ev.set_defaults(func=cmd_eval)


def _add_bench(commands: argparse._SubParsersAction[Any]) -> None:
    bench = commands.add_parser(
        "bench", help="train and evaluate every algorithm of a comparison, write results"
    )
    bench.add_argument(
        "suite", help="tmaze, popgym, or a suite YAML (examples/configs/bench_*.yaml)"
    )
    bench.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="training seeds 0..N-1 (default 3; 1 with --quick)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="small dataset, short training, lengths <= 10^4"
    )
    bench.add_argument("--out", required=True, help="output folder")
    bench.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished runs (same fingerprint); continue cut ones from their checkpoint",
    )
    bench.add_argument(
        "--jobs", type=int, default=1, help="models trained at once, in processes (default 1)"
    )
    _backend_options(bench, "--jobs runs at once")
    _logger_option(bench)
    _common(bench)
    bench.set_defaults(func=cmd_bench)

    report = commands.add_parser("report", help="regenerate results.md and plots")
    report.add_argument(
        "dir", help="the output folder of `elmur bench` or `elmur demo` (holds results.json)"
    )
    report.set_defaults(func=cmd_report)


def _add_sweep(commands: argparse._SubParsersAction[Any]) -> None:
    from .bench.sweep import DEFAULT_EVAL_SEED

    sweep = commands.add_parser(
        "sweep",
        help="search fields of a config on validation episodes (Optuna); writes best.yaml",
    )
    sweep.add_argument("config", help="run config: a path, or a name in examples/configs")
    sweep.add_argument(
        "--space",
        required=True,
        help="search space YAML: params.NAME: [values] (a grid) or {low: A, high: B, log: true}",
    )
    sweep.add_argument(
        "--out", required=True, help="sweep folder (study.db; run again on it to resume)"
    )
    sweep.add_argument(
        "--trials", type=int, required=True, help="trials to finish (a grid: at most its size)"
    )
    sweep.add_argument("--dataset", help="recipe name or local Minari id (default: config's)")
    sweep.add_argument("--env", help="evaluation env id (default: the dataset recipe's)")
    sweep.add_argument(
        "--episodes", type=int, default=100, help="validation episodes per trial (default 100)"
    )
    sweep.add_argument(
        "--eval-seed",
        type=int,
        default=DEFAULT_EVAL_SEED,
        help=f"first validation episode seed (default {DEFAULT_EVAL_SEED:,}, apart from the "
        "suites' evaluation seeds)",
    )
    sweep.add_argument(
        "--corridor", type=int, nargs="+", metavar="L", help="T-Maze corridor lengths to score on"
    )
    sweep.add_argument("--target-return", type=float, default=1.0, help="return-to-go for DTs")
    sweep.add_argument("--steps", "--n-steps", type=int, help="training updates per trial")
    sweep.add_argument("--seed", type=int, help="training seed of every trial (default: config's)")
    sweep.add_argument(
        "--sampler-seed", type=int, default=0, help="seed of the trial order / TPE (default 0)"
    )
    sweep.add_argument(
        "--jobs", type=int, default=1, help="trials trained at once, in processes (default 1)"
    )
    _backend_options(sweep, "--jobs trials at once")
    _logger_option(sweep)
    _common(sweep)
    sweep.set_defaults(func=cmd_sweep)


def _add_demo(commands: argparse._SubParsersAction[Any]) -> None:
    demo = commands.add_parser(
        "demo", help="T-Maze: ELMURDT vs DiscreteDT (K=10) at T=10^3 and 10^4 (~5 min)"
    )
    demo.add_argument("--out", default="results/demo", help="output folder (results/demo)")
    demo.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="train/evaluate the two models at once, one process each (default 2: 2 cores)",
    )
    _common(demo)
    demo.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``elmur`` argument parser; each subcommand sets ``func``."""
    parser = argparse.ArgumentParser(
        prog="elmur", description="ELMUR for d3rlpy: datasets, training, evaluation"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_dataset(commands)
    _add_train(commands)
    _add_eval(commands)
    _add_bench(commands)
    _add_sweep(commands)
    _add_demo(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .bench.configs import ConfigError
    from .datasets.errors import DatasetError
    from .io import ModelFileError

    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    try:
        return int(args.func(args))
    except (
        DatasetError,
        ConfigError,
        ModelFileError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:  # an optional extra (popgym) is missing
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "train":
            folder = Path(args.resume or args.out or ".")
            where = (
                "from the last checkpoint"
                if (folder / "checkpoint.pt").is_file()
                else "from step 0 (no checkpoint yet)"
            )
            print(
                f"interrupted: `elmur train --resume {folder}` continues {where}",
                file=sys.stderr,
            )
        elif args.command == "sweep":
            print(
                "interrupted: finished trials are in the study; running the same command "
                f"again resumes it, a cut trial from its last checkpoint ({args.out})",
                file=sys.stderr,
            )
        elif args.command == "bench":
            print(
                "interrupted: finished runs are kept and `--resume` reuses them; a cut run "
                f"goes on from its last epoch's checkpoint ({args.out})",
                file=sys.stderr,
            )
        else:
            print("interrupted", file=sys.stderr)
        return 130

"""The ``elmur`` command line's parser (``elmur``, ``python -m d3rlpy_elmur``).

Apart from the ``d3rlpy_elmur`` package, which it depends on and never the reverse, so that
``elmur --help`` and usage errors answer without importing d3rlpy and torch (seconds on a
small CPU): importing ``d3rlpy_elmur`` registers its algorithms with d3rlpy, so it imports
d3rlpy. The parser therefore reads nothing of the library: where a library parameter has a
default, its option parses to None and the library's default applies. Each subcommand names
its function in :mod:`d3rlpy_elmur_cli.commands`, imported once the arguments are parsed.
Expected errors (a bad config, a missing dataset or model, an output that exists, a missing
optional extra: :mod:`d3rlpy_elmur.extras`) are printed as one line, without a traceback,
with the library's parameter names put as the flags that set them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

# The harness's bench.loggers.LOGGERS and bench.backends.BACKENDS, which it checks: copied, as
# reading them would import d3rlpy, and a test keeps them equal
_LOGGERS = ("csv", "tensorboard", "wandb")
_BACKENDS = ("local", "ray")


# ---------------------------------------------------------------- parser
# The options every command takes: a parent of each command's parser. Where a command has no
# progress bars or d3rlpy logs they are accepted and change nothing.
_COMMON = argparse.ArgumentParser(add_help=False)
_COMMON.add_argument(
    "--threads", type=int, default=1, help="torch threads (default 1; 0 keeps torch's)"
)
_COMMON.add_argument("--quiet", action="store_true", help="no progress bars")
_COMMON.add_argument("-v", "--verbose", action="store_true", help="d3rlpy's info logs")


def _add_dataset(commands: argparse._SubParsersAction[Any]) -> None:
    dataset = commands.add_parser("dataset", help="build and list Minari datasets")
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION")
    actions.required = True

    build = actions.add_parser(
        "build", parents=[_COMMON], help="build a dataset from its recipe in datasets/"
    )
    build.add_argument("name", help="recipe name (see `elmur dataset list`)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    build.add_argument("--n-episodes", type=int, default=None, help="override the recipe's count")
    build.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    build.set_defaults(func="cmd_dataset_build")

    listing = actions.add_parser(
        "list",
        parents=[_COMMON],
        help="list recipes and which are built under MINARI_DATASETS_PATH",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func="cmd_dataset_list")


def _logger_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logger",
        nargs="+",
        choices=_LOGGERS,
        metavar="NAME",
        help="csv (always on), tensorboard (events in each run folder's tensorboard/; needs "
        "tensorboardX), wandb (needs wandb; WANDB_MODE=offline keeps it local); several at once",
    )


def _backend_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--backend",
        choices=_BACKENDS,
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
        parents=[_COMMON],
        help="train one config (examples/configs/*.yaml); builds its dataset if needed",
    )
    train.add_argument(
        "config",
        help="run config: a path, or a preset's name (examples/configs in a clone; the "
        "package ships them, so a name works from any folder)",
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
    train.add_argument(
        "--out", required=True, help="output folder (model.d3, config.yaml, checkpoint, logs)"
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing model")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="save checkpoint.pt every N steps, a multiple of the epoch (default: every "
        "epoch; 0: never)",
    )
    _run_options(train)
    train.set_defaults(func="cmd_train")

    resume = commands.add_parser(
        "resume",
        parents=[_COMMON],
        help="continue an interrupted `elmur train` run from its last checkpoint, exactly "
        "(with the folder's own config.yaml)",
    )
    resume.add_argument("dir", help="the run's output folder")
    _run_options(resume)
    resume.set_defaults(func="cmd_resume")


def _run_options(parser: argparse.ArgumentParser) -> None:
    """What a training process takes besides the run: device, output format, loggers."""
    parser.add_argument(
        "--device", default="cpu:0", help="torch device, e.g. cuda:0 (default cpu:0)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    _logger_option(parser)


def _add_eval(commands: argparse._SubParsersAction[Any]) -> None:
    ev = commands.add_parser(
        "eval", parents=[_COMMON], help="batched greedy online evaluation of a model"
    )
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
    ev.add_argument("--seed", type=int, help="first episode seed (default: the suites' test seed)")
    ev.add_argument(
        "--target-return",
        type=float,
        help="return-to-go for DT models (default: the library's, as for evaluate)",
    )
    ev.add_argument("--json", metavar="OUT", help="write the rows as JSON to OUT ('-': stdout)")
    ev.set_defaults(func="cmd_eval")


def _add_bench(commands: argparse._SubParsersAction[Any]) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[_COMMON],
        help="train and evaluate every algorithm of a comparison, write results",
    )
    bench.add_argument(
        "suite",
        help="tmaze, popgym (the presets bench_tmaze, bench_popgym), or a suite YAML's path",
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
    bench.set_defaults(func="cmd_bench")

    report = commands.add_parser(
        "report", parents=[_COMMON], help="regenerate results.md and plots"
    )
    report.add_argument(
        "dir", help="the output folder of `elmur bench` or `elmur demo` (holds results.json)"
    )
    report.set_defaults(func="cmd_report")


def _add_sweep(commands: argparse._SubParsersAction[Any]) -> None:
    sweep = commands.add_parser(
        "sweep",
        parents=[_COMMON],
        help="search fields of a config on validation episodes (Optuna); writes best.yaml",
    )
    sweep.add_argument("config", help="run config: a path, or a preset's name (as for train)")
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
        help="first validation episode seed (default: the sweeps' own, apart from the "
        "suites' evaluation seeds)",
    )
    sweep.add_argument(
        "--corridor", type=int, nargs="+", metavar="L", help="T-Maze corridor lengths to score on"
    )
    sweep.add_argument(
        "--target-return", type=float, help="return-to-go for DTs (default: the library's)"
    )
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
    sweep.set_defaults(func="cmd_sweep")


def _add_demo(commands: argparse._SubParsersAction[Any]) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[_COMMON],
        help="T-Maze: ELMURDT vs DiscreteDT (K=10) at T=10^3 and 10^4 (~5 min)",
    )
    demo.add_argument("--out", default="results/demo", help="output folder (results/demo)")
    demo.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="train/evaluate the two models at once, one process each (default 2: 2 cores)",
    )
    demo.set_defaults(func="cmd_demo")


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


# The library's messages name a caller's parameter as `name=value` (``episodes=0``,
# ``overwrite=True``): here, the flag that sets it. Not a config field's ``train.steps=``.
_FLAGS = {
    "episodes": "--episodes",
    "trials": "--trials",
    "jobs": "--jobs",
    "overwrite": "--overwrite",
    "dataset": "--dataset",
    "env": "--env",
    "out_dir": "--out",
    "backend": "--backend",
    "address": "--address",
}
_PARAMETER = re.compile(rf"(?<![\w.])({'|'.join(_FLAGS)})=(True\b)?")


def _in_flags(message: str) -> str:
    """``message`` with the library's parameters put as flags (``overwrite=True``: a switch)."""
    return _PARAMETER.sub(lambda m: _FLAGS[m[1]] + ("" if m[2] else " "), message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    # the package (d3rlpy, torch) is imported only now: --help and usage errors stay fast
    from d3rlpy_elmur.datasets.errors import DatasetError
    from d3rlpy_elmur.io import ModelFileError
    from d3rlpy_elmur_cli.bench.configs import ConfigError

    from . import commands

    try:
        return int(getattr(commands, args.func)(args))
    except (
        DatasetError,
        ConfigError,
        ModelFileError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"error: {_in_flags(str(e))}", file=sys.stderr)
        return 1
    except ImportError as e:  # an optional extra is missing (extras.MissingExtraError names it)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command in ("train", "resume"):
            folder = Path(args.out if args.command == "train" else args.dir)
            where = (
                "from the last checkpoint"
                if (folder / "checkpoint.pt").is_file()
                else "from step 0 (no checkpoint yet)"
            )
            print(
                f"interrupted: `elmur resume {folder}` continues {where}",
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

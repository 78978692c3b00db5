"""The ``elmur`` subcommands: one function each (``cmd_<name>``), called by the parser in
:mod:`d3rlpy_elmur_cli` with the parsed arguments (``dataset build|list``, ``train``,
``resume``, ``eval``, ``bench``, ``report``, ``sweep`` and ``demo``). The work happens in
:mod:`d3rlpy_elmur` (most of it in :mod:`d3rlpy_elmur_cli.bench`); these functions only call it
and print. An option whose library parameter has a default parses to None where not given,
and is then left out of the call (:func:`_given`), so the library's default applies.
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

from d3rlpy_elmur.extras import available, missing_message

__all__: list[str] = []


# ---------------------------------------------------------------- dataset build
def cmd_dataset_build(args: argparse.Namespace) -> int:
    from d3rlpy_elmur.datasets import build_recipe, get_recipe, open_minari
    from d3rlpy_elmur.datasets.writer import ELMUR_METADATA_KEY

    _setup(args)
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

    from d3rlpy_elmur.datasets import datasets_root, load_recipes, local_dataset_ids
    from d3rlpy_elmur.datasets.writer import ELMUR_METADATA_KEY

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
    _setup(args)
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
    """The options every command takes, first thing in each: torch threads (1 by default:
    faster than 2 on a shared 2-core machine) and d3rlpy's log level (its per-epoch info
    lines drown the progress bars unless --verbose). ``--quiet`` is read where bars are."""
    import structlog
    import torch

    # A config warning fires at load, create and every model load: say it once.
    warnings.simplefilter("once", UserWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.verbose:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _warn_without_plot(outputs: str) -> None:
    """The plot is the one optional output: say before any work, once, that it will not be
    drawn (``write_report`` leaves it out) rather than fail after hours of training."""
    if not available("matplotlib"):
        print(
            f"warning: {missing_message('the plot', 'matplotlib')}; {outputs} without it",
            file=sys.stderr,
        )


def _given(**options: Any) -> dict[str, Any]:
    """The options given on the command line: one left out (None) takes the library's
    default."""
    return {name: value for name, value in options.items() if value is not None}


def _command_line(argv: Sequence[str] | None) -> str:
    return shlex.join(["elmur", *(sys.argv[1:] if argv is None else argv)])


def _write_json(data: Any, target: str) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    from d3rlpy_elmur.io import atomic_write

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- train, resume
def cmd_train(args: argparse.Namespace) -> int:
    from d3rlpy_elmur_cli.bench.configs import load_run_config
    from d3rlpy_elmur_cli.bench.train import train_run

    _setup(args)
    result = train_run(
        load_run_config(args.config),
        args.out,
        dataset=args.dataset,
        steps=args.steps,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        steps_per_epoch=args.steps_per_epoch,
        device=args.device,
        show_progress=not args.quiet,
        overwrite=args.overwrite,
        **_given(loggers=args.logger),
    )
    return _print_run(args, args.out, result.summary())


def cmd_resume(args: argparse.Namespace) -> int:
    from d3rlpy_elmur_cli.bench.train import resume_run

    _setup(args)
    result = resume_run(
        args.dir, device=args.device, show_progress=not args.quiet, **_given(loggers=args.logger)
    )
    return _print_run(args, args.dir, result.summary())


def _print_run(args: argparse.Namespace, out: str, summary: str) -> int:
    if args.json:
        _write_json(json.loads((Path(out) / "train.json").read_text()), "-")
    else:
        print(summary)
    return 0


# ---------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from d3rlpy_elmur.defaults import DEFAULT_TEST_SEED
    from d3rlpy_elmur.evaluation.tasks import check_evaluation, evaluate_model, format_length
    from d3rlpy_elmur.io import load_learnable
    from d3rlpy_elmur_cli.bench.runinfo import run_info

    _setup(args)
    check_evaluation(args.env, args.corridor)  # before the model is read
    algo = load_learnable(args.model)
    seed = DEFAULT_TEST_SEED if args.seed is None else args.seed  # the report names it
    rows = evaluate_model(
        algo,
        args.env,
        args.episodes,
        seed,
        corridors=args.corridor,
        **_given(target_return=args.target_return),
        show_progress=not args.quiet,
    )
    report = {
        "model": str(args.model),
        "algo": algo.config.get_type(),
        "env": args.env,
        "episodes": args.episodes,
        "seed": seed,
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
    print(f"{args.model} on {args.env}, seed {seed}:", file=out)
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)), file=out)
    if args.json:
        _write_json(report, args.json)
        if args.json != "-":
            print(f"json: {args.json}")
    return 0


# ---------------------------------------------------------------- bench / report / demo
def _run_suite(args: argparse.Namespace, suite_name: str, seeds: list[int]) -> dict[str, Any]:
    from d3rlpy_elmur_cli.bench.suite import run_suite
    from d3rlpy_elmur_cli.bench.suite_config import load_suite

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
        address=getattr(args, "address", None),
        **_given(loggers=getattr(args, "logger", None), backend=getattr(args, "backend", None)),
    )


def cmd_bench(args: argparse.Namespace) -> int:
    _setup(args)
    _warn_without_plot("results.json and results.md are written")
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
    from d3rlpy_elmur_cli.bench.report import write_report

    _setup(args)
    source = Path(args.dir) / "results.json"
    if not source.is_file():
        raise FileNotFoundError(
            f"{args.dir} holds no results.json: `elmur report` reads the output folder of "
            "`elmur bench` or `elmur demo` (a `train` folder has train.json and logs/ instead)"
        )
    results = json.loads(source.read_text())
    _warn_without_plot("results.md is written")
    for path in write_report(results, args.dir)[1:]:
        print(f"wrote {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from d3rlpy_elmur_cli.bench.sweep import run_sweep

    _setup(args)
    _warn_without_plot("sweep.json, sweep.md and best.yaml are written")
    summary = run_sweep(
        args.config,
        args.space,
        args.out,
        args.trials,
        dataset=args.dataset,
        env=args.env,
        episodes=args.episodes,
        corridors=args.corridor or (),
        steps=args.steps,
        seed=args.seed,
        sampler_seed=args.sampler_seed,
        jobs=args.jobs,
        threads=args.threads,
        address=args.address,
        show_progress=not args.quiet,
        command=_command_line(args.argv),
        **_given(
            eval_seed=args.eval_seed,
            target_return=args.target_return,
            backend=args.backend,
            loggers=args.logger,
        ),
    )
    best = summary["best"]
    if best is None:
        print(f"no trial finished; see {Path(args.out) / 'sweep.md'}", file=sys.stderr)
        return 1
    print(f"best: trial {best['number']}, score {best['score']:.4f}")
    print(f"config: {Path(args.out) / 'best.yaml'}; all trials: {Path(args.out) / 'sweep.md'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from d3rlpy_elmur_cli.bench.report import render_markdown

    _setup(args)
    _warn_without_plot("results.json and results.md are written")
    start = time.perf_counter()
    results = _run_suite(args, "demo", [0])
    print()
    print(render_markdown(results), end="")
    print(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min")
    print(f"results: {Path(args.out).resolve()}")
    return 0

"""Command line: ``elmur`` or ``python -m d3rlpy_elmur``.

One function per subcommand, wired in :func:`build_parser`; a new command (``train``,
``eval``, ``bench``) adds a ``_add_<name>`` that registers its parser and sets
``func``. Errors of the dataset layer are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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


# ---------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    print("demo: not built yet (see issue 5)")
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


def _add_demo(commands: argparse._SubParsersAction[Any]) -> None:
    demo = commands.add_parser("demo", help="end-to-end demo (issue 5)")
    demo.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``elmur`` argument parser; each subcommand sets ``func``."""
    parser = argparse.ArgumentParser(
        prog="elmur", description="ELMUR for d3rlpy: datasets, training, evaluation"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_dataset(commands)
    _add_demo(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .datasets.errors import DatasetError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:  # an optional extra (popgym) is missing
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130

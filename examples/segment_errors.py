"""Where in a segment do trained models miss the expert's action?

Replays a task's dataset episodes through each model (teacher forcing, except for models that
embed their own previous action, such as d3rlpy's DT) and prints the error at each position
t mod K as a markdown table. A memory path that has not learned yet shows as
errors at a segment's first positions, where everything older than the segment is only in
memory. Any algorithm of the comparison can be put beside it (d3rlpy's DT, BC, CQL: for
them t mod K only groups the steps; see `d3rlpy_elmur_cli.bench.position_errors`).

    python examples/segment_errors.py results/popgym/runs/popgym-repeatprevious-easy/*/seed0 \
        --dataset popgym-repeatprevious-easy --episodes 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from d3rlpy_elmur import ELMURDT, DiscreteELMURDT, load_learnable
from d3rlpy_elmur.datasets import ensure_dataset, load_minari
from d3rlpy_elmur.evaluation import make_batch_policy
from d3rlpy_elmur_cli.bench import position_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model.d3 files or run folders holding one")
    parser.add_argument("--dataset", required=True, help="recipe name or Minari dataset id")
    parser.add_argument("--episodes", type=int, default=100, help="the dataset's first N")
    parser.add_argument("--context", type=int, help="K (default: the first ELMURDT model's)")
    parser.add_argument("--target-return", type=float, default=1.0, help="for the DTs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    episodes = load_minari(ensure_dataset(args.dataset)).episodes[: args.episodes]
    paths = [Path(name) / "model.d3" if Path(name).is_dir() else Path(name) for name in args.models]
    models = [load_learnable(path) for path in paths]
    context = args.context or next(
        (m.config.context_size for m in models if isinstance(m, ELMURDT | DiscreteELMURDT)), None
    )
    if context is None:
        parser.error("no ELMURDT model among them: pass --context")
    rows = []
    for path, model in zip(paths, models, strict=True):
        policy = make_batch_policy(model, args.target_return)
        label = "/".join(path.parent.parts[-2:])
        rows.append({"model": label, **position_errors(policy, episodes, context)})

    metric = rows[0]["metric"]
    print(f"{metric} by position in the segment, {len(episodes)} episodes of {args.dataset}\n")
    print("| model | " + " | ".join(str(p) for p in range(context)) + " | all |")
    print("|---" * (context + 2) + "|")
    for row in rows:
        values = [*row["by_position"], row["overall"]]
        cells = ["-" if value is None else f"{value:.3f}" for value in values]
        print(f"| {row['model']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

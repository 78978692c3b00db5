"""Where in a segment do trained models miss the expert's action?

Replays a task's dataset episodes through each model (teacher forcing) and prints the error
at each position t mod K as a markdown table. A memory path that has not learned yet shows as
errors at a segment's first positions, where everything older than the segment is only in
memory. Works for every algorithm of the comparison (ELMURDT, BC-GRU, d3rlpy's DT, BC, CQL).

    python examples/segment_errors.py results/popgym/runs/popgym-repeatprevious-easy/*/seed0 \
        --dataset popgym-repeatprevious-easy --episodes 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from d3rlpy_elmur.bench import (
    ensure_dataset,
    load_model,
    make_batch_policy,
    position_errors,
)
from d3rlpy_elmur.datasets import load_minari


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model.d3 files or run folders holding one")
    parser.add_argument("--dataset", required=True, help="recipe name or Minari dataset id")
    parser.add_argument("--episodes", type=int, default=100, help="the dataset's first N")
    parser.add_argument("--context", type=int, default=10, help="K, the segment length")
    parser.add_argument("--target-return", type=float, default=1.0, help="for the DTs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    episodes = load_minari(ensure_dataset(args.dataset)).episodes[: args.episodes]
    rows = []
    for name in args.models:
        path = Path(name)
        model = path / "model.d3" if path.is_dir() else path
        policy = make_batch_policy(load_model(model), args.target_return)
        label = "/".join(model.parent.parts[-2:])
        rows.append({"model": label, **position_errors(policy, episodes, args.context)})

    metric = rows[0]["metric"]
    print(f"{metric} by position in the segment, {len(episodes)} episodes of {args.dataset}\n")
    print("| model | " + " | ".join(str(p) for p in range(args.context)) + " | all |")
    print("|---" * (args.context + 2) + "|")
    for row in rows:
        cells = [f"{value:.3f}" for value in [*row["by_position"], row["overall"]]]
        print(f"| {row['model']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

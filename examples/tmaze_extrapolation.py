"""How far past its training length does a model remember the T-Maze cue?

The `elmur bench` harness as a script you can read top to bottom: train one config per seed
on corridors 1..28, then measure success at 10x, 100x, 1000x the training length, and
write the same results.json / results.md / plot as `elmur bench`.

    python examples/tmaze_extrapolation.py --config tmaze_elmur --steps 2000 --out results/x
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from d3rlpy_elmur import load_learnable
from d3rlpy_elmur.datasets import ensure_dataset
from d3rlpy_elmur.evaluation import evaluate_tmaze
from d3rlpy_elmur_cli.bench import (
    load_run_config,
    run_info,
    train_run,
    write_report,
)


@dataclasses.dataclass
class Args:
    config: str = "tmaze_elmur"  # a name in examples/configs or a path
    steps: int = 2000  # training updates per seed
    seeds: tuple[int, ...] = (0,)  # training seeds: model init and window sampling
    eval_seed: int = 1_000_000  # evaluation seeds are kept apart from training seeds
    lengths: tuple[int, ...] = (30, 300, 3000, 30000)  # horizons T = corridor L + 2
    episodes: int = 100  # goal-balanced episodes per length
    out: str = "results/tmaze-extrapolation"


def main(args: Args) -> None:
    torch.set_num_threads(1)  # one thread is usually fastest on a shared 2-core machine
    start = time.perf_counter()
    run = load_run_config(args.config)

    # data: the paper's T-Maze set (2000 expert episodes), built on first use
    dataset_id = ensure_dataset(run.dataset or "tmaze-c28")

    runs = []
    for seed in args.seeds:
        # train: exactly `steps` updates; model.d3, config.yaml and logs go to run_dir
        run_dir = f"{args.out}/runs/{run.name}/seed{seed}"
        trained = train_run(run, run_dir, steps=args.steps, seed=seed, overwrite=True)
        print(trained.summary())

        # evaluate the saved file, as anyone loading it would
        algo = load_learnable(trained.model_path)
        rows = evaluate_tmaze(
            algo, args.lengths, args.episodes, args.eval_seed + 1000 * seed, show_progress=True
        )
        for row in rows:
            print(f"  T={row['length']}: success {row['success_rate']:.2f}")
        runs.append(
            {
                "seed": seed,
                "train": {"steps": trained.steps, "seconds": trained.seconds},
                "results": rows,
            }
        )

    # report: the same files as `elmur bench`, rendered from the results dict
    results = {
        "kind": "tmaze",
        "dataset": dataset_id,
        "lengths": list(args.lengths),
        "seeds": list(args.seeds),
        "episodes": args.episodes,
        "eval_seeds": {str(s): args.eval_seed + 1000 * s for s in args.seeds},
        "algorithms": [
            {"label": run.name, "config": run.name, "train_steps": args.steps, "runs": runs}
        ],
        **run_info(),
        "wall_seconds": time.perf_counter() - start,
    }
    for path in write_report(results, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Args()
    parser.add_argument("--config", default=defaults.config)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--lengths", type=int, nargs="+", default=list(defaults.lengths))
    parser.add_argument("--episodes", type=int, default=defaults.episodes)
    parser.add_argument("--out", default=defaults.out)
    ns = parser.parse_args()
    main(
        Args(
            config=ns.config,
            steps=ns.steps,
            seeds=tuple(ns.seeds),
            lengths=tuple(ns.lengths),
            episodes=ns.episodes,
            out=ns.out,
        )
    )

"""Training throughput: DiscreteELMURDT vs d3rlpy's DiscreteDecisionTransformer, same process.

Both see 30 steps of history per sample: ELMUR as S=3 segments of K=10 (one token per step,
attention over the segment and the previous one's last W = K tokens, the default; memory
carried between segments), DT as a context of 30 (three tokens per step, attention over 90).
Same layers, heads, width (128) and batch (64). Each run is a ``fit`` of ``--updates`` updates;
runs alternate ELMUR, DT, ELMUR, DT ... and the medians are compared. Trained env-steps per
update = batch * 30 for both.

Datasets: ``tmaze`` (expert episodes, corridors 1..28: every window starts at t=0) and ``long``
(300-step episodes: windows start mid-episode, from the stored state of the episode at that
boundary). ELMUR runs one context segment without gradient before the S trained ones, and each
fit starts with a pass over the whole dataset that fills the stored boundary states (training
repeats it every ``memory_refresh_every`` updates): both are in the timed fit.

    python benchmarks/train_throughput.py --json [--threads 2] [--datasets tmaze,long]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch
from _common import (
    TMAZE_PRESET,
    TMAZE_PRESET_ENCODER,
    add_common_arguments,
    alternate,
    emit,
    long_dataset,
    machine_info,
    median,
    now,
    setup,
    tmaze_dataset,
)


def make_algos(max_timestep: int, device: str = "cpu:0") -> dict[str, Any]:
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    from d3rlpy_elmur import DiscreteELMURDTConfig
    from d3rlpy_elmur.models import ELMURFactory

    K, S = TMAZE_PRESET["context_size"], TMAZE_PRESET["num_segments"]
    encoder = ELMURFactory(**TMAZE_PRESET_ENCODER)
    elmur = DiscreteELMURDTConfig(**TMAZE_PRESET, sequence_encoder=encoder).create(device=device)
    dt = d3rlpy.algos.DiscreteDecisionTransformerConfig(
        batch_size=TMAZE_PRESET["batch_size"],
        context_size=K * S,
        num_layers=TMAZE_PRESET["num_layers"],
        num_heads=TMAZE_PRESET["num_heads"],
        max_timestep=max_timestep,
        encoder_factory=VectorEncoderFactory(
            [TMAZE_PRESET["embed_dim"]], exclude_last_activation=True
        ),
    ).create(device=device)
    return {"elmur": elmur, "dt": dt}


def timed_fit(algo: Any, dataset: Any, updates: int) -> float:
    """Seconds for one ``fit`` of ``updates`` updates (sampling and logging included)."""
    from d3rlpy.logging import NoopAdapterFactory

    start = now()
    algo.fit(
        dataset,
        n_steps=updates,
        n_steps_per_epoch=updates,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
    )
    return now() - start


def bench_dataset(
    dataset: Any, max_timestep: int, updates: int, repeats: int, device: str = "cpu:0"
) -> dict[str, Any]:
    algos = make_algos(max_timestep, device)
    for algo in algos.values():  # build, first-call allocations
        timed_fit(algo, dataset, 3)
    seconds = alternate(
        {name: (lambda a=algo: timed_fit(a, dataset, updates)) for name, algo in algos.items()},
        repeats,
    )
    steps_per_update = TMAZE_PRESET["batch_size"] * TMAZE_PRESET["context_size"] * 3
    out: dict[str, Any] = {}
    for name, values in seconds.items():
        ups = updates / median(values)
        out[name] = {
            "updates_per_s": round(ups, 2),
            "env_steps_per_s": round(ups * steps_per_update, 0),
            "seconds_per_run": [round(v, 3) for v in values],
        }
    ratios = [d / e for e, d in zip(seconds["elmur"], seconds["dt"], strict=True)]
    out["ratio_elmur_over_dt"] = round(
        out["elmur"]["updates_per_s"] / out["dt"]["updates_per_s"], 3
    )
    out["ratio_per_pair"] = [round(r, 3) for r in ratios]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--updates", type=int, default=100, help="updates per timed fit")
    parser.add_argument("--repeats", type=int, default=5, help="alternating fits per algorithm")
    parser.add_argument("--datasets", default="tmaze,long")
    parser.add_argument(
        "--device", default="cpu:0", help="torch device of both models, e.g. cuda:0"
    )
    args = parser.parse_args()
    setup(args.threads, args.seed)
    logging.disable(logging.WARNING)  # d3rlpy's structlog "Skip building models" lines
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    result: dict[str, Any] = {
        "benchmark": "train_throughput",
        "machine": machine_info(args.threads),
        "config": {
            **TMAZE_PRESET,
            **TMAZE_PRESET_ENCODER,
            "dt_context_size": TMAZE_PRESET["context_size"] * TMAZE_PRESET["num_segments"],
            "updates_per_run": args.updates,
            "repeats": args.repeats,
            "seed": args.seed,
            "device": args.device,
        },
    }
    for name in args.datasets.split(","):
        torch.manual_seed(args.seed)
        if name == "tmaze":
            dataset, max_t = tmaze_dataset(2000, 28, args.seed), 64
        elif name == "long":
            dataset, max_t = long_dataset(200, 300, args.seed), 301
        else:
            raise SystemExit(f"unknown dataset {name!r}")
        result[name] = bench_dataset(dataset, max_t, args.updates, args.repeats, args.device)
    emit(result, args.json)


if __name__ == "__main__":
    main()

"""Per-step inference cost against the horizon: ELMURDT (flat) vs Decision Transformer (growing).

* ELMURDT (the T-Maze preset, examples/configs/tmaze_elmur.yaml, with each attention window W
  of ``--attention-window``): one episode through the stateful wrapper, run to the largest
  horizon; at each horizon h of the grid the next ``--window`` steps are timed (a horizon
  whose window would reach the next horizon is skipped). Memory is written once per segment
  and the caches are fixed-size (K + W entries), so the cost does not depend on h.
* d3rlpy's DiscreteDecisionTransformer with context = horizon (same layers, heads, width): at
  horizon h a step of its stateful wrapper runs the model over the last h steps (3h tokens), so
  its per-step cost is timed as ``predict`` on an h-step input (filling the wrapper step by step
  would take O(h^2) time for the same number). Horizons whose attention would need more than
  ``--dt-memory-gb`` are reported as not fitting.

Prints JSON (``--json``) and writes a log-log plot (``--png``).

    python benchmarks/scaling.py --json --threads 1 --attention-window 0 10 \
        --png benchmarks/scaling.png
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch
from _common import (
    TMAZE_PRESET,
    add_common_arguments,
    emit,
    machine_info,
    setup,
    tmaze_preset_algo,
    tmaze_preset_params,
)

GRID = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]


def elmur_latency(
    horizons: list[int], window: int, seed: int, attention_window: int
) -> list[dict[str, Any]]:
    from d3rlpy_elmur.envs import TMazeEnv

    algo = tmaze_preset_algo(attention_window=attention_window)
    wrapper = algo.as_stateful_wrapper()
    env = TMazeEnv(corridor_length=max(horizons) + window + 10)
    obs, _ = env.reset(seed=seed, options={"goal": 1})
    reward = 0.0
    starts = {h: i for i, h in enumerate(horizons)}
    rows: list[dict[str, Any]] = []
    wall = cpu = 0.0
    current: int | None = None
    for t in range(max(horizons) + window):
        if t in starts:
            current, wall, cpu = t, 0.0, 0.0
        if current is not None and t < current + window:
            w0, c0 = time.perf_counter(), time.thread_time()
            action = wrapper.predict(obs, reward)
            wall += time.perf_counter() - w0
            cpu += time.thread_time() - c0
            if t == current + window - 1:
                rows.append(
                    {
                        "attention_window": attention_window,
                        "horizon": current,
                        "us_per_step": round(wall / window * 1e6, 1),
                        "cpu_us_per_step": round(cpu / window * 1e6, 1),
                    }
                )
        else:
            action = wrapper.predict(obs, reward)
        obs, reward, _, _, _ = env.step(action)
    return rows


def dt_latency(
    horizons: list[int], repeats: int, memory_gb: float, seed: int
) -> list[dict[str, Any]]:
    import d3rlpy
    from d3rlpy.algos import TransformerInput
    from d3rlpy.models.encoders import VectorEncoderFactory

    rows: list[dict[str, Any]] = []
    heads = TMAZE_PRESET["num_heads"]
    for h in horizons:
        tokens = 3 * h
        # attention scores and probabilities of one layer, float32, batch 1
        need_gb = 2 * heads * tokens * tokens * 4 / 2**30
        if need_gb > memory_gb:
            rows.append({"horizon": h, "fits": False, "attention_gb": round(need_gb, 1)})
            continue
        torch.manual_seed(seed)
        dt = d3rlpy.algos.DiscreteDecisionTransformerConfig(
            context_size=h,
            max_timestep=h + 1,
            num_layers=TMAZE_PRESET["num_layers"],
            num_heads=heads,
            encoder_factory=VectorEncoderFactory(
                [TMAZE_PRESET["embed_dim"]], exclude_last_activation=True
            ),
        ).create(device="cpu:0")
        dt.create_impl((4,), 4)
        rng = np.random.default_rng(seed)
        inpt = TransformerInput(
            observations=rng.integers(-1, 2, (h, 4)).astype(np.float32),
            actions=rng.integers(0, 4, (h, 1)),
            rewards=np.zeros((h, 1), np.float32),
            returns_to_go=np.ones((h, 1), np.float32),
            timesteps=np.arange(1, h + 1),
        )
        dt.predict(inpt)  # warm-up
        n = max(1, min(repeats, int(2e5 / h)))
        w0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            dt.predict(inpt)
        rows.append(
            {
                "horizon": h,
                "fits": True,
                "us_per_step": round((time.perf_counter() - w0) / n * 1e6, 1),
                "cpu_us_per_step": round((time.thread_time() - c0) / n * 1e6, 1),
                "timed_steps": n,
            }
        )
        del dt
    return rows


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    k = result["model"]["preset"]["context_size"]
    for w in result["model"]["attention_windows"]:
        rows = [r for r in result["elmur"] if r["attention_window"] == w]
        ax.plot(
            [r["horizon"] for r in rows],
            [r["us_per_step"] / 1e3 for r in rows],
            "o-",
            label=f"ELMURDT (K={k}, W={w}, memory)",
        )
    dt = [r for r in result["dt"] if r.get("fits")]
    ax.plot(
        [r["horizon"] for r in dt],
        [r["us_per_step"] / 1e3 for r in dt],
        "s-",
        label="DT, context = horizon",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("horizon (steps into the episode)")
    ax.set_ylabel("ms per step (wall clock)")
    threads = result["machine"]["torch_threads"]
    ax.set_title(f"Per-step inference cost, batch 1, CPU, {threads} thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--max-horizon", type=int, default=10**6)
    parser.add_argument("--window", type=int, default=200, help="ELMUR steps timed per horizon")
    parser.add_argument(
        "--attention-window",
        type=int,
        nargs="+",
        default=None,
        help="ELMUR's W, one timed episode each (default: the T-Maze preset's)",
    )
    parser.add_argument("--dt-repeats", type=int, default=20)
    parser.add_argument("--dt-memory-gb", type=float, default=2.0)
    parser.add_argument("--png", default=None, help="write the plot here")
    args = parser.parse_args()
    setup(args.threads, args.seed)
    logging.disable(logging.WARNING)
    horizons = [h for h in GRID if h <= args.max_horizon]
    # ELMUR times a horizon only if its window ends before the next horizon's starts
    timed = [
        h
        for h, nxt in zip(horizons, [*horizons[1:], None], strict=True)
        if nxt is None or h + args.window <= nxt
    ]
    preset = tmaze_preset_params()
    windows = args.attention_window or [preset["sequence_encoder"]["params"]["attention_window"]]
    result: dict[str, Any] = {
        "benchmark": "scaling",
        "machine": machine_info(args.threads),
        "model": {
            "preset": preset,
            "attention_windows": windows,
            "timed_steps_per_horizon": args.window,
            "weights": f"random (seed {args.seed})",
        },
        "dt": dt_latency(horizons, args.dt_repeats, args.dt_memory_gb, args.seed),
        "elmur": [row for w in windows for row in elmur_latency(timed, args.window, args.seed, w)],
    }
    if args.png:
        plot(result, args.png)
        result["png"] = args.png
    emit(result, args.json)


if __name__ == "__main__":
    main()

"""Soak: one 10^6-step T-Maze episode through the stateful wrapper, watched all the way.

Checks what ELMUR promises for arbitrarily long episodes (README "Guarantees"): every step's
action logits are finite, every memory slot stays finite and within the model's own bound
(``ELMUR.memory_norm_bound()``: post-norm LayerNorm outputs blended convexly), and the
process's memory does not grow. Prints JSON: the largest slot norm against the bound, RSS at
10^4 steps and at the end, per-step time, and whether the episode was solved (meaningful for a
trained model only).

    python benchmarks/soak.py --json --model results/demo/runs/tmaze_elmur/seed0/model.d3
    python benchmarks/soak.py --json --steps 100000       # random weights, a shorter soak
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from typing import Any

import torch
from _common import add_common_arguments, emit, machine_info, rss_mb, setup, tmaze_preset_algo
from tqdm import tqdm


def soak(algo: Any, steps: int, goal: int, seed: int, progress: bool) -> dict[str, Any]:
    from d3rlpy_elmur.envs import TMazeEnv

    impl = algo.impl
    model = impl.policy.sequence
    bound = model.memory_norm_bound()
    wrapper = algo.as_stateful_wrapper()
    finite_outputs = True
    plain_step = impl.step

    def watched_step(*args: Any) -> Any:  # every step's logits, at the cost of one reduction
        nonlocal finite_outputs
        out, state = plain_step(*args)
        finite_outputs &= bool(torch.isfinite(out).all())
        return out, state

    impl.step = watched_step
    env = TMazeEnv(corridor_length=steps - 2)  # T = L + 2: the episode ends at step `steps`
    obs, _ = env.reset(seed=seed, options={"goal": goal})
    reward, max_norm, finite_memory, t = 0.0, 0.0, True, 0
    rss_early = rss_late = 0.0
    start = time.perf_counter()
    bar = tqdm(total=steps, disable=not progress, unit="step", mininterval=5)
    done = False
    while not done:
        action = wrapper.predict(obs, reward)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        t += 1
        if t % model.cfg.context_size == 0 or done:  # memory changes at segment ends only
            memory = wrapper.recurrent_state["memory"]
            finite_memory &= bool(torch.isfinite(memory).all())
            max_norm = max(max_norm, float(memory.norm(dim=-1).max()))
        if t == 10**4:
            rss_early = rss_mb()
        if t % 1000 == 0:
            bar.update(1000)
    bar.close()
    seconds = time.perf_counter() - start
    rss_late = rss_mb()
    return {
        "horizon": steps,
        "steps": t,  # a solved episode ends one step early, at the goal
        "seconds": round(seconds, 1),
        "us_per_step": round(seconds / t * 1e6, 1),
        "finite_outputs": finite_outputs,
        "finite_memory": finite_memory,
        "max_slot_norm": round(max_norm, 4),
        "memory_norm_bound": round(bound, 4) if math.isfinite(bound) else None,
        "within_bound": max_norm <= bound + 1e-4,
        "rss_mb_at_1e4": round(rss_early, 1),
        "rss_mb_at_end": round(rss_late, 1),
        "rss_growth_mb": round(rss_late - rss_early, 2),
        "goal": goal,
        "success": bool(info.get("success", False)),
        "return": float(reward),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.set_defaults(threads=1)
    parser.add_argument("--model", default=None, help="a .d3 file (default: random weights)")
    parser.add_argument("--steps", type=int, default=10**6, help="episode length T (>= 10^4)")
    parser.add_argument("--goal", type=int, default=1, choices=(-1, 1))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    if args.steps < 10**4:
        parser.error("--steps must be at least 10^4 (RSS is compared from step 10^4 on)")
    setup(args.threads, args.seed)
    logging.disable(logging.WARNING)
    algo = tmaze_preset_algo(args.model)
    result = {
        "benchmark": "soak",
        "machine": machine_info(args.threads),
        "model": args.model or f"T-Maze preset, random weights (seed {args.seed})",
        "episode": soak(algo, args.steps, args.goal, args.seed, not args.quiet),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()

"""Inference: per-step latency at two horizons of one episode, and batched evaluation throughput.

The T-Maze preset model (examples/configs/tmaze_elmur.yaml; random weights unless ``--model``
gives a ``.d3`` file: speed does not depend on them), greedy actions.

* Single episode, through the stateful wrapper (``algo.as_stateful_wrapper()``): one T-Maze
  episode whose corridor is longer than the measured horizon, stepped 10^5 + 10^3 times. Reports
  the mean wall-clock (and CPU) time of ``predict`` over steps [10^3, 2*10^3) and
  [10^5, 10^5 + 10^3), their ratio, and the growth of peak and current RSS between the end of
  the two windows. Environment steps are not timed.
* Batched: ``d3rlpy_elmur.evaluate`` over a TMazeVectorEnv of 100 episodes (balanced goals),
  env-steps/s, and the projected time of a 10^6-step T-Maze evaluation of 100 episodes.

* ``--onnx STEPS``: the exported ONNX step (``save_policy("x.onnx")`` run by
  ``load_onnx_policy``) against the torch path in the same process, one episode and
  ``--episodes`` at once, on the same observations (model time only).

    python benchmarks/inference.py --json [--threads 1] [--far 100000] [--compile] [--onnx 2000]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch
from _common import (
    add_common_arguments,
    emit,
    machine_info,
    peak_rss_mb,
    rss_mb,
    setup,
    tmaze_preset_algo,
    tmaze_preset_params,
)


def single_episode(algo: Any, near: int, far: int, window: int, seed: int) -> dict[str, Any]:
    from d3rlpy_elmur.envs import TMazeEnv

    wrapper = algo.as_stateful_wrapper()
    env = TMazeEnv(corridor_length=far + window + 10)  # never reaches the junction in time
    obs, _ = env.reset(seed=seed, options={"goal": 1})
    reward = 0.0
    windows = {"near": (near, near + window), "far": (far, far + window)}
    wall = {name: 0.0 for name in windows}
    cpu = {name: 0.0 for name in windows}
    each: dict[str, list[float]] = {name: [] for name in windows}  # per-step wall times
    rss: dict[str, tuple[float, float]] = {}
    end = far + window
    started = time.perf_counter()
    for t in range(end):
        inside = next((n for n, (a, b) in windows.items() if a <= t < b), None)
        if inside is None:
            action = wrapper.predict(obs, reward)
        else:
            w0, c0 = time.perf_counter(), time.thread_time()
            action = wrapper.predict(obs, reward)
            each[inside].append(time.perf_counter() - w0)
            wall[inside] += each[inside][-1]
            cpu[inside] += time.thread_time() - c0
            if t == windows[inside][1] - 1:
                rss[inside] = (peak_rss_mb(), rss_mb())
        obs, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            raise RuntimeError(f"the episode ended at step {t}: lengthen the corridor")
    out: dict[str, Any] = {"steps": end, "seconds_total": round(time.perf_counter() - started, 1)}
    for name, (a, b) in windows.items():
        out[f"{name}_window"] = [a, b]
        out[f"{name}_us_per_step"] = round(wall[name] / window * 1e6, 1)
        out[f"{name}_cpu_us_per_step"] = round(cpu[name] / window * 1e6, 1)
        # the median is robust to the preemptions of a shared machine
        out[f"{name}_median_us_per_step"] = round(float(np.median(each[name])) * 1e6, 1)
    out["latency_ratio_far_over_near"] = round(wall["far"] / wall["near"], 3)
    out["cpu_ratio_far_over_near"] = round(cpu["far"] / cpu["near"], 3)
    out["median_ratio_far_over_near"] = round(
        float(np.median(each["far"]) / np.median(each["near"])), 3
    )
    out["peak_rss_growth_mb"] = round(rss["far"][0] - rss["near"][0], 3)
    out["rss_growth_mb"] = round(rss["far"][1] - rss["near"][1], 3)
    out["peak_rss_mb"] = round(rss["far"][0], 1)
    return out


def batched(algo: Any, episodes: int, corridor: int, seed: int) -> dict[str, Any]:
    from d3rlpy_elmur import evaluate
    from d3rlpy_elmur.envs import TMazeVectorEnv, balanced_goal_options

    venv = TMazeVectorEnv(episodes, corridor_length=corridor)
    evaluate(algo, venv, n_episodes=episodes, seed=seed, max_steps=50)  # warm-up
    result = evaluate(
        algo,
        venv,
        n_episodes=episodes,
        seed=seed,
        reset_options=balanced_goal_options(corridor),
    )
    rate = result["env_steps_per_second"]
    return {
        "episodes": episodes,
        "corridor_length": corridor,
        "env_steps": result["env_steps"],
        "seconds": round(result["seconds"], 2),
        "env_steps_per_s": round(rate),
        "projected_minutes_1e6_tmaze_100_episodes": round(100 * (10**6 + 2) / rate / 60, 1),
        "success_rate": result["success_rate"],
    }


def onnx_step(algo: Any, steps: int, episodes: int, seed: int) -> dict[str, Any]:
    """The exported ONNX step (onnxruntime, 1 thread) against the torch path, in one process:
    one episode (the stateful wrapper) and ``episodes`` at once (the batched evaluation
    policy), model time only, the same T-Maze observations for both."""
    import tempfile
    from pathlib import Path

    from d3rlpy_elmur import load_onnx_policy
    from d3rlpy_elmur.envs import TMazeVectorEnv
    from d3rlpy_elmur.evaluation import ELMURBatchPolicy

    out: dict[str, Any] = {"steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.onnx"
        algo.save_policy(str(path))
        onnx = load_onnx_policy(path, threads=1)
    for n in (1, episodes):
        env = TMazeVectorEnv(n, corridor_length=steps + 10)
        obs, _ = env.reset(seed=seed)
        rewards = np.zeros(n)
        torch_policy = ELMURBatchPolicy(algo, 0.0, greedy=True, seed=seed)
        torch_policy.reset(n)
        wrapper = algo.as_stateful_wrapper()
        onnx.reset(n)
        times: dict[str, list[float]] = {"torch": [], "onnx": []}
        for _ in range(steps):
            t0 = time.perf_counter()
            if n == 1:
                action = np.array([wrapper.predict(obs[0], float(rewards[0]))])
            else:
                action = torch_policy.act(obs, rewards)
            t1 = time.perf_counter()
            onnx.predict_batch(obs, rewards)
            t2 = time.perf_counter()
            times["torch"].append(t1 - t0)
            times["onnx"].append(t2 - t1)
            obs, rewards, *_ = env.step(action)
        key = "single" if n == 1 else "batched"
        median = {name: float(np.median(values)) for name, values in times.items()}
        out[key] = {
            "episodes": n,
            "torch_median_us_per_step": round(median["torch"] * 1e6, 1),
            "onnx_median_us_per_step": round(median["onnx"] * 1e6, 1),
            "onnx_over_torch": round(median["onnx"] / median["torch"], 3),
            "torch_env_steps_per_s": round(n / median["torch"]),
            "onnx_env_steps_per_s": round(n / median["onnx"]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--model", default=None, help="a .d3 file (default: random weights)")
    parser.add_argument("--near", type=int, default=10**3)
    parser.add_argument("--far", type=int, default=10**5)
    parser.add_argument("--window", type=int, default=10**3)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--corridor", type=int, default=2000, help="batched T-Maze corridor")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the step's token path"
    )
    parser.add_argument("--device", default="cpu:0", help="torch device, e.g. cuda:0")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--skip-batched", action="store_true")
    parser.add_argument(
        "--onnx",
        type=int,
        default=0,
        metavar="STEPS",
        help="also time the exported ONNX step against torch over STEPS steps (needs onnx)",
    )
    args = parser.parse_args()
    setup(args.threads, args.seed)
    logging.disable(logging.WARNING)
    algo = tmaze_preset_algo(args.model, device=args.device)
    if args.compile:
        algo.impl.policy.sequence.compile_step()
    result: dict[str, Any] = {
        "benchmark": "inference",
        "compiled": args.compile,
        "device": args.device,
        "machine": machine_info(args.threads),
        "model": args.model
        or {"preset": tmaze_preset_params(), "weights": f"random (seed {args.seed})"},
    }
    if not args.skip_single:
        np.random.seed(args.seed)
        result["single_episode"] = single_episode(algo, args.near, args.far, args.window, args.seed)
    if not args.skip_batched:
        torch.manual_seed(args.seed)
        result["batched"] = batched(algo, args.episodes, args.corridor, args.seed)
    if args.onnx:
        result["onnx"] = onnx_step(algo, args.onnx, args.episodes, args.seed)
    emit(result, args.json)


if __name__ == "__main__":
    main()

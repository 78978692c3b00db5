"""Shared pieces of the benchmark scripts: seeding, threads, machine info, T-Maze data and model.

Benchmarks compare ratios measured in one process (alternating runs), never absolute numbers
across processes: the machine is shared and timings are noisy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "TMAZE_PRESET",
    "add_common_arguments",
    "alternate",
    "apply_overrides",
    "emit",
    "gemm_gflops",
    "long_dataset",
    "machine_info",
    "parse_overrides",
    "peak_rss_mb",
    "rss_mb",
    "setup",
    "square_gemm_gflops",
    "tmaze_dataset",
    "tmaze_preset_algo",
    "tmaze_preset_params",
    "TMAZE_PRESET_ENCODER",
]

# The training-throughput model of issue 6: the paper's shape (K=10, S=3, 2 layers, 2 heads,
# width 128, batch 64) with the POPGym preset's encoder: M=4 slots, W=K, no write gate
# (TMAZE_PRESET_ENCODER: ELMURFactory's fields). Inference
# benchmarks use the T-Maze preset config (examples/configs/tmaze_elmur.yaml) instead.
TMAZE_PRESET: dict[str, Any] = dict(
    context_size=10,
    num_segments=3,
    num_layers=2,
    num_heads=2,
    embed_dim=128,
    batch_size=64,
)
TMAZE_PRESET_ENCODER: dict[str, Any] = dict(
    attention_window=None, memory_slots=4, lru_blend=0.79, write_gate=0.0
)


def add_common_arguments(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)


def setup(threads: int, seed: int) -> None:
    """Threads and every seed (torch, numpy, random)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    import d3rlpy

    return {
        "gemm_gflops_now": gemm_gflops(threads),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "d3rlpy": d3rlpy.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def gemm_gflops(threads: int) -> float:
    """A float32 GEMM rate measured now with ``threads`` threads: how much of the shared machine
    this process gets (compare runs by it; the cores peak near 145 GFLOP/s each)."""
    a, b = torch.randn(640, 128), torch.randn(128, 512)
    for _ in range(20):
        a @ b
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        a @ b
    return round(2 * 640 * 128 * 512 * n / (time.perf_counter() - start) / 1e9, 1)


def square_gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The rate of an n^3 float32 GEMM now, with torch's current threads (the best of
    ``repeats``): the arithmetic ceiling an update's achieved GFLOP/s is compared with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # first-call allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def rss_mb() -> float:
    """Current resident set size (MB)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Calls every run in turn ``repeats`` times (A B A B ...), so that load changes on the
    shared machine hit all of them alike; returns each run's measurements."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            out[name].append(run())
    return out


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def tmaze_dataset(n_episodes: int, max_corridor: int, seed: int) -> Any:
    """Expert T-Maze episodes (as the Minari recipe, built in memory): balanced goals,
    corridors uniform in 1..max_corridor, observations [y, hint, flag, noise]."""
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

    from d3rlpy_elmur.envs import DOWN, RIGHT, UP

    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n_episodes):
        length = int(rng.integers(1, max_corridor + 1))
        goal = 1 if i % 2 == 0 else -1
        n = length + 1
        obs = np.zeros((n, 4), np.float32)
        obs[0, 1] = goal
        obs[length, 2] = 1.0
        obs[:, 3] = rng.integers(-1, 2, n)
        actions = np.full((n, 1), RIGHT, np.int64)
        actions[length, 0] = UP if goal == 1 else DOWN
        rewards = np.zeros((n, 1), np.float32)
        rewards[-1] = 1.0
        episodes.append(Episode(obs, actions, rewards, True))
    return ReplayBuffer(
        InfiniteBuffer(), episodes=episodes, action_space=ActionSpace.DISCRETE, action_size=4
    )


def long_dataset(n_episodes: int, length: int, seed: int) -> Any:
    """Long episodes of T-Maze-like observations (random actions: only shapes matter)."""
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

    rng = np.random.default_rng(seed)
    episodes = [
        Episode(
            rng.integers(-1, 2, (length, 4)).astype(np.float32),
            rng.integers(0, 4, (length, 1)),
            np.zeros((length, 1), np.float32),
            True,
        )
        for _ in range(n_episodes)
    ]
    return ReplayBuffer(
        InfiniteBuffer(), episodes=episodes, action_space=ActionSpace.DISCRETE, action_size=4
    )


def tmaze_preset_params() -> dict[str, Any]:
    """The params of the project's T-Maze preset (examples/configs/tmaze_elmur.yaml)."""
    from d3rlpy_elmur_cli.bench.configs import load_run_config

    return dict(load_run_config("tmaze_elmur").params)


def tmaze_preset_algo(
    model: str | None = None, attention_window: int | None = None, device: str = "cpu:0"
) -> Any:
    """The T-Maze preset DiscreteELMURDT (tmaze_elmur.yaml), built for obs (4,) and 4
    actions with random weights (speed does not depend on them), or loaded from a ``.d3``;
    ``attention_window`` replaces the preset's W."""
    import d3rlpy

    from d3rlpy_elmur_cli.bench.configs import load_run_config, override_run_config

    if model is not None:
        return d3rlpy.load_learnable(model, device=device)
    run = load_run_config("tmaze_elmur")
    if attention_window is not None:
        encoder = {"params": {"attention_window": attention_window}}  # the preset's, W changed
        run = override_run_config(
            run, {"params": {"sequence_encoder": encoder}}, "--attention-window"
        )
    algo = run.make_config().create(device=device)
    algo.create_impl((4,), 4)
    return algo


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON (``0``, ``0.5``, ``null``, ``true``) or strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """An ELMURDT config with ``--set`` overrides: ``FIELD`` sets a config field and
    ``encoder.FIELD`` a field of its sequence-encoder factory (ELMUR's own options), the
    factory's other fields kept."""
    encoder = {k.partition(".")[2]: v for k, v in overrides.items() if k.startswith("encoder.")}
    fields = {k: v for k, v in overrides.items() if not k.startswith("encoder.")}
    try:
        if encoder:
            fields["sequence_encoder"] = dataclasses.replace(config.sequence_encoder, **encoder)
        return dataclasses.replace(config, **fields)
    except TypeError as e:
        raise SystemExit(f"--set: {e}") from None


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    sys.stdout.flush()


def now() -> float:
    return time.perf_counter()

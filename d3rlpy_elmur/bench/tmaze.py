"""T-Maze evaluation: success rate per episode horizon T = L + 2 (the paper's lengths)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..envs.registration import TMAZE_ID
from ..evaluation import evaluate
from .envs import make_eval_env

__all__ = ["PAPER_LENGTHS", "QUICK_LENGTHS", "evaluate_tmaze", "format_length"]

# Inference lengths T of the paper's T-Maze table (docs/design.md §3).
PAPER_LENGTHS = (9, 30, 90, 300, 900, 3000, 10_000, 100_000, 1_000_000)
QUICK_LENGTHS = PAPER_LENGTHS[:7]
# Sub-envs per round: 100 episodes of a length run as one batch.
MAX_ENVS = 100
# Shorter lengths finish in seconds: a progress bar each would only add noise.
PROGRESS_FROM = 10_000


def format_length(length: int) -> str:
    """9, 30, ..., 3000, 10^4, 10^5, 10^6: how the paper's table names the lengths."""
    text = str(length)
    if length >= 10_000 and text.strip("0") == "1":
        return f"10^{len(text) - 1}"
    return text


def evaluate_tmaze(
    algo: Any,
    lengths: Sequence[int],
    episodes: int,
    seed: int,
    *,
    episodes_at: Mapping[int, int] | None = None,
    max_length: int | None = None,
    target_return: float = 1.0,
    env_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per length T: success rate over ``episodes`` goal-balanced episodes of
    corridor L = T - 2, or ``{"skipped": "cap"}`` when T exceeds ``max_length``.

    Every length uses the same episode seeds (``seed + i``), so all algorithms meet the
    same noise and goals. ``log`` receives one line per evaluated length.
    """
    rows: list[dict[str, Any]] = []
    envs: dict[int, Any] = {}
    try:
        for length in lengths:
            if length < 3:
                raise ValueError(f"T-Maze length T={length} must be >= 3 (corridor L = T - 2)")
            row: dict[str, Any] = {"length": int(length), "corridor_length": int(length) - 2}
            if max_length is not None and length > max_length:
                rows.append({**row, "skipped": "cap", "max_length": int(max_length)})
                continue
            n = int((episodes_at or {}).get(length, episodes))
            n_envs = min(n, MAX_ENVS)
            if n_envs not in envs:
                envs[n_envs] = make_eval_env(TMAZE_ID, n_envs, dict(env_kwargs or {}))
            result = evaluate(
                algo,
                envs[n_envs],
                n_episodes=n,
                seed=seed,
                target_return=target_return,
                reset_options={"corridor_length": int(length) - 2},
                show_progress=show_progress and length >= PROGRESS_FROM,
            )
            rows.append({**row, **result})
            if log is not None:
                log(
                    f"T={format_length(length)}: success {result['success_rate']:.2f} "
                    f"({result['seconds']:.0f} s, {result['env_steps_per_second']:,.0f} steps/s)"
                )
    finally:
        for env in envs.values():
            env.close()
    return rows

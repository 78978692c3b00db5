"""The benchmark's tasks: T-Maze success rate per horizon T = L + 2 (the paper's lengths),
POPGym mean return per task, and :func:`evaluate_model`, which picks between them by env id
(what ``elmur eval``, the suites and the sweeps run)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..defaults import DEFAULT_TARGET_RETURN
from ..envs.registration import TMAZE_ID
from .envs import check_env_id, is_tmaze, make_eval_env
from .episodes import MAX_ENVS, evaluate

__all__ = [
    "PAPER_LENGTHS",
    "QUICK_LENGTHS",
    "check_evaluation",
    "evaluate_model",
    "evaluate_popgym",
    "evaluate_tmaze",
    "format_length",
]

# Inference lengths T of the paper's T-Maze table (docs/design.md §3).
PAPER_LENGTHS = (9, 30, 90, 300, 900, 3000, 10_000, 100_000, 1_000_000)
QUICK_LENGTHS = PAPER_LENGTHS[:7]
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
    target_return: float = DEFAULT_TARGET_RETURN,
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


def evaluate_popgym(
    algo: Any,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    target_return: float = DEFAULT_TARGET_RETURN,
    show_progress: bool = False,
) -> dict[str, Any]:
    """``{"task": env_id, "return_mean", "return_std", "episodes", ...}`` over
    ``episodes`` episodes seeded ``seed + i`` (a POPGym id, or any gymnasium id)."""
    env = make_eval_env(env_id, min(episodes, MAX_ENVS))
    try:
        result = evaluate(
            algo,
            env,
            n_episodes=episodes,
            seed=seed,
            target_return=target_return,
            show_progress=show_progress,
        )
    finally:
        env.close()
    return {"task": env_id, **result}


def check_evaluation(env_id: str, corridors: Sequence[int] | None = None) -> None:
    """What :func:`evaluate_model` checks before any episode, for callers that train first
    (sweeps): ``env_id`` is registered (a POPGym id imports popgym: the popgym extra), and
    corridor lengths go with the T-Maze only."""
    if is_tmaze(env_id):
        return
    try:
        check_env_id(env_id)
    except ValueError as e:
        if not corridors:
            raise
        # e.g. d3rlpy_elmur/TMaze-v1: not registered; the message suggests the T-Maze's id
        raise ValueError(f"corridor lengths apply to {TMAZE_ID} only; {e}") from None
    if corridors:
        raise ValueError(
            f"corridor lengths apply to {TMAZE_ID} only (one row per length), not to "
            f"{env_id}: evaluate it without them"
        )


def evaluate_model(
    algo: Any,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    corridors: Sequence[int] | None = None,
    target_return: float = DEFAULT_TARGET_RETURN,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """Rows of greedy batched evaluation: one per T-Maze corridor length L (at T = L + 2;
    default T = 9 ... 10^4), else one row for the environment."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: evaluate at least one episode")
    check_evaluation(env_id, corridors)
    if is_tmaze(env_id):
        lengths = [c + 2 for c in corridors] if corridors else list(QUICK_LENGTHS)
        return evaluate_tmaze(
            algo,
            lengths,
            episodes,
            seed,
            target_return=target_return,
            show_progress=show_progress,
        )
    return [
        evaluate_popgym(
            algo,
            env_id,
            episodes,
            seed,
            target_return=target_return,
            show_progress=show_progress,
        )
    ]

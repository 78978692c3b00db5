"""Evaluate a saved model on any environment id (what ``elmur eval`` runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .envs import is_tmaze
from .popgym import evaluate_popgym
from .tmaze import QUICK_LENGTHS, evaluate_tmaze

__all__ = ["evaluate_model"]


def evaluate_model(
    algo: Any,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    corridors: Sequence[int] | None = None,
    target_return: float = 1.0,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """Rows of greedy batched evaluation: one per T-Maze corridor length L (at T = L + 2;
    default T = 9 ... 10^4), else one row for the environment."""
    if episodes < 1:
        raise ValueError(f"--episodes {episodes}: evaluate at least one episode")
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
    if corridors:
        raise ValueError(f"corridor lengths apply to the T-Maze only, not to {env_id}")
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

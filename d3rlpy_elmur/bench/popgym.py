"""POPGym evaluation: mean episode return of a model on one task (returns lie in [-1, 1])."""

from __future__ import annotations

from typing import Any

from ..evaluation import evaluate
from .envs import make_eval_env

__all__ = ["evaluate_popgym"]

MAX_ENVS = 100


def evaluate_popgym(
    algo: Any,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    target_return: float = 1.0,
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

"""Vector environments for evaluation, built in one place.

:func:`make_eval_env` builds every evaluation environment named by an id. The
passive vector-observation T-Maze runs as :class:`~d3rlpy_elmur.envs.TMazeVectorEnv` (numpy,
one batched step: what makes 10^6-step episodes affordable); other T-Maze options fall back
to a sync vector env of :class:`TMazeEnv`. Observations are converted to the layout the
dataset loader produced (one-hot Discrete, flattened Dict/Tuple), so a model sees online what
it saw offline; ``MultiDiscrete`` actions (MineSweeper's and Battleship's board squares) take
the single index the loader raveled them to (:class:`RaveledActions`).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ..datasets.spaces import (
    action_size_of,
    convert_observation,
    flatten_observation_space,
    is_image_space,
    unravel_action,
)
from ..envs.popgym_experts import register_popgym
from ..envs.registration import TMAZE_ID
from ..envs.tmaze import TMazeEnv
from ..envs.tmaze_vector import TMazeVectorEnv
from ..extras import require

__all__ = [
    "BalancedGoals",
    "check_env_id",
    "FlatObservation",
    "PinnedGoal",
    "RaveledActions",
    "balanced_goals",
    "make_eval_env",
    "is_tmaze",
]

# TMazeEnv options the numpy vector env implements (it is the passive, vector-obs T-Maze).
_VECTOR_TMAZE_KWARGS = {"corridor_length", "penalty", "goal_reward", "noise"}


def is_tmaze(env_id: str) -> bool:
    """Whether ``env_id`` is the T-Maze whose corridor length is an evaluation axis."""
    return env_id == TMAZE_ID


def balanced_goals(n: int) -> list[int]:
    """Goal sides for ``n`` episodes: +1, -1, +1, ... (balanced; off by one when n is odd)."""
    return [1 if i % 2 == 0 else -1 for i in range(n)]


class PinnedGoal(gym.Wrapper[Any, Any, Any, Any]):
    """Resets the T-Maze with a fixed goal side, so one batch holds both sides.

    A sync vector env passes the same reset options to every sub-env; pinning the goal per
    sub-env is how a single round of episodes stays balanced over goals.
    """

    def __init__(self, env: gym.Env[Any, Any], goal: int) -> None:
        super().__init__(env)
        self.goal = goal

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options={**(options or {}), "goal": self.goal})


class BalancedGoals(gym.vector.VectorWrapper):
    """Adds the per-sub-env goals of :func:`balanced_goals` to every reset of a
    :class:`TMazeVectorEnv` (which takes one goal per sub-env as a reset option)."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self._goals = np.array(balanced_goals(env.num_envs))

    def reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options={**(options or {}), "goal": self._goals})


class FlatObservation(gym.ObservationWrapper[np.ndarray, Any, Any]):
    """Observations in the dataset loader's layout (one-hot, flattened, float32)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self._source = env.observation_space
        shape, dtype = flatten_observation_space(self._source)
        low, high = (0, 255) if is_image_space(self._source) else (-np.inf, np.inf)
        self.observation_space = gym.spaces.Box(low, high, shape, dtype.type)

    def observation(self, observation: Any) -> np.ndarray:
        return convert_observation(self._source, observation)


class RaveledActions(gym.ActionWrapper[Any, Any, Any]):
    """A ``MultiDiscrete(nvec)`` env acting on ``Discrete(prod(nvec))``: the index the dataset
    loader stores for each action (row-major ravel), unraveled back before each step."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.MultiDiscrete):
            raise TypeError(f"RaveledActions needs MultiDiscrete actions, got {env.action_space}")
        self._source = env.action_space
        self.action_space = gym.spaces.Discrete(action_size_of(self._source))

    def action(self, action: Any) -> np.ndarray:
        return unravel_action(self._source, action)


def _needs_flattening(space: gym.Space[Any]) -> bool:
    return not isinstance(space, gym.spaces.Box)


def check_env_id(env_id: str) -> None:
    """ValueError naming the closest registered ids when ``env_id`` is not registered;
    :class:`~d3rlpy_elmur.extras.MissingExtraError` naming the extra when a POPGym id needs
    a module that is missing (popgym itself, or mazelib for the Labyrinth tasks)."""
    if env_id.startswith("popgym-"):
        register_popgym(env_id)
        if env_id not in gym.registry and "Labyrinth" in env_id:
            # popgym registers its Labyrinth ids only where mazelib imports: name the extra
            require("mazelib", env_id)
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see gymnasium.pprint_registry())"
    raise ValueError(f"unknown environment id {env_id!r}{hint}")


def _pinned_tmaze(env_kwargs: dict[str, Any], goal: int) -> gym.Env[Any, Any]:
    return PinnedGoal(TMazeEnv(**env_kwargs), goal)


def _make_one(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    if env_id.startswith("popgym-"):
        from ..envs.popgym_experts import make_popgym_env

        env = make_popgym_env(env_id, **env_kwargs)
    else:
        env = gym.make(env_id, **env_kwargs)
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        env = RaveledActions(env)
    return FlatObservation(env) if _needs_flattening(env.observation_space) else env


def make_eval_env(
    env_id: str,
    num_envs: int,
    env_kwargs: dict[str, Any] | None = None,
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` sub-envs of ``env_id`` for batched evaluation.

    T-Maze sub-envs have their goal side fixed by index (:func:`balanced_goals`), so
    every round of ``num_envs`` episodes is balanced; its corridor length is set per round
    through the reset option ``corridor_length``.
    """
    kwargs = dict(env_kwargs or {})
    if is_tmaze(env_id) and set(kwargs) <= _VECTOR_TMAZE_KWARGS:
        return BalancedGoals(TMazeVectorEnv(num_envs, **kwargs))
    check_env_id(env_id)
    if is_tmaze(env_id):
        goals = balanced_goals(num_envs)
        # The class itself, not gym.make: its checker/order wrappers cost per step at 10^6.
        fns: list[Callable[[], gym.Env[Any, Any]]] = [
            functools.partial(_pinned_tmaze, kwargs, g) for g in goals
        ]
    else:
        fns = [functools.partial(_make_one, env_id, kwargs) for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns)

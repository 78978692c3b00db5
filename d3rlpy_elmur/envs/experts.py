"""Expert policies for the memory tasks, and the registry the dataset builders use.

An expert is reset at the start of every episode and then maps each observation to an
action. The T-Maze expert reads observations only (it is the optimal memory policy);
the POPGym experts (:mod:`d3rlpy_elmur.envs.popgym_experts`) are bound to one environment
and either read its hidden state (privileged) or act on the observations alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from .tmaze import DOWN, LEFT, RIGHT, UP
from .visual_tmaze import decode_tmaze_frame

__all__ = [
    "EXPERTS",
    "Expert",
    "TMazeExpert",
    "make_expert",
    "register_expert",
    "tmaze_cue_and_junction",
]


class Expert(Protocol):
    """A policy that may keep per-episode state."""

    def reset(self) -> None:
        """Forget the previous episode."""
        ...

    def act(self, observation: Any) -> Any:
        """Return the action for ``observation``."""
        ...


def tmaze_cue_and_junction(observation: Any) -> tuple[float, bool]:
    """Return ``(hint, at_junction)`` from any T-Maze observation format.

    Accepts the 4-float vector, the 2-float ambiguous vector, the Dict observation and
    image frames (HWC or CHW).
    """
    if isinstance(observation, Mapping):
        return float(observation["cue"][0]), bool(observation["position"][1] == 1)
    obs = np.asarray(observation)
    if obs.ndim == 3:
        obs = decode_tmaze_frame(obs)
    if obs.shape == (2,):  # ambiguous: [at_junction, hint_or_y]
        at_junction = bool(obs[0] == 1)
        return (0.0 if at_junction else float(obs[1])), at_junction
    return float(obs[1]), bool(obs[2] == 1)


class TMazeExpert:
    """Optimal T-Maze policy from observations: remember the cue, run right, turn.

    If no cue has been seen yet it steps left (the active variant puts the cue one cell
    to the left of the start); in the passive task the cue is visible at t = 0. Its only
    state is the remembered cue, so it runs at constant cost for any corridor length.
    """

    def __init__(self) -> None:
        self._hint = 0.0

    def reset(self) -> None:
        self._hint = 0.0

    def act(self, observation: Any) -> int:
        hint, at_junction = tmaze_cue_and_junction(observation)
        if hint != 0.0:
            self._hint = hint
        if self._hint == 0.0:
            return LEFT
        if at_junction:
            return UP if self._hint > 0 else DOWN
        return RIGHT


ExpertFactory = Callable[[gym.Env[Any, Any]], Expert]

EXPERTS: dict[str, ExpertFactory] = {}


def register_expert(name: str, factory: ExpertFactory) -> None:
    """Make ``make_expert(name, env)`` build ``factory(env)``."""
    if name in EXPERTS:
        raise ValueError(f"expert {name!r} is already registered")
    EXPERTS[name] = factory


def make_expert(name: str, env: gym.Env[Any, Any]) -> Expert:
    """Build the expert called ``name`` for ``env`` (privileged experts read its state)."""
    try:
        factory = EXPERTS[name]
    except KeyError:
        known = ", ".join(sorted(EXPERTS))
        raise LookupError(f"unknown expert {name!r}; registered experts: {known}") from None
    return factory(env)


register_expert("tmaze", lambda env: TMazeExpert())

"""What every POPGym expert shares: making the environment, and the expert base class."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym

from ...extras import require

__all__ = ["PopGymExpert", "make_popgym_env", "register_popgym"]


def register_popgym(env_id: str) -> None:
    """Imports popgym, which registers its ids with gymnasium (``env_id`` names the need)."""
    require("popgym", env_id)
    import popgym  # noqa: F401  (import registers the popgym-* ids)


def make_popgym_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make`` a POPGym id, importing popgym (which registers its ids) first.

    The Labyrinth ids exist only where ``mazelib`` is installed (popgym registers them
    only then); the error says so instead of gymnasium's "not found".
    """
    register_popgym(env_id)
    if "Labyrinth" in env_id:
        require("mazelib", env_id)
    return gym.make(env_id, **kwargs)


class PopGymExpert:
    """Base of the POPGym experts: bound to one environment, reset at every episode.

    ``privileged`` says whether the expert reads hidden state (what the observations do
    not show); the others read the environment only for the task's public constants
    (board size, number of arms) and act on the observations they were given.
    """

    privileged: ClassVar[bool] = True

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self._env = env

    @property
    def _state(self) -> Any:
        return self._env.unwrapped

    def reset(self) -> None:
        pass

    def act(self, observation: Any) -> Any:
        raise NotImplementedError

"""Privileged experts for POPGym tasks (``pip install d3rlpy-elmur[popgym]``).

The paper's POPGym data came from PPO-GRU agents we cannot reach, so our datasets are
demonstrations by experts that read the environment's hidden state (the observation
alone does not determine the optimal action: that is the memory the model must learn).
Each expert is bound to one environment and reads ``env.unwrapped`` at every step.

Measured mean return over 20 episodes (seeds 0..19, ``pytest
tests/envs/test_popgym_experts.py``); the best possible return is 1.0 everywhere:

- RepeatPrevious Easy / Medium / Hard: 1.000 (optimal)
- Autoencode Easy / Medium: 1.000 (optimal)
- CountRecall Easy: 1.000 (optimal)
- PositionOnlyCartPole Easy / Medium: 1.000 (optimal: the pole never falls)
- PositionOnlyPendulum Easy: 0.916 (0.910 over the 1000 episodes of its dataset),
  near-optimal but not provably optimal (see :class:`PendulumExpert`)

:data:`EXPERT_RETURN_BOUNDS` holds the lower bounds the tests enforce.
popgym itself is imported lazily, only by :func:`make_popgym_env`.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from ..extras import require
from .experts import register_expert

__all__ = [
    "EXPERT_RETURN_BOUNDS",
    "POPGYM_EXPERT_NAMES",
    "AutoencodeExpert",
    "CartPoleExpert",
    "CountRecallExpert",
    "PendulumExpert",
    "RepeatPreviousExpert",
    "expert_name_for_popgym",
    "make_popgym_env",
    "register_popgym",
]

# Lower bounds on the mean return over 20 episodes, enforced by the tests.
EXPERT_RETURN_BOUNDS: dict[str, float] = {
    "popgym-RepeatPreviousEasy-v0": 0.999,
    "popgym-RepeatPreviousMedium-v0": 0.999,
    "popgym-RepeatPreviousHard-v0": 0.999,
    "popgym-AutoencodeEasy-v0": 0.999,
    "popgym-AutoencodeMedium-v0": 0.999,
    "popgym-CountRecallEasy-v0": 0.999,
    "popgym-PositionOnlyCartPoleEasy-v0": 0.999,
    "popgym-PositionOnlyCartPoleMedium-v0": 0.999,
    "popgym-PositionOnlyPendulumEasy-v0": 0.90,
}


def register_popgym(env_id: str) -> None:
    """Imports popgym, which registers its ids with gymnasium (``env_id`` names the need)."""
    require("popgym", env_id)
    import popgym  # noqa: F401  (import registers the popgym-* ids)


def make_popgym_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make`` a POPGym id, importing popgym (which registers its ids) first."""
    register_popgym(env_id)
    return gym.make(env_id, **kwargs)


class _Privileged:
    """Base of the privileged experts: keeps the environment whose state it reads."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self._env = env

    @property
    def _state(self) -> Any:
        return self._env.unwrapped

    def reset(self) -> None:
        pass

    def act(self, observation: Any) -> Any:
        raise NotImplementedError


class RepeatPreviousExpert(_Privileged):
    """Answers the suit of the card the environment scores against (k cards back)."""

    def act(self, observation: Any) -> int:
        env = self._state
        hand = env.deck["player"]
        if len(hand) < env.k:  # not scored yet: any answer
            return 0
        return int(env.deck.suits_idx[hand[-env.k]])


class AutoencodeExpert(_Privileged):
    """Watches (action ignored), then recites the dealt suits in reverse order."""

    def act(self, observation: Any) -> int:
        env = self._state
        if int(env.mode) != 0:  # Mode.WATCH: the action is not scored
            return 0
        return int(env.deck.suits_idx[env.deck["system"][-1]])


class CountRecallExpert(_Privileged):
    """Answers how many cards of the queried kind have been dealt so far."""

    def act(self, observation: Any) -> int:
        env = self._state
        return int(env.counts[env.query])


class CartPoleExpert(_Privileged):
    """Linear state feedback on the full cart-pole state (position, velocity, angle,
    angular velocity): push right when ``x + 1.5 x' + 18 th + 3 th'`` is positive.
    The gains were tuned by hand; the pole never falls within 400 steps."""

    _GAINS = np.array((1.0, 1.5, 18.0, 3.0))

    def act(self, observation: Any) -> int:
        state = np.asarray(self._state.state, dtype=np.float64)
        return int(float(self._GAINS @ state) > 0.0)


class PendulumExpert(_Privileged):
    """Energy-shaping swing-up plus a PD (LQR-like) balance near the top.

    gymnasium's pendulum follows ``th'' = 15 sin(th) + 3 u`` (th = 0 upright), so
    ``E = th'^2 / 2 + 15 cos(th)`` equals 15 at rest upright and ``dE/dt = 3 u th'``:
    away from the top we push along ``th'`` in proportion to the energy deficit; within
    0.4 rad of the top (and slow enough) we balance with ``u = -(12 th + 3 th')``.
    Torques are clipped to the action space [-2, 2].

    Not provably optimal: it averages 0.916 over 20 episodes and 0.910 over 1000
    (raw Pendulum return about -145; the best published Pendulum-v1 agents report about
    -140 to -150). A start hanging down costs ~0.22 for the unavoidable swing-up, so
    1.0 is not attainable on average.
    """

    def act(self, observation: Any) -> np.ndarray:
        theta, theta_dot = (float(v) for v in self._state.state)
        theta = (theta + math.pi) % (2.0 * math.pi) - math.pi
        if abs(theta) < 0.4 and abs(theta_dot) < 4.0:
            torque = -(12.0 * theta + 3.0 * theta_dot)
        else:
            energy = 0.5 * theta_dot**2 + 15.0 * math.cos(theta)
            direction = 1.0 if theta_dot >= 0.0 else -1.0
            torque = 2.0 * (15.0 - energy) * direction
        return np.array([min(2.0, max(-2.0, torque))], dtype=np.float32)


# Expert name per POPGym family; every difficulty of a family shares one expert.
POPGYM_EXPERT_NAMES: dict[str, str] = {
    "RepeatPrevious": "popgym-repeat-previous",
    "Autoencode": "popgym-autoencode",
    "CountRecall": "popgym-count-recall",
    "PositionOnlyCartPole": "popgym-position-only-cartpole",
    "PositionOnlyPendulum": "popgym-position-only-pendulum",
}


def expert_name_for_popgym(env_id: str) -> str:
    """Expert name for a ``popgym-<Family><Easy|Medium|Hard>-v0`` id."""
    name = env_id.removeprefix("popgym-").rsplit("-v", 1)[0]
    for difficulty in ("Easy", "Medium", "Hard"):
        if name.endswith(difficulty):
            family = name.removesuffix(difficulty)
            if family in POPGYM_EXPERT_NAMES:
                return POPGYM_EXPERT_NAMES[family]
    known = ", ".join(sorted(POPGYM_EXPERT_NAMES))
    raise LookupError(
        f"no privileged expert for {env_id!r}; supported families: {known} "
        "(ids look like popgym-RepeatPreviousEasy-v0)"
    )


def _register() -> None:
    factories: dict[str, type[_Privileged]] = {
        "popgym-repeat-previous": RepeatPreviousExpert,
        "popgym-autoencode": AutoencodeExpert,
        "popgym-count-recall": CountRecallExpert,
        "popgym-position-only-cartpole": CartPoleExpert,
        "popgym-position-only-pendulum": PendulumExpert,
    }
    for name, cls in factories.items():
        register_expert(name, cls)


_register()

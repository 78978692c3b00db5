"""Privileged controllers for POPGym's control tasks: the CartPole variants (position only,
velocity only, noisy position only) and the Pendulum variants (position only, noisy).

Each reads the full physical state the observations hide or blur; a memory model can
estimate that state from its observation history (differences of positions, sums of
velocities, averages of noisy readings), so the demonstrations are learnable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import PopGymExpert

__all__ = ["CartPoleExpert", "PendulumExpert"]


class CartPoleExpert(PopGymExpert):
    """Linear state feedback on the full cart-pole state (position, velocity, angle,
    angular velocity): push right when ``x + 1.5 x' + 18 th + 3 th'`` is positive.
    The gains were tuned by hand; the pole never falls within 600 steps."""

    _GAINS = np.array((1.0, 1.5, 18.0, 3.0))

    def act(self, observation: Any) -> int:
        state = np.asarray(self._state.state, dtype=np.float64)
        return int(float(self._GAINS @ state) > 0.0)


class PendulumExpert(PopGymExpert):
    """Energy-shaping swing-up plus a PD (LQR-like) balance near the top.

    gymnasium's pendulum follows ``th'' = 15 sin(th) + 3 u`` (th = 0 upright), so
    ``E = th'^2 / 2 + 15 cos(th)`` equals 15 at rest upright and ``dE/dt = 3 u th'``:
    away from the top we push along ``th'`` in proportion to the energy deficit; within
    0.4 rad of the top (and slow enough) we balance with ``u = -(12 th + 3 th')``.
    Torques are clipped to the action space [-2, 2].

    Not provably optimal (raw Pendulum return about -145 over 200 steps; the best
    published Pendulum-v1 agents report about -140 to -150). A start hanging down costs
    about 0.22 for the unavoidable swing-up, so 1.0 is not attainable on average, and
    the shorter Medium (150 steps) and Hard (100 steps) episodes pay it from less.
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

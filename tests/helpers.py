"""Toy memory task shared by the algorithm tests: recall a cue after a delay.

Observation ``[cue, flag, noise]``: cue is +-1 at t=0 only, flag is 1 at the decision step.
Actions: 0 wait, 1 "the cue was +1", 2 "the cue was -1". The episode ends at the decision with
reward 1 if it was right (``info["success"]``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

__all__ = ["CueRecallEnv", "cue_recall_dataset", "cue_recall_episode"]


def cue_recall_episode(delay: int, cue: int, rng: np.random.Generator) -> Episode:
    n = delay + 1
    obs = np.zeros((n, 3), np.float32)
    obs[0, 0] = cue
    obs[-1, 1] = 1.0
    obs[:, 2] = rng.integers(-1, 2, n)
    actions = np.zeros((n, 1), np.int64)
    actions[-1, 0] = 1 if cue > 0 else 2
    rewards = np.zeros((n, 1), np.float32)
    rewards[-1] = 1.0
    return Episode(obs, actions, rewards, True)


def cue_recall_dataset(
    n_episodes: int, min_delay: int, max_delay: int, seed: int = 0
) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    episodes = [
        cue_recall_episode(int(rng.integers(min_delay, max_delay + 1)), 1 if i % 2 else -1, rng)
        for i in range(n_episodes)
    ]
    return ReplayBuffer(
        InfiniteBuffer(), episodes=episodes, action_space=ActionSpace.DISCRETE, action_size=3
    )


class CueRecallEnv(gym.Env[np.ndarray, int]):
    def __init__(self, delay: int = 10):
        self.delay = delay
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, np.float32)
        if self._t == 0:
            obs[0] = self._cue
        obs[1] = float(self._t == self.delay)
        obs[2] = self.np_random.integers(-1, 2)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = 1 if self.np_random.integers(2) else -1
        self._t = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._t == self.delay:
            right = int(action) == (1 if self._cue > 0 else 2)
            return self._obs(), float(right), True, False, {"success": right}
        self._t += 1
        return self._obs(), 0.0, False, False, {}

"""Run an expert for one episode and record it as a Minari ``EpisodeBuffer``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from minari.data_collector import EpisodeBuffer

from ..envs.experts import Expert
from .writer import stack_space

__all__ = ["rollout_episode"]


def rollout_episode(
    env: gym.Env[Any, Any],
    expert: Expert,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    max_steps: int | None = None,
) -> EpisodeBuffer:
    """Reset ``env`` (with ``seed``/``options``), let ``expert`` act until the episode
    ends, and return the N+1 observations, N actions, rewards and flags.

    ``max_steps`` truncates episodes of environments without their own time limit.
    The seed and options are recorded as Minari episode metadata.
    """
    obs, _ = env.reset(seed=seed, options=options)
    expert.reset()
    observations = [obs]
    actions: list[Any] = []
    rewards: list[float] = []
    terminations: list[bool] = []
    truncations: list[bool] = []
    while True:
        action = expert.act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        if max_steps is not None and len(rewards) + 1 >= max_steps:
            truncated = True
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated and not terminated))
        if terminated or truncated:
            break
    return EpisodeBuffer(
        seed=seed,
        options=options,
        observations=stack_space(env.observation_space, observations),
        actions=stack_space(env.action_space, actions),
        rewards=rewards,
        terminations=terminations,
        truncations=truncations,
    )

"""Expert T-Maze datasets (vector, Dict or image observations) in Minari format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ..envs.experts import TMazeExpert
from ..envs.registration import TMAZE_ID, VISUAL_TMAZE_ID
from .rollout import rollout_episode
from .writer import DatasetWriter

__all__ = ["make_tmaze_dataset", "tmaze_episode_plan"]


def tmaze_episode_plan(
    n_episodes: int, max_corridor_length: int, seed: int
) -> list[tuple[int, int]]:
    """``(goal, corridor_length)`` per episode: goals balanced (exactly half each side
    when ``n_episodes`` is even, the odd one out random), corridors uniform in
    ``1..max_corridor_length``, in a random order fixed by ``seed``."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if max_corridor_length < 1:
        raise ValueError(f"max_corridor_length must be >= 1, got {max_corridor_length}")
    rng = np.random.default_rng(seed)
    half = n_episodes // 2
    goals = [1] * half + [-1] * half
    if n_episodes % 2:
        goals.append(int(rng.choice((-1, 1))))
    order = rng.permutation(n_episodes)
    lengths = rng.integers(1, max_corridor_length + 1, size=n_episodes)
    return [(goals[i], int(length)) for i, length in zip(order, lengths, strict=True)]


def make_tmaze_dataset(
    dataset_id: str,
    n_episodes: int,
    max_corridor_length: int,
    seed: int,
    visual: bool = False,
    *,
    env_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a Minari dataset of optimal T-Maze episodes and return its folder.

    Goals are balanced and corridors uniform in ``1..max_corridor_length``
    (:func:`tmaze_episode_plan`); each episode's goal and corridor are its Minari
    ``options`` and its reset seed is derived from ``seed``, so the dataset is a pure
    function of the arguments. The expert (:class:`~d3rlpy_elmur.envs.TMazeExpert`)
    succeeds in every episode; its return statistics are stored in the metadata under
    ``"elmur"``.

    Args:
        dataset_id: Minari id, e.g. ``"d3rlpy_elmur/tmaze-c28-v0"``.
        n_episodes: number of episodes (the paper used 2000).
        max_corridor_length: largest corridor (the paper used 28 = K*S - 2).
        seed: seed of the plan and of the environment noise.
        visual: record image observations (``d3rlpy_elmur/VisualTMaze-v0``).
        env_kwargs: extra environment arguments (e.g. ``observation_format="dict"``,
            ``frame_size=32``); the environment is made with ``corridor_length =
            max_corridor_length``.
        overwrite: replace an existing dataset with this id.
        progress: show a progress bar.
        extra_metadata: merged into the ``"elmur"`` metadata.
    """
    env_id = VISUAL_TMAZE_ID if visual else TMAZE_ID
    kwargs = {"corridor_length": max_corridor_length, **(env_kwargs or {})}
    env = gym.make(env_id, **kwargs)
    plan = tmaze_episode_plan(n_episodes, max_corridor_length, seed)
    episode_seeds = np.random.SeedSequence(seed).generate_state(n_episodes)
    expert = TMazeExpert()
    successes = 0
    with DatasetWriter(
        dataset_id,
        env=env,
        overwrite=overwrite,
        algorithm_name="TMazeExpert (optimal: remember the cue, go right, turn)",
        description=(
            f"{n_episodes} optimal {env_id} episodes, goals balanced, corridor length "
            f"uniform in 1..{max_corridor_length}, seed {seed}"
        ),
    ) as writer:
        for (goal, length), ep_seed in tqdm(
            list(zip(plan, episode_seeds, strict=True)),
            desc=dataset_id,
            disable=not progress,
            unit="ep",
        ):
            episode = rollout_episode(
                env,
                expert,
                seed=int(ep_seed),
                options={"goal": goal, "corridor_length": length},
            )
            successes += int(episode.terminations[-1] and episode.rewards[-1] > 0)
            writer.add_episode(episode)
        return writer.commit(
            {
                "env_id": env_id,
                "env_kwargs": kwargs,
                "expert": "tmaze",
                "seed": seed,
                "max_corridor_length": max_corridor_length,
                "expert_success_rate": successes / n_episodes,
                **(extra_metadata or {}),
            }
        )

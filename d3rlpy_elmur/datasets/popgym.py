"""Expert POPGym datasets (needs the ``popgym`` extra)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..envs.experts import make_expert
from ..envs.popgym_experts import (
    describe_popgym_expert,
    expert_name_for_popgym,
    make_popgym_env,
)
from .rollout import rollout_episode
from .writer import DatasetWriter

__all__ = ["make_popgym_dataset"]


def make_popgym_dataset(
    dataset_id: str,
    env_id: str,
    n_episodes: int,
    seed: int,
    *,
    overwrite: bool = False,
    progress: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a Minari dataset of expert episodes of a POPGym task.

    The expert is chosen from the task family (:func:`expert_name_for_popgym`); episode
    ``i`` is reset with a seed derived from ``seed``. The experts' mean return over the
    written episodes is stored in the metadata under ``"elmur"`` (key
    ``expert_return_mean``); :mod:`d3rlpy_elmur.envs.popgym_experts` documents how close
    to optimal each expert is.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    expert_name = expert_name_for_popgym(env_id)
    env = make_popgym_env(env_id)
    expert = make_expert(expert_name, env)
    episode_seeds = np.random.SeedSequence(seed).generate_state(n_episodes)
    version = importlib.metadata.version("popgym")
    with DatasetWriter(
        dataset_id,
        env=env,
        overwrite=overwrite,
        algorithm_name=describe_popgym_expert(expert_name),
        description=f"{n_episodes} expert episodes of {env_id}, seed {seed}",
        requirements=[f"popgym=={version}"],
    ) as writer:
        for ep_seed in tqdm(episode_seeds, desc=dataset_id, disable=not progress, unit="ep"):
            writer.add_episode(rollout_episode(env, expert, seed=int(ep_seed)))
        return writer.commit(
            {
                "env_id": env_id,
                "env_kwargs": {},
                "expert": expert_name,
                "seed": seed,
                **(extra_metadata or {}),
            }
        )

"""Seeding of the numpy vector envs (``TMazeVectorEnv``, ``RecallVectorEnv``) as gymnasium seeds
a ``SyncVectorEnv``, so that each sub-env draws what its single env would for the same seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium.utils import seeding

__all__ = ["reseed_sub_envs"]


def reseed_sub_envs(
    rngs: list[np.random.Generator | None],
    noise_index: np.ndarray,
    seed: int | Sequence[int | None] | None,
    stale: int,
) -> None:
    """Seeds the sub-envs' generators in place: an int seeds sub-env i with ``seed + i``, a
    sequence gives one seed per sub-env, None keeps each generator (making one where there is
    none). A new generator marks its buffered noise ``stale`` (``noise_index[i] = stale``), so
    the next draw comes from it."""
    n = len(rngs)
    if seed is None:
        seeds: Sequence[int | None] = [None] * n
    elif isinstance(seed, (int, np.integer)):
        seeds = [int(seed) + i for i in range(n)]
    else:
        seeds = list(seed)
        if len(seeds) != n:
            raise ValueError(f"got {len(seeds)} seeds for num_envs={n}")
    for i, s in enumerate(seeds):
        if s is not None or rngs[i] is None:
            rngs[i] = seeding.np_random(s)[0]
            noise_index[i] = stale

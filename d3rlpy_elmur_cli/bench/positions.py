"""Where in a segment does a policy miss the dataset's action?

A segment-recurrent model sees, at position p of a segment, the p earlier steps of that
segment directly and everything older only through memory, so a memory path that has not
learned yet shows as errors concentrated at the first positions. This replays dataset
episodes through a batched policy (the dataset's observations and rewards, whatever the
policy chose) and reports the error at each position ``t mod K``. For models whose tokens are
observations only (ELMURDT's default, BC-GRU, BC, CQL) that is teacher forcing; models that
also embed their previous action (d3rlpy's DT, ELMURDT with ``rtg_obs_act``) get their own,
so one error can carry into the next steps. For models without segments, ``t mod K`` only
groups the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from d3rlpy_elmur.evaluation.policies import BatchPolicy

__all__ = ["position_errors"]


def position_errors(
    policy: BatchPolicy, episodes: Sequence[Any], context_size: int
) -> dict[str, Any]:
    """Replays ``episodes`` (d3rlpy episodes, all at once) through ``policy``.

    Returns ``{"by_position": [K values], "overall": float, "steps": int, "metric": ...}``:
    the rate of actions that differ from the dataset's (integer actions) or the mean squared
    error (continuous actions), over the steps at each position ``t mod context_size`` (None
    for a position no episode reaches).
    """
    if context_size < 1:
        raise ValueError(f"context_size must be >= 1, got {context_size}")
    if not episodes:
        raise ValueError("no episodes to replay")
    lengths = np.array([episode.size() for episode in episodes])
    horizon = int(lengths.max())

    def padded(field: str) -> np.ndarray:  # [N, T, ...], each row's last step repeated
        rows = []
        for episode in episodes:
            values = np.asarray(getattr(episode, field))
            pad = np.repeat(values[-1:], horizon - len(values), axis=0)
            rows.append(np.concatenate([values, pad]))
        return np.stack(rows)

    observations, actions = padded("observations"), padded("actions")
    rewards = padded("rewards").reshape(len(episodes), horizon)
    discrete = np.issubdtype(actions.dtype, np.integer)
    errors = np.zeros((len(episodes), horizon))
    policy.reset(len(episodes))
    previous_reward = np.zeros(len(episodes))
    for t in range(horizon):
        predicted = np.asarray(policy.act(observations[:, t], previous_reward))
        target = actions[:, t].reshape(len(episodes), -1)
        predicted = predicted.reshape(target.shape)
        if discrete:
            errors[:, t] = (predicted != target).any(axis=1)
        else:
            errors[:, t] = ((predicted - target) ** 2).mean(axis=1)
        previous_reward = rewards[:, t]
    valid = np.arange(horizon)[None, :] < lengths[:, None]  # [N, T]
    position = np.arange(horizon) % context_size
    sums = np.bincount(position, np.where(valid, errors, 0.0).sum(0), minlength=context_size)
    counts = np.bincount(position, valid.sum(0), minlength=context_size)
    return {
        "metric": "error rate" if discrete else "mean squared error",
        "by_position": [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)],
        "overall": float(sums.sum() / counts.sum()),
        "steps": int(counts.sum()),
    }

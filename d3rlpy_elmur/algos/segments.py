"""Segment-recurrent replay: windows of S whole K-step segments of one episode, aligned to t=0.

d3rlpy's ``fit`` asks the dataset for ``sample_trajectory_batch(batch_size, context_size)``. The
view below answers with windows of ``(burn_in + S) * K`` steps instead, laid out per row as

    [ burn-in segments (no gradient) | S training segments ]

Segment boundaries sit at multiples of K from the episode's start, exactly where the stateful
wrapper writes memory at inference. A window may start at any aligned segment of a long episode;
up to ``burn_in`` preceding segments are included so memory at the window start is the episode's
real memory, not a reset (missing burn-in segments are fully padded, which leaves memory
unchanged). Past the episode's end rows are right-padded with ``masks == 0``.

All episodes are concatenated once into flat arrays, so sampling a batch is a few vectorised
gathers, with no Python loop over rows or steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from d3rlpy.dataset import ReplayBufferBase, TrajectoryMiniBatch

__all__ = ["SegmentRecurrentView", "segment_window_length"]


def segment_window_length(context_size: int, num_segments: int, burn_in: int) -> int:
    return (burn_in + num_segments) * context_size


class SegmentRecurrentView:
    """A replay-buffer view whose trajectory batches are segment-recurrent windows.

    Everything but ``sample_trajectory_batch`` is forwarded to the wrapped buffer, so d3rlpy's
    scalers, dataset info and logging see the real dataset.
    """

    def __init__(
        self,
        dataset: ReplayBufferBase,
        context_size: int,
        num_segments: int,
        burn_in: int,
        seed: int | None = None,
    ):
        episodes = list(dataset.episodes)
        if not episodes:
            raise ValueError("the dataset holds no episodes")
        self._dataset = dataset
        self.context_size = context_size
        self.num_segments = num_segments
        self.burn_in = burn_in
        self._rng = np.random.default_rng(seed)
        lengths = np.array([ep.size() for ep in episodes], dtype=np.int64)
        if (lengths <= 0).any():
            bad = int(np.argmin(lengths))
            raise ValueError(f"episode {bad} of the dataset has no steps")
        self._lengths = lengths
        self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self._observations = np.concatenate([ep.observations for ep in episodes])
        actions = np.concatenate([ep.actions for ep in episodes]).astype(np.float32)
        self._actions = actions.reshape(len(actions), -1)
        rewards = np.concatenate([ep.rewards for ep in episodes]).astype(np.float32)
        self._rewards = rewards.reshape(-1, 1)
        # returns-to-go include the current step's reward, as d3rlpy's slicer does
        rtg = [np.cumsum(ep.rewards[::-1].reshape(-1))[::-1] for ep in episodes]
        self._returns_to_go = np.concatenate(rtg).astype(np.float32).reshape(-1, 1)
        self._terminated = np.array([ep.terminated for ep in episodes], dtype=bool)

    @property
    def longest_episode(self) -> int:
        return int(self._lengths.max())

    @property
    def rng_state(self) -> dict[str, Any]:
        """The window sampler's generator state (checkpoints save and restore it)."""
        return dict(self._rng.bit_generator.state)

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def sample_trajectory_batch(self, batch_size: int, length: int) -> TrajectoryMiniBatch:
        """``length`` (d3rlpy passes context_size) is ignored: the window shape is fixed."""
        del length
        K, S, burn = self.context_size, self.num_segments, self.burn_in
        rng = self._rng
        # an episode in proportion to its length: a uniform step over the whole buffer
        episode = np.searchsorted(
            self._starts, rng.integers(0, self._lengths.sum(), batch_size), side="right"
        )
        episode -= 1
        n = self._lengths[episode]  # [B]
        n_segments = -(-n // K)
        first = (rng.random(batch_size) * np.maximum(n_segments - S + 1, 1)).astype(np.int64)
        # step index (in the episode) of every window position: [B, (burn + S) * K]
        offsets = np.arange((burn + S) * K) - burn * K
        t = first[:, None] * K + offsets[None, :]
        masks = (t >= 0) & (t < n[:, None])
        flat = np.where(masks, self._starts[episode][:, None] + t, 0)
        observations = self._observations[flat]
        observations = observations * masks.reshape(*masks.shape, *[1] * (observations.ndim - 2))
        last = masks & (t == n[:, None] - 1)
        terminals = last & self._terminated[episode][:, None]
        m = masks[..., None]
        return TrajectoryMiniBatch(
            observations=observations.astype(np.float32),
            actions=self._actions[flat] * m,
            rewards=self._rewards[flat] * m,
            returns_to_go=self._returns_to_go[flat] * m,
            terminals=terminals[..., None].astype(np.float32),
            timesteps=np.where(masks, t, 0).astype(np.float32),
            masks=masks.astype(np.float32),
            length=(burn + S) * K,
        )

"""Segment-recurrent replay: windows of S whole K-step segments of one episode, aligned to t=0.

d3rlpy's ``fit`` asks the dataset for ``sample_trajectory_batch(batch_size, context_size)``. The
view below answers with windows of ``(1 + S) * K`` steps instead, laid out per row as

    [ context segment (no gradient) | S training segments ]

Segment boundaries sit at multiples of K from the episode's start, exactly where the stateful
wrapper writes memory at inference. A window may start at any segment p of an episode; its
context segment is segment p - 1 (fully padded when p = 0). Past the episode's end rows are
right-padded with ``masks == 0``.

Where a window starts from is not in the steps themselves: the batch also names, per row, the
segment boundaries it crosses (``SegmentWindowBatch.boundaries``, indices into a table of
recurrent states kept by the algorithm, see ``replay_states``), and gives every step its real
previous action, also at the window's first step.

All episodes are concatenated once into flat arrays, so sampling a batch is a few vectorised
gathers, with no Python loop over rows or steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer, ReplayBufferBase, TrajectoryMiniBatch

from ..observations import map_observations

__all__ = ["SegmentRecurrentView", "SegmentWindowBatch", "segment_window_length"]


def segment_window_length(context_size: int, num_segments: int) -> int:
    """Steps of a training window: one context segment and S training segments."""
    return (1 + num_segments) * context_size


@dataclasses.dataclass(frozen=True)
class SegmentWindowBatch(TrajectoryMiniBatch):
    """A trajectory batch that also says where its rows lie in their episodes.

    Args:
        previous_actions: a_{t-1} of every step [B, T, A or 1], unscaled; zeros where
            ``has_previous`` is false (t = 0, or padding).
        has_previous: [B, T] bool.
        boundaries: [B, n] int64, the boundary-state index of the segment starts the rows
            cross: column s is the state before the row's segment s (the context segment is
            segment 0), and the last column the state after its last segment. -1 where that
            state is the episode's initial one (t = 0 or before) or lies past its end.
    """

    previous_actions: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    has_previous: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    boundaries: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


class SegmentRecurrentView(ReplayBuffer):
    """A replay buffer of the episodes of ``dataset`` whose trajectory batches are
    segment-recurrent windows.

    It is d3rlpy's ``ReplayBuffer`` over the same episode objects (not copied), with the
    dataset's picker, slicer and dataset info, so d3rlpy's scalers, dataset info and logging
    see exactly the episodes the windows come from (also for a mixed buffer, whose ``buffer``
    is only its primary part); only ``sample_trajectory_batch`` differs (d3rlpy's slicer cuts
    one row at a time and has no place for the boundary states a window starts from).
    """

    def __init__(
        self,
        dataset: ReplayBufferBase,
        context_size: int,
        num_segments: int,
        seed: int | None = None,
    ):
        episodes = list(dataset.episodes)
        if not episodes:
            raise ValueError("the dataset holds no episodes")
        lengths = np.array([ep.size() for ep in episodes], dtype=np.int64)
        if (lengths <= 0).any():
            bad = int(np.argmin(lengths))
            raise ValueError(f"episode {bad} of the dataset has no steps")
        info = dataset.dataset_info
        # d3rlpy's writer draws a sample observation from numpy's global generator: leave it
        # as the caller seeded it
        numpy_state = np.random.get_state()
        super().__init__(
            InfiniteBuffer(),
            transition_picker=dataset.transition_picker,
            trajectory_slicer=dataset.trajectory_slicer,
            episodes=episodes,
            observation_signature=info.observation_signature,
            action_signature=info.action_signature,
            reward_signature=info.reward_signature,
            action_space=info.action_space,
            action_size=info.action_size,
        )
        np.random.set_state(numpy_state)
        self.context_size = context_size
        self.num_segments = num_segments
        self._rng = np.random.default_rng(seed)
        self._lengths = lengths
        self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # boundary j of episode e (the state before its segment j) has index
        # boundary_starts[e] + j, for 0 <= j < its number of segments
        segments = -(-lengths // context_size)
        self._segments = segments
        self._boundary_starts = np.concatenate([[0], np.cumsum(segments)[:-1]])
        self.num_boundaries = int(segments.sum())
        # one flat array per observation part (tuple observations keep their parts)
        first = episodes[0].observations
        if isinstance(first, (list, tuple)):
            self._observations: np.ndarray | tuple[np.ndarray, ...] = tuple(
                np.concatenate([ep.observations[i] for ep in episodes]) for i in range(len(first))
            )
        else:
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

    def sample_trajectory_batch(self, batch_size: int, length: int) -> SegmentWindowBatch:
        """``length`` (d3rlpy passes context_size) is ignored: the window shape is fixed."""
        del length
        S = self.num_segments
        rng = self._rng
        # an episode in proportion to its length: a uniform step over the whole buffer
        episode = np.searchsorted(
            self._starts, rng.integers(0, self._lengths.sum(), batch_size), side="right"
        )
        episode -= 1
        n_segments = self._segments[episode]
        first = (rng.random(batch_size) * np.maximum(n_segments - S + 1, 1)).astype(np.int64)
        return self._windows(episode, first - 1, 1 + S)

    def episode_batches(self, rows: int) -> Iterator[SegmentWindowBatch]:
        """Every episode whole, from t = 0, ``rows`` episodes of similar length at a time
        (what a refresh of the boundary states runs)."""
        order = np.argsort(self._lengths, kind="stable")
        for chunk in np.array_split(order, -(-len(order) // rows)):
            segments = int(self._segments[chunk].max())
            yield self._windows(chunk, np.zeros(len(chunk), dtype=np.int64), segments)

    def _windows(
        self, episode: np.ndarray, first_segment: np.ndarray, segments: int
    ) -> SegmentWindowBatch:
        """Rows of ``segments`` whole segments of ``episode`` [B] from ``first_segment`` [B]
        (negative: fully padded segments before t = 0)."""
        K = self.context_size
        n = self._lengths[episode]  # [B]
        t = first_segment[:, None] * K + np.arange(segments * K)[None, :]  # [B, T]
        masks = (t >= 0) & (t < n[:, None])
        base = self._starts[episode][:, None]
        flat = np.where(masks, base + t, 0)

        def gather(part: np.ndarray) -> np.ndarray:
            out = part[flat]
            out = out * masks.reshape(*masks.shape, *[1] * (out.ndim - 2))
            return out.astype(np.float32)

        observations = map_observations(gather, self._observations)
        last = masks & (t == n[:, None] - 1)
        terminals = last & self._terminated[episode][:, None]
        m = masks[..., None]
        has_previous = masks & (t >= 1)
        previous = self._actions[np.where(has_previous, base + t - 1, 0)] * has_previous[..., None]
        j = first_segment[:, None] + np.arange(segments + 1)[None, :]  # [B, segments + 1]
        known = (j >= 1) & (j < self._segments[episode][:, None])
        boundaries = np.where(known, self._boundary_starts[episode][:, None] + j, -1)
        return SegmentWindowBatch(
            observations=observations,
            actions=self._actions[flat] * m,
            rewards=self._rewards[flat] * m,
            returns_to_go=self._returns_to_go[flat] * m,
            terminals=terminals[..., None].astype(np.float32),
            timesteps=np.where(masks, t, 0).astype(np.float32),
            masks=masks.astype(np.float32),
            length=segments * K,
            previous_actions=previous.astype(np.float32),
            has_previous=has_previous,
            boundaries=boundaries.astype(np.int64),
        )

"""Stateful inference for ELMURDT: one step at a time, memory carried across segments.

The encoder's step path keeps a key/value cache inside the current segment and writes memory
once at its end, so each ``predict`` costs the same at step 10 and at step 10^6 and nothing grows
with the episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from d3rlpy.algos.transformer.action_samplers import TransformerActionSampler
from d3rlpy.algos.transformer.base import StatefulTransformerWrapper
from d3rlpy.dataset import is_tuple_shape
from d3rlpy.dataset.utils import cast_tuple_shape
from d3rlpy.types import NDArray, Observation, Shape

from ..observations import map_observations

if TYPE_CHECKING:
    from .elmur_dt import ELMURDTBase

__all__ = ["ELMURStatefulWrapper", "check_observation"]


def check_observation(observation: Any, shape: Shape, batched: bool) -> Observation:
    """The observation as a float32 array of ``shape`` (after a batch axis when ``batched``);
    for a tuple shape, a tuple of such arrays, one per part.

    Raises TypeError for non-numeric input and ValueError for a wrong shape or NaN/inf.
    """
    if not is_tuple_shape(shape):
        return _check_array(observation, tuple(shape), batched)
    parts = cast_tuple_shape(shape)
    if not isinstance(observation, (list, tuple)) or len(observation) != len(parts):
        raise TypeError(
            f"observation is a {type(observation).__name__}; expected a tuple of "
            f"{len(parts)} arrays of shapes {[tuple(p) for p in parts]}"
        )
    return tuple(
        _check_array(part, tuple(part_shape), batched)
        for part, part_shape in zip(observation, parts, strict=True)
    )


def _check_array(observation: Any, shape: tuple[int, ...], batched: bool) -> np.ndarray:
    if (
        type(observation) is np.ndarray
        and observation.dtype == np.float32
        and observation.ndim == len(shape) + int(batched)
        and observation.shape[int(batched) :] == tuple(shape)
    ):
        # the common case (a gymnasium Box observation): only the finiteness check is left
        if not np.isfinite(observation).all():
            raise ValueError("observation contains NaN or inf")
        return observation
    try:
        array = np.asarray(observation)
    except Exception as exc:  # ragged sequences and the like
        raise TypeError(f"observation is not an array: {exc}") from exc
    if array.dtype.kind not in "biuf":  # complex, timedelta, strings, objects are not numbers here
        raise TypeError(f"observation has dtype {array.dtype}; expected real numbers")
    got = array.shape[1:] if batched else array.shape
    if tuple(got) != tuple(shape):
        raise ValueError(
            f"observation has shape {array.shape}; expected "
            f"{('(batch, ' + ', '.join(map(str, shape)) + ')') if batched else tuple(shape)}"
        )
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError("observation contains NaN or inf")
    return array


class ELMURStatefulWrapper(StatefulTransformerWrapper):
    """``predict(observation, reward) -> action``; ``reset()`` starts a new episode."""

    def __init__(
        self,
        algo: ELMURDTBase,
        target_return: float,
        action_sampler: TransformerActionSampler,
    ):
        super().__init__(algo, target_return, action_sampler)
        impl = algo.impl
        assert impl is not None
        self._impl = impl
        self._device = impl.device
        self._shape = impl.observation_shape
        self.reset()

    def reset(self) -> None:
        """Clears memory, caches and the step counter."""
        super().reset()
        self._state = self._impl.initial_step_state(1)
        self._step = 0
        self._previous_action: NDArray | int | None = None
        # Per-step inputs are written into these instead of allocating tensors every step
        # (the model copies what it keeps, so reusing them is safe).
        self._steps = torch.zeros(1, dtype=torch.long, device=self._device)
        self._rtg = torch.zeros(1, 1, device=self._device)
        width = 1 if self._impl.discrete else self._impl.action_size
        self._previous = torch.zeros(1, width, device=self._device)

    def predict(self, x: Observation, reward: float) -> NDArray | int:
        """Action for observation ``x``; ``reward`` is the reward of the previous step."""
        config = self._algo.config
        observation = map_observations(
            lambda part: torch.from_numpy(part).to(self._device)[None],
            check_observation(x, self._shape, batched=False),
        )
        if config.observation_scaler is not None:
            observation = config.observation_scaler.transform(observation)
        if not math.isfinite(reward):
            raise ValueError(f"reward is {reward}; expected a finite number")
        self._return_rest -= float(reward)
        rtg = self._rtg.fill_(self._return_rest)
        if config.reward_scaler is not None:
            rtg = config.reward_scaler.transform(rtg)
        previous = self._encode_previous_action()
        steps = self._steps.fill_(self._step)
        out, self._state = self._impl.step(observation, rtg, previous, steps, self._state)
        out = out[0] if out.device.type == "cpu" else out[0].cpu()
        action = self._action_sampler(out.numpy())
        self._previous_action = action  # in the model's (scaled) action space, as in training
        self._step += 1
        if config.action_scaler is not None and not self._impl.discrete:
            return config.action_scaler.reverse_transform_numpy(action)
        return action

    def _encode_previous_action(self) -> torch.Tensor:
        size = self._impl.action_size
        if self._impl.discrete:
            value = -1.0 if self._previous_action is None else float(self._previous_action)
            return self._previous.fill_(value)
        if self._previous_action is None:
            return self._previous.zero_()
        action = torch.as_tensor(self._previous_action, dtype=torch.float32)
        return self._previous.copy_(action.view(1, size))

    @property
    def step_count(self) -> int:
        """Steps taken in the current episode."""
        return self._step

    @property
    def recurrent_state(self) -> Mapping[str, torch.Tensor]:
        """The model's state now (memory, anchors, segment caches), for inspection: a read-only
        view of tensors the next ``predict`` updates in place."""
        return MappingProxyType(self._state)

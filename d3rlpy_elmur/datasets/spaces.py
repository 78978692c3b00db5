"""Observation and action conversion between gymnasium spaces and d3rlpy arrays.

The same functions serve the dataset loader and online evaluation, so a model always sees
the observation layout it was trained on:

- ``Box``: kept as stored; images (uint8 Box of rank 2 or 3) stay uint8 with their
  stored shape, every other Box becomes float32.
- ``Discrete(n, start)``: one-hot float32 of length n.
- ``MultiDiscrete(nvec)``: concatenated one-hots, float32 of length ``sum(nvec)``.
- ``MultiBinary``: flattened float32.
- ``Dict``: sub-observations flattened to 1-D float32 (images too) and concatenated in
  **sorted key order**.
- ``Tuple``: the same, in tuple order.

Actions: ``Discrete(n, start)`` -> int64 index in ``[0, n)`` (action size n);
``MultiDiscrete(nvec, start)`` -> one int64 index in ``[0, prod(nvec))`` (action size
``prod(nvec)``), the row-major (C-order) ravel of ``action - start`` over the flattened
``nvec``: for ``nvec = [rows, cols]`` the square ``(r, c)`` is index ``r * cols + c``
(:func:`ravel_actions`; :func:`unravel_action` inverts it for acting online);
``Box`` -> flattened float32 (action size ``prod(shape)``).
"""

from __future__ import annotations

import math
from typing import Any, cast

import gymnasium as gym
import numpy as np

from .errors import UnsupportedSpaceError

__all__ = [
    "action_size_of",
    "convert_actions",
    "convert_observation",
    "convert_observations",
    "flatten_observation_space",
    "is_discrete_action_space",
    "is_image_space",
    "ravel_actions",
    "unravel_action",
]


def is_image_space(space: gym.Space[Any]) -> bool:
    """A uint8 Box of rank 2 or 3: kept as an image, not flattened."""
    return (
        isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)
    )


def flatten_observation_space(space: gym.Space[Any]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one converted observation (see the module docstring)."""
    if isinstance(space, gym.spaces.Box):
        if is_image_space(space):
            return tuple(space.shape), np.dtype(np.uint8)
        return tuple(space.shape), np.dtype(np.float32)
    return (_flat_size(space),), np.dtype(np.float32)


def convert_observation(space: gym.Space[Any], observation: Any) -> np.ndarray:
    """Convert one observation from ``space`` to the d3rlpy array layout."""
    batch = convert_observations(space, _add_batch_axis(space, observation))
    return batch[0]


def convert_observations(space: gym.Space[Any], observations: Any) -> np.ndarray:
    """Convert a batch (leading axis N; Dict -> dict of arrays, Tuple -> tuple of
    arrays, as Minari returns them) into an array of shape ``(N, *shape)``.

    Raises ``ValueError`` naming the sub-space when a value lies outside a discrete space
    (a one-hot cannot represent it).
    """
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(observations)
        if arr.shape[1:] != space.shape:
            raise ValueError(f"expected shape (N, *{space.shape}), got {arr.shape}")
        if is_image_space(space):
            return arr.astype(np.uint8, copy=False)
        return arr.astype(np.float32, copy=False)
    return _flatten_batch(space, observations, path="")


def _flat_size(space: gym.Space[Any]) -> int:
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, gym.spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Dict):
        return sum(_flat_size(space.spaces[k]) for k in sorted(space.spaces))
    if isinstance(space, gym.spaces.Tuple):
        return sum(_flat_size(s) for s in space.spaces)
    raise UnsupportedSpaceError(
        f"cannot convert observations of space {space!r}: supported are Box, Discrete, "
        "MultiDiscrete, MultiBinary, Dict and Tuple"
    )


def _one_hot(values: np.ndarray, n: int, start: int, path: str) -> np.ndarray:
    index = np.asarray(values).astype(np.int64) - start
    if index.size and (index.min() < 0 or index.max() >= n):
        bad = np.asarray(values).reshape(-1)[(index.reshape(-1) < 0) | (index.reshape(-1) >= n)]
        raise ValueError(f"value {bad[0]} outside Discrete({n}, start={start}){_at(path)}")
    out = np.zeros((*index.shape, n), dtype=np.float32)
    np.put_along_axis(out, index[..., None], 1.0, axis=-1)
    return out


def _at(path: str) -> str:
    return f" at {path}" if path else ""


def _flatten_batch(space: gym.Space[Any], data: Any, path: str) -> np.ndarray:
    """(N, flat_size) float32 for any supported space."""
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(data)
        if arr.shape[1:] != space.shape:
            raise ValueError(f"expected shape (N, *{space.shape}){_at(path)}, got {arr.shape}")
        return arr.reshape(len(arr), -1).astype(np.float32)
    if isinstance(space, gym.spaces.Discrete):
        arr = np.asarray(data).reshape(-1)
        return _one_hot(arr, int(space.n), int(space.start), path)
    if isinstance(space, gym.spaces.MultiDiscrete):
        arr = np.asarray(data)
        nvec = np.asarray(space.nvec).reshape(-1)
        start = np.broadcast_to(np.asarray(space.start), space.nvec.shape).reshape(-1)
        arr = arr.reshape(len(arr), -1)
        parts = [
            _one_hot(arr[:, i], int(nvec[i]), int(start[i]), f"{path}[{i}]")
            for i in range(len(nvec))
        ]
        return np.concatenate(parts, axis=1)
    if isinstance(space, gym.spaces.MultiBinary):
        arr = np.asarray(data)
        return arr.reshape(len(arr), -1).astype(np.float32)
    if isinstance(space, gym.spaces.Dict):
        parts = [
            _flatten_batch(space.spaces[k], data[k], f"{path}.{k}" if path else k)
            for k in sorted(space.spaces)
        ]
        return np.concatenate(parts, axis=1)
    if isinstance(space, gym.spaces.Tuple):
        parts = [_flatten_batch(sub, data[i], f"{path}[{i}]") for i, sub in enumerate(space.spaces)]
        return np.concatenate(parts, axis=1)
    _flat_size(space)  # raises UnsupportedSpaceError
    raise AssertionError("unreachable")


def _add_batch_axis(space: gym.Space[Any], observation: Any) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _add_batch_axis(space.spaces[k], observation[k]) for k in space.spaces}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_add_batch_axis(sub, observation[i]) for i, sub in enumerate(space.spaces))
    return np.asarray(observation)[None]


def is_discrete_action_space(space: gym.Space[Any]) -> bool:
    """True for ``Discrete`` and ``MultiDiscrete`` (raveled to one index), False for
    ``Box``; anything else is unsupported."""
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return True
    if isinstance(space, gym.spaces.Box):
        return False
    raise UnsupportedSpaceError(
        f"d3rlpy needs Discrete, MultiDiscrete or Box actions, got {space!r}"
    )


def action_size_of(space: gym.Space[Any]) -> int:
    """d3rlpy's action size: n for ``Discrete(n)``, ``prod(nvec)`` for ``MultiDiscrete``,
    the flat size for ``Box``."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return math.prod(int(n) for n in space.nvec.reshape(-1))
    if is_discrete_action_space(space):
        return int(cast(gym.spaces.Discrete, space).n)
    return math.prod(cast(gym.spaces.Box, space).shape)


def _nvec_and_start(space: gym.spaces.MultiDiscrete) -> tuple[tuple[int, ...], np.ndarray]:
    nvec = tuple(int(n) for n in space.nvec.reshape(-1))
    start = np.broadcast_to(np.asarray(space.start), space.nvec.shape).reshape(-1)
    return nvec, start.astype(np.int64)


def ravel_actions(space: gym.spaces.MultiDiscrete, actions: Any) -> np.ndarray:
    """``(N,)`` int64 indices in ``[0, prod(nvec))`` of ``N`` actions of ``space`` (row-major
    ravel of ``action - start``, see the module docstring).

    Raises ``ValueError`` describing the first action outside ``space``.
    """
    nvec, start = _nvec_and_start(space)
    arr = np.asarray(actions)
    flat = arr.reshape(len(arr), -1)
    if flat.shape[1] != len(nvec):
        raise ValueError(f"expected actions of shape (N, *{space.shape}), got {arr.shape}")
    index = np.rint(flat.astype(np.float64)).astype(np.int64) - start
    valid = np.all((index + start == flat) & (index >= 0) & (index < np.array(nvec)), axis=1)
    if not np.all(valid):
        step = int(np.flatnonzero(~valid)[0])
        raise ValueError(f"action {flat[step].tolist()} at step {step} is outside {space}")
    return np.ravel_multi_index(tuple(index.T), nvec).astype(np.int64)


def unravel_action(space: gym.spaces.MultiDiscrete, index: Any) -> np.ndarray:
    """The action of ``space`` whose :func:`ravel_actions` index is ``index`` (a scalar)."""
    nvec, start = _nvec_and_start(space)
    coords = np.unravel_index(int(np.asarray(index).reshape(())), nvec)
    action = np.asarray(coords, dtype=np.int64) + start
    return action.reshape(space.shape).astype(space.dtype)


def convert_actions(space: gym.Space[Any], actions: Any) -> np.ndarray:
    """Actions as d3rlpy stores them: ``(N, 1)`` int64 indices or ``(N, size)`` float32.

    Raises ``ValueError`` describing the first action outside ``space``.
    """
    arr = np.asarray(actions)
    n = len(arr)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return ravel_actions(space, arr).reshape(n, 1)
    if is_discrete_action_space(space):
        assert isinstance(space, gym.spaces.Discrete)
        flat = arr.reshape(n, -1)
        if flat.shape[1] != 1:
            raise ValueError(f"expected one discrete action per step, got shape {arr.shape}")
        flat = flat[:, 0]
        index = np.rint(flat.astype(np.float64)).astype(np.int64)
        valid = (index == flat) & (index >= space.start) & (index < space.start + space.n)
        if not np.all(valid):
            step = int(np.flatnonzero(~valid)[0])
            raise ValueError(f"action {flat[step]!r} at step {step} is outside {space}")
        return (index - int(space.start)).reshape(n, 1)
    assert isinstance(space, gym.spaces.Box)
    values = arr.astype(np.float32).reshape(n, *space.shape)
    finite = np.isfinite(values)
    inside = finite & (values >= space.low) & (values <= space.high)
    if not np.all(inside | ~finite):
        step = int(np.flatnonzero(~np.all((inside | ~finite).reshape(n, -1), axis=1))[0])
        raise ValueError(f"action {values[step].tolist()} at step {step} is outside {space}")
    return values.reshape(n, -1)

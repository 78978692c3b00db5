"""Observations that are one array or a tuple of arrays (d3rlpy's tuple observations).

d3rlpy represents a tuple observation as a sequence of arrays, one per part, each with the
same leading (batch / time) axes. These helpers apply an operation part by part, so the
sampler, the loss and inference handle both layouts with one code path; ``check_observation``
and ``check_rewards`` validate what a caller gives at inference, for the stateful wrapper and
the ONNX policy alike. numpy only: the ONNX policy runs without torch and d3rlpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np

__all__ = ["check_observation", "check_rewards", "first_part", "map_observations"]

_A = TypeVar("_A")
_B = TypeVar("_B")


def map_observations(
    fn: Callable[[_A], _B], observations: _A | Sequence[_A]
) -> _B | tuple[_B, ...]:
    """``fn`` of the array, or the tuple of ``fn`` of every part."""
    if isinstance(observations, (list, tuple)):
        return tuple(fn(part) for part in observations)
    # mypy narrows the Union by isinstance, but not a TypeVar inside it
    return fn(cast(_A, observations))


def first_part(observations: _A | Sequence[_A]) -> _A:
    """The array, or the first part of a tuple (for its leading axes)."""
    if isinstance(observations, (list, tuple)):
        return observations[0]
    return cast(_A, observations)  # as above: a TypeVar is not narrowed


def check_observation(
    observation: Any, shape: Sequence[int] | Sequence[Sequence[int]], batched: bool
) -> np.ndarray | tuple[np.ndarray, ...]:
    """The observation as a float32 array of ``shape`` (after a batch axis when ``batched``);
    for a tuple shape (one shape per part), a tuple of such arrays, one per part.

    Raises TypeError for non-numeric input and ValueError for a wrong shape or NaN/inf.
    """
    if not isinstance(shape[0], (list, tuple)):  # d3rlpy's is_tuple_shape
        return _check_array(observation, tuple(cast(Sequence[int], shape)), batched)
    parts = cast(Sequence[Sequence[int]], shape)
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


def check_rewards(rewards: Any, n: int) -> np.ndarray:
    """The previous step's rewards of ``n`` rows ([n] or [n, 1]; a number for one row) as a
    float64 [n, 1] array. Raises ValueError for non-numbers, a wrong shape or NaN/inf."""
    try:
        array = np.asarray(rewards)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"dtype {array.dtype}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"reward is not a number ({exc}); expected real numbers") from exc
    if array.shape not in ((n,), (n, 1)) and not (n == 1 and array.shape == ()):
        raise ValueError(f"reward has shape {array.shape}; expected ({n},), one per row")
    if not np.isfinite(array).all():
        raise ValueError(f"reward is {array.tolist()}; expected finite numbers")
    return array.astype(np.float64).reshape(n, 1)

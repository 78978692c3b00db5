"""Observations that are one array or a tuple of arrays (d3rlpy's tuple observations).

d3rlpy represents a tuple observation as a sequence of arrays, one per part, each with the
same leading (batch / time) axes. These helpers apply an operation part by part, so the
sampler, the loss and inference handle both layouts with one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

__all__ = ["first_part", "map_observations"]

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

"""Observation/action conversion: one layout for datasets and online evaluation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from d3rlpy_elmur.datasets import (
    UnsupportedSpaceError,
    action_size_of,
    convert_actions,
    convert_observation,
    convert_observations,
    flatten_observation_space,
)

Box, Discrete, MultiDiscrete = gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete


def test_box_becomes_float32_and_images_stay_uint8() -> None:
    vec = Box(-1, 1, (3,), np.float64)
    assert flatten_observation_space(vec) == ((3,), np.dtype(np.float32))
    out = convert_observations(vec, np.ones((5, 3)))
    assert out.dtype == np.float32 and out.shape == (5, 3)
    image = Box(0, 255, (3, 8, 8), np.uint8)
    assert flatten_observation_space(image) == ((3, 8, 8), np.dtype(np.uint8))
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(convert_observations(image, frames), frames)


def test_discrete_is_one_hot_with_start() -> None:
    space = Discrete(3, start=-1)
    out = convert_observations(space, np.array([-1, 0, 1]))
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="outside Discrete"):
        convert_observations(space, np.array([2]))


def test_multidiscrete_is_concatenated_one_hots() -> None:
    space = MultiDiscrete([2, 3])
    assert flatten_observation_space(space) == ((5,), np.dtype(np.float32))
    out = convert_observations(space, np.array([[1, 2], [0, 0]]))
    assert out.tolist() == [[0, 1, 0, 0, 1], [1, 0, 1, 0, 0]]
    with pytest.raises(ValueError, match=r"\[1\]"):
        convert_observations(space, np.array([[0, 3]]))


def test_dict_uses_sorted_keys_and_tuple_keeps_order() -> None:
    # built from a list, the space keeps "b" before "a"; the conversion must still sort
    space = gym.spaces.Dict([("b", Box(0, 1, (2,))), ("a", Discrete(2))])
    assert list(space.spaces) == ["b", "a"]
    obs = {"b": np.array([[0.25, 0.5]]), "a": np.array([1])}
    assert convert_observations(space, obs).tolist() == [[0.0, 1.0, 0.25, 0.5]]
    tup = gym.spaces.Tuple((Discrete(2), Box(0, 1, (1,))))
    assert convert_observations(tup, (np.array([1]), np.array([[0.5]]))).tolist() == [
        [0.0, 1.0, 0.5]
    ]
    nested = gym.spaces.Dict({"x": tup, "y": MultiDiscrete([2])})
    assert flatten_observation_space(nested) == ((5,), np.dtype(np.float32))


def test_single_observation_matches_batch_row() -> None:
    space = gym.spaces.Dict(
        {"t": gym.spaces.Tuple((Discrete(3), MultiDiscrete([2, 2]))), "v": Box(-1, 1, (2,))}
    )
    space.seed(0)
    samples = [space.sample() for _ in range(5)]
    batch = {
        "t": (np.array([s["t"][0] for s in samples]), np.stack([s["t"][1] for s in samples])),
        "v": np.stack([s["v"] for s in samples]),
    }
    rows = convert_observations(space, batch)
    for row, sample in zip(rows, samples, strict=True):
        np.testing.assert_array_equal(convert_observation(space, sample), row)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1)), min_size=1, max_size=20))
def test_multidiscrete_one_hot_decodes_back(values: list[tuple[int, int]]) -> None:
    space = MultiDiscrete([4, 2])
    out = convert_observations(space, np.array(values))
    assert out[:, :4].argmax(axis=1).tolist() == [v[0] for v in values]
    assert out[:, 4:].argmax(axis=1).tolist() == [v[1] for v in values]
    assert np.all(out.sum(axis=1) == 2)


def test_unsupported_spaces_fail_clearly() -> None:
    with pytest.raises(UnsupportedSpaceError, match="Text"):
        flatten_observation_space(gym.spaces.Text(5))
    with pytest.raises(UnsupportedSpaceError, match="Discrete or Box"):
        action_size_of(gym.spaces.MultiBinary(2))  # MultiDiscrete is raveled instead


def test_actions() -> None:
    discrete = Discrete(5)
    assert action_size_of(discrete) == 5
    out = convert_actions(discrete, np.array([0, 4, 2]))
    assert out.dtype == np.int64 and out.tolist() == [[0], [4], [2]]
    assert convert_actions(Discrete(3, start=1), np.array([1, 3])).tolist() == [[0], [2]]
    with pytest.raises(ValueError, match="step 1"):
        convert_actions(discrete, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"1\.5"):
        convert_actions(discrete, np.array([1.5]))
    box = Box(-2, 2, (2,))
    assert action_size_of(box) == 2
    assert convert_actions(box, np.zeros((3, 2))).dtype == np.float32
    with pytest.raises(ValueError, match="step 2"):
        convert_actions(box, np.array([[0, 0], [1, 1], [0, 2.5]]))

"""Inference inputs, checked for the stateful wrapper and the ONNX policy alike (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from d3rlpy_elmur.observations import check_observation, check_rewards


def test_check_observation_converts_what_it_can_and_names_what_it_cannot() -> None:
    batch = check_observation([[0, 1, 2], [3, 4, 5]], (3,), batched=True)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.shape == (2, 3)
    one = np.zeros(3, np.float32)
    assert check_observation(one, (3,), batched=False) is one  # as it is: no copy
    parts = check_observation((np.zeros(3), [1.0, 2.0]), ((3,), (2,)), batched=False)
    assert [part.shape for part in parts] == [(3,), (2,)]
    expected = r"expected a tuple of 2 arrays of shapes \[\(3,\), \(2,\)\]$"
    for wrong, name in [(np.zeros(5), "ndarray"), ((np.zeros(3),), "tuple")]:
        with pytest.raises(TypeError, match=rf"^observation is a {name}; {expected}"):
            check_observation(wrong, ((3,), (2,)), batched=False)
    for nan in (np.array([0, np.nan, 0], np.float32), [0.0, np.inf, 0.0]):
        with pytest.raises(ValueError, match=r"^observation contains NaN or inf$"):
            check_observation(nan, (3,), batched=False)
    with pytest.raises(TypeError, match=r"^observation is not an array: "):
        check_observation([[0.0], [0.0, 1.0]], (2,), batched=True)
    with pytest.raises(
        ValueError, match=r"^observation has shape \(3,\); expected \(batch, 2, 3\)$"
    ):
        check_observation(np.zeros(3), (2, 3), batched=True)
    with pytest.raises(ValueError, match=r"^observation has shape \(4,\); expected \(3,\)$"):
        check_observation(np.zeros(4), (3,), batched=False)


def test_check_rewards_takes_one_finite_number_per_row() -> None:
    for rewards in ([0.5, 1], np.array([[0.5], [1.0]], np.float32), (0.5, True)):
        got = check_rewards(rewards, 2)
        assert got.dtype == np.float64 and got.shape == (2, 1) and got[0, 0] == 0.5
    assert check_rewards(0.25, 1).tolist() == [[0.25]]  # one row: a number
    for wrong in (0.25, [0.0, 1.0, 2.0], np.zeros((2, 2)), np.zeros((1, 2))):
        with pytest.raises(
            ValueError, match=r"^reward has shape .*; expected \(2,\), one per row$"
        ):
            check_rewards(wrong, 2)
    for bad in ([0.0, np.nan], [np.inf, 0.0]):
        with pytest.raises(ValueError, match=r"^reward is \[.*\]; expected finite numbers$"):
            check_rewards(bad, 2)
    for not_numbers in ("a", [None, 1.0], [[0.0], [0.0, 1.0]], 1 + 2j):
        with pytest.raises(ValueError, match=r"^reward is not a number"):
            check_rewards(not_numbers, 1 if isinstance(not_numbers, (str, complex)) else 2)

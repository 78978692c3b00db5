"""MultiDiscrete actions (MineSweeper's and Battleship's board squares): raveled to one
Discrete index by the loader, unraveled back by the evaluation env, end to end."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from d3rlpy.constants import ActionSpace
from d3rlpy.logging import NoopAdapterFactory

import d3rlpy_elmur.extras
from d3rlpy_elmur import DiscreteELMURDTConfig, evaluate
from d3rlpy_elmur.datasets import (
    action_size_of,
    build_recipe,
    convert_actions,
    load_minari,
    open_minari,
    ravel_actions,
    unravel_action,
)
from d3rlpy_elmur.evaluation import RaveledActions, check_env_id, make_eval_env
from d3rlpy_elmur.extras import MissingExtraError
from d3rlpy_elmur.models import ELMURFactory

MultiDiscrete = gym.spaces.MultiDiscrete
MINESWEEPER = "popgym-MineSweeperEasy-v0"


@pytest.mark.parametrize(
    "space",
    [
        MultiDiscrete([4, 4]),
        MultiDiscrete([3, 5, 2]),
        MultiDiscrete([7]),
        MultiDiscrete([[2, 3], [4, 1]]),  # a 2-D nvec: raveled over its flattened entries
        MultiDiscrete([3, 4], start=[-1, 2]),
    ],
)
def test_ravel_and_unravel_round_trip(space: gym.spaces.MultiDiscrete) -> None:
    size = action_size_of(space)
    assert size == int(np.prod(space.nvec))
    actions = np.stack([unravel_action(space, i) for i in range(size)])
    assert all(space.contains(a) for a in actions)
    np.testing.assert_array_equal(ravel_actions(space, actions), np.arange(size))
    assert convert_actions(space, actions).tolist() == [[i] for i in range(size)]


def test_ravel_is_row_major_and_rejects_actions_outside() -> None:
    board = MultiDiscrete([4, 5])
    assert ravel_actions(board, np.array([[0, 0], [1, 2], [3, 4]])).tolist() == [0, 7, 19]
    with pytest.raises(ValueError, match="step 1"):
        convert_actions(board, np.array([[0, 0], [4, 0]]))
    with pytest.raises(ValueError, match="shape"):
        convert_actions(board, np.array([0, 1, 2]))


class _Board(gym.Env[np.ndarray, np.ndarray]):
    """Records the squares it is stepped with."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
        self.action_space = MultiDiscrete([3, 4])
        self.squares: list[list[int]] = []

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.action_space.contains(action)
        self.squares.append(action.tolist())
        return np.zeros(1, np.float32), 0.0, False, False, {}


def test_wrapper_acts_on_the_raveled_index() -> None:
    board = _Board()
    env = RaveledActions(board)
    assert env.action_space == gym.spaces.Discrete(12)
    env.reset()
    for index in (0, 6, np.int64(11)):
        env.step(index)
    assert board.squares == [[0, 0], [1, 2], [2, 3]]


def test_missing_mazelib_is_named_for_labyrinth_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("popgym")
    labyrinth = "popgym-LabyrinthEscapeEasy-v0"
    monkeypatch.setattr(d3rlpy_elmur.extras, "available", lambda module: module != "mazelib")
    monkeypatch.delitem(gym.registry, labyrinth, raising=False)  # as popgym without mazelib
    with pytest.raises(MissingExtraError, match=r"mazelib.*d3rlpy-elmur\[popgym\]"):
        check_env_id(labyrinth)


def test_minesweeper_loads_trains_and_evaluates(minari_root: Path) -> None:
    pytest.importorskip("popgym")
    with warnings.catch_warnings():  # 4 episodes miss the recipe's 3000-episode mean
        warnings.simplefilter("ignore")
        build_recipe("popgym-minesweeper-easy", n_episodes=4)
    dataset_id = "d3rlpy_elmur/popgym-minesweeper-easy-v0"
    stored = open_minari(dataset_id)
    assert stored.action_space == MultiDiscrete([4, 4])
    buffer = load_minari(dataset_id)
    assert buffer.dataset_info.action_space == ActionSpace.DISCRETE
    assert buffer.dataset_info.action_size == 16
    for episode, raw in zip(buffer.episodes, stored.iterate_episodes(), strict=True):
        assert episode.actions.dtype == np.int64
        rows, cols = raw.actions[:, 0], raw.actions[:, 1]
        np.testing.assert_array_equal(episode.actions[:, 0], rows * 4 + cols)

    algo = DiscreteELMURDTConfig(
        context_size=2,
        num_segments=1,
        embed_dim=16,
        num_heads=2,
        batch_size=4,
        sequence_encoder=ELMURFactory(memory_slots=2),
    ).create()
    algo.fit(buffer, n_steps=2, show_progress=False, logger_adapter=NoopAdapterFactory())
    result = evaluate(algo, MINESWEEPER, n_episodes=2, seed=0)
    assert result["episodes"] == 2 and np.isfinite(result["return_mean"])
    venv = make_eval_env(MINESWEEPER, 2)
    assert venv.single_action_space == gym.spaces.Discrete(16)
    venv.close()

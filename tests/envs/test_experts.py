"""Expert registry and the observation parsing of the T-Maze expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import d3rlpy_elmur  # noqa: F401
from d3rlpy_elmur.envs import (
    DOWN,
    EXPERTS,
    LEFT,
    RIGHT,
    UP,
    TMazeExpert,
    expert_name_for_popgym,
    make_expert,
    register_expert,
    tmaze_cue_and_junction,
)


def test_tmaze_expert_remembers_the_cue_only_from_observations() -> None:
    expert = TMazeExpert()
    expert.reset()
    assert expert.act(np.array([0, -1, 0, 1], np.float32)) == RIGHT
    assert expert.act(np.array([0, 0, 0, -1], np.float32)) == RIGHT
    assert expert.act(np.array([0, 0, 1, 0], np.float32)) == DOWN
    expert.reset()  # a new episode forgets the cue
    assert expert.act(np.array([0, 0, 0, 0], np.float32)) == LEFT
    assert expert.act(np.array([0, 1, 0, 0], np.float32)) == RIGHT
    assert expert.act(np.array([0, 0, 1, 0], np.float32)) == UP


def test_cue_parsing_for_every_format() -> None:
    assert tmaze_cue_and_junction(np.array([0, 1, 0, 0])) == (1.0, False)
    assert tmaze_cue_and_junction(np.array([0.0, -1.0])) == (-1.0, False)
    assert tmaze_cue_and_junction(np.array([1.0, 1.0])) == (0.0, True)  # y, not a cue
    obs = {"cue": np.array([-1.0]), "noise": 1, "position": np.array([0.0, 1.0])}
    assert tmaze_cue_and_junction(obs) == (-1.0, True)


def test_registry() -> None:
    env = gym.make("d3rlpy_elmur/TMaze-v0")
    assert isinstance(make_expert("tmaze", env), TMazeExpert)
    assert {"tmaze", "popgym-repeat-previous", "popgym-position-only-pendulum"} <= set(EXPERTS)
    with pytest.raises(LookupError, match="unknown expert 'nope'"):
        make_expert("nope", env)
    with pytest.raises(ValueError, match="already registered"):
        register_expert("tmaze", lambda env: TMazeExpert())


def test_popgym_expert_names() -> None:
    assert expert_name_for_popgym("popgym-RepeatPreviousHard-v0") == "popgym-repeat-previous"
    assert (
        expert_name_for_popgym("popgym-PositionOnlyCartPoleMedium-v0")
        == "popgym-position-only-cartpole"
    )
    # a family popgym does not register (its bandit that drifts) has no expert
    with pytest.raises(LookupError, match="NonstationaryBandit"):
        expert_name_for_popgym("popgym-NonstationaryBanditEasy-v0")

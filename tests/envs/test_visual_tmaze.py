"""Visual T-Maze: frames carry exactly the vector observation, cue colour at t = 0 only."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import d3rlpy_elmur  # noqa: F401  (registers the environments)
from d3rlpy_elmur.envs import (
    DOWN,
    RIGHT,
    UP,
    TMazeExpert,
    decode_tmaze_frame,
    render_tmaze_frame,
)

VISUAL = "d3rlpy_elmur/VisualTMaze-v0"


@pytest.mark.parametrize("size", [16, 32])
def test_decode_inverts_render_for_every_observation(size: int) -> None:
    for y, hint, flag, noise in itertools.product((-1, 0, 1), (-1, 0, 1), (0, 1), (-1, 0, 1)):
        frame = render_tmaze_frame(y, hint, flag, noise, size)
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
        assert decode_tmaze_frame(frame).tolist() == [y, hint, flag, noise]
        chw = np.moveaxis(frame, -1, 0)
        assert decode_tmaze_frame(chw).tolist() == [y, hint, flag, noise]


@pytest.mark.parametrize("goal", [1, -1])
def test_frames_show_cue_then_corridor_then_junction(goal: int) -> None:
    length = 4
    env = gym.make(VISUAL, corridor_length=length)
    assert env.observation_space == gym.spaces.Box(0, 255, (3, 32, 32), np.uint8)
    obs, _ = env.reset(seed=0, options={"goal": goal})
    assert obs.shape == (3, 32, 32) and obs.dtype == np.uint8
    cue_band = obs[:, :8]
    colour = (0, 255, 0) if goal == 1 else (255, 0, 0)
    assert np.all(cue_band == np.array(colour, dtype=np.uint8)[:, None, None])
    for t in range(1, length + 1):
        obs, *_ = env.step(RIGHT)
        _y, hint, flag, _noise = decode_tmaze_frame(obs)
        assert hint == 0 and np.all(obs[:, :8] == 0), t  # cue gone
        assert flag == (1.0 if t == length else 0.0)
    obs, reward, terminated, *_ = env.step(UP if goal == 1 else DOWN)
    assert terminated and reward == 1.0
    assert decode_tmaze_frame(obs)[0] == goal


def test_frames_match_the_vector_task_step_by_step() -> None:
    vector = gym.make("d3rlpy_elmur/TMaze-v0", corridor_length=5)
    visual = gym.make(VISUAL, corridor_length=5, channels_first=False)
    v_obs, _ = vector.reset(seed=11, options={"goal": -1})
    i_obs, _ = visual.reset(seed=11, options={"goal": -1})
    assert i_obs.shape == (32, 32, 3)
    for action in [RIGHT, UP, RIGHT, RIGHT, RIGHT, RIGHT, DOWN]:  # UP: wall
        assert decode_tmaze_frame(i_obs).tolist() == v_obs.tolist()
        v_obs, v_r, v_term, v_trunc, _ = vector.step(action)
        i_obs, i_r, i_term, i_trunc, _ = visual.step(action)
        assert (v_r, v_term, v_trunc) == (i_r, i_term, i_trunc)
    assert v_term and v_r == 1.0


def test_expert_solves_the_visual_task() -> None:
    env = gym.make(VISUAL, corridor_length=12)
    expert = TMazeExpert()
    for goal in (1, -1):
        obs, _ = env.reset(seed=goal + 1, options={"goal": goal})
        expert.reset()
        while True:
            obs, reward, terminated, truncated, info = env.step(expert.act(obs))
            if terminated or truncated:
                break
        assert info["success"] and reward == 1.0


def test_frame_size_is_validated() -> None:
    with pytest.raises(ValueError, match="frame_size"):
        gym.make(VISUAL, frame_size=10)

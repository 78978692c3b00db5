"""T-Maze: docs/design.md §3, point by point, plus the Memory-RL options."""

from __future__ import annotations

import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

import d3rlpy_elmur  # noqa: F401  (registers the environments)
from d3rlpy_elmur.envs import DOWN, LEFT, RIGHT, UP, TMazeEnv, TMazeExpert

TMAZE = "d3rlpy_elmur/TMaze-v0"


def make(length: int = 5, **kwargs: object) -> gym.Env:
    return gym.make(TMAZE, corridor_length=length, **kwargs)


def run(env: gym.Env, actions: list[int]) -> list[tuple]:
    return [env.step(a) for a in actions]


def test_registration_has_string_entry_point_and_no_time_limit() -> None:
    spec = gym.spec(TMAZE)
    assert spec.entry_point == "d3rlpy_elmur.envs.tmaze:TMazeEnv"
    assert spec.max_episode_steps is None
    env = make(3)
    wrapper = env
    while isinstance(wrapper, gym.Wrapper):
        assert not isinstance(wrapper, gym.wrappers.TimeLimit)
        wrapper = wrapper.env
    assert isinstance(env.unwrapped, TMazeEnv)
    assert env.action_space == gym.spaces.Discrete(4)
    assert env.observation_space.shape == (4,)
    assert env.observation_space.dtype == np.float32


@pytest.mark.parametrize("goal", [1, -1])
def test_observation_at_t0_shows_the_cue(goal: int) -> None:
    env = make(5)
    obs, info = env.reset(seed=0, options={"goal": goal})
    assert obs.dtype == np.float32
    assert obs[0] == 0.0  # y
    assert obs[1] == goal  # hint
    assert obs[2] == 0.0  # not at the junction
    assert obs[3] in (-1.0, 0.0, 1.0)
    assert env.unwrapped.goal == goal
    assert info["corridor_length"] == 5


def test_corridor_hides_the_cue_and_flags_only_the_junction() -> None:
    length = 6
    env = make(length)
    env.reset(seed=1, options={"goal": 1})
    for t in range(1, length + 1):
        obs, reward, terminated, truncated, info = env.step(RIGHT)
        assert obs[0] == 0.0 and obs[1] == 0.0, t
        assert obs[2] == (1.0 if t == length else 0.0), t
        assert reward == 0.0 and not terminated and not truncated
        assert "success" not in info
    assert env.unwrapped.position == (length, 0)


def test_wall_moves_leave_the_agent_in_place() -> None:
    length = 4
    env = make(length)
    env.reset(seed=0, options={"goal": 1})
    # left at the start, up/down in the corridor: walls
    for action in (LEFT, UP, DOWN):
        obs, reward, terminated, truncated, _ = env.step(action)
        assert env.unwrapped.position == (0, 0)
        assert not terminated and not truncated and reward == 0.0
        assert obs[1] == 0.0  # still on the cue cell, but the cue shows at t = 0 only
    env.reset(seed=0, options={"goal": 1, "corridor_length": length})
    run(env, [RIGHT] * length)
    obs, *_ = env.step(RIGHT)  # right at the junction: wall
    assert env.unwrapped.position == (length, 0)
    assert obs[2] == 1.0
    env.step(LEFT)  # back into the corridor is allowed
    assert env.unwrapped.position == (length - 1, 0)


@pytest.mark.parametrize("goal", [1, -1])
@pytest.mark.parametrize("turn", [UP, DOWN])
def test_termination_and_reward_at_the_goal_cells(goal: int, turn: int) -> None:
    length = 3
    env = make(length)
    env.reset(seed=0, options={"goal": goal})
    run(env, [RIGHT] * length)
    obs, reward, terminated, truncated, info = env.step(turn)
    correct = (turn == UP) == (goal == 1)
    assert terminated and not truncated
    assert reward == (1.0 if correct else 0.0)
    assert info["success"] == correct
    assert obs[0] == (1.0 if turn == UP else -1.0)
    with pytest.raises(RuntimeError):
        env.step(RIGHT)


@pytest.mark.parametrize("length", [1, 2, 7])
def test_truncation_after_exactly_L_plus_2_steps(length: int) -> None:
    env = make(length)
    env.reset(seed=0, options={"goal": 1})
    for t in range(1, length + 2):
        _, reward, terminated, truncated, _ = env.step(LEFT)
        assert not terminated and not truncated, t
    _, reward, terminated, truncated, info = env.step(LEFT)
    assert truncated and not terminated
    assert reward == 0.0
    assert info["success"] is False
    assert env.unwrapped.elapsed_steps == length + 2


def test_reaching_the_goal_on_the_last_allowed_step_terminates() -> None:
    length = 3
    env = make(length)
    env.reset(seed=0, options={"goal": -1})
    run(env, [RIGHT] * length + [RIGHT])  # one wasted step at the junction
    _, reward, terminated, truncated, info = env.step(DOWN)  # step L + 2
    assert terminated and not truncated and reward == 1.0 and info["success"]


def test_noise_is_uniform_and_seeded() -> None:
    env = make(10**6)
    obs, _ = env.reset(seed=3)
    noise = [obs[3]] + [env.step(LEFT)[0][3] for _ in range(6000)]
    values, counts = np.unique(noise, return_counts=True)
    assert values.tolist() == [-1.0, 0.0, 1.0]
    assert np.all(np.abs(counts / len(noise) - 1 / 3) < 0.03)
    again = make(10**6)
    obs, _ = again.reset(seed=3)
    assert [obs[3]] + [again.step(LEFT)[0][3] for _ in range(6000)] == noise
    obs, _ = again.reset(seed=4)
    assert [obs[3]] + [again.step(LEFT)[0][3] for _ in range(6000)] != noise


def test_goal_side_is_uniform_at_reset() -> None:
    env = make(2)
    goals = []
    for seed in range(400):
        obs, _ = env.reset(seed=seed)
        goals.append(obs[1])
    assert set(goals) == {-1.0, 1.0}
    assert abs(np.mean(np.asarray(goals) == 1.0) - 0.5) < 0.1


def test_reset_option_changes_corridor_for_one_episode() -> None:
    env = make(10)
    env.reset(seed=0, options={"corridor_length": 3})
    assert env.unwrapped.horizon == 5
    obs = run(env, [RIGHT] * 3)[-1][0]
    assert obs[2] == 1.0
    env.reset(seed=0)
    assert env.unwrapped.corridor_length == 10 and env.unwrapped.horizon == 12


def test_bad_arguments_are_rejected() -> None:
    env = make(3)
    with pytest.raises(ValueError, match="goal"):
        env.reset(options={"goal": 0})
    with pytest.raises(ValueError, match="corridor_length"):
        env.reset(options={"corridor_length": 0})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(4)
    with pytest.raises(ValueError, match="action"):
        env.step(1.5)
    env.step(np.int64(RIGHT))  # numpy scalars and 1-element arrays are fine
    env.step(np.array([RIGHT]))
    with pytest.raises(ValueError):
        TMazeEnv(corridor_length=0)
    with pytest.raises(ValueError):
        TMazeEnv(variant="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TMazeEnv(penalty=0.5)


def rollout(env: gym.Env, goal: int, **options: int) -> tuple[float, int, dict]:
    expert = TMazeExpert()
    expert.reset()
    obs, _ = env.reset(seed=goal + 7, options={"goal": goal, **options})
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        total += float(reward)
        steps += 1
        if terminated or truncated:
            return total, steps, info


@pytest.mark.parametrize("length", [1, 2, 5, 28, 90, 1000])
def test_expert_succeeds_at_every_length(length: int) -> None:
    env = make(length)
    for goal in (1, -1, 1, -1):
        total, steps, info = rollout(env, goal)
        assert info["success"] and total == 1.0
        assert steps == length + 1  # optimal: L rights and a turn


def test_long_episode_runs_in_constant_memory_and_time() -> None:
    length = 10**5 - 2  # T = L + 2 = 10^5
    env = make(length)
    env.reset(seed=0, options={"goal": -1})
    env.step(RIGHT)  # warm-up: first-step checks, noise block
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(length - 2):
        env.step(RIGHT)
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert retained < 64 * 1024  # nothing accumulates per step
    env.step(RIGHT)
    _, reward, terminated, _, info = env.step(DOWN)
    assert terminated and reward == 1.0 and info["success"]

    # the whole 10^5-step episode with the expert (its speed: benchmarks/, not a test)
    _total, steps, info = rollout(env, 1)
    assert info["success"] and steps == length + 1


# ------------------------------------------------------------------ variants
def test_active_variant_hides_the_cue_one_cell_left() -> None:
    length = 4
    env = make(length, variant="active")
    obs, _ = env.reset(seed=0, options={"goal": -1})
    assert obs[1] == 0.0 and env.unwrapped.position == (1, 0)
    obs, *_ = env.step(LEFT)
    assert obs[1] == -1.0  # the cue, on the first visit only
    obs, *_ = env.step(LEFT)  # wall; second step on the cue cell
    assert obs[1] == 0.0
    assert env.unwrapped.horizon == length + 4
    total, steps, info = rollout(env, -1)
    assert info["success"] and total == 1.0 and steps == length + 3


def test_ambiguous_observation_is_memory_rl_two_floats() -> None:
    length = 3
    env = make(length, ambiguous=True)
    assert env.observation_space.shape == (2,)
    obs, _ = env.reset(seed=0, options={"goal": 1})
    assert obs.tolist() == [0.0, 1.0]
    for _ in range(length - 1):
        assert env.step(RIGHT)[0].tolist() == [0.0, 0.0]
    assert env.step(RIGHT)[0].tolist() == [1.0, 0.0]
    obs, reward, terminated, *_ = env.step(UP)
    assert obs.tolist() == [1.0, 1.0] and reward == 1.0 and terminated
    total, _, info = rollout(env, -1)
    assert info["success"] and total == 1.0


def test_penalty_applies_when_lagging_behind() -> None:
    length = 4
    env = make(length, penalty=-1 / length)
    env.reset(seed=0, options={"goal": 1})
    assert env.step(RIGHT)[1] == 0.0  # on schedule
    assert env.step(LEFT)[1] == pytest.approx(-0.25)  # x = 0 < t = 2
    # the optimal policy is never penalised
    total, _, info = rollout(env, 1)
    assert total == 1.0 and info["success"]


def test_dict_observation_format() -> None:
    env = make(3, observation_format="dict")
    assert isinstance(env.observation_space, gym.spaces.Dict)
    obs, _ = env.reset(seed=0, options={"goal": -1})
    assert obs["cue"].tolist() == [-1.0]
    assert obs["noise"] in (0, 1, 2)
    assert obs["position"].tolist() == [0.0, 0.0]
    assert env.observation_space.contains(obs)
    total, _, info = rollout(env, 1)
    assert info["success"] and total == 1.0

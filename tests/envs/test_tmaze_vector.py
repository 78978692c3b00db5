"""TMazeVectorEnv: the same transitions as SyncVectorEnv over TMazeEnv, batched in numpy."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from d3rlpy_elmur.envs import (
    DOWN,
    RIGHT,
    TMAZE_ID,
    UP,
    TMazeEnv,
    TMazeVectorEnv,
    balanced_goal_options,
)
from d3rlpy_elmur.models import ELMURFactory

FIELDS = ["obs", "reward", "terminated", "truncated"]


def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    # mostly right, so that episodes reach the junction and terminate as well as truncate
    return rng.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1])


def assert_same_infos(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
        assert np.asarray(got[key]).dtype == np.asarray(value).dtype, key


@pytest.mark.parametrize("kwargs", [{}, {"penalty": -0.25, "goal_reward": 2.0}, {"noise": False}])
def test_matches_sync_vector_env_step_by_step_with_autoreset(kwargs: dict[str, Any]) -> None:
    n, length = 7, 3
    ref = gym.vector.SyncVectorEnv(
        [lambda: TMazeEnv(corridor_length=length, **kwargs) for _ in range(n)]
    )
    venv = TMazeVectorEnv(n, corridor_length=length, **kwargs)
    rng = np.random.default_rng(0)
    for seed, options in [(5, None), ([11, 12, 13, 14, 15, 16, 17], {"goal": -1}), (None, None)]:
        want_obs, want_info = ref.reset(seed=seed, options=options)
        got_obs, got_info = venv.reset(seed=seed, options=options)
        np.testing.assert_array_equal(got_obs, want_obs)
        assert got_obs.dtype == np.float32
        assert_same_infos(got_info, want_info)
        ended = 0
        for _ in range(60):
            actions = random_actions(rng, n)
            want = ref.step(actions)
            got = venv.step(actions)
            for g, w, name in zip(got[:4], want[:4], FIELDS, strict=True):
                np.testing.assert_array_equal(g, w, err_msg=name)
                assert g.dtype == w.dtype, name
            assert_same_infos(got[4], want[4])
            ended += int((want[2] | want[3]).sum())
        assert ended > n  # both autoreset and several episodes per sub-env were exercised
    ref.close()


def test_noise_matches_tmaze_env_across_block_refills() -> None:
    n = 3
    venv = TMazeVectorEnv(n, corridor_length=10**4)
    envs = [TMazeEnv(corridor_length=10**4) for _ in range(n)]
    got = [venv.reset(seed=3)[0]]
    want = [np.stack([env.reset(seed=3 + i)[0] for i, env in enumerate(envs)])]
    for _ in range(5000):  # past the first 4096-value block
        actions = np.full(n, RIGHT)
        got.append(venv.step(actions)[0])
        want.append(np.stack([env.step(RIGHT)[0] for env in envs]))
    np.testing.assert_array_equal(np.stack(got), np.stack(want))
    noise = np.stack(got)[:, :, 3]
    values, counts = np.unique(noise, return_counts=True)
    assert values.tolist() == [-1.0, 0.0, 1.0]
    assert (np.abs(counts / noise.size - 1 / 3) < 0.02).all()


def test_per_sub_env_goals_and_corridors_match_single_envs() -> None:
    goals = np.array([1, -1, -1, 1])
    lengths = np.array([1, 2, 5, 3])
    venv = TMazeVectorEnv(4, corridor_length=9)
    obs, info = venv.reset(seed=0, options={"goal": goals, "corridor_length": lengths})
    np.testing.assert_array_equal(obs[:, 1], goals)
    np.testing.assert_array_equal(info["corridor_length"], lengths)
    envs = [TMazeEnv(corridor_length=9) for _ in goals]
    for i, env in enumerate(envs):
        single, _ = env.reset(
            seed=i, options={"goal": int(goals[i]), "corridor_length": int(lengths[i])}
        )
        np.testing.assert_array_equal(obs[i], single)
    # the expert: right to the junction, then towards the cue
    for t in range(6):
        actions = np.where(t < lengths, RIGHT, np.where(goals == 1, UP, DOWN))
        actions = np.where(t > lengths, RIGHT, actions)  # after the end: autoreset steps
        got = venv.step(actions)
        for i, env in enumerate(envs):
            if t > lengths[i]:
                continue
            want = env.step(int(actions[i]))
            np.testing.assert_array_equal(got[0][i], want[0])
            assert (got[1][i], got[2][i], got[3][i]) == want[1:4]
            if want[2] or want[3]:
                assert got[4]["_success"][i] and got[4]["success"][i] == want[4]["success"]
            if t == lengths[i]:
                assert want[2] and want[4]["success"]


def test_autoreset_next_step_returns_a_fresh_episode() -> None:
    venv = TMazeVectorEnv(2, corridor_length=2)
    venv.reset(seed=0, options={"goal": [1, -1], "corridor_length": [1, 4]})
    venv.step(np.array([RIGHT, RIGHT]))
    obs, reward, terminated, truncated, info = venv.step(np.array([UP, RIGHT]))
    assert terminated.tolist() == [True, False] and reward.tolist() == [1.0, 0.0]
    assert info["success"][0] and info["_success"].tolist() == [True, False]
    # next step: sub-env 0 resets (its action is ignored) with the default corridor
    obs, reward, terminated, truncated, info = venv.step(np.array([DOWN, RIGHT]))
    assert reward[0] == 0.0 and not terminated[0] and not truncated[0]
    assert obs[0, 0] == 0.0 and obs[0, 1] in (-1.0, 1.0) and obs[0, 2] == 0.0
    assert obs[1, 1] == 0.0  # the cue is shown only on an episode's first step
    assert info["_corridor_length"].tolist() == [True, False]
    assert info["corridor_length"][0] == 2
    assert venv.corridor_length.tolist() == [2, 4]
    assert venv.elapsed_steps.tolist() == [0, 3]


def test_truncation_after_length_plus_two_steps() -> None:
    venv = TMazeVectorEnv(3, corridor_length=4)
    venv.reset(seed=1)
    for t in range(1, 7):
        _, _reward, terminated, truncated, info = venv.step(np.full(3, UP))  # a wall every step
        assert not terminated.any()
        assert truncated.all() == (t == 6), t
    assert info["_success"].all() and not info["success"].any()


def test_spaces_and_errors() -> None:
    venv = TMazeVectorEnv(5)
    assert venv.num_envs == 5
    assert venv.single_observation_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert venv.single_action_space == gym.spaces.Discrete(4)
    assert venv.observation_space.shape == (5, 4)
    assert venv.action_space == gym.spaces.MultiDiscrete([4] * 5)
    assert venv.metadata["autoreset_mode"] == "next_step"
    with pytest.raises(RuntimeError, match="before reset"):
        venv.step(np.zeros(5, dtype=np.int64))
    venv.reset(seed=0)
    for bad in (np.full(5, 4), np.full(5, -1), np.full(5, 0.5), np.zeros(4, dtype=int)):
        with pytest.raises(ValueError, match="actions"):
            venv.step(bad)
    with pytest.raises(ValueError, match="goal"):
        venv.reset(options={"goal": 0})
    with pytest.raises(ValueError, match="corridor_length"):
        venv.reset(options={"corridor_length": [3, 3, 0, 3, 3]})
    with pytest.raises(ValueError, match="seeds"):
        venv.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="num_envs"):
        TMazeVectorEnv(0)


def test_balanced_goal_options_alternate_across_rounds() -> None:
    options = balanced_goal_options(corridor_length=7)
    first = options(0, 4)
    assert first["goal"].tolist() == [1, -1, 1, -1] and first["corridor_length"] == 7
    assert options(3, 2)["goal"].tolist() == [-1, 1]
    venv = TMazeVectorEnv(4)
    obs, _ = venv.reset(seed=0, options=first)
    assert obs[:, 1].tolist() == [1, -1, 1, -1]
    assert venv.corridor_length.tolist() == [7] * 4


def test_from_env_accepts_only_the_plain_passive_maze() -> None:
    made = TMazeVectorEnv.from_env(gym.make(TMAZE_ID, corridor_length=6, penalty=-0.1), 3)
    assert made is not None and made.num_envs == 3
    assert made.default_corridor_length == 6 and made.penalty == -0.1
    assert TMazeVectorEnv.from_env(TMazeEnv(variant="active"), 3) is None
    assert TMazeVectorEnv.from_env(TMazeEnv(ambiguous=True), 3) is None
    assert TMazeVectorEnv.from_env(gym.wrappers.RecordEpisodeStatistics(TMazeEnv()), 3) is None


def test_evaluate_on_a_tmaze_env_matches_sync_vector_env() -> None:
    from d3rlpy_elmur import DiscreteELMURDTConfig, evaluate

    torch.manual_seed(0)
    algo = DiscreteELMURDTConfig(
        context_size=4, num_segments=2, embed_dim=16, sequence_encoder=ELMURFactory(memory_slots=2)
    ).create()
    algo.create_impl((4,), 4)
    n = 6
    fast = evaluate(algo, gym.make(TMAZE_ID, corridor_length=3), n_episodes=n, seed=5)
    sync = gym.vector.SyncVectorEnv([lambda: TMazeEnv(corridor_length=3) for _ in range(n)])
    slow = evaluate(algo, sync, n_episodes=n, seed=5)
    for key in ("return_mean", "success_rate", "episodes", "env_steps"):
        assert fast[key] == slow[key], key

"""run_episodes' bookkeeping (seeds, reset options, step limits, success reports), the space
check evaluate runs before any episode, and the arguments evaluate passes on."""

from __future__ import annotations

import gc
import re
from types import SimpleNamespace
from typing import Any

import d3rlpy
import gymnasium as gym
import numpy as np
import pytest
import torch
from d3rlpy.constants import ActionSpace

from d3rlpy_elmur import DiscreteELMURDTConfig
from d3rlpy_elmur.defaults import DEFAULT_TARGET_RETURN
from d3rlpy_elmur.envs import TMazeEnv
from d3rlpy_elmur.envs.recall import RecallEnv, RecallVectorEnv
from d3rlpy_elmur.envs.tmaze_vector import TMazeVectorEnv
from d3rlpy_elmur.evaluation import (
    check_spaces,
    episodes,
    evaluate,
    make_batch_policy,
    run_episodes,
)
from d3rlpy_elmur.models import ELMURFactory


class CountdownEnv(gym.Env):
    """Episodes of ``2 + seed % 3`` steps with reward 1 per step; even seeds report success.

    ``options``: ``bonus`` adds to the last reward; ``length`` sets the episode's length;
    ``early`` reports success on every step but the last instead; ``pay`` adds the action to
    every reward. ``closed`` records whether anyone closed it.
    """

    closed = False

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        options = options or {}
        self.seed_ = int(seed or 0)
        self.left = int(options.get("length", 2 + self.seed_ % 3))
        self.bonus = float(options.get("bonus", 0.0))
        self.early = bool(options.get("early", False))
        self.pay = bool(options.get("pay", False))
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> Any:
        self.left -= 1
        done = self.left == 0
        if self.early:
            info = {} if done else {"success": True}
        else:
            info = {"success": True} if done and self.seed_ % 2 == 0 else {}
        reward = 1.0 + (self.bonus if done else 0.0) + (float(action) if self.pay else 0.0)
        return np.zeros(1, np.float32), reward, done, False, info

    def close(self) -> None:
        self.closed = True


class ZeroPolicy:
    def __init__(self) -> None:
        self.resets: list[int] = []

    def reset(self, n_envs: int) -> None:
        self.resets.append(n_envs)

    def act(self, observations: Any, rewards: Any) -> np.ndarray:
        return np.zeros(len(rewards), np.int64)


def venv(n: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([CountdownEnv for _ in range(n)])


def test_episodes_are_seeded_in_order_and_success_counts_only_where_reported() -> None:
    policy = ZeroPolicy()
    calls: list[tuple[int, int]] = []

    def options(first: int, n_envs: int) -> dict[str, float]:
        calls.append((first, n_envs))
        return {"bonus": 10.0 * first}

    result = run_episodes(policy, venv(3), n_episodes=5, seed=7, reset_options=options)
    lengths = [2 + s % 3 for s in range(7, 12)]  # 3, 4, 2, 3, 4
    bonus = [0, 0, 0, 30, 30]  # the second round starts at episode 3
    returns = np.array(lengths) + np.array(bonus)
    assert calls == [(0, 3), (3, 3)] and policy.resets == [3, 3]
    assert result["episodes"] == 5 and result["env_steps"] == sum(lengths)
    assert result["return_mean"] == pytest.approx(returns.mean())
    assert result["return_std"] == pytest.approx(returns.std())
    assert result["success_rate"] == pytest.approx(2 / 5)  # seeds 8 and 10; the rest count 0
    assert "episode_returns" not in result  # only when asked
    each = run_episodes(ZeroPolicy(), venv(3), 5, seed=7, reset_options=options, per_episode=True)
    assert each["episode_returns"] == pytest.approx(returns.tolist())  # in episode order
    assert each["episode_successes"] == [None, 1.0, None, 1.0, None]  # odd seeds report none


def test_max_steps_cuts_a_round_and_its_episodes_score_no_success() -> None:
    result = run_episodes(ZeroPolicy(), venv(2), n_episodes=2, max_steps=2)  # seeds from 0
    # seed 0 ends at step 2 with success; seed 1 (3 steps) is cut after 2 rewards
    assert result["env_steps"] == 4 and result["return_mean"] == pytest.approx(2.0)
    assert result["success_rate"] == pytest.approx(0.5)
    full = run_episodes(ZeroPolicy(), venv(2), n_episodes=2, seed=0, max_steps=3)
    assert full["env_steps"] == 5


def test_no_success_reports_give_none_and_bad_counts_are_refused() -> None:
    result = run_episodes(ZeroPolicy(), venv(1), n_episodes=1, seed=1)  # odd seed: no report
    assert result["success_rate"] is None and result["return_mean"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="n_episodes=0"):
        run_episodes(ZeroPolicy(), venv(1), n_episodes=0)


def test_a_success_reported_before_the_last_step_does_not_count() -> None:
    # seed 0 ends at step 2 while seed 1 (3 steps) reports success mid-episode
    result = run_episodes(ZeroPolicy(), venv(2), n_episodes=2, reset_options={"early": True})
    assert result["success_rate"] is None


class NoSuccessMask(gym.vector.VectorWrapper):
    """A vector env that reports ``info["success"]`` without gymnasium's ``_success`` mask."""

    def step(self, actions: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info.pop("_success", None)
        return obs, reward, terminated, truncated, info


def test_without_a_success_mask_every_finished_episode_counts_as_reported() -> None:
    masked = run_episodes(ZeroPolicy(), venv(4), n_episodes=4)  # seeds 0 and 2 succeed
    bare = run_episodes(ZeroPolicy(), NoSuccessMask(venv(4)), n_episodes=4)
    assert masked["success_rate"] == bare["success_rate"] == pytest.approx(0.5)


def test_progress_bar_only_when_asked_and_counting_env_steps_in_thousands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = {"length": 2000}
    run_episodes(ZeroPolicy(), venv(1), n_episodes=1, reset_options=options)
    assert capsys.readouterr().err == ""
    run_episodes(ZeroPolicy(), venv(1), n_episodes=1, reset_options=options, show_progress=True)
    err = capsys.readouterr().err
    assert "evaluate: " in err and "2000step " in err and "step/s" in err


def test_seconds_and_throughput_come_from_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([10.0, 10.5])
    monkeypatch.setattr(episodes.time, "perf_counter", lambda: next(ticks))
    result = run_episodes(ZeroPolicy(), venv(1), n_episodes=1, seed=0)  # 2 steps
    assert result["seconds"] == pytest.approx(0.5)
    assert result["env_steps_per_second"] == pytest.approx(2 / 0.5)


def _model(discrete: bool, action_size: int, observation_shape: tuple[int, ...]) -> Any:
    """What check_spaces reads of a built algorithm: its impl's sizes and its action type."""
    kind = ActionSpace.DISCRETE if discrete else ActionSpace.CONTINUOUS
    impl = SimpleNamespace(action_size=action_size, observation_shape=observation_shape)
    return SimpleNamespace(impl=impl, get_action_type=lambda: kind)


def _env(action_space: gym.Space[Any], observation_size: int) -> Any:
    observations = gym.spaces.Box(-1.0, 1.0, (observation_size,), np.float32)
    return SimpleNamespace(single_action_space=action_space, single_observation_space=observations)


@pytest.mark.parametrize(
    ("discrete", "action_space", "observation_size", "error"),
    [
        (False, gym.spaces.Box(-1.0, 1.0, (2,)), 3, None),
        (True, gym.spaces.Discrete(2), 3, None),
        (True, gym.spaces.MultiDiscrete([2, 2]), 3, None),  # other spaces: the model decides
        (
            False,
            gym.spaces.Box(-1.0, 1.0, (3,)),
            3,
            "the environment's actions are Box of shape (3,); "
            "the model takes continuous actions of size 2",
        ),
        (
            False,
            gym.spaces.Discrete(2),
            3,
            "the environment's actions are Discrete(2); "
            "the model takes continuous actions of size 2",
        ),
        (
            True,
            gym.spaces.Box(-1.0, 1.0, (2,)),
            3,
            "the environment's actions are Box of shape (2,); "
            "the model takes discrete actions of size 2",
        ),
        (
            True,
            gym.spaces.Discrete(2),
            4,
            "the environment's observations have shape (4,); the model takes (3,)",
        ),
    ],
)
def test_check_spaces_refuses_what_the_model_cannot_take_naming_both(
    discrete: bool, action_space: gym.Space[Any], observation_size: int, error: str | None
) -> None:
    model, env = _model(discrete, 2, (3,)), _env(action_space, observation_size)
    if error is None:
        check_spaces(model, env)
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(error)}$"):
            check_spaces(model, env)


def built_bc(observation_size: int, action_size: int) -> Any:
    """An untrained, built DiscreteBC: a d3rlpy algorithm evaluate takes as it is."""
    algo = d3rlpy.algos.DiscreteBCConfig().create(device="cpu:0")
    algo.create_impl((observation_size,), action_size)
    return algo


def test_evaluate_passes_its_arguments_on_and_its_defaults_are_documented(
    capsys: pytest.CaptureFixture[str],
) -> None:
    algo = built_bc(1, 2)
    default = evaluate(algo, venv(4))  # 100 episodes from seed 0, no progress bar
    returns = np.array([2 + s % 3 for s in range(100)], np.float64)
    assert default["episodes"] == 100 and default["return_mean"] == pytest.approx(returns.mean())
    assert capsys.readouterr().err == ""
    one = evaluate(algo, venv(1), n_episodes=1, seed=1, max_steps=2, show_progress=True)
    assert one["episodes"] == 1 and one["env_steps"] == 2 and one["success_rate"] is None
    assert "evaluate:" in capsys.readouterr().err  # the bar
    with pytest.raises(ValueError, match=r"^n_episodes=0 must be positive$"):
        evaluate(algo, venv(1), n_episodes=0)


def test_evaluate_closes_the_envs_it_makes_and_only_those(monkeypatch: pytest.MonkeyPatch) -> None:
    algo = built_bc(1, 2)
    theirs = venv(2)
    evaluate(algo, theirs, n_episodes=3)
    assert not theirs.closed and not any(e.closed for e in theirs.envs)
    single = CountdownEnv()
    evaluate(algo, single, n_episodes=2)
    gc.collect()  # a vector env closes itself when collected
    assert not single.closed

    made: list[tuple[str, int, gym.vector.VectorEnv]] = []

    def make_eval_env(env_id: str, n_envs: int) -> gym.vector.VectorEnv:
        made.append((env_id, n_envs, venv(n_envs)))
        return made[-1][2]

    monkeypatch.setattr(episodes, "make_eval_env", make_eval_env)
    evaluate(algo, "countdown", n_episodes=3)
    evaluate(algo, "countdown", n_episodes=episodes.MAX_ENVS + 1)
    assert [(env_id, n) for env_id, n, _ in made] == [("countdown", 3), ("countdown", 100)]
    assert all(env.closed and all(e.closed for e in env.envs) for _, _, env in made)
    with pytest.raises(
        TypeError, match=r"^env must be a gymnasium Env, VectorEnv or env id, got <class 'int'>$"
    ):
        evaluate(algo, 3, n_episodes=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "twin"),
    [(TMazeEnv(corridor_length=3), TMazeVectorEnv), (RecallEnv(delay=3), RecallVectorEnv)],
)
def test_a_passive_tmaze_or_recall_env_runs_as_its_vector_twin_which_evaluate_closes(
    env: gym.Env[Any, Any], twin: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    algo = built_bc(env.observation_space.shape[0], int(env.action_space.n))
    ran: list[gym.vector.VectorEnv] = []

    def run(policy: Any, env: gym.vector.VectorEnv, *args: Any) -> dict[str, Any]:
        ran.append(env)
        return run_episodes(policy, env, *args)

    monkeypatch.setattr(episodes, "run_episodes", run)
    evaluate(algo, env, n_episodes=5)
    assert isinstance(ran[0], twin) and ran[0].num_envs == 5 and ran[0].closed


def test_evaluate_seeds_the_sampled_actions_with_its_seed() -> None:
    torch.manual_seed(0)
    config = DiscreteELMURDTConfig(
        context_size=4, num_segments=2, embed_dim=16, sequence_encoder=ELMURFactory(memory_slots=2)
    )
    algo = config.create(device="cpu:0")
    algo.create_impl((1,), 2)
    pay = {"pay": True}  # the return counts the actions taken

    def sampled(policy_seed: int) -> float:
        policy = make_batch_policy(algo, DEFAULT_TARGET_RETURN, greedy=False, seed=policy_seed)
        return run_episodes(policy, venv(8), 8, seed=3, reset_options=pay)["return_mean"]

    result = evaluate(algo, venv(8), n_episodes=8, seed=3, greedy=False, reset_options=pay)
    assert result["return_mean"] == sampled(3) != sampled(4)

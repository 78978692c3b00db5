"""The cue-recall family: the expert solves every variant, the numpy vector env is the
SyncVectorEnv of single envs, the cue shows once (at t = 0, or at a late onset), datasets
span their delays."""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import pytest

from d3rlpy_elmur.envs import (
    RECALL_ID,
    RecallEnv,
    RecallExpert,
    RecallTask,
    RecallVectorEnv,
    answers_right,
    balanced_cue_options,
    make_expert,
    recall_dataset,
)
from d3rlpy_elmur.envs import recall as recall_module

VARIANTS = [
    "cue2-flag",
    "cue3-flag",
    "cue8-flag",
    "cue3-every",
    "cue3-flag-onehot",
    "cue3-flag-scalar",
    "cue8-every-scalar",
    "cue4-every-onehot-noise3",
    "cue5-flag-noise0",
    "cue3-flag-late",
    "cue8-flag-onehot-noise2-late",
]


def run_expert(env: RecallEnv, seed: int, options: dict[str, Any]) -> tuple[float, bool, int]:
    obs, _ = env.reset(seed=seed, options=options)
    expert = RecallExpert(env.task)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        total += float(reward)
        steps += 1
        assert not truncated
        if terminated:
            return total, bool(info["success"]), steps


@pytest.mark.parametrize("name", VARIANTS)
def test_the_expert_solves_every_variant(name: str) -> None:
    task = RecallTask.from_name(name)
    assert task.name == name
    env = task.make_env(delay=7)
    for cue in range(task.num_cues):
        for delay in (1, 2, 13):
            total, success, steps = run_expert(env, cue, {"cue": cue, "delay": delay})
            assert success
            assert steps == delay + 1
            assert total == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["cue3-flag", "cue3-every-onehot", "cue8-every-scalar"])
def test_the_expert_solves_the_vector_env_with_balanced_cues(name: str) -> None:
    task = RecallTask.from_name(name)
    venv = task.make_vector_env(10, delay=4)
    obs, _ = venv.reset(seed=0, options=balanced_cue_options(task.num_cues, delay=6)(5, 10))
    assert venv.cue.tolist() == [(5 + i) % task.num_cues for i in range(10)]
    experts = [RecallExpert(task) for _ in range(10)]
    returns = np.zeros(10)
    for _ in range(7):
        actions = [expert.act(o) for expert, o in zip(experts, obs, strict=True)]
        obs, reward, terminated, _, info = venv.step(np.stack(actions))
        returns += reward
    assert terminated.all() and info["_success"].all() and info["success"].all()
    np.testing.assert_allclose(returns, 1.0)


def random_actions(task: RecallTask, cues: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mostly right answers (so episodes succeed and fail), sometimes anything."""
    n = len(cues)
    if task.discrete:
        right = cues + 1
        return np.where(rng.random(n) < 0.9, right, rng.integers(0, task.num_cues + 1, n))
    right = np.stack([task.answer_action(int(c)) for c in cues])
    noise = rng.uniform(-1, 1, right.shape).astype(np.float32)
    return np.where(rng.random((n, 1)) < 0.9, right, noise)


@pytest.mark.parametrize(
    "name", ["cue3-flag", "cue3-every", "cue4-every-onehot-noise2", "cue3-flag-scalar-late"]
)
def test_the_vector_env_matches_sync_vector_env_of_single_envs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small noise blocks, so refills happen inside the test (and mid-episode)
    monkeypatch.setattr(recall_module, "_NOISE_BLOCK", 7)
    task = RecallTask.from_name(name)
    n = 5
    fast = task.make_vector_env(n, delay=5)
    sync = gym.vector.SyncVectorEnv([lambda: task.make_env(delay=5) for _ in range(n)])
    singles = [cast(RecallEnv, env) for env in sync.envs]
    assert fast.single_observation_space == sync.single_observation_space
    assert fast.single_action_space == sync.single_action_space
    rng = np.random.default_rng(0)
    for seed, options in ((11, {"delay": 4}), ([3, 1, 4, 1, 5], {"delay": 1})):
        obs_f, _ = fast.reset(seed=seed, options=options)
        obs_s, _ = cast(Any, sync).reset(seed=seed, options=options)
        np.testing.assert_array_equal(obs_f, obs_s)
        ended = 0
        for _ in range(60):  # several autoresets (default delay 5: 6 steps an episode)
            cues = np.array([env.cue for env in singles])
            np.testing.assert_array_equal(fast.cue, cues)
            np.testing.assert_array_equal(fast.onset, [env.onset for env in singles])
            actions = random_actions(task, cues, rng)
            step_f = fast.step(actions)
            step_s: tuple[Any, ...] = sync.step(actions)
            for got, want in zip(step_f[:4], step_s[:4], strict=True):
                np.testing.assert_array_equal(got, want)
            info_f, info_s = step_f[4], step_s[4]
            assert ("success" in info_f) == ("success" in info_s)
            if "success" in info_s:
                mask = info_s["_success"]
                np.testing.assert_array_equal(info_f["_success"], mask)
                np.testing.assert_array_equal(info_f["success"][mask], info_s["success"][mask])
                ended += int(mask.sum())
        assert ended >= n * 8


@pytest.mark.parametrize("answer", ["flag", "every"])
def test_the_cue_is_visible_at_t0_only(answer: str) -> None:
    task = RecallTask(num_cues=4, answer=answer, noise_features=2)  # type: ignore[arg-type]
    env = task.make_env(delay=5)
    obs, _ = env.reset(seed=0, options={"cue": 2})
    assert obs[:4].tolist() == [0, 0, 1, 0]
    seen = [obs]
    done = False
    while not done:
        obs, _, done, _, _ = env.step(task.wait_action())
        seen.append(obs)
    cue_part = np.stack(seen)[:, :4]
    assert (cue_part[1:] == 0).all()
    due = np.stack(seen)[:, 4]
    if answer == "flag":
        assert due.tolist() == [0, 0, 0, 0, 0, 1, 0]  # only at t = delay
    else:
        assert due.tolist() == [1, 1, 1, 1, 1, 1, 0]  # every step, up to t = delay

    # the vector env: also after an autoreset, the new cue shows once
    venv = task.make_vector_env(3, delay=1)
    obs, _ = venv.reset(seed=0, options={"cue": [0, 1, 3]})
    assert obs[:, :4].argmax(1).tolist() == [0, 1, 3] and (obs[:, :4].sum(1) == 1).all()
    for t in range(1, 7):
        obs, *_ = venv.step(np.zeros(3, np.int64))
        shown = obs[:, :4].sum(1)
        if t % 3 == 0:  # delay 1: actions at t = 0, 1, then the autoreset step shows a cue
            assert (shown == 1).all()
            np.testing.assert_array_equal(obs[:, :4].argmax(1), venv.cue)
        else:
            assert (shown == 0).all()


def test_the_dataset_spans_the_delays_with_balanced_cues() -> None:
    task = RecallTask.from_name("cue3-flag")
    buffer = recall_dataset(task, 300, max_delay=28, seed=0)
    episodes = buffer.episodes
    delays = np.array([len(ep.observations) - 1 for ep in episodes])
    assert set(delays.tolist()) == set(range(1, 29))
    cues = np.array([ep.observations[0, :3].argmax() for ep in episodes])
    assert np.bincount(cues).tolist() == [100, 100, 100]
    for ep, cue, delay in zip(episodes, cues, delays, strict=True):
        assert ep.terminated
        assert ep.actions[:-1].sum() == 0 and ep.actions[-1, 0] == cue + 1
        assert ep.rewards.sum() == 1.0 and ep.observations[delay, 3] == 1
    assert buffer.dataset_info.action_size == 4
    again = recall_dataset("cue3-flag", 300, max_delay=28, seed=0)
    np.testing.assert_array_equal(again.episodes[7].observations, episodes[7].observations)

    short = recall_dataset("cue2-every-onehot", 40, max_delay=5, seed=1, min_delay=3)
    lengths = {len(ep.observations) for ep in short.episodes}
    assert lengths == {4, 5, 6}
    first = short.episodes[0]
    cue = int(first.observations[0, :2].argmax())
    np.testing.assert_array_equal(first.actions, np.eye(2, dtype=np.float32)[[cue] * len(first)])
    assert short.dataset_info.action_size == 2


def test_continuous_answers_are_right_when_the_cue_is_strictly_nearest() -> None:
    onehot = RecallTask(num_cues=3, actions="onehot")
    actions = np.array([[1, 0, 0], [0.5, 0.4, -1], [0.5, 0.4, -1], [0, 0, 0], [0.3, 0.3, 0]])
    cues = np.array([0, 0, 1, 2, 0])
    assert answers_right(onehot, actions, cues).tolist() == [True, True, False, False, False]

    scalar = RecallTask(num_cues=3, actions="scalar")  # targets -1, 0, 1
    actions = np.array([[0.49], [0.49], [0.5], [0.5], [-0.9], [-1.0], [1.0]])
    cues = np.array([1, 2, 1, 2, 0, 0, 2])
    assert answers_right(scalar, actions, cues).tolist() == [
        True,
        False,
        False,  # halfway between two targets: a tie is wrong
        False,
        True,
        True,
        True,
    ]
    eight = RecallTask(num_cues=8, actions="scalar")
    targets = np.linspace(-1, 1, 8)
    assert answers_right(eight, targets[:, None] + 0.1, np.arange(8)).all()
    assert not answers_right(eight, targets[:, None] + 0.15, np.arange(8)).all()

    # in the env: a near answer at the flag earns the reward, one nearer another cue does not
    env = onehot.make_env(delay=1)
    for answer, reward in (([0.2, 0.9, 0.1], 1.0), ([0.9, 0.2, 0.1], 0.0)):
        env.reset(seed=0, options={"cue": 1})
        env.step(onehot.wait_action())
        _, got, done, _, info = env.step(np.array(answer, np.float32))
        assert done and got == reward and info["success"] == bool(reward)


def test_every_answer_counts_in_the_every_mode() -> None:
    task = RecallTask(num_cues=3, answer="every")
    env = task.make_env(delay=3)
    env.reset(seed=0, options={"cue": 2})
    rewards: list[float] = []
    for action in (3, 3, 1, 3):  # one wrong answer of four
        _, reward, done, _, info = env.step(action)
        rewards.append(float(reward))
    assert done and not info["success"]
    assert sum(rewards) == pytest.approx(0.75)


def test_a_late_cue_shows_once_at_an_onset_spread_over_the_first_half() -> None:
    task = RecallTask.from_name("cue4-flag-noise0-late")
    env = task.make_env(delay=20)
    onsets = []
    for seed in range(200):
        obs, _ = env.reset(seed=seed, options={"cue": seed % 4})
        seen = [obs]
        done = False
        while not done:
            obs, _, done, _, _ = env.step(task.wait_action())
            seen.append(obs)
        cue_part = np.stack(seen)[:-1, :4]  # the steps t = 0..delay
        shown = np.flatnonzero(cue_part.any(1))
        assert shown.tolist() == [env.onset] and cue_part[env.onset].argmax() == seed % 4
        onsets.append(env.onset)
    assert min(onsets) == 0 and max(onsets) == 10  # 0..delay // 2, both ends reached
    assert len(set(onsets)) == 11
    # the expert waits for it: solved from any onset
    for seed in range(20):
        assert run_expert(env, seed, {"cue": seed % 4})[1]
    # and the vector env shows it at the same steps as the single envs for the same seeds
    venv = task.make_vector_env(6, delay=20)
    obs, _ = venv.reset(seed=40)
    shown_at = np.full(6, -1)
    for t in range(21):
        shown_at[obs[:, :4].any(1)] = t
        obs, *_ = venv.step(np.zeros(6, np.int64))
    np.testing.assert_array_equal(shown_at, venv.onset)
    for i in range(6):
        env.reset(seed=40 + i)
        assert env.onset == venv.onset[i] and env.cue == venv.cue[i]


def test_names_registration_and_validation() -> None:
    assert str(RecallTask(8, "every", "scalar", 0)) == "cue8-every-scalar-noise0"
    assert str(RecallTask(3, "flag", "scalar", 2, late=True)) == "cue3-flag-scalar-noise2-late"
    with pytest.raises(ValueError, match="late"):
        RecallTask(3, "every", late=True)
    for bad in (
        "cue9-flag",
        "cue1-flag",
        "cue3-sometimes",
        "tmaze",
        "cue3-flag-",
        "cue3-every-late",
        "cue3-flag-late-noise2",
    ):
        with pytest.raises(ValueError):
            RecallTask.from_name(bad)
    env = gym.make(RECALL_ID, num_cues=4, delay=3, answer="every", actions="onehot")
    assert env.observation_space.shape == (6,)
    assert isinstance(make_expert("recall", env), RecallExpert)
    venv = RecallVectorEnv.from_env(env, 4)
    assert venv is not None and venv.task == RecallTask(4, "every", "onehot")
    assert venv.default_delay == 3
    assert RecallVectorEnv.from_env(gym.make("CartPole-v1"), 4) is None
    with pytest.raises(ValueError, match="delay"):
        RecallEnv(delay=0)
    with pytest.raises(ValueError, match="cue"):
        env.reset(options={"cue": 4})
    single = RecallEnv()
    single.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        single.step(7)

"""The batched evaluators of d3rlpy's baselines match d3rlpy's own per-episode inference."""

from __future__ import annotations

import d3rlpy
import numpy as np
import pytest
from d3rlpy.algos import GreedyTransformerActionSampler

from d3rlpy_elmur import DiscreteELMURDTConfig
from d3rlpy_elmur.defaults import DEFAULT_TARGET_RETURN
from d3rlpy_elmur.evaluation import (
    BatchedDecisionTransformerPolicy,
    ELMURBatchPolicy,
    GreedyQLearningPolicy,
    evaluate,
    make_batch_policy,
    make_eval_env,
    run_episodes,
)

OBS_DIM = 3


def _tiny_dt(discrete: bool, context: int, max_timestep: int) -> d3rlpy.algos.TransformerAlgoBase:
    common = dict(
        context_size=context,
        max_timestep=max_timestep,
        num_layers=1,
        num_heads=1,
        encoder_factory=d3rlpy.models.VectorEncoderFactory([8]),
    )
    if discrete:
        config = d3rlpy.algos.DiscreteDecisionTransformerConfig(**common)
    else:
        config = d3rlpy.algos.DecisionTransformerConfig(**common)
    algo = config.create()
    algo.create_impl((OBS_DIM,), 3 if discrete else 2)
    return algo


@pytest.mark.parametrize("discrete", [True, False])
def test_batched_dt_matches_the_greedy_stateful_wrapper(discrete: bool) -> None:
    d3rlpy.seed(0)
    algo = _tiny_dt(discrete, context=4, max_timestep=5)  # 9 steps: window slides, t clamps
    rng = np.random.default_rng(0)
    n_rows, n_steps = 3, 9
    observations = rng.normal(size=(n_steps, n_rows, OBS_DIM)).astype(np.float32)
    rewards = rng.choice([0.0, 0.5, 1.0], size=(n_steps, n_rows))
    rewards[0] = 0.0  # no reward before the first action

    batched = BatchedDecisionTransformerPolicy(algo, target_return=2.0)
    batched.reset(n_rows)
    got = np.stack([batched.act(observations[t], rewards[t]) for t in range(n_steps)])

    sampler = GreedyTransformerActionSampler() if discrete else None
    for row in range(n_rows):
        wrapper = algo.as_stateful_wrapper(target_return=2.0, action_sampler=sampler)
        expected = [wrapper.predict(observations[t, row], rewards[t, row]) for t in range(n_steps)]
        np.testing.assert_allclose(got[:, row], np.asarray(expected), rtol=1e-5, atol=1e-5)
    if discrete:  # a random model still picks several actions, so the check is not vacuous
        assert len(np.unique(got)) > 1


def test_qlearning_policy_is_algo_predict_on_the_batch() -> None:
    algo = d3rlpy.algos.DiscreteBCConfig().create()
    algo.create_impl((OBS_DIM,), 3)
    obs = np.random.default_rng(1).normal(size=(5, OBS_DIM)).astype(np.float32)
    policy = GreedyQLearningPolicy(algo)
    policy.reset(5)
    np.testing.assert_array_equal(policy.act(obs, np.zeros(5)), algo.predict(obs))


def test_run_episodes_on_tmaze_counts_balanced_episodes() -> None:
    dt = d3rlpy.algos.DiscreteDecisionTransformerConfig(
        context_size=2, max_timestep=4, num_layers=1, num_heads=1
    ).create()
    dt.create_impl((4,), 4)
    env = make_eval_env("d3rlpy_elmur/TMaze-v0", 4)
    result = evaluate(
        dt, env, n_episodes=6, seed=3, target_return=1.0, reset_options={"corridor_length": 3}
    )
    assert result["episodes"] == 6
    assert 0.0 <= result["success_rate"] <= 1.0
    # every episode ends by L + 2 = 5 steps
    assert result["env_steps"] <= 6 * 5
    # an unrelated policy object runs through the same loop
    always_right = type(
        "Right", (), {"reset": lambda s, n: None, "act": lambda s, o, r: np.zeros(len(o), int)}
    )()
    timeout = run_episodes(always_right, env, 4, reset_options={"corridor_length": 3})
    assert timeout["success_rate"] == 0.0 and timeout["env_steps"] == 4 * 5


def test_make_batch_policy_gives_elmurdt_its_own_step_path() -> None:
    algo = DiscreteELMURDTConfig(context_size=3, embed_dim=16, num_heads=1, num_layers=1).create()
    algo.create_impl((OBS_DIM,), 3)
    policy = make_batch_policy(algo, DEFAULT_TARGET_RETURN)
    assert isinstance(policy, ELMURBatchPolicy)
    # row by row it acts like the algorithm's own stateful wrapper, across segment ends
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(7, 2, OBS_DIM)).astype(np.float32)
    wrappers = [algo.as_stateful_wrapper() for _ in range(2)]
    policy.reset(2)
    for t in range(7):
        actions = policy.act(obs[t], np.zeros(2))
        assert actions.tolist() == [w.predict(obs[t, i], 0.0) for i, w in enumerate(wrappers)]


def test_the_public_evaluate_takes_d3rlpy_algorithms_and_refuses_a_mismatched_env() -> None:
    d3rlpy.seed(0)
    dt = _tiny_dt(True, context=4, max_timestep=50)  # 3 actions, observations of size 3
    with pytest.raises(ValueError, match=r"actions are Discrete\(2\); the model takes discrete"):
        evaluate(dt, "CartPole-v1", n_episodes=2)
    with pytest.raises(ValueError, match="ELMURDT's actions only"):
        evaluate(dt, "CartPole-v1", n_episodes=2, greedy=False)

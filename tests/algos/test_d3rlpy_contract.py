"""d3rlpy's transformer-algorithm contract, stated for ELMURDT and DiscreteELMURDT.

d3rlpy checks its own DecisionTransformer with a set of testers (fit, from_json,
load_learnable, predict, save_and_load, update, stateful_wrapper) over vector, image and
tuple observations, with and without min-max scalers. Its test files are not in its wheel, so
this is the project's own statement of the same contract. Where ELMURDT differs on purpose
(update() takes whole segments; save_policy exports the recurrent step) the test says so.
d3rlpy's testers themselves run in ``test_d3rlpy_testers.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import Mock

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.algos import GreedyTransformerActionSampler, IdentityTransformerActionSampler
from d3rlpy.algos.transformer.inputs import TransformerInput
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import (
    EpisodeGenerator,
    PartialTrajectory,
    TrajectoryMiniBatch,
    create_infinite_replay_buffer,
    is_tuple_shape,
)
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.preprocessing import (
    MinMaxActionScaler,
    MinMaxObservationScaler,
    MinMaxRewardScaler,
    TupleObservationScaler,
)
from d3rlpy.types import Shape

from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig
from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase
from tests.encoders import FlattenEncoderFactory

SHAPES: list[Shape] = [(6,), (4, 8, 8), ((5,), (7,))]
SMALL = dict(context_size=4, num_segments=2, embed_dim=16, num_heads=2, batch_size=4)
QUIET: dict[str, Any] = dict(logger_adapter=NoopAdapterFactory(), show_progress=False)


def _observations(shape: Shape, n: int, rng: np.random.Generator) -> Any:
    if is_tuple_shape(shape):
        return [rng.random((n, *part), dtype=np.float32) for part in shape]
    return rng.random((n, *shape), dtype=np.float32)


def _one(shape: Shape, rng: np.random.Generator) -> Any:
    observations = _observations(shape, 1, rng)
    if isinstance(observations, list):
        return [part[0] for part in observations]
    return observations[0]


def _scalers(shape: Shape, action_size: int, discrete: bool) -> dict[str, Any]:
    def minmax(part: Any) -> MinMaxObservationScaler:
        return MinMaxObservationScaler(minimum=np.zeros(part), maximum=np.ones(part))

    observation = (
        TupleObservationScaler([minmax(part) for part in shape])
        if is_tuple_shape(shape)
        else minmax(shape)
    )
    scalers: dict[str, Any] = {
        "observation_scaler": observation,
        "reward_scaler": MinMaxRewardScaler(minimum=0.0, maximum=1.0),
    }
    if not discrete:
        scalers["action_scaler"] = MinMaxActionScaler(
            minimum=np.zeros(action_size), maximum=np.ones(action_size)
        )
    return scalers


def _algo(discrete: bool, shape: Shape, scaled: bool, action_size: int) -> ELMURDTBase:
    torch.manual_seed(0)
    config_class = DiscreteELMURDTConfig if discrete else ELMURDTConfig
    extra = _scalers(shape, action_size, discrete) if scaled else {}
    config = config_class(**SMALL, encoder_factory=FlattenEncoderFactory(), **extra)  # type: ignore[arg-type]
    return config.create()  # type: ignore[no-any-return]


def _actions(algo: ELMURDTBase, n: int, action_size: int, rng: np.random.Generator) -> np.ndarray:
    if algo.get_action_type() == ActionSpace.DISCRETE:
        return rng.integers(action_size, size=(n, 1))
    return rng.random((n, action_size), dtype=np.float32)


def _dataset(algo: ELMURDTBase, shape: Shape, action_size: int, rng: np.random.Generator) -> Any:
    episodes, length = 4, 13
    n = episodes * length
    terminals = np.zeros(n, dtype=np.float32)
    terminals[length - 1 :: length] = 1.0
    generator = EpisodeGenerator(
        _observations(shape, n, rng),
        _actions(algo, n, action_size, rng),
        rng.random(n, dtype=np.float32),
        terminals,
    )
    return create_infinite_replay_buffer(generator())


def _sampler(algo: ELMURDTBase) -> Any:
    if algo.get_action_type() == ActionSpace.DISCRETE:
        return GreedyTransformerActionSampler()
    return IdentityTransformerActionSampler()


@pytest.mark.parametrize("shape", SHAPES, ids=["vector", "image", "tuple"])
@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "min_max"])
@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_d3rlpy_transformer_contract(
    discrete: bool, shape: Shape, scaled: bool, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    action_size = 3
    algo = _algo(discrete, shape, scaled, action_size)
    dataset = _dataset(algo, shape, action_size, rng)
    K, S = algo.config.context_size, algo.config.num_segments

    # fit: exactly n_steps updates, each on a trajectory batch of batch_size rows
    real_update = algo.update
    algo.update = Mock(return_value={"loss": 0.5})  # type: ignore[method-assign]
    algo.fit(dataset, n_steps=6, n_steps_per_epoch=3, **QUIET)
    calls = algo.update.call_args_list  # type: ignore[attr-defined]
    assert len(calls) == 6
    assert all(isinstance(c.args[0], TrajectoryMiniBatch) for c in calls)
    assert all(len(c.args[0]) == algo.config.batch_size for c in calls)
    algo.update = real_update  # type: ignore[method-assign]
    # and for real: the sampler, the stored states and the loss take this observation layout
    before = [p.detach().clone() for p in algo.impl.policy.parameters()]  # type: ignore[union-attr]
    algo.fit(dataset, n_steps=2, n_steps_per_epoch=2, **QUIET)
    after = list(algo.impl.policy.parameters())  # type: ignore[union-attr]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))

    # from_json / load_learnable: the same configuration and weights come back
    algo.save(tmp_path / "model.d3")
    loaded = d3rlpy.load_learnable(str(tmp_path / "model.d3"))
    assert loaded.config.serialize() == algo.config.serialize()
    params = tmp_path / "params.json"
    params.write_text(
        d3rlpy.base.LearnableConfigWithShape(shape, action_size, algo.config).serialize()
    )
    rebuilt = type(algo).from_json(str(params))
    assert rebuilt.config.serialize() == algo.config.serialize()
    assert rebuilt.impl is not None

    # predict: one action's outputs from a context window
    inpt = TransformerInput(
        observations=_observations(shape, K, rng),
        actions=_actions(algo, K, action_size, rng),
        rewards=rng.random((K, 1), dtype=np.float32),
        returns_to_go=rng.random((K, 1), dtype=np.float32),
        timesteps=np.arange(K),
    )
    assert algo.predict(inpt).shape == (action_size,)
    np.testing.assert_allclose(loaded.predict(inpt), algo.predict(inpt), atol=1e-6)

    # save_model / load_model: two wrappers act alike
    algo.save_model(str(tmp_path / "model.pt"))
    twin = algo.config.create()
    twin.create_impl(shape, action_size)
    twin.load_model(str(tmp_path / "model.pt"))
    first, second = (
        algo.as_stateful_wrapper(0.0, _sampler(algo)),
        twin.as_stateful_wrapper(0.0, _sampler(algo)),
    )
    for _ in range(K + 2):  # past a segment boundary
        observation = _one(shape, rng)
        assert np.all(first.predict(observation, 0.0) == second.predict(observation, 0.0))

    # update: ELMURDT trains on whole segments, n * K steps from the initial memory (d3rlpy's
    # DT takes K: n = 1), and (1 + S) * K, fit's window, with a context segment first
    def batch(length: int) -> TrajectoryMiniBatch:
        rows = []
        for _ in range(algo.config.batch_size):
            rewards = rng.random((length, 1), dtype=np.float32)
            rows.append(
                PartialTrajectory(
                    observations=_observations(shape, length, rng),
                    actions=_actions(algo, length, action_size, rng),
                    rewards=rewards,
                    terminals=np.zeros((length, 1), dtype=np.float32),
                    returns_to_go=rewards,
                    timesteps=np.arange(length),
                    masks=np.ones(length, dtype=np.float32),
                    length=length,
                )
            )
        return TrajectoryMiniBatch.from_partial_trajectories(rows)

    for length in (K, S * K, (1 + S) * K, (2 + S) * K):
        step = algo.grad_step
        loss = algo.update(batch(length))
        assert algo.grad_step == step + 1
        assert np.isfinite(loss["loss"]) and loss["loss"] > 0
    with pytest.raises(ValueError, match=rf"{K}, {2 * K}, {3 * K}, .*{(1 + S) * K}"):
        algo.update(batch(K + 1))
    algo.set_grad_step(0)
    assert algo.grad_step == 0

    # stateful wrapper: the action type d3rlpy's wrapper returns; reset replays exactly
    wrapper = algo.as_stateful_wrapper(100.0, _sampler(algo))
    for _ in range(2 * K + 1):
        action = wrapper.predict(_one(shape, rng), 0.0)
        if discrete:
            assert isinstance(action, int)
        else:
            assert isinstance(action, np.ndarray) and action.shape == (action_size,)
    wrapper.reset()
    observations = [_one(shape, rng) for _ in range(K + 1)]
    actions = [wrapper.predict(o, 0.0) for o in observations]
    if not discrete:
        assert not np.array_equal(actions[0], actions[1])
    wrapper.reset()
    assert all(
        np.all(wrapper.predict(o, 0.0) == a) for o, a in zip(observations, actions, strict=True)
    )


def test_a_tuple_observation_needs_an_encoder_that_takes_tuples() -> None:
    with pytest.raises(ValueError, match="sequence of tensors"):
        DiscreteELMURDTConfig(**SMALL).create().create_impl(((5,), (7,)), 3)  # type: ignore[arg-type]


def test_the_wrapper_names_the_parts_a_tuple_observation_needs() -> None:
    algo = _algo(True, ((5,), (7,)), False, 3)
    algo.create_impl(((5,), (7,)), 3)
    wrapper = algo.as_stateful_wrapper()
    with pytest.raises(TypeError, match="tuple of 2 arrays"):
        wrapper.predict(np.zeros(12, dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="shape"):
        wrapper.predict([np.zeros(5, dtype=np.float32), np.zeros(6, dtype=np.float32)], 0.0)

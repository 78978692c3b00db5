"""d3rlpy v2.8.1's testers for transformer algorithms, vendored to run on ELMURDT.

d3rlpy's wheel has no tests, so its checks of DecisionTransformer are copied here from
takuseno/d3rlpy at v2.8.1: ``tests/algos/transformer/algo_test.py`` (the testers),
``tests/base_test.py`` (from_json, load_learnable), ``tests/testing_utils.py`` (observations,
scalers) and ``tests/models/torch/model_test.py`` (``DummyEncoderFactory``). The test bodies are
d3rlpy's, with its asserts and random draws; only the annotations are shortened and the unused
helpers left out.

Left out: ``save_policy_tester``. It calls the exported policy with d3rlpy's window signature,
``policy(observations [K, ...], actions [K, A], returns_to_go [K, 1], timesteps [K])`` and ONNX
inputs ``observation_*``, ``action``, ``return_to_go``, ``timestep``; ELMURDT exports one step
with its recurrent state as explicit inputs and outputs (``d3rlpy_elmur.export``, tested in
``tests/test_export.py``), so the call has the wrong arguments by design.

Copyright (c) 2021 Takuma Seno. Used under the MIT License:

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any, cast
from unittest.mock import Mock

import numpy as np
import torch
from d3rlpy.algos import (
    GreedyTransformerActionSampler,
    IdentityTransformerActionSampler,
    TransformerActionSampler,
    TransformerAlgoBase,
    TransformerInput,
)
from d3rlpy.base import LearnableBase, load_learnable, save_config
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import (
    EpisodeGenerator,
    PartialTrajectory,
    TrajectoryMiniBatch,
    create_infinite_replay_buffer,
    is_tuple_shape,
)
from d3rlpy.logging import D3RLPyLogger, FileAdapterFactory, NoopAdapterFactory
from d3rlpy.logging.file_adapter import FileAdapter
from d3rlpy.models import EncoderFactory, register_encoder_factory
from d3rlpy.models.torch.encoders import Encoder, EncoderWithAction
from d3rlpy.preprocessing import (
    ActionScaler,
    MinMaxActionScaler,
    MinMaxObservationScaler,
    MinMaxRewardScaler,
    ObservationScaler,
    RewardScaler,
    TupleObservationScaler,
)
from d3rlpy.types import Observation, ObservationSequence, Shape, TorchObservation

__all__ = ["DummyEncoderFactory", "algo_tester", "create_scaler_tuple"]


# ------------------------------------------------------------ tests/testing_utils.py
def create_observation(observation_shape: Shape, dtype: Any = np.float32) -> Observation:
    observation: Observation
    if isinstance(observation_shape[0], (list, tuple)):
        observation = [np.random.random(shape).astype(dtype) for shape in observation_shape]
    else:
        observation = np.random.random(observation_shape)
        observation = observation.astype(dtype)
    return observation


def create_observations(
    observation_shape: Shape, length: int, dtype: Any = np.float32
) -> ObservationSequence:
    observations: ObservationSequence
    if isinstance(observation_shape[0], (list, tuple)):
        observations = [
            np.random.random((length, *shape)).astype(dtype)
            for shape in cast(Sequence[Sequence[int]], observation_shape)
        ]
    else:
        observations = np.random.random((length, *observation_shape)).astype(dtype)
    return observations


def create_scaler_tuple(
    name: str | None, observation_shape: Shape
) -> tuple[ObservationScaler | None, ActionScaler | None, RewardScaler | None]:
    if name is None:
        return None, None, None
    observation_scaler: ObservationScaler
    if is_tuple_shape(observation_shape):
        observation_scaler = TupleObservationScaler(
            [MinMaxObservationScaler() for _ in range(len(observation_shape))]
        )
    else:
        observation_scaler = MinMaxObservationScaler()
    return observation_scaler, MinMaxActionScaler(), MinMaxRewardScaler()


# ------------------------------------------------------------ tests/models/torch/model_test.py
class DummyEncoder(Encoder):
    def __init__(self, input_shape: Shape):
        super().__init__()
        self.input_shape = input_shape
        self.dummy_parameter = torch.nn.Parameter(torch.rand(1, self.get_feature_size()))

    def forward(self, x: TorchObservation) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            y = x.view(x.shape[0], -1)
        else:
            batch_size = x[0].shape[0]
            y = torch.cat([_x.view(batch_size, -1) for _x in x], dim=-1)
        return y + self.dummy_parameter

    def get_feature_size(self) -> int:
        if isinstance(self.input_shape[0], int):
            return int(np.cumprod(self.input_shape)[-1])
        return int(sum(np.cumprod(shape)[-1] for shape in self.input_shape))


class DummyEncoderWithAction(EncoderWithAction):
    def __init__(self, input_shape: Shape, action_size: int):
        super().__init__()
        self.input_shape = input_shape
        self._action_size = action_size
        self.dummy_parameter = torch.nn.Parameter(torch.rand(1, self.get_feature_size()))

    def forward(self, x: TorchObservation, action: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            y = x.view(x.shape[0], -1)
        else:
            batch_size = x[0].shape[0]
            y = torch.cat([_x.view(batch_size, -1) for _x in x], dim=-1)
        return torch.cat([y, action], dim=-1) + self.dummy_parameter

    def get_feature_size(self) -> int:
        if isinstance(self.input_shape[0], int):
            feature_size = int(np.cumprod(self.input_shape)[-1])
        else:
            feature_size = int(sum(np.cumprod(shape)[-1] for shape in self.input_shape))
        return feature_size + self._action_size


class DummyEncoderFactory(EncoderFactory):
    def create(self, observation_shape: Shape) -> DummyEncoder:
        return DummyEncoder(observation_shape)

    def create_with_action(
        self, observation_shape: Shape, action_size: int, discrete_action: bool = False
    ) -> DummyEncoderWithAction:
        return DummyEncoderWithAction(observation_shape, action_size)

    @staticmethod
    def get_type() -> str:
        return "dummy"


register_encoder_factory(DummyEncoderFactory)


# ------------------------------------------------------------ tests/base_test.py
def _check_reconst_algo(algo: LearnableBase, new_algo: LearnableBase) -> None:
    assert new_algo.impl is not None
    assert type(new_algo) is type(algo)
    assert algo.observation_shape is not None
    assert new_algo.observation_shape is not None
    if isinstance(algo.observation_shape[0], int):
        assert tuple(new_algo.observation_shape) == algo.observation_shape
    else:
        for new_algo_shape, algo_shape in zip(
            new_algo.observation_shape, algo.observation_shape, strict=False
        ):
            assert tuple(new_algo_shape) == algo_shape

    # check observation scaler
    if algo.observation_scaler is None:
        assert new_algo.observation_scaler is None
    else:
        assert type(algo.observation_scaler) is type(new_algo.observation_scaler)

    # check action scaler
    if algo.action_scaler is None:
        assert new_algo.action_scaler is None
    else:
        assert type(algo.action_scaler) is type(new_algo.action_scaler)

    # check reward scaler
    if algo.reward_scaler is None:
        assert new_algo.reward_scaler is None
    else:
        assert type(algo.reward_scaler) is type(new_algo.reward_scaler)


def from_json_tester(algo: TransformerAlgoBase, observation_shape: Shape, action_size: int) -> None:
    algo.create_impl(observation_shape, action_size)
    # save params.json
    adapter_factory = FileAdapterFactory("test_data")
    logger = D3RLPyLogger(
        algo=algo,
        adapter_factory=adapter_factory,
        n_steps_per_epoch=1,
        experiment_name="test",
    )
    # save parameters to test_data/test/params.json
    save_config(algo, logger)
    # load params.json
    adapter = logger.adapter
    assert isinstance(adapter, FileAdapter)
    json_path = os.path.join(adapter.logdir, "params.json")
    new_algo = algo.__class__.from_json(json_path)

    _check_reconst_algo(algo, new_algo)


def load_learnable_tester(
    algo: TransformerAlgoBase, observation_shape: Shape, action_size: int
) -> None:
    algo.create_impl(observation_shape, action_size)
    # save as d3
    path = os.path.join("test_data", "algo.d3")
    algo.save(path)
    # load from d3
    new_algo = load_learnable(path)

    assert algo.impl
    assert new_algo.impl
    _check_reconst_algo(algo, new_algo)

    # check weights
    algo_bytes = io.BytesIO()
    algo.impl.save_model(algo_bytes)
    new_algo_bytes = io.BytesIO()
    new_algo.impl.save_model(new_algo_bytes)
    assert algo_bytes.getvalue() == new_algo_bytes.getvalue()


# ------------------------------------------------------------ tests/algos/transformer/algo_test.py
def algo_tester(algo: TransformerAlgoBase, observation_shape: Shape, action_size: int = 2) -> None:
    fit_tester(algo, observation_shape, action_size)
    from_json_tester(algo, observation_shape, action_size)
    load_learnable_tester(algo, observation_shape, action_size)
    predict_tester(algo, observation_shape, action_size)
    save_and_load_tester(algo, observation_shape, action_size)
    update_tester(algo, observation_shape, action_size)
    stateful_wrapper_tester(algo, observation_shape, action_size)
    # save_policy_tester: left out, see the module docstring


def fit_tester(algo: TransformerAlgoBase, observation_shape: Shape, action_size: int) -> None:
    update_backup = algo.update
    algo.update = Mock(return_value={"loss": np.random.random()})

    n_episodes = 4
    episode_length = 25
    n_batch = algo.config.batch_size
    n_steps = 10
    n_steps_per_epoch = 5
    data_size = n_episodes * episode_length

    observations = create_observations(observation_shape, data_size)

    actions: np.ndarray
    if algo.get_action_type() == ActionSpace.CONTINUOUS:
        actions = np.random.random((data_size, action_size))
    else:
        actions = np.random.randint(action_size, size=(data_size, 1))

    rewards = np.random.random(data_size).astype(np.float32)
    terminals = np.zeros(data_size, dtype=np.float32)
    for i in range(n_episodes):
        terminals[(i + 1) * episode_length - 1] = 1.0
    dataset = create_infinite_replay_buffer(
        EpisodeGenerator(observations, actions, rewards, terminals)()
    )

    # check fit
    algo.fit(
        dataset,
        n_steps=n_steps,
        n_steps_per_epoch=n_steps_per_epoch,
        logger_adapter=NoopAdapterFactory(),
        show_progress=False,
    )

    # check if the correct number of iterations are performed
    assert len(algo.update.call_args_list) == n_steps

    # check arguments at each iteration
    for call in algo.update.call_args_list:
        assert isinstance(call[0][0], TrajectoryMiniBatch)
        assert len(call[0][0]) == n_batch

    # set backed up methods
    algo.update = update_backup


def predict_tester(algo: TransformerAlgoBase, observation_shape: Shape, action_size: int) -> None:
    algo.create_impl(observation_shape, action_size)
    context_size = algo.config.context_size

    actions: np.ndarray
    if algo.get_action_type() == ActionSpace.DISCRETE:
        actions = np.random.randint(action_size, size=(context_size,))
    else:
        actions = np.random.random((context_size, action_size))

    inpt = TransformerInput(
        observations=create_observations(observation_shape, context_size),
        actions=actions,
        rewards=np.random.random((context_size, 1)).astype(np.float32),
        returns_to_go=np.random.random((context_size, 1)).astype(np.float32),
        timesteps=np.arange(context_size),
    )
    y = algo.predict(inpt)
    if algo.get_action_type() == ActionSpace.DISCRETE:
        assert y.shape == (action_size,)
    else:
        assert y.shape == (action_size,)


def save_and_load_tester(
    algo: TransformerAlgoBase, observation_shape: Shape, action_size: int
) -> None:
    algo.create_impl(observation_shape, action_size)
    algo.save_model(os.path.join("test_data", "model.pt"))

    algo2 = algo.config.create()
    algo2.create_impl(observation_shape, action_size)
    algo2.load_model(os.path.join("test_data", "model.pt"))
    assert isinstance(algo2, TransformerAlgoBase)

    action_sampler: TransformerActionSampler
    if algo.get_action_type() == ActionSpace.DISCRETE:
        action_sampler = GreedyTransformerActionSampler()
    else:
        action_sampler = IdentityTransformerActionSampler()
    actor1 = algo.as_stateful_wrapper(0, action_sampler)
    actor2 = algo2.as_stateful_wrapper(0, action_sampler)

    observation = create_observation(observation_shape)
    action1 = actor1.predict(observation, 0)
    action2 = actor2.predict(observation, 0)
    assert np.all(action1 == action2)


def update_tester(algo: TransformerAlgoBase, observation_shape: Shape, action_size: int) -> None:
    context_size = algo.config.context_size
    # make mini-batch
    trajectories = []
    for _ in range(algo.config.batch_size):
        observations = create_observations(observation_shape, context_size)
        rewards = np.random.random((context_size, 1)).astype(np.float32)
        if algo.get_action_type() == ActionSpace.DISCRETE:
            actions = np.random.randint(action_size, size=(context_size, 1))
        else:
            actions = np.random.random((context_size, action_size)).astype("f4")

        trajectory = PartialTrajectory(
            observations=observations,
            actions=actions,
            rewards=rewards,
            terminals=np.random.random((context_size, 1)).astype(np.float32),
            returns_to_go=rewards,
            timesteps=np.arange(context_size),
            masks=np.zeros(context_size, dtype=np.float32),
            length=context_size,
        )
        trajectories.append(trajectory)

    batch = TrajectoryMiniBatch.from_partial_trajectories(trajectories)

    # build models
    algo.create_impl(observation_shape, action_size)

    # check if update runs without errors
    grad_step = algo.grad_step
    loss = algo.update(batch)
    assert algo.grad_step == grad_step + 1

    algo.set_grad_step(0)
    assert algo.grad_step == 0

    assert len(loss.items()) > 0


def stateful_wrapper_tester(
    algo: TransformerAlgoBase, observation_shape: Shape, action_size: int
) -> None:
    algo.create_impl(observation_shape, action_size)

    action_sampler: TransformerActionSampler
    if algo.get_action_type() == ActionSpace.DISCRETE:
        action_sampler = GreedyTransformerActionSampler()
    else:
        action_sampler = IdentityTransformerActionSampler()
    wrapper = algo.as_stateful_wrapper(100.0, action_sampler)

    # check predict
    for _ in range(10):
        observation, reward = create_observation(observation_shape), 0.0
        action = wrapper.predict(observation, reward)
        if algo.get_action_type() == ActionSpace.DISCRETE:
            assert isinstance(action, int)
        else:
            assert isinstance(action, np.ndarray)
            assert action.shape == (action_size,)
    wrapper.reset()

    # check reset
    observation1, reward1 = create_observation(observation_shape), 0.0
    action1 = wrapper.predict(observation1, reward1)
    observation, reward = create_observation(observation_shape), 0.0
    action2 = wrapper.predict(observation, reward)
    # in discrete case, there is high chance that action is the same.
    if algo.get_action_type() == ActionSpace.CONTINUOUS:
        assert np.all(action1 != action2)
    wrapper.reset()
    action3 = wrapper.predict(observation1, reward1)
    assert np.all(action1 == action3)

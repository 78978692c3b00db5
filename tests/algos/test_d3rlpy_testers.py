"""d3rlpy v2.8.1's own transformer testers (vendored in ``d3rlpy_transformer_testers``) run on
ELMURDT and DiscreteELMURDT, parametrized as d3rlpy's ``test_decision_transformer.py`` runs them
on DecisionTransformer: vector, image and tuple observations, with and without min-max scalers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from d3rlpy.types import Shape

from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig
from tests.algos.d3rlpy_transformer_testers import (
    DummyEncoderFactory,
    algo_tester,
    create_scaler_tuple,
)


@pytest.fixture(autouse=True)
def _test_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # d3rlpy's testers write to ./test_data (its test script makes the folder)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_data").mkdir()


@pytest.mark.parametrize("observation_shape", [(100,), (4, 8, 8), ((100,), (200,))])
@pytest.mark.parametrize("scalers", [None, "min_max"])
def test_elmur_dt(observation_shape: Shape, scalers: str | None) -> None:
    observation_scaler, action_scaler, reward_scaler = create_scaler_tuple(
        scalers, observation_shape
    )
    config = ELMURDTConfig(
        encoder_factory=DummyEncoderFactory(),
        observation_scaler=observation_scaler,
        action_scaler=action_scaler,
        reward_scaler=reward_scaler,
    )
    algo_tester(config.create(), observation_shape)


@pytest.mark.parametrize("observation_shape", [(100,), (4, 8, 8), ((100,), (200,))])
@pytest.mark.parametrize("scalers", [None, "min_max"])
def test_discrete_elmur_dt(observation_shape: Shape, scalers: str | None) -> None:
    observation_scaler, _, reward_scaler = create_scaler_tuple(scalers, observation_shape)
    config = DiscreteELMURDTConfig(
        encoder_factory=DummyEncoderFactory(),
        observation_scaler=observation_scaler,
        reward_scaler=reward_scaler,
        num_heads=4,
    )
    algo_tester(config.create(), observation_shape, action_size=10)

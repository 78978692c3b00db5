"""Configs and model files written before ELMUR's own fields moved into ``ELMURFactory``
(issue 35) load as they were trained: the fixtures were written by that code."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import d3rlpy
import numpy as np
import pytest

from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig
from d3rlpy_elmur.io import load_learnable, read_d3
from d3rlpy_elmur.models import ELMURFactory, GRUFactory
from d3rlpy_elmur_cli.bench.configs import (
    ConfigError,
    configs_dir,
    load_run_config,
    make_learnable_config,
    override_run_config,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECORDED = json.loads((FIXTURES / "elmur_before_issue35.json").read_text())


def _replayed_actions(algo: object) -> np.ndarray:
    """The fixture model's recorded observations, through ``algo``'s stateful wrapper."""
    wrapper = algo.as_stateful_wrapper(target_return=1.0)  # type: ignore[attr-defined]
    observations = [np.asarray(o, np.float32) for o in RECORDED["observations"]]
    return np.asarray([wrapper.predict(o, 0.0) for o in observations])


@pytest.mark.parametrize("load", [load_learnable, d3rlpy.load_learnable])
def test_a_model_file_from_before_loads_with_its_window_slots_and_blend(load: object) -> None:
    algo = load(str(FIXTURES / "elmur_before_issue35.d3"))  # type: ignore[operator]
    encoder = algo.config.sequence_encoder
    assert isinstance(algo.config, ELMURDTConfig) and isinstance(encoder, ELMURFactory)
    options = (encoder.attention_window, encoder.memory_slots, encoder.lru_blend)
    assert options == (2, 2, 0.5) and encoder.memory_init_std == 0.3
    # acts as it did when it was saved
    np.testing.assert_allclose(_replayed_actions(algo), RECORDED["actions"], atol=1e-5)


def test_a_model_file_from_before_acts_differently_with_the_default_blend() -> None:
    """The check above could not pass if the blend were lost (a lost window or slot count
    would not load: the weights' shapes differ), as lambda = 0.79 gives other actions."""
    algo = load_learnable(FIXTURES / "elmur_before_issue35.d3")
    algo.config.sequence_encoder.lru_blend = 0.79  # type: ignore[union-attr]
    rebuilt = algo.config.create()
    rebuilt.create_impl((3,), 2)
    rebuilt.impl.policy.load_state_dict(algo.impl.policy.state_dict())  # type: ignore[union-attr]
    difference = _replayed_actions(rebuilt) - np.asarray(RECORDED["actions"])
    assert np.abs(difference).max() > 1e-2


def test_a_model_file_from_before_the_write_gate_loads_as_it_was_trained(tmp_path: Path) -> None:
    """A file written before an option whose default later changed (issue 33: the write gate
    and its options) does not name it: it loads with the model it was trained with (no gate),
    not with today's default, which would ask for gate weights the file does not have."""
    payload = read_d3(FIXTURES / "elmur_before_issue35.d3")
    config = json.loads(payload["config"])
    encoder = config["config"]["params"]["sequence_encoder"]["params"]
    del encoder["write_gate"], encoder["write_gate_empty"]
    older = tmp_path / "before_the_gate.d3"
    kept = {key: value for key, value in payload.items() if key != "sha256"}
    older.write_bytes(pickle.dumps({**kept, "config": json.dumps(config)}))
    for load in (load_learnable, d3rlpy.load_learnable):
        algo = load(str(older))  # type: ignore[operator]
        options = algo.config.sequence_encoder
        assert (options.write_gate, options.write_gate_empty, options.write_gate_cost) == (
            0.0,
            False,
            0.0,
        )
        np.testing.assert_allclose(_replayed_actions(algo), RECORDED["actions"], atol=1e-5)
    # a saved config older than the attention window was segment-local
    params = {k: v for k, v in config["config"]["params"].items() if k != "attention_window"}
    assert ELMURDTConfig.deserialize_from_dict(params).sequence_encoder.attention_window == 0


def test_a_yaml_config_from_before_loads_with_the_fields_moved() -> None:
    config = load_run_config(FIXTURES / "tmaze_elmur_before_issue35.yaml").make_config()
    assert isinstance(config, DiscreteELMURDTConfig)
    assert config.sequence_encoder == ELMURFactory(attention_window=0, memory_slots=1)
    # what the file left to the defaults is today's defaults: the write gate, which the
    # preset now pins off (issue 33); all else is the preset
    preset = load_run_config("tmaze_elmur").make_config()
    encoder = dataclasses.replace(preset.sequence_encoder, write_gate=0.5)
    assert config == dataclasses.replace(preset, sequence_encoder=encoder)


def test_old_fields_beside_another_encoder_are_dropped_as_it_ignored_them() -> None:
    params = {"memory_slots": 4, "attention_window": None, "sequence_encoder": "gru"}
    config = make_learnable_config("discrete_elmur_dt", params)
    assert isinstance(config.sequence_encoder, GRUFactory)  # type: ignore[attr-defined]


def test_an_old_field_set_in_both_places_differently_is_refused() -> None:
    params = {
        "memory_slots": 4,
        "sequence_encoder": {"type": "elmur", "params": {"memory_slots": 2}},
    }
    with pytest.raises(ConfigError, match="memory_slots set both beside sequence_encoder"):
        make_learnable_config("discrete_elmur_dt", params)
    agreeing = {**params, "memory_slots": 2}
    config = make_learnable_config("discrete_elmur_dt", agreeing)
    assert config.sequence_encoder.memory_slots == 2  # type: ignore[attr-defined]


def test_an_old_style_child_overrides_its_new_style_base(tmp_path: Path) -> None:
    """A YAML child written the old way (``memory_slots: 3`` beside the encoder, as the M = 3
    ablation was) over today's preset sets the preset's encoder option, as it did."""
    preset = configs_dir() / "tmaze_elmur.yaml"
    child = tmp_path / "m3.yaml"
    child.write_text(f"base: {preset}\nparams: {{memory_slots: 3, lru_blend: 0.5}}\n")
    config = load_run_config(child).make_config()
    expected = load_run_config("tmaze_elmur_m3").make_config().sequence_encoder
    assert config.sequence_encoder == dataclasses.replace(expected, lru_blend=0.5)
    gru_child = tmp_path / "gru.yaml"  # over a GRU base the old fields were ignored: dropped
    gru_child.write_text(
        f"base: {configs_dir() / 'popgym_bc_gru.yaml'}\nparams: {{memory_slots: 3}}\n"
    )
    assert isinstance(load_run_config(gru_child).make_config().sequence_encoder, GRUFactory)


def test_overrides_old_and_new_style_set_the_preset_encoder_option() -> None:
    preset = load_run_config("tmaze_elmur")
    old = override_run_config(preset, {"params": {"attention_window": 5}}, "x")
    new = override_run_config(
        preset, {"params": {"sequence_encoder": {"params": {"attention_window": 5}}}}, "x"
    )
    for run in (old, new):
        encoder = run.make_config().sequence_encoder
        assert encoder == dataclasses.replace(
            preset.make_config().sequence_encoder, attention_window=5
        )


def test_an_option_path_works_on_a_config_that_names_no_encoder(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("algo: discrete_elmur_dt\nparams: {context_size: 4}\n")
    changes = {"params": {"sequence_encoder": {"params": {"lru_blend": 0.5}}}}
    run = override_run_config(load_run_config(plain), changes, "x")
    assert run.make_config().sequence_encoder == ELMURFactory(lru_blend=0.5)


def test_encoder_params_that_are_not_a_mapping_are_a_config_error() -> None:
    params = {"memory_slots": 2, "sequence_encoder": {"type": "elmur", "params": [1]}}
    with pytest.raises(ConfigError, match="sequence_encoder's params must be a mapping"):
        make_learnable_config("discrete_elmur_dt", params)

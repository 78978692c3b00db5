"""YAML run configs -> d3rlpy configs through d3rlpy's registry, with strict keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from d3rlpy.algos import DiscreteDecisionTransformerConfig
from d3rlpy.constants import PositionEncodingType
from d3rlpy.optimizers import WarmupSchedulerFactory

from d3rlpy_elmur import DiscreteELMURDTConfig
from d3rlpy_elmur.models.factories import ELMURFactory, GRUFactory
from d3rlpy_elmur_cli.bench.configs import (
    ConfigError,
    configs_dir,
    load_run_config,
    make_learnable_config,
)
from d3rlpy_elmur_cli.bench.suite_config import load_suite


def test_every_published_config_and_suite_loads() -> None:
    names = sorted(p.stem for p in configs_dir().glob("*.yaml"))
    suites = [n for n in names if n.startswith("bench_") or n == "demo"]
    for name in set(names) - set(suites):
        run = load_run_config(name)
        assert run.make_config().get_type() == run.algo
    for name in suites:
        suite = load_suite(name)
        assert suite.algorithms


def test_tmaze_preset_and_its_ablations() -> None:
    preset = load_run_config("tmaze_elmur").make_config()
    assert isinstance(preset, DiscreteELMURDTConfig)
    elmur = preset.sequence_encoder
    assert isinstance(elmur, ELMURFactory)
    assert (preset.context_size, preset.num_segments, elmur.memory_slots) == (10, 3, 1)
    assert (preset.embed_dim, preset.num_layers, preset.num_heads) == (128, 2, 2)
    assert (elmur.attention_window, elmur.lru_blend, preset.batch_size) == (0, 0.79, 64)
    assert elmur.write_gate == 0.0  # as measured: the library default has the gate (issue 33)
    assert load_run_config("tmaze_elmur").dataset == "tmaze-c28"

    no_lru = load_run_config("tmaze_elmur_no_lru").make_config()
    assert no_lru.sequence_encoder == dataclasses.replace(elmur, use_lru=False)
    detached = load_run_config("tmaze_elmur_detached").make_config()
    assert detached.sequence_encoder == dataclasses.replace(elmur, detach_memory=True)
    m3 = load_run_config("tmaze_elmur_m3").make_config()
    assert m3.sequence_encoder == dataclasses.replace(elmur, memory_slots=3)
    assert m3.num_segments == 3
    gru = load_run_config("tmaze_bc_gru").make_config()
    assert isinstance(gru.sequence_encoder, GRUFactory)
    # the ablations inherit everything else from the preset
    assert (no_lru.context_size, m3.batch_size, gru.embed_dim) == (10, 64, 128)


def test_every_popgym_elmur_preset_keeps_the_model_it_was_measured_with() -> None:
    """W = K, M = 4 and no write gate, whatever the library defaults (issue 33 changed them)."""
    names = [p.stem for p in configs_dir().glob("popgym_elmur*.yaml")]
    names += [
        str(p.relative_to(configs_dir()))
        for p in configs_dir().glob("popgym_presets/*/best_popgym_elmur*.yaml")
    ]
    assert len(names) >= 13
    for name in names:
        config = load_run_config(name).make_config()
        elmur = config.sequence_encoder
        assert isinstance(elmur, ELMURFactory), name
        options = (elmur.attention_window, elmur.memory_slots, elmur.write_gate)
        assert options == (None, 4, 0.0), name


def test_dt_baselines() -> None:
    k10 = load_run_config("tmaze_dt_k10")
    k30 = load_run_config("tmaze_dt_k30")
    c10, c30 = k10.make_config(), k30.make_config()
    assert isinstance(c10, DiscreteDecisionTransformerConfig)
    assert (c10.context_size, c30.context_size) == (10, 30)
    assert (c10.num_layers, c10.num_heads, c10.batch_size) == (2, 2, 64)
    assert c10.encoder_factory.hidden_units == [128]
    assert c10.encoder_factory.exclude_last_activation
    assert c10.max_timestep >= 29  # the longest training episode
    assert k10.eval.max_length == k30.eval.max_length == 10_000


def test_nested_factories_enums_and_short_forms() -> None:
    config = make_learnable_config(
        "discrete_decision_transformer",
        {
            "position_encoding_type": "simple",
            "encoder_factory": {"type": "vector", "params": {"hidden_units": [8]}},
            "optim_factory": {"type": "adam", "params": {"weight_decay": 0.1}},
            "observation_scaler": "none",
        },
    )
    assert config.position_encoding_type == PositionEncodingType.SIMPLE
    assert config.encoder_factory.hidden_units == [8]
    assert config.optim_factory.weight_decay == 0.1
    gru = make_learnable_config("discrete_elmur_dt", {"sequence_encoder": "gru"})
    assert isinstance(gru.sequence_encoder, GRUFactory)
    # a factory with a required field (the warm-up's length) inside another factory
    warm = make_learnable_config(
        "discrete_elmur_dt",
        {
            "optim_factory": {
                "type": "adam_w",
                "params": {
                    "lr_scheduler_factory": {"type": "warmup", "params": {"warmup_steps": 7}}
                },
            }
        },
    )
    assert isinstance(warm.optim_factory.lr_scheduler_factory, WarmupSchedulerFactory)
    assert warm.optim_factory.lr_scheduler_factory.warmup_steps == 7
    # a standard scaler whose statistics the config gives
    scaled = make_learnable_config(
        "discrete_elmur_dt",
        {"observation_scaler": {"type": "standard", "params": {"mean": [0, 1], "std": [2, 4]}}},
    )
    assert scaled.observation_scaler.built
    assert scaled.observation_scaler.std.tolist() == [2, 4]


@pytest.mark.parametrize(
    "algo, params, message",
    [
        ("discrete_elmur_dt", {"contxt_size": 4}, "x.yaml: params: unknown field(s) contxt_size"),
        # values of the wrong type, named, as the Python API refuses them (no silent casts)
        ("discrete_elmur_dt", {"context_size": "ten"}, "params.context_size: expected an integer"),
        ("discrete_elmur_dt", {"context_size": "10"}, "params.context_size: expected an integer"),
        ("discrete_elmur_dt", {"context_size": 10.5}, "params.context_size: expected an integer"),
        (
            "discrete_elmur_dt",
            {"sequence_encoder": {"type": "elmur", "params": {"attention_window": "K"}}},
            "params.sequence_encoder.params.attention_window: expected an",
        ),
        ("discrete_elmur_dt", {"learning_rate": "fast"}, "params.learning_rate: expected a number"),
        ("discrete_elmur_dt", {"dropout": True}, "params.dropout: expected a number"),
        ("discrete_elmur_dt", {"token_format": 3}, "params.token_format: expected a string"),
        (
            "discrete_elmur_dt",
            {"sequence_encoder": {"type": "elmur", "params": {"use_lru2": False}}},
            "params.sequence_encoder.params: unknown field(s) use_lru2",
        ),
        ("discrete_elmur_dt", {"sequence_encoder": {"type": "lstm"}}, "registered: elmur, gru"),
        ("no_such_algo", {}, "unknown LearnableConfig type 'no_such_algo'"),
        (
            "discrete_elmur_dt",
            {"sequence_encoder": {"type": "elmur", "params": {"memory_slots": 0}}},
            "memory_slots=0",
        ),
        ("discrete_bc", {"observation_scaler": "standard"}, "needs statistics fitted on data"),
        (
            "discrete_bc",
            {"optim_factory": {"type": "adam", "params": {"lr_scheduler_factory": "warmup"}}},
            "WarmupSchedulerFactory needs warmup_steps",
        ),
    ],
)
def test_bad_params_are_named(algo: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        make_learnable_config(algo, params, where="x.yaml")
    assert message in str(info.value) and "x.yaml" in str(info.value)


@pytest.mark.parametrize(
    "train, message",
    [
        ("{steps: a hundred}", "train.steps: expected an integer, got 'a hundred'"),
        ("{steps: 150.7}", "train.steps: expected an integer, got 150.7"),
        ("{seed: true}", "train.seed: expected an integer, got True"),
        ("{steps: 1e3}", None),  # a number, as written
    ],
)
def test_train_fields_are_integers(tmp_path: Path, train: str, message: str | None) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(f"algo: discrete_bc\ndataset: d\ntrain: {train}\n")
    if message is None:
        assert load_run_config(path).train.steps == 1000
        return
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_base_chain_merges_and_rejects_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "algo: discrete_elmur_dt\ndataset: d\nparams:\n  context_size: 4\n"
        "  sequence_encoder: {type: elmur, params: {use_lru: false, read: false}}\n"
        "train: {steps: 10}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "base: a.yaml\nparams:\n  sequence_encoder: {type: elmur, params: {read: true}}\n"
        "train: {seed: 3}\n"
    )
    (tmp_path / "c.yaml").write_text("base: b.yaml\nparams: {sequence_encoder: {type: gru}}\n")
    b = load_run_config(tmp_path / "b.yaml")
    assert b.make_config().sequence_encoder == ELMURFactory(use_lru=False, read=True)
    assert (b.train.steps, b.train.seed, b.dataset) == (10, 3, "d")
    c = load_run_config(tmp_path / "c.yaml").make_config()
    assert isinstance(c.sequence_encoder, GRUFactory) and c.context_size == 4

    (tmp_path / "x.yaml").write_text("base: y.yaml\nalgo: discrete_bc\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_run_config(tmp_path / "x.yaml")
    (tmp_path / "typo.yaml").write_text("algo: discrete_bc\ntrian: {steps: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown key.*trian"):
        load_run_config(tmp_path / "typo.yaml")


def test_popgym_dt_timestep_table_covers_every_task() -> None:
    """d3rlpy's DT indexes a table of max_timestep + 2 steps: a task whose episodes run
    longer is refused at training time, hours into a suite (CartPole Medium: 400)."""
    pytest.importorskip("popgym")
    from d3rlpy_elmur.datasets.recipes import get_recipe
    from d3rlpy_elmur.envs.popgym_experts import make_popgym_env

    suite = load_suite("bench_popgym")
    longest = max(
        make_popgym_env(get_recipe(task).env).unwrapped.max_episode_length for task in suite.tasks
    )
    assert longest == 400
    for entry in suite.algorithms:
        for name in (entry.config, entry.continuous_config):
            run = load_run_config(name)
            if run.algo.endswith("decision_transformer"):
                assert run.make_config().max_timestep >= longest, name


@pytest.mark.parametrize(
    "space", sorted((Path(__file__).parents[2] / "examples" / "sweeps").glob("*.yaml"))
)
def test_each_shipped_sweep_space_gives_valid_configs_of_its_preset(space: Path) -> None:
    """A space names fields of the config it is run against (DT's space its own preset, the
    others ELMURDT's): every config of its grid builds, before any sweep trains."""
    from d3rlpy_elmur_cli.bench.sweep import _check_space, load_space

    preset = "popgym_dt" if space.stem == "popgym_dt" else "popgym_elmur"
    _check_space(load_run_config(preset), load_space(space), str(space))

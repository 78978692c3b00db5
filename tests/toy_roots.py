"""A tiny T-Maze recipe and tiny run configs in temporary roots, for the CLI and resume tests."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["CONFIGS", "RECIPE", "RP_RECIPE", "make_toy_roots"]

RECIPE = """\
name: tiny
id: test/tiny-tmaze-v0
kind: tmaze
env: d3rlpy_elmur/TMaze-v0
expert: tmaze
n_episodes: 24
seed: 0
max_corridor_length: 6
expected_return: 1.0
description: tiny
"""
CONFIGS = {
    "toy_elmur.yaml": """\
algo: discrete_elmur_dt
dataset: tiny
params: {context_size: 4, num_segments: 2, embed_dim: 16, num_layers: 1,
         num_heads: 1, batch_size: 8,
         sequence_encoder: {type: elmur, params: {memory_slots: 2}}}
train: {steps: 4, steps_per_epoch: 2, seed: 0}
""",
    "toy_gru.yaml": """\
base: toy_elmur.yaml
params: {sequence_encoder: gru}
""",
    "toy_dt.yaml": """\
algo: discrete_decision_transformer
dataset: tiny
params: {context_size: 4, num_layers: 1, num_heads: 1, batch_size: 8, max_timestep: 16,
         encoder_factory: {type: vector, params: {hidden_units: [16]}}}
train: {steps: 4, steps_per_epoch: 2}
eval: {max_length: 30}
""",
    "toy_cql.yaml": """\
algo: discrete_cql
dataset: tiny
params: {batch_size: 8, target_update_interval: 3,
         encoder_factory: {type: vector, params: {hidden_units: [16]}}}
train: {steps: 4, steps_per_epoch: 2}
""",
    "toy_bc.yaml": """\
algo: discrete_bc
dataset: tiny
params: {batch_size: 8, encoder_factory: {type: vector, params: {hidden_units: [16]}}}
train: {steps: 4, steps_per_epoch: 2}
""",
    "bench_toy.yaml": """\
kind: tmaze
dataset: tiny
lengths: [9, 30, 90]
episodes: 4
episodes_at: {90: 2}
algorithms:
  - {label: ELMURDT, config: toy_elmur.yaml}
  - {label: BC-GRU, config: toy_gru.yaml}
  - {label: DT, config: toy_dt.yaml}
  - {label: BC, config: toy_bc.yaml}
quick: {steps: 2, lengths: [9, 90]}
""",
    "demo.yaml": """\
kind: tmaze
dataset: tiny
lengths: [30, 90]
episodes: 4
algorithms:
  - {label: ELMURDT, config: toy_elmur.yaml, steps: 2}
  - {label: "DT (K=4)", config: toy_dt.yaml, steps: 2}
""",
}


def make_toy_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Recipes, configs and the Minari root under ``tmp_path`` (environment variables set)."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.yaml").write_text(RECIPE)
    (tmp_path / "configs").mkdir()
    for name, text in CONFIGS.items():
        (tmp_path / "configs" / name).write_text(text)
    monkeypatch.setenv("ELMUR_RECIPES_DIR", str(tmp_path / "recipes"))
    monkeypatch.setenv("ELMUR_CONFIGS_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


# A six-episode POPGym RepeatPrevious recipe (the CLI tests build it with and without popgym)
RP_RECIPE = """\
name: rp
id: test/rp-v0
kind: popgym
env: popgym-RepeatPreviousEasy-v0
expert: popgym-repeat-previous
n_episodes: 6
seed: 0
expected_return: 1.0
description: six episodes
"""

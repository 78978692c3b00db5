"""Train one run config: build its dataset if needed, fit, save ``model.d3`` and the config.

Output folder::

    model.d3      the trained algorithm (d3rlpy_elmur.load_learnable / d3rlpy.load_learnable)
    config.yaml   the resolved run config: every d3rlpy field spelled out; `elmur train` reads it
    train.json    the summary: algorithm, dataset, steps, seed, seconds, updates/s, final loss
    logs/         d3rlpy's FileAdapter logs (params.json, loss.csv, time_*.csv)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import d3rlpy
import torch
import yaml
from d3rlpy.algos import DecisionTransformerConfig, DiscreteDecisionTransformerConfig
from d3rlpy.logging import FileAdapter, FileAdapterFactory
from d3rlpy.logging.logger import AlgProtocol, SaveProtocol

from ..algos.elmur_dt import _ELMURDTBase, plan_epochs
from ..datasets import build_recipe, find_recipe_by_id, load_minari, load_recipes
from ..datasets.errors import DatasetNotFoundError
from ..datasets.writer import dataset_exists, datasets_root
from .configs import ConfigError, RunConfig

__all__ = [
    "OutputExistsError",
    "TrainResult",
    "ensure_dataset",
    "load_model",
    "save_model",
    "train_run",
]

MODEL_FILE = "model.d3"


class OutputExistsError(FileExistsError):
    """The output folder already holds a model (pass overwrite=True to replace it)."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    out_dir: str
    model_path: str
    algo: str
    config_name: str
    dataset: str
    steps: int
    seed: int
    seconds: float
    updates_per_second: float
    final_loss: float | None

    def summary(self) -> str:
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.4g}"
        return (
            f"trained {self.config_name} ({self.algo}) on {self.dataset}: {self.steps} steps, "
            f"seed {self.seed}, {self.seconds:.1f} s ({self.updates_per_second:.1f} updates/s), "
            f"final loss {loss} -> {self.model_path}"
        )


# ----------------------------------------------------------------- model files
def save_model(algo: Any, path: str | os.PathLike[str]) -> Path:
    """Save atomically: a crash leaves the old file or the new one, never half of one."""
    from ..io import atomic_save_learnable

    return atomic_save_learnable(algo, path)


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.d3`` with the package's safe loader (no code from the file is run)."""
    from ..io import load_learnable

    return load_learnable(path)


# ----------------------------------------------------------------- datasets
def ensure_dataset(name_or_id: str, progress: bool = True) -> str:
    """The Minari id to train on; a recipe's dataset is built first when it is missing.

    ``name_or_id`` is a recipe name (``tmaze-c28``), a recipe's dataset id, or the id of
    any local Minari dataset.
    """
    recipes = load_recipes()
    recipe = recipes.get(name_or_id) or find_recipe_by_id(name_or_id)
    if recipe is None:
        if not dataset_exists(name_or_id):
            known = ", ".join(recipes)
            raise DatasetNotFoundError(
                name_or_id, str(datasets_root()), f"not a recipe either (recipes: {known})"
            )
        return name_or_id
    if not recipe.is_built:
        print(f"building dataset {recipe.name} ({recipe.n_episodes} episodes) ...", flush=True)
        build_recipe(recipe, progress=progress)
    return recipe.id


# ----------------------------------------------------------------- logging
class _RunFileAdapter(FileAdapter):
    """d3rlpy's CSV logs without the per-parameter gradient files (about fifty per run)
    and without intermediate ``model_<step>.d3`` copies (we save ``model.d3`` once)."""

    def watch_model(self, epoch: int, step: int) -> None:
        pass

    def save_model(self, epoch: int, algo: SaveProtocol) -> None:
        pass


class _RunFileAdapterFactory(FileAdapterFactory):
    def create(
        self, algo: AlgProtocol, experiment_name: str, n_steps_per_epoch: int
    ) -> FileAdapter:
        return _RunFileAdapter(algo, os.path.join(self._root_dir, experiment_name))


def _final_loss(log_dir: Path) -> float | None:
    path = log_dir / "loss.csv"
    if not path.is_file():
        return None
    rows = list(csv.reader(path.read_text().splitlines()))
    return float(rows[-1][2]) if rows else None


# ----------------------------------------------------------------- training
def _check_max_timestep(config: Any, buffer: Any, name: str) -> None:
    """d3rlpy's Decision Transformers embed timesteps 1..max_timestep: a longer training
    episode would end in an IndexError deep inside torch; say what to change instead."""
    if not isinstance(config, DecisionTransformerConfig | DiscreteDecisionTransformerConfig):
        return
    longest = max(episode.size() for episode in buffer.episodes)
    if longest > config.max_timestep:
        raise ConfigError(
            f"config {name}: max_timestep={config.max_timestep} but the dataset has episodes "
            f"of {longest} steps; set params.max_timestep >= {longest}"
        )


def _write_text(path: Path, text: str) -> None:
    from ..io import atomic_write

    with atomic_write(path, "w") as f:
        f.write(text)


def resolved_config(run: RunConfig, config: Any, dataset_id: str) -> dict[str, Any]:
    """The run config with every d3rlpy field spelled out (reloadable by ``train``)."""
    data = run.to_dict()
    data["dataset"] = dataset_id
    # JSON round trip: enums and tuples become plain YAML values.
    data["params"] = json.loads(config.serialize())
    return data


def train_run(
    run: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Fit ``run`` for exactly ``steps`` updates and write the output folder.

    ``dataset``, ``steps`` and ``seed`` override the config; ``log`` receives one line per
    epoch (for worker processes, where progress bars would garble the terminal). The seed
    seeds Python, numpy and torch (``d3rlpy.seed``: model init and d3rlpy's batch sampling)
    and ELMURDT's window sampler.
    """
    out = Path(out_dir)
    model_path = out / MODEL_FILE
    if model_path.exists() and not overwrite:
        raise OutputExistsError(f"{model_path} exists; pass --overwrite to replace it")
    dataset_name = dataset or run.dataset
    if not dataset_name:
        raise ValueError(f"config {run.name} names no dataset; pass --dataset")
    n_steps = run.train.steps if steps is None else steps
    train_seed = run.train.seed if seed is None else seed
    run = run.replace(
        train=dataclasses.replace(run.train, steps=n_steps, seed=train_seed),
        dataset=dataset_name,
    )

    dataset_id = ensure_dataset(dataset_name, progress=show_progress)
    buffer = load_minari(dataset_id)
    config = run.make_config()
    _check_max_timestep(config, buffer, run.name)
    d3rlpy.seed(train_seed)
    algo = config.create(device="cpu:0")

    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "logs"
    if log_dir.exists():  # d3rlpy appends to its CSVs: a rerun must start them afresh
        shutil.rmtree(log_dir)
    per_epoch = plan_epochs(n_steps, min(run.train.steps_per_epoch, n_steps))
    fit_args: dict[str, Any] = dict(
        n_steps=n_steps,
        n_steps_per_epoch=per_epoch,
        experiment_name="logs",
        with_timestamp=False,
        logger_adapter=_RunFileAdapterFactory(root_dir=str(out)),
        show_progress=show_progress,
    )
    if isinstance(algo, _ELMURDTBase):
        fit_args["seed"] = train_seed
    start = time.perf_counter()
    if log is not None:

        def report(_algo: Any, epoch: int, step: int) -> None:
            if step % per_epoch == 0:
                rate = step / max(time.perf_counter() - start, 1e-9)
                log(f"{run.name}, seed {train_seed}: step {step}/{n_steps} ({rate:.1f} updates/s)")

        fit_args["callback"] = report
    algo.fit(buffer, **fit_args)
    seconds = time.perf_counter() - start

    save_model(algo, model_path)
    _write_text(
        out / "config.yaml",
        f"# resolved from {run.path or run.name}\n"
        + yaml.safe_dump(resolved_config(run, config, dataset_id), sort_keys=False),
    )
    result = TrainResult(
        out_dir=str(out),
        model_path=str(model_path),
        algo=run.algo,
        config_name=run.name,
        dataset=dataset_id,
        steps=n_steps,
        seed=train_seed,
        seconds=seconds,
        updates_per_second=n_steps / max(seconds, 1e-9),
        final_loss=_final_loss(log_dir),
    )
    summary = {**dataclasses.asdict(result), "torch_threads": torch.get_num_threads()}
    _write_text(out / "train.json", json.dumps(summary, indent=2) + "\n")
    return result

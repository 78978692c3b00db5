"""Benchmark suite files: what a comparison runs (every algorithm on the same data, evaluation
and seeds), read and checked; ``suite.py`` runs them.

A suite is a YAML file (``examples/configs/bench_tmaze.yaml``, ``bench_popgym.yaml``,
``demo.yaml``)::

    kind: tmaze                    # or popgym
    dataset: tmaze-c28             # tmaze: the one dataset every algorithm trains on
    tasks: [popgym-repeatprevious-easy, ...]   # popgym: dataset recipes, one model per task
    lengths: [9, 30, ...]          # tmaze: horizons T = L + 2
    episodes: 100                  # per length (tmaze) or per task (popgym)
    episodes_at: {1000000: 10}     # fewer episodes at some lengths
    target_return: 1.0             # return-to-go of the Decision Transformers
    eval_seed: 1000000             # evaluation seeds: eval_seed + 1000 * seed + episode
    algorithms:
      - {label: ELMURDT, config: tmaze_elmur.yaml}
      - {label: DT (K=10), config: tmaze_dt_k10.yaml, max_length: 10000, steps: 500}
      - {label: BC-MLP, config: popgym_bc_mlp.yaml, continuous_config: popgym_bc_mlp_cont.yaml}
    quick: {dataset: tmaze-c28-small, steps: 100, lengths: [...], episodes: 20}

An algorithm trains for its config's ``train.steps`` unless the entry (or ``quick``) sets
``steps``; ``max_length`` (else the config's ``eval.max_length``) caps the evaluated horizon.
Training seed s seeds the model and the sampler; evaluation uses seeds from ``eval_seed``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from d3rlpy_elmur.defaults import DEFAULT_TARGET_RETURN, DEFAULT_TEST_SEED

from .configs import ConfigError, load_yaml, resolve_config_path

__all__ = ["KINDS", "Suite", "SuiteAlgorithm", "load_suite"]

KINDS = ("tmaze", "popgym")
_SUITE_KEYS = {
    "kind",
    "description",
    "dataset",
    "tasks",
    "lengths",
    "episodes",
    "episodes_at",
    "target_return",
    "eval_seed",
    "steps",
    "algorithms",
    "quick",
}
_QUICK_KEYS = {"dataset", "tasks", "lengths", "episodes", "episodes_at", "steps"}
_ALGO_KEYS = {"label", "config", "continuous_config", "task_configs", "steps", "max_length"}


@dataclasses.dataclass(frozen=True)
class SuiteAlgorithm:
    """One algorithm row of a suite: its label, run config(s) and budget overrides."""

    label: str
    config: str
    continuous_config: str | None = None
    # popgym: a config per task instead of ``config`` / ``continuous_config`` (task presets)
    task_configs: dict[str, str] = dataclasses.field(default_factory=dict)
    steps: int | None = None
    max_length: int | None = None

    def config_for(self, task: str, discrete: bool) -> tuple[str, str | None]:
        """(config, reason to skip or None) of a popgym task: its task config, else the
        continuous config for continuous actions (skipped when there is none)."""
        if task in self.task_configs:
            return self.task_configs[task], None
        if discrete:
            return self.config, None
        if self.continuous_config is None:
            return self.config, "continuous actions"
        return self.continuous_config, None


@dataclasses.dataclass(frozen=True)
class Suite:
    """A benchmark suite: its algorithms on one dataset (T-Maze) or a list of tasks."""

    name: str
    kind: str
    algorithms: tuple[SuiteAlgorithm, ...]
    dataset: str | None = None
    tasks: tuple[str, ...] = ()
    lengths: tuple[int, ...] = ()
    episodes: int = 100
    episodes_at: dict[int, int] = dataclasses.field(default_factory=dict)
    target_return: float = DEFAULT_TARGET_RETURN
    eval_seed: int = DEFAULT_TEST_SEED
    steps: int | None = None
    description: str = ""
    quick_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    quick: bool = False
    path: str = ""

    def as_quick(self) -> Suite:
        """The suite with its ``quick`` section applied (small data, few steps)."""
        changes = dict(self.quick_overrides)
        for key in ("tasks", "lengths"):
            if key in changes:
                changes[key] = tuple(changes[key])
        # a quick budget replaces the per-algorithm budgets too
        algorithms = self.algorithms
        if "steps" in changes:
            algorithms = tuple(dataclasses.replace(a, steps=None) for a in algorithms)
        return dataclasses.replace(self, **changes, algorithms=algorithms, quick=True)

    def eval_seed_for(self, seed: int) -> int:
        return self.eval_seed + 1000 * seed


def _ints(values: Any, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(float(v)) for v in values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: expected a list of integers ({e})") from e


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _normalise(data: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(data)
    if "lengths" in out:
        out["lengths"] = _ints(out["lengths"], f"{where}.lengths")
    if "tasks" in out:
        out["tasks"] = tuple(str(t) for t in out["tasks"])
    if "episodes_at" in out:
        out["episodes_at"] = {int(float(k)): int(v) for k, v in (out["episodes_at"] or {}).items()}
    for key in ("episodes", "eval_seed", "steps"):
        if out.get(key) is not None:
            out[key] = int(float(out[key]))
    return out


def _algorithm(entry: Any, i: int, folder: Path, tasks: set[str], where: str) -> SuiteAlgorithm:
    """The suite's ``algorithms[i]``, its configs resolved now, relative to the suite file's
    ``folder``, so a bad name fails early."""
    if not isinstance(entry, dict) or "config" not in entry:
        raise ConfigError(f"{where}: algorithms[{i}] needs a config")
    _check_keys(entry, _ALGO_KEYS, f"{where}: algorithms[{i}]")
    config = str(resolve_config_path(entry["config"], folder))
    continuous = entry.get("continuous_config")
    per_task = entry.get("task_configs") or {}
    if not isinstance(per_task, dict):
        raise ConfigError(f"{where}: algorithms[{i}].task_configs must map tasks to configs")
    unknown = sorted(set(per_task) - tasks)
    if unknown:
        raise ConfigError(
            f"{where}: algorithms[{i}].task_configs names task(s) not in the suite: "
            + ", ".join(unknown)
        )
    return SuiteAlgorithm(
        label=str(entry.get("label") or Path(config).stem),
        config=config,
        continuous_config=(
            None if continuous is None else str(resolve_config_path(continuous, folder))
        ),
        task_configs={
            str(task): str(resolve_config_path(name, folder)) for task, name in per_task.items()
        },
        steps=None if entry.get("steps") is None else int(entry["steps"]),
        max_length=None if entry.get("max_length") is None else int(entry["max_length"]),
    )


def load_suite(name: str | os.PathLike[str]) -> Suite:
    """Read a suite by path, or by name in ``examples/configs`` (``tmaze`` ->
    ``bench_tmaze.yaml``)."""
    try:
        path = resolve_config_path(name)
    except ConfigError:
        path = resolve_config_path(f"bench_{name}")
    data = load_yaml(path.read_text())
    where = f"suite {path}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    _check_keys(data, _SUITE_KEYS, where)
    if data.get("kind") not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {KINDS}")
    quick = data.pop("quick", None) or {}
    _check_keys(quick, _QUICK_KEYS, f"{where}: quick")
    tasks = set(data.get("tasks") or ())
    algorithms = [
        _algorithm(entry, i, path.parent, tasks, where)
        for i, entry in enumerate(data.pop("algorithms", None) or [])
    ]
    if not algorithms:
        raise ConfigError(f"{where}: no algorithms")
    fields = _normalise(data, where)
    suite = Suite(
        name=path.stem,
        algorithms=tuple(algorithms),
        quick_overrides=_normalise(quick, f"{where}: quick"),
        path=str(path),
        **fields,
    )
    if suite.kind == "tmaze" and (not suite.dataset or not suite.lengths):
        raise ConfigError(f"{where}: a tmaze suite needs dataset and lengths")
    if suite.kind == "popgym" and not suite.tasks:
        raise ConfigError(f"{where}: a popgym suite needs tasks")
    return suite

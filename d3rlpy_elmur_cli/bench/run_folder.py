"""A training run's folder: its files, identity, lock, cached result and fingerprint.

Layout::

    config.yaml    the resolved run config: every d3rlpy field spelled out; `elmur train` reads
                   it, `elmur resume` continues from it (written first)
    checkpoint.pt  the training state every ``train.checkpoint_every`` steps (see
                   d3rlpy_elmur.checkpoint)
    logs/          d3rlpy's FileAdapter logs (params.json, loss.csv, time_*.csv)
    train.json     the summary: algorithm, dataset, steps, seed, seconds, updates/s, final loss
    model.d3       the trained algorithm (d3rlpy_elmur.load_learnable / d3rlpy.load_learnable);
                   written last, so its presence marks a finished run
    result.json    a suite's or sweep's evaluation of the run, with the fingerprint it was made with
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from d3rlpy_elmur.checkpoint import CheckpointError, read_checkpoint
from d3rlpy_elmur.io import atomic_write, exclusive_folder

from .configs import RunConfig

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "MODEL_FILE",
    "OutputExistsError",
    "TrainResult",
    "cached_result",
    "run_fingerprint",
    "write_result",
]

MODEL_FILE = "model.d3"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"


class OutputExistsError(FileExistsError):
    """The output folder already holds a model (pass overwrite=True to replace it)."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Where a training run put its model, and what it trained."""

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
    resumed_from: int | None = None  # the checkpoint step a resumed run continued from

    def summary(self) -> str:
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.4g}"
        resumed = "" if self.resumed_from is None else f" (resumed at step {self.resumed_from})"
        return (
            f"trained {self.config_name} ({self.algo}) on {self.dataset}: {self.steps} steps"
            f"{resumed}, "
            f"seed {self.seed}, {self.seconds:.1f} s ({self.updates_per_second:.1f} updates/s), "
            f"final loss {loss} -> {self.model_path}"
        )


def resolved_config(run: RunConfig, config: Any, dataset_id: str) -> dict[str, Any]:
    """The run config with every d3rlpy field spelled out (reloadable by ``train``)."""
    data = run.to_dict()
    data["dataset"] = dataset_id
    # JSON round trip: enums and tuples become plain YAML values.
    data["params"] = json.loads(config.serialize())
    return data


def run_fingerprint(fields: dict[str, Any], run: RunConfig, key: str = "config") -> str:
    """A digest of what a cached result depends on: ``fields`` and, under ``key``, the run
    config as loaded (its checkpoint interval left out: checkpointing does not change the
    model)."""
    resolved = run.to_dict()
    resolved["train"].pop("checkpoint_every")
    data = {**fields, key: resolved}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_result(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The result record in ``path`` (a run folder's ``result.json``) if it was made with
    ``fingerprint``, else None (missing, or made with another config, budget or data)."""
    if not path.is_file():
        return None
    record = dict(json.loads(path.read_text()))
    return record if record.get("fingerprint") == fingerprint else None


def write_result(path: Path, record: dict[str, Any]) -> None:
    """Write a result record atomically (what :func:`cached_result` reads back)."""
    with atomic_write(path, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")


def same_run(out: Path, run: RunConfig, config: Any, dataset_id: str) -> bool:
    """Whether ``out`` was started by ``train_run`` with exactly this resolved config."""
    path = out / CONFIG_FILE
    return path.is_file() and yaml.safe_load(path.read_text()) == resolved_config(
        run, config, dataset_id
    )


def finished_result(out: Path) -> TrainResult | None:
    """The result of the finished run in ``out`` (its model and ``train.json``), if any."""
    summary = out / "train.json"
    if not (out / MODEL_FILE).is_file() or not summary.is_file():
        return None
    fields = {f.name for f in dataclasses.fields(TrainResult)}
    data = json.loads(summary.read_text())
    return TrainResult(**{key: value for key, value in data.items() if key in fields})


def checkpoint_mismatch(
    state: dict[str, Any], run: RunConfig, config: Any, dataset_id: str
) -> str | None:
    """Why the checkpoint ``state`` is not one of this run (None: it is)."""
    expected = run_identity(run, config, dataset_id)
    found = {key: state["meta"].get(key) for key in expected}
    return None if found == expected else f"{found} != {expected}"


def own_checkpoint(
    out: Path, run: RunConfig, config: Any, dataset_id: str, device: str
) -> dict[str, Any] | None:
    """The readable checkpoint in ``out`` if it belongs to this run, else None."""
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path, device)
    except CheckpointError:  # torn by a kill: start again
        return None
    return None if checkpoint_mismatch(state, run, config, dataset_id) else state


def refuse_to_replace(out: Path, overwrite: bool) -> None:
    if overwrite:
        return
    if (out / MODEL_FILE).exists():
        raise OutputExistsError(f"{out / MODEL_FILE} exists; pass overwrite=True to replace it")
    unfinished = [name for name in (CHECKPOINT_FILE, CONFIG_FILE) if (out / name).exists()]
    if unfinished:
        raise OutputExistsError(
            f"{out} holds an unfinished run ({', '.join(unfinished)}): `elmur resume "
            f"{out}` continues it, overwrite=True starts again"
        )


def exclusive_run(out: Path) -> contextlib.AbstractContextManager[None]:
    """One training process per folder: two would interleave checkpoints and logs."""
    return exclusive_folder(
        out,
        ".lock",
        lambda pid: OutputExistsError(f"another process (pid {pid}) is training in {out}"),
    )


def run_identity(run: RunConfig, config: Any, dataset_id: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed into a run."""
    digest = hashlib.sha256(config.serialize().encode()).hexdigest()[:16]
    return {
        "algo": run.algo,
        "dataset": dataset_id,
        "steps": run.train.steps,
        "seed": run.train.seed,
        "config_digest": digest,
    }

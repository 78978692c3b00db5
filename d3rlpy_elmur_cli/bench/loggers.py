"""A run's logs: d3rlpy's CSV logs in its folder, and experiment tracking through d3rlpy's
logger adapters (TensorBoard, Weights & Biases).

Every run always writes d3rlpy's CSV logs into its folder (checkpoints and resume rely on
them); ``--logger tensorboard`` / ``wandb`` add d3rlpy's adapters beside them. A resumed run's
d3rlpy loop counts epochs from 0 again: the offset wrapper continues the numbering, as the
CSV adapter does, so a resumed run's curves join the interrupted ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from d3rlpy.logging import (
    CombineAdapterFactory,
    FileAdapter,
    FileAdapterFactory,
    LoggerAdapter,
    LoggerAdapterFactory,
)
from d3rlpy.logging.logger import AlgProtocol, SaveProtocol

from d3rlpy_elmur.extras import require
from d3rlpy_elmur.io import atomic_write

__all__ = ["LOGGERS", "RunFileAdapterFactory", "check_loggers", "final_loss", "run_logger"]

LOGGERS = ("csv", "tensorboard", "wandb")  # the names `loggers` takes

# what d3rlpy's adapter for each logger imports (the tracking extra installs both)
_LOGGER_MODULES = {"tensorboard": "tensorboardX", "wandb": "wandb"}


def check_loggers(names: Sequence[str]) -> list[str]:
    """The names besides ``csv`` (always on, and may be named), validated and with their
    packages installed: called before a run starts, so a missing one costs no training."""
    unknown = [name for name in names if name not in LOGGERS]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}: choose from {list(LOGGERS)}")
    adapters = [name for name in dict.fromkeys(names) if name != "csv"]
    for name in adapters:
        require(_LOGGER_MODULES[name], f"the {name} logger")
    return adapters


def run_logger(
    names: Sequence[str],
    out: Path,
    run_name: str,
    csv: LoggerAdapterFactory,
    epoch_offset: int,
    step_offset: int,
) -> LoggerAdapterFactory:
    """The run's logger: d3rlpy's adapters for ``names`` beside the ``csv`` one (last, so
    that what it commits follows every other adapter's rows), all numbering epochs and steps
    from the offsets. TensorBoard event files go under ``out/tensorboard/runs/<run_name>``;
    W&B runs are named ``run_name`` in project "d3rlpy-elmur" (``WANDB_MODE=offline`` keeps
    them local)."""
    factories: list[LoggerAdapterFactory] = []
    for name in check_loggers(names):
        if name == "tensorboard":
            from d3rlpy.logging import TensorboardAdapterFactory

            factory: LoggerAdapterFactory = TensorboardAdapterFactory(str(out / "tensorboard"))
        else:
            from d3rlpy.logging import WanDBAdapterFactory

            factory = WanDBAdapterFactory(project="d3rlpy-elmur")
        factories.append(_NamedFactory(factory, run_name))
    return _OffsetFactory(CombineAdapterFactory([*factories, csv]), epoch_offset, step_offset)


class _OffsetAdapter(LoggerAdapter):
    def __init__(self, inner: LoggerAdapter, epoch_offset: int, step_offset: int):
        self._inner = inner
        self._epoch = epoch_offset
        self._step = step_offset

    def write_params(self, params: dict[str, Any]) -> None:
        self._inner.write_params(params)

    def before_write_metric(self, epoch: int, step: int) -> None:
        self._inner.before_write_metric(epoch + self._epoch, step + self._step)

    def write_metric(self, epoch: int, step: int, name: str, value: float) -> None:
        self._inner.write_metric(epoch + self._epoch, step + self._step, name, value)

    def after_write_metric(self, epoch: int, step: int) -> None:
        self._inner.after_write_metric(epoch + self._epoch, step + self._step)

    def save_model(self, epoch: int, algo: SaveProtocol) -> None:
        self._inner.save_model(epoch + self._epoch, algo)

    def close(self) -> None:
        self._inner.close()

    def watch_model(self, epoch: int, step: int) -> None:
        self._inner.watch_model(epoch + self._epoch, step + self._step)


class _OffsetFactory(LoggerAdapterFactory):
    def __init__(self, inner: LoggerAdapterFactory, epoch_offset: int, step_offset: int):
        self._inner = inner
        self._epoch = epoch_offset
        self._step = step_offset

    def create(
        self, algo: AlgProtocol, experiment_name: str, n_steps_per_epoch: int
    ) -> LoggerAdapter:
        inner = self._inner.create(algo, experiment_name, n_steps_per_epoch)
        return _OffsetAdapter(inner, self._epoch, self._step)


class _NamedFactory(LoggerAdapterFactory):
    """``inner``'s adapters under the run's name (the CSV adapter's experiment is "logs")."""

    def __init__(self, inner: LoggerAdapterFactory, name: str):
        self._inner = inner
        self._name = name

    def create(
        self, algo: AlgProtocol, experiment_name: str, n_steps_per_epoch: int
    ) -> LoggerAdapter:
        del experiment_name
        return self._inner.create(algo, self._name, n_steps_per_epoch)


class RunFileAdapter(FileAdapter):
    """d3rlpy's CSV logs without the per-parameter gradient files (about fifty per run)
    and without intermediate ``model_<step>.d3`` copies (we save ``model.d3`` once).

    ``on_commit(step)`` runs after an epoch's rows are written: the checkpoint is taken there,
    so the logs of every step it covers are already on disk. (A resumed run's numbering is
    continued by ``bench.loggers.run_logger``.)
    """

    def __init__(self, algo: AlgProtocol, logdir: str, on_commit: Callable[[int], None]):
        super().__init__(algo, logdir)
        self._on_commit = on_commit

    def after_write_metric(self, epoch: int, step: int) -> None:
        self._on_commit(step)

    def watch_model(self, epoch: int, step: int) -> None:
        pass

    def save_model(self, epoch: int, algo: SaveProtocol) -> None:
        pass


class RunFileAdapterFactory(FileAdapterFactory):
    """Makes a :class:`RunFileAdapter` that calls ``on_commit(step)`` after each epoch."""

    def __init__(self, root_dir: str, on_commit: Callable[[int], None]):
        super().__init__(root_dir)
        self._on_commit = on_commit

    def create(
        self, algo: AlgProtocol, experiment_name: str, n_steps_per_epoch: int
    ) -> FileAdapter:
        logdir = os.path.join(self._root_dir, experiment_name)
        return RunFileAdapter(algo, logdir, self._on_commit)


def log_rows(text: str) -> list[tuple[int, str]]:
    """(step, row) of a d3rlpy CSV log; a torn last line (a killed writer) is skipped."""
    rows = []
    for line in text.splitlines(keepends=True):
        fields = line.split(",")
        if line.endswith("\n") and len(fields) == 3 and fields[1].isdigit():
            rows.append((int(fields[1]), line))
    return rows


def final_loss(log_dir: Path) -> float | None:
    """The last logged loss of a run's ``logs/`` (None before the first epoch)."""
    path = log_dir / "loss.csv"
    rows = log_rows(path.read_text()) if path.is_file() else []
    return float(rows[-1][1].split(",")[2]) if rows else None


def truncate_logs(log_dir: Path, step: int) -> None:
    """Keep the CSV rows up to ``step``: the resumed run logs the later steps again."""
    if not log_dir.is_dir():
        return
    for path in log_dir.glob("*.csv"):
        text = path.read_text()
        kept = "".join(row for row_step, row in log_rows(text) if row_step <= step)
        if kept != text:
            with atomic_write(path, "w") as f:
                f.write(kept)

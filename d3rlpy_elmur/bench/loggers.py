"""Experiment tracking through d3rlpy's logger adapters (TensorBoard, Weights & Biases).

Every run always writes d3rlpy's CSV logs into its folder (checkpoints and resume rely on
them); ``--logger tensorboard`` / ``wandb`` add d3rlpy's adapters beside them. A resumed run's
d3rlpy loop counts epochs from 0 again: the offset wrapper continues the numbering, as the
CSV adapter does, so a resumed run's curves join the interrupted ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from d3rlpy.logging import CombineAdapterFactory, LoggerAdapter, LoggerAdapterFactory
from d3rlpy.logging.logger import AlgProtocol, SaveProtocol

from d3rlpy_elmur_cli import LOGGERS  # the parser's, which must not import d3rlpy

__all__ = ["LOGGERS", "check_loggers", "run_logger"]


def check_loggers(names: Sequence[str]) -> list[str]:
    """The names, validated (``csv`` is always on and may be named)."""
    unknown = [name for name in names if name not in LOGGERS]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}: choose from {list(LOGGERS)}")
    return [name for name in dict.fromkeys(names) if name != "csv"]


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

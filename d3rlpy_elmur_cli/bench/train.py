"""Train one run config: build its dataset if needed, fit, and write the run folder
(``run_folder.py`` describes it), resuming from its checkpoint when asked."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import d3rlpy
import torch
import yaml
from d3rlpy.algos import DecisionTransformerConfig, DiscreteDecisionTransformerConfig

from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase, plan_epochs
from d3rlpy_elmur.algos.segments import SegmentRecurrentView
from d3rlpy_elmur.checkpoint import (
    CheckpointError,
    build_impl,
    read_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from d3rlpy_elmur.datasets import ensure_dataset, load_minari
from d3rlpy_elmur.io import atomic_write, remove_stale_temps, save_learnable

from .configs import ConfigError, RunConfig, load_run_config
from .loggers import RunFileAdapterFactory, check_loggers, final_loss, run_logger, truncate_logs
from .run_folder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    OutputExistsError,
    TrainResult,
    checkpoint_mismatch,
    exclusive_run,
    finished_result,
    own_checkpoint,
    refuse_to_replace,
    resolved_config,
    run_identity,
    same_run,
)

__all__ = ["check_run", "resume_run", "train_checkpointed", "train_run"]


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


def check_run(run: RunConfig, buffer: Any) -> None:
    """Raises ConfigError if ``run`` cannot train on ``buffer``, as far as that can be told
    without training: the config builds, d3rlpy's Decision Transformers cover the longest
    episode, ELMURDT's segments fit in it. The bench calls it for every run up front, so a
    bad config fails in seconds instead of hours into a suite."""
    config = run.make_config()
    _check_max_timestep(config, buffer, run.name)
    algo = config.create(device="cpu:0")
    if isinstance(algo, ELMURDTBase):
        with warnings.catch_warnings():  # warnings come again, once, when it trains
            warnings.simplefilter("ignore")
            try:
                algo.segment_view(buffer)
            except ValueError as e:
                raise ConfigError(f"config {run.name}: {e}") from e


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def train_run(
    run: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    checkpoint_every: int | None = None,
    steps_per_epoch: int | None = None,
    device: str = "cpu:0",
    show_progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    loggers: Sequence[str] = (),
) -> TrainResult:
    """Fit ``run`` for exactly ``steps`` updates on ``device`` and write the output folder.

    ``dataset``, ``steps``, ``seed``, ``checkpoint_every`` and ``steps_per_epoch`` override the
    config; ``log`` receives one line per epoch, ``step N/M (R updates/s)``, for worker
    processes, where progress bars would garble the terminal (callers prefix their label).
    The seed seeds Python, numpy and torch (``d3rlpy.seed``: model init and d3rlpy's batch
    sampling) and ELMURDT's window sampler. ``config.yaml`` is
    written first and ``model.d3`` last, so an interrupted run can be continued with
    :func:`resume_run`; a folder holding a model or an unfinished run is replaced only with
    ``overwrite``. With ``resume``, a run of this very config (same resolved ``config.yaml``)
    already in the folder is not started again: a finished one is returned as it is, an
    unfinished one goes on from its checkpoint (when it has one of this run that loads).
    ``loggers`` adds d3rlpy's TensorBoard / W&B adapters to the CSV logs (``bench.loggers``).

    Over 60 lines by its keyword signature (``elmur train``'s options) and this text; the
    body is 41 lines."""
    check_loggers(loggers)
    out = Path(out_dir)
    run, dataset_name = _overridden(run, dataset, steps, seed, checkpoint_every, steps_per_epoch)
    _epoch_plan(run)  # a bad checkpoint interval fails before anything is built or written
    if not resume:  # a resumable folder is only known once the config is built
        refuse_to_replace(out, overwrite)
    dataset_id = ensure_dataset(dataset_name, progress=show_progress)
    buffer = load_minari(dataset_id)
    config = run.make_config()
    _check_max_timestep(config, buffer, run.name)
    with exclusive_run(out):
        if resume and same_run(out, run, config, dataset_id):
            finished = finished_result(out)
            if finished is not None:
                return finished
            state = own_checkpoint(out, run, config, dataset_id, device)
            if state is not None:
                try:
                    return _fit(
                        run,
                        config,
                        buffer,
                        dataset_id,
                        out,
                        state,
                        device,
                        show_progress,
                        log,
                        loggers,
                    )
                except CheckpointError as e:  # it matched but does not load: start again
                    warnings.warn(f"{e}; training {out} again from step 0", stacklevel=2)
        refuse_to_replace(out, overwrite)  # again, now that no other process can start
        for stale in (MODEL_FILE, CHECKPOINT_FILE, "train.json"):  # _fit clears the logs
            (out / stale).unlink(missing_ok=True)
        _write_text(
            out / CONFIG_FILE,
            f"# resolved from {run.path or run.name}\n"
            + yaml.safe_dump(resolved_config(run, config, dataset_id), sort_keys=False),
        )
        return _fit(run, config, buffer, dataset_id, out, None, device, show_progress, log, loggers)


def _overridden(
    run: RunConfig,
    dataset: str | None,
    steps: int | None,
    seed: int | None,
    checkpoint_every: int | None,
    steps_per_epoch: int | None,
) -> tuple[RunConfig, str]:
    """``run`` with the arguments that are not None in place of its own fields, and the
    dataset it then names (one it must name)."""
    dataset_name = dataset or run.dataset
    if not dataset_name:
        raise ValueError(
            f"config {run.name} names no dataset; pass dataset=<recipe name or Minari id>"
        )
    train = run.train
    run = run.replace(
        train=dataclasses.replace(
            train,
            steps=train.steps if steps is None else steps,
            seed=train.seed if seed is None else seed,
            checkpoint_every=(
                train.checkpoint_every if checkpoint_every is None else checkpoint_every
            ),
            steps_per_epoch=train.steps_per_epoch if steps_per_epoch is None else steps_per_epoch,
        ),
        dataset=dataset_name,
    )
    return run, dataset_name


def train_checkpointed(
    run: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None,
    steps: int | None,
    seed: int | None,
    resume: bool,
    show_progress: bool,
    log: Callable[[str], None] | None,
    loggers: Sequence[str] = (),
) -> TrainResult:
    """:func:`train_run` of ``run`` as the bench and the sweeps run it: a checkpoint every
    epoch whatever the config says (a cut run continues from its last epoch, and any budget
    fits), into a folder replaced unless it holds this very run and ``resume``."""
    run = run.replace(train=dataclasses.replace(run.train, checkpoint_every=None))
    return train_run(
        run,
        out_dir,
        dataset=dataset,
        steps=steps,
        seed=seed,
        show_progress=show_progress,
        overwrite=True,
        resume=resume,
        log=log,
        loggers=loggers,
    )


def resume_run(
    out_dir: str | os.PathLike[str],
    *,
    device: str = "cpu:0",
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    loggers: Sequence[str] = (),
) -> TrainResult:
    """Continue the interrupted :func:`train_run` in ``out_dir`` from its ``checkpoint.pt``
    (from step 0 when it stopped before the first one), with its own ``config.yaml``.

    The result equals the uninterrupted run: same parameters, bit for bit, on the same device
    with the same number of torch threads (another device or thread count is allowed, with
    a warning).
    """
    check_loggers(loggers)
    out = Path(out_dir)
    config_path = out / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{out} holds no {CONFIG_FILE}: not an `elmur train` folder")
    run = load_run_config(config_path)
    assert run.dataset is not None  # train_run writes the dataset id
    dataset_id = ensure_dataset(run.dataset, progress=show_progress)
    buffer = load_minari(dataset_id)
    config = run.make_config()
    with exclusive_run(out):
        if (out / MODEL_FILE).exists():
            raise OutputExistsError(f"{out} is finished ({MODEL_FILE} exists): nothing to resume")
        checkpoint = out / CHECKPOINT_FILE
        state = read_checkpoint(checkpoint, device) if checkpoint.is_file() else None
        if state is not None:
            mismatch = checkpoint_mismatch(state, run, config, dataset_id)
            if mismatch is not None:
                raise CheckpointError(
                    f"{checkpoint} belongs to another run ({config_path}): {mismatch}"
                )
            now = {"torch_threads": torch.get_num_threads(), "device": device}
            then = {key: state["meta"].get(key) for key in now}
            if then != now:
                warnings.warn(
                    f"the checkpoint was written with {then}, this run has {now}: the result "
                    "may differ from an uninterrupted run in the last bits",
                    stacklevel=2,
                )
        return _fit(
            run, config, buffer, dataset_id, out, state, device, show_progress, log, loggers
        )


def _training_threads(config: Any) -> int:
    """The torch threads ``fit`` trains with: ELMURDT's ``num_threads`` while it fits, else
    the process's setting."""
    return int(getattr(config, "num_threads", 0) or torch.get_num_threads())


def _epoch_plan(run: RunConfig) -> tuple[int, int]:
    """(steps per epoch, checkpoint interval in steps; 0 = none)."""
    n_steps = run.train.steps
    for name, value in (("steps", n_steps), ("steps_per_epoch", run.train.steps_per_epoch)):
        if value < 1:
            raise ConfigError(
                f"config {run.name}: train.{name}={value} (--{name.replace('_', '-')}) must be >= 1"
            )
    per_epoch = plan_epochs(n_steps, min(run.train.steps_per_epoch, n_steps))
    every = run.train.checkpoint_every
    if every is None:
        return per_epoch, per_epoch
    if every < 0 or every % per_epoch or every > n_steps:
        raise ConfigError(
            f"config {run.name}: train.checkpoint_every={every} must be 0 (no checkpoints) or "
            f"a multiple of the epoch length {per_epoch} steps (d3rlpy's loop runs in epochs) "
            f"up to the {n_steps} steps of the run"
        )
    return per_epoch, every


def _fit(
    run: RunConfig,
    config: Any,
    buffer: Any,
    dataset_id: str,
    out: Path,
    state: dict[str, Any] | None,
    device: str,
    show_progress: bool,
    log: Callable[[str], None] | None,
    loggers: Sequence[str] = (),
) -> TrainResult:
    """Fit ``run`` from ``state`` (None: from scratch) into ``out``, with checkpoints and
    progress lines; ``_finish`` writes the model. Over 60 lines by its signature and the two
    callbacks d3rlpy calls, which share the run's clock and step count with the fit."""
    n_steps, seed = run.train.steps, run.train.seed
    per_epoch, every = _epoch_plan(run)
    d3rlpy.seed(seed)
    algo = config.create(device=device)
    data = algo.segment_view(buffer, seed) if isinstance(algo, ELMURDTBase) else buffer
    sampler = data if isinstance(data, SegmentRecurrentView) else None
    done, seconds_before = _prepare_folder(out, algo, data, sampler, state)
    meta = {
        **run_identity(run, config, dataset_id),
        "torch_threads": _training_threads(config),
        "device": device,
    }
    start = time.perf_counter()

    def checkpoint(total: int) -> None:  # after the epoch's log rows are written
        if every and total % every == 0:
            seconds = seconds_before + time.perf_counter() - start
            save_checkpoint(
                out / CHECKPOINT_FILE,
                algo,
                total,
                sampler=sampler,
                meta={**meta, "seconds": seconds},
            )

    def after_update(algo: Any, epoch: int, step: int) -> None:
        total = done + step
        if log is not None and total % per_epoch == 0:
            rate = step / max(time.perf_counter() - start, 1e-9)
            log(f"step {total}/{n_steps} ({rate:.1f} updates/s)")

    if done < n_steps:
        algo.fit(
            data,
            n_steps=n_steps - done,
            n_steps_per_epoch=per_epoch,
            experiment_name="logs",
            with_timestamp=False,
            logger_adapter=run_logger(
                loggers,
                out,
                run.name,
                RunFileAdapterFactory(str(out), checkpoint),
                done // per_epoch,
                done,
            ),
            show_progress=show_progress,
            callback=after_update,
        )
    seconds = seconds_before + time.perf_counter() - start
    resumed_from = done if state is not None else None
    return _finish(run, config, algo, dataset_id, out, seconds, resumed_from)


def _prepare_folder(
    out: Path, algo: Any, data: Any, sampler: Any, state: dict[str, Any] | None
) -> tuple[int, float]:
    """Restores ``state`` (a checkpoint) into ``algo`` and cuts the logs back to it, or clears
    the logs of a fresh start (d3rlpy appends to its CSVs); removes stale temporary files.
    Returns the updates done and the seconds they took."""
    done, seconds = 0, 0.0
    if state is not None:
        build_impl(algo, data)
        done = restore_checkpoint(state, algo, sampler=sampler)
        seconds = float(state["meta"].get("seconds", 0.0))
        truncate_logs(out / "logs", done)
    elif (out / "logs").exists():
        shutil.rmtree(out / "logs")
    for name in (CHECKPOINT_FILE, MODEL_FILE, "train.json"):  # the folder is ours (locked)
        remove_stale_temps(out / name)
    return done, seconds


def _finish(
    run: RunConfig,
    config: Any,
    algo: Any,
    dataset_id: str,
    out: Path,
    seconds: float,
    resumed_from: int | None,
) -> TrainResult:
    """Writes ``train.json`` and then the model (whose presence marks a finished run), and
    drops the checkpoint."""
    n_steps = run.train.steps
    result = TrainResult(
        out_dir=str(out),
        model_path=str(out / MODEL_FILE),
        algo=run.algo,
        config_name=run.name,
        dataset=dataset_id,
        steps=n_steps,
        seed=run.train.seed,
        seconds=seconds,
        updates_per_second=n_steps / max(seconds, 1e-9),
        final_loss=final_loss(out / "logs"),
        resumed_from=resumed_from,
    )
    summary = {**dataclasses.asdict(result), "torch_threads": _training_threads(config)}
    _write_text(out / "train.json", json.dumps(summary, indent=2) + "\n")
    save_learnable(algo, out / MODEL_FILE)  # atomic
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)  # a finished run has nothing to resume
    return result

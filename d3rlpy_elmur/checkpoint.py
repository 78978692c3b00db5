"""Training checkpoints that resume exactly, for ELMURDT and d3rlpy's own algorithms.

A checkpoint holds everything the next update depends on: every module and optimizer of the
impl (weights, Adam moments, LR scheduler), d3rlpy's gradient-step counter (target updates,
warm-up), the impl's plain number attributes (d3rlpy's DiscreteDecisionTransformer counts
trained tokens there for its LR schedule), and the random states: Python's, numpy's global one
(d3rlpy's samplers draw from it), torch's (dropout; CUDA's too once CUDA is in use) and
ELMURDT's window sampler's own generator. Restoring the checkpoint taken after step k and
training to n gives the parameters of an uninterrupted n-step run (same device and torch
threads); ``tests/test_resume.py`` checks that bit for bit. DDP training is refused (each rank
has its own random states).

Files are written atomically (a temporary file renamed over the old one) and read with
``torch.load(weights_only=True)``: loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from d3rlpy.algos.transformer.base import TransformerAlgoBase
from d3rlpy.algos.utility import (
    build_scalers_with_trajectory_slicer,
    build_scalers_with_transition_picker,
)
from d3rlpy.base import LearnableBase
from d3rlpy.torch_utility import map_location
from torch.nn.parallel import DistributedDataParallel

from .algos.segments import SegmentRecurrentView
from .io import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "build_impl",
    "read_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "d3rlpy_elmur.checkpoint/1"
_KEYS = ("format", "step", "grad_step", "modules", "counters", "rng", "meta")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not belong to the run it is restored into."""


def _modules(algo: LearnableBase[Any, Any]) -> dict[str, Any]:
    if algo.impl is None:
        raise CheckpointError("the algorithm has no impl yet: build it before checkpointing")
    # the same modules d3rlpy's own save_model writes (networks, optimizers with schedulers)
    return dict(algo.impl.modules.create_checkpointer(algo.impl.device).modules)


def _counters(algo: LearnableBase[Any, Any]) -> dict[str, int | float]:
    # exact types: not modules, tensors or callables; constants round-trip harmlessly
    return {name: value for name, value in vars(algo.impl).items() if type(value) in (int, float)}


def build_impl(algo: LearnableBase[Any, Any], dataset: Any) -> None:
    """Fit ``algo``'s scalers and create its impl for ``dataset`` the way d3rlpy's ``fit``
    does (whole observation shape for images; ``build_with_dataset`` keeps only its first
    dimension). Scaler fitting draws no random numbers."""
    if isinstance(algo, TransformerAlgoBase):
        build_scalers_with_trajectory_slicer(algo, dataset)
    else:
        build_scalers_with_transition_picker(algo, dataset)
    shape = dataset.sample_transition().observation_signature.shape
    algo.create_impl(shape[0] if len(shape) == 1 else shape, dataset.dataset_info.action_size)


def _rng_state(sampler: SegmentRecurrentView | None) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "sampler": None if sampler is None else sampler.rng_state,
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    algo: LearnableBase[Any, Any],
    step: int,
    *,
    sampler: SegmentRecurrentView | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the training state after ``step`` updates to ``path`` (atomically).

    Call it between updates: ``elmur train`` does so after d3rlpy has written an epoch's log
    rows (a ``fit`` callback also runs between updates). ``sampler`` is ELMURDT's
    window view when it trains on one; ``meta`` is plain data kept beside the state (the run's
    identity, elapsed seconds) and checked by the caller on restore.
    """
    modules = _modules(algo)
    if any(isinstance(m, DistributedDataParallel) for m in modules.values()):
        # every rank would write the same file, and each has random states of its own
        raise CheckpointError("checkpoints of DDP training are not supported")
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "grad_step": int(algo.grad_step),
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "counters": _counters(algo),
        "rng": _rng_state(sampler),
        "meta": dict(meta or {}),
    }
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str], device: str = "cpu:0") -> dict[str, Any]:
    """The checkpoint's contents, read without running code from the file."""
    try:
        state = torch.load(path, map_location=map_location(device), weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, not a torch file, or an object weights_only refuses
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def restore_checkpoint(
    state: Mapping[str, Any],
    algo: LearnableBase[Any, Any],
    *,
    sampler: SegmentRecurrentView | None = None,
) -> int:
    """Load a :func:`read_checkpoint` state into ``algo`` (impl built) and the random
    generators; returns the step to continue from. Everything is checked before anything is
    changed: a checkpoint that does not fit raises :class:`CheckpointError` and leaves the
    algorithm and the generators as they were."""
    modules = _modules(algo)
    try:
        _check_fits(state, algo, modules, sampler)
        rng = state["rng"]
        python_version, python_state, gauss = rng["python"]
        python_rng = (python_version, tuple(python_state), gauss)
        name, keys, pos, has_gauss, cached = rng["numpy"]
        numpy_rng = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
        torch_rng = rng["torch"].cpu()
        cuda_rng = rng.get("torch_cuda")
        step, grad_step = int(state["step"]), int(state["grad_step"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"malformed checkpoint: {e!r}") from e
    for module_name, module in modules.items():
        module.load_state_dict(state["modules"][module_name])
    algo.set_grad_step(grad_step)
    for counter, value in state["counters"].items():
        setattr(algo.impl, counter, value)
    random.setstate(python_rng)
    np.random.set_state(numpy_rng)
    torch.set_rng_state(torch_rng)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_rng])
    if sampler is not None:
        sampler.rng_state = rng["sampler"]
    return step


def _check_fits(
    state: Mapping[str, Any],
    algo: LearnableBase[Any, Any],
    modules: Mapping[str, Any],
    sampler: SegmentRecurrentView | None,
) -> None:
    if set(modules) != set(state["modules"]):
        raise CheckpointError(
            f"checkpoint modules {sorted(state['modules'])} do not match the algorithm's "
            f"{sorted(modules)}"
        )
    for name, module in modules.items():
        if isinstance(module, torch.nn.Module):
            ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
            theirs = {k: tuple(v.shape) for k, v in state["modules"][name].items()}
            if ours != theirs:
                raise CheckpointError(f"checkpoint module {name!r} has other tensors or shapes")
    counters = _counters(algo)
    if set(counters) != set(state["counters"]):
        raise CheckpointError(
            f"checkpoint counters {sorted(state['counters'])} do not match the impl's "
            f"{sorted(counters)}"
        )
    if (state["rng"]["sampler"] is None) != (sampler is None):
        raise CheckpointError("the checkpoint and the run disagree on the window sampler")

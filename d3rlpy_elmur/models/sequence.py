"""The interface every sequence encoder (ELMUR, the GRU baseline) offers to the algorithms.

A sequence encoder maps a batch of step tokens to one feature per step while carrying a recurrent
state (ELMUR: per-layer memory; GRU: hidden state). It has three execution paths with one set of
weights:

* ``forward``: training. Tokens ``[B, T, D]`` are cut into segments of ``context_size`` steps
  aligned to the first token (which the caller puts on a segment boundary of the episode).
* ``step``: inference. One token per call; the state also holds whatever cache the encoder needs, so
  the work per step does not depend on how long the episode has been running.
* ``export_step``: ``step`` as a pure function of its state, what TorchScript and ONNX export
  trace.

States are plain dicts of batch-first tensors, so that generic code (batched evaluation with
episodes that end at different times) can reset single rows without knowing the encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = [
    "SequenceEncoder",
    "SequenceOutput",
    "State",
    "failed_fields",
    "reset_rows",
    "shared_field_checks",
    "type_checks",
]

State = dict[str, torch.Tensor]


def failed_fields(config: object, checks: Mapping[str, bool]) -> str:
    """``name=value, ...`` of the fields of ``config`` whose check failed ("" if none): what
    the configs' errors name."""
    return ", ".join(f"{name}={getattr(config, name)!r}" for name, ok in checks.items() if not ok)


def type_checks(config: object, ints: Sequence[str], floats: Sequence[str]) -> dict[str, bool]:
    """Per field of ``config``: those in ``ints`` are ints, those in ``floats`` ints or floats
    (a bool is neither a size nor a rate)."""
    checks = {name: type(getattr(config, name)) is int for name in ints}
    return checks | {name: type(getattr(config, name)) in (int, float) for name in floats}


def shared_field_checks(config: Any) -> dict[str, bool]:
    """The checks of the fields every sequence encoder uses (width, layers, dropout,
    truncation), on what holds them: the algorithm's hand-over or a model's own config."""
    typed = type_checks(config, ("embed_dim", "num_layers", "bptt_segments"), ("dropout",))
    return {
        "embed_dim": typed["embed_dim"] and config.embed_dim > 0,
        "num_layers": typed["num_layers"] and config.num_layers > 0,
        "dropout": typed["dropout"] and 0.0 <= config.dropout < 1.0,
        "bptt_segments": typed["bptt_segments"] and config.bptt_segments >= 0,
    }


class SequenceOutput(NamedTuple):
    """What a segment-path forward computes (of an encoder, or of the policy around it).

    Everything is returned, nothing is kept on the module: a module holding tensors with
    autograd history cannot be deep-copied (export copies the policy). Returned rather than
    written into an argument, because DDP copies a forward's inputs.
    """

    outputs: torch.Tensor  # [B, T, D] features (encoder); [B, T, A] logits or actions (policy)
    state: State  # after the last complete segment
    kept_states: list[State]  # after every segment, with keep_states (else empty)
    aux_loss: torch.Tensor | None  # e.g. MoE load balancing (None: the model has none)


class SequenceEncoder(nn.Module):
    """Base class: subclasses implement the methods below."""

    embed_dim: int
    context_size: int

    def initial_state(self, batch_size: int) -> State:
        """State at the start of an episode, for the segment path."""
        raise NotImplementedError

    def forward(
        self,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        keep_states: bool = False,
    ) -> SequenceOutput:
        """Runs ``tokens`` [B, T, D] (``valid`` [B, T] bool, absolute ``steps`` [B, T] long).

        Returns features [B, T, D], the state after the last complete segment, with
        ``keep_states`` the state after every segment (what training replays start from),
        and the auxiliary loss.
        """
        raise NotImplementedError

    def initial_step_state(self, batch_size: int) -> State:
        """State at the start of an episode, for the step path (state plus caches)."""
        raise NotImplementedError

    def step(
        self, token: torch.Tensor, steps: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """Runs one token per row: ``token`` [B, D], absolute ``steps`` [B] long."""
        raise NotImplementedError

    def initial_export_state(self, batch_size: int) -> State:
        """State at the start of an episode, for ``export_step``."""
        raise NotImplementedError

    def export_step(
        self, token: torch.Tensor, steps: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """``step`` as a pure function (new state out, inputs untouched, no Python branch on
        data), so that TorchScript and ONNX traces capture it whole; same outputs."""
        raise NotImplementedError


def reset_rows(state: State, initial: State, rows: torch.Tensor) -> State:
    """Replaces the rows where ``rows`` [B] is true by ``initial`` (batch 1 or B)."""
    out: State = {}
    for key, value in state.items():
        mask = rows.view(-1, *([1] * (value.dim() - 1)))
        if value.dtype == torch.bool:  # as logic: onnxruntime has no Where on bool (export)
            out[key] = (mask & initial[key]) | (~mask & value)
        else:
            out[key] = torch.where(mask, initial[key].to(value.dtype), value)
    return out

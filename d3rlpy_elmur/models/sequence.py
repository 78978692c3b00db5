"""The interface every sequence encoder (ELMUR, the GRU baseline) offers to the algorithms.

A sequence encoder maps a batch of step tokens to one feature per step while carrying a recurrent
state (ELMUR: per-layer memory; GRU: hidden state). It has two execution paths with one set of
weights:

* ``forward``: training. Tokens ``[B, T, D]`` are cut into segments of ``context_size`` steps
  aligned to the first token (which the caller puts on a segment boundary of the episode).
* ``step``: inference. One token per call; the state also holds whatever cache the encoder needs, so
  the work per step does not depend on how long the episode has been running.

States are plain dicts of batch-first tensors, so that generic code (batched evaluation with
episodes that end at different times) can reset single rows without knowing the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SequenceEncoder", "State", "reset_rows"]

State = dict[str, torch.Tensor]


class SequenceEncoder(nn.Module):
    """Base class: subclasses implement the four methods below."""

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
    ) -> tuple[torch.Tensor, State]:
        """Runs ``tokens`` [B, T, D] (``valid`` [B, T] bool, absolute ``steps`` [B, T] long).

        Returns features [B, T, D] and the state after the last complete segment. With
        ``keep_states`` the state after every segment is kept for ``kept_states`` (what
        training replays start from; kept on the module, not in an argument, so that it
        survives DDP's copies of the inputs).
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

    def kept_states(self) -> list[State]:
        """The states after every segment of the last ``forward(keep_states=True)``."""
        return list(getattr(self, "_kept", []))

    def aux_loss(self) -> torch.Tensor | None:
        """Auxiliary loss of the last ``forward`` (e.g. MoE load balancing), if any."""
        return None


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

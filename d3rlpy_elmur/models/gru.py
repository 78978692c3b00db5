"""A GRU behind the sequence-encoder interface: the recurrent baseline (BC-GRU)."""

from __future__ import annotations

import torch
from torch import nn

from .sequence import SequenceEncoder, SequenceOutput, State

__all__ = ["GRUEncoder"]


class GRUEncoder(SequenceEncoder):
    """State: ``hidden`` [B, num_layers, D].

    The hidden state is carried step by step; ``forward`` keeps it unchanged across a segment
    that holds no real step (a window's padded context segment before t = 0, or padding past
    an episode's end), which the step path never runs, so both paths agree.
    """

    def __init__(
        self,
        embed_dim: int,
        context_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        truncate_every: int = 0,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.context_size = context_size
        self.truncate_every = truncate_every
        self.gru = nn.GRU(
            embed_dim,
            embed_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.hidden_init = nn.Parameter(torch.zeros(num_layers, embed_dim))

    def initial_state(self, batch_size: int) -> State:
        return {"hidden": self.hidden_init.unsqueeze(0).expand(batch_size, -1, -1)}

    def forward(
        self,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        keep_states: bool = False,
    ) -> SequenceOutput:
        K = self.context_size
        hidden = state["hidden"]
        outputs, kept = [], []
        for index, start in enumerate(range(0, tokens.shape[1], K)):
            seg = slice(start, start + K)
            out, new = self.gru(tokens[:, seg], hidden.transpose(0, 1).contiguous())
            has_step = valid[:, seg].any(dim=1)[:, None, None]
            hidden = torch.where(has_step, new.transpose(0, 1), hidden)
            outputs.append(out)
            if keep_states:
                kept.append({"hidden": hidden})
            if self.truncate_every and (index + 1) % self.truncate_every == 0:
                hidden = hidden.detach()
        return SequenceOutput(torch.cat(outputs, 1), {"hidden": hidden}, kept, None)

    def initial_step_state(self, batch_size: int) -> State:
        return {"hidden": self.initial_state(batch_size)["hidden"].clone()}

    def step(
        self, token: torch.Tensor, steps: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        out, new = self.gru(token[:, None], state["hidden"].transpose(0, 1).contiguous())
        return out[:, 0], {"hidden": new.transpose(0, 1)}

    # the step is already pure (no cache, no in-place write): export runs it as it is
    initial_export_state = initial_step_state
    export_step = step

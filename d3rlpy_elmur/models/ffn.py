"""The feed-forward blocks of a transformer layer: an MLP, and a mixture of experts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "MoE"]


class MLP(nn.Module):
    """Linear, GELU, linear (width ``multiplier`` x ``dim``), then dropout."""

    def __init__(self, dim: int, multiplier: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(dim, multiplier * dim)
        self.proj = nn.Linear(multiplier * dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.proj(F.gelu(self.fc(x))), self.dropout, self.training)


class MoE(nn.Module):
    """A shared expert plus top-1 routed experts, with a Switch-style load-balancing loss.

    Experts are evaluated densely (a few small experts: one batched matmul beats gathering).
    """

    def __init__(self, dim: int, multiplier: int, num_experts: int, dropout: float):
        super().__init__()
        hidden = multiplier * dim
        self.shared = MLP(dim, multiplier, dropout)
        self.router = nn.Linear(dim, num_experts)
        self.w_in = nn.Parameter(torch.randn(num_experts, dim, hidden) / math.sqrt(dim))
        self.w_out = nn.Parameter(torch.randn(num_experts, hidden, dim) / math.sqrt(hidden))
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., D] -> (output [..., D], load-balancing loss []). The loss counts the tokens
        where ``valid`` [...] is true (all when None): padding must not pull the router."""
        probs = self.router(x).softmax(-1)  # [..., E]
        top = probs.argmax(-1)
        gate = probs * F.one_hot(top, probs.shape[-1]).to(probs.dtype)
        hidden = F.gelu(torch.einsum("...d,edh->...eh", x, self.w_in))
        routed = torch.einsum("...eh,ehd,...e->...d", hidden, self.w_out, gate)
        E = probs.shape[-1]
        weight = (torch.ones_like(top) if valid is None else valid).to(probs.dtype)
        weight = weight.reshape(-1, 1) / weight.sum().clamp(min=1.0)  # a mean over real tokens
        fraction = (F.one_hot(top, E).to(probs.dtype).reshape(-1, E) * weight).sum(0)
        balance = E * (fraction * (probs.reshape(-1, E) * weight).sum(0)).sum()
        routed = F.dropout(routed, self.dropout, self.training)
        return self.shared(x) + routed, balance

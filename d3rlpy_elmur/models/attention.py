"""The attention blocks of an ELMUR layer: cross-attention (memory read and write), causal
self-attention over a segment plus the previous segment's last W tokens, and the attention of
one query per row over cached keys and values (the step and export paths)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossAttention", "SelfAttention", "attend_one"]


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dropout: float,
) -> torch.Tensor:
    """Scaled dot-product attention, heads first: [B, H, Tq, dh] x [B, H, Tk, dh]."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)


def attend_one(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Attention of one query per row: q [B, H, dh], k and v [B, H, T, dh], bias
    broadcastable to [B, H, T] -> [B, H * dh]. Three batched kernels: with a float bias
    PyTorch's scaled_dot_product_attention takes its math fallback on CPU (about ten small
    ops), and a step's cost is mostly per-op overhead (7% less per step, measured A/B in one
    process). Every row attends to at least its own key, so no softmax row is all -inf."""
    B, H, dh = q.shape
    T = k.shape[2]
    scaled = (q * dh**-0.5).reshape(B * H, 1, dh)
    keys = k.reshape(B * H, T, dh).transpose(1, 2)
    scores = torch.baddbmm(bias.expand(B, H, T).reshape(B * H, 1, T), scaled, keys)
    return torch.bmm(scores.softmax(-1), v.reshape(B * H, T, dh)).view(B, H * dh)


class CrossAttention(nn.Module):
    """Queries from one stream, keys and values from another (memory read and write)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        B, Tq, D = x.shape
        H = self.num_heads
        q = self.q_proj(x).view(B, Tq, H, D // H).transpose(1, 2)  # [B, H, Tq, dh]
        k, v = (
            t.transpose(1, 2) for t in self.kv_proj(context).view(B, -1, 2, H, D // H).unbind(2)
        )
        p = self.dropout if self.training else 0.0
        y = _attend(q, k, v, bias, p).transpose(1, 2).reshape(B, Tq, D)
        return F.dropout(self.out_proj(y), p, self.training)


class SelfAttention(nn.Module):
    """Causal attention over a segment and the previous segment's last W tokens (its context),
    with a learned bias per relative offset i - j in 0 .. K + W - 1."""

    def __init__(self, dim: int, num_heads: int, context_size: int, window: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(num_heads, context_size + window))

    def bias(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """Additive bias [H or B.., Tq, Tk] for query and key positions (context first)."""
        rel = query_pos[..., :, None] - key_pos[..., None, :]
        bias = self.rel_bias[:, rel.clamp(min=0)]  # [H, ..., Tq, Tk]
        bias = bias.masked_fill(rel < 0, float("-inf"))
        return bias.movedim(0, -3)  # [..., H, Tq, Tk]

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        B, T, D = x.shape
        H = self.num_heads
        # Unbind along the projection's own layout, then transpose: the backward then stacks
        # the three gradients straight into that layout (indexing would fill a zero tensor
        # per index, and unbinding a permuted view needs a strided copy back).
        q, k, v = self.qkv(x).view(B, T, 3, H, D // H).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # each [B, H, T, dh]

    def output(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, dh = y.shape
        p = self.dropout if self.training else 0.0
        return F.dropout(self.out_proj(y.transpose(1, 2).reshape(B, T, H * dh)), p, self.training)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None, context_valid: torch.Tensor | None
    ) -> torch.Tensor:
        """x [B, T, D]; context [B, W, D] (normalised like x) and context_valid [B] bool, or
        None when W = 0. A row whose context is not valid (the episode's first segment)
        attends within the segment only."""
        W = self.window
        if not W:
            q, k, v = self.project(x)
            return self.attend(q, k, v, None)
        if context is None or context_valid is None:
            raise ValueError(f"attention_window={W} needs the previous segment's context")
        q, k, v = self.project(torch.cat([context, x], 1))
        return self.attend(q[:, :, W:], k, v, context_valid)

    def forward_cached(
        self,
        x: torch.Tensor,
        context_kv: tuple[torch.Tensor, torch.Tensor],
        context_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` (W > 0) given the context's keys and values [B, H, W, dh] instead of
        the context (``context_kv``, or the previous segment's keys and values): the segment
        path of training carries them from one segment to the next, so the context is not
        projected twice. Returns also x's keys and values [B, H, T, dh]."""
        q, k, v = self.project(x)
        keys, values = (torch.cat(pair, 2) for pair in zip(context_kv, (k, v), strict=True))
        return self.attend(q, keys, values, context_valid), (k, v)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values [B, H, W, dh] of a context [B, W, D] (normalised like x):
        ``project``'s, without its queries."""
        B, W, D = context.shape
        kv = F.linear(context, self.qkv.weight[D:], self.qkv.bias[D:])
        k, v = kv.view(B, W, 2, self.num_heads, D // self.num_heads).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        context_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """Causal attention of the segment's queries q [B, H, T, dh] over keys and values
        [B, H, W + T, dh], the context's first; a row whose context is not valid
        (``context_valid`` [B]) attends within the segment only."""
        B, _, T, _ = q.shape
        W = k.shape[2] - T
        pos = torch.arange(W + T, device=q.device)
        bias = self.bias(pos[W:], pos)  # [H, T, W + T]
        if W:
            assert context_valid is not None
            hide = torch.zeros(B, 1, 1, W + T, dtype=bias.dtype, device=q.device)
            hide[..., :W] = torch.where(context_valid, 0.0, float("-inf"))[:, None, None, None]
            bias = bias + hide
        p = self.dropout if self.training else 0.0
        return self.output(_attend(q, k, v, bias, p))

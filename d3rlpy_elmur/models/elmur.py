"""ELMUR: a transformer whose every layer owns an external memory, updated by an LRU rule.

Cherepanov, Kovalev, Panov, "ELMUR: External Layer Memory with Update/Rewrite for Long-Horizon
RL", ICLR 2026, arXiv:2510.07151; where we depart from it: docs/design.md.

The whole model, top to bottom: config, relative time buckets, attention, feed-forward blocks, the
layer, and the model with its two execution paths. Per layer l, for a segment x of K tokens and the
layer's memory m of M slots (docs/design.md §1):

    h1 = x  + SelfAttn(x, c)                   causal, relative positions, plus the last W
                                               tokens c of the previous segment
    h2 = h1 + CrossAttn(q=h1, kv=m, B_rd)      mem2tok: tokens read memory
    h  = h2 + FFN(h2)                          -> next layer
    u  = m  + CrossAttn(q=m, kv=h, B_wr)       tok2mem: memory reads the segment
    m~ = u  + FFN_mem(u)                       candidate memory
    m' = LRU(m, m~)                            one slot written per segment

with post-norm (the paper) or pre-norm around every residual. The attention window W
(``attention_window``) is our extension: with W = 0 self-attention is segment-local, as in the
paper; with W > 0 a token also sees the previous segment's last W tokens (Transformer-XL's cache),
so a segment's first tokens have direct context while memory carries what lies further back.
Nothing depends on the absolute step index except through offsets between a token and a slot's
anchor, so the model is the same at step 10 and at step 10^6.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .sequence import SequenceEncoder, State

__all__ = ["ELMURConfig", "ELMUR", "time_bucket", "lru_update", "lru_target"]


@dataclasses.dataclass(frozen=True)
class ELMURConfig:
    embed_dim: int = 128
    num_layers: int = 2
    num_heads: int = 2
    context_size: int = 10  # K: steps per segment
    attention_window: int = 0  # W: previous-segment tokens every token also attends to (<= K)
    memory_slots: int = 1  # M: slots per layer (the algorithm configs' default too)
    lru_blend: float = 0.79  # lambda of the blend into the least recently used slot
    memory_init_std: float = 0.1  # std of the learned initial slots
    dropout: float = 0.0
    norm: str = "post"  # "post" (paper; keeps memory norms bounded) or "pre"
    ffn: str = "mlp"  # "mlp" or "moe" (token FFN only; the memory FFN is an MLP)
    ffn_multiplier: int = 4
    num_experts: int = 4  # MoE: routed experts (top-1) beside one shared expert
    moe_aux_weight: float = 0.01
    use_lru: bool = True  # False: every slot is overwritten by its candidate each segment
    shared_memory: bool = False  # True: one memory for all layers, written by the top one
    relative_bias: bool = True
    read: bool = True
    write: bool = True
    detach_memory: bool = False  # paper's code: no gradient through memory across segments
    context_gradient: bool = True  # gradient flows into the previous segment's context
    bptt_segments: int = 0  # truncate backprop through memory every n segments (0: never)
    time_buckets: int = 64  # exact offsets below 16, log-spaced up to 10^7 beyond

    def __post_init__(self) -> None:
        checks = {
            "embed_dim": self.embed_dim > 0,
            "num_layers": self.num_layers > 0,
            "num_heads": self.num_heads > 0 and self.embed_dim % self.num_heads == 0,
            "context_size": self.context_size > 0,
            "attention_window": 0 <= self.attention_window <= self.context_size,
            "memory_slots": self.memory_slots >= 1,
            "lru_blend": 0.0 <= self.lru_blend <= 1.0,
            "memory_init_std": self.memory_init_std >= 0.0,
            "dropout": 0.0 <= self.dropout < 1.0,
            "norm": self.norm in ("pre", "post"),
            "ffn": self.ffn in ("mlp", "moe"),
            "num_experts": self.num_experts >= 1,
            "bptt_segments": self.bptt_segments >= 0,
            "time_buckets": self.time_buckets > _EXACT_BUCKETS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(
                f"invalid ELMUR config: {values} (num_heads must divide embed_dim, "
                "lru_blend lies in [0, 1], memory_slots >= 1, 0 <= attention_window <= "
                "context_size, norm is pre|post, ffn is mlp|moe)"
            )

    @property
    def truncate_every(self) -> int:
        """Segments between two detaches of memory (0: never)."""
        return 1 if self.detach_memory else self.bptt_segments


_EXACT_BUCKETS = 16
_MAX_OFFSET = 1e7
_LUT_SIZE = 1 << 14  # the step path looks up time buckets of offsets below this


def time_bucket(offset: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Buckets non-negative step offsets: exact below 16, log-spaced up to 10^7."""
    offset = offset.clamp(min=0)
    scale = (num_buckets - _EXACT_BUCKETS) / math.log(_MAX_OFFSET / _EXACT_BUCKETS)
    log_part = torch.log(offset.clamp(min=_EXACT_BUCKETS).float() / _EXACT_BUCKETS)
    log_bucket = (_EXACT_BUCKETS + (log_part * scale).long()).clamp(max=num_buckets - 1)
    return torch.where(offset < _EXACT_BUCKETS, offset, log_bucket)


def lru_update(
    memory: torch.Tensor,
    candidate: torch.Tensor,
    anchors: torch.Tensor,
    last_step: torch.Tensor,
    blend: float,
    use_lru: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Writes one slot per row: the first empty one (replace), else the oldest (blend).

    memory, candidate [B, M, D]; anchors [B, M] long (-1 empty); last_step [B] long.
    Without LRU every slot takes its candidate.
    """
    if not use_lru:
        return candidate, last_step[:, None].expand_as(anchors).clone()
    empty = anchors < 0  # [B, M]
    has_empty = empty.any(dim=1)  # [B]
    # argmax returns the first maximum: the first empty slot, or the oldest anchor.
    target = torch.where(has_empty, empty.long().argmax(1), anchors.argmin(1))
    onehot = F.one_hot(target, anchors.shape[1]).bool()  # [B, M]
    coef = torch.where(has_empty, 1.0, blend).to(memory.dtype)  # [B]
    weight = onehot.to(memory.dtype) * coef[:, None]  # [B, M]
    new_memory = memory + weight[..., None] * (candidate - memory)
    new_anchors = torch.where(onehot, last_step[:, None], anchors)
    return new_memory, new_anchors


def lru_target(anchors: torch.Tensor, blend: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The slot ``lru_update`` writes and its weight: anchors [..., M] -> target [...] long,
    coef [...] (1 when the target is empty, i.e. replaced, else ``blend``).

    The step path uses it to compute the candidate of that one slot only: slots do not
    interact in the write, so the other M - 1 candidates would be thrown away.
    """
    empty = anchors < 0
    has_empty = empty.any(dim=-1)
    target = torch.where(has_empty, empty.long().argmax(-1), anchors.argmin(-1))
    coef = torch.where(has_empty, 1.0, blend)
    return target, coef


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dropout: float,
) -> torch.Tensor:
    """Scaled dot-product attention, heads first: [B, H, Tq, dh] x [B, H, Tk, dh]."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)


def _attend_one(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
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
    if bias is None:
        scores = torch.bmm(scaled, keys)
    else:
        scores = torch.baddbmm(bias.expand(B, H, T).reshape(B * H, 1, T), scaled, keys)
    return torch.bmm(scores.softmax(-1), v.reshape(B * H, T, dh)).view(B, H * dh)


def _norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``ln(x)`` without the module call (the step path calls it six times per step)."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


class CrossAttention(nn.Module):  # type: ignore[misc]
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


class SelfAttention(nn.Module):  # type: ignore[misc]
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
        B, T, _ = x.shape
        if W and (context is None or context_valid is None):
            raise ValueError(f"attention_window={W} needs the previous segment's context")
        q, k, v = self.project(torch.cat([context, x], 1) if W else x)  # type: ignore[list-item]
        pos = torch.arange(W + T, device=x.device)
        bias = self.bias(pos[W:], pos)  # [H, T, W + T]
        if W:
            q = q[:, :, W:]
            hide = torch.zeros(B, 1, 1, W + T, dtype=bias.dtype, device=x.device)
            hide[..., :W] = torch.where(context_valid, 0.0, float("-inf"))[:, None, None, None]  # type: ignore[arg-type]
            bias = bias + hide
        p = self.dropout if self.training else 0.0
        return self.output(_attend(q, k, v, bias, p))


class MLP(nn.Module):  # type: ignore[misc]
    def __init__(self, dim: int, multiplier: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(dim, multiplier * dim)
        self.proj = nn.Linear(multiplier * dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.proj(F.gelu(self.fc(x))), self.dropout, self.training)


class MoE(nn.Module):  # type: ignore[misc]
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
        self.last_aux: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """x [..., D]; the load-balancing loss counts the tokens where ``valid`` [...] is
        true (all when None): padding must not pull the router."""
        probs = self.router(x).softmax(-1)  # [..., E]
        top = probs.argmax(-1)
        gate = probs * F.one_hot(top, probs.shape[-1]).to(probs.dtype)
        hidden = F.gelu(torch.einsum("...d,edh->...eh", x, self.w_in))
        routed = torch.einsum("...eh,ehd,...e->...d", hidden, self.w_out, gate)
        E = probs.shape[-1]
        weight = (torch.ones_like(top) if valid is None else valid).to(probs.dtype)
        weight = weight.reshape(-1, 1) / weight.sum().clamp(min=1.0)  # a mean over real tokens
        fraction = (F.one_hot(top, E).to(probs.dtype).reshape(-1, E) * weight).sum(0)
        self.last_aux = E * (fraction * (probs.reshape(-1, E) * weight).sum(0)).sum()
        routed = F.dropout(routed, self.dropout, self.training)
        return self.shared(x) + routed


class ELMURLayer(nn.Module):  # type: ignore[misc]
    def __init__(self, cfg: ELMURConfig, writes: bool):
        super().__init__()
        D, H, p = cfg.embed_dim, cfg.num_heads, cfg.dropout
        self.pre_norm = cfg.norm == "pre"
        self.reads = cfg.read
        self.writes = writes
        self.self_attn = SelfAttention(D, H, cfg.context_size, cfg.attention_window, p)
        self.ln_self = nn.LayerNorm(D)
        if cfg.read:
            self.read_attn = CrossAttention(D, H, p)
            self.ln_read = nn.LayerNorm(D)
            self.ln_read_mem = nn.LayerNorm(D) if self.pre_norm else nn.Identity()
        self.ffn = (
            MoE(D, cfg.ffn_multiplier, cfg.num_experts, p)
            if cfg.ffn == "moe"
            else MLP(D, cfg.ffn_multiplier, p)
        )
        self.ln_ffn = nn.LayerNorm(D)
        if writes:
            self.write_attn = CrossAttention(D, H, p)
            self.ln_write = nn.LayerNorm(D)
            self.ln_write_tok = nn.LayerNorm(D) if self.pre_norm else nn.Identity()
            self.mem_ffn = MLP(D, cfg.ffn_multiplier, p)
            self.ln_mem_ffn = nn.LayerNorm(D)
            # Pre-norm leaves the candidate unnormalised, and blending it in every segment
            # would accumulate without bound: normalise what is written (post-norm does).
            self.ln_mem_out = nn.LayerNorm(D) if self.pre_norm else nn.Identity()

    def _residual(self, x: torch.Tensor, sublayer: object, norm: nn.Module) -> torch.Tensor:
        if self.pre_norm:
            return x + sublayer(norm(x))  # type: ignore[operator]
        return norm(x + sublayer(x))  # type: ignore[operator]

    def read_and_ffn(
        self,
        h1: torch.Tensor,
        memory: torch.Tensor,
        read_bias: torch.Tensor | None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h2 = h1 + CrossAttn(h1, m); h = h2 + FFN(h2). h1 [B, T, D], memory [B, M, D];
        ``valid`` [B, T] marks real tokens (for the MoE's load-balancing loss)."""
        if self.reads:
            mem = self.ln_read_mem(memory)
            h1 = self._residual(h1, lambda q: self.read_attn(q, mem, read_bias), self.ln_read)
        if isinstance(self.ffn, MoE):
            return self._residual(h1, lambda x: self.ffn(x, valid), self.ln_ffn)
        return self._residual(h1, self.ffn, self.ln_ffn)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        read_bias: torch.Tensor | None,
        context: torch.Tensor | None = None,
        context_valid: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token path of one segment: x [B, T, D] -> h [B, T, D]. ``context``: this layer's
        inputs at the previous segment's last W tokens [B, W, D], valid rows ``context_valid``;
        ``valid`` [B, T]: the real tokens."""
        if self.pre_norm:
            ctx = None if context is None else self.ln_self(context)
            h1 = x + self.self_attn(self.ln_self(x), ctx, context_valid)
        else:
            h1 = self.ln_self(x + self.self_attn(x, context, context_valid))
        return self.read_and_ffn(h1, memory, read_bias, valid)

    def step(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        pos: int | torch.Tensor,
        self_bias: torch.Tensor,
        read_plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        read_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """Token path of one step: x [B, D] at segment position ``pos`` -> h [B, D].

        keys, values: this layer's cache [B, H, W + K, dh] (the previous segment's last W
        tokens, then the segment's), written in place at W + ``pos`` (an int when every row is
        at the same position, else [B] long). self_bias: the bias of that position ([H, W + K]
        or [B, H, W + K], -inf on future keys and on a missing context). read_plan: this
        layer's memory folded into the read's projections (``read_plan``), cached by the model
        since memory is frozen during a segment; read_bias [B, H, M]. Same math as ``forward``
        on one token.
        """
        B, D = x.shape
        sa = self.self_attn
        H = sa.num_heads
        qkv = F.linear(_norm(self.ln_self, x) if self.pre_norm else x, sa.qkv.weight, sa.qkv.bias)
        q, k, v = qkv.view(B, 3, H, D // H).unbind(1)  # each [B, H, dh]
        W = sa.window  # the cache holds [context W | segment K]
        if isinstance(pos, int):
            keys[:, :, W + pos] = k
            values[:, :, W + pos] = v
            # Only the first W + pos + 1 keys can be seen: attend over them.
            keys, values = keys[:, :, : W + pos + 1], values[:, :, : W + pos + 1]
            self_bias = self_bias[..., : W + pos + 1]
        else:
            rows = torch.arange(B, device=x.device)
            keys[rows, :, W + pos] = k
            values[rows, :, W + pos] = v
        y = F.linear(_attend_one(q, keys, values, self_bias), sa.out_proj.weight, sa.out_proj.bias)
        h1 = x + y if self.pre_norm else _norm(self.ln_self, x + y)
        if self.reads and read_plan is not None:
            A, c, P = read_plan
            hq = _norm(self.ln_read, h1) if self.pre_norm else h1
            if read_bias is not None:
                c = c + read_bias.reshape(c.shape)
            scores = torch.baddbmm(c.unsqueeze(1), hq.unsqueeze(1), A)  # [B, 1, H * M]
            weights = scores.view(B, H, -1).softmax(-1).view(B, 1, -1)
            y = torch.baddbmm(self.read_attn.out_proj.bias, weights, P).view(B, D)
            h1 = h1 + y if self.pre_norm else _norm(self.ln_read, h1 + y)
        if self.pre_norm:
            return h1 + self._ffn_step(_norm(self.ln_ffn, h1))
        return _norm(self.ln_ffn, h1 + self._ffn_step(h1))

    def _ffn_step(self, x: torch.Tensor) -> torch.Tensor:
        """FFN(x) in eval mode; the MLP without module-call and dropout overhead."""
        ffn = self.ffn
        if isinstance(ffn, MLP):
            return F.linear(
                F.gelu(F.linear(x, ffn.fc.weight, ffn.fc.bias)), ffn.proj.weight, ffn.proj.bias
            )
        return ffn(x)  # type: ignore[no-any-return]

    def read_plan(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The read (mem2tok) of memory [B, M, D] folded into its projections, for steps.

        With k_j, v_j the slot keys and values of head h, a token's read is
        softmax_j((W_q h + b_q) . k_j / sqrt(dh)) summed against W_o v_j. Memory is frozen
        during a segment, so fold W_q into the keys and W_o into the values once per segment:
        A = W_q^T k / sqrt(dh) [B, D, H*M], c = b_q . k / sqrt(dh) [B, H*M] and
        P = W_o v [B, H*M, D]. A step's read is then two small batched products instead of
        the query and output projections (fewer kernels, and 2 D^2 fewer multiply-adds per
        token). The same math as ``CrossAttention``, summed in another order.
        """
        B, M, D = memory.shape
        ra = self.read_attn
        H = ra.num_heads
        dh = D // H
        kv = ra.kv_proj(self.ln_read_mem(memory)).view(B, M, 2, H, dh)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, M, dh]
        scale = dh**-0.5  # applied to the (small) query weights, not to A
        A = torch.einsum("bhmd,hde->behm", k, ra.q_proj.weight.view(H, dh, D) * scale)
        c = torch.einsum("bhmd,hd->bhm", k, ra.q_proj.bias.view(H, dh) * scale)
        P = torch.einsum("bhmd,ehd->bhme", v, ra.out_proj.weight.view(D, H, dh))
        return A.reshape(B, D, H * M), c.reshape(B, H * M), P.reshape(B, H * M, D)

    def candidate_one(
        self, slot: torch.Tensor, tokens: torch.Tensor, write_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``candidate`` of one slot per row: slot [B, D], tokens [B, T, D], bias [B, H, T].

        Slots are independent in the write (per-slot queries, norms and FFN), so this is the
        slot's row of ``candidate``. The write's key and value projections are folded into
        the query and output side: W_k^T q (per head) scores the raw tokens, and
        W_v (sum_t w_t h_t) + b_v sum_t w_t gives the attended value, so the K tokens are
        never projected (about 4 D^2 multiply-adds per slot instead of (2K + 2) D^2). The same
        math as ``CrossAttention``, summed in another order.
        """
        B, T, D = tokens.shape
        wa = self.write_attn
        H = wa.num_heads
        dh = D // H
        p = wa.dropout if self.training else 0.0
        toks = self.ln_write_tok(tokens)
        q_in = self.ln_write(slot) if self.pre_norm else slot
        q = F.linear(q_in, wa.q_proj.weight, wa.q_proj.bias).view(B, H, dh) * dh**-0.5
        w_k, w_v = wa.kv_proj.weight.view(2, H, dh, D).unbind(0)
        b_k, b_v = wa.kv_proj.bias.view(2, H, dh).unbind(0)
        q_k = torch.einsum("bhd,hde->bhe", q, w_k)  # [B, H, D]
        scores = torch.baddbmm((q * b_k).sum(-1, keepdim=True), q_k, toks.transpose(1, 2))
        if write_bias is not None:
            scores = scores + write_bias  # [B, H, T]
        weights = F.dropout(scores.softmax(-1), p, self.training)
        z = torch.bmm(weights, toks)  # [B, H, D]: attention-weighted raw tokens
        v = torch.einsum("bhe,hde->bhd", z, w_v) + b_v * weights.sum(-1, keepdim=True)
        y = F.dropout(
            F.linear(v.reshape(B, D), wa.out_proj.weight, wa.out_proj.bias), p, self.training
        )
        u = slot + y if self.pre_norm else self.ln_write(slot + y)
        return self.ln_mem_out(self._residual(u, self.mem_ffn, self.ln_mem_ffn))

    def candidate(
        self,
        memory: torch.Tensor,
        tokens: torch.Tensor,
        write_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """m~ = u + FFN_mem(u), u = m + CrossAttn(m, h): memory [B, M, D], tokens [B, K, D]."""
        toks = self.ln_write_tok(tokens)
        u = self._residual(memory, lambda q: self.write_attn(q, toks, write_bias), self.ln_write)
        return self.ln_mem_out(self._residual(u, self.mem_ffn, self.ln_mem_ffn))


class ELMUR(SequenceEncoder):
    """The ELMUR sequence model. State: ``memory`` [B, Lm, M, D], ``anchors`` [B, Lm, M]."""

    def __init__(self, cfg: ELMURConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.context_size = cfg.context_size
        L = cfg.num_layers
        self.memory_layers = 1 if cfg.shared_memory else L
        writers = [cfg.write and (not cfg.shared_memory or i == L - 1) for i in range(L)]
        self.layers = nn.ModuleList(ELMURLayer(cfg, w) for w in writers)
        self.ln_out = nn.LayerNorm(cfg.embed_dim) if cfg.norm == "pre" else nn.Identity()
        self.memory_init = nn.Parameter(
            torch.randn(self.memory_layers, cfg.memory_slots, cfg.embed_dim) * cfg.memory_init_std
        )
        if cfg.relative_bias:
            # one extra bucket for empty slots (anchor -1), so the model can learn to ignore them
            self.read_time_bias = nn.Embedding(cfg.time_buckets + 1, cfg.num_heads)
            self.write_time_bias = nn.Embedding(cfg.time_buckets + 1, cfg.num_heads)
            nn.init.zeros_(self.read_time_bias.weight)
            nn.init.zeros_(self.write_time_bias.weight)
        self._aux: tuple[torch.Tensor, torch.Tensor] | None = None  # (weighted sum, tokens)
        # step path: parameter-derived tables, rebuilt when the parameters change
        self._step_cache: dict[str, tuple[object, torch.Tensor]] = {}
        self._compiled_layers: object | None = None  # see compile_step

    # ----------------------------------------------------------------------------------- helpers
    def _memory_index(self, layer: int) -> int:
        return 0 if self.cfg.shared_memory else layer

    def _biases(
        self, steps: torch.Tensor, anchors: torch.Tensor
    ) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
        """Read biases [B, H, T, M] and write biases [B, H, M, T] per memory layer."""
        read_table = getattr(self, "read_time_bias", None)
        write_table = getattr(self, "write_time_bias", None)
        if read_table is None or write_table is None:
            none: list[torch.Tensor | None] = [None] * self.memory_layers
            return none, list(none)
        # Read and write index their tables with the same offsets: bucket once, all layers.
        offset = steps[:, None, :, None] - anchors[:, :, None, :]  # [B, Lm, T, M]
        bucket = time_bucket(offset, self.cfg.time_buckets)
        bucket = torch.where(anchors[:, :, None, :] < 0, self.cfg.time_buckets, bucket)
        reads = read_table(bucket).permute(1, 0, 4, 2, 3)  # [Lm, B, H, T, M]
        writes = write_table(bucket).permute(1, 0, 4, 3, 2)  # [Lm, B, H, M, T]
        return list(reads.unbind(0)), list(writes.unbind(0))

    @torch.no_grad()
    def memory_norm_bound(self) -> float:
        """Upper bound on every slot's L2 norm: every write is a LayerNorm output (post-norm's
        last norm, pre-norm's ``ln_mem_out``) and the LRU blend is convex."""
        bound = float(self.memory_init.norm(dim=-1).max())
        for layer in self.layers:
            if layer.writes:
                ln = layer.ln_mem_out if self.cfg.norm == "pre" else layer.ln_mem_ffn
                # |gamma * xhat + beta| <= max|gamma| * sqrt(D) + |beta|, with |xhat|^2 = D
                ln_bound = float(ln.weight.abs().max()) * math.sqrt(self.embed_dim) + float(
                    ln.bias.norm()
                )
                bound = max(bound, ln_bound)
        return bound

    def aux_loss(self) -> torch.Tensor | None:
        """The MoE load-balancing loss of the last ``forward``: summed over layers, a mean
        over its real tokens (each segment weighted by its count), so S does not scale it."""
        if self._aux is None:
            return None
        total, tokens = self._aux
        return total / tokens.clamp(min=1.0)

    def _collect_aux(self, valid: torch.Tensor) -> None:
        if self.cfg.ffn != "moe":
            return
        aux = sum(layer.ffn.last_aux for layer in self.layers) * self.cfg.moe_aux_weight
        n = valid.sum().to(aux.dtype)
        total, tokens = (
            (aux * n, n) if self._aux is None else (self._aux[0] + aux * n, self._aux[1] + n)
        )
        self._aux = (total, tokens)

    # ------------------------------------------------------------------------------ segment path
    def initial_state(self, batch_size: int) -> State:
        memory = self.memory_init.unsqueeze(0).expand(batch_size, -1, -1, -1)
        anchors = torch.full(
            (batch_size, self.memory_layers, self.cfg.memory_slots),
            -1,
            dtype=torch.long,
            device=self.memory_init.device,
        )
        state = {"memory": memory, "anchors": anchors}
        W = self.cfg.attention_window
        if W:
            # no previous segment yet: the context is hidden from attention
            state["context"] = memory.new_zeros(batch_size, self.cfg.num_layers, W, self.embed_dim)
            state["context_valid"] = torch.zeros(batch_size, dtype=torch.bool, device=memory.device)
        return state

    def _segment(
        self, x: torch.Tensor, valid: torch.Tensor, steps: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """One segment: x [B, T<=K, D] -> [B, T, D]; memory is written iff step K-1 is real."""
        memory, anchors = state["memory"], state["anchors"]
        B, T, _ = x.shape
        read_bias, write_bias = self._biases(steps, anchors)
        # Write only rows whose segment is complete, as step inference does at step K-1; a
        # complete segment also becomes the next one's context (the step path rolls its cache).
        complete = valid[:, -1] if T == self.context_size else torch.zeros_like(valid[:, 0])
        key_mask = None
        if self.cfg.write and bool(complete.any()):
            # Padding is masked in writing rows only: a row with no real token would give NaN
            # attention, and NaN poisons gradients even where torch.where discards it.
            hidden = (~valid & complete[:, None])[:, None, None, :]
            key_mask = torch.zeros(B, 1, 1, T, dtype=x.dtype, device=x.device)
            key_mask = key_mask.masked_fill(hidden, float("-inf"))
        new_memory, new_anchors = [], []
        W = self.cfg.attention_window
        contexts = []
        h = x
        for i, layer in enumerate(self.layers):
            mi = self._memory_index(i)
            if W:
                context = state["context"][:, i]
                if T == self.context_size:
                    contexts.append(torch.where(complete[:, None, None], h[:, -W:], context))
                else:  # a partial segment is never a context
                    contexts.append(context)
                if not self.cfg.context_gradient:
                    context = context.detach()
                h = layer(h, memory[:, mi], read_bias[mi], context, state["context_valid"], valid)
            else:
                h = layer(h, memory[:, mi], read_bias[mi], valid=valid)
            if layer.writes and key_mask is not None:
                wb = key_mask if write_bias[mi] is None else write_bias[mi] + key_mask
                mem, anc = self._lru_write(
                    layer, memory[:, mi], anchors[:, mi], h, wb, steps[:, -1]
                )
                new_memory.append(torch.where(complete[:, None, None], mem, memory[:, mi]))
                new_anchors.append(torch.where(complete[:, None], anc, anchors[:, mi]))
            elif not self.cfg.shared_memory:
                new_memory.append(memory[:, mi])
                new_anchors.append(anchors[:, mi])
        if self.cfg.shared_memory and not new_memory:
            new_memory, new_anchors = [memory[:, 0]], [anchors[:, 0]]
        self._collect_aux(valid)
        new_state = {
            "memory": torch.stack(new_memory, 1),
            "anchors": torch.stack(new_anchors, 1),
        }
        if W:
            new_state["context"] = torch.stack(contexts, 1)
            new_state["context_valid"] = state["context_valid"] | complete
        return self.ln_out(h), new_state

    def _lru_write(
        self,
        layer: ELMURLayer,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        tokens: torch.Tensor,
        write_bias: torch.Tensor | None,
        last: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``lru_update(memory, layer.candidate(memory, tokens, write_bias), anchors, last)``.

        memory [B, M, D], anchors [B, M], tokens [B, T, D], write_bias broadcastable to
        [B, H, M, T]. With LRU only the target slot's candidate is computed: the others enter
        the update with weight 0, so computing them (an FFN and attention per slot) changes
        neither the result nor the gradients.
        """
        cfg = self.cfg
        if not cfg.use_lru:
            cand = layer.candidate(memory, tokens, write_bias)
            return lru_update(memory, cand, anchors, last, cfg.lru_blend, use_lru=False)
        B, M, _ = memory.shape
        target, coef = lru_target(anchors, cfg.lru_blend)  # [B]
        rows = torch.arange(B, device=memory.device)
        slot = memory[rows, target]  # [B, D]
        wb = None
        if write_bias is not None:
            H, T = layer.write_attn.num_heads, tokens.shape[1]
            wb = write_bias.expand(B, H, M, T)[rows, :, target]  # [B, H, T]
        cand = layer.candidate_one(slot, tokens, wb)
        new_slot = slot + coef[:, None].to(slot.dtype) * (cand - slot)  # lru_update's blend
        onehot = F.one_hot(target, M).bool()  # [B, M]
        new_memory = torch.where(onehot[..., None], new_slot[:, None], memory)
        return new_memory, torch.where(onehot, last[:, None], anchors)

    def forward(
        self,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        keep_states: bool = False,
    ) -> tuple[torch.Tensor, State]:
        self._aux = None
        self._kept: list[State] = []
        K = self.context_size
        truncate = self.cfg.truncate_every
        outputs = []
        for index, start in enumerate(range(0, tokens.shape[1], K)):
            seg = slice(start, start + K)
            out, state = self._segment(tokens[:, seg], valid[:, seg], steps[:, seg], state)
            outputs.append(out)
            if keep_states:
                self._kept.append(state)
            if truncate and (index + 1) % truncate == 0:
                state = {key: value.detach() for key, value in state.items()}
        return torch.cat(outputs, 1), state

    # --------------------------------------------------------------------------------- step path
    # One token per row and call. The state holds, besides memory and anchors, everything the
    # current segment needs so that no step recomputes earlier ones: the self-attention keys
    # and values of the segment so far, every layer's outputs (what the write reads at the
    # segment's end) and the read projections of the frozen memory. All of it is allocated
    # once per episode and updated in place, so a step costs the same at t = 10 and t = 10^6.
    def initial_step_state(self, batch_size: int) -> State:
        cfg = self.cfg
        # the step path keeps keys and values, not the segment path's context inputs
        state = {
            key: value.clone()
            for key, value in self.initial_state(batch_size).items()
            if key not in ("context", "context_valid")
        }
        dev, dtype = self.memory_init.device, self.memory_init.dtype
        H, K, dh = cfg.num_heads, cfg.context_size, cfg.embed_dim // cfg.num_heads
        W = cfg.attention_window
        for i, layer in enumerate(self.layers):
            # [previous segment's last W | current segment's K]
            state[f"keys.{i}"] = torch.zeros(batch_size, H, W + K, dh, device=dev, dtype=dtype)
            state[f"values.{i}"] = torch.zeros(batch_size, H, W + K, dh, device=dev, dtype=dtype)
            if layer.reads:
                with torch.no_grad():
                    A, c, P = layer.read_plan(state["memory"][:, self._memory_index(i)])
                state[f"read_A.{i}"], state[f"read_c.{i}"], state[f"read_P.{i}"] = A, c, P
        if cfg.relative_bias and cfg.read:
            # read biases of the current segment's positions, set at its first step
            state["read_bias"] = torch.zeros(
                batch_size, self.memory_layers, K, H, cfg.memory_slots, device=dev, dtype=dtype
            )
        # layer outputs of the current segment: what the memory write reads at its end
        state["outputs"] = torch.zeros(
            batch_size, cfg.num_layers, K, cfg.embed_dim, device=dev, dtype=dtype
        )
        state["position"] = torch.zeros(batch_size, dtype=torch.long, device=dev)
        if W:
            # additive mask of the cached context keys: -inf until a first segment is complete
            state["context_bias"] = torch.zeros(batch_size, 1, W + K, device=dev, dtype=dtype)
            state["context_bias"][..., :W] = float("-inf")
        return state

    def compile_step(self, enable: bool = True, **options: object) -> None:
        """Runs the token path of ``step`` through ``torch.compile`` (``options`` go to it).

        Optional: it compiles once per batch size (tens of seconds on CPU) and then fuses the
        per-step kernels; the segment-end memory write stays eager. Measure before using it
        (benchmarks/inference.py --compile).
        """
        self._compiled_layers = (
            torch.compile(self._step_layers, dynamic=False, **options) if enable else None
        )

    def step(
        self, token: torch.Tensor, steps: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """One token per row: token [B, D] at absolute steps [B] -> features [B, D].

        The tensors of ``state`` are updated in place (and the same dict is returned):
        for inference under ``torch.no_grad`` / ``torch.inference_mode``.
        """
        K = self.context_size
        B = token.shape[0]
        position = state["position"]  # [B]: index of this token in its segment
        tables = [self._self_bias_table(layer.self_attn) for layer in self.layers]
        if self._compiled_layers is not None:
            x = self._compiled_layers(token, steps, position, state, tables)
            uniform = False
        else:
            # Rows usually share their position (one episode, or a batch started together):
            # then caches are written by slicing and attention runs over the real keys only.
            p = int(position[0])
            uniform = B == 1 or bool((position == p).all())
            x = self._step_layers(token, steps, p if uniform else position, state, tables)
        if uniform:
            if p == K - 1:
                self._write_rows(state, None, steps)
                self._roll_context(state, None)
            position.fill_(0 if p == K - 1 else p + 1)
        else:
            done = position == K - 1
            if bool(done.any()):
                index = None if bool(done.all()) else done.nonzero().squeeze(1)
                self._write_rows(state, index, steps)
                self._roll_context(state, index)
            position.add_(1).masked_fill_(done, 0)
        return self.ln_out(x), state

    def _roll_context(self, state: State, index: torch.Tensor | None) -> None:
        """At a segment's end, its last W keys and values become the next one's context."""
        W, K = self.cfg.attention_window, self.context_size
        if not W:
            return
        rows = slice(None) if index is None else index
        for i in range(len(self.layers)):
            for name in (f"keys.{i}", f"values.{i}"):
                cache = state[name]
                cache[rows, :, :W] = cache[rows, :, K : K + W]
        state["context_bias"][rows, :, :W] = 0.0

    def _step_layers(
        self,
        x: torch.Tensor,
        steps: torch.Tensor,
        pos: int | torch.Tensor,
        state: State,
        tables: list[torch.Tensor],
    ) -> torch.Tensor:
        """The token path of one step through every layer (caches and outputs written in
        place); ``pos`` is an int when all rows share it, else the positions [B]."""
        B = x.shape[0]
        uniform = isinstance(pos, int)
        if "read_bias" in state and (not uniform or pos == 0):
            # a new segment (or rows at different positions): its read biases
            self._segment_read_bias(state, steps - pos, exact=not uniform)
        outputs = state["outputs"]
        for i, layer in enumerate(self.layers):
            plan = None
            if layer.reads:
                plan = (state[f"read_A.{i}"], state[f"read_c.{i}"], state[f"read_P.{i}"])
            self_bias = tables[i][pos]
            if "context_bias" in state:
                self_bias = self_bias + state["context_bias"]
            x = layer.step(
                x,
                state[f"keys.{i}"],
                state[f"values.{i}"],
                pos,
                self_bias,
                plan,
                self._read_bias_at(state, i, pos),
            )
            if isinstance(pos, int):
                outputs[:, i, pos] = x
            else:
                outputs[torch.arange(B, device=x.device), i, pos] = x
        return x

    def _write_rows(self, state: State, index: torch.Tensor | None, steps: torch.Tensor) -> None:
        """Memory write at the end of a segment, in place, for the rows ``index`` (None: all).

        The candidate and LRU rule of the segment path, computed for the written slot only
        (with LRU exactly one per row and layer), then that slot's read projections are
        refreshed for the next segment.
        """
        cfg = self.cfg
        if not cfg.write:
            return
        memory, anchors, outputs, last = (
            state["memory"],
            state["anchors"],
            state["outputs"],
            steps,
        )
        if index is not None:
            memory, anchors = memory.index_select(0, index), anchors.index_select(0, index)
            outputs, last = outputs.index_select(0, index), steps.index_select(0, index)
        Bw, K = memory.shape[0], self.context_size
        rows = torch.arange(Bw, device=memory.device)
        seg_steps = last[:, None] - (K - 1) + torch.arange(K, device=last.device)  # [Bw, K]
        write_bias = self._step_write_bias(seg_steps, anchors)  # [Lm, Bw, H, M, K] or None
        target, coef = lru_target(anchors, cfg.lru_blend)  # [Bw, Lm]
        written: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            if not layer.writes:
                continue
            mi = self._memory_index(i)
            if cfg.use_lru:
                t = target[:, mi]
                slot = memory[rows, mi, t]  # [Bw, D]
                wb = None if write_bias is None else write_bias[mi][rows, :, t]  # [Bw, H, K]
                cand = layer.candidate_one(slot, outputs[:, i], wb)
                # lru_update's blend, on the one slot it changes
                written[mi] = slot + coef[:, mi, None].to(slot.dtype) * (cand - slot)
            else:
                wb = None if write_bias is None else write_bias[mi]
                written[mi] = layer.candidate(memory[:, mi], outputs[:, i], wb)  # every slot
        # every candidate above read the memory before this write: only now overwrite it
        full_rows = rows if index is None else index
        for mi, new in written.items():
            if cfg.use_lru:
                state["memory"][full_rows, mi, target[:, mi]] = new
                state["anchors"][full_rows, mi, target[:, mi]] = last
            else:
                state["memory"][full_rows, mi] = new
                state["anchors"][full_rows, mi] = last[:, None]
        for i, layer in enumerate(self.layers):
            mi = self._memory_index(i)
            if not layer.reads or mi not in written:
                continue
            A, c, P = (state[f"{name}.{i}"] for name in ("read_A", "read_c", "read_P"))
            if cfg.use_lru:
                # only the written slot changed: refresh its columns of the plan
                t = target[:, mi]
                B, D, HM = A.shape
                H, M = self.cfg.num_heads, HM // self.cfg.num_heads
                a, b, p = layer.read_plan(written[mi][:, None])  # one slot: [Bw, D, H], ...
                A.view(B, D, H, M)[full_rows, :, :, t] = a
                c.view(B, H, M)[full_rows, :, t] = b
                P.view(B, H, M, D)[full_rows, :, t] = p
                continue
            memory = state["memory"][:, mi]
            rows_memory = memory if index is None else memory.index_select(0, index)
            for old, new in zip((A, c, P), layer.read_plan(rows_memory), strict=True):
                if index is None:
                    old.copy_(new)
                else:
                    old.index_copy_(0, index, new)

    # ------------------------------------------------------------------------------- export path
    # The step as a pure function of explicit state, for TorchScript / ONNX export: no in-place
    # writes, no Python branch on data (every row runs the same ops, the segment-end write
    # included, selected per row with torch.where), so a trace captures it whole. Its state is
    # what the step path keeps minus the derived read caches; the same math per token.
    def initial_export_state(self, batch_size: int) -> State:
        cfg = self.cfg
        H, K, W = cfg.num_heads, cfg.context_size, cfg.attention_window
        # the segment path's memory, anchors and context_valid; keys and values, not its
        # context inputs (as the step path)
        state = {
            key: value.detach().clone()
            for key, value in self.initial_state(batch_size).items()
            if key != "context"
        }
        memory = state["memory"]
        cache = memory.new_zeros(batch_size, cfg.num_layers, H, W + K, cfg.embed_dim // H)
        state["keys"], state["values"] = cache, cache.clone()
        state["outputs"] = memory.new_zeros(batch_size, cfg.num_layers, K, cfg.embed_dim)
        state["position"] = torch.zeros(batch_size, dtype=torch.long, device=memory.device)
        return state

    def export_step(
        self, token: torch.Tensor, steps: torch.Tensor, state: State, write: bool = True
    ) -> tuple[torch.Tensor, State]:
        """One token per row, pure: token [B, D], steps [B] -> features [B, D], new state.
        ``write=False`` leaves memory and anchors as they were (``export_write`` then does
        the write, in a graph of its own)."""
        cfg = self.cfg
        K, W = self.context_size, cfg.attention_window
        B, D = token.shape
        pos, memory, anchors = state["position"], state["memory"], state["anchors"]
        slots = torch.arange(W + K, device=token.device)
        here = slots[None] == (W + pos)[:, None]  # [B, W + K]: this token's cache entry
        rel = (W + pos)[:, None] - slots[None]  # query - key offset, context first
        visible = rel >= 0
        if W:
            visible = visible & ((slots[None] >= W) | state["context_valid"][:, None])
        read_bias, _ = self._biases(steps[:, None], anchors)  # [B, H, 1, M] per memory layer
        keys, values, outs = [], [], []
        x = token
        for i, layer in enumerate(self.layers):
            sa = layer.self_attn
            H = sa.num_heads
            q, k, v = sa.qkv(layer.ln_self(x) if layer.pre_norm else x).view(B, 3, H, -1).unbind(1)
            cached_k = torch.where(here[:, None, :, None], k[:, :, None], state["keys"][:, i])
            cached_v = torch.where(here[:, None, :, None], v[:, :, None], state["values"][:, i])
            bias = sa.rel_bias[:, rel.clamp(0, W + K - 1)].transpose(0, 1)  # [B, H, W + K]
            bias = bias.masked_fill(~visible[:, None], float("-inf"))
            y = sa.out_proj(_attend_one(q, cached_k, cached_v, bias))
            h1 = x + y if layer.pre_norm else layer.ln_self(x + y)
            mi = self._memory_index(i)
            x = layer.read_and_ffn(h1[:, None], memory[:, mi], read_bias[mi])[:, 0]
            keys.append(cached_k)
            values.append(cached_v)
            outs.append(x)
        at = (slots[:K][None] == pos[:, None])[:, None, :, None]  # [B, 1, K, 1]
        outputs = torch.where(at, torch.stack(outs, 1)[:, :, None], state["outputs"])
        new_keys, new_values = torch.stack(keys, 1), torch.stack(values, 1)
        # the segment's end, computed for every row and kept where the segment is complete
        done = pos == K - 1
        new_memory, new_anchors = (
            self.export_write(memory, anchors, outputs, steps, done) if write else (memory, anchors)
        )
        new_state = {
            "memory": new_memory,
            "anchors": new_anchors,
            "outputs": outputs,
            "position": torch.where(done, 0, pos + 1),
        }
        if W:
            # the segment's last W entries become the next segment's context
            rolled = torch.cat([new_keys[..., K : K + W, :], new_keys[..., W:, :]], -2)
            new_keys = torch.where(done[:, None, None, None, None], rolled, new_keys)
            rolled = torch.cat([new_values[..., K : K + W, :], new_values[..., W:, :]], -2)
            new_values = torch.where(done[:, None, None, None, None], rolled, new_values)
            new_state["context_valid"] = state["context_valid"] | done
        new_state["keys"], new_state["values"] = new_keys, new_values
        return self.ln_out(x), new_state

    def export_write(
        self,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        outputs: torch.Tensor,
        steps: torch.Tensor,
        done: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory write of ``export_step``, pure: memory and anchors after it where
        ``done`` [B] (the step ``steps`` [B] ends a segment whose layer outputs are
        ``outputs`` [B, L, K, D]), unchanged elsewhere."""
        K = self.context_size
        seg_steps = steps[:, None] - (K - 1) + torch.arange(K, device=steps.device)[None]
        _, write_bias = self._biases(seg_steps, anchors)
        new_memory, new_anchors = list(memory.unbind(1)), list(anchors.unbind(1))
        for i, layer in enumerate(self.layers):
            if not layer.writes:
                continue
            mi = self._memory_index(i)
            mem, anc = self._lru_write(
                layer, memory[:, mi], anchors[:, mi], outputs[:, i], write_bias[mi], steps
            )
            new_memory[mi] = torch.where(done[:, None, None], mem, memory[:, mi])
            new_anchors[mi] = torch.where(done[:, None], anc, anchors[:, mi])
        return torch.stack(new_memory, 1), torch.stack(new_anchors, 1)

    # Tables the step path reads instead of recomputing them every step. They are derived
    # from parameters, so each is keyed by its parameters' storage and version counter (an
    # optimizer step or load_state_dict bumps it) and rebuilt when they change.
    def _cached(self, name: str, params: tuple[torch.Tensor, ...], build: object) -> torch.Tensor:
        key = tuple((p.data_ptr(), p._version) for p in params)
        hit = self._step_cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        with torch.no_grad():
            value = build()  # type: ignore[operator]
        self._step_cache[name] = (key, value)
        return value  # type: ignore[no-any-return]

    def _self_bias_table(self, attn: SelfAttention) -> torch.Tensor:
        """[K (query position), H, W + K (key position, context first)]: the self-attention
        bias of every position of a segment."""

        def build() -> torch.Tensor:
            W = attn.window
            pos = torch.arange(W + self.context_size, device=attn.rel_bias.device)
            return attn.bias(pos[W:], pos).transpose(0, 1).contiguous()

        return self._cached(f"self_bias.{id(attn)}", (attn.rel_bias,), build)

    def _bucket_table(self, device: torch.device) -> torch.Tensor:
        """time_bucket of offsets 0.._LUT_SIZE - 1, then -1 (beyond the table)."""

        def build() -> torch.Tensor:
            offsets = torch.arange(_LUT_SIZE, device=device)
            table = time_bucket(offsets, self.cfg.time_buckets)
            return torch.cat([table, table.new_full((1,), -1)])

        return self._cached(f"buckets.{device}", (), build)  # depends on the config only

    def _buckets(self, offset: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        """time_bucket(offset), and the extra bucket where ``empty``: a table lookup, since a
        slot is rewritten every M segments and offsets stay small (checked, exact either way)."""
        bucket = self._bucket_table(offset.device)[offset.clamp(0, _LUT_SIZE)]
        bucket = bucket.masked_fill(empty, self.cfg.time_buckets)
        if bool((bucket < 0).any()):  # an offset beyond the table: compute it
            bucket = torch.where(bucket < 0, time_bucket(offset, self.cfg.time_buckets), bucket)
        return bucket

    def _segment_read_bias(self, state: State, start: torch.Tensor, exact: bool) -> None:
        """Read biases of every position of the current segment, into state["read_bias"]
        [B, Lm, K, H, M]: tokens at steps start + 0..K-1 (consecutive, as the write assumes)
        against the slot anchors, which stay fixed until the segment's end. ``exact``
        computes the buckets instead of looking them up (no host sync, for torch.compile)."""
        table = self.read_time_bias
        anchors = state["anchors"]  # [B, Lm, M]
        steps = start[:, None] + torch.arange(self.context_size, device=start.device)  # [B, K]
        offset = steps[:, None, :, None] - anchors[:, :, None, :]  # [B, Lm, K, M]
        empty = (anchors < 0)[:, :, None, :]
        if exact:
            bucket = time_bucket(offset, self.cfg.time_buckets)
            bucket = torch.where(empty, self.cfg.time_buckets, bucket)
        else:
            bucket = self._buckets(offset, empty.expand_as(offset))
        state["read_bias"].copy_(F.embedding(bucket, table.weight).transpose(-1, -2))

    def _read_bias_at(
        self, state: State, layer: int, pos: int | torch.Tensor
    ) -> torch.Tensor | None:
        """Read bias [B, H, M] of this step for ``layer`` (None without relative bias)."""
        if "read_bias" not in state:
            return None
        bias = state["read_bias"][:, self._memory_index(layer)]  # [B, K, H, M]
        if isinstance(pos, int):
            return bias[:, pos]
        return bias[torch.arange(bias.shape[0], device=bias.device), pos]

    def _step_write_bias(
        self, seg_steps: torch.Tensor, anchors: torch.Tensor
    ) -> torch.Tensor | None:
        """Write bias [Lm, B, H, M, K] of a segment's steps [B, K]; anchors [B, Lm, M]."""
        table = getattr(self, "write_time_bias", None)
        if table is None:
            return None
        offset = seg_steps[:, None, :, None] - anchors[:, :, None, :]  # [B, Lm, K, M]
        bucket = self._buckets(offset, (anchors < 0)[:, :, None, :].expand_as(offset))
        return F.embedding(bucket, table.weight).permute(1, 0, 4, 3, 2)

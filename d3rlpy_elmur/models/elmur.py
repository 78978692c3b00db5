"""ELMUR: a transformer whose every layer owns an external memory, updated by an LRU rule.

Cherepanov, Kovalev, Panov, "ELMUR: External Layer Memory with Update/Rewrite for Long-Horizon
RL", ICLR 2026, arXiv:2510.07151; where we depart from it: docs/design.md.

This file is the model as the paper writes it, top to bottom and each equation once: config,
time buckets, the LRU rule, the layer (its sublayers, each inside the one residual rule) and
the model's segment path (training), ``ELMURBase``. The step path of inference (KV cache,
folded read) is ``elmur_step.py`` and the pure step for export ``elmur_export.py``: both keep
their own caches and call this file's layer and model. ``ELMUR`` (``elmur_encoder.py``) offers
the three paths, so the imports among these files point one way, toward this one. The
attention and FFN blocks are ``attention.py`` and ``ffn.py``. Per layer l,
for a segment x of K tokens and the layer's memory m of M slots (docs/design.md §1):

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
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, SelfAttention, attend_one
from .ffn import MLP, MoE
from .sequence import (
    SequenceEncoder,
    SequenceOutput,
    State,
    failed_fields,
    shared_field_checks,
    type_checks,
)

__all__ = ["ELMUROptions", "ELMURConfig", "time_bucket", "lru_update", "lru_target"]


@dataclasses.dataclass()
class ELMUROptions:
    """ELMUR's own options: declared here once, the fields of ``ELMURFactory`` (which an
    algorithm config carries as its ``sequence_encoder``) and of ``ELMURConfig``.

    Args:
        attention_window: W >= 0, tokens of the previous segment that every token also
            attends to (Transformer-XL's cache), so a segment's first tokens have W steps of
            direct context (a W above K is K). 2 (default): a decision further back than that
            has to come from memory in training too, so memory and its write gate learn from
            most decisions (README, extrapolation: with W = K a cue was lost 10x-100x past the
            training length); None is W = K (the POPGym preset's: fewer errors at a segment's
            first positions); 0 is the paper's segment-local attention (the T-Maze preset's).
        memory_slots: M, slots per layer. Keep M <= S - 2: a slot is then blended and read
            again inside every training window, so the blend path (what carries memory past
            the training length) is trained. With M >= S - 1 a window only fills empty slots
            or never reads its last blend; on T-Maze that falls to chance after a few hundred
            steps, while M = 1 with S = 3 holds to 10^6.
        lru_blend: lambda of the blend into the least recently used slot, in [0, 1].
        memory_init_std: std of the learned initial memory.
        norm: "post" (paper; keeps memory norms bounded) or "pre" normalisation around every
            residual.
        ffn: "mlp" (default; matched MoE in the paper) or "moe" for the token FFN (the
            memory FFN is an MLP).
        ffn_multiplier: the hidden width of the token and memory FFNs, in multiples of
            ``embed_dim`` (4, as in the paper and GPT-2).
        num_experts: routed experts (top-1, beside one shared expert) when ``ffn="moe"``.
        moe_aux_weight: weight of the load-balancing loss when ``ffn="moe"``.
        use_lru: False overwrites every slot with its candidate each segment.
        shared_memory: one memory for all layers, written by the top one, instead of one per
            layer.
        relative_bias: learned bias on token/anchor time offsets in both cross-attentions.
        read: tokens read memory (False: a memory-less transformer).
        write: memory is written at segment ends (False: memory stays at its init).
        detach_memory: paper's code: no gradient through memory between segments.
        context_gradient: gradient flows from a segment into the previous segment's tokens it
            attends to (with W > 0); False stops it, as Transformer-XL does.
        time_buckets: buckets of time offsets: exact below 16, log-spaced up to 10^7 beyond.
        memory_noise: std of Gaussian noise added in training to the memory each segment
            reads and writes, so the write learns to restore a drifted memory (0: off; an
            extrapolation candidate, issue 33).
        context_dropout: probability, in training, that a row's segment does not see the
            previous segment's context, so memory carries what attention could (0: off; an
            extrapolation candidate).
        memory_rewrites: in training, each segment's write is applied again 0..n times per
            row (uniform), as if the segment had recurred: a test episode of n segments
            applies the write n times, training windows only S - 1 times before their last
            decision (0: off; an extrapolation candidate).
        memory_drift: in training, the memory a later segment reads is moved by what 0..n
            more writes of the segment (uniform per row, no gradient) would change: the
            model's own drift under repeated writes, which at test time carries a cue into
            another cue's state over tens of segments, as a perturbation the reads and the
            next writes learn to undo (0: off; an extrapolation candidate).
        write_gate: a learned gate on the LRU blend: a blend into a written slot weighs its
            candidate lru_blend * sigmoid(w . [slot, candidate] + b), so a segment with
            nothing to add can leave the slot as it is instead of copying it (a copy that is
            slightly off drifts over hundreds of writes). Part of the model in every path
            (training, step, export). In (0, 1): on, opened that far at initialisation (0.5,
            the default); 0: off (the T-Maze and POPGym presets'). Without ``use_lru`` there
            is no blend to gate: off.
        write_gate_empty: the gate also weighs the first write into an empty slot (it
            replaces the learned initial slot by gate * candidate + (1 - gate) * initial
            slot), so the gate learns to open on what a segment adds from every episode's
            first write, not only from the rare later ones (default True; False leaves
            replacing an empty slot ungated). Acts only with the gate.
        write_gate_cost: c: in training the loss adds c times the mean log opening of the
            call's gated writes (each log floored at -20, so the term is bounded), so a write
            stays shut unless what its segment brings lowers the action loss: the gate learns
            to open on a cue and to shut on what only goes on. Its push does not fade as a
            gate closes (a cost on the opening itself does, and left gates at ~1e-3, which
            moves a slot away from what its read knows within 10^2-10^3 writes). Too strong a
            push shuts the gate before the read has learned to use memory (c = 0.01 did on
            ``cue8-flag-late``). 0.002 (default); 0: off. Acts only with the gate.
    """

    attention_window: int | None = 2
    memory_slots: int = 1
    lru_blend: float = 0.79
    memory_init_std: float = 0.1
    norm: str = "post"
    ffn: str = "mlp"
    ffn_multiplier: int = 4
    num_experts: int = 4
    moe_aux_weight: float = 0.01
    use_lru: bool = True
    shared_memory: bool = False
    relative_bias: bool = True
    read: bool = True
    write: bool = True
    detach_memory: bool = False
    context_gradient: bool = True
    time_buckets: int = 64
    memory_noise: float = 0.0
    context_dropout: float = 0.0
    memory_rewrites: int = 0
    memory_drift: int = 0
    write_gate: float = 0.5
    write_gate_empty: bool = True
    write_gate_cost: float = 0.002


_INTS = (
    "embed_dim",
    "num_layers",
    "num_heads",
    "context_size",
    "memory_slots",
    "num_experts",
    "bptt_segments",
    "time_buckets",
    "memory_rewrites",
    "memory_drift",
    "ffn_multiplier",
)
_FLOATS = (
    "lru_blend",
    "memory_init_std",
    "dropout",
    "moe_aux_weight",
    "memory_noise",
    "context_dropout",
    "write_gate",
    "write_gate_cost",
)


@dataclasses.dataclass()
class ELMURConfig(ELMUROptions):
    """The model: ELMUR's options and the shape the algorithm hands over
    (``SequenceEncoderArgs``: width, layers, heads, K, dropout, truncation), checked here,
    once, for every way a model is built."""

    embed_dim: int = 128
    num_layers: int = 2
    num_heads: int = 2
    context_size: int = 10  # K: steps per segment
    dropout: float = 0.0
    bptt_segments: int = 0  # truncate backprop through memory every n segments (0: never)

    def __post_init__(self) -> None:
        types = type_checks(self, _INTS, _FLOATS)
        window = self.attention_window
        types["attention_window"] = window is None or type(window) is int
        wrong_type = failed_fields(self, types)
        if wrong_type:
            raise ValueError(f"invalid ELMUR config: {wrong_type} (wrong type)")
        checks = {
            **shared_field_checks(self),  # width, layers, dropout, truncation
            "num_heads": self.num_heads > 0 and self.embed_dim % self.num_heads == 0,
            "context_size": self.context_size > 0,
            "attention_window": self.window >= 0,
            "memory_slots": self.memory_slots >= 1,
            "lru_blend": 0.0 <= self.lru_blend <= 1.0,
            "memory_init_std": self.memory_init_std >= 0.0,
            "norm": self.norm in ("pre", "post"),
            "ffn": self.ffn in ("mlp", "moe"),
            "ffn_multiplier": self.ffn_multiplier >= 1,
            "num_experts": self.num_experts >= 1,
            "time_buckets": self.time_buckets > _EXACT_BUCKETS,
            "memory_noise": self.memory_noise >= 0.0,
            "context_dropout": 0.0 <= self.context_dropout <= 1.0,
            "memory_rewrites": self.memory_rewrites >= 0,
            "memory_drift": self.memory_drift >= 0,
            "write_gate": 0.0 <= self.write_gate < 1.0,
            "write_gate_cost": self.write_gate_cost >= 0.0,
        }
        bad = failed_fields(self, checks)
        if bad:
            raise ValueError(
                f"invalid ELMUR config: {bad} (num_heads must divide embed_dim, "
                "lru_blend lies in [0, 1], memory_slots >= 1, attention_window >= 0 or None, "
                "norm is pre|post, ffn is mlp|moe, ffn_multiplier >= 1, write_gate in [0, 1), "
                "write_gate_cost >= 0)"
            )

    @property
    def window(self) -> int:
        """W: ``attention_window``, at most K (K when it is None)."""
        W = self.attention_window
        return self.context_size if W is None else min(W, self.context_size)

    @property
    def gated(self) -> bool:
        """Whether the model has the write gate: ``write_gate`` set, and an LRU blend to gate."""
        return self.write_gate > 0.0 and self.use_lru

    @property
    def truncate_every(self) -> int:
        """Segments between two detaches of memory (0: never)."""
        return 1 if self.detach_memory else self.bptt_segments


_EXACT_BUCKETS = 16
_MAX_OFFSET = 1e7


def time_bucket(offset: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Buckets non-negative step offsets: exact below 16, log-spaced up to 10^7."""
    offset = offset.clamp(min=0)
    scale = (num_buckets - _EXACT_BUCKETS) / math.log(_MAX_OFFSET / _EXACT_BUCKETS)
    log_part = torch.log(offset.clamp(min=_EXACT_BUCKETS).float() / _EXACT_BUCKETS)
    log_bucket = (_EXACT_BUCKETS + (log_part * scale).long()).clamp(max=num_buckets - 1)
    return torch.where(offset < _EXACT_BUCKETS, offset, log_bucket)


def lru_target(anchors: torch.Tensor, blend: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The LRU rule's choice: the first empty slot (anchor -1), else the least recently
    written one. anchors [..., M] -> target [...] long, coef [...]: the target's weight in the
    blend, 1 when it is empty (replaced), else ``blend``."""
    empty = anchors < 0
    has_empty = empty.any(dim=-1)
    # argmax returns the first maximum: the first empty slot, or the oldest anchor.
    target = torch.where(has_empty, empty.long().argmax(-1), anchors.argmin(-1))
    coef = torch.where(has_empty, 1.0, blend)
    return target, coef


def lru_update(
    memory: torch.Tensor,
    candidate: torch.Tensor,
    anchors: torch.Tensor,
    last_step: torch.Tensor,
    blend: float,
    use_lru: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """m' = m + w (m~ - m), w = coef on the ``lru_target`` slot and 0 elsewhere; the written
    slot is anchored at ``last_step``. Without LRU every slot takes its candidate.

    memory, candidate [B, M, D]; anchors [B, M] long (-1 empty); last_step [B] long.
    """
    if not use_lru:
        return candidate, last_step[:, None].expand_as(anchors).clone()
    target, coef = lru_target(anchors, blend)  # [B]
    onehot = F.one_hot(target, anchors.shape[1]).bool()  # [B, M]
    weight = onehot.to(memory.dtype) * coef[:, None].to(memory.dtype)  # [B, M]
    new_memory = memory + weight[..., None] * (candidate - memory)
    new_anchors = torch.where(onehot, last_step[:, None], anchors)
    return new_memory, new_anchors


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` without the module call: a step makes about ten per layer, and the call
    overhead is a measurable part of a step's few hundred microseconds."""
    return F.linear(x, layer.weight, layer.bias)


def _layer_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``ln(x)`` without the module call, for the same reason."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


# A layer's self-attention keys and values [B, H, T, dh] (the segment path carries the context's).
KeysValues = tuple[torch.Tensor, torch.Tensor]

# A one-token path's self-attention cache (``ELMURLayer.self_attention_cached``): the step path
# writes it in place, the export path selects into copies.
Cache = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class ELMURLayer(nn.Module):
    """One layer: the token path (self-attention, memory read, FFN) and the candidate write.

    Its sublayers are methods that every path calls: the segment path (``forward``), the
    step path (``elmur_step.py``) and the export path (``elmur_export.py``), which keep their
    own caches. Each block sits inside the one residual rule, ``_residual``.
    """

    def __init__(self, cfg: ELMURConfig, writes: bool):
        super().__init__()
        D, H, p = cfg.embed_dim, cfg.num_heads, cfg.dropout
        self.pre_norm = cfg.norm == "pre"
        self.reads = cfg.read
        self.writes = writes
        self.self_attn = SelfAttention(D, H, cfg.context_size, cfg.window, p)
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
            if cfg.gated:
                self.gate = nn.Linear(2 * D, 1)
                # opens write_gate for every input at first
                nn.init.zeros_(self.gate.weight)
                nn.init.constant_(self.gate.bias, math.log(cfg.write_gate / (1 - cfg.write_gate)))

    # --------------------------------------------------------------------- the residual rule
    def _block_input(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """What a block sees of x: norm(x) pre-norm, x itself post-norm."""
        return _layer_norm(norm, x) if self.pre_norm else x

    def _block_output(self, x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """x plus the block's output y, normalised post-norm."""
        return x + y if self.pre_norm else _layer_norm(norm, x + y)

    def _residual(
        self, x: torch.Tensor, block: Callable[[torch.Tensor], torch.Tensor], norm: nn.LayerNorm
    ) -> torch.Tensor:
        """x + block(norm(x)) pre-norm, norm(x + block(x)) post-norm (the paper's). The
        one-token sublayers call its two halves themselves: no closure on the step's path."""
        return self._block_output(x, block(self._block_input(x, norm)), norm)

    # ----------------------------------------------------------------------------- sublayers
    def self_attention_cached(
        self, x: torch.Tensor, cache: Cache
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h1 = x + SelfAttn(x) of one token per row, x [B, D], over keys and values that the
        caller keeps: ``cache(k, v)`` takes the token's key and value [B, H, dh] and returns
        the keys and values [B, H, T, dh] to attend over (the token's among them) and their
        bias, broadcastable to [B, H, T]. Returns h1 and those keys and values."""
        B = x.shape[0]
        sa = self.self_attn
        h = self._block_input(x, self.ln_self)
        q, k, v = _linear(sa.qkv, h).view(B, 3, sa.num_heads, -1).unbind(1)
        keys, values, bias = cache(k, v)
        y = _linear(sa.out_proj, attend_one(q, keys, values, bias))
        return self._block_output(x, y, self.ln_self), keys, values

    def read(
        self, h: torch.Tensor, memory: torch.Tensor, read_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """h2 = h1 + CrossAttn(q=h1, kv=m, B_rd): h [B, T, D], memory [B, M, D], read_bias
        [B, H, T, M]; h itself in a layer that does not read."""
        if not self.reads:
            return h
        mem = self.ln_read_mem(memory)
        return self._residual(h, lambda q: self.read_attn(q, mem, read_bias), self.ln_read)

    def read_plan(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The read (mem2tok) of memory [B, M, D] folded into its projections.

        With k_j, v_j the slot keys and values of head h, a token's read is
        softmax_j((W_q h + b_q) . k_j / sqrt(dh)) summed against W_o v_j. Memory is frozen
        during a segment, so fold W_q into the keys and W_o into the values once per segment:
        A = W_q^T k / sqrt(dh) [B, D, H*M], c = b_q . k / sqrt(dh) [B, H*M] and
        P = W_o v [B, H*M, D]. A step's read (``read_planned``) is then two small batched
        products instead of the query and output projections (fewer kernels, and 2 D^2 fewer
        multiply-adds per token). The same math as ``CrossAttention``, summed in another order.
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

    def read_planned(
        self,
        h: torch.Tensor,
        plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        read_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """``read`` of one token per row, h [B, D], from the memory's ``read_plan``;
        read_bias [B, H, M]. Inference only (no dropout)."""
        A, c, P = plan
        B, D = h.shape
        H = self.read_attn.num_heads
        if read_bias is not None:
            c = c + read_bias.reshape(c.shape)
        q = self._block_input(h, self.ln_read)
        scores = torch.baddbmm(c.unsqueeze(1), q.unsqueeze(1), A)  # [B, 1, H * M]
        weights = scores.view(B, H, -1).softmax(-1).view(B, 1, -1)
        y = torch.baddbmm(self.read_attn.out_proj.bias, weights, P).view(B, D)
        return self._block_output(h, y, self.ln_read)

    def feed_forward(
        self, h: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """h + FFN(h) of tokens h [B, T, D] (``valid`` [B, T]: the real ones), and the MoE's
        load-balancing loss over them (None with an MLP)."""
        if not isinstance(self.ffn, MoE):
            return self._residual(h, self.ffn, self.ln_ffn), None
        moe, balance = self.ffn, []  # the MoE's loss, taken out of the residual's call

        def routed(x: torch.Tensor) -> torch.Tensor:
            y, loss = moe(x, valid)
            balance.append(loss)
            return y

        return self._residual(h, routed, self.ln_ffn), balance[0]

    def feed_forward_eval(self, h: torch.Tensor) -> torch.Tensor:
        """``feed_forward`` at inference: no dropout, the MLP without module calls (see
        ``_linear``), the MoE without its loss."""
        ffn, x = self.ffn, self._block_input(h, self.ln_ffn)
        y = _linear(ffn.proj, F.gelu(_linear(ffn.fc, x))) if isinstance(ffn, MLP) else ffn(x)[0]
        return self._block_output(h, y, self.ln_ffn)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        read_bias: torch.Tensor | None,
        context: torch.Tensor | None = None,
        context_valid: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token path of one segment: x [B, T, D] -> h [B, T, D] and the MoE's loss (see
        ``feed_forward``). ``context``: this layer's inputs at the previous segment's last W
        tokens [B, W, D], valid rows ``context_valid``; ``valid`` [B, T]: the real tokens."""
        # the context is seen as the segment's tokens are (normalised pre-norm)
        ctx = None if context is None else self._block_input(context, self.ln_self)
        h1 = self._residual(x, lambda h: self.self_attn(h, ctx, context_valid), self.ln_self)
        return self.feed_forward(self.read(h1, memory, read_bias), valid)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention's keys and values [B, H, W, dh] of this layer's context inputs
        [B, W, D] (what ``forward`` projects of ``context``)."""
        return self.self_attn.context_kv(self._block_input(context, self.ln_self))

    def forward_cached(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        read_bias: torch.Tensor | None,
        context_kv: tuple[torch.Tensor, torch.Tensor],
        context_valid: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` (W > 0) given the context's self-attention keys and values
        (``context_kv``) instead of the context, and returning also x's [B, H, T, dh]: the
        segment path carries them to the next segment, whose context is x's last W tokens,
        so no token is projected twice (``SelfAttention.forward_cached``)."""
        kv = []

        def attend(h: torch.Tensor) -> torch.Tensor:
            y, keys_values = self.self_attn.forward_cached(h, context_kv, context_valid)
            kv.append(keys_values)
            return y

        h1 = self._residual(x, attend, self.ln_self)
        h, loss = self.feed_forward(self.read(h1, memory, read_bias), valid)
        return h, loss, kv[0]

    def candidate_one(
        self, slot: torch.Tensor, tokens: torch.Tensor, write_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """m~ = u + FFN_mem(u), u = m + CrossAttn(q=m, kv=h, B_wr), for one slot per row:
        slot [B, D], tokens [B, T, D], bias [B, H, T] -> [B, D].

        Slots are independent in the write (per-slot queries, norms and FFN), so the LRU rule
        computes only the slot it writes. The write's key and value projections are folded
        into the query and output side: W_k^T q (per head) scores the raw tokens, and
        W_v (sum_t w_t h_t) + b_v sum_t w_t gives the attended value, so the K tokens are
        never projected (about 4 D^2 multiply-adds per slot instead of (2K + 2) D^2). The same
        math as ``CrossAttention``, summed in another order.
        """
        B, _T, D = tokens.shape
        wa = self.write_attn
        H = wa.num_heads
        dh = D // H
        p = wa.dropout if self.training else 0.0
        toks = self.ln_write_tok(tokens)
        w_k, w_v = wa.kv_proj.weight.view(2, H, dh, D).unbind(0)
        b_k, b_v = wa.kv_proj.bias.view(2, H, dh).unbind(0)

        def attend(q_in: torch.Tensor) -> torch.Tensor:
            q = F.linear(q_in, wa.q_proj.weight, wa.q_proj.bias).view(B, H, dh) * dh**-0.5
            q_k = torch.einsum("bhd,hde->bhe", q, w_k)  # [B, H, D]
            scores = torch.baddbmm((q * b_k).sum(-1, keepdim=True), q_k, toks.transpose(1, 2))
            if write_bias is not None:
                scores = scores + write_bias  # [B, H, T]
            weights = F.dropout(scores.softmax(-1), p, self.training)
            z = torch.bmm(weights, toks)  # [B, H, D]: attention-weighted raw tokens
            v = torch.einsum("bhe,hde->bhd", z, w_v) + b_v * weights.sum(-1, keepdim=True)
            return F.dropout(
                F.linear(v.reshape(B, D), wa.out_proj.weight, wa.out_proj.bias), p, self.training
            )

        u = self._residual(slot, attend, self.ln_write)
        return self.ln_mem_out(self._residual(u, self.mem_ffn, self.ln_mem_ffn))

    def candidate(
        self, memory: torch.Tensor, tokens: torch.Tensor, write_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``candidate_one`` of every slot: memory [B, M, D], tokens [B, T, D], write_bias
        broadcastable to [B, H, M, T] -> [B, M, D] (the write without LRU)."""
        B, M, D = memory.shape
        T = tokens.shape[1]
        toks = tokens[:, None].expand(B, M, T, D).reshape(B * M, T, D)
        bias = None
        if write_bias is not None:
            H = self.write_attn.num_heads
            bias = write_bias.expand(B, H, M, T).transpose(1, 2).reshape(B * M, H, T)
        return self.candidate_one(memory.reshape(B * M, D), toks, bias).view(B, M, D)


class ELMURBase(SequenceEncoder):
    """The ELMUR sequence model's weights and segment path; ``ELMUR`` (``elmur_encoder.py``)
    adds the step and export paths. State: ``memory`` [B, Lm, M, D], ``anchors`` [B, Lm, M]."""

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

    # ----------------------------------------------------------------------------------- helpers
    def elmur_layers(self) -> list[ELMURLayer]:
        """``self.layers``, typed."""
        return cast(list[ELMURLayer], list(self.layers))

    def memory_index(self, layer: int) -> int:
        """The memory layer ``layer`` reads and writes (all share 0 with shared memory)."""
        return 0 if self.cfg.shared_memory else layer

    def time_biases(
        self,
        steps: torch.Tensor,
        anchors: torch.Tensor,
        bucket: Callable[[torch.Tensor, int], torch.Tensor] = time_bucket,
    ) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
        """B_rd and B_wr: per memory layer, read biases [B, H, T, M] and write biases
        [B, H, M, T] of tokens at ``steps`` [B, T] against slot anchors [B, Lm, M], by the
        bucket of their offset (``bucket`` computes ``time_bucket``; the step path looks it
        up). An empty slot has a bucket of its own. None without relative bias."""
        read_table = getattr(self, "read_time_bias", None)
        write_table = getattr(self, "write_time_bias", None)
        if read_table is None or write_table is None:
            none: list[torch.Tensor | None] = [None] * self.memory_layers
            return none, list(none)
        # Read and write index their tables with the same offsets: bucket once, all layers.
        offset = steps[:, None, :, None] - anchors[:, :, None, :]  # [B, Lm, T, M]
        buckets = bucket(offset, self.cfg.time_buckets)
        buckets = torch.where(anchors[:, :, None, :] < 0, self.cfg.time_buckets, buckets)
        reads = read_table(buckets).permute(1, 0, 4, 2, 3)  # [Lm, B, H, T, M]
        writes = write_table(buckets).permute(1, 0, 4, 3, 2)  # [Lm, B, H, M, T]
        return list(reads.unbind(0)), list(writes.unbind(0))

    @torch.no_grad()
    def memory_norm_bound(self) -> float:
        """Upper bound on every slot's L2 norm: every write is a LayerNorm output (post-norm's
        last norm, pre-norm's ``ln_mem_out``) and the LRU blend is convex."""
        bound = float(self.memory_init.norm(dim=-1).max())
        for layer in self.elmur_layers():
            if layer.writes:
                ln = cast(nn.LayerNorm, layer.ln_mem_out if layer.pre_norm else layer.ln_mem_ffn)
                # |gamma * xhat + beta| <= max|gamma| * sqrt(D) + |beta|, with |xhat|^2 = D
                ln_bound = float(ln.weight.abs().max()) * math.sqrt(self.embed_dim) + float(
                    ln.bias.norm()
                )
                bound = max(bound, ln_bound)
        return bound

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
        W = self.cfg.window
        if W:
            # no previous segment yet: the context is hidden from attention
            state["context"] = memory.new_zeros(batch_size, self.cfg.num_layers, W, self.embed_dim)
            state["context_valid"] = torch.zeros(batch_size, dtype=torch.bool, device=memory.device)
        return state

    def _segment(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        read_later: bool = False,
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One segment: x [B, T<=K, D] -> [B, T, D], the state after it, and the MoE's
        load-balancing loss summed over layers (None with MLPs); memory is written iff step
        K-1 is real. ``read_later``: a later segment of the same call reads this write (only
        then is it repeated in training, ``memory_rewrites``)."""
        return self._segment_carry(x, valid, steps, state, read_later)[:3]

    def _segment_carry(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        read_later: bool = False,
        context_kv: list[KeysValues] | None = None,
        openings: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, State, torch.Tensor | None, list[KeysValues] | None]:
        """``_segment``, carrying each layer's self-attention keys and values of the context
        (W > 0) from one segment of a call to the next: ``context_kv`` those of
        ``state["context"]`` (None: projected here), and returned those of the new state's
        context (None where they cannot be carried: W = 0, or no gradient into the context,
        whose projection must then see it detached). ``openings`` collects the mean log
        opening of each gated write (``lru_write``)."""
        memory, anchors = state["memory"], state["anchors"]
        B, T, _ = x.shape
        context_valid = state.get("context_valid")
        if self.training:
            if self.cfg.memory_noise:
                memory = memory + self.cfg.memory_noise * torch.randn_like(memory)
            if self.cfg.context_dropout and context_valid is not None:
                keep = torch.rand(B, device=x.device) >= self.cfg.context_dropout
                context_valid = context_valid & keep
        read_bias, write_bias = self.time_biases(steps, anchors)
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
        W = self.cfg.window
        carry = bool(W) and self.cfg.context_gradient
        all_complete = bool(W) and bool(complete.all())
        contexts, outputs, balance, next_kv = [], [], [], []
        h = x
        for i, layer in enumerate(self.elmur_layers()):
            mi = self.memory_index(i)
            if W:
                context = state["context"][:, i]
                if T == self.context_size and all_complete:  # most segments: no where
                    contexts.append(h[:, -W:])
                elif T == self.context_size:
                    contexts.append(torch.where(complete[:, None, None], h[:, -W:], context))
                else:  # a partial segment is never a context
                    contexts.append(context)
                if not carry:
                    h, loss = layer(
                        h, memory[:, mi], read_bias[mi], context.detach(), context_valid, valid
                    )
                else:
                    assert context_valid is not None
                    kv = layer.context_kv(context) if context_kv is None else context_kv[i]
                    h, loss, (k, v) = layer.forward_cached(
                        h, memory[:, mi], read_bias[mi], kv, context_valid, valid
                    )
                    if T == self.context_size:  # as contexts: the tail where complete
                        tail = (k[:, :, -W:], v[:, :, -W:])
                        if all_complete:
                            kv = tail
                        else:
                            keep = complete[:, None, None, None]
                            kv = (
                                torch.where(keep, tail[0], kv[0]),
                                torch.where(keep, tail[1], kv[1]),
                            )
                    next_kv.append(kv)
            else:
                h, loss = layer(h, memory[:, mi], read_bias[mi], valid=valid)
            outputs.append(h)
            if loss is not None:
                balance.append(loss)
        # every layer read the memory before this segment's write
        new_state = {"memory": memory, "anchors": anchors}
        if key_mask is not None:
            new_state["memory"], new_state["anchors"] = self._write_segment(
                memory,
                anchors,
                outputs,
                steps,
                write_bias,
                key_mask,
                complete,
                read_later,
                openings,
            )
        if W:
            new_state["context"] = torch.stack(contexts, 1)
            new_state["context_valid"] = state["context_valid"] | complete
        aux = torch.stack(balance).sum() * self.cfg.moe_aux_weight if balance else None
        return self.ln_out(h), new_state, aux, next_kv if carry else None

    def _write_segment(
        self,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        outputs: Sequence[torch.Tensor],
        steps: torch.Tensor,
        write_bias: Sequence[torch.Tensor | None],
        key_mask: torch.Tensor,
        complete: torch.Tensor,
        repeat: bool,
        openings: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``write_memory`` of a segment into memory [B, Lm, M, D] with anchors [B, Lm, M];
        in training, where ``repeat``, applied per row a uniform 0..``memory_rewrites`` more
        times (biases from the anchors each write leaves), then moved by ``_drift``. A call's
        last write is neither repeated nor moved: no loss reads it, and each repeat costs a
        write's forward and backward."""
        biases = [key_mask if b is None else b + key_mask for b in write_bias]
        memory, anchors = self.write_memory(
            memory, anchors, outputs, steps[:, -1], biases, complete, openings
        )
        if not (self.training and repeat):
            return memory, anchors
        memory, anchors = self._rewrite(
            memory, anchors, outputs, steps, key_mask, complete, self.cfg.memory_rewrites, openings
        )
        if self.cfg.memory_drift:
            with torch.no_grad():
                outs = [out.detach() for out in outputs]
                drifted, anchors = self._rewrite(
                    memory.detach(), anchors, outs, steps, key_mask, complete, self.cfg.memory_drift
                )
            # straight through: the gradient reaches the write as if there were no drift
            memory = memory + (drifted - memory).detach()
        return memory, anchors

    def _rewrite(
        self,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        outputs: Sequence[torch.Tensor],
        steps: torch.Tensor,
        key_mask: torch.Tensor,
        complete: torch.Tensor,
        most: int,
        openings: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The segment's write applied again to each complete row a uniform 0..``most``
        times (``most`` = 0: unchanged)."""
        if not most:
            return memory, anchors
        extra = torch.randint(0, most + 1, complete.shape, device=complete.device)
        for again in range(1, most + 1):
            rows = complete & (extra >= again)
            if not bool(rows.any()):
                break
            write_bias = self.time_biases(steps, anchors)[1]
            biases = [key_mask if b is None else b + key_mask for b in write_bias]
            memory, anchors = self.write_memory(
                memory, anchors, outputs, steps[:, -1], biases, rows, openings
            )
        return memory, anchors

    def write_memory(
        self,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        outputs: Sequence[torch.Tensor],
        last: torch.Tensor,
        write_bias: Sequence[torch.Tensor | None],
        done: torch.Tensor,
        openings: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A segment's memory write by every writing layer, kept in the rows ``done`` [B]:
        memory [B, Lm, M, D] and anchors [B, Lm, M] before it; ``outputs`` the layers' outputs
        [B, T, D]; ``last`` [B] the segment's last step; ``write_bias`` per memory layer;
        ``openings`` as in ``lru_write``."""
        new_memory, new_anchors = list(memory.unbind(1)), list(anchors.unbind(1))
        for i, layer in enumerate(self.elmur_layers()):
            if layer.writes:
                mi = self.memory_index(i)
                new_memory[mi], new_anchors[mi] = self.lru_write(
                    layer,
                    new_memory[mi],
                    new_anchors[mi],
                    outputs[i],
                    write_bias[mi],
                    last,
                    done,
                    openings,
                )
        return torch.stack(new_memory, 1), torch.stack(new_anchors, 1)

    def lru_write(
        self,
        layer: ELMURLayer,
        memory: torch.Tensor,
        anchors: torch.Tensor,
        tokens: torch.Tensor,
        write_bias: torch.Tensor | None,
        last: torch.Tensor,
        done: torch.Tensor | None = None,
        openings: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``lru_update(memory, layer.candidate(memory, tokens, write_bias), anchors, last)``,
        kept in the rows ``done`` [B] (all when None). With ``write_gate``, ``openings`` (when
        given) gets [the mean log opening (floored at -20) over the rows this write gates,
        1 if it gates any row else 0].

        memory [B, M, D], anchors [B, M], tokens [B, T, D], write_bias broadcastable to
        [B, H, M, T]. With LRU only the target slot's candidate is computed and blended: the
        others enter the update with weight 0, so computing them (an FFN and attention per
        slot) changes neither the result nor the gradients.
        """
        cfg = self.cfg
        if not cfg.use_lru:
            cand = layer.candidate(memory, tokens, write_bias)
            new = lru_update(memory, cand, anchors, last, cfg.lru_blend, use_lru=False)
            if done is None:
                return new
            return (
                torch.where(done[:, None, None], new[0], memory),
                torch.where(done[:, None], new[1], anchors),
            )
        B, M, _ = memory.shape
        target, coef = lru_target(anchors, cfg.lru_blend)  # [B]
        rows = torch.arange(B, device=memory.device)
        wb = None
        if write_bias is not None:
            H, T = layer.write_attn.num_heads, tokens.shape[1]
            wb = write_bias.expand(B, H, M, T)[rows, :, target]  # [B, H, T]
        slot = memory[rows, target]  # [B, D]
        cand = layer.candidate_one(slot, tokens, wb)  # [B, D]
        weight = coef[:, None].to(memory.dtype)  # [B, 1]
        if cfg.gated:
            # a module call (not _linear): once per segment, and hooks can read the gate
            logit = layer.gate(torch.cat([slot, cand], -1))
            gate = torch.sigmoid(logit)
            if cfg.write_gate_empty:
                gated = torch.ones_like(gate[:, 0], dtype=torch.bool)
            else:  # replacing an empty slot is not gated
                gated = anchors[rows, target] >= 0
            weight = torch.where(gated[:, None], weight * gate, weight)
            if openings is not None:
                counted = (gated if done is None else gated & done).to(gate.dtype)
                log_opening = F.logsigmoid(logit[:, 0]).clamp(min=-20.0)
                rows_gated = counted.sum()
                mean = (log_opening * counted).sum() / rows_gated.clamp(min=1.0)
                # a write that gated no row (only empty slots replaced) is not in the mean
                openings.append(torch.stack([mean, (rows_gated > 0).to(mean.dtype)]))
        # lru_update's blend, m + coef (m~ - m), of the target slot only
        blended = slot + weight * (cand - slot)
        written = F.one_hot(target, M).bool()  # [B, M]
        if done is not None:
            written = written & done[:, None]
        new_memory = torch.where(written[..., None], blended[:, None], memory)
        return new_memory, torch.where(written, last[:, None], anchors)

    def forward(
        self,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        keep_states: bool = False,
    ) -> SequenceOutput:
        """See ``SequenceEncoder.forward``. The auxiliary loss is the MoE's load-balancing
        loss, a mean over the real tokens (each segment weighted by its count, so S does not
        scale it), plus in training (with gradient) ``write_gate_cost`` times the mean, over
        the call's writes that gate a row, of each write's mean log opening."""
        K = self.context_size
        cfg = self.cfg
        truncate = cfg.truncate_every
        outputs, kept, losses, counts = [], [], [], []
        # the gates' log openings, for their cost (only where it trains something)
        costed = cfg.gated and bool(cfg.write_gate_cost) and self.training
        costed = costed and torch.is_grad_enabled()
        openings: list[torch.Tensor] | None = [] if costed else None
        T = tokens.shape[1]
        context_kv = None  # the keys and values of the next segment's context, where known
        for index, start in enumerate(range(0, T, K)):
            seg = slice(start, start + K)
            out, state, aux, context_kv = self._segment_carry(
                tokens[:, seg],
                valid[:, seg],
                steps[:, seg],
                state,
                start + K < T,
                context_kv,
                openings,
            )
            outputs.append(out)
            if aux is not None:
                losses.append(aux)
                counts.append(valid[:, seg].sum())
            if keep_states:
                kept.append(state)
            if truncate and (index + 1) % truncate == 0:
                state = {key: value.detach() for key, value in state.items()}
                context_kv = None  # projected again from the detached context
        aux_loss = None
        if losses:
            n = torch.stack(counts).to(losses[0].dtype)
            aux_loss = (torch.stack(losses) * n).sum() / n.sum().clamp(min=1.0)
        if openings:
            log_sum, writes = torch.stack(openings).sum(0)
            cost = log_sum / writes.clamp(min=1.0) * cfg.write_gate_cost
            aux_loss = cost if aux_loss is None else aux_loss + cost
        return SequenceOutput(torch.cat(outputs, 1), state, kept, aux_loss)

"""ELMUR's step path: one token per row and call, at a cost that does not grow with the episode.

The segment path (``elmur.py``) runs K tokens at once; inference sees one token at a time. This
module computes the same function token by token through the same layer's sublayers
(``ELMURLayer``) and memory write (``ELMURBase.write_memory``); what it adds is the caches. The
step state holds, besides memory and anchors, everything the current segment needs so that no
step recomputes earlier ones:

* ``keys.i`` / ``values.i`` [B, H, W + K, dh]: layer i's self-attention cache, the previous
  segment's last W tokens then the current segment's (a ring that rolls at each segment end);
* ``read_A.i`` / ``read_c.i`` / ``read_P.i``: layer i's memory folded into the read's
  projections (``ELMURLayer.read_plan``), refreshed when the memory is written;
* ``read_bias`` [B, Lm, K, H, M]: the read time biases of the segment's positions;
* ``outputs`` [B, L, K, D]: every layer's outputs so far, which the write reads at the end;
* ``position`` [B]: the token's index in its segment; ``context_bias``: -inf on the cached
  context until a first segment is complete.

All of it is allocated once per episode and updated in place, so a step costs the same at
t = 10 and at t = 10^6. Tables derived from the parameters (self-attention biases, the
time-bucket lookup) are taken when a step state is made: change the parameters, then start a
new state, as the read plan in the state already requires. Equal to the segment path within
1e-5 (tests/models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from .elmur import ELMURBase, ELMURLayer, time_bucket
from .sequence import State

__all__ = ["ELMURStepper"]

_LUT_SIZE = 1 << 14  # offsets below this are bucketed by table lookup


def _layer_step(
    layer: ELMURLayer,
    x: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    pos: int | torch.Tensor,
    self_bias: torch.Tensor,
    plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    read_bias: torch.Tensor | None,
) -> torch.Tensor:
    """``ELMURLayer.forward`` on one token: x [B, D] at segment position ``pos`` -> h [B, D].

    keys, values: the layer's cache [B, H, W + K, dh], written in place at W + ``pos`` (an int
    when every row is at the same position, else [B] long). self_bias: that position's bias
    ([H, W + K] or [B, H, W + K], -inf on future keys and on a missing context). plan: the
    layer's ``read_plan``; read_bias [B, H, M].
    """
    W = layer.self_attn.window

    def cache(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The token's key and value into the cache, in place; what it then attends over."""
        if isinstance(pos, int):
            keys[:, :, W + pos] = k
            values[:, :, W + pos] = v
            # Only the first W + pos + 1 keys can be seen: attend over them.
            seen = W + pos + 1
            return keys[:, :, :seen], values[:, :, :seen], self_bias[..., :seen]
        rows = torch.arange(x.shape[0], device=x.device)
        keys[rows, :, W + pos] = k
        values[rows, :, W + pos] = v
        return keys, values, self_bias

    h = layer.self_attention_cached(x, cache)[0]
    if plan is not None:
        h = layer.read_planned(h, plan, read_bias)
    return layer.feed_forward_eval(h)


class ELMURStepper:
    """The step path of one ``ELMUR`` model (made by the model; not an ``nn.Module``, so the
    model's parameters stay the model's)."""

    def __init__(self, model: ELMURBase) -> None:
        self.model = model
        self.cfg = model.cfg
        self.self_bias: list[torch.Tensor] = []
        self.bucket_table: torch.Tensor | None = None
        self.compiled: Any = None  # see ``compile``

    def refresh(self) -> None:
        """Takes the parameter-derived tables from the parameters as they are now."""
        model, cfg = self.model, self.cfg
        device = model.memory_init.device
        K, W = cfg.context_size, cfg.window
        with torch.no_grad():
            pos = torch.arange(W + K, device=device)
            # per layer [K (query position), H, W + K (key position, context first)]
            self.self_bias = [
                layer.self_attn.bias(pos[W:], pos).transpose(0, 1).contiguous()
                for layer in model.elmur_layers()
            ]
            table = time_bucket(torch.arange(_LUT_SIZE, device=device), cfg.time_buckets)
            self.bucket_table = torch.cat([table, table.new_full((1,), -1)])  # -1: beyond it

    def compile(self, enable: bool, **options: Any) -> None:
        """Runs the token path through ``torch.compile`` (see ``ELMUR.compile_step``)."""
        self.compiled = torch.compile(self.token_path, dynamic=False, **options) if enable else None

    def initial_state(self, batch_size: int) -> State:
        model, cfg = self.model, self.cfg
        self.refresh()
        # the step path keeps keys and values, not the segment path's context inputs
        state = {
            key: value.clone()
            for key, value in model.initial_state(batch_size).items()
            if key not in ("context", "context_valid")
        }
        dev, dtype = model.memory_init.device, model.memory_init.dtype
        H, K, dh = cfg.num_heads, cfg.context_size, cfg.embed_dim // cfg.num_heads
        W = cfg.window
        for i, layer in enumerate(model.elmur_layers()):
            state[f"keys.{i}"] = torch.zeros(batch_size, H, W + K, dh, device=dev, dtype=dtype)
            state[f"values.{i}"] = torch.zeros(batch_size, H, W + K, dh, device=dev, dtype=dtype)
            if layer.reads:
                with torch.no_grad():
                    plan = layer.read_plan(state["memory"][:, model.memory_index(i)])
                state[f"read_A.{i}"], state[f"read_c.{i}"], state[f"read_P.{i}"] = plan
        if cfg.relative_bias and cfg.read:
            state["read_bias"] = torch.zeros(
                batch_size, model.memory_layers, K, H, cfg.memory_slots, device=dev, dtype=dtype
            )
        state["outputs"] = torch.zeros(
            batch_size, cfg.num_layers, K, cfg.embed_dim, device=dev, dtype=dtype
        )
        state["position"] = torch.zeros(batch_size, dtype=torch.long, device=dev)
        if W:
            state["context_bias"] = torch.zeros(batch_size, 1, W + K, device=dev, dtype=dtype)
            state["context_bias"][..., :W] = float("-inf")
        return state

    def step(self, token: torch.Tensor, steps: torch.Tensor, state: State) -> torch.Tensor:
        """One token per row (see ``ELMUR.step``); returns the last layer's output [B, D]."""
        K = self.cfg.context_size
        B = token.shape[0]
        position = state["position"]  # [B]: index of this token in its segment
        if self.compiled is not None:
            x = self.compiled(token, steps, position, state, self.self_bias)
            uniform = False
        else:
            # Rows usually share their position (one episode, or a batch started together):
            # then caches are written by slicing and attention runs over the real keys only.
            p = int(position[0])
            uniform = B == 1 or bool((position == p).all())
            x = self.token_path(token, steps, p if uniform else position, state, self.self_bias)
        if uniform:
            if p == K - 1:
                self.write_rows(state, None, steps)
                self.roll_context(state, None)
            position.fill_(0 if p == K - 1 else p + 1)
        else:
            done = position == K - 1
            if bool(done.any()):
                index = None if bool(done.all()) else done.nonzero().squeeze(1)
                self.write_rows(state, index, steps)
                self.roll_context(state, index)
            position.add_(1).masked_fill_(done, 0)
        return x

    def token_path(
        self,
        x: torch.Tensor,
        steps: torch.Tensor,
        pos: int | torch.Tensor,
        state: State,
        self_bias: list[torch.Tensor],
    ) -> torch.Tensor:
        """The token path of one step through every layer (caches and outputs written in
        place); ``pos`` is an int when all rows share it, else the positions [B]."""
        model = self.model
        B = x.shape[0]
        uniform = isinstance(pos, int)
        if "read_bias" in state and (not uniform or pos == 0):
            # a new segment (or rows at different positions): its read biases
            start = steps - pos
            seg_steps = start[:, None] + torch.arange(self.cfg.context_size, device=x.device)
            # The lookup's fallback syncs with the host; compiled or mixed rows compute.
            reads, _ = model.time_biases(seg_steps, state["anchors"], self.buckets(uniform))
            biases = cast(list[torch.Tensor], reads)  # not None: the state has read biases
            state["read_bias"].copy_(torch.stack(biases, 1).transpose(2, 3))  # [B, Lm, K, H, M]
        outputs = state["outputs"]
        for i, layer in enumerate(model.elmur_layers()):
            plan = None
            if layer.reads:
                plan = (state[f"read_A.{i}"], state[f"read_c.{i}"], state[f"read_P.{i}"])
            bias = self_bias[i][pos]
            if "context_bias" in state:
                bias = bias + state["context_bias"]
            read_bias = None
            if "read_bias" in state:
                per_pos = state["read_bias"][:, model.memory_index(i)]  # [B, K, H, M]
                read_bias = (
                    per_pos[:, pos] if uniform else per_pos[torch.arange(B, device=x.device), pos]
                )
            x = _layer_step(
                layer, x, state[f"keys.{i}"], state[f"values.{i}"], pos, bias, plan, read_bias
            )
            if isinstance(pos, int):
                outputs[:, i, pos] = x
            else:
                outputs[torch.arange(B, device=x.device), i, pos] = x
        return x

    def buckets(self, lookup: bool) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``time_bucket``, by table lookup when ``lookup`` (a slot is rewritten every M
        segments, so offsets stay small; beyond the table it computes: exact either way)."""
        if not lookup:
            return time_bucket
        table = self.bucket_table
        assert table is not None, "refresh() first"

        def bucket(offset: torch.Tensor, num_buckets: int) -> torch.Tensor:
            found = table[offset.clamp(0, _LUT_SIZE)]
            if bool((found < 0).any()):
                return torch.where(found < 0, time_bucket(offset, num_buckets), found)
            return found

        return bucket

    def roll_context(self, state: State, index: torch.Tensor | None) -> None:
        """At a segment's end, its last W keys and values become the next one's context."""
        W, K = self.cfg.window, self.cfg.context_size
        if not W:
            return
        rows = slice(None) if index is None else index
        for i in range(self.cfg.num_layers):
            for name in (f"keys.{i}", f"values.{i}"):
                cache = state[name]
                cache[rows, :, :W] = cache[rows, :, K : K + W]
        state["context_bias"][rows, :, :W] = 0.0

    def write_rows(self, state: State, index: torch.Tensor | None, steps: torch.Tensor) -> None:
        """The segment path's memory write (``ELMUR.write_memory``) at a segment's end, in
        place, for the rows ``index`` (None: all); then their read plans are refreshed."""
        model, cfg = self.model, self.cfg
        if not cfg.write:
            return
        memory, anchors, outputs, last = state["memory"], state["anchors"], state["outputs"], steps
        if index is not None:
            memory, anchors = memory.index_select(0, index), anchors.index_select(0, index)
            outputs, last = outputs.index_select(0, index), steps.index_select(0, index)
        K = cfg.context_size
        seg_steps = last[:, None] - (K - 1) + torch.arange(K, device=last.device)  # [Bw, K]
        _, write_bias = model.time_biases(seg_steps, anchors, self.buckets(True))
        done = torch.ones_like(last, dtype=torch.bool)
        memory, anchors = model.write_memory(
            memory, anchors, outputs.unbind(1), last, write_bias, done
        )
        rows = slice(None) if index is None else index
        state["memory"][rows] = memory
        state["anchors"][rows] = anchors
        for i, layer in enumerate(model.elmur_layers()):
            if layer.reads:
                plan = layer.read_plan(memory[:, model.memory_index(i)])
                for name, new in zip(("read_A", "read_c", "read_P"), plan, strict=True):
                    state[f"{name}.{i}"][rows] = new

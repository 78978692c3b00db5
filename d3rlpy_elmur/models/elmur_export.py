"""ELMUR's step as a pure function of explicit state, for TorchScript / ONNX export.

No in-place writes and no Python branch on data: every row runs the same ops, the segment-end
memory write included, selected per row with ``torch.where``, so a trace captures the step
whole. The state is the step path's (``elmur_step.py``) minus its derived read caches; the
token path goes through the layer's own modules and ``ELMUR.lru_write``, so the math per token
is the segment path's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .elmur_step import attend_one
from .sequence import State

if TYPE_CHECKING:
    from .elmur import ELMUR

__all__ = ["export_step", "export_write", "initial_export_state"]


def initial_export_state(model: ELMUR, batch_size: int) -> State:
    """memory, anchors and context_valid of the segment path; caches of keys and values
    [B, L, H, W + K, dh], layer outputs [B, L, K, D] and the position [B]."""
    cfg = model.cfg
    H, K, W = cfg.num_heads, cfg.context_size, cfg.window
    state = {
        key: value.detach().clone()
        for key, value in model.initial_state(batch_size).items()
        if key != "context"
    }
    memory = state["memory"]
    cache = memory.new_zeros(batch_size, cfg.num_layers, H, W + K, cfg.embed_dim // H)
    state["keys"], state["values"] = cache, cache.clone()
    state["outputs"] = memory.new_zeros(batch_size, cfg.num_layers, K, cfg.embed_dim)
    state["position"] = torch.zeros(batch_size, dtype=torch.long, device=memory.device)
    return state


def export_step(
    model: ELMUR, token: torch.Tensor, steps: torch.Tensor, state: State, write: bool
) -> tuple[torch.Tensor, State]:
    """One token per row: token [B, D], steps [B] -> features [B, D], new state.
    ``write=False`` leaves memory and anchors as they were (``export_write`` then does the
    write, in a graph of its own)."""
    cfg = model.cfg
    K, W = cfg.context_size, cfg.window
    B = token.shape[0]
    pos, memory, anchors = state["position"], state["memory"], state["anchors"]
    slots = torch.arange(W + K, device=token.device)
    here = slots[None] == (W + pos)[:, None]  # [B, W + K]: this token's cache entry
    hidden_context = None
    if W:  # the context is hidden until a first segment is complete
        hidden_context = (slots[None] < W) & ~state["context_valid"][:, None]
    read_bias, _ = model.time_biases(steps[:, None], anchors)  # [B, H, 1, M] per memory layer
    keys, values, outs = [], [], []
    x = token
    for i, layer in enumerate(model.elmur_layers()):
        sa = layer.self_attn
        H = sa.num_heads
        q, k, v = sa.qkv(layer.ln_self(x) if layer.pre_norm else x).view(B, 3, H, -1).unbind(1)
        cached_k = torch.where(here[:, None, :, None], k[:, :, None], state["keys"][:, i])
        cached_v = torch.where(here[:, None, :, None], v[:, :, None], state["values"][:, i])
        bias = sa.bias((W + pos)[:, None], slots)[:, :, 0]  # [B, H, W + K]
        if hidden_context is not None:
            bias = bias.masked_fill(hidden_context[:, None], float("-inf"))
        y = sa.out_proj(attend_one(q, cached_k, cached_v, bias))
        h1 = x + y if layer.pre_norm else layer.ln_self(x + y)
        mi = model.memory_index(i)
        x, _ = layer.read_and_ffn(h1[:, None], memory[:, mi], read_bias[mi])
        x = x[:, 0]
        keys.append(cached_k)
        values.append(cached_v)
        outs.append(x)
    at = (slots[:K][None] == pos[:, None])[:, None, :, None]  # [B, 1, K, 1]
    outputs = torch.where(at, torch.stack(outs, 1)[:, :, None], state["outputs"])
    new_keys, new_values = torch.stack(keys, 1), torch.stack(values, 1)
    # the segment's end, computed for every row and kept where the segment is complete
    done = pos == K - 1
    new_memory, new_anchors = (
        export_write(model, memory, anchors, outputs, steps, done) if write else (memory, anchors)
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
    return model.ln_out(x), new_state


def export_write(
    model: ELMUR,
    memory: torch.Tensor,
    anchors: torch.Tensor,
    outputs: torch.Tensor,
    steps: torch.Tensor,
    done: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The memory write of ``export_step``: memory and anchors after it where ``done`` [B]
    (the step ``steps`` [B] ends a segment whose layer outputs are ``outputs`` [B, L, K, D]),
    unchanged elsewhere."""
    K = model.cfg.context_size
    seg_steps = steps[:, None] - (K - 1) + torch.arange(K, device=steps.device)[None]
    _, write_bias = model.time_biases(seg_steps, anchors)
    return model.write_memory(memory, anchors, outputs.unbind(1), steps, write_bias, done)

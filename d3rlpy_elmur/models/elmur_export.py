"""ELMUR's step as a pure function of explicit state, for TorchScript / ONNX export.

No in-place writes and no Python branch on data: every row runs the same ops, the segment-end
memory write included, selected per row with ``torch.where``, so a trace captures the step
whole. The state is the step path's (``elmur_step.py``) minus its derived read caches; the
token path calls the layer's sublayers (``ELMURLayer``) and the write is the segment path's
(``ELMURBase.write_memory``), so the math per token is the segment path's.
"""

from __future__ import annotations

from functools import partial

import torch

from .elmur import ELMURBase
from .sequence import State

__all__ = ["export_step", "export_write", "initial_export_state"]


def initial_export_state(model: ELMURBase, batch_size: int) -> State:
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
    model: ELMURBase, token: torch.Tensor, steps: torch.Tensor, state: State, write: bool = True
) -> tuple[torch.Tensor, State]:
    """One token per row: token [B, D], steps [B] -> features [B, D], new state.
    ``write=False`` leaves memory and anchors as they were (``export_write`` then does the
    write, in a graph of its own)."""
    cfg = model.cfg
    K, W = cfg.context_size, cfg.window
    pos, memory, anchors = state["position"], state["memory"], state["anchors"]
    slots = torch.arange(W + K, device=token.device)
    here = (slots[None] == (W + pos)[:, None])[:, None, :, None]  # [B, 1, W + K, 1]: its entry
    hidden_context = None
    if W:  # the context is hidden until a first segment is complete
        hidden_context = (slots[None] < W) & ~state["context_valid"][:, None]
    read_bias, _ = model.time_biases(steps[:, None], anchors)  # [B, H, 1, M] per memory layer
    keys, values, outs = [], [], []
    x = token
    for i, layer in enumerate(model.elmur_layers()):
        bias = layer.self_attn.bias((W + pos)[:, None], slots)[:, :, 0]  # [B, H, W + K]
        if hidden_context is not None:
            bias = bias.masked_fill(hidden_context[:, None], float("-inf"))
        cache = partial(_take_in, here, bias, state["keys"][:, i], state["values"][:, i])
        h, cached_k, cached_v = layer.self_attention_cached(x, cache)
        mi = model.memory_index(i)
        x = layer.feed_forward(layer.read(h[:, None], memory[:, mi], read_bias[mi]))[0][:, 0]
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


def _take_in(
    here: torch.Tensor,
    bias: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The export's cache for ``ELMURLayer.self_attention_cached``: the token's key and value
    k, v [B, H, dh] taken into keys, values [B, H, W + K, dh] where ``here`` [B, 1, W + K, 1],
    by selection (no in-place write); bias [B, H, W + K]."""
    return torch.where(here, k[:, :, None], keys), torch.where(here, v[:, :, None], values), bias


def export_write(
    model: ELMURBase,
    memory: torch.Tensor,
    anchors: torch.Tensor,
    outputs: torch.Tensor,
    steps: torch.Tensor,
    done: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The memory write of ``export_step`` alone (its own ONNX graph): memory and anchors
    after it where ``done`` [B] (the step ``steps`` [B] ends a segment whose layer outputs
    are ``outputs`` [B, L, K, D]), unchanged elsewhere."""
    K = model.cfg.context_size
    seg_steps = steps[:, None] - (K - 1) + torch.arange(K, device=steps.device)[None]
    _, write_bias = model.time_biases(seg_steps, anchors)
    return model.write_memory(memory, anchors, outputs.unbind(1), steps, write_bias, done)

"""ELMUR's step as a pure function of explicit state, for TorchScript / ONNX export.

No in-place writes and no Python branch on data: every row runs the same ops, selected per row
with ``torch.where``, so a trace captures the step whole. The state, per layer i:

* ``keys.i`` / ``values.i`` [B, H, W + K, dh]: the self-attention keys and values of the last
  W + K tokens, oldest first (a sliding window: each step drops the oldest and appends its
  own, the same shift in every row, so no per-row write); a token at segment position p sees
  the last p + 1 of them and, once a first segment is complete (``context_valid`` [B], W > 0
  only), the W before those, the previous segment's last W tokens;
* ``outputs.i`` [B, K, D]: the layer's outputs of the last K tokens, oldest first: at a
  segment's end, the segment's (what the memory write reads);
* ``read_A.i`` [B, D, H * M] / ``read_P.i`` [B, H * M, D]: the memory folded into the read
  (``ELMURLayer.read_plan``), and ``read_c.i`` [B, K, H * M], the plan's constant term plus
  the read time biases of the segment's K positions (reading layers only);

and ``memory`` [B, Lm, M, D], ``anchors`` [B, Lm, M] and ``position`` [B] (the token's index
in its segment). The read cache depends only on the memory, its anchors and the segment's
steps, so it is computed at reset and at a segment's end (``export_write``, with the memory
write): a step that does not end a segment runs only the token path, which the ONNX export
keeps apart from the write. Entries of the windows that a token does not see get a bias of
-inf, so a restarted row needs only its small state reset (``EXPORT_UNSEEN_AFTER_RESET``).
The token path calls the layer's sublayers (``ELMURLayer``) and the write is the segment
path's (``ELMURBase.write_memory``), so the math per token is the segment path's.
"""

from __future__ import annotations

from functools import partial

import torch

from .elmur import ELMURBase, ELMURLayer
from .sequence import State

__all__ = ["EXPORT_UNSEEN_AFTER_RESET", "export_step", "export_write", "initial_export_state"]

# State entries that a restarted row (position 0, no valid context) reads only once it has
# rewritten them: resetting them is not needed as long as they are finite.
EXPORT_UNSEEN_AFTER_RESET = ("keys.", "values.", "outputs.")


def initial_export_state(model: ELMURBase, batch_size: int) -> State:
    """The state at an episode's start (see the module's docstring)."""
    cfg = model.cfg
    H, K, W, D = cfg.num_heads, cfg.context_size, cfg.window, cfg.embed_dim
    state = {
        key: value.detach().clone()
        for key, value in model.initial_state(batch_size).items()
        if key != "context"
    }
    memory = state["memory"]
    for i in range(cfg.num_layers):
        state[f"keys.{i}"] = memory.new_zeros(batch_size, H, W + K, D // H)
        state[f"values.{i}"] = memory.new_zeros(batch_size, H, W + K, D // H)
        state[f"outputs.{i}"] = memory.new_zeros(batch_size, K, D)
    start = torch.zeros(batch_size, dtype=torch.long, device=memory.device)
    state["position"] = start
    state.update(_read_cache(model, memory, state["anchors"], start))
    return state


def export_step(
    model: ELMURBase, token: torch.Tensor, steps: torch.Tensor, state: State, write: bool = True
) -> tuple[torch.Tensor, State]:
    """One token per row: token [B, D], steps [B] -> features [B, D], new state.
    ``write=False`` leaves what ``export_write`` changes as it was (the ONNX export runs that
    in a graph of its own, only at steps where some row ends a segment)."""
    cfg = model.cfg
    K, W, HM = cfg.context_size, cfg.window, cfg.num_heads * cfg.memory_slots
    pos = state["position"]
    # the row of the self-attention bias table: by position, and whether the context is seen
    row = pos + K * state["context_valid"].long() if W else pos
    at_c = pos.view(-1, 1, 1).expand(-1, 1, HM)  # the position's row of read_c
    new_state = dict(state)
    x = token
    for i, layer in enumerate(model.elmur_layers()):
        bias = _self_bias_table(layer, K, W)[row]  # [B, H, W + K]
        cache = partial(_slide_in, bias, state[f"keys.{i}"], state[f"values.{i}"])
        h, new_state[f"keys.{i}"], new_state[f"values.{i}"] = layer.self_attention_cached(x, cache)
        if layer.reads:
            c = state[f"read_c.{i}"].gather(1, at_c)[:, 0]
            plan = (state[f"read_A.{i}"], c, state[f"read_P.{i}"])
            h = layer.read_planned(h, plan, None)  # (the time biases are in c)
        x = layer.feed_forward_eval(h)
        new_state[f"outputs.{i}"] = torch.cat([state[f"outputs.{i}"][:, 1:], x[:, None]], 1)
    done = pos == K - 1
    new_state["position"] = torch.where(done, 0, pos + 1)
    if W:  # a complete segment is the next one's context
        new_state["context_valid"] = state["context_valid"] | done
    if write:
        new_state.update(export_write(model, new_state, steps, done))
    return model.ln_out(x), new_state


def _self_bias_table(layer: ELMURLayer, K: int, W: int) -> torch.Tensor:
    """The self-attention bias [K or 2K, H, W + K] over the sliding window of a token at
    segment position p: row p without the context, row K + p with it (W > 0). Entry j of the
    window holds the token d = W + K - 1 - j steps back: seen when d <= p (the segment so
    far), or d <= W + p with the context. A function of the parameters alone: a constant of
    the traced graph."""
    window = torch.arange(W + K, device=layer.self_attn.rel_bias.device)
    back = W + K - 1 - window  # d
    # the bias of the window's newest token over it, by the offsets d (never in the future)
    bias = layer.self_attn.bias(window[-1:], window).transpose(0, 1)  # [1, H, W + K]
    position = torch.arange(K, device=window.device)[:, None, None]
    reach = [position, position + W] if W else [position]
    return torch.cat([bias.masked_fill(back > r, float("-inf")) for r in reach])


def _slide_in(
    bias: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The export's cache for ``ELMURLayer.self_attention_cached``: the windows keys, values
    [B, H, W + K, dh] shifted by one, the token's key and value k, v [B, H, dh] last (no
    in-place write); bias [B, H, W + K]."""
    return (
        torch.cat([keys[:, :, 1:], k[:, :, None]], 2),
        torch.cat([values[:, :, 1:], v[:, :, None]], 2),
        bias,
    )


def export_write(model: ELMURBase, state: State, steps: torch.Tensor, done: torch.Tensor) -> State:
    """A segment's end in the rows ``done`` [B], whose step ``steps`` [B] ends it, from the
    state after that step's token path: the segment path's memory write and the next
    segment's read cache from the written memory. Returns the entries it changes (memory,
    anchors, the read cache); the other rows keep theirs."""
    K = model.cfg.context_size
    memory, anchors = state["memory"], state["anchors"]
    seg_steps = steps[:, None] - (K - 1) + torch.arange(K, device=steps.device)[None]
    _, write_bias = model.time_biases(seg_steps, anchors)
    outputs = [state[f"outputs.{i}"] for i in range(model.cfg.num_layers)]
    memory, anchors = model.write_memory(memory, anchors, outputs, steps, write_bias, done)
    changed = {"memory": memory, "anchors": anchors}
    for name, new in _read_cache(model, memory, anchors, steps + 1).items():
        changed[name] = torch.where(done.view(-1, *([1] * (new.dim() - 1))), new, state[name])
    return changed


def _read_cache(
    model: ELMURBase, memory: torch.Tensor, anchors: torch.Tensor, start: torch.Tensor
) -> State:
    """The read cache of every reading layer for a segment that starts at step ``start`` [B],
    under memory [B, Lm, M, D] with anchors [B, Lm, M]: ``read_A.i``, ``read_P.i`` (the
    layer's ``read_plan``) and ``read_c.i`` [B, K, H * M], the plan's constant term plus the
    read time biases of the segment's K positions (what ``read_planned`` adds per token)."""
    if not model.cfg.read:
        return {}
    K = model.cfg.context_size
    seg_steps = start[:, None] + torch.arange(K, device=start.device)[None]
    read_bias, _ = model.time_biases(seg_steps, anchors)  # per memory layer [B, H, K, M]
    cache = {}
    for i, layer in enumerate(model.elmur_layers()):
        mi = model.memory_index(i)
        cache[f"read_A.{i}"], c, cache[f"read_P.{i}"] = layer.read_plan(memory[:, mi])
        bias = read_bias[mi]
        c = c[:, None].repeat(1, K, 1)
        cache[f"read_c.{i}"] = c if bias is None else c + bias.transpose(1, 2).flatten(2)
    return cache

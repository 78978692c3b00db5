"""The performance rewrites of ELMUR compute the same function as the plain formulas.

Each fast path (the candidate with folded projections, LRU write of the target slot only,
folded read of the step path, time-bucket lookup) is checked against the straightforward
computation it replaces, values and gradients.
"""

from __future__ import annotations

import pytest
import torch

from d3rlpy_elmur.models import ELMUR, lru_update
from d3rlpy_elmur.models.elmur import ELMURLayer, lru_target, time_bucket
from d3rlpy_elmur.models.elmur_step import _LUT_SIZE, ELMURStepper
from tests.models.test_elmur import D, K
from tests.models.test_elmur import make as make_model


def make(**overrides: object) -> ELMUR:
    return make_model(**{"memory_slots": 3, **overrides})


def plain_candidate(
    layer: ELMURLayer, memory: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """m~ = u + FFN_mem(u), u = m + CrossAttn(q=m, kv=h, B_wr), through the attention module."""
    toks = layer.ln_write_tok(tokens)
    u = layer._residual(memory, lambda q: layer.write_attn(q, toks, bias), layer.ln_write)
    return layer.ln_mem_out(layer._residual(u, layer.mem_ffn, layer.ln_mem_ffn))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_folded_candidate_equals_the_plain_formula_for_every_slot(norm: str) -> None:
    layer = make(norm=norm).elmur_layers()[0]
    torch.manual_seed(1)
    memory, tokens = torch.randn(5, 3, D), torch.randn(5, K, D)
    bias = torch.randn(5, 2, 3, K)
    bias[0, :, :, 1] = float("-inf")  # masked padding, as in writing rows
    plain = plain_candidate(layer, memory, tokens, bias)
    assert (layer.candidate(memory, tokens, bias) - plain).abs().max() <= 1e-5
    for slot in range(3):
        one = layer.candidate_one(memory[:, slot], tokens, bias[:, :, slot])
        assert (one - plain[:, slot]).abs().max() <= 1e-5


def test_lru_write_equals_lru_update_of_all_candidates_with_gradients() -> None:
    model = make()
    layer = model.elmur_layers()[0]
    torch.manual_seed(2)
    memory = torch.randn(4, 3, D, requires_grad=True)
    tokens = torch.randn(4, K, D, requires_grad=True)
    anchors = torch.tensor([[-1, -1, -1], [3, -1, -1], [3, 7, 11], [11, 3, 7]])
    last = torch.tensor([3, 7, 15, 15])
    bias = torch.randn(4, 2, 3, K)

    def grads(fn: object) -> tuple[torch.Tensor, ...]:
        layer.zero_grad()
        memory.grad = tokens.grad = None
        new, anc = fn()  # type: ignore[operator]
        (new * torch.linspace(-1, 1, D)).square().sum().backward()
        weight = layer.write_attn.kv_proj.weight.grad
        assert weight is not None and memory.grad is not None and tokens.grad is not None
        return new.detach(), anc, memory.grad.clone(), tokens.grad.clone(), weight.clone()

    fast = grads(lambda: model.lru_write(layer, memory, anchors, tokens, bias, last))
    plain = grads(
        lambda: lru_update(
            memory,
            plain_candidate(layer, memory, tokens, bias),
            anchors,
            last,
            model.cfg.lru_blend,
        )
    )
    assert torch.equal(fast[1], plain[1])
    for a, b in zip(fast[:1] + fast[2:], plain[:1] + plain[2:], strict=True):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_context_keys_and_values_equal_projecting_the_context(norm: str) -> None:
    layer = make(norm=norm, attention_window=4).elmur_layers()[0].train()
    torch.manual_seed(4)
    x, context = torch.randn(3, K, D, requires_grad=True), torch.randn(3, 4, D, requires_grad=True)
    memory, bias = torch.randn(3, 3, D), torch.randn(3, 2, K, 3)
    context_valid = torch.tensor([True, False, True])

    def grads(fast: bool) -> list[torch.Tensor]:
        layer.zero_grad()
        x.grad = context.grad = None
        if fast:
            kv = layer.context_kv(context)
            h, _, _ = layer.forward_cached(x, memory, bias, kv, context_valid)
        else:
            h, _ = layer(x, memory, bias, context, context_valid)
        (h * torch.linspace(-1, 1, D)).square().sum().backward()
        weight = layer.self_attn.qkv.weight.grad
        assert weight is not None and x.grad is not None and context.grad is not None
        return [h.detach(), x.grad.clone(), context.grad.clone(), weight.clone()]

    for a, b in zip(grads(True), grads(False), strict=True):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("window", [K, 3])
def test_carried_context_keys_equal_projecting_every_segment(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The segment path carries each layer's keys and values of the next segment's context;
    projecting the context again in every segment gives the same outputs and gradients, also
    after a row's partial segment (no write, the context kept)."""
    model = make(attention_window=window).train()
    torch.manual_seed(5)
    B, T = 3, 4 * K
    tokens = torch.randn(B, T, D, requires_grad=True)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 2 * K + K // 2 :] = False  # row 1 ends inside its third segment, then padding
    steps = (torch.arange(T) + K).expand(B, T)
    start = model.initial_state(B)
    start["context"] = torch.randn_like(start["context"])
    start["context_valid"] = torch.tensor([True, True, False])

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        tokens.grad = None
        out = model(tokens, valid, steps, dict(start))
        loss = (out.outputs * torch.linspace(-1, 1, D)).square().sum()
        (loss + out.state["memory"].square().sum()).backward()
        assert tokens.grad is not None
        params = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return [out.outputs.detach(), out.state["memory"].detach(), tokens.grad.clone(), *params]

    carried = grads()
    segment_carry = model._segment_carry
    # every segment gets context_kv=None: its context is projected again
    monkeypatch.setattr(model, "_segment_carry", lambda *args: segment_carry(*args[:5]))
    projected = grads()
    assert len(carried) == len(projected) > 3
    for a, b in zip(carried, projected, strict=True):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max()))


def test_lru_target_matches_lru_update() -> None:
    anchors = torch.tensor([[-1, 5, -1], [9, 3, 6], [2, 2, 8], [4, -1, 0]])
    target, coef = lru_target(anchors, 0.25)
    memory, cand = torch.zeros(4, 3, 1), torch.ones(4, 3, 1)
    new, _ = lru_update(memory, cand, anchors, torch.full((4,), 20), 0.25)
    assert target.tolist() == new[..., 0].argmax(1).tolist() == [0, 1, 0, 1]
    assert coef.tolist() == [1.0, 0.25, 0.25, 1.0]


def test_read_plan_equals_cross_attention() -> None:
    layer = make().elmur_layers()[1]
    torch.manual_seed(3)
    memory, h = torch.randn(3, 3, D), torch.randn(3, D)
    bias = torch.randn(3, 2, 3)
    ref = layer.read_attn(h[:, None], memory, bias[:, :, None, :])[:, 0]
    A, c, P = layer.read_plan(memory)
    scores = torch.baddbmm((c + bias.reshape(3, -1)).unsqueeze(1), h.unsqueeze(1), A)
    weights = scores.view(3, 2, -1).softmax(-1).view(3, 1, -1)
    got = torch.baddbmm(layer.read_attn.out_proj.bias, weights, P)[:, 0]
    assert (got - ref).abs().max() <= 1e-5


def test_bucket_lookup_equals_time_bucket_and_falls_back_beyond_the_table() -> None:
    stepper = ELMURStepper(make())
    stepper.refresh()
    offsets = torch.tensor([[0, 5, 16, 999, _LUT_SIZE - 1], [_LUT_SIZE, 10**6, 3, 2, 1]])
    want = time_bucket(offsets, 64)
    assert torch.equal(stepper.buckets(lookup=True)(offsets, 64), want)
    assert stepper.buckets(lookup=False) is time_bucket


def test_step_cache_follows_parameter_updates() -> None:
    model = make()
    tokens = torch.randn(2, 2, D)

    def two_steps(m: ELMUR) -> torch.Tensor:
        state = m.initial_step_state(2)
        m.step(tokens[:, 0], torch.zeros(2, dtype=torch.long), state)
        return m.step(tokens[:, 1], torch.ones(2, dtype=torch.long), state)[0]

    with torch.no_grad():
        before = two_steps(model)
        # an in-place update, as an optimizer step does: the cached bias table must follow
        model.layers[0].self_attn.rel_bias.add_(torch.randn(2, K))
        after = two_steps(model)
        fresh = make()
        fresh.load_state_dict(model.state_dict())
        ref = two_steps(fresh)
    assert torch.equal(after, ref)
    assert (before - after).abs().max() > 1e-3


def test_compile_step_hands_the_token_path_to_torch_compile_and_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What compile_step asks of torch.compile (whose own output the slow test below checks):
    the token path, static shapes, the caller's options; and the step then runs through it."""
    asked: list[tuple[object, dict[str, object]]] = []
    calls: list[int] = []

    def fake_compile(fn, **kwargs):  # type: ignore[no-untyped-def]
        asked.append((fn, kwargs))

        def run(*args):  # type: ignore[no-untyped-def]
            calls.append(1)
            return fn(*args)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    model, eager = make(), make()
    model.compile_step(mode="reduce-overhead")
    ((fn, kwargs),) = asked
    assert fn == model._step_path().token_path
    assert kwargs == {"dynamic": False, "mode": "reduce-overhead"}
    tokens = torch.randn(2, K + 1, D)
    with torch.inference_mode():
        states = model.initial_step_state(2), eager.initial_step_state(2)
        for t in range(K + 1):
            steps = torch.full((2,), t)
            a = model.step(tokens[:, t], steps, states[0])[0]
            assert torch.equal(a, eager.step(tokens[:, t], steps, states[1])[0])
        assert len(calls) == K + 1
        model.compile_step(False)
        model.step(tokens[:, 0], torch.zeros(2, dtype=torch.long), states[0])
    assert len(asked) == 1 and len(calls) == K + 1


@pytest.mark.slow
def test_compiled_step_equals_eager_step() -> None:
    eager, compiled = make(), make()
    compiled.compile_step()
    tokens = torch.randn(3, 2 * K + 1, D)
    with torch.inference_mode():
        states = eager.initial_step_state(3), compiled.initial_step_state(3)
        for t in range(tokens.shape[1]):  # through a memory write
            steps = torch.full((3,), t)
            a = eager.step(tokens[:, t], steps, states[0])[0]
            b = compiled.step(tokens[:, t], steps, states[1])[0]
            assert (a - b).abs().max() <= 1e-5, t
        assert torch.equal(states[0]["anchors"], states[1]["anchors"])

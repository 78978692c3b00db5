from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
import torch

from d3rlpy_elmur.models import (
    ELMUR,
    ELMURConfig,
    ELMUROptions,
    GRUEncoder,
    SequenceEncoder,
    lru_update,
    reset_rows,
    time_bucket,
)
from d3rlpy_elmur.models.attention import SelfAttention
from d3rlpy_elmur.models.elmur import lru_target

D, K = 16, 4


def make(**overrides: object) -> ELMUR:
    torch.manual_seed(0)
    # the paper's model (segment-local attention, no write gate) unless a test says otherwise
    cfg = dict(
        embed_dim=D,
        num_layers=2,
        num_heads=2,
        context_size=K,
        memory_slots=2,
        attention_window=0,
        write_gate=0.0,
        write_gate_empty=False,
        write_gate_cost=0.0,
    )
    cfg.update(overrides)
    model = ELMUR(ELMURConfig(**cfg))  # type: ignore[arg-type]
    # The learned time biases start at zero; randomise them so tests see their effect.
    for name, param in model.named_parameters():
        if "time_bias" in name or "rel_bias" in name:
            torch.nn.init.normal_(param, std=0.5)
    return model.eval()


def inputs(B: int, T: int, offset: int = 0) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    tokens = torch.randn(B, T, D)
    valid = torch.ones(B, T, dtype=torch.bool)
    steps = (torch.arange(T) + offset).expand(B, T)
    return tokens, valid, steps


def run_steps(model: SequenceEncoder, tokens: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    state = model.initial_step_state(tokens.shape[0])
    outs = []
    for t in range(tokens.shape[1]):
        out, state = model.step(tokens[:, t], steps[:, t], state)
        outs.append(out)
    return torch.stack(outs, 1)


# ---------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("changed", [1, 6, 13])
def test_future_tokens_never_change_earlier_outputs(changed: int) -> None:
    model = make()
    tokens, valid, steps = inputs(2, 5 * K)
    before = model(tokens, valid, steps, model.initial_state(2)).outputs
    tokens = tokens.clone()
    tokens[:, changed] += 3.0
    after = model(tokens, valid, steps, model.initial_state(2)).outputs
    assert torch.allclose(before[:, :changed], after[:, :changed], atol=1e-6)
    # ...and the change does reach the changed step and later segments (memory carries it).
    assert not torch.allclose(before[:, changed], after[:, changed], atol=1e-4)
    later = (changed // K + 1) * K
    assert not torch.allclose(before[:, later:], after[:, later:], atol=1e-4)


# ---------------------------------------------------------------------------------------- LRU
def test_lru_fills_empty_slots_in_order_then_blends_oldest() -> None:
    B, M = 1, 3
    memory = torch.zeros(B, M, 2)
    anchors = torch.full((B, M), -1)
    lam = 0.25
    for seg, expected_slot in enumerate([0, 1, 2]):
        cand = torch.full((B, M, 2), float(seg + 1))
        memory, anchors = lru_update(memory, cand, anchors, torch.tensor([seg * 10 + 9]), lam)
        assert anchors[0, expected_slot] == seg * 10 + 9
        # replace, not blend, while a slot is empty
        assert torch.equal(memory[0, expected_slot], torch.full((2,), float(seg + 1)))
    assert anchors.tolist() == [[9, 19, 29]]
    # all full: the oldest anchor (slot 0) is blended with the exact formula
    cand = torch.full((B, M, 2), 10.0)
    old = memory.clone()
    memory, anchors = lru_update(memory, cand, anchors, torch.tensor([39]), lam)
    assert torch.allclose(memory[0, 0], lam * cand[0, 0] + (1 - lam) * old[0, 0])
    assert torch.equal(memory[0, 1:], old[0, 1:])
    assert anchors.tolist() == [[39, 19, 29]]
    # next the oldest is slot 1
    memory, anchors = lru_update(memory, cand, anchors, torch.tensor([49]), lam)
    assert anchors.tolist() == [[39, 49, 29]]
    assert torch.allclose(memory[0, 1], lam * 10.0 + (1 - lam) * old[0, 1])


def test_lru_rows_are_independent_and_no_lru_overwrites_all() -> None:
    memory = torch.zeros(2, 2, 1)
    anchors = torch.tensor([[-1, -1], [5, 3]])
    cand = torch.ones(2, 2, 1)
    new, anc = lru_update(memory, cand, anchors, torch.tensor([7, 7]), 0.5)
    assert anc.tolist() == [[7, -1], [5, 7]]
    assert new[:, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.5]]
    new, anc = lru_update(memory, cand, anchors, torch.tensor([7, 7]), 0.5, use_lru=False)
    assert anc.tolist() == [[7, 7], [7, 7]]
    assert torch.equal(new, cand)


def test_lru_target_works_on_any_leading_shape() -> None:
    anchors = torch.tensor([[[3, -1, 5], [7, 2, 9]], [[4, 8, 6], [-1, -1, 0]]])
    target, coef = lru_target(anchors, 0.25)
    assert target.tolist() == [[1, 1], [0, 0]]
    assert coef.tolist() == [[1.0, 0.25], [0.25, 1.0]]


def test_lru_slot_anchored_at_step_zero_is_full_not_empty() -> None:
    # A segment of one step ending at t=0 anchors its slot at 0; -1 alone means empty.
    memory, cand = torch.zeros(1, 2, 1), torch.ones(1, 2, 1)
    new, anc = lru_update(memory, cand, torch.tensor([[0, 5]]), torch.tensor([6]), 0.5)
    assert anc.tolist() == [[6, 5]]
    assert new[0, :, 0].tolist() == [0.5, 0.0]
    target, coef = lru_target(torch.tensor([[0, 5]]), 0.5)
    assert target.tolist() == [0] and coef.tolist() == [0.5]


def test_model_anchors_follow_segments_and_reset() -> None:
    model = make(memory_slots=2)
    tokens, valid, steps = inputs(2, 5 * K)
    state = model(tokens, valid, steps, model.initial_state(2)).state
    # segment ends at 3, 7, 11, 15, 19: slots filled 0, 1, then oldest blended
    assert state["anchors"][0, 0].tolist() == [19, 15]
    fresh = model.initial_state(2)
    assert (fresh["anchors"] == -1).all()
    assert torch.equal(fresh["memory"][0], model.memory_init)
    reset = reset_rows(state, fresh, torch.tensor([True, False]))
    assert (reset["anchors"][0] == -1).all() and torch.equal(
        reset["anchors"][1], state["anchors"][1]
    )
    assert torch.equal(reset["memory"][0], model.memory_init)


def test_padding_segments_leave_memory_unchanged() -> None:
    model = make()
    tokens, valid, steps = inputs(2, 3 * K)
    valid = valid.clone()
    valid[0, :K] = False  # row 0: a fully padded first segment (burn-in left padding)
    valid[1, -1] = False  # row 1: a partial last segment: no write, as at inference
    state = model(tokens, valid, steps, model.initial_state(2)).state
    ref = model(tokens[:1, K:], valid[:1, K:], steps[:1, K:], model.initial_state(1)).state
    assert torch.allclose(state["memory"][0], ref["memory"][0], atol=1e-6)
    assert state["anchors"][0, 0].tolist() == [7, 11]
    assert state["anchors"][1, 0].tolist() == [3, 7]


# ------------------------------------------------------------------- step == segment forward
VARIANTS = [
    {},
    {"norm": "pre"},
    {"ffn": "moe"},
    {"shared_memory": True},
    {"use_lru": False},
    {"relative_bias": False, "memory_slots": 3},
    {"relative_bias": False, "use_lru": False},
    {"write": False},
    {"attention_window": 1},
    {"attention_window": K - 1, "norm": "pre"},
    {"attention_window": K},
    {"attention_window": K, "context_gradient": False, "shared_memory": True},
    {"attention_window": 2, "num_heads": 4},
    {"attention_window": 2, "memory_noise": 0.5, "context_dropout": 0.5},  # training-only
    {"attention_window": K, "memory_rewrites": 3},  # training-only
    {"attention_window": K, "memory_drift": 3},  # training-only
    {"attention_window": K, "write_gate": 0.95},
    {"write_gate": 0.05, "memory_slots": 1, "norm": "pre"},
    {"attention_window": K, "write_gate": 0.3, "write_gate_empty": True, "memory_slots": 2},
    # the library defaults (make's are the paper's model)
    {f.name: f.default for f in dataclasses.fields(ELMUROptions)},
]


@pytest.mark.parametrize("overrides", [*VARIANTS, {"context_size": 1}])  # K = 1: anchors at 0
def test_step_inference_equals_segment_forward(overrides: dict[str, object]) -> None:
    model = make(**overrides)
    T = 5 * K + 3  # five full segments and a partial one
    tokens, valid, steps = inputs(3, T, offset=0)
    with torch.no_grad():
        seg_out = model(tokens, valid, steps, model.initial_state(3)).outputs
        step_out = run_steps(model, tokens, steps)
    assert (seg_out - step_out).abs().max() <= 1e-5


@pytest.mark.parametrize("window", [0, 2, K])
def test_step_rows_at_different_positions_match_their_own_episodes(window: int) -> None:
    model = make(attention_window=window)
    tokens, _, _ = inputs(2, 3 * K + 2)
    with torch.no_grad():
        state = model.initial_step_state(2)
        fresh = model.initial_step_state(2)
        outs: list[torch.Tensor] = []
        start = [0, 3]  # row 1 starts a new episode at step 3
        for t in range(tokens.shape[1]):
            if t == 3:
                state = reset_rows(state, fresh, torch.tensor([False, True]))
            steps = torch.tensor([t - start[0], max(t - start[1], 0)])
            out, state = model.step(tokens[:, t], steps, state)
            outs.append(out)
        got = torch.stack(outs, 1)
        T1 = tokens.shape[1] - 3
        ref1 = run_steps(model, tokens[1:, 3:], torch.arange(T1)[None])
        valid = torch.ones(1, T1, dtype=torch.bool)
        ref1_seg = model(
            tokens[1:, 3:], valid, torch.arange(T1)[None], model.initial_state(1)
        ).outputs
        ref0 = run_steps(model, tokens[:1], torch.arange(tokens.shape[1])[None])
    assert (got[0] - ref0[0]).abs().max() <= 1e-5  # the row that was not restarted
    assert (got[1, 3:] - ref1[0]).abs().max() <= 1e-5
    assert (got[1, 3:] - ref1_seg[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("overrides", VARIANTS)
def test_export_step_equals_segment_forward(overrides: dict[str, object]) -> None:
    """The pure step that save_policy exports: the segment forward's outputs, also for a row
    that restarts its episode mid-batch (its state reset as the exported graph resets it)."""
    model = make(**overrides)
    T = 5 * K + 3
    tokens, valid, steps = inputs(2, T, offset=0)
    restart = K + 2  # row 1 starts again here, mid-segment of row 0
    with torch.no_grad():
        seg_out = model(tokens, valid, steps, model.initial_state(2)).outputs
        T1 = T - restart
        ref1 = model(
            tokens[1:, restart:], valid[1:, restart:], steps[1:, :T1], model.initial_state(1)
        ).outputs
        state, outs = model.initial_export_state(2), []
        for t in range(T):
            if t == restart:
                state = reset_rows(
                    state, model.initial_export_state(1), torch.tensor([False, True])
                )
            step = torch.tensor([t, t if t < restart else t - restart])
            out, state = model.export_step(tokens[:, t], step, state)
            outs.append(out)
        got = torch.stack(outs, 1)
    assert (got[0] - seg_out[0]).abs().max() <= 1e-5
    assert (got[1, :restart] - seg_out[1, :restart]).abs().max() <= 1e-5
    assert (got[1, restart:] - ref1[0]).abs().max() <= 1e-5


def test_gru_step_equals_forward() -> None:
    torch.manual_seed(0)
    gru = GRUEncoder(D, K, num_layers=2).eval()
    tokens, valid, steps = inputs(2, 3 * K + 1)
    with torch.no_grad():
        out = gru(tokens, valid, steps, gru.initial_state(2)).outputs
        assert (out - run_steps(gru, tokens, steps)).abs().max() <= 1e-5


# ----------------------------------------------------------------------------- memory matters
def test_outputs_depend_on_memory_unless_read_is_off() -> None:
    for read, differs in [(True, True), (False, False)]:
        model = make(read=read)
        tokens, valid, steps = inputs(2, K, offset=40)
        state_a = model.initial_state(2)
        state_b = {
            "memory": torch.randn_like(state_a["memory"]),
            "anchors": torch.full_like(state_a["anchors"], 30),
        }
        out_a = model(tokens, valid, steps, state_a).outputs
        out_b = model(tokens, valid, steps, state_b).outputs
        assert (not torch.allclose(out_a, out_b, atol=1e-4)) == differs


# ------------------------------------------------------------------------------------ gradient
WRITE_PATH = ("write_attn", "mem_ffn", "ln_write", "ln_mem_ffn")


def last_segment_loss(out: torch.Tensor) -> torch.Tensor:
    """A loss on the last segment's outputs that the final LayerNorm does not flatten: the sum
    (or the sum of squares) of a normalised vector is constant, so its gradient is zero (or
    float noise) and a test of where gradient reaches would pass or fail by rounding."""
    weights = torch.linspace(-1.0, 1.0, out.shape[-1]) ** 3
    return (out[:, -K:] * weights).sum()


@pytest.mark.parametrize("detach", [False, True])
def test_write_path_gets_gradient_from_a_later_segment(detach: bool) -> None:
    model = make(detach_memory=detach).train()
    tokens, valid, steps = inputs(2, 3 * K)
    out = model(tokens, valid, steps, model.initial_state(2)).outputs
    last_segment_loss(out).backward()
    grads = {
        name: (p.grad.abs().sum().item() if p.grad is not None else 0.0)
        for name, p in model.named_parameters()
        if any(part in name for part in WRITE_PATH)
    }
    assert grads, "no write-path parameters found"
    if detach:
        assert all(g == 0.0 for g in grads.values())
    else:
        for layer in range(2):
            for part in ("write_attn", "mem_ffn"):
                # measured 240 or more: far above any rounding
                assert (
                    sum(g for n, g in grads.items() if n.startswith(f"layers.{layer}.{part}")) > 1.0
                )


def test_bptt_truncation_cuts_gradient_to_early_writes() -> None:
    model = make(memory_slots=4, bptt_segments=1).train()
    tokens, valid, steps = inputs(1, 3 * K)
    tokens.requires_grad_(True)
    out = model(tokens, valid, steps, model.initial_state(1)).outputs
    last_segment_loss(out).backward()
    assert tokens.grad is not None
    assert tokens.grad[:, :K].abs().sum() == 0  # two segments back: cut
    assert tokens.grad[:, -K:].abs().sum() > 1e-2


@pytest.mark.parametrize("period", [2, 3])
def test_bptt_truncation_cuts_exactly_every_period_segments(period: int) -> None:
    # segments 0..5, a loss on the last; detached after every `period` segments, so the
    # gradient reaches back through memory to the last cut and no further
    model = make(memory_slots=4, bptt_segments=period).train()
    tokens, valid, steps = inputs(1, 6 * K)
    tokens.requires_grad_(True)
    out = model(tokens, valid, steps, model.initial_state(1)).outputs
    last_segment_loss(out).backward()
    assert tokens.grad is not None
    # a segment reached gets a gradient of 0.3 or more (measured); one cut off, exactly 0
    grads = [tokens.grad[:, i * K : (i + 1) * K].abs().sum() for i in range(6)]
    assert all(g == 0 or g > 1e-2 for g in grads)
    reached = [bool(g > 0) for g in grads]
    first = 6 - (6 % period or period)  # the first segment after the last cut
    assert reached == [i >= first for i in range(6)]


def test_time_biases_index_the_offset_from_each_slot_anchor() -> None:
    model = make(memory_slots=3)
    with torch.no_grad():  # a distinct bias per bucket and head
        for table in (model.read_time_bias, model.write_time_bias):
            buckets, heads = table.weight.shape
            table.weight.copy_(torch.arange(buckets * heads, dtype=torch.float).view(buckets, -1))
    steps = (torch.arange(K) + 40).expand(2, K)
    anchors = torch.tensor([[[9, 39, -1], [29, 19, 3]], [[-1, -1, -1], [0, 35, 39]]])
    reads, writes = model.time_biases(steps, anchors)
    for layer in range(2):
        for b in range(2):
            for t in range(K):
                for j in range(3):
                    anchor = int(anchors[b, layer, j])
                    if anchor < 0:  # empty: its own bucket
                        bucket = model.cfg.time_buckets
                    else:  # how long ago the slot was written, seen from the token
                        bucket = int(time_bucket(torch.tensor(40 + t - anchor), 64))
                    read_bias = reads[layer][b, :, t, j]
                    write_bias = writes[layer][b, :, j, t]
                    assert torch.equal(read_bias, model.read_time_bias.weight[bucket])
                    assert torch.equal(write_bias, model.write_time_bias.weight[bucket])


def test_moe_balance_loss_ignores_padding_and_does_not_grow_with_segments() -> None:
    model = make(ffn="moe", read=False, write=False)  # segments independent of each other
    tokens, valid, steps = inputs(2, K)
    one = model(tokens, valid, steps, model.initial_state(2)).aux_loss
    assert one is not None and one.item() > 0
    twice = torch.cat([tokens, tokens], 1)  # the same segment again
    state = model.initial_state(2)
    again = model(twice, torch.ones(2, 2 * K, dtype=torch.bool), steps.repeat(1, 2), state)
    assert again.aux_loss is not None and torch.allclose(again.aux_loss, one)
    padded = torch.cat([tokens, torch.randn(2, K, D)], 1)  # a padded segment after it
    mask = torch.cat([valid, torch.zeros(2, K, dtype=torch.bool)], 1)
    pad = model(padded, mask, steps.repeat(1, 2), model.initial_state(2))
    assert pad.aux_loss is not None and torch.allclose(pad.aux_loss, one)
    # one segment with one real token: the weighted sum of the layers' losses, not halved
    single = torch.zeros(2, K, dtype=torch.bool)
    single[0, 0] = True
    layers: list[torch.Tensor] = []
    for layer in model.elmur_layers():
        layer.ffn.register_forward_hook(lambda _module, _inputs, out: layers.append(out[1]))
    alone = model(tokens, single, steps, model.initial_state(2))
    expected = model.cfg.moe_aux_weight * torch.stack(layers).sum()
    assert alone.aux_loss is not None and torch.allclose(alone.aux_loss, expected)


def test_states_are_kept_only_when_asked() -> None:
    model = make()
    tokens, valid, steps = inputs(2, 2 * K)
    plain = model(tokens, valid, steps, model.initial_state(2))
    assert plain.kept_states == [] and plain.aux_loss is None  # the MLP has no aux loss
    out = model(tokens, valid, steps, model.initial_state(2), keep_states=True)
    assert len(out.kept_states) == 2
    last = out.kept_states[-1]  # the state after the last segment
    assert all(torch.equal(last[key], value) for key, value in out.state.items())


# ---------------------------------------------------------------------- stability, positions
def test_time_buckets_separate_long_offsets() -> None:
    offsets = torch.tensor([0, 1, 15, 16, 100, 1000, 10_000, 100_000, 1_000_000])
    buckets = time_bucket(offsets, 64)
    assert buckets[:3].tolist() == [0, 1, 15]
    assert (buckets[1:] > buckets[:-1]).all()  # strictly increasing on this grid
    assert int(buckets.max()) < 64
    # log-spaced up to 10^7, where the last bucket starts; everything beyond shares it
    top = time_bucket(torch.tensor([10**6, 10**7 - 1, 10**7, 10**9]), 64)
    assert int(top[0]) < 63 and top[1:].tolist() == [63, 63, 63]


def test_outputs_do_not_depend_on_absolute_step() -> None:
    model = make()
    tokens, valid, steps = inputs(2, K, offset=50)
    memory = torch.randn_like(model.initial_state(2)["memory"])
    anchors = torch.tensor([[[29, 49], [39, 49]]]).expand(2, -1, -1)
    shift = 10**6
    out0, st0 = model(tokens, valid, steps, {"memory": memory, "anchors": anchors})[:2]
    shifted = {"memory": memory, "anchors": anchors + shift}
    out1, st1 = model(tokens, valid, steps + shift, shifted)[:2]
    assert (out0 - out1).abs().max() <= 1e-5
    assert (st0["memory"] - st1["memory"]).abs().max() <= 1e-5
    assert torch.equal(st0["anchors"] + shift, st1["anchors"])


@pytest.mark.parametrize(
    "norm, segments",
    [
        ("post", 1_000),
        ("pre", 1_000),
        pytest.param("post", 10_000, marks=pytest.mark.slow),
        pytest.param("pre", 10_000, marks=pytest.mark.slow),
        pytest.param("post", 100_000, marks=pytest.mark.slow),
    ],
)
def test_memory_stays_finite_and_bounded(norm: str, segments: int) -> None:
    model = make(embed_dim=D, num_layers=1, memory_slots=2, norm=norm)
    B = 4
    state = model.initial_state(B)
    bound = model.memory_norm_bound()
    valid = torch.ones(B, K, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for seg in range(segments):
            steps = (torch.arange(K) + seg * K).expand(B, K)
            x = torch.randn(B, K, D, generator=gen) * 3
            out, state, _ = model._segment(x, valid, steps, state)
            if seg % 10_000 == 0:
                assert torch.isfinite(out).all()
    assert torch.isfinite(state["memory"]).all()
    assert bound < float("inf")
    assert state["memory"].norm(dim=-1).max() <= bound + 1e-4
    assert int(state["anchors"].max()) == segments * K - 1


def test_memory_noise_acts_in_training_only() -> None:
    model = make(attention_window=2, memory_noise=0.5)
    tokens, valid, steps = inputs(2, 3 * K)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return model(tokens, valid, steps, model.initial_state(2)).outputs

    assert torch.equal(run(0), run(1))  # eval: no noise
    model.train()
    assert torch.equal(run(0), run(0))  # seeded
    assert (run(0) - run(1)).abs().max() > 1e-2  # two draws of the noise


def test_memory_rewrites_repeat_each_rows_write_zero_to_n_times_in_training() -> None:
    """In training a row's segment write is applied 1 + r times, r uniform in 0..n, on the
    token outputs of the segment's one pass (which read the memory before it), where a later
    segment of the call reads it; the call's last write and every eval write happen once."""
    n, B = 3, 32
    model = make(memory_slots=2, memory_rewrites=n)
    tokens, valid, steps = inputs(B, 2 * K)
    first, second = slice(0, K), slice(K, 2 * K)
    state = model.initial_state(B)
    with torch.no_grad():
        read_bias, _ = model.time_biases(steps[:, first], state["anchors"])
        h, outputs = tokens[:, first], []
        for i, layer in enumerate(model.elmur_layers()):
            h, _ = layer(h, state["memory"][:, i], read_bias[i], valid=valid[:, first])
            outputs.append(h)
        memory, anchors = state["memory"], state["anchors"]
        every_row = torch.ones(B, dtype=torch.bool)
        writes = []
        for _ in range(n + 1):  # each write's biases come from the anchors the last one left
            bias = model.time_biases(steps[:, first], anchors)[1]
            memory, anchors = model.write_memory(
                memory, anchors, outputs, steps[:, K - 1], bias, every_row
            )
            writes.append(memory)
        evaluated = model(tokens, valid, steps, model.initial_state(B), keep_states=True)
        model.train()
        torch.manual_seed(0)
        trained = model(tokens, valid, steps, model.initial_state(B), keep_states=True)
        model.eval()
        once = model(tokens[:, second], valid[:, second], steps[:, second], trained.kept_states[0])
    assert (writes[1] - writes[0]).abs().max() > 1e-2  # the counts are told apart
    assert torch.allclose(evaluated.kept_states[0]["memory"], writes[0], atol=1e-5)
    memory = trained.kept_states[0]["memory"]
    gaps = torch.stack([(memory - w).abs().flatten(1).amax(1) for w in writes])  # [n+1, B]
    assert (gaps.min(0).values <= 1e-5).all()  # every row is some count of writes
    assert len(gaps.argmin(0).unique()) >= 3  # drawn per row
    assert torch.allclose(trained.state["memory"], once.state["memory"], atol=1e-5)


def test_memory_drift_moves_each_rows_memory_by_more_writes_without_changing_its_gradient() -> None:
    """In training the memory a later segment reads is that of 1 + r writes, r uniform in
    0..n per row, while its gradient is that of the one write (straight through)."""
    n, B = 3, 32
    model = make(memory_slots=2, memory_drift=n)
    tokens, valid, steps = inputs(B, 2 * K)
    tokens.requires_grad_(True)
    first = slice(0, K)
    state = model.initial_state(B)
    with torch.no_grad():
        read_bias, _ = model.time_biases(steps[:, first], state["anchors"])
        h, outputs = tokens[:, first], []
        for i, layer in enumerate(model.elmur_layers()):
            h, _ = layer(h, state["memory"][:, i], read_bias[i], valid=valid[:, first])
            outputs.append(h)
        memory, anchors = state["memory"], state["anchors"]
        writes = []
        for _ in range(n + 1):
            bias = model.time_biases(steps[:, first], anchors)[1]
            memory, anchors = model.write_memory(
                memory, anchors, outputs, steps[:, K - 1], bias, torch.ones(B, dtype=torch.bool)
            )
            writes.append(memory)
    weights = torch.randn_like(writes[0])

    def memory_and_gradient(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.train(train)
        torch.manual_seed(0)
        kept = model(tokens, valid, steps, model.initial_state(B), keep_states=True)
        memory = kept.kept_states[0]["memory"]
        (grad,) = torch.autograd.grad((memory * weights).sum(), tokens)
        return memory.detach(), grad

    evaluated, eval_grad = memory_and_gradient(False)
    trained, train_grad = memory_and_gradient(True)
    assert (writes[1] - writes[0]).abs().max() > 1e-2  # the counts are told apart
    assert torch.allclose(evaluated, writes[0], atol=1e-5)
    gaps = torch.stack([(trained - w).abs().flatten(1).amax(1) for w in writes])  # [n+1, B]
    assert (gaps.min(0).values <= 1e-5).all()  # every row is some count of writes
    assert len(gaps.argmin(0).unique()) >= 3  # drawn per row
    assert eval_grad.abs().max() > 1e-3
    assert torch.allclose(train_grad, eval_grad, atol=1e-5)


def test_write_gate_closed_keeps_written_slots_and_open_is_the_plain_blend() -> None:
    """M = 1: the first segment replaces the empty slot (not gated), later ones blend. A shut
    gate leaves the slot as the first write left it, a wide-open one is the ungated model,
    and the gate's weights receive gradient from what a later segment reads."""
    B, T = 3, 4 * K
    tokens, valid, steps = inputs(B, T)

    def segment_memories(model: ELMUR) -> list[torch.Tensor]:
        out = model(tokens, valid, steps, model.initial_state(B), keep_states=True)
        return [kept["memory"] for kept in out.kept_states]

    plain = make(memory_slots=1)
    gated = make(memory_slots=1, write_gate=0.5)
    loaded = gated.load_state_dict(plain.state_dict(), strict=False)
    # the same weights; only the gates are the gated model's own
    assert not loaded.unexpected_keys
    assert loaded.missing_keys and all(".gate." in key for key in loaded.missing_keys)
    gates = [layer.gate for layer in gated.elmur_layers()]
    with torch.no_grad():
        for gate in gates:
            gate.bias.fill_(-40.0)  # shut
        shut = segment_memories(gated)
        for gate in gates:
            gate.bias.fill_(40.0)  # wide open
        wide = segment_memories(gated)
        ungated = segment_memories(plain)
    assert (ungated[1] - ungated[0]).abs().max() > 1e-2  # a blend moves the slot ...
    for later in shut[1:]:
        assert torch.allclose(later, shut[0], atol=1e-6)  # ... a shut gate does not
    for a, b in zip(wide, ungated, strict=True):
        assert torch.allclose(a, b, atol=1e-5)

    with torch.no_grad():
        for gate in gates:
            gate.bias.fill_(0.0)
    memory = segment_memories(gated)[-1]
    memory.square().sum().backward()
    for gate in gates:
        assert gate.weight.grad is not None and gate.weight.grad.abs().max() > 1e-4


def test_write_gate_empty_gates_the_first_write_and_trains_the_gate_from_it() -> None:
    """With ``write_gate_empty`` a shut gate leaves even the empty slot at its learned
    initial value, a wide-open one is the replacing model, and a read of the first write
    alone (one segment, then the memory) gives the gate gradient; without it, that first
    write does not depend on the gate at all."""
    B = 3
    tokens, valid, steps = inputs(B, K)

    def first_write(model: ELMUR) -> torch.Tensor:
        return model(tokens, valid, steps, model.initial_state(B)).state["memory"]

    plain = make(memory_slots=1, write_gate=0.5)
    empty = make(memory_slots=1, write_gate=0.5, write_gate_empty=True)
    empty.load_state_dict(plain.state_dict())  # the same weights, gates included
    gates = [layer.gate for layer in empty.elmur_layers()]
    with torch.no_grad():
        for gate in gates:
            gate.bias.fill_(-40.0)
        shut = first_write(empty)
        for gate in gates:
            gate.bias.fill_(40.0)
        wide = first_write(empty)
        replaced = first_write(plain)
    initial = empty.memory_init.expand_as(shut)
    assert (replaced - initial).abs().max() > 1e-2  # the first write moves the slot ...
    assert torch.allclose(shut, initial, atol=1e-6)  # ... unless the shut gate holds it
    assert torch.allclose(wide, replaced, atol=1e-5)

    with torch.no_grad():
        for gate in gates:
            gate.bias.fill_(0.0)
    for model in (plain, empty):
        first_write(model).square().sum().backward()
    for gate in plain.elmur_layers():
        assert gate.gate.weight.grad is None or gate.gate.weight.grad.abs().max() == 0
    for gate in gates:
        assert gate.weight.grad is not None and gate.weight.grad.abs().max() > 1e-4
    # without the gate the option has nothing to weigh: the plain replacing write
    ungated = make(memory_slots=1, write_gate_empty=True)
    ungated.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.allclose(first_write(ungated), replaced, atol=1e-6)


def test_write_gate_cost_adds_the_mean_log_opening_in_training_and_pushes_the_gates_shut() -> None:
    """The gates open 0.5 for every input at first, so the cost is log(0.5) times its weight;
    its gradient lowers every layer's gate, and still does for a gate nearly shut (where a
    cost on the opening itself would have faded); a gate shut past the log floor is not
    pushed; nothing is paid in eval mode or without gradient."""
    B = 3
    tokens, valid, steps = inputs(B, 3 * K)
    model = make(memory_slots=1, write_gate=0.5, write_gate_empty=True, write_gate_cost=0.1)
    model.train()
    out = model(tokens, valid, steps, model.initial_state(B))
    assert out.aux_loss is not None
    assert abs(out.aux_loss.item() - 0.1 * math.log(0.5)) < 1e-6
    out.aux_loss.backward()
    for layer in model.elmur_layers():
        assert float(layer.gate.bias.grad) > 1e-3  # descent lowers the bias: shuts
    push = {}
    for bias in (-8.0, -30.0):  # nearly shut (3e-4), and past the floor of the log
        model.zero_grad()
        with torch.no_grad():
            for layer in model.elmur_layers():
                layer.gate.bias.fill_(bias)
        cost = model(tokens, valid, steps, model.initial_state(B)).aux_loss
        assert cost is not None
        cost.backward()
        push[bias] = [float(layer.gate.bias.grad) for layer in model.elmur_layers()]
    assert min(push[-8.0]) > 1e-2  # 0.1 * (1 - 3e-4) / 2 layers: not faded
    assert max(abs(g) for g in push[-30.0]) == 0.0
    # without write_gate_empty the first write replaces the empty slot, ungated: not paid
    replacing = make(memory_slots=1, write_gate=0.5, write_gate_cost=0.1).train()
    for segments, expected in ((1, 0.0), (3, 0.1 * math.log(0.5))):
        tokens, valid, steps = inputs(B, segments * K)
        cost = replacing(tokens, valid, steps, replacing.initial_state(B)).aux_loss
        assert cost is not None and abs(cost.item() - expected) < 1e-6
    with torch.no_grad():
        assert model(tokens, valid, steps, model.initial_state(B)).aux_loss is None
    model.eval()
    assert model(tokens, valid, steps, model.initial_state(B)).aux_loss is None
    # without the gate there is nothing to pay for
    ungated = make(memory_slots=1, write_gate_cost=0.1).train()
    assert ungated(tokens, valid, steps, ungated.initial_state(B)).aux_loss is None


def test_context_dropout_of_one_hides_the_previous_segment_in_training() -> None:
    model = make(attention_window=2, context_dropout=1.0)
    tokens, valid, steps = inputs(2, 2 * K)
    second = slice(K, 2 * K)
    with torch.no_grad():
        full = model(tokens, valid, steps, model.initial_state(2)).outputs
        after_first = model(tokens[:, :K], valid[:, :K], steps[:, :K], model.initial_state(2))
        state = dict(after_first.state, context_valid=torch.zeros(2, dtype=torch.bool))
        hidden = model(tokens[:, second], valid[:, second], steps[:, second], state).outputs
        model.train()
        dropped = model(tokens, valid, steps, model.initial_state(2)).outputs
    assert (full[:, second] - hidden).abs().max() > 1e-3  # eval sees the context
    assert (dropped[:, second] - hidden).abs().max() <= 1e-5
    assert (dropped[:, :K] - full[:, :K]).abs().max() <= 1e-5  # no previous segment there


@pytest.mark.parametrize("ffn", ["mlp", "moe"])
def test_dropout_acts_at_every_site_in_training_and_nowhere_in_eval(
    ffn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every dropout call and every attention's dropout_p sees the configured rate in
    training; in eval each is a no-op."""
    F = torch.nn.functional
    calls: list[tuple[str, float, bool]] = []
    real_dropout, real_attention = F.dropout, F.scaled_dot_product_attention

    def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True) -> torch.Tensor:
        calls.append(("dropout", p, training))
        return real_dropout(x, p, training)

    def attention(*args: Any, dropout_p: float = 0.0, **kwargs: Any) -> torch.Tensor:
        calls.append(("attention", dropout_p, dropout_p > 0))
        return real_attention(*args, dropout_p=dropout_p, **kwargs)

    monkeypatch.setattr(F, "dropout", dropout)
    monkeypatch.setattr(F, "scaled_dot_product_attention", attention)
    model = make(dropout=0.25, ffn=ffn, attention_window=2)
    tokens, valid, steps = inputs(2, 2 * K)
    model.train()
    model(tokens, valid, steps, model.initial_state(2))
    assert {kind for kind, _, _ in calls} == {"dropout", "attention"}
    assert all(p == 0.25 and active for _, p, active in calls)
    calls.clear()
    model.eval()
    model(tokens, valid, steps, model.initial_state(2))
    assert calls and not any(active for _, _, active in calls)


def test_a_partial_segment_neither_writes_nor_becomes_the_context() -> None:
    model = make(attention_window=2)
    tokens, valid, steps = inputs(2, K + 2)
    full = model(tokens[:, :K], valid[:, :K], steps[:, :K], model.initial_state(2)).state
    partial = model(tokens, valid, steps, model.initial_state(2)).state
    assert set(full) == set(partial)
    for key in full:
        assert torch.equal(full[key], partial[key]), key


def test_writing_rows_hide_their_padding_from_the_write(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make(num_heads=4)
    seen: list[tuple[list[torch.Tensor | None], torch.Tensor]] = []
    write = model.write_memory

    def spy(memory, anchors, outputs, last, biases, done, openings=None):  # type: ignore[no-untyped-def]
        seen.append((biases, done))
        return write(memory, anchors, outputs, last, biases, done, openings)

    monkeypatch.setattr(model, "write_memory", spy)
    tokens, valid, steps = inputs(3, K)
    valid = valid.clone()
    valid[0, :2] = False  # left padding (d3rlpy's slicer pads so): complete, it writes
    valid[1, -1] = False  # incomplete: it does not write and nothing is hidden
    model(tokens, valid, steps, model.initial_state(3))
    ((biases, done),) = seen
    assert done.tolist() == [True, False, True]
    for bias in biases:
        assert bias is not None
        hidden = bias == float("-inf")  # [B, H, M, T]
        assert hidden[0, ..., :2].all() and not hidden[0, ..., 2:].any()
        assert not hidden[1:].any()


@pytest.mark.parametrize("window", [0, 2])
def test_padding_does_not_pull_the_moe_router(window: int) -> None:
    model = make(ffn="moe", attention_window=window)
    tokens, valid, steps = inputs(2, 2 * K)
    valid = valid.clone()
    valid[1, K + 1 :] = False  # row 1's last segment is partial: its padding is never read
    other = tokens.clone()
    other[1, K + 1 :] = torch.randn(K - 1, D) * 5
    with torch.no_grad():
        aux = model(tokens, valid, steps, model.initial_state(2)).aux_loss
        moved = model(other, valid, steps, model.initial_state(2)).aux_loss
    assert aux is not None and moved is not None and torch.allclose(aux, moved)


@pytest.mark.parametrize("context_gradient", [True, False])
def test_context_gradient_reaches_the_previous_segment_only_when_asked(
    context_gradient: bool,
) -> None:
    # no memory write: the previous segment reaches this one through its context alone
    model = make(attention_window=2, write=False, context_gradient=context_gradient)
    tokens, valid, steps = inputs(1, 2 * K)
    tokens.requires_grad_(True)
    out = model(tokens, valid, steps, model.initial_state(1)).outputs
    last_segment_loss(out).backward()
    assert tokens.grad is not None
    # measured ~3.8 when it flows; exactly 0 when detached
    reached = tokens.grad[:, :K].abs().sum()
    assert bool(reached > 1e-2) if context_gradient else reached == 0


def test_self_attention_with_a_window_needs_the_context() -> None:
    attention = SelfAttention(D, 2, K, 2, 0.0)
    x = torch.randn(1, K, D)
    message = r"^attention_window=2 needs the previous segment's context$"
    with pytest.raises(ValueError, match=message):
        attention(x, None, torch.ones(1, dtype=torch.bool))
    with pytest.raises(ValueError, match=message):
        attention(x, torch.zeros(1, 2, D), None)


def test_step_needs_the_step_state_and_keeps_no_segment_inputs() -> None:
    model = make(attention_window=2)
    with pytest.raises(
        RuntimeError, match=r"^ELMUR.step needs a state from initial_step_state\(\)$"
    ):
        model.step(torch.zeros(1, D), torch.zeros(1, dtype=torch.long), model.initial_state(1))
    state = model.initial_step_state(1)
    assert "context" not in state and "context_valid" not in state  # it keeps keys and values


def test_pre_norm_normalises_before_each_block_and_at_the_output() -> None:
    x = torch.randn(2, K, D)

    def block(h: torch.Tensor) -> torch.Tensor:
        return 2 * h + 1

    pre, post = make(norm="pre"), make(norm="post")
    for model, is_pre in ((pre, True), (post, False)):
        layer = model.elmur_layers()[0]
        ln = layer.ln_ffn
        want = x + block(ln(x)) if is_pre else ln(x + block(x))
        assert torch.allclose(layer._residual(x, block, ln), want)
        # pre-norm also normalises the memory it reads, the tokens it writes and the output
        extra = (model.ln_out, layer.ln_read_mem, layer.ln_write_tok)
        kind = torch.nn.LayerNorm if is_pre else torch.nn.Identity
        assert all(type(module) is kind for module in extra)


def test_shared_memory_is_one_memory_written_by_the_last_layer() -> None:
    shared, own = make(num_layers=3, shared_memory=True), make(num_layers=3)
    assert shared.memory_layers == 1 and shared.initial_state(1)["memory"].shape[1] == 1
    assert [layer.writes for layer in shared.elmur_layers()] == [False, False, True]
    assert [shared.memory_index(i) for i in range(3)] == [0, 0, 0]
    assert own.memory_layers == 3 and all(layer.writes for layer in own.elmur_layers())


@pytest.mark.parametrize("use_lru", [True, False])
def test_writes_into_written_slots_read_their_time_bias(use_lru: bool) -> None:
    # One slot: the first segment writes it empty (every token in the empty slots' one
    # bucket, a constant the write's softmax ignores), the next two write it filled, where each
    # token's offset to the anchor picks its own bucket: a perturbed table must move memory
    # by far more than float noise (measured ~0.3; noise ~1e-6).
    model = make(use_lru=use_lru, num_layers=1, memory_slots=1)
    tokens, valid, steps = inputs(1, 3 * K)
    with torch.no_grad():
        before = model(tokens, valid, steps, model.initial_state(1)).state
        first_before = model(
            tokens[:, :K], valid[:, :K], steps[:, :K], model.initial_state(1)
        ).state
        model.write_time_bias.weight.add_(torch.randn_like(model.write_time_bias.weight))
        after = model(tokens, valid, steps, model.initial_state(1)).state
        first_after = model(tokens[:, :K], valid[:, :K], steps[:, :K], model.initial_state(1)).state
    assert (before["memory"] - after["memory"]).abs().max() > 1e-2
    # the first write, into the empty slot, sees one bias for all tokens: unchanged
    assert torch.allclose(first_before["memory"], first_after["memory"], atol=1e-5)


CONFIG_ERROR_TAIL = (
    " (num_heads must divide embed_dim, lru_blend lies in [0, 1], memory_slots >= 1, "
    "attention_window >= 0 or None, norm is pre|post, ffn is mlp|moe, ffn_multiplier >= 1, "
    "write_gate in [0, 1), write_gate_cost >= 0)"
)


@pytest.mark.parametrize(
    ("field", "edge", "bad"),
    [  # the last value accepted and the first refused, on each side that has a limit
        ("embed_dim", 1, 0),
        ("num_layers", 1, 0),
        ("num_heads", 1, 0),
        ("num_heads", 1, 3),  # does not divide the width
        ("context_size", 1, 0),
        ("attention_window", 0, -1),
        ("memory_slots", 1, 0),
        ("lru_blend", 0.0, -0.5),
        ("lru_blend", 1.0, 1.5),
        ("memory_init_std", 0.0, -0.1),
        ("dropout", 0.0, -0.1),
        ("dropout", 0.9, 1.0),
        ("norm", "pre", "mid"),
        ("ffn", "moe", "dense"),
        ("num_experts", 1, 0),
        ("ffn_multiplier", 1, 0),
        ("bptt_segments", 0, -1),
        ("time_buckets", 17, 16),
        ("memory_noise", 0.0, -0.1),
        ("context_dropout", 1.0, 1.5),
        ("memory_rewrites", 0, -1),
        ("memory_drift", 0, -1),
        ("write_gate", 0.0, -0.1),
        ("write_gate", 0.999, 1.0),
        ("write_gate_cost", 0.0, -0.1),
    ],
)
def test_config_accepts_each_limit_and_names_the_first_value_past_it(
    field: str, edge: object, bad: object
) -> None:
    base = dict(embed_dim=D, num_heads=2, context_size=K)
    if field == "embed_dim":
        base["num_heads"] = 1
    assert getattr(ELMURConfig(**{**base, field: edge}), field) == edge  # type: ignore[arg-type]
    message = re.escape(f"invalid ELMUR config: {field}={bad!r}{CONFIG_ERROR_TAIL}")
    with pytest.raises(ValueError, match=f"^{message}$"):
        ELMURConfig(**{**base, field: bad})  # type: ignore[arg-type]


def test_ffn_multiplier_sets_the_hidden_width_of_both_ffns_from_the_algorithm_config() -> None:
    from d3rlpy_elmur import DiscreteELMURDTConfig
    from d3rlpy_elmur.models import ELMURFactory

    config = DiscreteELMURDTConfig(
        context_size=K, embed_dim=D, sequence_encoder=ELMURFactory(ffn_multiplier=2)
    )
    layer = config.sequence_encoder.create(config.encoder_args()).elmur_layers()[0]
    assert layer.ffn.fc.out_features == layer.mem_ffn.fc.out_features == 2 * D


def test_write_gate_is_off_without_the_lru_rule_and_opens_as_set() -> None:
    """The default gate (0.5) needs a blend to gate: without LRU (every slot overwritten)
    the model has no gate, so the ablation runs with the defaults as they are."""
    no_lru = ELMUR(ELMURConfig(embed_dim=D, context_size=K, use_lru=False))
    assert not any(".gate." in name for name, _ in no_lru.named_parameters())
    assert ELMURConfig(use_lru=False).write_gate == 0.5 and not ELMURConfig(use_lru=False).gated
    model = ELMUR(ELMURConfig(embed_dim=D, context_size=K, write_gate=0.2))
    gate = model.elmur_layers()[0].gate
    opening = torch.sigmoid(gate(torch.randn(5, 2 * D)))
    assert torch.allclose(opening, torch.full_like(opening, 0.2), atol=1e-6)


def test_config_names_every_bad_field() -> None:
    message = re.escape(f"invalid ELMUR config: embed_dim=0, memory_slots=0{CONFIG_ERROR_TAIL}")
    with pytest.raises(ValueError, match=f"^{message}$"):
        ELMURConfig(embed_dim=0, num_heads=1, memory_slots=0)


def test_model_and_algorithm_configs_share_their_defaults() -> None:
    """One default per concept: the model's own config defaults to what the algorithm
    configs build it with (the attention window 2, one memory slot, the write gate with its
    cost)."""
    from d3rlpy_elmur import DiscreteELMURDTConfig
    from d3rlpy_elmur.models import ELMURFactory

    algo = DiscreteELMURDTConfig(context_size=7)
    model = ELMURConfig(context_size=7)
    assert isinstance(algo.sequence_encoder, ELMURFactory)
    assert algo.sequence_encoder.model_config(algo.encoder_args()) == model
    assert model.window == 2 and model.memory_slots == 1 and model.gated
    assert (model.write_gate, model.write_gate_empty, model.write_gate_cost) == (0.5, True, 0.002)
    assert ELMURConfig(context_size=7, attention_window=0).window == 0
    assert ELMURConfig(context_size=7, attention_window=None).window == 7
    # a window past the segment is the segment: K = 1 works with the default W = 2
    assert ELMURConfig(context_size=7, attention_window=8).window == 7
    assert ELMURConfig(context_size=1).window == 1

"""The feed-forward blocks against a per-token reference: routing, gate, balance loss, init."""

from __future__ import annotations

import math

import pytest
import torch

from d3rlpy_elmur.models.ffn import MoE

D, E = 8, 4


def reference(moe: MoE, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token by token: shared(x) + p_top * expert_top(x); Switch loss E * sum_e f_e P_e over
    the valid tokens (f_e: fraction routed to e, P_e: mean router probability of e)."""
    flat, keep = x.reshape(-1, D), valid.reshape(-1)
    outs, fraction, prob = [], torch.zeros(E), torch.zeros(E)
    for token, real in zip(flat, keep, strict=True):
        p = moe.router(token).softmax(-1)
        e = int(p.argmax())
        expert = torch.nn.functional.gelu(token @ moe.w_in[e]) @ moe.w_out[e]
        outs.append(moe.shared(token) + p[e] * expert)
        if real:
            fraction[e] += 1
            prob += p
    n = max(int(keep.sum()), 1)
    return torch.stack(outs).view_as(x), E * ((fraction / n) * (prob / n)).sum()


@pytest.mark.parametrize(
    "real", [[[True, True, False], [True, False, False]], [[True, False, False], [False] * 3]]
)
def test_moe_equals_the_per_token_reference(real: list[list[bool]]) -> None:
    torch.manual_seed(0)
    moe = MoE(D, 2, E, dropout=0.0)
    x, valid = torch.randn(2, 3, D), torch.tensor(real)
    with torch.no_grad():
        want, want_aux = reference(moe, x, valid)
        got, aux = moe(x, valid)
        assert (got - want).abs().max() <= 1e-5
        assert torch.allclose(aux, want_aux, atol=1e-6)
        moe.train()  # no dropout configured: training mode computes the same
        assert (moe(x, valid)[0] - want).abs().max() <= 1e-5


def test_moe_experts_start_with_unit_fan_in_variance() -> None:
    torch.manual_seed(0)
    moe = MoE(64, 4, 8, dropout=0.0)
    assert moe.w_in.std().item() == pytest.approx(1 / math.sqrt(64), rel=0.05)
    assert moe.w_out.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.05)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_moe_drops_out_only_in_training(dropout: float) -> None:
    torch.manual_seed(0)
    moe = MoE(D, 2, E, dropout=dropout).eval()
    x = torch.randn(2, 3, D)
    with torch.no_grad():
        want, _ = reference(moe, x, torch.ones(2, 3, dtype=torch.bool))
        assert (moe(x)[0] - want).abs().max() <= 1e-5
        moe.train()
        assert ((moe(x)[0] - want).abs().max() > 1e-3) == (dropout > 0)

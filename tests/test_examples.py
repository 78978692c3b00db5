"""The example scripts whose numbers the README quotes still measure what it says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repeat_previous_counts_beat_chance_without_recall() -> None:
    pytest.importorskip("popgym")
    example = load_example("repeat_previous_counting")
    env_id = "popgym-RepeatPreviousMedium-v0"

    def score(policy: object) -> float:
        mean, sem = example.mean_return(env_id, policy, episodes=100, seed=0)
        assert 0.0 < sem < 0.02
        return mean

    chance = score(example.uniform)
    window = score(example.make_window(30))
    totals = score(example.totals)
    both = score(example.make_totals_minus_window(30))
    # one suit in four: 1/4 right, 3/4 wrong
    assert -0.55 < chance < -0.45
    # counts help, more counts more (window < totals < totals - window), and none comes near
    # what recalling the card 32 back scores (1.0): the README's reading of BC-GRU on Medium
    assert chance + 0.03 < window < totals - 0.01
    assert totals + 0.05 < both < -0.25

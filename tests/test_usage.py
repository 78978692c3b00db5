"""The README's Usage snippet, run as written except for its size: it runs, and ``fit(seed=...)``
makes it repeatable (same seed: the same loss at every update; another seed: other losses)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase
from d3rlpy_elmur.datasets import make_tmaze_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
DATASET = "d3rlpy_elmur/tmaze-c28-v0"


def usage_snippet(n_steps: int, seed: int) -> str:
    """The Usage section's code, made small: ``n_steps`` updates in epochs of 5, fit's ``seed``,
    two evaluation episodes in a short corridor."""
    usage = README.read_text().split("\n## Usage\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", usage, re.S)
    assert block is not None, "README's Usage section has no python block"
    code = block.group(1)
    edits = {  # call: its arguments to change (each must be there once)
        r"algo\.fit\(": {
            r"n_steps=\d+": f"n_steps={n_steps}",
            r"n_steps_per_epoch=\d+": "n_steps_per_epoch=5",
            r"seed=\d+": f"seed={seed}",
        },
        r"evaluate\(": {
            r"corridor_length=\d+": "corridor_length=20",
            r"n_episodes=\d+": "n_episodes=2",
        },
    }
    for call, arguments in edits.items():
        lines = re.findall(rf"^.*{call}.*$", code, re.M)
        assert len(lines) == 1, f"the snippet calls {call} {len(lines)} times: update this test"
        line = lines[0]
        for pattern, value in arguments.items():
            line, count = re.subn(pattern, value, line)
            assert count == 1, f"the snippet's {call} line has no {pattern}: update this test"
        code = code.replace(lines[0], line)
    return code


def run(folder: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> tuple[list[float], str]:
    """Per-update losses and d3rlpy's loss.csv of one run of the snippet in ``folder``."""
    losses: list[float] = []
    update = ELMURDTBase.update

    def recorded(self: ELMURDTBase, batch: Any) -> dict[str, float]:
        metrics = update(self, batch)
        losses.append(metrics["loss"])
        return metrics

    folder.mkdir()
    monkeypatch.chdir(folder)
    with monkeypatch.context() as patch:
        patch.setattr(ELMURDTBase, "update", recorded)
        exec(compile(usage_snippet(10, seed), str(README), "exec"), {"__name__": "__usage__"})
    (log,) = folder.glob("d3rlpy_logs/*/loss.csv")
    return losses, log.read_text()


def test_the_usage_snippet_run_twice_with_one_seed_gives_the_same_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    # the snippet's dataset, small (it builds it only when there is none)
    make_tmaze_dataset(DATASET, n_episodes=10, max_corridor_length=28, seed=0)
    first, second, other = (
        run(tmp_path / name, monkeypatch, seed)
        for name, seed in (("first", 0), ("second", 0), ("other", 1))
    )
    assert len(first[0]) == 10 and len(first[1].splitlines()) == 2
    assert first == second
    assert all(a != b for a, b in zip(first[0], other[0], strict=True))

"""results.md is generated from results.json, never typed: regenerate it from fixtures."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from d3rlpy_elmur_cli import main
from d3rlpy_elmur_cli.bench.report import CAP_CELL, aggregate, render_markdown, write_report

FIXTURES = Path(__file__).parent / "fixtures"


def _load(kind: str) -> dict:
    return json.loads((FIXTURES / f"results_{kind}.json").read_text())


@pytest.mark.parametrize("kind", ["tmaze", "popgym"])
def test_markdown_is_regenerated_exactly_from_the_json(kind: str) -> None:
    expected = (FIXTURES / f"results_{kind}.md").read_text()
    assert render_markdown(_load(kind)) == expected


def test_tmaze_cells_are_mean_and_std_over_seeds() -> None:
    results = _load("tmaze")
    elmur, _dt = results["algorithms"]
    cells = aggregate(elmur, "success_rate")
    assert cells[10_000]["values"] == [0.9, 0.7]
    assert cells[10_000]["mean"] == pytest.approx(0.8)
    assert cells[10_000]["std"] == pytest.approx(0.1)  # population std over the seeds
    text = render_markdown(results)
    assert "| ELMURDT | 1.00 ± 0.00 | 0.80 ± 0.10 | 0.70 ± 0.10 |" in text
    # a capped length is never given a number
    assert f"| DT (K=10) | 1.00 ± 0.00 (n=1) | 0.50 ± 0.00 (n=1) | {CAP_CELL} |" in text
    assert "T > 10^4" in text
    # provenance: command, commit, hardware
    assert "elmur bench tmaze --seeds 2" in text and "0123456789abcdef" in text
    assert "2 CPUs, torch threads 1" in text
    # cost however the suite was invoked: 300+400+200 s training, 2200.7 s evaluation
    assert "(2 runs reused from earlier invocations)" in text
    assert "training and evaluation time summed over runs 1.00 h" in text


def test_popgym_sum_only_when_every_task_has_a_number() -> None:
    text = render_markdown(_load("popgym"))
    assert "| ELMURDT | **0.400 ± 0.100** | **-0.100 ± 0.100** | 0.300 |" in text
    assert "not evaluated (continuous actions) | — |" in text


@pytest.mark.parametrize(
    "kind, plot", [("tmaze", "tmaze_success.png"), ("popgym", "popgym_returns.png")]
)
def test_write_report_and_the_report_command(tmp_path: Path, kind: str, plot: str, capsys) -> None:
    paths = write_report(_load(kind), tmp_path)
    assert [p.name for p in paths] == ["results.json", "results.md", plot]
    assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "results.json").read_text()) == _load(kind)

    # `elmur report DIR` rewrites results.md from results.json alone
    (tmp_path / "results.md").write_text("stale")
    shutil.copy(FIXTURES / f"results_{kind}.json", tmp_path / "results.json")
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "results.md").read_text() == (FIXTURES / f"results_{kind}.md").read_text()
    assert "results.md" in capsys.readouterr().out


def test_popgym_bolds_the_best_mean_per_task_and_counts_ties() -> None:
    results = _load("popgym")
    # a third algorithm that ties ELMURDT on RepeatPrevious (to 3 decimals) and is best alone
    # on Pendulum; CQL has no Pendulum number and cannot win it
    third = copy.deepcopy(results["algorithms"][0])
    third["label"] = "GRU"
    for run in third["runs"]:
        for row in run["results"]:
            row["return_mean"] += 0.0004 if "RepeatPrevious" in row["task"] else 0.5
    results["algorithms"].append(third)
    text = render_markdown(results)
    assert "| ELMURDT | **0.400 ± 0.100** | -0.100 ± 0.100 | 0.300 |" in text
    assert "| GRU | **0.400 ± 0.100** | **0.400 ± 0.100** | 0.800 |" in text
    assert "| CQL | -0.250 ± 0.000 (n=1) | not evaluated" in text
    assert (
        "Best or tied best per algorithm: ELMURDT 1 of 2 (RepeatPreviousEasy); CQL 0 of 2; "
        "GRU 2 of 2 (RepeatPreviousEasy, PositionOnlyPendulumEasy)." in text
    )

"""`--backend ray`: the bench and the sweep on a Ray cluster started on this machine give the
local backend's results, and a run whose worker is killed is retried from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from d3rlpy_elmur_cli import main

from ..toy_roots import make_toy_roots

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # each test starts a Ray cluster (~10 s)


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_toy_roots(tmp_path, monkeypatch)


def _cells(results_path: Path) -> list[tuple]:
    results = json.loads(results_path.read_text())
    return [
        (algo["label"], run["seed"], row["length"], row.get("success_rate"))
        for algo in results["algorithms"]
        for run in algo["runs"]
        for row in run["results"]
    ]


def test_bench_on_ray_gives_the_local_backends_results(roots: Path) -> None:
    quick = ["bench", "bench_toy", "--quick", "--quiet"]
    assert main([*quick, "--out", str(roots / "local"), "--jobs", "2"]) == 0
    assert main([*quick, "--out", str(roots / "ray"), "--backend", "ray"]) == 0
    local, ray = _cells(roots / "local" / "results.json"), _cells(roots / "ray" / "results.json")
    assert len(local) == 8 and ray == local  # 4 algorithms x 2 lengths, the same numbers
    # run folders where the local backend writes them
    assert (roots / "ray" / "runs" / "toy_elmur" / "seed0" / "model.d3").is_file()


def test_sweep_on_ray_gives_the_local_scores(roots: Path) -> None:
    space = roots / "space.yaml"
    space.write_text("params.learning_rate: [0.0001, 0.003]\n")
    for backend in ("local", "ray"):
        command = ["sweep", "toy_elmur", "--space", str(space), "--trials", "2", "--jobs", "2"]
        command += ["--out", str(roots / backend), "--episodes", "4", "--corridor", "1", "3"]
        assert main([*command, "--backend", backend, "--quiet"]) == 0

    def scores(backend: str) -> dict:
        trials = json.loads((roots / backend / "sweep.json").read_text())["trials"]
        return {t["values"]["params.learning_rate"]: t["score"] for t in trials}

    assert scores("ray") == scores("local") and len(scores("local")) == 2


def test_a_run_whose_ray_worker_is_killed_continues_from_its_checkpoint(roots: Path) -> None:
    (roots / "configs" / "bench_one.yaml").write_text(
        "kind: tmaze\ndataset: tiny\nlengths: [9]\nepisodes: 2\n"
        "algorithms:\n  - {label: ELMURDT, config: toy_elmur.yaml, steps: 200}\n"
    )
    out = roots / "out"
    command = [sys.executable, "-m", "d3rlpy_elmur", "bench", "bench_one", "--seeds", "1"]
    command += ["--out", str(out), "--backend", "ray", "--quiet"]
    bench = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, text=True)
    run_dir = out / "runs" / "toy_elmur" / "seed0"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run_dir / "checkpoint.pt").is_file():
        assert bench.poll() is None, "the bench ended before its worker could be killed"
        time.sleep(0.1)
    worker = int((run_dir / ".lock").read_text())
    assert worker != bench.pid  # the run trains in a Ray worker, not in the bench process
    os.kill(worker, signal.SIGKILL)
    output, _ = bench.communicate(timeout=300)
    assert bench.returncode == 0, output
    record = json.loads((run_dir / "result.json").read_text())
    assert record["train"]["steps"] == 200 and record["train"]["resumed_from"] > 0
    assert record["results"][0]["success_rate"] is not None

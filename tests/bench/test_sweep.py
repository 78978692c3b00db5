"""`elmur sweep`: Optuna searches of a run config on validation episodes, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from d3rlpy_elmur import load_learnable
from d3rlpy_elmur.evaluation import evaluate_model
from d3rlpy_elmur_cli import main
from d3rlpy_elmur_cli.bench.configs import ConfigError, load_run_config
from d3rlpy_elmur_cli.bench.sweep import load_space, run_sweep

from ..toy_roots import make_toy_roots

GRID = "params.learning_rate: [0.0001, 0.003]\nparams.batch_size: [4, 8]\n"
SCORE = {"episodes": 4, "corridors": (1, 3), "eval_seed": 5_000_000}


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_toy_roots(tmp_path, monkeypatch)


def _space(roots: Path, text: str, name: str = "space.yaml") -> Path:
    path = roots / name
    path.write_text(text)
    return path


def _trained_params(run_dir: str) -> dict:
    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["params"]


def test_a_grid_sweep_trains_each_config_once_and_writes_the_best_as_a_config(
    roots: Path,
) -> None:
    out = roots / "sweep"
    summary = run_sweep(
        "toy_bc", _space(roots, GRID), out, 10, **SCORE, show_progress=False, log=lambda _: None
    )
    trials = summary["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 4  # capped at the grid's size
    tried = {
        (t["values"]["params.learning_rate"], t["values"]["params.batch_size"]) for t in trials
    }
    assert tried == {(0.0001, 4), (0.0001, 8), (0.003, 4), (0.003, 8)}
    for t in trials:  # each folder trained its own values and holds the score of its model
        params = _trained_params(t["run_dir"])
        assert params["learning_rate"] == t["values"]["params.learning_rate"]
        assert params["batch_size"] == t["values"]["params.batch_size"]
    first = trials[0]
    rows = evaluate_model(
        load_learnable(Path(first["run_dir"]) / "model.d3"),
        "d3rlpy_elmur/TMaze-v0",
        4,
        5_000_000,
        corridors=[1, 3],
    )
    assert first["score"] == pytest.approx(sum(r["success_rate"] for r in rows) / 2)

    best = max(trials, key=lambda t: (t["score"], -t["number"]))
    assert summary["best"]["number"] == best["number"]
    chosen = load_run_config(out / "best.yaml")  # `elmur train` and the suites read it
    assert chosen.params["learning_rate"] == best["values"]["params.learning_rate"]
    assert chosen.params["batch_size"] == best["values"]["params.batch_size"]
    assert chosen.algo == "discrete_bc" and chosen.dataset == "tiny"
    table = (out / "sweep.md").read_text()
    assert table.count("| complete |") == 4 and f"**{best['score']:.3f}**" in table
    written = json.loads((out / "sweep.json").read_text())
    assert written["best"]["number"] == best["number"]
    assert not Path(written["config_file"]).is_absolute()  # no machine's paths in results

    # run again: nothing is trained, the study is read back
    stamps = {t["run_dir"]: (Path(t["run_dir"]) / "model.d3").stat().st_mtime_ns for t in trials}
    again = run_sweep("toy_bc", out / ".." / "space.yaml", out, 4, **SCORE, show_progress=False)
    assert [t["score"] for t in again["trials"]] == [t["score"] for t in trials]
    for run_dir, stamp in stamps.items():
        assert (Path(run_dir) / "model.d3").stat().st_mtime_ns == stamp


def test_a_trial_cut_by_a_dead_sweep_is_run_again_with_its_values(roots: Path) -> None:
    out = roots / "sweep"
    space = _space(roots, "params.learning_rate: [0.0001, 0.003]\n")
    run_sweep("toy_bc", space, out, 1, **SCORE, show_progress=False)
    # a sweep that died mid-trial leaves the trial RUNNING in the study
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    done = study.trials[0].params["params.learning_rate"]
    other = 0.003 if done == 0.0001 else 0.0001
    study.enqueue_trial({"params.learning_rate": other})
    cut = study.ask()  # taken by the dead sweep, never told
    cut.suggest_categorical("params.learning_rate", [0.0001, 0.003])

    lines: list[str] = []
    summary = run_sweep("toy_bc", space, out, 2, **SCORE, show_progress=False, log=lines.append)
    assert any("was cut; it is run again" in line for line in lines)
    states = [(t["state"], t["values"]["params.learning_rate"]) for t in summary["trials"]]
    assert states == [("complete", done), ("fail", other), ("complete", other)]
    assert summary["best"]["number"] in (0, 2)


def test_a_range_space_is_sampled_by_tpe_within_its_bounds(roots: Path) -> None:
    space = _space(roots, "params.learning_rate: {low: 0.0001, high: 0.01, log: true}\n")
    summary = run_sweep("toy_bc", space, roots / "sweep", 2, **SCORE, show_progress=False)
    values = [t["values"]["params.learning_rate"] for t in summary["trials"]]
    assert len(values) == 2 and all(0.0001 <= v <= 0.01 for v in values)
    assert [_trained_params(t["run_dir"])["learning_rate"] for t in summary["trials"]] == values


def test_worker_processes_give_the_scores_of_the_in_process_sweep(roots: Path) -> None:
    space = _space(roots, "params.learning_rate: [0.0001, 0.003]\n")
    here = run_sweep("toy_elmur", space, roots / "here", 2, **SCORE, show_progress=False)
    pool = run_sweep("toy_elmur", space, roots / "pool", 2, **SCORE, show_progress=False, jobs=2)

    def scores(summary: dict) -> dict:
        return {t["values"]["params.learning_rate"]: t["score"] for t in summary["trials"]}

    assert scores(pool) == scores(here)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate: [0.1]\n", "a field is a dotted path"),
        ("eval.episodes: [3]\n", "only params.* and train.* fields"),
        ("params.learning_rate: []\n", "needs at least one plain value"),
        ("params.learning_rate: [0.1, 0.1]\n", "a value is listed twice"),
        ("params.learning_rate: {low: 0.1, high: 0.01}\n", "low < high"),
        ("params.learning_rate: {low: 0, high: 1, log: true}\n", "log range needs low > 0"),
        ("params.learning_rate: 0.1\n", "expected a list of values or"),
        ("[1, 2]\n", "expected a mapping of fields"),
    ],
)
def test_a_bad_space_is_refused_naming_the_field(roots: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_space(_space(roots, text))


def test_a_folder_holding_another_sweep_is_refused(roots: Path, capsys) -> None:
    out = roots / "sweep"
    first = _space(roots, "params.learning_rate: [0.0001]\n")
    run_sweep("toy_bc", first, out, 1, **SCORE, show_progress=False)
    other = _space(roots, "params.learning_rate: [0.003]\n", "other.yaml")
    command = ["sweep", "toy_bc", "--space", str(other), "--out", str(out), "--trials", "1"]
    assert main([*command, "--episodes", "4", "--corridor", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "holds a sweep with other" in err and "space" in err and "Traceback" not in err
    unknown = _space(roots, "params.learning_rat: [0.1]\n", "typo.yaml")
    bad = ["sweep", "toy_bc", "--space", str(unknown), "--out", str(roots / "b"), "--trials", "1"]
    assert main([*bad, "--quiet"]) == 1
    assert "learning_rat" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_sweep_process_resumes(roots: Path) -> None:
    """SIGKILL while the second trial trains; the same command finishes the sweep without
    training the first trial again."""
    out = roots / "sweep"
    space = _space(roots, "params.learning_rate: [0.0001, 0.003]\n")
    command = [sys.executable, "-m", "d3rlpy_elmur", "sweep", "toy_elmur", "--space", str(space)]
    command += ["--out", str(out), "--trials", "2", "--steps", "400", "--quiet"]
    command += ["--episodes", "4", "--corridor", "1"]
    process = subprocess.Popen(command, env=os.environ.copy())
    deadline = time.monotonic() + 300
    results: list[Path] = []
    while time.monotonic() < deadline and not results:
        time.sleep(0.2)
        results = list(out.glob("trials/*/result.json"))
        assert process.poll() is None, "the sweep ended before it could be killed"
    assert results, "the first trial did not finish in time"
    # the second trial has trained an epoch: its folder has a checkpoint
    while time.monotonic() < deadline and not list(out.glob("trials/*/checkpoint.pt")):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = results[0].parent / "model.d3"
    stamp = first.stat().st_mtime_ns

    finished = subprocess.run(command, env=os.environ.copy(), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "was cut; it is run again" in finished.stdout
    summary = json.loads((out / "sweep.json").read_text())
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    assert sorted(t["values"]["params.learning_rate"] for t in complete) == [0.0001, 0.003]
    assert first.stat().st_mtime_ns == stamp
    # the cut trial went on from its checkpoint
    (second,) = [p for p in out.glob("trials/*/result.json") if p.parent != results[0].parent]
    assert json.loads(second.read_text())["train"]["resumed_from"] > 0

"""`elmur train | eval | bench | demo` end to end on tiny configs and a tiny dataset.

Everything runs in temporary recipe, config and Minari roots; each test checks the files
the command writes and what they hold, not only the exit code.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import d3rlpy
import pytest
import yaml

import d3rlpy_elmur
from d3rlpy_elmur_cli import build_parser, main
from d3rlpy_elmur_cli.bench.configs import load_run_config

from .toy_roots import CONFIGS, RP_RECIPE, make_toy_roots


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_toy_roots(tmp_path, monkeypatch)


def test_train_builds_the_dataset_and_writes_a_loadable_model(roots: Path, capsys) -> None:
    out = roots / "run"
    code = main(["train", "toy_elmur", "--steps", "6", "--seed", "3", "--out", str(out), "--quiet"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("trained toy_elmur (discrete_elmur_dt) on test/tiny-tmaze-v0")
    assert "6 steps, seed 3" in lines[-1] and str(out / "model.d3") in lines[-1]

    summary = json.loads((out / "train.json").read_text())
    assert (summary["steps"], summary["seed"], summary["dataset"]) == (6, 3, "test/tiny-tmaze-v0")
    assert summary["final_loss"] is not None and summary["torch_threads"] == 1
    # d3rlpy's logs: one loss row per epoch (6 steps, 2 per epoch), no gradient files
    loss_rows = (out / "logs" / "loss.csv").read_text().strip().splitlines()
    assert len(loss_rows) == 3 and loss_rows[-1].startswith("3,6,")
    assert (out / "logs" / "params.json").is_file()
    assert not list((out / "logs").glob("*_grad.csv"))

    # the model loads with our safe loader and with d3rlpy's
    ours = d3rlpy_elmur.load_learnable(out / "model.d3")
    theirs = d3rlpy.load_learnable(str(out / "model.d3"))
    assert isinstance(ours, d3rlpy_elmur.DiscreteELMURDT)
    assert ours.config.context_size == theirs.config.context_size == 4

    # the resolved config spells out every field and trains the same model again
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["dataset"] == "test/tiny-tmaze-v0"
    assert resolved["train"]["steps"] == 6 and resolved["train"]["seed"] == 3
    assert resolved["params"]["sequence_encoder"]["type"] == "elmur"
    assert load_run_config(out / "config.yaml").make_config() == ours.config

    # an existing model is not overwritten silently
    assert main(["train", "toy_elmur", "--out", str(out), "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_train_errors_are_one_line(roots: Path, capsys) -> None:
    assert main(["train", "nope", "--out", str(roots / "x")]) == 1
    assert "config 'nope' not found" in capsys.readouterr().err
    bad = roots / "bad.yaml"
    bad.write_text("algo: discrete_bc\nparams: {batch_sise: 3}\n")
    assert main(["train", str(bad), "--out", str(roots / "x")]) == 1
    err = capsys.readouterr().err
    assert "unknown field(s) batch_sise" in err and "Traceback" not in err
    assert main(["train", "toy_bc", "--dataset", "no/such-v0", "--out", str(roots / "x")]) == 1
    assert "'no/such-v0' not found" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["toy_elmur", "toy_dt", "toy_bc"])
def test_eval_one_row_per_corridor_with_json(roots: Path, config: str, capsys) -> None:
    out = roots / config
    assert main(["train", config, "--out", str(out), "--quiet"]) == 0
    report = roots / "eval.json"
    args = ["eval", str(out / "model.d3"), "--env", "d3rlpy_elmur/TMaze-v0"]
    args += ["--corridor", "3", "28", "--episodes", "6", "--seed", "5", "--json", str(report)]
    assert main([*args, "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "CORRIDOR L" in text and f"json: {report}" in text
    data = json.loads(report.read_text())
    assert data["env"] == "d3rlpy_elmur/TMaze-v0" and data["seed"] == 5
    assert [(r["length"], r["corridor_length"]) for r in data["rows"]] == [(5, 3), (30, 28)]
    for row in data["rows"]:
        assert row["episodes"] == 6 and 0.0 <= row["success_rate"] <= 1.0
        assert 0 < row["env_steps"] <= 6 * row["length"]
    assert data["hardware"]["torch_threads"] == 1


def test_bench_quick_writes_results_table_and_plot(roots: Path, capsys) -> None:
    out = roots / "bench"
    code = main(["bench", "bench_toy", "--quick", "--seeds", "2", "--out", str(out), "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"results: {out / 'results.md'}"

    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and results["seeds"] == [0, 1]
    assert results["lengths"] == [9, 90] and results["dataset"] == "test/tiny-tmaze-v0"
    assert results["hardware"]["cpu_count"] and results["command"].startswith("elmur bench")
    assert results["wall_seconds"] > 0
    assert [a["label"] for a in results["algorithms"]] == ["ELMURDT", "BC-GRU", "DT", "BC"]
    for algo in results["algorithms"]:
        assert algo["train_steps"] == 2
        assert [run["seed"] for run in algo["runs"]] == [0, 1]
        for run in algo["runs"]:
            assert run["train"]["steps"] == 2 and run["train"]["seconds"] > 0
            assert Path(run["run_dir"], "model.d3").is_file()
            episodes = [r.get("episodes") for r in run["results"]]
            if algo["label"] == "DT":  # capped at 30 by its config
                assert run["results"][1] == {
                    "length": 90,
                    "corridor_length": 88,
                    "skipped": "cap",
                    "max_length": 30,
                }
                assert episodes[0] == 4
            else:
                assert episodes == [4, 2]  # episodes_at: {90: 2}
    # the same evaluation seeds for every algorithm, apart from the training seeds
    assert {run["eval_seed"] for a in results["algorithms"] for run in a["runs"]} == {
        1_000_000,
        1_001_000,
    }
    text = (out / "results.md").read_text()
    assert "| DT | " in text and "not evaluated (cap)" in text
    assert (out / "tmaze_success.png").read_bytes()[:4] == b"\x89PNG"

    # --resume reuses finished runs: same numbers, no retraining (checkpointing is not part
    # of what a result depends on)
    config = roots / "configs" / "toy_elmur.yaml"
    config.write_text(config.read_text().replace("seed: 0}", "seed: 0, checkpoint_every: 0}"))
    assert (
        main(
            [
                "bench",
                "bench_toy",
                "--quick",
                "--seeds",
                "2",
                "--out",
                str(out),
                "--quiet",
                "--resume",
            ]
        )
        == 0
    )
    again = json.loads((out / "results.json").read_text())
    assert again["algorithms"] == results["algorithms"]
    assert "reused_runs" not in results and again["reused_runs"] == 8
    assert "(8 runs reused from earlier invocations)" in (out / "results.md").read_text()
    # ... unless what a run depends on changed: then that run is trained again
    (roots / "configs" / "toy_bc.yaml").write_text(CONFIGS["toy_bc.yaml"].replace("8,", "4,"))
    assert main(["bench", "bench_toy", "--quick", "--out", str(out), "--quiet", "--resume"]) == 0
    third = json.loads((out / "results.json").read_text())
    assert third["reused_runs"] == 3  # one seed, the changed BC run trained again
    assert third["algorithms"][0]["runs"][0] == results["algorithms"][0]["runs"][0]
    assert (
        third["algorithms"][3]["runs"][0]["fingerprint"]
        != (results["algorithms"][3]["runs"][0]["fingerprint"])
    )


def test_bench_in_worker_processes_shows_a_bar_over_runs_and_one_label_per_run(
    roots: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = roots / "pool"
    assert main(["bench", "bench_toy", "--quick", "--jobs", "2", "--out", str(out)]) == 0
    stdout, stderr = capfd.readouterr()
    assert "runs: 100%" in stderr and "4/4" in stderr  # the bar counts finished runs
    labels = ("ELMURDT, seed 0: ", "BC-GRU, seed 0: ", "DT, seed 0: ", "BC, seed 0: ")
    worker_lines = [
        line for line in stdout.splitlines() if "training ..." in line or ": step " in line
    ]
    assert len(worker_lines) >= 8  # each run: a start line and a line per epoch
    # every line a worker prints carries its run's label (it used to switch to the config's)
    assert all(line.startswith(labels) for line in worker_lines), worker_lines
    assert {line.split(":")[0] for line in worker_lines} == {label[:-2] for label in labels}


def test_demo_prints_the_table_and_ends_with_the_results_dir(roots: Path, capsys) -> None:
    out = roots / "demo"
    assert main(["demo", "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"results: {out.resolve()}"
    assert any(line.startswith("| ELMURDT |") for line in lines)
    assert any(line.startswith("| DT (K=4) |") for line in lines)
    results = json.loads((out / "results.json").read_text())
    assert results["lengths"] == [30, 90]
    assert (out / "tmaze_success.png").is_file() and (out / "results.md").is_file()


def test_parsers() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "tmaze", "--out", "x"])
    assert (args.seeds, args.quick, args.jobs, args.threads) == (None, False, 1, 1)
    args = parser.parse_args(["demo"])
    assert (args.out, args.jobs) == ("results/demo", 2)
    args = parser.parse_args(["resume", "run"])
    assert (args.dir, args.func, args.device) == ("run", "cmd_resume", "cpu:0")
    for bad in (["train", "cfg"], ["resume", "run", "--seed", "1"], ["resume"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


POPGYM_RECIPES = {
    "rp.yaml": RP_RECIPE,
    "pend.yaml": """\
name: pend
id: test/pend-v0
kind: popgym
env: popgym-PositionOnlyPendulumEasy-v0
expert: popgym-position-only-pendulum
n_episodes: 3
seed: 0
expected_return: 0.91
return_tolerance: 1.0
description: three episodes
""",
}
POPGYM_CONFIGS = {
    "toy_elmur_cont.yaml": "base: toy_elmur.yaml\nalgo: elmur_dt\n",
    "toy_dt_long.yaml": "base: toy_dt.yaml\nparams: {max_timestep: 64}\n",
    "toy_elmur_window.yaml": (
        "base: toy_elmur.yaml\n"
        "params: {sequence_encoder: {type: elmur, params: {attention_window: 3}}}\n"
    ),
    "bench_toy_popgym.yaml": """\
kind: popgym
tasks: [rp, pend]
episodes: 3
algorithms:
  - {label: ELMURDT, config: toy_elmur.yaml, continuous_config: toy_elmur_cont.yaml,
     task_configs: {rp: toy_elmur_window.yaml}}
  - {label: DT, config: toy_dt_long.yaml}
  - {label: BC, config: toy_bc.yaml}
""",
}


def test_bench_popgym_one_model_per_task(roots: Path, capsys) -> None:
    pytest.importorskip("popgym")
    for name, text in POPGYM_RECIPES.items():
        (roots / "recipes" / name).write_text(text)
    for name, text in POPGYM_CONFIGS.items():
        (roots / "configs" / name).write_text(text)
    out = roots / "popgym"
    assert main(["bench", "bench_toy_popgym", "--seeds", "1", "--out", str(out), "--quiet"]) == 0

    results = json.loads((out / "results.json").read_text())
    assert [t["env"] for t in results["tasks"]] == [
        "popgym-RepeatPreviousEasy-v0",
        "popgym-PositionOnlyPendulumEasy-v0",
    ]
    elmur, dt, bc = results["algorithms"]
    # ELMURDT trains a discrete model for RepeatPrevious and a continuous one for Pendulum
    assert [run["task"] for run in elmur["runs"]] == ["rp", "pend"]
    # ... and RepeatPrevious with its task config (a preset per task; 2 is the default W)
    for run, algo, window in zip(
        elmur["runs"], ["discrete_elmur_dt", "elmur_dt"], [3, 2], strict=True
    ):
        config = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())
        assert config["algo"] == algo
        assert config["params"]["sequence_encoder"]["params"].get("attention_window") == window
        (row,) = run["results"]
        assert row["episodes"] == 3 and -1.0 <= row["return_mean"] <= 1.0
    # the discrete-only baselines are skipped on Pendulum, and say so
    for algo in (dt, bc):
        assert algo["runs"][1]["results"] == [
            {"task": "popgym-PositionOnlyPendulumEasy-v0", "skipped": "continuous actions"}
        ]
    # a DT whose timestep embedding is too short for the data is refused with a clear error
    args = ["train", "toy_dt", "--dataset", "rp", "--out", str(roots / "dt"), "--quiet"]
    assert main(args) == 1
    assert "max_timestep=16 but the dataset has episodes of 5" in capsys.readouterr().err
    text = (out / "results.md").read_text()
    assert "| algorithm | RepeatPreviousEasy | PositionOnlyPendulumEasy | sum of means |" in text
    assert "not evaluated (continuous actions)" in text
    assert (out / "popgym_returns.png").is_file()

    # eval on a POPGym id: one row of mean return (observations one-hot encoded online)
    model = elmur["runs"][0]["run_dir"] + "/model.d3"
    args = ["eval", model, "--env", "popgym-RepeatPreviousEasy-v0", "--episodes", "2"]
    assert main([*args, "--json", "-", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)  # the table goes to stderr
    assert report["rows"][0]["task"] == "popgym-RepeatPreviousEasy-v0"
    assert report["rows"][0]["episodes"] == 2


def test_task_configs_must_name_tasks_of_the_suite(roots: Path) -> None:
    from d3rlpy_elmur_cli.bench.configs import ConfigError
    from d3rlpy_elmur_cli.bench.suite_config import load_suite

    (roots / "configs" / "bench_bad_tasks.yaml").write_text(
        "kind: popgym\ntasks: [rp]\nalgorithms:\n"
        "  - {config: toy_elmur.yaml, task_configs: {pend: toy_elmur.yaml}}\n"
    )
    with pytest.raises(ConfigError, match=r"task_configs names task.*pend"):
        load_suite("bench_bad_tasks")


def _rp_suite(roots: Path, name: str, algorithms: dict[str, str]) -> list[str]:
    """A one-task POPGym suite (RepeatPrevious, 2 episodes) of ``algorithms`` (label: config
    file); returns the bench command line, one seed, into ``roots / name``."""
    (roots / "recipes" / "rp.yaml").write_text(POPGYM_RECIPES["rp.yaml"])
    entries = "".join(f"  - {{label: {k}, config: {v}}}\n" for k, v in algorithms.items())
    (roots / "configs" / f"bench_{name}.yaml").write_text(
        f"kind: popgym\ntasks: [rp]\nepisodes: 2\nalgorithms:\n{entries}"
    )
    return ["bench", f"bench_{name}", "--seeds", "1", "--out", str(roots / name), "--quiet"]


def test_a_failing_run_is_reported_and_the_others_finish(
    roots: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("popgym")
    import d3rlpy_elmur_cli.bench.train as train_module

    args = _rp_suite(roots, "fail", {"DT": "toy_dt_long.yaml", "BC": "toy_bc.yaml"})
    (roots / "configs" / "toy_dt_long.yaml").write_text(
        "base: toy_dt.yaml\nparams: {max_timestep: 128}\n"
    )
    real_train_run = train_module.train_run

    def train_run(run, *args, **kwargs):  # a failure only training shows (say, out of memory)
        if run.algo == "discrete_decision_transformer":
            raise RuntimeError("simulated training failure")
        return real_train_run(run, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_run", train_run)
    out = roots / "fail"
    assert main(args) == 1
    assert "1 run(s) failed" in capsys.readouterr().err

    results = json.loads((out / "results.json").read_text())
    assert results["failed_runs"] == 1
    (dt_run,) = results["algorithms"][0]["runs"]
    assert dt_run["error"] == "RuntimeError: simulated training failure"
    assert dt_run["results"] == [{"task": "popgym-RepeatPreviousEasy-v0", "skipped": "run failed"}]
    (bc_run,) = results["algorithms"][1]["runs"]
    assert bc_run["results"][0]["episodes"] == 2  # the run after the failure still ran
    assert "not evaluated (run failed)" in (out / "results.md").read_text()
    # the failure is not cached: --resume tries it again (and reuses the BC run)
    assert main([*args, "--resume"]) == 1
    again = json.loads((out / "results.json").read_text())
    assert again["reused_runs"] == 1 and again["failed_runs"] == 1


def test_bench_checks_every_config_before_training_anything(roots: Path, capsys) -> None:
    pytest.importorskip("popgym")
    # toy_dt's timestep table (16) is shorter than RepeatPrevious's episodes; the ELMURDT
    # config asks for more segments than the episodes hold
    (roots / "configs" / "toy_elmur_long.yaml").write_text(
        "base: toy_elmur.yaml\nparams: {num_segments: 40}\n"
    )
    algorithms = {"BC": "toy_bc.yaml", "DT": "toy_dt.yaml", "ELMURDT": "toy_elmur_long.yaml"}
    args = _rp_suite(roots, "bad", algorithms)
    out = roots / "bad"
    assert main([*args, "--seeds", "2"]) == 1
    err = capsys.readouterr().err
    assert "nothing was trained" in err
    assert "DT, rp: config toy_dt: max_timestep=16" in err
    assert "ELMURDT, rp: config toy_elmur_long: num_segments=40" in err
    assert "BC, rp" not in err
    assert not (out / "runs").exists()  # BC, first in the plan, did not train either


def test_bench_resume_continues_a_run_cut_after_a_checkpoint(
    roots: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("popgym")
    import d3rlpy_elmur_cli.bench.train as train_module

    args = _rp_suite(roots, "cut", {"BC": "toy_bc.yaml"})
    real_train_run = train_module.train_run
    resumes: list[bool] = []

    def train_run(run, *args, **kwargs):
        resumes.append(kwargs["resume"])

        def cut(line: str) -> None:  # the first run dies after its step-2 checkpoint
            if "step 4/" in line:
                raise KeyboardInterrupt  # what a session's end looks like to the run

        return real_train_run(run, *args, **{**kwargs, "log": cut if len(resumes) == 1 else None})

    monkeypatch.setattr(train_module, "train_run", train_run)
    out = roots / "cut"
    assert main(args) == 130
    assert "a cut run goes on from its last epoch's checkpoint" in capsys.readouterr().err
    assert (out / "runs" / "rp" / "toy_bc" / "seed0" / "checkpoint.pt").is_file()

    assert main([*args, "--resume"]) == 0
    (run,) = json.loads((out / "results.json").read_text())["algorithms"][0]["runs"]
    assert run["train"]["resumed_from"] == 2 and run["train"]["steps"] == 4
    assert resumes == [False, True]

    # cut after training, during evaluation (no result.json yet): the model is kept
    folder = out / "runs" / "rp" / "toy_bc" / "seed0"
    (folder / "result.json").unlink()
    stamp = (folder / "model.d3").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    (again,) = json.loads((out / "results.json").read_text())["algorithms"][0]["runs"]
    assert again["train"] == run["train"]  # not trained again
    assert again["results"][0]["return_mean"] == run["results"][0]["return_mean"]
    assert (folder / "model.d3").stat().st_mtime_ns == stamp

    # trained again without --resume and cut: the old result is gone with the old model, so a
    # --resume (or a backend's retry) finishes the new run instead of reusing the old one
    resumes.clear()
    assert main(args) == 130
    assert not (folder / "result.json").exists() and not (folder / "model.d3").exists()
    assert main([*args, "--resume"]) == 0
    assert resumes == [False, True]


_ORPHAN = """
import multiprocessing, os, sys, time

def child(path):
    from d3rlpy_elmur_cli.bench.workers import exit_with_parent

    exit_with_parent(0.1)
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(300)

if __name__ == "__main__":
    multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1],)).start()
    time.sleep(300)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_bench_worker_ends_when_the_bench_process_is_killed(tmp_path: Path) -> None:
    script, pid_file = tmp_path / "bench.py", tmp_path / "worker.pid"
    script.write_text(_ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    try:
        deadline = time.monotonic() + 120
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        worker = int(pid_file.read_text())
    finally:
        parent.send_signal(signal.SIGKILL)  # no cleanup runs in the parent
        parent.wait()
    deadline = time.monotonic() + 60
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived the bench process"
        time.sleep(0.1)


def test_bad_flags_and_envs_are_one_line_naming_the_value(roots: Path, capsys) -> None:
    model = roots / "m"
    assert main(["train", "toy_elmur", "--steps", "2", "--out", str(model), "--quiet"]) == 0
    capsys.readouterr()
    cases = [
        (["train", "toy_bc", "--steps", "-5", "--out", str(roots / "x")], "train.steps=-5"),
        (
            ["eval", str(model / "model.d3"), "--env", "d3rlpy_elmur/TMazz-v0"],
            "unknown environment id 'd3rlpy_elmur/TMazz-v0'; did you mean d3rlpy_elmur/TMaze-v0",
        ),
        (
            ["eval", str(model / "model.d3"), "--env", "CartPole-v1", "--episodes", "2"],
            "the environment's actions are Discrete(2); the model takes discrete actions of size",
        ),
        (
            ["eval", str(model / "model.d3"), "--env", "d3rlpy_elmur/TMaze-v0", "--episodes", "0"],
            "--episodes 0: evaluate at least one episode",
        ),
        (
            ["eval", str(model / "model.d3"), "--env", "d3rlpy_elmur/TMaze-v1", "--corridor", "9"],
            "corridor lengths apply to d3rlpy_elmur/TMaze-v0 only; unknown environment id "
            "'d3rlpy_elmur/TMaze-v1'; did you mean d3rlpy_elmur/TMaze-v0",
        ),
        (
            ["eval", "m.d3", "--env", "d3rlpy_elmur/VisualTMaze-v0", "--corridor", "9"],
            "corridor lengths apply to d3rlpy_elmur/TMaze-v0 only (one row per length), not to "
            "d3rlpy_elmur/VisualTMaze-v0: evaluate it without them",
        ),
        (["report", str(model)], "reads the output folder of `elmur bench` or `elmur demo`"),
        (
            ["train", "toy_bc", "--n-steps-per-epoch", "0", "--out", str(roots / "y")],
            "train.steps_per_epoch=0",
        ),
    ]
    for argv, message in cases:
        assert main([*argv, "--quiet"]) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    # d3rlpy's names for the budget flags: 6 updates in epochs of 3 (two log rows)
    out = roots / "z"
    argv = ["train", "toy_bc", "--n-steps", "6", "--n-steps-per-epoch", "3", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert len((out / "logs" / "loss.csv").read_text().splitlines()) == 2


def test_the_library_names_its_parameters_and_the_command_line_their_flags(
    roots: Path, capsys
) -> None:
    """A library error names the caller's parameters (``address=``, ``backend=``); `elmur`
    prints the flags that set them (config fields such as ``train.steps=`` stay: above)."""
    from d3rlpy_elmur_cli.bench.backends import check_backend

    message = "address='auto' names a Ray cluster: it is for backend='ray' only"
    with pytest.raises(ValueError, match=message):
        check_backend("local", "auto")
    out = roots / "b"
    assert main(["bench", "bench_toy", "--address", "auto", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: --address 'auto' names a Ray cluster: it is for --backend 'ray' only"
    assert not out.exists()

"""Checkpoints and `elmur resume`: a resumed run ends where an uninterrupted one does.

The reference is always an uninterrupted run of the same config in this process; the
interrupted one is stopped by an exception after an update (in process) or by SIGKILL at
random moments (a real `elmur train` subprocess).
"""

from __future__ import annotations

import fcntl
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import d3rlpy
import numpy as np
import pytest
import torch

import d3rlpy_elmur
from d3rlpy_elmur.checkpoint import CheckpointError, build_impl, read_checkpoint
from d3rlpy_elmur.datasets import ensure_dataset, load_minari
from d3rlpy_elmur_cli import main
from d3rlpy_elmur_cli.bench.configs import ConfigError, load_run_config
from d3rlpy_elmur_cli.bench.train import resume_run, train_run

from .toy_roots import make_toy_roots


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_toy_roots(tmp_path, monkeypatch)


class _Stop(Exception):
    pass


def _stop_at(step: int):
    """A per-epoch log callback that fails once the run has logged ``step``."""

    def log(line: str) -> None:
        if f"step {step}/" in line:
            raise _Stop(line)

    return log


def _weights(path: Path) -> dict[str, torch.Tensor]:
    algo = d3rlpy_elmur.load_learnable(path)
    modules = algo.impl.modules.create_checkpointer("cpu:0").modules
    return {
        f"{name}.{key}": value
        for name, module in modules.items()
        if isinstance(module, torch.nn.Module)
        for key, value in module.state_dict().items()
    }


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [key for key in wa if not torch.equal(wa[key], wb[key])]
    assert not different, f"parameters differ: {different[:5]}"


@pytest.mark.parametrize("config", ["toy_elmur", "toy_dt", "toy_cql"])
def test_resumed_run_has_the_parameters_of_an_uninterrupted_one(roots: Path, config: str) -> None:
    run = load_run_config(config)
    whole = train_run(run, roots / "whole", steps=12, checkpoint_every=4, show_progress=False)

    # stopped during step 8: steps 5-8 are lost (step 6 was logged), step 4's checkpoint remains
    out = roots / "stopped"
    with pytest.raises(_Stop):
        train_run(run, out, steps=12, checkpoint_every=4, show_progress=False, log=_stop_at(8))
    assert not (out / "model.d3").exists()
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert _logged_steps(out) == [2, 4, 6]  # the resumed run must drop step 6's row

    resumed = resume_run(out, show_progress=False)
    assert resumed.resumed_from == 4 and resumed.steps == 12
    _assert_same_weights(Path(whole.model_path), Path(resumed.model_path))
    # the optimizer and step counter went on too: so did the logged losses, row for row
    loss = (out / "logs" / "loss.csv").read_text()
    assert loss == (roots / "whole" / "logs" / "loss.csv").read_text()
    assert _logged_steps(out) == [2, 4, 6, 8, 10, 12]
    assert not (out / "checkpoint.pt").exists()  # a finished run keeps only its model


def _logged_steps(out: Path) -> list[int]:
    return [int(row.split(",")[1]) for row in (out / "logs" / "loss.csv").read_text().split()]


def test_a_kill_after_the_last_checkpoint_resumes_to_the_model(
    roots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the final checkpoint but before model.d3: resuming trains nothing and
    saves the finished model."""
    run = load_run_config("toy_bc")
    whole = train_run(run, roots / "whole", steps=8, show_progress=False)
    out = roots / "late"

    def crash(algo: object, path: object) -> None:
        raise _Stop("killed before model.d3")

    with monkeypatch.context() as patch:
        patch.setattr("d3rlpy_elmur_cli.bench.train.save_learnable", crash)
        with pytest.raises(_Stop):
            train_run(run, out, steps=8, show_progress=False)
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 8
    resumed = resume_run(out, show_progress=False)
    assert resumed.resumed_from == 8
    _assert_same_weights(Path(whole.model_path), out / "model.d3")


def test_build_impl_fits_scalers_as_fit_does(roots: Path) -> None:
    """A resume that trains no step still saves fitted scalers (fit would have fitted them)."""
    buffer = load_minari(ensure_dataset("tiny", progress=False))
    scaler = d3rlpy.preprocessing.StandardObservationScaler()
    algo = d3rlpy.algos.DiscreteBCConfig(observation_scaler=scaler).create()
    build_impl(algo, buffer)
    observations = np.concatenate([episode.observations for episode in buffer.episodes])
    assert scaler.built and algo.impl is not None
    assert np.allclose(scaler.mean, observations.mean(axis=0), atol=1e-5)


def test_a_stop_before_the_first_checkpoint_resumes_from_scratch(roots: Path) -> None:
    run = load_run_config("toy_bc")
    whole = train_run(run, roots / "whole", steps=8, checkpoint_every=4, show_progress=False)
    out = roots / "early"
    with pytest.raises(_Stop):
        train_run(run, out, steps=8, checkpoint_every=4, show_progress=False, log=_stop_at(2))
    assert not (out / "checkpoint.pt").exists()
    resumed = resume_run(out, show_progress=False)
    assert resumed.resumed_from is None
    _assert_same_weights(Path(whole.model_path), Path(resumed.model_path))


def test_resume_refuses_what_it_cannot_continue(roots: Path, capsys) -> None:
    run = load_run_config("toy_bc")
    out = roots / "run"
    # a checkpoint interval that is not a multiple of the epoch fails before anything is written
    with pytest.raises(ConfigError, match="checkpoint_every=3"):
        train_run(run, out, steps=8, checkpoint_every=3, show_progress=False)
    assert not out.exists()

    assert main(["resume", str(roots / "nothing")]) == 1
    assert "not an `elmur train` folder" in capsys.readouterr().err
    # resume continues the folder's own run: the parser has no flags that would change it
    with pytest.raises(SystemExit):
        main(["resume", str(out), "--checkpoint-every", "2"])
    assert "unrecognized arguments: --checkpoint-every" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "toy_bc"])
    assert "--out" in capsys.readouterr().err

    with pytest.raises(_Stop):
        train_run(run, out, steps=8, checkpoint_every=4, show_progress=False, log=_stop_at(6))
    # a fresh run does not wipe the unfinished one, and resume refuses a second trainer
    assert main(["train", "toy_bc", "--out", str(out), "--quiet"]) == 1
    assert f"`elmur resume {out}` continues it" in capsys.readouterr().err
    with open(out / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("4242")  # the holder's pid, as train_run writes it
        handle.flush()
        assert main(["resume", str(out), "--quiet"]) == 1
        assert "another process (pid 4242) is training" in capsys.readouterr().err
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 4
    # a checkpoint from another run (other seed) is refused, naming what differs
    other = roots / "other"
    with pytest.raises(_Stop):
        train_run(run, other, steps=8, seed=5, checkpoint_every=4, show_progress=False,
                  log=_stop_at(6))  # fmt: skip
    (other / "checkpoint.pt").replace(out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="another run"):
        resume_run(out, show_progress=False)

    # a checkpoint whose unpickling would run code is refused, and the code does not run
    marker = roots / "ran"
    (out / "checkpoint.pt").write_bytes(
        pickle.dumps(_RunsCode(f"open({str(marker)!r}, 'w').close()"))
    )
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        resume_run(out, show_progress=False)
    assert not marker.exists()

    # a finished run has nothing to resume
    (out / "checkpoint.pt").unlink()
    assert main(["resume", str(out), "--quiet"]) == 0
    assert "(resumed" not in capsys.readouterr().out  # no checkpoint: it started again
    assert main(["resume", str(out)]) == 1
    assert "nothing to resume" in capsys.readouterr().err


class _RunsCode:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _cli(args: list[str], roots: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "d3rlpy_elmur", *args, "--quiet", "--threads", "1"]
    return subprocess.Popen(command, env=env, cwd=roots, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def _checkpoint_step(path: Path) -> int:
    return read_checkpoint(path)["step"] if path.exists() else 0


def test_sigkill_at_random_moments_then_resume(roots: Path) -> None:
    """Kill `elmur train` four times at random moments: the last checkpoint always loads, each
    life continues from it, and the finished model equals an uninterrupted run's."""
    ensure_dataset("tiny", progress=False)  # the subprocesses find it built
    steps = 600
    out = roots / "killed"
    rng = random.Random(0)
    previous = 0
    for life in range(4):
        args = ["resume", str(out)] if life else ["train", "toy_elmur", "--out", str(out)]
        if not life:
            args += ["--steps", str(steps), "--checkpoint-every", "2"]
        process = _cli(args, roots)
        deadline = time.monotonic() + 120
        # let it get past the last checkpoint, then kill it somewhere in the next updates
        while _checkpoint_step(out / "checkpoint.pt") <= previous:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no new checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        step = _checkpoint_step(out / "checkpoint.pt")  # loads: never a torn file
        assert previous < step < steps and step % 2 == 0
        assert not (out / "model.d3").exists()
        previous = step
    finished = _cli(["resume", str(out)], roots)
    assert finished.wait(timeout=300) == 0, finished.stderr.read().decode()
    assert not list(out.glob(".*.tmp*")), "a temporary file was left behind"

    whole = train_run(load_run_config("toy_elmur"), roots / "whole", steps=steps,
                      checkpoint_every=2, show_progress=False)  # fmt: skip
    _assert_same_weights(Path(whole.model_path), out / "model.d3")
    # the logs were cut back to each checkpoint and continued: the same rows, torn ones gone
    assert (out / "logs" / "loss.csv").read_text() == (
        roots / "whole" / "logs" / "loss.csv"
    ).read_text()


def test_train_run_with_resume_continues_only_its_own_run(
    roots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the bench's --resume relies on: a cut run of the same config goes on from its
    checkpoint (ending as an uninterrupted run does), a finished one is kept, anything else
    starts again."""
    run = load_run_config("toy_elmur")
    whole = train_run(run, roots / "whole", steps=12, checkpoint_every=4, show_progress=False)
    out = roots / "cut"

    def cut(config=run, **kwargs) -> None:
        with pytest.raises(_Stop):
            train_run(
                config,
                out,
                steps=12,
                checkpoint_every=4,
                show_progress=False,
                log=_stop_at(8),
                overwrite=True,
                **kwargs,
            )
        assert read_checkpoint(out / "checkpoint.pt")["step"] == 4

    def again(config=run, **kwargs):
        return train_run(
            config, out, steps=12, checkpoint_every=4, show_progress=False, resume=True, **kwargs
        )

    cut()
    # another seed is another run: not continued, and without overwrite not replaced
    with pytest.raises(FileExistsError, match="unfinished run"):
        again(seed=1)
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 4

    resumed = again()
    assert resumed.resumed_from == 4
    _assert_same_weights(Path(whole.model_path), Path(resumed.model_path))
    # a finished run of the same config is kept as it is (a bench cut during evaluation)
    stamp = (out / "model.d3").stat().st_mtime_ns
    assert again() == resumed
    assert (out / "model.d3").stat().st_mtime_ns == stamp

    # same seed, another learning rate: the checkpoint is not this run's, so it starts over
    cut()
    other = run.replace(params={**run.params, "learning_rate": 1e-3})
    fresh = again(other, overwrite=True)
    assert fresh.resumed_from is None
    assert load_run_config(out / "config.yaml").params["learning_rate"] == 1e-3

    # this run's config.yaml with another run's checkpoint (seed 1): not continued either
    cut()
    foreign = roots / "foreign"
    with pytest.raises(_Stop):
        train_run(run, foreign, steps=12, seed=1, checkpoint_every=4, show_progress=False,
                  log=_stop_at(8))  # fmt: skip
    (foreign / "checkpoint.pt").replace(out / "checkpoint.pt")
    assert again(overwrite=True).resumed_from is None

    # a checkpoint of this run that does not load any more: trained again, with a warning
    cut()
    import d3rlpy_elmur_cli.bench.train as train_module

    def broken(*args, **kwargs):
        raise CheckpointError("module shapes changed")

    monkeypatch.setattr(train_module, "restore_checkpoint", broken)
    with pytest.warns(UserWarning, match="module shapes changed; training"):
        restarted = again(overwrite=True)
    assert restarted.resumed_from is None
    _assert_same_weights(Path(whole.model_path), Path(restarted.model_path))


@pytest.mark.parametrize("config", ["toy_elmur", "toy_dt"])
def test_checkpointing_does_not_change_the_model(roots: Path, config: str) -> None:
    """The bench reuses a cached run whatever its checkpoint interval (it is left out of the
    fingerprint): writing checkpoints must not touch any random stream or parameter."""
    run = load_run_config(config)
    never = train_run(run, roots / "never", steps=12, checkpoint_every=0, show_progress=False)
    often = train_run(run, roots / "often", steps=12, checkpoint_every=2, show_progress=False)
    _assert_same_weights(Path(never.model_path), Path(often.model_path))

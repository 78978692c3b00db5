"""--logger: d3rlpy's TensorBoard adapter beside the CSV logs, continued across a resume."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event

from d3rlpy_elmur_cli import main
from d3rlpy_elmur_cli.bench.configs import load_run_config
from d3rlpy_elmur_cli.bench.train import resume_run, train_run

from .toy_roots import make_toy_roots


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_toy_roots(tmp_path, monkeypatch)


class _Stop(Exception):
    pass


def _scalars(folder: Path, tag: str) -> dict[int, float]:
    """{step: value} of ``tag`` in every TensorBoard event file under ``folder`` (TFRecord:
    length, its crc, an Event proto, its crc)."""
    values: dict[int, float] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return values


def _csv(path: Path) -> dict[int, float]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return {int(epoch): float(value) for epoch, _, value in rows}


def test_tensorboard_holds_the_loss_and_continues_across_a_resume(roots: Path) -> None:
    run = load_run_config("toy_bc")  # 2 steps per epoch
    out = roots / "run"

    def stop_after_two_epochs(line: str) -> None:
        if "step 4/" in line:
            raise _Stop(line)

    with pytest.raises(_Stop):
        train_run(
            run,
            out,
            steps=8,
            show_progress=False,
            loggers=["tensorboard"],
            log=stop_after_two_epochs,
        )
    resume_run(out, show_progress=False, loggers=["tensorboard"])
    board = _scalars(out / "tensorboard", "metrics/loss")
    csv = _csv(out / "logs" / "loss.csv")
    assert sorted(csv) == [1, 2, 3, 4]
    # the same numbers at the same epochs: the resumed part continues at epoch 3
    assert sorted(board) == sorted(csv)
    for epoch, value in csv.items():
        assert board[epoch] == pytest.approx(value, rel=1e-6)


def test_cli_logger_choices(roots: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "toy_bc", "--out", str(roots / "x"), "--logger", "mlflow"])
    assert "invalid choice: 'mlflow'" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "toy_bc",
                "--out",
                str(roots / "y"),
                "--quiet",
                "--logger",
                "csv",
                "tensorboard",
            ]
        )
        == 0
    )
    assert _scalars(roots / "y" / "tensorboard", "metrics/loss")


def test_wandb_offline_runs_with_no_network(
    roots: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--logger wandb` with WANDB_MODE=offline: d3rlpy's W&B adapter writes a local run (one
    per model, named after it) beside the CSV logs, and training is unchanged by it."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(roots / "wandb"))
    (roots / "wandb").mkdir()
    common = ["train", "toy_bc", "--steps", "4", "--quiet"]
    assert main([*common, "--out", str(roots / "plain")]) == 0
    assert main([*common, "--out", str(roots / "tracked"), "--logger", "csv", "wandb"]) == 0
    (run,) = (roots / "wandb" / "wandb").glob("offline-run-*")
    (record,) = run.glob("run-*.wandb")
    data = record.read_bytes()  # protobuf records: their strings appear as they are
    assert b"toy_bc" in data and b"loss" in data  # named after the model, the loss logged
    plain, tracked = (roots / name / "logs" / "loss.csv" for name in ("plain", "tracked"))
    assert tracked.read_text() == plain.read_text()

"""Every `elmur` command without each optional extra it can use, and the options every
command takes.

An extra is removed in-process (``sys.modules[name] = None``: its import fails and
``importlib.util.find_spec`` finds nothing). A command whose output needs the extra fails
before any work with one line naming the extra; without the plot extra a command writes and
reports its results and says up front, once, that no plot is drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from d3rlpy_elmur.extras import EXTRAS, available, extra_of
from d3rlpy_elmur_cli import build_parser, main

from .toy_roots import RP_RECIPE, make_toy_roots

POPGYM_ENV = "popgym-RepeatPreviousEasy-v0"
# one cheap algorithm at one length: what the plot cases train
ONE_RUN_SUITE = """\
kind: tmaze
dataset: tiny
lengths: [9]
episodes: 2
algorithms:
  - {label: BC, config: toy_bc.yaml, steps: 2}
"""


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_toy_roots(tmp_path, monkeypatch)
    (root / "recipes" / "rp.yaml").write_text(RP_RECIPE)
    (root / "configs" / "bench_popgym_toy.yaml").write_text(
        "kind: popgym\ntasks: [rp]\nepisodes: 2\nalgorithms:\n  - {config: toy_bc.yaml}\n"
    )
    (root / "configs" / "bench_one.yaml").write_text(ONE_RUN_SUITE)
    (root / "configs" / "demo.yaml").write_text(ONE_RUN_SUITE)
    (root / "space.yaml").write_text("params.learning_rate: [0.001]\n")
    return root


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    assert not available(module)


# (command line, module removed): each command with each extra its flags or data need. The
# export extra has no command (``save_policy`` and ``load_onnx_policy`` are the library's).
NEEDS = [
    (["sweep", "toy_bc", "--trials", "1"], "optuna"),
    (["bench", "bench_one", "--backend", "ray"], "ray"),
    (["sweep", "toy_bc", "--trials", "1", "--backend", "ray"], "ray"),
    (["train", "toy_bc", "--logger", "tensorboard"], "tensorboardX"),
    (["train", "toy_bc", "--logger", "csv", "wandb"], "wandb"),
    (["resume", "RUN", "--logger", "tensorboard"], "tensorboardX"),
    (["bench", "bench_one", "--logger", "wandb"], "wandb"),
    (["sweep", "toy_bc", "--trials", "1", "--logger", "tensorboard"], "tensorboardX"),
    (["bench", "bench_popgym_toy"], "popgym"),
    (["sweep", "toy_bc", "--trials", "1", "--dataset", "rp"], "popgym"),
    (["sweep", "toy_bc", "--trials", "1", "--env", POPGYM_ENV], "popgym"),
    (["train", "toy_bc", "--dataset", "rp"], "popgym"),
    (["dataset", "build", "rp"], "popgym"),
    (["eval", "MODEL", "--env", POPGYM_ENV], "popgym"),
]


@pytest.mark.parametrize(
    ("argv", "module"), NEEDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_a_missing_extra_fails_before_any_work_naming_it(
    roots: Path,
    argv: list[str],
    module: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = roots / "out"
    argv = [str(out) if a == "RUN" else str(roots / "m.d3") if a == "MODEL" else a for a in argv]
    if argv[0] == "sweep":
        argv += ["--space", str(roots / "space.yaml")]
    if argv[0] in ("train", "bench", "sweep"):
        argv += ["--out", str(out)]
    _hide(monkeypatch, module)
    assert main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    extra = extra_of(module)
    assert err.startswith("error: ") and "\n" not in err, err
    assert f"needs {module}, which is not installed: install the {extra} extra" in err
    assert f"pip install 'd3rlpy-elmur[{extra}]'" in err and f"'.[{extra}]'" in err
    # nothing trained or written: no output folder, no dataset built
    assert not out.exists()
    assert not (roots / "minari").exists() or not any((roots / "minari").rglob("*.hdf5"))


def test_without_the_plot_extra_bench_demo_and_report_still_write_and_report_results(
    roots: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "matplotlib")
    bench = roots / "bench"
    assert main(["bench", "bench_one", "--out", str(bench), "--seeds", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    warning = "warning: the plot needs matplotlib, which is not installed: install the plot extra"
    (line,) = [x for x in captured.err.splitlines() if x.startswith("warning")]  # once
    assert line.startswith(warning) and "results.json and results.md are written without it" in line
    assert captured.out.strip().splitlines()[-1] == f"results: {bench / 'results.md'}"
    results = json.loads((bench / "results.json").read_text())
    assert results["algorithms"][0]["runs"][0]["results"][0]["success_rate"] is not None
    assert "| BC |" in (bench / "results.md").read_text()
    assert not list(bench.glob("*.png"))

    (bench / "results.md").unlink()
    assert main(["report", str(bench), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(warning) and captured.err.count("warning") == 1
    assert captured.out == f"wrote {bench / 'results.md'}\n"  # no plot listed
    assert (bench / "results.md").is_file() and not list(bench.glob("*.png"))

    demo = roots / "demo"
    assert main(["demo", "--out", str(demo), "--jobs", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(warning) and "| BC |" in captured.out
    assert (demo / "results.md").is_file() and not list(demo.glob("*.png"))


def test_without_the_plot_extra_a_sweep_writes_its_results(
    roots: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "matplotlib")
    out = roots / "out"
    argv = ["sweep", "toy_bc", "--space", str(roots / "space.yaml"), "--trials", "1"]
    argv += ["--out", str(out), "--steps", "2", "--episodes", "2", "--corridor", "1"]
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: the plot needs matplotlib") == 1, err
    assert "sweep.json, sweep.md and best.yaml are written without it" in err
    assert (out / "sweep.md").is_file() and (out / "best.yaml").is_file()
    assert not (out / "sweep.png").exists()


def test_the_extras_map_is_setup_cfgs() -> None:
    """Every extra the package imports from is in the map, with what setup.cfg installs."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).parents[1] / "setup.cfg")
    declared = {
        extra: {line.split("=")[0].split(">")[0].strip() for line in text.split() if line}
        for extra, text in setup["options.extras_require"].items()
    }
    assert set(declared) - set(EXTRAS) == {"test", "mutation", "dev"}  # tools, not imported
    for extra, modules in EXTRAS.items():  # distributions named as their modules
        assert {m.lower() for m in modules} == {d.lower() for d in declared[extra]}, extra
    with pytest.raises(KeyError, match="in no extra"):
        extra_of("numpy")


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable command's parser, by its words (``dataset build``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_leaves(sub, (*path, name)))
    return found or {path: parser}


# the fewest arguments each command parses with
MINIMAL = {
    ("dataset", "build"): ["tiny"],
    ("dataset", "list"): [],
    ("train",): ["cfg", "--out", "o"],
    ("resume",): ["o"],
    ("eval",): ["m.d3", "--env", "e"],
    ("bench",): ["tmaze", "--out", "o"],
    ("report",): ["o"],
    ("sweep",): ["cfg", "--space", "s", "--out", "o", "--trials", "1"],
    ("demo",): [],
}


def test_every_command_takes_threads_quiet_and_verbose() -> None:
    parser = build_parser()
    assert set(_leaves(parser)) == set(MINIMAL)  # a new command gets a line here
    for words, rest in MINIMAL.items():
        args = parser.parse_args([*words, *rest])
        assert (args.threads, args.quiet, args.verbose) == (1, False, False), words
        args = parser.parse_args([*words, *rest, "--threads", "3", "--quiet", "-v"])
        assert (args.threads, args.quiet, args.verbose) == (3, True, True), words
        assert parser.parse_args([*words, *rest, "--verbose"]).verbose, words


def test_the_logger_and_backend_choices_are_the_librarys() -> None:
    """The parser copies the names the library checks (reading them would import d3rlpy)."""
    from d3rlpy_elmur_cli.bench.backends import BACKENDS
    from d3rlpy_elmur_cli.bench.loggers import LOGGERS

    seen = set()
    for words, parser in _leaves(build_parser()).items():
        for action in parser._actions:
            for flag, names in (("--logger", LOGGERS), ("--backend", BACKENDS)):
                if flag in action.option_strings:
                    assert tuple(action.choices or ()) == names, (words, flag)
                    seen.add((words, flag))
    assert {words for words, _ in seen} == {("train",), ("resume",), ("bench",), ("sweep",)}


def test_the_library_defaults_are_left_to_the_library() -> None:
    """An option whose library parameter has a default parses to None when not given, so
    the library's default applies (``commands._given`` leaves it out of the call)."""
    parser = build_parser()
    unset = {
        ("eval",): ("seed", "target_return"),
        ("sweep",): ("eval_seed", "target_return", "backend", "logger"),
        ("bench",): ("backend", "logger"),
        ("train",): ("logger",),
        ("resume",): ("logger",),
    }
    for words, names in unset.items():
        args = parser.parse_args([*words, *MINIMAL[words]])
        assert all(getattr(args, name) is None for name in names), words


def test_quiet_and_verbose_run_where_they_change_nothing(
    roots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dataset", "list", "-v", "--quiet", "--threads", "1"]) == 0
    assert "tiny" in capsys.readouterr().out


def test_a_config_path_not_found_lists_what_was_tried_and_names_the_preset(
    roots: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clone's ``examples/configs/X.yaml`` from another folder: the path does not exist
    there, the error says where it looked and that the preset's name works anywhere."""
    elsewhere = roots / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "examples/configs/toy_bc.yaml", "--out", "o", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config 'examples/configs/toy_bc.yaml' not found; tried ")
    assert str(elsewhere / "examples" / "configs" / "toy_bc.yaml") in err
    assert err.endswith("did you mean the preset toy_bc?") and "\n" not in err
    assert main(["train", "tyo_bc", "--out", "o", "--quiet"]) == 1
    assert "did you mean the preset toy_bc" in capsys.readouterr().err
    assert main(["train", "nothing_like_it", "--out", "o", "--quiet"]) == 1
    assert f"the presets are the .yaml files in {roots / 'configs'}" in capsys.readouterr().err
    assert not (elsewhere / "o").exists()

"""A wheel carries what the command line needs: recipes and presets are package data, so a
plain (non-editable) install trains a preset from an empty folder."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_install_trains_a_preset_from_an_empty_folder(tmp_path: Path) -> None:
    wheels, target, empty = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    source = tmp_path / "source"  # pip builds in the source folder: keep the checkout clean
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for package in ("d3rlpy_elmur", "d3rlpy_elmur_cli"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-q", "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("d3rlpy_elmur-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "d3rlpy_elmur/data/recipes/tmaze-c28.yaml" in names
    # every recipe and config of the checkout, presets in subfolders too
    shipped = [p.relative_to(REPO).as_posix() for p in (REPO / "d3rlpy_elmur/data").rglob("*.yaml")]
    assert "d3rlpy_elmur/data/configs/tmaze_elmur.yaml" in shipped
    assert set(shipped) <= set(names), sorted(set(shipped) - set(names))
    assert "d3rlpy_elmur_cli/__init__.py" in names
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target"]
    subprocess.run([*install, str(target), str(wheel)], check=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ELMUR_")}
    env.update(PYTHONPATH=str(target), MINARI_DATASETS_PATH=str(tmp_path / "minari"))

    def elmur(*args: str) -> subprocess.CompletedProcess[str]:
        code = (
            "import sys, d3rlpy_elmur, d3rlpy_elmur_cli as c; print(d3rlpy_elmur.__file__); "
            "sys.exit(c.main(sys.argv[1:]))"
        )
        return subprocess.run(
            [sys.executable, "-c", code, *args], cwd=empty, env=env, capture_output=True, text=True
        )

    trained = elmur(
        "train", "tmaze_elmur", "--steps", "2", "--steps-per-epoch", "2", "--out", "run"
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.splitlines()[0].startswith(
        str(target)
    )  # the wheel's copy, not the tree's
    assert "trained tmaze_elmur" in trained.stdout and (empty / "run" / "model.d3").is_file()
    listed = elmur("dataset", "list")
    assert listed.returncode == 0 and "popgym-repeatprevious-easy" in listed.stdout


NOISY_IMPORT = """
import importlib.abc, sys

class Noisy(importlib.abc.MetaPathFinder):  # says something on stderr as d3rlpy is imported
    def find_spec(self, name, path, target=None):
        if name == "d3rlpy":
            print("other text", file=sys.stderr)
        return None

sys.meta_path.insert(0, Noisy())
import d3rlpy_elmur
print("gym" in sys.modules)
"""


def test_importing_the_package_hides_only_the_old_gym_packages_notice() -> None:
    """d3rlpy imports `gym`, which prints a notice asking to move to gymnasium (this package
    uses gymnasium): the import drops that notice and passes on anything else on stderr."""
    done = subprocess.run([sys.executable, "-c", NOISY_IMPORT], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "True"  # gym was imported ...
    assert "Gym has been unmaintained" not in done.stderr  # ... its notice filtered ...
    assert done.stderr.splitlines() == ["other text"]  # ... and nothing else


HELP = """
import sys
import d3rlpy_elmur_cli

for argv in (["--help"], ["train", "--help"], ["sweep", "--help"], ["train", "--steps", "x"]):
    try:
        d3rlpy_elmur_cli.main(argv)
    except SystemExit as e:
        print("exit:", argv[0], e.code)
print("torch" in sys.modules, "d3rlpy" in sys.modules)
"""


def test_help_and_usage_errors_answer_without_importing_d3rlpy_or_torch() -> None:
    done = subprocess.run([sys.executable, "-c", HELP], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    exits = [line for line in lines if line.startswith("exit: ")]
    assert exits == ["exit: --help 0", "exit: train 0", "exit: sweep 0", "exit: train 2"]
    assert "--backend {local,ray}" in done.stdout and "invalid int value: 'x'" in done.stderr
    assert lines[-1] == "False False"


def test_no_module_of_the_library_imports_the_command_line() -> None:
    """The command line depends on the library, never the reverse. The one file that names it
    is ``d3rlpy_elmur/__main__.py``, the script ``python -m d3rlpy_elmur`` runs, which no
    module imports."""
    importers = set()
    for path in (REPO / "d3rlpy_elmur").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            if any(module.split(".")[0] == "d3rlpy_elmur_cli" for module in modules):
                importers.add(path.relative_to(REPO).as_posix())
    assert importers == {"d3rlpy_elmur/__main__.py"}

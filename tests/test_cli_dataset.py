"""`elmur dataset build|list`, against temporary recipe and data roots (the other commands:
test_cli_bench.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import minari
import pytest

from d3rlpy_elmur.datasets import KINDS, RecipeError, get_recipe, load_minari, load_recipes
from d3rlpy_elmur.envs import EXPERT_RETURN_BOUNDS
from d3rlpy_elmur_cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny
id: test/tiny-tmaze-v0
kind: tmaze
env: d3rlpy_elmur/TMaze-v0
expert: tmaze
n_episodes: 6
seed: 0
max_corridor_length: 4
expected_return: 1.0
description: six episodes
"""


@pytest.fixture(autouse=True)
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "tiny.yaml").write_text(TINY)
    data = tmp_path / "minari"
    monkeypatch.setenv("ELMUR_RECIPES_DIR", str(recipes))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(data))
    return {"recipes": recipes, "data": data}


def listing(capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["dataset", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_build_list_and_overwrite(roots: dict[str, Path], capsys) -> None:
    before = listing(capsys)
    assert before["root"] == str(roots["data"].resolve())
    assert [(r["name"], r["built"]) for r in before["recipes"]] == [("tiny", False)]

    assert main(["dataset", "build", "tiny", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "built test/tiny-tmaze-v0" in out and "expert mean return 1.0000" in out
    assert len(load_minari("test/tiny-tmaze-v0").episodes) == 6

    after = listing(capsys)
    row = after["recipes"][0]
    assert row["built"] is True
    assert row["built_info"]["expert_return_mean"] == 1.0
    assert row["built_info"]["recipe"] == "tiny"

    assert main(["dataset", "build", "tiny", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert "Traceback" not in err


def test_overrides_are_recorded(capsys) -> None:
    code = main(["dataset", "build", "tiny", "--n-episodes", "4", "--seed", "5", "--quiet"])
    assert code == 0
    meta = minari.load_dataset("test/tiny-tmaze-v0").storage.metadata["elmur"]
    assert (meta["n_episodes"], meta["seed"]) == (4, 5)
    assert (meta["recipe_n_episodes"], meta["recipe_seed"]) == (6, 0)
    assert main(["dataset", "build", "tiny", "--overwrite", "--quiet"]) == 0
    meta = minari.load_dataset("test/tiny-tmaze-v0").storage.metadata["elmur"]
    assert (meta["n_episodes"], meta["seed"]) == (6, 0)


def test_text_listing_shows_other_local_datasets(capsys) -> None:
    from d3rlpy_elmur.datasets import make_tmaze_dataset

    make_tmaze_dataset("test/other-v0", 2, 2, seed=0)
    assert main(["dataset", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "test/tiny-tmaze-v0" in out and " no" in out
    assert "other local datasets: test/other-v0" in out


def test_unknown_recipe_names_it_and_lists_the_others(capsys) -> None:
    assert main(["dataset", "build", "nope"]) == 1
    err = capsys.readouterr().err
    assert "'nope'" in err and "available: tiny" in err


def test_malformed_recipe_is_reported(roots: dict[str, Path], capsys) -> None:
    (roots["recipes"] / "bad.yaml").write_text("name: bad\nid: x/y-v0\n")
    assert main(["dataset", "list"]) == 1
    assert "missing field(s)" in capsys.readouterr().err
    (roots["recipes"] / "bad.yaml").write_text(
        TINY.replace("name: tiny", "name: bad").replace("kind: tmaze", "kind: maze")
    )
    assert main(["dataset", "list"]) == 1
    assert "kind must be one of" in capsys.readouterr().err


def test_missing_recipes_folder(roots: dict[str, Path], monkeypatch, capsys) -> None:
    monkeypatch.setenv("ELMUR_RECIPES_DIR", str(roots["recipes"] / "missing"))
    assert main(["dataset", "list"]) == 1
    assert "ELMUR_RECIPES_DIR" in capsys.readouterr().err


def test_parser_requires_a_command() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dataset"])


def test_python_dash_m_entry_point(roots: dict[str, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "d3rlpy_elmur", "dataset", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "test/tiny-tmaze-v0" in result.stdout


def test_published_recipes_are_valid(monkeypatch, capsys) -> None:
    monkeypatch.delenv("ELMUR_RECIPES_DIR")
    recipes = load_recipes()
    assert {
        "tmaze-c28",
        "tmaze-c28-small",
        "visual-tmaze-c28",
        "popgym-repeatprevious-easy",
        "popgym-positiononlypendulum-easy",
    } <= set(recipes)
    assert len({r.id for r in recipes.values()}) == len(recipes)
    paper = recipes["tmaze-c28"]
    assert (paper.n_episodes, paper.max_corridor_length) == (2000, 28)
    for recipe in recipes.values():
        assert recipe.kind in KINDS
        if recipe.kind == "popgym":  # the recipe promises what the expert meets
            assert recipe.expected_return >= EXPERT_RETURN_BOUNDS[recipe.env]
    # the small published recipe builds end to end from the CLI
    assert main(["dataset", "build", "tmaze-c28-small", "--quiet"]) == 0
    buffer = load_minari("d3rlpy_elmur/tmaze-c28-small-v0")
    assert len(buffer.episodes) == 200
    with pytest.raises(RecipeError, match="available: popgym-autoencode-easy"):
        get_recipe("tmaze")

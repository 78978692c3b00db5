"""The published POPGym recipes: one per task (16 families x 3 difficulties), each built by
its family's expert, promising what the expert meets; a few build end to end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from d3rlpy_elmur.datasets import Recipe, build_recipe, load_recipes
from d3rlpy_elmur.envs import EXPERT_RETURN_BOUNDS, POPGYM_EXPERT_NAMES
from d3rlpy_elmur.extras import available

LEVELS = ("Easy", "Medium", "Hard")


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recipe]:
    monkeypatch.delenv("ELMUR_RECIPES_DIR", raising=False)
    return {r.name: r for r in load_recipes().values() if r.kind == "popgym"}


def test_every_popgym_task_has_one_recipe(published: dict[str, Recipe]) -> None:
    expected = {
        f"popgym-{family.lower()}-{level.lower()}": (f"popgym-{family}{level}-v0", expert)
        for family, expert in POPGYM_EXPERT_NAMES.items()
        for level in LEVELS
    }
    assert len(expected) == 48 and set(published) == set(expected)
    for name, recipe in published.items():
        env, expert = expected[name]
        assert (recipe.env, recipe.expert, recipe.seed) == (env, expert, 0)
        assert recipe.id == f"d3rlpy_elmur/{name}-v0"
        # MineSweeper's episodes are short and end in a win or on a mine: 3x the episodes
        assert recipe.n_episodes == (3000 if "minesweeper" in name else 1000)
        assert EXPERT_RETURN_BOUNDS[env] <= recipe.expected_return <= 1.0
        assert f"{recipe.n_episodes} episodes of {env}" in recipe.description


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("popgym-minesweeper-easy", "observation-only"),  # MultiDiscrete actions
        ("popgym-repeatfirst-hard", "privileged"),
        pytest.param(
            "popgym-labyrinthexplore-easy",  # MultiDiscrete observations
            "observation-only",
            marks=pytest.mark.skipif(not available("mazelib"), reason="needs mazelib"),
        ),
    ],
)
def test_a_recipe_builds_with_its_expert(name: str, kind: str, minari_root: Path) -> None:
    pytest.importorskip("popgym")
    with warnings.catch_warnings():  # 4 episodes miss the recipe's 1000-episode mean
        warnings.simplefilter("ignore")
        path = build_recipe(name, n_episodes=4)
    metadata = json.loads((path / "data" / "metadata.json").read_text())
    assert metadata["algorithm_name"].startswith(f"{kind} expert")
    assert metadata["elmur"]["recipe"] == name and metadata["elmur"]["n_episodes"] == 4
    assert path.is_relative_to(minari_root)

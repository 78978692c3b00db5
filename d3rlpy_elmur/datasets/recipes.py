"""Dataset recipes: one YAML file per published dataset, shipped in the package.

A recipe fixes everything that determines a dataset (id, environment, expert, episode
count, seed) plus the expert return it is expected to reach. Recipes are read from
``$ELMUR_RECIPES_DIR`` if set, else from ``d3rlpy_elmur/data/recipes`` (in the wheel too; the
source checkout's top-level ``datasets/`` links there).

Fields: ``name`` (= file stem), ``id`` (Minari id), ``kind`` (``tmaze``,
``visual-tmaze`` or ``popgym``), ``env`` (gymnasium id), ``env_kwargs`` (optional),
``expert``, ``n_episodes``, ``seed``, ``max_corridor_length`` (T-Maze kinds),
``expected_return`` (mean expert return per episode), ``return_tolerance`` (optional,
default 0.01), ``description``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from ..envs.popgym_experts import expert_name_for_popgym
from ..envs.registration import TMAZE_ID, VISUAL_TMAZE_ID
from .errors import DatasetNotFoundError, RecipeError
from .writer import dataset_exists, datasets_root

__all__ = [
    "KINDS",
    "Recipe",
    "build_recipe",
    "ensure_dataset",
    "find_recipe_by_id",
    "get_recipe",
    "load_recipes",
    "recipes_dir",
    "required_fields",
]

KINDS = ("tmaze", "visual-tmaze", "popgym")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One published dataset: how to build it and what its expert should score."""

    name: str
    id: str
    kind: str
    env: str
    expert: str
    n_episodes: int
    seed: int
    expected_return: float
    description: str
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_corridor_length: int | None = None
    return_tolerance: float = 0.01
    path: str = ""

    @property
    def is_built(self) -> bool:
        """Whether a dataset with this id exists under the current datasets root."""
        return dataset_exists(self.id)


def recipes_dir() -> Path:
    """``$ELMUR_RECIPES_DIR``, else the recipes shipped in the package (``d3rlpy_elmur/data/
    recipes``, which the source checkout's ``datasets/`` links to)."""
    override = os.environ.get("ELMUR_RECIPES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "data" / "recipes"


def required_fields(fields: dict[str, dataclasses.Field[Any]]) -> list[str]:
    """Names of the dataclass fields that have neither a default nor a default factory."""
    return [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def _parse(path: Path) -> Recipe:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"recipe {path}: cannot read: {e}") from e
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of fields")
    fields = {f.name: f for f in dataclasses.fields(Recipe) if f.name != "path"}
    missing = [k for k in required_fields(fields) if k not in data]
    if missing:
        raise RecipeError(f"recipe {path}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"recipe {path}: unknown field(s) {', '.join(unknown)}")
    try:
        recipe = Recipe(
            name=str(data["name"]),
            id=str(data["id"]),
            kind=str(data["kind"]),
            env=str(data["env"]),
            expert=str(data["expert"]),
            n_episodes=int(data["n_episodes"]),
            seed=int(data["seed"]),
            expected_return=float(data["expected_return"]),
            description=str(data["description"]).strip(),
            env_kwargs=dict(data.get("env_kwargs") or {}),
            max_corridor_length=(
                None
                if data.get("max_corridor_length") is None
                else int(data["max_corridor_length"])
            ),
            return_tolerance=float(data.get("return_tolerance", 0.01)),
            path=str(path),
        )
    except (TypeError, ValueError) as e:
        raise RecipeError(f"recipe {path}: bad field value: {e}") from e
    if recipe.name != path.stem:
        raise RecipeError(f"recipe {path}: name {recipe.name!r} must match the file name")
    if recipe.kind not in KINDS:
        raise RecipeError(f"recipe {path}: kind must be one of {KINDS}, got {recipe.kind!r}")
    if recipe.kind != "popgym" and recipe.max_corridor_length is None:
        raise RecipeError(f"recipe {path}: T-Maze recipes need max_corridor_length")
    expected_env = {"tmaze": TMAZE_ID, "visual-tmaze": VISUAL_TMAZE_ID}.get(recipe.kind)
    if expected_env is not None and recipe.env != expected_env:
        raise RecipeError(f"recipe {path}: kind {recipe.kind} needs env {expected_env}")
    try:
        expert = "tmaze" if expected_env else expert_name_for_popgym(recipe.env)
    except LookupError as e:
        raise RecipeError(f"recipe {path}: {e}") from e
    if recipe.expert != expert:
        raise RecipeError(f"recipe {path}: env {recipe.env} is built by expert {expert!r}")
    return recipe


def load_recipes(directory: Path | None = None) -> dict[str, Recipe]:
    """All recipes by name (sorted), read from :func:`recipes_dir`."""
    directory = recipes_dir() if directory is None else directory
    if not directory.is_dir():
        raise RecipeError(
            f"recipes folder {directory} not found; set ELMUR_RECIPES_DIR to the "
            "folder holding the *.yaml recipes (the repository's datasets/)"
        )
    recipes = [_parse(p) for p in sorted(directory.glob("*.yaml"))]
    return {r.name: r for r in recipes}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; the error lists the available ones."""
    recipes = load_recipes()
    if name not in recipes:
        raise RecipeError(
            f"unknown dataset recipe {name!r} in {recipes_dir()}; available: "
            f"{', '.join(recipes) or 'none'}"
        )
    return recipes[name]


def find_recipe_by_id(dataset_id: str) -> Recipe | None:
    """The recipe that builds ``dataset_id``, if any."""
    for recipe in load_recipes().values():
        if recipe.id == dataset_id:
            return recipe
    return None


def ensure_dataset(name_or_id: str, progress: bool = True) -> str:
    """The Minari id to train on; a recipe's dataset is built first when it is missing.

    ``name_or_id`` is a recipe name (``tmaze-c28``), a recipe's dataset id, or the id of
    any local Minari dataset.
    """
    recipes = load_recipes()
    recipe = recipes.get(name_or_id) or find_recipe_by_id(name_or_id)
    if recipe is None:
        if not dataset_exists(name_or_id):
            known = ", ".join(recipes)
            raise DatasetNotFoundError(
                name_or_id, str(datasets_root()), f"not a recipe either (recipes: {known})"
            )
        return name_or_id
    if not recipe.is_built:
        print(f"building dataset {recipe.name} ({recipe.n_episodes} episodes) ...", flush=True)
        build_recipe(recipe, progress=progress)
    return recipe.id


def build_recipe(
    recipe: Recipe | str,
    *,
    overwrite: bool = False,
    n_episodes: int | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> Path:
    """Build a recipe's dataset (optionally with another episode count or seed, which
    are then recorded in the metadata) and return its folder.

    Warns if the experts' mean return misses ``expected_return`` by more than
    ``return_tolerance`` (only meaningful with the recipe's own episode count).
    """
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    n = recipe.n_episodes if n_episodes is None else n_episodes
    s = recipe.seed if seed is None else seed
    extra = {
        "recipe": recipe.name,
        "expected_return": recipe.expected_return,
        "recipe_n_episodes": recipe.n_episodes,
        "recipe_seed": recipe.seed,
    }
    if recipe.kind == "popgym":
        from .popgym import make_popgym_dataset

        path = make_popgym_dataset(
            recipe.id,
            recipe.env,
            n,
            s,
            overwrite=overwrite,
            progress=progress,
            extra_metadata=extra,
        )
    else:
        from .tmaze import make_tmaze_dataset

        assert recipe.max_corridor_length is not None
        path = make_tmaze_dataset(
            recipe.id,
            n,
            recipe.max_corridor_length,
            s,
            visual=recipe.kind == "visual-tmaze",
            env_kwargs=recipe.env_kwargs,
            overwrite=overwrite,
            progress=progress,
            extra_metadata=extra,
        )
    _check_return(recipe, path)
    return path


def _check_return(recipe: Recipe, path: Path) -> None:
    from minari.dataset.minari_storage import MinariStorage

    from .writer import ELMUR_METADATA_KEY

    info = MinariStorage.read_raw_metadata(path / "data").get(ELMUR_METADATA_KEY, {})
    mean = info.get("expert_return_mean")
    if mean is not None and abs(mean - recipe.expected_return) > recipe.return_tolerance:
        warnings.warn(
            f"recipe {recipe.name}: expert mean return {mean:.4f} differs from the "
            f"expected {recipe.expected_return} by more than {recipe.return_tolerance}",
            stacklevel=2,
        )

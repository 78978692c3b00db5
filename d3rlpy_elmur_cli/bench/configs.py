"""Run configs: one YAML file per algorithm setting, turned into a d3rlpy config.

Schema (every key but ``algo`` optional; the README's "Command line" section has more)::

    base: tmaze_elmur.yaml         # inherit another config (path relative to this file)
    algo: discrete_elmur_dt        # d3rlpy learnable type name (get_type() of the config)
    dataset: tmaze-c28             # recipe name in datasets/, or a local Minari id
    params:                        # fields of the d3rlpy config
      context_size: 10
      sequence_encoder: {type: elmur, params: {use_lru: false}}   # a registered factory
    train: {steps: 3000, steps_per_epoch: 500, seed: 0}
    eval: {env: d3rlpy_elmur/TMaze-v0, max_length: 10000}

``params`` become the config through d3rlpy's own registry decoder (the one ``load_learnable``
uses), so every registered algorithm and factory works without a mapping table here. We add
only what that decoder lacks: unknown keys are errors (dataclasses-json drops them silently,
so a typo would train the default model), and a nested factory may omit ``params`` or be
written as a bare type name (``sequence_encoder: gru``). ``base`` is merged key by key;
a nested factory whose ``type`` changes is replaced, not merged.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from d3rlpy.base import LearnableConfig
from d3rlpy.serializable_config import CONFIG_STORAGE, ConfigMetadata

import d3rlpy_elmur
from d3rlpy_elmur.algos.elmur_dt import ELMURDTConfigBase
from d3rlpy_elmur.datasets.recipes import required_fields
from d3rlpy_elmur.models.factories import ELMURFactory

__all__ = [
    "ConfigError",
    "EvalSpec",
    "RunConfig",
    "TrainSpec",
    "config_reference",
    "configs_dir",
    "load_run_config",
    "make_learnable_config",
    "override_run_config",
    "resolve_config_path",
]

_TOP_KEYS = ("base", "algo", "dataset", "params", "train", "eval", "description")


class ConfigError(ValueError):
    """A run config that cannot be read or names unknown fields (the message says where)."""


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Training budget: exactly ``steps`` updates, logged every ``steps_per_epoch``.

    ``checkpoint_every`` steps (a multiple of the epoch; default: every epoch, 0: never) the
    run saves ``checkpoint.pt``, from which ``elmur resume`` continues exactly.
    """

    steps: int = 1000
    steps_per_epoch: int = 500
    seed: int = 0
    checkpoint_every: int | None = None


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What a config says about its online evaluation; the suite file says the rest (lengths,
    episodes, seeds, return-to-go), the same for every algorithm of a comparison.

    ``env`` is the evaluation env when the dataset does not name one (sweeps); ``max_length``
    caps T-Maze horizons for slow algorithms (longer ones are reported as not evaluated).
    """

    env: str | None = None
    max_length: int | None = None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One algorithm setting read from YAML (after ``base`` merging)."""

    name: str
    algo: str
    params: dict[str, Any]
    dataset: str | None
    train: TrainSpec
    eval: EvalSpec
    description: str = ""
    path: str = ""

    def make_config(self) -> LearnableConfig:
        """The d3rlpy config (validated, unknown keys refused)."""
        return make_learnable_config(self.algo, self.params, where=self.path or self.name)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as YAML-ready data (what ``train`` writes beside the model)."""
        return {
            "algo": self.algo,
            "dataset": self.dataset,
            "params": copy.deepcopy(self.params),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
            "description": self.description,
        }

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def configs_dir() -> Path:
    """``$ELMUR_CONFIGS_DIR``, else the presets and suites shipped in the package
    (``d3rlpy_elmur/data/configs``, which the source checkout's ``examples/configs`` links to)."""
    override = os.environ.get("ELMUR_CONFIGS_DIR")
    if override:
        return Path(override)
    return Path(d3rlpy_elmur.__file__).resolve().parent / "data" / "configs"


def resolve_config_path(name: str | os.PathLike[str], relative_to: Path | None = None) -> Path:
    """A config relative to ``relative_to`` (the folder of the file whose ``base`` it is),
    else as given (relative to the working directory), else in :func:`configs_dir`
    (``.yaml`` may be left out). The error lists every path tried.

    A path is never shortened to its file name to find a preset: ``my/tmaze_elmur.yaml``
    that does not exist is a mistake to report, not the preset ``tmaze_elmur`` to train.
    The error names such a preset instead (a clone's ``examples/configs/X.yaml`` from
    another folder)."""
    raw = Path(name)
    candidates = [] if relative_to is None or raw.is_absolute() else [relative_to / raw]
    candidates += [raw, configs_dir() / raw]
    for candidate in list(candidates):
        if candidate.suffix != ".yaml":
            candidates.append(candidate.with_name(candidate.name + ".yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c.absolute()) for c in dict.fromkeys(candidates))
    message = f"config {str(name)!r} not found; tried {tried}"
    stem, presets = raw.name.removesuffix(".yaml"), _preset_names()
    close = [stem] if stem in presets else difflib.get_close_matches(stem, presets, n=3)
    if close:
        message += f"; did you mean the preset {' or '.join(close)}?"
    else:
        message += f"; the presets are the .yaml files in {configs_dir()}"
    raise ConfigError(message)


def _preset_names() -> list[str]:
    """The configs in :func:`configs_dir` as ``elmur train`` names them (no ``.yaml``)."""
    root = configs_dir()
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def config_reference(config: Path, folder: Path) -> str:
    """How a config written in ``folder`` names ``config`` (as its ``base``): by its path in
    :func:`configs_dir` when it is a shipped preset (found in any install), else by its path
    relative to ``folder``."""
    config, root = config.resolve(), configs_dir().resolve()
    if config.is_relative_to(root):
        return config.relative_to(root).as_posix()
    return os.path.relpath(config, folder)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e6 and 3e-4 (no dot) as strings; configs mean numbers there."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, with 1e6 and 3e-4 read as numbers."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"config {path}: cannot read: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"config {path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_TOP_KEYS)}"
        )
    return data


def _merge(base: Any, override: Any) -> Any:
    """Deep merge of YAML data; a factory ``{type, params}`` of another type replaces."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return copy.deepcopy(override)
    if "type" in base and "type" in override and base["type"] != override["type"]:
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
    return merged


def _merge_params(base: Any, override: Any, where: str) -> Any:
    """``_merge`` of run-config params, with ``override``'s encoder options placed where the
    merged config's encoder takes them: a ``sequence_encoder`` mapping without a type has the
    base's, and the fields that moved into ELMUR's encoder (issue 35), written beside it the
    old way, go into its params (or are dropped for another encoder), so they override the
    base's as they did."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return _merge(base, override)
    inherited = base.get("sequence_encoder")
    inherited = inherited.get("type") if isinstance(inherited, dict) else inherited
    inherited = inherited if isinstance(inherited, str) else None
    encoder = override.get("sequence_encoder")
    if isinstance(encoder, dict) and "type" not in encoder:
        encoder = {"type": inherited or ELMURFactory.get_type(), **encoder}
        override = {**override, "sequence_encoder": encoder}
    try:
        override = ELMURDTConfigBase.upgrade_params(override, inherited)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e
    return _merge(base, override)


def _load_merged(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p.name) for p in (*seen, path))
        raise ConfigError(f"config {path}: circular base chain {chain}")
    data = _read_yaml(path)
    base_name = data.pop("base", None)
    if base_name is None:
        return data
    base = _load_merged(resolve_config_path(base_name, path.parent), (*seen, path))
    base.pop("description", None)  # a description belongs to its own file
    merged = _merge(base, {key: value for key, value in data.items() if key != "params"})
    if "params" in data:
        merged["params"] = _merge_params(base.get("params"), data["params"], f"config {path}")
    return merged


def _integer(value: Any, where: str) -> int:
    """An integer, also written 1e6; a fraction, a bool or a string is refused, naming the
    field (the Python API refuses them too)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return int(value)


def _spec(cls: type[Any], data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    values = dict(data)
    for key in ("steps", "steps_per_epoch", "seed", "checkpoint_every", "max_length"):
        if values.get(key) is not None:
            values[key] = _integer(values[key], f"{where}.{key}")
    return cls(**values)


def load_run_config(name: str | os.PathLike[str]) -> RunConfig:
    """Read a config by path or by name in :func:`configs_dir`, following ``base``."""
    path = resolve_config_path(name)
    data = _load_merged(path)
    if "algo" not in data:
        raise ConfigError(f"config {path}: missing 'algo' (a d3rlpy algorithm type name)")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"config {path}: 'params' must be a mapping")
    run = RunConfig(
        name=path.stem,
        algo=str(data["algo"]),
        params=params,
        dataset=None if data.get("dataset") is None else str(data["dataset"]),
        train=_spec(TrainSpec, data.get("train"), f"config {path}: train"),
        eval=_spec(EvalSpec, data.get("eval"), f"config {path}: eval"),
        description=str(data.get("description") or "").strip(),
        path=str(path),
    )
    run.make_config()  # fail on a bad field now, not after building a dataset
    return run


def override_run_config(run: RunConfig, changes: dict[str, Any], where: str) -> RunConfig:
    """``run`` with ``changes`` (``{"params": {...}, "train": {...}}``) merged in as a ``base``
    child would merge them, and checked: a bad field raises ConfigError naming ``where``."""
    unknown = sorted(set(changes) - {"params", "train"})
    if unknown:
        raise ConfigError(f"{where}: only params and train can be changed, not {unknown}")
    train = {**dataclasses.asdict(run.train), **changes.get("train", {})}
    changed = run.replace(
        params=_merge_params(run.params, changes.get("params", {}), where),
        train=_spec(TrainSpec, train, f"{where}: train"),
    )
    make_learnable_config(changed.algo, changed.params, where=where)
    return changed


# ------------------------------------------------------------------ params -> d3rlpy config
def _registry_of(field: dataclasses.Field[Any]) -> ConfigMetadata | None:
    """The d3rlpy registry a config field decodes with (encoder, optimizer, ...), if any."""
    decoder = field.metadata.get("dataclasses_json", {}).get("decoder")
    if decoder is None:
        return None
    for meta in CONFIG_STORAGE.values():
        if meta.decoder is decoder:
            return meta
    return None


def _normalise(
    registry: ConfigMetadata, value: Any, where: str, parent: str | None = None
) -> dict[str, Any]:
    """``{type, params}`` checked against the registry, its params checked recursively
    (errors in them name ``parent: params`` when given, else ``where.params``)."""
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping) or "type" not in value:
        raise ConfigError(f"{where}: expected {{type: ..., params: ...}} or a type name")
    extra = sorted(set(value) - {"type", "params"})
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)} (use type and params)")
    type_name = str(value["type"])
    params = value.get("params") or {}
    if type_name == "none" and registry.base_cls is not LearnableConfig:
        return {"type": "none", "params": {}}
    if type_name not in registry.config_list:
        known = ", ".join(sorted(registry.config_list))
        raise ConfigError(
            f"{where}: unknown {registry.base_cls.__name__} type {type_name!r}; registered: "
            f"{known} (a plugin's types need its import)"
        )
    cls = registry.config_list[type_name]
    inner = f"{parent}: params" if parent is not None else f"{where}.params"
    upgrade = getattr(cls, "upgrade_params", None)  # a config of fields that have moved
    if callable(upgrade) and isinstance(params, Mapping):
        try:
            params = upgrade(params)
        except ValueError as e:
            raise ConfigError(f"{inner}: {e}") from e
    return {"type": type_name, "params": _check_params(cls, params, inner)}


def _check_params(cls: type[Any], params: Any, where: str) -> dict[str, Any]:
    """``params`` over the serialised defaults of ``cls``, checked field by field.

    Completing every field matters: for a missing factory field dataclasses-json hands the
    default *object* to d3rlpy's decoder, which expects ``{type, params}`` and fails.
    """
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)} of {cls.__name__}; known: "
            f"{', '.join(sorted(fields))}"
        )
    # fields without a default (a warm-up's steps, a cosine schedule's T_max) come from params
    required = required_fields(fields)
    missing = [name for name in required if name not in params]
    if missing:
        raise ConfigError(f"{where}: {cls.__name__} needs {', '.join(missing)}")
    try:
        completed: dict[str, Any] = cls(**{k: params[k] for k in required}).serialize_to_dict()
    except AttributeError:  # d3rlpy cannot serialize an unfitted standard/min_max scaler ...
        plain = {k: v for k, v in params.items() if _registry_of(fields[k]) is None}
        try:  # ... but can one whose statistics the params give
            completed = cls(**plain).serialize_to_dict()
        except (AttributeError, TypeError) as e:
            raise ConfigError(
                f"{where}: {cls.__name__} needs statistics fitted on data, and d3rlpy cannot "
                "write it in a config before that: give them in its params (mean and std, or "
                "minimum and maximum) or scale the dataset beforehand"
            ) from e
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        registry = _registry_of(fields[key])
        if registry is not None and value is not None:
            completed[key] = _normalise(registry, value, f"{where}.{key}")
        else:
            completed[key] = _typed(value, hints.get(key), f"{where}.{key}")
    return completed


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it has the field's type (the Python API's types: an int field takes an
    int, written 1e6 too, a float field any number, a bool field a bool); YAML must not cast
    silently what Python would refuse."""
    allowed = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    if value is None and type(None) in allowed:
        return None
    if bool in allowed:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if int in allowed and float not in allowed:
        return _integer(value, where)
    if float in allowed:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return value
    if str in allowed and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def make_learnable_config(
    algo: str, params: Mapping[str, Any], where: str = "config"
) -> LearnableConfig:
    """``algo`` + ``params`` -> a d3rlpy ``LearnableConfig`` via d3rlpy's registry decoder."""
    import d3rlpy_elmur  # noqa: F401  (registers our algorithms and factories)

    registry = CONFIG_STORAGE[LearnableConfig]
    data = _normalise(registry, {"type": algo, "params": dict(params)}, f"{where}: algo", where)
    try:
        config = registry.decoder(data)
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"{where}: invalid {algo} params: {type(e).__name__}: {e}") from e
    validate = getattr(config, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from e
    assert isinstance(config, LearnableConfig)
    return config

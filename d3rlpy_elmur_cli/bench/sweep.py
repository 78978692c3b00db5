"""Preset sweeps: search fields of a run config on validation episodes, with Optuna.

A search space is a YAML mapping of run-config fields (dotted paths) to their values::

    params.token_format: [obs, rtg_obs_act]      # a list: exactly these values
    params.learning_rate: [0.0003, 0.001]
    params.embed_dim: {low: 32, high: 256, log: true}   # a range (integers if both bounds are)
    params.sequence_encoder.params.lru_blend: {low: 0.2, high: 0.9}   # a factory's option

When every field is a list the sweep walks the grid: its configs are queued in an order
seeded by ``sampler_seed`` (Optuna's ``enqueue_trial``), so each trial is another config and
``trials`` is capped at the grid's size. With a range, Optuna's seeded TPE sampler proposes
the trials.

Every trial trains with the config's budget and training seed, and its score is the mean
over the evaluation rows of the success rate (T-Maze) or else the mean return, on
``episodes`` greedy episodes seeded from ``eval_seed`` (default 5,000,000: apart from the
suites' evaluation seeds, 1,000,000 + 1000 * seed, so no evaluation episode chooses a preset).

Output folder::

    study.db        Optuna's study (SQLite). Running the sweep again on the folder resumes it:
                    finished trials are kept, a trial cut by a crash is run again with the same
                    values and continues from its last checkpoint.
    trials/VALUES/  one folder per config tried: trial.yaml (base + the trial's values, a config
                    ``elmur train`` reads), the run's files (model.d3, logs, checkpoint.pt) and
                    result.json (its score)
    best.yaml       the best trial's config (ties: the earliest trial), for ``elmur train``
                    and the suites
    sweep.json, sweep.md, sweep.png   every trial: values, score, training time
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from d3rlpy_elmur.datasets import ensure_dataset
from d3rlpy_elmur.defaults import DEFAULT_EVAL_SEED, DEFAULT_TARGET_RETURN
from d3rlpy_elmur.evaluation.tasks import check_evaluation, evaluate_model
from d3rlpy_elmur.extras import available, require
from d3rlpy_elmur.io import atomic_write, exclusive_folder, load_learnable

from .backends import check_backend, drive, runs_here
from .configs import (
    ConfigError,
    RunConfig,
    config_reference,
    load_run_config,
    load_yaml,
    override_run_config,
    resolve_config_path,
)
from .loggers import check_loggers
from .run_folder import OutputExistsError, cached_result, run_fingerprint, write_result
from .runinfo import run_info
from .train import train_checkpointed

__all__ = [
    "Dimension",
    "SweepTrial",
    "load_space",
    "run_sweep",
    "run_trial",
]

STUDY_NAME = "sweep"

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched field: ``choices``, or a range ``low``..``high`` (``log`` spaced)."""

    path: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_grid(self) -> bool:
        return bool(self.choices)

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.path, list(self.choices))
        assert self.low is not None and self.high is not None
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.path, self.low, self.high, log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.log)


_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_SCALAR = (str, int, float, bool, type(None))


def load_space(path: str | os.PathLike[str]) -> tuple[Dimension, ...]:
    """Read a search space file (see the module docstring); errors name the field."""
    where = f"search space {path}"
    try:
        data = load_yaml(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{where}: cannot read: {e}") from e
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where}: expected a mapping of fields (params.NAME: [values])")
    dims = []
    for field, spec in data.items():
        at = f"{where}: {field}"
        if not isinstance(field, str) or not _PATH.match(field):
            raise ConfigError(f"{at}: a field is a dotted path such as params.learning_rate")
        if field.split(".")[0] not in ("params", "train"):
            raise ConfigError(f"{at}: only params.* and train.* fields can be searched")
        if isinstance(spec, list):
            if not spec or not all(isinstance(v, _SCALAR) for v in spec):
                raise ConfigError(f"{at}: a list of values needs at least one plain value")
            if len({json.dumps(v) for v in spec}) != len(spec):
                raise ConfigError(f"{at}: a value is listed twice")
            dims.append(Dimension(field, choices=tuple(spec)))
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
            low, high = spec["low"], spec["high"]
            numbers = all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)
            )
            if not numbers or not low < high:
                raise ConfigError(f"{at}: a range needs numbers low < high, got {low!r}, {high!r}")
            if spec.get("log", False) and low <= 0:
                raise ConfigError(f"{at}: a log range needs low > 0")
            dims.append(Dimension(field, low=low, high=high, log=bool(spec.get("log", False))))
        else:
            raise ConfigError(
                f"{at}: expected a list of values or {{low: A, high: B[, log: true]}}, got {spec!r}"
            )
    return tuple(dims)


def grid_size(dims: Sequence[Dimension]) -> int | None:
    """The number of configs of an all-list space; None when a field is a range."""
    if not all(d.is_grid for d in dims):
        return None
    return math.prod(len(d.choices) for d in dims)


def _corners(dims: Sequence[Dimension]) -> list[dict[str, Any]]:
    """Every config of a grid; where a field is a range, its two bounds stand for it."""
    combos = itertools.product(*((d.choices or (d.low, d.high)) for d in dims))
    return [dict(zip([d.path for d in dims], combo, strict=True)) for combo in combos]


def _check_space(run: Any, dims: Sequence[Dimension], where: str) -> None:
    """Every config of a grid (a range: its bounds) must be a valid config of ``run``'s
    algorithm, checked before anything trains."""
    for values in _corners(dims):
        override_run_config(run, _nested(values), where)


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{"params.a.b": 1}`` -> ``{"params": {"a": {"b": 1}}}``."""
    tree: dict[str, Any] = {}
    for path, value in values.items():
        node = tree
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def _slug(values: dict[str, Any]) -> str:
    """A folder name that says the values (a digest where it would be too long)."""
    text = "_".join(f"{path.split('.')[-1]}-{values[path]}" for path in sorted(values))
    text = re.sub(r"[^A-Za-z0-9._=-]+", "", text)
    if len(text) <= 80:
        return text
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SweepTrial:
    """What one trial trains and how it is scored (picklable, for worker processes)."""

    number: int
    values: dict[str, Any]
    config: str  # trial.yaml
    run_dir: str
    dataset: str
    env: str
    episodes: int
    eval_seed: int
    target_return: float
    corridors: tuple[int, ...] = ()
    steps: int | None = None
    seed: int | None = None


def _score(rows: Sequence[dict[str, Any]]) -> float:
    key = "success_rate" if all(row.get("success_rate") is not None for row in rows) else None
    values = [row[key] if key else row["return_mean"] for row in rows]
    return float(sum(values) / len(values))


def _trial_fingerprint(trial: SweepTrial, run: RunConfig) -> str:
    fields = dataclasses.asdict(trial)
    for key in ("number", "run_dir", "config"):
        fields.pop(key)
    return run_fingerprint(fields, run, key="resolved")


def run_trial(
    trial: SweepTrial,
    show_progress: bool = False,
    log: Log | None = None,
    loggers: Sequence[str] = (),
) -> dict[str, Any]:
    """Train (or finish, or reuse) one trial's run and score it; cached in result.json."""
    run_dir = Path(trial.run_dir)
    cached = run_dir / "result.json"
    run = load_run_config(trial.config)
    fingerprint = _trial_fingerprint(trial, run)
    reused = cached_result(cached, fingerprint)
    if reused is not None:
        return reused
    trained = train_checkpointed(
        run,
        run_dir,
        dataset=trial.dataset,
        steps=trial.steps,
        seed=trial.seed,
        resume=True,
        show_progress=show_progress,
        log=None if log is None else (lambda line: log(f"trial {trial.number}: {line}")),
        loggers=loggers,
    )
    rows = evaluate_model(
        load_learnable(trained.model_path),
        trial.env,
        trial.episodes,
        trial.eval_seed,
        corridors=trial.corridors or None,
        target_return=trial.target_return,
    )
    score = _score(rows)
    if not math.isfinite(score):  # Optuna would fail it silently, and nothing would count it
        raise ValueError(f"trial {trial.number} scored {score}: the model's outputs diverged")
    record = {
        "values": trial.values,
        "score": score,
        "fingerprint": fingerprint,
        "train": {
            "steps": trained.steps,
            "seed": trained.seed,
            "seconds": trained.seconds,
            "final_loss": trained.final_loss,
            **({} if trained.resumed_from is None else {"resumed_from": trained.resumed_from}),
        },
        "rows": rows,
    }
    write_result(cached, record)
    return record


# ----------------------------------------------------------------- the study
def _sweep_lock(out: Path) -> contextlib.AbstractContextManager[None]:
    """One sweep process per folder: it alone decides which trials are cut and rerun."""
    return exclusive_folder(
        out,
        ".sweep.lock",
        lambda pid: OutputExistsError(f"another sweep (pid {pid}) runs in {out}"),
    )


def _open_study(out: Path, identity: dict[str, Any], dims: Sequence[Dimension], seed: int) -> Any:
    """The folder's study (created on first use); one of another config or space is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{out / 'study.db'}",
        # a grid is queued trial by trial (_queue_owed_trials): TPE only samples ranges
        sampler=optuna.samplers.TPESampler(seed=seed),
        direction="maximize",
        load_if_exists=True,
    )
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    elif stored != identity:
        changed = sorted(k for k in identity if stored.get(k) != identity[k])
        raise ConfigError(
            f"{out} holds a sweep with other {', '.join(changed)}: use another "
            "out_dir=<folder>, or the same config, space and evaluation to resume it"
        )
    return study


def _queue_owed_trials(
    study: Any, dims: Sequence[Dimension], trials: int, seed: int, log: Log
) -> None:
    """Fail the trials a dead sweep left running, then queue what is still owed: for a grid,
    its configs without a finished trial (in an order seeded by ``seed``), up to ``trials``;
    for a range space, the cut trials' values. A cut trial's folder keeps its checkpoint, so
    the trial queued again continues where it was cut."""
    from optuna.trial import TrialState

    cut = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for frozen in cut:
        study.tell(frozen.number, state=TrialState.FAIL)
        log(f"trial {frozen.number} ({_label(frozen.params)}) was cut; it is run again")
    done = [t.params for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    queued = [
        t.system_attrs["fixed_params"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    ]
    if grid_size(dims) is None:
        owed = [t.params for t in cut if t.params]  # cut before its values: nothing owed
    else:
        owed = _corners(dims)  # a grid: its configs
        random.Random(seed).shuffle(owed)
        # the cut ones first: they continue from their checkpoints
        cut_values = [t.params for t in cut]
        owed.sort(key=lambda values: values not in cut_values)
        owed = [v for v in owed if v not in done][: max(0, trials - len(done))]
    for values in owed:
        if values not in queued:
            study.enqueue_trial(values)
            queued.append(values)


def _write_trial_config(
    out: Path, base: Path, dataset: str, values: dict[str, Any], description: str
) -> Path:
    folder = out / "trials" / _slug(values)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trial.yaml"
    data = {"base": config_reference(base, folder), "dataset": dataset, **_nested(values)}
    text = f"# {description}\n" + yaml.safe_dump(data, sort_keys=False)
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


@dataclasses.dataclass()
class _Budget:
    """Asks and tells a sweep's trials on its study until ``trials`` have finished: trials
    finished and in flight count against the budget, and as many failures as trials stop the
    sweep (a failed trial is told as failed and costs no budget; a grid's config is queued
    again by the next invocation, a range's is not)."""

    study: Any
    dims: Sequence[Dimension]
    grid: bool
    trials: int
    template: SweepTrial  # every field but the trial's own (number, values, paths)
    out: Path
    base: Path
    log: Log
    in_flight: int = 0
    failures: int = 0

    def finished(self) -> int:
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE,)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def ask(self) -> tuple[Any, SweepTrial] | None:
        """The next trial: a queued one, else (ranges only) one TPE proposes; None when the
        budget is spent or the grid's owed configs have all been asked."""
        from optuna.trial import TrialState

        if self.finished() + self.in_flight >= self.trials or self.failures >= self.trials:
            return None
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if self.grid and not waiting:
            return None  # every owed grid config has run (or failed) in this invocation
        trial = self.study.ask()
        values = {d.path: d.suggest(trial) for d in self.dims}
        description = f"sweep trial {trial.number}: {self.base.name} with {_label(values)}"
        path = _write_trial_config(self.out, self.base, self.template.dataset, values, description)
        spec = dataclasses.replace(
            self.template,
            number=trial.number,
            values=values,
            config=str(path),
            run_dir=str(path.parent),
        )
        self.in_flight += 1
        return trial, spec

    def tell(self, job: tuple[Any, SweepTrial], record: dict[str, Any] | Exception) -> None:
        from optuna.trial import TrialState

        trial, spec = job
        self.in_flight -= 1
        if isinstance(record, Exception):
            self.failures += 1
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"trial {spec.number} ({_label(spec.values)}): FAILED ({record!r})")
            return
        trial.set_user_attr("run_dir", spec.run_dir)
        trial.set_user_attr("train_seconds", record["train"]["seconds"])
        trial.set_user_attr("final_loss", record["train"]["final_loss"])
        self.study.tell(trial, record["score"])
        self.log(
            f"[{self.finished()}/{self.trials}] trial {spec.number} ({_label(spec.values)}): "
            f"score {record['score']:.3f}, trained in {record['train']['seconds']:.0f} s"
        )


def run_sweep(
    config: str | os.PathLike[str],
    space: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    trials: int,
    *,
    dataset: str | None = None,
    env: str | None = None,
    episodes: int = 100,
    eval_seed: int = DEFAULT_EVAL_SEED,
    corridors: Sequence[int] = (),
    target_return: float = DEFAULT_TARGET_RETURN,
    steps: int | None = None,
    seed: int | None = None,
    sampler_seed: int = 0,
    jobs: int = 1,
    threads: int = 1,
    backend: str = "local",
    address: str | None = None,
    show_progress: bool = True,
    command: str | None = None,
    log: Log = print,
    loggers: Sequence[str] = (),
) -> dict[str, Any]:
    """Run (or resume) a sweep of ``config`` over ``space`` until ``trials`` trials have
    finished; write ``best.yaml`` and the trial table. Returns the summary (sweep.json).
    Trials run ``jobs`` at a time, in worker processes or as Ray tasks (``backend``; see
    ``bench.backends``).

    Over 60 lines by its keyword signature (``elmur sweep``'s 21 options); the body (checks,
    the study, the driver, the outputs) is 54 lines, each step a call."""
    if trials < 1:
        raise ValueError(f"trials={trials}: run at least one trial")
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: evaluate at least one episode")
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: at least one")
    # everything a trial needs is checked before the first one trains
    require("optuna", "a sweep")
    check_loggers(loggers)
    check_backend(backend, address)
    dims = load_space(space)
    size = grid_size(dims)
    if size is not None and trials > size:
        log(f"the grid has {size} configs: {trials} trials capped at {size}")
        trials = size
    base, run, dataset_name, env_id = _resolve(config, space, dims, dataset, env, corridors)
    dataset_id = ensure_dataset(dataset_name, progress=show_progress)
    template = SweepTrial(
        number=-1,
        values={},
        config="",
        run_dir="",
        dataset=dataset_name,
        env=env_id,
        episodes=episodes,
        eval_seed=eval_seed,
        target_return=target_return,
        corridors=tuple(corridors),
        steps=steps,
        seed=seed,
    )
    identity = _identity(run, dims, dataset_id, template)
    out = Path(out_dir)
    with _sweep_lock(out):
        study = _open_study(out, identity, dims, sampler_seed)
        _queue_owed_trials(study, dims, trials, sampler_seed, log)
        budget = _Budget(study, dims, size is not None, trials, template, out, base, log)
        start = time.perf_counter()
        if budget.finished() < trials and not runs_here(backend, jobs):
            where = "on Ray" if backend == "ray" else "in worker processes"
            log(f"running trials {jobs} at a time, {where} ...")
        drive(
            budget.ask,
            lambda job: run_trial(job[1], show_progress, None, loggers),
            lambda job: (run_trial, (job[1], False, print, loggers)),
            budget.tell,
            backend=backend,
            jobs=jobs,
            threads=threads,
            address=address,
        )
        summary = _summary(study, dims, identity, base, out, time.perf_counter() - start, command)
    _write_outputs(summary, out, base, dataset_name)
    return summary


def _resolve(
    config: str | os.PathLike[str],
    space: str | os.PathLike[str],
    dims: Sequence[Dimension],
    dataset: str | None,
    env: str | None,
    corridors: Sequence[int],
) -> tuple[Path, RunConfig, str, str]:
    """The sweep's base config (its path and contents), dataset and evaluation env, checked
    against the space and the evaluation before anything trains."""
    base = resolve_config_path(config).resolve()
    run = load_run_config(base)
    _check_space(run, dims, f"search space {space}")
    dataset_name = dataset or run.dataset
    if not dataset_name:
        raise ConfigError(
            f"config {base.name} names no dataset; pass dataset=<recipe name or Minari id>"
        )
    env_id = env or _env_of(dataset_name, run.eval.env)
    check_evaluation(env_id, corridors)
    return base, run, dataset_name, env_id


def _identity(
    run: RunConfig, dims: Sequence[Dimension], dataset_id: str, template: SweepTrial
) -> dict[str, Any]:
    """What a study folder was made for, as SQLite gives it back: resuming with anything else
    is refused."""
    identity = {
        "config": run.to_dict(),
        "space": [dataclasses.asdict(d) for d in dims],
        "dataset": dataset_id,
        "env": template.env,
        "episodes": template.episodes,
        "eval_seed": template.eval_seed,
        "corridors": list(template.corridors),
        "target_return": template.target_return,
        "steps": template.steps,
        "seed": template.seed,
    }
    return json.loads(json.dumps(identity, default=str))


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())


def _env_of(dataset: str, configured: str | None) -> str:
    from d3rlpy_elmur.datasets import find_recipe_by_id, load_recipes

    recipe = load_recipes().get(dataset) or find_recipe_by_id(dataset)
    if recipe is not None:
        return recipe.env
    if configured:
        return configured
    raise ConfigError(
        f"dataset {dataset} has no recipe to name its environment; pass env=<gymnasium id>"
    )


# ----------------------------------------------------------------- outputs
def _summary(
    study: Any,
    dims: Sequence[Dimension],
    identity: dict[str, Any],
    base: Path,
    out: Path,
    seconds: float,
    command: str | None,
) -> dict[str, Any]:
    rows = []
    for frozen in study.get_trials(deepcopy=False):
        if frozen.state.name == "WAITING":  # queued, never run: not a trial yet
            continue
        rows.append(
            {
                "number": frozen.number,
                "state": frozen.state.name.lower(),
                "values": {d.path: frozen.params.get(d.path) for d in dims},
                "score": frozen.value,
                "train_seconds": frozen.user_attrs.get("train_seconds"),
                "final_loss": frozen.user_attrs.get("final_loss"),
                "run_dir": frozen.user_attrs.get("run_dir"),
            }
        )
    complete = [row for row in rows if row["state"] == "complete"]
    best = max(complete, key=lambda row: (row["score"], -row["number"])) if complete else None
    return {
        "schema_version": 1,
        "out": str(out),
        "config_file": config_reference(base, Path.cwd()),  # no machine's paths in results
        **identity,
        "trials": rows,
        "best": best,
        "wall_seconds_this_invocation": seconds,
        **run_info(command),
    }


def render_sweep(summary: dict[str, Any]) -> str:
    """sweep.md: the trials, best score in bold (pure: same summary, same text)."""
    paths = [d["path"] for d in summary["space"]]
    best = summary["best"]
    lines = [
        f"# Sweep of {Path(summary['config_file']).name}",
        "",
        f"Dataset `{summary['dataset']}`; score: mean over {summary['episodes']} greedy "
        f"episodes of `{summary['env']}` from seed {summary['eval_seed']} (success rate on "
        "T-Maze, else return); one training run per trial.",
        "",
        "| trial | " + " | ".join(p.split(".")[-1] for p in paths) + " | score | train s | "
        "final loss | state |",
        "|---" * (len(paths) + 5) + "|",
    ]
    for row in summary["trials"]:
        score = "" if row["score"] is None else f"{row['score']:.3f}"
        if best is not None and row["number"] == best["number"]:
            score = f"**{score}**"
        seconds = "" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}"
        loss = "" if row["final_loss"] is None else f"{row['final_loss']:.4g}"
        cells = [str(row["number"]), *(str(row["values"][p]) for p in paths)]
        lines.append("| " + " | ".join([*cells, score, seconds, loss, row["state"]]) + " |")
    if best is not None:
        lines += ["", f"Best: trial {best['number']} ({_label(best['values'])}), `best.yaml`."]
    return "\n".join(lines) + "\n"


def plot_sweep(summary: dict[str, Any], path: str | Path) -> Path | None:
    """Score per finished trial, labelled by its values; None without matplotlib (the plot
    extra) or without a finished trial."""
    rows = [row for row in summary["trials"] if row["state"] == "complete"]
    if not rows or not available("matplotlib"):
        return None
    from .report import _pyplot, _save_figure

    plt = _pyplot()
    best = summary["best"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    labels = [f"{row['number']}: {_label(row['values'])}" for row in rows]
    colours = ["tab:orange" if row["number"] == best["number"] else "tab:blue" for row in rows]
    ax.barh(labels, [row["score"] for row in rows], color=colours)
    ax.invert_yaxis()
    ax.set_xlabel(f"score: mean over {summary['episodes']} validation episodes")
    task = summary["dataset"].split("/")[-1]
    ax.set_title(f"{task}: one training per trial, best in orange", loc="left", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _save_figure(plt, fig, path)


def _write_outputs(summary: dict[str, Any], out: Path, base: Path, dataset: str) -> None:
    with atomic_write(out / "sweep.json", "w") as f:
        f.write(json.dumps(summary, indent=2, default=str) + "\n")
    with atomic_write(out / "sweep.md", "w") as f:
        f.write(render_sweep(summary))
    plot_sweep(summary, out / "sweep.png")
    best = summary["best"]
    if best is None:
        return
    complete = [row for row in summary["trials"] if row["state"] == "complete"]
    data = {"base": config_reference(base, out), "dataset": dataset, **_nested(best["values"])}
    header = (
        f"# Chosen by a sweep of {base.name} ({len(complete)} trials): trial "
        f"{best['number']}, score {best['score']:.4f}\n# (mean over {summary['episodes']} "
        f"episodes of {summary['env']} from seed {summary['eval_seed']}; sweep.md has them all)\n"
    )
    with atomic_write(out / "best.yaml", "w") as f:
        f.write(header + yaml.safe_dump(data, sort_keys=False))

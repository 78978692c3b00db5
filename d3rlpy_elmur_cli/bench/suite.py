"""Running a benchmark suite (``suite_config.py`` reads it): one unit per algorithm, task and
seed, trained and evaluated in worker processes or on Ray, cached by fingerprint, then the
results file and its report."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from d3rlpy_elmur.datasets import ensure_dataset, get_recipe, load_minari, open_minari
from d3rlpy_elmur.datasets.spaces import is_discrete_action_space
from d3rlpy_elmur.evaluation.tasks import (
    check_evaluation,
    evaluate_popgym,
    evaluate_tmaze,
    format_length,
)
from d3rlpy_elmur.io import atomic_write, load_learnable

from .backends import check_backend, drive, runs_here
from .configs import ConfigError, RunConfig, load_run_config
from .loggers import check_loggers
from .report import write_report
from .run_folder import cached_result, run_fingerprint, write_result
from .runinfo import run_info
from .suite_config import Suite
from .train import check_run, train_checkpointed

__all__ = ["RunUnit", "execute_unit", "is_discrete_dataset", "run_suite"]

# ----------------------------------------------------------------- running
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RunUnit:
    """One model to train and evaluate; plain data, so a worker process can run it."""

    index: int  # position in the results: (algorithm, run)
    label: str
    config: str
    run: RunConfig  # ``config`` as loaded, once per suite
    dataset_id: str
    steps: int | None
    seed: int
    run_dir: str
    eval_seed: int
    episodes: int
    target_return: float
    lengths: tuple[int, ...] = ()  # tmaze
    episodes_at: tuple[tuple[int, int], ...] = ()
    max_length: int | None = None
    task: str | None = None  # popgym: recipe name
    env: str | None = None  # popgym: env id
    skipped: str | None = None  # reason not to run at all


def _evaluate_unit(
    unit: RunUnit, algo: Any, show_progress: bool, log: Log | None
) -> list[dict[str, Any]]:
    """The unit's evaluation rows; ``log`` (already labelled with the run) gets a line per
    T-Maze length."""
    if unit.task is None:
        return evaluate_tmaze(
            algo,
            unit.lengths,
            unit.episodes,
            unit.eval_seed,
            episodes_at=dict(unit.episodes_at),
            max_length=unit.max_length,
            target_return=unit.target_return,
            show_progress=show_progress,
            log=log,
        )
    assert unit.env is not None
    return [
        evaluate_popgym(
            algo,
            unit.env,
            unit.episodes,
            unit.eval_seed,
            target_return=unit.target_return,
            show_progress=show_progress,
        )
    ]


def execute_unit(
    unit: RunUnit,
    resume: bool,
    show_progress: bool,
    announce: bool = False,
    loggers: Sequence[str] = (),
    attempt: str | None = None,
) -> dict[str, Any]:
    """Train (or, with ``resume``, reuse) one model and evaluate it; cached in
    ``run_dir/result.json``. ``announce`` prints a line when training starts; ``loggers``
    go to ``train_run`` (tracking does not change a result: not in its fingerprint).

    ``attempt`` names one submission of the run to a backend. A run folder that already holds
    it means the backend is running the run again because its worker died: the call then
    continues from the run's checkpoint, whatever ``resume`` says. (Over 60 lines with this
    text; the body, 47, reads top to bottom: cache, train, evaluate, record.)"""
    base = _base_record(unit)
    if unit.skipped:
        return {**base, "results": [{"task": unit.env, "skipped": unit.skipped}]}
    run_dir = Path(unit.run_dir)
    cached = run_dir / "result.json"
    if attempt is not None and _resubmitted(run_dir, attempt):
        resume = True
    fingerprint = _fingerprint(unit)
    record = cached_result(cached, fingerprint) if resume else None
    if record is not None:
        return {**record, "reused": True}
    # a run trained again must not leave the old result for a retry or a --resume to reuse
    cached.unlink(missing_ok=True)
    label = f"{unit.label}{', ' + unit.task if unit.task else ''}, seed {unit.seed}: "
    log = (lambda line: _print(label + line)) if announce else None  # one label per run
    if log is not None:
        log("training ...")
    trained = train_checkpointed(
        unit.run,
        run_dir,
        dataset=unit.dataset_id,
        steps=unit.steps,
        seed=unit.seed,
        resume=resume,
        show_progress=show_progress,
        # a line per epoch where there are no progress bars (worker processes)
        log=None if show_progress else log,
        loggers=loggers,
    )
    algo = load_learnable(trained.model_path)  # evaluate what was saved
    record = {
        **base,
        "fingerprint": fingerprint,
        "eval_seed": unit.eval_seed,
        "run_dir": str(run_dir),
        "train": {
            "steps": trained.steps,
            "seconds": trained.seconds,
            "updates_per_second": trained.updates_per_second,
            "final_loss": trained.final_loss,
            "dataset": trained.dataset,
            **({} if trained.resumed_from is None else {"resumed_from": trained.resumed_from}),
        },
        "results": _evaluate_unit(unit, algo, show_progress, None if show_progress else log),
    }
    write_result(cached, record)
    return record


def _resubmitted(run_dir: Path, attempt: str) -> bool:
    """Whether ``run_dir`` already holds this submission of its run (a backend running it
    again after its worker died); if not, marks the folder with it."""
    marker = run_dir / ".attempt"
    if marker.is_file() and marker.read_text() == attempt:
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(marker, "w") as f:
        f.write(attempt)
    return False


def _base_record(unit: RunUnit) -> dict[str, Any]:
    return {"seed": unit.seed, **({"task": unit.task} if unit.task else {})}


def _failed_record(unit: RunUnit, error: Exception) -> dict[str, Any]:
    """A run that raised: every cell says so, and no result.json is written, so
    ``--resume`` tries it again."""
    if unit.task is None:
        rows = [{"length": n, "skipped": "run failed"} for n in unit.lengths]
    else:
        rows = [{"task": unit.env, "skipped": "run failed"}]
    return {**_base_record(unit), "error": f"{type(error).__name__}: {error}", "results": rows}


def _fingerprint(unit: RunUnit) -> str:
    """What a cached result depends on: the resolved config, budget, data and evaluation."""
    fields = dataclasses.asdict(unit)
    for key in ("index", "label", "run_dir", "run"):
        fields.pop(key)
    return run_fingerprint(fields, unit.run)


def _print(line: str) -> None:
    print(line, flush=True)


def _describe(unit: RunUnit, record: dict[str, Any]) -> str:
    parts = []
    for row in record["results"]:
        name = format_length(row["length"]) if "length" in row else row.get("task", "?")
        if "skipped" in row:
            parts.append(f"T={name} {row['skipped']}" if "length" in row else row["skipped"])
        elif row.get("success_rate") is not None:
            parts.append(f"T={name} {row['success_rate']:.2f}")
        else:
            parts.append(f"return {row['return_mean']:.3f}")
    where = f"{unit.label}, {unit.task + ', ' if unit.task else ''}seed {unit.seed}"
    if "error" in record:
        return f"{where}: FAILED ({record['error']})"
    if "train" not in record:
        return f"{where}: skipped ({', '.join(parts)})"
    return f"{where}: trained in {record['train']['seconds']:.0f} s; {', '.join(parts)}"


def _plan(
    suite: Suite, out: Path, seeds: Sequence[int], show_progress: bool
) -> tuple[dict[str, Any], list[RunUnit]]:
    """The results skeleton (one record per algorithm) and the runs that fill it."""
    header: dict[str, Any] = {"algorithms": []}
    units: list[RunUnit] = []
    tasks = _plan_tasks(suite, header, show_progress)
    load = functools.cache(load_run_config)  # each config file loaded once per plan
    for entry in suite.algorithms:
        run = load(entry.config)
        steps = entry.steps if entry.steps is not None else suite.steps
        max_length = entry.max_length if entry.max_length is not None else run.eval.max_length
        header["algorithms"].append(
            {
                "label": entry.label,
                "config": Path(entry.config).name,
                "algo": run.algo,
                "train_steps": steps if steps is not None else run.train.steps,
                "max_length": max_length,
                "runs": [],
            }
        )
        for task in tasks:
            config, skipped = entry.config, None
            if task["name"] is not None:
                config, skipped = entry.config_for(
                    task["name"], is_discrete_dataset(task["dataset"])
                )
            folder = (
                Path(config).stem if task["name"] is None else f"{task['name']}/{Path(config).stem}"
            )
            for seed in seeds:
                units.append(
                    RunUnit(
                        index=len(header["algorithms"]) - 1,
                        label=entry.label,
                        config=config,
                        run=load(config),
                        dataset_id=task["dataset"],
                        steps=steps,
                        seed=seed,
                        run_dir=str(out / "runs" / folder / f"seed{seed}"),
                        eval_seed=suite.eval_seed_for(seed),
                        episodes=suite.episodes,
                        target_return=suite.target_return,
                        lengths=suite.lengths,
                        episodes_at=tuple(sorted(suite.episodes_at.items())),
                        max_length=max_length,
                        task=task["name"],
                        env=task["env"],
                        skipped=skipped,
                    )
                )
    return header, units


def _plan_tasks(suite: Suite, header: dict[str, Any], show_progress: bool) -> list[dict[str, Any]]:
    """The suite's tasks (name, env, dataset id; T-Maze: one unnamed task), their datasets
    built where missing and described in ``header``."""
    if suite.kind == "tmaze":
        assert suite.dataset is not None
        dataset_id = ensure_dataset(suite.dataset, progress=show_progress)
        header.update(dataset=dataset_id, lengths=list(suite.lengths))
        return [{"name": None, "env": None, "dataset": dataset_id}]
    tasks = []
    for name in suite.tasks:
        recipe = get_recipe(name)
        tasks.append({"name": name, "env": recipe.env, "dataset": ensure_dataset(name)})
    header["tasks"] = tasks
    return tasks


def _preflight(units: Sequence[RunUnit]) -> None:
    """Checks every run's config against its dataset before the first one trains, and names
    every problem at once."""
    buffers: dict[str, Any] = {}
    problems: list[str] = []
    checked: set[tuple[str, str]] = set()
    for unit in units:
        if unit.skipped or (unit.config, unit.dataset_id) in checked:
            continue
        checked.add((unit.config, unit.dataset_id))
        if unit.dataset_id not in buffers:
            buffers[unit.dataset_id] = load_minari(unit.dataset_id)
        try:
            check_run(unit.run, buffers[unit.dataset_id])
        except (ConfigError, ValueError) as e:
            problems.append(f"{unit.label}{', ' + unit.task if unit.task else ''}: {e}")
    if problems:
        raise ConfigError(
            "the suite cannot run as configured, nothing was trained:\n  - "
            + "\n  - ".join(problems)
        )


def run_suite(
    suite: Suite,
    out_dir: str | os.PathLike[str],
    seeds: Sequence[int],
    *,
    command: str | None = None,
    resume: bool = False,
    show_progress: bool = True,
    jobs: int = 1,
    threads: int = 1,
    log: Log = print,
    loggers: Sequence[str] = (),
    backend: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate every algorithm of ``suite`` for every seed (and task).

    ``results.json``, ``results.md`` and the plot are rewritten after every run, so a long
    run shows its progress and keeps what it finished (``resume`` then skips those runs).
    ``jobs`` > 1 runs that many models at once in worker processes of ``threads`` torch
    threads each; ``backend="ray"`` runs each model as a Ray task (``bench.backends``). There
    the runs' own progress bars are off; a bar counts finished runs and a line is logged for
    each.

    Over 60 lines by its keyword signature (``elmur bench``'s options) and this text; the
    body is 53 lines."""
    # what every run needs is checked before the first one trains (or the folder is made)
    check_loggers(loggers)
    check_backend(backend, address)
    for name in suite.tasks:
        check_evaluation(get_recipe(name).env)  # a POPGym task needs the popgym extra
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _header(suite, seeds, jobs, command)
    header, units = _plan(suite, out, seeds, show_progress)
    _preflight(units)
    results.update(header)
    collector = _Collector(results, units, out, time.perf_counter(), log)
    order = iter(_execution_order(units))
    serial = runs_here(backend, jobs)
    if not serial:
        where = "as Ray tasks" if backend == "ray" else f"{jobs} at a time"
        log(f"running {len(units)} runs, {where} ...")

    def here(position: int) -> dict[str, Any]:
        unit = units[position]
        log(
            f"[{len(collector.finished) + 1}/{len(units)}] {unit.label}"
            f"{', ' + unit.task if unit.task else ''}, seed {unit.seed}: training ..."
        )
        return execute_unit(unit, resume, show_progress, loggers=loggers)

    def remote(position: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        # a fresh attempt name per submission: a rerun after a dead worker resumes
        return execute_unit, (units[position], resume, False, True, loggers, uuid.uuid4().hex)

    from tqdm.auto import tqdm

    with tqdm(total=len(units), desc="runs", disable=serial or not show_progress) as bar:

        def tell(position: int, record: dict[str, Any] | Exception) -> None:
            if isinstance(record, Exception):  # one bad run does not cost the others
                record = _failed_record(units[position], record)
            collector.add(position, record)
            bar.update()

        # every run is submitted at once: the pool (or Ray's cluster) runs as many as it can
        drive(
            lambda: next(order, None),
            here,
            remote,
            tell,
            backend=backend,
            jobs=jobs,
            threads=threads,
            address=address,
            in_flight=len(units),
        )
    _save(results, out, collector.start)
    return results


def _header(suite: Suite, seeds: Sequence[int], jobs: int, command: str | None) -> dict[str, Any]:
    """The fields of ``results.json`` that describe the suite and this invocation."""
    return {
        "schema_version": 1,
        "suite": suite.name,
        "kind": suite.kind,
        "quick": suite.quick,
        "description": suite.description,
        "seeds": list(seeds),
        "episodes": suite.episodes,
        "episodes_at": {str(k): v for k, v in suite.episodes_at.items()},
        "target_return": suite.target_return,
        "eval_seeds": {str(s): suite.eval_seed_for(s) for s in seeds},
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "jobs": jobs,
        **run_info(command),
    }


@dataclasses.dataclass()
class _Collector:
    """Takes each finished run into ``results`` (in plan order, whatever order the workers
    finish in), logs it and saves the results files."""

    results: dict[str, Any]
    units: Sequence[RunUnit]
    out: Path
    start: float
    log: Log
    finished: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def add(self, position: int, record: dict[str, Any]) -> None:
        results = self.results
        if record.pop("reused", False):
            results["reused_runs"] = results.get("reused_runs", 0) + 1
        if "error" in record:
            results["failed_runs"] = results.get("failed_runs", 0) + 1
        self.finished[position] = record
        self.log(
            f"[{len(self.finished)}/{len(self.units)}] {_describe(self.units[position], record)}"
        )
        for algo in results["algorithms"]:
            algo["runs"] = []
        for i in sorted(self.finished):
            results["algorithms"][self.units[i].index]["runs"].append(self.finished[i])
        _save(results, self.out, self.start)


def _execution_order(units: Sequence[RunUnit]) -> list[int]:
    """Plan positions seed by seed, then task by task, then algorithm by algorithm.

    A suite cut short then has every algorithm on the same seeds and tasks, a fair
    comparison as far as it got, rather than all seeds of the first algorithms only.
    """
    seeds = list(dict.fromkeys(u.seed for u in units))
    tasks = list(dict.fromkeys(u.task for u in units))
    return sorted(
        range(len(units)),
        key=lambda p: (seeds.index(units[p].seed), tasks.index(units[p].task), units[p].index),
    )


def is_discrete_dataset(dataset_id: str) -> bool:
    """Whether the Minari dataset ``dataset_id`` has discrete actions."""
    return is_discrete_action_space(open_minari(dataset_id).action_space)


def _save(results: dict[str, Any], out: Path, start: float) -> None:
    results["wall_seconds"] = time.perf_counter() - start
    write_report(copy.deepcopy(results), out)

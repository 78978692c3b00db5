"""The order a suite trains its runs in (results keep the plan's order)."""

from __future__ import annotations

from d3rlpy_elmur_cli.bench.configs import EvalSpec, RunConfig, TrainSpec
from d3rlpy_elmur_cli.bench.suite import RunUnit, _execution_order

_RUN = RunConfig(name="c", algo="bc", params={}, dataset="d", train=TrainSpec(), eval=EvalSpec())


def _unit(index: int, task: str, seed: int) -> RunUnit:
    return RunUnit(
        index=index,
        label=f"algo{index}",
        config="c.yaml",
        run=_RUN,
        dataset_id="d",
        steps=1,
        seed=seed,
        run_dir=f"runs/{task}/algo{index}/seed{seed}",
        eval_seed=0,
        episodes=1,
        target_return=1.0,
        task=task,
    )


def test_a_suite_runs_seed_by_seed_then_task_by_task() -> None:
    # the plan is algorithm-major, as results.json lists runs
    units = [_unit(a, t, s) for a in range(3) for t in ("rp", "cp") for s in (0, 1)]
    ran = [(units[p].seed, units[p].task, units[p].index) for p in _execution_order(units)]
    # every algorithm finishes seed 0 on every task before any seed-1 run starts
    assert ran[:6] == [
        (0, "rp", 0),
        (0, "rp", 1),
        (0, "rp", 2),
        (0, "cp", 0),
        (0, "cp", 1),
        (0, "cp", 2),
    ]
    assert sorted(ran) == sorted((u.seed, u.task, u.index) for u in units)
    assert len(set(_execution_order(units))) == len(units)

"""`drive`, the one loop behind the bench's runs and the sweep's trials: every job asked for
is told once, failures included, within the in-flight bound, here or in worker processes."""

from __future__ import annotations

import os
from typing import Any

import pytest

from d3rlpy_elmur_cli.bench import backends
from d3rlpy_elmur_cli.bench.backends import drive


def square_or_fail(x: int) -> tuple[int, int]:
    """A worker's job: x * x and the pid it ran in; 3 fails."""
    if x == 3:
        raise ValueError("three")
    return x * x, os.getpid()


def asker(jobs: list[int]) -> Any:
    queue = iter(jobs)
    return lambda: next(queue, None)


def test_jobs_of_one_run_here_in_order_and_a_failure_is_told_not_raised() -> None:
    told: list[tuple[int, Any]] = []
    drive(
        asker([1, 2, 3, 4]),
        square_or_fail,
        lambda job: pytest.fail("nothing is submitted when jobs run here"),
        lambda job, result: told.append((job, result)),
        backend="local",
        jobs=1,
        threads=1,
    )
    assert [job for job, _ in told] == [1, 2, 3, 4]
    assert [result[0] for job, result in told if job != 3] == [1, 4, 16]
    assert all(result[1] == os.getpid() for job, result in told if job != 3)
    assert isinstance(dict(told)[3], ValueError)


def test_worker_processes_run_every_job_within_the_bound_and_tell_each_once() -> None:
    told: dict[int, Any] = {}
    submitted: list[int] = []
    most_in_flight = 0

    def remote(job: int) -> tuple[Any, tuple[Any, ...]]:
        nonlocal most_in_flight
        submitted.append(job)
        most_in_flight = max(most_in_flight, len(submitted) - len(told))
        return square_or_fail, (job,)

    def tell(job: int, result: Any) -> None:
        assert job not in told
        told[job] = result

    drive(
        asker(list(range(7))),
        lambda job: pytest.fail("jobs > 1 run in workers"),
        remote,
        tell,
        backend="local",
        jobs=2,
        threads=1,
        in_flight=3,
    )
    assert sorted(told) == list(range(7)) and sorted(submitted) == list(range(7))
    assert most_in_flight == 3
    assert isinstance(told[3], ValueError)
    assert {told[j][0] for j in told if j != 3} == {j * j for j in range(7) if j != 3}
    assert all(told[j][1] != os.getpid() for j in told if j != 3)  # another process


def test_a_job_asked_for_after_others_end_still_runs_and_nothing_starts_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a sweep's ask says None while its budget is in flight, then asks again when one fails
    started: list[str] = []
    real = backends.make_executor

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append("executor")
        return real(*args, **kwargs)

    monkeypatch.setattr(backends, "make_executor", counting)
    told: list[int] = []

    def remote(job: int) -> tuple[Any, tuple[Any, ...]]:
        return square_or_fail, (job,)

    drive(
        lambda: None, square_or_fail, remote, lambda j, r: None, backend="local", jobs=2, threads=1
    )
    assert started == []
    budget = {"left": 2, "refilled": 0}

    def ask() -> int | None:
        if budget["left"] == 0:
            return None
        budget["left"] -= 1
        return 3 if budget["left"] == 1 else 5

    def tell(job: int, result: Any) -> None:
        told.append(job)
        if isinstance(result, Exception) and not budget["refilled"]:
            budget["left"] = budget["refilled"] = 1  # the failure's place is asked for again

    drive(ask, square_or_fail, remote, tell, backend="local", jobs=2, threads=1)
    assert started == ["executor"]
    assert sorted(told) == [3, 5, 5]

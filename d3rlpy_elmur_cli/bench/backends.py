"""Where the bench's runs and the sweeps' trials execute, and the one loop that drives them.

Both backends are a ``concurrent.futures.Executor``, and :func:`drive` runs the bench's runs
and the sweep's trials on either (or in this process, one at a time):

- ``local`` (the default): ``jobs`` spawned worker processes on this machine.
- ``ray``: one Ray task per run on a Ray cluster (``pip install 'd3rlpy-elmur[ray]'``), each
  asking for ``threads`` CPUs (one when torch keeps its own count). ``address`` names a running
  cluster (``ray start --head`` there, with ``RAY_worker_niceness=0`` in its environment or
  Ray runs the workers at low priority; "auto" finds one started on this machine); without it
  a local cluster is started for the command and stopped after. The tasks see the driver's
  dataset, recipe and config roots (``MINARI_DATASETS_PATH``, ``ELMUR_RECIPES_DIR``,
  ``ELMUR_CONFIGS_DIR``) and run in the driver's working directory, so they write run
  folders where the driver would: on a cluster these paths must be on a filesystem every node
  shares. A task whose worker process dies is run
  again (up to ``RAY_RETRIES`` times); the bench and the sweep make such a rerun continue from
  the run's last checkpoint. An exception raised by a run is not retried.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable
from typing import Any, TypeVar

from d3rlpy_elmur.extras import require

from .workers import configure_worker, worker_init

__all__ = [
    "BACKENDS",
    "RAY_RETRIES",
    "RayExecutor",
    "check_backend",
    "drive",
    "make_executor",
    "runs_here",
]

Job = TypeVar("Job")

BACKENDS = ("local", "ray")  # the names `backend` takes (the module docstring)
RAY_RETRIES = 3
_FORWARDED_ENV = ("MINARI_DATASETS_PATH", "ELMUR_RECIPES_DIR", "ELMUR_CONFIGS_DIR")


def check_backend(backend: str, address: str | None = None) -> None:
    """Refuse, before any run, a backend that cannot start: an unknown name, ``address``
    without Ray, Ray not installed."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "local" and address is not None:
        raise ValueError(f"address={address!r} names a Ray cluster: it is for backend='ray' only")
    if backend == "ray":
        require("ray", "the ray backend")


def make_executor(
    backend: str, jobs: int, threads: int, address: str | None = None
) -> concurrent.futures.Executor:
    """An executor of ``backend`` (see the module docstring). ``jobs`` bounds the local pool;
    on Ray the bench submits every run and the cluster runs as many at once as its CPUs
    allow, while a sweep keeps ``jobs`` trials in flight (it asks Optuna for one as another
    ends)."""
    check_backend(backend, address)
    if backend == "local":
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),  # a forked torch can hang
            initializer=worker_init,
            initargs=(threads,),
        )
    return RayExecutor(threads, address)


def runs_here(backend: str, jobs: int) -> bool:
    """Whether :func:`drive` runs the jobs in this process, one at a time (no executor)."""
    return jobs <= 1 and backend == "local"


def drive(
    ask: Callable[[], Job | None],
    here: Callable[[Job], Any],
    remote: Callable[[Job], tuple[Callable[..., Any], tuple[Any, ...]]],
    tell: Callable[[Job, Any], None],
    *,
    backend: str,
    jobs: int,
    threads: int,
    address: str | None = None,
    in_flight: int | None = None,
) -> None:
    """Run jobs until ``ask`` returns None and every job asked for is told.

    With ``jobs`` = 1 on ``local`` each job runs here, ``here(job)``, one at a time; otherwise
    ``remote(job)`` names a picklable function and its arguments, run on ``backend``'s
    executor with at most ``in_flight`` jobs submitted and not yet told (default ``jobs``).
    ``tell(job, result)`` receives the job's return value, or the exception it raised: one
    failed job does not stop the others. No executor (no pool, no cluster) starts when the
    first ``ask`` has nothing."""
    asked = ask()
    if asked is None:
        return
    if runs_here(backend, jobs):
        while asked is not None:
            try:
                result: Any = here(asked)
            except Exception as e:  # one bad job does not cost the others
                result = e
            tell(asked, result)
            asked = ask()
        return
    limit = jobs if in_flight is None else in_flight
    pending: Any = asked  # asked for, not yet submitted
    with make_executor(backend, jobs, threads, address) as pool:
        running: dict[concurrent.futures.Future[Any], Any] = {}
        while True:
            while len(running) < limit:  # ask only when a job can start
                job = pending if pending is not None else ask()
                pending = None
                if job is None:
                    break
                fn, args = remote(job)
                running[pool.submit(fn, *args)] = job
            if not running:
                return
            done, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                job = running.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # one bad job does not cost the others
                    result = e
                tell(job, result)


def _in_ray_task(fn: Callable[..., Any], threads: int, cwd: str, *args: Any) -> Any:
    # the driver's folder: relative run folders and configs mean what they mean there
    os.chdir(cwd)
    configure_worker(threads)
    return fn(*args)


class RayExecutor(concurrent.futures.Executor):
    """Each ``submit`` is one Ray task; its future is Ray's ``ObjectRef.future()``."""

    def __init__(self, threads: int, address: str | None = None) -> None:
        require("ray", "the ray backend")
        import ray

        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started and address is None:
            # Ray runs its workers at niceness 15 by default: beside any other busy process
            # (another bench, a test suite) a run then slowed ~20x here; ours train at 0.
            ray.init(include_dashboard=False, _system_config={"worker_niceness": 0})
        elif self._started:
            ray.init(address=address, include_dashboard=False)
        env = {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}
        self._task = ray.remote(_in_ray_task).options(
            num_cpus=max(threads, 1),
            max_retries=RAY_RETRIES,
            retry_exceptions=False,
            runtime_env={"env_vars": env} if env else None,
        )
        self._threads = threads
        self._cwd = os.getcwd()
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError("RayExecutor.submit takes positional arguments only")
        ref = self._task.remote(fn, self._threads, self._cwd, *args)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        ray = self._ray
        if self._refs and cancel_futures:
            _, pending = ray.wait(self._refs, num_returns=len(self._refs), timeout=0)
            for ref in pending:
                ray.cancel(ref, force=True)
        elif self._refs and wait:
            ray.wait(self._refs, num_returns=len(self._refs))
        self._refs = []
        if self._started:
            ray.shutdown()
            self._started = False

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool | None:
        # Ctrl-C or an error in the driver: stop the cluster's tasks, do not wait for them
        self.shutdown(wait=kind is None, cancel_futures=kind is not None)
        return None

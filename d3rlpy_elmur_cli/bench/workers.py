"""Worker processes of the bench and the sweeps (spawned, one model each)."""

from __future__ import annotations

import os
import time

__all__ = ["configure_worker", "exit_with_parent", "worker_init"]


def configure_worker(threads: int) -> None:
    """A worker's torch threads (0 keeps torch's) and quiet d3rlpy logs (a line per epoch is
    logged instead)."""
    import logging

    import structlog
    import torch

    if threads:
        torch.set_num_threads(threads)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def worker_init(threads: int) -> None:
    """Set up a spawned worker process: :func:`configure_worker`, and an exit when the process
    that started it ends."""
    configure_worker(threads)
    exit_with_parent()


def exit_with_parent(interval: float = 1.0) -> None:
    """A worker ends when the process that started it does (killed, not only Ctrl-C'd):
    otherwise it trains on, holding its run folder's lock, and a new bench or sweep cannot
    take that run. What it trained is not lost: the run continues from its last checkpoint."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

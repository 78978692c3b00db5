"""What a result was produced on: hardware, versions, commit and command line."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["commit_hash", "run_info"]

_REPO = Path(__file__).resolve().parents[2]


def commit_hash() -> str | None:
    """HEAD of the source checkout, with ``+dirty`` if files differ; None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = "+dirty" if status.returncode == 0 and status.stdout.strip() else ""
    return head.stdout.strip() + dirty


def run_info(command: str | None = None) -> dict[str, Any]:
    """Platform, CPU count, torch threads, package versions, commit and command."""
    import d3rlpy

    from d3rlpy_elmur import __version__

    return {
        "hardware": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "d3rlpy": d3rlpy.__version__,
            "d3rlpy_elmur": __version__,
        },
        "commit": commit_hash(),
        "command": command if command is not None else " ".join(sys.argv),
    }

"""Every dataset test writes under its own temporary MINARI_DATASETS_PATH, never ~/.minari."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root

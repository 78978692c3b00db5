"""Every design note the code cites is in the repository, at the section it names."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("d3rlpy_elmur", "tests", "examples", "benchmarks")


def _cited_files() -> list[Path]:
    files = [REPO / "README.md"]
    for folder in SOURCES:
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".yaml", ".md")]
    return files


def test_code_cites_design_notes_that_exist_in_the_repository() -> None:
    sections = set(re.findall(r"^## (\d+)\.", (REPO / "docs" / "design.md").read_text(), re.M))
    cited: set[str] = set()
    for path in _cited_files():
        text = path.read_text()
        # the notes outside the repository that the code used to cite
        assert "ELMUR" + ".md" not in text, f"{path} cites a file outside the repository"
        for first, last in re.findall(r"docs/design\.md §(\d+)(?:-(\d+))?", text):
            cited.update(str(n) for n in range(int(first), int(last or first) + 1))
    assert cited and cited <= sections, f"cited {sorted(cited)}, present {sorted(sections)}"

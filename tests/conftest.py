import json
import os
from pathlib import Path

import pytest
import torch

# Two cores: one intra-op thread per test process is faster and keeps runs comparable.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `make mutation`, run a mutant's fastest tests first.

    mutmut stops at the first failure, so a killed mutant then costs its cheapest failing test
    rather than whichever slow test pytest happened to collect first.
    """
    stats = Path("mutmut-stats.json")
    if "MUTANT_UNDER_TEST" not in os.environ or not stats.exists():
        return
    durations = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))

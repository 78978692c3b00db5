"""Memory past the training length on recall tasks with variable delays (issue 33).

Delays are uniform in 1..S*K - 2, so many training decisions fit the attention window, while at
10x-100x the training length only memory can answer. Both tests train the library defaults
(``DiscreteELMURDTConfig`` with only K and S set: attention window 2, the write gate with its
log cost), as `benchmarks/extrapolation.py` does (README "Extrapolation on recall tasks other
than T-Maze"). The defaults before issue 33 (W = K, no gate) lost a whole cue at 10x in the
first test on two of three training seeds (0.78, 1.00, 0.67 for seeds 1, 2, 3).
"""

from __future__ import annotations

import pytest
import torch
from d3rlpy.logging import NoopAdapterFactory

from d3rlpy_elmur import DiscreteELMURDTConfig, evaluate
from d3rlpy_elmur.envs.recall import RecallTask, balanced_cue_options, recall_dataset

K, S = 5, 3
LONGEST = S * K - 1  # steps of the longest training episode


def assert_recalls(task_name: str, updates: int, multiple: int) -> None:
    """Trains the defaults on 300 episodes of the task (delays uniform in 1..LONGEST - 1,
    training seed 1) and asks for 0.95 success at the longest training episode and
    ``multiple`` times it."""
    task = RecallTask.from_name(task_name)
    dataset = recall_dataset(task, 300, max_delay=LONGEST - 1, seed=0)
    torch.manual_seed(1)
    algo = DiscreteELMURDTConfig(context_size=K, num_segments=S).create()
    algo.fit(
        dataset,
        n_steps=updates,
        n_steps_per_epoch=updates,
        seed=1,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
    )
    for length in (LONGEST, multiple * LONGEST):
        venv = task.make_vector_env(30, delay=length - 1)
        options = balanced_cue_options(task.num_cues, delay=length - 1)
        result = evaluate(algo, venv, n_episodes=60, seed=7, reset_options=options)
        assert result["success_rate"] >= 0.95, (length, result["success_rate"])


@pytest.mark.slow
def test_the_defaults_carry_a_cue_ten_times_the_longest_training_episode() -> None:
    assert_recalls("cue3-flag", updates=400, multiple=10)


@pytest.mark.slow
def test_the_defaults_carry_a_late_cue_a_hundred_times_further() -> None:
    """The cue comes at a step drawn in 0..delay // 2, often in a later segment: the gate
    learns to open on it and to stay shut on every other segment, so the slot is unchanged
    for the rest of the episode (README, extrapolation)."""
    assert_recalls("cue3-flag-late", updates=1200, multiple=100)

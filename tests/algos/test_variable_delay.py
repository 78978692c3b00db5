"""Memory past the training length on a recall task with variable delays (issue 33).

Delays are uniform in 1..S*K - 2, so most training decisions fit the attention window and few
need memory, while at 10x the training length only memory can answer. Trained with only K and
S set plus the three training-only options that the extrapolation benchmark measured
(`benchmarks/extrapolation.py`, README "Extrapolation on recall tasks other than T-Maze"):
they held 10x on every cell measured. This test without ``sequence_encoder`` (the defaults)
lost a whole cue on two of three training seeds when we ran it (10x success 0.78, 1.00, 0.67
for seeds 1, 2, 3), and with it held 1.00 on all three. The second test: the write gate with
its log cost (``write_gate_cost``) and segment-local attention, on a cue that comes late, at
100x (README, ninth reading).
"""

from __future__ import annotations

import pytest
import torch
from d3rlpy.logging import NoopAdapterFactory

from d3rlpy_elmur import DiscreteELMURDTConfig, evaluate
from d3rlpy_elmur.envs.recall import RecallTask, balanced_cue_options, recall_dataset
from d3rlpy_elmur.models import ELMURFactory

K, S = 5, 3
LONGEST = S * K - 1  # steps of the longest training episode


def assert_recalls(task_name: str, encoder: ELMURFactory, updates: int, multiple: int) -> None:
    """Trains on 300 episodes of the task (delays uniform in 1..LONGEST - 1, training seed 1)
    and asks for 0.95 success at the longest training episode and ``multiple`` times it."""
    task = RecallTask.from_name(task_name)
    dataset = recall_dataset(task, 300, max_delay=LONGEST - 1, seed=0)
    torch.manual_seed(1)
    algo = DiscreteELMURDTConfig(context_size=K, num_segments=S, sequence_encoder=encoder).create()
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
def test_memory_carries_a_cue_ten_times_the_longest_training_episode() -> None:
    encoder = ELMURFactory(memory_noise=0.5, context_dropout=0.5, memory_rewrites=4)
    assert_recalls("cue3-flag", encoder, updates=400, multiple=10)


@pytest.mark.slow
def test_a_gate_that_pays_to_open_carries_a_late_cue_a_hundred_times_further() -> None:
    """Segment-local attention (memory is the only route across segments) and the write
    gate with its log cost (``write_gate_cost``): the gate learns to open on the cue, which
    comes at a step drawn in 0..delay // 2, and to stay shut on every other segment, so the
    slot is unchanged for the rest of the episode (README, ninth reading)."""
    encoder = ELMURFactory(
        attention_window=0, write_gate=0.5, write_gate_empty=True, write_gate_cost=0.002
    )
    assert_recalls("cue3-flag-late", encoder, updates=1200, multiple=100)

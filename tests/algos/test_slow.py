"""Minutes-long tests: DDP across two processes and learning a long-delay cue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from d3rlpy.algos import DiscreteDecisionTransformerConfig, GreedyTransformerActionSampler
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models import VectorEncoderFactory

from d3rlpy_elmur import DiscreteELMURDTConfig, evaluate
from d3rlpy_elmur.models import ELMURFactory
from tests.algos.ddp_worker import worker_config
from tests.helpers import CueRecallEnv, cue_recall_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ddp_two_processes_keep_identical_parameters(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(ROOT / "tests" / "algos" / "ddp_worker.py"),
            str(tmp_path),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert rank0["grad_step"] == rank1["grad_step"] == 5
    assert rank0["params"].keys() == rank1["params"].keys()
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
    # training moved the weights (the ranks agree because gradients were all-reduced)
    torch.manual_seed(0)
    fresh = worker_config().create()
    fresh.create_impl((3,), 3)
    moved = [
        not torch.equal(v, rank0["params"][k])
        for k, v in fresh.impl.policy.state_dict().items()  # type: ignore[union-attr]
    ]
    assert any(moved)


@pytest.mark.slow
def test_elmur_recalls_a_cue_beyond_its_window_and_10x_longer_and_dt_does_not() -> None:
    K, S = 10, 3
    delay = S * K - 2  # the cue is 28 steps before the decision
    dataset = cue_recall_dataset(400, 1, delay, seed=0)
    quiet = dict(show_progress=False, logger_adapter=NoopAdapterFactory())

    torch.manual_seed(0)
    elmur = DiscreteELMURDTConfig(
        context_size=K,
        num_segments=S,
        embed_dim=64,
        batch_size=32,
        sequence_encoder=ELMURFactory(memory_slots=1),
    ).create()
    elmur.fit(dataset, n_steps=400, n_steps_per_epoch=400, seed=0, **quiet)
    # at the longest training delay, and at 10x the longest training episode
    successes = {}
    for test_delay in (delay, 10 * (delay + 1)):
        venv = gym.vector.SyncVectorEnv(
            [lambda d=test_delay: CueRecallEnv(delay=d) for _ in range(50)]
        )
        successes[test_delay] = evaluate(elmur, venv, n_episodes=100, seed=123)["success_rate"]
    elmur_success = min(successes.values())

    torch.manual_seed(0)
    dt = DiscreteDecisionTransformerConfig(
        context_size=K,
        batch_size=32,
        num_layers=2,
        num_heads=2,
        max_timestep=64,
        encoder_factory=VectorEncoderFactory([64], exclude_last_activation=True),
    ).create()
    dt.fit(dataset, n_steps=300, n_steps_per_epoch=300, **quiet)
    wrapper = dt.as_stateful_wrapper(1.0, GreedyTransformerActionSampler())
    env = CueRecallEnv(delay=delay)
    wins = 0
    for episode in range(100):
        obs, _ = env.reset(seed=1000 + episode)
        wrapper.reset()
        reward, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(wrapper.predict(obs, reward))
            done = terminated or truncated
        wins += int(reward > 0)
    dt_success = wins / 100
    assert elmur_success >= 0.95, successes
    assert dt_success <= 0.7, dt_success

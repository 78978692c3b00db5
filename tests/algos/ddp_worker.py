"""Run by torchrun in test_ddp: trains with enable_ddp=True and saves this rank's parameters."""

import sys

import d3rlpy
import torch
from d3rlpy.logging import NoopAdapterFactory

from d3rlpy_elmur import DiscreteELMURDTConfig
from d3rlpy_elmur.models import ELMURFactory
from tests.helpers import cue_recall_dataset


def worker_config() -> DiscreteELMURDTConfig:
    """What every rank trains (test_ddp builds a fresh one to compare against)."""
    return DiscreteELMURDTConfig(
        context_size=4,
        num_segments=3,
        embed_dim=16,
        num_heads=2,
        batch_size=8,
        sequence_encoder=ELMURFactory(memory_slots=2),
    )


if __name__ == "__main__":
    out = sys.argv[1]
    rank = d3rlpy.distributed.init_process_group("gloo")
    algo = worker_config().create(device="cpu:0", enable_ddp=True)
    algo.fit(
        cue_recall_dataset(20, 8, 13, seed=rank),
        n_steps=5,
        seed=rank,  # each rank its own batches and initial weights: DDP broadcasts rank 0's
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
    )
    params = {k: v.detach().clone() for k, v in algo.impl.policy.state_dict().items()}
    torch.save({"params": params, "grad_step": algo.grad_step}, f"{out}/rank{rank}.pt")
    d3rlpy.distributed.destroy_process_group()

"""Batched greedy evaluation of any algorithm of the comparison, ours or d3rlpy's.

ELMURDT (and BC-GRU, which is ELMURDT with a GRU) play through the
:class:`~d3rlpy_elmur.evaluation.ELMURBatchPolicy` that :func:`d3rlpy_elmur.evaluate` uses.
d3rlpy's own algorithms have no batched, stateful evaluation, so we give them one here:

- Q-learning algorithms (DiscreteBC, DiscreteCQL, BC, CQL, ...): ``algo.predict`` on the
  whole batch of observations (their greedy action); they have no state.
- Decision Transformers: every row keeps its own context window as tensors, built exactly
  as d3rlpy's ``StatefulTransformerWrapper`` builds its deques (a pad action aligned with
  the newest observation, return-to-go after the previous reward, timesteps from 1 clamped
  at ``max_timestep``, left padding with mask 0 while the window fills), and the
  transformer runs on all rows at once. ``tests/bench`` checks it against the wrapper with
  ``GreedyTransformerActionSampler``. It costs O(context) per step, hence the harness's
  horizon cap.

:func:`d3rlpy_elmur.evaluation.run_episodes` runs the episodes of every policy, ELMURDT's
included, so rows are comparable (seeds, rounds, success, returned keys).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from d3rlpy.algos import QLearningAlgoBase, TransformerAlgoBase
from d3rlpy.constants import ActionSpace

from ..algos.elmur_dt import _ELMURDTBase
from ..evaluation import BatchPolicy, ELMURBatchPolicy, ResetOptions, run_episodes
from .envs import check_spaces

__all__ = [
    "GreedyQLearningPolicy",
    "BatchedDecisionTransformerPolicy",
    "evaluate_algo",
    "make_batch_policy",
]


class GreedyQLearningPolicy:
    """A d3rlpy Q-learning algorithm's greedy action, computed for the whole batch."""

    def __init__(self, algo: QLearningAlgoBase[Any, Any]) -> None:
        self._algo = algo

    def reset(self, n_envs: int) -> None:
        pass

    def act(self, observations: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        return np.asarray(self._algo.predict(observations))


class BatchedDecisionTransformerPolicy:
    """d3rlpy's (Discrete)DecisionTransformer with one context window per batch row."""

    def __init__(self, algo: TransformerAlgoBase[Any, Any], target_return: float) -> None:
        impl = algo.impl
        if impl is None:
            raise ValueError("the algorithm is not built")
        self._algo = algo
        self._impl = impl
        self._config = algo.config
        self._target_return = float(target_return)
        self._discrete = algo.get_action_type() == ActionSpace.DISCRETE
        self._device = impl.device
        self._context = int(self._config.context_size)
        self._max_timestep = int(self._config.max_timestep)

    def reset(self, n_envs: int) -> None:
        K, dev = self._context, self._device
        obs_shape = tuple(self._impl.observation_shape)
        action_shape = (1,) if self._discrete else (self._impl.action_size,)
        self._observations = torch.zeros((n_envs, K, *obs_shape), device=dev)  # [B, K, *obs]
        self._actions = torch.zeros((n_envs, K, *action_shape), device=dev)  # [B, K, A|1]
        self._rtg = torch.zeros((n_envs, K, 1), device=dev)  # [B, K, 1]
        self._timesteps = torch.zeros((n_envs, K), dtype=torch.long, device=dev)  # [B, K]
        self._filled = 0
        self._timestep = 1
        self._return_rest = torch.full((n_envs,), self._target_return, device=dev)

    @staticmethod
    def _push(buffer: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        # Shift the window left by one step: the oldest entry (or a zero pad) drops out.
        return torch.cat([buffer[:, 1:], value[:, None]], dim=1)

    @torch.no_grad()
    def act(self, observations: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        cfg = self._config
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self._device)
        if cfg.observation_scaler is not None:
            obs = cfg.observation_scaler.transform(obs)
        reward = torch.as_tensor(rewards, dtype=torch.float32, device=self._device)
        rtg = (self._return_rest - reward)[:, None]  # [B, 1]
        if cfg.reward_scaler is not None:
            rtg = cfg.reward_scaler.transform(rtg)
        n = obs.shape[0]
        pad_action = torch.zeros_like(self._actions[:, 0])
        self._observations = self._push(self._observations, obs)
        self._actions = self._push(self._actions, pad_action)
        self._rtg = self._push(self._rtg, rtg)
        self._timesteps = self._push(
            self._timesteps, torch.full((n,), self._timestep, device=self._device)
        )
        self._filled = min(self._filled + 1, self._context)
        masks = torch.zeros((n, self._context), device=self._device)
        masks[:, self._context - self._filled :] = 1.0

        modules = self._impl.modules
        modules.set_eval()
        out = modules.transformer(
            self._observations, self._actions, self._rtg, self._timesteps, 1 - masks
        )
        if self._discrete:
            action_t = out[1][:, -1].argmax(-1)  # logits [B, K, A] -> [B]
            self._actions[:, -1, 0] = action_t.to(torch.float32)
            actions = action_t.cpu().numpy()
        else:
            action_t = out[:, -1]  # [B, K, A] -> [B, A]
            self._actions[:, -1] = action_t
            if cfg.action_scaler is not None:
                action_t = cfg.action_scaler.reverse_transform(action_t)
            actions = action_t.cpu().numpy()
        self._timestep = min(self._timestep + 1, self._max_timestep)
        self._return_rest = self._return_rest - reward
        return actions


def make_batch_policy(algo: Any, target_return: float = 0.0) -> BatchPolicy:
    """The batched greedy policy of any algorithm of the comparison."""
    if isinstance(algo, _ELMURDTBase):
        return ELMURBatchPolicy(algo, target_return, greedy=True, seed=0)
    if isinstance(algo, QLearningAlgoBase):
        return GreedyQLearningPolicy(algo)
    if isinstance(algo, TransformerAlgoBase) and hasattr(algo.impl.modules, "transformer"):
        return BatchedDecisionTransformerPolicy(algo, target_return)
    raise TypeError(f"no batched evaluation for {type(algo).__name__}")


def evaluate_algo(
    algo: Any,
    env: gym.vector.VectorEnv,
    n_episodes: int,
    seed: int,
    target_return: float = 0.0,
    reset_options: ResetOptions = None,
    max_steps: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Greedy batched evaluation of ELMURDT or a d3rlpy baseline on a vector env."""
    check_spaces(algo, env)
    policy = make_batch_policy(algo, target_return)
    return run_episodes(policy, env, n_episodes, seed, reset_options, max_steps, show_progress)

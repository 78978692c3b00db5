"""Batched policies: many episodes in lock step, one model call per step, for every algorithm
the harness compares (what :func:`d3rlpy_elmur.evaluate` runs).

- ELMURDT (and BC-GRU, ELMURDT with a GRU): its step path, memory per row.
- d3rlpy's Q-learning algorithms (DiscreteBC, DiscreteCQL, BC, CQL, ...): ``algo.predict`` on
  the whole batch (their greedy action); they have no state.
- d3rlpy's Decision Transformers: every row keeps its own context window as tensors, built
  exactly as d3rlpy's ``StatefulTransformerWrapper`` builds its deques (a pad action aligned
  with the newest observation, return-to-go after the previous reward, timesteps from 1
  clamped at ``max_timestep``, left padding with mask 0 while the window fills), and the
  transformer runs on all rows at once (``tests/bench/test_baselines.py`` checks it against
  the wrapper). It costs O(context) per step.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from d3rlpy.algos import QLearningAlgoBase, TransformerAlgoBase
from d3rlpy.constants import ActionSpace
from d3rlpy.types import Observation

from ..algos.elmur_dt import ELMURDTBase
from ..algos.stateful import StepInference
from ..model_inputs import environment_actions, scale_inputs
from ..observations import map_observations

__all__ = [
    "BatchPolicy",
    "ELMURBatchPolicy",
    "GreedyQLearningPolicy",
    "BatchedDecisionTransformerPolicy",
    "make_batch_policy",
]


class BatchPolicy(Protocol):
    """A policy over a batch of episodes that advance in lock step."""

    def reset(self, n_envs: int) -> None: ...

    def act(self, observations: Observation, rewards: np.ndarray) -> np.ndarray:
        """Actions for the newest observations; ``rewards`` came with them (0 at t=0)."""
        ...


class ELMURBatchPolicy:
    """ELMURDT's step path over a batch (:class:`StepInference`): memory per row, one model
    call per step; greedy, or sampled from the softmax with a seeded generator."""

    def __init__(self, algo: ELMURDTBase, target_return: float, greedy: bool, seed: int) -> None:
        self._inference = StepInference(algo, target_return)
        self._device = algo.impl.device
        self._greedy = greedy
        self._rng = torch.Generator(device="cpu").manual_seed(seed)

    def reset(self, n_envs: int) -> None:
        self._inference.reset(n_envs)

    def act(self, observations: Observation, rewards: np.ndarray) -> np.ndarray:
        device = self._device
        obs_t = map_observations(
            lambda part: torch.as_tensor(part, dtype=torch.float32, device=device), observations
        )
        out = self._inference.outputs(obs_t, rewards)
        if not self._inference.discrete:
            return self._inference.take(out)
        if self._greedy:
            action_t = out.argmax(-1)
        else:
            probs = out.softmax(-1).cpu()
            action_t = torch.multinomial(probs, 1, generator=self._rng)[:, 0].to(device)
        return self._inference.take(action_t)


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
        reward = torch.as_tensor(rewards, dtype=torch.float32, device=self._device)
        obs, rtg = scale_inputs(
            torch.as_tensor(observations, dtype=torch.float32, device=self._device),
            (self._return_rest - reward)[:, None],  # [B, 1]
            cfg.observation_scaler,
            cfg.reward_scaler,
        )
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
            actions = environment_actions(action_t, cfg.action_scaler).cpu().numpy()
        self._timestep = min(self._timestep + 1, self._max_timestep)
        self._return_rest = self._return_rest - reward
        return actions


def make_batch_policy(
    algo: Any, target_return: float, greedy: bool = True, seed: int = 0
) -> BatchPolicy:
    """The batched policy of ELMURDT or of one of d3rlpy's algorithms (greedy; ELMURDT can
    also sample from its softmax, seeded)."""
    if algo.impl is None:
        raise ValueError("the algorithm is not built: fit it or call build_with_env first")
    if isinstance(algo, ELMURDTBase):
        return ELMURBatchPolicy(algo, target_return, greedy=greedy, seed=seed)
    if not greedy:
        raise ValueError(
            f"greedy=False samples ELMURDT's actions only, not {type(algo).__name__}'s"
        )
    if isinstance(algo, QLearningAlgoBase):
        return GreedyQLearningPolicy(algo)
    if isinstance(algo, TransformerAlgoBase) and hasattr(algo.impl.modules, "transformer"):
        return BatchedDecisionTransformerPolicy(algo, target_return)
    raise TypeError(f"no batched evaluation for {type(algo).__name__}")

"""Stateful inference for ELMURDT: one step at a time, memory carried across segments.

The encoder's step path keeps a key/value cache inside the current segment and writes memory
once at its end, so each ``predict`` costs the same at step 10 and at step 10^6 and nothing grows
with the episode. :class:`StepInference` is the one place that turns environment inputs into
the model's (scaled observations, return-to-go, previous action, step) and its actions back,
for n episodes in lock step; the single-episode wrapper and the batched evaluation policy both
run on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from d3rlpy.algos.transformer.action_samplers import TransformerActionSampler
from d3rlpy.algos.transformer.base import StatefulTransformerWrapper, TransformerAlgoBase
from d3rlpy.types import NDArray, Observation, TorchObservation

from ..model_inputs import environment_actions, no_previous_action, scale_inputs
from ..observations import check_observation, check_rewards, map_observations
from .torch.elmur_dt_impl import ELMURDTImpl, ELMURDTLike

__all__ = ["ELMURStatefulWrapper", "StepInference"]


class StepInference:
    """ELMURDT's step path over n episodes in lock step, in the environment's units.

    ``outputs`` scales the observations and the return-to-go (target minus the rewards so
    far) with the algorithm's scalers, as d3rlpy's ``predict`` does, and runs one step;
    ``take`` records the chosen actions as the next step's previous action (in the model's
    scaled space, as in training) and returns them in the environment's units.
    """

    def __init__(self, algo: ELMURDTLike, target_return: float) -> None:
        impl = algo.impl
        if impl is None:
            raise ValueError("the algorithm is not built: fit it or call build_with_env first")
        self._impl = impl
        self._config = algo.config
        self.discrete = bool(impl.discrete)
        self.target_return = float(target_return)
        self.reset(1)

    def reset(self, n: int) -> None:
        """Starts ``n`` new episodes."""
        impl, device = self._impl, self._impl.device
        self.state = impl.initial_step_state(n)
        self.step_count = 0
        # float64 on the host: a return-to-go summed over 10^6 rewards must not drift
        self._return_rest = np.full((n, 1), self.target_return)
        # per-step inputs are written into these (the model copies what it keeps)
        self._rtg = torch.zeros(n, 1, device=device)
        self._steps = torch.zeros(n, dtype=torch.long, device=device)
        width = 1 if self.discrete else impl.action_size
        self._previous = no_previous_action(self.discrete, n, width, device)

    def outputs(self, observations: TorchObservation, rewards: Any) -> torch.Tensor:
        """The model's outputs [n, A] (logits, or actions in the scaled space) for the newest
        observations [n, ...] (unscaled tensors on the device); ``rewards`` [n] came with them
        (the rewards of the previous steps, 0 at t = 0)."""
        config = self._config
        self._return_rest -= np.asarray(rewards, dtype=np.float64).reshape(-1, 1)
        observations, rtg = scale_inputs(
            observations,
            self._rtg.copy_(torch.from_numpy(self._return_rest)),
            config.observation_scaler,
            config.reward_scaler,
        )
        steps = self._steps.fill_(self.step_count)
        out, self.state = self._impl.step(observations, rtg, self._previous, steps, self.state)
        self.step_count += 1
        return out

    def take(self, actions: torch.Tensor) -> np.ndarray:
        """Records ``actions`` (indices [n] or scaled actions [n, A]) as the previous actions;
        returns them in the environment's units."""
        if self.discrete:
            self._previous.copy_(actions.view(-1, 1))
            return actions.cpu().numpy()
        self._previous.copy_(actions)
        return environment_actions(actions, self._config.action_scaler).cpu().numpy()


class ELMURStatefulWrapper(StatefulTransformerWrapper):
    """``predict(observation, reward) -> action``; ``reset()`` starts a new episode."""

    def __init__(
        self,
        algo: TransformerAlgoBase[ELMURDTImpl, Any],  # d3rlpy's base also calls its predict
        target_return: float,
        action_sampler: TransformerActionSampler,
    ):
        super().__init__(algo, target_return, action_sampler)
        self._inference = StepInference(algo, target_return)
        self._device = self._inference._impl.device
        self._shape = self._inference._impl.observation_shape
        self.reset()

    def reset(self) -> None:
        """Clears memory, caches and the step counter."""
        super().reset()
        self._inference.reset(1)

    def predict(self, x: Observation, reward: float) -> NDArray | int:
        """Action for observation ``x``; ``reward`` is the reward of the previous step."""
        observation = map_observations(
            lambda part: torch.from_numpy(part).to(self._device)[None],
            check_observation(x, self._shape, batched=False),
        )
        out = self._inference.outputs(observation, check_rewards(reward, 1))
        out = out[0] if out.device.type == "cpu" else out[0].cpu()
        action = self._action_sampler(out.numpy())
        # on the model's device: the action scaler's tensors live where it was first used
        taken = self._inference.take(
            torch.as_tensor(action, dtype=torch.float32, device=self._device)[None]
        )
        return action if self._inference.discrete else taken[0]

    @property
    def step_count(self) -> int:
        """Steps taken in the current episode."""
        return self._inference.step_count

    @property
    def recurrent_state(self) -> Mapping[str, torch.Tensor]:
        """The model's state now (memory, anchors, segment caches), for inspection: a read-only
        view of tensors the next ``predict`` updates in place."""
        return MappingProxyType(self._inference.state)

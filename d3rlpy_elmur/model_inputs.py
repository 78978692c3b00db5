"""The model's inputs as training, inference and export give them, and its actions back.

The previous action a_{t-1} is part of a step's token (``token_format="rtg_obs_act"``). Where
a step has none (t = 0, or a window's first step whose predecessor it does not hold) it is
"none": -1 for discrete actions, which the embedding maps to its extra row ``action_size``,
and zeros for continuous ones, which the linear embedding maps to its bias. Every path that
builds the input (the loss, the sampled windows, the step path, the export) takes it from here.

Observations and return-to-go enter in the model's scaled space and actions leave it through
the algorithm's scalers, as d3rlpy's ``predict`` has them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "action_embedding_rows",
    "environment_actions",
    "no_previous_action",
    "previous_action_embedding",
    "previous_or_none",
    "scale_inputs",
    "window_previous_actions",
]


def _none(discrete: bool) -> float:
    return -1.0 if discrete else 0.0


def no_previous_action(
    discrete: bool, n: int, width: int, device: torch.device | str
) -> torch.Tensor:
    """The previous-action input at an episode's first step [n, width]."""
    return torch.full((n, width), _none(discrete), device=device)


def window_previous_actions(
    actions: torch.Tensor, timesteps: torch.Tensor, discrete: bool
) -> torch.Tensor:
    """a_{t-1} per step from the window's own actions [B, T, A or 1]: "none" at the window's
    first step (its predecessor is not in the window) and where t == 0."""
    first = torch.full_like(actions[:, :1], _none(discrete))
    previous = torch.cat([first, actions[:, :-1]], dim=1)
    return torch.where(timesteps[..., None] == 0, _none(discrete), previous)


def previous_or_none(previous: torch.Tensor, known: torch.Tensor, discrete: bool) -> torch.Tensor:
    """``previous`` [B, T, A or 1] where ``known`` [B, T, 1], else "none"."""
    return torch.where(known, previous, _none(discrete))


def previous_action_embedding(action_size: int, discrete: bool, dim: int) -> nn.Module:
    """The previous action's embedding into the token: a table with one row per action and row
    ``action_size`` for "none" (discrete), or a linear map (continuous)."""
    return nn.Embedding(action_size + 1, dim) if discrete else nn.Linear(action_size, dim)


def action_embedding_rows(previous: torch.Tensor, action_size: int) -> torch.Tensor:
    """Rows of the discrete embedding for previous actions (any shape): the action's own row,
    and row ``action_size`` for "none"."""
    index = previous.long()
    return torch.where(index < 0, action_size, index)


def scale_inputs(
    observations: Any, return_to_go: torch.Tensor, observation_scaler: Any, reward_scaler: Any
) -> tuple[Any, torch.Tensor]:
    """Observations and return-to-go in the model's space, as d3rlpy's ``predict`` scales
    them (either scaler may be None). Every inference path of this package calls this: the
    step path, the exported step, and the batched Decision Transformer policy."""
    if observation_scaler is not None:
        observations = observation_scaler.transform(observations)
    if reward_scaler is not None:
        return_to_go = reward_scaler.transform(return_to_go)
    return observations, return_to_go


def environment_actions(actions: torch.Tensor, action_scaler: Any) -> torch.Tensor:
    """Continuous actions from the model's scaled space (in which they are also the next step's
    previous action) back to the environment's units."""
    return actions if action_scaler is None else action_scaler.reverse_transform(actions)

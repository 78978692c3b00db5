"""An observation encoder for any layout (vector, image, tuple), as d3rlpy's own tests use."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from d3rlpy.dataset import is_tuple_shape
from d3rlpy.models.encoders import EncoderFactory, register_encoder_factory
from d3rlpy.types import Shape
from torch import nn

__all__ = ["FlattenEncoderFactory"]


class _Flatten(nn.Module):  # type: ignore[misc]
    """Flattens every part of an observation, concatenates them, one linear layer."""

    def __init__(self, size: int, feature_size: int):
        super().__init__()
        self.linear = nn.Linear(size, feature_size)

    def forward(self, x: Any) -> torch.Tensor:
        parts = x if isinstance(x, (list, tuple)) else [x]
        return self.linear(torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1))


@dataclasses.dataclass()
class FlattenEncoderFactory(EncoderFactory):  # type: ignore[misc]
    feature_size: int = 16

    def create(self, observation_shape: Shape) -> nn.Module:
        parts = observation_shape if is_tuple_shape(observation_shape) else [observation_shape]
        return _Flatten(sum(int(np.prod(p)) for p in parts), self.feature_size)

    def create_with_action(
        self, observation_shape: Shape, action_size: int, discrete_action: bool = False
    ) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def get_type() -> str:
        return "test_flatten"


register_encoder_factory(FlattenEncoderFactory)

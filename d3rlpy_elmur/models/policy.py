"""The policy network: one token per step -> sequence encoder -> action head.

A step's token is the observation embedding (the paper's format), optionally plus embeddings of
the return-to-go and of the previous action. Adding them keeps one token per step, so the
attention window and the cost per step do not grow with the token format.
"""

from __future__ import annotations

import torch
from d3rlpy.models.encoders import EncoderFactory
from d3rlpy.models.torch import Encoder
from d3rlpy.models.torch.encoders import compute_output_size
from d3rlpy.types import Shape, TorchObservation
from torch import nn

from ..model_inputs import action_embedding_rows, previous_action_embedding
from ..observations import first_part, map_observations
from .sequence import SequenceEncoder, SequenceOutput, State

__all__ = ["TOKEN_FORMATS", "SequencePolicy", "create_sequence_policy"]

TOKEN_FORMATS = ("obs", "rtg_obs", "rtg_obs_act")


class SequencePolicy(nn.Module):
    """Outputs logits (discrete) or tanh actions (continuous), one per step."""

    def __init__(
        self,
        observation_encoder: Encoder,
        feature_size: int,
        sequence: SequenceEncoder,
        action_size: int,
        discrete: bool,
        token_format: str = "obs",
    ):
        super().__init__()
        if token_format not in TOKEN_FORMATS:
            raise ValueError(f"token_format={token_format!r}: expected one of {TOKEN_FORMATS}")
        D = sequence.embed_dim
        self.discrete = discrete
        self.action_size = action_size
        self.observation_encoder = observation_encoder
        self.observation_proj = nn.Identity() if feature_size == D else nn.Linear(feature_size, D)
        self.rtg_embed = nn.Linear(1, D) if token_format != "obs" else None
        self.action_embed: nn.Module | None = None
        if token_format == "rtg_obs_act":
            self.action_embed = previous_action_embedding(action_size, discrete, D)
        self.sequence = sequence
        self.head = nn.Linear(D, action_size)

    def tokens(
        self,
        observations: TorchObservation,
        returns_to_go: torch.Tensor,
        previous_actions: torch.Tensor,
    ) -> torch.Tensor:
        """[B, T, *obs] (or a tuple of such parts), [B, T, 1], [B, T, A or 1] -> [B, T, D].

        ``previous_actions`` holds a_{t-1}, "none" as ``d3rlpy_elmur.model_inputs`` writes it.
        """
        B, T = first_part(observations).shape[:2]
        flat = map_observations(lambda part: part.reshape(B * T, *part.shape[2:]), observations)
        features = self.observation_encoder(flat)
        x = self.observation_proj(features).view(B, T, -1)
        if self.rtg_embed is not None:
            x = x + self.rtg_embed(returns_to_go)
        if self.action_embed is not None:
            if self.discrete:
                index = action_embedding_rows(previous_actions, self.action_size)
                x = x + self.action_embed(index.reshape(B, T))
            else:
                x = x + self.action_embed(previous_actions)
        return x

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        out = self.head(features)
        return out if self.discrete else torch.tanh(out)

    def forward(
        self,
        observations: TorchObservation,
        returns_to_go: torch.Tensor,
        previous_actions: torch.Tensor,
        valid: torch.Tensor,
        steps: torch.Tensor,
        state: State,
        keep_states: bool = False,
    ) -> SequenceOutput:
        """The segment path (see ``SequenceEncoder.forward``); ``outputs`` are the head's."""
        x = self.tokens(observations, returns_to_go, previous_actions)
        out: SequenceOutput = self.sequence(x, valid, steps, state, keep_states)
        return out._replace(outputs=self.head_output(out.outputs))

    def step(
        self,
        observation: TorchObservation,
        return_to_go: torch.Tensor,
        previous_action: torch.Tensor,
        steps: torch.Tensor,
        state: State,
    ) -> tuple[torch.Tensor, State]:
        """One step per row: [B, *obs] (or parts), [B, 1], [B, A or 1], steps [B] -> [B, A]."""
        token = self.step_token(observation, return_to_go, previous_action)
        features, state = self.sequence.step(token, steps, state)
        return self.head_output(features), state

    def step_token(
        self, observation: TorchObservation, return_to_go: torch.Tensor, previous: torch.Tensor
    ) -> torch.Tensor:
        """The token [B, D] of one step per row (the step path's and the export's)."""
        one_step = map_observations(lambda part: part[:, None], observation)
        return self.tokens(one_step, return_to_go[:, None], previous[:, None])[:, 0]


def create_sequence_policy(
    observation_shape: Shape,
    action_size: int,
    discrete: bool,
    encoder_factory: EncoderFactory,
    sequence: SequenceEncoder,
    token_format: str,
) -> SequencePolicy:
    """Builds the policy; the observation encoder comes from d3rlpy's encoder factory."""
    encoder = encoder_factory.create(observation_shape)
    feature_size = compute_output_size([observation_shape], encoder)
    return SequencePolicy(encoder, feature_size, sequence, action_size, discrete, token_format)

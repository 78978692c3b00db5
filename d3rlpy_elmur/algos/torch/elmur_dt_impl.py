"""ELMURDT's update math: the segment-recurrent loss over a context segment + S segments."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
import torch.nn.functional as F
from d3rlpy.algos.transformer.base import TransformerAlgoImplBase, TransformerConfig
from d3rlpy.algos.transformer.inputs import TorchTransformerInput
from d3rlpy.optimizers import OptimizerWrapper
from d3rlpy.torch_utility import (
    Modules,
    TorchTrajectoryMiniBatch,
    train_api,
    unwrap_ddp_model,
)
from d3rlpy.types import Shape, TorchObservation

from ...model_inputs import window_previous_actions
from ...models.policy import SequencePolicy
from ...models.sequence import State, reset_rows
from ...observations import first_part, map_observations
from ..replay_states import BoundaryStates
from ..segments import segment_window_length

__all__ = ["ELMURDTModules", "ELMURDTImpl", "ELMURDTLike"]


@dataclasses.dataclass(frozen=True)
class ELMURDTModules(Modules):
    """What d3rlpy saves, moves and wraps for DDP: the policy and its optimizer."""

    policy: SequencePolicy
    optim: OptimizerWrapper


def time_slice(observations: TorchObservation, index: slice | torch.Tensor) -> TorchObservation:
    """Steps ``index`` of [B, T, ...] observations (every part of a tuple)."""
    return map_observations(lambda part: part[:, index], observations)


class ELMURDTImpl(TransformerAlgoImplBase):
    """The loss and update over segment windows, and the stateful step of inference."""

    _modules: ELMURDTModules

    def __init__(
        self,
        observation_shape: Shape,
        action_size: int,
        modules: ELMURDTModules,
        context_size: int,
        num_segments: int,
        label_smoothing: float,
        discrete: bool,
        device: str,
    ):
        super().__init__(observation_shape, action_size, modules, device)
        self._context_size = context_size
        self._num_segments = num_segments
        self._label_smoothing = label_smoothing
        self._discrete = discrete

    @property
    def policy(self) -> SequencePolicy:
        """The policy without its DDP wrapper (for inference and non-forward methods)."""
        return unwrap_ddp_model(self._modules.policy)

    @property
    def discrete(self) -> bool:
        return self._discrete

    # ------------------------------------------------------------------------------- training
    def compute_loss(
        self,
        batch: TorchTrajectoryMiniBatch,
        previous: torch.Tensor | None = None,
        start: State | None = None,
        trace: list[State] | None = None,
        context: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss of windows of whole segments: [context segment | n segments] or n
        segments alone (see ``context_steps`` for which a batch is).

        ``previous``: a_{t-1} of every step (None: shifted inside the window, so the first
        step has "none"). ``start``: the state before the first segment, the context segment
        if any (None: the initial one). The context segment runs without gradient; a row
        whose context is padding (its window starts at t = 0) keeps ``start`` and with it the
        gradient to the learned initial state. ``trace`` receives the state after the context
        and after every training segment.
        """
        observations = batch.observations
        B, T = first_part(observations).shape[:2]
        K0 = self.context_steps(T, context)
        valid = batch.masks > 0  # [B, T]
        steps = batch.timesteps.long()
        prev = (
            window_previous_actions(batch.actions, steps, self._discrete)
            if previous is None
            else previous
        )
        rtg = batch.returns_to_go
        state = self.policy.sequence.initial_state(B) if start is None else start
        before = slice(0, K0)  # the context segment (empty without one)
        if K0 and bool(valid[:, before].any()):
            # run through the unwrapped module: DDP expects one forward per backward
            with torch.no_grad():
                after = self.policy(
                    time_slice(observations, before),
                    rtg[:, before],
                    prev[:, before],
                    valid[:, before],
                    steps[:, before],
                    state,
                )
            state = reset_rows(after.state, state, ~valid[:, before].any(1))
        window = slice(K0, T)
        result = self._modules.policy(
            time_slice(observations, window),
            rtg[:, window],
            prev[:, window],
            valid[:, window],
            steps[:, window],
            state,
            trace is not None,
        )
        out = result.outputs
        if trace is not None:
            trace.extend([state, *result.kept_states])
        mask = valid[:, window].to(out.dtype)  # padding never counts
        if self._discrete:
            target = batch.actions[:, window, 0].long()
            per_step = F.cross_entropy(
                out.transpose(1, 2),
                target,
                reduction="none",
                label_smoothing=self._label_smoothing,
            )
        else:
            per_step = ((out - batch.actions[:, window]) ** 2).sum(-1)
        action_loss = (per_step * mask).sum() / mask.sum().clamp(min=1.0)
        losses = {"action_loss": action_loss}
        aux = result.aux_loss
        losses["loss"] = action_loss if aux is None else action_loss + aux
        return losses

    def context_steps(self, steps: int, context: bool | None = None) -> int:
        """Steps of the context segment (0 or K) of a batch of ``steps`` steps per row.

        A batch holds whole segments of K steps. ``context=True`` (a ``SegmentWindowBatch``,
        whose boundary states say so): a context segment, then n >= 1 segments; ``False``:
        n >= 1 segments. ``None`` (a plain d3rlpy batch, which cannot say): (1 + S) * K steps
        is fit's window, a context segment then S segments; any other n * K (n >= 1) is n
        segments from the initial memory (n = 1 is d3rlpy's context_size batch). The steps
        alone cannot tell a context segment from a first training segment, so only the one
        length fit samples is read as having one. Other lengths raise ValueError naming the
        accepted ones.
        """
        K, S = self._context_size, self._num_segments
        first = 2 if context else 1  # segments in the shortest accepted batch
        if steps % K == 0 and steps >= first * K:
            if context is None:
                context = steps == segment_window_length(K, S)
            return K if context else 0
        lengths = ", ".join(str(n * K) for n in range(first, first + 3))
        if context:
            what = "a context segment, then n >= 1 segments"
        else:
            what = "n >= 1 segments"
            if context is None:
                what += (
                    f" from the initial memory; (1 + S) * K = {segment_window_length(K, S)} "
                    f"is fit's window: a context segment, then S = {S} segments"
                )
        raise ValueError(
            f"a training batch has {steps} steps per row; expected whole segments of K = "
            f"context_size = {K} steps ({lengths}, ...): {what}"
        )

    def inner_update(self, batch: TorchTrajectoryMiniBatch, grad_step: int) -> dict[str, float]:
        return self._optimizer_step(self.compute_loss(batch))

    @train_api
    def update_window(
        self,
        batch: TorchTrajectoryMiniBatch,
        previous: torch.Tensor,
        boundaries: torch.Tensor,
        states: BoundaryStates | None,
    ) -> dict[str, float]:
        """An update on windows whose rows start at stored boundary states (``boundaries``
        [B, S + 2], see ``SegmentWindowBatch``); the states it computes are written back."""
        initial = self.policy.sequence.initial_state(boundaries.shape[0])
        start = initial if states is None else states.read(boundaries[:, 0], initial)
        trace: list[State] = []
        metrics = self._optimizer_step(
            self.compute_loss(batch, previous, start, trace, context=True)
        )
        if states is not None:
            for column, state in enumerate(trace, start=1):
                states.write(boundaries[:, column], state)
        return metrics

    def _optimizer_step(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """Backpropagates ``losses["loss"]`` and steps the optimizer; the losses as floats.
        (``step``, below, is inference.)"""
        self._modules.optim.zero_grad()
        losses["loss"].backward()
        self._modules.optim.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    @torch.no_grad()
    def trace_states(self, batch: TorchTrajectoryMiniBatch, previous: torch.Tensor) -> list[State]:
        """States after every segment of rows that start at t = 0 (eval mode, no gradient)."""
        self.modules.set_eval()
        observations = batch.observations
        return self.policy(
            observations,
            batch.returns_to_go,
            previous,
            batch.masks > 0,
            batch.timesteps.long(),
            self.policy.sequence.initial_state(first_part(observations).shape[0]),
            keep_states=True,
        ).kept_states

    # ------------------------------------------------------------------------------ inference
    def inner_predict(self, inpt: TorchTransformerInput) -> torch.Tensor:
        """d3rlpy's stateless predict: the last step's output over the given window only.

        The window starts from a reset memory: use the stateful wrapper for real inference.
        """
        valid = inpt.masks[0] > 0
        # d3rlpy left-pads; ELMUR segments are right-padded from the window's first real step
        order = torch.argsort((~valid).to(torch.int8), stable=True)
        n = int(valid.sum())
        obs = time_slice(inpt.observations, order[:n])
        steps = torch.arange(n, device=valid.device)[None]
        actions = inpt.actions[:, order[:n]]
        prev = window_previous_actions(actions, steps, self._discrete)
        out = self.policy(
            obs,
            inpt.returns_to_go[:, order[:n]],
            prev,
            torch.ones(1, n, dtype=torch.bool, device=valid.device),
            steps,
            self.policy.sequence.initial_state(1),
        ).outputs
        return out[0, -1]

    @torch.inference_mode()
    def step(
        self,
        observation: torch.Tensor,
        return_to_go: torch.Tensor,
        previous_action: torch.Tensor,
        steps: torch.Tensor,
        state: State,
    ) -> tuple[torch.Tensor, State]:
        """Batched step inference (eval mode): outputs [B, A] and the next state."""
        if self._modules.policy.training:
            self.modules.set_eval()
        return self.policy.step(observation, return_to_go, previous_action, steps, state)

    def initial_step_state(self, batch_size: int) -> State:
        with torch.inference_mode():
            return self.policy.sequence.initial_step_state(batch_size)


class ELMURDTLike(Protocol):
    """What step inference and export read of an ELMURDT algorithm (``ELMURDTBase`` is one):
    its impl, and its config's scalers. The algorithm's module imports the wrapper and the
    export, so they name this rather than import that module back."""

    @property
    def impl(self) -> ELMURDTImpl | None: ...

    @property
    def config(self) -> TransformerConfig: ...

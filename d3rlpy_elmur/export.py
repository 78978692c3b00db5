"""Stateful export of an ELMURDT policy to TorchScript (``.pt``) and ONNX (``.onnx``).

d3rlpy's ``save_policy`` traces one context window, which would drop ELMUR's memory. The
exported graph here is one step with the recurrent state as explicit inputs and outputs:

inputs
    ``observation_0`` .. ``observation_{n-1}`` [B, *part] (one per part of a tuple
    observation; raw, the model's observation scaler is in the graph), ``return_to_go``
    [B, 1] (raw; the reward scaler is in the graph), ``first`` [B] bool (true on an episode's
    first step: that row's state inputs are ignored and replaced by the initial state), then
    the state, ``state.<name>`` for every name of :attr:`PolicyStep.state_names`.
outputs
    ``action`` ([B] int64 for discrete actions, [B, A] float in the environment's units for
    continuous ones), ``output`` [B, A] (logits, or the action before the action scaler), then
    the next state, ``next.<name>`` in the same order.

The state is the memory and its anchors, the self-attention key/value cache of the current
segment and the previous one's last W steps, the current segment's layer outputs (what the
memory write reads at its end), the position in the segment, the step counter and the previous
action. Its size is fixed, so a step costs the same at t = 10 and t = 10^6.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from d3rlpy.dataset import is_tuple_shape
from torch import nn

from .algos.torch.elmur_dt_impl import ELMURDTLike
from .extras import require
from .model_inputs import environment_actions, no_previous_action, scale_inputs
from .models.elmur_encoder import ELMUR
from .models.sequence import State, reset_rows

__all__ = ["PolicyStep", "export_policy"]


class PolicyStep(nn.Module):
    """ELMURDT's policy step as a pure function of explicit state (what is exported)."""

    def __init__(self, algo: ELMURDTLike, split_write: bool = False):
        """``split_write``: leave the memory write out (memory and anchors pass through) and
        also output ``write.steps`` and ``write.done``, what :class:`WriteStep` needs."""
        super().__init__()
        self.split_write = split_write
        impl = algo.impl
        if impl is None:
            raise ValueError("the algorithm is not built: fit it or call create_impl first")
        config = algo.config
        # a frozen copy in eval mode: exporting leaves the algorithm's own model untouched
        self.policy = copy.deepcopy(impl.policy).eval().requires_grad_(False)
        self.discrete = impl.discrete
        self.observation_scaler = config.observation_scaler
        self.action_scaler = None if impl.discrete else config.action_scaler
        self.reward_scaler = config.reward_scaler
        shape = impl.observation_shape
        self.observation_shapes = (
            [tuple(part) for part in shape] if is_tuple_shape(shape) else [tuple(shape)]
        )
        self.num_observations = len(self.observation_shapes)
        self.action_width = 1 if impl.discrete else impl.action_size
        self.state_names = sorted(self.initial_state(1))

    def initial_state(self, batch_size: int) -> State:
        """The state at an episode's start (encoder state, step counter, previous action)."""
        state = self.policy.sequence.initial_export_state(batch_size)
        device = next(self.policy.parameters()).device
        state["timestep"] = torch.zeros(batch_size, dtype=torch.long, device=device)
        state["previous_action"] = no_previous_action(
            self.discrete, batch_size, self.action_width, device
        )
        return state

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.num_observations
        observations = list(inputs[:n])
        return_to_go, first = inputs[n], inputs[n + 1]
        state = dict(zip(self.state_names, inputs[n + 2 :], strict=True))
        state = reset_rows(state, self.initial_state(1), first)
        observation, return_to_go = scale_inputs(
            observations if n > 1 else observations[0],
            return_to_go,
            self.observation_scaler,
            self.reward_scaler,
        )
        steps = state.pop("timestep")
        previous = state.pop("previous_action")
        options = {"write": False} if self.split_write else {}
        token = self.policy.step_token(observation, return_to_go, previous)
        features, new_state = self.policy.sequence.export_step(token, steps, state, **options)
        output = self.policy.head_output(features)
        if self.discrete:
            action = output.argmax(-1)
            new_state["previous_action"] = action.to(output.dtype)[:, None]
        else:
            new_state["previous_action"] = output
            action = environment_actions(output, self.action_scaler)
        new_state["timestep"] = steps + 1
        out = (action, output, *(new_state[name] for name in self.state_names))
        if self.split_write:
            done = state["position"] == self.policy.sequence.context_size - 1
            out = (*out, steps, done)
        return out

    def example_inputs(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        device = next(self.policy.parameters()).device
        observations = [torch.zeros(batch_size, *s, device=device) for s in self.observation_shapes]
        state = self.initial_state(batch_size)
        return (
            *observations,
            torch.zeros(batch_size, 1, device=device),
            torch.ones(batch_size, dtype=torch.bool, device=device),
            *(state[name] for name in self.state_names),
        )

    def input_names(self) -> list[str]:
        observations = [f"observation_{i}" for i in range(self.num_observations)]
        state = [f"state.{name}" for name in self.state_names]
        return [*observations, "return_to_go", "first", *state]

    def output_names(self) -> list[str]:
        names = ["action", "output", *(f"next.{name}" for name in self.state_names)]
        return [*names, "write.steps", "write.done"] if self.split_write else names


class WriteStep(nn.Module):
    """ELMUR's segment-end memory write alone (``ELMUR.export_write``), for the ONNX graph
    that runs it only at steps where some row ends a segment."""

    def __init__(self, step: PolicyStep):
        super().__init__()
        # built only for an encoder that has ``export_write`` (see _export_onnx)
        self.sequence = cast(ELMUR, step.policy.sequence)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequence.export_write(*inputs)

    @staticmethod
    def input_names() -> list[str]:
        return ["in.memory", "in.anchors", "in.outputs", "in.steps", "in.done"]


def export_policy(algo: ELMURDTLike, fname: str | os.PathLike[str]) -> None:
    """Writes the policy step to ``fname``: TorchScript for ``.pt``, ONNX for ``.onnx``."""
    path = Path(fname)
    if path.suffix not in (".pt", ".onnx"):
        raise ValueError(f"{fname}: save_policy writes .pt (TorchScript) or .onnx files")
    with torch.no_grad(), warnings.catch_warnings():
        # the graph has no data-dependent branch: shape checks traced as constants are right
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # every index in the graph is non-negative, the case the exporter warns about is not
        warnings.filterwarnings("ignore", message=".*advanced indexing.*")
        if path.suffix == ".pt":
            step = PolicyStep(algo).eval()
            traced = torch.jit.trace(step, step.example_inputs(2), check_trace=False)
            # weights become constants of the graph, which TorchScript then optimises
            torch.jit.save(torch.jit.freeze(traced), str(path))
        else:
            _export_onnx(algo, path)


_OPSET = 17


def _export_onnx(algo: ELMURDTLike, path: Path) -> None:
    require("onnx", "ONNX export")
    import onnx

    impl = algo.impl
    if impl is None or not hasattr(impl.policy.sequence, "export_write"):  # GRU: no memory write
        step = PolicyStep(algo).eval()  # (which refuses an algorithm that is not built)
        _trace_onnx(step, step.example_inputs(2), step.input_names(), step.output_names(), path)
        return
    # The memory write is almost half a step's work and is needed once per segment: trace the
    # step without it and the write alone, and join them with an ONNX If that runs the write
    # only when some row ends its segment.
    split = PolicyStep(algo, split_write=True).eval()
    write = WriteStep(split)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = split.example_inputs(2)
        _trace_onnx(split, inputs, split.input_names(), split.output_names(), Path(tmp) / "s")
        state = dict(zip(split.state_names, inputs[split.num_observations + 2 :], strict=True))
        example = (
            state["memory"],
            state["anchors"],
            state["outputs"],
            state["timestep"],
            torch.ones(2, dtype=torch.bool),
        )
        names = WriteStep.input_names()
        _trace_onnx(write, example, names, ["out.memory", "out.anchors"], Path(tmp) / "w")
        graph = _join(onnx.load(str(Path(tmp) / "s")), onnx.load(str(Path(tmp) / "w")))
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def _trace_onnx(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    names: list[str],
    outputs: list[str],
    path: Path,
) -> None:
    torch.onnx.export(
        module,
        inputs,
        str(path),
        input_names=names,
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in (*names, *outputs)},
        opset_version=_OPSET,
        dynamo=False,
    )


def _join(step: Any, write: Any) -> Any:
    """One model: ``step``'s graph, with its memory and anchors outputs replaced by an If
    that runs ``write``'s graph when any ``write.done`` is true and passes them through
    otherwise."""
    from onnx import TensorProto, helper

    main = step.graph
    # the step's memory / anchors outputs become inner values the write reads
    produced = {"next.memory": "pre.memory", "next.anchors": "pre.anchors"}
    for node in main.node:
        node.input[:] = [produced.get(n, n) for n in node.input]
        node.output[:] = [produced.get(n, n) for n in node.output]
    kept = [o for o in main.output if o.name not in ("write.steps", "write.done")]
    by_name = {o.name: o for o in kept}
    # the write's graph, its names prefixed so nothing clashes, its inputs the step's values
    inner = write.graph
    # (the exporter drops unused inputs: match by name)
    outer = {
        "in.memory": "pre.memory",
        "in.anchors": "pre.anchors",
        "in.outputs": "next.outputs",
        "in.steps": "write.steps",
        "in.done": "write.done",
    }

    def rename(name: str) -> str:
        if not name:
            return name
        return outer.get(name, f"w/{name}")

    for node in inner.node:
        node.name = f"w/{node.name}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for init in inner.initializer:
        init.name = rename(init.name)
    then_branch = helper.make_graph(
        list(inner.node),
        "write",
        [],
        [
            helper.make_tensor_value_info(f"w/{o.name}", o.type.tensor_type.elem_type, None)
            for o in inner.output
        ],
        list(inner.initializer),
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("Identity", ["pre.memory"], ["keep/memory"]),
            helper.make_node("Identity", ["pre.anchors"], ["keep/anchors"]),
        ],
        "keep",
        [],
        [
            helper.make_tensor_value_info(
                "keep/memory", by_name["next.memory"].type.tensor_type.elem_type, None
            ),
            helper.make_tensor_value_info(
                "keep/anchors", by_name["next.anchors"].type.tensor_type.elem_type, None
            ),
        ],
    )
    main.node.extend(
        [
            helper.make_node("Cast", ["write.done"], ["write.done_int"], to=TensorProto.INT32),
            helper.make_node("ReduceMax", ["write.done_int"], ["write.any_int"], keepdims=0),
            helper.make_node("Cast", ["write.any_int"], ["write.any"], to=TensorProto.BOOL),
            helper.make_node(
                "If",
                ["write.any"],
                ["next.memory", "next.anchors"],
                then_branch=then_branch,
                else_branch=else_branch,
            ),
        ]
    )
    del main.output[:]
    main.output.extend(kept)
    return step

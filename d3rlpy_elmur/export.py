"""Stateful export of an ELMURDT policy to TorchScript (``.pt``) and ONNX (``.onnx``).

d3rlpy's ``save_policy`` traces one context window, which would drop ELMUR's memory. The
exported graph here is one step with the recurrent state as explicit inputs and outputs:

inputs
    ``observation_0`` .. ``observation_{n-1}`` [B, *part] (one per part of a tuple
    observation; raw, the model's observation scaler is in the graph), ``return_to_go``
    [B, 1] (raw; the reward scaler is in the graph), ``first`` [B] bool (true on an episode's
    first step: that row's state inputs are replaced by the initial state, except ELMUR's
    windows of past keys, values and outputs, which the row does not see before it has
    rewritten them, so they need only be finite, as every state the graph makes is), then
    the state, ``state.<name>`` for every name of :attr:`PolicyStep.state_names`.
outputs
    ``action`` ([B] int64 for discrete actions, [B, A] float in the environment's units for
    continuous ones), ``output`` [B, A] (logits, or the action before the action scaler), then
    the next state, ``next.<name>`` in the same order.

The exporter drops inputs the graph does not read (``return_to_go`` without a return-to-go
token, ``state.previous_action`` without an action token). The state is the step counter
(``timestep``), the previous action and the encoder's. For ELMUR (``elmur_export.py`` gives
each entry's shape): the memory and its anchors; per layer i the windows of the last W + K
self-attention keys and values (``keys.i``, ``values.i``) and of the last K layer outputs
(``outputs.i``, what the memory write reads at a segment's end); the read's cache
(``read_A.i``, ``read_c.i``, ``read_P.i``: the memory folded into the read, with the read's
time biases for the segment's positions), computed at reset and at a segment's end only; the
position in the segment and, with W > 0, ``context_valid``. For the GRU, its hidden state.
Its size is fixed, so a step costs the same at t = 10 and t = 10^6. Treat it as opaque: its
names follow the model and may change between versions (``onnx_policy.py`` takes them from
the graph).
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from d3rlpy.dataset import is_tuple_shape
from torch import nn

from .algos.torch.elmur_dt_impl import ELMURDTLike
from .extras import require
from .model_inputs import environment_actions, no_previous_action, scale_inputs
from .models.elmur_encoder import ELMUR
from .models.elmur_export import EXPORT_UNSEEN_AFTER_RESET
from .models.sequence import State, reset_rows

__all__ = ["PolicyStep", "export_policy"]


class PolicyStep(nn.Module):
    """ELMURDT's policy step as a pure function of explicit state (what is exported)."""

    def __init__(self, algo: ELMURDTLike, split_write: bool = False):
        """``split_write``: leave the segment end out (what ``export_write`` changes passes
        through) and also output ``write.steps`` and ``write.done``, what :class:`WriteStep`
        needs."""
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
        # what a restarted row reads before it rewrites it (ELMUR's windows of keys, values
        # and outputs are masked until then: resetting them would copy them every step)
        unseen = EXPORT_UNSEEN_AFTER_RESET if isinstance(self.policy.sequence, ELMUR) else ()
        self.reset_names = [name for name in self.state_names if not name.startswith(unseen)]

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
        initial = self.initial_state(1)
        state.update(reset_rows({name: state[name] for name in self.reset_names}, initial, first))
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
    """ELMUR's segment end alone (``ELMUR.export_write``: the memory write and the read cache
    it refreshes), for the ONNX graph that runs it only at steps where some row ends a
    segment. Inputs: ``in.<name>`` for every name of the encoder's state, ``in.steps`` and
    ``in.done``; outputs: ``out.<name>`` for every name of :attr:`changed`."""

    def __init__(self, step: PolicyStep):
        super().__init__()
        # built only for an encoder that has ``export_write`` (see _export_onnx)
        self.sequence = cast(ELMUR, step.policy.sequence)
        self.names = sorted(self.sequence.initial_export_state(1))
        changed = self.sequence.export_write(*self._arguments(self.example_inputs(1)))
        self.changed = sorted(changed)

    def _arguments(
        self, inputs: tuple[torch.Tensor, ...]
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        *state, steps, done = inputs
        return dict(zip(self.names, state, strict=True)), steps, done

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        changed = self.sequence.export_write(*self._arguments(inputs))
        return tuple(changed[name] for name in self.changed)

    def example_inputs(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        state = self.sequence.initial_export_state(batch_size)
        device = state["memory"].device
        steps = torch.full((batch_size,), self.sequence.context_size - 1, device=device)
        done = torch.ones(batch_size, dtype=torch.bool, device=device)
        return (*(state[name] for name in self.names), steps, done)

    def input_names(self) -> list[str]:
        return [*(f"in.{name}" for name in self.names), "in.steps", "in.done"]

    def output_names(self) -> list[str]:
        return [f"out.{name}" for name in self.changed]


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
    require("onnxruntime", "ONNX export")  # it runs the traced graphs (_fold_batch_shapes)
    import onnx

    impl = algo.impl
    if impl is None or not hasattr(impl.policy.sequence, "export_write"):  # GRU: no memory write
        step = PolicyStep(algo).eval()  # (which refuses an algorithm that is not built)
        onnx.save(_trace_onnx(step, step.input_names(), step.output_names(), path), str(path))
        return
    # The segment end (memory write, read cache) is most of a step's work and is needed once
    # per segment: trace the step without it and the segment end alone, and join them with an
    # ONNX If that runs the segment end only when some row ends its segment.
    split = PolicyStep(algo, split_write=True).eval()
    write = WriteStep(split)
    with tempfile.TemporaryDirectory() as tmp:
        step_graph = _trace_onnx(split, split.input_names(), split.output_names(), Path(tmp) / "s")
        write_graph = _trace_onnx(write, write.input_names(), write.output_names(), Path(tmp) / "w")
    graph = _join(step_graph, write_graph, write)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def _trace_onnx(
    module: PolicyStep | WriteStep, names: list[str], outputs: list[str], path: Path
) -> Any:
    """``module`` traced to an ONNX model (through ``path``) with a dynamic batch axis, its
    shape arithmetic folded (``_fold_batch_shapes``)."""
    import onnx

    torch.onnx.export(
        module,
        module.example_inputs(_PROBE_BATCHES[0]),
        str(path),
        input_names=names,
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in (*names, *outputs)},
        opset_version=_OPSET,
        dynamo=False,
    )
    feeds = [
        {name: x.cpu().numpy() for name, x in zip(names, module.example_inputs(n), strict=True)}
        for n in _PROBE_BATCHES
    ]
    return _fold_batch_shapes(onnx.load(str(path)), feeds)


# Batch sizes at which _fold_batch_shapes runs a graph (the first is the traced one's).
_PROBE_BATCHES = (2, 3)


def _fold_batch_shapes(model: Any, feeds: list[dict[str, np.ndarray]]) -> Any:
    """``model`` with the shape arithmetic of its dynamic batch axis folded.

    The trace records every ``x.shape[i]``, ``view(B, ...)`` and ``expand(B, ...)`` of the
    model as ops, about a third of a step's nodes, which onnxruntime runs at every step. Run
    at the batch sizes of ``feeds``: a dimension read from a shape (Shape, then Gather) that
    is the same at each is a constant; a Reshape or Expand whose output has its input's shape
    at each is dropped; a Reshape whose output shape differs in one entry only (the batch)
    takes a constant target with -1 there. The graph's shapes are linear in the batch, so
    what two batch sizes agree on holds at every one; onnxruntime folds what then becomes
    constant when it loads the model."""
    from onnx import helper, numpy_helper

    graph = model.graph
    kinds = {out: node.op_type for node in graph.node for out in node.output}
    dims = [n for n in graph.node if n.op_type == "Gather" and kinds.get(n.input[0]) == "Shape"]
    shaped = [n for n in graph.node if n.op_type in ("Reshape", "Expand")]
    probed = [name for node in shaped for name in (node.input[0], node.output[0])]
    values = _probe(model, [node.output[0] for node in dims], probed, feeds)
    for node in dims:
        first, *others = values[node.output[0]]
        if all(np.array_equal(first, other) for other in others):
            value = numpy_helper.from_array(first)
            node.CopyFrom(helper.make_node("Constant", [], node.output, node.name, value=value))
    outputs = {output.name for output in graph.output}
    same = {}  # the outputs of dropped nodes -> their inputs
    for node in shaped:
        ends = (node.input[0], node.output[0])
        before, after = (np.stack(values[f"shape/{end}"]) for end in ends)
        batch = (after != after[0]).any(0)
        if np.array_equal(before, after) and node.output[0] not in outputs:
            same[node.output[0]] = node.input[0]
        # (a 0 in a Reshape target copies the input's dimension: such targets are left)
        elif node.op_type == "Reshape" and batch.sum() <= 1 and after[0].all():
            target = numpy_helper.from_array(np.where(batch, -1, after[0]), f"{node.name}/to")
            graph.initializer.append(target)
            node.input[1] = target.name
    for node in graph.node:
        node.input[:] = [_follow(same, name) for name in node.input]
    _prune(graph)
    return model


def _follow(same: dict[str, str], name: str) -> str:
    """``name``, or what it equals through a chain of dropped nodes."""
    while name in same:
        name = same[name]
    return name


def _probe(
    model: Any, values: list[str], shapes: list[str], feeds: list[dict[str, np.ndarray]]
) -> dict[str, list[np.ndarray]]:
    """The int64 ``values`` of ``model`` and the shapes of its ``shapes`` (as
    ``shape/<name>``), in a run at each of ``feeds``."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = copy.deepcopy(model)
    unique = list(dict.fromkeys(shapes))
    probe.graph.node.extend(helper.make_node("Shape", [n], [f"shape/{n}"]) for n in unique)
    names = [*values, *(f"shape/{n}" for n in unique)]
    probe.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.INT64, None) for name in names
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    read = {i.name for i in session.get_inputs()}  # (the exporter drops unread inputs)
    runs = [session.run(names, {k: v for k, v in feed.items() if k in read}) for feed in feeds]
    return {name: list(run) for name, run in zip(names, zip(*runs, strict=True), strict=True)}


def _prune(graph: Any) -> None:
    """Drops the nodes and initializers that no graph output depends on."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):  # (nodes are in topological order)
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)


def _content(tensor: Any) -> tuple[int, tuple[int, ...], bytes]:
    """An ONNX initializer's type, shape and bytes."""
    return tensor.data_type, tuple(tensor.dims), tensor.raw_data


def _nested(inner: Any, outer: dict[str, str], stored: Any) -> tuple[list[Any], list[Any]]:
    """The nodes and own initializers of the graph ``inner``, to nest in the step's graph:
    its names prefixed (``w/``) so that nothing clashes, except its inputs, which become the
    step's values named by ``outer``, and the weights the step's initializers ``stored``
    already hold (the read's, which the step's reset also uses), read from there."""
    by_content = {_content(init): init.name for init in stored}
    shared = {
        init.name: by_content[_content(init)]
        for init in inner.initializer
        if _content(init) in by_content
    }
    names = {**outer, **shared}

    def rename(name: str) -> str:
        return names.get(name, f"w/{name}") if name else name

    for node in inner.node:
        node.name = f"w/{node.name}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    own = [init for init in inner.initializer if init.name not in shared]
    for init in own:
        init.name = rename(init.name)
    return list(inner.node), own


def _join(step: Any, write: Any, segment_end: WriteStep) -> Any:
    """One model: ``step``'s graph, with its outputs of what the segment end changes replaced
    by an If that runs ``write``'s graph when any ``write.done`` is true and passes them
    through otherwise."""
    from onnx import TensorProto, helper

    main = step.graph
    # the step's outputs of what the write changes become inner values (``pre.<name>``)
    produced = {f"next.{name}": f"pre.{name}" for name in segment_end.changed}
    for node in main.node:
        node.input[:] = [produced.get(n, n) for n in node.input]
        node.output[:] = [produced.get(n, n) for n in node.output]
    kept = [o for o in main.output if o.name not in ("write.steps", "write.done")]
    elem_type = {o.name: o.type.tensor_type.elem_type for o in kept}
    # the write's graph, its names prefixed so nothing clashes, its inputs the step's values
    # (the exporter drops unused inputs: match by name)
    outer = {
        f"in.{name}": produced.get(f"next.{name}", f"next.{name}") for name in segment_end.names
    }
    outer.update({"in.steps": "write.steps", "in.done": "write.done"})
    nodes, weights = _nested(write.graph, outer, main.initializer)
    results = [f"next.{name}" for name in segment_end.changed]
    then_branch = helper.make_graph(
        nodes,
        "write",
        [],
        [
            helper.make_tensor_value_info(f"w/{o.name}", elem_type[r], None)
            for o, r in zip(write.graph.output, results, strict=True)
        ],
        weights,
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", [produced[r]], [f"keep/{r}"]) for r in results],
        "keep",
        [],
        [helper.make_tensor_value_info(f"keep/{r}", elem_type[r], None) for r in results],
    )
    main.node.extend(
        [
            helper.make_node("Cast", ["write.done"], ["write.done_int"], to=TensorProto.INT32),
            helper.make_node("ReduceMax", ["write.done_int"], ["write.any_int"], keepdims=0),
            helper.make_node("Cast", ["write.any_int"], ["write.any"], to=TensorProto.BOOL),
            helper.make_node(
                "If", ["write.any"], results, then_branch=then_branch, else_branch=else_branch
            ),
        ]
    )
    del main.output[:]
    main.output.extend(kept)
    return step

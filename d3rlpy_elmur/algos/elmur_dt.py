"""ELMURDT: ELMUR (or any registered sequence encoder) as a d3rlpy transformer algorithm.

Pick it like any d3rlpy algorithm:

.. code-block:: python

    import d3rlpy_elmur
    from d3rlpy_elmur import DiscreteELMURDTConfig

    dataset = d3rlpy_elmur.datasets.load_minari("d3rlpy_elmur/tmaze-c28-v0")
    algo = DiscreteELMURDTConfig(context_size=10, num_segments=3).create(device="cpu:0")
    algo.fit(dataset, n_steps=2000, n_steps_per_epoch=500)
    policy = algo.as_stateful_wrapper()  # carries memory across segments, constant cost per step

Continuous actions use ``ELMURDTConfig`` (tanh head, MSE); discrete actions
``DiscreteELMURDTConfig`` (cross-entropy with label smoothing). d3rlpy decides the action type
before it reads the config, hence two classes.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

import d3rlpy
import numpy as np
import torch
from d3rlpy.algos.transformer.action_samplers import (
    GreedyTransformerActionSampler,
    IdentityTransformerActionSampler,
    TransformerActionSampler,
)
from d3rlpy.algos.transformer.base import TransformerAlgoBase, TransformerConfig
from d3rlpy.base import DeviceArg, register_learnable
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import ReplayBufferBase, TrajectoryMiniBatch, is_tuple_shape
from d3rlpy.models.encoders import EncoderFactory, VectorEncoderFactory, make_encoder_field
from d3rlpy.optimizers import (
    AdamWFactory,
    OptimizerFactory,
    OptimizerWrapper,
    make_optimizer_field,
)
from d3rlpy.torch_utility import TorchTrajectoryMiniBatch, wrap_model_by_ddp
from d3rlpy.types import Shape

from ..defaults import DEFAULT_TARGET_RETURN
from ..io import save_learnable
from ..model_inputs import previous_or_none
from ..models.factories import (
    ELMURFactory,
    SequenceEncoderArgs,
    SequenceEncoderFactory,
    make_sequence_encoder_field,
)
from ..models.policy import TOKEN_FORMATS, create_sequence_policy
from ..models.sequence import failed_fields, type_checks
from .replay_states import BoundaryStates
from .segments import SegmentRecurrentView, SegmentWindowBatch
from .stateful import ELMURStatefulWrapper
from .torch.elmur_dt_impl import ELMURDTImpl, ELMURDTModules

__all__ = [
    "ELMURDTConfigBase",
    "ELMURDTConfig",
    "DiscreteELMURDTConfig",
    "ELMURDTBase",
    "ELMURDT",
    "DiscreteELMURDT",
    "plan_epochs",
]


# d3rlpy's TransformerConfig default, kept so configs written before stay valid (it is unused)
_UNUSED_MAX_TIMESTEP = 1000


def _default_encoder() -> EncoderFactory:
    return VectorEncoderFactory(hidden_units=[128], exclude_last_activation=True)


def _default_optimizer() -> OptimizerFactory:
    return AdamWFactory(weight_decay=1e-4, clip_grad_norm=1.0)


def _use_fused_adam(optim: OptimizerWrapper) -> None:
    """Runs Adam and AdamW as PyTorch's fused kernel where the factory left the choice to
    PyTorch (``foreach`` and ``fused`` None), on CPU and CUDA.

    On CPU PyTorch's default is its single-tensor loop: about 30 small ops per parameter, a
    fifth of an ELMURDT update's ops and 15 of its ~330 ms (issue 34, POPGym preset shape).
    The fused kernel applies the same rule in one op per parameter; results agree to float
    rounding. Set before the first step, so the state is created as the kernel expects."""
    opt = optim.optim
    if type(opt) not in (torch.optim.Adam, torch.optim.AdamW):
        return
    for group in opt.param_groups:
        supported = all(
            p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in group["params"]
        )
        left_to_torch = group["foreach"] is None and group["fused"] is None
        if supported and left_to_torch and not group["differentiable"]:
            group["fused"] = True


_Config = TypeVar("_Config", bound="ELMURDTConfigBase")

# Fields of ELMURDTConfigBase that only ELMUR uses and that moved into ELMURFactory (issue 35).
_MOVED_TO_ENCODER = ("attention_window", "memory_slots", "lru_blend", "memory_init_std")
# ELMUR options whose default is not what the model did before the option existed (issue 33
# changed them): a saved config that does not name one was written before it, so it loads with
# the model it was trained with, not with today's default.
_BEFORE_THE_OPTION = {
    "attention_window": 0,
    "write_gate": 0.0,
    "write_gate_empty": False,
    "write_gate_cost": 0.0,
}


@dataclasses.dataclass()
class ELMURDTConfigBase(TransformerConfig):
    """The fields of ``ELMURDTConfig`` and ``DiscreteELMURDTConfig``, shared by both action
    types.

    Args:
        context_size: K, steps per segment.
        num_segments: S, segments per training window; memory is carried across them.
        memory_refresh_every: a training window that starts mid-episode starts from the
            episode's state (memory, attention context) stored at that segment boundary;
            the stored states are recomputed from t = 0 over the whole dataset every this
            many updates (and at the first), and updated by every window in between.
        embed_dim: width of tokens, memory slots and every layer.
        num_layers, num_heads, dropout: the sequence encoder's transformer (or GRU) shape.
        token_format: "obs" (one observation token per step, the paper's), "rtg_obs" (plus
            return-to-go) or "rtg_obs_act" (plus the previous action).
        label_smoothing: cross-entropy label smoothing (discrete actions only).
        bptt_segments: truncate backpropagation through memory every n segments (0: through
            all S segments).
        sequence_encoder: the sequence-encoder factory, with the options only it uses:
            ``ELMURFactory`` (default: the attention window W, memory slots M, the LRU blend,
            ablation switches; ``d3rlpy_elmur.models.ELMUROptions``) or ``GRUFactory``.
        encoder_factory: d3rlpy's observation encoder (``PixelEncoderFactory`` for images).
        optim_factory: d3rlpy's optimizer factory (AdamW, weight decay 1e-4, clip 1.0).
        num_threads: torch intra-op threads while ``fit`` runs, restored when it returns
            (0: leave torch's setting as it is).
    """

    batch_size: int = 64
    learning_rate: float = 3e-4
    context_size: int = 10
    num_segments: int = 3
    memory_refresh_every: int = 500
    embed_dim: int = 128
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.0
    token_format: str = "obs"
    label_smoothing: float = 0.0
    bptt_segments: int = 0
    num_threads: int = 0
    sequence_encoder: SequenceEncoderFactory = make_sequence_encoder_field()
    encoder_factory: EncoderFactory = dataclasses.field(
        default_factory=_default_encoder, metadata=make_encoder_field().metadata
    )
    optim_factory: OptimizerFactory = dataclasses.field(
        default_factory=_default_optimizer, metadata=make_optimizer_field().metadata
    )

    @classmethod
    def upgrade_params(
        cls, params: Mapping[str, Any], inherited_encoder: str | None = None
    ) -> dict[str, Any]:
        """``params`` (a config's fields, as in JSON or YAML) with the fields that moved into
        ``ELMURFactory`` (issue 35: ``_MOVED_TO_ENCODER``) moved there, so configs and
        ``.d3`` files written before still load as they were trained. Another encoder never
        used them: they are dropped. ``inherited_encoder``: the encoder type that applies
        where ``params`` name none (a YAML file's ``base`` gives it; else ELMUR, the
        default). Raises ValueError where both places set one differently.
        """
        moved = {name: params[name] for name in _MOVED_TO_ENCODER if name in params}
        upgraded = {name: value for name, value in params.items() if name not in moved}
        if not moved:
            return upgraded
        elmur = ELMURFactory.get_type()
        encoder = upgraded.get("sequence_encoder", {})
        if isinstance(encoder, str):  # YAML's bare type name
            encoder = {"type": encoder}
        if not isinstance(encoder, Mapping):
            return upgraded  # a factory object: the fields have nowhere to go
        encoder = {"type": inherited_encoder or elmur, **encoder}
        if encoder["type"] != elmur:
            return upgraded
        options = encoder.get("params") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"sequence_encoder's params must be a mapping, not {options!r}")
        clash = sorted(k for k in moved if k in options and options[k] != moved[k])
        if clash:
            raise ValueError(
                f"{', '.join(clash)} set both beside sequence_encoder and in its params, "
                "differently: set them only in sequence_encoder's params"
            )
        upgraded["sequence_encoder"] = {**encoder, "params": {**moved, **options}}
        return upgraded

    @classmethod
    def deserialize_from_dict(cls: type[_Config], dict_config: dict[str, Any]) -> _Config:
        """A saved config (a ``.d3`` file's, d3rlpy's JSON), as it was trained: moved fields
        moved (``upgrade_params``), and ELMUR options it does not name at the values they had
        before they existed (``_BEFORE_THE_OPTION``), not today's defaults."""
        params = cls.upgrade_params(dict_config)
        elmur = ELMURFactory.get_type()
        encoder = params.get("sequence_encoder", {"type": elmur})
        if isinstance(encoder, Mapping) and encoder.get("type") == elmur:
            options = {**_BEFORE_THE_OPTION, **(encoder.get("params") or {})}
            params["sequence_encoder"] = {**encoder, "params": options}
        return cls.from_dict(params)

    @classmethod
    def deserialize(cls: type[_Config], serialized_config: str) -> _Config:
        return cls.deserialize_from_dict(json.loads(serialized_config))

    def validate(self) -> None:
        """Raises ValueError naming every invalid field: the algorithm's own here, the
        sequence encoder's (shape and options) by its factory's ``check``."""
        ints = (
            "context_size",
            "num_segments",
            "memory_refresh_every",
            "batch_size",
            "num_threads",
        )
        floats = ("label_smoothing", "learning_rate")
        wrong_type = failed_fields(self, type_checks(self, ints, floats))
        factories = {  # field: (its type, an example)
            "sequence_encoder": (
                SequenceEncoderFactory,
                "ELMURFactory() or GRUFactory() from d3rlpy_elmur.models",
            ),
            "encoder_factory": (EncoderFactory, "d3rlpy.models.VectorEncoderFactory()"),
            "optim_factory": (OptimizerFactory, "d3rlpy.optimizers.AdamWFactory()"),
        }
        for name, (base, example) in factories.items():
            if not isinstance(getattr(self, name), base):
                raise ValueError(
                    f"invalid {type(self).__name__}: {name}={getattr(self, name)!r} (wrong type: "
                    f"expected a {base.__name__}, e.g. {example})"
                )
        if wrong_type:
            raise ValueError(f"invalid {type(self).__name__}: {wrong_type} (wrong type)")
        checks = {
            "context_size": self.context_size > 0,
            "num_segments": self.num_segments > 0,
            "memory_refresh_every": self.memory_refresh_every >= 1,
            "batch_size": self.batch_size > 0,
            "token_format": self.token_format in TOKEN_FORMATS,
            "label_smoothing": 0.0 <= self.label_smoothing < 1.0,
            "num_threads": self.num_threads >= 0,
            "learning_rate": self.learning_rate > 0,
        }
        # fields inherited from d3rlpy's TransformerConfig that ELMURDT cannot honour
        unused = {
            "compile_graph": (
                self.compile_graph is False,
                "d3rlpy's CUDA-graph capture runs a fixed window; ELMURDT carries memory "
                "between calls",
            ),
            "max_timestep": (
                self.max_timestep == _UNUSED_MAX_TIMESTEP,
                "ELMURDT has no timestep embedding, so episodes of any length are fine",
            ),
        }
        for name, (ok, why) in unused.items():
            if not ok:
                raise ValueError(
                    f"invalid {type(self).__name__}: {name}={getattr(self, name)!r} is not used "
                    f"({why}); leave it at its default"
                )
        problems = []
        bad = failed_fields(self, checks)
        if bad:
            problems.append(
                f"{bad}. Expected context_size, num_segments, memory_refresh_every, "
                f"batch_size >= 1; label_smoothing in [0, 1); token_format in {TOKEN_FORMATS}."
            )
        try:  # the encoder's fields, named in the same error
            self.sequence_encoder.check(self.encoder_args())
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: {' '.join(problems)}")

    def encoder_args(self) -> SequenceEncoderArgs:
        return SequenceEncoderArgs(
            embed_dim=self.embed_dim,
            context_size=self.context_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            dropout=self.dropout,
            bptt_segments=self.bptt_segments,
        )


@dataclasses.dataclass()
class ELMURDTConfig(ELMURDTConfigBase):
    """ELMURDT for continuous actions (tanh head, MSE loss); fields: ``ELMURDTConfigBase``."""

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> ELMURDT:
        self.validate()
        return ELMURDT(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "elmur_dt"


@dataclasses.dataclass()
class DiscreteELMURDTConfig(ELMURDTConfigBase):
    """ELMURDT for discrete actions (cross-entropy); fields: ``ELMURDTConfigBase``."""

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> DiscreteELMURDT:
        self.validate()
        return DiscreteELMURDT(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "discrete_elmur_dt"


def plan_epochs(n_steps: int, n_steps_per_epoch: int) -> int:
    """Steps per epoch such that d3rlpy's ``fit`` trains exactly ``n_steps``.

    d3rlpy trains ``(n_steps // n_steps_per_epoch) * n_steps_per_epoch`` steps, silently 0 when
    n_steps < n_steps_per_epoch. We use the largest divisor of n_steps not above the request,
    and refuse one so small that epochs (and their evaluation and checkpoints) would multiply.
    """
    if n_steps <= 0 or n_steps_per_epoch <= 0:
        raise ValueError(
            f"n_steps={n_steps} and n_steps_per_epoch={n_steps_per_epoch} must be positive"
        )
    wanted = min(n_steps_per_epoch, n_steps)
    per_epoch = next(d for d in range(wanted, 0, -1) if n_steps % d == 0)
    if per_epoch * 2 < wanted:
        raise ValueError(
            f"n_steps={n_steps} has no divisor near n_steps_per_epoch={n_steps_per_epoch}; "
            "pass an n_steps_per_epoch that divides n_steps"
        )
    return per_epoch


class ELMURDTBase(TransformerAlgoBase[ELMURDTImpl, ELMURDTConfigBase]):
    """What ELMURDT and DiscreteELMURDT share (d3rlpy needs one class per action type:
    ``get_action_type`` runs before the config is set); ``isinstance(algo, ELMURDTBase)``
    tells either apart from d3rlpy's algorithms."""

    _discrete: bool = False
    _replay: tuple[SegmentRecurrentView, BoundaryStates] | None = None  # set during fit

    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        cfg = self._config
        is_vector = isinstance(cfg.encoder_factory, VectorEncoderFactory)
        if is_vector and is_tuple_shape(observation_shape):
            raise ValueError(
                f"tuple observation shape {observation_shape} needs an encoder factory whose "
                "encoder takes a sequence of tensors (one per part), registered with d3rlpy's "
                "register_encoder_factory; the default VectorEncoderFactory takes one array"
            )
        if is_vector and len(observation_shape) != 1:
            raise ValueError(
                f"observation shape {tuple(observation_shape)} needs an image encoder: "
                "pass encoder_factory=d3rlpy.models.PixelEncoderFactory() (the default "
                "VectorEncoderFactory takes flat observations)"
            )
        sequence = cfg.sequence_encoder.create(cfg.encoder_args())
        policy = create_sequence_policy(
            observation_shape,
            action_size,
            self._discrete,
            cfg.encoder_factory,
            sequence,
            cfg.token_format,
        ).to(self._device)
        if self._enable_ddp:
            policy = wrap_model_by_ddp(policy)
        optim = cfg.optim_factory.create(
            policy.named_modules(), lr=cfg.learning_rate, compiled=False
        )
        _use_fused_adam(optim)
        self._impl = ELMURDTImpl(
            observation_shape=observation_shape,
            action_size=action_size,
            modules=ELMURDTModules(policy=policy, optim=optim),
            context_size=cfg.context_size,
            num_segments=cfg.num_segments,
            label_smoothing=cfg.label_smoothing,
            discrete=self._discrete,
            device=self._device,
        )

    def segment_view(
        self, dataset: ReplayBufferBase, seed: int | None = None
    ) -> SegmentRecurrentView:
        """The dataset as segment-recurrent windows (what ``fit`` trains on)."""
        cfg = self._config
        view = SegmentRecurrentView(dataset, cfg.context_size, cfg.num_segments, seed)
        segments = -(-view.longest_episode // cfg.context_size)
        if segments < cfg.num_segments:
            raise ValueError(
                f"num_segments={cfg.num_segments} with context_size={cfg.context_size} is "
                f"longer than every episode (the longest has {view.longest_episode} steps, "
                f"{segments} segment(s)): lower num_segments or context_size"
            )
        self._warn_if_blend_untrained(segments)
        return view

    def _warn_if_blend_untrained(self, segments: int) -> None:
        """The LRU blend gets gradient only where a window blends a slot and reads it back:
        a window that starts at segment p starts from a memory with p slots written, so its
        segment j blends once p + j >= M, and a later one reads it; some window trains the
        blend iff M <= max p + S - 2, with p up to the longest episode's segments - S."""
        cfg, encoder = self._config, self._config.sequence_encoder
        if not isinstance(encoder, ELMURFactory) or not encoder.use_lru:
            return
        before = segments - cfg.num_segments
        most = before + cfg.num_segments - 2
        if encoder.memory_slots > most:
            advice = (
                f"use memory_slots <= {most}"
                if most >= 1
                else "use num_segments >= 3, or longer episodes"
            )
            warnings.warn(
                f"memory_slots={encoder.memory_slots} with num_segments={cfg.num_segments} on "
                f"episodes of up to {segments} segments: no training window reads a blended "
                "slot, so the LRU blend is never trained and memory may not hold past the "
                f"training length ({advice})",
                UserWarning,
                stacklevel=4,
            )

    def fit(
        self,
        dataset: ReplayBufferBase,
        n_steps: int,
        n_steps_per_epoch: int = 10000,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        """d3rlpy's ``fit`` on segment-recurrent windows; trains exactly ``n_steps`` updates.

        ``seed`` makes the run repeatable: it calls ``d3rlpy.seed(seed)`` (Python, numpy and
        torch: model init when the model is built here, dropout, d3rlpy's own draws) and seeds
        the window sampler. Without it the global generators are left as they are and the
        sampler's seed is drawn from numpy's, so ``d3rlpy.seed(n)`` before ``fit`` also
        repeats a run. A :class:`SegmentRecurrentView` from :meth:`segment_view` is used as it
        is, its sampler included (``seed`` then seeds the rest). Windows start from the stored
        boundary states of the dataset's episodes (see ``memory_refresh_every``). Other
        keyword arguments (logger_adapter, eval_env, save_interval, callback, ...) are
        d3rlpy's.

        What d3rlpy's ``fit`` cannot express, and so this override adds: windows of whole
        segments (d3rlpy samples ``context_size`` steps through the dataset; the view samples
        ``(1 + S) * K``), the table of boundary states those windows start from, which lives
        as long as this call, a seed for the run, ``num_threads`` for this call only, and an
        epoch length that divides ``n_steps`` (d3rlpy trains ``n_steps // n_steps_per_epoch``
        whole epochs: 0 updates when n_steps is smaller).
        """
        if seed is not None:
            d3rlpy.seed(seed)  # before the model is built (d3rlpy's fit builds it)
        if isinstance(dataset, SegmentRecurrentView):  # a view built (or restored) by the caller
            view = dataset
        else:
            sampler_seed = int(np.random.randint(2**31)) if seed is None else seed
            view = self.segment_view(dataset, sampler_seed)
        per_epoch = plan_epochs(n_steps, n_steps_per_epoch)
        self._replay = (view, BoundaryStates(view.num_boundaries))
        threads = torch.get_num_threads()
        try:
            # a process-wide torch setting: set for this fit only, not when the model is built
            if self._config.num_threads:
                torch.set_num_threads(self._config.num_threads)
            super().fit(view, n_steps, n_steps_per_epoch=per_epoch, **kwargs)
        finally:
            torch.set_num_threads(threads)
            self._replay = None  # the table belongs to this fit (it can be large)

    def update(self, batch: TrajectoryMiniBatch) -> dict[str, float]:
        """One update on whole segments of K steps.

        A :class:`SegmentWindowBatch` (what ``fit`` samples) is a context segment, run without
        gradient, and n >= 1 segments; it trains with real previous actions and, inside
        ``fit``, from the stored boundary states. Any other batch starts from the initial
        memory: (1 + S) * K steps, the length of ``fit``'s windows, is read as a context
        segment and S segments; any other n * K steps (n >= 1; n = 1 is d3rlpy's batch of
        ``context_size`` steps) as n segments. Other lengths raise ValueError naming the
        accepted ones (``ELMURDTImpl.context_steps``)."""
        assert self._impl is not None, "build the algorithm first (build_with_dataset)"
        cfg = self._config
        torch_batch = self._to_torch(batch)
        if isinstance(batch, SegmentWindowBatch):
            states, staleness = None, None
            if self._replay is not None:
                view, states = self._replay
                if not states.filled or self._grad_step % cfg.memory_refresh_every == 0:
                    fresh = BoundaryStates(states.size)
                    self.refresh_boundary_states(view, fresh)
                    if states.filled:
                        staleness = states.staleness(fresh)
                    states = fresh
                    self._replay = (view, fresh)
            loss = self._impl.update_window(
                torch_batch,
                self._sampled_previous_actions(batch),
                torch.as_tensor(batch.boundaries, device=self._device),
                states,
            )
            if staleness is not None:  # logged once per refresh
                loss["memory_staleness"] = staleness
        else:
            loss = self._impl.update(torch_batch, self._grad_step)
        self._grad_step += 1
        return loss

    def _to_torch(self, batch: TrajectoryMiniBatch) -> TorchTrajectoryMiniBatch:
        """The batch on the device, scaled as d3rlpy's ``update`` scales it."""
        cfg = self._config
        return TorchTrajectoryMiniBatch.from_batch(
            batch=batch,
            device=self._device,
            observation_scaler=cfg.observation_scaler,
            action_scaler=cfg.action_scaler,
            reward_scaler=cfg.reward_scaler,
        )

    def _sampled_previous_actions(self, batch: SegmentWindowBatch) -> torch.Tensor:
        """The sampler's previous actions (every step's, also a window's first) as the model
        takes them: scaled, "none" where there is none."""
        previous = torch.as_tensor(batch.previous_actions, device=self._device)
        has = torch.as_tensor(batch.has_previous, device=self._device)[..., None]
        if not self._discrete and self._config.action_scaler is not None:
            previous = self._config.action_scaler.transform(previous)
        return previous_or_none(previous, has, self._discrete)

    def refresh_boundary_states(
        self, view: SegmentRecurrentView, states: BoundaryStates, rows: int = 256
    ) -> None:
        """Recomputes every stored boundary state by running each episode from t = 0 with
        the current parameters (eval mode, no gradient)."""
        assert self._impl is not None
        for batch in view.episode_batches(rows):
            trace = self._impl.trace_states(
                self._to_torch(batch), self._sampled_previous_actions(batch)
            )
            boundaries = torch.as_tensor(batch.boundaries, device=self._device)
            for column, state in enumerate(trace, start=1):
                states.write(boundaries[:, column], state)

    def as_stateful_wrapper(
        self,
        target_return: float = DEFAULT_TARGET_RETURN,
        action_sampler: TransformerActionSampler | None = None,
    ) -> ELMURStatefulWrapper:
        """A policy that carries memory across segments (greedy by default for discrete).

        ``target_return`` matters only for the rtg token formats.
        """
        if action_sampler is None:
            action_sampler = (
                GreedyTransformerActionSampler()
                if self._discrete
                else IdentityTransformerActionSampler()
            )
        return ELMURStatefulWrapper(self, target_return, action_sampler)

    def save(self, fname: str) -> None:
        """d3rlpy's ``.d3`` (``d3rlpy.load_learnable`` reads it) with a checksum of the weights
        and config that ``d3rlpy_elmur.load_learnable`` checks; written atomically."""
        save_learnable(self, fname)

    def save_policy(self, fname: str) -> None:
        """Exports the policy step with its recurrent state as explicit inputs and outputs:
        TorchScript for ``.pt``, ONNX for ``.onnx`` (``d3rlpy_elmur.export`` names them;
        ``d3rlpy_elmur.load_onnx_policy`` runs the ONNX file with onnxruntime alone)."""
        from ..export import export_policy

        export_policy(self, fname)


class ELMURDT(ELMURDTBase):
    """ELMURDT for continuous actions (made by ``ELMURDTConfig.create``)."""

    _discrete = False

    def get_action_type(self) -> ActionSpace:
        return ActionSpace.CONTINUOUS


class DiscreteELMURDT(ELMURDTBase):
    """ELMURDT for discrete actions (made by ``DiscreteELMURDTConfig.create``)."""

    _discrete = True

    def get_action_type(self) -> ActionSpace:
        return ActionSpace.DISCRETE


register_learnable(ELMURDTConfig)
register_learnable(DiscreteELMURDTConfig)

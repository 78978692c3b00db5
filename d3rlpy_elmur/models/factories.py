"""Sequence-encoder factories: a d3rlpy config registry, so algorithms swap encoders by config.

The algorithm owns the fields every encoder shares (width, layers, heads, memory size, ...) and
hands them over as ``SequenceEncoderArgs``; a factory holds only what is specific to its encoder
(ELMUR's ablation switches). Factories serialise to JSON with the algorithm's config.
"""

from __future__ import annotations

import dataclasses

from d3rlpy.serializable_config import DynamicConfig, generate_config_registration

from .elmur import ELMURConfig
from .elmur_encoder import ELMUR
from .gru import GRUEncoder
from .sequence import SequenceEncoder

__all__ = [
    "SequenceEncoderArgs",
    "SequenceEncoderFactory",
    "ELMURFactory",
    "GRUFactory",
    "register_sequence_encoder_factory",
    "make_sequence_encoder_field",
]


@dataclasses.dataclass(frozen=True)
class SequenceEncoderArgs:
    """The algorithm config's fields that shape its sequence encoder."""

    embed_dim: int
    context_size: int
    attention_window: int
    num_layers: int
    num_heads: int
    dropout: float
    memory_slots: int
    lru_blend: float
    memory_init_std: float
    bptt_segments: int


class SequenceEncoderFactory(DynamicConfig):
    """Base of the registered sequence-encoder factories (d3rlpy's ``DynamicConfig``)."""

    def create(self, args: SequenceEncoderArgs) -> SequenceEncoder:
        raise NotImplementedError

    def check(self, args: SequenceEncoderArgs) -> None:
        """Raises ValueError naming invalid options, without building the model."""


@dataclasses.dataclass()
class ELMURFactory(SequenceEncoderFactory):
    """ELMUR. Defaults reproduce the paper's model; the switches are its ablations.

    Args:
        norm: "post" (paper) or "pre" normalisation around every residual.
        ffn: "mlp" (default; matched MoE in the paper) or "moe" for the token FFN.
        num_experts: routed experts when ``ffn="moe"``.
        moe_aux_weight: weight of the load-balancing loss when ``ffn="moe"``.
        use_lru: False overwrites every slot each segment.
        shared_memory: one memory for all layers instead of one per layer.
        relative_bias: learned bias on token/anchor time offsets in both cross-attentions.
        read: tokens read memory (False: a memory-less transformer).
        write: memory is written at segment ends (False: memory stays at its init).
        detach_memory: paper's code: no gradient through memory between segments.
        context_gradient: gradient flows from a segment into the previous segment's tokens it
            attends to (with ``attention_window`` > 0); False stops it, as Transformer-XL does.
        time_buckets: log-spaced buckets of time offsets.
        memory_noise: std of Gaussian noise added in training to the memory each segment
            reads and writes (0: off; an extrapolation candidate, issue 33).
        context_dropout: probability, in training, that a segment does not attend to the
            previous segment's tokens (0: off; an extrapolation candidate, issue 33).
        memory_rewrites: in training, each segment's write is applied again 0..n times per
            row (uniform), as if the segment recurred (0: off; an extrapolation candidate).
        memory_drift: in training, the memory a later segment reads is moved by what 0..n
            more writes of the segment (uniform per row, no gradient) would change, so reads
            and writes learn to undo the model's own drift (0: off; an extrapolation
            candidate).
        write_gate: a learned gate on the LRU blend (lru_blend times a sigmoid of the slot
            and its candidate), so a segment can leave a slot unchanged instead of copying it;
            part of the model in every path. 0: off; in (0, 1): on, opened that far at
            initialisation (an extrapolation candidate).
        write_gate_empty: the gate also weighs the first write into an empty slot (False:
            that write replaces the slot), so every episode's first write trains the gate to
            open on what a segment adds (needs ``write_gate``; an extrapolation candidate).
    """

    norm: str = "post"
    ffn: str = "mlp"
    num_experts: int = 4
    moe_aux_weight: float = 0.01
    use_lru: bool = True
    shared_memory: bool = False
    relative_bias: bool = True
    read: bool = True
    write: bool = True
    detach_memory: bool = False
    context_gradient: bool = True
    time_buckets: int = 64
    memory_noise: float = 0.0
    context_dropout: float = 0.0
    memory_rewrites: int = 0
    memory_drift: int = 0
    write_gate: float = 0.0
    write_gate_empty: bool = False

    def create(self, args: SequenceEncoderArgs) -> ELMUR:
        return ELMUR(self.model_config(args))

    def check(self, args: SequenceEncoderArgs) -> None:
        self.model_config(args)  # ELMURConfig validates itself

    def model_config(self, args: SequenceEncoderArgs) -> ELMURConfig:
        # the shared fields and the factory's own options are both ELMURConfig fields
        return ELMURConfig(**dataclasses.asdict(args), **dataclasses.asdict(self))

    @staticmethod
    def get_type() -> str:
        return "elmur"


@dataclasses.dataclass()
class GRUFactory(SequenceEncoderFactory):
    """A GRU over step tokens (BC-GRU); uses ``num_layers`` and ``dropout`` of the algorithm."""

    def create(self, args: SequenceEncoderArgs) -> GRUEncoder:
        return GRUEncoder(
            args.embed_dim,
            args.context_size,
            num_layers=args.num_layers,
            dropout=args.dropout,
            truncate_every=args.bptt_segments,
        )

    @staticmethod
    def get_type() -> str:
        return "gru"


register_sequence_encoder_factory, make_sequence_encoder_field = generate_config_registration(
    SequenceEncoderFactory, lambda: ELMURFactory()
)
register_sequence_encoder_factory(ELMURFactory)
register_sequence_encoder_factory(GRUFactory)

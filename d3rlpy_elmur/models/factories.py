"""Sequence-encoder factories: a d3rlpy config registry, so algorithms swap encoders by config.

The algorithm owns the fields every encoder shares (width, layers, heads, K, dropout, truncation)
and hands them over as ``SequenceEncoderArgs``; a factory holds what only its encoder uses
(ELMUR's attention window, memory and switches) and checks both. Factories serialise to JSON
with the algorithm's config.
"""

from __future__ import annotations

import dataclasses

from d3rlpy.serializable_config import DynamicConfig, generate_config_registration

from .elmur import ELMURConfig, ELMUROptions
from .elmur_encoder import ELMUR
from .gru import GRUEncoder
from .sequence import SequenceEncoder, failed_fields, shared_field_checks

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
    """The algorithm config's fields that shape every sequence encoder; each encoder checks
    those it uses (``SequenceEncoderFactory.check``)."""

    embed_dim: int
    context_size: int
    num_layers: int
    num_heads: int
    dropout: float
    bptt_segments: int


class SequenceEncoderFactory(DynamicConfig):
    """Base of the registered sequence-encoder factories (d3rlpy's ``DynamicConfig``)."""

    def create(self, args: SequenceEncoderArgs) -> SequenceEncoder:
        raise NotImplementedError

    def check(self, args: SequenceEncoderArgs) -> None:
        """Raises ValueError naming invalid options, without building the model. By default
        the shared fields every encoder uses: width, layers, dropout, truncation (an encoder
        with attention adds its heads)."""
        bad = failed_fields(args, shared_field_checks(args))
        if bad:
            raise ValueError(
                f"invalid {self.get_type()} encoder config: {bad} (embed_dim and num_layers "
                "are integers >= 1, dropout lies in [0, 1), bptt_segments is an integer >= 0)"
            )


@dataclasses.dataclass()
class ELMURFactory(SequenceEncoderFactory, ELMUROptions):
    """ELMUR, with its options (``ELMUROptions``: the attention window, memory slots, LRU
    blend and the ablation switches). Defaults are the library's recommended model."""

    def create(self, args: SequenceEncoderArgs) -> ELMUR:
        return ELMUR(self.model_config(args))

    def check(self, args: SequenceEncoderArgs) -> None:
        self.model_config(args)  # ELMURConfig checks every field it is given

    def model_config(self, args: SequenceEncoderArgs) -> ELMURConfig:
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(ELMUROptions)}
        return ELMURConfig(**dataclasses.asdict(args), **options)

    @staticmethod
    def get_type() -> str:
        return "elmur"


@dataclasses.dataclass()
class GRUFactory(SequenceEncoderFactory):
    """A GRU over step tokens (BC-GRU); uses ``num_layers`` and ``dropout`` of the algorithm
    (checked by the base class's ``check``; heads are not its)."""

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

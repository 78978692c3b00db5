"""Sequence encoders (ELMUR, the GRU baseline), their factories and the policy around them."""

from . import elmur, elmur_encoder, factories, gru, policy, sequence
from .elmur import *
from .elmur_encoder import *
from .factories import *
from .gru import *
from .policy import *
from .sequence import *

__all__ = [
    *elmur.__all__,
    *elmur_encoder.__all__,
    *factories.__all__,
    *gru.__all__,
    *policy.__all__,
    *sequence.__all__,
]

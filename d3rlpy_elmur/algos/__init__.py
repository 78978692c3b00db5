"""ELMURDT and DiscreteELMURDT: configs, the segment-recurrent replay and stateful inference."""

from . import elmur_dt, replay_states, segments, stateful
from .elmur_dt import *
from .replay_states import *
from .segments import *
from .stateful import *
from .torch import elmur_dt_impl
from .torch.elmur_dt_impl import *

__all__ = [
    *elmur_dt.__all__,
    *replay_states.__all__,
    *segments.__all__,
    *stateful.__all__,
    *elmur_dt_impl.__all__,
]

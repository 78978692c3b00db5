from .elmur_dt import *
from .segments import *
from .stateful import *
from .torch import elmur_dt_impl
from .torch.elmur_dt_impl import *

__all__ = [
    *elmur_dt.__all__,
    *segments.__all__,
    *stateful.__all__,
    *elmur_dt_impl.__all__,
]

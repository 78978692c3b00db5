from .elmur import *
from .factories import *
from .gru import *
from .policy import *
from .sequence import *

__all__ = [  # noqa: F405
    *elmur.__all__,
    *factories.__all__,
    *gru.__all__,
    *policy.__all__,
    *sequence.__all__,
]

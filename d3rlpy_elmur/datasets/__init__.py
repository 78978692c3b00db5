"""Minari datasets for memory tasks: builders, recipes and a correct d3rlpy loader."""

from . import errors, loader, popgym, recipes, rollout, spaces, tmaze, writer
from .errors import *
from .loader import *
from .popgym import *
from .recipes import *
from .rollout import *
from .spaces import *
from .tmaze import *
from .writer import *

__all__ = [
    *errors.__all__,
    *loader.__all__,
    *popgym.__all__,
    *recipes.__all__,
    *rollout.__all__,
    *spaces.__all__,
    *tmaze.__all__,
    *writer.__all__,
]

"""d3rlpy-elmur: ELMUR (External Layer Memory with Update/Rewrite) for d3rlpy.

Importing the package registers its algorithms (``elmur_dt``, ``discrete_elmur_dt``) with
d3rlpy, its sequence encoders, and its gymnasium environments.
"""

from . import algos, datasets, envs, models
from ._version import __version__
from .algos import ELMURDT, DiscreteELMURDT, DiscreteELMURDTConfig, ELMURDTConfig
from .evaluation import evaluate
from .io import load_learnable

__all__ = [
    "__version__",
    "algos",
    "datasets",
    "envs",
    "models",
    "ELMURDTConfig",
    "DiscreteELMURDTConfig",
    "ELMURDT",
    "DiscreteELMURDT",
    "evaluate",
    "load_learnable",
]

"""d3rlpy-elmur: ELMUR (External Layer Memory with Update/Rewrite) for d3rlpy.

Importing the package registers its algorithms (``elmur_dt``, ``discrete_elmur_dt``) with
d3rlpy, its sequence encoders, and its gymnasium environments. Where torch and d3rlpy are not
installed (a deployment running exported policies), only ``load_onnx_policy`` is available.
"""

from ._version import __version__
from .onnx_policy import ONNXPolicy, load_onnx_policy

__all__ = ["__version__", "ONNXPolicy", "load_onnx_policy"]

try:
    import d3rlpy  # noqa: F401
    import torch  # noqa: F401
except ModuleNotFoundError as _missing:
    if _missing.name not in ("torch", "d3rlpy"):
        raise
else:
    from . import algos, datasets, envs, models
    from .algos import ELMURDT, DiscreteELMURDT, DiscreteELMURDTConfig, ELMURDTConfig
    from .evaluation import evaluate
    from .io import load_learnable

    __all__ += [
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

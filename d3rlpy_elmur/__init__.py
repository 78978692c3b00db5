"""d3rlpy-elmur: ELMUR (External Layer Memory with Update/Rewrite) for d3rlpy.

Importing the package registers its algorithms (``elmur_dt``, ``discrete_elmur_dt``) with
d3rlpy, its sequence encoders, and its gymnasium environments. Where torch and d3rlpy are not
installed (a deployment running exported policies), only ``load_onnx_policy`` is available.
"""

from ._version import __version__
from .onnx_policy import ONNXPolicy, load_onnx_policy

__all__ = ["__version__", "ONNXPolicy", "load_onnx_policy"]


def _import_d3rlpy() -> None:
    """``import d3rlpy``, without the notice the old ``gym`` package (which d3rlpy imports for
    compatibility) prints to stderr asking to move to gymnasium: this package uses gymnasium.
    Anything else written to stderr meanwhile is passed on."""
    import contextlib
    import io
    import sys

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import d3rlpy  # noqa: F401
    finally:
        text = captured.getvalue()
        with contextlib.suppress(ImportError):
            from gym_notices.notices import notices

            for notice in notices.values():
                text = text.replace(notice + "\n", "")
        sys.stderr.write(text)


try:
    import torch  # noqa: F401

    _import_d3rlpy()
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

"""The optional extras (``setup.cfg``'s ``extras_require``): which modules each installs, and
the one message that names the extra to install when a module is missing.

It imports nothing but the standard library: ``load_onnx_policy`` runs where d3rlpy and torch
are absent, and the ``elmur`` commands check what they will need before any work.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "available", "extra_of", "missing_message", "require"]

# extra -> the modules the package imports from it (setup.cfg lists the distributions)
EXTRAS: dict[str, tuple[str, ...]] = {
    "plot": ("matplotlib",),
    "export": ("onnx", "onnxruntime"),
    "sweep": ("optuna",),
    "ray": ("ray",),
    "tracking": ("tensorboardX", "wandb"),
    "popgym": ("popgym", "mazelib"),  # mazelib: the Labyrinth tasks
}


def extra_of(module: str) -> str:
    """The extra that installs ``module``."""
    for extra, modules in EXTRAS.items():
        if module in modules:
            return extra
    raise KeyError(f"{module} is in no extra of d3rlpy-elmur ({', '.join(EXTRAS)})")


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (ray and wandb take seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a spec-less module
        return False


def missing_message(what: str, module: str) -> str:
    """``what`` needs ``module``: the one sentence naming the extra to install. pip reads an
    installed d3rlpy-elmur's extras from its metadata, so the first form works however the
    package was installed (no index serves the package itself); the second is a clone's."""
    extra = extra_of(module)
    return (
        f"{what} needs {module}, which is not installed: install the {extra} extra, "
        f"pip install 'd3rlpy-elmur[{extra}]' (in a clone: pip install -e '.[{extra}]')"
    )


class MissingExtraError(ImportError):
    """An ImportError whose message names the extra to install (:func:`missing_message`)."""

    def __init__(self, what: str, module: str) -> None:
        super().__init__(missing_message(what, module), name=module)
        self.extra = extra_of(module)


def require(module: str, what: str) -> None:
    """Raise :class:`MissingExtraError` unless ``module`` is installed; ``what`` names the
    need (``the ray backend``, ``a sweep``). Call it before any work that needs it."""
    if not available(module):
        raise MissingExtraError(what, module)

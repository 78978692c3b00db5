"""d3rlpy-elmur: ELMUR (External Layer Memory with Update/Rewrite) for d3rlpy."""

from . import models
from ._version import __version__

__all__ = ["__version__", "models"]

"""``python -m d3rlpy_elmur ...`` runs the ``elmur`` command line."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())

"""``python -m d3rlpy_elmur_cli ...``: the ``elmur`` command line."""

import sys

from . import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())

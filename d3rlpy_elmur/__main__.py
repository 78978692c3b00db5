"""``python -m d3rlpy_elmur ...`` runs the ``elmur`` command line.

The one file of the package that names :mod:`d3rlpy_elmur_cli`: it is the script ``-m`` runs,
never imported by the library, so the command line still depends on the library and never
the reverse.
"""

import sys

from d3rlpy_elmur_cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())

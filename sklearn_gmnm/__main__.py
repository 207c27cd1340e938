"""``python -m sklearn_gmnm``: the main job (see :mod:`sklearn_gmnm.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

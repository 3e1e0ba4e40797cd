"""``python -m faithful_guides``: see :mod:`faithful_guides.cli`."""

import sys

from faithful_guides.cli import main

if __name__ == "__main__":
    sys.exit(main())

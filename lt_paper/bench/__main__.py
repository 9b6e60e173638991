"""``python -m lt_paper.bench``: the same as ``python -m lt_paper bench``."""

import sys

from .command import main

sys.exit(main())

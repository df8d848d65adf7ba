"""``python -m bulkkm.simulator``: the same as ``bulkkm simulate``."""

import sys

from bulkkm.simulator._cli import main

sys.exit(main(sys.argv[1:]))

"""``python -m bulkkm``: the same as the ``bulkkm`` command."""

from bulkkm.cli import main

raise SystemExit(main())

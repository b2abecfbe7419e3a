"""``python -m cytoatlas``: the ``cytoatlas`` command."""

import sys

from cytoatlas.cli import main

sys.exit(main())

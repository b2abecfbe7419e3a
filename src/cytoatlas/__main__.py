import sys

from cytoatlas.cli import main

sys.exit(main())

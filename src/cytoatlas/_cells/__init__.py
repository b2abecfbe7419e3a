"""`cytoatlas.cells`: per-cell CytoSig / SecAct activity of every kept cell of an atlas (secactpy's method)."""

from cytoatlas._cells.memory import cell_activity
from cytoatlas._cells.run import cells

__all__ = ["cell_activity", "cells"]

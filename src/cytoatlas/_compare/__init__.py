"""Condition comparisons of activity: donor-level differences and covariate slopes per cell type, pooled across
atlases by a random-effects meta-analysis."""

from cytoatlas._compare.memory import compare_activity
from cytoatlas._compare.run import compare

__all__ = ["compare", "compare_activity"]

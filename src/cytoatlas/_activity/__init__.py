"""Cytokine and secreted-protein activity: ridge regression of pseudobulk profiles on signature matrices."""

from cytoatlas._activity.run import activity, activity_path
from cytoatlas._activity.signatures import SignatureSet, load_signatures

__all__ = ["SignatureSet", "activity", "activity_path", "load_signatures"]

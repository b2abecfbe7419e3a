"""Cytokine and secreted-protein activity: ridge regression of pseudobulk profiles on signature matrices."""

from cytoatlas._activity.files import Centring
from cytoatlas._activity.run import activity, run_parameters, set_parameters, signature_sets
from cytoatlas._activity.signatures import BUILT_IN, SignatureSet, load_signatures
from cytoatlas.io.layout import activity_path

__all__ = ["BUILT_IN", "Centring", "SignatureSet", "activity", "activity_path", "load_signatures", "run_parameters",
           "set_parameters", "signature_sets"]

"""Validation of activity within and across atlases (its report sections: :mod:`cytoatlas._validate.report`)."""

from cytoatlas._validate.memory import validate_activity
from cytoatlas._validate.run import validate

__all__ = ["validate", "validate_activity"]

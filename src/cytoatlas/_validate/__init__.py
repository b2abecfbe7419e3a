"""Validation of activity within and across atlases, and its self-contained HTML report."""

from cytoatlas._validate.report import report
from cytoatlas._validate.run import validate

__all__ = ["report", "validate"]

"""Cell types across atlases through the Cell Ontology: labels to CL terms, and what two atlases can compare."""

from cytoatlas.celltypes.mapping import (
    MATCH_COLUMNS,
    ONTOLOGY_COLUMN,
    UNSTRATIFIED,
    Source,
    map_labels,
    ontology_ids,
    registry_hint,
)
from cytoatlas.celltypes.matcher import Match, match
from cytoatlas.celltypes.ontology import CellOntology, Term, cell_ontology
from cytoatlas.celltypes.units import RESOLUTIONS, UNIT_COLUMNS, Resolution, comparable_units, lineages, resolutions

__all__ = ["MATCH_COLUMNS", "ONTOLOGY_COLUMN", "RESOLUTIONS", "UNIT_COLUMNS", "UNSTRATIFIED", "CellOntology",
           "Match", "Resolution", "Source", "Term", "cell_ontology", "comparable_units", "lineages", "map_labels",
           "match", "ontology_ids", "registry_hint", "resolutions"]

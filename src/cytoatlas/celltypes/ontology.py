"""The Cell Ontology (CL): terms, names, exact synonyms and ancestors with their distances.

The table ``data/cl.json.gz`` is derived from the CL release inside ``cellxgene-ontology-guide`` by
``scripts/build_cell_ontology.py`` (the versions it came from are recorded in it and in every output that uses
it); it is read once per process.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources

from cytoatlas.errors import CytoatlasError


@dataclass(frozen=True)
class Term:
    """One CL term."""

    id: str
    name: str
    synonyms: tuple[str, ...]
    ancestors: dict[str, int]  # ancestor ID -> distance (1 = parent), the term itself excluded


@dataclass(frozen=True)
class CellOntology:
    """The Cell Ontology as cytoatlas uses it (see :func:`cell_ontology`)."""

    terms: dict[str, Term]
    replaced_by: dict[str, str]
    version: str  # the CL release, e.g. ``v2026-03-26``
    source: str  # where the table came from, e.g. ``cellxgene-ontology-guide 1.11.1``

    def __contains__(self, term_id: object) -> bool:
        return term_id in self.terms

    def term(self, term_id: str) -> Term:
        """The term of ``term_id`` (a deprecated ID resolves to its replacement).

        Raises
        ------
        CytoatlasError
            The ID is not a CL term of this release.
        """
        term_id = self.replaced_by.get(term_id, term_id)
        try:
            return self.terms[term_id]
        except KeyError:
            raise CytoatlasError(f"{term_id!r} is not a Cell Ontology term of CL {self.version} (IDs look like "
                                 f"'CL:0000236', B cell)") from None

    def name(self, term_id: str) -> str:
        """The CL name of ``term_id``."""
        return self.term(term_id).name

    def lineage_distance(self, term_id: str, ancestor: str) -> int | None:
        """Steps from ``term_id`` up to ``ancestor`` (0 for the term itself), None when it is not an ancestor."""
        if term_id == ancestor:
            return 0
        return self.term(term_id).ancestors.get(ancestor)

    def is_a(self, term_id: str, ancestor: str) -> bool:
        """Whether ``ancestor`` is ``term_id`` or one of its ancestors."""
        return self.lineage_distance(term_id, ancestor) is not None

    @property
    def provenance(self) -> dict[str, str]:
        """What outputs record of the ontology."""
        return {"cell_ontology": self.version, "cell_ontology_source": self.source}


@functools.lru_cache(maxsize=1)
def cell_ontology() -> CellOntology:
    """The shipped Cell Ontology (read once)."""
    with resources.files("cytoatlas.celltypes").joinpath("data/cl.json.gz").open("rb") as raw, \
            gzip.open(raw, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    terms = {i: Term(i, name, tuple(syn), dict(anc)) for i, (name, syn, anc) in doc["terms"].items()}
    return CellOntology(terms, dict(doc["replaced_by"]), doc["cl_version"], doc["source"])

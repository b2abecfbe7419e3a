"""What is comparable across atlases: each label at the finest Cell Ontology term the other atlases hold.

For a set of atlases (two for a validation pair, several for a meta-analysis), each label rolls up from its own term
to its nearest ancestor (itself first) at which another atlas has a label, and stays at its own term when there is
none: ``cDC2`` meets ``DC`` at dendritic cell (and ``DC`` stays where it is), naive CD4 T meets naive CD4 T (not CD4
T), and a label never rolls up out of its lineage. Labels of one atlas that roll up to the same term are one unit
there (pooled as one study).
The ``lineage`` resolution does the same over a fixed set of lineage terms (``data/lineages.tsv``: T, CD4 T,
CD8 T, NK, B, plasma, monocyte, DC, ... and tissue compartments), so results read at both resolutions. Labels with
a context (the leading parts of a composite label, e.g. the tissue) meet only labels of the same context; a shared
name of the user's own (no CL ID) meets only the same name.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping
from importlib import resources
from typing import Literal

import pandas as pd

from cytoatlas.celltypes.ontology import CellOntology, cell_ontology

Resolution = Literal["fine", "lineage"]
RESOLUTIONS: tuple[Resolution, ...] = ("fine", "lineage")
UNIT_COLUMNS = ["atlas", "cell_type", "resolution", "unit_id", "unit_name"]


@functools.lru_cache(maxsize=1)
def _lineage_table() -> tuple[dict[str, str], dict[str, str]]:
    with resources.files("cytoatlas.celltypes").joinpath("data/lineages.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader((ln for ln in fh if not ln.startswith("#")), delimiter="\t"))
    members = {m: r["id"] for r in rows for m in (r["members"] or "").split()}
    return {r["id"]: r["short_name"] for r in rows}, members


def lineages() -> dict[str, str]:
    """The lineage resolution's CL terms, ``{CL ID: short name}``."""
    return _lineage_table()[0]


def lineage_of(term: str) -> str | None:
    """The lineage term of a CL term: a listed member's lineage, else its nearest lineage ancestor (itself first;
    equal distance: the more specific), None when it has none (``lymphocyte``, ``cell``)."""
    cl = cell_ontology()
    table, members = _lineage_table()
    for member, lineage in members.items():
        if cl.is_a(term, member):
            return lineage
    chain = [t for t in _climb(cl, term) if t in table]
    return chain[0] if chain else None


def resolutions(value: str | None) -> tuple[Resolution, ...]:
    """The resolutions a ``--resolution`` value asks for (``both``/None: fine and lineage).

    Raises
    ------
    ValueError
        An unknown value (the message names the valid ones).
    """
    if value in (None, "both"):
        return RESOLUTIONS
    if value not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of fine, lineage, both; got {value!r}")
    return (value,)


def _climb(cl: CellOntology, term: str) -> list[str]:
    """``term`` and its ancestors, nearest first (equal distance: the more specific first)."""
    ups = sorted(cl.term(term).ancestors.items(), key=lambda kv: (kv[1], -len(cl.term(kv[0]).ancestors), kv[0]))
    return [term, *(a for a, _ in ups)]


def _chain(cl: CellOntology, term: str, resolution: Resolution) -> list[str]:
    """The terms a label whose base is ``term`` may roll up to, nearest first: at the fine resolution its own and
    its ancestors within its lineage; at the lineage resolution (``term`` a lineage) the lineage terms above it."""
    if resolution == "lineage":
        return [t for t in _climb(cl, term) if t in lineages()]
    lineage = lineage_of(term)
    chain = _climb(cl, term)
    if lineage is None:
        return chain
    return [t for t in chain if cl.is_a(t, lineage)] or [term]


def comparable_units(matches: Mapping[str, pd.DataFrame], resolution: Resolution) -> pd.DataFrame:
    """The unit of each label of several atlases at one resolution.

    Parameters
    ----------
    matches
        ``{atlas: frame}`` with the columns of :func:`~cytoatlas.celltypes.mapping.map_labels` (``cell_type``,
        ``cl_id``, ``cl_name``, ``context``) for the labels of the level being compared.
    resolution
        ``fine`` (the finest term another atlas holds) or ``lineage``.

    Returns
    -------
    pandas.DataFrame
        ``atlas, cell_type, resolution, unit_id, unit_name`` for every label with a CL term or a shared name
        (``unit_name`` prefixed by a composite label's context); labels without one are left out.
    """
    cl = cell_ontology()
    # each label's base term: its CL term (fine) or its lineage term (lineage); a shared name of the user's own
    # is its own base, at the fine resolution only
    bases: dict[str, list[tuple[str, str, str]]] = {}  # atlas -> (label, context, base)
    for atlas, m in matches.items():
        for label, term, name, ctx in zip(m["cell_type"], m["cl_id"], m["cl_name"], m["context"], strict=True):
            base = (term if resolution == "fine" else lineage_of(term)) if term else \
                (f"name:{name}" if name and resolution == "fine" else None)
            if base:
                bases.setdefault(atlas, []).append((label, ctx, base))
    held = {atlas: {(ctx, base) for _, ctx, base in rows} for atlas, rows in bases.items()}

    rows = []
    for atlas, labels in bases.items():
        others = set().union(*(h for a, h in held.items() if a != atlas))
        for label, ctx, base in labels:
            chain = [base] if base.startswith("name:") else _chain(cl, base, resolution)
            # the nearest term (itself first) another atlas holds a label at; none: the label stays at its own
            unit = next((u for u in chain if (ctx, u) in others), base)
            name = unit[5:] if unit.startswith("name:") else cl.name(unit)
            rows.append((atlas, label, resolution, "" if unit.startswith("name:") else unit,
                         f"{ctx}|{name}" if ctx else name))
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def unit_labels(units: pd.DataFrame) -> pd.DataFrame:
    """Per unit, each atlas' labels pooled into it: ``resolution, unit_id, unit_name, atlas, labels`` (labels
    joined by ``+``)."""
    if units.empty:
        return pd.DataFrame(columns=["resolution", "unit_id", "unit_name", "atlas", "labels"])
    g = units.groupby(["resolution", "unit_id", "unit_name", "atlas"], sort=True)["cell_type"]
    return g.agg(lambda s: "+".join(sorted(s))).rename("labels").reset_index()

"""What is comparable across atlases: each label at the finest Cell Ontology term the other atlases hold.

An atlas *holds* a term when one of its labels maps to that term or to a descendant of it. For a set of atlases
(two for a validation pair, several for a meta-analysis), each label rolls up from its own term to its nearest
ancestor (itself first) that some other atlas holds: ``cDC2`` meets ``DC`` at dendritic cell, naive CD4 T meets
naive CD4 T (not CD4 T). Labels of one atlas that roll up to the same term are one unit there (pooled as one study).
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
    """The terms a label of ``term`` may roll up to, nearest first: at the fine resolution its own and its
    ancestors within its lineage; at the lineage resolution its lineage and the lineage terms above it."""
    lineage = lineage_of(term)
    if resolution == "lineage":
        return [] if lineage is None else [t for t in _climb(cl, lineage) if t in lineages()]
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
    held: dict[str, dict[str, set[str]]] = {}  # atlas -> context -> terms (or "name:" shared names)
    for atlas, m in matches.items():
        for term, name, ctx in zip(m["cl_id"], m["cl_name"], m["context"], strict=True):
            if term or name:
                held.setdefault(atlas, {}).setdefault(ctx, set()).add(term or f"name:{name}")

    def others_hold(atlas: str, ctx: str, unit: str) -> bool:
        for other, by_ctx in held.items():
            if other == atlas:
                continue
            terms = by_ctx.get(ctx, ())
            if unit.startswith("name:"):
                if unit in terms:
                    return True
            elif any(not t.startswith("name:") and cl.is_a(t, unit) for t in terms):
                return True
        return False

    rows = []
    for atlas, m in matches.items():
        for label, term, name, ctx in zip(m["cell_type"], m["cl_id"], m["cl_name"], m["context"], strict=True):
            if not term:
                if name and resolution == "fine":
                    unit = f"name:{name}"
                    rows.append((atlas, label, resolution, "", f"{ctx}|{name}" if ctx else name))
                continue
            chain = _chain(cl, term, resolution)
            if not chain:
                continue
            shared = [u for u in chain if others_hold(atlas, ctx, u)]
            # the finest of them: none of the others lies below it (the DAG can put two at one distance)
            finest = [u for u in shared if not any(v != u and cl.is_a(v, u) for v in shared)]
            unit = finest[0] if finest else chain[0]
            unit_name = cl.name(unit)
            rows.append((atlas, label, resolution, unit, f"{ctx}|{unit_name}" if ctx else unit_name))
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def unit_labels(units: pd.DataFrame) -> pd.DataFrame:
    """Per unit, each atlas' labels pooled into it: ``resolution, unit_id, unit_name, atlas, labels`` (labels
    joined by ``+``)."""
    if units.empty:
        return pd.DataFrame(columns=["resolution", "unit_id", "unit_name", "atlas", "labels"])
    g = units.groupby(["resolution", "unit_id", "unit_name", "atlas"], sort=True)["cell_type"]
    return g.agg(lambda s: "+".join(sorted(s))).rename("labels").reset_index()

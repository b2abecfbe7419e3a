"""``/cells``: per-cell results (``cytoatlas cells``): per-label summaries and the embedding subsample."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from .. import cells as cells_tables
from .. import names, queries
from ..models import CellsEmbeddingPoint, CellsSetRow, CellsSummaryRow
from ..reader import Catalog
from ..respond import NotFound, check, respond
from ._common import DEFAULT_LIMIT, MAX_LIMIT, Format, Limit, Name, Offset, OptName, QName, StoreDep, table

router = APIRouter(tags=["cells"])


def _have(cat: Catalog, atlas: str, signature_set: str, kind: str) -> dict[str, set[str]]:
    check("atlas", atlas, sorted({a for a, _ in cat.cells}), " with per-cell results (`cytoatlas cells`, "
          "then `cytoatlas index`)")
    check("signature set", signature_set, sorted(s for a, s in cat.cells if a == atlas),
          f" with per-cell results of atlas {atlas!r}")
    have = cat.cells[(atlas, signature_set)]
    if kind not in have:
        raise NotFound(f"atlas {atlas!r} {signature_set} has no per-cell {kind} (no embedding in the atlas?)",
                       sorted(have))
    return have


@router.get("/cells", **table(CellsSetRow))
def cells_sets(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
    """The atlas x signature sets with per-cell results, and the signatures drawn on their embedding."""
    def go(cur, cat: Catalog):
        rows = [(a, s, sorted(k), sorted(k.get("embedding", ()))) for (a, s), k in sorted(cat.cells.items())]
        return queries.Table(list(CellsSetRow.model_fields), rows[offset: offset + limit], len(rows))
    return respond(store.run(go), format, limit, offset, "cells")


@router.get("/cells/{atlas}/{signature_set}/summary", **table(CellsSummaryRow))
def cells_summary(store: StoreDep, atlas: Name, signature_set: Name, level: OptName = None, label: OptName = None,
                  signature: OptName = None, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                  offset: Offset = 0) -> Response:
    """Per level, label and signature: mean, sd, quantiles and fraction |z| > 2 of the cells' activity."""
    def go(cur, cat: Catalog):
        have = _have(cat, atlas, signature_set, "summary")
        if signature is not None:
            check("signature", signature, have["summary"], f" in {signature_set}")
        names.check_filters(cur, cat, cells_tables.TABLES["summary"], {"level": level, "label": label},
                            f" in the per-cell results of {atlas!r} {signature_set}")
        base, params = cells_tables.summary_query({"atlas": atlas, "signature_set": signature_set,
                                                   "level": level, "label": label, "signature": signature})
        return queries.page(cur, base, cells_tables.SUMMARY_ORDER, params, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{signature_set}_cells_summary")


@router.get("/cells/{atlas}/{signature_set}/embedding", **table(CellsEmbeddingPoint))
def cells_embedding(store: StoreDep, atlas: Name, signature_set: Name, signature: Annotated[QName, Query()],
                    format: Format = "json", limit: Limit = MAX_LIMIT, offset: Offset = 0) -> Response:
    """The fixed embedding subsample of cells, with their activity z of ``signature`` (to draw it)."""
    def go(cur, cat: Catalog):
        have = _have(cat, atlas, signature_set, "embedding")
        check("signature", signature, have["embedding"], f" drawn for {signature_set} (the most variable)")
        base, params = cells_tables.embedding_query(atlas, signature_set, signature)
        return queries.page(cur, base, cells_tables.EMBEDDING_ORDER, params, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{signature_set}_{signature}_cells_embedding")

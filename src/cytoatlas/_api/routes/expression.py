"""``/expression``: pseudobulk expression of genes across cell types or sample x cell types."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from .. import names, queries
from ..models import ExpressionRow
from ..reader import Catalog
from ..respond import check, respond
from . import _sources
from ._common import DEFAULT_LIMIT, By, CellTypes, Format, Limit, Name, Offset, QName, Samples, StoreDep, kind, table

router = APIRouter(tags=["expression"])


@router.get("/expression/{atlas}/{level}", **table(ExpressionRow))
def expression(store: StoreDep, atlas: Name, level: Name,
               gene: Annotated[list[QName], Query(min_length=1, max_length=100, description="gene symbols")],
               by: By = "cell_type", cell_type: CellTypes = [], sample: Samples = [],  # noqa: B006
               format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
    """Pseudobulk expression (log1p CPM and atlas z-score) of genes across cell types or samples."""
    def go(cur, cat: Catalog):
        src = _sources.expression(cat, atlas, level, kind(by))
        for g in gene:
            check("gene", g, cat.genes.get(atlas, ()), f" in atlas {atlas!r}", " (try /api/v1/search?q=...)")
        names.check_each("cell type", cell_type, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
        names.check_each("sample", sample, names.samples(cur, cat, atlas, level), f" in atlas {atlas!r} {level}")
        return queries.expression(cur, (atlas, level), _sources.part(cur, cat, src, "genes"), gene, cell_type,
                                  sample, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{level}_expression")

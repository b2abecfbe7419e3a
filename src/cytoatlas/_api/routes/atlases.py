"""``/atlases``: the atlases, their levels, and each level's cell types and sample x cell types."""

from __future__ import annotations

from fastapi import APIRouter, Response

from .. import names, queries
from ..models import AtlasRow, CellTypeRow, LevelRow, SampleRow
from ..reader import Catalog
from ..respond import NotFound, check, respond
from . import _sources
from ._common import DEFAULT_LIMIT, CellTypes, Format, Limit, Name, Offset, StoreDep, table

router = APIRouter(tags=["atlases"])


@router.get("/atlases", **table(AtlasRow))
def atlases(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
    return respond(store.run(lambda cur, cat: queries.atlases(cur, limit, offset)), format, limit, offset, "atlases")


@router.get("/atlases/{atlas}/levels", **table(LevelRow))
def levels(store: StoreDep, atlas: Name, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
           offset: Offset = 0) -> Response:
    def go(cur, cat: Catalog):
        check("atlas", atlas, cat.atlases)
        return queries.levels(cur, atlas, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_levels")


@router.get("/atlases/{atlas}/levels/{level}/cell-types", **table(CellTypeRow))
def cell_types(store: StoreDep, atlas: Name, level: Name, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
               offset: Offset = 0) -> Response:
    def go(cur, cat: Catalog):
        _sources.level(cat, atlas, level)
        return queries.cell_types(cur, atlas, level, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{level}_cell_types")


@router.get("/atlases/{atlas}/levels/{level}/samples", **table(SampleRow))
def samples(store: StoreDep, atlas: Name, level: Name, cell_type: CellTypes = [], format: Format = "json",  # noqa: B006
            limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
    def go(cur, cat: Catalog):
        _sources.level(cat, atlas, level)
        src = cat.source("pseudobulk", atlas, level, "samples") or next(
            (s for k, s in sorted(cat.sources.items()) if k[:4] == ("activity", atlas, level, "samples")), None)
        if src is None:
            raise NotFound(f"no sample x cell type results for {atlas!r} {level} in the store")
        names.check_each("cell type", cell_type, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
        return queries.samples(cur, src.source_id, cell_type, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{level}_samples")

"""``/compare``: the tables of ``cytoatlas compare`` and the comparisons they hold."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from .. import compare as compare_tables
from .. import queries
from .. import volcano as volcano_plot
from ..models import COMPARE_MODELS, ContrastRow, Problem, Volcano
from ..reader import Catalog
from ..respond import NotFound, check, json_response, page_body, respond
from ..schema import compare_order
from ._common import DEFAULT_LIMIT, FdrMax, Format, Limit, Offset, OptName, QName, StoreDep, table, with_filters

router = APIRouter(tags=["compare"])


def _names(cat: Catalog, filters: dict) -> None:
    """404 for a filter value that no compare table holds (listing those that exist)."""
    if not cat.compare:
        raise NotFound("no comparisons in the store (run `cytoatlas compare`, then `cytoatlas index`)", [])
    for col, value in filters.items():
        if value is not None and col != "fdr_max":
            check(compare_tables.LABELS.get(col, col), value, cat.compare["*"][col], " in the comparisons")


def _filters(columns: tuple[str, ...], fdr: bool) -> dict:
    return {**dict.fromkeys(columns, OptName), **({"fdr_max": FdrMax} if fdr else {})}


def _route(name: str, doc: str) -> None:
    def endpoint(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
                 **filters) -> Response:
        def go(cur, cat: Catalog):
            _names(cat, filters)
            if name not in cat.compare:
                raise NotFound(f"no compare table {name!r} in the store (run `cytoatlas compare`, then "
                               f"`cytoatlas index`)", sorted(k for k in cat.compare if k != "*"))
            base, params = compare_tables.table_query(name, filters, filters.get("fdr_max"))
            return queries.page(cur, base, compare_order(name), params, limit, offset)
        return respond(store.run(go), format, limit, offset, f"compare_{name}")

    with_filters(endpoint, _filters(compare_tables.FILTERS[name], compare_tables.has_fdr(name)))
    endpoint.__doc__ = doc
    router.add_api_route(f"/compare/{name}", endpoint, methods=["GET"], name=f"compare_{name}",
                         **table(COMPARE_MODELS[name]))


for _name, _doc in (
        ("differential", "Per atlas, level, signature set, cell type and signature: the difference in mean "
                         "activity between a group and the reference (donors), its CI, p and FDR."),
        ("association", "Per atlas, level, signature set, cell type and signature: the slope of activity per "
                        "unit of a covariate (donors), its CI, p and FDR."),
        ("meta", "Per Cell Ontology cell type (`resolution` fine: the finest term the atlases share; lineage) "
                 "and signature: the random-effects (DerSimonian-Laird) pooled effect across atlases, its "
                 "heterogeneity (tau2, Q, I2) and sign agreement. `atlas`: rows pooling it."),
        ("untestable", "The cell types a comparison could not test, with the counts and the reason.")):
    _route(_name, _doc)


def contrasts(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
              **filters) -> Response:
    def go(cur, cat: Catalog):
        _names(cat, filters)
        base, params = compare_tables.contrasts_query(filters)
        return queries.page(cur, base, compare_tables.CONTRASTS_ORDER, params, limit, offset)
    return respond(store.run(go), format, limit, offset, "compare_contrasts")


with_filters(contrasts, _filters(compare_tables.CONTRAST_FILTERS, False))
contrasts.__doc__ = ("The comparisons in the store: each (analysis, column, contrast, atlas, level, signature "
                     "set) with its test and row counts.")
router.add_api_route("/compare/contrasts", contrasts, methods=["GET"], name="compare_contrasts",
                     **table(ContrastRow))


Required = Annotated[QName, Query()]


@router.get("/compare/volcano", response_model=Volcano,
            responses={404: {"model": Problem, "description": "unknown name, or no such comparison"},
                       503: {"model": Problem, "description": "the store is being rebuilt; retry"}})
def volcano(store: StoreDep, analysis: Annotated[Literal[volcano_plot.ANALYSES], Query()],  # type: ignore[valid-type]
            atlas: Required, level: Required, signature_set: Required, by: Required, contrast: Required,
            top: Annotated[int, Query(ge=1, le=20_000, description="rows sent as points (smallest p)")] = 2000,
            bins: Annotated[int, Query(ge=10, le=1000, description="grid cells per axis for the others")] = 200,
            ) -> Response:
    """One comparison's volcano as a screen can show it: the ``top`` rows of smallest p as points (every column),
    the other drawable rows counted in a ``bins`` x ``bins`` grid (rows, rows with FDR < 0.05)."""
    names = {"analysis": analysis, "atlas": atlas, "level": level, "signature_set": signature_set, "by": by,
             "contrast": contrast}

    def go(cur, cat: Catalog):
        _names(cat, names)
        return volcano_plot.volcano(cur, analysis, {k: v for k, v in names.items() if k != "analysis"}, top, bins)

    v = store.run(go)
    if not v.n_rows:
        raise NotFound(f"no {analysis} comparison {contrast!r} ({by}) of {atlas!r} {level} {signature_set} in the "
                       "store (see /api/v1/compare/contrasts)", [])
    points = page_body(queries.Table(v.columns, v.points, len(v.points)), len(v.points) or 1, 0)["rows"]
    return json_response({**names, "n_rows": v.n_rows, "n_drawable": v.n_drawable, "n_significant": v.n_significant,
                          "x_range": v.x_range, "y_range": v.y_range, "points": points,
                          "density": {"bins": v.bins, "n": sum(c[2] for c in v.cells),
                                      "cells": [list(c) for c in v.cells]}})

"""The endpoints of ``/api/v1``: every table as a page (JSON) or a file (``format=csv|parquet``)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Response
from pydantic import StringConstraints

from . import cells as cells_tables
from . import compare as compare_tables
from . import queries
from .ingest import ACTIVITY_LAYERS
from .models import (
    COMPARE_MODELS,
    VALIDATION_MODELS,
    ActivityMatrix,
    ActivityRow,
    AtlasRow,
    CellsEmbeddingPoint,
    CellsSetRow,
    CellsSummaryRow,
    CellTypeRow,
    ContrastRow,
    ExpressionRow,
    Health,
    LevelRow,
    Page,
    Problem,
    SampleRow,
    ScatterPoint,
    SearchHit,
    SignatureRow,
    SignatureSetRow,
)
from .reader import Catalog
from .respond import MEDIA, NotFound, check, file_response, json_response, respond
from .schema import SCHEMA_VERSION, compare_order

MAX_LIMIT = 50_000
DEFAULT_LIMIT = 1_000
NAME = r"^[^\x00-\x1f\x7f]+$"  # any text without control characters

Name = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME)]
QName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NAME)]
Format = Annotated[Literal["json", "csv", "parquet"], Query(description="json (a page), csv or parquet (the page's "
                                                             "rows; paging in X-Total-Count / X-Next-Offset)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"rows per page (at most {MAX_LIMIT:,})")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
By = Annotated[Literal["cell_type", "sample"], Query(description="cell-type rows, or sample x cell-type rows")]


def _names(description: str, max_items: int = 1000):
    return Annotated[list[QName], Query(max_length=max_items, description=description)]


CellTypes = _names("keep these cell types (repeatable)")
Samples = _names("keep these samples (repeatable)")
Signatures = _names("keep these signatures (repeatable)")
OptName = Annotated[QName | None, Query()]
FdrMax = Annotated[float | None, Query(ge=0, le=1, description="keep rows with fdr <= this")]

_ERRORS = {404: {"model": Problem, "description": "unknown name; `valid` lists the valid values or the closest"},
           503: {"model": Problem, "description": "the store is being rebuilt; retry"}}
_FILES = {"text/csv": {"schema": {"type": "string"}},
          "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}


def _table(model) -> dict:
    """Route options of a table endpoint: the Page model for JSON, CSV and Parquet declared too."""
    return {"response_model": Page[model], "responses": {**_ERRORS, 200: {"content": _FILES}}}


def _kind(by: str) -> str:
    return "celltype" if by == "cell_type" else "samples"


def _level(cat: Catalog, atlas: str, level: str) -> None:
    check("atlas", atlas, cat.atlases)
    check("level", level, cat.levels[atlas], f" in atlas {atlas!r}")


def _activity_source(cat: Catalog, atlas: str, level: str, signature_set: str, kind: str):
    _level(cat, atlas, level)
    check("signature set", signature_set, cat.sets.get((atlas, level), []), f" in atlas {atlas!r} {level}")
    src = cat.source("activity", atlas, level, kind, signature_set)
    if src is None or src.part is None:
        raise NotFound(f"no {kind} activity for {atlas!r} {level} {signature_set} in the store")
    return src


def _expression_source(cat: Catalog, atlas: str, level: str, kind: str):
    _level(cat, atlas, level)
    src = cat.source("pseudobulk", atlas, level, kind)
    if src is None or src.part is None:
        raise NotFound(f"no {kind} expression for {atlas!r} {level} in the store (index it with "
                       f"`cytoatlas index --expression celltype,samples`)")
    return src


def build_router(run: Callable) -> APIRouter:
    """The API; ``run(fn)`` calls ``fn(cursor, catalog)`` on the current store (retrying once if it changed)."""
    api = APIRouter(prefix="/api/v1")

    @api.get("/health", response_model=Health, tags=["meta"])
    def health() -> Response:
        def go(cur, cat: Catalog):
            return {"status": "ok", "version": cat.meta.get("cytoatlas_version", ""), "schema_version": SCHEMA_VERSION,
                    "built": cat.meta.get("built", ""), "files": cat.n_files, "atlases": cat.atlases}
        return json_response(run(go))

    @api.get("/atlases", **_table(AtlasRow), tags=["atlases"])
    def atlases(format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        return respond(run(lambda cur, cat: queries.atlases(cur, limit, offset)), format, limit, offset, "atlases")

    @api.get("/atlases/{atlas}/levels", **_table(LevelRow), tags=["atlases"])
    def levels(atlas: Name, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        def go(cur, cat: Catalog):
            check("atlas", atlas, cat.atlases)
            return queries.levels(cur, atlas, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_levels")

    @api.get("/atlases/{atlas}/levels/{level}/cell-types", **_table(CellTypeRow), tags=["atlases"])
    def cell_types(atlas: Name, level: Name, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                   offset: Offset = 0) -> Response:
        def go(cur, cat: Catalog):
            _level(cat, atlas, level)
            return queries.cell_types(cur, atlas, level, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{level}_cell_types")

    @api.get("/atlases/{atlas}/levels/{level}/samples", **_table(SampleRow), tags=["atlases"])
    def samples(atlas: Name, level: Name, cell_type: CellTypes = [], format: Format = "json",  # noqa: B006
                limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        def go(cur, cat: Catalog):
            _level(cat, atlas, level)
            src = cat.source("pseudobulk", atlas, level, "samples") or next(
                (s for k, s in sorted(cat.sources.items()) if k[:4] == ("activity", atlas, level, "samples")), None)
            if src is None:
                raise NotFound(f"no sample x cell type results for {atlas!r} {level} in the store")
            return queries.samples(cur, src.source_id, cell_type, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{level}_samples")

    @api.get("/signature-sets", **_table(SignatureSetRow), tags=["signatures"])
    def signature_sets(format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        return respond(run(lambda cur, cat: queries.signature_sets(cur, limit, offset)), format, limit, offset,
                       "signature_sets")

    @api.get("/signature-sets/{signature_set}/signatures", **_table(SignatureRow), tags=["signatures"])
    def signatures(signature_set: Name, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                   offset: Offset = 0) -> Response:
        def go(cur, cat: Catalog):
            check("signature set", signature_set, cat.all_sets)
            return queries.signatures(cur, signature_set, limit, offset)
        return respond(run(go), format, limit, offset, f"{signature_set}_signatures")

    @api.get("/activity/{atlas}/{level}/{signature_set}", **_table(ActivityRow), tags=["activity"])
    def activity(atlas: Name, level: Name, signature_set: Name, by: By = "cell_type", signature: Signatures = [],  # noqa: B006
                 cell_type: CellTypes = [], sample: Samples = [], format: Format = "json",  # noqa: B006
                 limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        """Activity (z, beta, se, p; bootstrap CI for cell-type rows) of one atlas, level and signature set, tidy."""
        def go(cur, cat: Catalog):
            src = _activity_source(cat, atlas, level, signature_set, _kind(by))
            for s in signature:
                check("signature", s, cat.signatures.get(signature_set, ()), f" in {signature_set}",
                      f" (see /api/v1/signature-sets/{signature_set}/signatures)")
            for c in cell_type:
                check("cell type", c, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
            return queries.activity(cur, (atlas, level, signature_set), str(src.part), src.source_id, signature,
                                    cell_type, sample, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{level}_{signature_set}_activity")

    @api.get("/activity/{atlas}/{level}/{signature_set}/matrix", response_model=ActivityMatrix,
             responses={**_ERRORS, 200: {"content": _FILES}}, tags=["activity"])
    def activity_matrix(atlas: Name, level: Name, signature_set: Name,
                        value: Annotated[Literal[ACTIVITY_LAYERS], Query()] = "z",  # type: ignore[valid-type]
                        signature: Signatures = [], cell_type: CellTypes = [],  # noqa: B006
                        top: Annotated[int | None, Query(ge=1, le=5000, description="keep the N signatures whose "
                                                         "value varies most across cell types")] = None,
                        format: Format = "json") -> Response:
        """Cell types x signatures (the heatmap): JSON rows / columns / values, or a wide CSV / Parquet table."""
        def go(cur, cat: Catalog):
            src = _activity_source(cat, atlas, level, signature_set, "celltype")
            for s in signature:
                check("signature", s, cat.signatures.get(signature_set, ()), f" in {signature_set}")
            for c in cell_type:
                check("cell type", c, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
            return queries.activity_matrix(cur, str(src.part), src.source_id, value, signature, cell_type)
        rows, columns, values = run(go)
        n_signatures = len(columns)
        if top is not None and len(columns) > top:
            with np.errstate(all="ignore"):
                spread = np.nan_to_num(np.nanvar(values, axis=0), nan=-1.0) if len(rows) else np.zeros(len(columns))
            keep = np.sort(np.argsort(-spread, kind="stable")[:top])
            columns, values = [columns[j] for j in keep], values[:, keep]
        if format == "json":
            cells = [[v if math.isfinite(v) else None for v in row] for row in values.tolist()]
            return json_response({"atlas": atlas, "level": level, "signature_set": signature_set, "value": value,
                                  "n_signatures": n_signatures, "rows": rows, "columns": columns, "values": cells})
        wide = [(r, *(v if math.isfinite(v) else None for v in row))
                for r, row in zip(rows, values.tolist(), strict=True)]
        return file_response(["cell_type", *columns], wide, format, f"{atlas}_{level}_{signature_set}_{value}")

    @api.get("/signatures/{signature_set}/{signature}", **_table(ActivityRow), tags=["activity"])
    def signature_activity(signature_set: Name, signature: Name, by: By = "cell_type",
                           atlas: _names("only these atlases") = [],  # noqa: B006
                           level: _names("only these levels") = [], cell_type: CellTypes = [],  # noqa: B006
                           format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        """One signature in every atlas and level (with bootstrap CIs for cell-type rows)."""
        def go(cur, cat: Catalog):
            check("signature set", signature_set, cat.all_sets)
            check("signature", signature, cat.signatures.get(signature_set, ()), f" in {signature_set}",
                  f" (see /api/v1/signature-sets/{signature_set}/signatures)")
            for a in atlas:
                check("atlas", a, cat.atlases)
            for lev in level:
                check("level", lev, {x for a in cat.atlases for x in cat.levels[a]})
            root = str(cat.parts) + os.sep
            parts = sorted(str(s.part) for (step, a, lev, kind, sset), s in cat.sources.items()
                           if step == "activity" and sset == signature_set and kind == _kind(by) and s.part
                           and (not atlas or a in atlas) and (not level or lev in level))
            if not parts:
                return queries.Table([], [], 0)
            return queries.signature_across(cur, root, parts, signature_set, signature, cell_type, limit, offset)
        table = run(go)
        if not table.columns:
            table.columns = list(ActivityRow.model_fields)
        return respond(table, format, limit, offset, f"{signature_set}_{signature}")

    @api.get("/expression/{atlas}/{level}", **_table(ExpressionRow), tags=["expression"])
    def expression(atlas: Name, level: Name,
                   gene: Annotated[list[QName], Query(min_length=1, max_length=100, description="gene symbols")],
                   by: By = "cell_type", cell_type: CellTypes = [], sample: Samples = [],  # noqa: B006
                   format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        """Pseudobulk expression (log1p CPM and atlas z-score) of genes across cell types or samples."""
        def go(cur, cat: Catalog):
            src = _expression_source(cat, atlas, level, _kind(by))
            for g in gene:
                check("gene", g, cat.genes.get(atlas, ()), f" in atlas {atlas!r}", " (try /api/v1/search?q=...)")
            idx = sorted(queries.gene_index(cur, src.source_id, gene).values())
            if not idx:
                return queries.Table(list(ExpressionRow.model_fields), [], 0)
            return queries.expression(cur, (atlas, level), str(src.part), src.source_id, idx, cell_type, sample, limit,
                                      offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{level}_expression")

    @api.get("/validation/scatter/{atlas}/{level}/{signature_set}/{target}", **_table(ScatterPoint),
             tags=["validation"])
    def scatter(atlas: Name, level: Name, signature_set: Name, target: Name,
                gene: Annotated[QName | None, Query(description="gene to plot (default: the target's gene in the "
                                                    "rho table, else the target's own name)")] = None,
                cell_type: CellTypes = [], format: Format = "json", limit: Limit = DEFAULT_LIMIT,  # noqa: B006
                offset: Offset = 0) -> Response:
        """Expression of a target's gene vs the target's activity, per sample x cell type."""
        def go(cur, cat: Catalog):
            act = _activity_source(cat, atlas, level, signature_set, "samples")
            check("signature", target, cat.signatures.get(signature_set, ()), f" in {signature_set}")
            ex = _expression_source(cat, atlas, level, "samples")
            name = gene or (queries.rho_gene(cur, atlas, level, signature_set, target) if "rho" in cat.validation
                            else None) or target
            if gene is None and name not in cat.genes.get(atlas, ()):
                raise NotFound(f"target {target!r} has no gene of the same name in atlas {atlas!r}: pass gene=")
            check("gene", name, cat.genes.get(atlas, ()), f" in atlas {atlas!r}")
            sig = queries.signature_index(cur, act.source_id, target)
            idx = queries.gene_index(cur, ex.source_id, [name]).get(name)
            if sig is None or idx is None:
                return queries.Table(list(ScatterPoint.model_fields), [], 0)
            return queries.scatter(cur, str(act.part), act.source_id, sig, str(ex.part), ex.source_id, idx,
                                   cell_type, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{level}_{signature_set}_{target}_scatter")

    def validation_route(path: str, name: str, filters: tuple[str, ...], doc: str) -> None:
        def endpoint(format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                     offset: Offset = 0, **kwargs) -> Response:
            def go(cur, cat: Catalog):
                if name not in cat.validation:
                    raise NotFound(f"no validation table {name!r} in the store (run `cytoatlas validate`, then "
                                   f"`cytoatlas index`)", sorted(cat.validation))
                for key in ("atlas", "atlas_a", "atlas_b"):
                    if kwargs.get(key) is not None:
                        check("atlas", kwargs[key], cat.atlases)
                if kwargs.get("signature_set") is not None:
                    check("signature set", kwargs["signature_set"], cat.all_sets)
                return queries.validation(cur, name, kwargs, limit, offset)
            return respond(run(go), format, limit, offset, name)

        import inspect

        params = [p for p in inspect.signature(endpoint).parameters.values() if p.kind != p.VAR_KEYWORD]
        for col in filters:
            typ = Annotated[bool | None, Query()] if col == "representative" else OptName
            params.append(inspect.Parameter(col, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typ))
        endpoint.__signature__ = inspect.Signature(params)
        endpoint.__doc__ = doc
        api.add_api_route(path, endpoint, methods=["GET"], name=f"validation_{name}", tags=["validation"],
                          **_table(VALIDATION_MODELS[name]))

    for path, name, doc in (
            ("/validation/summary", "summary", "Per atlas, level and signature set: median rho and more."),
            ("/validation/rho", "rho", "Spearman rho of each target's activity with its gene's expression."),
            ("/validation/cytosig-vs-secact", "cytosig_vs_secact", "CytoSig vs SecAct on their shared targets."),
            ("/validation/cell-type-matches", "cell_type_matches",
             "Each atlas' cell-type labels as Cell Ontology terms, and how each was found."),
            ("/cross-atlas", "cross_atlas", "Agreement of each signature between two atlases at a level."),
            ("/cross-atlas/conservation", "conservation", "How many atlas pairs agree, per signature."),
            ("/cross-atlas/consistency", "consistency", "Per target: atlases with a positive rho, and a tier.")):
        validation_route(path, name, queries.VALIDATION_FILTERS[name], doc)

    def _with_filters(endpoint, filters: tuple[str, ...], fdr: bool) -> None:
        """Give ``endpoint`` (format, limit, offset, **kwargs) one optional query parameter per filter column."""
        import inspect

        params = [p for p in inspect.signature(endpoint).parameters.values() if p.kind != p.VAR_KEYWORD]
        for col in filters:
            params.append(inspect.Parameter(col, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OptName))
        if fdr:
            params.append(inspect.Parameter("fdr_max", inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=FdrMax))
        endpoint.__signature__ = inspect.Signature(params)

    def _compare_names(cat: Catalog, filters: dict) -> None:
        """404 for a filter value that no compare table holds (listing those that exist)."""
        if not cat.compare:
            raise NotFound("no comparisons in the store (run `cytoatlas compare`, then `cytoatlas index`)", [])
        for col, value in filters.items():
            if value is not None and col != "fdr_max":
                check(compare_tables.LABELS.get(col, col), value, cat.compare["*"][col], " in the comparisons")

    def compare_route(name: str, doc: str) -> None:
        def endpoint(format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                     offset: Offset = 0, **kwargs) -> Response:
            def go(cur, cat: Catalog):
                _compare_names(cat, kwargs)
                if name not in cat.compare:
                    raise NotFound(f"no compare table {name!r} in the store (run `cytoatlas compare`, then "
                                   f"`cytoatlas index`)", sorted(k for k in cat.compare if k != "*"))
                base, params = compare_tables.table_query(name, kwargs, kwargs.get("fdr_max"))
                return queries.page(cur, base, compare_order(name), params, limit, offset)
            return respond(run(go), format, limit, offset, f"compare_{name}")

        _with_filters(endpoint, compare_tables.FILTERS[name], compare_tables.has_fdr(name))
        endpoint.__doc__ = doc
        api.add_api_route(f"/compare/{name}", endpoint, methods=["GET"], name=f"compare_{name}", tags=["compare"],
                          **_table(COMPARE_MODELS[name]))

    for name, doc in (
            ("differential", "Per atlas, level, signature set, cell type and signature: the difference in mean "
                             "activity between a group and the reference (donors), its CI, p and FDR."),
            ("association", "Per atlas, level, signature set, cell type and signature: the slope of activity per "
                            "unit of a covariate (donors), its CI, p and FDR."),
            ("meta", "Per Cell Ontology cell type (`resolution` fine: the finest term the atlases share; lineage) "
                     "and signature: the random-effects (DerSimonian-Laird) pooled effect across atlases, its "
                     "heterogeneity (tau2, Q, I2) and sign agreement. `atlas`: rows pooling it."),
            ("untestable", "The cell types a comparison could not test, with the counts and the reason.")):
        compare_route(name, doc)

    def contrasts(format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0, **kwargs) -> Response:
        def go(cur, cat: Catalog):
            _compare_names(cat, kwargs)
            base, params = compare_tables.contrasts_query(kwargs)
            return queries.page(cur, base, compare_tables.CONTRASTS_ORDER, params, limit, offset)
        return respond(run(go), format, limit, offset, "compare_contrasts")

    _with_filters(contrasts, compare_tables.CONTRAST_FILTERS, False)
    contrasts.__doc__ = ("The comparisons in the store: each (analysis, column, contrast, atlas, level, signature "
                         "set) with its test and row counts.")
    api.add_api_route("/compare/contrasts", contrasts, methods=["GET"], name="compare_contrasts", tags=["compare"],
                      **_table(ContrastRow))

    def _cells(cat: Catalog, atlas: str, signature_set: str, kind: str) -> dict[str, set[str]]:
        check("atlas", atlas, sorted({a for a, _ in cat.cells}), " with per-cell results (`cytoatlas cells`, "
              "then `cytoatlas index`)")
        check("signature set", signature_set, sorted(s for a, s in cat.cells if a == atlas),
              f" with per-cell results of atlas {atlas!r}")
        have = cat.cells[(atlas, signature_set)]
        if kind not in have:
            raise NotFound(f"atlas {atlas!r} {signature_set} has no per-cell {kind} (no embedding in the atlas?)",
                           sorted(have))
        return have

    @api.get("/cells", **_table(CellsSetRow), tags=["cells"])
    def cells_sets(format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Response:
        """The atlas x signature sets with per-cell results, and the signatures drawn on their embedding."""
        def go(cur, cat: Catalog):
            rows = [(a, s, sorted(k), sorted(k.get("embedding", ()))) for (a, s), k in sorted(cat.cells.items())]
            return queries.Table(list(CellsSetRow.model_fields), rows[offset: offset + limit], len(rows))
        return respond(run(go), format, limit, offset, "cells")

    @api.get("/cells/{atlas}/{signature_set}/summary", **_table(CellsSummaryRow), tags=["cells"])
    def cells_summary(atlas: Name, signature_set: Name, level: OptName = None, label: OptName = None,
                      signature: OptName = None, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                      offset: Offset = 0) -> Response:
        """Per level, label and signature: mean, sd, quantiles and fraction |z| > 2 of the cells' activity."""
        def go(cur, cat: Catalog):
            have = _cells(cat, atlas, signature_set, "summary")
            if signature is not None:
                check("signature", signature, have["summary"], f" in {signature_set}")
            base, params = cells_tables.summary_query({"atlas": atlas, "signature_set": signature_set,
                                                       "level": level, "label": label, "signature": signature})
            return queries.page(cur, base, cells_tables.SUMMARY_ORDER, params, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{signature_set}_cells_summary")

    @api.get("/cells/{atlas}/{signature_set}/embedding", **_table(CellsEmbeddingPoint), tags=["cells"])
    def cells_embedding(atlas: Name, signature_set: Name, signature: Annotated[QName, Query()],
                        format: Format = "json", limit: Limit = MAX_LIMIT, offset: Offset = 0) -> Response:
        """The fixed embedding subsample of cells, with their activity z of ``signature`` (to draw it)."""
        def go(cur, cat: Catalog):
            have = _cells(cat, atlas, signature_set, "embedding")
            check("signature", signature, have["embedding"], f" drawn for {signature_set} (the most variable)")
            base, params = cells_tables.embedding_query(atlas, signature_set, signature)
            return queries.page(cur, base, cells_tables.EMBEDDING_ORDER, params, limit, offset)
        return respond(run(go), format, limit, offset, f"{atlas}_{signature_set}_{signature}_cells_embedding")

    @api.get("/search", **_table(SearchHit), tags=["search"])
    def search(q: Annotated[str, Query(min_length=1, max_length=100, pattern=NAME)], format: Format = "json",
               limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: Offset = 0) -> Response:
        """Genes and signatures whose name contains ``q`` (case-insensitive): exact, then prefix matches first."""
        return respond(run(lambda cur, cat: queries.search(cur, q, limit, offset)), format, limit, offset, "search")

    assert set(MEDIA) == {"json", "csv", "parquet"}
    return api

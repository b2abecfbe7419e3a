"""``/activity`` and ``/signatures``: activity tidy, as the heatmap's matrix, and one signature everywhere."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Response

from .. import names, queries
from ..ingest import ACTIVITY_LAYERS
from ..models import ActivityMatrix, ActivityRow
from ..reader import Catalog
from ..respond import check, file_response, json_response, respond
from . import _sources
from ._common import (
    DEFAULT_LIMIT,
    ERRORS_AND_FILES,
    By,
    CellTypes,
    Format,
    Limit,
    Name,
    Offset,
    Samples,
    Signatures,
    StoreDep,
    kind,
    name_list,
    table,
)

router = APIRouter(tags=["activity"])


@router.get("/activity/{atlas}/{level}/{signature_set}", **table(ActivityRow))
def activity(atlas: Name, level: Name, signature_set: Name, by: By = "cell_type",
             signature: Signatures = [], cell_type: CellTypes = [], sample: Samples = [],  # noqa: B006
             format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0, *,
             store: StoreDep) -> Response:
    """Activity (z, beta, se, p; bootstrap CI for cell-type rows) of one atlas, level and signature set, tidy."""
    def go(cur, cat: Catalog):
        src = _sources.activity(cat, atlas, level, signature_set, kind(by))
        for s in signature:
            check("signature", s, cat.signatures.get(signature_set, ()), f" in {signature_set}",
                  f" (see /api/v1/signature-sets/{signature_set}/signatures)")
        for c in cell_type:
            check("cell type", c, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
        names.check_each("sample", sample, names.samples(cur, cat, atlas, level), f" in atlas {atlas!r} {level}")
        return queries.activity(cur, (atlas, level, signature_set), _sources.part(cur, cat, src, "signatures"),
                                signature, cell_type, sample, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{level}_{signature_set}_activity")


@router.get("/activity/{atlas}/{level}/{signature_set}/matrix", response_model=ActivityMatrix,
            responses=ERRORS_AND_FILES)
def activity_matrix(store: StoreDep, atlas: Name, level: Name, signature_set: Name,
                    value: Annotated[Literal[ACTIVITY_LAYERS], Query()] = "z",  # type: ignore[valid-type]
                    signature: Signatures = [], cell_type: CellTypes = [],  # noqa: B006
                    top: Annotated[int | None, Query(ge=1, le=5000, description="keep the N signatures whose "
                                                     "value varies most across cell types")] = None,
                    format: Format = "json") -> Response:
    """Cell types x signatures (the heatmap): JSON rows / columns / values, or a wide CSV / Parquet table."""
    def go(cur, cat: Catalog):
        src = _sources.activity(cat, atlas, level, signature_set, "celltype")
        for s in signature:
            check("signature", s, cat.signatures.get(signature_set, ()), f" in {signature_set}")
        for c in cell_type:
            check("cell type", c, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
        return queries.activity_matrix(cur, _sources.part(cur, cat, src, "signatures"), value, signature, cell_type)
    rows, columns, values = store.run(go)
    n_signatures = len(columns)
    if top is not None and len(columns) > top:
        with np.errstate(all="ignore"):
            spread = np.nan_to_num(np.nanvar(values, axis=0), nan=-1.0) if len(rows) else np.zeros(len(columns))
        keep = np.sort(np.argsort(-spread, kind="stable")[:top])
        columns, values = [columns[j] for j in keep], values[:, keep]
    if format == "json":  # values: float64, NaN written as null
        return json_response({"atlas": atlas, "level": level, "signature_set": signature_set, "value": value,
                              "n_signatures": n_signatures, "rows": rows, "columns": columns,
                              "values": np.ascontiguousarray(values)})
    wide = [(r, *(v if math.isfinite(v) else None for v in row))
            for r, row in zip(rows, values.tolist(), strict=True)]
    return file_response(["cell_type", *columns], wide, format, f"{atlas}_{level}_{signature_set}_{value}")


@router.get("/signatures/{signature_set}/{signature}", **table(ActivityRow))
def signature_activity(store: StoreDep, signature_set: Name, signature: Name, by: By = "cell_type",
                       atlas: name_list("only these atlases") = [],  # noqa: B006
                       level: name_list("only these levels") = [], cell_type: CellTypes = [],  # noqa: B006
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
        names.check_each("cell type", cell_type, set().union(*(
            types for (a, lev), types in cat.cell_types.items() if (not atlas or a in atlas)
            and (not level or lev in level))), " in the atlases and levels asked for")
        parts = [((a, lev, sset), _sources.part(cur, cat, s, "signatures"))
                 for (step, a, lev, k, sset), s in cat.sources.items()
                 if step == "activity" and sset == signature_set and k == kind(by) and s.part
                 and (not atlas or a in atlas) and (not level or lev in level)]
        return queries.signature_across(cur, parts, signature, cell_type, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{signature_set}_{signature}")

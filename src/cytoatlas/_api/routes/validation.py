"""``/validation`` and ``/cross-atlas``: the tables of ``cytoatlas validate``, and a target's scatter."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from .. import axes, names, queries
from ..models import VALIDATION_MODELS, ScatterPoint
from ..reader import Catalog
from ..respond import NotFound, check, respond
from ..schema import validation_table
from . import _sources
from ._common import (
    DEFAULT_LIMIT,
    CellTypes,
    Format,
    Limit,
    Name,
    Offset,
    OptBool,
    OptName,
    QName,
    StoreDep,
    table,
    with_filters,
)

router = APIRouter(tags=["validation"])


@router.get("/validation/scatter/{atlas}/{level}/{signature_set}/{target}", **table(ScatterPoint))
def scatter(store: StoreDep, atlas: Name, level: Name, signature_set: Name, target: Name,
            gene: Annotated[QName | None, Query(description="gene to plot (default: the target's gene in the "
                                                "rho table, else the target's own name)")] = None,
            cell_type: CellTypes = [], format: Format = "json", limit: Limit = DEFAULT_LIMIT,  # noqa: B006
            offset: Offset = 0) -> Response:
    """Expression of a target's gene vs the target's activity, per sample x cell type."""
    def go(cur, cat: Catalog):
        act = _sources.activity(cat, atlas, level, signature_set, "samples")
        check("signature", target, cat.signatures.get(signature_set, ()), f" in {signature_set}")
        ex = _sources.expression(cat, atlas, level, "samples")
        names.check_each("cell type", cell_type, cat.cell_types.get((atlas, level), ()), f" in atlas {atlas!r} {level}")
        name = gene or (queries.rho_gene(cur, atlas, level, signature_set, target) if "rho" in cat.validation
                        else None) or target
        if gene is None and name not in cat.genes.get(atlas, ()):
            raise NotFound(f"target {target!r} has no gene of the same name in atlas {atlas!r}: pass gene=")
        check("gene", name, cat.genes.get(atlas, ()), f" in atlas {atlas!r}")
        sig = axes.columns(cur, cat, act.source_id, "signatures").index.get(target)
        idx = axes.columns(cur, cat, ex.source_id, "genes").index.get(name)
        if sig is None or idx is None:
            return queries.Table(list(ScatterPoint.model_fields), [], 0)
        return queries.scatter(cur, str(act.part), act.source_id, sig, str(ex.part), ex.source_id, idx,
                               cell_type, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{atlas}_{level}_{signature_set}_{target}_scatter")


def _route(path: str, name: str, doc: str) -> None:
    def endpoint(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
                 **filters) -> Response:
        def go(cur, cat: Catalog):
            if name not in cat.validation:
                raise NotFound(f"no validation table {name!r} in the store (run `cytoatlas validate`, then "
                               f"`cytoatlas index`)", sorted(cat.validation))
            for key in ("atlas", "atlas_a", "atlas_b"):
                if filters.get(key) is not None:
                    check("atlas", filters[key], cat.atlases)
            if filters.get("signature_set") is not None:
                check("signature set", filters["signature_set"], cat.all_sets)
            names.check_filters(cur, cat, validation_table(name), filters, f" in the validation table {name!r}",
                                {"atlas": ("atlas_a", "atlas_b")} if name == "cross_atlas" else None)
            return queries.validation(cur, name, filters, limit, offset)
        return respond(store.run(go), format, limit, offset, name)

    with_filters(endpoint, {col: OptBool if col == "representative" else OptName
                            for col in queries.VALIDATION_FILTERS[name]})
    endpoint.__doc__ = doc
    router.add_api_route(path, endpoint, methods=["GET"], name=f"validation_{name}", **table(VALIDATION_MODELS[name]))


for _path, _name, _doc in (
        ("/validation/summary", "summary", "Per atlas, level and signature set: median rho and more."),
        ("/validation/rho", "rho", "Spearman rho of each target's activity with its gene's expression."),
        ("/validation/cytosig-vs-secact", "cytosig_vs_secact", "CytoSig vs SecAct on their shared targets."),
        ("/validation/cell-type-matches", "cell_type_matches",
         "Each atlas' cell-type labels as Cell Ontology terms, and how each was found."),
        ("/cross-atlas", "cross_atlas", "Agreement of each signature between two atlases at a level."),
        ("/cross-atlas/conservation", "conservation", "How many atlas pairs agree, per signature."),
        ("/cross-atlas/consistency", "consistency", "Per target: atlases with a positive rho, and a tier.")):
    _route(_path, _name, _doc)

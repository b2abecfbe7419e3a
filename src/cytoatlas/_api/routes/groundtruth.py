"""``/groundtruth``: the tables of ``cytoatlas groundtruth``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from .. import groundtruth as groundtruth_tables
from .. import names, queries
from ..models import GROUNDTRUTH_MODELS
from ..reader import Catalog
from ..respond import respond
from ._common import DEFAULT_LIMIT, Format, Limit, Offset, OptName, StoreDep, table, with_filters

router = APIRouter(tags=["groundtruth"])


def _route(name: str, doc: str) -> None:
    def endpoint(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
                 **filters) -> Response:
        def go(cur, cat: Catalog):  # a store without a ground truth serves the table empty (no filter given)
            names.check_filters(cur, cat, groundtruth_tables.table(name), filters, " in the ground truth")
            base, params = groundtruth_tables.table_query(name, filters)
            return queries.page(cur, base, groundtruth_tables.order(name), params, limit, offset)
        return respond(store.run(go), format, limit, offset, f"groundtruth_{name}")

    with_filters(endpoint, dict.fromkeys(groundtruth_tables.FILTERS[name], OptName))
    endpoint.__doc__ = doc
    router.add_api_route(f"/groundtruth/{name}", endpoint, methods=["GET"], name=f"groundtruth_{name}",
                         **table(GROUNDTRUTH_MODELS[name]))


for _name, _doc in (
        ("summary", "Per atlas, level and signature set: median AUC of the own signatures, the fraction of "
                    "treatments whose own signature ranks first and in the top 3, cross-donor consistency."),
        ("treatments", "Per treatment: its own signature, the AUC against control and against the other "
                       "treatments, its rank over all cell types, the fraction of donors where it ranks first."),
        ("effects", "Per treatment and cell type (and `all`): the own signature's paired effect (treated - the "
                    "same donor's control), CI, p, rank among the set, and its correlated signatures."),
        ("matches", "Every treatment value and the signature it was matched to (empty: unmatched, and why).")):
    _route(_name, _doc)

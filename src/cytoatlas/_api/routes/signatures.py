"""``/signature-sets``: the signature sets and their signatures."""

from __future__ import annotations

from fastapi import APIRouter, Response

from .. import queries
from ..models import SignatureRow, SignatureSetRow
from ..reader import Catalog
from ..respond import check, respond
from ._common import DEFAULT_LIMIT, Format, Limit, Name, Offset, StoreDep, table

router = APIRouter(tags=["signatures"])


@router.get("/signature-sets", **table(SignatureSetRow))
def signature_sets(store: StoreDep, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
                   offset: Offset = 0) -> Response:
    return respond(store.run(lambda cur, cat: queries.signature_sets(cur, limit, offset)), format, limit, offset,
                   "signature_sets")


@router.get("/signature-sets/{signature_set}/signatures", **table(SignatureRow))
def signatures(store: StoreDep, signature_set: Name, format: Format = "json", limit: Limit = DEFAULT_LIMIT,
               offset: Offset = 0) -> Response:
    def go(cur, cat: Catalog):
        check("signature set", signature_set, cat.all_sets)
        return queries.signatures(cur, signature_set, limit, offset)
    return respond(store.run(go), format, limit, offset, f"{signature_set}_signatures")

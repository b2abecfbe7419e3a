"""``/search``: genes and signatures by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from .. import queries
from ..models import SearchHit
from ..respond import respond
from ._common import NAME, Format, Offset, StoreDep, table

router = APIRouter(tags=["search"])


@router.get("/search", **table(SearchHit))
def search(store: StoreDep, q: Annotated[str, Query(min_length=1, max_length=100, pattern=NAME)],
           format: Format = "json", limit: Annotated[int, Query(ge=1, le=1000)] = 50,
           offset: Offset = 0) -> Response:
    """Genes and signatures whose name contains ``q`` (case-insensitive): exact, then prefix matches first."""
    return respond(store.run(lambda cur, cat: queries.search(cur, q, limit, offset)), format, limit, offset,
                   "search")

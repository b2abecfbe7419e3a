"""The endpoints of ``/api/v1``, one router per tag: every table as a page (JSON) or a file
(``format=csv|parquet``). Each route gets the store through FastAPI's dependencies (:data:`._common.StoreDep`:
``app.state.store``, a :class:`._common.Store`)."""

from __future__ import annotations

from fastapi import FastAPI

from ..respond import MEDIA
from . import activity, atlases, cells, compare, expression, groundtruth, meta, search, signatures, validation
from ._common import DEFAULT_LIMIT, MAX_LIMIT, Store

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "PREFIX", "ROUTERS", "Store", "include_routes"]

PREFIX = "/api/v1"
# in the order of the OpenAPI schema's paths
ROUTERS = (meta.router, atlases.router, signatures.router, activity.router, expression.router, validation.router,
           compare.router, groundtruth.router, cells.router, search.router)


def include_routes(app: FastAPI) -> None:
    """Every tag's router into ``app`` under ``/api/v1`` (the app supplies ``app.state.store``). Each goes into the
    app itself, not through a router of routers: FastAPI matches a request through every level of them."""
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    assert set(MEDIA) == {"json", "csv", "parquet"}

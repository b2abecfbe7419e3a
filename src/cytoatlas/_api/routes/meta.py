"""``/health``: the store's status, version, build time and atlases."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..models import Health
from ..reader import Catalog
from ..respond import json_response
from ..schema import SCHEMA_VERSION
from ._common import StoreDep

router = APIRouter(tags=["meta"])


@router.get("/health", response_model=Health)
def health(store: StoreDep) -> Response:
    def go(cur, cat: Catalog):
        return {"status": "ok", "version": cat.meta.get("cytoatlas_version", ""), "schema_version": SCHEMA_VERSION,
                "built": cat.meta.get("built", ""), "files": cat.n_files, "atlases": cat.atlases}
    return json_response(store.run(go))

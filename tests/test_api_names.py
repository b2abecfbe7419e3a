"""Every API filter that names something (an atlas, level, cell type, sample, signature, target, gene, tier, ...)
answers 404 with the valid values when the name does not exist, never 200 with no rows. The route / parameter
pairs come from the OpenAPI schema, so a filter added later is covered too."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import cytoatlas
from cytoatlas._api.app import create_app

UNKNOWN = "no-such-name-4711"
NOT_NAMES = {"q"}  # search text: any text is a question, not a name
# path values that give each route a real answer (the schema's examples are the store's first names)
PATH_VALUES = {"/api/v1/validation/scatter/{atlas}/{level}/{signature_set}/{target}":
               {"atlas": "alpha", "level": "L1", "signature_set": "cytosig", "target": "IFNG"}}


def _is_name(schema: dict) -> bool:
    """A text parameter without a fixed list of values (an enum is checked by validation: 422)."""
    schema = schema.get("items", schema) if schema.get("type") == "array" else schema
    options = schema.get("anyOf", [schema])
    return any(o.get("type") == "string" and "enum" not in o for o in options)


def _pairs(spec: dict) -> list[tuple[str, str]]:
    return sorted((path, p["name"]) for path, item in spec["paths"].items() for p in item["get"].get("parameters", [])
                  if p["in"] == "query" and p["name"] not in NOT_NAMES and _is_name(p["schema"]))


@pytest.fixture(scope="module")
def cells_db(tmp_path_factory) -> Path:
    """A store with per-cell results (the `api_db` has none)."""
    from _atlas_factory import tiny_config
    from test_cells import write_cells_atlas

    root = tmp_path_factory.mktemp("names_cells")
    path, _ = write_cells_atlas(root / "synth.h5ad", n_cells=600, sets=("cytosig",))
    cfg = tiny_config(path, "tiny")
    out = root / "results" / "tiny"
    cytoatlas.activity(cytoatlas.pseudobulk(cfg, out / "pseudobulk", n_bootstrap=0), out / "activity",
                       signatures=["cytosig"])
    cytoatlas.cells(cfg, out, signatures=["cytosig"])
    return cytoatlas.index(root / "results").db


@pytest.fixture(scope="module")
def clients(api_db: Path, cells_db: Path) -> dict[str, TestClient]:
    return {"api": TestClient(create_app(api_db)), "cells": TestClient(create_app(cells_db))}


def _request(client: TestClient, path: str) -> tuple[str, dict]:
    """The route's path filled with real names, and its required query parameters (from the schema's examples)."""
    spec = client.get("/api/v1/openapi.json").json()
    params = spec["paths"][path]["get"].get("parameters", [])
    values = {p["name"]: p.get("example") for p in params if p["in"] == "path"} | PATH_VALUES.get(path, {})
    url = path.format(**values)
    required = {p["name"]: p["example"] for p in params if p["in"] == "query" and p.get("required")}
    return url, required


def test_the_schema_has_the_filters_of_the_issue(api_db: Path) -> None:
    pairs = _pairs(TestClient(create_app(api_db)).get("/api/v1/openapi.json").json())
    names = {name for _, name in pairs}
    assert {"level", "cell_type", "sample", "target", "signature", "gene", "tier", "treatment", "label"} <= names
    assert len(pairs) > 60


def _all_pairs() -> list[tuple[str, str]]:
    """The pairs of the schema as the routes declare it (a store is not needed for the schema's shape)."""
    from fastapi import FastAPI
    from fastapi.openapi.utils import get_openapi

    from cytoatlas._api.routes import include_routes

    app = FastAPI()
    include_routes(app)
    return _pairs(get_openapi(title="t", version="1", routes=app.routes))


@pytest.mark.parametrize(("path", "param"), _all_pairs())
def test_an_unknown_name_is_a_404_listing_the_valid_ones(clients: dict[str, TestClient], path: str,
                                                         param: str) -> None:
    client = clients["cells" if path.startswith("/api/v1/cells/") else "api"]
    url, required = _request(client, path)
    baseline = client.get(url, params={**required, "limit": 5})
    assert baseline.status_code == 200, (url, baseline.text[:300])  # the route answers without the bad name
    r = client.get(url, params={**required, param: UNKNOWN, "limit": 5})
    assert r.status_code == 404, (url, param, r.status_code, r.text[:300])
    body = r.json()
    assert UNKNOWN in body["detail"] and isinstance(body["valid"], list), body
    assert UNKNOWN not in body["valid"]

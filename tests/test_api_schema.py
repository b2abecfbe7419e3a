"""Property-based requests generated from the API's own OpenAPI schema (schemathesis, driven by Hypothesis): for
every operation, valid and invalid inputs and the schema's examples; no server error, and every status code,
content type and JSON body as the schema declares; malformed input rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from cytoatlas._api.app import create_app
from cytoatlas._api.routes import PREFIX, ROUTERS

CHECKS = [getattr(schemathesis.checks, name) for name in (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "negative_data_rejection")]
EXAMPLES = 8  # per operation and mode: each operation x (valid + invalid + the examples), ~17 requests each


@pytest.fixture(scope="module")
def api_schema(api_db: Path):
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(api_db))


def _run(strategy, calls: list) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        calls.append(response.status_code)

    check()


def _api_routes() -> set[str]:
    """Every GET path the API's router declares (under /api/v1)."""
    return {PREFIX + r.path for router in ROUTERS for r in router.routes if "GET" in r.methods}


def test_no_server_error_and_responses_as_declared(api_schema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {o.path for o in operations} == _api_routes() and len(operations) > 20
    for operation in operations:
        calls: list[int] = []
        for strategy in api_schema.get_strategies_from_examples(operation):
            _run(strategy, calls)
        _run(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), calls)
        try:
            _run(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), calls)
        except Unsatisfiable:  # no parameter to get wrong
            assert operation.path == "/api/v1/health"
        assert calls and max(calls) < 500, operation.label
        if "{" not in operation.path and operation.path != "/api/v1/search":
            assert 200 in calls, operation.label  # valid requests are answered, not only rejected


def test_the_schema_covers_every_endpoint(api_db: Path) -> None:
    spec = TestClient(create_app(api_db)).get("/api/v1/openapi.json").json()
    assert set(spec["paths"]) == _api_routes()  # every endpoint declared, and nothing outside /api/v1
    for path, item in spec["paths"].items():
        declared = item["get"]["responses"]["200"]["content"]
        assert "application/json" in declared, path
        if path != "/api/v1/health":
            if path != "/api/v1/compare/volcano":  # a plot's summary, not a table (its points are table rows)
                assert {"text/csv", "application/vnd.apache.parquet"} <= set(declared), path
            assert {"404", "422"} <= set(item["get"]["responses"]), path
    level = next(p for p in spec["paths"]["/api/v1/activity/{atlas}/{level}/{signature_set}"]["get"]["parameters"]
                 if p["name"] == "level")
    assert level["example"] == "L1"  # examples are real names from the store

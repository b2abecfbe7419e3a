"""The load test of benchmarks/bench_api.py, bounded: 8 concurrent clients, 5,000 requests mixing endpoints
against a real `cytoatlas serve` (uvicorn on 127.0.0.1), zero errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _api_helpers import ROOT, SRC


def test_load_eight_clients_five_thousand_requests(api_db: Path, tmp_path: Path) -> None:
    report = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--db", str(api_db),
                           "--clients", "8", "--requests", "5000", "--time-limit", "240", "--json", str(report)],
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["completed"] == 5000 and summary["errors"] == 0 and summary["clients"] == 8
    kinds = summary["by_endpoint"]
    assert {"activity", "matrix", "signature", "expression", "expression_samples", "search", "validation",
            "parquet", "activity_csv"} <= set(kinds)
    assert sum(k["n"] for k in kinds.values()) == 5000
    overall = summary["overall"]
    assert 0 < overall["p50_ms"] <= overall["p99_ms"] <= overall["max_ms"]
    print(f"\nload: {summary['requests_per_s']} req/s, p50 {overall['p50_ms']} ms, p99 {overall['p99_ms']} ms")


def test_serve_with_two_workers_and_a_token(api_db: Path, tmp_path: Path) -> None:
    import httpx
    from _api_helpers import running_server

    token = tmp_path / "token"
    token.write_text("two-workers-token-0123456789\n")
    token.chmod(0o600)  # a token file others may read is refused
    with running_server(api_db, "--workers", "2", "--token-file", str(token)) as url:
        assert httpx.get(url + "/api/v1/atlases").status_code == 401
        auth = {"Authorization": "Bearer two-workers-token-0123456789"}
        answers = {httpx.get(url + "/api/v1/atlases", headers=auth).json()["total"] for _ in range(20)}
        assert answers == {2}

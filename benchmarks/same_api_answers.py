"""Every API answer the same before and after a change: record the answers of one code version, compare another's.

The requests are ``bench_api.plan``'s mix (every endpoint kind, names drawn from the store, seeded) and, for each
of its activity, signature and expression pages, the same request further on (later pages, a page past the end)
and filtered (by two of its cell types, by two samples, by several signatures or genes, sample rows of every
signature), answered in-process (FastAPI's TestClient, no server). ``record`` writes ``{path: [status, body]}``
(JSON bodies parsed, so key order does not matter; CSV and Parquet bodies as their SHA-256); ``compare`` answers
the same paths with the code on ``PYTHONPATH`` and lists every difference.

    PYTHONPATH=/work/main/src python benchmarks/same_api_answers.py record --db main.duckdb --out answers.json
    PYTHONPATH=$PWD/src python benchmarks/same_api_answers.py compare --db branch.duckdb --answers answers.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent


def answers(db: Path, paths: list[str] | None, n: int, seed: int) -> dict[str, list]:
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(HERE))
    from bench_api import plan

    from cytoatlas._api.app import create_app

    with TestClient(create_app(db)) as client:
        if paths is None:
            drawn = sorted({p for _, p in plan(client, n, seed)})
            paths = sorted(set(drawn) | {v for p in drawn for v in variants(client, p)})
        out = {}
        for path in paths:
            r = client.get(path)
            kind = r.headers.get("content-type", "")
            body = r.json() if kind.startswith("application/json") else hashlib.sha256(r.content).hexdigest()
            if isinstance(body, dict):
                body.pop("built", None)  # /health: when the store was built, which differs by construction
            out[path] = [r.status_code, body]
    return out


def variants(client, path: str) -> list[str]:
    """More requests like ``path`` (a JSON page of activity, a signature or expression): pages further on and
    filters on the values of its first page."""
    if not path.startswith(("/api/v1/activity/", "/api/v1/signatures/", "/api/v1/expression/")) or "format=" in path \
            or path.endswith("/matrix") or "/matrix?" in path:
        return []
    first = client.get(path)
    if first.status_code != 200:
        return []
    rows, join = first.json()["rows"], "&" if "?" in path else "?"
    out = [f"{path}{join}limit=7&offset=3", f"{path}{join}limit=50&offset=990", f"{path}{join}offset=100000000"]
    cell_types = sorted({r["cell_type"] for r in rows})
    if len(cell_types) > 1:
        out.append(f"{path}{join}cell_type={quote(cell_types[0])}&cell_type={quote(cell_types[-1])}&limit=300")
    samples = sorted({r["sample"] for r in rows if r.get("sample")})
    if len(samples) > 1 and not path.startswith("/api/v1/signatures/"):
        out.append(f"{path}{join}sample={quote(samples[0])}&sample={quote(samples[-1])}")
    if path.startswith("/api/v1/activity/"):
        base = path.split("?")[0]
        names = client.get(f"/api/v1/signature-sets/{base.rsplit('/', 1)[1]}/signatures", params={"limit": 5}).json()
        more = "&".join(f"signature={quote(r['signature'])}" for r in names["rows"])
        out += [f"{base}?{more}&limit=40&offset=5", f"{base}?by=sample&limit=25&offset=1234",
                f"{base}?by=sample&{more}&limit=60&offset=100"]
    if path.startswith("/api/v1/expression/") and rows:
        hits = client.get("/api/v1/search", params={"q": rows[0]["gene"][:2], "limit": 6}).json()["rows"]
        genes = "&".join(f"gene={quote(h['name'])}" for h in hits if h["kind"] == "gene")
        out.append(f"{path}&{genes}&limit=100&offset=50")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("record", "compare"))
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--out", type=Path, help="record: where the answers go")
    p.add_argument("--answers", type=Path, help="compare: the recorded answers")
    p.add_argument("--requests", type=int, default=3000, help="requests drawn (distinct paths are kept)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.mode == "record":
        got = answers(a.db, None, a.requests, a.seed)
        a.out.write_text(json.dumps(got))
        print(f"{len(got)} answers recorded in {a.out}")
        return 0
    want = json.loads(a.answers.read_text())
    for _, body in want.values():
        if isinstance(body, dict):
            body.pop("built", None)
    got = answers(a.db, list(want), a.requests, a.seed)
    diff = [path for path in want if json.dumps(want[path], sort_keys=True) != json.dumps(got[path], sort_keys=True)]
    for path in diff[:20]:
        print(f"DIFFERENT {path}: {json.dumps(want[path])[:200]} != {json.dumps(got[path])[:200]}")
    print(f"{len(want) - len(diff)}/{len(want)} answers the same")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())

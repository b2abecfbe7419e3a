"""Every API answer the same before and after a change: record the answers of one code version, compare another's.

The requests are ``bench_api.plan``'s mix (every endpoint kind, names drawn from the store, seeded), answered
in-process (FastAPI's TestClient, no server). ``record`` writes ``{path: [status, body]}`` (JSON bodies parsed, so
key order does not matter; CSV and Parquet bodies as their SHA-256); ``compare`` answers the same paths with the
code on ``PYTHONPATH`` and lists every difference.

    PYTHONPATH=/work/main/src python benchmarks/same_api_answers.py record --db main.duckdb --out answers.json
    PYTHONPATH=$PWD/src python benchmarks/same_api_answers.py compare --db branch.duckdb --answers answers.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def answers(db: Path, paths: list[str] | None, n: int, seed: int) -> dict[str, list]:
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(HERE))
    from bench_api import plan

    from cytoatlas._api.app import create_app

    with TestClient(create_app(db)) as client:
        if paths is None:
            paths = sorted({p for _, p in plan(client, n, seed)})
        out = {}
        for path in paths:
            r = client.get(path)
            kind = r.headers.get("content-type", "")
            body = r.json() if kind.startswith("application/json") else hashlib.sha256(r.content).hexdigest()
            if isinstance(body, dict):
                body.pop("built", None)  # /health: when the store was built, which differs by construction
            out[path] = [r.status_code, body]
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

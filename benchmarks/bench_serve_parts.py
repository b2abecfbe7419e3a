"""Where a request's time goes on the serving side: answered in-process one at a time (FastAPI's TestClient, no
network), each request of ``bench_api.plan``'s mix is timed whole, then its answer's JSON encoding and its gzip
(level 1, as the server compresses) are timed alone; the rest is the route: the store's query, building the rows,
validation and routing. Prints each part's share of the time per endpoint kind, measured in one run.

    PYTHONPATH=$PWD/src python benchmarks/bench_serve_parts.py --db results/cytoatlas.duckdb [--requests 400]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--mix", default="core", choices=("all", "core"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    from fastapi.testclient import TestClient

    sys.path.insert(0, str(HERE))
    from bench_api import plan

    from cytoatlas._api.app import create_app

    parts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with TestClient(create_app(a.db)) as client:
        work = plan(client, a.requests, a.seed, a.mix)
        for _kind, path in work[: min(20, len(work))]:  # warm the store's caches
            client.get(path)
        for kind, path in work:
            t0 = time.perf_counter()
            r = client.get(path, headers={"Accept-Encoding": "identity"})
            total = time.perf_counter() - t0
            if r.status_code != 200:  # e.g. a level without cell-type activity (the demo's stimulation atlas)
                parts["(not 200: left out)"]["n"] += 1
                continue
            json_s = 0.0
            if r.headers["content-type"].startswith("application/json"):
                body = r.json()
                t0 = time.perf_counter()
                json.dumps(body, allow_nan=False, separators=(",", ":"))
                json_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            gzip.compress(r.content, compresslevel=1)
            gzip_s = time.perf_counter() - t0
            row = parts[kind]
            row["n"] += 1
            row["total"] += total
            row["json"] += json_s
            row["gzip"] += gzip_s
            row["bytes"] += len(r.content)
    print(f"{'kind':<20}{'n':>5}{'ms/request':>12}{'KB':>9}{'route %':>9}{'json %':>8}{'gzip %':>8}")
    for kind, row in sorted(parts.items()):
        n = row["n"]
        if "total" not in row:
            print(f"{kind:<20}{int(n):>5}")
            continue
        served = row["total"] + row["gzip"]  # as the server answers a client that accepts gzip
        route = row["total"] - row["json"]  # the whole answer minus its JSON encoding
        print(f"{kind:<20}{int(n):>5}{1000 * served / n:>12.1f}{row['bytes'] / n / 1024:>9.1f}"
              f"{100 * route / served:>9.0f}{100 * row['json'] / served:>8.0f}{100 * row['gzip'] / served:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

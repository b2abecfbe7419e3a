"""Load test of `cytoatlas serve`: concurrent clients against a real uvicorn on 127.0.0.1, a mix of endpoints.

    .venv/bin/python benchmarks/bench_api.py --demo                 # the demo's results (built if needed), 8 x 5,000
    .venv/bin/python benchmarks/bench_api.py --db results/cytoatlas.duckdb --clients 16 --requests 20000
    .venv/bin/python benchmarks/bench_api.py --url http://127.0.0.1:8000 --token-file T   # a server already running
    .venv/bin/python benchmarks/bench_api.py --cima      # the CIMA-shaped store of bench_cima.py, --mix core

``--cima [ROOT]`` is issue 25's case: the store ``bench_cima.py`` builds under ROOT (default /work/bench/cima; 1 M
cells, 36,326 genes, 421 samples, 73 L4 types), 8 clients over the activity / matrix / signature / expression
routes (``--mix core`` unless another mix is given); the target is p99 <= 150 ms with 0 errors.

Requests are drawn (seeded) from the store's own names: atlases, levels, cell types, activity pages filtered by
signature, heatmap matrices, one signature across atlases, expression by cell type and by sample, search,
validation tables, CSV and Parquet pages. Every request must answer 200; the run stops at --requests or at
--time-limit seconds, whichever comes first (then it fails: the count was not reached). Only 127.0.0.1 is
targeted. Prints (and with --json writes) the error count, throughput and latency percentiles per endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(db: Path, token_file: str | None, workers: int = 1):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "cytoatlas", "-q", "serve", "--db", str(db), "--port", str(port), "--no-access-log",
           "--workers", str(workers)]
    if token_file:
        cmd += ["--token-file", token_file]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/api/v1/health", timeout=1).status_code in (200, 401):
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("server did not start in 30 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _peak_rss_mb(url: str) -> float | None:
    """The peak resident memory of the server listening on ``url``'s port, its worker processes added (Linux;
    else None)."""
    port = str(urlsplit(url).port).encode()
    procs = {}  # pid -> (parent pid, cmdline, peak kB)
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
            procs[proc.name] = (status["PPid"].strip(), (proc / "cmdline").read_bytes().split(b"\0"),
                                int(status.get("VmHWM", "0 kB").split()[0]))
        except (OSError, KeyError, ValueError):
            continue
    servers = {pid for pid, (_, cmd, _) in procs.items() if b"serve" in cmd and port in cmd}
    total = sum(kb for pid, (parent, _, kb) in procs.items() if pid in servers or parent in servers)
    return round(total / 1024, 1) if total else None


def _demo_store(cells: int) -> Path:
    """The demo (CytoSig + SecAct, 4 levels) in benchmarks/out/api_demo, indexed; reused when current."""
    sys.path.insert(0, str(HERE.parent / "src"))
    import cytoatlas
    from cytoatlas.demo import run_demo

    out = HERE / "out" / f"api_demo_{cells}"
    run_demo(out, n_cells=cells)  # keeps what is current
    db = out / "cytoatlas.duckdb"
    cytoatlas.index(out / "demo", db)
    return db


# the endpoints of each mix: "all" the page's calls and more; "core" the activity / matrix / signature /
# expression routes only (the CIMA-shaped case of issue 25)
MIXES = {"all": None, "core": ("activity", "matrix", "signature", "expression", "expression_samples")}


def plan(client: httpx.Client, n: int, seed: int, mix: str = "all") -> list[tuple[str, str]]:
    """``n`` (endpoint kind, path) pairs drawn from the names the server reports."""
    rng = random.Random(seed)
    get = lambda path, **p: client.get(path, params=p).raise_for_status().json()  # noqa: E731
    atlases = list(get("/api/v1/atlases")["rows"])
    q = lambda s: quote(s, safe="")  # noqa: E731
    pools: dict[str, list[str]] = {k: [] for k in (
        "atlases", "levels", "cell_types", "activity", "activity_csv", "matrix", "signature", "expression",
        "expression_samples", "search", "validation", "parquet", "health")}
    pools["health"].append("/api/v1/health")
    pools["atlases"].append("/api/v1/atlases")
    has_validation = client.get("/api/v1/validation/summary").status_code == 200
    for a in atlases:
        atlas = a["atlas"]
        pools["levels"].append(f"/api/v1/atlases/{q(atlas)}/levels")
        for level in get(f"/api/v1/atlases/{q(atlas)}/levels")["rows"]:
            lev = level["level"]
            pools["cell_types"].append(f"/api/v1/atlases/{q(atlas)}/levels/{q(lev)}/cell-types")
            for sset in level["signature_sets"]:
                sigs = [s["signature"] for s in get(f"/api/v1/signature-sets/{q(sset)}/signatures",
                                                     limit=50_000)["rows"]]
                base = f"/api/v1/activity/{q(atlas)}/{q(lev)}/{q(sset)}"
                for sig in rng.sample(sigs, min(10, len(sigs))):
                    pools["activity"].append(f"{base}?signature={q(sig)}")
                    pools["activity"].append(f"{base}?by=sample&signature={q(sig)}&limit=500")
                    pools["activity_csv"].append(f"{base}?signature={q(sig)}&format=csv")
                    pools["signature"].append(f"/api/v1/signatures/{q(sset)}/{q(sig)}")
                pools["matrix"].append(f"{base}/matrix?top=60")
                pools["parquet"].append(f"{base}?by=sample&limit=2000&format=parquet")
                if has_validation:
                    pools["validation"].append(f"/api/v1/validation/rho?atlas={q(atlas)}&level={q(lev)}"
                                               f"&signature_set={q(sset)}")
            genes = [h["name"] for h in get("/api/v1/search", q="IL", limit=1000)["rows"] if h["kind"] == "gene"
                     and atlas in h["atlases"]] or ["A"]
            for gene in rng.sample(genes, min(10, len(genes))):
                if "celltype" in level["expression"]:
                    pools["expression"].append(f"/api/v1/expression/{q(atlas)}/{q(lev)}?gene={q(gene)}")
                if "samples" in level["expression"]:
                    pools["expression_samples"].append(
                        f"/api/v1/expression/{q(atlas)}/{q(lev)}?gene={q(gene)}&by=sample")
    for term in ("IL", "IFN", "TNF", "CD", "TGF", "CX", "ST"):
        pools["search"].append(f"/api/v1/search?q={term}")
    if has_validation:
        pools["validation"] += ["/api/v1/validation/summary", "/api/v1/cross-atlas", "/api/v1/cross-atlas/conservation"]
    # the mix: mostly the page's own calls (matrix, activity, signature, expression, search)
    weights = {"activity": 20, "matrix": 12, "signature": 12, "expression": 12, "expression_samples": 8,
               "search": 8, "cell_types": 6, "levels": 4, "atlases": 3, "validation": 5, "activity_csv": 4,
               "parquet": 3, "health": 3}
    kinds = [k for k in weights if pools[k] and (MIXES[mix] is None or k in MIXES[mix])]
    chosen = rng.choices(kinds, weights=[weights[k] for k in kinds], k=n)
    return [(k, rng.choice(pools[k])) for k in chosen]


def run(url: str, token: str | None, clients: int, requests: int, time_limit: float, seed: int,
        mix: str = "all") -> dict:
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load test targets this machine only (127.0.0.1)")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
        work = plan(c, requests, seed, mix)
    results: list[tuple[str, float, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_item = iter(range(len(work)))
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(next_item, None)
                if i is None:
                    return
                kind, path = work[i]
                t = time.perf_counter()
                try:
                    r = client.get(path)
                    body_ok = len(r.content) > 0
                    status = r.status_code
                except httpx.HTTPError as e:
                    status, body_ok = -1, False
                    with lock:
                        errors.append(f"{path}: {e!r}")
                elapsed = time.perf_counter() - t
                with lock:
                    results.append((kind, elapsed, status))
                    if status != 200 or not body_ok:
                        errors.append(f"{status} {path}")

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start

    def stats(lat: list[float]) -> dict:
        lat = sorted(lat)
        pick = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None  # noqa: E731
        return {"n": len(lat), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
                "max_ms": round(1000 * lat[-1], 2) if lat else None}

    by_kind = {}
    for kind in sorted({k for k, _, _ in results}):
        by_kind[kind] = stats([t for k, t, _ in results if k == kind])
    return {"url": url, "clients": clients, "requested": requests, "completed": len(results),
            "errors": len(errors), "first_errors": errors[:10], "seconds": round(wall, 2),
            "requests_per_s": round(len(results) / wall, 1) if wall else None,
            "overall": stats([t for _, t, _ in results]), "by_endpoint": by_kind}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--db", help="a store built by `cytoatlas index` (a server is started on it)")
    src.add_argument("--demo", action="store_true", help="build (or reuse) the demo's results and index them")
    src.add_argument("--url", help="a running server on 127.0.0.1")
    src.add_argument("--cima", nargs="?", const="/work/bench/cima", metavar="ROOT",
                     help="the CIMA-shaped store of bench_cima.py under ROOT (default /work/bench/cima)")
    p.add_argument("--demo-cells", type=int, default=50_000, help="demo atlas size (default 50000)")
    p.add_argument("--token-file", help="bearer token (for --url, or to start the server with one)")
    p.add_argument("--workers", type=int, default=1, help="server processes to start (default 1)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=5_000, help="requests in all (default 5000)")
    p.add_argument("--time-limit", type=float, default=300.0, help="stop after this many seconds (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mix", choices=tuple(MIXES), default=None,
                   help="all endpoints (default; core with --cima) or core: activity, matrix, signature and "
                        "expression only")
    p.add_argument("--json", help="also write the summary here")
    args = p.parse_args(argv)
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    if args.cima:
        args.db = str(Path(args.cima) / "store" / "cima.duckdb")  # where bench_cima.py's index step writes it
        if not Path(args.db).is_file():
            p.error(f"{args.db} does not exist: build it with benchmarks/bench_cima.py --root {args.cima}")
    args.mix = args.mix or ("core" if args.cima else "all")
    if args.url:
        summary = run(args.url, token, args.clients, args.requests, args.time_limit, args.seed, args.mix)
    else:
        db = _demo_store(args.demo_cells) if args.demo else Path(args.db)
        with _server(db, args.token_file, args.workers) as url:
            summary = run(url, token, args.clients, args.requests, args.time_limit, args.seed, args.mix)
            summary["server_peak_rss_mb"] = _peak_rss_mb(url)
        summary["db"], summary["workers"] = str(db), args.workers
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    ok = summary["errors"] == 0 and summary["completed"] == args.requests
    if not ok:
        print(f"FAILED: {summary['errors']} error(s), {summary['completed']}/{args.requests} requests",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Heavy requests from many clients (issue 22's overload case): answers, 503s and latency of `cytoatlas serve`.

Starts `cytoatlas serve` from the source tree ``--src`` (so two code versions can be compared on one store) on
127.0.0.1 with ``--serve-args``, then ``--clients`` threads send ``--requests`` heavy requests in all: whole
sample x cell type activity tables (up to 50,000 rows), one signature's sample rows across atlases, and 50 genes'
expression by sample, drawn (seeded) from the store's names. Prints the count of each status, the latency
percentiles of all answers and of the 200s, and whether every 503 carried ``Retry-After``. With ``--retry`` a
client does what a 503 asks (waits ``Retry-After`` seconds and sends the request again) and the latency is the
time until the answer, retries included.

    python benchmarks/bench_shed.py --db store.duckdb --src /work/main/src
    python benchmarks/bench_shed.py --db store.duckdb --src src --serve-args="--max-active 4"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def heavy_paths(client: httpx.Client, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    get = lambda path, **p: client.get(path, params=p).raise_for_status().json()  # noqa: E731
    q = lambda s: quote(s, safe="")  # noqa: E731
    pool: list[str] = []
    for a in get("/api/v1/atlases")["rows"]:
        for level in get(f"/api/v1/atlases/{q(a['atlas'])}/levels")["rows"]:
            for sset in level["signature_sets"]:
                base = f"/api/v1/activity/{q(a['atlas'])}/{q(level['level'])}/{q(sset)}"
                pool.append(f"{base}?by=sample&limit=50000")
                sigs = [s["signature"] for s in get(f"/api/v1/signature-sets/{q(sset)}/signatures",
                                                     limit=50_000)["rows"]]
                pool += [f"/api/v1/signatures/{q(sset)}/{q(s)}?by=sample&limit=50000" for s in rng.sample(sigs, 3)]
            if "samples" in level["expression"]:
                genes = [h["name"] for h in get("/api/v1/search", q="A", limit=1000)["rows"]
                         if h["kind"] == "gene" and a["atlas"] in h["atlases"]]
                picked = "&".join(f"gene={q(g)}" for g in rng.sample(genes, min(50, len(genes))))
                pool.append(f"/api/v1/expression/{q(a['atlas'])}/{q(level['level'])}?{picked}&by=sample&limit=50000")
    return [rng.choice(pool) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--src", type=Path, required=True, help="the source tree to serve with (PYTHONPATH)")
    p.add_argument("--serve-args", default="", help="more arguments of `cytoatlas serve`")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retry", action="store_true", help="on a 503, wait Retry-After and send the request again")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(a.src.resolve())}
    proc = subprocess.Popen([sys.executable, "-m", "cytoatlas", "-q", "serve", "--db", str(a.db), "--port", str(port),
                             "--no-access-log", *shlex.split(a.serve_args)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=120) as c:
            work = heavy_paths(c, a.requests, a.seed)
        answers: list[tuple[int, bool, float]] = []
        retries: list[str] = []
        lock = threading.Lock()
        items = iter(work)

        def client() -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                while True:
                    with lock:
                        path = next(items, None)
                    if path is None:
                        return
                    t = time.perf_counter()
                    r = c.get(path)
                    while a.retry and r.status_code == 503 and "retry-after" in r.headers:
                        with lock:
                            retries.append(path)
                        time.sleep(float(r.headers["retry-after"]))
                        r = c.get(path)
                    with lock:
                        answers.append((r.status_code, "retry-after" in r.headers, time.perf_counter() - t))

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - start
        cpu = _cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)

    def pct(values: list[float]) -> dict:
        v = sorted(values)
        pick = lambda q: round(1000 * v[min(len(v) - 1, int(q * len(v)))], 1) if v else None  # noqa: E731
        return {"n": len(v), "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
                "max_ms": round(1000 * v[-1], 1) if v else None}

    summary = {"src": str(a.src), "serve_args": a.serve_args, "clients": a.clients, "requests": len(work),
               "retry": a.retry, "retries": len(retries),
               "seconds": round(wall, 1), "statuses": dict(Counter(s for s, _, _ in answers)),
               "every_503_has_retry_after": all(h for s, h, _ in answers if s == 503),
               "all": pct([t for _, _, t in answers]), "ok": pct([t for s, _, t in answers if s == 200]),
               "served_per_s": round(sum(s == 200 for s, _, _ in answers) / wall, 2),
               # the server's CPU (startup included): on a shared machine, what a request costs, apart from the
               # share of the cores the process was given
               "server_cpu_s": None if cpu is None else round(cpu, 1),
               "server_cpu_per_answer_s": None if cpu is None else round(cpu / max(1, len(answers)), 3)}
    text = json.dumps(summary, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The CIMA-shaped case end to end: generate, `cytoatlas run`, `cytoatlas index`, then the API load test.

A synthetic atlas of CIMA's shape (1 M cells, 36,326 genes, 421 samples, 73 finest cell types; ``synth_atlas.py
--symbols`` so that CytoSig and SecAct run on it) is written under ``--root`` (default ``/work/bench/cima``, not a
repository: the results tree is ~22 GB). Each step runs as its own process; its wall time and peak RSS (the
child's ``ru_maxrss``) are printed, with the bytes the store adds beside the pseudobulk bytes. ``--ab-part FILE``
also writes the expression part of one pseudobulk file both ways in this run, the previous way (a DuckDB table,
1 GB memory limit, spilling, then ``COPY ... TO parquet``) and the streaming writer, and prints the ratio.

    python benchmarks/bench_cima.py                       # every step (steps whose output is there are reused)
    python benchmarks/bench_cima.py --steps index,serve   # on an existing results tree
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPE = ["--n-cells", "1000000", "--n-genes", "36326", "--n-donors", "421", "--symbols", "--atlas-name", "cima"]


def _timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` (its output to ``log``); wall seconds, CPU seconds (user + system) and the peak RSS of the
    process tree's largest child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak = after.ru_maxrss / 1024 ** 2  # kB -> GB (max over children)
    if rc:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}); see {log}")
    return {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_rss_gb_max_so_far": round(peak, 2)}


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def ab_part(h5ad: Path, scratch: Path) -> dict:
    """One pseudobulk file's expression part written the previous way and the new way, in this process."""
    import duckdb
    import pandas as pd

    from cytoatlas._api.ingest import bands, read_file, write_part

    scratch.mkdir(parents=True, exist_ok=True)
    content = read_file(h5ad, "pseudobulk")
    t0 = time.perf_counter()
    write_part(scratch / "new", "pseudobulk", content, h5ad)  # a directory of band files
    new = time.perf_counter() - t0
    con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": str(scratch / "spill"), "threads": 2})
    t0 = time.perf_counter()
    con.execute('CREATE TABLE part ("row" INTEGER, gene INTEGER, value FLOAT, zscore FLOAT)')
    for block in bands(h5ad, content, "pseudobulk"):
        frame = pd.DataFrame({"row": block["row"], "gene": block["col"], "value": block["value"],
                              "zscore": block["zscore"]})
        con.register("block", frame)
        con.execute("INSERT INTO part SELECT * FROM block")
        con.unregister("block")
    con.execute(f"COPY part TO '{scratch / 'old.parquet'}' (FORMAT parquet, COMPRESSION zstd, "
                "ROW_GROUP_SIZE 122880)")
    old = time.perf_counter() - t0
    same = con.execute(f"""SELECT count(*) FROM (SELECT * FROM '{scratch / 'old.parquet'}' EXCEPT ALL
                           SELECT * FROM '{scratch / 'new' / '*.parquet'}')""").fetchall()[0][0] == 0
    out = {"file": h5ad.name, "values": content.shape[0] * content.shape[1], "old_s": round(old, 1),
           "new_s": round(new, 1), "speedup": round(old / new, 2),
           "old_bytes": (scratch / "old.parquet").stat().st_size, "new_bytes": _bytes(scratch / "new"),
           "same_rows": same}
    (scratch / "old.parquet").unlink()
    shutil.rmtree(scratch / "new")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("/work/bench/cima"))
    p.add_argument("--steps", default="generate,run,index,serve", help="comma-separated among generate, run, "
                   "index, serve")
    p.add_argument("--ab-part", type=Path, help="a pseudobulk file whose part is written both ways (ratio)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    root, py = a.root, sys.executable
    root.mkdir(parents=True, exist_ok=True)
    h5ad, results, db = root / "cima.h5ad", root / "results", root / "store" / "cima.duckdb"
    steps = a.steps.split(",")
    report: dict = {"cpus": os.cpu_count(), "load_before": _load()}
    if "generate" in steps and not h5ad.exists():
        report["generate"] = _timed([py, str(HERE / "synth_atlas.py"), str(h5ad), *SHAPE], root / "generate.log")
    registry = root / "cima.toml"
    if not registry.exists():  # the run step's registry: the generated file's levels
        registry.write_text(f'[atlas.cima]\nh5ad = "{h5ad}"\nsample_col = "sample"\n\n[atlas.cima.levels]\n'
                            + "".join(f'L{i} = "cell_type_l{i}"\n' for i in range(1, 5)))
    if "run" in steps:
        report["run"] = _timed([py, "-m", "cytoatlas", "run", "--registry", str(registry), "--atlas",
                                "cima", "--out", str(results)], root / "run.log")
    if "index" in steps:
        report["load_before_index"] = _load()
        report["index"] = _timed([py, "-m", "cytoatlas", "index", "--out", str(results), "--db", str(db), "--force"],
                                 root / "index.log")
        pseudobulk = _bytes(results / "pseudobulk")
        store = _bytes(db.parent)
        report["index"].update(pseudobulk_gb=round(pseudobulk / 1e9, 2), store_gb=round(store / 1e9, 2),
                               store_over_pseudobulk=round(store / pseudobulk, 3), load_after=_load())
    if a.ab_part:
        report["ab_part"] = ab_part(a.ab_part, root / "ab")
    if "serve" in steps:
        out = root / "api.json"
        report["load_before_serve"] = _load()
        subprocess.run([py, str(HERE / "bench_api.py"), "--db", str(db), "--mix", "core", "--clients",
                        str(a.clients), "--requests", str(a.requests), "--workers", str(a.workers), "--json",
                        str(out)], check=False, stdout=subprocess.DEVNULL)
        api = json.loads(out.read_text())
        report["serve"] = {"errors": api["errors"], "completed": api["completed"],
                           "requests_per_s": api["requests_per_s"], **api["overall"]}
        report["load_after"] = _load()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

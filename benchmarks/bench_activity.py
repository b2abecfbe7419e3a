"""cytoatlas activity vs secactpy 0.3.1, side by side on the same pseudobulk files.

For each case (signature set x number of pseudobulk columns) a synthetic pseudobulk file is written once
(genes: every CytoSig and SecAct gene plus 6,000 others, log1p CPM-like values with cell-type structure), then
each program runs in its own fresh subprocess, timed around the process, peak RSS from ``os.wait4``:

- ``secactpy``: the file read with anndata into a genes x columns DataFrame, then
  ``secact_activity_inference(expr, sig_matrix=SET, n_rand=1000, seed=0)`` (its defaults: SecAct grouped,
  C ``srand`` permutations). Signature loading and grouping are inside, as every secactpy call does them.
- ``cytoatlas exact``: ``cytoatlas.activity([file], out, signatures=[SET])``: read, closed-form z, output
  ``.h5ad`` written. Its parsed-signature cache is warm (filled once before the runs, as after any first use), and
  so is its fitted-model cache (an untimed exact run on the case's file first, as for every file of an atlas
  after its first: they share their genes, hence the fit).
- ``cytoatlas permutation``: the same with ``method="permutation", n_rand=1000, seed=0`` (secactpy's numbers).

The ``command`` case is the issue-14 target: the ``cytoatlas activity`` command (``cytoatlas.cli.main``) on a
real ``cytoatlas pseudobulk`` output, the L4 sample x cell type file of a 100 k-cell synthetic atlas whose genes
include every CytoSig and SecAct symbol (``synth_atlas.py --symbols``; 1,981 rows x 20,000 genes, stored as the
pipeline stores it: unfiltered 248 x 1,000 chunks, X plus two layers), from a cold page cache (the file is
evicted before each run, as ``cytoatlas pseudobulk`` leaves its outputs), against secactpy on the same file.
Both are timed in-process after their imports (net of interpreter and import start-up).

Results are checked against secactpy in the same run: beta max |diff|; permutation z, se and p max |diff|;
exact-vs-permutation z Pearson r. Prints the table (in-process seconds, the figure the targets are about, and
their ratios; wall seconds add interpreter start-up and imports), writes ``benchmarks/out/activity.json``.

Usage::

    python benchmarks/bench_activity.py                        # every case (~35 min on 2 cores)
    python benchmarks/bench_activity.py --cases cytosig:100,secact:100
    python benchmarks/bench_activity.py --skip-permutation
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA, OUT = HERE / "data" / "activity", HERE / "out" / "activity"
CASES = ("command:cytosig", "cytosig:100", "cytosig:2000", "cytosig:5000", "secact:100", "secact:2000")
COMMAND_ATLAS = {"n_cells": 100_000, "level": "L4", "min_cells": 3}
N_RAND = 1000


def write_input(path: Path, n_cols: int, seed: int = 0) -> Path:
    """A pseudobulk-like file: ``n_cols`` columns in 20 cell types, log1p CPM values, uns kind = celltype."""
    import anndata as ad
    import pandas as pd

    from cytoatlas._activity.signatures import load_signatures

    genes = sorted(set(load_signatures("cytosig").genes) | set(load_signatures("secact").genes))
    genes += [f"GENE{i:05d}" for i in range(6000)]
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 20, n_cols)
    base = rng.normal(1.0, 1.0, len(genes))
    type_eff = rng.normal(0, 0.5, (20, len(genes)))
    x = np.log1p(np.exp(base + type_eff[types] + rng.normal(0, 0.3, (n_cols, len(genes))))).astype(np.float32)
    obs = pd.DataFrame({"cell_type": [f"type{t}" for t in types]}, index=[f"col{i}" for i in range(n_cols)])
    var = pd.DataFrame({"gene_symbol": genes}, index=genes)
    adata = ad.AnnData(X=x, obs=obs, var=var, uns={"kind": "celltype", "atlas": "bench", "level": "L"})
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return path


def command_input() -> Path:
    """The sample x cell type pseudobulk file of the command case (atlas and pseudobulk made when missing)."""
    sys.path.insert(0, str(HERE))
    import synth_atlas

    import cytoatlas

    n = COMMAND_ATLAS["n_cells"]
    h5ad = HERE / "data" / f"synth_{n // 1000}k_symbols.h5ad"
    if synth_atlas.stored_params(h5ad) != synth_atlas.generation_params(n, 20_000, 1_200, 0, 0, True):
        synth_atlas.generate(h5ad, n_cells=n, symbols=True, verbose=False)
    out = DATA / f"command_{n // 1000}k"
    level = COMMAND_ATLAS["level"]
    cytoatlas.pseudobulk("synth", out, registry=synth_atlas.registry_path(h5ad), levels=[level], n_bootstrap=0,
                         min_cells=COMMAND_ATLAS["min_cells"], skip_existing=True)
    return cytoatlas.output_paths(out, "synth", level)["samples"]


def evict(path: Path) -> None:
    """Drop a file from the page cache (its next read comes from the disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def worker(args: argparse.Namespace) -> None:
    """One measured program; prints its results as JSON on the last line."""
    import warnings

    warnings.simplefilter("ignore")
    import anndata as ad
    import anndata.io  # noqa: F401  (what the command's writer imports on first use: an import, not work)
    import pandas as pd
    import secactpy

    import cytoatlas.cli
    from cytoatlas._activity import activity

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cold:
        evict(Path(args.file))
    # timed: everything from the input file to the results, imports excluded (interpreter start-up and imports
    # are in wall_s)
    t0 = time.perf_counter()
    if args.worker == "command":
        code = cytoatlas.cli.main(["-q", "activity", args.file, "--out", str(out), "--signatures", args.sig])
        elapsed = time.perf_counter() - t0
        peak = _peak_rss_mb()
        if code:
            raise SystemExit(code)
        from cytoatlas.io.layout import activity_path

        a = ad.read_h5ad(activity_path(out, args.file, args.sig))
        np.savez(out / "exact.npz", beta=a.layers["beta"].T, se=a.layers["se"].T, zscore=a.X.T,
                 pvalue=a.layers["pvalue"].T, rows=a.var_names.to_numpy(str))
    elif args.worker == "secactpy":
        pb = ad.read_h5ad(args.file)
        expr = pd.DataFrame(pb.X.T.astype(np.float64), index=pb.var["gene_symbol"].to_numpy(), columns=pb.obs_names)
        res = secactpy.secact_activity_inference(expr, sig_matrix=args.sig, n_rand=N_RAND, seed=0, verbose=False)
        elapsed = time.perf_counter() - t0
        peak = _peak_rss_mb()
        np.savez(out / "secactpy.npz", **{k: res[k].to_numpy() for k in ("beta", "se", "zscore", "pvalue")},
                 rows=res["beta"].index.to_numpy(str))
    else:
        (path,) = activity([args.file], out, signatures=[args.sig], method=args.worker, n_rand=N_RAND,
                             permutation_seed=0)
        elapsed = time.perf_counter() - t0
        peak = _peak_rss_mb()
        a = ad.read_h5ad(path)
        np.savez(out / f"{args.worker}.npz", beta=a.layers["beta"].T, se=a.layers["se"].T, zscore=a.X.T,
                 pvalue=a.layers["pvalue"].T, rows=a.var_names.to_numpy(str))
    print(json.dumps({"in_proc_s": elapsed, "peak_rss_mb": peak}))


def _peak_rss_mb() -> float:
    """This process' own peak RSS (VmHWM). Not ru_maxrss: Linux carries that over fork + exec, so a child of
    a driver holding a large input would report the driver's memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            **json.loads(stdout.strip().splitlines()[-1])}


def compare(out: Path) -> dict:
    ref = np.load(out / "secactpy.npz")
    res = {}
    for name in ("exact", "permutation"):
        if not (out / f"{name}.npz").exists():
            continue
        ours = np.load(out / f"{name}.npz")
        assert list(ours["rows"]) == list(ref["rows"]), "signature order differs"
        res[f"{name}_beta_max_diff"] = float(np.abs(ours["beta"] - ref["beta"]).max())
        if name == "exact":
            res["exact_z_pearson"] = float(np.corrcoef(ours["zscore"].ravel(), ref["zscore"].ravel())[0, 1])
        else:
            for k in ("zscore", "se", "pvalue"):
                res[f"permutation_{k}_max_diff"] = float(np.abs(ours[k] - ref[k]).max())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated SET:N_COLUMNS")
    ap.add_argument("--skip-permutation", action="store_true")
    ap.add_argument("--worker", choices=("secactpy", "exact", "permutation", "command"), help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--sig", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from importlib.metadata import version

    from cytoatlas._activity.signatures import load_signatures

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, numpy {np.__version__}, secactpy {version('secactpy')}")
    t0 = time.perf_counter()
    for s in ("cytosig", "secact"):
        load_signatures(s)  # warm the parsed-signature cache (a no-op when already warm)
    print(f"signature cache warm-up: {time.perf_counter() - t0:.1f} s")
    rows = []
    for case in args.cases.split(","):
        kind, sig_or_n = case.split(":")
        command = kind == "command"
        if command:
            sig, f = sig_or_n, command_input()
        else:
            sig, f = kind, DATA / f"pb_{sig_or_n}.h5ad"
            if not f.exists():
                write_input(f, int(sig_or_n))
        out = OUT / case.replace(":", "_")
        # untimed: fills the fitted-model cache for this file's genes
        run([sys.executable, __file__, "--worker", "exact", "--file", str(f), "--sig", sig,
             "--out", str(out / "warm-up")])
        row = {"case": case}
        names = ("secactpy", "command") if command else \
            ("secactpy", "exact") + (() if args.skip_permutation else ("permutation",))
        for name in names:
            r = run([sys.executable, __file__, "--worker", name, "--file", str(f), "--sig", sig, "--out", str(out)]
                    + (["--cold"] if command else []))
            row["exact" if name == "command" else name] = r
            print(f"  {case:<14} {name:<12} {r['wall_s']:8.2f} s  {r['peak_rss_mb']:7.0f} MB", flush=True)
        row["checks"] = compare(out)
        rows.append(row)

    print(f"\n| case | secactpy n_rand={N_RAND} s | exact s | speed-up | permutation s | speed-up | "
          "wall s secactpy / exact / perm. | peak MB secactpy / exact / perm. | checks |")
    print("|---|---|---|---|---|---|---|---|---|")
    nan = {"in_proc_s": float("nan"), "wall_s": float("nan"), "peak_rss_mb": float("nan")}
    for row in rows:
        s, e, p = row["secactpy"], row["exact"], row.get("permutation", nan)
        checks = ", ".join(f"{k} {v:.2g}" for k, v in row["checks"].items())
        ref = s["in_proc_s"]
        print(f"| {row['case']} | {ref:.2f} | {e['in_proc_s']:.3f} | {ref / e['in_proc_s']:.0f}x | "
              f"{p['in_proc_s']:.2f} | {ref / p['in_proc_s']:.1f}x | "
              f"{s['wall_s']:.1f} / {e['wall_s']:.1f} / {p['wall_s']:.1f} | "
              f"{s['peak_rss_mb']:.0f} / {e['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} | {checks} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "activity.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

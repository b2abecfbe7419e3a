"""The notebook path against the file path, measured in one run: ``cytoatlas.pp.pseudobulk`` of an AnnData in
memory vs ``cytoatlas.pseudobulk`` of its file (same pass; outputs assembled in memory instead of written), and
``cytoatlas.tl.activity`` of the result vs ``cytoatlas.activity`` of the files.

    .venv/bin/python benchmarks/bench_notebook.py [--h5ad FILE --sample-col C --groupby C --gene-symbols C]
                                                   [--repeat 3]

Prints the fastest of ``--repeat`` runs of each and their ratios (file / memory), with the machine's load
average before the runs (timings on a busy machine are not comparable across runs, ratios less so).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kang_ctrl_8donors_muscat.h5ad"


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h5ad", default=str(SHARED))
    p.add_argument("--sample-col", default="donor")
    p.add_argument("--groupby", default="cell_type")
    p.add_argument("--gene-symbols", default="symbol")
    p.add_argument("--n-bootstrap", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import anndata as ad

    import cytoatlas
    from cytoatlas import pp, tl
    from cytoatlas.registry import atlas_from_mapping

    entry = {"h5ad": args.h5ad, "sample_col": args.sample_col, "levels": {"ct": args.groupby}}
    if args.gene_symbols:
        entry["gene_symbols"] = args.gene_symbols
    cfg = atlas_from_mapping("bench", entry)
    load = os.getloadavg()
    adata = ad.read_h5ad(args.h5ad)
    with tempfile.TemporaryDirectory() as tmp:
        pp.pseudobulk(adata, atlas=cfg, n_bootstrap=args.n_bootstrap)  # compiled kernels loaded before timing
        t_file = _best(lambda: cytoatlas.pseudobulk(cfg, Path(tmp) / "pb", n_bootstrap=args.n_bootstrap), args.repeat)
        t_mem = _best(lambda: pp.pseudobulk(adata, atlas=cfg, n_bootstrap=args.n_bootstrap), args.repeat)
        res = pp.pseudobulk(adata, atlas=cfg, n_bootstrap=args.n_bootstrap)["ct"]
        files = sorted((Path(tmp) / "pb").glob("*_samples.h5ad"))
        a_file = _best(lambda: cytoatlas.activity(files, Path(tmp) / "act", signatures=["cytosig"]), args.repeat)
        a_mem = _best(lambda: tl.activity(res.samples, "cytosig"), args.repeat)
    print(f"{args.h5ad}: {adata.n_obs:,} cells x {adata.n_vars:,} genes; load average before: "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} cores); best of {args.repeat}")
    print(f"pseudobulk  file {t_file:7.2f} s   memory {t_mem:7.2f} s   file / memory {t_file / t_mem:5.2f}")
    print(f"activity    file {a_file:7.2f} s   memory {a_mem:7.2f} s   file / memory {a_file / a_mem:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

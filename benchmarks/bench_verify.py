"""What verifying a step's inputs against their manifests costs, next to the step itself.

`cytoatlas validate` and `cytoatlas compare` check every input file against the record of the manifest that
recorded it before using it (size; the XXH3 checksum of files up to 256 MiB, and of larger ones whose mtime moved).
This script times, in one run on one results directory: the verification of every input (cold for the checksum:
files hashed in full), `validate` (tables only) and `compare` (one contrast, tables only) with `force`, and prints
the ratios.

    .venv/bin/python benchmarks/bench_verify.py                      # a demo atlas of 20,000 cells
    .venv/bin/python benchmarks/bench_verify.py --n-cells 100000
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import cytoatlas
from cytoatlas.demo import demo_config
from cytoatlas.demo_atlas import write_demo_atlas
from cytoatlas.io.layout import find_activity, find_pseudobulk
from cytoatlas.io.manifest import read_manifest, verified_fingerprint


def _verify_all(root: Path, atlas: str) -> tuple[float, int, int]:
    files = [*find_pseudobulk(root / "pseudobulk", atlas), *find_activity(root / "activity", atlas)]
    t0 = time.perf_counter()
    for p in files:
        entry = read_manifest(p.parent)[p.name]
        assert verified_fingerprint(p, rerun="-")["checksum"] == entry["checksum"]
    return time.perf_counter() - t0, len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = demo_config(write_demo_atlas(tmp / "demo.h5ad", n_cells=args.n_cells, n_donors=20), "demo",
                          donor_only=True)
        root = tmp / "demo"
        pb = cytoatlas.pseudobulk(cfg, root / "pseudobulk", levels=["L2", "L3", "donor_only"], n_bootstrap=20)
        cytoatlas.activity(pb, root / "activity", centre="within:cell_type")
        verify, step_v, step_c = [], [], []
        for _ in range(args.repeat):
            seconds, n_files, size = _verify_all(root, "demo")
            verify.append(seconds)
            t0 = time.perf_counter()
            cytoatlas.validate(cfg, tmp / "val", results={"demo": root}, figures=False, force=True)
            step_v.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cytoatlas.compare(cfg, tmp / "cmp", results={"demo": root}, by="treatment", reference="untreated",
                              figures=False, force=True)
            step_c.append(time.perf_counter() - t0)
    v, sv, sc = min(verify), min(step_v), min(step_c)
    print(f"{n_files} input files, {size / 1e6:.1f} MB; best of {args.repeat}")
    print(f"verify every input (size + XXH3): {v:.3f} s")
    print(f"validate --force (tables):        {sv:.3f} s   verification / validate = {v / sv:.3f}")
    print(f"compare --force (one contrast):   {sc:.3f} s   verification / compare  = {v / sc:.3f}")


if __name__ == "__main__":
    main()

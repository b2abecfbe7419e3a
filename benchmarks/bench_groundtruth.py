"""What the perturbation ground truth adds to `cytoatlas demo`: the demo's stimulation atlas (each donor a PBS and
an IFN-gamma sample) written, run through pseudobulk and activity, then `cytoatlas groundtruth` with and without
figures; each step's time and the ground truth's as a ratio of the pseudobulk + activity it reads, in one run.

    .venv/bin/python benchmarks/bench_groundtruth.py [--n-cells 50000] [--out benchmarks/out/groundtruth]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def main() -> None:
    from cytoatlas import defaults

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-cells", type=int, default=defaults.DEMO_N_CELLS, help="the demo's --n-cells")
    parser.add_argument("--out", default="benchmarks/out/groundtruth")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    from cytoatlas._activity import activity
    from cytoatlas._groundtruth import groundtruth
    from cytoatlas._pseudobulk import pseudobulk
    from cytoatlas.demo import DEMO_STIMULATION, stimulation_config, write_stimulation_atlas
    from cytoatlas.demo_atlas import STIMULATION_CONTROL
    from cytoatlas.io import layout

    load = os.getloadavg()[0]
    t = [time.perf_counter()]
    cfg = stimulation_config(write_stimulation_atlas(out, args.n_cells))
    t.append(time.perf_counter())
    pb = pseudobulk(cfg, layout.pseudobulk_dir(out / cfg.name), n_bootstrap=0)
    activity([p for p in pb if "_samples" in p.name], layout.activity_dir(out / cfg.name), centre="within:cell_type")
    t.append(time.perf_counter())
    common = {"column": DEMO_STIMULATION["column"], "control": STIMULATION_CONTROL,
              "results": {cfg.name: out / cfg.name}}
    groundtruth(cfg, out / "gt_tables", figures=False, **common)
    t.append(time.perf_counter())
    groundtruth(cfg, out / "gt", **common)
    t.append(time.perf_counter())
    groundtruth(cfg, out / "gt", **common)  # current: skipped
    t.append(time.perf_counter())
    atlas, upstream, tables, full, rerun = (b - a for a, b in zip(t, t[1:], strict=False))
    print(f"load average before: {load:.1f} (timings on a busy machine are only indicative)")
    print(f"stimulation atlas written:        {atlas:6.1f} s")
    print(f"pseudobulk + activity:            {upstream:6.1f} s")
    print(f"groundtruth, tables only:         {tables:6.1f} s  ({tables / upstream:.2f} x pseudobulk + activity)")
    print(f"groundtruth, tables and figures:  {full:6.1f} s  ({full / upstream:.2f} x)")
    print(f"groundtruth rerun (current):      {rerun:6.2f} s  ({rerun / full:.3f} x the first run)")


if __name__ == "__main__":
    main()

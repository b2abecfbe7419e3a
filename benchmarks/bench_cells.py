"""`cytoatlas cells` vs secactpy 0.3.1's streaming per-cell inference, side by side in one run.

The atlas is ``benchmarks/synth_atlas.py``'s (CSR gzip, 20,000 genes, ~1,200 detected genes a cell, four
levels), its gene names replaced by every CytoSig and SecAct gene that secactpy's name rule leaves alone
(upper case, no '.'), then filler names: the signature genes are the generator's most expressed ones.

Measured, each program in its own fresh subprocess (wall time around the process, peak RSS from
``os.wait4``):

- ``floor``: ``benchmarks/io_floor.py``'s single-thread h5py read of every CSR row block of X;
- ``cytoatlas cells --signatures SET`` on all cells (both passes, files, summaries, manifest);
- ``secactpy``: ``secact_activity_inference_scrnaseq(path, streaming=True, is_single_cell_level=True,
  sig_matrix=SET, n_rand=1000)`` on the first ``--secactpy-cells`` cells of the atlas (written as their own
  file); its time is scaled linearly to all cells (its per-cell work is linear: a permutation test per cell
  block; the fixed costs, signature grouping among them, are counted in full in the scaled figure, which
  favours secactpy);
- ``cytoatlas cells`` on the same subset, so that one comparison is of the same cells too.

Usage::

    python benchmarks/bench_cells.py --n-cells 100000 --secactpy-cells 5000
    python benchmarks/bench_cells.py --memory 100000,300000   # peak memory of cytoatlas cells (CytoSig)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = Path(os.environ.get("CYTOATLAS_BENCH_DATA", HERE / "data" / "cells"))


def make_atlas(n_cells: int) -> tuple[Path, Path]:
    """The synthetic atlas with signature gene names, and its registry (made once per size)."""
    import synth_atlas

    from cytoatlas._activity.signatures import load_signatures

    path = DATA / f"cells_{n_cells // 1000}k.h5ad"
    if not path.exists():
        synth_atlas.generate(path, n_cells=n_cells, atlas_name="cellsynth", verbose=False)
        genes = sorted({g for s in ("cytosig", "secact") for g in load_signatures(s).genes
                        if g == g.upper() and "." not in g})
        with h5py.File(path, "r+") as f:
            index = f["var"].attrs["_index"]
            n = f["var"][index].shape[0]
            names = genes[:n] + [f"FILLER{i:05d}" for i in range(n - min(n, len(genes)))]
            del f["var"][index]
            f["var"].create_dataset(index, data=np.array(names, dtype=object), dtype=h5py.string_dtype())
            f["var"][index].attrs["encoding-type"], f["var"][index].attrs["encoding-version"] = "string-array", "0.2.0"
    return path, synth_atlas.write_registry(path, "cellsynth")


def subset(path: Path, n: int) -> Path:
    """The first ``n`` cells as their own file (anndata, gzip), for secactpy."""
    import anndata as ad

    out = path.with_name(f"{path.stem}_first{n}.h5ad")
    if not out.exists():
        a = ad.read_h5ad(path, backed="r")
        a[:n].to_memory().write_h5ad(out, compression="gzip")
    return out


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(code: str, *args: str) -> dict:
    """Run ``python -c code args`` in a fresh process: wall seconds, peak RSS (GB), its CPU seconds and the CPU
    seconds the rest of the machine used meanwhile (other agents: the figures are only comparable when small)."""
    busy = _busy_seconds()
    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    out, err = p.stdout.read(), p.stderr.read()
    if status:
        raise SystemExit(f"failed ({status}): {code[:80]} {args}\n{err[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": wall, "peak_gb": usage.ru_maxrss / 1024**2, "cpu": cpu,
            "other_cpu": max(0.0, _busy_seconds() - busy - cpu), "stdout": out.strip()}


FLOOR = "import sys, io_floor; r = io_floor.read_blocks(sys.argv[1]); print(r['seconds'])"
CELLS = ("import sys, logging; logging.basicConfig(level=logging.WARNING); import cytoatlas; "
         "from cytoatlas.registry import atlas_from_mapping; "
         "cfg = atlas_from_mapping('cellsynth', {'h5ad': sys.argv[1], 'sample_col': 'sample', "
         "'levels': {f'L{k}': f'cell_type_l{k}' for k in range(1, 5)}}); "
         "cytoatlas.cells(cfg, sys.argv[2], signatures=[sys.argv[3]], "
         "threads=int(sys.argv[4]) if len(sys.argv) > 4 else None)")
SECACTPY = ("import sys, secactpy; r = secactpy.secact_activity_inference_scrnaseq(sys.argv[1], "
            "cell_type_col='cell_type_l1', sig_matrix=sys.argv[2], is_single_cell_level=True, streaming=True, "
            "n_rand=1000); print(r['zscore'].shape)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-cells", type=int, default=100_000)
    ap.add_argument("--secactpy-cells", type=int, default=5_000)
    ap.add_argument("--sets", default="cytosig,secact")
    ap.add_argument("--threads", type=int, help="cytoatlas --threads (default: all usable cores)")
    ap.add_argument("--reference-sets", help="sets secactpy runs on (default: every set of --sets)")
    ap.add_argument("--memory", help="comma-separated atlas sizes: peak memory of cytoatlas cells (CytoSig) only")
    a = ap.parse_args(argv)
    env_out = DATA / "out"
    results: dict = {}
    if a.memory:
        for n in map(int, a.memory.split(",")):
            path, _ = make_atlas(n)
            r = timed(CELLS, str(path), str(env_out / f"mem{n}"), "cytosig")
            results[f"memory_{n}"] = r
            print(f"cytoatlas cells cytosig, {n:,} cells: {r['seconds']:.1f} s, peak {r['peak_gb']:.2f} GB "
                  f"(other processes' CPU meanwhile {r['other_cpu']:.1f} s)")
        (HERE / "out").mkdir(exist_ok=True)
        (HERE / "out" / "cells_memory.json").write_text(json.dumps(results, indent=1))
        return 0
    path, _ = make_atlas(a.n_cells)
    small = subset(path, a.secactpy_cells)
    floor = timed(FLOOR, str(path))
    results["floor"] = {**floor, "in_process": float(floor["stdout"])}
    print(f"h5py read floor (1 thread), {a.n_cells:,} cells: {float(floor['stdout']):.2f} s in process, "
          f"{floor['seconds']:.2f} s wall (other processes' CPU meanwhile: {floor['other_cpu']:.1f} s)")
    scale = a.n_cells / a.secactpy_cells
    for s in a.sets.split(","):
        threads = [str(a.threads)] if a.threads else []
        mine = timed(CELLS, str(path), str(env_out / f"all_{s}"), s, *threads)
        mine_small = timed(CELLS, str(small), str(env_out / f"small_{s}"), s, *threads)
        results[s] = {"cytoatlas": mine, "cytoatlas_subset": mine_small}
        print(f"{s}: cytoatlas cells {a.n_cells:,} cells {mine['seconds']:.1f} s (peak {mine['peak_gb']:.2f} GB) "
              f"= {mine['seconds'] / float(floor['stdout']):.2f}x the read floor; its CPU {mine['cpu']:.1f} s, "
              f"other processes' {mine['other_cpu']:.1f} s")
        if a.reference_sets is not None and s not in a.reference_sets.split(","):
            print(f"{s}: cytoatlas on the {a.secactpy_cells:,}-cell subset {mine_small['seconds']:.1f} s "
                  "(secactpy not run)")
            continue
        ref = results[s]["secactpy_subset"] = timed(SECACTPY, str(small), s)
        print(f"{s}: secactpy {a.secactpy_cells:,} cells {ref['seconds']:.1f} s (peak {ref['peak_gb']:.2f} GB), "
              f"scaled to {a.n_cells:,}: {ref['seconds'] * scale:.0f} s -> cytoatlas is "
              f"{ref['seconds'] * scale / mine['seconds']:.0f}x faster (other processes' CPU during secactpy: "
              f"{ref['other_cpu']:.0f} s)")
        print(f"{s}: same {a.secactpy_cells:,} cells: cytoatlas {mine_small['seconds']:.1f} s, "
              f"secactpy {ref['seconds']:.1f} s ({ref['seconds'] / mine_small['seconds']:.0f}x)")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "cells.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

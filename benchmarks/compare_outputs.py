"""Check that two pseudobulk output directories hold the same results (e.g. cytoatlas vs the seed).

Cell-type and sample files are compared row by row (rows matched by obs name): ``X`` (log1p CPM),
layers ``counts`` and ``zscore``, and ``n_cells``. Resampled files are compared by their row sets
(cell type, bootstrap index, number of units) only: the random draws differ between implementations.

Usage::

    python benchmarks/compare_outputs.py benchmarks/out/cytoatlas_synth_300k benchmarks/out/seed_synth_300k
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        obs = read_elem(f["obs"])
        mats = {"X": f["X"][()]}
        for k in f.get("layers", {}):
            mats[k] = f["layers"][k][()]
    return obs, mats


def compare_dirs(a: str | Path, b: str | Path, atol: float = 2e-4, rtol: float = 1e-4) -> list[str]:
    """Differences between the outputs in ``a`` and ``b`` (empty list = same results)."""
    a, b = Path(a), Path(b)
    problems: list[str] = []
    names_a = sorted(p.name for p in a.glob("*_pseudobulk_*.h5ad"))
    names_b = sorted(p.name for p in b.glob("*_pseudobulk_*.h5ad"))
    if names_a != names_b:
        problems.append(f"file sets differ: {sorted(set(names_a) ^ set(names_b))}")
    for name in sorted(set(names_a) & set(names_b)):
        obs_a, m_a = _read(a / name)
        obs_b, m_b = _read(b / name)
        if name.endswith("_resampled.h5ad"):
            cols = ["cell_type", "bootstrap_idx", "n_units"]
            try:
                ra = obs_a[cols].astype(str).agg("|".join, axis=1).sort_values().tolist()
                rb = obs_b[cols].astype(str).agg("|".join, axis=1).sort_values().tolist()
            except KeyError as e:
                problems.append(f"{name}: missing obs column {e}")
                continue
            if ra != rb:
                problems.append(f"{name}: resample rows differ ({len(ra)} vs {len(rb)} rows)")
            if set(m_a) != set(m_b):
                problems.append(f"{name}: matrices differ: {sorted(m_a)} vs {sorted(m_b)}")
            continue
        if set(obs_a.index) != set(obs_b.index):
            only_a = sorted(set(obs_a.index) - set(obs_b.index))[:5]
            only_b = sorted(set(obs_b.index) - set(obs_a.index))[:5]
            problems.append(f"{name}: rows differ (only in a: {only_a}, only in b: {only_b})")
            continue
        pos_b = pd.Index(obs_b.index).get_indexer(obs_a.index)
        if "n_cells" in obs_a and "n_cells" in obs_b:
            if not np.array_equal(obs_a["n_cells"].to_numpy(), obs_b["n_cells"].to_numpy()[pos_b]):
                problems.append(f"{name}: n_cells differ")
        for k in sorted(set(m_a) | set(m_b)):
            if k not in m_a or k not in m_b:
                problems.append(f"{name}: {k} only in {'a' if k in m_a else 'b'}")
                continue
            x, y = m_a[k].astype(np.float64), m_b[k][pos_b].astype(np.float64)
            if x.shape != y.shape:
                problems.append(f"{name}: {k} shapes {x.shape} vs {y.shape}")
                continue
            bad = ~np.isclose(x, y, atol=atol, rtol=rtol, equal_nan=True)
            if bad.any():
                d = np.nanmax(np.abs(x - y))
                problems.append(f"{name}: {k}: {int(bad.sum())} values differ (max abs diff {d:.3g})")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare two pseudobulk output directories.")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--atol", type=float, default=2e-4)
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    problems = compare_dirs(args.a, args.b, args.atol, args.rtol)
    for p in problems:
        print(p)
    print("same results" if not problems else f"{len(problems)} difference(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

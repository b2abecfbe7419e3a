"""Compare the numeric outputs of two result trees, e.g. `cytoatlas demo` run in two environments.

    python benchmarks/compare_trees.py A B [--tol 1e-12]

Every ``*_activity.h5ad`` and ``*_pseudobulk_*.h5ad`` found under A must exist under B with the same obs and var
names; X and every layer are compared (max absolute difference, NaN only where the other is NaN), and so are the
numeric columns of the ``*_activity_ci.csv`` tables. Prints one line per kind and exits 1 when a file is missing,
names differ or an activity difference exceeds ``--tol`` (used for the Python 3.11 / numpy 1.26 vs Python 3.13 /
numpy 2 check of issue #15).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd


def _max_diff(a: np.ndarray, b: np.ndarray, what: str) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise SystemExit(f"{what}: shapes {a.shape} and {b.shape}")
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        raise SystemExit(f"{what}: NaN in different places")
    both = ~np.isnan(a)
    return float(np.abs(a[both] - b[both]).max(initial=0.0))


def _compare_h5ad(pa: Path, pb: Path) -> float:
    a, b = ad.read_h5ad(pa), ad.read_h5ad(pb)
    # names as values: an index read back as object or as pandas string dtype (anndata >= 0.11, pandas 3) is alike
    if list(a.obs_names) != list(b.obs_names) or list(a.var_names) != list(b.var_names):
        raise SystemExit(f"{pa.name}: obs or var names differ")
    worst = _max_diff(a.X, b.X, f"{pa.name} X")
    if set(a.layers) != set(b.layers):
        raise SystemExit(f"{pa.name}: layers {sorted(a.layers)} vs {sorted(b.layers)}")
    for key in a.layers:
        worst = max(worst, _max_diff(a.layers[key], b.layers[key], f"{pa.name} layers[{key}]"))
    return worst


def _compare_csv(pa: Path, pb: Path) -> float:
    a, b = pd.read_csv(pa), pd.read_csv(pb)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        raise SystemExit(f"{pa.name}: columns or rows differ")
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]
    other = [c for c in a.columns if c not in num]
    if not a[other].astype(str).equals(b[other].astype(str)):
        raise SystemExit(f"{pa.name}: non-numeric columns differ")
    return _max_diff(a[num].to_numpy(), b[num].to_numpy(), pa.name) if num else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--tol", type=float, default=1e-12, help="largest allowed activity difference (1e-12)")
    args = ap.parse_args(argv)
    kinds = {"activity": ("*_activity.h5ad", _compare_h5ad), "activity CI tables": ("*_activity_ci.csv", _compare_csv),
             "pseudobulk": ("*_pseudobulk_*.h5ad", _compare_h5ad)}
    worst_activity, ok = 0.0, True
    for kind, (pattern, compare) in kinds.items():
        files = sorted(p for p in args.a.rglob(pattern) if "activity" in kind or "_activity" not in p.name)
        if not files:
            print(f"{kind}: no files under {args.a}")
            ok = False
            continue
        worst = 0.0
        for pa in files:
            pb = args.b / pa.relative_to(args.a)
            if not pb.is_file():
                print(f"missing in {args.b}: {pa.relative_to(args.a)}")
                ok = False
                continue
            worst = max(worst, compare(pa, pb))
        print(f"{kind}: {len(files)} files, max |difference| {worst:.3g}")
        if kind.startswith("activity"):
            worst_activity = max(worst_activity, worst)
    if worst_activity > args.tol:
        print(f"activity differs by more than {args.tol:g}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Compare two results trees: the one script for "are these the same outputs" (merged from ``same_outputs.py``,
``compare_trees.py`` and ``compare_outputs.py``).

    python benchmarks/compare_trees.py A B                      # --mode same (default)
    python benchmarks/compare_trees.py A B --mode numeric [--tol 1e-12]
    python benchmarks/compare_trees.py A B --mode rows [--atol 2e-4 --rtol 1e-4]

``same``: every file of tree A is in tree B and nothing else, and

- ``.h5ad`` files: equal element by element (every group, attribute and dataset: dtype, shape and every value,
  NaN equal to NaN), except what records *when* and *where* a file was made: ``uns/run/created`` and, in every
  recorded input fingerprint, ``path``, ``mtime_ns`` and ``sha256_edges`` (an upstream file's first and last MiB,
  which hold its own creation time);
- every other file (CSV and Parquet tables, PNG and SVG figures, the report): byte for byte, unless it names a
  time or a path of its tree (the HTML report and the Parquet parts are compared as text with the tree's root
  and ISO times masked);
- ``manifest.json``: the same records with the same step, kind, parameters and version; the checksum and size of
  every file compared byte for byte above; for the inputs the same names and, where an input is compared byte for
  byte, its checksum. (A record's ``algorithm`` is compared when both trees record one: a tree written before
  algorithm versions were recorded holds version 1 implicitly.)

Used for a refactor: ``cytoatlas demo`` before and after must give the same outputs.

``numeric``: every ``*_activity.h5ad`` and ``*_pseudobulk_*.h5ad`` under A must exist under B with the same obs and
var names; X and every layer are compared (max absolute difference, NaN only where the other is NaN), and so are
the numeric columns of the ``*_activity_ci.csv`` tables; exits 1 when a file is missing, names differ or an
activity difference exceeds ``--tol`` (the Python 3.11 / numpy 1.26 vs Python 3.13 / numpy 2 check of issue #15).

``rows``: two pseudobulk output directories from different implementations (e.g. cytoatlas vs the seed):
cell-type and sample files row by row (rows matched by obs name: X, layers ``counts`` and ``zscore``,
``n_cells``, within ``--atol`` / ``--rtol``); resampled files by their row sets (cell type, bootstrap index,
number of units) only, since the random draws differ between implementations.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

VOLATILE_KEYS = {"created", "path", "mtime_ns", "sha256_edges", "written"}
_TIME = re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?([+-]\d{4})?")
SKIP = {".cytoatlas.lock"}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name not in SKIP}


def _h5_diff(a: h5py.Group, b: h5py.Group, where: str, out: list[str]) -> None:
    if set(a.attrs) != set(b.attrs) or any(not np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k]))
                                           or a.attrs.get_id(k).dtype != b.attrs.get_id(k).dtype for k in a.attrs):
        out.append(f"{where}: attributes differ")
    if set(a) != set(b):
        out.append(f"{where}: members differ: {sorted(set(a) ^ set(b))}")
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        name = f"{where}/{k}"
        if k in VOLATILE_KEYS:
            continue
        if isinstance(x, h5py.Group) and isinstance(y, h5py.Group):
            _h5_diff(x, y, name, out)
        elif isinstance(x, h5py.Dataset) and isinstance(y, h5py.Dataset):
            if x.dtype != y.dtype or x.shape != y.shape:
                out.append(f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
                continue
            u, v = np.asarray(x[()]), np.asarray(y[()])
            nan = u.dtype.kind in "fc"
            if not np.array_equal(u, v, equal_nan=nan):
                out.append(f"{name}: values differ")
            if x.chunks != y.chunks or x.compression != y.compression:
                out.append(f"{name}: storage differs ({x.chunks}, {x.compression} vs {y.chunks}, {y.compression})")
        else:
            out.append(f"{name}: a group in one file, a dataset in the other")


def _masked(data: bytes, root: Path) -> bytes:
    return _TIME.sub(b"<time>", data.replace(str(root.resolve()).encode(), b"<root>"))


def _bytes_equal(pa: Path, pb: Path, ra: Path, rb: Path) -> bool:
    a, b = pa.read_bytes(), pb.read_bytes()
    return a == b or _masked(a, ra) == _masked(b, rb)


def _strip(record: dict, exact: bool) -> dict:
    """A manifest record without what says when it was written (and, for files compared by content, their
    checksum and size, which hold those times)."""
    rec = {k: v for k, v in record.items() if k not in VOLATILE_KEYS}
    rec.setdefault("algorithm", 1)  # written before algorithm versions were recorded: version 1
    if not exact:
        rec.pop("checksum", None)
        rec.pop("size", None)
    rec["inputs"] = [{k: v for k, v in i.items() if k not in VOLATILE_KEYS | {"checksum", "size"}}
                     for i in record.get("inputs", [])]
    return rec


def _rooted(record: dict, root: Path) -> dict:
    """A record with its tree's root written ``<root>`` (a report names the comparison directory it shows)."""
    return json.loads(json.dumps(record).replace(str(root.resolve()), "<root>"))


def compare_trees(a: str | Path, b: str | Path) -> list[str]:
    """Differences between the outputs under ``a`` and ``b`` (empty: the same outputs)."""
    a, b = Path(a), Path(b)
    problems: list[str] = []
    fa, fb = _files(a), _files(b)
    if fa != fb:
        problems.append(f"file sets differ: only in a {sorted(fa - fb)[:10]}, only in b {sorted(fb - fa)[:10]}")
    exact = {}
    for rel in sorted(fa & fb):
        pa, pb = a / rel, b / rel
        if rel.endswith(".h5ad"):
            with h5py.File(pa, "r") as x, h5py.File(pb, "r") as y:
                found: list[str] = []
                _h5_diff(x, y, rel, found)
                # times and paths live in uns: everything else of the file must be the same bytes' worth
                problems += found
            exact[rel] = False
        elif rel.endswith("manifest.json"):
            continue
        else:
            same = pa.read_bytes() == pb.read_bytes()
            exact[rel] = same
            if not same and not _bytes_equal(pa, pb, a, b):
                problems.append(f"{rel}: contents differ")
    for rel in sorted(r for r in fa & fb if r.endswith("manifest.json")):
        da, db = (json.loads(p.read_text())["outputs"] for p in (a / rel, b / rel))
        if set(da) != set(db):
            problems.append(f"{rel}: records differ: {sorted(set(da) ^ set(db))}")
        base = str(Path(rel).parent)
        for name in sorted(set(da) & set(db)):
            key = name if base == "." else f"{base}/{name}"
            is_exact = exact.get(key, False)
            if _strip(_rooted(da[name], a), is_exact) != _strip(_rooted(db[name], b), is_exact):
                problems.append(f"{rel}: record {name} differs")
    return problems


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


def numeric_trees(args: argparse.Namespace) -> int:
    """``--mode numeric``: X, layers and CI tables within ``--tol``; prints one line per kind."""
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


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        obs = read_elem(f["obs"])
        mats = {"X": f["X"][()]}
        for k in f.get("layers", {}):
            mats[k] = f["layers"][k][()]
    return obs, mats


def compare_rows(a: str | Path, b: str | Path, atol: float = 2e-4, rtol: float = 1e-4) -> list[str]:
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
        if "n_cells" in obs_a and "n_cells" in obs_b and not np.array_equal(
                obs_a["n_cells"].to_numpy(), obs_b["n_cells"].to_numpy()[pos_b]):
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--mode", choices=("same", "numeric", "rows"), default="same",
                    help="same: identical outputs (default); numeric: within --tol; rows: another implementation")
    ap.add_argument("--tol", type=float, default=1e-12, help="numeric: largest allowed activity difference (1e-12)")
    ap.add_argument("--atol", type=float, default=2e-4, help="rows: absolute tolerance (2e-4)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="rows: relative tolerance (1e-4)")
    args = ap.parse_args(argv)
    if args.mode == "numeric":
        return numeric_trees(args)
    if args.mode == "rows":
        problems = compare_rows(args.a, args.b, args.atol, args.rtol)
        for p in problems:
            print(p)
        print("same results" if not problems else f"{len(problems)} difference(s)", file=sys.stderr)
        return 1 if problems else 0
    problems = compare_trees(args.a, args.b)
    for p in problems:
        print(p)
    n = len(_files(args.a))
    print(f"{n} files compared: " + ("the same outputs" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Check that two results trees (e.g. `cytoatlas demo` before and after a refactor) hold the same outputs.

Every file of tree A must be in tree B and nothing else, and:

- ``.h5ad`` files: equal element by element (every group, attribute and dataset: dtype, shape and every value,
  NaN equal to NaN), except what records *when* and *where* a file was made: ``uns/run/created`` and, in every
  recorded input fingerprint, ``path``, ``mtime_ns`` and ``sha256_edges`` (an upstream file's first and last MiB,
  which hold its own creation time);
- every other file (CSV and Parquet tables, PNG and SVG figures, the report): byte for byte, unless it names a
  time or a path of its tree (the HTML report and the Parquet parts are compared as text with the tree's root
  and ISO times masked);
- ``manifest.json``: the same records with the same step, kind, parameters and version; the checksum and size of
  every file compared byte for byte above; for the inputs the same names and, where an input is compared byte for
  byte, its checksum.

Usage::

    python benchmarks/same_outputs.py /tmp/demo_before /tmp/demo_after
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np

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
    if not exact:
        rec.pop("checksum", None)
        rec.pop("size", None)
    rec["inputs"] = [{k: v for k, v in i.items() if k not in VOLATILE_KEYS | {"checksum", "size"}}
                     for i in record.get("inputs", [])]
    return rec


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
            if _strip(da[name], is_exact) != _strip(db[name], is_exact):
                problems.append(f"{rel}: record {name} differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    problems = compare_trees(args.a, args.b)
    for p in problems:
        print(p)
    n = len(_files(args.a))
    print(f"{n} files compared: " + ("the same outputs" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

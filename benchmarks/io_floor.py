"""I/O floor: read the CSR blocks of ``X`` with h5py (decompression included) and do nothing else.

For every batch of ``--batch-size`` rows, reads ``indptr[s:e+1]`` and the matching ``data`` and
``indices`` slices (into reused buffers, the cheapest way h5py offers), then throws them away. No
obs, no var, no arithmetic: the time a streaming pass through h5py cannot beat.

``--method direct`` reads the same slices as raw gzip chunks (``read_direct_chunk``) and inflates them
outside HDF5, single-threaded, with ISA-L when the ``isal`` package is installed (else zlib): the floor
of a reader that bypasses h5py's filter pipeline, as cytoatlas' chunk reader does.

Usage::

    python benchmarks/io_floor.py benchmarks/data/synth_300k.h5ad --batch-size 50000 [--json]

Prints ``io_floor: X.XXXs ...`` (and, with ``--json``, a last line with the result as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import h5py
import numpy as np

try:
    from isal.isal_zlib import decompress as _inflate

    INFLATE = "isal"
except ImportError:  # pragma: no cover
    from zlib import decompress as _inflate

    INFLATE = "zlib"


class _DirectReader:
    """``read_direct(buf, src, dest)`` for a 1-D gzip-chunked dataset: raw chunks inflated outside HDF5."""

    def __init__(self, ds: h5py.Dataset):
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        if ds.chunks is None or filters not in ([], [h5py.h5z.FILTER_DEFLATE]):
            raise SystemExit(f"--method direct needs a gzip-only chunked dataset ({ds.name}: {filters})")
        self.ds, self.dtype, self.chunk = ds, ds.dtype, ds.chunks[0]
        self.compressed = bool(filters)

    def read_direct(self, out: np.ndarray, src: slice, dest: slice) -> None:
        lo, hi, off = src.start, src.stop, dest.start
        for c in range(lo // self.chunk, (hi - 1) // self.chunk + 1):
            mask, raw = self.ds.id.read_direct_chunk((c * self.chunk,))
            values = np.frombuffer(_inflate(raw) if self.compressed and not mask & 1 else raw, self.dtype)
            start = c * self.chunk
            a, b = max(lo, start), min(hi, start + self.chunk)
            out[off + a - lo : off + b - lo] = values[a - start : b - start]


def read_blocks(path: str, batch_size: int = 50_000, method: str = "h5py") -> dict:
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        g = f["X"]
        enc = g.attrs.get("encoding-type", "")
        if isinstance(enc, bytes):
            enc = enc.decode()
        if enc != "csr_matrix":
            raise SystemExit(f"X is {enc!r}, not csr_matrix")
        n_rows = int(g.attrs["shape"][0])
        data, indices, indptr_ds = g["data"], g["indices"], g["indptr"]
        rd, ri = (data, indices) if method == "h5py" else (_DirectReader(data), _DirectReader(indices))
        buf_d = np.empty(0, dtype=data.dtype)
        buf_i = np.empty(0, dtype=indices.dtype)
        n_blocks = 0
        nnz = 0
        checksum = 0  # touch the last element so nothing can be skipped
        for s in range(0, n_rows, batch_size):
            e = min(n_rows, s + batch_size)
            ip = indptr_ds[s : e + 1]
            a, b = int(ip[0]), int(ip[-1])
            n = b - a
            if buf_d.size < n:
                buf_d = np.empty(int(n * 1.1) + 1, dtype=data.dtype)
                buf_i = np.empty(int(n * 1.1) + 1, dtype=indices.dtype)
            if n:
                rd.read_direct(buf_d, np.s_[a:b], np.s_[0:n])
                ri.read_direct(buf_i, np.s_[a:b], np.s_[0:n])
                checksum += int(buf_i[n - 1])
            nnz += n
            n_blocks += 1
    seconds = time.perf_counter() - t0
    itemsize = data.dtype.itemsize + indices.dtype.itemsize
    return {
        "method": method if method == "h5py" else f"direct+{INFLATE}",
        "seconds": seconds,
        "n_rows": n_rows,
        "n_blocks": n_blocks,
        "nnz": nnz,
        "uncompressed_gb": nnz * itemsize / 1e9,
        "checksum": checksum,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Read X's CSR row blocks with h5py and nothing else.")
    ap.add_argument("h5ad")
    ap.add_argument("--batch-size", type=int, default=50_000)
    ap.add_argument(
        "--method",
        choices=["h5py", "direct"],
        default="h5py",
        help="h5py (default): h5py slices; direct: raw chunks inflated outside HDF5 (ISA-L)",
    )
    ap.add_argument("--json", action="store_true", help="also print the result as a JSON line")
    a = ap.parse_args(argv)
    r = read_blocks(a.h5ad, a.batch_size, a.method)
    print(
        f"io_floor [{r['method']}]: {r['seconds']:.3f}s  ({r['n_rows']:,d} rows, {r['n_blocks']} blocks, "
        f"nnz={r['nnz']:,d}, "
        f"{r['uncompressed_gb'] / r['seconds']:.2f} GB/s uncompressed)"
    )
    if a.json:
        print(json.dumps(r))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

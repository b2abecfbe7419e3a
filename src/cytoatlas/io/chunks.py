"""Direct reads of 1-D chunked datasets: raw chunks straight from HDF5, decoded outside of HDF5.

HDF5 serialises every call, so h5py's own gzip path runs on one core whatever the number of threads, and it
costs ~2.7x more than reading the raw chunks (``read_direct_chunk``) and inflating them with ISA-L (the
``isal`` package: zlib-compatible output, 2-3x faster than zlib). Decoding outside HDF5 releases the GIL, so
it overlaps with the compiled accumulation, and with a thread pool the chunks of a block are decoded on all
cores. Handled filter pipelines: deflate (gzip) or lzf, each optionally after shuffle, and no filter at all.
Anything else (blosc, szip, checksums...) or unchunked storage is read through h5py as usual: same values
either way.
"""

from __future__ import annotations

from concurrent.futures import Executor

import h5py
import numpy as np

from cytoatlas.io._lzf import lzf_decompress

try:
    from isal.isal_zlib import decompress as _inflate
except ImportError:  # pragma: no cover - isal is a dependency; zlib gives the same bytes, slower
    from zlib import decompress as _inflate

_DEFLATE, _SHUFFLE, _LZF = h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, 32000
_PIPELINES = ([], [_DEFLATE], [_LZF], [_SHUFFLE, _DEFLATE], [_SHUFFLE, _LZF], [_SHUFFLE])


def _filters(ds: h5py.Dataset) -> list[int]:
    plist = ds.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


class ChunkedArray:
    """Slices ``[lo:hi]`` of a 1-D dataset, read chunk by chunk and decoded here when its filters allow.

    ``pool`` (an executor) decodes the chunks of a slice in parallel; without one they are decoded on the
    calling thread. Either way the values are exactly h5py's.
    """

    def __init__(self, ds: h5py.Dataset, pool: Executor | None = None):
        self.ds, self.dtype, self.pool = ds, ds.dtype, pool
        self.filters = _filters(ds) if ds.chunks is not None else None
        self.direct = ds.ndim == 1 and self.filters in _PIPELINES
        self.chunk = ds.chunks[0] if self.direct else 0

    def __getitem__(self, rows: slice) -> np.ndarray:
        lo, hi = rows.start or 0, rows.stop
        if not self.direct:
            return self.ds[lo:hi]
        out = np.empty(max(hi - lo, 0), dtype=self.dtype.newbyteorder("="))
        pending = []
        for c in range(lo // self.chunk, (hi - 1) // self.chunk + 1) if hi > lo else ():
            mask, raw = self.ds.id.read_direct_chunk((c * self.chunk,))  # HDF5: one thread at a time
            if self.pool is None:
                self._place(c, mask, raw, out, lo, hi)
            else:
                pending.append(self.pool.submit(self._place, c, mask, raw, out, lo, hi))
        for p in pending:
            p.result()
        return out

    def _decode(self, mask: int, raw: bytes) -> np.ndarray:
        """One chunk's bytes as values. Bit i of ``mask`` set means filter i was not applied to this chunk."""
        buf = np.frombuffer(raw, np.uint8)
        size = self.chunk * self.dtype.itemsize
        for i in reversed(range(len(self.filters))):
            if mask >> i & 1:
                continue
            f = self.filters[i]
            if f == _DEFLATE:
                buf = np.frombuffer(_inflate(buf), np.uint8)
            elif f == _LZF:
                dst = np.empty(size, np.uint8)
                if lzf_decompress(buf, dst) != size:
                    raise ValueError("lzf chunk does not decompress to the chunk size")
                buf = dst
            else:  # shuffle: the bytes of every value were stored as itemsize planes
                k = self.dtype.itemsize
                if len(buf) % k:
                    raise ValueError("shuffled chunk size is not a multiple of the value size")
                buf = np.ascontiguousarray(buf.reshape(k, -1).T).reshape(-1)
        if len(buf) != size:
            raise ValueError(f"chunk decodes to {len(buf)} bytes, expected {size}")
        return buf.view(self.dtype)

    def _place(self, c: int, mask: int, raw: bytes, out: np.ndarray, lo: int, hi: int) -> None:
        values = self._decode(mask, raw)
        start = c * self.chunk
        a, b = max(lo, start), min(hi, start + self.chunk)
        out[a - lo: b - lo] = values[a - start: b - start]

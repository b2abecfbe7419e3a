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

import contextlib
import os
import sys
import threading
from concurrent.futures import Executor

import h5py
import numpy as np

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
        return self.read(rows.start or 0, rows.stop)

    def read(self, lo: int, hi: int, buffers: BufferPool | None = None) -> np.ndarray:
        """Values ``lo:hi``, in an array from ``buffers`` when given (see :class:`BufferPool`)."""
        dtype = self.dtype.newbyteorder("=")
        n = max(hi - lo, 0)
        out = buffers.take(n, dtype) if buffers is not None else np.empty(n, dtype=dtype)
        if not self.direct:
            if n:
                self.ds.read_direct(out, np.s_[lo:hi])
            return out
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
                from cytoatlas.io._lzf import lzf_decompress  # numba: loaded only for lzf files

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


class BufferPool:
    """Arrays handed out again once nobody holds them: consecutive blocks of a pass reuse their memory.

    A fresh array for every block (hundreds of MB each) comes from new pages, which the kernel zeroes as they are
    first written: ~1 s of CPU per 300 k cells on top of decoding. An array is reused only when no reference to
    it (or to a view of it) is left outside the pool, so a caller that keeps its blocks gets new ones.
    """

    def __init__(self, size: int = 3):
        self.size = size
        self._arrays: list[np.ndarray] = []

    def take(self, n: int, dtype: np.dtype) -> np.ndarray:
        """An array of ``n`` values of ``dtype`` (a view of a pooled one, contents undefined)."""
        for base in self._arrays:
            # references: the list, ``base`` and getrefcount's argument; any more is a live block
            if base.dtype == dtype and base.size >= n and sys.getrefcount(base) == 3:
                return base[:n]
        base = np.empty(n + n // 8, dtype=dtype)  # room for the next blocks, which differ a little in size
        free = [i for i in range(len(self._arrays)) if sys.getrefcount(self._arrays[i]) == 2]
        if len(self._arrays) < self.size:
            self._arrays.append(base)
        elif free:
            self._arrays[free[0]] = base
        return base[:n]


def tune_allocator() -> None:
    """glibc's allocator settings for a pass: arrays up to 64 MB from the heap, 256 MB kept before trimming.

    A pass allocates and frees the same sizes over and over (decoded chunks of ~200 kB on every decoding thread,
    per-block temporaries). With glibc's defaults, threads' arenas give them back to the system and take them
    again as fresh pages, zeroed by the kernel: ~15 % of a pass on 2 cores went to page faults. This process
    keeps up to 256 MB of freed memory instead. Nothing to do elsewhere than glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def read_matrix_direct(ds: h5py.Dataset, columns: np.ndarray | None, out: np.ndarray, transposed: bool,
                       threads: int = 2) -> bool:
    """Fill ``out`` with every row of a 2-D dataset whose chunks are stored unfiltered, keeping ``columns``
    (indices, default all): ``out`` is ``rows x columns``, or ``columns x rows`` with ``transposed``.

    The chunks' bytes are the values themselves: their file offsets come from HDF5 once, then ``threads``
    threads read them with ``os.pread`` (which releases the GIL and keeps several reads in flight: ~1.8 against
    ~1.2 GB/s here from a cold page cache), with the kernel's read-ahead off, and copy the kept columns out,
    each chunk read once. Chunks holding no kept column are not read. Returns False, having read nothing, for
    any other storage (filters, contiguous or unallocated chunks, a file not opened from a path); the caller
    then reads through h5py.
    """
    from concurrent.futures import ThreadPoolExecutor

    if ds.ndim != 2 or ds.chunks is None or _filters(ds) or ds.file.driver != "sec2" or not ds.size:
        return False
    (n, k), (r, c) = ds.shape, ds.chunks
    n_chunks = -(-n // r) * -(-k // c)
    try:
        infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    except (AttributeError, RuntimeError, ValueError):  # an HDF5 without the chunk query API
        return False
    if len(infos) != n_chunks or any(i.size != r * c * ds.dtype.itemsize for i in infos):
        return False
    cols = np.arange(k) if columns is None else np.asarray(columns, dtype=np.intp)
    block = cols // c
    # per chunk column: (positions in the output, columns within the chunk)
    wanted = {j: (pos, cols[pos] - j * c) for j in np.unique(block) for pos in [np.flatnonzero(block == j)]}
    dtype = ds.dtype
    fd = os.open(ds.file.filename, os.O_RDONLY)
    # no read-ahead: it would read the neighbouring chunks (another dataset's, e.g. the layers between X's
    # chunks), which costs a cold read ~40 % of its time here
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    # one chunk buffer per thread, reused: a fresh ~1 MB buffer per chunk is fresh pages the kernel zeroes first
    local_buffers = threading.local()

    def place(info) -> None:
        r0, c0 = info.chunk_offset
        pos, local = wanted[c0 // c]
        values = getattr(local_buffers, "values", None)
        if values is None:
            values = local_buffers.values = np.empty((r, c), dtype=dtype)
        if os.preadv(fd, [memoryview(values).cast("B")], info.byte_offset) != info.size:
            raise ValueError(f"chunk at byte {info.byte_offset} is cut short (truncated file?)")
        rows = min(r, n - r0)
        part = values[:rows, local]
        if transposed:
            out[pos, r0:r0 + rows] = part.T
        else:
            out[r0:r0 + rows, pos] = part

    try:
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="cytoatlas-read") as pool:
            list(pool.map(place, [i for i in infos if i.chunk_offset[1] // c in wanted]))
    finally:
        os.close(fd)
    return True

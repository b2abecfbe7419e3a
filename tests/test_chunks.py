"""Direct chunk reads give exactly what h5py gives, for every storage layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.chunks import ChunkedArray
from cytoatlas.io.h5ad import open_counts, open_h5ad

LAYOUTS = {
    "gzip": {"chunks": (1000,), "compression": "gzip"},
    "gzip9_odd_chunks": {"chunks": (777,), "compression": "gzip", "compression_opts": 9},
    "chunked_raw": {"chunks": (1000,)},
    "lzf": {"chunks": (1000,), "compression": "lzf"},
    "shuffle_gzip": {"chunks": (1000,), "compression": "gzip", "shuffle": True},
    "shuffle_lzf": {"chunks": (333,), "compression": "lzf", "shuffle": True},
    "shuffle_only": {"chunks": (1000,), "shuffle": True},
    "fletcher32_gzip": {"chunks": (1000,), "compression": "gzip", "fletcher32": True},  # read through h5py
    "contiguous": {},
}
VIA_H5PY = ("fletcher32_gzip", "contiguous")


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["<f4", ">i4", "<i8"])
def test_slices_equal_h5py(tmp_path, layout, dtype, threads):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    # runs of repeats and small integers, as counts and sorted gene indices are: lzf finds back-references
    values = np.repeat(rng.integers(0, 1000, 4000), rng.integers(1, 6, 4000))[:10_007].astype(dtype)
    values[:600] = 7  # a chunk that compresses to almost nothing
    values[-2000:] = rng.integers(0, 2**31 - 1, 2000).astype(dtype)  # and chunks that do not compress at all
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("v", data=values, **LAYOUTS[layout])
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    with h5py.File(tmp_path / "a.h5", "r") as f:
        arr = ChunkedArray(f["v"], pool)
        assert arr.direct == (layout not in VIA_H5PY)
        for lo, hi in [(0, 10_007), (0, 1), (999, 1001), (1000, 2000), (5, 5), (3_333, 9_999), (10_000, 10_007)]:
            got = arr[lo:hi]
            np.testing.assert_array_equal(got, f["v"][lo:hi])
            assert got.dtype == np.dtype(dtype).newbyteorder("=") or not arr.direct
            assert got.flags.writeable or not arr.direct
    if pool:
        pool.shutdown()


def test_lzf_decoder_rejects_damaged_streams():
    from cytoatlas.io._lzf import lzf_decompress

    dst = np.empty(16, np.uint8)
    # a literal of 3 bytes, then a back-reference of length 3 at distance 1... too far back: before the start
    assert lzf_decompress(np.array([2, 1, 2, 3, 0x20, 9], np.uint8), dst) == -1
    assert lzf_decompress(np.array([5, 1, 2], np.uint8), dst) == -1  # literal longer than the input
    # literal "ab", then a back-reference of length 3 at distance 2: "ab" + "aba"
    assert lzf_decompress(np.array([1, 97, 98, 0x20, 1], np.uint8), dst) == 5
    assert bytes(dst[:5]) == b"ababa"


def test_corrupt_chunk_is_a_clear_error(tmp_path):
    import anndata as ad
    import scipy.sparse as sp

    x = sp.random(2000, 50, density=0.2, format="csr", random_state=0, dtype=np.float32)
    x.data[:] = np.round(x.data * 10) + 1
    path = tmp_path / "c.h5ad"
    ad.AnnData(x).write_h5ad(path, compression="gzip")
    with h5py.File(path, "r") as f:
        offset = f["X/data"].id.get_offset() or f["X/data"].id.get_chunk_info(3).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 10: offset + 200] = b"\x00" * 190  # scribble over the start of a compressed chunk
    path.write_bytes(bytes(raw))
    with open_h5ad(path) as f, pytest.raises(CytoatlasError, match="corrupt or truncated"):
        for _ in open_counts(f).blocks(500):
            pass


@pytest.mark.parametrize("dense", [False, True])
def test_blocks_are_capped_by_stored_values(tmp_path, dense):
    import anndata as ad
    import scipy.sparse as sp

    x = sp.random(500, 40, density=0.5, format="csr", random_state=0, dtype=np.float32)
    ad.AnnData(x.toarray() if dense else x).write_h5ad(tmp_path / "d.h5ad")
    with open_h5ad(tmp_path / "d.h5ad") as f:
        counts = open_counts(f)
        blocks = list(counts.blocks(200, first=30, max_values=1000))
        assert blocks[0].start == 0 and blocks[-1].stop == 500
        assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:], strict=False))
        assert blocks[0].stop - blocks[0].start <= 30
        assert all(b.stop - b.start <= 200 for b in blocks)
        assert all(len(b.data) <= 1000 for b in blocks)  # 1000 values ~ 50 sparse rows or 25 dense ones
        got = sp.vstack([sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.stop - b.start, 40)) for b in blocks])
        np.testing.assert_array_equal(got.toarray(), x.toarray())


def test_buffer_pool_reuses_only_arrays_nobody_holds():
    """A block's arrays are handed out again once the caller let go of the block, never while it (or a view of
    it) is alive: a caller that keeps its blocks gets new arrays with the right values."""
    from cytoatlas.io.chunks import BufferPool

    pool = BufferPool(2)
    a = pool.take(100, np.dtype(np.int32))
    first = a.__array_interface__["data"][0]
    a[:] = 1
    kept = a[10:20]  # a view keeps the array busy
    del a
    b = pool.take(90, np.dtype(np.int32))
    assert b.__array_interface__["data"][0] != first
    b[:] = 2
    assert (kept == 1).all()
    del kept
    c = pool.take(90, np.dtype(np.int32))
    assert c.__array_interface__["data"][0] == first  # free again: reused, no new pages
    assert pool.take(10, np.dtype(np.float64)).dtype == np.float64  # another dtype is never a reinterpretation


def test_kept_blocks_keep_their_values(tmp_path):
    """Blocks from one ``blocks()`` pass, all kept by the caller, each hold their own rows."""
    rng = np.random.default_rng(1)
    x = (rng.random((300, 50)) < 0.2) * rng.integers(1, 9, (300, 50))
    import anndata as ad
    import scipy.sparse as sp

    ad.AnnData(sp.csr_matrix(x.astype(np.float32))).write_h5ad(tmp_path / "a.h5ad", compression="gzip")
    with open_h5ad(tmp_path / "a.h5ad") as f:
        blocks = list(open_counts(f).blocks(40))
    for b in blocks:
        got = sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.stop - b.start, 50)).toarray()
        np.testing.assert_array_equal(got, x[b.start:b.stop])

"""The result readers: chunk-aligned and parallel reads give h5py's values exactly, whatever the storage."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cytoatlas.io import results
from cytoatlas.io.chunks import read_matrix_direct


@pytest.mark.parametrize("storage", [{"chunks": (7, 5)}, {"chunks": (23, 17)}, {"chunks": None},
                                     {"chunks": (7, 5), "compression": "gzip"}])
@pytest.mark.parametrize("transposed", [False, True])
def test_read_rows_equals_h5py(tmp_path, storage, transposed, monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(23, 17)).astype(np.float32)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=a, **storage)
    cols = np.array([16, 0, 3, 4, 9, 10, 15])  # unsorted, spanning chunk columns
    monkeypatch.setattr(results, "READ_BUDGET", 3 * 17 * 4)  # several row blocks through h5py
    with h5py.File(path, "r") as f:
        for c in (None, cols, np.array([], dtype=int)):
            want = a if c is None else a[:, c]
            got = results.read_rows(f["X"], c, transposed=transposed)
            np.testing.assert_array_equal(got, want.T if transposed else want)
            assert got.flags.c_contiguous
        assert results.read_rows(f["X"], cols, dtype=np.float64).dtype == np.float64


def test_direct_read_is_used_only_for_unfiltered_chunks(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("plain", data=np.ones((9, 9)), chunks=(4, 4))
        f.create_dataset("gzip", data=np.ones((9, 9)), chunks=(4, 4), compression="gzip")
        f.create_dataset("contiguous", data=np.ones((9, 9)))
        f.create_dataset("sparse", shape=(9, 9), chunks=(4, 4))  # no chunk written yet
    with h5py.File(path, "r") as f:
        out = np.zeros((9, 9))
        assert read_matrix_direct(f["plain"], None, out, False) and (out == 1).all()
        for name in ("gzip", "contiguous", "sparse"):
            assert not read_matrix_direct(f[name], None, np.zeros((9, 9)), False)

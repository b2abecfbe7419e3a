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
        f.create_dataset("sparse", shape=(9, 9), chunks=(4, 4), dtype="f4")  # no chunk written yet
    with h5py.File(path, "r") as f:
        out = np.zeros((9, 9))
        assert read_matrix_direct(f["plain"], None, out, False) and (out == 1).all()
        for name in ("gzip", "contiguous", "sparse"):
            assert not read_matrix_direct(f[name], None, np.zeros((9, 9)), False)


def _elements(group: h5py.Group) -> dict:
    """Every element below ``group``: (kind, dtype, values, attributes with their dtypes)."""
    found = {}

    def visit(name, obj):
        attrs = {k: (str(obj.attrs.get_id(k).dtype), np.asarray(obj.attrs[k]).tolist()) for k in obj.attrs}
        if isinstance(obj, h5py.Dataset):
            values = np.asarray(obj[()])
            values = np.where(np.isnan(values), None, values) if values.dtype.kind == "f" else values  # NaN == NaN
            data = (str(obj.dtype), obj.chunks, obj.compression, values.tolist())
        else:
            data = "group"
        found[name] = (data, attrs)

    visit("", group)
    group.visititems(visit)
    return found


@pytest.mark.parametrize("index_name", [None, "cell"])
def test_data_frames_are_written_as_anndata_writes_them(tmp_path, index_name):
    import anndata.io
    import pandas as pd

    from cytoatlas.io.writer import _write_dataframe

    df = pd.DataFrame({"cell_type": pd.Categorical(["T", "B", "T"]), "sample": np.array(["s1", "s2", "s3"], object),
                       "n_cells": np.array([10, 20, 30]), "score": [0.5, np.nan, 2.0], "flag": [True, False, True],
                       "small": np.array([1, 2, 3], np.uint16)}, index=pd.Index(["a", "b", "ü"], dtype=object))
    df["sample"] = df["sample"].astype(object)  # pandas 3 makes a column of strings its str dtype
    df.index.name = index_name
    with h5py.File(tmp_path / "ref.h5", "w") as f:
        anndata.io.write_elem(f, "obs", df)
    with h5py.File(tmp_path / "ours.h5", "w") as f:
        assert _write_dataframe(f, "obs", df)
    assert (tmp_path / "ref.h5").read_bytes() == (tmp_path / "ours.h5").read_bytes()  # the same calls, in order
    with h5py.File(tmp_path / "ref.h5") as a, h5py.File(tmp_path / "ours.h5") as b:
        assert _elements(a["obs"]) == _elements(b["obs"])
        pd.testing.assert_frame_equal(anndata.io.read_elem(b["obs"]), anndata.io.read_elem(a["obs"]))
        pd.testing.assert_frame_equal(anndata.io.read_elem(b["obs"]).astype({"sample": object}), df,
                                      check_index_type=False)  # pandas 3 reads strings back as its str dtype
    # anything else is left to anndata
    with h5py.File(tmp_path / "other.h5", "w") as f:
        assert not _write_dataframe(f, "obs", pd.DataFrame({"x": pd.array([1, None], dtype="Int64")}))
        assert not _write_dataframe(f, "obs", pd.DataFrame({"x": pd.Series(["a", None], dtype=object)}))
        assert not _write_dataframe(f, "obs", pd.DataFrame({"x": pd.array(["a", "b"], dtype="string")}))
        assert "obs" not in f

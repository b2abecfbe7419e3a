"""Activity's fast readers give what anndata gives: obs frames through plain h5py, the X columns it keeps."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from anndata.io import read_elem

import cytoatlas
from cytoatlas.demo import demo_config
from cytoatlas.io.h5ad import read_dataframe


@pytest.fixture(scope="module")
def pb_paths(demo_h5ad: Path, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("pb")
    return cytoatlas.pseudobulk(demo_config(demo_h5ad), out, levels=["L2"], n_bootstrap=5, bootstrap_seed=1)


def _same(path: Path, key: str) -> None:
    with h5py.File(path, "r") as f:
        ours, theirs = read_dataframe(f[key]), read_elem(f[key])
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert list(ours.dtypes) == list(theirs.dtypes) and ours.index.dtype == theirs.index.dtype
    assert ours.index.name == theirs.index.name


def test_pseudobulk_obs_read_as_anndata_does(pb_paths: list[Path]) -> None:
    for path in pb_paths:
        _same(path, "obs")


def test_every_column_kind_read_as_anndata_does(tmp_path: Path, monkeypatch) -> None:
    n = 7
    obs = pd.DataFrame({
        "label": pd.Categorical(list("abcabca")),
        "ordered": pd.Categorical(list("xyxyxyx"), categories=["y", "x"], ordered=True),
        "numeric_cats": pd.Categorical([1, 2, 1, 2, 3, 3, 1]),
        "with_nan": pd.Categorical(["a", None, "b", "a", None, "b", "a"]),
        "n": np.arange(n, dtype=np.int64),
        "f": np.linspace(0, 1, n, dtype=np.float32),
        "flag": np.arange(n) % 2 == 0,
        "nullable_int": pd.array([1, None, 3, 4, None, 6, 7], dtype="Int32"),
        "nullable_bool": pd.array([True, None, False, True, None, False, True], dtype="boolean"),
    }, index=pd.Index([f"row{i}" for i in range(n)], name="group"))
    var = pd.DataFrame(index=[f"g{i}" for i in range(3)])
    fast, mixed = tmp_path / "fast.h5ad", tmp_path / "mixed.h5ad"
    ad.AnnData(obs=obs, var=var).write_h5ad(fast)
    # nullable strings (pandas' string dtype; under pandas 3 every string column and the index are written so)
    obs["nullable_str"] = pd.array(["a", None, "c", "d", "e", None, "g"], dtype="string")
    ad.AnnData(obs=obs, var=var).write_h5ad(mixed)
    for path in (fast, mixed):
        _same(path, "obs")
        _same(path, "var")
    import anndata.io

    monkeypatch.setattr(anndata.io, "read_elem", lambda *a: pytest.fail("anndata used"))
    with h5py.File(fast, "r") as f:
        assert list(read_dataframe(f["obs"]).columns) == list(obs.columns[:-1])
    if tuple(map(int, pd.__version__.split(".")[:2])) >= (2, 3):  # older pandas has no StringDtype(na_value=)
        with h5py.File(mixed, "r") as f:
            assert list(read_dataframe(f["obs"]).columns) == list(obs.columns)

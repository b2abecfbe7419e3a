"""What `cytoatlas.pseudobulk` accepts as input, what it refuses, and how it fails: every storage form of the
counts gives the same result; bad input is one clear CytoatlasError and leaves no file behind; writes are
atomic."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from _atlas_factory import (
    BAD_STORAGES,
    VALID_STORAGES,
    counts_key,
    dense,
    groupby_sum,
    read_level,
    tiny_config,
    write_atlas,
)

import cytoatlas
import cytoatlas.io.writer as writer
from cytoatlas import CytoatlasError, output_paths

RUN = {"n_bootstrap": 3, "min_cells": 1, "min_samples": 2, "batch_size": 64}


def _assert_no_output(out):
    """Nothing at all in ``out`` (no result, no temporary file)."""
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def _assert_clean_error(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    for frag in fragments:
        assert frag.lower() in msg.lower(), f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------------------------------------------------------
# every storage form gives the same, exact result


@pytest.fixture(scope="module")
def storage_results(tmp_path_factory):
    base = tmp_path_factory.mktemp("storage")
    results = {}
    for storage in VALID_STORAGES:
        atlas = write_atlas(base / f"{storage}.h5ad", storage)
        cfg = tiny_config(atlas.path, counts=counts_key(storage))
        paths = cytoatlas.pseudobulk(cfg, base / f"out_{storage}", **RUN)
        assert [p.name for p in paths] == [p.name for p in output_paths(base, "tiny", "L1").values()]
        results[storage] = (atlas, read_level(base / f"out_{storage}", "tiny", "L1"))
    return results


@pytest.mark.parametrize("storage", VALID_STORAGES[1:])
def test_storage_forms_give_identical_outputs(storage_results, storage):
    _, ref = storage_results[VALID_STORAGES[0]]
    _, got = storage_results[storage]
    assert set(got) == {"celltype", "samples", "resampled"}
    for kind in ("celltype", "samples"):
        assert list(got[kind].obs_names) == list(ref[kind].obs_names)
        assert list(got[kind].var_names) == list(ref[kind].var_names)
        np.testing.assert_array_equal(dense(got[kind].layers["counts"]), dense(ref[kind].layers["counts"]))
        np.testing.assert_array_equal(dense(got[kind].X), dense(ref[kind].X))
        np.testing.assert_array_equal(dense(got[kind].layers["zscore"]), dense(ref[kind].layers["zscore"]))
        np.testing.assert_array_equal(got[kind].obs["n_cells"].to_numpy(), ref[kind].obs["n_cells"].to_numpy())
    np.testing.assert_array_equal(dense(got["resampled"].X), dense(ref["resampled"].X))


@pytest.mark.parametrize("storage", VALID_STORAGES)
def test_counts_equal_numpy_groupby(storage_results, storage):
    atlas, res = storage_results[storage]
    counts, obs = atlas.counts, atlas.obs
    assert list(res["celltype"].var_names) == atlas.var_names

    main = res["celltype"]
    expected = groupby_sum(counts, obs["cell_type"].astype(object).to_numpy())
    assert sorted(main.obs_names) == sorted(expected)
    for label in main.obs_names:
        row = dense(main[label].layers["counts"])[0]
        np.testing.assert_array_equal(row, expected[label])
        assert main.obs.loc[label, "n_cells"] == (obs["cell_type"] == label).sum()
    # X is log1p CPM of the counts
    c = dense(main.layers["counts"]).astype(np.float64)
    np.testing.assert_allclose(dense(main.X), np.log1p(c / c.sum(axis=1, keepdims=True) * 1e6), rtol=1e-5)

    samples = res["samples"]
    pair = np.array([f"{s}/{c}" for s, c in zip(obs["sample"], obs["cell_type"], strict=True)], dtype=object)
    expected = groupby_sum(counts, pair)
    assert samples.n_obs == len(expected) == 18
    for i in range(samples.n_obs):
        s, ct = samples.obs["sample"].iloc[i], samples.obs["cell_type"].iloc[i]
        np.testing.assert_array_equal(dense(samples.layers["counts"])[i], expected[f"{s}/{ct}"])
        assert samples.obs["n_cells"].iloc[i] == ((obs["sample"] == s) & (obs["cell_type"] == ct)).sum()
    assert samples.obs["n_cells"].sum() == len(obs)


# ---------------------------------------------------------------------------------------------------------------
# bad input: one clear line, nothing written


@pytest.mark.parametrize("storage", BAD_STORAGES)
def test_bad_counts_storage_is_refused(tmp_path, storage):
    atlas = write_atlas(tmp_path / f"{storage}.h5ad", storage)
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(atlas.path), out, **RUN)
    expected = {"csc": ["CSC", "CSR"], "float": ["integer", "0.5"], "negative": ["non-negative", "-2"]}[storage]
    _assert_clean_error(excinfo, *expected)
    _assert_no_output(out)


@pytest.fixture
def good_atlas(tmp_path):
    return write_atlas(tmp_path / "atlas.h5ad", "csr")


@pytest.mark.parametrize("column_key", ["levels", "sample_col"])
def test_missing_obs_column_names_available_columns(good_atlas, tmp_path, column_key):
    entry = {"levels": {"L1": "celltype_typo"}} if column_key == "levels" else {"sample_col": "sampleID"}
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(good_atlas.path, **entry), out, **RUN)
    missing = "celltype_typo" if column_key == "levels" else "sampleID"
    msg = _assert_clean_error(excinfo, missing, "available")
    for col in ("sample", "cell_type", "donor", "lineage"):
        assert col in msg.split("available")[-1]
    _assert_no_output(out)


def test_missing_counts_key_lists_available_matrices(tmp_path):
    atlas = write_atlas(tmp_path / "atlas.h5ad", "raw")
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(atlas.path, counts="layers/counts"), out, **RUN)
    msg = _assert_clean_error(excinfo, "layers/counts", "available")
    after = msg.split("available")[-1]
    assert "X" in after and "raw/X" in after
    _assert_no_output(out)


def test_missing_gene_symbols_column(good_atlas, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(good_atlas.path, gene_symbols="symbol"), out, **RUN)
    msg = _assert_clean_error(excinfo, "symbol", "var")
    assert "gene_ids" in msg  # the var columns that do exist
    _assert_no_output(out)


def test_truncated_file(good_atlas, tmp_path):
    bad = tmp_path / "truncated.h5ad"
    shutil.copy(good_atlas.path, bad)
    os.truncate(bad, bad.stat().st_size // 2)
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(bad), out, **RUN)
    msg = _assert_clean_error(excinfo, str(bad))
    assert any(w in msg.lower() for w in ("truncated", "corrupt", "not readable", "not a readable"))
    _assert_no_output(out)


def test_text_file_is_not_hdf5(tmp_path):
    bad = tmp_path / "notes.h5ad"
    bad.write_text("cell,sample,cell_type\nc1,S0,T0\n")
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(bad), out, **RUN)
    _assert_clean_error(excinfo, str(bad), "HDF5")
    _assert_no_output(out)


def test_missing_file(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(tmp_path / "nowhere.h5ad"), out, **RUN)
    _assert_clean_error(excinfo, "nowhere.h5ad", "no such file")
    _assert_no_output(out)


def test_where_matching_no_cells(good_atlas, tmp_path):
    levels = {"L1": "cell_type", "tumor": {"by": ["cell_type"], "where": {"lineage": ["Tumor"]}}}
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(good_atlas.path, levels=levels), out, **RUN)
    msg = _assert_clean_error(excinfo, "tumor", "lineage", "Tumor")
    assert "A" in msg.split("labels:")[-1] and "B" in msg.split("labels:")[-1]  # the labels that exist
    _assert_no_output(out)


def test_unknown_level_name(good_atlas, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(good_atlas.path), out, levels=["L9"], **RUN)
    msg = _assert_clean_error(excinfo, "L9")
    assert "L1" in msg  # names the levels there are
    _assert_no_output(out)


@pytest.mark.parametrize("param", ["batch_size", "min_cells", "min_samples", "n_bootstrap"])
def test_invalid_numeric_parameters(good_atlas, tmp_path, param):
    out = tmp_path / "out"
    bad = -1 if param == "n_bootstrap" else 0
    with pytest.raises(CytoatlasError) as excinfo:
        cytoatlas.pseudobulk(tiny_config(good_atlas.path), out, **{**RUN, param: bad})
    _assert_clean_error(excinfo, param)
    _assert_no_output(out)


def test_failed_run_leaves_existing_outputs_alone(tmp_path):
    """A run that fails on bad counts must not touch earlier results in ``out``."""
    good = write_atlas(tmp_path / "good.h5ad", "csr")
    out = tmp_path / "out"
    cytoatlas.pseudobulk(tiny_config(good.path), out, **RUN)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write_atlas(tmp_path / "bad.h5ad", "float")
    with pytest.raises(CytoatlasError):
        cytoatlas.pseudobulk(tiny_config(bad.path), out, **RUN)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ---------------------------------------------------------------------------------------------------------------
# NaN labels


def test_nan_labels_left_out_of_level_but_in_atlas_stats(tmp_path):
    atlas = write_atlas(tmp_path / "atlas.h5ad", "csr", n_nan_types=20)
    n_labelled = int(atlas.obs["cell_type"].notna().sum())
    assert n_labelled == 280
    out = tmp_path / "out"
    cytoatlas.pseudobulk(tiny_config(atlas.path), out, **RUN)
    res = read_level(out, "tiny", "L1")
    main, samples = res["celltype"], res["samples"]
    assert main.obs["n_cells"].sum() == n_labelled
    assert samples.obs["n_cells"].sum() == n_labelled
    assert "nan" not in {str(x).lower() for x in main.obs_names}
    assert main.uns["atlas_stats"]["n_cells"] == len(atlas.obs) == 300
    labelled = atlas.obs["cell_type"].notna().to_numpy()
    np.testing.assert_array_equal(dense(main.layers["counts"]).sum(axis=0), atlas.counts[labelled].sum(axis=0))
    # atlas_stats are over all kept cells, labelled or not
    lib = atlas.counts.sum(axis=1, keepdims=True)
    sc = np.log1p(np.divide(atlas.counts * 1e6, lib, out=np.zeros(atlas.counts.shape), where=lib > 0))
    np.testing.assert_allclose(main.uns["atlas_stats"]["mean"], sc.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(main.uns["atlas_stats"]["std"], sc.std(axis=0, ddof=1), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# atomic writes


def _frames(n_obs=4, n_vars=6):
    obs = pd.DataFrame({"n": np.arange(n_obs)}, index=[f"r{i}" for i in range(n_obs)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_vars)])
    return obs, var


def _good_blocks(n_obs=4, n_vars=6):
    yield slice(0, n_vars), {"X": np.ones((n_obs, n_vars), dtype=np.float32)}


def _failing_blocks(n_obs=4, n_vars=6):
    yield slice(0, 3), {"X": np.ones((n_obs, 3), dtype=np.float32)}
    raise RuntimeError("disk on fire")


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_writer_success_writes_readable_file(tmp_path):
    import anndata as ad

    target = tmp_path / "res.h5ad"
    obs, var = _frames()
    assert writer.write_h5ad_columns(target, obs, var, {"a": 1}, {"X": np.float32}, _good_blocks()) == target
    assert _siblings(target) == ["res.h5ad"]
    back = ad.read_h5ad(target)
    np.testing.assert_array_equal(back.X, np.ones((4, 6), dtype=np.float32))
    assert list(back.obs_names) == list(obs.index) and back.uns["a"] == 1


def test_writer_column_blocks_of_any_width(tmp_path):
    """Blocks that are whole chunk columns are stored as raw chunks (edge chunks padded); narrower or unaligned
    blocks and other dtypes go through h5py. Either way the file holds exactly the values given."""
    import anndata as ad

    n_obs, n_vars = 600, 2600  # row chunks of 256 (the last one partial), column chunks of 1024
    rng = np.random.default_rng(0)
    x = rng.random((n_obs, n_vars), dtype=np.float32)
    counts = rng.integers(0, 1000, (n_obs, n_vars)).astype(np.int32)
    edges = [0, 1024, 1500, 2048, 2600]  # aligned, narrow, unaligned, the edge column (552 wide)
    blocks = [(slice(a, b), {"X": x[:, a:b], "counts": counts[:, a:b].astype(np.float64) if a == 1024
                              else counts[:, a:b]}) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    target = tmp_path / "res.h5ad"
    obs, var = _frames(n_obs, n_vars)
    writer.write_h5ad_columns(target, obs, var, {}, {"X": np.float32, "counts": np.int32}, reversed(blocks))
    back = ad.read_h5ad(target)
    np.testing.assert_array_equal(back.X, x)
    np.testing.assert_array_equal(back.layers["counts"], counts)
    assert back.layers["counts"].dtype == np.int32


def test_writer_failing_blocks_leave_nothing(tmp_path):
    target = tmp_path / "res.h5ad"
    obs, var = _frames()
    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.write_h5ad_columns(target, obs, var, {}, {"X": np.float32}, _failing_blocks())
    assert not target.exists()
    assert _siblings(target) == []


def test_writer_failing_write_elem_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    import anndata.io

    monkeypatch.setattr(anndata.io, "write_elem", broken)  # the writer imports it when it opens a file
    target = tmp_path / "res.h5ad"
    obs, var = _frames()
    with pytest.raises(OSError, match="no space"):
        writer.write_h5ad_columns(target, obs, var, {}, {"X": np.float32}, _good_blocks())
    assert not target.exists()
    assert _siblings(target) == []


def test_writer_failure_keeps_existing_target(tmp_path):
    target = tmp_path / "res.h5ad"
    obs, var = _frames()
    writer.write_h5ad_columns(target, obs, var, {}, {"X": np.float32}, _good_blocks())
    before = (target.read_bytes(), target.stat().st_ino, target.stat().st_mtime_ns)
    with pytest.raises(RuntimeError):
        writer.write_h5ad_columns(target, obs, var, {}, {"X": np.float32}, _failing_blocks())
    assert (target.read_bytes(), target.stat().st_ino, target.stat().st_mtime_ns) == before
    assert _siblings(target) == ["res.h5ad"]


def test_pseudobulk_failing_midway_leaves_no_partial_file(tmp_path, monkeypatch):
    """A crash while the files are being filled leaves no output file and no temporary file behind."""
    atlas = write_atlas(tmp_path / "atlas.h5ad", "csr")
    from cytoatlas._pseudobulk import outputs

    real, calls = outputs._block, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second file's block, after the first file got its data
            raise RuntimeError("killed mid-write")
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "_block", flaky)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed mid-write"):
        cytoatlas.pseudobulk(tiny_config(atlas.path), out, **RUN)
    assert len(calls) >= 2  # at least one file had data written before the crash
    assert not out.exists() or list(out.iterdir()) == []  # a directory it created is removed again


@pytest.mark.parametrize(("n", "most", "want"), [(600, 256, 200), (7300, 256, 252), (20000, 1024, 1000),
                                                 (6, 256, 6), (1024, 1024, 1024), (1025, 1024, 513), (1, 256, 1)])
def test_output_chunks_split_matrices_into_equal_parts(n, most, want):
    """HDF5 stores edge chunks whole: chunks of equal parts waste less than one row per chunk on disk."""
    got = writer.even_chunk(n, most)
    assert got == want
    n_chunks = -(-n // got)
    assert got <= most and n_chunks * got - n < n_chunks

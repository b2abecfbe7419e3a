"""The catalogue of bad inputs: each gives one clear, specific line on stderr (no traceback unless --debug), a
non-zero exit, and no output file."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _atlas_factory import make_counts, write_atlas

from cytoatlas.cli import main


def _registry(tmp: Path, h5ad: Path, extra: str = "", levels: str = 'L1 = "cell_type"') -> Path:
    reg = tmp / "reg.toml"
    reg.write_text(f'[atlas.x]\nh5ad = "{h5ad}"\nsample_col = "sample"\n{extra}[atlas.x.levels]\n{levels}\n')
    return reg


def _adata_file(tmp: Path, name: str, edit) -> Path:
    counts, obs = make_counts()
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(40)]))
    edit(adata)
    path = tmp / name
    adata.write_h5ad(path)
    return path


def _edit_h5(tmp: Path, name: str, edit) -> Path:
    path = tmp / name
    shutil.copy(write_atlas(tmp / "good.h5ad", "csr").path, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _set_indptr(f: h5py.File, row: int) -> None:
    ip = f["X/indptr"][()]
    ip[row] = ip[row + 1] + 5
    f["X/indptr"][...] = ip


def _short_indptr(f: h5py.File) -> None:
    ip = f["X/indptr"][()]
    del f["X/indptr"]
    f["X/indptr"] = ip[:-1]


def _all_nan(a: ad.AnnData) -> None:
    a.obs["cell_type"] = pd.Categorical([np.nan] * a.n_obs, categories=["T0"])


def _duplicate_var(a: ad.AnnData) -> None:
    a.var_names = ["G0", "G0"] + [f"G{i}" for i in range(2, a.n_vars)]


def _pseudobulk_case(tmp: Path, case: str) -> tuple[list[str], str]:
    """(CLI arguments, expected message) of a pseudobulk input case."""
    good = write_atlas(tmp / "good.h5ad", "csr").path
    out = ["--out", str(tmp / "out")]
    cases = {
        "not_hdf5": (lambda: (tmp / "x.h5ad").write_text("cell,gene\n") and tmp / "x.h5ad", "not a readable HDF5"),
        "truncated": (lambda: _truncate(good, tmp), "not a readable HDF5"),
        "missing_X": (lambda: _edit_h5(tmp, "nox.h5ad", lambda f: f.__delitem__("X")), "no counts matrix 'X'"),
        "csc": (lambda: write_atlas(tmp / "csc.h5ad", "csc").path, "CSC"),
        "negative": (lambda: write_atlas(tmp / "neg.h5ad", "negative").path, "non-negative integers"),
        "non_integer": (lambda: write_atlas(tmp / "float.h5ad", "float").path, "non-negative integers"),
        "indptr_decreasing": (lambda: _edit_h5(tmp, "ip.h5ad", lambda f: _set_indptr(f, 10)), "indptr decreases"),
        "indptr_length": (lambda: _edit_h5(tmp, "ip2.h5ad", _short_indptr), "not a valid CSR matrix"),
        "all_labels_nan": (lambda: _adata_file(tmp, "nan.h5ad", _all_nan), "no cell has a label"),
        "duplicate_var_names": (lambda: _adata_file(tmp, "dup.h5ad", _duplicate_var), "names are not unique"),
    }
    if case in cases:
        make, message = cases[case]
        return ["pseudobulk", "--registry", str(_registry(tmp, make())), "--atlas", "x", *out], message
    reg = _registry(tmp, good)
    base = ["pseudobulk", "--registry", str(reg), "--atlas", "x"]
    if case == "obs_column_missing":
        return ["pseudobulk", "--registry", str(_registry(tmp, good, levels='L1 = "celltype"')), "--atlas", "x",
                *out], "available: cell_type, donor, lineage, sample"
    if case == "below_min_cells":
        return [*base, *out, "--min-cells", "1000"], "no group has --min-cells 1000"
    if case == "registry_syntax":
        (tmp / "bad.toml").write_text("[atlas.x\nh5ad = 1\n")
        return ["pseudobulk", "--registry", str(tmp / "bad.toml"), "--atlas", "x", *out], "not valid TOML"
    if case == "registry_unknown_key":
        return ["pseudobulk", "--registry", str(_registry(tmp, good, extra='sample_column = "s"\n')), "--atlas",
                "x", *out], "unknown keys ['sample_column']"
    if case == "level_where_missing_column":
        return ["pseudobulk", "--registry", str(_registry(tmp, good, levels='L1 = { by = ["cell_type"], where = '
                                                          '{ tissue = ["Tumor"] } }')), "--atlas", "x", *out], \
            "obs has no column 'tissue'"
    if case == "out_is_file":
        (tmp / "file").write_text("x")
        return [*base, "--out", str(tmp / "file")], "is a file"
    if case == "out_not_creatable":
        return [*base, "--out", "/proc/cytoatlas-test/out"], "cannot create output directory"
    if case == "unknown_atlas":
        return ["pseudobulk", "--registry", str(reg), "--atlas", "nope", *out], "unknown atlas 'nope'"
    if case == "bad_batch_size":
        return [*base, *out, "--batch-size", "0"], "batch_size must be an integer >= 1"
    raise AssertionError(case)


def _truncate(good: Path, tmp: Path) -> Path:
    path = tmp / "trunc.h5ad"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


PSEUDOBULK_CASES = ["not_hdf5", "truncated", "missing_X", "csc", "negative", "non_integer", "indptr_decreasing",
                    "indptr_length", "all_labels_nan", "duplicate_var_names", "obs_column_missing",
                    "below_min_cells", "registry_syntax", "registry_unknown_key", "level_where_missing_column",
                    "out_is_file", "out_not_creatable", "unknown_atlas", "bad_batch_size"]


def _outputs(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if "_pseudobulk_" in p.name or "_activity" in p.name or p.name == "manifest.json"]


@pytest.mark.parametrize("case", PSEUDOBULK_CASES)
def test_bad_pseudobulk_input(tmp_path: Path, capsys, case: str) -> None:
    args, message = _pseudobulk_case(tmp_path, case)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cytoatlas: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert _outputs(tmp_path) == []


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    args, _ = _pseudobulk_case(tmp_path, "csc")
    with pytest.raises(Exception, match="CSC"):
        main(["--debug", *args])


@pytest.fixture(scope="module")
def pb_file(demo_h5ad: Path, tmp_path_factory) -> Path:
    import cytoatlas
    from cytoatlas.demo import demo_config

    out = tmp_path_factory.mktemp("pb")
    return cytoatlas.pseudobulk(demo_config(demo_h5ad), out, levels=["L1"], n_bootstrap=0)[0]


@pytest.mark.parametrize(("case", "message"), [
    ("no_overlap", "signatures are matched on symbols"),
    ("signature_duplicates", "duplicated gene name"),
    ("signature_nan", "missing (NaN)"),
    ("not_pseudobulk", "not a cytoatlas pseudobulk file"),
])
def test_bad_activity_input(pb_file: Path, demo_h5ad: Path, tmp_path: Path, capsys, case: str, message: str) -> None:
    sig = tmp_path / "custom.tsv"
    genes = {"no_overlap": ["XYZ1", "XYZ2", "XYZ3"], "signature_duplicates": ["CD4", "CD4", "IL7R"]}.get(
        case, ["CD4", "CD8A", "IL7R"])
    values = [1.0, np.nan, 2.0] if case == "signature_nan" else [1.0, -1.0, 2.0]
    pd.DataFrame({"S1": values, "S2": values[::-1]}, index=genes).to_csv(sig, sep="\t")
    target = demo_h5ad if case == "not_pseudobulk" else pb_file
    capsys.readouterr()
    assert main(["activity", str(target), "--signature-file", str(sig), "--signatures", "custom",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cytoatlas: error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def _one_sample(a: ad.AnnData) -> None:
    a.obs = a.obs.assign(sample="S0")


def test_one_sample_still_writes_the_main_outputs(tmp_path: Path, capsys, caplog) -> None:
    """A bootstrap is impossible with one sample: said, and every other output still written."""
    path = _adata_file(tmp_path, "one.h5ad", _one_sample)
    out = tmp_path / "out"
    assert main(["pseudobulk", "--registry", str(_registry(tmp_path, path)), "--atlas", "x", "--out", str(out)]) == 0
    assert "bootstrap needs --min-samples 5" in caplog.text
    main_file = ad.read_h5ad(out / "x_pseudobulk_l1.h5ad")
    assert main_file.n_obs == 3
    assert ad.read_h5ad(out / "x_pseudobulk_l1_resampled.h5ad").n_obs == 0


def test_failed_flush_places_no_output(tmp_path: Path, capsys, monkeypatch) -> None:
    """Files are fsynced on a background thread as each one is complete; if one flush fails (EIO), no new
    file is renamed into place, the previous outputs and manifest stay, and no temporary file is left."""
    good = write_atlas(tmp_path / "good.h5ad", "csr").path
    args = ["pseudobulk", "--registry", str(_registry(tmp_path, good)), "--atlas", "x", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    from cytoatlas.io import writer

    real, flushed = writer.fsync_file, []

    def flaky(path):
        flushed.append(path)
        if len(flushed) == 2:
            raise OSError(errno.EIO, "Input/output error", str(path))
        real(path)

    monkeypatch.setattr(writer, "fsync_file", flaky)
    capsys.readouterr()
    assert main([*args, "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Input/output error" in err and "\n" not in err
    assert len(flushed) == 3  # every file was flushed (one failed), none renamed
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before


def test_full_disk_keeps_previous_outputs(tmp_path: Path, capsys, monkeypatch) -> None:
    """A write error (ENOSPC) ends the run with one line; the outputs of the previous run stay intact."""
    good = write_atlas(tmp_path / "good.h5ad", "csr").path
    args = ["pseudobulk", "--registry", str(_registry(tmp_path, good)), "--atlas", "x", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    from cytoatlas.io import writer

    def full(self, cols, arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(self._tmp))

    monkeypatch.setattr(writer.ColumnWriter, "write", full)
    capsys.readouterr()
    assert main([*args, "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and "\n" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before

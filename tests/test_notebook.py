"""The notebook path: ``cytoatlas.pp`` / ``cytoatlas.tl`` on objects in memory give the file path's numbers.

Tests that call secactpy are marked ``parity`` (it is the `parity` extra, not a dependency)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import KANG

import cytoatlas
from cytoatlas import pp, tl
from cytoatlas._activity import activity, activity_path
from cytoatlas.cli import main
from cytoatlas.demo import demo_config
from cytoatlas.errors import CytoatlasError
from cytoatlas.registry import atlas_from_mapping

KANG_CFG = {"sample_col": "donor", "levels": {"ct": "cell_type"}, "gene_symbols": "symbol"}
PP_KW = {"sample_col": "donor", "groupby": {"ct": "cell_type"}, "gene_symbols": "symbol"}  # the same, as arguments


def assert_same(mem: ad.AnnData, file: ad.AnnData) -> None:
    """Equal bit for bit: X and every layer (dtype, shape, values, NaN where NaN), obs, var, the recorded
    parameters and atlas statistics."""
    assert mem.X.dtype == file.X.dtype and set(mem.layers) == set(file.layers)
    np.testing.assert_array_equal(mem.X, file.X)
    for k in file.layers:
        assert mem.layers[k].dtype == file.layers[k].dtype
        np.testing.assert_array_equal(mem.layers[k], file.layers[k])
    pd.testing.assert_frame_equal(mem.obs, file.obs)
    pd.testing.assert_frame_equal(mem.var, file.var)
    for key in ("kind", "level", "atlas", "separator"):
        assert mem.uns.get(key) == file.uns.get(key)
    if "atlas_stats" in file.uns:
        for key, value in file.uns["atlas_stats"].items():
            np.testing.assert_array_equal(mem.uns["atlas_stats"][key], value)


def _files_by_kind(paths: list[Path]) -> dict[tuple[str, str], ad.AnnData]:
    out = {}
    for p in paths:
        f = ad.read_h5ad(p)
        out[(f.uns["level"], f.uns["kind"])] = f
    return out


@pytest.fixture(scope="module")
def kang_files(tmp_path_factory) -> dict[tuple[str, str], ad.AnnData]:
    out = tmp_path_factory.mktemp("kang_pb")
    cfg = atlas_from_mapping("kang", {"h5ad": str(KANG), **KANG_CFG})
    return _files_by_kind(cytoatlas.pseudobulk(cfg, out, n_bootstrap=12, min_samples=3, batch_size=2000))


@pytest.mark.parametrize("form", ["csr", "csc", "dense", "layer", "raw", "backed"])
def test_pseudobulk_in_memory_equals_the_files(kang_files, form: str, tmp_path: Path) -> None:
    adata = ad.read_h5ad(KANG)
    counts = adata.X
    kw: dict = {}
    if form == "csc":
        adata.X = counts.tocsc()
    elif form == "dense":
        adata.X = counts.toarray()
    elif form == "layer":
        adata.layers["counts"] = counts
        adata.X = sp.csr_matrix(np.log1p(counts.astype(np.float32)))  # not the counts: must not be read
        kw["layer"] = "counts"
    elif form == "raw":
        adata.raw = adata.copy()
        adata.X = sp.csr_matrix(np.log1p(counts.astype(np.float32)))
        kw["use_raw"] = True
    elif form == "backed":
        adata = ad.read_h5ad(KANG, backed="r")
    res = pp.pseudobulk(adata, **PP_KW, name="kang", n_bootstrap=12, min_samples=3, batch_size=777, **kw)
    assert list(res) == ["ct"]
    for (level, kind), file in kang_files.items():
        assert_same(getattr(res[level], kind), file)
    assert res["ct"].samples.uns["input"]["n_obs"] == adata.n_obs


def test_pseudobulk_in_memory_every_level_of_the_demo(demo_h5ad: Path, tmp_path: Path) -> None:
    """Composite levels, `where` filters, exclusions, donors as bootstrap units, sample columns."""
    cfg = demo_config(demo_h5ad)
    files = _files_by_kind(cytoatlas.pseudobulk(cfg, tmp_path, n_bootstrap=5, batch_size=1500))
    res = pp.pseudobulk(ad.read_h5ad(demo_h5ad), atlas=cfg, n_bootstrap=5)
    assert sorted(res) == sorted(lev.name for lev in cfg.levels)
    assert len(files) == 3 * len(cfg.levels)
    for (level, kind), file in files.items():
        assert_same(getattr(res[level], kind), file)
    assert "Doublets" not in set(res["L1"].celltype.obs["cell_type"])


def test_pseudobulk_arguments_override_a_registry_entry_and_bad_input_fails() -> None:
    adata = ad.read_h5ad(KANG)
    res = pp.pseudobulk(adata, **PP_KW, n_bootstrap=0, exclude={"cell_type": ["B cells"]})
    assert res["ct"].resampled is None and "B cells" not in set(res["ct"].celltype.obs["cell_type"])
    with pytest.raises(CytoatlasError, match="sample_col and levels"):
        pp.pseudobulk(adata)
    with pytest.raises(CytoatlasError, match="no column 'nope'.*available: donor"):
        pp.pseudobulk(adata, sample_col="nope", groupby="cell_type")
    with pytest.raises(CytoatlasError, match="no counts matrix 'layers/counts'"):
        pp.pseudobulk(adata, sample_col="donor", groupby="cell_type", layer="counts")


@pytest.fixture(scope="module")
def activity_files(kang_files, tmp_path_factory) -> dict:
    """The CLI's activity of the Kang pseudobulk files (cell type with its bootstrap, sample x cell type)."""
    root = tmp_path_factory.mktemp("kang_act")
    paths = {}
    for (_, kind), f in kang_files.items():
        paths[kind] = root / "pb" / f"kang_pseudobulk_ct{'' if kind == 'celltype' else '_' + kind}.h5ad"
        paths[kind].parent.mkdir(exist_ok=True)
        f.write_h5ad(paths[kind])
    out = root / "act"
    assert main(["-q", "activity", *map(str, paths.values()), "--out", str(out), "--signatures",
                 "cytosig,secact", "--centre", "within:cell_type"]) == 0
    return {"out": out, "pb": paths}


@pytest.mark.parametrize("sig", ["cytosig", "secact"])
def test_activity_in_memory_equals_the_cli(kang_files, activity_files, sig: str) -> None:
    out, pb = activity_files["out"], activity_files["pb"]
    for kind in ("celltype", "samples"):
        boot = kang_files[("ct", "resampled")] if kind == "celltype" else None
        mem = tl.activity(kang_files[("ct", kind)], sig, centre="within:cell_type", bootstrap=boot)
        file = ad.read_h5ad(activity_path(out, pb[kind], sig))
        assert set(mem.layers) == set(file.layers) >= {"beta", "se", "pvalue"}
        assert ("z_ci_low" in mem.layers) == (kind == "celltype")  # the bootstrap's intervals
        np.testing.assert_allclose(mem.X, file.X, rtol=0, atol=1e-12)
        for k in file.layers:
            np.testing.assert_allclose(mem.layers[k], file.layers[k], rtol=0, atol=1e-12)
        pd.testing.assert_frame_equal(mem.obs, file.obs)
        pd.testing.assert_frame_equal(mem.var, file.var)
        assert mem.uns["centre"] == file.uns["centre"] and mem.uns["genes_used"].tolist() == \
            file.uns["genes_used"].tolist()


def test_activity_of_pseudobulk_straight_from_pp(tmp_path: Path) -> None:
    """pp -> tl in memory equals pseudobulk -> activity through files, with the permutation method."""
    cfg = atlas_from_mapping("kang", {"h5ad": str(KANG), **KANG_CFG})
    (path, *_) = cytoatlas.pseudobulk(cfg, tmp_path / "pb", n_bootstrap=0)
    (file,) = activity([path], tmp_path / "act", signatures=["cytosig"], method="permutation", n_rand=50,
                       permutation_seed=7, lambda_=1e4)
    pb = pp.pseudobulk(ad.read_h5ad(KANG), atlas=cfg, n_bootstrap=0)
    mem = tl.activity(pb["ct"].celltype, "cytosig", method="permutation", n_rand=50, permutation_seed=7,
                      lambda_=1e4)
    file = ad.read_h5ad(file)
    np.testing.assert_allclose(mem.X, file.X, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mem.layers["se"], file.layers["se"], rtol=0, atol=1e-12)
    assert mem.uns["method"] == "permutation" and mem.uns["n_rand"] == 50


def _bulk_counts() -> pd.DataFrame:
    """Kang's counts summed per donor: a bulk table of 8 samples, genes (symbols) x samples."""
    a = ad.read_h5ad(KANG)
    donors = sorted(a.obs["donor"].astype(str).unique())
    sums = [np.asarray(a.X[(a.obs["donor"].astype(str) == d).to_numpy()].sum(axis=0)).ravel() for d in donors]
    return pd.DataFrame(np.stack(sums, axis=1), index=pd.Index(a.var["symbol"].astype(str), name="gene"),
                        columns=[f"donor_{d}" for d in donors])


@pytest.mark.parametrize(("values", "suffix"), [("counts", ".tsv"), ("tpm", ".csv"), ("counts", ".parquet")])
def test_bulk_table_equals_the_dataframe(tmp_path: Path, values: str, suffix: str) -> None:
    df = _bulk_counts()
    if values == "tpm":
        df = df / df.sum() * 1e6
    path = tmp_path / f"bulk{suffix}"
    if suffix == ".parquet":
        from cytoatlas.io.tables import write_parquet

        write_parquet(df.reset_index(), path)
    else:
        df.to_csv(path, sep="\t" if suffix == ".tsv" else ",")
    assert main(["-q", "activity", str(path), "--values", values, "--out", str(tmp_path / "act"), "--signatures",
                 "cytosig"]) == 0
    file = ad.read_h5ad(tmp_path / "act" / "bulk_cytosig_activity.h5ad")
    mem = tl.activity(df, "cytosig", values=values)
    assert list(file.obs_names) == list(df.columns)
    np.testing.assert_allclose(file.X, mem.X, rtol=0, atol=1e-12)
    np.testing.assert_allclose(file.layers["beta"], mem.layers["beta"], rtol=0, atol=1e-12)
    assert file.uns["values"] == values
    # the documented normalisation, computed independently
    expected = np.log2(df.to_numpy() + 1) if values == "tpm" else np.log1p(df.to_numpy() / df.to_numpy().sum(0) * 1e6)
    np.testing.assert_allclose(tl.normalise_bulk(df, values).to_numpy(), expected, rtol=1e-12)
    same = tl.activity(pd.DataFrame(expected, index=df.index, columns=df.columns), "cytosig", values="log")
    np.testing.assert_allclose(same.X, mem.X, rtol=0, atol=1e-12)


def test_bulk_anndata_and_obsm(tmp_path: Path, capsys) -> None:
    df = _bulk_counts()
    bulk = ad.AnnData(X=df.to_numpy().T.astype(np.int64), obs=pd.DataFrame(index=df.columns),
                      var=pd.DataFrame({"symbol": df.index.to_numpy()}, index=[f"g{i}" for i in range(len(df))]))
    res = tl.activity(bulk, "cytosig", gene_symbols="symbol", key_added="cytosig")
    ref = tl.activity(df, "cytosig", values="counts")  # an integer matrix is taken as counts
    np.testing.assert_allclose(res.X, ref.X, rtol=0, atol=1e-12)
    assert bulk.obsm["cytosig"].shape == (8, res.n_vars)
    np.testing.assert_array_equal(bulk.obsm["cytosig"].to_numpy(), res.X)
    np.testing.assert_array_equal(bulk.obsm["cytosig_pvalue"].to_numpy(), res.layers["pvalue"])
    path = tmp_path / "bulk.h5ad"
    bulk.write_h5ad(path)
    assert main(["-q", "activity", str(path), "--values", "counts", "--gene-symbols", "symbol", "--out",
                 str(tmp_path / "act"), "--signatures", "cytosig"]) == 0
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "act" / "bulk_cytosig_activity.h5ad").X, ref.X, atol=1e-12)
    assert main(["activity", str(tmp_path / "bulk.tsv.missing.tsv"), "--out", str(tmp_path / "x")]) == 2
    assert "--values {counts,tpm,log}" in capsys.readouterr().err
    # without --values an AnnData that is not our pseudobulk is refused as before, not taken as bulk
    assert main(["activity", str(path), "--out", str(tmp_path / "y"), "--signatures", "cytosig"]) == 2
    assert "not a cytoatlas pseudobulk file" in capsys.readouterr().err


def test_custom_signature_matrix_as_a_dataframe() -> None:
    """A custom genes x signatures table: the same activity as the same matrix given as a file."""
    from cytoatlas._activity import load_signatures

    cytosig = load_signatures("cytosig")
    matrix = pd.DataFrame(cytosig.matrix[:, :6], index=cytosig.genes.astype(str),
                          columns=cytosig.signatures[:6].astype(str))
    df = _bulk_counts()
    res = tl.activity(df, matrix, values="counts")
    assert list(res.var_names) == sorted(matrix.columns) and res.uns["signature"]["name"] == "custom"
    with pytest.raises(CytoatlasError, match="unique"):
        tl.activity(df, pd.concat([matrix, matrix.iloc[:1]]), values="counts")


@pytest.mark.parity
@pytest.mark.parametrize("sig", ["cytosig", "secact"])
def test_dataframe_matches_secactpy(kang_files, sig: str) -> None:
    import secactpy  # the `parity` extra: not a dependency, and absent from the numpy 2 environments

    pb = kang_files[("ct", "samples")]
    expr = pd.DataFrame(pb.X.T.astype(np.float64), index=pb.var["gene_symbol"].astype(str).to_numpy(),
                        columns=pb.obs_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = secactpy.secact_activity_inference(expr, sig_matrix=sig, n_rand=1000, seed=0, verbose=False)
    ours = tl.activity(expr, sig)
    assert list(ours.var_names) == list(ref["beta"].index) and list(ours.obs_names) == list(ref["beta"].columns)
    beta_ref = ref["beta"].to_numpy().T
    np.testing.assert_allclose(ours.layers["beta"], beta_ref, rtol=0, atol=1e-10)
    assert np.corrcoef(ours.X.ravel(), ref["zscore"].to_numpy().T.ravel())[0, 1] >= 0.999


def test_cell_activity_equals_the_cells_files(tmp_path: Path) -> None:
    cfg = atlas_from_mapping("kang", {"h5ad": str(KANG), **KANG_CFG, "exclude": {"cell_type": ["Megakaryocytes"]}})
    (path,) = cytoatlas.cells(cfg, tmp_path, signatures=["cytosig"], layers=["beta", "pvalue"], batch_size=3000)
    file = ad.read_h5ad(path)
    adata = ad.read_h5ad(KANG)
    adata.X = adata.X.tocsc()
    mem = tl.cell_activity(adata, "cytosig", atlas=cfg, batch_size=1000, key_added="act")["cytosig"]
    np.testing.assert_array_equal(mem.X, file.X)
    for k in ("beta", "pvalue"):
        np.testing.assert_array_equal(mem.layers[k], file.layers[k])
    pd.testing.assert_frame_equal(mem.obs, file.obs)
    pd.testing.assert_frame_equal(mem.var, file.var)
    scores = adata.obsm["act_cytosig"]
    excluded = (adata.obs["cell_type"] == "Megakaryocytes").to_numpy()
    assert scores.shape == (adata.n_obs, file.n_vars) and scores[excluded].isna().all().all()
    np.testing.assert_array_equal(scores[~excluded].to_numpy(), file.X)


def test_namespaces_load_on_first_use() -> None:
    code = ("import sys, cytoatlas; assert 'cytoatlas.pp' not in sys.modules and 'numba' not in sys.modules; "
            "import typing; print(cytoatlas.pp.pseudobulk.__module__, cytoatlas.tl.activity.__module__, "
            "'pp' in dir(cytoatlas))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cytoatlas.pp", "cytoatlas.tl", "True"]

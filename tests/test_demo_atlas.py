"""Tests for the deterministic demo-atlas generator (small sizes, so they stay fast)."""

from __future__ import annotations

import pathlib
import re

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cytoatlas._activity.signature_data import signature_data_file
from cytoatlas.demo_atlas import DEMO_EXCLUDE, DEMO_LEVELS, write_demo_atlas

N_CELLS, N_DONORS = 5_000, 20


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("demo_atlas")
    for name, seed in [("a.h5ad", 0), ("b.h5ad", 0), ("c.h5ad", 1)]:
        returned = write_demo_atlas(out / name, n_cells=N_CELLS, n_donors=N_DONORS, seed=seed)
        assert returned == out / name
    return out


@pytest.fixture(scope="module")
def adata(atlas_dir: pathlib.Path) -> anndata.AnnData:
    return anndata.read_h5ad(atlas_dir / "a.h5ad")


@pytest.fixture(scope="module")
def cytosig() -> pd.DataFrame:
    return pd.read_csv(signature_data_file("CytoSig.tsv.gz"), sep="\t", index_col=0)


def _log_cpm(adata: anndata.AnnData, genes: pd.Index) -> np.ndarray:
    X = sp.csr_matrix(adata.X)
    totals = np.asarray(X.sum(axis=1)).ravel()
    cols = adata.var_names.get_indexer(genes)
    assert (cols >= 0).all()
    return np.log1p(X[:, cols].toarray() / totals[:, None] * 1e6)


def test_atomic_write_leaves_only_the_targets(atlas_dir: pathlib.Path) -> None:
    assert sorted(p.name for p in atlas_dir.iterdir()) == ["a.h5ad", "b.h5ad", "c.h5ad"]


def test_same_seed_is_identical_and_other_seed_differs(atlas_dir: pathlib.Path, adata: anndata.AnnData) -> None:
    b = anndata.read_h5ad(atlas_dir / "b.h5ad")
    c = anndata.read_h5ad(atlas_dir / "c.h5ad")
    for attr in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(adata.X, attr), getattr(b.X, attr))
    pd.testing.assert_frame_equal(adata.obs, b.obs)
    pd.testing.assert_frame_equal(adata.var, b.var)
    assert c.n_obs == adata.n_obs
    assert not adata.obs_names.equals(c.obs_names)
    assert adata.X.nnz != c.X.nnz or not np.array_equal(adata.X.data, c.X.data)
    # gene universe and ids do not depend on the seed
    pd.testing.assert_frame_equal(adata.var, c.var)


def test_on_disk_layout_is_gzip_csr(atlas_dir: pathlib.Path, adata: anndata.AnnData) -> None:
    with h5py.File(atlas_dir / "a.h5ad", "r") as f:
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
        assert tuple(f["X"].attrs["shape"]) == (N_CELLS, adata.n_vars)
        assert f["X/data"].dtype == np.float32
        assert f["X/indices"].dtype == np.int32
        assert f["X/data"].compression == "gzip"
        assert f["X/indices"].compression == "gzip"


def test_counts_are_realistic_integers(adata: anndata.AnnData) -> None:
    X = adata.X
    assert sp.issparse(X) and X.format == "csr" and X.has_sorted_indices
    assert X.shape == (N_CELLS, adata.n_vars)
    assert (X.data > 0).all()
    np.testing.assert_array_equal(X.data, np.round(X.data))
    nnz = np.diff(X.indptr)
    totals = np.asarray(X.sum(axis=1)).ravel()
    assert 600 <= nnz.mean() <= 1500
    assert 3_000 <= np.median(totals) <= 6_000
    np.testing.assert_allclose(adata.obs["n_counts"].to_numpy(), totals)
    np.testing.assert_array_equal(adata.obs["n_genes"].to_numpy(), nnz)
    assert 0.5 < adata.obs["pct_counts_mt"].median() < 10


def test_obs_donors_samples_and_extra_columns(adata: anndata.AnnData) -> None:
    obs = adata.obs
    assert adata.obs_names.is_unique
    for col in ["sample", "donor", *DEMO_LEVELS.values(), "sex"]:
        assert isinstance(obs[col].dtype, pd.CategoricalDtype), col
    assert obs["donor"].nunique() == N_DONORS >= 20
    pairs = obs[["sample", "donor"]].drop_duplicates()
    assert len(pairs) == N_DONORS  # exactly one sample per donor
    assert pd.api.types.is_numeric_dtype(obs["age"])
    sizes = obs["donor"].value_counts()
    assert sizes.max() > 2 * sizes.min()  # uneven donor sizes


def test_levels_are_strictly_nested(adata: anndata.AnnData) -> None:
    cols = list(DEMO_LEVELS.values())
    n_labels = [adata.obs[c].nunique() for c in cols]
    assert n_labels == sorted(n_labels) and n_labels[0] >= 4 and n_labels[-1] >= 20
    for child, parent in zip(cols[1:], cols[:-1], strict=True):
        parents = adata.obs.groupby(child, observed=True)[parent].nunique()
        assert (parents == 1).all(), f"{child} labels with several {parent} parents: {parents[parents > 1]}"


def test_doublets_and_rare_groups(adata: anndata.AnnData) -> None:
    obs = adata.obs
    (col, excluded), = DEMO_EXCLUDE.items()
    doublet = obs[col].isin(excluded)
    assert 0.002 < doublet.mean() < 0.03
    for level in DEMO_LEVELS.values():
        assert (obs.loc[doublet, level] == "Doublets").all()
    l4 = obs["cell_type_l4"].value_counts()
    assert l4.min() < 0.01 * N_CELLS  # some rare types
    groups = obs.groupby(["sample", "cell_type_l4"], observed=True).size()
    assert (groups < 10).any()


def test_genes_cover_cytosig_with_ids(adata: anndata.AnnData, cytosig: pd.DataFrame) -> None:
    var = adata.var
    assert adata.var_names.is_unique
    assert list(adata.var_names) == sorted(adata.var_names)
    assert var["gene_ids"].is_unique
    assert all(re.fullmatch(r"ENSG\d{11}", g) for g in var["gene_ids"])
    assert adata.var_names.isin(cytosig.index).sum() >= 0.95 * len(cytosig.index)
    assert adata.n_vars > len(cytosig.index) + 500  # SecAct-only genes too
    for marker in ["CD3E", "CD4", "CD8A", "MS4A1", "CD14", "LYZ", "NKG7", "GNLY", "ACTB", "MALAT1"]:
        assert marker in adata.var_names


def test_marker_genes_follow_cell_types(adata: anndata.AnnData) -> None:
    logcpm = pd.DataFrame(_log_cpm(adata, pd.Index(["CD3E", "MS4A1", "LYZ", "NKG7"])),
                          columns=["CD3E", "MS4A1", "LYZ", "NKG7"])
    means = logcpm.groupby(adata.obs["cell_type_l1"].to_numpy()).mean()
    for gene, lineage in [("CD3E", "T cells"), ("MS4A1", "B cells"), ("LYZ", "Myeloid"), ("NKG7", "NK cells")]:
        others = means.drop(index=[lineage, "Doublets"])[gene]
        assert means.loc[lineage, gene] > others.max() + 2, gene


def test_uns_metadata(adata: anndata.AnnData) -> None:
    meta = adata.uns["demo_atlas"]
    assert meta["seed"] == 0 and meta["n_cells"] == N_CELLS and meta["n_donors"] == N_DONORS
    assert meta["generator"] == "cytoatlas.demo_atlas"
    truth = adata.uns["planted_responses"]
    assert set(truth) == {"cytokine", "cell_type_l2", "donors", "strength"}
    lengths = {len(v) for v in truth.values()}
    assert lengths == {len(truth["cytokine"])} and len(truth["cytokine"]) >= 5
    donors = set(adata.obs["donor"].cat.categories)
    for cytokine, l2, ids, strength in zip(*(truth[k] for k in ("cytokine", "cell_type_l2", "donors", "strength")),
                                           strict=True):
        assert l2 in set(adata.obs["cell_type_l2"])
        affected = ids.split(",")
        assert affected and set(affected) <= donors and len(affected) <= N_DONORS // 2
        assert float(strength) > 0 and isinstance(cytokine, str)


def _response_scores(adata: anndata.AnnData, cytosig: pd.DataFrame, cytokine: str) -> np.ndarray:
    # the planted direction: the part of the cytokine's CytoSig column no other column explains
    from cytoatlas.demo_atlas import _response_directions

    direction = _response_directions([cytokine])[cytokine]
    assert direction.corr(cytosig[cytokine]) > 0.2  # still the cytokine's own response
    top = direction.sort_values(ascending=False).index[:25]
    return _log_cpm(adata, top).mean(axis=1)


def test_planted_responses_are_visible(adata: anndata.AnnData, cytosig: pd.DataFrame) -> None:
    truth = adata.uns["planted_responses"]
    obs = adata.obs
    for cytokine, l2, ids in zip(truth["cytokine"], truth["cell_type_l2"], truth["donors"], strict=True):
        score = _response_scores(adata, cytosig, cytokine)
        in_type = (obs["cell_type_l2"] == l2).to_numpy()
        hit = obs["donor"].isin(ids.split(",")).to_numpy()
        assert (in_type & hit).sum() >= 5 and (in_type & ~hit).sum() >= 5, cytokine
        gain = score[in_type & hit].mean() - score[in_type & ~hit].mean()
        assert gain > 0.3, f"{cytokine} in {l2}: affected - unaffected = {gain:.3f}"


def test_planted_response_separates_donor_pseudobulks_and_is_specific(
        adata: anndata.AnnData, cytosig: pd.DataFrame) -> None:
    truth = adata.uns["planted_responses"]
    i = list(truth["cytokine"]).index("IFNG")
    l2, affected = truth["cell_type_l2"][i], truth["donors"][i].split(",")
    score = pd.Series(_response_scores(adata, cytosig, "IFNG"), index=adata.obs_names)
    obs = adata.obs
    in_type = obs["cell_type_l2"] == l2
    per_donor = score[in_type].groupby(obs.loc[in_type, "donor"], observed=True).mean()
    hit = per_donor.index.isin(affected)
    assert per_donor[hit].min() > per_donor[~hit].max()
    # the same donors show no IFNG response in a cell type that was not planted with it
    other = obs["cell_type_l2"] == "CD4 T"
    assert "IFNG" not in [c for c, t in zip(truth["cytokine"], truth["cell_type_l2"], strict=True) if t == "CD4 T"]
    donor_hit = obs["donor"].isin(affected)
    control = score[other & donor_hit].mean() - score[other & ~donor_hit].mean()
    planted = score[in_type & donor_hit].mean() - score[in_type & ~donor_hit].mean()
    assert abs(control) < 0.25 * planted


@pytest.mark.parametrize("kwargs", [{"n_donors": 1}, {"n_cells": 50, "n_donors": 20}])
def test_invalid_sizes_are_rejected(tmp_path: pathlib.Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=r"need n_donors >= 2 and n_cells >= 10 \* n_donors"):
        write_demo_atlas(tmp_path / "x.h5ad", **kwargs)
    assert not any(tmp_path.iterdir())


def test_treatment_and_bmi_are_per_donor(adata: anndata.AnnData) -> None:
    from cytoatlas.demo_atlas import TREATMENT_LEVELS

    obs = adata.obs
    assert list(obs["treatment"].cat.categories) == list(TREATMENT_LEVELS) == ["untreated", "treated"]
    assert obs["bmi"].dtype == np.float64
    per_donor = obs.groupby("donor", observed=True)[["treatment", "bmi"]].nunique()
    assert (per_donor == 1).all().all()  # one value per donor
    donors = obs.drop_duplicates("donor").set_index("donor")
    assert (donors["treatment"] == "treated").sum() == N_DONORS // 2
    assert donors["bmi"].between(17, 40).all() and 22 < donors["bmi"].mean() < 30 and donors["bmi"].std() > 2
    truth = adata.uns["demo_atlas"]["planted_conditions"]
    assert list(truth["cytokine"]) == ["IL10", "IL6"] and list(truth["column"]) == ["treatment", "bmi"]
    assert list(truth["cell_type_l2"]) == ["Monocytes", "CD4 T"]
    assert set(truth["donors"][0].split(",")) == set(donors.index[donors["treatment"] == "treated"])


def test_conditions_are_drawn_independent_of_the_donor_effects() -> None:
    from cytoatlas.demo_atlas import _CHANCE_LIMIT, _donor_conditions, _max_abs_corr

    rng = np.random.default_rng(7)
    nuisance = rng.normal(size=(24, 50))
    np.testing.assert_allclose(_max_abs_corr(nuisance[:, 0], nuisance[:, 1:4]),
                               np.abs(np.corrcoef(nuisance[:, :4].T)[0, 1:]).max())
    treated, bmi = _donor_conditions(0, 24, nuisance)
    assert treated.sum() == 12 and bmi.shape == (24,)
    for values in (treated.astype(float), bmi):
        assert _max_abs_corr(values, nuisance) * np.sqrt(24) < _CHANCE_LIMIT
    again = _donor_conditions(0, 24, nuisance)
    np.testing.assert_array_equal(again[0], treated)  # deterministic from the seed


def test_planted_conditions_are_visible_in_the_sample_pseudobulk(atlas_dir: pathlib.Path, tmp_path: pathlib.Path,
                                                                 cytosig: pd.DataFrame) -> None:
    from scipy import stats

    import cytoatlas
    from cytoatlas.demo import DEMO_SAMPLE_COLUMNS, demo_config
    from cytoatlas.demo_atlas import _response_directions

    paths = cytoatlas.pseudobulk(demo_config(atlas_dir / "a.h5ad"), tmp_path, levels=["L2"], n_bootstrap=0)
    pb = anndata.read_h5ad(next(p for p in paths if p.name.endswith("_samples.h5ad")))
    assert list(pb.obs.columns[-4:]) == DEMO_SAMPLE_COLUMNS == ["treatment", "bmi", "sex", "age"]
    assert pb.obs["treatment"].dtype == "category" and pb.obs["bmi"].dtype == np.float64

    def score(cytokine: str) -> pd.Series:  # mean log1p CPM of the genes the planted direction raises most
        top = _response_directions([cytokine])[cytokine].sort_values(ascending=False).index[:25]
        return pd.Series(pb[:, top].X.mean(axis=1), index=pb.obs_names)

    il10, il6 = score("IL10"), score("IL6")
    gains, slopes = {}, {}
    for cell_type in ("Monocytes", "CD4 T", "B", "NK"):
        rows = (pb.obs["cell_type"] == cell_type).to_numpy()
        treated = (pb.obs["treatment"] == "treated").to_numpy()
        gains[cell_type] = il10[rows & treated].mean() - il10[rows & ~treated].mean()
        slopes[cell_type] = stats.pearsonr(pb.obs.loc[rows, "bmi"], il6[rows])
        if cell_type == "Monocytes":
            assert stats.ttest_ind(il10[rows & treated], il10[rows & ~treated], equal_var=False).pvalue < 1e-3
    assert gains["Monocytes"] > 0.3 and all(abs(gains[c]) < 0.3 * gains["Monocytes"] for c in ("CD4 T", "B", "NK"))
    assert slopes["CD4 T"].statistic > 0.6 and slopes["CD4 T"].pvalue < 1e-3
    assert all(abs(slopes[c].statistic) < slopes["CD4 T"].statistic - 0.2 for c in ("Monocytes", "B", "NK"))

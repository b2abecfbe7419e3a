"""Composite levels, exclusions, `where` filters, donor-only levels and NaN labels on a hand-made atlas."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import cytoatlas
from cytoatlas.registry import atlas_from_mapping


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    rng = np.random.default_rng(5)
    n = 600
    obs = pd.DataFrame({
        "sample": [f"S{i}" for i in rng.integers(0, 8, n)],
        "tissue": rng.choice(["Tumor", "Normal", "Blood|PBMC"], n),  # a label containing '|'
        "cellType1": rng.choice(["T", "B", "Mono"], n).astype(object),
        "qc": rng.choice(["ok", "ok", "ok", "Doublets"], n),
    }, index=[f"c{i}" for i in range(n)])
    obs["donor"] = obs["sample"].map(lambda s: f"D{int(s[1:]) // 2}")  # two samples per donor
    obs.loc[obs.index[:17], "cellType1"] = np.nan
    for c in obs:
        obs[c] = obs[c].astype("category")
    x = sp.random(n, 30, density=0.3, format="csr", random_state=1, data_rvs=lambda k: rng.integers(1, 9, k))
    path = tmp_path_factory.mktemp("hand") / "hand.h5ad"
    ad.AnnData(x.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(30)])).write_h5ad(path)
    cfg = atlas_from_mapping("hand", {
        "h5ad": str(path), "sample_col": "sample", "donor_col": "donor", "exclude": {"qc": ["Doublets"]},
        "levels": {"celltype": "cellType1", "organ_celltype": ["tissue", "cellType1"],
                   "tumor_only": {"by": ["cellType1"], "where": {"tissue": "Tumor"}}, "donor_only": []},
    })
    out = tmp_path_factory.mktemp("hand_out")
    cytoatlas.pseudobulk(cfg, out, min_cells=1, min_samples=2, n_bootstrap=4)
    kept = ad.read_h5ad(path)
    kept = kept[kept.obs["qc"] != "Doublets"]
    return out, kept


def _read(out, level, kind=""):
    return ad.read_h5ad(out / f"hand_pseudobulk_{level}{kind}.h5ad")


def _expected(adata, keys: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(adata.X.toarray(), index=adata.obs_names)
    return df.groupby([adata.obs[k].astype(str).values for k in keys]).sum()


def test_exclusions_and_nan_labels(atlas):
    out, kept = atlas
    main = _read(out, "celltype")
    labelled = kept[kept.obs["cellType1"].notna()]
    assert main.obs["n_cells"].sum() == labelled.n_obs  # Doublets and NaN labels left out
    assert main.uns["atlas_stats"]["n_cells"] == kept.n_obs  # NaN labels still count for atlas stats
    exp = _expected(labelled, ["cellType1"])
    np.testing.assert_array_equal(main.layers["counts"], exp.loc[list(main.obs_names)].values)


def test_composite_level_keeps_parts_and_never_splits_wrongly(atlas):
    out, kept = atlas
    main = _read(out, "organ_celltype")
    sep = main.uns["separator"]
    assert sep != "|" and not any(sep in str(t) for t in kept.obs["tissue"].cat.categories)
    assert {"tissue", "cellType1"} <= set(main.obs.columns)
    for name, row in main.obs.iterrows():
        assert name == f"{row['tissue']}{sep}{row['cellType1']}" == row["cell_type"]
    labelled = kept[kept.obs["cellType1"].notna()]
    exp = _expected(labelled, ["tissue", "cellType1"])
    got = pd.DataFrame(main.layers["counts"], index=pd.MultiIndex.from_frame(
        main.obs[["tissue", "cellType1"]].astype(str)))
    np.testing.assert_array_equal(got.values, exp.loc[got.index].values)
    samples = _read(out, "organ_celltype", "_samples")
    assert {"sample", "donor", "tissue", "cellType1", "cell_type"} <= set(samples.obs.columns)


def test_where_filter(atlas):
    out, kept = atlas
    main = _read(out, "tumor_only")
    tumour = kept[(kept.obs["tissue"] == "Tumor").values & kept.obs["cellType1"].notna().values]
    assert main.obs["n_cells"].sum() == tumour.n_obs
    exp = _expected(tumour, ["cellType1"])
    np.testing.assert_array_equal(main.layers["counts"], exp.loc[list(main.obs_names)].values)


def test_donor_only_level_is_sample_pseudobulk(atlas):
    out, kept = atlas
    main, samples = _read(out, "donor_only"), _read(out, "donor_only", "_samples")
    assert list(main.obs_names) == ["all"] and main.obs["n_cells"].iloc[0] == kept.n_obs
    exp = _expected(kept, ["sample"])
    assert list(samples.obs["sample"]) == list(exp.index)
    np.testing.assert_array_equal(samples.layers["counts"], exp.values)
    # the donor (two samples each) is the bootstrap unit
    res = _read(out, "donor_only", "_resampled")
    assert set(res.obs["n_units"]) == {kept.obs["donor"].nunique()}
    assert dict(zip(samples.obs["sample"], samples.obs["donor"], strict=True)) == {
        s: f"D{int(s[1:]) // 2}" for s in samples.obs["sample"]}

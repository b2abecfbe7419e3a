"""Sums, cell counts, log1p CPM, atlas stats and z-scores against independent references."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from _reference import group_sizes, log1p_cpm, scanpy_sums, single_cell_stats
from conftest import KANG, ONEK1K

import cytoatlas
from cytoatlas.registry import atlas_from_mapping

CASES = {
    "kang": (KANG, "donor", {"ct": "cell_type"}, "symbol"),
    "onek1k": (ONEK1K, "donor", {"ct": "cell_type"}, None),
}


def _run(tmp_path, name, h5ad, sample, levels, symbols=None, **kw):
    cfg = atlas_from_mapping(name, {"h5ad": str(h5ad), "sample_col": sample, "levels": levels,
                                    **({"gene_symbols": symbols} if symbols else {})})
    cytoatlas.pseudobulk(cfg, tmp_path, n_bootstrap=0, **kw)
    return cfg


def _check_level(tmp_path, atlas_name, level, adata, sample_col, by, min_cells=10):
    main = ad.read_h5ad(tmp_path / f"{atlas_name}_pseudobulk_{level}.h5ad")
    samples = ad.read_h5ad(tmp_path / f"{atlas_name}_pseudobulk_{level}_samples.h5ad")
    for out, cols in ((main, by), (samples, [sample_col, *by])):
        ref = scanpy_sums(adata, cols)
        sizes = group_sizes(adata, cols)
        expected = sorted(n for n in ref.index if sizes[n] >= min_cells)
        assert sorted(out.obs_names) == expected
        ref = ref.loc[out.obs_names]
        np.testing.assert_array_equal(out.layers["counts"], ref.values)
        np.testing.assert_array_equal(out.obs["n_cells"].values, sizes[out.obs_names].values)
        np.testing.assert_allclose(out.X, log1p_cpm(ref.values), rtol=1e-6, atol=1e-6)
    return main, samples


@pytest.mark.parametrize("name", CASES)
def test_real_data_matches_scanpy_aggregate(tmp_path, name):
    h5ad, sample, levels, symbols = CASES[name]
    _run(tmp_path, name, h5ad, sample, levels, symbols, batch_size=1000)
    adata = ad.read_h5ad(h5ad)
    main, samples = _check_level(tmp_path, name, "ct", adata, sample, ["cell_type"])
    assert len(samples.obs["sample"].cat.categories) == adata.obs[sample].nunique()
    if symbols:
        assert list(main.var["gene_symbol"]) == list(adata.var[symbols].astype(str))
        assert list(main.var["gene_id"]) == list(adata.var_names)


def test_demo_atlas_matches_scanpy_aggregate_every_level(tmp_path, demo_h5ad):
    from cytoatlas.demo import demo_config

    cfg = demo_config(demo_h5ad)
    cytoatlas.pseudobulk(cfg, tmp_path, n_bootstrap=0, batch_size=2500)
    adata = ad.read_h5ad(demo_h5ad)
    excluded = adata.obs["cell_type_l1"].isin(["Doublets"])
    assert excluded.any()
    adata = adata[~excluded].copy()
    for lev in cfg.levels:
        main, _ = _check_level(tmp_path, "demo", lev.name.lower(), adata, "sample", list(lev.by))
        assert "Doublets" not in set(main.obs["cell_type"])


def test_atlas_stats_and_zscore(tmp_path):
    h5ad, sample, levels, symbols = CASES["kang"]
    _run(tmp_path, "kang", h5ad, sample, levels, symbols, batch_size=777)
    mean, std = single_cell_stats(ad.read_h5ad(h5ad))
    for suffix in ("", "_samples"):
        out = ad.read_h5ad(tmp_path / f"kang_pseudobulk_ct{suffix}.h5ad")
        stats = out.uns["atlas_stats"]
        assert stats["n_cells"] == 12261
        np.testing.assert_allclose(stats["mean"], mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(stats["std"], std, rtol=1e-10, atol=1e-12)
        safe = np.where(std > 0, std, 1.0)
        np.testing.assert_allclose(out.layers["zscore"], (out.X - mean) / safe, rtol=1e-5, atol=1e-5)


def test_uns_records_provenance(tmp_path):
    h5ad, sample, levels, symbols = CASES["onek1k"]
    _run(tmp_path, "onek1k", h5ad, sample, levels, symbols, min_cells=3)
    uns = ad.read_h5ad(tmp_path / "onek1k_pseudobulk_ct.h5ad").uns
    assert uns["atlas"] == "onek1k" and uns["level"] == "ct"
    assert uns["cytoatlas_version"] == cytoatlas.__version__
    assert uns["parameters"]["min_cells"] == 3 and uns["parameters"]["sample_col"] == "donor"
    assert uns["input"]["size"] == ONEK1K.stat().st_size and len(uns["input"]["sha256_edges"]) == 64

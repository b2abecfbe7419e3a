"""Donor bootstrap: layout, reproducibility, and one resample recomputed by hand."""

from __future__ import annotations

import zlib

import anndata as ad
import numpy as np
from conftest import KANG

import cytoatlas
from cytoatlas.registry import atlas_from_mapping

CFG = atlas_from_mapping("kang", {"h5ad": str(KANG), "sample_col": "donor", "gene_symbols": "symbol",
                                  "levels": {"ct": "cell_type"}})


def _resampled(tmp_path, seed, n_bootstrap=30, min_samples=5):
    cytoatlas.pseudobulk(CFG, tmp_path, n_bootstrap=n_bootstrap, bootstrap_seed=seed, min_samples=min_samples)
    return (ad.read_h5ad(tmp_path / "kang_pseudobulk_ct_resampled.h5ad"),
            ad.read_h5ad(tmp_path / "kang_pseudobulk_ct_samples.h5ad"))


def test_layout_and_eligibility(tmp_path):
    res, samples = _resampled(tmp_path, seed=42, min_samples=8)
    units = samples.obs.groupby("cell_type", observed=True)["sample"].nunique()
    eligible = sorted(units[units >= 8].index)
    assert eligible and sorted(units[units < 8].index), "Kang has types with 8 and with < 8 donors of >= 10 cells"
    assert list(res.obs["cell_type"].unique()) == eligible
    for ct in eligible:
        rows = res.obs[res.obs["cell_type"] == ct]
        assert list(rows["bootstrap_idx"]) == list(range(30))
        assert set(rows["n_units"]) == {units[ct]}
    assert "zscore" in res.layers and res.X.dtype == np.float32
    np.testing.assert_allclose(np.expm1(res.X.astype(np.float64)).sum(axis=1), 1e6, rtol=1e-4)


def test_reproducible_by_seed(tmp_path):
    a, _ = _resampled(tmp_path / "a", seed=7)
    b, _ = _resampled(tmp_path / "b", seed=7)
    c, _ = _resampled(tmp_path / "c", seed=8)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.allclose(a.X, c.X)


def test_one_resample_by_hand(tmp_path):
    res, samples = _resampled(tmp_path, seed=42)
    ct = "CD14+ Monocytes"
    donors = samples[samples.obs["cell_type"] == ct]
    donors = donors[np.argsort(donors.obs["sample"].astype(str).values)]  # units in label order
    n = donors.n_obs
    rng = np.random.default_rng([42, zlib.crc32(b"ct"), zlib.crc32(ct.encode())])
    draws = rng.multinomial(n, np.full(n, 1 / n), size=30)
    counts = donors.layers["counts"].astype(np.float64)
    cpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    b = 17
    summed = (draws[b][:, None] * cpm).sum(axis=0)  # the drawn donors' CPMs summed ...
    expected = np.log1p(summed / summed.sum() * 1e6)  # ... and renormalised
    row = res[(res.obs["cell_type"] == ct).values & (res.obs["bootstrap_idx"] == b).values]
    np.testing.assert_allclose(row.X[0], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(row.X[0], np.log1p(cpm.mean(axis=0)), atol=1e-3)  # a real resample, not the mean

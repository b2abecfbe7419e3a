"""Composition-adjusted donor correlations: the partial Spearman rho given the donors' cell-type fractions, against
independent computations (statsmodels residuals of ranks; the inverse of the ranks' correlation matrix), and in
`cytoatlas validate` at a level without cell types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import cytoatlas
from cytoatlas._validate.partial import covariate_ranks, partial_spearman
from cytoatlas.io.tables import read_parquet


def _planted(n: int = 30, seed: int = 0):
    """Donors whose expression and activity both follow their monocyte fraction, and nothing else."""
    rng = np.random.default_rng(seed)
    raw = rng.dirichlet([4.0, 2.0, 1.0, 1.0], size=n)  # T, mono, B, NK fractions
    x = 3 * raw[:, 1] + rng.normal(0, 0.1, n)
    y = 2 * raw[:, 1] + rng.normal(0, 0.1, n)
    return raw, x, y


def test_partial_rho_against_statsmodels_residuals_and_the_precision_matrix() -> None:
    fractions, x, y = _planted()
    cov = covariate_ranks(fractions)
    assert cov.shape == (30, 3)  # the most abundant fraction (T) left out: they sum to one
    res = partial_spearman(x, y, cov)
    # independent 1: OLS residuals of the ranks (statsmodels), their Pearson r; t test on n - 2 - k df
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    design = sm.add_constant(cov)
    ex, ey = sm.OLS(rx, design).fit().resid, sm.OLS(ry, design).fit().resid
    r = stats.pearsonr(ex, ey).statistic
    assert res.rho == pytest.approx(r, abs=1e-10)
    df = 30 - 2 - 3
    t = r * np.sqrt(df / (1 - r * r))
    assert res.pvalue == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-8)
    # independent 2: minus the scaled off-diagonal of the inverse correlation matrix of all ranks
    precision = np.linalg.inv(np.corrcoef(np.column_stack([rx, ry, cov]).T))
    assert res.rho == pytest.approx(-precision[0, 1] / np.sqrt(precision[0, 0] * precision[1, 1]), abs=1e-10)
    z, half = np.arctanh(r), 1.959963984540054 / np.sqrt(30 - 3 - 3)
    assert (res.ci_low, res.ci_high) == pytest.approx((np.tanh(z - half), np.tanh(z + half)))
    assert res.n_covariates == 3
    # composition explains the plain rho: it is strong, the partial one is not
    assert stats.spearmanr(x, y).statistic > 0.8 and abs(res.rho) < 0.4


def test_partial_rho_keeps_an_effect_composition_does_not_explain() -> None:
    fractions, x, _ = _planted(seed=1)
    rng = np.random.default_rng(5)
    signal = rng.normal(size=30)
    res = partial_spearman(x + 2 * signal, signal + rng.normal(0, 0.2, 30), covariate_ranks(fractions))
    assert res.rho > 0.6 and res.pvalue < 1e-3 and res.ci_low < res.rho < res.ci_high


def test_too_few_donors_for_the_fractions_is_a_reason() -> None:
    fractions, x, y = _planted(n=6)
    res = partial_spearman(x, y, covariate_ranks(fractions))
    assert np.isnan(res.rho) and "too few donors" in res.reason


def test_validate_adds_the_partial_rho_at_a_level_without_cell_types(demo_pair, tmp_path) -> None:
    cfg = demo_pair["configs"][0]
    out = tmp_path / "val"
    cytoatlas.validate([cfg], out, results=demo_pair["results"], levels=["L2", "donor_only"], signatures=["cytosig"],
                       n_bootstrap=0, figures=False)
    rho = read_parquet(out / "rho.parquet")
    donor = rho[(rho["level"] == "donor_only") & (rho["reason"] == "")]
    assert len(donor) and (donor["fractions_level"] == "L2").all()
    assert np.isfinite(donor["partial_rho"]).all() and (donor["n_fractions"] > 0).all()
    assert (rho.loc[rho["level"] == "L2", "fractions_level"] == "").all()
    assert rho.loc[rho["level"] == "L2", "partial_rho"].isna().all()
    # one target recomputed by hand: fractions from the L2 pseudobulk's n_cells, ranks residualised (statsmodels)
    from cytoatlas.io.layout import activity_path, pseudobulk_path
    from cytoatlas.io.results import read_activity, read_header, read_pseudobulk

    pb_dir, act_dir = demo_pair["results"][cfg.name] / "pseudobulk", demo_pair["results"][cfg.name] / "activity"
    obs = read_header(pseudobulk_path(pb_dir, cfg.name, "L2", "samples"), "pseudobulk", var_columns=()).obs
    counts = pd.crosstab(obs["donor"].astype(str), obs["cell_type"].astype(str), values=obs["n_cells"],
                         aggfunc="sum").fillna(0)
    fractions = counts.div(counts.sum(axis=1), axis=0)
    donor_pb = pseudobulk_path(pb_dir, cfg.name, "donor_only", "samples")
    act = read_activity(activity_path(act_dir, donor_pb, "cytosig"))
    row = donor.sort_values("rho").iloc[-1]
    pb = read_pseudobulk(donor_pb, {row["gene"]})
    x = pb.values[0].astype(float)
    y = act.z[:, list(act.names).index(row["target"])]
    f = fractions.loc[act.obs["donor"].astype(str)].to_numpy()
    f = f[:, np.ptp(f, axis=0) > 0]
    f = np.delete(f, np.argmax(f.mean(axis=0)), axis=1)
    design = sm.add_constant(np.column_stack([stats.rankdata(c) for c in f.T]))
    ex = sm.OLS(stats.rankdata(x), design).fit().resid
    ey = sm.OLS(stats.rankdata(y), design).fit().resid
    assert row["partial_rho"] == pytest.approx(stats.pearsonr(ex, ey).statistic, abs=1e-9)
    summary = read_parquet(out / "summary.parquet").set_index("level")
    assert summary.loc["donor_only", "fractions_level"] == "L2"
    assert np.isfinite(summary.loc["donor_only", "median_partial_rho"])
    assert np.isnan(summary.loc["L2", "median_partial_rho"])

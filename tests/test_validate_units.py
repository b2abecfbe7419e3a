"""Validation building blocks on hand-made data: Spearman as scipy computes it, bootstrap resamples, BH-FDR, the
target -> gene table, the independent-level rule and the cross-atlas classes."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cytoatlas._validate import cross_atlas as xa
from cytoatlas._validate.inputs import LevelSet
from cytoatlas._validate.stats import (
    bh_fdr,
    bootstrap_ci_columns,
    bootstrap_weights,
    spearman_columns,
    weighted_spearman,
)
from cytoatlas._validate.summaries import cytosig_vs_secact, summary
from cytoatlas._validate.targets import target_gene
from cytoatlas._validate.within import within_atlas
from cytoatlas.celltypes import map_labels

# hand-picked pairs: ties on one side, on both sides, a perfect and a perfectly reversed order, n = 3, zeros
CASES = [
    ([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]),
    ([1, 2, 2, 3, 4, 4, 4, 5], [3, 1, 2, 2, 5, 4, 6, 6]),
    ([0, 0, 0, 0, 1, 1, 2, 3, 0, 5], [0.1, -0.3, 0.2, 0.2, 0.5, 0.4, 0.9, 0.8, -1.0, 2.0]),
    ([1, 2, 3, 4], [10, 20, 30, 40]),
    ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
    ([3.0, 1.0, 2.0], [1.0, 3.0, 2.5]),
    ([0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
]


@pytest.mark.parametrize(("x", "y"), CASES)
def test_spearman_equals_scipy_on_hand_picked_cases(x, y) -> None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ref = stats.spearmanr(x, y)
    rho, p = spearman_columns(x[:, None], y[:, None])
    np.testing.assert_allclose(rho[0], ref.statistic, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p[0], ref.pvalue, rtol=1e-10, atol=1e-15)  # |rho| = 1: 0 vs 1e-24


def test_spearman_columns_is_each_pair_and_nan_when_constant() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (25, 6)).astype(float)  # many ties
    y = rng.normal(size=(25, 6))
    y[:, 1] = x[:, 1] + rng.integers(0, 2, 25)
    x[:, 4] = 2.0  # constant gene
    rho, p = spearman_columns(x, y)
    for j in range(6):
        if j == 4:
            assert np.isnan(rho[j]) and np.isnan(p[j])
            continue
        ref = stats.spearmanr(x[:, j], y[:, j])
        np.testing.assert_allclose([rho[j], p[j]], [ref.statistic, ref.pvalue], rtol=1e-10)


def test_resampled_rho_is_spearman_of_the_expanded_resample() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, 14).astype(float)
    y = np.round(rng.normal(size=14), 1)
    # donors with two samples each: a drawn donor brings both
    units = np.repeat([f"d{i}" for i in range(7)], 2)
    w = bootstrap_weights(units, 25, rng)
    assert w.shape == (25, 14) and (w.sum(axis=1) == 14).all()
    assert (w[:, 0::2] == w[:, 1::2]).all()
    r = weighted_spearman(x, y, w)
    for b in range(25):
        xs, ys = np.repeat(x, w[b]), np.repeat(y, w[b])
        expect = np.nan if np.ptp(xs) == 0 or np.ptp(ys) == 0 else stats.spearmanr(xs, ys).statistic
        np.testing.assert_allclose(r[b], expect, rtol=1e-12, atol=1e-12)
    lo, hi, n = bootstrap_ci_columns(x[:, None], y[:, None], w)
    ok = r[~np.isnan(r)]
    assert n[0] == len(ok)
    np.testing.assert_allclose([lo[0], hi[0]], np.quantile(ok, [0.025, 0.975]))


def test_bh_fdr_matches_the_step_up_rule_and_skips_nan() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5, 0.002, np.nan])
    got = bh_fdr(p)
    ok = ~np.isnan(p)
    q = p[ok]
    order = np.argsort(q)
    m = len(q)
    adj = np.minimum.accumulate((q[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    expect = np.empty(m)
    expect[order] = np.minimum(adj, 1)
    np.testing.assert_allclose(got[ok], expect)
    assert np.isnan(got[~ok]).all()


def test_target_genes() -> None:
    from cytoatlas._activity.signatures import load_signatures

    cases = {"TNFA": "TNF", "GMCSF": "CSF2", "IFN1": "IFNA1", "Activin A": "INHBA", "CD40L": "CD40LG",
             "GCSF": "CSF3", "MCSF": "CSF1", "TRAIL": "TNFSF10", "IL6": "IL6"}
    for target, gene in cases.items():
        assert target_gene(target, "cytosig") == gene
    assert target_gene("Monocyte__TNFA", "lincytosig") == "TNF"  # the cytokine after "__"
    assert target_gene("T_CD4__IL2", "lincytosig") == "IL2"
    assert target_gene("TNF", "secact") == "TNF" and target_gene("NO", "secact") == "NO"  # symbols, not mapped
    assert target_gene("IFN1", "cytosig", {"IFN1": "IFNB1"}) == "IFNB1"
    # the shipped table covers every CytoSig signature and maps to distinct genes
    names = set(load_signatures("cytosig").signatures)
    genes = [target_gene(t, "cytosig") for t in names]
    assert len(set(genes)) == len(names) and all(g.isupper() or g[0].isdigit() for g in genes)


def _write_level(directory: Path, strata: dict[str, tuple[np.ndarray, np.ndarray]], extra_target: bool = True,
                 level: str = "lv") -> LevelSet:
    """A samples pseudobulk file and its activity file: per stratum, gene G's expression and target T's z."""
    directory.mkdir(parents=True, exist_ok=True)
    obs, expr, z = [], [], []
    for stratum, (x, y) in strata.items():
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            obs.append({"sample": f"s{i}", "donor": f"d{i}", "cell_type": stratum, "n_cells": 50})
            expr.append([xi, 1.0])
            z.append([yi, -yi])
    obs = pd.DataFrame(obs, index=[f"{o['sample']}|{o['cell_type']}" for o in obs])
    var = pd.DataFrame({"gene_symbol": ["GENE_T", "OTHER"]}, index=["GENE_T", "OTHER"])
    pb = ad.AnnData(np.asarray(expr, np.float32), obs=obs, var=var,
                    uns={"kind": "samples", "atlas": "toy", "level": level})
    pb_path = directory / f"toy_pseudobulk_{level}_samples.h5ad"
    pb.write_h5ad(pb_path)
    names = ["T", "U"] if extra_target else ["T"]
    act = ad.AnnData(np.asarray(z, float)[:, :len(names)], obs=obs, var=pd.DataFrame(index=names),
                     uns={"pseudobulk": {"atlas": "toy", "level": level, "kind": "samples"},
                          "signature": {"name": "custom"}})
    act_path = directory / f"toy_pseudobulk_{level}_samples_custom_activity.h5ad"
    act.write_h5ad(act_path)
    return LevelSet("toy", level, "custom", {"samples": pb_path}, {"samples": act_path})


def _stratum(rng: np.random.Generator, n: int, strength: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=n)
    y = strength * x + rng.normal(size=n)
    return x + offset, y + 3 * offset  # strata differ in level: pooled over them, x and y would correlate


@pytest.mark.parametrize("n_strata", [3, 4])
def test_independent_level_rule_on_a_stratified_level(tmp_path: Path, n_strata: int) -> None:
    rng = np.random.default_rng(n_strata)
    strata = {f"type{k}": _stratum(rng, 12 + k, strength, offset)
              for k, (strength, offset) in enumerate([(0.0, 0.0), (1.0, 2.0), (-0.5, 4.0), (2.0, 6.0)][:n_strata])}
    strata["tiny"] = _stratum(rng, 6, 1.0, 8.0)  # too few samples: reported, not a stratum of the median
    group = _write_level(tmp_path, strata)
    df = within_atlas(group, min_samples=10, n_boot=50, seed=1, gene_overrides={"T": "GENE_T", "U": "NO_SUCH"})
    t = df[df["target"] == "T"].set_index("stratum")
    # each stratum's rho is scipy's on its own samples
    for name, (x, y) in strata.items():
        if name == "tiny":
            assert t.loc[name, "reason"] == "fewer than 10 samples" and np.isnan(t.loc[name, "rho"])
            continue
        ref = stats.spearmanr(x, y)
        np.testing.assert_allclose([t.loc[name, "rho"], t.loc[name, "pvalue"]], [ref.statistic, ref.pvalue],
                                   rtol=1e-10)
        assert t.loc[name, "n_samples"] == len(x)
        assert t.loc[name, "rho_ci_low"] <= t.loc[name, "rho"] + 0.05 and t.loc[name, "rho_ci_high"] >= \
            t.loc[name, "rho"] - 0.05
    computed = t[t["reason"] == ""].sort_values("rho")
    assert len(computed) == n_strata
    rep = t[t["representative"]]
    assert len(rep) == 1
    # the median stratum (the lower middle one for an even count), never the pooled samples
    assert rep.index[0] == computed.index[(n_strata - 1) // 2]
    assert (t["median_rho"].dropna() == np.median(computed["rho"])).all()
    if n_strata % 2:
        assert rep["rho"].iloc[0] == np.median(computed["rho"])
    x_all = np.concatenate([v[0] for k, v in strata.items()])
    y_all = np.concatenate([v[1] for k, v in strata.items()])
    pooled = stats.spearmanr(x_all, y_all).statistic
    assert pooled > 0.8 and rep["rho"].iloc[0] < pooled - 0.3  # repeated measures would have inflated it
    # FDR over the level's computed rows
    ok = df["reason"] == ""
    np.testing.assert_allclose(df.loc[ok, "fdr"], bh_fdr(df.loc[ok, "pvalue"].to_numpy()))
    # a target whose gene is absent: one row, a reason, no representative
    u = df[df["target"] == "U"]
    assert len(u) == 1 and u["reason"].iloc[0] == "gene absent" and not u["representative"].any()


def test_unstratified_level_uses_its_all_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = _stratum(rng, 15, 1.0, 0.0)
    df = within_atlas(_write_level(tmp_path, {"all": (x, y)}, extra_target=False), n_boot=0,
                      gene_overrides={"T": "GENE_T"})
    assert df["stratum"].tolist() == ["all"] and df["representative"].tolist() == [True]
    np.testing.assert_allclose(df["rho"].iloc[0], stats.spearmanr(x, y).statistic)
    assert np.isnan(df["rho_ci_low"].iloc[0])  # no resamples asked for


def _profiles(values: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(values).T  # cell types x signatures


def test_cross_atlas_rules() -> None:
    cts = ["B", "CD4 T", "CD8 T", "NK", "Monocyte"]
    base = {"S1": [1, 2, 3, 4, 5], "S2": [5, 1, 4, 2, 3], "S3": [1, 1, 1, 1, 1]}
    a = pd.DataFrame(base, index=cts, dtype=float)
    b = a.copy()
    b["S2"] = [1, 5, 2, 4, 3]
    c = a.iloc[:2].copy()  # two shared cell types only
    d = a.copy()
    d.index = [f"cluster {i}" for i in range(5)]  # nothing shared
    profiles = {"A": {("L1", "cytosig"): a, ("L2", "cytosig"): a}, "B": {("L1", "cytosig"): b, ("L2", "cytosig"): b},
                "C": {("L1", "cytosig"): c}, "D": {("other", "cytosig"): d}}
    matches = pd.concat([map_labels(frame.index).assign(atlas=atlas, level=level)
                         for atlas, by in profiles.items() for (level, _), frame in by.items()], ignore_index=True)
    assert (matches.loc[matches["atlas"] != "D", "source"] != "none").all()
    cross, units = xa.cross_atlas(profiles, matches, resolutions=("fine",), min_cell_types=3)
    assert set(units) == {(x, lv, "cytosig") for x, lv in [("A", "L1"), ("A", "L2"), ("B", "L1"), ("B", "L2"),
                                                           ("C", "L1")]}
    ab = cross[(cross["atlas_a"] == "A") & (cross["atlas_b"] == "B")].set_index(["level", "signature"])
    assert ab.loc[("L1", "S1"), "r"] == pytest.approx(1.0)
    np.testing.assert_allclose(ab.loc[("L1", "S2"), ["r", "pvalue"]].to_numpy(float),
                               stats.pearsonr(base["S2"], b["S2"]))
    assert ab.loc[("L1", "S3"), "reason"] == "activity constant or undefined"
    ac = cross[(cross["atlas_a"] == "A") & (cross["atlas_b"] == "C")]
    assert set(ac["reason"]) == {"fewer than 3 matched cell types"} and (ac["n_cell_types"] == 2).all()
    ad_ = cross[(cross["atlas_a"] == "A") & (cross["atlas_b"] == "D")]
    assert set(ad_["reason"]) == {"no matched cell types"} and set(ad_["level"]) == {"L1/other"}
    cons = xa.conservation(cross).set_index("signature")
    assert cons.loc["S1", "conservation"] == "conserved" and cons.loc["S1", "n_pairs"] == 2  # A-B at L1 and L2
    assert cons.loc["S2", "conservation"] == "not conserved"
    assert cons.loc["S3", "n_pairs"] == 0 and cons.loc["S3", "reason"] != ""
    # a single pair decides alone; r > 0.5 (but not 0.7) twice is moderate
    one = pd.DataFrame({"signature_set": "s", "signature": ["x", "y", "y", "z", "z"], "r": [0.8, 0.6, 0.65, 0.9, 0.2],
                        "reason": "", "resolution": "fine"})
    got = xa.conservation(one).set_index("signature")["conservation"].to_dict()
    assert got == {"x": "conserved", "y": "moderate", "z": "not conserved"}


def test_consistency_tiers_and_summaries() -> None:
    rows = []
    for atlas, rhos in {"a1": [0.5, 0.3, -0.2], "a2": [0.4, -0.1, -0.3], "a3": [0.2, 0.4, 0.05]}.items():
        for target, r in zip(["T1", "T2", "T3"], rhos, strict=True):
            rows.append({"atlas": atlas, "level": "donor_only", "signature_set": "cytosig", "target": target,
                         "gene": target, "stratum": "all", "n_samples": 20, "rho": r, "pvalue": 0.01 if abs(r) > 0.35
                         else 0.4, "fdr": 0.04, "representative": True, "reason": ""})
    rho = pd.DataFrame(rows)
    tiers = xa.consistency(rho).set_index("target")
    assert tiers["tier"].to_dict() == {"T1": "all", "T2": "most", "T3": "few"}
    assert tiers["n_positive"].to_dict() == {"T1": 3, "T2": 2, "T3": 0} and (tiers["n_atlases"] == 3).all()
    s = summary(rho).set_index("atlas")
    assert s.loc["a1", "n_targets"] == 3 and s.loc["a1", "median_rho"] == pytest.approx(0.3)
    assert s.loc["a1", "pct_positive"] == pytest.approx(200 / 3) and s.loc["a1", "n_significant"] == 1
    # CytoSig vs SecAct: paired on genes, Wilcoxon as scipy
    sec = rho.assign(signature_set="secact", rho=rho["rho"] + np.arange(len(rho)) * 0.01 - 0.05)
    vs = cytosig_vs_secact(pd.concat([rho, sec])).set_index("atlas")
    a1c, a1s = rho[rho["atlas"] == "a1"]["rho"].to_numpy(), sec[sec["atlas"] == "a1"]["rho"].to_numpy()
    ref = stats.wilcoxon(a1c, a1s)
    assert vs.loc["a1", "n_shared"] == 3
    np.testing.assert_allclose(vs.loc["a1", ["statistic", "pvalue"]].to_numpy(float), [ref.statistic, ref.pvalue])


def test_registry_harmonise_key() -> None:
    from cytoatlas import CytoatlasError
    from cytoatlas.registry import atlas_from_mapping

    entry = {"h5ad": "/x.h5ad", "sample_col": "s", "levels": {"L1": "ct"},
             "harmonise": {"T-unconv": "Unconventional T"}}
    assert atlas_from_mapping("a", entry).harmonise == (("T-unconv", "Unconventional T"),)
    with pytest.raises(CytoatlasError, match="harmonise must be a table"):
        atlas_from_mapping("a", {**entry, "harmonise": {"T-unconv": 3}})

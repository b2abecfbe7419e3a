"""The statistics of `cytoatlas compare` against independent computations: statsmodels' formula OLS, scipy's
t-tests and Wilcoxon tests, a hand-computed DerSimonian-Laird meta-analysis and a hand-computed BH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats as ss
from statsmodels.stats.multitest import multipletests

from cytoatlas import CytoatlasError
from cytoatlas._compare import stats
from cytoatlas._compare.analyses import Spec, compare_file
from cytoatlas._compare.meta import dersimonian_laird, meta_analysis, pool_studies
from cytoatlas._compare.run import make_spec
from cytoatlas._compare.tables import concat, table_frame, with_fdr
from cytoatlas.io.results import Activity

SIGS = ["S0", "S1", "S2", "S3"]


def _activity(obs: pd.DataFrame, z: np.ndarray, names=SIGS) -> Activity:
    obs = obs.reset_index(drop=True)
    obs.index = [f"r{i}" for i in range(len(obs))]
    return Activity(Path("toy_pseudobulk_L1_samples_cytosig_activity.h5ad"), obs, np.array(names), z, None, "L1",
                    "cytosig", None)


def _donors(n: int = 14, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "donor": [f"D{i:02d}" for i in range(n)],
        "treatment": pd.Categorical(np.where(np.arange(n) % 2 == 0, "treated", "untreated"),
                                    categories=["untreated", "treated"]),
        "age": rng.uniform(20, 80, n).round(),
        "sex": pd.Categorical(rng.permutation(np.resize(["F", "M"], n))),
        "bmi": rng.normal(26, 4, n),
    })


def _one_sample_each(donors: pd.DataFrame, cell_type: str = "Mono", seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = donors.assign(sample=donors["donor"] + "_s0", cell_type=cell_type)
    z = rng.normal(size=(len(obs), len(SIGS)))
    z[:, 0] += 1.5 * (obs["treatment"] == "treated").to_numpy() + 0.03 * obs["age"].to_numpy()
    return obs, z


def _row(df: pd.DataFrame, **where) -> pd.Series:
    sel = np.logical_and.reduce([df[k] == v for k, v in where.items()])
    assert sel.sum() == 1, (where, sel.sum())
    return df[sel].iloc[0]


def test_ols_with_covariates_matches_statsmodels_formula() -> None:
    obs, z = _one_sample_each(_donors())
    z[3, 2] = np.nan  # one signature misses a donor: fitted on the others, as statsmodels drops the row
    spec = Spec(by="treatment", reference="untreated", covariates=("age", "sex"))
    rows = concat("differential", compare_file(_activity(obs, z), "toy", {}, spec).differential)
    assert len(rows) == len(SIGS)
    for j, sig in enumerate(SIGS):
        data = obs.assign(y=z[:, j])
        fit = smf.ols("y ~ C(treatment, Treatment('untreated')) + age + C(sex)", data=data).fit()
        term = "C(treatment, Treatment('untreated'))[T.treated]"
        r = _row(rows, signature=sig)
        assert r["effect"] == pytest.approx(fit.params[term], rel=1e-10)
        assert r["se"] == pytest.approx(fit.bse[term], rel=1e-10)
        assert r["statistic"] == pytest.approx(fit.tvalues[term], rel=1e-10)
        assert r["pvalue"] == pytest.approx(fit.pvalues[term], rel=1e-8)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(fit.conf_int().loc[term]), rel=1e-10)
        used = data.dropna(subset=["y"])
        assert r["n_group"] == (used["treatment"] == "treated").sum()
        assert r["mean_group"] == pytest.approx(used.loc[used["treatment"] == "treated", "y"].mean())
        assert r["test"] == "ols" and r["covariates"] == "age,sex" and not r["paired"]
        assert r["contrast"] == "treated vs untreated"


def test_vectorised_ols_equals_one_fit_per_signature() -> None:
    rng = np.random.default_rng(3)
    design = np.column_stack([np.ones(20), rng.normal(size=20), rng.normal(size=20)])
    y = rng.normal(size=(20, 50))
    est = stats.ols(design, y, 1)
    for j in (0, 17, 49):
        fit = sm.OLS(y[:, j], design).fit()
        assert est.effect[j] == pytest.approx(fit.params[1], rel=1e-10)
        assert est.se[j] == pytest.approx(fit.bse[1], rel=1e-10)
        assert est.pvalue[j] == pytest.approx(fit.pvalues[1], rel=1e-8)


def test_donor_samples_are_averaged_and_never_pooled() -> None:
    donors = _donors(10)
    rng = np.random.default_rng(5)
    # donors 0-3 have three samples, the others one; two cell types
    samples = pd.concat([donors.iloc[[i] * (3 if i < 4 else 1)] for i in range(len(donors))], ignore_index=True)
    samples["sample"] = samples["donor"] + "_s" + samples.groupby("donor").cumcount().astype(str)
    obs = pd.concat([samples.assign(cell_type=c) for c in ("B", "Mono")], ignore_index=True)
    z = rng.normal(size=(len(obs), len(SIGS)))
    res = compare_file(_activity(obs, z), "toy", {}, Spec(by="treatment", reference="untreated"))
    assert res.averaged == 8  # (donor, cell type) pairs with several samples
    rows = concat("differential", res.differential)
    for cell_type in ("B", "Mono"):
        sel = (obs["cell_type"] == cell_type).to_numpy()
        means = pd.DataFrame(z[sel], columns=SIGS).groupby(obs.loc[sel, "donor"].to_numpy()).mean()
        group = donors.set_index("donor").loc[means.index, "treatment"] == "treated"
        for sig in SIGS:
            r = _row(rows, cell_type=cell_type, signature=sig)
            ref = ss.ttest_ind(means.loc[group.to_numpy(), sig], means.loc[~group.to_numpy(), sig])
            assert (r["n_group"], r["n_reference"]) == (group.sum(), (~group).sum())  # donors, not samples
            assert r["effect"] == pytest.approx(means.loc[group.to_numpy(), sig].mean()
                                                - means.loc[~group.to_numpy(), sig].mean(), rel=1e-10)
            assert r["statistic"] == pytest.approx(ref.statistic, rel=1e-10)
            assert r["pvalue"] == pytest.approx(ref.pvalue, rel=1e-8)


def test_rank_sum_with_ties_matches_scipy_and_the_tie_corrected_normal_approximation() -> None:
    donors = _donors(13)
    obs, _ = _one_sample_each(donors)
    rng = np.random.default_rng(8)
    z = np.round(rng.normal(size=(len(obs), len(SIGS))), 0)  # few distinct values: many ties
    rows = concat("differential", compare_file(_activity(obs, z), "toy", {},
                                                    Spec(by="treatment", reference="untreated", test="wilcoxon"))
                       .differential)
    treated = (obs["treatment"] == "treated").to_numpy()
    for j, sig in enumerate(SIGS):
        x, y = z[treated, j], z[~treated, j]
        r = _row(rows, signature=sig)
        ref = ss.mannwhitneyu(x, y, alternative="two-sided")
        assert (r["statistic"], r["pvalue"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
        # by hand: U of the group, its mean and tie-corrected SD, the continuity correction
        ranks = ss.rankdata(np.concatenate([x, y]))
        n1, n0, n = len(x), len(y), len(x) + len(y)
        u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
        _, t = np.unique(np.concatenate([x, y]), return_counts=True)
        sd = np.sqrt(n1 * n0 / 12 * ((n + 1) - (t ** 3 - t).sum() / (n * (n - 1))))
        assert r["statistic"] == u
        assert r["pvalue"] == pytest.approx(min(1.0, 2 * ss.norm.sf((abs(u - n1 * n0 / 2) - 0.5) / sd)), rel=1e-10)
        # the effect is still the mean difference, with the Welch interval
        welch = ss.ttest_ind(x, y, equal_var=False)
        assert r["effect"] == pytest.approx(x.mean() - y.mean())
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(welch.confidence_interval()), rel=1e-10)
        assert r["test"] == "wilcoxon"


def _stim_ctrl(n: int = 9, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    """Every donor has a ctrl and a stim sample (donor D00 two ctrl samples, D08 no stim sample)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d = f"D{i:02d}"
        conditions = ["ctrl", "ctrl", "stim"] if i == 0 else ["ctrl"] if i == n - 1 else ["ctrl", "stim"]
        rows += [{"donor": d, "sample": f"{d}_{c}{k}", "condition": c, "cell_type": "CD4 T", "age": 30.0 + i}
                 for k, c in enumerate(conditions)]
    obs = pd.DataFrame(rows)
    donor_shift = rng.normal(0, 2, n)[obs["donor"].str[1:].astype(int)]
    z = donor_shift[:, None] + rng.normal(size=(len(obs), len(SIGS)))
    z[:, 1] = np.round(z[:, 1])  # ties and zero differences in S1
    z[(obs["condition"] == "stim").to_numpy(), 0] += 1.0
    return obs, z


def _differences(obs: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    means = pd.DataFrame(z, columns=SIGS).groupby([obs["donor"], obs["condition"]]).mean()
    wide = means.unstack("condition")
    return (wide.xs("stim", axis=1, level=1) - wide.xs("ctrl", axis=1, level=1)).dropna()


@pytest.mark.parametrize("test", ["ols", "wilcoxon"])
def test_paired_tests_on_a_stim_ctrl_design(test: str) -> None:
    obs, z = _stim_ctrl()
    spec = Spec(by="condition", reference="ctrl", paired_by="donor", test=test)
    rows = concat("differential", compare_file(_activity(obs, z), "toy", {}, spec).differential)
    d = _differences(obs, z)
    assert len(d) == 8  # D08 has no stim sample
    for sig in SIGS:
        r = _row(rows, signature=sig)
        assert (r["n_group"], r["n_reference"], r["paired"]) == (8, 8, True)
        assert r["effect"] == pytest.approx(d[sig].mean(), rel=1e-10)
        if test == "ols":
            ref = ss.ttest_1samp(d[sig], 0.0)
            assert r["test"] == "paired-ols"
            assert (r["statistic"], r["pvalue"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-8)
            assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(ref.confidence_interval()), rel=1e-10)
        else:
            ref = ss.wilcoxon(d[sig], zero_method="wilcox", alternative="two-sided")
            assert r["test"] == "signed-rank"
            assert (r["statistic"], r["pvalue"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert (_differences(obs, z)["S1"] == 0).any()  # the zero_method was exercised


def test_paired_ols_with_a_covariate_matches_statsmodels() -> None:
    obs, z = _stim_ctrl(12, seed=4)
    spec = Spec(by="condition", reference="ctrl", paired_by="donor", covariates=("age",))
    rows = concat("differential", compare_file(_activity(obs, z), "toy", {}, spec).differential)
    d = _differences(obs, z)
    age = obs.groupby("donor")["age"].mean().loc[d.index]
    for sig in SIGS:
        fit = smf.ols("d ~ age_c", data=pd.DataFrame({"d": d[sig], "age_c": age - age.mean()})).fit()
        r = _row(rows, signature=sig)
        assert r["effect"] == pytest.approx(fit.params["Intercept"], rel=1e-10)
        assert r["se"] == pytest.approx(fit.bse["Intercept"], rel=1e-10)


def test_an_unpaired_contrast_refuses_a_donor_in_both_groups() -> None:
    obs, z = _stim_ctrl()
    with pytest.raises(CytoatlasError, match="--paired-by donor"):
        compare_file(_activity(obs, z), "toy", {}, Spec(by="condition", reference="ctrl"))


def test_association_slope_matches_statsmodels() -> None:
    donors = _donors(12)
    obs, z = _one_sample_each(donors)
    obs = pd.concat([obs, obs.assign(sample=obs["sample"] + "b", bmi=obs["bmi"] + 1.0)], ignore_index=True)
    z = np.vstack([z, z + np.random.default_rng(2).normal(size=z.shape)])
    rows = concat("association", compare_file(_activity(obs, z), "toy", {},
                                                   Spec(continuous=("bmi",), covariates=("age",))).association)
    per_donor = pd.DataFrame(z, columns=SIGS).assign(bmi=obs["bmi"], age=obs["age"]).groupby(obs["donor"]).mean()
    for sig in SIGS:
        fit = smf.ols(f"{sig} ~ bmi + age", data=per_donor).fit()
        r = _row(rows, signature=sig)
        assert (r["by"], r["contrast"], r["test"], r["n"]) == ("bmi", "bmi", "ols", 12)
        assert r["effect"] == pytest.approx(fit.params["bmi"], rel=1e-10)
        assert r["se"] == pytest.approx(fit.bse["bmi"], rel=1e-10)
        assert r["pvalue"] == pytest.approx(fit.pvalues["bmi"], rel=1e-8)


def test_too_small_groups_and_constant_covariates_are_reported_untestable() -> None:
    donors = _donors(10)
    obs, z = _one_sample_each(donors)
    # cell type "Rare": only two treated donors; "Mono2": every donor of the same sex
    rare = obs[(obs["treatment"] == "untreated") | (obs.index < 4)].assign(cell_type="Rare")
    mono2 = obs.assign(cell_type="Mono2", sex=pd.Categorical(["F"] * len(obs), categories=["F", "M"]))
    all_obs = pd.concat([obs, rare, mono2], ignore_index=True)
    all_z = np.vstack([z, z[rare.index], z])
    res = compare_file(_activity(all_obs, all_z), "toy", {},
                       Spec(by="treatment", reference="untreated", covariates=("sex",), continuous=("bmi",)))
    un = table_frame("untestable", res.untestable)
    r = _row(un, cell_type="Rare", analysis="differential")
    assert (r["n_group"], r["n_reference"]) == (2, 5)
    assert "fewer than 3" in r["reason"] and r["contrast"] == "treated vs untreated"
    assert "'sex' is constant" in _row(un, cell_type="Mono2", analysis="differential")["reason"]
    assert "'sex' is constant" in _row(un, cell_type="Mono2", analysis="association")["reason"]
    tested = concat("differential", res.differential)
    assert set(tested["cell_type"]) == {"Mono"}


def test_errors_name_what_exists() -> None:
    obs, z = _one_sample_each(_donors())
    act = _activity(obs, z)
    with pytest.raises(CytoatlasError, match=r"no obs column 'disease'.*obs columns: donor, treatment, age"):
        compare_file(act, "toy", {}, Spec(by="disease", reference="healthy"))
    with pytest.raises(CytoatlasError, match=r"--reference 'healthy' is not a value of 'treatment'; its values: "
                                             r"untreated, treated"):
        compare_file(act, "toy", {}, Spec(by="treatment", reference="healthy"))
    with pytest.raises(CytoatlasError, match=r"'placebo' not a value .*its values: untreated, treated"):
        compare_file(act, "toy", {}, Spec(by="treatment", reference="untreated", groups=("placebo",)))
    with pytest.raises(CytoatlasError, match="'sex' is not numeric"):
        compare_file(act, "toy", {}, Spec(continuous=("sex",)))
    mixed = obs.assign(sample=obs["donor"] + "_s0")
    mixed = pd.concat([mixed, mixed.iloc[:1].assign(sample="D00_s1", sex="M" if mixed["sex"][0] == "F" else "F")])
    with pytest.raises(CytoatlasError, match="covariate 'sex' is not constant within donor 'D00'"):
        compare_file(_activity(mixed, np.vstack([z, z[:1]])), "toy", {},
                     Spec(by="treatment", reference="untreated", covariates=("sex",)))
    with pytest.raises(CytoatlasError, match="--continuous is a regression slope"):
        make_spec(None, None, None, ["age"], (), None, "wilcoxon", 3)
    with pytest.raises(CytoatlasError, match="needs --reference"):
        make_spec("treatment", None, None, (), (), None, "ols", 3)
    with pytest.raises(CytoatlasError, match="--covariates need --test ols"):
        make_spec("treatment", "untreated", None, (), ("age",), None, "wilcoxon", 3)
    with pytest.raises(CytoatlasError, match="name what to compare"):
        make_spec(None, None, None, (), (), None, "ols", 3)


def _hand_dl(y: np.ndarray, se: np.ndarray) -> dict:
    """DerSimonian & Laird (1986), written out."""
    w = 1 / se ** 2
    fixed = (w * y).sum() / w.sum()
    q = (w * (y - fixed) ** 2).sum()
    df = len(y) - 1
    tau2 = max(0.0, (q - df) / (w.sum() - (w ** 2).sum() / w.sum()))
    w_star = 1 / (se ** 2 + tau2)
    mu = (w_star * y).sum() / w_star.sum()
    mu_se = np.sqrt(1 / w_star.sum())
    return {"effect": mu, "se": mu_se, "tau2": tau2, "q": q, "q_pvalue": ss.chi2.sf(q, df),
            "i2": max(0.0, 100 * (q - df) / q), "pvalue": 2 * ss.norm.sf(abs(mu / mu_se)),
            "ci_low": mu - 1.959963984540054 * mu_se, "ci_high": mu + 1.959963984540054 * mu_se}


@pytest.mark.parametrize(("effects", "se"), [
    ([0.1, 0.9, 0.3, -0.4], [0.1, 0.15, 0.2, 0.12]),   # heterogeneous: tau2 > 0
    ([0.40, 0.35, 0.42], [0.05, 0.07, 0.06]),          # Q < df: tau2 truncated at 0 (statsmodels leaves it < 0)
])
def test_dersimonian_laird_matches_the_hand_computation(effects, se) -> None:
    from statsmodels.stats.meta_analysis import combine_effects

    got = dersimonian_laird(np.array(effects), np.array(se))
    want = _hand_dl(np.array(effects), np.array(se))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-14), key
    assert 0 <= got["i2"] <= 100
    raw = combine_effects(np.array(effects), np.array(se) ** 2, method_re="dl").tau2
    if want["tau2"] > 0:  # statsmodels' own random-effects numbers where tau2 needs no truncation
        assert raw == pytest.approx(got["tau2"], rel=1e-12)
    else:
        assert raw < 0 and got["tau2"] == 0.0 and got["i2"] == 0.0


def test_meta_table_pools_atlases_of_one_cell_type_unit() -> None:
    base = {"analysis": "differential", "signature_set": "cytosig", "signature": "IL10", "by": "treatment",
            "contrast": "treated vs untreated", "resolution": "fine"}
    mono = {"cl_id": "CL:0000860", "cl_name": "classical monocyte"}
    rows = pd.DataFrame([
        {**base, **mono, "atlas": "a", "level": "L2", "cell_type": "CD14 Mono", "effect": 1.0, "se": 0.2},
        {**base, **mono, "atlas": "b", "level": "l2", "cell_type": "Mono_classical", "effect": 0.6, "se": 0.3},
        {**base, **mono, "atlas": "b", "level": "l2", "cell_type": "M05_Mo_CD14", "effect": 0.8, "se": 0.1},
        {**base, **mono, "atlas": "c", "level": "L2", "cell_type": "Classical monocytes", "effect": -0.2, "se": 0.4},
        {**base, "cl_id": "CL:0000236", "cl_name": "B cell", "atlas": "a", "level": "L2", "cell_type": "B",
         "effect": 0.3, "se": 0.2},  # only in one atlas
        {**base, "cl_id": "", "cl_name": "", "atlas": "b", "level": "L2", "cell_type": "odd", "effect": 0.3,
         "se": 0.2},  # unmatched
    ])
    rows["pvalue"] = 2 * ss.norm.sf(np.abs(rows["effect"] / rows["se"]))  # normal tests: SEs taken as they are
    meta = meta_analysis(rows)
    assert len(meta) == 1
    r = meta.iloc[0]
    # atlas b's two labels count as one study: mean effect, mean SE
    want = _hand_dl(np.array([1.0, 0.7, -0.2]), np.array([0.2, 0.2, 0.4]))
    assert r["effect"] == pytest.approx(want["effect"], rel=1e-10)
    assert (r["n_atlases"], r["atlases"], r["level"]) == (3, "a,b,c", "L2")
    assert (r["cl_id"], r["resolution"]) == ("CL:0000860", "fine")
    assert r["labels"] == "a: CD14 Mono; b: M05_Mo_CD14+Mono_classical; c: Classical monocytes"
    assert r["sign_agreement"] == pytest.approx(2 / 3)


def test_an_atlas_with_few_donors_is_pooled_with_the_se_its_own_test_implies() -> None:
    # seven donors, slope + 3 covariates + intercept: 3 residual df, where t = -8.85 is p = 0.003 (normal: 1e-18);
    # five donors: 1 df
    t, df, se = np.array([-8.85, -0.5555]), np.array([3, 1]), np.array([0.03992, 0.2641])
    effect, p = t * se, 2 * ss.t.sf(np.abs(t), df)
    base = {"analysis": "association", "level": "L2", "signature_set": "cytosig", "signature": "IL2", "by": "bmi",
            "contrast": "bmi", "resolution": "fine", "cl_id": "CL:0000786", "cl_name": "plasma cell"}
    rows = pd.DataFrame([{**base, "atlas": a, "cell_type": "Plasma", "effect": e, "se": s, "pvalue": q}
                         for a, e, s, q in zip("ab", effect, se, p, strict=True)])
    r = meta_analysis(rows).iloc[0]
    implied = np.abs(effect) / ss.norm.isf(p / 2)  # the normal test's SE that gives each atlas' own p
    assert np.all(implied > se)
    want = _hand_dl(effect, implied)
    assert r["effect"] == pytest.approx(want["effect"], rel=1e-10) and r["se"] == pytest.approx(want["se"], rel=1e-10)
    assert 1e-3 < r["pvalue"] < 0.05  # the plain SEs pool to p ~ 1e-18
    assert dersimonian_laird(effect, se)["pvalue"] < 1e-15


def _hand_bh(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1)
    out = np.empty(m)
    out[order] = adjusted
    return out


def test_bh_matches_a_hand_computation_and_statsmodels() -> None:
    p = np.random.default_rng(0).uniform(size=40) ** 3
    p[5] = np.nan
    got = stats.bh(p)
    ok = np.isfinite(p)
    assert np.isnan(got[5])
    np.testing.assert_allclose(got[ok], _hand_bh(p[ok]), rtol=1e-12)
    np.testing.assert_allclose(got[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-12)


def test_fdr_is_per_table_part_and_per_cell_type() -> None:
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"atlas": np.repeat(["a", "b"], 20), "level": "L1", "signature_set": "cytosig",
                         "cell_type": np.tile(np.repeat(["B", "T"], 10), 2), "by": "treatment",
                         "contrast": "treated vs untreated", "signature": np.tile([f"S{i}" for i in range(10)], 4),
                         "n_group": 5, "n_reference": 5, "pvalue": rng.uniform(size=40) ** 2})
    out = with_fdr("differential", table_frame("differential", rows))
    for _, part in out.groupby("atlas"):
        np.testing.assert_allclose(part["fdr"], _hand_bh(part["pvalue"].to_numpy()), rtol=1e-12)
        for _, cell in part.groupby("cell_type"):
            np.testing.assert_allclose(cell["fdr_cell_type"], _hand_bh(cell["pvalue"].to_numpy()), rtol=1e-12)


def test_unit_means_and_welch_match_pandas_and_scipy() -> None:
    from cytoatlas._compare.units import unit_means

    rng = np.random.default_rng(2)
    codes = rng.integers(0, 5, 30)
    values = rng.normal(size=(30, 3))
    values[4, 1] = np.nan
    want = pd.DataFrame(values).groupby(codes).mean().to_numpy()
    np.testing.assert_allclose(unit_means(codes, 5, values), want, rtol=1e-12)
    x, y = rng.normal(size=(7, 3)), rng.normal(1, 2, size=(9, 3))
    est = stats.welch(x, y)
    for j in range(3):
        ref = ss.ttest_ind(x[:, j], y[:, j], equal_var=False)
        assert (est.statistic[j], est.pvalue[j]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-10)
        assert (est.ci_low[j], est.ci_high[j]) == pytest.approx(tuple(ref.confidence_interval()), rel=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # statsmodels HKSJ sqrt of a negative, not used
def test_pooling_all_groups_at_once_matches_statsmodels_group_by_group() -> None:
    # 400 groups of 2-6 studies, heterogeneous and homogeneous ones, keys in shuffled order with a missing level
    from statsmodels.stats.meta_analysis import combine_effects

    rng = np.random.default_rng(7)
    rows = []
    for g in range(400):
        k = int(rng.integers(2, 7))
        spread = 0.5 if g % 2 else 0.01  # half the groups with Q < k - 1 (tau2 truncated)
        for a in range(k):
            rows.append({"analysis": "differential", "level_key": "l2", "signature_set": "cytosig",
                         "harmonised": f"type{g % 37}", "signature": f"S{g}", "by": "sex", "contrast": "F vs M",
                         "atlas": f"atlas{(a * 7 + g) % 9}", "effect": rng.normal(0.2, spread),
                         "se": rng.uniform(0.05, 0.4)})
    rows.append({**rows[0], "signature": "lonely"})  # a group of one study: no row
    studies = pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)
    studies["labels"] = [f"t{i % 4}+t{i % 3}" for i in range(len(studies))]
    keys = ["analysis", "level_key", "signature_set", "harmonised", "signature", "by", "contrast"]
    got = pool_studies(studies, keys)
    assert len(got) == 400 and "lonely" not in set(got["signature"])
    assert got[keys].equals(got[keys].sort_values(keys).reset_index(drop=True))  # sorted key order
    for i in rng.choice(400, 60, replace=False):
        r = got.iloc[i]
        part = studies[studies["signature"] == r["signature"]]
        res = combine_effects(part["effect"].to_numpy(), part["se"].to_numpy() ** 2, method_re="dl")
        if res.tau2 > 0:
            want = (res.mean_effect_re, res.sd_eff_w_re, res.tau2)
        else:
            want = (res.mean_effect_fe, res.sd_eff_w_fe, 0.0)
        assert (r["effect"], r["se"], r["tau2"]) == pytest.approx(want, rel=1e-10, abs=1e-14)
        assert r["q"] == pytest.approx(res.q, rel=1e-10)
        assert r["n_atlases"] == len(part) and r["atlases"] == ",".join(sorted(part["atlas"]))
        assert r["labels"] == "; ".join(f"{a}: {lb}" for a, lb in sorted(zip(part["atlas"], part["labels"],
                                                                               strict=True)))
        assert r["sign_agreement"] == pytest.approx(np.mean(np.sign(part["effect"]) == np.sign(want[0])))
    assert (got["tau2"] == 0).sum() > 100 and (got["tau2"] > 0).sum() > 100

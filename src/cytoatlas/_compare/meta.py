"""Across atlases: a DerSimonian-Laird random-effects meta-analysis of each effect.

Per analysis x level x signature set x cell-type unit x signature x contrast, the atlases' effects are
pooled with ``statsmodels.stats.meta_analysis.combine_effects(method_re="dl")``: inverse-variance weights
``1 / (se^2 + tau^2)`` with the DerSimonian-Laird ``tau^2 = max(0, (Q - (k - 1)) / (sum w - sum w^2 / sum w))``
(``w = 1 / se^2``, ``Q`` Cochran's heterogeneity statistic; statsmodels leaves it negative when ``Q < k - 1``,
here truncated at 0 as DerSimonian and Laird do), normal-theory 95 % CI and p.
``I^2 = (Q - (k - 1)) / Q`` as a percentage, clipped to [0, 100].

Each atlas enters with the standard error its own test implies: ``max(se, |effect| / z)``, ``z`` the normal
quantile of the atlas' two-sided p (``norm.isf(p / 2)``). The pooling is normal theory, while an atlas' test is
a t test on few donors (or a rank test): a seven-donor covariate scan with three covariates has 3 residual
degrees of freedom, where t = 8.9 is p = 0.003, not the normal 1e-18, and its plain SE would weigh and pool as if
it were known. With many donors the two SEs agree.

A unit is a Cell Ontology term at a resolution (:mod:`cytoatlas.celltypes`): at ``fine``, each label at the finest
term another atlas holds (``cDC2`` of one atlas meets ``DC`` of another at dendritic cell); at ``lineage``, at the
fixed lineage terms. Labels of one atlas meeting at one unit (two CD4 T subsets, say) count as one study: the mean
of their effects, with the mean of their standard errors, which bounds the SE of that mean whatever their
correlation (they share donors). A unit found in only one atlas gets no row.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from cytoatlas._compare.tables import table_frame

log = logging.getLogger("cytoatlas.compare")
_KEYS = ["analysis", "level_key", "signature_set", "resolution", "cl_id", "cl_name", "signature", "by", "contrast"]


def _pool(effects: np.ndarray, se: np.ndarray) -> tuple[float, float, float, float]:
    """(pooled effect, its SE, tau^2, Q) of one DerSimonian-Laird pooling, by statsmodels' ``combine_effects``."""
    from statsmodels.stats.meta_analysis import combine_effects  # ~0.8 s to import: only when pooling

    with warnings.catch_warnings():
        # statsmodels also computes HKSJ variances, whose square root can be of a negative: not used here
        warnings.simplefilter("ignore", RuntimeWarning)
        res = combine_effects(effects, se ** 2, method_re="dl")
    # statsmodels (0.14, 0.15) leaves the DL moment estimate (Q - df) / c negative when Q < df; DerSimonian and
    # Laird truncate it at 0, where the random-effects weights are the fixed-effect ones
    tau2 = max(0.0, float(res.tau2))
    if tau2 > 0:
        return float(res.mean_effect_re), float(res.sd_eff_w_re), tau2, float(res.q)
    return float(res.mean_effect_fe), float(res.sd_eff_w_fe), tau2, float(res.q)


def _inference(pooled: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """CI, p (normal theory), Q's p (chi^2 on ``n_atlases - 1`` df) and I^2 of pooled rows, all rows at once
    (scipy's distributions cost ~0.1 ms a call: per row they would dominate)."""
    effect, se, q = (pooled[c].to_numpy(dtype=float) for c in ("effect", "se", "q"))
    df = pooled["n_atlases"].to_numpy(dtype=float) - 1
    half = stats.norm.ppf(1 - alpha / 2) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * stats.norm.sf(np.abs(effect / se)), np.nan)
        i2 = np.where(q > 0, 100.0 * np.clip((q - df) / q, 0.0, 1.0), 0.0)
    return pooled.assign(ci_low=effect - half, ci_high=effect + half, pvalue=p, q_pvalue=stats.chi2.sf(q, df), i2=i2)


def dersimonian_laird(effects: np.ndarray, se: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Random-effects pooling of ``effects`` with standard errors ``se`` (DerSimonian-Laird, via statsmodels).

    Returns
    -------
    dict
        ``effect, se, ci_low, ci_high, pvalue`` (normal theory), ``tau2``, ``q``, ``q_pvalue`` (chi^2 on
        ``k - 1`` degrees of freedom) and ``i2`` (percent, clipped to [0, 100]).
    """
    effects, se = np.asarray(effects, dtype=float), np.asarray(se, dtype=float)
    effect, pooled_se, tau2, q = _pool(effects, se)
    row = pd.DataFrame({"effect": [effect], "se": [pooled_se], "tau2": [tau2], "q": [q], "n_atlases": [len(effects)]})
    out = _inference(row, alpha).iloc[0]
    return {k: float(out[k]) for k in ("effect", "se", "ci_low", "ci_high", "pvalue", "tau2", "q", "q_pvalue", "i2")}


def study_se(effect: np.ndarray, se: np.ndarray, pvalue: np.ndarray) -> np.ndarray:
    """The standard error an atlas' effect is pooled with: ``max(se, |effect| / norm.isf(p / 2))``, the SE a
    normal test would need to give the atlas' own p (its plain ``se`` where p is missing, 1 or 0)."""
    effect, se, pvalue = (np.asarray(a, dtype=float) for a in (effect, se, pvalue))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = stats.norm.isf(pvalue / 2)
        implied = np.where(np.isfinite(z) & (z > 0), np.abs(effect) / z, np.nan)
    return np.fmax(se, implied)


def _studies(rows: pd.DataFrame) -> pd.DataFrame:
    """One study per atlas: labels meeting at one unit averaged (effect and SE, see the module's note)."""
    rows = rows.assign(se=study_se(rows["effect"], rows["se"], rows["pvalue"]))
    usable = rows[(rows["cl_name"] != "") & np.isfinite(rows["effect"]) & np.isfinite(rows["se"])
                  & (rows["se"] > 0)]
    keys = [*_KEYS, "atlas"]
    merged = usable.groupby(keys, sort=False, dropna=False).agg(
        effect=("effect", "mean"), se=("se", "mean"), n_labels=("effect", "size"),
        labels=("cell_type", lambda s: "+".join(sorted(set(s))))).reset_index()
    several = merged[(merged["n_labels"] > 1) & (merged["resolution"] == "fine")]
    if len(several):
        pairs = several[["atlas", "cl_name", "labels"]].drop_duplicates()
        log.info("%d (atlas, cell type) pair(s) at the fine resolution hold several labels, pooled as one study "
                 "each: %s", len(pairs),
                 ", ".join(f"{a}:{h} ({lb})" for a, h, lb in pairs.itertuples(index=False))[:400])
    return merged


def meta_analysis(effects: pd.DataFrame) -> pd.DataFrame:
    """The ``meta`` rows (without ``fdr``) from per-atlas rows.

    Parameters
    ----------
    effects
        Rows of the ``differential`` and ``association`` tables with an ``analysis`` column and, per resolution,
        their label's unit: ``analysis, atlas, level, signature_set, cell_type, resolution, cl_id, cl_name
        (the unit's), signature, by, contrast, effect, se, pvalue`` (each atlas pooled with :func:`study_se`'s
        SE). Levels are matched by name (case-insensitively; the first atlas' spelling is kept).
    """
    if not len(effects):
        return table_frame("meta", [])
    effects = effects.assign(level_key=effects["level"].str.lower())
    spelling = effects.drop_duplicates("level_key").set_index("level_key")["level"]
    studies = _studies(effects)
    rows = []
    for key, part in studies.groupby(_KEYS, sort=True, dropna=False):
        if len(part) < 2:  # one study per atlas (see _studies)
            continue
        effects = part["effect"].to_numpy()
        effect, se, tau2, q = _pool(effects, part["se"].to_numpy())
        record = dict(zip(_KEYS, key, strict=True))
        record["level"] = spelling[record.pop("level_key")]
        rows.append({**record, "effect": effect, "se": se, "tau2": tau2, "q": q, "n_atlases": len(part),
                     "atlases": ",".join(sorted(part["atlas"])), "fdr": np.nan,
                     "labels": "; ".join(f"{a}: {lb}" for a, lb in sorted(zip(part["atlas"], part["labels"],
                                                                               strict=True))),
                     "sign_agreement": float(np.mean(np.sign(effects) == np.sign(effect)))})
    return table_frame("meta", _inference(pd.DataFrame(rows)) if rows else [])

"""Across atlases: a DerSimonian-Laird random-effects meta-analysis of each effect.

Per analysis x level x signature set x cell-type unit x signature x contrast, the atlases' effects are
pooled as ``statsmodels.stats.meta_analysis.combine_effects(method_re="dl")`` does (all groups at once, see
:func:`pool_studies`): inverse-variance weights ``1 / (se^2 + tau^2)`` with the DerSimonian-Laird
``tau^2 = max(0, (Q - (k - 1)) / (sum w - sum w^2 / sum w))``
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

import numpy as np
import pandas as pd
from scipy import stats

from cytoatlas._compare.tables import table_frame

log = logging.getLogger("cytoatlas.compare")
_KEYS = ["analysis", "level_key", "signature_set", "resolution", "cl_id", "cl_name", "signature", "by", "contrast"]


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
    """Random-effects pooling of ``effects`` with standard errors ``se`` (DerSimonian-Laird, see :func:`pool_studies`).

    Returns
    -------
    dict
        ``effect, se, ci_low, ci_high, pvalue`` (normal theory), ``tau2``, ``q``, ``q_pvalue`` (chi^2 on
        ``k - 1`` degrees of freedom) and ``i2`` (percent, clipped to [0, 100]).
    """
    effects, se = np.asarray(effects, dtype=float), np.asarray(se, dtype=float)
    one = pd.DataFrame({"group": 0, "atlas": [str(i) for i in range(len(effects))], "effect": effects, "se": se})
    out = _inference(pool_studies(one, ["group"]), alpha).iloc[0]
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


def pool_studies(studies: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """DerSimonian-Laird pooling of every group of ``studies`` sharing ``keys``, all groups at once.

    The numbers of statsmodels' ``combine_effects(method_re="dl")`` group by group: inverse-variance weights
    ``w = 1 / se^2``, Cochran's ``Q = sum w y^2 - (sum w y)^2 / sum w``, ``tau^2 = (Q - (k - 1)) / (sum w - sum w^2
    / sum w)``, which statsmodels (0.14, 0.15) leaves negative when ``Q < k - 1`` and DerSimonian and Laird
    truncate at 0 (the random-effects weights are then the fixed-effect ones), and the pooled effect and SE with
    weights ``1 / (se^2 + tau^2)``. Computed with per-group sums (``np.bincount``) rather than one
    ``combine_effects`` call per group (~0.25 ms each, most of a comparison's time over its ~90 k groups).

    Parameters
    ----------
    studies
        One row per study: the ``keys`` columns, ``atlas``, ``effect`` and ``se`` (finite, ``se > 0``), and
        optionally ``labels`` (the atlas' labels of the study).
    keys
        The grouping columns; groups with fewer than two studies get no row.

    Returns
    -------
    pandas.DataFrame
        One row per group of two or more studies, in the sorted order of ``keys``: the ``keys`` columns,
        ``effect, se, tau2, q, n_atlases``, ``atlases`` (sorted, comma-joined), ``labels`` when the studies have
        them (``"atlas: labels"`` of each study, sorted, joined by ``"; "``) and ``sign_agreement`` (the share of
        studies whose effect has the pooled effect's sign).
    """
    labelled = "labels" in studies.columns
    columns = [*keys, "effect", "se", "tau2", "q", "n_atlases", "atlases", *(["labels"] if labelled else []),
               "sign_agreement"]
    if not len(studies):
        return pd.DataFrame(columns=columns)
    gid = studies.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
    n_groups = int(gid.max()) + 1
    k = np.bincount(gid, minlength=n_groups)
    keep = k[gid] >= 2  # one study per atlas (see _studies)
    studies, gid = studies[keep], gid[keep]
    if not len(studies):
        return pd.DataFrame(columns=columns)
    # renumber the kept groups 0..m-1 (still in sorted key order) and put each group's rows together
    gid = np.unique(gid, return_inverse=True)[1]
    order = np.argsort(gid, kind="stable")
    studies, gid = studies.iloc[order], gid[order]
    m = int(gid[-1]) + 1
    y = studies["effect"].to_numpy(dtype=float)
    v = studies["se"].to_numpy(dtype=float) ** 2

    def total(a: np.ndarray) -> np.ndarray:
        return np.bincount(gid, weights=a, minlength=m)

    k = np.bincount(gid, minlength=m)
    w = 1.0 / v
    sw = total(w)
    swy = total(w * y)
    # Q as statsmodels writes it: sum w y^2 - (sum w y)^2 / sum w
    q = total(w * y ** 2) - swy ** 2 / sw
    c = sw - total(w ** 2) / sw
    with np.errstate(divide="ignore", invalid="ignore"):
        tau2 = np.maximum(0.0, (q - (k - 1)) / c)
    tau2 = np.where(np.isfinite(tau2), tau2, 0.0)
    w_re = 1.0 / (v + tau2[gid])
    sw_re = total(w_re)
    effect = total(w_re * y) / sw_re
    se = np.sqrt(1.0 / sw_re)
    agree = total((np.sign(y) == np.sign(effect[gid])).astype(float)) / k
    first = np.r_[0, np.flatnonzero(np.diff(gid)) + 1]
    out = studies[keys].iloc[first]
    atlas = studies["atlas"].astype(str).to_numpy()
    labels = studies["labels"].astype(str).to_numpy() if labelled else np.full(len(atlas), "")
    order = np.lexsort((labels, atlas, gid))  # by group, then atlas, then labels
    g = gid[order]
    atlases = pd.Series(atlas[order]).groupby(g, sort=True).agg(",".join).to_numpy()
    extra = {}
    if labelled:
        pairs = pd.Series(atlas[order]) + ": " + pd.Series(labels[order])
        extra["labels"] = pairs.groupby(g, sort=True).agg("; ".join).to_numpy()
    return out.reset_index(drop=True).assign(effect=effect, se=se, tau2=tau2, q=q, n_atlases=k, atlases=atlases,
                                             **extra, sign_agreement=agree)


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
    pooled = pool_studies(studies, _KEYS)
    if not len(pooled):
        return table_frame("meta", [])
    pooled = pooled.assign(level=spelling.reindex(pooled["level_key"]).to_numpy(), fdr=np.nan)
    return table_frame("meta", _inference(pooled.drop(columns="level_key")))

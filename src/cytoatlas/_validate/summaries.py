"""Summaries of the within-atlas correlations: per atlas x level x signature set, and CytoSig vs SecAct."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

SUMMARY_COLUMNS = ["atlas", "level", "signature_set", "n_targets", "median_rho", "pct_positive", "n_significant",
                   "n_significant_fdr", "n_not_computed", "median_partial_rho", "pct_rho_surviving", "fractions_level"]
VERSUS_COLUMNS = ["atlas", "level", "n_shared", "median_rho_cytosig", "median_rho_secact", "statistic", "pvalue",
                  "median_difference", "reason"]
# a representative rho counts as significant when p < 0.05 and |rho| > 0.3
ALPHA, MIN_ABS_RHO = 0.05, 0.3


def summary(rho: pd.DataFrame) -> pd.DataFrame:
    """Per atlas x level x signature set, over each target's representative rho: how many targets have one, their
    median, % positive, # with p < 0.05 and |rho| > 0.3 (and with BH-FDR < 0.05), # targets without one; at a
    level without cell types also the median partial rho given the donors' cell-type fractions (over the targets
    that have one) and how much of the rho survives: 100 x that median / the median rho of the same targets."""
    rows = []
    for (atlas, level, sig_set), sub in rho.groupby(["atlas", "level", "signature_set"], sort=False):
        rep = sub[sub["representative"]]
        r = rep["rho"].to_numpy(dtype=float)
        strong = np.abs(r) > MIN_ABS_RHO
        rows.append({"atlas": atlas, "level": level, "signature_set": sig_set, "n_targets": len(rep),
                     "median_rho": float(np.median(r)) if len(r) else np.nan,
                     "pct_positive": float(100 * (r > 0).mean()) if len(r) else np.nan,
                     "n_significant": int(((rep["pvalue"] < ALPHA).to_numpy() & strong).sum()),
                     "n_significant_fdr": int(((rep["fdr"] < ALPHA).to_numpy() & strong).sum()),
                     "n_not_computed": int(sub["target"].nunique() - len(rep)), **_partial_summary(rep)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _partial_summary(rep: pd.DataFrame) -> dict:
    out = {"median_partial_rho": np.nan, "pct_rho_surviving": np.nan, "fractions_level": ""}
    if "partial_rho" not in rep:
        return out
    both = rep[np.isfinite(rep["partial_rho"].to_numpy(dtype=float))]
    if len(both):
        partial, rho = float(np.median(both["partial_rho"])), float(np.median(both["rho"]))
        out.update(median_partial_rho=partial, pct_rho_surviving=100 * partial / rho if rho != 0 else np.nan,
                   fractions_level=str(both["fractions_level"].iloc[0]))
    return out


def cytosig_vs_secact(rho: pd.DataFrame) -> pd.DataFrame:
    """Per atlas x level, CytoSig and SecAct on the targets they share (a CytoSig target whose gene is a SecAct
    target): representative rhos paired by gene, Wilcoxon signed-rank test (two-sided) of their differences."""
    rows = []
    for (atlas, level), sub in rho.groupby(["atlas", "level"], sort=False):
        sets = set(sub["signature_set"])
        if not sets & {"cytosig", "secact"}:
            continue
        rep = sub[sub["representative"]]
        cyto = rep[rep["signature_set"] == "cytosig"].drop_duplicates("gene").set_index("gene")["rho"]
        sec = rep[rep["signature_set"] == "secact"].drop_duplicates("gene").set_index("gene")["rho"]
        both = sorted(set(cyto.index) & set(sec.index))
        a, b = cyto.reindex(both).to_numpy(float), sec.reindex(both).to_numpy(float)
        row = {"atlas": atlas, "level": level, "n_shared": len(both),
               "median_rho_cytosig": float(np.median(a)) if both else np.nan,
               "median_rho_secact": float(np.median(b)) if both else np.nan,
               "statistic": np.nan, "pvalue": np.nan,
               "median_difference": float(np.median(a - b)) if both else np.nan, "reason": ""}
        if not {"cytosig", "secact"} <= sets:
            row["reason"] = f"{'SecAct' if 'cytosig' in sets else 'CytoSig'} was not run at this level"
        elif not both:
            row["reason"] = "no shared target has a rho in both sets"
        elif np.all(a == b):
            row["reason"] = "all differences are zero"
        else:
            res = stats.wilcoxon(a, b)
            row.update(statistic=float(res.statistic), pvalue=float(res.pvalue))
        rows.append(row)
    return pd.DataFrame(rows, columns=VERSUS_COLUMNS)

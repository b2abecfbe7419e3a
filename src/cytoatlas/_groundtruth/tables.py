"""The ground-truth tables: their columns, dtypes and sort keys, the frames built from rows, and the summary.

- ``matches``: every treatment value per atlas x level x signature set, its own signature (empty: unmatched, with
  the reason) and how it was found;
- ``effects``: per treatment x cell type (and ``all``), the own signature's paired effect, CI, p, its rank among
  the set by effect and by t, the fraction of donors where it ranks first, cross-donor consistency, the top
  signature, and the cross-talk columns (:mod:`cytoatlas._compare.crosstalk`);
- ``treatments``: per treatment, the AUCs against control and against the other treatments, and its ranks;
- ``summary``: per atlas x level x signature set, the median AUC, the fraction of treatments whose own signature
  ranks first and in the top 3, the median cross-donor consistency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from cytoatlas._compare.crosstalk import CROSSTALK_COLUMNS

TABLES = ("matches", "effects", "treatments", "summary")
_BASE = ["atlas", "level", "signature_set", "column", "control", "treatment", "signature"]
COLUMNS: dict[str, list[str]] = {
    "matches": [*_BASE[:6], "signature", "source", "n_donors", "reason"],
    "effects": [*_BASE, "cell_type", "n_donors", "n_signatures", "effect", "se", "ci_low", "ci_high", "statistic",
                "pvalue", "rank_effect", "rank_statistic", "frac_donors_rank1", "consistency", "top_signature",
                *CROSSTALK_COLUMNS, "reason"],
    "treatments": [*_BASE, "n_donors", "n_units", "n_cell_types", "auc_control", "auc_other", "n_other_units",
                   "rank_effect", "rank_statistic", "effect", "pvalue", "frac_donors_rank1", "frac_units_rank1",
                   "frac_cell_types_rank1", "consistency", "reason"],
    "summary": ["atlas", "level", "signature_set", "n_treatments", "n_matched", "n_tested", "median_auc_control",
                "median_auc_other", "frac_rank1", "frac_top3", "frac_cell_types_rank1", "median_consistency",
                "unmatched"],
}
KEYS: dict[str, list[str]] = {
    "matches": ["atlas", "level", "signature_set", "treatment"],
    "effects": ["atlas", "level", "signature_set", "treatment", "cell_type"],
    "treatments": ["atlas", "level", "signature_set", "treatment"],
    "summary": ["atlas", "level", "signature_set"],
}
_COUNTS = {"n_donors", "n_signatures", "rank_effect", "rank_statistic", "n_units", "n_cell_types", "n_other_units",
           "n_treatments", "n_matched", "n_tested", "n_correlated_significant"}
_TEXT = {"atlas", "level", "signature_set", "column", "control", "treatment", "signature", "source", "cell_type",
         "top_signature", "reason", "unmatched", "correlated", "also_significant"}


def column_dtype(column: str) -> str:
    """The pandas dtype of a ground-truth column: ``int64``, ``object`` (text) or ``float64``."""
    if column in _COUNTS:
        return "int64"
    return "object" if column in _TEXT else "float64"


def table_frame(name: str, rows: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """A table from row records: its columns in order, its dtypes, sorted by its keys (``all`` after the cell
    types in ``effects``)."""
    columns = COLUMNS[name]
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if not len(df):
        return pd.DataFrame({c: pd.Series(dtype=column_dtype(c)) for c in columns})
    df = df.reindex(columns=columns)
    for c in columns:
        if column_dtype(c) == "object":
            df[c] = df[c].fillna("").astype(str)
        elif column_dtype(c) == "int64":
            df[c] = df[c].fillna(0).astype("int64")
        else:
            df[c] = df[c].astype("float64")
    order = df.assign(_all=df["cell_type"] == "all") if "cell_type" in df else df.assign(_all=False)
    keys = [k for k in KEYS[name] if k != "cell_type"] + (["_all", "cell_type"] if "cell_type" in df else [])
    return order.sort_values(keys, kind="mergesort").drop(columns="_all").reset_index(drop=True)


def summary(matches: pd.DataFrame, treatments: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """Per atlas x level x signature set: how many treatments, matched and tested; the median AUC against control
    and against other treatments; the fraction of tested treatments whose own signature ranks first (and in the
    top 3) over all cell types (each donor's differences averaged over its cell types), the fraction of tested
    treatment x cell type rows where it ranks first, the median cross-donor consistency, the unmatched names."""
    rows = []
    for key, m in matches.groupby(["atlas", "level", "signature_set"], sort=False):
        sel = (treatments["atlas"] == key[0]) & (treatments["level"] == key[1]) & \
              (treatments["signature_set"] == key[2])
        t = treatments[sel & (treatments["reason"] == "")]
        e = effects[(effects["atlas"] == key[0]) & (effects["level"] == key[1]) & (effects["signature_set"] == key[2])
                    & (effects["cell_type"] != "all") & (effects["reason"] == "")]
        rank = t["rank_effect"].to_numpy()
        rows.append({"atlas": key[0], "level": key[1], "signature_set": key[2], "n_treatments": len(m),
                     "n_matched": int((m["signature"] != "").sum()), "n_tested": len(t),
                     "median_auc_control": _median(t["auc_control"]), "median_auc_other": _median(t["auc_other"]),
                     "frac_rank1": float(np.mean(rank == 1)) if len(t) else np.nan,
                     "frac_top3": float(np.mean((rank >= 1) & (rank <= 3))) if len(t) else np.nan,
                     "frac_cell_types_rank1": float(np.mean(e["rank_effect"] == 1)) if len(e) else np.nan,
                     "median_consistency": _median(t["consistency"]),
                     "unmatched": ", ".join(m.loc[m["signature"] == "", "treatment"])})
    return table_frame("summary", rows)


def _median(values: pd.Series) -> float:
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else np.nan

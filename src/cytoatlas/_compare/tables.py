"""The four comparison tables: their columns, dtypes, sort keys, FDR columns and the frames built from rows.

Every table is written (empty, with its header, when there is nothing), sorted by its key columns in the
order they appear, counts as int64, numbers as float64, ``paired`` as bool, everything else as strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from cytoatlas._compare.stats import bh

_ESTIMATE = ["effect", "se", "ci_low", "ci_high"]
# in the order of cytoatlas.io.layout.COMPARE_TABLES
COLUMNS: dict[str, list[str]] = {
    "differential": ["atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by", "group",
                     "reference", "contrast", "test", "covariates", "paired", "n_group", "n_reference", "mean_group",
                     "mean_reference", *_ESTIMATE, "statistic", "pvalue", "fdr", "fdr_cell_type"],
    "association": ["atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by",
                    "contrast", "test", "covariates", "n", *_ESTIMATE, "statistic", "pvalue", "fdr", "fdr_cell_type"],
    "meta": ["analysis", "level", "signature_set", "resolution", "cl_id", "cl_name", "signature", "by", "contrast",
             "n_atlases", "atlases", "labels", *_ESTIMATE, "pvalue", "fdr", "tau2", "q", "q_pvalue", "i2",
             "sign_agreement"],
    "untestable": ["atlas", "level", "signature_set", "cell_type", "analysis", "by", "contrast", "n_group",
                   "n_reference", "reason"],
}
# the columns that say which row it is (the sort order)
KEYS: dict[str, list[str]] = {
    "differential": ["atlas", "level", "signature_set", "cell_type", "signature", "by", "group", "reference",
                     "contrast", "test"],
    "association": ["atlas", "level", "signature_set", "cell_type", "signature", "by", "contrast", "test"],
    "meta": ["analysis", "level", "signature_set", "resolution", "cl_name", "cl_id", "signature", "by", "contrast"],
    "untestable": ["atlas", "level", "signature_set", "cell_type", "analysis", "by", "contrast"],
}
# the table part each ``fdr`` is computed over (``fdr_cell_type``: the part x cell type)
FDR_PARTS: dict[str, list[str]] = {
    "differential": ["atlas", "level", "signature_set", "by", "contrast"],
    "association": ["atlas", "level", "signature_set", "by", "contrast"],
    "meta": ["analysis", "level", "signature_set", "resolution", "by", "contrast"],
}
_COUNTS = {"n_group", "n_reference", "n", "n_atlases"}
_BOOLS = {"paired"}
_NUMBERS = {"mean_group", "mean_reference", *_ESTIMATE, "statistic", "pvalue", "fdr", "fdr_cell_type", "tau2", "q",
            "q_pvalue", "i2", "sign_agreement"}


def column_dtype(column: str) -> str:
    """The pandas dtype of a comparison table's column: ``int64``, ``bool``, ``float64`` or ``object``."""
    if column in _COUNTS:
        return "int64"
    if column in _BOOLS:
        return "bool"
    return "float64" if column in _NUMBERS else "object"


def table_frame(name: str, rows: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """A table from row records (or frames with its columns): its columns in order, its dtypes, sorted."""
    columns = COLUMNS[name]
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    df = df.reindex(columns=columns) if len(df) else \
        pd.DataFrame({c: pd.Series(dtype=column_dtype(c)) for c in columns})
    df = df.astype({c: column_dtype(c) for c in columns})
    for c in columns:
        if column_dtype(c) == "object":
            df[c] = df[c].astype(str)
    return df.sort_values(KEYS[name], kind="mergesort", ignore_index=True)


def concat(name: str, frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The frames of one table, concatenated (or the empty table)."""
    frames = [f for f in frames if len(f)]
    return table_frame(name, pd.concat(frames, ignore_index=True) if frames else [])


def with_fdr(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """``fdr`` over each table part and (differential, association) ``fdr_cell_type`` within each cell type."""
    df = df.copy()
    if not len(df):
        return df
    part = FDR_PARTS[name]
    df["fdr"] = df.groupby(part, sort=False)["pvalue"].transform(lambda p: bh(p.to_numpy()))
    if "fdr_cell_type" in df:
        df["fdr_cell_type"] = df.groupby([*part, "cell_type"], sort=False)["pvalue"].transform(
            lambda p: bh(p.to_numpy()))
    return df.astype({c: np.float64 for c in ("fdr", "fdr_cell_type") if c in df})

"""Pseudobulk normalisation: log1p CPM and the atlas-level z-score."""

from __future__ import annotations

import numpy as np


def cpm(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Counts per million of each row's library ``totals``; a row whose library is 0 is NaN, not 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(totals > 0, 1e6 / totals, np.nan)
    return counts * scale[:, None]


def log1p_cpm(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """log1p(CPM) per row (see :func:`cpm`)."""
    return np.log1p(cpm(counts, totals))


def zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - atlas mean) / atlas std per gene; a gene with std 0 (or undefined) is divided by 1, as the seed."""
    safe = np.where((std > 0) & np.isfinite(std), std, 1.0)
    return (x - mean) / safe

"""Pseudobulk normalisation: CPM and the atlas-level z-score."""

from __future__ import annotations

import numpy as np


def cpm(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Counts per million of each row's library ``totals``; a row whose library is 0 is NaN, not 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(totals > 0, 1e6 / totals, np.nan)
    return counts * scale[:, None]


def inverse_std(std: np.ndarray) -> np.ndarray:
    """1 / std per gene; a gene with std 0 (or undefined) is divided by 1, as the seed did."""
    return 1.0 / np.where((std > 0) & np.isfinite(std), std, 1.0)


def zscore(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """(x - atlas mean) / atlas std, in ``x``'s dtype."""
    z = np.subtract(x, mean, dtype=x.dtype)
    z *= inv_std
    return z

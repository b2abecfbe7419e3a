"""Pseudobulk normalisation: CPM scale factors and the atlas-level z-score's divisor.

The log and z-score themselves are applied in one compiled pass (``_kernels.log_scaled_zscore``).
"""

from __future__ import annotations

import numpy as np


def cpm_scale(totals: np.ndarray) -> np.ndarray:
    """Per-row factor turning counts into counts per million; a row whose library is 0 gets NaN, not 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, 1e6 / totals, np.nan)


def inverse_std(std: np.ndarray) -> np.ndarray:
    """1 / std per gene; a gene with std 0 (or undefined) is divided by 1, as the seed did."""
    return 1.0 / np.where((std > 0) & np.isfinite(std), std, 1.0)

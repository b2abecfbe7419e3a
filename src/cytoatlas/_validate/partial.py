"""Composition-adjusted donor correlations: a partial Spearman rho controlling for the donors' cell-type fractions.

At a level without cell types every donor is one pseudobulk, so a target's activity and its own gene's expression
can correlate across donors only because donors differ in composition (more monocytes: more of every monocyte gene
and of every monocyte-driven activity). The partial rho removes that: the ranks of expression and of activity are
each regressed on the ranks of the donor's cell-type fractions (at a chosen level, from the ``n_cells`` of its
sample x cell type pseudobulk) and the residuals correlated (Spearman's partial correlation, as pingouin's
``partial_corr(method="spearman")``). The p-value is the t test on ``n - 2 - k`` degrees of freedom (``k``
covariates); the 95 % interval Fisher's ``atanh(r) +- 1.96 / sqrt(n - 3 - k)``.

Fractions sum to one, so one (the most abundant type's) is left out; a type absent or constant among the donors
carries nothing and is left out too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cytoatlas.io.results import read_header


@dataclass(frozen=True)
class Fractions:
    """Each unit's (donor's, else sample's) cell-type fractions at one level: units x cell types."""

    level: str
    units: np.ndarray
    cell_types: np.ndarray
    values: np.ndarray

    def of(self, units: np.ndarray) -> np.ndarray:
        """The fractions of ``units`` in their order (a unit not here: a row of NaN)."""
        pos = {u: i for i, u in enumerate(self.units)}
        out = np.full((len(units), len(self.cell_types)), np.nan)
        for i, u in enumerate(units):
            if u in pos:
                out[i] = self.values[pos[u]]
        return out


def composition(path: str | os.PathLike, level: str) -> Fractions:
    """The cell-type fractions per donor (``donor`` when the file has it, else ``sample``) from a sample x cell
    type pseudobulk file's ``n_cells`` (its obs only is read)."""
    return composition_from_obs(read_header(path, "pseudobulk", var_columns=()).obs, level)


def composition_from_obs(obs: pd.DataFrame, level: str) -> Fractions:
    """:func:`composition` from the rows (obs) of a sample x cell type pseudobulk, held in memory."""
    unit = "donor" if "donor" in obs else "sample"
    counts = pd.crosstab(obs[unit].astype(str).to_numpy(), obs["cell_type"].astype(str).to_numpy(),
                         values=obs["n_cells"].to_numpy(dtype=float), aggfunc="sum").fillna(0.0)
    totals = counts.sum(axis=1).to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(totals > 0, counts.to_numpy() / totals, np.nan)
    return Fractions(level, counts.index.to_numpy(dtype=object), counts.columns.to_numpy(dtype=object), values)


def covariate_ranks(fractions: np.ndarray) -> np.ndarray:
    """The covariate columns of the partial correlation: the ranks of each fraction that varies among the units,
    the most abundant one left out (fractions sum to one)."""
    f = fractions[:, np.ptp(fractions, axis=0) > 0] if len(fractions) else fractions
    if f.shape[1] >= 1 and np.allclose(fractions.sum(axis=1), 1.0):
        f = np.delete(f, int(np.argmax(f.mean(axis=0))), axis=1)
    return np.column_stack([stats.rankdata(c) for c in f.T]) if f.shape[1] else np.empty((len(fractions), 0))


@dataclass(frozen=True)
class PartialRho:
    """A partial Spearman correlation: rho, p, 95 % interval and the number of covariates (missing when it
    cannot be computed: ``reason`` says why)."""

    rho: float
    pvalue: float
    ci_low: float
    ci_high: float
    n_covariates: int
    reason: str = ""


def partial_spearman(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> PartialRho:
    """Spearman's partial correlation of ``x`` and ``y`` given ``covariates`` (units x k, already the columns to
    adjust for, e.g. :func:`covariate_ranks`); see the module docstring."""
    n = len(x)
    design = np.column_stack([np.ones(n), covariates])
    k = int(np.linalg.matrix_rank(design)) - 1
    if n - 3 - k < 1:
        return PartialRho(np.nan, np.nan, np.nan, np.nan, k, f"too few donors ({n}) for {k} cell-type fractions")
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    coef = np.linalg.lstsq(design, np.column_stack([rx, ry]), rcond=None)[0]
    res = np.column_stack([rx, ry]) - design @ coef
    norm = np.sqrt((res ** 2).sum(axis=0))
    if (norm <= 1e-12 * n).any():
        return PartialRho(np.nan, np.nan, np.nan, np.nan, k, "explained entirely by the fractions")
    r = float(np.clip(res[:, 0] @ res[:, 1] / (norm[0] * norm[1]), -1.0, 1.0))
    df = n - 2 - k
    with np.errstate(divide="ignore"):
        t = r * np.sqrt(df / max(1.0 - r * r, 1e-300))
    p = float(2 * stats.t.sf(abs(t), df))
    half = 1.959963984540054 / np.sqrt(n - 3 - k)
    z = np.arctanh(np.clip(r, -0.999999999, 0.999999999))
    return PartialRho(r, p, float(np.tanh(z - half)), float(np.tanh(z + half)), k)

"""The tests of a comparison, each on one design shared by every signature of a cell type.

Every function takes ``y`` as units x signatures (one column per signature) and returns a :class:`Estimates`
of per-signature arrays. Where the computation is exact for all columns at once it is done so (one QR
factorisation of the design for every signature); columns with missing values fall back to one fit each on
their complete rows.

- :func:`ols`: ordinary least squares, plain (homoscedastic) standard errors, t-based p and 95 % CI, as
  ``statsmodels.OLS(y, X).fit()`` gives them.
- :func:`rank_sum`: the Wilcoxon rank-sum (Mann-Whitney U) test of scipy (two-sided, tie-corrected); its
  effect is still the mean difference, with the Welch t standard error and CI (:func:`welch`).
- :func:`signed_rank`: the Wilcoxon signed-rank test of scipy on paired differences (``zero_method="wilcox"``:
  zero differences dropped; ties corrected); the effect is the mean difference with the paired t CI.
- :func:`bh`: Benjamini-Hochberg adjusted p-values, missing p-values left missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

# the two-sided interval every estimate is reported with
CI_LEVEL = 0.95


@dataclass
class Estimates:
    """Per-signature results of one test: effect, its SE and 95 % CI, the test statistic and its p-value."""

    effect: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Estimates:
        """``n`` signatures, all missing."""
        return cls(*(np.full(n, np.nan) for _ in range(6)))


def full_rank(design: np.ndarray) -> bool:
    """Whether the design's columns are linearly independent (and there are more rows than columns)."""
    n, p = design.shape
    return n > p and np.linalg.matrix_rank(design) == p


def _t_interval(effect: np.ndarray, se: np.ndarray, df: np.ndarray | float) -> tuple[np.ndarray, ...]:
    """t statistic, two-sided p and CI of ``effect`` with standard error ``se`` on ``df`` degrees of freedom."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = effect / se
        half = stats.t.ppf(0.5 + CI_LEVEL / 2, df) * se
    p = 2 * stats.t.sf(np.abs(t), df)
    return t, p, effect - half, effect + half


def _ols_all(design: np.ndarray, y: np.ndarray, coefficient: int) -> tuple[np.ndarray, ...]:
    """OLS of every column of ``y`` (no missing values) on one full-rank design: one QR for all of them."""
    n, p = design.shape
    q, r = np.linalg.qr(design)
    beta = np.linalg.solve(r, q.T @ y)
    resid = y - design @ beta
    df = n - p
    sigma2 = np.einsum("ij,ij->j", resid, resid) / df
    r_inv = np.linalg.inv(r)
    # diag((X'X)^-1) = diag(R^-1 R^-T): the squared row norms of R^-1
    var = (r_inv[coefficient] ** 2).sum()
    effect, se = beta[coefficient], np.sqrt(sigma2 * var)
    return (effect, se, *_t_interval(effect, se, df))


def ols(design: np.ndarray, y: np.ndarray, coefficient: int = 1) -> Estimates:
    """OLS of each signature (column of ``y``) on ``design`` (units x parameters, with its intercept column).

    Parameters
    ----------
    design
        Full-rank design matrix, rows in the order of ``y``'s rows.
    y
        Units x signatures; missing values drop their unit from that signature's fit only.
    coefficient
        Which design column's coefficient is the effect (1: the one after the intercept).

    Returns
    -------
    Estimates
        The coefficient, its plain OLS standard error (residual variance on ``n - p`` degrees of freedom), the t
        statistic, two-sided p and 95 % t interval; missing where a signature has too few complete units.
    """
    n_sig = y.shape[1]
    out = Estimates.empty(n_sig)
    complete = np.isfinite(y).all(axis=0)
    fields = ("effect", "se", "statistic", "pvalue", "ci_low", "ci_high")
    if complete.any():
        effect, se, t, p, low, high = _ols_all(design, y[:, complete], coefficient)
        for name, values in zip(fields, (effect, se, t, p, low, high), strict=True):
            getattr(out, name)[complete] = values
    for j in np.flatnonzero(~complete):
        rows = np.isfinite(y[:, j])
        if full_rank(design[rows]):
            for name, value in zip(fields, _ols_all(design[rows], y[rows, j:j + 1], coefficient), strict=True):
                getattr(out, name)[j] = value[0]
    return out


def welch(group: np.ndarray, reference: np.ndarray) -> Estimates:
    """Mean difference ``group - reference`` per column with the Welch standard error, Welch-Satterthwaite
    degrees of freedom, t statistic, p and 95 % CI (missing values ignored)."""
    n1, n0 = np.isfinite(group).sum(axis=0), np.isfinite(reference).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        v1 = np.nanvar(group, axis=0, ddof=1) / n1
        v0 = np.nanvar(reference, axis=0, ddof=1) / n0
        effect = np.nanmean(group, axis=0) - np.nanmean(reference, axis=0)
        se = np.sqrt(v1 + v0)
        df = (v1 + v0) ** 2 / (v1 ** 2 / (n1 - 1) + v0 ** 2 / (n0 - 1))
    t, p, low, high = _t_interval(effect, se, df)
    return Estimates(effect, se, low, high, t, p)


def _scipy_columns(test, *samples: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray]:
    """``test`` (a scipy.stats two-sided test) on every column: at once where no column has missing values,
    column by column (missing values left out) where one does."""
    n_sig = samples[0].shape[1]
    stat, p = np.full(n_sig, np.nan), np.full(n_sig, np.nan)
    complete = np.logical_and.reduce([np.isfinite(s).all(axis=0) for s in samples])
    if complete.any():
        res = test(*(s[:, complete] for s in samples), axis=0, **options)
        stat[complete], p[complete] = res.statistic, res.pvalue
    for j in np.flatnonzero(~complete):
        columns = [s[np.isfinite(s[:, j]), j] for s in samples]
        if all(len(c) for c in columns):
            res = test(*columns, **options)
            stat[j], p[j] = res.statistic, res.pvalue
    return stat, p


def rank_sum(group: np.ndarray, reference: np.ndarray) -> Estimates:
    """Wilcoxon rank-sum test per column: ``scipy.stats.mannwhitneyu`` (two-sided; ``method="auto"``: exact
    for small groups without ties, else the normal approximation with scipy's tie correction).

    ``statistic`` is the U of ``group``; ``effect`` the mean difference ``group - reference`` with its Welch
    standard error and 95 % Welch t interval (a rank test has no mean-difference interval of its own).
    """
    est = welch(group, reference)
    est.statistic, est.pvalue = _scipy_columns(stats.mannwhitneyu, group, reference, alternative="two-sided")
    return est


def _signed_rank(d: np.ndarray, axis: int = 0, **options):
    return stats.wilcoxon(d, axis=axis, zero_method="wilcox", alternative="two-sided", **options)


def signed_rank(differences: np.ndarray) -> Estimates:
    """Wilcoxon signed-rank test per column of paired ``differences`` (group - reference, per unit):
    ``scipy.stats.wilcoxon`` with ``zero_method="wilcox"`` (zero differences dropped), two-sided, ties corrected.

    ``statistic`` is scipy's W (the smaller signed-rank sum); ``effect`` the mean difference with the paired t
    standard error ``sd / sqrt(n)`` and 95 % t interval. A column whose differences are all zero has no test
    (missing p).
    """
    d = differences
    n = np.isfinite(d).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.nanmean(d, axis=0)
        se = np.nanstd(d, axis=0, ddof=1) / np.sqrt(n)
    _, _, low, high = _t_interval(effect, se, n - 1)
    est = Estimates(effect, se, low, high, np.full(d.shape[1], np.nan), np.full(d.shape[1], np.nan))
    nonzero = (np.where(np.isfinite(d), d, 0) != 0).any(axis=0)
    # zeros change the count per column, which scipy's vectorised path handles column by column anyway
    simple = nonzero & np.isfinite(d).all(axis=0) & (d != 0).all(axis=0)
    if simple.any():
        res = _signed_rank(d[:, simple])
        est.statistic[simple], est.pvalue[simple] = res.statistic, res.pvalue
    for j in np.flatnonzero(nonzero & ~simple):
        col = d[np.isfinite(d[:, j]), j]
        res = _signed_rank(col)
        est.statistic[j], est.pvalue[j] = res.statistic, res.pvalue
    return est


def bh(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``statsmodels.stats.multitest.multipletests``, ``fdr_bh``) of the
    non-missing p-values; missing stay missing."""
    from statsmodels.stats.multitest import multipletests  # statsmodels costs ~0.8 s to import: only here

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out

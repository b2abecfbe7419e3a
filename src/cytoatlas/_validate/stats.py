"""Spearman correlations of many column pairs at once, their p-values, BH-FDR and donor-bootstrap intervals.

Every function is vectorised over columns: ``x[:, j]`` is paired with ``y[:, j]``. Ties get average ranks and
p-values are scipy's (t distribution with n - 2 degrees of freedom), so a column pair gives exactly
``scipy.stats.spearmanr(x[:, j], y[:, j])``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of each column."""
    return stats.rankdata(a, axis=0, method="average")


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / den
    r[den == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def spearman_pvalue(rho: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """Two-sided p of Spearman's rho as scipy computes it (t with n - 2 df; 0 at |rho| = 1)."""
    rho = np.asarray(rho, dtype=float)
    df = np.asarray(n, dtype=float) - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt(df / ((rho + 1.0) * (1.0 - rho)))
    p = 2 * stats.t.sf(np.abs(t), df)
    return np.where(np.isnan(rho), np.nan, p)


def spearman_columns(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rho and p of each column pair of two complete ``n x k`` arrays (NaN where a column is constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must be n x k arrays of one shape, got {x.shape} and {y.shape}")
    rho = _pearson_columns(ranks(x), ranks(y)) if len(x) else np.full(x.shape[1], np.nan)
    return rho, spearman_pvalue(rho, len(x))


def bh_fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN entries stay NaN and are not counted as tests."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` (n) in each resample, a resample repeating unit i ``weights[b, i]`` times.

    Returns ``(B, n)``: the rank every copy of unit i has in resample b (copies tie with each other), i.e.
    the weight of the units below it plus half of (the weight of its tie group + 1).
    """
    order = np.argsort(values, kind="stable")
    v = values[order]
    new = np.r_[True, v[1:] != v[:-1]]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(v)]
    cum = np.zeros((weights.shape[0], len(v) + 1))
    np.cumsum(weights[:, order], axis=1, out=cum[:, 1:])
    below = cum[:, starts]
    tied = cum[:, ends] - below
    out = np.empty(weights.shape)
    out[:, order] = (below + (tied + 1.0) / 2.0)[:, group]
    return out


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman rho of ``x`` and ``y`` (n) in each resample given by ``weights`` (B x n counts): equal to
    ``spearmanr(np.repeat(x, w), np.repeat(y, w))`` for each row ``w``, NaN where a resample is constant."""
    w = weights.astype(float)
    rx, ry = _weighted_ranks(x, w), _weighted_ranks(y, w)
    total = w.sum(axis=1, keepdims=True)
    mx, my = (w * rx).sum(axis=1, keepdims=True) / total, (w * ry).sum(axis=1, keepdims=True) / total
    dx, dy = rx - mx, ry - my
    sxx, syy = (w * dx * dx).sum(axis=1), (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=1) / np.sqrt(sxx * syy)
    r[(sxx <= 0) | (syy <= 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def bootstrap_weights(units: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling weights of the rows (B x n): units (donors) drawn with replacement, a drawn unit's rows all
    taken, so repeated samples of one donor stay together."""
    codes = np.unique(np.asarray(units, dtype=str), return_inverse=True)[1].ravel()
    n_units = int(codes.max()) + 1 if len(codes) else 0
    if n_units == 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)[:, codes]


def _ranks_in_resamples(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of each column of ``values`` (n x k) in each resample (``weights``: B x n counts), as
    :func:`_weighted_ranks` per column: ``(B, n, k)``."""
    n, k = values.shape
    order = np.argsort(values, axis=0, kind="stable")
    v = np.take_along_axis(values, order, axis=0)
    pos = np.arange(n)[:, None]
    first = np.vstack([np.ones((1, k), bool), v[1:] != v[:-1]])
    last = np.vstack([v[1:] != v[:-1], np.ones((1, k), bool)])
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=0)
    end = np.minimum.accumulate(np.where(last, pos, n)[::-1], axis=0)[::-1]
    w = weights[:, order]  # (B, n, k): the weight at each sorted position
    cum = np.zeros((weights.shape[0], n + 1, k))
    np.cumsum(w, axis=1, out=cum[:, 1:])
    below = np.take_along_axis(cum, start[None], axis=1)
    upto = np.take_along_axis(cum, end[None] + 1, axis=1)
    out = np.empty_like(below)
    np.put_along_axis(out, np.broadcast_to(order[None], below.shape), below + (upto - below + 1.0) / 2.0, axis=1)
    return out


def weighted_spearman_columns(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`weighted_spearman` of every column pair of ``x`` and ``y`` (n x k): ``(B, k)``."""
    w = weights.astype(float)[:, :, None]
    rx, ry = _ranks_in_resamples(x, weights.astype(float)), _ranks_in_resamples(y, weights.astype(float))
    total = w.sum(axis=1, keepdims=True)
    dx = rx - (w * rx).sum(axis=1, keepdims=True) / total
    dy = ry - (w * ry).sum(axis=1, keepdims=True) / total
    sxx, syy = (w * dx * dx).sum(axis=1), (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=1) / np.sqrt(sxx * syy)
    r[(sxx <= 1e-12 * np.maximum(sxx.max(), 1)) | (syy <= 1e-12 * np.maximum(syy.max(), 1))] = np.nan
    return np.clip(r, -1.0, 1.0)


def bootstrap_ci_columns(x: np.ndarray, y: np.ndarray, weights: np.ndarray, level: float = 0.95,
                         min_valid: float = 0.5, block_values: int = 1 << 21) -> tuple[np.ndarray, ...]:
    """Percentile intervals of rho for every column pair (complete ``n x k`` arrays) over the resamples given by
    ``weights``: (low, high, number of resamples with a defined rho), NaN where fewer than ``min_valid`` of
    them are defined. Columns are processed in blocks of ~``block_values`` resample values."""
    n, k = x.shape
    low, high, valid = np.full(k, np.nan), np.full(k, np.nan), np.zeros(k, dtype=np.int64)
    step = max(1, block_values // max(1, weights.shape[0] * n))
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    for start in range(0, k, step):
        cols = slice(start, min(start + step, k))
        r = weighted_spearman_columns(x[:, cols], y[:, cols], weights)
        ok = ~np.isnan(r)
        valid[cols] = ok.sum(axis=0)
        enough = valid[cols] >= max(1, min_valid * weights.shape[0])
        if enough.any():
            with np.errstate(invalid="ignore"):
                qs = np.nanquantile(r[:, enough], q, axis=0)
            low[cols][enough], high[cols][enough] = qs[0], qs[1]
    return low, high, valid


def bootstrap_ci(x: np.ndarray, y: np.ndarray, weights: np.ndarray, level: float = 0.95,
                 min_valid: float = 0.5) -> tuple[float, float, int]:
    """Percentile interval of rho over resamples; NaN if fewer than ``min_valid`` of them are defined."""
    r = weighted_spearman(x, y, weights)
    r = r[~np.isnan(r)]
    if len(r) == 0 or len(r) < min_valid * weights.shape[0]:
        return np.nan, np.nan, len(r)
    lo, hi = np.quantile(r, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi), len(r)

"""Ridge activity with secactpy's scaling, and its permutation null in closed form.

For a design X (genes x signatures) and a response y (one pseudobulk column over the same genes), both
column-standardised, the activity is beta = T y with T = (X'X + lambda I)^-1 X'. secactpy judges beta against
1,000 random permutations of y's genes. Under a uniform random permutation the mean and variance of beta_k are
known exactly (sampling without replacement from a finite population):

    E[beta_k]   = mean(y) * sum_g T_kg
    Var[beta_k] = s_y^2 * sum_g (T_kg - mean_g T_kg)^2          (s_y^2 with ddof 1)

so the z-score that secactpy's permutations estimate is available without any random numbers and with no
Monte-Carlo error. With secactpy's scaling (mean(y) = 0, s_y = 1, rows of T summing to 0) it reduces to
z = beta / sqrt(diag(T T')).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import ndtr

LAMBDA = 5e5
# secactpy's cut-off below which a standard error counts as zero (its z is then 0)
EPS = 1e-12


def standardise_columns(a: np.ndarray) -> np.ndarray:
    """``(a - column mean) / column std (ddof 1)``, with NaN (constant columns) set to 0, as secactpy does."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = a - a.mean(axis=0)
        out = centred / a.std(axis=0, ddof=1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0, copy=False)


def projection(design: np.ndarray, lambda_: float = LAMBDA) -> np.ndarray:
    """``T = (X'X + lambda I)^-1 X'`` (signatures x genes) through a Cholesky factor, as secactpy computes it."""
    x = np.asarray(design, dtype=np.float64)
    gram = x.T @ x + lambda_ * np.eye(x.shape[1])
    try:
        inv = linalg.cho_solve((linalg.cholesky(gram, lower=True), True), np.eye(x.shape[1]))
    except linalg.LinAlgError:  # only for lambda_ = 0 with a singular design
        inv = linalg.pinv(gram)
    return np.ascontiguousarray(inv @ x.T)


def exact_test(t: np.ndarray, y: np.ndarray, beta: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Activity and its exact permutation z-score for every column of ``y``.

    Parameters
    ----------
    t
        Projection matrix from :func:`projection` (signatures x genes).
    y
        Responses (genes x columns), usually standardised with :func:`standardise_columns`.
    beta
        ``t @ y`` if already computed.

    Returns
    -------
    dict
        ``beta``, ``se`` (standard deviation of beta under gene permutation), ``zscore`` ((beta - E) / se,
        0 where se <= 1e-12 as in secactpy) and ``pvalue`` (two-sided normal), each signatures x columns.
    """
    y = np.asarray(y, dtype=np.float64)
    if beta is None:
        beta = t @ y
    n = y.shape[0]
    row_sum = t.sum(axis=1)
    # sum_g (T_kg - mean_k)^2 without forming the centred matrix
    ss_t = np.einsum("kg,kg->k", t, t) - row_sum**2 / n
    y_mean = y.mean(axis=0)
    y_var = y.var(axis=0, ddof=1) if n > 1 else np.zeros(y.shape[1])
    mean = np.outer(row_sum, y_mean)
    se = np.sqrt(np.outer(np.maximum(ss_t, 0.0), y_var))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > EPS, (beta - mean) / se, 0.0)
    return {"beta": beta, "se": se, "zscore": z, "pvalue": 2.0 * ndtr(-np.abs(z))}

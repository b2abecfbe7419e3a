"""Permutation test for ridge activity, reproducing secactpy 0.3.1 (``backend="numpy"``, ``rng_method="srand"``).

For projection ``T`` (features x genes), expression ``Y`` (genes x samples) and observed ``beta = T @ Y``,
secactpy draws ``n_rand`` gene permutations ``p_i`` from glibc ``rand()`` (see ``_rand``), computes
``beta_i = T @ Y[p_i, :]`` and reports, per feature and sample,

- ``mean = sum(beta_i) / n_rand`` and ``se = sqrt(max(sum(beta_i**2) / n_rand - mean**2, 0))``,
- ``zscore = (beta - mean) / se`` where ``se > 1e-12``, else 0,
- ``pvalue = (#{i : |beta_i| >= |beta|} + 1) / (n_rand + 1)``.

The permutations, the formulas and the order in which each element's sums run are secactpy's. What differs
is the work per permutation: secactpy builds its permutation table with one ctypes call per swap, then runs one
GEMM (thin, for CytoSig's 43 features) and five full-size NumPy temporaries per permutation. Here the
permutations come from a compiled generator a batch at a time, each batch is one wide GEMM (permuted copies of
``Y``, or of ``T'``, side by side) and one compiled pass folds it into the running sums and counts.

Exactness: every ``beta_i`` is the same dot product as secactpy's, summed by a different BLAS call, so it may
differ from secactpy's in the last bits. Counts (p-values) are therefore identical unless some ``|beta_i|`` lies
within rounding (~1e-15 relative) of ``|beta|``; ties that are exact by construction, such as a constant
column where every ``beta_i`` is 0, come out the same. se and zscore agree to ~1e-14.

Everything is float64. A float32 GEMM runs at twice the rate here, and the counts could still be made exact by
recomputing in float64 the few elements (~0.1%) within a rigorous error bound of ``|beta|``; but the float32
sums of squares carry ~1e-7 relative error, which moves z by up to ~1e-6 at |z| ~ 60, while agreement with
secactpy is wanted to 1e-8.
"""

from __future__ import annotations

import numba
import numpy as np

from cytoatlas._activity._rand import SrandPermutations

# secactpy's threshold below which the permutation standard error counts as zero (and the z-score as 0)
SE_EPS = 1e-12
# Stack permutations until the GEMM is at least this wide: OpenBLAS reaches its peak rate from about a thousand
# columns, while a single CytoSig permutation (43 features) runs at about two thirds of it.
_GEMM_WIDTH = 1024
# Bytes for the stacked operand and the product of one batch; bounds memory whatever the shapes.
_BATCH_BYTES = 128 * 2**20


def permutation_table(n: int, n_rand: int, seed: int = 0) -> np.ndarray:
    """secactpy's forward permutation table: ``CStdlibRNG(seed).permutation_table(n, n_rand)``.

    Parameters
    ----------
    n : int
        Length of each permutation (the number of genes).
    n_rand : int
        Number of permutations.
    seed : int, default 0
        ``srand`` seed (taken modulo 2**32, as secactpy's ctypes call does).

    Returns
    -------
    numpy.ndarray
        ``(n_rand, n)`` int32 array; row ``i`` is the i-th cumulative Fisher-Yates shuffle of ``0..n-1``.
    """
    return SrandPermutations(n, seed).next(n_rand, out=np.empty((n_rand, n), dtype=np.int32))


def permutation_test(
    T: np.ndarray, Y: np.ndarray, beta: np.ndarray, n_rand: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Permutation mean, standard error, z-score and p-value of ridge coefficients, as secactpy computes them.

    Parameters
    ----------
    T : numpy.ndarray
        ``(features, genes)`` ridge projection ``(X'X + lambda I)^-1 X'``.
    Y : numpy.ndarray
        ``(genes, samples)`` expression, already standardised as the caller wants it.
    beta : numpy.ndarray
        ``(features, samples)`` observed coefficients ``T @ Y``; the p-value compares ``|beta_i|`` with
        ``|beta|``, so pass the same array that is reported.
    n_rand : int, default 1000
        Number of permutations (>= 1).
    seed : int, default 0
        ``srand`` seed of secactpy's ``rng_method="srand"`` permutations.

    Returns
    -------
    dict of str to numpy.ndarray
        ``"mean"``, ``"se"``, ``"zscore"``, ``"pvalue"``, each ``(features, samples)`` float64.

    Notes
    -----
    Permutations come from glibc's ``rand()`` (reimplemented, so no process-wide C state is touched); on other
    C libraries secactpy's own "srand" permutations differ and will not match these.
    Memory: one batch of permuted operands and their products (at most ``_BATCH_BYTES``, or one permutation's
    worth if that is larger), a transposed copy of ``T`` when samples >= features, and a few
    ``(features, samples)`` arrays; the permutation table is never materialised.
    """
    T = np.ascontiguousarray(T, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if T.ndim != 2 or Y.ndim != 2 or T.shape[1] != Y.shape[0]:
        raise ValueError(f"T {T.shape} and Y {Y.shape} are not (features, genes) and (genes, samples)")
    k, g = T.shape
    n = Y.shape[1]
    if beta.shape != (k, n):
        raise ValueError(f"beta has shape {beta.shape}, expected {(k, n)}")
    if n_rand < 1:
        raise ValueError(f"n_rand must be >= 1, got {n_rand}")

    # beta_i = T @ Y[p_i, :] and, transposed, beta_i' = Y' @ T'[q_i, :] with q_i the inverse of p_i: either
    # way one operand is used as is ("left") and the other has its rows permuted. Permute the narrower one, as
    # secactpy does (Y's rows when samples < features, else T's columns): the gather then costs less, relative
    # to the product, and the product is laid out so that its narrow side is BLAS's M dimension, which
    # OpenBLAS runs at its peak rate even when that side is only a hundred wide.
    y_rows = n < k
    if y_rows:
        left, rows, width = T, Y, n
    else:
        left, rows, width = Y.T, np.ascontiguousarray(T.T), k
    size = left.shape[0]
    # (size, width) accumulators: features x samples, or samples x features for the T-column method
    total = np.zeros((size, width))
    total_sq = np.zeros((size, width))
    count = np.zeros((size, width), dtype=np.int64)
    abs_beta = np.ascontiguousarray(np.abs(beta) if y_rows else np.abs(beta).T)

    # Stack a batch of permuted copies side by side, one GEMM per batch: wide enough to run at full rate,
    # small enough (_BATCH_BYTES for the stack and its product) to bound memory whatever the shapes.
    batch = max(1, min(n_rand, -(-_GEMM_WIDTH // width), _BATCH_BYTES // (8 * width * (g + size))))
    idx = np.empty((batch, g), dtype=np.int64)
    stacked = np.empty((g, batch * width))
    product = np.empty((size, batch * width))
    perms = SrandPermutations(g, seed)
    for start in range(0, n_rand, batch):
        m = min(batch, n_rand - start)
        perms.next(m, inverse=not y_rows, out=idx[:m])
        _gather_rows(rows, idx[:m], stacked)
        np.matmul(left, stacked[:, : m * width], out=product[:, : m * width])
        # column block b of the product is permutation b: view it as (m, size, width) for the accumulation
        blocks = product[:, : m * width].reshape(size, m, width).transpose(1, 0, 2)
        _accumulate(blocks, abs_beta, total, total_sq, count)
    if not y_rows:
        total, total_sq, count = (np.ascontiguousarray(a.T) for a in (total, total_sq, count))

    # secactpy's finalisation, operation for operation (in place: each temporary is features x samples), so
    # equal sums give equal results
    mean = total
    mean /= n_rand
    se = total_sq
    se /= n_rand
    se -= mean**2
    np.sqrt(np.maximum(se, 0.0, out=se), out=se)
    zscore = beta - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore /= se
    zscore[~(se > SE_EPS)] = 0.0
    pvalue = (count + 1.0) / (n_rand + 1.0)
    return {"mean": mean, "se": se, "zscore": zscore, "pvalue": pvalue}


@numba.njit(nogil=True, cache=True)
def _gather_rows(a: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:
    """``out[:, b*w:(b+1)*w] = a[perm[b], :]`` for each permutation ``b`` of the batch (``w = a.shape[1]``).

    A row of ``a`` is one gene (its samples in Y, its features in T'), so the gather copies contiguous runs.
    """
    w = a.shape[1]
    for h in range(a.shape[0]):
        dst = out[h]
        for b in range(perm.shape[0]):
            src = a[perm[b, h]]
            for j in range(w):
                dst[b * w + j] = src[j]


@numba.njit(nogil=True, cache=True)
def _accumulate(
    beta_perm: np.ndarray, abs_beta: np.ndarray, total: np.ndarray, total_sq: np.ndarray, count: np.ndarray
) -> None:
    """Fold a batch ``beta_perm[b]`` (b = permutation) into the sums, sums of squares and exceedance counts.

    One pass instead of secactpy's five full-size temporaries per permutation; the batch is walked row by row
    so each accumulator row stays in cache across the batch, and permutations are added in order, as secactpy
    adds them. ``beta_perm`` is ``(m, rows, cols)`` with contiguous ``cols``, the accumulators ``(rows, cols)``.
    """
    m, rows, cols = beta_perm.shape
    for r in range(rows):
        for b in range(m):
            for j in range(cols):
                v = beta_perm[b, r, j]
                total[r, j] += v
                total_sq[r, j] += v * v
                if abs(v) >= abs_beta[r, j]:
                    count[r, j] += 1

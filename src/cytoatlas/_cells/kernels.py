"""Compiled kernels of the per-cell pass: the only code that touches every nonzero of the atlas.

Both kernels compute each cell from that cell's own CSR row, its nonzeros visited in file order, so a cell's
numbers do not depend on the block it arrives in, the threads, or the worker that scores it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

OK, BAD_VALUE = 0, 1
SCALE = 1e5  # secactpy's per-cell library size (counts per 100 k)
EPS = 1e-12  # secactpy's cut-off: a cell with a smaller sd over the genes is divided by 1 instead
# Most counts are small: log2(1 + c * scale) for c <= SMALL comes from a per-cell table made with the same
# expression, so the same bits as a libm call per nonzero, at a fraction of its cost
SMALL = 16


@numba.njit(nogil=True, cache=True, inline="always")
def _fill_table(table, scale):
    table[0] = 0.0  # an explicitly stored zero
    for k in range(1, SMALL + 1):
        table[k] = math.log2(1.0 + np.float64(k) * scale)


@numba.njit(nogil=True, cache=True, inline="always")
def _y(table, c, scale):
    k = np.int64(c)
    return table[k] if k <= SMALL else math.log2(1.0 + c * scale)


@numba.njit(nogil=True, cache=True, inline="always")
def _library(data, lo, hi):
    """A row's total count (0 -> 1, as secactpy's streaming reader) and whether a value is not a count."""
    total = 0.0
    bad = False
    for p in range(lo, hi):
        c = data[p]
        bad |= (c < 0) | (c != np.int64(c))
        total += c
    return (total if total > 0 else 1.0), bad


@numba.njit(nogil=True, cache=True)
def add_gene_sums(data, indices, indptr, row_start, row_stop, kept, slot, y_sums, count_sums):
    """Per-gene sums of ``y = log2(1 + 1e5 x / L)`` and of the counts ``x`` over the kept rows of a block.

    Only genes with ``slot[g] >= 0`` (those some signature set may use) are summed, into ``y_sums[slot[g]]``;
    rows are added in file order, so a stripe's sums are the same whatever blocks carried its rows.

    Returns ``(status, position)``: ``OK``, or ``BAD_VALUE`` and the first nonzero that is negative or not an
    integer (nothing after it is added).
    """
    table = np.empty(SMALL + 1)
    for i in range(row_start, row_stop):
        if not kept[i]:
            continue
        lib, bad = _library(data, indptr[i], indptr[i + 1])
        if bad:
            for p in range(indptr[i], indptr[i + 1]):
                if data[p] < 0 or data[p] != np.int64(data[p]):
                    return BAD_VALUE, p
        scale = SCALE / lib
        _fill_table(table, scale)
        for p in range(indptr[i], indptr[i + 1]):
            s = slot[indices[p]]
            if s >= 0:
                c = np.float64(data[p])
                y_sums[s] += _y(table, c, scale)
                count_sums[s] += c
    return OK, 0


@numba.njit(nogil=True, cache=True)
def score_rows(data, indices, indptr, rows, pos, tt, n, sum_m, sum_m2, m, tm, t1, out):
    """Ridge activity ``beta`` of each row in ``rows`` (indices into the block), into ``out[i]``.

    For a cell with values ``y`` over the genes ``G`` (``pos[g]``: gene ``g``'s place in ``G``, -1 if not in
    it), centred by the gene means ``m`` and z-scored over ``G`` (ddof 1), ``beta = T ytilde`` is
    ``(T y - T m - mu T 1) / sigma`` with ``mu = (sum y - sum m) / n`` and ``sigma^2 = (sum y^2 - 2 y.m +
    sum m^2 - n mu^2) / (n - 1)``: one pass over the cell's nonzeros, ``tt`` being ``T'`` (genes x groups).
    Rows are independent (callers split them over threads: the kernel releases the GIL); each one's sums run in
    file order, so any split gives the same bits.
    """
    k = tt.shape[1]
    table = np.empty(SMALL + 1)
    for r in range(len(rows)):
        i = rows[r]
        lo, hi = indptr[i], indptr[i + 1]
        lib, _ = _library(data, lo, hi)
        scale = SCALE / lib
        _fill_table(table, scale)
        acc = out[r]
        for j in range(k):
            acc[j] = 0.0
        sy = 0.0
        syy = 0.0
        sym = 0.0
        for p in range(lo, hi):
            g = pos[indices[p]]
            if g < 0:
                continue
            y = _y(table, np.float64(data[p]), scale)
            sy += y
            syy += y * y
            sym += y * m[g]
            row = tt[g]
            for j in range(k):
                acc[j] += y * row[j]
        mu = (sy - sum_m) / n
        var = (syy - 2.0 * sym + sum_m2 - n * mu * mu) / (n - 1)
        sigma = math.sqrt(var) if var > 0 else 0.0
        if sigma < EPS:
            sigma = 1.0
        for j in range(k):
            acc[j] = (acc[j] - tm[j] - mu * t1[j]) / sigma


@numba.njit(nogil=True, cache=True)
def add_label_sums(z, codes, sums):
    """Per label (``codes``, -1 = none) and signature: ``sums[label] += (z, z^2, |z| > 2)``, rows in order."""
    k = z.shape[1]
    for i in range(z.shape[0]):
        c = codes[i]
        if c < 0:
            continue
        acc = sums[c]
        for j in range(k):
            v = np.float64(z[i, j])
            acc[0, j] += v
            acc[1, j] += v * v
            if abs(v) > 2.0:
                acc[2, j] += 1.0

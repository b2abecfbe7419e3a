"""Compiled kernels: the only code that touches every nonzero of the atlas."""

from __future__ import annotations

import math

import numba
import numpy as np

OK, BAD_VALUE, NEEDS_WIDER = 0, 1, 2
# Most nonzero counts are small: log1p(c * scale) for c <= SMALL comes from a per-cell table, the same values a
# libm call per nonzero would give at a fraction of the cost (the call dominated the kernel: ~60 -> ~23 ns/nnz).
SMALL = 16


@numba.njit(nogil=True, cache=True, inline="always")
def _row_total(data, lo, hi):
    """Sum of a row's counts and whether any is negative or not an integer (branch-free per value)."""
    total = 0.0
    bad = False
    for p in range(lo, hi):
        c = data[p]
        bad |= (c < 0) | (c != np.int64(c))
        total += c
    return total, bad


@numba.njit(nogil=True, cache=True)
def add_moments(data, indices, indptr, row_start, row_stop, cell_atom, acc):
    """Per-gene sums of single-cell log1p CPM, its square, and nonzero counts, rows in file order.

    For every nonzero of a kept row ``v = log1p(count * 1e6 / lib)``, ``lib`` the row's total: ``acc[gene] +=
    (v, v*v, 1)`` (one interleaved row per gene: one cache line per nonzero instead of three). Zeros add nothing,
    so they need no visit. File order makes the floating-point sums the same whatever the blocks are. A row's
    total is summed just before its values are read again (a separate sweep cost a third of this kernel).

    Returns ``(status, position)``: ``OK``, or ``BAD_VALUE`` with the first nonzero that is negative or not an
    integer (that row and those after it are not added).
    """
    table = np.empty(SMALL + 1)
    for i in range(row_start, row_stop):
        if cell_atom[i] < 0:
            continue
        lib, bad = _row_total(data, indptr[i], indptr[i + 1])
        if bad:
            for p in range(indptr[i], indptr[i + 1]):
                if data[p] < 0 or data[p] != np.int64(data[p]):
                    return BAD_VALUE, p
        if lib <= 0.0:
            continue
        scale = 1e6 / lib
        for k in range(1, SMALL + 1):
            table[k] = math.log1p(k * scale)
        for p in range(indptr[i], indptr[i + 1]):
            c = data[p]
            g = indices[p]
            ci = np.int64(c)
            v = table[ci] if ci <= SMALL else math.log1p(c * scale)
            acc[g, 0] += v
            acc[g, 1] += v * v
            acc[g, 2] += 1.0
    return OK, -1


@numba.njit(nogil=True, cache=True)
def add_atom_sums(data, indices, indptr, rows, first, cell_atom, atom_sums, atom_totals, limit):
    """``atom_sums[atom, gene] += count`` and ``atom_totals[atom] += row total`` for the rows ``rows[first:]``.

    ``rows`` lists a block's kept rows grouped by atom, so an atom's row of sums stays in cache while its cells
    are added (in file order the sums row changes at every cell: 2-3x the memory traffic). Integer sums do not
    depend on the order. The counts are checked by :func:`add_moments` (the caller discards the block's sums if
    they are bad). Returns ``(status, position)``: ``OK``, or ``NEEDS_WIDER`` with the position in ``rows`` of
    a row that could overflow ``atom_sums``' dtype (an atom's total reaching ``limit`` bounds all of its genes'
    sums, so the check is exact; that row is not added: the caller widens and resumes there).
    """
    for j in range(first, len(rows)):
        i = rows[j]
        a = cell_atom[i]
        lib = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            c = data[p]
            atom_sums[a, indices[p]] += np.int64(c)
            lib += c
        if atom_totals[a] + lib >= limit:  # rare: take the row back out (wrapped integers subtract exactly)
            for p in range(indptr[i], indptr[i + 1]):
                atom_sums[a, indices[p]] -= np.int64(data[p])
            return NEEDS_WIDER, j
        atom_totals[a] += lib
    return OK, -1


@numba.njit(nogil=True, cache=True)
def log_scaled_zscore(values, row_scale, mean, inv_std, x_out, z_out):
    """``x = log(1 + values * row_scale)`` and ``z = (x - mean) * inv_std`` per gene, in float32, one pass.

    ``log(1 + v)`` in float32 rather than float64 ``log1p``: ~4x cheaper, and for a float32 result the
    absolute error is the same (<= 4e-7 over the range of log1p CPM). Fused so the pseudobulk matrices are
    swept once, without the GIL (the output pass runs on several threads).
    """
    one = np.float32(1.0)
    for i in range(values.shape[0]):
        s = row_scale[i]
        for j in range(values.shape[1]):
            x = math.log(one + np.float32(values[i, j] * s))
            x_out[i, j] = x
            z_out[i, j] = (x - mean[j]) * inv_std[j]


@numba.njit(nogil=True, cache=True)
def sum_atom_rows(row_ptr, row_atoms, atom_sums, lo, hi, out):
    """``out[r] = sum of atom_sums[a, lo:hi] over the atoms a of row r`` (rows given as CSR of atom indices).

    The products of 0/1 "which atoms make this row" matrices with the atom sums, without scipy (which holds
    the GIL) and without a float64 copy of the atom sums: exact, since the counts are integers < 2**53.
    """
    for r in range(len(row_ptr) - 1):
        for j in range(hi - lo):
            out[r, j] = 0.0
        for k in range(row_ptr[r], row_ptr[r + 1]):
            a = row_atoms[k]
            for j in range(hi - lo):
                out[r, j] += atom_sums[a, lo + j]


@numba.njit(nogil=True, cache=True)
def mix_rows(weights, members, unit_rows, out):
    """``out = weights @ unit_rows[members]`` in float32, for the bootstrap resamples of one cell type.

    A loop rather than BLAS: the products are thin (B x units x a gene block) and run on the output threads,
    where a threaded BLAS on top oversubscribed the cores (~1.6x slower on 2 cores). Draws left out of a
    resample have weight 0 and are skipped.
    """
    n_genes = unit_rows.shape[1]
    for b in range(weights.shape[0]):
        for j in range(n_genes):
            out[b, j] = 0.0
        for k in range(weights.shape[1]):
            w = weights[b, k]
            if w != 0.0:
                row = members[k]
                for j in range(n_genes):
                    out[b, j] += w * unit_rows[row, j]

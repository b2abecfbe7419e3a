"""Compiled kernels: the only code that touches every nonzero of the atlas."""

from __future__ import annotations

import math

import numba
import numpy as np

OK, BAD_VALUE, NEEDS_WIDER = 0, 1, 2
# Most nonzero counts are small: log1p(c * scale) for c <= SMALL comes from a per-cell table, the same values a
# libm call per nonzero would give at a fraction of the cost (the call dominated the kernel: ~60 -> ~23 ns/nnz).
SMALL = 16


@numba.njit(nogil=True, cache=True)
def accumulate_csr(data, indices, indptr, row_start, row_stop, cell_atom, atom_sums, atom_totals, limit, s1, s2,
                   nnz):
    """Add CSR rows ``row_start:row_stop`` into atom sums and per-gene log1p-CPM moments, in one O(nnz) sweep.

    Per kept cell (atom >= 0): ``atom_sums[atom, gene] += count``, ``atom_totals[atom] += library size``, and
    for every nonzero ``v = log1p(count * 1e6 / library size)``: ``s1[gene] += v``, ``s2[gene] += v*v``,
    ``nnz[gene] += 1``. Zeros contribute nothing to the moments, so they need no visit.

    Returns ``(status, position)``: ``OK``; ``BAD_VALUE`` with the offending nonzero's position when a value is
    negative or not an integer; ``NEEDS_WIDER`` with the row that could overflow ``atom_sums``' dtype (an
    atom's total reaching ``limit`` bounds every gene's sum, so the check is exact and per row, and that row
    has not been added: the caller widens the dtype and resumes there).
    """
    table = np.empty(SMALL + 1)
    for i in range(row_start, row_stop):
        a = cell_atom[i]
        if a < 0:
            continue
        lo, hi = indptr[i], indptr[i + 1]
        lib = 0.0
        for p in range(lo, hi):
            c = data[p]
            if c < 0 or c != math.floor(c):
                return BAD_VALUE, p
            lib += c
        if atom_totals[a] + lib >= limit:
            return NEEDS_WIDER, i
        atom_totals[a] += lib
        if lib <= 0.0:
            continue
        scale = 1e6 / lib
        for k in range(1, SMALL + 1):
            table[k] = math.log1p(k * scale)
        for p in range(lo, hi):
            c = data[p]
            g = indices[p]
            ci = np.int64(c)
            atom_sums[a, g] += ci
            v = table[ci] if ci <= SMALL else math.log1p(c * scale)
            s1[g] += v
            s2[g] += v * v
            nnz[g] += 1
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

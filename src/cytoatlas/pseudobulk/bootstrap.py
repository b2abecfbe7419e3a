"""Donor bootstrap as matrix algebra: all resamples of all cell types in one sparse product.

A resample draws the cell type's units (donors, or samples) with replacement; its profile is the mean of the
drawn units' CPM profiles, i.e. their CPMs summed and renormalised to one million. With W the multinomial
draw counts (resamples x units), all resamples are ``W @ unit_cpm / n_units``.
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.sparse as sp


def resample_rng(seed: int, level: str, label: str) -> np.random.Generator:
    """A generator per (seed, level, cell type), so a cell type's resamples do not change when other
    cell types, levels or the batch size change."""
    return np.random.default_rng([seed, zlib.crc32(level.encode()), zlib.crc32(label.encode())])


def draw_counts(n_units: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How often each unit is drawn in each resample: ``(n_bootstrap, n_units)``, rows sum to ``n_units``."""
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_bootstrap)


def resample_matrix(unit_rows: list[np.ndarray], draws: list[np.ndarray], n_unit_rows: int) -> sp.csr_matrix:
    """Sparse ``(groups * B) x unit rows`` matrix whose product with unit CPMs gives every resample.

    ``unit_rows[k]`` are the rows (of the unit x cell type matrix) of group ``k``'s units and ``draws[k]``
    their draw counts; each row is divided by its number of units, so the product is a mean of CPMs.
    """
    r, c, v, offset = [], [], [], 0
    for rows, w in zip(unit_rows, draws, strict=True):
        n_b = w.shape[0]
        r.append(offset + np.repeat(np.arange(n_b), len(rows)))
        c.append(np.tile(rows, n_b))
        v.append(w.ravel() / len(rows))
        offset += n_b
    if not r:
        return sp.csr_matrix((0, n_unit_rows))
    return sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(offset, n_unit_rows))

"""Donor bootstrap as matrix algebra: all resamples of a cell type in one matrix product.

A resample draws the cell type's units (donors, or samples) with replacement; its profile is the mean of the
drawn units' CPM profiles, i.e. their CPMs summed and renormalised to one million. With W the multinomial
draw counts (resamples x units), a cell type's resamples are one product ``W @ unit_cpm / n_units``.
"""

from __future__ import annotations

import zlib

import numpy as np


def resample_rng(seed: int, level: str, label: str) -> np.random.Generator:
    """A generator per (seed, level, cell type), so a cell type's resamples do not change when other
    cell types, levels or the batch size change."""
    return np.random.default_rng([seed, zlib.crc32(level.encode()), zlib.crc32(label.encode())])


def draw_counts(n_units: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How often each unit is drawn in each resample: ``(n_bootstrap, n_units)``, rows sum to ``n_units``."""
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_bootstrap)

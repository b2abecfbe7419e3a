"""Per-label summaries of per-cell activity: for every level, label and signature, the cells' mean, sd,
quantiles and fraction with |z| > 2.

Mean, sd and the fraction are exact (float64 sums of every cell, added in file order by the driver, so they
do not depend on how the pass was split). Quantiles are of at most ``QUANTILE_CELLS`` cells per label, drawn
once with a fixed seed before the pass (every cell of a smaller label): exact for labels up to that size, a
fixed random sample of larger ones, never all 6.5 M cells' values held at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cytoatlas._cells.kernels import add_label_sums

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
QUANTILE_CELLS = 1000
MAX_SAMPLED = 100_000  # cells kept for the quantiles, over all labels of all levels
SEED = 0


def quantile_sample(levels: Mapping[str, tuple[np.ndarray, np.ndarray]], seed: int = SEED) -> tuple[np.ndarray, int]:
    """Sorted row indices (into the kept cells) drawn for the quantiles, and the cells drawn per label."""
    n_labels = sum(len(cats) for _, cats in levels.values())
    per_label = max(50, min(QUANTILE_CELLS, MAX_SAMPLED // max(n_labels, 1)))
    rng = np.random.default_rng(seed)
    picked = []
    for codes, cats in levels.values():
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(cats) + 1))
        for g in range(len(cats)):
            rows = order[bounds[g]:bounds[g + 1]]
            picked.append(rows if len(rows) <= per_label else np.sort(rng.choice(rows, per_label, replace=False)))
    rows = np.unique(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
    return rows.astype(np.int64), per_label


class Summary:
    """Accumulates one signature set's per-label statistics from z blocks in file order."""

    def __init__(self, levels: Mapping[str, tuple[np.ndarray, np.ndarray]], names: np.ndarray, sampled: np.ndarray,
                 emb_rows: np.ndarray):
        self.levels, self.names, self.sampled, self.emb_rows = levels, names, sampled, emb_rows
        k = len(names)
        self.sums = {lev: np.zeros((len(cats), 3, k)) for lev, (_, cats) in levels.items()}
        self.sample_z = np.zeros((len(sampled), k), dtype=np.float32)
        self.emb_z = np.zeros((len(emb_rows), k), dtype=np.float32)  # the embedding subsample's z

    def add(self, lo: int, z: np.ndarray) -> None:
        """Rows ``lo : lo + len(z)`` of the kept cells' z (float32)."""
        hi = lo + len(z)
        for lev, (codes, _) in self.levels.items():
            add_label_sums(z, codes[lo:hi], self.sums[lev])
        for rows, store in ((self.sampled, self.sample_z), (self.emb_rows, self.emb_z)):
            a, b = np.searchsorted(rows, [lo, hi])
            store[a:b] = z[rows[a:b] - lo]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The running sums, for a checkpoint."""
        sums = {f"{prefix}sums_{lev}": v for lev, v in self.sums.items()}
        return {f"{prefix}sample_z": self.sample_z, f"{prefix}emb_z": self.emb_z, **sums}

    def restore(self, saved: Mapping[str, np.ndarray], prefix: str) -> None:
        """Continue from a checkpoint's :meth:`arrays`."""
        self.sample_z[:] = saved[f"{prefix}sample_z"]
        self.emb_z[:] = saved[f"{prefix}emb_z"]
        for lev in self.sums:
            self.sums[lev][:] = saved[f"{prefix}sums_{lev}"]

    def table(self) -> pd.DataFrame:
        """Long table: level, label, signature, n_cells, mean, sd, q05 ... q95, frac_abs_gt2, n_quantile_cells."""
        frames = []
        k = len(self.names)
        for lev, (codes, cats) in self.levels.items():
            n = np.bincount(codes[codes >= 0], minlength=len(cats)).astype(np.float64)
            s, ss, big = self.sums[lev][:, 0], self.sums[lev][:, 1], self.sums[lev][:, 2]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = s / n[:, None]
                var = (ss - n[:, None] * mean**2) / (n[:, None] - 1)
                sd = np.sqrt(np.maximum(var, 0.0))
                frac = big / n[:, None]
            sd[n < 2] = np.nan
            q = np.full((len(cats), len(QUANTILES), k), np.nan)
            n_q = np.zeros(len(cats), np.int64)
            sampled_codes = codes[self.sampled]
            for g in range(len(cats)):
                zs = self.sample_z[sampled_codes == g]
                n_q[g] = len(zs)
                if len(zs):
                    q[g] = np.quantile(zs.astype(np.float64), QUANTILES, axis=0)
            frame = pd.DataFrame({"level": lev, "label": np.repeat(cats.astype(str), k),
                                  "signature": np.tile(self.names.astype(str), len(cats)),
                                  "n_cells": np.repeat(n.astype(np.int64), k), "mean": mean.ravel(), "sd": sd.ravel()})
            for j, p in enumerate(QUANTILES):
                frame[f"q{round(p * 100):02d}"] = q[:, j].ravel()
            frame["frac_abs_gt2"] = frac.ravel()
            frame["n_quantile_cells"] = np.repeat(n_q, k)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

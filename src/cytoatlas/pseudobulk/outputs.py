"""The three files of a level, built from the finished atom state.

Every matrix is a product of a sparse "which atoms make this row" matrix with the atom sums, computed gene
block by gene block so a CIMA-sized sample x cell type file never sits whole in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas.io.writer import write_h5ad_columns
from cytoatlas.pseudobulk.atoms import AtomTable, LevelGroups
from cytoatlas.pseudobulk.bootstrap import draw_counts, resample_matrix, resample_rng
from cytoatlas.pseudobulk.normalise import cpm, log1p_cpm, zscore
from cytoatlas.pseudobulk.state import AtomState

log = logging.getLogger(__name__)
GENE_BLOCK = 2048


@dataclass
class AtlasStats:
    """Per-gene mean and std (ddof 1) of single-cell log1p CPM over all kept cells."""

    mean: np.ndarray
    std: np.ndarray
    n_cells: int
    n_nonzero: np.ndarray

    @classmethod
    def from_state(cls, state: AtomState) -> AtlasStats:
        return cls(state.moments.mean, state.moments.std(ddof=1), state.moments.n, state.gene_nnz)

    def to_uns(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n_cells": self.n_cells, "n_nonzero": self.n_nonzero,
                "std_ddof": 1}


def _pairs(first: np.ndarray, second: np.ndarray, ok: np.ndarray, n_second: int):
    """Distinct (first, second) pairs among atoms where ``ok``: pair index per atom (-1 elsewhere), and the
    pairs' first/second codes."""
    key = np.where(ok, first.astype(np.int64) * n_second + second, -1)
    uniq, inv = np.unique(key[ok], return_inverse=True)
    atom_pair = np.full(len(key), -1, dtype=np.int64)
    atom_pair[ok] = inv
    return atom_pair, uniq // n_second, uniq % n_second


def _indicator(atom_row: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """Rows x atoms matrix of ones: row r sums the atoms with ``atom_row == r``."""
    atoms = np.flatnonzero(atom_row >= 0)
    return sp.csr_matrix((np.ones(len(atoms)), (atom_row[atoms], atoms)), shape=(n_rows, len(atom_row)))


def _keep(atom_row: np.ndarray, n_rows: int, atom_cells: np.ndarray, min_cells: int):
    """Row cell counts, and the rows with at least ``min_cells`` cells."""
    n_cells = np.bincount(atom_row[atom_row >= 0], weights=atom_cells[atom_row >= 0], minlength=n_rows)
    return n_cells.astype(np.int64), np.flatnonzero(n_cells >= min_cells)


def _counts_dtype(state: AtomState, rows: sp.csr_matrix) -> np.dtype:
    top = (rows @ state.atom_totals).max(initial=0)
    return np.dtype(np.int32 if top < 2**31 else np.int64)


def _blocks(state: AtomState, rows: sp.csr_matrix, stats: AtlasStats, counts_dtype, mix=None) -> Iterator:
    """Gene blocks of counts (unless ``mix``), X = log1p CPM and zscore for ``rows`` of atoms.

    With ``mix`` (resamples x rows), X is log1p of ``mix @ CPM(rows)``: means of CPMs, e.g. bootstraps.
    """
    totals = rows @ state.atom_totals
    n_genes = state.atom_sums.shape[1]
    for lo in range(0, n_genes, GENE_BLOCK):
        cols = slice(lo, min(lo + GENE_BLOCK, n_genes))
        counts = rows @ state.atom_sums[:, cols].astype(np.float64)
        if mix is None:
            x = log1p_cpm(counts, totals)
            out = {"counts": counts.astype(counts_dtype)}
        else:
            x = np.log1p(mix @ cpm(counts, totals))
            out = {}
        out["X"] = x.astype(np.float32)
        out["zscore"] = zscore(x, stats.mean[cols], stats.std[cols]).astype(np.float32)
        yield cols, out


def _obs(index, columns: dict) -> pd.DataFrame:
    df = pd.DataFrame({k: pd.Categorical(v) if v.dtype == object else v for k, v in columns.items()})
    df.index = pd.Index(np.asarray(index, dtype=object).astype(str), dtype=object)
    return df


def _parts(groups: LevelGroups, codes: np.ndarray) -> dict:
    return {col: labels[codes] for col, labels in groups.parts.items() if col != "cell_type"}


def write_level(
    atoms: AtomTable, state: AtomState, stats: AtlasStats, groups: LevelGroups, var: pd.DataFrame,
    paths: dict[str, Path], uns: dict, *, min_cells: int, min_samples: int, n_bootstrap: int, seed: int,
) -> dict[str, Path]:
    """Write ``paths['celltype']``, ``paths['samples']`` and (if ``n_bootstrap``) ``paths['resampled']``."""
    name, sep, n_groups = groups.level.name, atoms.separator, len(groups.labels)
    atom_group = groups.atom_group.astype(np.int64)
    if not len(atom_group):  # a level with no `by` columns: every kept atom is in its one group
        atom_group = np.zeros(atoms.n_atoms, dtype=np.int64)
    base_uns = {**uns, "atlas_stats": stats.to_uns()}
    written = {}

    # cell type x genes
    n_cells, keep = _keep(atom_group, n_groups, state.atom_cells, min_cells)
    keep = keep[np.argsort(groups.labels[keep], kind="stable")]
    dropped = np.setdiff1d(np.arange(n_groups), keep)
    if len(dropped):
        log.info("%s: %d group(s) with < %d cells left out: %s", name, len(dropped), min_cells,
                 ", ".join(f"{groups.labels[g]} ({n_cells[g]})" for g in dropped[:10]))
    remap = np.full(n_groups, -1)
    remap[keep] = np.arange(len(keep))
    rows = _indicator(np.where(atom_group >= 0, remap[np.maximum(atom_group, 0)], -1), len(keep))
    obs = _obs(groups.labels[keep], {"cell_type": groups.labels[keep], **_parts(groups, keep),
                                     "n_cells": n_cells[keep]})
    dropped_uns = {"cell_type": groups.labels[dropped].astype(str), "n_cells": n_cells[dropped]}
    dt = _counts_dtype(state, rows)
    written["celltype"] = write_h5ad_columns(
        paths["celltype"], obs, var, {**base_uns, "kind": "celltype", "dropped_groups": dropped_uns},
        {"X": np.float32, "counts": dt, "zscore": np.float32}, _blocks(state, rows, stats, dt))

    # sample x cell type x genes
    ok = (atoms.sample >= 0) & (atom_group >= 0)
    # keyed (group, sample) so rows come sorted by cell type, then sample
    atom_pair, p_group, p_sample = _pairs(atom_group, atoms.sample, ok, len(atoms.sample_labels))
    n_cells, keep = _keep(atom_pair, len(p_sample), state.atom_cells, min_cells)
    remap = np.full(len(p_sample), -1)
    remap[keep] = np.arange(len(keep))
    rows = _indicator(np.where(atom_pair >= 0, remap[np.maximum(atom_pair, 0)], -1), len(keep))
    s_lab, g_lab = atoms.sample_labels[p_sample[keep]], groups.labels[p_group[keep]]
    cols = {"sample": s_lab, "cell_type": g_lab, **_parts(groups, p_group[keep]), "n_cells": n_cells[keep]}
    if not atoms.unit_is_sample:
        cols = {"donor": _sample_units(atoms, p_sample[keep]), **cols}
    obs = _obs([f"{s}{sep}{g}" for s, g in zip(s_lab, g_lab, strict=True)], cols)
    dt = _counts_dtype(state, rows)
    written["samples"] = write_h5ad_columns(
        paths["samples"], obs, var, {**base_uns, "kind": "samples"},
        {"X": np.float32, "counts": dt, "zscore": np.float32}, _blocks(state, rows, stats, dt))

    if n_bootstrap > 0:
        written["resampled"] = _write_resampled(atoms, state, stats, groups, atom_group, var, paths, base_uns,
                                                min_cells, min_samples, n_bootstrap, seed)
    return written


def _sample_units(atoms: AtomTable, sample_codes: np.ndarray) -> np.ndarray:
    """The donor of each sample (comma-joined if an atlas maps one sample to several donors)."""
    out = []
    for s in sample_codes:
        units = np.unique(atoms.unit[(atoms.sample == s) & (atoms.unit >= 0)])
        out.append(",".join(atoms.unit_labels[units]))
    return np.asarray(out, dtype=object)


def _write_resampled(atoms, state, stats, groups, atom_group, var, paths, base_uns, min_cells, min_samples,
                     n_bootstrap, seed) -> Path:
    name = groups.level.name
    ok = (atoms.unit >= 0) & (atom_group >= 0)
    atom_pair, p_group, p_unit = _pairs(atom_group, atoms.unit, ok, len(atoms.unit_labels))
    n_cells, keep = _keep(atom_pair, len(p_unit), state.atom_cells, min_cells)
    remap = np.full(len(p_unit), -1)
    remap[keep] = np.arange(len(keep))
    unit_rows = _indicator(np.where(atom_pair >= 0, remap[np.maximum(atom_pair, 0)], -1), len(keep))
    kept_group = p_group[keep]
    eligible = [g for g in np.unique(kept_group) if (kept_group == g).sum() >= min_samples]
    eligible.sort(key=lambda g: groups.labels[g])
    skipped = sorted(set(np.unique(p_group).tolist()) - set(eligible))
    if skipped:
        log.info("%s: no bootstrap for %d cell type(s) with < %d units of >= %d cells: %s", name, len(skipped),
                 min_samples, min_cells, ", ".join(groups.labels[g] for g in skipped[:10]))
    members = [np.flatnonzero(kept_group == g) for g in eligible]
    draws = [draw_counts(len(m), n_bootstrap, resample_rng(seed, name, groups.labels[g]))
             for m, g in zip(members, eligible, strict=True)]
    mix = resample_matrix(members, draws, len(keep))
    g_rep = np.repeat(np.asarray(eligible, dtype=np.int64), n_bootstrap)
    b_idx = np.tile(np.arange(n_bootstrap), len(eligible))
    labels = groups.labels[g_rep] if len(g_rep) else np.array([], dtype=object)
    obs = _obs([f"{lab}{atoms.separator}{b}" for lab, b in zip(labels, b_idx, strict=True)],
               {"cell_type": labels, **_parts(groups, g_rep), "bootstrap_idx": b_idx,
                "n_units": np.repeat([len(m) for m in members], n_bootstrap).astype(np.int64)})
    return write_h5ad_columns(paths["resampled"], obs, var, {**base_uns, "kind": "resampled"},
                              {"X": np.float32, "zscore": np.float32},
                              _blocks(state, unit_rows, stats, None, mix=mix))

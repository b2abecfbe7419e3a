"""The files of every level, built from the finished atom state in one sweep over gene blocks.

Each file is a plan: which atoms make each row (a sparse indicator matrix), and for resamples which unit rows
are mixed with what weights. All files are then filled together, gene block by gene block, so the atom sums of
a block are converted once for all of them and no file is ever held whole in memory (CIMA's sample x L4 file
is ~30 k x 36 k per layer).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas._faults import crash_point
from cytoatlas._pseudobulk._kernels import log_scaled_zscore, mix_rows, sum_atom_rows
from cytoatlas._pseudobulk.atoms import AtomTable, LevelGroups
from cytoatlas._pseudobulk.bootstrap import draw_counts, resample_rng
from cytoatlas._pseudobulk.normalise import cpm_scale, inverse_std
from cytoatlas._pseudobulk.sample_meta import SampleValues, take_rows
from cytoatlas._pseudobulk.state import AtomState
from cytoatlas.celltypes.mapping import ONTOLOGY_COLUMN
from cytoatlas.io.memory import as_stored
from cytoatlas.io.writer import COLUMN_BLOCK, ColumnWriter, Writeback, even_chunk, seal_file

log = logging.getLogger(__name__)
IN_FLIGHT = 6  # output blocks computed or waiting to be written at any time


@dataclass
class AtlasStats:
    """Per-gene mean and std (ddof 1) of single-cell log1p CPM over all kept cells."""

    mean: np.ndarray
    std: np.ndarray
    n_cells: int
    n_nonzero: np.ndarray

    @classmethod
    def from_state(cls, state: AtomState) -> AtlasStats:
        moments = state.final_moments()
        return cls(moments.mean, moments.std(ddof=1), moments.n, state.gene_nnz)

    def to_uns(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n_cells": self.n_cells, "n_nonzero": self.n_nonzero,
                "std_ddof": 1}


@dataclass
class FilePlan:
    """One output file: its annotations, and how its rows are made from atom sums.

    Rows are ``rows @ atom_sums`` (counts, then log1p CPM). With ``mixes`` the file holds resamples instead:
    for each ``(weights, members)``, rows ``weights @ CPM(rows[members])``, i.e. means of unit CPM profiles.
    """

    path: Path
    obs: pd.DataFrame
    uns: dict
    rows: sp.csr_matrix
    mixes: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def with_counts(self) -> bool:
        return self.mixes is None


def _pairs(first: np.ndarray, second: np.ndarray, ok: np.ndarray, n_second: int):
    """Distinct (first, second) pairs among atoms where ``ok``, sorted: pair index per atom (-1 elsewhere),
    and the pairs' first and second codes."""
    key = np.where(ok, first.astype(np.int64) * n_second + second, -1)
    uniq, inv = np.unique(key[ok], return_inverse=True)
    atom_pair = np.full(len(key), -1, dtype=np.int64)
    atom_pair[ok] = inv
    return atom_pair, uniq // n_second, uniq % n_second


def _rows(atom_row: np.ndarray, keep: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """Rows x atoms matrix of ones for the rows in ``keep`` (in that order): row r sums its atoms."""
    remap = np.full(n_rows, -1)
    remap[keep] = np.arange(len(keep))
    target = np.where(atom_row >= 0, remap[np.maximum(atom_row, 0)], -1)
    atoms = np.flatnonzero(target >= 0)
    return sp.csr_matrix((np.ones(len(atoms)), (target[atoms], atoms)), shape=(len(keep), len(atom_row)))


def _cells(atom_row: np.ndarray, n_rows: int, atom_cells: np.ndarray) -> np.ndarray:
    ok = atom_row >= 0
    return np.bincount(atom_row[ok], weights=atom_cells[ok], minlength=n_rows).astype(np.int64)


def _obs(index, columns: dict) -> pd.DataFrame:
    df = pd.DataFrame({k: pd.Categorical(v) if v.dtype == object else v for k, v in columns.items()})
    df.index = pd.Index(np.asarray(index, dtype=object).astype(str), dtype=object)
    return df


def _parts(groups: LevelGroups, codes: np.ndarray) -> dict:
    return {col: labels[codes] for col, labels in groups.parts.items() if col != "cell_type"}


def _listed(labels, counts, limit: int = 10) -> str:
    return ", ".join(f"{lab} ({n})" for lab, n in list(zip(labels, counts, strict=True))[:limit])


def plan_level(
    atoms: AtomTable, state: AtomState, groups: LevelGroups, paths: dict[str, Path], uns: dict, *,
    min_cells: int, min_samples: int, n_bootstrap: int, seed: int, sample_values: SampleValues | None = None,
    ontology: dict[str, str] | None = None,
) -> list[FilePlan]:
    """Plans for a level's cell type, sample x cell type and (if ``n_bootstrap``) resampled files; the sample x
    cell type file's obs ends with the ``sample_values`` columns (see :mod:`cytoatlas._pseudobulk.sample_meta`);
    with ``ontology`` (``{label: CL ID}``), every file's obs has ``cell_type_ontology_term_id`` after the labels."""
    name, sep, n_groups = groups.level.name, atoms.separator, len(groups.labels)
    if ontology is not None:  # the atlas' own CL IDs travel with the labels (as a composite part would)
        ids = np.asarray([ontology.get(str(x), "") for x in groups.labels], dtype=object)
        groups = dataclasses.replace(groups, parts={**groups.parts, ONTOLOGY_COLUMN: ids})
    atom_group = groups.atom_group.astype(np.int64)

    n_cells = _cells(atom_group, n_groups, state.atom_cells)
    keep = np.flatnonzero(n_cells >= min_cells)
    keep = keep[np.argsort(groups.labels[keep], kind="stable")]
    dropped = np.setdiff1d(np.flatnonzero(n_cells > 0), keep)
    if len(dropped):
        log.info("%s: %d group(s) with < %d cells left out: %s", name, len(dropped), min_cells,
                 _listed(groups.labels[dropped], n_cells[dropped]))
    obs = _obs(groups.labels[keep], {"cell_type": groups.labels[keep], **_parts(groups, keep),
                                     "n_cells": n_cells[keep]})
    dropped_uns = {"cell_type": groups.labels[dropped].astype(str), "n_cells": n_cells[dropped]}
    plans = [FilePlan(paths["celltype"], obs, {**uns, "kind": "celltype", "dropped_groups": dropped_uns},
                      _rows(atom_group, keep, n_groups))]

    # keyed (group, sample) so rows come sorted by cell type, then sample
    ok = (atoms.sample >= 0) & (atom_group >= 0)
    atom_pair, p_group, p_sample = _pairs(atom_group, atoms.sample, ok, len(atoms.sample_labels))
    n_cells = _cells(atom_pair, len(p_sample), state.atom_cells)
    keep = np.flatnonzero(n_cells >= min_cells)
    s_lab, g_lab = atoms.sample_labels[p_sample[keep]], groups.labels[p_group[keep]]
    cols = {"sample": s_lab, "cell_type": g_lab, **_parts(groups, p_group[keep]), "n_cells": n_cells[keep]}
    if not atoms.unit_is_sample:
        cols = {"donor": _sample_units(atoms, p_sample[keep]), **cols}
    cols.update(take_rows(sample_values or {}, p_sample[keep]))
    obs = _obs([f"{s}{sep}{g}" for s, g in zip(s_lab, g_lab, strict=True)], cols)
    plans.append(FilePlan(paths["samples"], obs, {**uns, "kind": "samples"},
                          _rows(atom_pair, keep, len(p_sample))))
    if n_bootstrap > 0:
        plans.append(_plan_resampled(atoms, state, groups, atom_group, paths["resampled"], uns, min_cells,
                                     min_samples, n_bootstrap, seed))
    return plans


def _sample_units(atoms: AtomTable, sample_codes: np.ndarray) -> np.ndarray:
    """The donor of each sample (comma-joined if an atlas maps one sample to several donors)."""
    out = []
    for s in sample_codes:
        units = np.unique(atoms.unit[(atoms.sample == s) & (atoms.unit >= 0)])
        out.append(",".join(atoms.unit_labels[units]))
    return np.asarray(out, dtype=object)


def _plan_resampled(atoms, state, groups, atom_group, path, uns, min_cells, min_samples, n_bootstrap, seed):
    name = groups.level.name
    ok = (atoms.unit >= 0) & (atom_group >= 0)
    atom_pair, p_group, _ = _pairs(atom_group, atoms.unit, ok, len(atoms.unit_labels))
    n_cells = _cells(atom_pair, len(p_group), state.atom_cells)
    keep = np.flatnonzero(n_cells >= min_cells)
    unit_group = p_group[keep]
    present = np.unique(p_group)
    n_units = np.bincount(unit_group, minlength=len(groups.labels))
    eligible = sorted(present[n_units[present] >= min_samples], key=lambda g: groups.labels[g])
    skipped = present[n_units[present] < min_samples]
    if len(skipped):
        log.info("%s: no bootstrap for %d cell type(s) with < %d units of >= %d cells: %s", name, len(skipped),
                 min_samples, min_cells, _listed(groups.labels[skipped], n_units[skipped]))
    mixes = []
    for g in eligible:
        members = np.flatnonzero(unit_group == g)
        draws = draw_counts(len(members), n_bootstrap, resample_rng(seed, name, groups.labels[g]))
        mixes.append(((draws / len(members)).astype(np.float32), members))
    g_rep = np.repeat(np.asarray(eligible, dtype=np.int64), n_bootstrap)
    b_idx = np.tile(np.arange(n_bootstrap), len(eligible))
    labels = groups.labels[g_rep]
    obs = _obs([f"{lab}{atoms.separator}{b}" for lab, b in zip(labels, b_idx, strict=True)],
               {"cell_type": labels, **_parts(groups, g_rep), "bootstrap_idx": b_idx,
                "n_units": n_units[g_rep].astype(np.int64)})
    return FilePlan(path, obs, {**uns, "kind": "resampled"}, _rows(atom_pair, keep, len(p_group)), mixes)


def _block(plan: FilePlan, atom_sums: np.ndarray, cols: slice, totals: np.ndarray, mean, inv_std,
           counts_dtype) -> dict:
    """X, zscore (and counts) of ``plan``'s rows for the genes ``cols``."""
    counts = np.empty((plan.rows.shape[0], cols.stop - cols.start))
    sum_atom_rows(plan.rows.indptr, plan.rows.indices, atom_sums, cols.start, cols.stop, counts)
    scale = cpm_scale(totals)
    if plan.mixes is None:
        values = counts
    else:  # resamples: means of unit CPM profiles, already per million
        unit_cpm = (counts * scale[:, None]).astype(np.float32)
        values = np.empty((sum(len(w) for w, _ in plan.mixes), counts.shape[1]), dtype=np.float32)
        row = 0
        for w, m in plan.mixes:
            mix_rows(w, m, unit_cpm, values[row:row + len(w)])
            row += len(w)
        scale = np.ones(len(values))
    x = np.empty(values.shape, dtype=np.float32)
    z = np.empty_like(x)
    log_scaled_zscore(values, scale, mean, inv_std, x, z)
    out = {"X": x, "zscore": z}
    if plan.with_counts:
        out["counts"] = counts.astype(counts_dtype)
    return out


def _counts_dtypes(plans: list[FilePlan], state: AtomState) -> tuple[list[np.ndarray], list[np.dtype]]:
    """Each plan's row totals (warning about rows with no counts) and the dtype of its counts layer."""
    totals = [p.rows @ state.atom_totals for p in plans]
    for p, t in zip(plans, totals, strict=True):
        if (t <= 0).any():
            log.warning("%s: %d row(s) with no counts at all are NaN", p.path.name, int((t <= 0).sum()))
    return totals, [np.dtype(np.int32 if t.max(initial=0) < 2**31 else np.int64) for t in totals]


def assemble_plans(plans: list[FilePlan], state: AtomState, stats: AtlasStats, var: pd.DataFrame) -> list:
    """Every planned file as an :class:`anndata.AnnData` in memory, in the order of ``plans``: the values the files
    of :func:`write_plans` hold, made by the same gene-block computation."""
    import anndata as ad

    mean32, inv32 = stats.mean.astype(np.float32), inverse_std(stats.std).astype(np.float32)
    totals, dtypes = _counts_dtypes(plans, state)
    n_genes = state.atom_sums.shape[1]
    width = even_chunk(n_genes, COLUMN_BLOCK)  # the file path's blocks: BLAS-free kernels, but the same bounds
    out = []
    for k, p in enumerate(plans):
        arrays: dict[str, np.ndarray] = {}
        for lo in range(0, n_genes, width):
            cols = slice(lo, min(lo + width, n_genes))
            for name, block in _block(p, state.atom_sums, cols, totals[k], mean32[cols], inv32[cols],
                                      dtypes[k]).items():
                if name not in arrays:
                    arrays[name] = np.empty((len(p.obs), n_genes), dtype=block.dtype)
                arrays[name][:, cols] = block
        if not arrays:  # no rows: the file path writes empty matrices
            arrays = {"X": np.zeros((len(p.obs), n_genes), np.float32),
                      "zscore": np.zeros((len(p.obs), n_genes), np.float32)}
            if p.with_counts:
                arrays["counts"] = np.zeros((len(p.obs), n_genes), dtypes[k])
        x = arrays.pop("X")
        layers = {name: arrays[name] for name in ("counts", "zscore") if name in arrays}
        out.append(ad.AnnData(X=x, obs=as_stored(p.obs), var=as_stored(var), layers=layers,
                              uns={**p.uns, "atlas_stats": stats.to_uns()}))
    return out


def write_plans(plans: list[FilePlan], state: AtomState, stats: AtlasStats,
                var: pd.DataFrame) -> list[tuple[Path, str]]:
    """Write every planned file; return each one's path and checksum, in the order of ``plans``.

    Files are filled one after another in gene blocks, the largest first: each finished file is hashed for
    the manifest, flushed to disk and dropped from the page cache (:func:`~cytoatlas.io.writer.seal_file`) on
    background threads while the next ones are computed, so none of it waits until the end. All files appear,
    renamed into place, only once all are complete.
    """
    mean32, inv32 = stats.mean.astype(np.float32), inverse_std(stats.std).astype(np.float32)
    totals, dtypes = _counts_dtypes(plans, state)
    writers: dict[int, ColumnWriter] = {}

    def writer(k: int) -> ColumnWriter:
        if k not in writers:  # files are created at their first block, while the workers already compute
            p = plans[k]
            layers = {"X": np.float32, "counts": dtypes[k], "zscore": np.float32} if p.with_counts else \
                {"X": np.float32, "zscore": np.float32}
            writers[k] = ColumnWriter(p.path, p.obs, var, {**p.uns, "atlas_stats": stats.to_uns()}, layers)
        return writers[k]

    n_genes = state.atom_sums.shape[1]
    order = sorted(range(len(plans)), key=lambda k: -len(plans[k].obs) * (3 if plans[k].with_counts else 2))
    width = even_chunk(n_genes, COLUMN_BLOCK)  # a block is a column of the files' chunks: stored as raw chunks
    tasks = [(k, slice(lo, min(lo + width, n_genes))) for k in order for lo in range(0, n_genes, width)]
    last_block = {k: i for i, (k, _) in enumerate(tasks)}
    digests = {}
    writeback = Writeback()
    finisher = ThreadPoolExecutor(2, thread_name_prefix="cytoatlas-finish")

    def store(i: int, k: int, cols: slice, arrays: dict) -> None:
        w = writer(k)
        w.write(cols, arrays)
        if i == last_block[k]:
            tmp = w.close()
            digests[k] = finisher.submit(seal_file, tmp)
        else:
            writeback.poke([w.tmp_path])
        crash_point("output_block")

    # the objects that exist now (a run's modules, obs, a Dask client's state) are left out of the cyclic garbage
    # collector's full sweeps while the files are written: those sweeps were 2-5 % of this phase's CPU
    gc.freeze()
    try:
        # (file, gene block) tasks run on two threads (the kernels release the GIL) while this one stores
        # finished ones in order; at most IN_FLIGHT results exist at a time
        with ThreadPoolExecutor(2, thread_name_prefix="cytoatlas-outputs") as pool:
            inflight: deque = deque()
            for i, (k, cols) in enumerate(tasks):
                inflight.append((i, k, cols, pool.submit(_block, plans[k], state.atom_sums, cols, totals[k],
                                                         mean32[cols], inv32[cols], dtypes[k])))
                if len(inflight) > IN_FLIGHT:
                    i0, k0, cols0, done = inflight.popleft()
                    store(i0, k0, cols0, done.result())
            for i, k, cols, done in inflight:
                store(i, k, cols, done.result())
        for k in range(len(plans)):
            digests[k].result()  # every file whole on disk before any is renamed into place
        committed = []
        for k in range(len(plans)):
            committed.append((writers[k].put_in_place(), digests[k].result()))
            crash_point("commit")
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        writeback.close()
        finisher.shutdown(wait=True)
        gc.unfreeze()
    return committed

"""`cytoatlas.pseudobulk`: every level's outputs of an atlas from one streaming pass over its counts."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cytoatlas import defaults
from cytoatlas._faults import crash_point
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.steps import PSEUDOBULK
from cytoatlas._pseudobulk.atoms import AtomTable, build_atoms
from cytoatlas._pseudobulk.cell_ontology import ontology_columns, read_ontology_ids
from cytoatlas._pseudobulk.checkpoint import checkpoint_levels, load_checkpoint, save_checkpoint
from cytoatlas._pseudobulk.outputs import AtlasStats, plan_level, write_plans
from cytoatlas._pseudobulk.partitions import accumulate_on_cluster, prepare_worker
from cytoatlas._pseudobulk.sample_meta import SampleValues, check_sample_columns, read_sample_values
from cytoatlas._pseudobulk.state import AtomState
from cytoatlas._version import __version__
from cytoatlas.cluster import check_scheduler, dask_client, slurm_options, usable_cores
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.chunks import tune_allocator
from cytoatlas.io.fingerprint import file_fingerprint
from cytoatlas.io.h5ad import ObsReader, open_counts, open_h5ad, read_var
from cytoatlas.io.layout import checkpoint_path, pseudobulk_kinds, pseudobulk_paths
from cytoatlas.io.manifest import check_output, read_manifest
from cytoatlas.io.prefetch import Prefetch
from cytoatlas.progress import Progress, peak_rss_gb
from cytoatlas.registry import AtlasConfig, Level, get_atlas, load_slurm_options

log = logging.getLogger("cytoatlas.pseudobulk")
FIRST_BLOCK = 4096


def level_parameters(cfg: AtlasConfig, lev: Level, n_bootstrap: int, bootstrap_seed: int, min_cells: int,
                min_samples: int) -> dict:
    """Everything a level's results depend on (batch size is not: results do not depend on it)."""
    params = {
        "counts": cfg.counts, "sample_col": cfg.sample_col, "donor_col": cfg.donor_col or "",
        "gene_symbols": cfg.gene_symbols or "", "exclude": {c: list(v) for c, v in cfg.exclude},
        "level_by": list(lev.by), "level_where": {c: list(v) for c, v in lev.where},
        "n_bootstrap": n_bootstrap, "seed": bootstrap_seed, "min_cells": min_cells, "min_samples": min_samples,
    }
    if cfg.sample_columns:  # only when set: outputs of atlases without sample columns keep their records
        params["sample_columns"] = list(cfg.sample_columns)
    return params


def level_status(paths: dict[str, Path], kinds: Sequence[str], parameters: dict, fingerprint: dict,
                 verify: bool = True) -> dict[str, tuple[str, str]]:
    """``{kind: (state, reason)}`` of a level's outputs against the directory's manifest (see
    :func:`cytoatlas.io.manifest.check_output`)."""
    entries = read_manifest(next(iter(paths.values())).parent)
    return {k: check_output(paths[k], entries.get(paths[k].name), {**parameters, "kind": k}, [fingerprint], verify,
                         PSEUDOBULK.algorithm)
            for k in kinds}


def check_pass_options(*, batch_size: int, n_bootstrap: int, min_cells: int, min_samples: int,
                       threads: int | None) -> None:
    """The pass's numeric options, for the file path and the in-memory path alike.

    Raises
    ------
    CytoatlasError
        An option is not an integer, or below its minimum.
    """
    for name, value, low in (("batch_size", batch_size, 1), ("n_bootstrap", n_bootstrap, 0),
                             ("min_cells", min_cells, 1), ("min_samples", min_samples, 1),
                             ("threads", threads or 1, 1)):
        if int(value) != value or value < low:
            raise CytoatlasError(f"{name} must be an integer >= {low}, got {value!r}")


def _select_levels(cfg: AtlasConfig, names: Sequence[str] | None) -> list[Level]:
    if not names:
        return list(cfg.levels)
    by_lower = {lev.name.lower(): lev for lev in cfg.levels}
    out = []
    for n in names:
        lev = next((lv for lv in cfg.levels if lv.name == n), None) or by_lower.get(n.lower())
        out.append(lev if lev is not None else cfg.level(n))  # cfg.level raises naming the levels
    return list(dict.fromkeys(out))


def pseudobulk(
    atlas: str | AtlasConfig,
    out: str | os.PathLike,
    *,
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    levels: Sequence[str] | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    bootstrap_seed: int = defaults.BOOTSTRAP_SEED,
    min_cells: int = defaults.MIN_CELLS,
    min_samples: int = defaults.MIN_SAMPLES,
    skip_existing: bool = False,
    resume: bool = False,
    checkpoint_every: float = defaults.CHECKPOINT_EVERY,
    threads: int | None = None,
    scheduler: str | None = None,
    slurm: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Pseudobulk every level of an atlas in one streaming pass over its counts.

    Per level, writes to ``out``: ``{atlas}_pseudobulk_{level}.h5ad`` (cell types x genes),
    ``..._samples.h5ad`` (sample x cell type x genes) and ``..._resampled.h5ad`` (donor bootstrap), each with
    X = log1p CPM, layers ``counts`` (not in resampled) and ``zscore`` against the atlas' per-gene
    single-cell log1p-CPM mean and std (``uns['atlas_stats']``). Memory is atoms x genes plus one block,
    whatever the number of cells.

    Parameters
    ----------
    atlas
        A registry name or an :class:`~cytoatlas.registry.AtlasConfig`.
    out
        Output directory (created if needed).
    registry, data_root
        A user registry TOML and the root for relative atlas paths (see :mod:`cytoatlas.registry`).
    levels
        Level names to compute (default: all of the atlas').
    batch_size
        Cells per block read; results do not depend on it, memory does.
    n_bootstrap, bootstrap_seed
        Resamples per eligible cell type (0 = no resampled file) and their seed (recorded as ``seed``).
    min_cells
        Groups (cell type, sample x cell type, unit x cell type) with fewer cells are left out.
    min_samples
        Cell types with fewer units of >= ``min_cells`` cells get no bootstrap.
    skip_existing
        Leave levels alone whose files are all current: recorded in ``out/manifest.json``, checksums verified,
        made from this input (size, mtime, content hash) with these parameters.
    resume
        Continue from the pass' last checkpoint, if there is one (implies ``skip_existing``). The outputs are
        identical to those of an uninterrupted run.
    checkpoint_every
        Seconds between checkpoints of the pass (also taken on SIGTERM, and at the end of a pass that took
        longer than this, so that writing the outputs can be redone without a new pass).
    threads
        Threads decompressing the counts' chunks (default: the cores this process may use); with two or more,
        the accumulation also uses two. Results do not depend on it.
    scheduler
        Run the pass on a Dask cluster: ``"local:N"`` (N worker processes), ``"tcp://host:port"`` (a running
        scheduler) or ``"slurm"`` (a dask-jobqueue SLURMCluster, see ``slurm``); see :mod:`cytoatlas.cluster`.
        Results are identical to the single-process pass.
    slurm
        SLURMCluster options (``queue``, ``cores``, ``memory``, ``walltime``, ``jobs``, ...) over the
        registry's ``[slurm]`` table and dask-jobqueue's configuration.

    Returns
    -------
    The paths of the level files, in level order (existing ones included when skipped).
    """
    t0 = time.perf_counter()
    check_pass_options(batch_size=batch_size, n_bootstrap=n_bootstrap, min_cells=min_cells,
                       min_samples=min_samples, threads=threads)
    check_scheduler(scheduler)
    cfg = atlas if isinstance(atlas, AtlasConfig) else get_atlas(atlas, registry, data_root)
    slurm = slurm_options(load_slurm_options(registry), slurm) if scheduler == "slurm" else None
    chosen = _select_levels(cfg, levels)
    kinds = pseudobulk_kinds(n_bootstrap)
    # an unreadable manifest counts as no records (with a warning): every output is then recomputed, which is
    # how `cytoatlas run` heals an atlas' results
    d = StepDirectory(out, PSEUDOBULK, force=True)
    out = d.out
    paths = {lev.name: pseudobulk_paths(out, cfg.name, lev.name) for lev in chosen}
    ckpt = checkpoint_path(out, cfg.name)
    threads = threads or usable_cores()
    with open_h5ad(cfg.h5ad) as f, d, open_counts(f, cfg.counts, threads) as counts:
        obs = ObsReader(f)
        check_sample_columns(cfg, chosen)
        obs.require(cfg.obs_columns(chosen))
        obs.require(list(cfg.sample_columns), "sample column")
        var = read_var(f, cfg.counts, cfg.gene_symbols)
        if len(var) != counts.shape[1]:
            raise CytoatlasError(f"{cfg.h5ad}: {cfg.counts} has {counts.shape[1]} genes but var has {len(var)}")
        fingerprint = file_fingerprint(cfg.h5ad)
        onto_cols = ontology_columns(cfg, chosen, obs.columns)
        params = {lev.name: level_parameters(cfg, lev, n_bootstrap, bootstrap_seed, min_cells, min_samples)
                  for lev in chosen}
        for level, column in onto_cols.items():  # only when set: other outputs keep their records
            params[level]["cell_type_ontology_col"] = column
        # the files to write per level: all, or (skip_existing) those not current; a level with any file to
        # write is computed, but its current files are left as they are
        stale = {lev.name: set(kinds) for lev in chosen}
        if skip_existing or resume:
            for lev in chosen:
                stale[lev.name] = {k for k in kinds if d.output_state(
                    paths[lev.name][k], {**params[lev.name], "kind": k}, [fingerprint], verify=True) != "complete"}
                if not stale[lev.name]:
                    log.info("%s %s: outputs exist, verify and are current; skipped", cfg.name, lev.name)
        todo = [lev for lev in chosen if stale[lev.name]]

        def identity(levels: list[Level]) -> dict:
            return {"input": {k: v for k, v in fingerprint.items() if k != "path"}, "batch_size": batch_size,
                    "levels": [lev.name for lev in levels], "version": __version__,
                    "parameters": {lev.name: params[lev.name] for lev in levels}}

        state, start_row = None, 0
        if todo and resume and ckpt.exists():
            # the checkpoint covers the levels its run was computing; a level finished since is simply redone
            saved = checkpoint_levels(ckpt)
            todo = [lev for lev in chosen if lev.name in saved] if set(saved) <= {lv.name for lv in chosen} else todo
            state, start_row = load_checkpoint(ckpt, identity(todo))
            log.info("%s: resuming from the checkpoint at row %s of %s", cfg.name, f"{start_row:,}",
                     f"{counts.shape[0]:,}")
        elif todo and ckpt.exists():
            log.info("%s: ignoring the checkpoint of an earlier run (pass --resume to continue it)", cfg.name)
        if todo:
            with contextlib.ExitStack() as stack, ThreadPoolExecutor(1) as planner:
                # a cluster starts first: local workers are forked from this process, which must not be inside
                # an HDF5 call on another thread then; obs becomes atoms on a second thread while the workers
                # load the compiled kernels. On a cluster, the pass is a map-reduce of partitions
                cluster = stack.enter_context(dask_client(scheduler, slurm)) if scheduler else None
                planning = planner.submit(_plan, cfg, obs, counts, todo, min_cells, min_samples, n_bootstrap,
                                          onto_cols, warm=not scheduler)
                if cluster is not None:
                    cluster.client.run(prepare_worker, counts.block(0, 0))
                atoms, sample_values, ontology = planning.result()
                if cluster is not None:
                    if state is not None:
                        log.info("%s: a checkpoint is continued in one process only; the cluster redoes the pass",
                                 cfg.name)
                    state = accumulate_on_cluster(cluster, str(cfg.h5ad), cfg.counts, fingerprint, atoms.cell_atom,
                                                  atoms.n_atoms, counts.shape[1], batch_size, cfg.name)
                    start_row = counts.shape[0]
                else:
                    state = _local_pass(cfg, counts, atoms, state, start_row, batch_size, threads, t0,
                                        _Checkpointer(ckpt, identity(todo), checkpoint_every, d))
        if todo:
            stats = AtlasStats.from_state(state)
            run_uns = {"atlas": cfg.name, "input": fingerprint, "cytoatlas_version": __version__,
                       "run": {"batch_size": batch_size, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
            plans = []
            for lev in todo:
                uns = {**run_uns, "level": lev.name, "parameters": params[lev.name], "separator": atoms.separator}
                plans += [p for p in plan_level(atoms, state, atoms.levels[lev.name], paths[lev.name], uns,
                                                min_cells=min_cells, min_samples=min_samples,
                                                n_bootstrap=n_bootstrap, seed=bootstrap_seed,
                                                sample_values=sample_values, ontology=ontology.get(lev.name))
                          if p.uns["kind"] in stale[lev.name]]
            out.mkdir(parents=True, exist_ok=True)
            written = write_plans(plans, state, stats, var)
            d.commit(dict(d.record(p, {**params[lev], "kind": kind}, [fingerprint], checksum=checksum, atlas=cfg.name,
                                   level=lev, kind=kind)
                          for (p, checksum), (lev, kind) in zip(written, _plan_keys(plans), strict=True)))
            ckpt.unlink(missing_ok=True)
            groups = ", ".join(f"{p.path.name.removesuffix('.h5ad')} {len(p.obs)}" for p in plans)
            log.info("%s: %s cells (%s kept) in %.1fs, peak memory %.2f GB; rows per file: %s", cfg.name,
                     f"{len(atoms.cell_atom):,}", f"{state.n_kept:,}", time.perf_counter() - t0, peak_rss_gb(),
                     groups)
    return [paths[lev.name][k] for lev in chosen for k in kinds]


def _plan(cfg: AtlasConfig, obs: ObsReader, counts, todo: list[Level], min_cells: int, min_samples: int,
          n_bootstrap: int, ontology_cols: dict[str, str], warm: bool
          ) -> tuple[AtomTable, SampleValues, dict[str, dict[str, str]]]:
    """The atoms of the levels to compute, the sample columns' values and the levels' CL IDs, checked before the
    pass (``warm``: load the kernels meanwhile)."""
    # numba's start-up (~1 s) runs on a second thread while obs becomes atoms; blocks are read only after
    # that, since h5py serialises all HDF5 calls and a block read would stall the obs reads
    loader = threading.Thread(target=AtomState.warm_up, args=(counts.block(0, 0),), daemon=True)
    if warm:
        loader.start()
    atoms = build_atoms(obs, cfg, todo)
    if len(atoms.cell_atom) != counts.shape[0]:
        raise CytoatlasError(f"{cfg.h5ad}: obs has {len(atoms.cell_atom)} cells, {cfg.counts} has "
                             f"{counts.shape[0]} rows")
    _log_plan(cfg, atoms, counts.shape)
    _check_groups(cfg, atoms, min_cells)
    if n_bootstrap and len(atoms.unit_labels) < min_samples:
        log.warning("%s: only %d %s value(s): a bootstrap needs --min-samples %d units, so the resampled files "
                    "will have no rows; the other outputs are written", cfg.name, len(atoms.unit_labels),
                    cfg.unit_col, min_samples)
    cell_sample = np.where(atoms.cell_atom >= 0, atoms.sample[np.maximum(atoms.cell_atom, 0)], -1)
    sample_values = read_sample_values(obs, cfg.sample_columns, cell_sample, atoms.sample_labels)
    del cell_sample
    todo_names = {lev.name for lev in todo}
    ontology = read_ontology_ids(cfg, obs, atoms, {lv: c for lv, c in ontology_cols.items() if lv in todo_names})
    if warm:
        loader.join()
    return atoms, sample_values, ontology


def _local_pass(cfg: AtlasConfig, counts, atoms: AtomTable, state: AtomState | None, start_row: int,
                batch_size: int, threads: int, t0: float, checkpoint: _Checkpointer) -> AtomState:
    """The pass in this process: blocks read ahead on a second thread (their chunks decoded by ``threads``
    threads) while this one accumulates; checkpoints as it goes."""
    tune_allocator()
    if state is None:
        state = AtomState.empty(atoms.n_atoms, counts.shape[1])
    elif state.atom_sums.shape != (atoms.n_atoms, counts.shape[1]):
        raise CytoatlasError(f"checkpoint {checkpoint.path} does not fit this atlas' groups; run without --resume")
    first = min(batch_size, FIRST_BLOCK) if start_row == 0 else None
    # with threads, a block's atom sums are added on a second thread while this one adds its moments
    sums_pool = ThreadPoolExecutor(1, thread_name_prefix="cytoatlas-sums") if threads > 1 else None
    try:
        with Prefetch(counts.blocks(batch_size, start=start_row, first=first)) as blocks, checkpoint:
            _stream(cfg, blocks, counts.shape, atoms, state, start_row, t0, checkpoint, sums_pool)
    finally:
        if sums_pool is not None:
            sums_pool.shutdown()
    state.finish()
    if time.perf_counter() - t0 >= checkpoint.every and start_row < counts.shape[0]:
        checkpoint.save(state, counts.shape[0])  # writing the outputs can be redone without a pass
    return state


def _plan_keys(plans) -> list[tuple[str, str]]:
    """(level, kind) of each planned file, from what its uns says."""
    return [(p.uns["level"], p.uns["kind"]) for p in plans]


class _Checkpointer:
    """Saves the state every ``every`` seconds and when SIGTERM arrives (then stops the run)."""

    def __init__(self, path: Path, identity: dict, every: float, lock: StepDirectory):
        self.path, self.identity, self.every, self.lock = path, identity, every, lock
        self.last = time.perf_counter()
        self.terminated = False
        self._old = None

    def __enter__(self) -> _Checkpointer:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)

    def _on_term(self, signum, frame) -> None:
        # only a flag: the state is consistent between blocks, not inside one
        self.terminated = True

    def after_block(self, state: AtomState, next_row: int) -> None:
        self.lock.touch()
        if self.terminated:
            self.save(state, next_row)
            raise CytoatlasError(f"stopped by SIGTERM; state saved at row {next_row:,} in {self.path}; "
                                 "continue with --resume")
        if time.perf_counter() - self.last >= self.every:
            self.save(state, next_row)

    def save(self, state: AtomState, next_row: int) -> None:
        t = time.perf_counter()
        save_checkpoint(self.path, state, next_row, self.identity)
        self.last = time.perf_counter()
        log.info("checkpoint at row %s (%.1f s)", f"{next_row:,}", self.last - t)


def _check_groups(cfg: AtlasConfig, atoms: AtomTable, min_cells: int) -> None:
    """Fail before the pass if a level would produce nothing: no labelled cell, or no group of min_cells."""
    atom_cells = np.bincount(atoms.cell_atom[atoms.cell_atom >= 0], minlength=atoms.n_atoms)
    for name, g in atoms.levels.items():
        cols = ", ".join(g.level.by) or "(all cells)"
        if len(g.labels) == 0:
            raise CytoatlasError(f"{cfg.name} level {name}: no cell has a label in {cols} ({g.n_missing:,} NaN, "
                                 f"{g.n_filtered:,} outside `where`); nothing to pseudobulk")
        sizes = np.bincount(g.atom_group[g.atom_group >= 0], weights=atom_cells[g.atom_group >= 0],
                            minlength=len(g.labels))
        if sizes.max() < min_cells:
            raise CytoatlasError(f"{cfg.name} level {name}: no group has --min-cells {min_cells} cells (largest: "
                                 f"{g.labels[int(sizes.argmax())]!r} with {int(sizes.max())}); lower --min-cells")


def _log_plan(cfg: AtlasConfig, atoms, shape) -> None:
    log.info("%s: %s cells x %s genes, %d excluded, %d atoms, separator %r", cfg.name, f"{shape[0]:,}",
             f"{shape[1]:,}", atoms.n_excluded, atoms.n_atoms, atoms.separator)
    for name, g in atoms.levels.items():
        log.info("  level %s: %d groups; %d cells without a label, %d outside `where`", name, len(g.labels),
                 g.n_missing, g.n_filtered)


def _stream(cfg: AtlasConfig, blocks: Prefetch, shape: tuple[int, int], atoms: AtomTable, state: AtomState,
            start_row: int, t0: float, checkpoint: _Checkpointer, pool: ThreadPoolExecutor | None) -> None:
    """The pass: every block of the counts from ``start_row`` on, into ``state``."""
    cell_atom = atoms.cell_atom
    progress = Progress(log, cfg.name, shape[0] - start_row)
    first = True
    for block in blocks:
        crash_point("block")
        state.add_block(block, cell_atom[block.start:block.stop], pool)
        if first:
            log.info("first block processed in %.2fs", time.perf_counter() - t0)
            first = False
        progress.update(block.stop - block.start)
        stop = block.stop
        del block  # let go before asking for the next one: the reader may then fill its slot
        checkpoint.after_block(state, stop)

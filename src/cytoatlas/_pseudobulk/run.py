"""`cytoatlas.pseudobulk`: every level's outputs of an atlas from one streaming pass over its counts."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from cytoatlas import __version__
from cytoatlas._pseudobulk.atoms import AtomTable, build_atoms
from cytoatlas._pseudobulk.outputs import AtlasStats, plan_level, write_plans
from cytoatlas._pseudobulk.state import AtomState
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.fingerprint import file_fingerprint
from cytoatlas.io.h5ad import ObsReader, open_counts, open_h5ad, read_var
from cytoatlas.io.prefetch import Prefetch
from cytoatlas.progress import Progress, peak_rss_gb
from cytoatlas.registry import AtlasConfig, Level, get_atlas

log = logging.getLogger("cytoatlas.pseudobulk")
KINDS = ("celltype", "samples", "resampled")
FIRST_BLOCK = 4096


def output_paths(out: str | os.PathLike, atlas: str, level: str) -> dict[str, Path]:
    """The three files of a level, names lower-case as the seed's contract."""
    stem = f"{atlas}_pseudobulk_{level}".lower()
    out = Path(out)
    return {"celltype": out / f"{stem}.h5ad", "samples": out / f"{stem}_samples.h5ad",
            "resampled": out / f"{stem}_resampled.h5ad"}


def _canonical(obj) -> str:
    """JSON text of a parameters value, equal for a dict and its round trip through h5ad."""
    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple, np.ndarray)):
            return [plain(v) for v in x]
        return x.item() if isinstance(x, np.generic) else x
    return json.dumps(plain(obj), sort_keys=True)


def _parameters(cfg: AtlasConfig, lev: Level, n_bootstrap: int, seed: int, min_cells: int,
                min_samples: int) -> dict:
    """Everything a level's results depend on (batch size is not: results do not depend on it)."""
    return {
        "counts": cfg.counts, "sample_col": cfg.sample_col, "donor_col": cfg.donor_col or "",
        "gene_symbols": cfg.gene_symbols or "", "exclude": {c: list(v) for c, v in cfg.exclude},
        "level_by": list(lev.by), "level_where": {c: list(v) for c, v in lev.where},
        "n_bootstrap": n_bootstrap, "seed": seed, "min_cells": min_cells, "min_samples": min_samples,
    }


def _is_current(path: Path, parameters: dict, fingerprint: dict) -> bool:
    """An existing output made from this input with these parameters (writes are atomic, so an existing
    file is a complete one; a file that does not open is not current)."""
    from anndata.io import read_elem

    try:
        with h5py.File(path, "r") as f:
            same_params = _canonical(read_elem(f["uns/parameters"])) == _canonical(parameters)
            old = read_elem(f["uns/input"])
    except (OSError, KeyError):
        return False
    return same_params and (old["size"], old["sha256_edges"]) == (fingerprint["size"],
                                                                  fingerprint["sha256_edges"])


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
    batch_size: int = 50_000,
    n_bootstrap: int = 100,
    seed: int = 42,
    min_cells: int = 10,
    min_samples: int = 5,
    skip_existing: bool = False,
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
    n_bootstrap, seed
        Resamples per eligible cell type (0 = no resampled file) and their seed.
    min_cells
        Groups (cell type, sample x cell type, unit x cell type) with fewer cells are left out.
    min_samples
        Cell types with fewer units of >= ``min_cells`` cells get no bootstrap.
    skip_existing
        Leave levels alone whose files all exist and were made from this input with these parameters.

    Returns
    -------
    The paths of the level files, in level order (existing ones included when skipped).
    """
    t0 = time.perf_counter()
    for name, value, low in (("batch_size", batch_size, 1), ("n_bootstrap", n_bootstrap, 0),
                             ("min_cells", min_cells, 1), ("min_samples", min_samples, 1)):
        if int(value) != value or value < low:
            raise CytoatlasError(f"{name} must be an integer >= {low}, got {value!r}")
    cfg = atlas if isinstance(atlas, AtlasConfig) else get_atlas(atlas, registry, data_root)
    chosen = _select_levels(cfg, levels)
    kinds = KINDS if n_bootstrap > 0 else KINDS[:2]
    paths = {lev.name: output_paths(out, cfg.name, lev.name) for lev in chosen}
    with open_h5ad(cfg.h5ad) as f:
        obs, counts = ObsReader(f), open_counts(f, cfg.counts)
        obs.require(cfg.obs_columns(chosen))
        var = read_var(f, cfg.counts, cfg.gene_symbols)
        if len(var) != counts.shape[1]:
            raise CytoatlasError(f"{cfg.h5ad}: {cfg.counts} has {counts.shape[1]} genes but var has {len(var)}")
        fingerprint = file_fingerprint(cfg.h5ad)
        params = {lev.name: _parameters(cfg, lev, n_bootstrap, seed, min_cells, min_samples) for lev in chosen}
        todo = [lev for lev in chosen if not (skip_existing and all(
            _is_current(paths[lev.name][k], params[lev.name], fingerprint) for k in kinds))]
        for lev in chosen:
            if lev not in todo:
                log.info("%s %s: outputs exist and are current, skipped", cfg.name, lev.name)
        if todo:
            # numba's start-up (~1 s) runs on a second thread while obs becomes atoms; blocks are read only
            # after that, since h5py serialises all HDF5 calls and a block read would stall the obs reads
            warm = threading.Thread(target=AtomState.warm_up, args=(counts.block(0, 0),), daemon=True)
            warm.start()
            atoms = build_atoms(obs, cfg, todo)
            if len(atoms.cell_atom) != counts.shape[0]:
                raise CytoatlasError(f"{cfg.h5ad}: obs has {len(atoms.cell_atom)} cells, "
                                     f"{cfg.counts} has {counts.shape[0]} rows")
            _log_plan(cfg, atoms, counts.shape)
            with Prefetch(counts.blocks(batch_size, first=min(batch_size, FIRST_BLOCK))) as blocks:
                warm.join()
                state = _stream(cfg, blocks, counts.shape, atoms, t0)
    if todo:
        stats = AtlasStats.from_state(state)
        run_uns = {"atlas": cfg.name, "input": fingerprint, "cytoatlas_version": __version__,
                   "run": {"batch_size": batch_size, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
        plans = []
        for lev in todo:
            uns = {**run_uns, "level": lev.name, "parameters": params[lev.name], "separator": atoms.separator}
            plans += plan_level(atoms, state, atoms.levels[lev.name], paths[lev.name], uns, min_cells=min_cells,
                                min_samples=min_samples, n_bootstrap=n_bootstrap, seed=seed)
        Path(out).mkdir(parents=True, exist_ok=True)
        write_plans(plans, state, stats, var)
        groups = ", ".join(f"{p.path.name.removesuffix('.h5ad')} {len(p.obs)}" for p in plans)
        log.info("%s: %s cells (%s kept) in %.1fs, peak memory %.2f GB; rows per file: %s", cfg.name,
                 f"{len(atoms.cell_atom):,}", f"{state.moments.n:,}", time.perf_counter() - t0, peak_rss_gb(), groups)
    return [paths[lev.name][k] for lev in chosen for k in kinds]


def _log_plan(cfg: AtlasConfig, atoms, shape) -> None:
    log.info("%s: %s cells x %s genes, %d excluded, %d atoms, separator %r", cfg.name, f"{shape[0]:,}",
             f"{shape[1]:,}", atoms.n_excluded, atoms.n_atoms, atoms.separator)
    for name, g in atoms.levels.items():
        log.info("  level %s: %d groups; %d cells without a label, %d outside `where`", name, len(g.labels),
                 g.n_missing, g.n_filtered)


def _stream(cfg: AtlasConfig, blocks: Prefetch, shape: tuple[int, int], atoms: AtomTable, t0: float) -> AtomState:
    """The pass: every block of the counts into one atom state."""
    state, cell_atom = AtomState.empty(atoms.n_atoms, shape[1]), atoms.cell_atom
    progress = Progress(log, cfg.name, shape[0])
    first = True
    for block in blocks:
        state.add_block(block, cell_atom[block.start:block.stop])
        if first:
            log.info("first block processed in %.2fs", time.perf_counter() - t0)
            first = False
        progress.update(block.stop - block.start)
        del block  # let go before asking for the next one: the reader may then fill its slot
    return state

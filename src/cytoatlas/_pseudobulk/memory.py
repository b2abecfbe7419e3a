"""`cytoatlas.pp.pseudobulk`: the pseudobulk of an AnnData held in memory (or opened backed), as AnnData objects.

The same pass as :func:`cytoatlas.pseudobulk` (atoms, the streaming accumulation, the level plans and the
gene-block computation of the outputs), fed from the object's matrix instead of a file's, and the outputs
assembled in memory instead of written: equal, value for value, to the files the file path writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cytoatlas._pseudobulk.cell_ontology import ontology_columns
from cytoatlas._pseudobulk.outputs import AtlasStats, assemble_plans, plan_level
from cytoatlas._pseudobulk.run import _local_pass, _plan, _select_levels, check_pass_options, level_parameters
from cytoatlas._pseudobulk.sample_meta import check_sample_columns
from cytoatlas._version import __version__
from cytoatlas.cluster import usable_cores
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import pseudobulk_paths
from cytoatlas.io.memory import IN_MEMORY, adata_source
from cytoatlas.registry import AtlasConfig

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger("cytoatlas.pseudobulk")


@dataclass
class LevelPseudobulk:
    """The pseudobulk of one annotation level, as the three files of :func:`cytoatlas.pseudobulk`.

    Attributes
    ----------
    celltype
        Cell types x genes: X log1p CPM, layers ``counts`` and ``zscore`` (against the atlas' single cells).
    samples
        Sample x cell type x genes, the same layers; obs ``sample``, ``cell_type``, ``n_cells`` and the sample
        columns.
    resampled
        The donor bootstrap (cell types x resamples x genes; X and ``zscore``), or ``None`` with no bootstrap.
    """

    celltype: AnnData
    samples: AnnData
    resampled: AnnData | None = None


class _NoCheckpoint:
    """The pass' checkpointer, for a pass with nothing to save to: an object in memory starts over."""

    every = float("inf")
    path = Path(IN_MEMORY)

    def __enter__(self) -> _NoCheckpoint:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def after_block(self, state, next_row: int) -> None:
        return None

    def save(self, state, next_row: int) -> None:
        return None


def pseudobulk_adata(adata, cfg: AtlasConfig, *, levels: Sequence[str] | None, n_bootstrap: int,
                     bootstrap_seed: int, min_cells: int, min_samples: int, batch_size: int,
                     threads: int | None) -> dict[str, LevelPseudobulk]:
    """Every chosen level of ``adata`` (see :func:`cytoatlas.pp.pseudobulk`)."""
    t0 = time.perf_counter()
    check_pass_options(batch_size=batch_size, n_bootstrap=n_bootstrap, min_cells=min_cells,
                       min_samples=min_samples, threads=threads)
    chosen = _select_levels(cfg, levels)
    threads = threads or usable_cores()
    with adata_source(adata, cfg.counts, cfg.gene_symbols, threads) as source:
        obs, counts, var = source.obs, source.counts, source.var
        check_sample_columns(cfg, chosen)
        obs.require(cfg.obs_columns(chosen))
        obs.require(list(cfg.sample_columns), "sample column")
        if len(var) != counts.shape[1]:
            raise CytoatlasError(f"{cfg.name}: {cfg.counts} has {counts.shape[1]} genes but var has {len(var)}")
        onto_cols = ontology_columns(cfg, chosen, obs.columns)
        params = {lev.name: level_parameters(cfg, lev, n_bootstrap, bootstrap_seed, min_cells, min_samples)
                  for lev in chosen}
        for level, column in onto_cols.items():
            params[level]["cell_type_ontology_col"] = column
        atoms, sample_values, ontology = _plan(cfg, obs, counts, chosen, min_cells, min_samples, n_bootstrap,
                                               onto_cols, warm=False)
        state = _local_pass(cfg, counts, atoms, None, 0, batch_size, threads, t0, _NoCheckpoint())
    stats = AtlasStats.from_state(state)
    source = {"path": str(adata.filename) if getattr(adata, "isbacked", False) else IN_MEMORY,
              "n_obs": int(counts.shape[0]), "n_vars": int(counts.shape[1])}
    run_uns = {"atlas": cfg.name, "input": source, "cytoatlas_version": __version__,
               "run": {"batch_size": batch_size, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    out = {}
    for lev in chosen:
        uns = {**run_uns, "level": lev.name, "parameters": params[lev.name], "separator": atoms.separator}
        # the plans name the files the file path would write: their names appear in its log lines only
        plans = plan_level(atoms, state, atoms.levels[lev.name], pseudobulk_paths(Path("."), cfg.name, lev.name),
                           uns, min_cells=min_cells, min_samples=min_samples, n_bootstrap=n_bootstrap,
                           seed=bootstrap_seed, sample_values=sample_values, ontology=ontology.get(lev.name))
        made = dict(zip((p.uns["kind"] for p in plans), assemble_plans(plans, state, stats, var), strict=True))
        out[lev.name] = LevelPseudobulk(made["celltype"], made["samples"], made.get("resampled"))
    log.info("%s: %s cells (%s kept) in %.1fs", cfg.name, f"{len(atoms.cell_atom):,}", f"{state.n_kept:,}",
             time.perf_counter() - t0)
    return out

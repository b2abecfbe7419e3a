"""Per-cell activity of a small atlas in memory, in float64: the numbers the files hold before their one
rounding to float32 (for checks against a reference, and for notebooks on a few thousand cells)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas import defaults
from cytoatlas._activity.run import signature_sets
from cytoatlas._cells.outputs import cells_obs, cells_var
from cytoatlas._cells.plan import plan_cells, plan_source
from cytoatlas._cells.run import LAYERS, cells_uns, check_cells_options, fit_models, gene_sums
from cytoatlas._cells.scoring import score_block
from cytoatlas.cluster import usable_cores
from cytoatlas.io.h5ad import open_counts, open_h5ad
from cytoatlas.io.memory import adata_source, as_stored
from cytoatlas.registry import AtlasConfig, get_atlas


def cell_activity(atlas: str | AtlasConfig, *, signatures: Sequence[str] | None = None,
                  signature_files: Sequence[str | os.PathLike] = (), registry: str | os.PathLike | None = None,
                  data_root: str | os.PathLike | None = None, lambda_: float = defaults.LAMBDA,
                  batch_size: int = defaults.BATCH_SIZE) -> dict[str, dict[str, pd.DataFrame]]:
    """``{set: {"beta": cells x signatures, "zscore": ..., "pvalue": ...}}`` (float64) of every kept cell.

    The same passes as :func:`cytoatlas.cells`, held in memory: for atlases of thousands of cells, not millions.
    """
    cfg = atlas if isinstance(atlas, AtlasConfig) else get_atlas(atlas, registry, data_root)
    sets = signature_sets(signatures, [*cfg.signature_files, *map(Path, signature_files)])
    with open_h5ad(cfg.h5ad) as f, open_counts(f, cfg.counts) as counts:
        plan = plan_cells(f, cfg, counts.shape[0], counts.shape[1], sets, None)
        sums = gene_sums(None, cfg, counts, plan, batch_size, None, None)
        models = fit_models(sets, plan, sums, lambda_, cfg.name)
        parts: list[list[dict]] = [[] for _ in models]
        for block in counts.blocks(batch_size):
            for _, outs in score_block(block, plan.kept[block.start:block.stop], models, ("beta", "pvalue"),
                                       dtype=np.float64):
                for store, arrays in zip(parts, outs, strict=True):
                    store.append(arrays)
    result = {}
    for m, store in zip(models, parts, strict=True):
        names = pd.Index(m.names.astype(str))
        def frame(key: str, store=store, names=names) -> pd.DataFrame:
            return pd.DataFrame(np.concatenate([a[key] for a in store]), index=plan.names.astype(str), columns=names)
        result[m.sig.name] = {"beta": frame("beta"), "zscore": frame("X"), "pvalue": frame("pvalue")}
    return result


def cells_of_adata(adata, cfg: AtlasConfig, *, signatures: Sequence[str] | None = None,
                   signature_files: Sequence[str | os.PathLike] = (), layers: Sequence[str] = LAYERS,
                   embedding: str | None = None, lambda_: float = defaults.LAMBDA,
                   batch_size: int = defaults.BATCH_SIZE, threads: int | None = None) -> dict:
    """``{set: AnnData}`` of per-cell activity of an AnnData in memory (or backed): the values of the files of
    :func:`cytoatlas.cells` for the same data (kept cells x signatures; X the exact z, float32; the ``layers``
    asked for; obs the sample column and every level)."""
    import anndata as ad

    layers = check_cells_options(layers=layers, lambda_=lambda_, batch_size=batch_size, threads=threads)
    sets = signature_sets(signatures, [*cfg.signature_files, *map(Path, signature_files)])
    threads = threads or usable_cores()
    with adata_source(adata, cfg.counts, cfg.gene_symbols, threads) as source, contextlib.ExitStack() as stack:
        counts = source.counts
        plan = plan_source(source.obs, source.cell_names, lambda: source.var, source.obsm, cfg, counts.shape[0],
                           counts.shape[1], sets, embedding)
        sums = gene_sums(None, cfg, counts, plan, batch_size, None, None)
        models = fit_models(sets, plan, sums, lambda_, cfg.name)
        pool = stack.enter_context(ThreadPoolExecutor(threads, thread_name_prefix="cytoatlas-score")) \
            if threads > 1 else None
        parts: list[list[dict]] = [[] for _ in models]
        for block in counts.blocks(batch_size):
            for _, outs in score_block(block, plan.kept[block.start:block.stop], models, layers, pool=pool,
                                       n_threads=threads):
                for store, arrays in zip(parts, outs, strict=True):
                    store.append(arrays)
    params = {"counts": cfg.counts, "sample_col": cfg.sample_col, "gene_symbols": cfg.gene_symbols or "",
              "exclude": {c: list(v) for c, v in cfg.exclude}, "levels": [lev.name for lev in cfg.levels],
              "lambda": float(lambda_), "layers": list(layers), "embedding": plan.embedding_key or ""}
    source_record = {"path": source.name, "n_obs": int(counts.shape[0]), "n_vars": int(counts.shape[1])}
    obs = as_stored(cells_obs(plan.names, plan.columns))
    result = {}
    for m, store in zip(models, parts, strict=True):
        arrays = {k: np.concatenate([a[k] for a in store]) if store else np.zeros((0, len(m.names)), np.float32)
                  for k in ("X", *layers)}
        result[m.sig.name] = ad.AnnData(X=arrays.pop("X"), obs=obs.copy(), var=as_stored(cells_var(m)), layers=arrays,
                                        uns=cells_uns(m, cfg, plan, sums, source_record, params))
    return result

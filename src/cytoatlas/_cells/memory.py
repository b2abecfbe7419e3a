"""Per-cell activity of a small atlas in memory, in float64: the numbers the files hold before their one
rounding to float32 (for checks against a reference, and for notebooks on a few thousand cells)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas import defaults
from cytoatlas._activity.run import signature_sets
from cytoatlas._cells.plan import plan_cells
from cytoatlas._cells.run import fit_models, gene_sums
from cytoatlas._cells.scoring import score_block
from cytoatlas.io.h5ad import open_counts, open_h5ad
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

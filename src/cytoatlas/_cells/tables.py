"""The small tables beside a per-cell activity file: the per-label summary and the embedding subsample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas._cells.model import CellModel
from cytoatlas._cells.plan import CellsPlan
from cytoatlas._cells.summary import Summary
from cytoatlas.io import durable, layout

# signatures drawn on the embedding, per set: the embedding table is cells x these z columns (named Z_PREFIX + name)
EMBEDDING_SIGNATURES = 50
Z_PREFIX = "z:"
LABEL_PREFIX = "label:"


def write_tables(directory: Path, atlas: str, model: CellModel, summary: Summary, plan: CellsPlan,
                 quantiles, per_label: int) -> list[tuple[str, Path]]:
    """Write the summary table (and, with an embedding, its subsample); ``[(kind, path)]`` written."""
    out = []
    table = summary.table()
    path = layout.cells_summary_path(directory, atlas, model.sig.name)
    durable.write_text_atomic(path, table.to_csv(index=False))
    out.append(("summary", path))
    if plan.embedding is not None:
        path = layout.cells_embedding_path(directory, atlas, model.sig.name)
        durable.write_text_atomic(path, embedding_table(model, summary, plan).to_csv(index=False))
        out.append(("embedding", path))
    return out


def embedding_table(model: CellModel, summary: Summary, plan: CellsPlan) -> pd.DataFrame:
    """One row per subsampled cell: name, x, y, every level's label, and the z of the set's most variable
    signatures (by sd over the subsample; all of them for sets of up to ``EMBEDDING_SIGNATURES``)."""
    rows = plan.embedding_rows
    at = np.searchsorted(summary.emb_rows, rows)
    z = summary.emb_z[at]
    k = z.shape[1]
    if k > EMBEDDING_SIGNATURES:
        keep = np.sort(np.argsort(-z.astype(np.float64).std(axis=0), kind="stable")[:EMBEDDING_SIGNATURES])
    else:
        keep = np.arange(k)
    frame = pd.DataFrame({"cell": plan.names[rows].astype(str), "x": plan.embedding[:, 0],
                          "y": plan.embedding[:, 1]})
    for lev, (codes, cats) in plan.levels.items():
        c = codes[rows]
        frame[f"{LABEL_PREFIX}{lev}"] = np.where(c >= 0, np.asarray(cats, dtype=object)[np.maximum(c, 0)], "")
    for j in keep:
        frame[f"{Z_PREFIX}{model.names[j]}"] = z[:, j]
    return frame

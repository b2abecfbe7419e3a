"""Pseudobulk files as regression responses: the signature genes of X, matched on gene symbols.

Only the columns (genes) a run needs are kept, read in row blocks, so a CIMA L4 sample x cell type file
(~30 k rows x 36 k genes) never sits in memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import open_h5ad, read_dataframe, read_strings

KINDS = ("celltype", "samples", "resampled")
_ROW_BLOCK = 512
# values per row block of X (8 MB of float32)
_BLOCK_VALUES = 1 << 21


@dataclass
class Pseudobulk:
    """The part of a pseudobulk file activity needs.

    Attributes
    ----------
    path, kind
        The file and its kind (``celltype``, ``samples`` or ``resampled``).
    obs
        Its rows' annotations.
    genes
        Symbols of the kept genes (unique, in the file's var order).
    values
        ``len(genes) x len(obs)`` log1p CPM (float32): genes are rows, as the regression reads them.
    uns
        ``atlas``, ``level``, ``separator`` and the other scalar entries of the file's ``uns``.
    n_symbols
        How many distinct gene symbols the file has.
    """

    path: Path
    kind: str
    obs: pd.DataFrame
    genes: np.ndarray
    values: np.ndarray
    uns: dict
    n_symbols: int


def _scalar_uns(f: h5py.File) -> dict:
    out = {}
    for k, v in f.get("uns", {}).items():
        if isinstance(v, h5py.Dataset) and v.shape == ():
            x = v[()]
            out[k] = x.decode() if isinstance(x, bytes) else x.item() if isinstance(x, np.generic) else x
    return out


def unique_symbols(symbols: np.ndarray, means: np.ndarray | None) -> np.ndarray:
    """Indices keeping one gene per symbol, in var order.

    Rule for a symbol carried by several genes (e.g. two Ensembl ids): keep the gene with the highest
    atlas-level mean expression (``uns['atlas_stats']['mean']``), the first in var order on a tie, so every
    file of an atlas keeps the same gene. Empty symbols are dropped.
    """
    symbols = np.asarray(symbols, dtype=object)
    order = np.arange(len(symbols))
    rank = np.zeros(len(symbols)) if means is None else -np.asarray(means, dtype=float)
    by = np.lexsort((order, rank))  # highest mean first, var order on ties
    _, first = np.unique(symbols[by], return_index=True)
    keep = by[first]
    return np.sort(keep[symbols[keep] != ""])


def read_pseudobulk(path: str | os.PathLike, genes: Iterable[str] | None = None) -> Pseudobulk:
    """Read a ``cytoatlas pseudobulk`` output, keeping only ``genes`` (symbols) when given.

    Raises
    ------
    CytoatlasError
        If the file is missing, unreadable, or not a pseudobulk output (no ``uns['kind']`` or no dense X).
    """
    path = Path(path)
    with open_h5ad(path) as f:
        uns = _scalar_uns(f)
        if uns.get("kind") not in KINDS or "X" not in f or not isinstance(f["X"], h5py.Dataset):
            raise CytoatlasError(
                f"{path}: not a cytoatlas pseudobulk file (activity reads the outputs of `cytoatlas pseudobulk`: "
                f"dense log1p CPM in X and uns['kind'] one of {', '.join(KINDS)})")
        try:
            obs = read_dataframe(f["obs"])
            var = f["var"]
            # only the symbol column of var: a gene table can carry dozens of columns
            column = "gene_symbol" if "gene_symbol" in var else var.attrs.get("_index", "_index")
            symbols = read_strings(var[column], column)
            stats = f.get("uns/atlas_stats/mean")
            means = stats[()] if isinstance(stats, h5py.Dataset) else None
        except (KeyError, OSError, ValueError) as e:
            raise CytoatlasError(f"{path}: unreadable pseudobulk annotations: {e}") from None
        x = f["X"]
        if x.ndim != 2 or x.shape != (len(obs), len(symbols)):
            raise CytoatlasError(f"{path}: X has shape {x.shape}, but obs x var is {len(obs)} x {len(symbols)}")
        keep = unique_symbols(symbols, means if means is not None and len(means) == len(symbols) else None)
        n_symbols = len(keep)
        if genes is not None:
            wanted = set(genes)
            keep = keep[np.fromiter((s in wanted for s in symbols[keep]), bool, len(keep))]
        values = np.empty((len(keep), len(obs)), dtype=np.float32)
        # one block buffer, reused: a fresh array per block costs more in page faults than the read itself, and a
        # block of ~8 MB stays in cache while its columns are picked
        block = np.empty((max(1, min(_ROW_BLOCK, len(obs), _BLOCK_VALUES // max(1, len(symbols)))), len(symbols)),
                         dtype=x.dtype)
        try:
            for start in range(0, len(obs) if len(keep) else 0, len(block)):
                stop = min(start + len(block), len(obs))
                part = block[:stop - start]
                x.read_direct(part, np.s_[start:stop], np.s_[:stop - start])
                values[:, start:stop] = part[:, keep].T
        except OSError as e:
            raise CytoatlasError(f"{path}: X cannot be read (corrupt or truncated?): {e}") from None
    return Pseudobulk(path=path, kind=uns["kind"], obs=obs, genes=symbols[keep], values=values, uns=uns,
                      n_symbols=n_symbols)

"""Independent references: scanpy's aggregate and direct in-memory computations."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp


def scanpy_sums(adata: ad.AnnData, by: list[str], sep: str = "|") -> pd.DataFrame:
    """Per-group count sums from ``sc.get.aggregate``, rows named like cytoatlas' obs names."""
    agg = sc.get.aggregate(adata, by=by, func="sum")
    names = agg.obs[by].astype(str).agg(sep.join, axis=1) if len(by) > 1 else agg.obs[by[0]].astype(str)
    return pd.DataFrame(np.asarray(agg.layers["sum"]), index=names.values, columns=adata.var_names)


def group_sizes(adata: ad.AnnData, by: list[str], sep: str = "|") -> pd.Series:
    key = adata.obs[by].astype(str).agg(sep.join, axis=1) if len(by) > 1 else adata.obs[by[0]].astype(str)
    return key.value_counts()


def single_cell_stats(adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 1) per gene of single-cell log1p CPM, computed in memory."""
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    lib = np.asarray(x.sum(axis=1)).ravel()
    x = sp.diags(np.where(lib > 0, 1e6 / np.where(lib > 0, lib, 1), 0)) @ x
    x.data = np.log1p(x.data)
    dense = x.toarray()
    return dense.mean(axis=0), dense.std(axis=0, ddof=1)


def log1p_cpm(counts: np.ndarray) -> np.ndarray:
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e6)

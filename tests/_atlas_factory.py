"""Tiny atlases for tests: a seeded counts matrix written to `.h5ad` in any of the storage forms cytoatlas reads
(or must refuse), and helpers to build configs, registries and read results back."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas import output_paths
from cytoatlas.registry import AtlasConfig, atlas_from_mapping

# storage forms that hold the same valid counts
VALID_STORAGES = ("csr_gzip", "csr_lzf", "csr", "dense", "layer", "raw")
# storage forms that must be refused
BAD_STORAGES = ("csc", "float", "negative")


@dataclass
class TinyAtlas:
    """What was written: the path, the integer counts (cells x genes) and the obs frame."""

    path: Path
    counts: np.ndarray
    obs: pd.DataFrame
    var_names: list[str]


def make_counts(n_cells: int = 300, n_genes: int = 40, n_samples: int = 6, n_types: int = 3, seed: int = 0,
                n_nan_types: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Seeded integer counts and obs with categorical ``sample``, ``donor``, ``cell_type`` and ``lineage``.

    Every (sample, cell type) pair gets about ``n_cells / (n_samples * n_types)`` cells; the first
    ``n_nan_types`` cells (after shuffling) have a NaN ``cell_type``.
    """
    rng = np.random.default_rng(seed)
    sample = np.arange(n_cells) % n_samples
    ctype = (np.arange(n_cells) // n_samples) % n_types
    order = rng.permutation(n_cells)
    sample, ctype = sample[order], ctype[order]
    rates = rng.gamma(0.6, 1.5, size=(n_types, n_genes))
    depth = rng.uniform(0.5, 2.0, size=n_cells)
    counts = rng.poisson(rates[ctype] * depth[:, None]).astype(np.int64)
    type_names = np.array([f"T{k}" for k in range(n_types)], dtype=object)
    ct = type_names[ctype].copy()
    ct[:n_nan_types] = np.nan
    obs = pd.DataFrame(
        {
            "sample": pd.Categorical([f"S{s}" for s in sample]),
            "donor": pd.Categorical([f"D{s // 2}" for s in sample]),
            "cell_type": pd.Categorical(ct, categories=list(type_names)),
            "lineage": pd.Categorical(["A" if c == 0 else "B" for c in ctype]),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    return counts, obs


def write_atlas(path: str | Path, storage: str = "csr_gzip", *, seed: int = 0, n_cells: int = 300,
                n_genes: int = 40, n_samples: int = 6, n_types: int = 3, n_nan_types: int = 0) -> TinyAtlas:
    """Write a tiny atlas to ``path`` with its counts stored as ``storage``:

    ``csr_gzip``, ``csr_lzf``, ``csr`` (no compression), ``dense`` (X a dense integer array), ``layer``
    (counts in ``layers/counts``, X normalised floats), ``raw`` (counts in ``raw/X`` with ``raw/var``, X
    normalised floats), ``csc`` (X a CSC matrix), ``float`` (X float with non-integer values), ``negative``
    (X with a negative count).
    """
    path = Path(path)
    counts, obs = make_counts(n_cells, n_genes, n_samples, n_types, seed, n_nan_types)
    var_names = [f"G{g}" for g in range(n_genes)]
    var = pd.DataFrame({"gene_ids": [f"ENSG{g:05d}" for g in range(n_genes)]}, index=var_names)
    csr = sp.csr_matrix(counts)
    lib = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    normalised = sp.csr_matrix(np.log1p(counts / lib * 1e4).astype(np.float32))
    compression = {"csr_gzip": "gzip", "csr_lzf": "lzf"}.get(storage)

    if storage in ("csr_gzip", "csr_lzf", "csr"):
        adata = ad.AnnData(X=csr, obs=obs, var=var)
    elif storage == "dense":
        adata = ad.AnnData(X=counts.copy(), obs=obs, var=var)
    elif storage == "layer":
        adata = ad.AnnData(X=normalised, obs=obs, var=var, layers={"counts": csr})
    elif storage == "raw":
        adata = ad.AnnData(X=csr, obs=obs, var=var)
        adata.raw = adata
        adata.X = normalised
    elif storage == "csc":
        adata = ad.AnnData(X=sp.csc_matrix(counts), obs=obs, var=var)
    elif storage == "float":
        x = counts.astype(np.float32)
        x[5, :] += 0.5
        adata = ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)
    elif storage == "negative":
        x = counts.copy()
        x[7, 3] = -2
        adata = ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)
    else:
        raise ValueError(f"unknown storage {storage!r}")
    adata.write_h5ad(path, compression=compression)
    return TinyAtlas(path, counts, obs, var_names)


def counts_key(storage: str) -> str:
    """Where ``storage`` keeps the raw counts."""
    return {"layer": "layers/counts", "raw": "raw/X"}.get(storage, "X")


def tiny_config(path: str | Path, name: str = "tiny", **entry) -> AtlasConfig:
    """An :class:`AtlasConfig` for a tiny atlas: sample ``sample``, level ``L1`` = ``cell_type`` (override any
    registry key through ``entry``)."""
    mapping = {"h5ad": str(Path(path).resolve()), "sample_col": "sample", "levels": {"L1": "cell_type"}}
    mapping.update(entry)
    return atlas_from_mapping(name, mapping)


def write_registry(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.write_text(textwrap.dedent(text))
    return path


def read_level(out: str | Path, atlas: str, level: str) -> dict[str, ad.AnnData]:
    """The level's existing output files, read into memory, by kind."""
    return {k: ad.read_h5ad(p) for k, p in output_paths(out, atlas, level).items() if p.exists()}


def dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def file_ids(paths) -> dict[Path, tuple[int, int]]:
    """(inode, mtime_ns) of each path: changes whenever a file is rewritten (writes replace the file)."""
    return {Path(p): (Path(p).stat().st_ino, Path(p).stat().st_mtime_ns) for p in paths}


def groupby_sum(counts: np.ndarray, keys: np.ndarray) -> dict:
    """Sum of count rows per key (cells with a missing key left out)."""
    out = {}
    for k in pd.unique(keys):
        if isinstance(k, float) and np.isnan(k):
            continue
        out[k] = counts[keys == k].sum(axis=0)
    return out

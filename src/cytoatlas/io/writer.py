"""Atomic `.h5ad` writing, filled column block by column block.

A sample x cell type file of CIMA at L4 is ~30 k rows x 36 k genes per layer; it is produced gene block by gene
block and never held whole. The file is written under a temporary name in the target directory and renamed
into place only when complete, so a crash never leaves a half file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata.io import write_elem


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_h5ad_columns(
    path: str | os.PathLike,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    uns: Mapping,
    dtypes: Mapping[str, np.dtype],
    blocks: Iterable[tuple[slice, Mapping[str, np.ndarray]]],
) -> Path:
    """Write an AnnData file whose dense matrices arrive as column blocks.

    Parameters
    ----------
    path
        Target file; replaced atomically.
    obs, var, uns
        AnnData annotations, written with anndata's own element writer.
    dtypes
        ``{"X": dtype, "<layer>": dtype, ...}``: the dense matrices to create, each ``len(obs) x len(var)``.
    blocks
        ``(gene_slice, {name: array})`` pairs covering every column of every matrix in ``dtypes``.
    """
    shape = (len(obs), len(var))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
            write_elem(f, "obs", obs)
            write_elem(f, "var", var)
            write_elem(f, "uns", dict(uns))
            for group in ("layers", "obsm", "varm", "obsp", "varp"):
                write_elem(f, group, {})
            matrices = {}
            for name, dtype in dtypes.items():
                key = name if name == "X" else f"layers/{name}"
                chunks = (max(1, min(shape[0], 256)), max(1, min(shape[1], 1024))) if all(shape) else None
                ds = f.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks)
                ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "array", "0.2.0"
                matrices[name] = ds
            for cols, arrays in blocks:
                for name, values in arrays.items():
                    matrices[name][:, cols] = values
        return Path(path)

"""An AnnData held in memory read as the streaming steps read an `.h5ad`: obs columns, var and the counts in row
blocks.

The file path and the in-memory path of a step then run the same code: :class:`FrameObs` answers as
:class:`~cytoatlas.io.h5ad.ObsReader` does, :class:`MatrixBlocks` as :class:`~cytoatlas.io.h5ad.CountsMatrix`,
and :func:`frame_var` builds the gene table :func:`~cytoatlas.io.h5ad.read_var` builds, from the same values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import (
    CountsMatrix,
    CSRBlock,
    Labels,
    ObsReader,
    _label_strings,
    gene_table,
    open_counts,
    open_h5ad,
    read_strings,
    read_var,
)

IN_MEMORY = "AnnData in memory"


class FrameObs(ObsReader):
    """The columns of an obs :class:`pandas.DataFrame` as :class:`~cytoatlas.io.h5ad.ObsReader` gives a file's.

    Labels are what the file written from the same frame gives: a categorical keeps its categories and codes,
    any other column is factorised with sorted categories (anndata stores string columns as such categoricals).
    """

    def __init__(self, obs: pd.DataFrame, name: str = IN_MEMORY):
        self._frame = obs
        self.filename = name
        self.columns = [str(c) for c in obs.columns]

    def labels(self, name: str) -> Labels:
        """The column ``name`` as labels (categories and codes)."""
        self.require([name])
        column = self._frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            return Labels(column.cat.codes.to_numpy().astype(np.int32),
                          _label_strings(np.asarray(column.cat.categories)))
        return Labels.from_values(column.to_numpy())

    def values(self, name: str):
        """Column ``name`` with its dtype, as :func:`~cytoatlas.io.h5ad.read_column` reads a file's."""
        self.require([name])
        column = self._frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or not isinstance(column.dtype, np.dtype):
            return column.array
        values = column.to_numpy()
        return values.astype(object) if values.dtype.kind in "SU" else values


class MatrixBlocks:
    """A counts matrix in memory (CSR, CSC or dense) in row blocks, as :class:`~cytoatlas.io.h5ad.CountsMatrix`
    reads a file's. A CSC matrix is converted to CSR once (a copy: row blocks of CSC cost a sweep of all its
    values each)."""

    def __init__(self, matrix, key: str = "X", name: str = IN_MEMORY):
        if sp.issparse(matrix):
            self.dense = False
            self._m = matrix if matrix.format == "csr" else sp.csr_matrix(matrix)
        elif isinstance(matrix, np.ndarray) and matrix.ndim == 2:
            self.dense = True
            self._m = matrix
        else:
            kind = type(matrix).__name__
            raise CytoatlasError(f"{name}: {key} is a {kind}; counts must be a scipy sparse matrix or a 2-D numpy "
                                 "array (load a backed or dask matrix into memory first, e.g. adata.to_memory())")
        self.key, self.filename = key, name
        self.shape = tuple(int(s) for s in self._m.shape)
        self.dtype = self._m.dtype

    def close(self) -> None:
        """Nothing to stop (the interface of :class:`~cytoatlas.io.h5ad.CountsMatrix`)."""

    def __enter__(self) -> MatrixBlocks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def block(self, start: int, stop: int, buffers=None) -> CSRBlock:
        """Rows ``start:stop`` as CSR arrays (views of the matrix' own where it is CSR)."""
        if self.dense:
            m = sp.csr_matrix(self._m[start:stop])
            return CSRBlock(start, stop, m.data, m.indices, m.indptr)
        ptr = self._m.indptr[start: stop + 1]
        lo, hi = int(ptr[0]), int(ptr[-1])
        return CSRBlock(start, stop, self._m.data[lo:hi], self._m.indices[lo:hi], ptr - ptr[0])

    def blocks(self, batch_size: int, start: int = 0, stop: int | None = None, first: int | None = None,
               max_values: int | None = None) -> Iterator[CSRBlock]:
        """Row blocks of ``batch_size`` rows (``first`` rows in the first one if given)."""
        stop = self.shape[0] if stop is None else stop
        lo = start
        while lo < stop:
            hi = min(lo + (first if lo == start and first else batch_size), stop)
            yield self.block(lo, hi)
            lo = hi


def counts_of(adata, counts: str):
    """The matrix and var frame of ``counts`` (``X``, ``layers/NAME`` or ``raw/X``) of an AnnData."""
    if counts == "X":
        return adata.X, adata.var
    if counts.startswith("layers/") and counts[len("layers/"):] in adata.layers:
        return adata.layers[counts[len("layers/"):]], adata.var
    if counts == "raw/X" and adata.raw is not None:
        return adata.raw.X, adata.raw.var
    have = ["X", *(f"layers/{k}" for k in adata.layers), *(["raw/X"] if adata.raw is not None else [])]
    raise CytoatlasError(f"{IN_MEMORY}: no counts matrix {counts!r}; available: {', '.join(have)}")


def frame_var(var: pd.DataFrame, gene_symbols: str | None, name: str = IN_MEMORY, where: str = "var"
              ) -> pd.DataFrame:
    """The gene table of :func:`~cytoatlas.io.h5ad.read_var` from a var frame: index the unique symbols, columns
    ``gene_id`` and ``gene_symbol``."""
    ids = np.asarray(var.index.astype(str), dtype=object)
    symbols = None
    if gene_symbols is not None:
        if gene_symbols not in var.columns:
            raise CytoatlasError(f"{name}: {where} has no column {gene_symbols!r}; available: "
                                 f"{', '.join(map(str, var.columns))}")
        lab = FrameObs(var, name).labels(gene_symbols)
        symbols = np.where(lab.codes >= 0, lab.categories[np.maximum(lab.codes, 0)], "")
    return gene_table(ids, symbols, name, where)


@dataclass
class Source:
    """What a step reads of an AnnData: its obs columns, its counts in row blocks, its gene table, its cells'
    names and its obsm (a mapping of arrays, or the file's HDF5 group)."""

    obs: ObsReader
    counts: MatrixBlocks | CountsMatrix
    var: pd.DataFrame
    cell_names: Callable[[], np.ndarray]
    obsm: Mapping
    name: str


@contextlib.contextmanager
def adata_source(adata, counts: str, gene_symbols: str | None, threads: int = 1) -> Iterator[Source]:
    """The :class:`Source` of an AnnData: read from its file when it is backed (as the file path reads it), from its
    frames and matrices otherwise."""
    if getattr(adata, "isbacked", False):
        with open_h5ad(adata.filename) as f, open_counts(f, counts, threads) as matrix:
            index = f["obs"].attrs.get("_index", "_index")
            index = index.decode() if isinstance(index, bytes) else index
            obsm = f.get("obsm")
            yield Source(ObsReader(f), matrix, read_var(f, counts, gene_symbols),
                         lambda: read_strings(f["obs"][index], index), obsm if isinstance(obsm, h5py.Group) else {},
                         str(adata.filename))
        return
    matrix, var = counts_of(adata, counts)
    where = "raw/var" if counts == "raw/X" else "var"
    with MatrixBlocks(matrix, counts) as blocks:
        yield Source(FrameObs(adata.obs), blocks, frame_var(var, gene_symbols, where=where),
                     lambda: np.asarray(adata.obs_names.astype(str), dtype=object), adata.obsm, IN_MEMORY)


def as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as an ``.h5ad`` file gives it back: written and read by anndata's own element IO, in memory.

    An obs or var assembled in memory then equals the file's, index and column dtypes included, whatever the
    installed pandas reads strings as (object in pandas 2, its string dtype in pandas 3). A frame anndata cannot
    write (which the file path could not write either) is returned as it is.
    """
    import io

    from anndata.io import read_elem, write_elem

    try:
        with h5py.File(io.BytesIO(), "w") as f:
            write_elem(f, "frame", frame)
            return read_elem(f["frame"])
    except (TypeError, ValueError, NotImplementedError):
        return frame

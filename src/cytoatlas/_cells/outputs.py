"""The per-cell activity file: an AnnData of kept cells x signatures, filled row block by row block.

6.5 M cells x 1,170 SecAct signatures is 30 GB per layer, so the matrices are never held: each is an HDF5
dataset chunked by rows and compressed, filled as the pass goes, in file order. The file is built under a work
name (a temporary one, or for a resumable run the layout's partial name) and moved into place when whole.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cytoatlas.io import durable

# about 1 MB of float32 per chunk; lzf keeps up with the pass (gzip level 1 took ~3x the pass' time on SecAct)
CHUNK_BYTES = 1 << 20
COMPRESSION = "lzf"
MATRICES = ("X", "beta", "pvalue")  # X is the exact z-score; the others are optional layers


def chunk_rows(n_rows: int, n_cols: int) -> int:
    return max(1, min(max(n_rows, 1), CHUNK_BYTES // (4 * max(n_cols, 1))))


class CellsWriter:
    """An activity file under construction at ``work`` (moved to ``path`` by :meth:`commit`).

    Parameters
    ----------
    path, work
        The target, and the name it is built under.
    obs, var, uns
        Annotations (written at once); ``obs`` has one row per kept cell, ``var`` one per signature.
    layers
        The matrices besides X to write (``beta``, ``pvalue``).
    reopen
        Continue a file left at ``work`` by an interrupted run (its annotations are already there).
    """

    def __init__(self, path: str | os.PathLike, work: str | os.PathLike, obs: pd.DataFrame | None,
                 var: pd.DataFrame | None, uns: Mapping | None, layers: Sequence[str], n_rows: int, n_cols: int,
                 reopen: bool = False):
        self.path, self.work = Path(path), Path(work)
        self.names = ["X", *layers]
        if reopen:
            self._file = h5py.File(self.work, "r+")
            self._matrices = {n: self._file[n if n == "X" else f"layers/{n}"] for n in self.names}
            return
        from anndata.io import write_elem  # ~1 s to import: only a writing run needs it

        self.work.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.work, "w")
        try:
            f = self._file
            f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
            write_elem(f, "obs", obs)
            write_elem(f, "var", var)
            write_elem(f, "uns", dict(uns))
            layers_group = f.create_group("layers")
            layers_group.attrs["encoding-type"], layers_group.attrs["encoding-version"] = "dict", "0.1.0"
            chunks = (chunk_rows(n_rows, n_cols), max(n_cols, 1)) if n_rows and n_cols else None
            self._matrices = {}
            for name in self.names:
                ds = f.create_dataset(name if name == "X" else f"layers/{name}", shape=(n_rows, n_cols),
                                      dtype=np.float32, chunks=chunks, compression=COMPRESSION if chunks else None,
                                      shuffle=bool(chunks))
                ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "array", "0.2.0"
                self._matrices[name] = ds
        except BaseException:
            self.abort()
            raise

    def write(self, lo: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Rows ``lo : lo + len`` of each named matrix."""
        for name, values in arrays.items():
            self._matrices[name][lo: lo + len(values)] = values

    def flush(self) -> None:
        """Everything written so far on disk (before a checkpoint says it is)."""
        self._file.flush()
        durable.fsync_file(self.work)

    def commit(self) -> Path:
        """Close the file and move it into place, durably."""
        self._file.close()
        return durable.replace_durably(self.work, self.path)

    def close(self) -> None:
        """Close, leaving the work file (an interrupted resumable run continues it)."""
        with contextlib.suppress(Exception):
            self._file.close()

    def abort(self) -> None:
        """Close and delete the work file; the target is left as it was."""
        self.close()
        self.work.unlink(missing_ok=True)


def cells_obs(names: np.ndarray, columns: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The kept cells' obs: ``columns`` maps a column name to ``(codes, categories)`` (code -1 = NaN)."""
    data = {name: pd.Categorical.from_codes(codes.astype(np.int32), categories=pd.Index(cats.astype(str)))
            for name, (codes, cats) in columns.items()}
    return pd.DataFrame(data, index=pd.Index(names.astype(str), dtype=object))


def cells_var(model) -> pd.DataFrame:
    """One row per output signature, with its regression group's name."""
    groups = np.array(model.sig.group_names, dtype=object)[model.columns]
    return pd.DataFrame({"group": groups}, index=pd.Index(model.names.astype(str), dtype=object))

"""Reading one results file into the store: its small tables (groups, genes, signatures) as data frames and its
matrix as a Parquet part, written column band by column band so memory does not grow with the file.

A part holds one row per (file row, gene or signature): integer indices into the ``groups`` / ``genes`` /
``signatures`` tables of its source (``sources.part`` names the part), then the values. Integer indices and no
repeated strings keep writing fast (~6 M values/s) and the parts small;
rows are in column-band order (gene- or signature-major), so a filter on one gene or signature reads only the
row groups that hold it (Parquet min/max statistics).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import open_h5ad, read_strings

BAND = 1024  # columns per block: the writers' HDF5 chunks are (256, 1024), so a band reads whole chunks

ACTIVITY_LAYERS = ("z", "beta", "se", "pvalue", "z_ci_low", "z_ci_high", "z_boot_mean", "z_boot_sd")
# step of the source file -> columns of its part (pseudobulk files give the expression parts)
PART_COLUMNS = {
    "activity": '"row" INTEGER, sig INTEGER, ' + ", ".join(f"{c} DOUBLE" for c in ACTIVITY_LAYERS)
                + ", matched BOOLEAN",
    "pseudobulk": '"row" INTEGER, gene INTEGER, value FLOAT, zscore FLOAT',
}


@dataclass
class FileContent:
    """What the store keeps of one pseudobulk or activity file besides its matrix."""

    atlas: str
    level: str
    kind: str
    groups: pd.DataFrame                      # row, name, cell_type, sample, donor, n_cells, n_boot
    columns: pd.DataFrame                     # genes (idx, gene, gene_id) or signatures (idx, signature, ...)
    shape: tuple[int, int]
    matrices: dict[str, str] = field(default_factory=dict)  # part column -> HDF5 path


def _uns_string(f: h5py.File, key: str) -> str:
    node = f.get(key)
    if not isinstance(node, h5py.Dataset):
        return ""
    v = node[()]
    return v.decode() if isinstance(v, bytes) else str(v)


def _obs_column(obs: h5py.Group, name: str, n: int, default=None) -> np.ndarray:
    if name not in obs:
        return np.full(n, default, dtype=object)
    return read_strings(obs[name], name)


def _groups(f: h5py.File, n: int) -> pd.DataFrame:
    obs = f["obs"]
    index = obs.attrs.get("_index", "_index")
    out = pd.DataFrame({"row": np.arange(n, dtype=np.int32), "name": read_strings(obs[index], index)})
    for col in ("cell_type", "sample", "donor"):
        values = _obs_column(obs, col, n)
        out[col] = pd.Series(values, dtype=object).replace("", None) if col != "cell_type" else values
    for col in ("n_cells", "n_boot"):
        out[col] = pd.array(obs[col][()], dtype="Int64") if isinstance(obs.get(col), h5py.Dataset) else pd.NA
    return out


def read_file(path: Path, step: str) -> FileContent:
    """The annotations of a pseudobulk (``step='pseudobulk'``) or activity (``'activity'``) output."""
    with open_h5ad(path) as f:
        try:
            if step == "pseudobulk":
                atlas, level, kind = (_uns_string(f, f"uns/{k}") for k in ("atlas", "level", "kind"))
            else:
                atlas, level, kind = (_uns_string(f, f"uns/pseudobulk/{k}") for k in ("atlas", "level", "kind"))
            x = f["X"]
            if not isinstance(x, h5py.Dataset) or x.ndim != 2:
                raise CytoatlasError(f"{path}: X is not a dense matrix (not a cytoatlas {step} output?)")
            n, k = x.shape
            groups = _groups(f, n)
            var = f["var"]
            index = var.attrs.get("_index", "_index")
            names = read_strings(var[index], index)
            if step == "pseudobulk":
                gene_id = read_strings(var["gene_id"], "gene_id") if "gene_id" in var else names
                columns = pd.DataFrame({"idx": np.arange(k, dtype=np.int32), "gene": names, "gene_id": gene_id})
                matrices = {"value": "X", "zscore": "layers/zscore"}
            else:
                columns = pd.DataFrame({"idx": np.arange(k, dtype=np.int32), "signature": names})
                for col in ("group", "cell_type", "cytokine"):
                    columns[col] = read_strings(var[col], col) if col in var else None
                matrices = {"z": "X", **{c: f"layers/{c}" for c in ACTIVITY_LAYERS[1:]}, "matched": "layers/matched"}
            matrices = {c: p for c, p in matrices.items() if p in f}
        except (KeyError, OSError, ValueError) as e:
            raise CytoatlasError(f"{path}: unreadable {step} output: {e}") from None
    if not atlas or not level or kind not in ("celltype", "samples"):
        raise CytoatlasError(f"{path}: no atlas / level / kind in uns (atlas={atlas!r}, level={level!r}, "
                             f"kind={kind!r}): not a cytoatlas {step} output")
    if len(names) != k:
        raise CytoatlasError(f"{path}: X has {k} columns but var has {len(names)} names")
    return FileContent(atlas, level, kind, groups, columns, (n, k), matrices)


def bands(path: Path, content: FileContent, step: str) -> Iterator[pd.DataFrame]:
    """The file's matrices as long blocks (row, column index, one column per matrix), one column band each."""
    n, k = content.shape
    names = (*ACTIVITY_LAYERS, "matched") if step == "activity" else ("value", "zscore")
    with open_h5ad(path) as f:
        for j0 in range(0, k, BAND):
            j1 = min(k, j0 + BAND)
            block = {"row": np.tile(np.arange(n, dtype=np.int32), j1 - j0),
                     "col": np.repeat(np.arange(j0, j1, dtype=np.int32), n)}
            for name in names:
                key = content.matrices.get(name)
                if key is None:
                    size = n * (j1 - j0)
                    block[name] = np.full(size, np.nan) if name != "matched" else \
                        pd.arrays.BooleanArray(np.zeros(size, bool), np.ones(size, bool))  # all NULL
                    continue
                try:
                    block[name] = np.ascontiguousarray(f[key][:, j0:j1].T).ravel()
                except OSError as e:
                    raise CytoatlasError(f"{path}: {key} cannot be read (corrupt or truncated?): {e}") from None
            yield pd.DataFrame(block)


def write_part(con, path: Path, step: str, content: FileContent, source: Path) -> int:
    """Write the part of ``source`` to ``path`` (under a temporary name, renamed when complete); its row count.

    ``con`` is a scratch DuckDB connection (in memory, spilling to disk past its memory limit).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    con.execute("DROP TABLE IF EXISTS part")
    con.execute(f"CREATE TABLE part ({PART_COLUMNS[step]})")
    try:
        for block in bands(source, content, step):
            con.register("block", block)
            con.execute("INSERT INTO part SELECT * FROM block")
            con.unregister("block")
        con.execute(f"COPY part TO '{sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        con.execute("DROP TABLE IF EXISTS part")
    return content.shape[0] * content.shape[1]


def sql_path(path: Path) -> str:
    """A path of the store's own making as a SQL string literal (COPY takes no parameters)."""
    text = str(path)
    if "'" in text:
        raise CytoatlasError(f"the store path {text!r} contains a quote; choose another --db")
    return text

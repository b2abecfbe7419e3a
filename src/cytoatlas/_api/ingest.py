"""Reading one results file into the store: its small tables (groups, genes, signatures) as data frames and its
matrix as a Parquet part, written column band by column band so memory does not grow with the file.

A part holds one row per (file row, gene or signature): integer indices into the ``groups`` / ``genes`` /
``signatures`` tables of its source (``sources.part`` names the part), then the values. Integer indices and no
repeated strings keep the parts small; rows are in column-band order (gene- or signature-major), so a filter on
one gene or signature reads only the row groups that hold it (Parquet min/max statistics).

Parts are written from the numpy bands by :class:`cytoatlas.io.parquet.ParquetWriter`, with no table in between
(an expression part holds hundreds of millions of rows at an atlas' finest sample level: through a DuckDB table
that spilled to disk, writing them took most of an index run).

A part is a directory of files, each holding a run of whole columns (``g{first column:06d}.parquet``) in row
groups of whole columns: a one-gene or one-signature request reads the one file that holds it and decodes one
small row group. Files hold at most :data:`FILE_ROW_GROUPS` row groups, because DuckDB's scan of a file costs time
for every row group of it, even those its statistics skip (a one-signature read of a CIMA-sized SecAct part of
1,170 row groups: 17 ms; of one of 43 row groups: 2.4 ms). Activity row groups are small (~16 k rows: a request
reads one signature of a sample level's ~15 k rows); expression row groups stay ~131 k rows, because the integer
``row`` column, the same run of numbers for every gene, compresses well only over several genes (in ~16 k-row
groups a CIMA-sized store grew from 10.1 to 13.1 GB and took twice as long to write). :func:`part_files` picks
the files of some columns; a store written before parts were directories (one file) still reads.
"""

from __future__ import annotations

import bisect
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import fsync_dir, fsync_file, temporary_path
from cytoatlas.io.h5ad import open_h5ad
from cytoatlas.io.layout import GROUP_KINDS
from cytoatlas.io.parquet import ParquetWriter
from cytoatlas.io.results import read_header

BAND = 1024  # columns per block, at most (rounded down to whole chunk columns)

ACTIVITY_LAYERS = ("z", "beta", "se", "pvalue", "z_ci_low", "z_ci_high", "z_boot_mean", "z_boot_sd")
# step of the source file -> columns of its part, for the Parquet writer (floats and booleans nullable: NaN is
# NULL, as DuckDB stores a data frame's NaN)
WRITER_COLUMNS = {
    "activity": {"row": "int32", "sig": "int32", **dict.fromkeys(ACTIVITY_LAYERS, "float64"), "matched": "bool"},
    "pseudobulk": {"row": "int32", "gene": "int32", "value": "float32", "zscore": "float32"},
}
# rows per row group, rounded down to whole columns (genes, signatures) so that a one-column filter reads one row
# group (see the module's docstring for the two sizes)
ROW_GROUP_ROWS = {"activity": 16_384, "pseudobulk": 131_072}
FILE_ROW_GROUPS = 64  # full row groups per file of a part, at most
BAND_FILE = "g{:06d}.parquet"  # a part's file of the columns starting at this index
# columns stored without zstd: floats it shrinks by less than a fifth (CIMA-shaped: zscore 0.83 of its size, z
# 0.83, beta 0.84, pvalue 0.81 at level 1), for about a third of an index run's CPU time; pseudobulk values (0.72)
# and standard errors (0.12) stay compressed. See benchmarks/README.md (issue 25).
UNCOMPRESSED = {"activity": ("z", "beta", "pvalue"), "pseudobulk": ("zscore",)}
TRANSPOSE_ROWS = 64  # rows per block of the transpose into column-band order (a whole-band .T is ~3x slower)


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


def _groups(obs: pd.DataFrame) -> pd.DataFrame:
    n = len(obs)
    out = pd.DataFrame({"row": np.arange(n, dtype=np.int32), "name": obs.index.to_numpy(dtype=object).astype(str)})
    for col in ("cell_type", "sample", "donor"):
        values = obs[col].astype(str).where(obs[col].notna(), "").to_numpy(dtype=object) if col in obs else \
            np.full(n, None, dtype=object)
        out[col] = pd.Series(values, dtype=object).replace("", None) if col != "cell_type" else values
    for col in ("n_cells", "n_boot"):
        out[col] = pd.array(obs[col].to_numpy(), dtype="Int64") if col in obs else pd.NA
    return out


def read_file(path: Path, step: str) -> FileContent:
    """The annotations of a pseudobulk (``step='pseudobulk'``) or activity (``'activity'``) output."""
    head = read_header(path, step)
    if not head.atlas or not head.level or head.kind not in GROUP_KINDS:
        raise CytoatlasError(f"{path}: no atlas / level / kind in uns (atlas={head.atlas!r}, level={head.level!r}, "
                             f"kind={head.kind!r}): not a cytoatlas {step} output")
    k = head.shape[1]
    names = head.var.index.to_numpy(dtype=object)
    if step == "pseudobulk":
        gene_id = head.var["gene_id"].to_numpy() if "gene_id" in head.var else names
        columns = pd.DataFrame({"idx": np.arange(k, dtype=np.int32), "gene": names, "gene_id": gene_id})
        matrices = {"value": "X", "zscore": "zscore"}
    else:
        columns = pd.DataFrame({"idx": np.arange(k, dtype=np.int32), "signature": names})
        for col in ("group", "cell_type", "cytokine"):
            columns[col] = head.var[col].to_numpy() if col in head.var else None
        matrices = {"z": "X", **{c: c for c in ACTIVITY_LAYERS[1:]}, "matched": "matched"}
    matrices = {c: head.matrices[m] for c, m in matrices.items() if m in head.matrices}
    return FileContent(head.atlas, head.level, head.kind, _groups(head.obs), columns, head.shape, matrices)


def bands(path: Path, content: FileContent, step: str) -> Iterator[dict[str, np.ndarray | None]]:
    """The file's matrices as long blocks (row, column index, one column per matrix; None for a matrix the file
    does not have), one column band each."""
    n, k = content.shape
    names = (*ACTIVITY_LAYERS, "matched") if step == "activity" else ("value", "zscore")
    with open_h5ad(path) as f:
        # bands of whole chunk columns, so that no chunk is read for two bands
        width = f["X"].chunks[1] if f["X"].chunks else BAND
        band = max(width, BAND // width * width)
        rows = np.tile(np.arange(n, dtype=np.int32), min(band, k))  # the same for every full band: made once
        for j0 in range(0, k, band):
            j1 = min(k, j0 + band)
            block = {"row": rows[:n * (j1 - j0)], "col": np.repeat(np.arange(j0, j1, dtype=np.int32), n)}
            for name in names:
                key = content.matrices.get(name)
                if key is None:
                    block[name] = None
                    continue
                try:
                    block[name] = _transposed(f[key][:, j0:j1]).ravel()
                except OSError as e:
                    raise CytoatlasError(f"{path}: {key} cannot be read (corrupt or truncated?): {e}") from None
            yield block


def _transposed(a: np.ndarray) -> np.ndarray:
    """``a.T`` as a C-contiguous array, copied a block of rows at a time (each block's columns stay in cache)."""
    out = np.empty((a.shape[1], a.shape[0]), dtype=a.dtype)
    for r0 in range(0, a.shape[0], TRANSPOSE_ROWS):
        out[:, r0:r0 + TRANSPOSE_ROWS] = a[r0:r0 + TRANSPOSE_ROWS].T
    return out


def _columns_per_group(step: str, n: int) -> int:
    """Whole columns (of ``n`` rows each) per row group of a ``step``'s part."""
    return max(1, ROW_GROUP_ROWS[step] // max(1, n))


def _writer(path: Path, step: str, n: int) -> ParquetWriter:
    rows = max(1, n) * _columns_per_group(step, n)
    return ParquetWriter(path, WRITER_COLUMNS[step], row_group_size=rows, uncompressed=UNCOMPRESSED[step])


def write_part(path: Path, step: str, content: FileContent, source: Path) -> int:
    """Write the part of ``source``: the directory ``path`` of its files, built under a temporary name and renamed
    into place when complete; its row count. A file is closed (its pages written) while the next one is filled."""
    n, k = content.shape
    per_file = _columns_per_group(step, n) * FILE_ROW_GROUPS  # columns per file
    column = "gene" if step == "pseudobulk" else "sig"
    tmp = temporary_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writers: list[tuple[int, ParquetWriter]] = []  # (first column, writer) of the files still open
    try:
        for block in bands(source, content, step):
            cols = block.pop("col")
            j0, j1 = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 0)
            for f0 in range(j0 - j0 % per_file, j1, per_file):  # the block's columns, file by file
                a, b = max(j0, f0), min(j1, f0 + per_file)
                if not writers or writers[-1][0] != f0:
                    writers.append((f0, _writer(tmp / BAND_FILE.format(f0), step, n)))
                piece = {name: None if v is None else v[(a - j0) * n:(b - j0) * n] for name, v in block.items()}
                writers[-1][1].write({**piece, column: cols[(a - j0) * n:(b - j0) * n]})
                while len(writers) > 1:
                    writers.pop(0)[1].close()
        if writers:
            writers.pop()[1].close()
        else:  # no columns: one empty file, so that the part reads as no rows
            _writer(tmp / BAND_FILE.format(0), step, n).close()
        for f in os.scandir(tmp):
            fsync_file(f.path)
        fsync_dir(tmp)
        if path.exists():  # --force: the part of the same checksum written again
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        for _, w in writers:
            w.close(abort=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n * k


def part_files(part: str | os.PathLike, idx: list[int]) -> list[str]:
    """The files of a part that hold the columns (genes, signatures) ``idx`` (a part written as one file: the
    file). A part that has vanished gives a path that does not exist, for DuckDB to report."""
    part = Path(part)
    try:
        starts = sorted(int(e.name[1:-8]) for e in os.scandir(part) if e.name.startswith("g")
                        and e.name.endswith(".parquet"))
    except (NotADirectoryError, FileNotFoundError):
        return [str(part)]
    if not starts:
        return [str(part / BAND_FILE.format(0))]
    picked = sorted({starts[max(0, bisect.bisect_right(starts, i) - 1)] for i in idx})
    return [str(part / BAND_FILE.format(j)) for j in picked]


def sql_path(path: Path) -> str:
    """A path of the store's own making as a SQL string literal (COPY takes no parameters)."""
    text = str(path)
    if "'" in text:
        raise CytoatlasError(f"the store path {text!r} contains a quote; choose another --db")
    return text

"""Readers of the project's own result files: one per file type, shared by every step that reads them.

- :func:`read_header`: what any pseudobulk or activity output says about itself (atlas, level, kind, signature
  set, obs, the var columns that name its columns, shape, which matrices it holds), without its matrices.
- :func:`read_pseudobulk`: a pseudobulk file's log1p CPM of the genes asked for (activity, validation).
- :func:`read_activity`: an activity file's z-scores and ``matched`` layer (validation).

Matrices are read in row blocks aligned to the HDF5 chunks (or whole, when they fit :data:`READ_BUDGET`), so
no chunk is read twice: a 2,000-row file written in 256-row chunks costs one read of each chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cytoatlas.cluster import usable_cores
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.chunks import read_matrix_direct
from cytoatlas.io.h5ad import open_h5ad, read_dataframe, read_strings
from cytoatlas.io.layout import PSEUDOBULK_KINDS

# bytes of a matrix read at once (and of its one reused block buffer)
READ_BUDGET = 256 << 20

# the var columns that name an output's columns (a gene table can carry dozens of others)
_VAR_COLUMNS = {"pseudobulk": ("gene_symbol", "gene_id"), "activity": ("group", "cell_type", "cytokine")}


def _scalar_uns(group: h5py.Group | None) -> dict:
    out = {}
    for k, v in (group or {}).items():
        if isinstance(v, h5py.Dataset) and v.shape == ():
            x = v[()]
            out[k] = x.decode() if isinstance(x, bytes) else x.item() if isinstance(x, np.generic) else x
    return out


@dataclass
class ResultHeader:
    """A pseudobulk or activity output without its matrices.

    Attributes
    ----------
    path, step
        The file and what made it (``pseudobulk`` or ``activity``).
    atlas, level, kind
        The pseudobulk it is, or was made from (``kind``: celltype, samples or resampled).
    signature_set
        An activity file's set (``None`` for pseudobulk).
    separator
        The separator of composite labels, if any.
    obs
        Its rows' annotations.
    var
        Its column names (index) and the var columns that describe them (gene symbols and ids; signature
        groups and cell types).
    shape
        ``X``'s shape.
    matrices
        ``{name: HDF5 path}`` of the matrices present: ``X`` and layers.
    uns
        The scalar entries of ``uns`` (for activity files, those of ``uns/pseudobulk`` too, under their names).
    parameters
        The scalar entries of ``uns/parameters``: what the file was made with.
    """

    path: Path
    step: str
    atlas: str
    level: str
    kind: str
    signature_set: str | None
    separator: str | None
    obs: pd.DataFrame
    var: pd.DataFrame
    shape: tuple[int, int]
    matrices: dict[str, str] = field(default_factory=dict)
    uns: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)


def _length(node: h5py.Group | h5py.Dataset) -> int:
    """The length of an annotation column: a dataset, or a group (a categorical's codes, a nullable column's
    values: anndata >= 0.11 writes pandas 3's string columns and index that way)."""
    if isinstance(node, h5py.Dataset):
        return len(node)
    return len(node["codes"] if "codes" in node else node["values"])


def _header(f: h5py.File, path: Path, step: str | None, var_columns: tuple[str, ...] | None = None) -> ResultHeader:
    uns = _scalar_uns(f.get("uns"))
    pb_uns = _scalar_uns(f.get("uns/pseudobulk"))
    sig = f.get("uns/signature/name")
    if step is None:
        step = "activity" if pb_uns else "pseudobulk"
    what = uns if step == "pseudobulk" else pb_uns
    atlas, level, kind = (str(what.get(k, "")) for k in ("atlas", "level", "kind"))
    x = f.get("X")
    if not isinstance(x, h5py.Dataset) or x.ndim != 2 or kind not in PSEUDOBULK_KINDS:
        raise CytoatlasError(
            f"{path}: not a cytoatlas {step} file (expected a dense X and uns{'/pseudobulk' * (step != 'pseudobulk')}"
            f"['kind'] one of {', '.join(PSEUDOBULK_KINDS)}; written by `cytoatlas {step}`?)")
    try:
        obs = read_dataframe(f["obs"])
        var_group = f["var"]
        index = var_group.attrs.get("_index", "_index")
        wanted = [c for c in (_VAR_COLUMNS[step] if var_columns is None else var_columns) if c in var_group]
        n_var = _length(var_group[index])
        # the index (36 k strings for CIMA) is decoded by default, or when none of the columns asked for is there
        names = read_strings(var_group[index], "var index") \
            if var_columns is None or (var_columns and not wanted) else None
        var = pd.DataFrame({c: read_strings(var_group[c], c) for c in wanted},
                           index=pd.Index(names, dtype=object) if names is not None else pd.RangeIndex(n_var))
    except (KeyError, OSError, ValueError) as e:
        raise CytoatlasError(f"{path}: unreadable {step} annotations: {e}") from None
    if x.shape != (len(obs), len(var)):
        raise CytoatlasError(f"{path}: X has shape {x.shape}, but obs x var is {len(obs)} x {len(var)}")
    if step == "activity" and not isinstance(sig, h5py.Dataset):
        raise CytoatlasError(f"{path}: not a cytoatlas activity file (no uns['signature']['name'])")
    matrices = {"X": "X", **{k: f"layers/{k}" for k in f.get("layers", {})}}
    sep = (uns if step == "pseudobulk" else pb_uns).get("separator") or None
    signature_set = None if step == "pseudobulk" else sig.asstr()[()]
    return ResultHeader(path, step, atlas, level, kind, signature_set, sep, obs, var, x.shape, matrices,
                        {**pb_uns, **uns}, _scalar_uns(f.get("uns/parameters")))


def read_header(path: str | os.PathLike, step: str | None = None, var_columns: tuple[str, ...] | None = None
                ) -> ResultHeader:
    """The header of a pseudobulk or activity output (``step`` checks which it must be; default: either).

    ``var_columns``: the var columns to read (default: the index and those that describe the columns; ``()``:
    none, for a caller that needs only the shape and annotations of the rows).

    Raises
    ------
    CytoatlasError
        If the file is missing, unreadable or not such an output.
    """
    path = Path(path)
    with open_h5ad(path) as f:
        return _header(f, path, step, var_columns)


def read_rows(x: h5py.Dataset, columns: np.ndarray | None = None, *, dtype=None, transposed: bool = False,
              path: Path | None = None) -> np.ndarray:
    """Every row of a 2-D dataset, keeping ``columns`` (indices; default all): ``rows x columns``, or
    ``columns x rows`` with ``transposed`` (C-ordered either way). Read in row blocks aligned to the dataset's
    chunks, so that each chunk is read once."""
    n, k = x.shape
    width = len(columns) if columns is not None else k
    out = np.empty((width, n) if transposed else (n, width), dtype=dtype or x.dtype)
    if n == 0 or width == 0:
        return out
    chunk_rows = x.chunks[0] if x.chunks else 1
    step = max(chunk_rows, READ_BUDGET // max(1, k * x.dtype.itemsize) // chunk_rows * chunk_rows)
    try:
        # the outputs of this project are stored unfiltered: their chunks are read in parallel, outside HDF5;
        # four reads in flight even on two cores (the disk serves them concurrently: cold, ~20 % faster than two)
        if read_matrix_direct(x, columns, out, transposed, threads=max(4, usable_cores())):
            return out
        if columns is None and not transposed and out.dtype == x.dtype:
            x.read_direct(out)  # HDF5 reads each chunk once, straight into the result
            return out
        # one block buffer, reused: a fresh array per block costs more in page faults than the read itself
        block = np.empty((min(step, n), k), dtype=x.dtype)
        for start in range(0, n, step):
            stop = min(start + step, n)
            part = block[:stop - start]
            x.read_direct(part, np.s_[start:stop], np.s_[:stop - start])
            part = part if columns is None else part[:, columns]
            if transposed:
                out[:, start:stop] = part.T
            else:
                out[start:stop] = part
    except (OSError, ValueError) as e:  # ValueError: a chunk cut short by a truncated file
        raise CytoatlasError(f"{path or x.file.filename}: {x.name.lstrip('/')} cannot be read (corrupt or "
                             f"truncated?): {e}") from None
    return out


def unique_symbols(symbols: np.ndarray, means: np.ndarray | None) -> np.ndarray:
    """Indices keeping one gene per symbol, in var order.

    Rule for a symbol carried by several genes (e.g. two Ensembl ids): keep the gene with the highest
    atlas-level mean expression (``uns['atlas_stats']['mean']``), the first in var order on a tie, so every
    file of an atlas keeps the same gene. Empty symbols are dropped.
    """
    symbols = np.asarray(symbols, dtype=object)
    by = np.arange(len(symbols)) if means is None else \
        np.lexsort((np.arange(len(symbols)), -np.asarray(means, dtype=float)))  # highest mean first, then var order
    # the first of each symbol in that order (a hash table: sorting 36 k strings costs ~10x more)
    keep = by[~pd.Index(symbols[by]).duplicated(keep="first")]
    return np.sort(keep[symbols[keep] != ""])


@dataclass
class Pseudobulk:
    """The part of a pseudobulk file activity and validation need.

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


def read_pseudobulk(path: str | os.PathLike, genes: Iterable[str] | None = None) -> Pseudobulk:
    """Read a ``cytoatlas pseudobulk`` output's log1p CPM, keeping only ``genes`` (symbols) when given.

    Raises
    ------
    CytoatlasError
        If the file is missing, unreadable, or not a pseudobulk output (no ``uns['kind']`` or no dense X).
    """
    path = Path(path)
    with open_h5ad(path) as f:
        head = _header(f, path, "pseudobulk", var_columns=("gene_symbol",))
        symbols = head.var["gene_symbol"].to_numpy() if "gene_symbol" in head.var else head.var.index.to_numpy()
        stats = f.get("uns/atlas_stats/mean")
        means = stats[()] if isinstance(stats, h5py.Dataset) and stats.shape == (len(symbols),) else None
        keep = unique_symbols(symbols, means)
        n_symbols = len(keep)
        if genes is not None:
            wanted = set(genes)
            keep = keep[np.fromiter((s in wanted for s in symbols[keep]), bool, len(keep))]
        values = read_rows(f["X"], keep, transposed=True, path=path)
    return Pseudobulk(path=path, kind=head.kind, obs=head.obs, genes=symbols[keep], values=values, uns=head.uns,
                      n_symbols=n_symbols)


@dataclass
class Activity:
    """One activity file: rows (obs), signature names, z-scores (rows x signatures), matched cells (LinCytoSig)."""

    path: Path
    obs: pd.DataFrame
    names: np.ndarray
    z: np.ndarray
    matched: np.ndarray | None
    level: str
    signature_set: str
    separator: str | None


def read_activity(path: str | os.PathLike) -> Activity:
    """Read an activity file's obs, signature names, X (z, as float64) and the ``matched`` layer if any."""
    path = Path(path)
    with open_h5ad(path) as f:
        head = _header(f, path, "activity")
        z = read_rows(f["X"], dtype=np.float64, path=path)
        matched = read_rows(f["layers/matched"], dtype=bool, path=path) if "matched" in head.matrices else None
    if not head.level:
        raise CytoatlasError(f"{path}: not a readable cytoatlas activity file (no uns['pseudobulk']['level'])")
    return Activity(path, head.obs, head.var.index.to_numpy(str), z, matched, head.level, head.signature_set,
                    head.separator)


# --- the same records from AnnData objects held in memory (a notebook's results; ``cytoatlas.tl``) -------------


def _plain_uns(uns: object) -> dict:
    """The scalar entries of an AnnData ``uns`` mapping (as :func:`_scalar_uns` reads them from a file)."""
    out = {}
    for k, v in dict(uns or {}).items():
        if isinstance(v, (str, bytes, int, float, bool, np.generic)):
            out[k] = v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v
    return out


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def activity_of(adata, label: str = "in-memory activity") -> Activity:
    """An activity result held in memory (an AnnData as an activity file holds it: rows x signatures z in ``X``,
    ``uns["signature"]["name"]``, ``uns["pseudobulk"]`` with level and kind, an optional ``matched`` layer) as
    the :class:`Activity` that :func:`read_activity` reads from its file.

    Raises
    ------
    CytoatlasError
        The object does not say its signature set or level.
    """
    sig, pb = dict(adata.uns.get("signature") or {}), _plain_uns(adata.uns.get("pseudobulk"))
    if not sig.get("name") or not pb.get("level"):
        raise CytoatlasError(f"{label}: not an activity result (expected uns['signature']['name'] and "
                             "uns['pseudobulk']['level'], as `cytoatlas.activity` writes them)")
    matched = adata.layers.get("matched")
    return Activity(Path(label), adata.obs.copy(), np.asarray(adata.var_names, dtype=str),
                    _dense(adata.X).astype(np.float64), None if matched is None else _dense(matched).astype(bool),
                    str(pb["level"]), str(sig["name"]), pb.get("separator") or None)


def pseudobulk_of_anndata(adata, genes: Iterable[str] | None = None,
                          label: str = "in-memory pseudobulk") -> Pseudobulk:
    """A pseudobulk result held in memory (an AnnData as a pseudobulk file holds it: log1p CPM in ``X``, symbols
    in ``var["gene_symbol"]``, ``uns`` with atlas, level and kind) as the :class:`Pseudobulk` that
    :func:`read_pseudobulk` reads from its file, keeping only ``genes`` (symbols) when given; one gene per
    symbol by the same rule (:func:`unique_symbols`)."""
    uns = _plain_uns(adata.uns)
    if uns.get("kind") not in PSEUDOBULK_KINDS:
        raise CytoatlasError(f"{label}: not a pseudobulk result (expected uns['kind'] one of "
                             f"{', '.join(PSEUDOBULK_KINDS)}, as `cytoatlas.pseudobulk` writes it)")
    symbols = pd.Index(adata.var.get("gene_symbol", adata.var_names)).to_numpy().astype(object)
    stats = dict(adata.uns.get("atlas_stats") or {})
    means = np.asarray(stats["mean"]) if "mean" in stats and len(stats["mean"]) == len(symbols) else None
    keep = unique_symbols(symbols, means)
    n_symbols = len(keep)
    if genes is not None:
        wanted = set(genes)
        keep = keep[np.fromiter((s in wanted for s in symbols[keep]), bool, len(keep))]
    values = np.ascontiguousarray(_dense(adata.X[:, keep]).T)
    return Pseudobulk(Path(label), str(uns["kind"]), adata.obs.copy(), symbols[keep], values, uns, n_symbols)

"""Direct HDF5 access to `.h5ad` files: obs columns, var, and the counts matrix in row blocks.

anndata's ``read_h5ad(backed='r')`` materialises the whole obs frame before anything else can happen (4.6 min
for CIMA). Here a run reads only the handful of obs columns it needs, straight from their HDF5 datasets, so the
time to the first block does not depend on how wide obs is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.chunks import BufferPool, ChunkedArray


def open_h5ad(path: str | os.PathLike) -> h5py.File:
    """Open an `.h5ad` read-only, turning HDF5's errors into one readable line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CytoatlasError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CytoatlasError(f"{path}: not a readable HDF5/.h5ad file (corrupt or truncated?): {e}") from None


def _attr(node: h5py.HLObject, name: str, default=None):
    """An HDF5 attribute, ``str`` where h5py hands over bytes."""
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _decode(values: np.ndarray) -> np.ndarray:
    """Strings as ``str`` objects (HDF5 hands variable-length strings over as bytes)."""
    if values.dtype.kind not in "SO":
        return values
    try:  # numpy's vectorised ASCII decode: ~4x a Python loop on a 36 k-gene var
        return values.astype("S").astype("U").astype(object)
    except (UnicodeDecodeError, UnicodeEncodeError, TypeError, ValueError):
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _label_strings(values: np.ndarray) -> np.ndarray:
    """Category values as strings (numeric categories such as donor ids 1016 become '1016')."""
    values = _decode(values)
    if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
        values = values.astype(np.int64)
    if values.dtype == object and all(type(v) is str for v in values):
        return values
    return np.asarray([str(v) for v in values], dtype=object)


@dataclass(frozen=True)
class Labels:
    """A label column as integer codes into ``categories``; code -1 means missing (NaN)."""

    codes: np.ndarray
    categories: np.ndarray

    @classmethod
    def from_values(cls, values: np.ndarray) -> Labels:
        """Labels (sorted categories and codes) of an array of values."""
        codes, uniques = pd.factorize(pd.Series(_decode(values)), sort=True)
        return cls(codes.astype(np.int32), _label_strings(np.asarray(uniques)))

    def __len__(self) -> int:
        return len(self.codes)


def read_labels(node: h5py.Group | h5py.Dataset, name: str) -> Labels:
    """A 1-D annotation column (categorical, nullable, string or numeric) as :class:`Labels`."""
    enc = _attr(node, "encoding-type", "")
    if isinstance(node, h5py.Group) and enc == "categorical":
        codes = node["codes"][()].astype(np.int32)
        return Labels(codes, _label_strings(node["categories"][()]))
    if isinstance(node, h5py.Group) and enc.startswith("nullable"):
        values = _decode(node["values"][()]).astype(object)
        values[node["mask"][()].astype(bool)] = None
        return Labels.from_values(values)
    if isinstance(node, h5py.Dataset) and "categories" in node.attrs:  # anndata < 0.8 categoricals
        cats = node.file[node.attrs["categories"]][()]
        return Labels(node[()].astype(np.int32), _label_strings(cats))
    if isinstance(node, h5py.Dataset) and node.ndim == 1:
        return Labels.from_values(node[()])
    raise CytoatlasError(f"obs column {name!r} has an unsupported encoding {enc!r}")


def read_strings(node: h5py.Group | h5py.Dataset, name: str) -> np.ndarray:
    """A 1-D string column as ``str`` objects, ``""`` where missing (no factorising: names, not labels)."""
    if isinstance(node, h5py.Dataset) and node.ndim == 1 and node.dtype.kind in "SO" \
            and "categories" not in node.attrs:
        return _decode(node[()])
    lab = read_labels(node, name)
    return np.where(lab.codes >= 0, lab.categories[np.maximum(lab.codes, 0)], "").astype(object)


class ObsReader:
    """Read single obs columns of an open `.h5ad` without touching the others."""

    def __init__(self, f: h5py.File):
        if "obs" not in f or not isinstance(f["obs"], h5py.Group):
            raise CytoatlasError(f"{f.filename}: no obs group (pre-0.7 anndata file? re-save it with anndata)")
        self._obs = f["obs"]
        self.filename = f.filename
        index = self._obs.attrs.get("_index", "_index")
        self.columns = [k for k in self._obs if k not in (index, "__categories")]

    def require(self, names: list[str], what: str = "column") -> None:
        """Fail before any work if a column is missing, naming the ones that exist."""
        missing = [n for n in dict.fromkeys(names) if n not in self.columns]
        if missing:
            raise CytoatlasError(
                f"{self.filename}: obs has no {what} {', '.join(map(repr, missing))}; "
                f"available: {', '.join(self.columns)}"
            )

    def labels(self, name: str) -> Labels:
        """The obs column ``name`` as labels (categories and codes)."""
        self.require([name])
        return read_labels(self._obs[name], name)

    def values(self, name: str) -> np.ndarray | pd.api.extensions.ExtensionArray:
        """Column ``name`` with its dtype (see :func:`read_column`)."""
        self.require([name])
        return read_column(self._obs[name])


def read_column(node: h5py.Group | h5py.Dataset) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """A 1-D annotation column as anndata reads it: numbers and bools as NumPy arrays, strings as ``str``
    objects, categoricals as ``pd.Categorical`` (all categories, ordered or not), nullable columns as pandas'
    masked arrays. Encodings this module does not read itself go through anndata."""
    values = _read_element(node)
    if values is None:
        from anndata.io import read_elem

        values = read_elem(node)
    if isinstance(values, pd.Series | pd.Index):
        values = values.array
    return values.astype(object) if isinstance(values, np.ndarray) and values.dtype.kind in "SU" else values


def read_var(f: h5py.File, counts: str, gene_symbols: str | None) -> pd.DataFrame:
    """Gene table for the counts matrix: index = gene symbol (made unique), columns gene_id, gene_symbol.

    Symbols come from ``gene_symbols`` when given (atlases with Ensembl var_names), else from var_names.
    A missing symbol falls back to the gene id; duplicated symbols get anndata's ``-1``, ``-2`` suffixes so
    var_names stay unique while ``gene_symbol`` keeps the original.
    """
    var_path = "raw/var" if counts.startswith("raw/") else "var"
    var = f[var_path]
    # a dataset, or (anndata >= 0.11 with pandas 3's string dtype) a nullable-string-array group
    ids = read_strings(var[var.attrs.get("_index", "_index")], "var index")
    symbols = None
    if gene_symbols is not None:
        columns = [k for k in var if k != var.attrs.get("_index", "_index")]
        if gene_symbols not in columns:
            raise CytoatlasError(
                f"{f.filename}: {var_path} has no column {gene_symbols!r}; available: {', '.join(columns)}"
            )
        lab = read_labels(var[gene_symbols], gene_symbols)
        symbols = np.where(lab.codes >= 0, lab.categories[np.maximum(lab.codes, 0)], "")
    return gene_table(ids, symbols, f.filename, var_path)


def gene_table(ids: np.ndarray, symbols: np.ndarray | None, filename: str, var_path: str = "var") -> pd.DataFrame:
    """The gene table of gene ids and their symbols (``None``: the ids; a missing symbol ``""``): see
    :func:`read_var`. Shared by files and AnnData objects held in memory."""
    symbols = ids.copy() if symbols is None else np.where(symbols == "", ids, symbols).astype(object)
    dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
    if len(dup):
        raise CytoatlasError(f"{filename}: {var_path} names are not unique ({len(dup)} repeated, e.g. "
                             f"{', '.join(map(repr, dup[:3]))}); output genes would be ambiguous. Make them unique "
                             "(anndata: adata.var_names_make_unique()) or keep ids unique and name symbols in "
                             "`gene_symbols`")
    from anndata.utils import make_index_unique

    index = make_index_unique(pd.Index(symbols, dtype=object))
    return pd.DataFrame({"gene_id": ids, "gene_symbol": symbols}, index=pd.Index(index, dtype=object))


# 32 M stored values per block: ~256 MB of CSR (data + indices), whatever the cells' density
MAX_BLOCK_VALUES = 1 << 25


@dataclass
class CSRBlock:
    """Rows ``start:stop`` of the counts matrix as CSR arrays (indptr starts at 0)."""

    start: int
    stop: int
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray


class CountsMatrix:
    """The counts matrix of an `.h5ad` (CSR group or dense dataset), read in row blocks.

    With ``threads`` > 1 the compressed chunks of a block are decoded by that many threads (see
    :mod:`cytoatlas.io.chunks`); :meth:`close` (or leaving a ``with`` block) stops them.
    """

    def __init__(self, f: h5py.File, key: str, threads: int = 1):
        if key not in f:
            have = [k for k in ("X", "raw/X") if k in f] + [f"layers/{k}" for k in f.get("layers", {})]
            where = f"available: {', '.join(have)}" if have else \
                f"the file has no X, layers or raw/X (it holds: {', '.join(f.keys()) or 'nothing'})"
            raise CytoatlasError(f"{f.filename}: no counts matrix {key!r}; {where}")
        node = f[key]
        self.key, self.filename = key, f.filename
        enc = _attr(node, "encoding-type", "")
        if isinstance(node, h5py.Dataset) and node.ndim == 2:
            self.dense, self.node = True, node
            self.shape = tuple(node.shape)
        elif isinstance(node, h5py.Group) and enc == "csr_matrix":
            self.dense, self.node = False, node
            self.shape = tuple(int(s) for s in node.attrs["shape"])
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="cytoatlas-inflate") if threads > 1 else None
            self._data = ChunkedArray(node["data"], self._pool)
            self._indices = ChunkedArray(node["indices"], self._pool)
            self._indptr = node["indptr"]
            n_data = node["data"].shape[0]
            if node["indptr"].shape != (self.shape[0] + 1,) or node["indices"].shape[0] != n_data:
                raise CytoatlasError(
                    f"{f.filename}: {key} is not a valid CSR matrix: indptr has {node['indptr'].shape[0]:,} entries "
                    f"for {self.shape[0]:,} rows (needs rows + 1), data {n_data:,} and indices "
                    f"{node['indices'].shape[0]:,} values (must be equal)")
            if self.shape[0] and (int(self._indptr[0]) != 0 or int(self._indptr[-1]) != n_data):
                raise CytoatlasError(f"{f.filename}: {key} is not a valid CSR matrix: indptr runs from "
                                     f"{int(self._indptr[0])} to {int(self._indptr[-1]):,}, data has {n_data:,} values")
        elif enc == "csc_matrix":
            raise CytoatlasError(
                f"{f.filename}: {key} is stored as CSC; streaming needs rows (CSR). Convert once, e.g. "
                "adata.X = adata.X.tocsr(); adata.write_h5ad(...)"
            )
        else:
            raise CytoatlasError(f"{f.filename}: {key} has unsupported encoding {enc or type(node).__name__!r}")
        self.dtype = node.dtype if self.dense else self._data.dtype

    def close(self) -> None:
        """Stop the decompression threads."""
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> CountsMatrix:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def block(self, start: int, stop: int, buffers: BufferPool | None = None) -> CSRBlock:
        """Rows ``start:stop``; their values in arrays from ``buffers`` when given."""
        try:
            if self.dense:
                m = sp.csr_matrix(self.node[start:stop])
                return CSRBlock(start, stop, m.data, m.indices, m.indptr)
            ptr = self._indptr[start : stop + 1]
            lo, hi = int(ptr[0]), int(ptr[-1])
            if (np.diff(ptr) < 0).any():
                bad = start + int(np.flatnonzero(np.diff(ptr) < 0)[0])
                raise CytoatlasError(f"{self.filename}: {self.key} is not a valid CSR matrix: indptr decreases at "
                                     f"row {bad:,}")
            return CSRBlock(start, stop, self._data.read(lo, hi, buffers), self._indices.read(lo, hi, buffers),
                            ptr - ptr[0])
        except CytoatlasError:
            raise
        except Exception as e:  # h5py, zlib/isal and numpy each raise their own kinds for a damaged file
            raise CytoatlasError(
                f"{self.filename}: cannot read {self.key} rows {start}-{stop} (corrupt or truncated file?): {e}"
            ) from None

    def blocks(self, batch_size: int, start: int = 0, stop: int | None = None, first: int | None = None,
               max_values: int = MAX_BLOCK_VALUES) -> Iterator[CSRBlock]:
        """Row blocks of at most ``batch_size`` rows and ``max_values`` stored values (nonzeros, or cells x genes
        for dense X), so memory stays bounded however dense the cells are; ``first`` rows in the first block if
        given (a small first block makes a run report progress, or fail on bad data, within a second)."""
        stop = self.shape[0] if stop is None else stop
        # a block, the one read ahead and one being read: their arrays are reused from block to block (and
        # freed with this generator)
        buffers = BufferPool(3)
        lo = start
        while lo < stop:
            hi = min(lo + (first if lo == start and first else batch_size), stop)
            if self.dense:
                hi = lo + max(1, min(hi - lo, max_values // max(self.shape[1], 1)))
            else:
                ptr = self._indptr[lo: hi + 1]
                within = int(np.searchsorted(ptr - ptr[0], max_values, side="right")) - 1  # rows that fit
                hi = lo + max(1, min(hi - lo, within))
            yield self.block(lo, hi, buffers)
            lo = hi


def open_counts(f: h5py.File, key: str = "X", threads: int = 1) -> CountsMatrix:
    """The counts matrix at ``key``: ``"X"``, ``"layers/<name>"`` or ``"raw/X"``, its chunks decoded by
    ``threads`` threads."""
    return CountsMatrix(f, key, threads)


def _read_element(node: h5py.HLObject):
    """One dataframe column as anndata reads it, or ``None`` for an encoding left to anndata."""
    enc, version = _attr(node, "encoding-type", ""), _attr(node, "encoding-version", "")
    if isinstance(node, h5py.Dataset):
        if node.ndim != 1:
            return None
        if enc == "string-array" and version == "0.2.0":
            return node.asstr()[()]
        if enc == "array" and version == "0.2.0" and node.dtype.kind in "biuf":
            return node[()]
        return None
    if enc == "categorical" and version == "0.2.0":
        categories = _read_element(node["categories"])
        if categories is None:
            return None
        return pd.Categorical.from_codes(codes=node["codes"][()], categories=categories,
                                         ordered=bool(_attr(node, "ordered", False)))
    arrays = {"nullable-integer": pd.arrays.IntegerArray, "nullable-boolean": pd.arrays.BooleanArray}
    if enc in arrays and version == "0.1.0":
        return arrays[enc](node["values"][()], mask=node["mask"][()])
    if enc == "nullable-string-array" and version == "0.1.0":
        # how anndata >= 0.11 stores pandas' string dtypes, e.g. every string column and index under pandas 3
        try:
            dtype = pd.StringDtype(na_value=np.nan if _attr(node, "na-value", "NA") == "NaN" else pd.NA)
        except TypeError:  # pandas < 2.3 has no such dtype to give back: anndata decides
            return None
        values = node["values"].asstr()[()].astype(object)
        values[node["mask"][()].astype(bool)] = None
        return pd.array(values, dtype=dtype)
    return None


def read_dataframe(group: h5py.Group) -> pd.DataFrame:
    """An anndata dataframe element (``obs``, ``var``) as ``anndata.io.read_elem`` returns it.

    anndata dispatches every element through its registry (~1 ms each on a first call, most of a small file's
    read); plain h5py reads the usual encodings (string, numeric, categorical and nullable columns) the same
    way, as are the nullable strings anndata >= 0.11 writes for pandas' string dtypes. A frame with any other
    encoding is handed to anndata whole.
    """
    if _attr(group, "encoding-type") == "dataframe" and _attr(group, "encoding-version") == "0.2.0":
        columns = [c.decode() if isinstance(c, bytes) else str(c) for c in group.attrs.get("column-order", [])]
        index_key = _attr(group, "_index")
        values = {k: _read_element(group[k]) for k in columns}
        index = _read_element(group[index_key]) if index_key in group else None
        if index is not None and all(v is not None for v in values.values()):
            df = pd.DataFrame(values, index=index, columns=columns if columns else None)
            if index_key != "_index":
                df.index.name = index_key
            return df
    from anndata.io import read_elem

    return read_elem(group)

"""The two axes of a store part, held in memory: its rows (the groups of its results file) and its columns (genes
or signatures), with each one's place in the API's page order.

A part holds only numbers, one row per (file row, column) (:mod:`.ingest`). With the axes in memory, a page of a
part is found without reading it (which rows and columns, in what order, how many in all: the product of the
two axes, filtered) and only the page's values are read: the cost of a request follows its page, not the number
of rows that match it, and no string is joined or sorted in SQL. Each axis is read once per store generation
(:meth:`~cytoatlas._api.reader.Catalog.memo`).

Page order is the SQL order the API has always had: strings in binary (code point) order, a cell-type row's
missing sample first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .ingest import part_files
from .reader import Catalog
from .respond import Unavailable

ColumnTable = Literal["genes", "signatures"]
_NAME = {"genes": "gene", "signatures": "signature"}  # the name column of each column table


@dataclass(frozen=True)
class Rows:
    """The groups of one source, by row number."""

    cell_type: np.ndarray  # object
    sample: np.ndarray     # object; None for a cell-type row
    n_cells: np.ndarray    # object: int or None
    order: np.ndarray      # row numbers by cell type, then sample (none first)

    def select(self, cell_types: Sequence[str] = (), samples: Sequence[str] = ()) -> np.ndarray:
        """Row numbers in page order, those of ``cell_types`` and ``samples`` only (an empty filter keeps all)."""
        keep = self.order
        if cell_types:
            keep = keep[pd.Series(self.cell_type[keep]).isin(list(cell_types)).to_numpy()]
        if samples:
            keep = keep[pd.Series(self.sample[keep]).isin(list(samples)).to_numpy()]
        return keep


@dataclass(frozen=True)
class Columns:
    """The genes or signatures of one source, by index."""

    names: np.ndarray       # object, by index
    index: dict[str, int]   # name -> index (of equal names, the last)
    order: np.ndarray       # indexes by name

    def select(self, names: Sequence[str] = ()) -> np.ndarray:
        """Indexes in name order: of ``names`` that exist here (each once), or all when none is given."""
        if not names:
            return self.order
        found = {self.index[n] for n in names if n in self.index}
        return np.array(sorted(found, key=lambda i: self.names[i]), dtype=np.int64)


def rows(cur, cat: Catalog, sid: int) -> Rows:
    """The rows of source ``sid``."""
    def read() -> Rows:
        got = cur.execute('SELECT "row", cell_type, sample, n_cells FROM groups WHERE source_id = $sid',
                          {"sid": sid}).fetchall()
        n = max((r[0] for r in got), default=-1) + 1
        cell_type, sample, n_cells = (np.full(n, None, dtype=object) for _ in range(3))
        for row, ct, s, nc in got:
            cell_type[row], sample[row], n_cells[row] = ct, s, nc
        order = sorted((r[0] for r in got), key=lambda r: (cell_type[r] is None, cell_type[r] or "",
                                                            sample[r] is not None, sample[r] or ""))
        return Rows(cell_type, sample, n_cells, np.array(order, dtype=np.int64))

    return cat.memo(("rows", sid), read)


def columns(cur, cat: Catalog, sid: int, table: ColumnTable) -> Columns:
    """The genes (``table='genes'``) or signatures of source ``sid``."""
    def read() -> Columns:
        got = cur.execute(f"SELECT idx, {_NAME[table]} FROM {table} WHERE source_id = $sid ORDER BY idx",
                          {"sid": sid}).fetchall()
        names = np.full(max((i for i, _ in got), default=-1) + 1, None, dtype=object)
        for i, name in got:
            names[i] = name
        order = sorted((i for i, _ in got), key=lambda i: names[i])
        return Columns(names, {name: i for i, name in got}, np.array(order, dtype=np.int64))

    return cat.memo(("columns", table, sid), read)


def product_page(n_outer: int, n_inner: int, limit: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``offset .. offset + limit`` of the product of two ordered axes (the inner one varying fastest):
    the outer and inner positions of each."""
    total = n_outer * n_inner
    at = np.arange(min(offset, total), min(offset + limit, total), dtype=np.int64)
    return at // max(n_inner, 1), at % max(n_inner, 1)  # no inner axis: no position at all


def read_columns(cur, parts: Sequence[str], column: Literal["gene", "sig"], values: Sequence[str],
                 cols: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Every row of the columns ``cols[k]`` (gene or signature indexes) of each part ``parts[k]``, read by one
    statement: ``row``, ``col``, ``part`` (k) and the ``values`` (masked where NULL).

    ``column`` and ``values`` are column names of the store's own schema, never request text. Only the files and
    row groups holding the columns asked for are read (:func:`~cytoatlas._api.ingest.part_files`; Parquet min /
    max statistics); a column asked of one part and held by another is dropped.
    """
    files, owner = [], []
    for k, (part, wanted) in enumerate(zip(parts, cols, strict=True)):
        if len(wanted):
            picked = part_files(part, np.unique(wanted).tolist())
            files += picked
            owner += [k] * len(picked)
    if not files:
        return {"row": np.zeros(0, np.int64), "col": np.zeros(0, np.int64), "part": np.zeros(0, np.int64),
                **{v: np.ma.masked_all(0) for v in values}}
    every = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in cols]))
    # a run of columns needs no list (list_contains costs a search of it per row read)
    run = every[-1] - every[0] + 1 == len(every)
    listed = "" if run else f" AND list_contains(CAST($cols AS INTEGER[]), {column})"
    # which file a row came from, when that tells which part (a file name per row costs)
    file, names = ("list_position($files, filename) - 1", ", filename = true") if len(parts) > 1 else ("0", "")
    got = cur.execute(f'SELECT "row", {column} AS col, {file} AS file, '
                      f"{', '.join(values)} FROM read_parquet($files{names}) "
                      f"WHERE {column} BETWEEN $lo AND $hi{listed}",
                      {"files": files, "lo": int(every[0]), "hi": int(every[-1]),
                       **({} if run else {"cols": every.tolist()})}).fetchnumpy()
    out = {"row": np.asarray(got["row"], dtype=np.int64), "col": np.asarray(got["col"], dtype=np.int64),
           "part": np.asarray(owner, dtype=np.int64)[np.asarray(got["file"], dtype=np.int64)],
           **{v: np.ma.asarray(got[v]) for v in values}}
    if len(parts) > 1:  # another part's column of the same index
        keep = np.zeros(len(out["row"]), dtype=bool)
        for k, wanted in enumerate(cols):
            keep |= (out["part"] == k) & np.isin(out["col"], wanted)
        out = {name: a[keep] for name, a in out.items()}
    return out


def read_values(cur, parts: Sequence[str], column: Literal["gene", "sig"], values: Sequence[str], row: np.ndarray,
                col: np.ndarray, part: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The ``values`` of the pairs (``row[i]``, ``col[i]``) of part ``parts[part[i]]`` (of ``parts[0]`` when
    ``part`` is None), in that order (masked where NULL), read by one statement."""
    part = np.zeros(len(row), dtype=np.int64) if part is None else part
    if not len(row):
        return {v: np.ma.masked_all(0) for v in values}
    got = read_columns(cur, parts, column, values, [col[part == k] for k in range(len(parts))])
    width = int(max(row.max(), np.max(got["row"], initial=-1))) + 1
    ncol = int(max(col.max(), np.max(got["col"], initial=-1))) + 1
    have = (got["part"] * ncol + got["col"]) * width + got["row"]
    want = (part.astype(np.int64) * ncol + col) * width + row
    sorter = np.argsort(have, kind="stable")
    at = np.searchsorted(have, want, sorter=sorter)
    found = at < len(have)
    at = sorter[np.where(found, at, 0)] if len(have) else at
    if not (found.all() and np.array_equal(have[at], want)):
        raise Unavailable(f"a part of {', '.join(parts)} lacks values it should hold (a store written by another "
                          "version, or damaged?): run `cytoatlas index --force`")
    return {v: got[v][at] for v in values}

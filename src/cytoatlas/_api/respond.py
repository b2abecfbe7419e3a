"""Turning query results into responses (JSON page, CSV or Parquet) and unknown names into helpful 404s."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson
from fastapi import Response

if TYPE_CHECKING:
    from .queries import Table

MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_LISTED = 50  # up to this many valid values are listed in full in a 404


class NotFound(Exception):
    """An unknown atlas, level, signature set, signature, gene, ...: 404 with the valid values."""

    def __init__(self, detail: str, valid: list[str] | None = None):
        super().__init__(detail)
        self.detail, self.valid = detail, valid


class Unavailable(Exception):
    """The store cannot answer right now (a part vanished under a concurrent rebuild): 503."""


def check(what: str, value: str, valid: Iterable[str], where: str = "", hint: str = "") -> None:
    """Raise :class:`NotFound` unless ``value`` is one of ``valid``: "unknown {what} {value!r}{where}; valid: ..."
    (all of them, or the closest when there are many, then ``hint``)."""
    valid = valid if isinstance(valid, (set, frozenset, dict)) else set(valid)
    if value in valid:
        return
    head = f"unknown {what} {value!r}{where}"
    names = sorted(valid)
    if not names:
        raise NotFound(f"{head}: there is none{hint}", [])
    if len(names) <= _LISTED:
        raise NotFound(f"{head}; valid: {', '.join(names)}", names)
    close = closest(value, names)
    raise NotFound(f"{head}; {len(names):,} exist" + (f", the closest: {', '.join(close)}" if close else "") + hint,
                   close)


def closest(value: str, names: list[str], n: int = 10) -> list[str]:
    """Names equal ignoring case, then those sharing the longest prefix (cheap on 36 k genes)."""
    low = value.lower()
    same = [s for s in names if s.lower() == low]
    for k in range(min(len(low), 6), 0, -1):
        more = [s for s in names if s.lower().startswith(low[:k]) and s not in same]
        if more:
            return (same + more)[:n]
    return same[:n]


def page_body(table: Table, limit: int, offset: int) -> dict:
    n = len(table.rows)
    next_offset = offset + n if n and offset + n < table.total else None
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    return {"total": table.total, "limit": limit, "offset": offset, "next_offset": next_offset, "rows": rows}


def json_response(body) -> Response:
    """``body`` as JSON: NaN and infinities as null (JSON has neither), numpy arrays as lists."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=MEDIA["json"])


def respond(table: Table, fmt: str, limit: int, offset: int, name: str) -> Response:
    """A page of ``table``: JSON (the Page model), or CSV / Parquet of the page's rows with the paging in headers
    (``X-Total-Count``, ``X-Next-Offset`` when there is a next page)."""
    body = page_body(table, limit, offset)
    if fmt == "json":
        return json_response(body)
    headers = {"X-Total-Count": str(table.total)}
    if body["next_offset"] is not None:
        headers["X-Next-Offset"] = str(body["next_offset"])
    return file_response(table.columns, table.rows, fmt, name, headers)


def file_response(columns: list[str], rows: list[tuple], fmt: str, name: str, headers: dict | None = None) -> Response:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=columns)
    headers = {**(headers or {}), "Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "csv":
        for col in frame.columns:
            if frame[col].map(lambda v: isinstance(v, list)).any():
                frame[col] = frame[col].map(lambda v: ";".join(map(str, v)) if isinstance(v, list) else v)
        return Response(frame.to_csv(index=False), media_type=MEDIA["csv"], headers=headers)
    return Response(_parquet(frame), media_type=MEDIA["parquet"], headers=headers)


_EXPORT: list = []
_EXPORT_LOCK = threading.Lock()


def _parquet(frame) -> bytes:
    """Parquet bytes of a data frame, written by an in-memory DuckDB (no pyarrow needed).

    One connection for the process, a cursor per call, closed before returning: no DuckDB object is left in a
    worker thread (one destroyed there while Python shuts down aborts the process).
    """
    import duckdb

    with _EXPORT_LOCK:
        if not _EXPORT:
            _EXPORT.append(duckdb.connect())
        con = _EXPORT[0]
    if len(frame) == 0:  # an empty object column has no type: write the header as strings
        frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
    with tempfile.TemporaryDirectory(prefix="cytoatlas-") as tmp, con.cursor() as cur:
        path = os.path.join(tmp, "page.parquet")
        cur.register("page", frame)
        cur.execute(f"COPY page TO '{path}' (FORMAT parquet)")
        with open(path, "rb") as fh:
            return fh.read()

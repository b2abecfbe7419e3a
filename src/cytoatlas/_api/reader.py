"""The server's side of the store: a read-only DuckDB connection that follows the file when it is rebuilt, one
cursor per thread, and a catalog of what exists (to check names and list valid values).

DuckDB is opened read-only, may read files only inside the store's Parquet directory (external access off,
configuration locked), and runs no SQL but the fixed, parameterised statements of :mod:`.queries`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cytoatlas.errors import CytoatlasError

from . import cells as cells_tables
from . import compare as compare_tables
from .schema import SCHEMA_VERSION, VALIDATION_TABLES, validation_table
from .store import open_readonly, store_dir

log = logging.getLogger("cytoatlas.serve")
T = TypeVar("T")


def natural_key(text: str) -> tuple:
    """Sort L2 before L10."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class Source:
    source_id: int
    part: Path | None


@dataclass
class Catalog:
    """Names that exist in one generation of the store."""

    meta: dict[str, str]
    parts: Path                                      # the store's Parquet directory
    # (step, atlas, level, kind, signature_set or "") -> Source
    sources: dict[tuple[str, str, str, str, str], Source]
    atlases: list[str]
    levels: dict[str, list[str]]
    sets: dict[tuple[str, str], list[str]]          # (atlas, level) -> signature sets with activity
    all_sets: list[str]
    signatures: dict[str, set[str]]                  # set -> signature names
    genes: dict[str, set[str]]                       # atlas -> gene names
    cell_types: dict[tuple[str, str], set[str]]      # (atlas, level) -> cell types
    validation: set[str] = field(default_factory=set)
    n_files: int = 0
    cells: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)  # (atlas, set) -> kind -> sigs
    # compare table -> filterable column -> its values (only the tables with an indexed file; "*": all of them)
    compare: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    _memo: dict = field(default_factory=dict, repr=False, compare=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def source(self, step: str, atlas: str, level: str, kind: str, signature_set: str = "") -> Source | None:
        return self.sources.get((step, atlas, level, kind, signature_set))

    def memo(self, key: tuple, read: Callable[[], T]) -> T:
        """``read()``, computed once for this catalog (one generation of the store: a rebuilt store is a new
        catalog) and kept with it under ``key``. Two first callers may both read (outside the lock: reads run
        SQL), with the same answer."""
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        value = read()
        with self._memo_lock:
            return self._memo.setdefault(key, value)


def load_catalog(con, parts: Path) -> Catalog:
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    rows = con.execute("SELECT source_id, step, atlas, level, kind, coalesce(signature_set, ''), part FROM sources "
                       "ORDER BY source_id").fetchall()
    sources, levels, sets = {}, {}, {}
    for sid, step, atlas, level, kind, sset, part in rows:
        if step in ("validate", "cells", "compare", "groundtruth"):
            continue
        sources[(step, atlas, level, kind, sset)] = Source(sid, parts / part if part else None)
        levels.setdefault(atlas, set()).add(level)
        if step == "activity":
            sets.setdefault((atlas, level), set()).add(sset)
    signatures: dict[str, set[str]] = {}
    for sset, sig in con.execute("SELECT signature_set, signature FROM signature_names").fetchall():
        signatures.setdefault(sset, set()).add(sig)
    genes: dict[str, set[str]] = {}
    for gene, atlases in con.execute("SELECT gene, atlases FROM gene_names").fetchall():
        for atlas in atlases:
            genes.setdefault(atlas, set()).add(gene)
    cell_types: dict[tuple[str, str], set[str]] = {}
    for atlas, level, ct in con.execute("SELECT atlas, level, cell_type FROM cell_types").fetchall():
        cell_types.setdefault((atlas, level), set()).add(ct)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return Catalog(
        meta=meta, parts=parts, sources=sources, atlases=sorted(levels, key=natural_key),
        levels={a: sorted(v, key=natural_key) for a, v in levels.items()},
        sets={k: sorted(v) for k, v in sets.items()}, all_sets=sorted({s for v in sets.values() for s in v}),
        signatures=signatures, genes=genes, cell_types=cell_types,
        validation={n for n in VALIDATION_TABLES if validation_table(n) in tables}, n_files=len(rows),
        cells=cells_tables.catalog(con) if "cells_summary" in tables else {},
        compare=compare_tables.catalog(con))


class StoreReader:
    """A read-only view of a store file that reopens it when ``cytoatlas index`` replaces it."""

    def __init__(self, db: str | os.PathLike):
        self.db = Path(db).resolve()
        self.parts = store_dir(self.db)
        self._lock = threading.Lock()
        self._stat: tuple | None = None
        self._state: tuple | None = None  # (generation, connection, catalog), replaced as a whole
        self._open()

    def _file_id(self) -> tuple:
        st = os.stat(self.db)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _open(self) -> None:
        import duckdb

        try:
            stat = self._file_id()
            con = open_readonly(self.db)
        except (OSError, duckdb.Error) as e:
            raise CytoatlasError(f"cannot open the store {self.db}: {str(e).splitlines()[0]} "
                                 "(build it with `cytoatlas index`)") from None
        try:
            allowed = str(self.parts) + os.sep
            con.execute(f"SET allowed_directories = ['{allowed}']" if "'" not in allowed else "SELECT 1")
            con.execute("SET GLOBAL parquet_metadata_cache = true")  # GLOBAL: a SET is one cursor's only
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise CytoatlasError(f"{self.db} has store schema {meta.get('schema_version')}, this cytoatlas "
                                     f"reads {SCHEMA_VERSION}: run `cytoatlas index` again")
            catalog = load_catalog(con, self.parts)
        except duckdb.Error as e:
            con.close()
            raise CytoatlasError(f"{self.db} is not a cytoatlas store: {str(e).splitlines()[0]}") from None
        except BaseException:
            con.close()
            raise
        self._state = (self._state[0] + 1 if self._state else 1, con, catalog)
        old, self._pool = getattr(self, "_pool", None), queue.SimpleQueue()
        while old is not None:  # idle cursors of the previous generation
            try:
                old.get_nowait().close()
            except queue.Empty:
                break
        self._stat = stat
        log.info("opened %s (generation %d): %d files, atlases %s", self.db, self._state[0], catalog.n_files,
                 ", ".join(catalog.atlases))

    def refresh(self, force: bool = False) -> None:
        """Reopen the file if it was replaced since it was opened (cheap: one stat)."""
        try:
            current = self._file_id()
        except OSError:
            return  # gone for now (being replaced?): keep serving what is open
        if current == self._stat and not force:
            return
        with self._lock:
            if self._file_id() != self._stat or force:
                try:
                    self._open()
                except CytoatlasError as e:
                    log.error("%s; still serving the previous version", e)

    @property
    def catalog(self) -> Catalog:
        return self._state[2]

    @contextlib.contextmanager
    def session(self):
        """A cursor on the current generation and that generation's catalog, for one request.

        Cursors are pooled by the reader, never kept by the threads that borrow them (a DuckDB object destroyed
        in a worker thread while Python shuts down aborts the process). An older generation's connection is left
        to the garbage collector, not closed: a request still running on it finishes on the file it started
        with; its cursors are closed as they come back.
        """
        generation, con, catalog = self._state
        try:
            cur = self._pool.get_nowait()
        except queue.Empty:
            cur = con.cursor()
            cur.execute("USE store")
        try:
            yield cur, catalog
        finally:
            if generation == self._state[0]:
                self._pool.put(cur)
            else:
                cur.close()

    def close(self) -> None:
        """Close every pooled cursor and the connection."""
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break
        self._state[1].close()

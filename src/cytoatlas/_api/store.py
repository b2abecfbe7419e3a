"""The results store: one DuckDB file built incrementally from the manifests under a results directory.

``DB`` (e.g. ``results/cytoatlas.duckdb``) holds the small tables (sources, groups, genes, signatures, the
validation, per-cell summary and comparison tables); the matrices go to Parquet parts in ``DB_parquet/`` beside it,
one per pseudobulk or activity file, named by the file's checksum. An index run compares every manifest record
(size, mtime_ns, checksum) with the one stored at the last run: unchanged files are not opened, new or changed ones
are read, vanished ones dropped. The new database is built under a temporary name (a copy of the old one, then the
changes) and renamed over the old one; only then are parts no longer referenced deleted. A server holding the old
file keeps reading it, and reopens the new one on its next request (see :mod:`cytoatlas._api.app`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import leftovers, replace_durably, temporary_owner, temporary_path
from cytoatlas.io.layout import GROUP_KINDS, TABLE_FORMATS, is_activity_file
from cytoatlas.io.lock import DirectoryLock
from cytoatlas.io.manifest import MANIFEST_NAME, ManifestError, checksum_matches, read_manifest, recorded_checksum

from . import cells as cells_tables
from . import compare as compare_tables
from . import groundtruth as groundtruth_tables
from .schema import DDL, DERIVED, SCHEMA_VERSION, VALIDATION_TABLES, validation_table

log = logging.getLogger("cytoatlas.index")
EXPRESSION_KINDS = GROUP_KINDS  # bootstrap files are summarised by the activity intervals


def store_dir(db: str | os.PathLike) -> Path:
    """The directory of a store's Parquet parts: ``{db stem}_parquet`` beside the database file."""
    db = Path(db)
    return db.parent / f"{db.stem}_parquet"


@dataclass
class IndexSummary:
    """What an index run did. ``read`` lists the files opened; a run with nothing to do reads none."""

    db: Path
    read: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    parts_written: int = 0
    parts_deleted: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.read or self.removed)

    def __str__(self) -> str:
        return (f"{self.db}: {len(self.read)} file(s) read, {self.unchanged} unchanged, {len(self.removed)} "
                f"removed, {len(self.skipped)} skipped; {self.parts_written} part(s) written, "
                f"{self.parts_deleted} deleted in {self.seconds:.1f} s")


@dataclass
class Candidate:
    """One file a manifest vouches for, and what the store makes of it."""

    rel: str            # path relative to the indexed directory (the store's key)
    path: Path
    step: str           # pseudobulk, activity, validate, cells, compare
    kind: str           # celltype / samples, or the validation / per-cell / compare table's name
    signature_set: str | None
    size: int
    mtime_ns: int
    checksum: str       # "<algorithm>:<hex>", as its manifest records it
    atlas: str | None = None  # per-cell tables: the atlas, as their manifest records it

    @property
    def record(self) -> tuple:
        return self.size, self.mtime_ns, self.checksum

    def part_name(self) -> str | None:
        if self.step in ("validate", "cells", "compare", groundtruth_tables.STEP):
            return None
        name = self.checksum.partition(":")[2][:32]
        return f"{self.step}/{name}"  # a directory of files (an older store's activity part: one file)


def _manifest_entries(manifest: Path, out: Path) -> dict[str, dict]:
    """``{file name: record}`` of one manifest, read strictly: to the store "no records" means "these files are
    gone", and a damaged manifest would drop every file of its directory from the store and delete their parts.

    Raises
    ------
    CytoatlasError
        The manifest cannot be read: the message names it and what to rerun.
    """
    try:
        return read_manifest(manifest.parent, strict=True)
    except ManifestError as e:
        rel, folder = manifest.relative_to(out).as_posix(), manifest.parent.relative_to(out).as_posix() or "."
        raise CytoatlasError(f"{rel}: the manifest cannot be read ({e.reason}); the store was left as it was. "
                             f"Rerun the step that wrote {folder} (e.g. "
                             f"`cytoatlas run`, which recomputes what its manifest no longer vouches for), then "
                             f"`cytoatlas index` again") from None


def discover(out: Path, skip: Path, verify: bool = False) -> tuple[list[Candidate], list[str]]:
    """Every indexable file under ``out`` with a manifest record, and the files skipped (with why).

    A manifest that cannot be read, or a file whose size is not the one its manifest recorded (truncated or
    rewritten since), is an error naming it: indexing without it would drop its results from the store.
    """
    found: list[Candidate] = []
    skipped: list[str] = []
    manifests = sorted(p for p in out.rglob(MANIFEST_NAME) if skip not in p.parents)
    for manifest in manifests:
        directory = manifest.parent
        entries = _manifest_entries(manifest, out)
        tables, comparisons, groundtruth = {}, {}, {}
        for name, rec in sorted(entries.items()):
            step = rec.get("step")
            path = directory / name
            if step == "validate":
                stem, suffix = Path(name).stem, Path(name).suffix
                if stem in VALIDATION_TABLES and suffix[1:] in TABLE_FORMATS:
                    tables.setdefault(stem, {})[suffix] = (path, rec)
                continue
            if step == "compare":  # the four tables; not the figures (kind "figure")
                if rec.get("kind") in compare_tables.KINDS and Path(name).suffix[1:] in TABLE_FORMATS:
                    comparisons.setdefault(rec["kind"], {})[Path(name).suffix] = (path, rec)
                continue
            if step == groundtruth_tables.STEP:  # its four tables; not the figures
                if rec.get("table") in groundtruth_tables.KINDS and Path(name).suffix[1:] in TABLE_FORMATS:
                    groundtruth.setdefault(rec["table"], {})[Path(name).suffix] = (path, rec)
                continue
            if step == "cells" and rec.get("kind") in cells_tables.KINDS:  # per-cell summaries, not the matrices
                c = _candidate(out, path, step, rec["kind"], rec.get("signature"), rec, skipped, verify)
                if c is not None:
                    c.atlas = rec.get("atlas")
                    found.append(c)
                continue
            if step == "pseudobulk":
                kind, signature_set = rec.get("kind"), None
            elif step == "activity" and is_activity_file(name):
                kind, signature_set = rec.get("kind"), rec.get("signature")
            else:
                continue
            if kind not in EXPRESSION_KINDS:  # bootstrap files: summarised by the activity CIs
                continue
            found.append(_candidate(out, path, step, kind, signature_set, rec, skipped, verify))
        for stem, files in sorted(tables.items()):  # Parquet when both formats are there
            path, rec = files.get(".parquet") or files[".csv"]
            found.append(_candidate(out, path, "validate", stem, None, rec, skipped, verify))
        for kind, files in sorted(comparisons.items()):
            path, rec = files.get(".parquet") or files[".csv"]
            found.append(_candidate(out, path, "compare", kind, None, rec, skipped, verify))
        for kind, files in sorted(groundtruth.items()):
            path, rec = files.get(".parquet") or files[".csv"]
            found.append(_candidate(out, path, groundtruth_tables.STEP, kind, None, rec, skipped, verify))
    return [c for c in found if c is not None], skipped


def _candidate(out: Path, path: Path, step: str, kind: str, signature_set: str | None, rec: dict,
               skipped: list[str], verify: bool) -> Candidate | None:
    rel = path.relative_to(out).as_posix()
    try:
        st = path.stat()
    except OSError:
        skipped.append(f"{rel}: in its manifest but missing")
        log.warning("%s: in its manifest but missing; not indexed", rel)
        return None
    checksum = recorded_checksum(rec)
    if isinstance(rec.get("size"), int) and st.st_size != rec["size"]:
        raise CytoatlasError(f"{rel}: {st.st_size:,} bytes, its manifest recorded {rec['size']:,} (truncated or "
                             f"damaged since it was written); the store was left as it was. Rerun the step that "
                             f"wrote it (`cytoatlas {step}` or `cytoatlas run`; `cytoatlas status` tells which "
                             f"outputs are stale), then `cytoatlas index` again")
    if st.st_size != rec.get("size") or st.st_mtime_ns != rec.get("mtime_ns") or not checksum:
        skipped.append(f"{rel}: differs from its manifest record (size or mtime)")
        log.warning("%s: differs from its manifest record (rewritten or damaged since?); not indexed "
                    "(`cytoatlas status` tells which)", rel)
        return None
    if verify and not checksum_matches(path, checksum):
        skipped.append(f"{rel}: checksum differs from its manifest record")
        log.warning("%s: checksum differs from its manifest record; not indexed", rel)
        return None
    return Candidate(rel, path, step, kind, signature_set, st.st_size, st.st_mtime_ns, checksum)


def open_readonly(db: str | os.PathLike):
    """A read-only connection to the store file ``db``, in a DuckDB instance of its own.

    ``duckdb.connect(path)`` hands back the instance already open on that path in this process, if any (a server's,
    whose file may since have been replaced); attaching the file to a fresh in-memory instance always reads the
    file now at ``db``.
    """
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS store (READ_ONLY)", [str(db)])
        con.execute("USE store")
    except BaseException:
        con.close()
        raise
    return con


def _settings(expression: Sequence[str]) -> dict[str, str]:
    return {"schema_version": SCHEMA_VERSION, "expression": ",".join(sorted(expression))}


def _previous(db: Path, settings: dict[str, str]) -> dict[str, tuple] | None:
    """``{path: (source_id, size, mtime_ns, checksum, part)}`` of the existing store, or None if it cannot be
    updated in place (missing, unreadable, or built with another schema or other options)."""
    import duckdb

    if not db.is_file():
        return None
    try:
        with contextlib.closing(open_readonly(db)) as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if any(meta.get(k) != v for k, v in settings.items()):
                log.info("%s was built with other settings (%s); rebuilding it", db,
                         ", ".join(f"{k}={meta.get(k)}" for k in settings))
                return None
            rows = con.execute("SELECT path, source_id, size, mtime_ns, checksum, part FROM sources").fetchall()
    except duckdb.Error as e:
        log.warning("%s cannot be read (%s); rebuilding it", db, str(e).splitlines()[0])
        return None
    return {r[0]: tuple(r[1:]) for r in rows}


def index(out: str | os.PathLike, db: str | os.PathLike | None = None, *,
          expression: Sequence[str] = EXPRESSION_KINDS, force: bool = False, verify: bool = False) -> IndexSummary:
    """Build or update the results store of ``out``; see :func:`cytoatlas.index`."""
    import duckdb

    t0 = time.perf_counter()
    out = Path(out).resolve()
    if not out.is_dir():
        raise CytoatlasError(f"results directory {out} does not exist")
    db = Path(db).resolve() if db is not None else out / "cytoatlas.duckdb"
    bad = sorted(set(expression) - set(EXPRESSION_KINDS))
    if bad:
        raise CytoatlasError(f"expression kinds must be among {', '.join(EXPRESSION_KINDS)}; got {', '.join(bad)}")
    parts = store_dir(db)
    summary = IndexSummary(db=db)
    candidates, summary.skipped = discover(out, parts, verify)
    if not candidates:
        raise CytoatlasError(f"no pseudobulk, activity or validation outputs (nor comparisons) with a manifest under "
                             f"{out} (run `cytoatlas run` / `cytoatlas demo` first)")
    settings = _settings(expression)
    with DirectoryLock(parts):
        _remove_leftovers(parts)
        previous = None if force else _previous(db, settings)
        old = previous or {}
        todo, keep = [], 0
        for c in candidates:
            o = old.get(c.rel)
            if o is not None and tuple(o[1:4]) == c.record and (o[4] is None or (parts / o[4]).exists()):
                keep += 1
            else:
                todo.append(c)
        wanted = {c.rel for c in candidates}
        changed = {c.rel for c in todo}
        summary.unchanged = keep
        summary.removed = sorted(p for p in old if p not in wanted)
        if previous is not None and not todo and not summary.removed:
            log.info("%s is current: %d file(s) indexed, none new, changed or removed", db, keep)
            summary.seconds = time.perf_counter() - t0
            return summary
        log.info("indexing %s into %s: %d new or changed file(s), %d unchanged, %d removed", out, db, len(todo),
                 keep, len(summary.removed))
        tmp = temporary_path(parts / db.name)  # in the locked directory, whose clean-up removes a dead run's
        try:
            if previous is not None:
                shutil.copyfile(db, tmp)
            con = duckdb.connect(str(tmp))
            try:
                if previous is None:
                    con.execute(DDL)
                drop = [old[p][0] for p in old if p not in wanted or p in changed]
                _delete_sources(con, drop)
                next_id = (con.execute("SELECT coalesce(max(source_id), 0) FROM sources").fetchall()[0][0]) + 1
                summary.parts_written = _ingest(con, todo, parts, next_id, expression, summary, force)
                _check_unique(con)
                con.execute(DERIVED)
                _convenience_views(con, parts)
                con.execute("DELETE FROM meta")
                con.executemany("INSERT INTO meta VALUES (?, ?)", [*settings.items(), ("out", str(out)),
                                ("built", time.strftime("%Y-%m-%dT%H:%M:%S%z")), ("cytoatlas_version", _version())])
                con.execute("CHECKPOINT")
            finally:
                con.close()
            replace_durably(tmp, db)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        summary.parts_deleted = _collect_garbage(db, parts)
    summary.seconds = time.perf_counter() - t0
    log.info("%s", summary)
    return summary


def _remove_leftovers(parts: Path) -> None:
    """Temporary files and part directories of dead runs in every folder of the store (the lock cleans only its
    own folder); call with the lock held."""
    for folder in sorted(p for p in parts.rglob("*") if p.is_dir() and temporary_owner(p) is None):
        for tmp in leftovers(folder):
            log.info("removing %s, left by an interrupted run", tmp.relative_to(parts))
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _version() -> str:
    from cytoatlas._version import __version__

    return __version__


def _delete_sources(con, ids: list[int]) -> None:
    if not ids:
        return
    for table in ("groups", "genes", "signatures", "sources"):
        con.execute(f"DELETE FROM {table} WHERE source_id IN (SELECT unnest(?))", [ids])
    cells_tables.delete(con, ids)
    compare_tables.delete(con, ids)
    groundtruth_tables.delete(con, ids)
    for name in VALIDATION_TABLES:  # a validation table is replaced whole when its file changes
        table = validation_table(name)
        present = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()[0][0]
        if present and not con.execute("SELECT count(*) FROM sources WHERE step = 'validate' AND kind = ?",
                                       [name]).fetchall()[0][0]:
            con.execute(f"DROP TABLE {table}")


def _ingest(con, todo: list[Candidate], parts: Path, next_id: int, expression: Sequence[str],
            summary: IndexSummary, force: bool) -> int:
    from .ingest import read_file, write_part

    written = 0
    for i, c in enumerate(sorted(todo, key=lambda c: c.rel)):
        t = time.perf_counter()
        sid = next_id + i
        summary.read.append(c.rel)
        if c.step == "validate":
            n_rows, n_cols = _ingest_validation(con, c)
            part, atlas, level = None, None, None
        elif c.step == "compare":
            n_rows, n_cols = compare_tables.ingest(con, c.path, c.rel, c.kind, sid)
            part, atlas, level = None, None, None
        elif c.step == groundtruth_tables.STEP:
            n_rows, n_cols = groundtruth_tables.ingest(con, c.path, c.rel, c.kind, sid)
            part, atlas, level = None, None, None
        elif c.step == "cells":
            n_rows, n_cols = cells_tables.ingest(con, c.path, c.rel, c.kind, sid, c.atlas, c.signature_set)
            part, atlas, level = None, c.atlas, None
        else:
            content = read_file(c.path, c.step)
            atlas, level = content.atlas, content.level
            n_rows, n_cols = content.shape
            part = c.part_name() if c.step == "activity" or content.kind in expression else None
            if part is not None:
                (parts / part).parent.mkdir(parents=True, exist_ok=True)
                if force or not (parts / part).exists():
                    write_part(parts / part, c.step, content, c.path)
                    written += 1
            groups = content.groups.assign(source_id=sid)
            con.register("frame", groups)
            con.execute('INSERT INTO groups SELECT source_id, "row", name, cell_type, sample, donor, n_cells, '
                        "n_boot FROM frame")
            columns = content.columns.assign(source_id=sid)
            con.register("frame", columns)
            if c.step == "pseudobulk":
                con.execute("INSERT INTO genes SELECT source_id, idx, gene, gene_id FROM frame")
            else:
                con.execute('INSERT INTO signatures SELECT source_id, idx, signature, "group", cell_type, '
                            "cytokine FROM frame")
            con.unregister("frame")
        con.execute("INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [sid, c.rel, c.step, c.kind, atlas, level, c.signature_set, c.size, c.mtime_ns, c.checksum,
                     n_rows, n_cols, part, time.strftime("%Y-%m-%dT%H:%M:%S%z")])
        log.info("[%d/%d] %s: %s x %s in %.1f s", i + 1, len(todo), c.rel, f"{n_rows:,}", f"{n_cols:,}",
                 time.perf_counter() - t)
    return written


def _ingest_validation(con, c: Candidate) -> tuple[int, int]:
    import duckdb

    columns, _ = VALIDATION_TABLES[c.kind]
    table = validation_table(c.kind)
    reader = "read_parquet(?)" if c.path.suffix == ".parquet" else "read_csv(?, header = true)"
    present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(c.path)]).fetchall()]
    missing = [col for col in columns if col not in present]
    if missing:
        raise CytoatlasError(f"{c.rel}: validation table {c.kind!r} lacks column(s) {', '.join(missing)} "
                             f"(has {', '.join(present)})")
    casts = ", ".join(f'CAST("{col}" AS {typ}) AS "{col}"' for col, typ in columns.items())
    extra = [col for col in present if col not in columns]
    select = casts + (", " + ", ".join(f'"{col}"' for col in extra) if extra else "")
    con.execute(f"DROP TABLE IF EXISTS {table}")
    try:
        con.execute(f"CREATE TABLE {table} AS SELECT {select} FROM {reader}", [str(c.path)])
    except duckdb.ConversionException as e:
        raise CytoatlasError(f"{c.rel}: a column does not have its contract type: {str(e).splitlines()[0]}") from None
    n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return n, len(present)


def _check_unique(con) -> None:
    """One file per (atlas, level, rows, signature set), per validation table and per comparison: two would be
    ambiguous. (Compare tables of several directories are one table each in the store: their comparisons must
    not overlap.)"""
    dups = con.execute("""
        SELECT step, atlas, level, kind, signature_set, list(path ORDER BY path) FROM sources
        WHERE step NOT IN ('compare', 'groundtruth')
        GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL""").fetchall()
    if dups:
        step, atlas, level, kind, sset, paths = dups[0]
        what = f"validation table {kind!r}" if step == "validate" else \
            f"{step} of atlas {atlas!r} level {level!r} ({kind}{', ' + sset if sset else ''})"
        raise CytoatlasError(f"{what} is in {len(paths)} files: {', '.join(paths)}; index a directory that "
                             f"holds each result once ({len(dups)} such conflict(s))")
    compare_tables.check_unique(con)


def _convenience_views(con, parts: Path) -> None:
    """Tidy ``activity`` and ``expression`` views over every part, for people querying the file with DuckDB.

    They name the parts by absolute path, so they break if the store is moved; the server does not use them.
    """
    for step in ("activity", "expression"):
        con.execute(f"DROP VIEW IF EXISTS {step}")
    files = dict(con.execute("SELECT step, list(part ORDER BY part) FROM sources WHERE part IS NOT NULL "
                             "GROUP BY step").fetchall())
    from .ingest import ACTIVITY_LAYERS, sql_path

    def paths(step: str) -> str:  # a part (a directory): its files
        return "[" + ", ".join(f"'{sql_path(parts / p)}" + (f"{os.sep}*.parquet'" if (parts / p).is_dir() else "'")
                               for p in files[step]) + "]"

    root = sql_path(parts) + os.sep
    # a file's part: the file itself, or the directory of a band's file
    part_of = r"regexp_replace(e.filename, '[\\/]g[0-9]{6}\.parquet$', '')"
    if files.get("activity"):
        con.execute(f"""CREATE VIEW activity AS
            SELECT s.atlas, s.level, s.kind, s.signature_set, g.cell_type, g.sample, sg.signature,
                   {', '.join('e.' + c for c in ACTIVITY_LAYERS)}, e.matched
            FROM read_parquet({paths('activity')}, filename = true) e
            JOIN sources s ON '{root}' || s.part = {part_of}
            JOIN groups g ON g.source_id = s.source_id AND g."row" = e."row"
            JOIN signatures sg ON sg.source_id = s.source_id AND sg.idx = e.sig""")
    if files.get("pseudobulk"):
        con.execute(f"""CREATE VIEW expression AS
            SELECT s.atlas, s.level, s.kind, g.cell_type, g.sample, gn.gene, e.value, e.zscore
            FROM read_parquet({paths('pseudobulk')}, filename = true) e
            JOIN sources s ON '{root}' || s.part = {part_of}
            JOIN groups g ON g.source_id = s.source_id AND g."row" = e."row"
            JOIN genes gn ON gn.source_id = s.source_id AND gn.idx = e.gene""")


def _collect_garbage(db: Path, parts: Path) -> int:
    """Delete the parts the new database does not reference (after it is in place)."""
    with contextlib.closing(open_readonly(db)) as con:
        used = {r[0] for r in con.execute("SELECT part FROM sources WHERE part IS NOT NULL").fetchall()}
    n = 0
    for step in ("activity", "pseudobulk"):
        for p in sorted((parts / step).glob("*")) if (parts / step).is_dir() else ():
            if f"{step}/{p.name}" in used or temporary_owner(p) is not None:  # a live run's, or cleaned
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            n += 1
    return n

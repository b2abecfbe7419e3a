"""Perturbation ground truth in the store: the four tables of ``cytoatlas groundtruth`` (matches, effects,
treatments, summary), each a DuckDB table ``groundtruth_{name}`` gathering the rows of every indexed ground-truth
directory, one ``source_id`` per file (its rows are replaced when its file changes). Their columns and types are
those `cytoatlas groundtruth` writes (:mod:`cytoatlas._groundtruth.tables`); columns beyond them are not kept.
"""

from __future__ import annotations

from pathlib import Path

from cytoatlas._groundtruth.tables import COLUMNS, KEYS, TABLES, column_dtype
from cytoatlas.errors import CytoatlasError

STEP = "groundtruth"
KINDS = TABLES
_DUCKDB_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "object": "VARCHAR"}
# name -> ({column: DuckDB type}, ORDER BY columns)
GROUNDTRUTH_TABLES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    name: ({c: _DUCKDB_TYPES[column_dtype(c)] for c in COLUMNS[name]}, tuple(KEYS[name])) for name in TABLES}
# filterable columns of each table (a query parameter of the same name, equality)
FILTERS: dict[str, tuple[str, ...]] = {
    "matches": ("atlas", "level", "signature_set", "treatment", "signature"),
    "effects": ("atlas", "level", "signature_set", "treatment", "signature", "cell_type"),
    "treatments": ("atlas", "level", "signature_set", "treatment", "signature"),
    "summary": ("atlas", "level", "signature_set"),
}


def table(name: str) -> str:
    """The DuckDB table of ground-truth table ``name`` (a key of :data:`GROUNDTRUTH_TABLES`, never user text)."""
    if name not in GROUNDTRUTH_TABLES:
        raise KeyError(name)
    return f"groundtruth_{name}"


DDL = "".join(f"CREATE TABLE {table(name)} (source_id INTEGER NOT NULL, "
              + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ");\n"
              for name, (columns, _) in GROUNDTRUTH_TABLES.items())


def order(name: str) -> str:
    """ORDER BY clause of a ground-truth table: its keys, then every other column (a total order)."""
    columns, keys = GROUNDTRUTH_TABLES[name]
    return ", ".join(f'"{c}" NULLS FIRST' for c in [*keys, *(c for c in columns if c not in keys)])


def delete(con, ids: list[int]) -> None:
    for name in KINDS:
        con.execute(f"DELETE FROM {table(name)} WHERE source_id IN (SELECT unnest(?))", [ids])


def ingest(con, path: Path, rel: str, kind: str, source_id: int) -> tuple[int, int]:
    """Load one ground-truth table file (Parquet or CSV) into its store table; ``(rows, columns)`` of the file."""
    import duckdb

    columns, _ = GROUNDTRUTH_TABLES[kind]
    reader = "read_parquet(?)" if path.suffix == ".parquet" else "read_csv(?, header = true)"
    present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(path)]).fetchall()]
    missing = [c for c in columns if c not in present]
    if missing:
        raise CytoatlasError(f"{rel}: ground-truth table {kind!r} lacks column(s) {', '.join(missing)} "
                             f"(has {', '.join(present)})")
    casts = ", ".join(f'CAST("{c}" AS {t})' for c, t in columns.items())
    try:
        con.execute(f"INSERT INTO {table(kind)} SELECT ?, {casts} FROM {reader}", [source_id, str(path)])
    except duckdb.ConversionException as e:
        raise CytoatlasError(f"{rel}: a column does not have its contract type: {str(e).splitlines()[0]}") from None
    n = con.execute(f"SELECT count(*) FROM {table(kind)} WHERE source_id = ?", [source_id]).fetchall()[0][0]
    return n, len(present)


def table_query(name: str, filters: dict) -> tuple[str, dict]:
    """SELECT of ground-truth table ``name`` (its contract columns) with the given filters (``None``: none)."""
    columns = GROUNDTRUTH_TABLES[name][0]
    clauses, params = [], {}
    for col in FILTERS[name]:
        if filters.get(col) is not None:
            clauses.append(f'"{col}" = ${col}')
            params[col] = filters[col]
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return f"SELECT {', '.join(repr(c).replace(chr(39), chr(34)) for c in columns)} FROM {table(name)}{where}", params

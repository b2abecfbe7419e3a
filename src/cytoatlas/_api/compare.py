"""Comparison results in the store: the four tables of ``cytoatlas compare`` (differential, association, meta,
untestable), each a DuckDB table gathering the rows of every indexed compare directory, one ``source_id`` per file
(its rows are replaced when its file changes).

Several compare directories may be indexed together (say one per ``--by`` column), but one comparison (an atlas x
level x signature set x column x contrast, see :data:`~cytoatlas._api.schema.COMPARE_UNITS`) must come from one
file: two would be ambiguous, and the index refuses them.
"""

from __future__ import annotations

from pathlib import Path

from cytoatlas.errors import CytoatlasError

from .schema import COMPARE_OPTIONAL, COMPARE_TABLES, COMPARE_UNITS, compare_table

KINDS = tuple(COMPARE_TABLES)

# filterable columns of each table (a query parameter of the same name, equality; meta's ``atlas``: one of its
# ``atlases``), and the tables with an ``fdr`` column take ``fdr_max`` too
FILTERS: dict[str, tuple[str, ...]] = {
    "differential": ("atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by",
                     "contrast", "test"),
    "association": ("atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by",
                    "contrast", "test"),
    "meta": ("analysis", "atlas", "level", "signature_set", "resolution", "cl_id", "cl_name", "signature", "by",
             "contrast"),
    "untestable": ("analysis", "atlas", "level", "signature_set", "cell_type", "by", "contrast"),
}
CONTRAST_FILTERS = ("analysis", "atlas", "level", "signature_set", "by", "contrast")
VOCABULARY = sorted({c for cols in FILTERS.values() for c in cols})
LABELS = {"by": "compared column (by)", "signature_set": "signature set", "cell_type": "cell type",
          "cl_id": "Cell Ontology ID", "cl_name": "Cell Ontology cell type"}  # how a 404 names a filter


def has_fdr(name: str) -> bool:
    return "fdr" in COMPARE_TABLES[name][0]


def delete(con, ids: list[int]) -> None:
    for name in KINDS:
        con.execute(f"DELETE FROM {compare_table(name)} WHERE source_id IN (SELECT unnest(?))", [ids])


def ingest(con, path: Path, rel: str, kind: str, source_id: int) -> tuple[int, int]:
    """Load one compare table file (Parquet or CSV) into its store table; ``(rows, columns)`` of the file.

    The contract's columns are cast to their types; columns beyond them are not kept (the store's table holds
    the rows of several files).
    """
    import duckdb

    columns, _ = COMPARE_TABLES[kind]
    reader = "read_parquet(?)" if path.suffix == ".parquet" else "read_csv(?, header = true)"
    present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(path)]).fetchall()]
    optional = COMPARE_OPTIONAL.get(kind, {})
    missing = [c for c in columns if c not in present and c not in optional]
    if missing:
        raise CytoatlasError(f"{rel}: compare table {kind!r} lacks column(s) {', '.join(missing)} "
                             f"(has {', '.join(present)})")
    # an optional column the file lacks (a comparison written before cross-talk existed) is NULL
    casts = ", ".join(f'CAST("{c}" AS {t})' if c in present else f"CAST(NULL AS {t})" for c, t in columns.items())
    try:
        con.execute(f"INSERT INTO {compare_table(kind)} SELECT ?, {casts} FROM {reader}", [source_id, str(path)])
    except duckdb.ConversionException as e:
        raise CytoatlasError(f"{rel}: a column does not have its contract type: {str(e).splitlines()[0]}") from None
    n = con.execute(f"SELECT count(*) FROM {compare_table(kind)} WHERE source_id = ?", [source_id]).fetchall()[0][0]
    return n, len(present)


def check_unique(con) -> None:
    """Each comparison (its :data:`COMPARE_UNITS`) in one file only: rows of two would be ambiguous."""
    for name in KINDS:
        unit = ", ".join(f't."{c}"' for c in COMPARE_UNITS[name])
        dups = con.execute(f"""
            SELECT {unit}, list(DISTINCT s.path ORDER BY s.path) AS paths
            FROM {compare_table(name)} t JOIN sources s USING (source_id)
            GROUP BY ALL HAVING count(DISTINCT t.source_id) > 1 ORDER BY ALL""").fetchall()
        if dups:
            *values, paths = dups[0]
            what = ", ".join(f"{c} {v!r}" for c, v in zip(COMPARE_UNITS[name], values, strict=True))
            raise CytoatlasError(f"compare table {name!r}: the comparison {what} is in {len(paths)} files: "
                                 f"{', '.join(paths)}; index compare directories that hold each comparison once "
                                 f"({len(dups)} such conflict(s))")


def catalog(con) -> dict[str, dict[str, set[str]]]:
    """``{table: {column: values}}`` of the filterable columns of every compare table with an indexed file, and
    ``"*"``: each column's values over all those tables (the names a filter may take)."""
    present = {r[0] for r in con.execute("SELECT DISTINCT kind FROM sources WHERE step = 'compare'").fetchall()}
    out: dict[str, dict[str, set[str]]] = {}
    every: dict[str, set[str]] = {c: set() for c in VOCABULARY}
    for name in KINDS:
        if name not in present:
            continue
        columns = COMPARE_TABLES[name][0]
        out[name] = {}
        for col in FILTERS[name]:
            if col == "atlas" and col not in columns:  # meta: the atlases each row pools
                sql = (f"SELECT DISTINCT unnest(string_split(atlases, ',')) FROM {compare_table(name)} "
                       "WHERE atlases IS NOT NULL")
            else:
                sql = f'SELECT DISTINCT "{col}" FROM {compare_table(name)} WHERE "{col}" IS NOT NULL'
            values = {str(r[0]) for r in con.execute(sql).fetchall()}
            out[name][col] = values
            every[col] |= values
        if name in ("differential", "association"):  # the analysis its rows are (for /compare/contrasts)
            every["analysis"].add(name)
    if out:
        out["*"] = every
    return out


def table_query(name: str, filters: dict, fdr_max: float | None) -> tuple[str, dict]:
    """SELECT of compare table ``name`` (its contract columns) with the given filters (``None``: no filter)."""
    columns = COMPARE_TABLES[name][0]
    clauses, params = [], {}
    for col in FILTERS[name]:
        value = filters.get(col)
        if value is None:
            continue
        params[col] = value
        if col == "atlas" and col not in columns:
            clauses.append("list_contains(string_split(atlases, ','), $atlas)")
        else:
            clauses.append(f'"{col}" = ${col}')
    if fdr_max is not None and has_fdr(name):
        clauses.append("fdr <= $fdr_max")
        params["fdr_max"] = fdr_max
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    select = ", ".join(f'"{c}"' for c in columns)
    return f"SELECT {select} FROM {compare_table(name)}{where}", params


# the comparisons of the differential and association tables (with the ones whose every cell type was untestable)
CONTRASTS = f"""
WITH tested AS (
    SELECT 'differential' AS analysis, "by", contrast, atlas, level, signature_set, min(test) AS test,
           min(reference) AS reference, count(*) AS n_rows, count(DISTINCT cell_type) AS n_cell_types,
           count(DISTINCT signature) AS n_signatures, count(*) FILTER (fdr < 0.05) AS n_significant
    FROM {compare_table('differential')} GROUP BY ALL
    UNION ALL
    SELECT 'association', "by", contrast, atlas, level, signature_set, min(test), NULL, count(*),
           count(DISTINCT cell_type), count(DISTINCT signature), count(*) FILTER (fdr < 0.05)
    FROM {compare_table('association')} GROUP BY ALL),
untested AS (
    SELECT analysis, "by", contrast, atlas, level, signature_set, count(*) AS n_untestable
    FROM {compare_table('untestable')} GROUP BY ALL)
SELECT * FROM (
    SELECT coalesce(t.analysis, u.analysis) AS analysis, coalesce(t."by", u."by") AS "by",
           coalesce(t.contrast, u.contrast) AS contrast, coalesce(t.atlas, u.atlas) AS atlas,
           coalesce(t.level, u.level) AS level, coalesce(t.signature_set, u.signature_set) AS signature_set,
           t.test, t.reference, coalesce(t.n_rows, 0) AS n_rows, coalesce(t.n_cell_types, 0) AS n_cell_types,
           coalesce(t.n_signatures, 0) AS n_signatures, coalesce(t.n_significant, 0) AS n_significant,
           coalesce(u.n_untestable, 0) AS n_untestable
    FROM tested t FULL OUTER JOIN untested u
      ON t.analysis = u.analysis AND t."by" = u."by" AND t.contrast = u.contrast AND t.atlas = u.atlas
     AND t.level = u.level AND t.signature_set = u.signature_set)"""
CONTRASTS_ORDER = 'analysis, "by", contrast, atlas, level, signature_set'


def contrasts_query(filters: dict) -> tuple[str, dict]:
    clauses, params = [], {}
    for col in CONTRAST_FILTERS:
        if filters.get(col) is not None:
            clauses.append(f'"{col}" = ${col}')
            params[col] = filters[col]
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return CONTRASTS + where, params

"""Per-cell results in the store: each atlas x signature set's per-label summary and embedding subsample
(``cytoatlas cells``), as two tables, one row group per source file (replaced when its file changes).

The activity files themselves (cells x signatures, GBs) are not copied into the store; the summary and the
embedding subsample are what the API and the web page serve.
"""

from __future__ import annotations

from pathlib import Path

from cytoatlas.errors import CytoatlasError

KINDS = ("summary", "embedding")
SUMMARY_COLUMNS = {"level": "VARCHAR", "label": "VARCHAR", "signature": "VARCHAR", "n_cells": "BIGINT",
                   "mean": "DOUBLE", "sd": "DOUBLE", "q05": "DOUBLE", "q25": "DOUBLE", "q50": "DOUBLE",
                   "q75": "DOUBLE", "q95": "DOUBLE", "frac_abs_gt2": "DOUBLE", "n_quantile_cells": "BIGINT"}
SUMMARY_ORDER = "level, label, signature"
EMBEDDING_ORDER = "idx"

DDL = f"""
CREATE TABLE cells_summary (source_id INTEGER NOT NULL, atlas VARCHAR, signature_set VARCHAR,
    {', '.join(f'"{c}" {t}' for c, t in SUMMARY_COLUMNS.items())});
-- the embedding subsample, long: one row per (cell, signature drawn); label = the cell's label at the first level
CREATE TABLE cells_embedding (source_id INTEGER NOT NULL, atlas VARCHAR, signature_set VARCHAR, idx BIGINT,
    cell VARCHAR, x DOUBLE, y DOUBLE, label VARCHAR, signature VARCHAR, z DOUBLE);
"""
TABLES = {"summary": "cells_summary", "embedding": "cells_embedding"}


def delete(con, ids: list[int]) -> None:
    for table in TABLES.values():
        con.execute(f"DELETE FROM {table} WHERE source_id IN (SELECT unnest(?))", [ids])


def ingest(con, path: Path, rel: str, kind: str, source_id: int, atlas: str, signature_set: str) -> tuple[int, int]:
    """Load one summary or embedding CSV into its table; ``(rows, columns)`` of the file."""
    present = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_csv(?, header = true)", [str(path)]).fetchall()]
    args = [source_id, atlas, signature_set, str(path)]
    if kind == "summary":
        missing = [c for c in SUMMARY_COLUMNS if c not in present]
        if missing:
            raise CytoatlasError(f"{rel}: cells summary lacks column(s) {', '.join(missing)}")
        casts = ", ".join(f'CAST("{c}" AS {t})' for c, t in SUMMARY_COLUMNS.items())
        con.execute(f"INSERT INTO cells_summary SELECT ?, ?, ?, {casts} FROM read_csv(?, header = true)", args)
    else:
        zs = [c for c in present if c.startswith("z:")]
        labels = [c for c in present if c.startswith("label:")]
        if not {"cell", "x", "y"} <= set(present) or not zs:
            raise CytoatlasError(f"{rel}: a cells embedding table needs columns cell, x, y and z:<signature>")
        label = f'CAST("{labels[0]}" AS VARCHAR)' if labels else "NULL"
        unpivot = ", ".join(f'"{c}"' for c in zs)
        con.execute(f"""INSERT INTO cells_embedding
            SELECT ?, ?, ?, idx, cell, x, y, label, substr(name, 3), CAST(value AS DOUBLE) FROM (
                UNPIVOT (SELECT row_number() OVER () - 1 AS idx, CAST(cell AS VARCHAR) AS cell,
                                CAST(x AS DOUBLE) AS x, CAST(y AS DOUBLE) AS y, {label} AS label, {unpivot}
                         FROM read_csv(?, header = true))
                ON {unpivot} INTO NAME name VALUE value)""", args)
    n = con.execute(f"SELECT count(*) FROM {TABLES[kind]} WHERE source_id = ?", [source_id]).fetchall()[0][0]
    return n, len(present)


def catalog(con) -> dict[tuple[str, str], dict[str, set[str]]]:
    """``{(atlas, set): {kind: signatures}}`` of the per-cell tables."""
    out: dict[tuple[str, str], dict[str, set[str]]] = {}
    for kind, table in TABLES.items():
        for atlas, sset, sig in con.execute(f"SELECT DISTINCT atlas, signature_set, signature FROM {table}").fetchall():
            out.setdefault((atlas, sset), {}).setdefault(kind, set()).add(sig)
    return out


SUMMARY_FILTERS = ("level", "label", "signature")


def summary_query(filters: dict) -> tuple[str, dict]:
    clauses = ["atlas = $atlas", "signature_set = $signature_set"]
    params = {k: filters[k] for k in ("atlas", "signature_set")}
    for col in SUMMARY_FILTERS:
        if filters.get(col) is not None:
            clauses.append(f'"{col}" = ${col}')
            params[col] = filters[col]
    cols = ", ".join(f'"{c}"' for c in SUMMARY_COLUMNS)
    return f"SELECT {cols} FROM cells_summary WHERE {' AND '.join(clauses)}", params


def embedding_query(atlas: str, signature_set: str, signature: str) -> tuple[str, dict]:
    return ("SELECT idx, cell, x, y, label, z FROM cells_embedding WHERE atlas = $atlas AND signature_set = "
            "$signature_set AND signature = $signature",
            {"atlas": atlas, "signature_set": signature_set, "signature": signature})

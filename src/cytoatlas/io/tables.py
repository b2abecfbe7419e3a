"""Tidy tables (validation, comparisons) written as CSV and Parquet, each atomically (temporary name, fsync, rename).

Parquet goes through DuckDB, which scans a pandas frame natively (no pyarrow needed).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cytoatlas.io.durable import atomic_path, write_text_atomic
from cytoatlas.io.layout import table_paths


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """``df`` to ``path`` as Parquet, atomically."""
    import duckdb

    with atomic_path(path) as tmp:
        con = duckdb.connect()
        try:
            con.register("frame", df)
            con.execute(f"COPY frame TO '{str(tmp).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
        finally:
            con.close()
    return path


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as a DataFrame (read by DuckDB: no pyarrow needed)."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(f"SELECT * FROM read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')").df()
    finally:
        con.close()


def write_table(df: pd.DataFrame, directory: Path, name: str) -> list[Path]:
    """``directory/NAME.csv`` and ``directory/NAME.parquet``."""
    csv, parquet = table_paths(directory, name)
    write_text_atomic(csv, df.to_csv(index=False))
    return [csv, write_parquet(df, parquet)]

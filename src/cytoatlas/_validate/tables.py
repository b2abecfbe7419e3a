"""Tidy tables written as CSV and Parquet, each atomically (temporary name, fsync, rename).

Parquet goes through DuckDB, which scans a pandas frame natively (no pyarrow needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cytoatlas.io.manifest import replace_durably, write_text_atomic


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """``df`` to ``path`` as Parquet, atomically."""
    import duckdb

    tmp = _tmp(path)
    try:
        con = duckdb.connect()
        try:
            con.register("frame", df)
            con.execute(f"COPY frame TO '{str(tmp).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
        finally:
            con.close()
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_parquet(path: Path) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(f"SELECT * FROM read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')").df()
    finally:
        con.close()


def write_table(df: pd.DataFrame, directory: Path, name: str) -> list[Path]:
    """``directory/NAME.csv`` and ``directory/NAME.parquet``."""
    csv = directory / f"{name}.csv"
    write_text_atomic(csv, df.to_csv(index=False))
    return [csv, write_parquet(df, directory / f"{name}.parquet")]

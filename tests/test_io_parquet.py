"""The streaming Parquet writer, checked by reading its files back with DuckDB (an independent reader)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.parquet import ParquetWriter

COLUMNS = {"row": "int32", "gene": "int32", "big": "int64", "value": "float32", "score": "float64"}


def _block(rng, start: int, n: int) -> dict[str, np.ndarray]:
    value = rng.gamma(0.3, 2.0, n).astype(np.float32)
    value[value < 0.4] = 0
    score = rng.normal(size=n)
    score[rng.random(n) < 0.05] = np.nan  # NULL, as DuckDB stores a data frame's NaN
    return {"row": np.arange(start, start + n, dtype=np.int32) % 97,
            "gene": (np.arange(start, start + n, dtype=np.int32) // 1000),
            "big": np.arange(start, start + n, dtype=np.int64) * 3_000_000_000, "value": value, "score": score}


def test_what_is_written_is_what_duckdb_reads(tmp_path) -> None:
    rng = np.random.default_rng(3)
    blocks = [_block(rng, 0, 25_000), _block(rng, 25_000, 7), _block(rng, 25_007, 12_345)]
    path = tmp_path / "t.parquet"
    with ParquetWriter(path, COLUMNS, row_group_size=4_000) as w:
        for b in blocks:
            w.write(b)
    assert w.num_rows == 37_352
    want = {k: np.concatenate([b[k] for b in blocks]) for k in COLUMNS}
    con = duckdb.connect()
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{path}')").fetchall())
    assert types == {"row": "INTEGER", "gene": "INTEGER", "big": "BIGINT", "value": "FLOAT", "score": "DOUBLE"}
    got = con.execute(f"SELECT * FROM '{path}'").fetchnumpy()  # file order
    for k in ("row", "gene", "big", "value"):
        assert np.array_equal(np.asarray(got[k]), want[k]), k
    nan = np.isnan(want["score"])
    score = got["score"]
    assert np.array_equal(np.ma.getmaskarray(score), nan)  # NaN came back as NULL, nothing else did
    assert np.array_equal(np.asarray(score)[~nan], want["score"][~nan])
    # row groups: 7 of the first write, 1, 4 of the last; integer statistics let a filter skip row groups
    stats = con.execute(f"""SELECT row_group_id, stats_min_value, stats_max_value, row_group_num_rows
                            FROM parquet_metadata('{path}') WHERE path_in_schema = 'gene' ORDER BY 1""").fetchall()
    assert [r[3] for r in stats] == [4_000] * 6 + [1_000, 7, 4_000, 4_000, 4_000, 345]
    assert [(int(r[1]), int(r[2])) for r in stats[:2]] == [(0, 3), (4, 7)]
    plan = con.execute(f"EXPLAIN ANALYZE SELECT count(*) FROM '{path}' WHERE gene = 5").fetchall()[0][1]
    assert "Row Groups Scanned: 1 / 12" in plan


def test_bad_columns_are_refused(tmp_path) -> None:
    with pytest.raises(CytoatlasError, match="must be one of int32, int64, float32, float64, bool, got 'str'"):
        ParquetWriter(tmp_path / "a.parquet", {"a": "str"})
    with ParquetWriter(tmp_path / "b.parquet", {"a": "int32", "b": "float32"}) as w:
        with pytest.raises(CytoatlasError, match="no values for Parquet column"):
            w.write({"a": np.zeros(3, np.int32)})
        with pytest.raises(CytoatlasError, match="one length"):
            w.write({"a": np.zeros(3, np.int32), "b": np.zeros(2, np.float32)})
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{tmp_path / 'b.parquet'}'").fetchall() == [(0,)]


def test_boolean_columns_and_columns_given_as_none(tmp_path) -> None:
    rng = np.random.default_rng(5)
    flags = rng.random(10_001) < 0.3
    path = tmp_path / "b.parquet"
    with ParquetWriter(path, {"i": "int32", "flag": "bool", "absent": "float64"}, row_group_size=3_000) as w:
        w.write({"i": np.arange(10_001, dtype=np.int32), "flag": flags, "absent": None})
    con = duckdb.connect()
    got = con.execute(f"SELECT i, flag, absent FROM '{path}'").fetchall()
    assert [r[1] for r in got] == flags.tolist() and [r[0] for r in got] == list(range(10_001))
    assert all(r[2] is None for r in got)
    with (ParquetWriter(tmp_path / "c.parquet", {"i": "int32", "f": "float32"}) as w,
          pytest.raises(CytoatlasError, match="column i holds integers: it cannot be NULL")):
        w.write({"i": None, "f": np.zeros(3, np.float32)})


def test_uncompressed_columns_read_back_the_same(tmp_path) -> None:
    """Columns stored without zstd (NaN as NULL too, booleans, integers) are read as written, and the file says
    which column chunks are compressed."""
    rng = np.random.default_rng(5)
    blocks = [_block(rng, 0, 9_000), _block(rng, 9_000, 3_001)]
    flags = [rng.random(9_000) < 0.5, rng.random(3_001) < 0.5]
    columns = {**COLUMNS, "flag": "bool"}
    path = tmp_path / "u.parquet"
    with ParquetWriter(path, columns, row_group_size=2_500, uncompressed=("score", "gene", "flag")) as w:
        for b, f in zip(blocks, flags, strict=True):
            w.write({**b, "flag": f})
    con = duckdb.connect()
    got = con.execute(f"SELECT * FROM '{path}'").fetchnumpy()
    want = {k: np.concatenate([b[k] for b in blocks]) for k in COLUMNS}
    for k in ("row", "gene", "big", "value"):
        assert np.array_equal(np.asarray(got[k]), want[k]), k
    assert np.array_equal(np.asarray(got["flag"]), np.concatenate(flags))
    nan = np.isnan(want["score"])
    assert np.array_equal(np.ma.getmaskarray(got["score"]), nan)
    assert np.array_equal(np.asarray(got["score"])[~nan], want["score"][~nan])
    codecs = dict(con.execute(f"SELECT DISTINCT path_in_schema, compression FROM parquet_metadata('{path}')")
                  .fetchall())
    assert codecs == {"row": "ZSTD", "gene": "UNCOMPRESSED", "big": "ZSTD", "value": "ZSTD",
                      "score": "UNCOMPRESSED", "flag": "UNCOMPRESSED"}
    assert con.execute(f"SELECT count(*) FROM '{path}' WHERE gene = 3").fetchall()[0][0] == 1_000
    with pytest.raises(CytoatlasError, match="uncompressed column.* nope are not among"):
        ParquetWriter(tmp_path / "v.parquet", COLUMNS, uncompressed=("nope",))

"""Comparison tables (`cytoatlas compare`) in the store and the API: served exactly as written, filtered as pandas
filters them, counted per comparison for the page's picker; several compare directories indexed together, an
overlapping comparison refused, CSV-only directories read the same, unknown names 404 with the valid values."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from _api_helpers import compare_frames, write_compare
from fastapi.testclient import TestClient

import cytoatlas
from cytoatlas._api.app import create_app
from cytoatlas._api.schema import COMPARE_TABLES
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.manifest import record, update_manifest


@pytest.fixture(scope="module")
def client(api_db: Path) -> TestClient:
    return TestClient(create_app(api_db))


def _written(directory: Path, name: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute("SELECT * FROM read_parquet(?)", [str(directory / f"{name}.parquet")]).df()


def _plain(value):
    """A frame's value as JSON carries it: NaN / NA is null, numpy scalars are Python numbers."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


def _key(name: str):
    keys = COMPARE_TABLES[name][1]
    return lambda r: tuple((r[k] is not None, r[k]) for k in keys)


def _all(client: TestClient, url: str, **params) -> list[dict]:
    page = client.get(url, params={**params, "limit": 50_000})
    assert page.status_code == 200, page.text
    assert page.json()["next_offset"] is None
    return page.json()["rows"]


# ---- served exactly ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(COMPARE_TABLES))
def test_compare_tables_are_served_exactly(client: TestClient, api_results: Path, name: str) -> None:
    frame = _written(api_results / "compare", name)
    rows = _all(client, f"/api/v1/compare/{name}")
    assert len(rows) == len(frame) > 0
    assert all(list(r) == list(COMPARE_TABLES[name][0]) for r in rows)  # the contract's columns, in its order
    key = _key(name)
    assert [key(r) for r in rows] == sorted(key(r) for r in rows)  # served in key order
    assert len({key(r) for r in rows}) == len(rows)  # the keys identify a row
    assert sorted(rows, key=key) == sorted(_records(frame), key=key)  # every value, exactly (float64 round trip)


def test_types_follow_the_contract(client: TestClient) -> None:
    row = _all(client, "/api/v1/compare/differential", signature="IL10", cell_type="Myeloid", atlas="alpha")[0]
    assert row["paired"] is False and isinstance(row["n_group"], int) and isinstance(row["effect"], float)
    assert row["covariates"] == "age,sex" and row["test"] == "ols"
    meta = _all(client, "/api/v1/compare/meta", cl_name="myeloid", signature="IL10", level="L1",
                analysis="differential")
    assert len(meta) == 1 and meta[0]["n_atlases"] == 2 and meta[0]["atlases"] == "alpha,beta"


# ---- filters -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "params"), [
    ("differential", {"atlas": "beta", "level": "L1"}),
    ("differential", {"cell_type": "Myeloid", "signature": "IL10"}),
    ("differential", {"cl_name": "myeloid", "level": "L2", "by": "treatment", "contrast": "treated vs untreated"}),
    ("differential", {"fdr_max": 0.2}),
    ("differential", {"fdr_max": 0.0, "test": "ols"}),
    ("association", {"atlas": "alpha", "signature_set": "cytosig", "fdr_max": 0.5}),
    ("association", {"by": "bmi", "cl_name": "nk"}),
    ("meta", {"analysis": "association", "signature": "IFNG"}),
    ("meta", {"level": "L2", "fdr_max": 0.3}),
    ("untestable", {"analysis": "differential", "atlas": "beta"}),
    ("untestable", {"cell_type": "NK cells", "by": "bmi"}),
])
def test_filters_select_what_pandas_selects(client: TestClient, api_results: Path, name: str, params: dict) -> None:
    frame = _written(api_results / "compare", name)
    mask = np.ones(len(frame), dtype=bool)
    for col, value in params.items():
        mask &= (frame["fdr"] <= value).to_numpy() if col == "fdr_max" else (frame[col] == value).to_numpy()
    want = sorted(_records(frame[mask]), key=_key(name))
    got = _all(client, f"/api/v1/compare/{name}", **params)
    assert got == want
    assert got or params == {"fdr_max": 0.0, "test": "ols"}  # no p is 0: an empty page, not a 404
    if "fdr_max" in params:  # a missing FDR is not <= anything
        assert all(r["fdr"] is not None for r in got)


def test_meta_atlas_filter_keeps_the_rows_pooling_it(client: TestClient, api_results: Path) -> None:
    frame = _written(api_results / "compare", "meta")
    for atlas in ("alpha", "beta"):
        got = _all(client, "/api/v1/compare/meta", atlas=atlas)
        assert len(got) == frame["atlases"].str.split(",").map(lambda a, x=atlas: x in a).sum() > 0


def test_contrasts_count_each_comparison(client: TestClient, api_results: Path) -> None:
    rows = _all(client, "/api/v1/compare/contrasts")
    want = []
    untestable = _written(api_results / "compare", "untestable")
    for analysis in ("association", "differential"):
        frame = _written(api_results / "compare", analysis)
        for (col, contrast, atlas, level, sset), part in frame.groupby(
                ["by", "contrast", "atlas", "level", "signature_set"], sort=True):
            u = untestable[(untestable.analysis == analysis) & (untestable["by"] == col) & (untestable.atlas == atlas)
                           & (untestable.level == level) & (untestable.contrast == contrast)]
            want.append({"analysis": analysis, "by": col, "contrast": contrast, "atlas": atlas, "level": level,
                         "signature_set": sset, "test": "ols",
                         "reference": "untreated" if analysis == "differential" else None, "n_rows": len(part),
                         "n_cell_types": part["cell_type"].nunique(), "n_signatures": part["signature"].nunique(),
                         "n_significant": int((part["fdr"] < 0.05).sum()), "n_untestable": len(u)})
    assert rows == want
    assert sum(r["n_untestable"] for r in rows) == 2 and any(r["n_significant"] for r in rows)
    only = _all(client, "/api/v1/compare/contrasts", analysis="differential", atlas="beta", level="L1")
    assert only == [r for r in want if (r["analysis"], r["atlas"], r["level"]) == ("differential", "beta", "L1")]


# ---- errors, formats, pages -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "params", "valid"), [
    ("/api/v1/compare/differential", {"atlas": "gamma"}, ["alpha", "beta"]),
    ("/api/v1/compare/differential", {"by": "disease"}, ["bmi", "treatment"]),
    ("/api/v1/compare/meta", {"analysis": "survival"}, ["association", "differential"]),
    ("/api/v1/compare/untestable", {"contrast": "treated"}, ["bmi", "treated vs untreated"]),
    ("/api/v1/compare/contrasts", {"level": "L9"}, ["L1", "L2"]),
    ("/api/v1/compare/association", {"test": "t"}, ["ols"]),
])
def test_unknown_names_give_404_listing_valid_values(client: TestClient, url: str, params: dict,
                                                     valid: list[str]) -> None:
    r = client.get(url, params=params)
    assert r.status_code == 404, r.text
    assert r.json()["valid"] == valid and all(v in r.json()["detail"] for v in valid)


def test_a_name_known_to_another_compare_table_is_no_404(client: TestClient) -> None:
    # "b" is harmonised in differential and meta alike; "NK cells" of beta L1 only in untestable: empty, not 404
    r = client.get("/api/v1/compare/differential", params={"atlas": "beta", "level": "L1", "cell_type": "NK cells"})
    assert r.status_code == 200 and r.json()["total"] == 0


@pytest.mark.parametrize("params", [{"fdr_max": 2}, {"fdr_max": -0.1}, {"fdr_max": "low"}, {"atlas": "a\x00"},
                                    {"limit": 0}, {"format": "xml"}])
def test_malformed_parameters_give_422(client: TestClient, params: dict) -> None:
    r = client.get("/api/v1/compare/differential", params=params)
    assert r.status_code == 422, r.text


def test_pages_csv_and_parquet_carry_the_same_rows(client: TestClient) -> None:
    url = "/api/v1/compare/differential"
    full = _all(client, url)
    rows, offset = [], 0
    while offset is not None:
        page = client.get(url, params={"limit": 13, "offset": offset}).json()
        assert page["total"] == len(full)
        rows += page["rows"]
        offset = page["next_offset"]
    assert rows == full
    r = client.get(url, params={"limit": 9, "offset": 4, "format": "csv"})
    assert r.headers["x-total-count"] == str(len(full)) and r.headers["x-next-offset"] == "13"
    csv = pd.read_csv(io.StringIO(r.text), float_precision="round_trip", keep_default_na=False, na_values=[""])
    assert list(csv.columns) == list(COMPARE_TABLES["differential"][0])
    assert csv["effect"].tolist() == [x["effect"] for x in full[4:13]]
    assert csv["signature"].tolist() == [x["signature"] for x in full[4:13]]
    r = client.get(url, params={"limit": 9, "offset": 4, "format": "parquet"})
    assert r.content[:4] == b"PAR1"
    path = client.app.state.reader.db.parent / "compare_page.parquet"
    path.write_bytes(r.content)
    with duckdb.connect() as con:
        pq = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
    path.unlink()
    assert pq["effect"].tolist() == [x["effect"] for x in full[4:13]]
    assert pq["paired"].tolist() == [x["paired"] for x in full[4:13]]


def test_openapi_examples_come_from_the_comparisons(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/compare/differential"]["get"]["parameters"]}
    assert params["by"]["example"] == "treatment" and params["contrast"]["example"] == "treated vs untreated"
    assert params["cl_name"]["example"] == "b" and params["test"]["example"] == "ols"
    assert params["fdr_max"]["schema"]["anyOf"][0]["maximum"] == 1
    assert "cell_type" not in {p["name"] for p in spec["paths"]["/api/v1/compare/meta"]["get"]["parameters"]}


# ---- the store -----------------------------------------------------------------------------------------------

def test_several_compare_directories_are_served_together(tmp_path: Path) -> None:
    out = tmp_path / "results"
    first = write_compare(out / "treatment", compare_frames(["alpha", "beta"], ["L1"]))
    second = write_compare(out / "disease", compare_frames(["alpha", "beta"], ["L1"], seed=1, by="disease",
                                                           covariate="age"))
    db = tmp_path / "store.duckdb"
    summary = cytoatlas.index(out, db)
    assert sorted(summary.read) == sorted(f"{d}/{n}.parquet" for d in ("treatment", "disease") for n in COMPARE_TABLES)
    client = TestClient(create_app(db))
    rows = _all(client, "/api/v1/compare/differential")
    assert len(rows) == len(first["differential"]) + len(second["differential"])
    assert {r["by"] for r in rows} == {"treatment", "disease"}
    assert {r["by"] for r in _all(client, "/api/v1/compare/contrasts")} == {"treatment", "disease", "bmi", "age"}
    assert _all(client, "/api/v1/compare/association", by="age") == sorted(
        _records(_written(out / "disease", "association")), key=_key("association"))
    assert client.get("/api/v1/atlases").json()["total"] == 0  # comparisons alone are a store too
    # unchanged: nothing read; one table rewritten: it alone is read again, and served
    assert cytoatlas.index(out, db).read == []
    changed = second["meta"].assign(effect=second["meta"]["effect"] + 1)
    write_compare(out / "disease", {"meta": changed})
    assert cytoatlas.index(out, db).read == ["disease/meta.parquet"]
    got = [r for r in _all(client, "/api/v1/compare/meta") if r["by"] in ("disease", "age")]
    assert sorted(r["effect"] for r in got) == sorted(changed["effect"])
    # a directory removed: its rows go, and its names are unknown
    shutil.rmtree(out / "disease")
    assert sorted(cytoatlas.index(out, db).removed) == sorted(f"disease/{n}.parquet" for n in COMPARE_TABLES)
    assert len(_all(client, "/api/v1/compare/differential")) == len(first["differential"])
    r = client.get("/api/v1/compare/differential", params={"by": "disease"})
    assert r.status_code == 404 and r.json()["valid"] == ["bmi", "treatment"]


def test_a_comparison_in_two_directories_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "results"
    write_compare(out / "run1", compare_frames(["alpha", "beta"], ["L1"]))
    write_compare(out / "run2", compare_frames(["beta"], ["L1", "L2"], seed=3))  # beta L1 treatment again
    with pytest.raises(CytoatlasError, match=r"compare table 'differential': the comparison atlas 'beta', level 'L1', "
                                             r"signature_set 'cytosig', by 'treatment', contrast 'treated vs "
                                             r"untreated' is in 2 files: run1/differential.parquet, "
                                             r"run2/differential.parquet"):
        cytoatlas.index(out, tmp_path / "store.duckdb")
    assert not (tmp_path / "store.duckdb").exists()


def test_csv_only_tables_read_the_same_and_figures_are_ignored(tmp_path: Path) -> None:
    tables = compare_frames(["alpha", "beta"], ["L1", "L2"])
    served = {}
    for fmt in ("parquet", "csv"):
        out = tmp_path / fmt / "results"
        write_compare(out / "compare", tables, formats=(fmt,))
        figure = out / "compare" / "figures" / "volcano__alpha__L1__cytosig__treated_vs_untreated.png"
        figure.parent.mkdir()
        figure.write_bytes(b"\x89PNG")
        update_manifest(out / "compare", {"figures/" + figure.name: record(figure, step="compare", parameters={},
                                                                            inputs=[], kind="figure")})
        db = tmp_path / fmt / "store.duckdb"
        assert sorted(cytoatlas.index(out, db).read) == sorted(f"compare/{n}.{fmt}" for n in COMPARE_TABLES)
        client = TestClient(create_app(db))
        served[fmt] = {n: _all(client, f"/api/v1/compare/{n}") for n in COMPARE_TABLES}
    for name in COMPARE_TABLES:
        csv, parquet = served["csv"][name], served["parquet"][name]
        assert len(csv) == len(parquet) > 0
        for a, b in zip(csv, parquet, strict=True):
            # CSV has no empty string apart from a missing value; floats round-trip exactly (pandas writes repr)
            assert a == {k: (None if v == "" else v) for k, v in b.items()}, name


def test_a_compare_table_must_have_its_contract_columns(tmp_path: Path) -> None:
    out = tmp_path / "results"
    tables = compare_frames(["alpha"], ["L1"])
    tables["differential"] = tables["differential"].drop(columns=["fdr_cell_type"])
    write_compare(out / "compare", tables)
    with pytest.raises(CytoatlasError, match=r"compare/differential.parquet: compare table 'differential' lacks "
                                             r"column\(s\) fdr_cell_type \(has atlas, level, "):
        cytoatlas.index(out, tmp_path / "store.duckdb")


def test_without_comparisons_the_endpoints_say_how_to_get_them(tmp_path: Path, api_results: Path) -> None:
    out = tmp_path / "results"
    shutil.copytree(api_results / "validation", out / "validation")
    client = TestClient(create_app(cytoatlas.index(out, tmp_path / "store.duckdb").db))
    for name in (*COMPARE_TABLES, "contrasts"):
        r = client.get(f"/api/v1/compare/{name}")
        assert r.status_code == 404 and "run `cytoatlas compare`, then `cytoatlas index`" in r.json()["detail"]


def test_a_table_written_empty_is_served_empty(tmp_path: Path) -> None:
    out = tmp_path / "results"
    tables = compare_frames(["alpha"], ["L1"])  # one atlas: no meta rows
    tables["untestable"] = tables["untestable"].iloc[:0]  # and every cell type testable
    assert tables["meta"].empty
    write_compare(out / "compare", tables)
    client = TestClient(create_app(cytoatlas.index(out, tmp_path / "store.duckdb").db))
    for name in ("meta", "untestable"):
        r = client.get(f"/api/v1/compare/{name}")
        assert r.status_code == 200 and r.json()["total"] == 0, name
        csv = client.get(f"/api/v1/compare/{name}", params={"format": "csv"}).text
        assert csv.strip() == ",".join(COMPARE_TABLES[name][0])  # the header, for an empty table too
    assert {r["n_untestable"] for r in _all(client, "/api/v1/compare/contrasts")} == {0}


def test_cross_talk_is_served_and_absent_before_it_existed(client: TestClient, tmp_path: Path) -> None:
    rows = _all(client, "/api/v1/compare/differential", signature="IL10", atlas="alpha")
    assert rows and {r["also_significant"] for r in rows} == {"IL27 (r 0.62)"}
    assert {r["n_correlated_significant"] for r in rows} == {1}
    # a comparison written before compare appended its cross-talk columns: indexed, the columns null
    tables = compare_frames(["alpha", "beta"], ["L1"])
    for name in ("differential", "association"):
        tables[name] = tables[name].drop(columns=["correlated", "also_significant", "n_correlated_significant"])
    write_compare(tmp_path / "results" / "compare", tables)
    cytoatlas.index(tmp_path / "results", tmp_path / "store.duckdb")
    old = TestClient(create_app(tmp_path / "store.duckdb"))
    rows = _all(old, "/api/v1/compare/association", signature="IL10")
    assert rows and all(r["correlated"] is None and r["n_correlated_significant"] is None for r in rows)

"""The results store and its HTTP API: answers equal the h5ad outputs and the validation tables they came from;
unknown names give 404 with the valid values, malformed parameters 422; injection-looking input is inert; pages
are stable; CSV and Parquet carry the same rows; the token guards every route."""

from __future__ import annotations

import io
import math
from pathlib import Path

import anndata as ad
import duckdb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from cytoatlas._api.app import create_app
from cytoatlas._api.schema import VALIDATION_TABLES

LAYERS = {"z": None, "beta": "beta", "se": "se", "pvalue": "pvalue", "z_ci_low": "z_ci_low",
          "z_ci_high": "z_ci_high", "z_boot_sd": "z_boot_sd"}
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def client(api_db: Path) -> TestClient:
    return TestClient(create_app(api_db))


def _activity_file(results: Path, atlas: str, level: str, sset: str, kind: str) -> ad.AnnData:
    stem = f"{atlas}_pseudobulk_{level.lower()}" + ("_samples" if kind == "samples" else "")
    return ad.read_h5ad(results / atlas / "activity" / f"{stem}_{sset}_activity.h5ad")


def _pseudobulk_file(results: Path, atlas: str, level: str, kind: str) -> ad.AnnData:
    stem = f"{atlas}_pseudobulk_{level.lower()}" + ("_samples" if kind == "samples" else "")
    return ad.read_h5ad(results / atlas / "pseudobulk" / f"{stem}.h5ad")


def _same(api_value, file_value) -> bool:
    """Equal, NaN in the file being null in the API (values travel as exact float64 JSON)."""
    if file_value is None or (isinstance(file_value, float) and math.isnan(file_value)):
        return api_value is None
    return api_value == file_value


def _layer(a: ad.AnnData, name: str | None, i: int, j: int):
    m = a.X if name is None else a.layers[name]
    return float(m[i, j])


# ---- the numbers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("atlas", "level", "kind"), [("alpha", "L2", "celltype"), ("alpha", "L3", "samples"),
                                                       ("beta", "L1", "celltype"), ("beta", "L2", "samples")])
def test_activity_equals_the_h5ad(client: TestClient, api_results: Path, atlas: str, level: str, kind: str) -> None:
    a = _activity_file(api_results, atlas, level, "cytosig", kind)
    rng = np.random.default_rng(len(a.obs) + len(level))
    rows = rng.choice(a.n_obs, size=min(4, a.n_obs), replace=False)
    sigs = sorted(rng.choice(a.var_names.to_numpy(), size=6, replace=False))
    by = "cell_type" if kind == "celltype" else "sample"
    params = {"by": by, "signature": sigs, "limit": 50_000}
    if kind == "celltype":
        params["cell_type"] = [a.obs["cell_type"].iloc[i] for i in rows]
    else:
        params["sample"] = sorted({a.obs["sample"].iloc[i] for i in rows})
    r = client.get(f"/api/v1/activity/{atlas}/{level}/cytosig", params=params)
    assert r.status_code == 200, r.text
    got = {(x["cell_type"], x["sample"], x["signature"]): x for x in r.json()["rows"]}
    obs = a.obs.reset_index(drop=True)
    keep = obs.index[obs["cell_type"].isin(params["cell_type"])] if kind == "celltype" else \
        obs.index[obs["sample"].isin(params["sample"])]
    assert len(got) == len(keep) * len(sigs) > 0
    checked = 0
    for i in keep:
        for s in sigs:
            j = a.var_names.get_loc(s)
            row = got[(obs["cell_type"][i], obs["sample"][i] if kind == "samples" else None, s)]
            assert row["atlas"] == atlas and row["level"] == level and row["n_cells"] == int(obs["n_cells"][i])
            for col, layer in LAYERS.items():
                if layer is not None and layer not in a.layers:
                    assert row[col] is None
                    continue
                assert _same(row[col], _layer(a, layer, i, j)), (col, row[col], _layer(a, layer, i, j))
                checked += 1
    assert checked >= len(keep) * len(sigs) * 4
    if kind == "celltype":  # the intervals are there, and some are finite
        assert any(x["z_ci_low"] is not None and x["z_ci_low"] <= x["z_ci_high"] for x in got.values())


def test_lincytosig_matched_flags_equal_the_h5ad(client: TestClient, api_results: Path) -> None:
    a = _activity_file(api_results, "alpha", "L2", "lincytosig", "celltype")
    r = client.get("/api/v1/activity/alpha/L2/lincytosig", params={"limit": 50_000}).json()
    assert r["total"] == a.n_obs * a.n_vars
    got = {(x["cell_type"], x["signature"]): x for x in r["rows"]}
    for i, ct in enumerate(a.obs["cell_type"]):
        for j, s in enumerate(a.var_names):
            assert got[(ct, s)]["matched"] == bool(a.layers["matched"][i, j])
            assert got[(ct, s)]["z"] == float(a.X[i, j])
    assert any(x["matched"] for x in got.values())
    sigs = client.get("/api/v1/signature-sets/lincytosig/signatures").json()["rows"]
    assert {(s["signature"], s["cell_type"], s["cytokine"]) for s in sigs} == \
        {(s, c, k) for s, c, k in zip(a.var_names, a.var["cell_type"], a.var["cytokine"], strict=True)}


@pytest.mark.parametrize("value", ["z", "pvalue", "z_ci_high"])
def test_matrix_equals_the_h5ad(client: TestClient, api_results: Path, value: str) -> None:
    a = _activity_file(api_results, "alpha", "L3", "cytosig", "celltype")
    m = client.get("/api/v1/activity/alpha/L3/cytosig/matrix", params={"value": value}).json()
    assert m["rows"] == sorted(a.obs["cell_type"]) and m["columns"] == sorted(a.var_names)
    x = a.X if value == "z" else a.layers[value]
    frame = pd.DataFrame(np.asarray(x), index=a.obs["cell_type"].to_numpy(), columns=a.var_names)
    expected = frame.loc[m["rows"], m["columns"]].to_numpy()
    got = np.array([[np.nan if v is None else v for v in row] for row in m["values"]])
    np.testing.assert_array_equal(got, expected)
    # top: the N signatures varying most across cell types, as numpy ranks them
    top = client.get("/api/v1/activity/alpha/L3/cytosig/matrix", params={"value": value, "top": 5}).json()
    spread = np.nan_to_num(np.nanvar(expected, axis=0), nan=-1.0)
    assert top["columns"] == [m["columns"][j] for j in sorted(np.argsort(-spread, kind="stable")[:5])]
    wide = pd.read_csv(io.StringIO(client.get("/api/v1/activity/alpha/L3/cytosig/matrix",
                                              params={"value": value, "format": "csv"}).text), index_col=0,
                       float_precision="round_trip")
    np.testing.assert_array_equal(wide.loc[m["rows"], m["columns"]].to_numpy(), expected)


def test_signature_across_atlases_and_levels(client: TestClient, api_results: Path) -> None:
    r = client.get("/api/v1/signatures/cytosig/IFNG").json()
    seen = {(x["atlas"], x["level"]) for x in r["rows"]}
    assert seen == {("alpha", "L1"), ("alpha", "L2"), ("alpha", "L3"), ("beta", "L1"), ("beta", "L2")}
    for atlas, level in sorted(seen):
        a = _activity_file(api_results, atlas, level, "cytosig", "celltype")
        j = a.var_names.get_loc("IFNG")
        rows = [x for x in r["rows"] if (x["atlas"], x["level"]) == (atlas, level)]
        assert [x["cell_type"] for x in rows] == sorted(a.obs["cell_type"])
        for x in rows:
            i = list(a.obs["cell_type"]).index(x["cell_type"])
            for col, layer in LAYERS.items():
                assert _same(x[col], _layer(a, layer, i, j)), (atlas, level, col)
    only = client.get("/api/v1/signatures/cytosig/IFNG", params={"atlas": "beta", "level": "L2"}).json()["rows"]
    assert only and {(x["atlas"], x["level"]) for x in only} == {("beta", "L2")}
    samples = client.get("/api/v1/signatures/cytosig/IFNG", params={"by": "sample", "atlas": "alpha", "level": "L1",
                                                                    "limit": 5}).json()
    a = _activity_file(api_results, "alpha", "L1", "cytosig", "samples")
    assert samples["total"] == a.n_obs and all(x["sample"] for x in samples["rows"])


@pytest.mark.parametrize(("atlas", "level", "kind"), [("alpha", "L2", "celltype"), ("beta", "L2", "samples")])
def test_expression_equals_the_h5ad(client: TestClient, api_results: Path, atlas: str, level: str,
                                    kind: str) -> None:
    p = _pseudobulk_file(api_results, atlas, level, kind)
    rng = np.random.default_rng(7)
    genes = sorted(rng.choice(p.var_names.to_numpy(), size=3, replace=False))
    r = client.get(f"/api/v1/expression/{atlas}/{level}", params={
        "gene": genes, "by": "cell_type" if kind == "celltype" else "sample", "limit": 50_000})
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert len(rows) == len(genes) * p.n_obs
    obs = p.obs.reset_index(drop=True)
    index = {(c, s if kind == "samples" else None): i
             for i, (c, s) in enumerate(zip(obs["cell_type"], obs.get("sample", obs["cell_type"]), strict=True))}
    for x in rows:
        i, j = index[(x["cell_type"], x["sample"])], p.var_names.get_loc(x["gene"])
        assert x["value"] == float(p.X[i, j]) and x["zscore"] == float(p.layers["zscore"][i, j])
        assert x["n_cells"] == int(obs["n_cells"][i])
    assert [x["gene"] for x in rows] == sorted(x["gene"] for x in rows)  # gene-major, stable


def test_groups_and_listings(client: TestClient, api_results: Path) -> None:
    atlases = client.get("/api/v1/atlases").json()["rows"]
    assert [a["atlas"] for a in atlases] == ["alpha", "beta"]
    assert atlases[0]["levels"] == ["L1", "L2", "L3"] and atlases[1]["levels"] == ["L1", "L2"]
    assert atlases[0]["signature_sets"] == ["cytosig", "lincytosig"]
    for level in ("L1", "L2"):
        main = _pseudobulk_file(api_results, "beta", level, "celltype")
        samples = _pseudobulk_file(api_results, "beta", level, "samples")
        cts = client.get(f"/api/v1/atlases/beta/levels/{level}/cell-types").json()["rows"]
        assert [c["cell_type"] for c in cts] == sorted(main.obs["cell_type"])
        n_samples = samples.obs.groupby("cell_type", observed=True)["sample"].nunique()
        for c in cts:
            assert c["n_cells"] == int(main.obs.set_index("cell_type").loc[c["cell_type"], "n_cells"])
            assert c["n_samples"] == int(n_samples.get(c["cell_type"], 0))
        rows = client.get(f"/api/v1/atlases/beta/levels/{level}/samples", params={"limit": 50_000}).json()["rows"]
        assert sorted((x["sample"], x["cell_type"], x["n_cells"]) for x in rows) == sorted(
            zip(samples.obs["sample"], samples.obs["cell_type"], samples.obs["n_cells"].astype(int), strict=True))
    levels = client.get("/api/v1/atlases/alpha/levels").json()["rows"]
    assert [x["level"] for x in levels] == ["L1", "L2", "L3"] and levels[0]["expression"] == ["celltype", "samples"]
    assert levels[0]["n_cells"] == int(_pseudobulk_file(api_results, "alpha", "L1", "celltype").obs["n_cells"].sum())
    sets = client.get("/api/v1/signature-sets").json()["rows"]
    assert [(s["signature_set"], s["n_signatures"], s["atlases"]) for s in sets] == [
        ("cytosig", 43, ["alpha", "beta"]), ("lincytosig", 8, ["alpha", "beta"])]
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["atlases"] == ["alpha", "beta"] and health["files"] > 0


def test_search_finds_genes_and_signatures(client: TestClient) -> None:
    hits = client.get("/api/v1/search", params={"q": "ifng"}).json()["rows"]
    # exact names first (the demo atlases also have the IFNG gene itself)
    exact = [h for h in hits if h["name"] == "IFNG"]
    assert hits[:len(exact)] == exact
    assert {"kind": "signature", "name": "IFNG", "signature_set": "cytosig", "atlases": ["alpha", "beta"]} in exact
    names = {(h["kind"], h["name"]) for h in hits}
    assert {("gene", "IFNGR1"), ("gene", "IFNGR2"), ("signature", "Monocyte__IFNG")} <= names
    assert all("ifng" in h["name"].lower() for h in hits)


# ---- validation ---------------------------------------------------------------------------------------------

ROUTES = {"summary": "/api/v1/validation/summary", "rho": "/api/v1/validation/rho",
          "cytosig_vs_secact": "/api/v1/validation/cytosig-vs-secact",
          "cell_type_matches": "/api/v1/validation/cell-type-matches", "cross_atlas": "/api/v1/cross-atlas",
          "conservation": "/api/v1/cross-atlas/conservation", "consistency": "/api/v1/cross-atlas/consistency"}


def _written(api_results: Path, name: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute("SELECT * FROM read_parquet(?)", [str(api_results / "validation" / f"{name}.parquet")]).df()


@pytest.mark.parametrize("name", sorted(VALIDATION_TABLES))
def test_validation_tables_are_served_exactly(client: TestClient, api_results: Path, name: str) -> None:
    frame = _written(api_results, name)
    page = client.get(ROUTES[name], params={"limit": 50_000}).json()
    assert page["total"] == len(frame) and page["next_offset"] is None
    rows = page["rows"]
    assert all(list(r) == list(frame.columns) for r in rows)  # contract columns, then the extra ones
    keys = list(VALIDATION_TABLES[name][1])

    def key(r: dict) -> tuple:
        return tuple((r[k] is not None, r[k]) for k in keys)

    assert [key(r) for r in rows] == sorted(key(r) for r in rows)  # served in key order
    want = sorted(frame.astype(object).where(frame.notna(), None).to_dict("records"), key=key)
    for got, expected in zip(sorted(rows, key=key), want, strict=True):
        for col, value in expected.items():
            value = value.item() if isinstance(value, np.generic) else value
            assert _same(got[col], value), (name, col, got[col], value)


def test_validation_filters(client: TestClient, api_results: Path) -> None:
    frame = _written(api_results, "rho")
    rows = client.get("/api/v1/validation/rho", params={"atlas": "beta", "level": "L2", "target": "TNFA",
                                                       "representative": True}).json()["rows"]
    want = frame[(frame.atlas == "beta") & (frame.level == "L2") & (frame.target == "TNFA") & frame.representative]
    assert len(rows) == len(want) == 1 and rows[0]["rho"] == want["rho"].iloc[0]
    cross = client.get("/api/v1/cross-atlas", params={"atlas": "beta", "signature": "IL4"}).json()["rows"]
    assert cross and all(x["signature"] == "IL4" and "beta" in (x["atlas_a"], x["atlas_b"]) for x in cross)
    lineage = client.get("/api/v1/cross-atlas", params={"signature": "IL4", "resolution": "lineage"}).json()["rows"]
    assert lineage and {x["resolution"] for x in lineage} == {"lineage"} and len(lineage) * 2 == len(cross)
    assert client.get("/api/v1/validation/rho", params={"atlas": "gamma"}).status_code == 404


def test_scatter_joins_samples_on_sample_and_cell_type(client: TestClient, api_results: Path) -> None:
    act = _activity_file(api_results, "alpha", "L2", "cytosig", "samples")
    pb = _pseudobulk_file(api_results, "alpha", "L2", "samples")
    # default gene: the rho table pairs IFNG with IFNGR1
    r = client.get("/api/v1/validation/scatter/alpha/L2/cytosig/IFNG", params={"limit": 50_000}).json()
    left = pd.DataFrame({"sample": act.obs["sample"].to_numpy(), "cell_type": act.obs["cell_type"].to_numpy(),
                         "activity": np.asarray(act.X[:, act.var_names.get_loc("IFNG")], dtype=float)})
    right = pd.DataFrame({"sample": pb.obs["sample"].to_numpy(), "cell_type": pb.obs["cell_type"].to_numpy(),
                          "expression": np.asarray(pb.X[:, pb.var_names.get_loc("IFNGR1")], dtype=float)})
    want = left.merge(right, on=["sample", "cell_type"]).sort_values(["cell_type", "sample"])
    assert r["total"] == len(want) > 20
    got = pd.DataFrame(r["rows"])
    assert got["sample"].tolist() == want["sample"].tolist() and got["cell_type"].tolist() == want["cell_type"].tolist()
    assert got["activity"].tolist() == want["activity"].tolist()
    assert got["expression"].tolist() == want["expression"].tolist()
    # a target named like a gene of the atlas, and an explicit gene
    assert client.get("/api/v1/validation/scatter/alpha/L2/cytosig/VEGFA").json()["total"] == len(want)
    mono = client.get("/api/v1/validation/scatter/alpha/L2/cytosig/IL4",
                      params={"gene": "IFNGR2", "cell_type": "Monocytes"}).json()["rows"]
    assert mono and {p["cell_type"] for p in mono} == {"Monocytes"}
    r = client.get("/api/v1/validation/scatter/alpha/L2/cytosig/GMCSF")  # its gene is CSF2: no gene GMCSF
    assert r.status_code == 404 and "pass gene=" in r.json()["detail"]


# ---- errors and safety --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "params", "valid"), [
    ("/api/v1/atlases/gamma/levels", {}, ["alpha", "beta"]),
    ("/api/v1/activity/beta/L3/cytosig", {}, ["L1", "L2"]),
    ("/api/v1/activity/alpha/L1/secact", {}, ["cytosig", "lincytosig"]),
    ("/api/v1/signature-sets/secact/signatures", {}, ["cytosig", "lincytosig"]),
    ("/api/v1/activity/alpha/L1/cytosig", {"cell_type": "Neurons"}, ["B cells", "Myeloid", "NK cells", "T cells"]),
    ("/api/v1/signatures/cytosig/IFNX", {}, None),
    ("/api/v1/expression/alpha/L1", {"gene": "IFNGR9"}, None),
])
def test_unknown_names_give_404_listing_valid_values(client: TestClient, url: str, params: dict,
                                                     valid: list[str] | None) -> None:
    r = client.get(url, params=params)
    assert r.status_code == 404
    body = r.json()
    if valid is not None:
        assert body["valid"] == valid and all(v in body["detail"] for v in valid)
    elif "signatures" in url:  # CytoSig's 43 are listed in full
        assert len(body["valid"]) == 43 and "IFNG" in body["valid"] and "IFNG," in body["detail"]
    else:  # 5,968 genes: the closest ones
        assert {"IFNGR1", "IFNGR2"} <= set(body["valid"]) and "closest" in body["detail"]
        assert len(body["valid"]) <= 10


@pytest.mark.parametrize(("url", "params"), [
    ("/api/v1/atlases", {"limit": 0}),
    ("/api/v1/atlases", {"limit": 10**9}),
    ("/api/v1/atlases", {"limit": "ten"}),
    ("/api/v1/atlases", {"offset": -1}),
    ("/api/v1/atlases", {"format": "xml"}),
    ("/api/v1/activity/alpha/L1/cytosig", {"by": "donor"}),
    ("/api/v1/activity/alpha/L1/cytosig/matrix", {"value": "counts"}),
    ("/api/v1/activity/alpha/L1/cytosig/matrix", {"top": 0}),
    ("/api/v1/expression/alpha/L1", {}),
    ("/api/v1/expression/alpha/L1", {"gene": "IFNGR1\x00"}),
    ("/api/v1/expression/alpha/L1", {"gene": "x" * 201}),
    ("/api/v1/search", {"q": ""}),
    ("/api/v1/validation/rho", {"representative": "perhaps"}),
])
def test_malformed_parameters_give_422(client: TestClient, url: str, params: dict) -> None:
    r = client.get(url, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "query"


INJECTIONS = ["alpha' OR '1'='1", "'; DROP TABLE sources; --", "L1\" OR 1=1 --", "cytosig'); COPY sources TO '/tmp/x",
              "../../../../etc/passwd", "IFNG%", "%", "_", "\\"]


def test_injection_looking_input_is_inert(client: TestClient, api_db: Path) -> None:
    with duckdb.connect(str(api_db), read_only=True) as con:
        before = con.execute("SELECT count(*), sum(hash(path)) FROM sources").fetchall()
    for text in INJECTIONS:
        for url, params in ((f"/api/v1/atlases/{text}/levels", {}), ("/api/v1/activity/alpha/L1/cytosig",
                            {"signature": text}), ("/api/v1/expression/alpha/L1", {"gene": text}),
                            ("/api/v1/validation/rho", {"target": text}), ("/api/v1/signatures/cytosig/x",
                            {"atlas": text})):
            r = client.get(url.replace("/..", "/%2E%2E"), params=params)
            assert r.status_code in (404, 200), (url, text, r.status_code)
            if r.status_code == 200:
                assert r.json()["total"] == 0
        hits = client.get("/api/v1/search", params={"q": text}).json()["rows"]
        assert all(text.lower() in h["name"].lower() for h in hits)  # %, _ and \ match themselves only
    with duckdb.connect(str(api_db), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(hash(path)) FROM sources").fetchall() == before


def test_the_servers_connection_is_read_only_and_confined(api_db: Path) -> None:
    from cytoatlas._api.reader import StoreReader

    reader = StoreReader(api_db)
    with reader.session() as (cur, catalog):
        assert catalog.atlases == ["alpha", "beta"]
        for sql in ("CREATE TABLE x (a INTEGER)", "DELETE FROM sources", "SELECT * FROM read_csv('/etc/passwd')",
                    "SET enable_external_access = true", f"ATTACH '{api_db.parent / 'other.duckdb'}'"):
            with pytest.raises(duckdb.Error):
                cur.execute(sql).fetchall()
    reader.close()


def test_pages_are_stable_and_complete(client: TestClient) -> None:
    url, params = "/api/v1/activity/beta/L2/cytosig", {"by": "sample", "signature": ["IFNG", "IL4", "TNFA"]}
    full = client.get(url, params={**params, "limit": 50_000}).json()
    rows, offset, pages = [], 0, 0
    while offset is not None:
        page = client.get(url, params={**params, "limit": 17, "offset": offset}).json()
        assert page["total"] == full["total"] and len(page["rows"]) <= 17
        rows += page["rows"]
        offset, pages = page["next_offset"], pages + 1
    assert rows == full["rows"] and pages == math.ceil(full["total"] / 17)
    keys = [(r["cell_type"], r["sample"], r["signature"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert client.get(url, params={**params, "offset": full["total"] + 5}).json()["rows"] == []


# (route, params, the view's WHERE, its ORDER BY): every page the API finds from its in-memory axes, against SQL
# over the store's tidy views (joins, sort, LIMIT / OFFSET and count done by DuckDB)
_ACTIVITY_ORDER = "cell_type, sample NULLS FIRST, signature"
_VIEW_PAGES = [
    ("/api/v1/activity/alpha/L2/cytosig", {}, "atlas = 'alpha' AND level = 'L2' AND signature_set = 'cytosig' "
     "AND kind = 'celltype'", _ACTIVITY_ORDER),
    ("/api/v1/activity/alpha/L3/cytosig", {"by": "sample"}, "atlas = 'alpha' AND level = 'L3' AND "
     "signature_set = 'cytosig' AND kind = 'samples'", _ACTIVITY_ORDER),
    ("/api/v1/activity/beta/L1/cytosig", {"by": "sample", "signature": ["TNFA", "IFNG", "IL4"]},
     "atlas = 'beta' AND level = 'L1' AND signature_set = 'cytosig' AND kind = 'samples' AND signature IN "
     "('TNFA', 'IFNG', 'IL4')", _ACTIVITY_ORDER),
    ("/api/v1/signatures/cytosig/IFNG", {}, "signature_set = 'cytosig' AND kind = 'celltype' AND "
     "signature = 'IFNG'", "atlas, level, cell_type, sample NULLS FIRST"),
    ("/api/v1/signatures/cytosig/IL6", {"by": "sample", "level": ["L1"]}, "signature_set = 'cytosig' AND "
     "kind = 'samples' AND signature = 'IL6' AND level = 'L1'", "atlas, level, cell_type, sample NULLS FIRST"),
]


@pytest.mark.parametrize(("url", "params", "where", "order"), _VIEW_PAGES)
def test_pages_equal_sql_over_the_tidy_views(client: TestClient, api_db: Path, url: str, params: dict, where: str,
                                            order: str) -> None:
    columns = ["atlas", "level", "signature_set", "cell_type", "sample", "signature", "z", "beta", "se", "pvalue",
               "z_ci_low", "z_ci_high", "z_boot_sd", "matched"]
    con = duckdb.connect(str(api_db), read_only=True)
    total = con.execute(f"SELECT count(*) FROM activity WHERE {where}").fetchall()[0][0]
    assert total > 30
    types = {"cell_type": ["x"]}  # a filter that keeps the rows of the page's first and last cell types
    for limit, offset in ((1000, 0), (7, 3), (13, total - 5), (10, total + 2)):
        got = client.get(url, params={**params, "limit": limit, "offset": offset}).json()
        want = con.execute(f"SELECT {', '.join(columns)} FROM activity WHERE {where} ORDER BY {order} "
                           f"LIMIT {limit} OFFSET {offset}").df()
        assert got["total"] == total
        assert [[r[c] for c in columns] for r in got["rows"]] == \
            [[None if isinstance(v, float) and math.isnan(v) else v for v in row]
             for row in want.astype(object).where(want.notna(), None).itertuples(index=False)]
        if got["rows"]:
            types["cell_type"] = sorted({got["rows"][0]["cell_type"], got["rows"][-1]["cell_type"]})
    kept = client.get(url, params={**params, **types, "limit": 50_000}).json()
    want = con.execute(f"SELECT cell_type, sample, signature FROM activity WHERE {where} AND list_contains(?, "
                       f"cell_type) ORDER BY {order}", [types["cell_type"]]).fetchall()
    assert [(r["cell_type"], r["sample"], r["signature"]) for r in kept["rows"]] == want and kept["total"] == len(want)


@pytest.mark.parametrize("by", ["cell_type", "sample"])
def test_expression_pages_equal_sql_over_the_tidy_view(client: TestClient, api_db: Path, by: str) -> None:
    con = duckdb.connect(str(api_db), read_only=True)
    genes = [g for (g,) in con.execute("SELECT DISTINCT gene FROM expression WHERE atlas = 'alpha' AND level = 'L2' "
                                       "ORDER BY gene DESC LIMIT 3").fetchall()]
    where = (f"atlas = 'alpha' AND level = 'L2' AND kind = '{'celltype' if by == 'cell_type' else 'samples'}' "
             "AND list_contains(?, gene)")
    total = con.execute(f"SELECT count(*) FROM expression WHERE {where}", [genes]).fetchall()[0][0]
    for limit, offset in ((1000, 0), (11, 5), (9, total - 4)):
        got = client.get("/api/v1/expression/alpha/L2", params={"gene": genes, "by": by, "limit": limit,
                                                                 "offset": offset}).json()
        want = con.execute(f"SELECT gene, cell_type, sample, value, zscore FROM expression WHERE {where} ORDER BY "
                           f"gene, cell_type, sample NULLS FIRST LIMIT {limit} OFFSET {offset}", [genes]).fetchall()
        assert got["total"] == total
        assert [(r["gene"], r["cell_type"], r["sample"], r["value"], r["zscore"]) for r in got["rows"]] == want


def test_csv_and_parquet_carry_the_same_rows(client: TestClient) -> None:
    params = {"signature": ["IFNG", "IL2"], "limit": 7, "offset": 3}
    url = "/api/v1/activity/alpha/L2/cytosig"
    page = client.get(url, params=params).json()
    want = pd.DataFrame(page["rows"])
    r = client.get(url, params={**params, "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv") and r.headers["x-total-count"] == str(page["total"])
    assert r.headers["x-next-offset"] == str(page["next_offset"])
    csv = pd.read_csv(io.StringIO(r.text), float_precision="round_trip")
    assert list(csv.columns) == list(want.columns) and csv["z"].tolist() == want["z"].tolist()
    assert csv["signature"].tolist() == want["signature"].tolist()
    r = client.get(url, params={**params, "format": "parquet"})
    assert r.headers["content-type"] == "application/vnd.apache.parquet" and r.content[:4] == b"PAR1"
    with duckdb.connect() as con:
        path = Path(client.app.state.reader.db.parent / "page.parquet")
        path.write_bytes(r.content)
        pq = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
        path.unlink()
    assert list(pq.columns) == list(want.columns) and pq["z"].tolist() == want["z"].tolist()
    assert pq["cell_type"].tolist() == want["cell_type"].tolist()
    # an empty page is still a Parquet file (an unknown cell type is a 404 now: a page past the end is empty)
    empty = client.get("/api/v1/signatures/cytosig/IFNG", params={"atlas": "beta", "offset": 10**6,
                                                                 "format": "parquet"})
    assert empty.status_code == 200 and empty.content[:4] == b"PAR1"
    assert client.get("/api/v1/signatures/cytosig/IFNG", params={"atlas": "beta", "cell_type": "nobody",
                                                                "format": "parquet"}).status_code == 404


def test_token_guards_every_route(api_db: Path) -> None:
    guarded = TestClient(create_app(api_db, token=TOKEN))
    for path in ("/", "/static/app.js", "/static/vendor/plotly.min.js", "/api/v1/openapi.json", "/api/v1/health",
                 "/api/v1/atlases", "/api/v1/activity/alpha/L1/cytosig", "/api/v1/no/such/route"):
        r = guarded.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert guarded.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        ok = guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == (404 if "no/such" in path else 200), path
    r = guarded.get("/", params={"token": "not-it"}, follow_redirects=False)
    assert r.status_code == 401
    r = guarded.get("/", params={"token": TOKEN}, follow_redirects=False)  # a browser: once, then a cookie
    assert r.status_code == 303 and r.headers["location"] == "/" and "httponly" in r.headers["set-cookie"].lower()
    assert guarded.get("/api/v1/atlases").status_code == 200  # the client kept the cookie
    open_app = TestClient(create_app(api_db))
    assert open_app.get("/api/v1/health").status_code == 200


def test_page_and_static_files_are_served_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/vendor/plotly.min.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    assert "default-src 'self'" in page.headers["content-security-policy"]
    js = client.get("/static/vendor/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200 and len(js.content) > 1_000_000 and js.headers["content-encoding"] == "gzip"
    assert client.get("/static/app.js").status_code == 200

"""The web page at scale, in headless Chromium (whose WebGL is software: the page does not use it) against a
real `cytoatlas serve`: the heatmap in clustered order (every cluster of scipy's average linkage of the API's
matrix a contiguous block of the drawn rows and columns), and the volcano of an 80,000-row comparison (the server
sends the strongest 2,000 points, drawn as SVG, and the density of the other 78,000, drawn on a canvas image)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from _api_helpers import ARTIFACTS, CHROMIUM_ARGS, ROOT, compare_frames, running_server, write_compare
from scipy.cluster.hierarchy import linkage, to_tree

import cytoatlas

CHROMIUM = "/usr/bin/chromium"
CONTRAST = "treated vs untreated"


@pytest.fixture(scope="module")
def browser():
    subprocess.run(["bash", str(ROOT / "scripts" / "system.sh")], check=True, capture_output=True)  # idempotent
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _clusters(values: np.ndarray) -> list[set[int]]:
    """The leaf sets of every node of scipy's average-linkage tree (Euclidean) of the rows of ``values``."""
    out = []

    def walk(node) -> set[int]:
        leaves = {node.id} if node.is_leaf() else walk(node.left) | walk(node.right)
        out.append(leaves)
        return leaves

    walk(to_tree(linkage(values, method="average", metric="euclidean")))
    return out


def _contiguous(order: list[int], clusters: list[set[int]]) -> bool:
    at = {leaf: k for k, leaf in enumerate(order)}
    return all(max(at[i] for i in c) - min(at[i] for i in c) + 1 == len(c) for c in clusters)


def test_the_heatmap_is_drawn_in_clustered_order(browser, api_db: Path) -> None:
    with running_server(api_db) as url:
        m = httpx.get(url + "/api/v1/activity/alpha/L3/cytosig/matrix", params={"top": 60}, timeout=30).json()
        values = np.array([[np.nan if v is None else v for v in row] for row in m["values"]], dtype=float)
        assert len(m["rows"]) >= 6 and np.isfinite(values).all()
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url + "/#view=heatmap&atlas=alpha&level=L3&set=cytosig&order=cluster")
        page.wait_for_selector('#heatmap[data-drawn="alpha|L3|cytosig"][data-order="cluster"] .main-svg',
                               timeout=60_000)
        drawn = page.evaluate("() => { const d = document.getElementById('heatmap').data[0]; "
                              "return {x: d.x, y: d.y, z: d.z}; }")
        rows = [m["rows"].index(r) for r in drawn["y"]]
        cols = [m["columns"].index(c) for c in drawn["x"]]
        assert sorted(rows) == list(range(len(m["rows"]))) and sorted(cols) == list(range(len(m["columns"])))
        assert drawn["z"] == [[m["values"][i][j] for j in cols] for i in rows]
        assert _contiguous(rows, _clusters(values)) and _contiguous(cols, _clusters(values.T))
        assert rows != sorted(rows)  # not the API's (name) order: these cell types do not cluster alphabetically
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_heatmap_clustered.png"), full_page=True)
        page.close()


@pytest.fixture(scope="module")
def big_comparison(tmp_path_factory) -> Path:
    """A store of one comparison of 80 cell types x 1,000 signatures: 80,000 differential rows."""
    root = tmp_path_factory.mktemp("big_compare")
    small = compare_frames(["alpha", "beta"], ["L1"])
    rng = np.random.default_rng(4)
    n_types, n_sigs = 80, 1_000
    effect = rng.normal(0, 1, n_types * n_sigs)
    template = small["differential"].iloc[0]
    big = pd.DataFrame({c: [template[c]] * len(effect) for c in small["differential"].columns})
    big["cell_type"] = np.repeat([f"type {i}" for i in range(n_types)], n_sigs)
    # every row a Cell Ontology term, but one atlas: no meta rows, so the forest shows the picked row alone
    big["cl_id"], big["cl_name"] = "CL:0000084", "T cell"
    big["signature"] = np.tile([f"S{j:04d}" for j in range(n_sigs)], n_types)
    big["effect"], big["pvalue"] = effect, np.clip(np.exp(-np.abs(effect) * 3) * rng.uniform(0.5, 1, len(effect)),
                                                   1e-12, 1)
    big["fdr"] = np.minimum(big["pvalue"] * 4, 1.0)
    big["fdr_cell_type"] = np.minimum(big["pvalue"] * 2, 1.0)
    big["ci_low"], big["ci_high"] = effect - 0.5, effect + 0.5
    tables = {"differential": big, "association": small["association"].iloc[:0],
              "meta": small["meta"].iloc[:0], "untestable": small["untestable"].iloc[:0]}
    write_compare(root / "results" / "compare", tables)
    db = root / "store.duckdb"
    cytoatlas.index(root / "results", db)
    return db


def test_a_volcano_of_80000_points_renders(browser, big_comparison: Path) -> None:
    with running_server(big_comparison) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1300})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        requested: list[str] = []  # no request for the comparison's every row
        page.on("request", lambda r: requested.append(r.url))
        page.goto(url + "/#view=compare")
        page.wait_for_selector("#compare-volcano[data-drawn] .main-svg", timeout=120_000)
        # WebGL on a GPU; a software one (SwiftShader here) counts as none
        webgl = page.evaluate("""() => { const g = document.createElement('canvas').getContext('webgl');
            if (!g) return false; const e = g.getExtension('WEBGL_debug_renderer_info');
            const r = String(e ? g.getParameter(e.UNMASKED_RENDERER_WEBGL) : g.getParameter(g.RENDERER));
            return !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(r); }""")
        info = page.evaluate("""() => { const d = document.getElementById('compare-volcano');
            return {renderer: d.dataset.renderer, points: +d.dataset.points, svg: +d.dataset.svgPoints,
                    raster: +d.dataset.rasterPoints, types: d.data.map(t => t.type),
                    n: d.data.reduce((s, t) => s + t.x.length, 0),
                    ys: d.data.flatMap(t => t.y), images: (d.layout.images || []).map(i => i.source.slice(0, 22)),
                    canvases: document.querySelectorAll('#compare-volcano .gl-canvas').length}; }""")
        assert info["points"] == 80_000
        # nothing sent or drawn beyond what the screen shows: the strongest 2,000 points (scattergl with WebGL, else
        # SVG) over one canvas image of the other 78,000's density
        assert (info["svg"], info["raster"], info["n"]) == (2_000, 78_000, 2_000)
        assert info["images"] == ["data:image/png;base64,"]
        if webgl:
            assert info["renderer"] == "webgl" and set(info["types"]) == {"scattergl"}
        else:  # headless Chromium
            assert info["renderer"] == "canvas" and set(info["types"]) == {"scatter"}
        table = Path(big_comparison).parent / "results" / "compare" / "differential.parquet"
        p = np.sort(duckdb.connect().execute(f"SELECT pvalue FROM '{table}'").fetchnumpy()["pvalue"])
        # the points are the 2,000 smallest p-values (-log10 p of at least the 2,000th)
        assert min(info["ys"]) >= -np.log10(p[1_999]) - 1e-9
        assert not [u for u in requested if "/api/v1/compare/differential?" in u and "signature=" not in u]
        status = page.inner_text("#status")
        assert "80000 cell type × signature rows" in status
        # the picked row's forest, though its Cell Ontology unit has no meta-analysis row
        page.wait_for_selector("#compare-forest[data-drawn]", timeout=60_000)
        assert not errors
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_volcano_80k.png"), full_page=True)
        page.close()

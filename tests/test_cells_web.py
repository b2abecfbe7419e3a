"""The web page's Cells view in headless Chromium against a real `cytoatlas serve`: the embedding subsample
coloured by the API's per-cell z, and the per-label summary of the chosen signature."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from _api_helpers import ARTIFACTS, CHROMIUM_ARGS, ROOT, running_server
from _atlas_factory import tiny_config
from test_cells import write_cells_atlas

import cytoatlas

TOKEN = "cells-web-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def cells_db(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cells_web")
    path, _ = write_cells_atlas(root / "synth.h5ad", n_cells=1200, sets=("cytosig",))
    cfg = tiny_config(path, "tiny")
    out = root / "results" / "tiny"
    pb = cytoatlas.pseudobulk(cfg, out / "pseudobulk", n_bootstrap=0)
    cytoatlas.activity(pb, out / "activity", signatures=["cytosig"])
    cytoatlas.cells(cfg, out, signatures=["cytosig"])
    return cytoatlas.index(root / "results").db


def test_the_cells_view_draws_the_embedding_and_summary(cells_db: Path, tmp_path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "system.sh")], check=True, capture_output=True)
    from playwright.sync_api import sync_playwright

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)  # a token file others may read is refused
    with running_server(cells_db, "--token-file", str(token_file)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + f"/?token={TOKEN}")
        # loaded first: otherwise its first render can rewrite the hash set next (seen on a loaded CI machine)
        page.wait_for_selector("#heatmap[data-drawn] .main-svg", timeout=90_000)
        page.goto(url + "/#view=cells&atlas=tiny&level=L1&set=cytosig&cellsSignature=IFNG")
        page.reload()  # a change of the hash alone is no new page: the state is read on load
        try:
            page.wait_for_selector('#cells-embedding[data-drawn="cytosig|IFNG|1200"] .main-svg', timeout=90_000)
        except Exception:
            raise AssertionError(f"not drawn; status {page.inner_text('#status')!r}, errors {errors}") from None
        api = httpx.get(url + "/api/v1/cells/tiny/cytosig/embedding", params={"signature": "IFNG", "limit": 50000},
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()["rows"]
        drawn = page.evaluate("() => { const d = document.getElementById('cells-embedding').data[0]; "
                              "return {x: d.x, c: d.marker.color}; }")
        assert drawn["x"] == [r["x"] for r in api] and drawn["c"] == [r["z"] for r in api]
        assert page.evaluate("() => document.getElementById('cells-embedding').data[0].type") == "scatter"
        box = page.evaluate("() => document.getElementById('cells-summary').data[0].x")
        assert sorted(box) == ["T0", "T1", "T2", "T3"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_cells.png"), full_page=True)
        browser.close()
    assert not errors, errors

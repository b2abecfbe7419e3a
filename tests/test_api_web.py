"""The web page in headless Chromium (Debian's, driven by Playwright) against a real `cytoatlas serve` with a token:
it loads the results, draws the heatmap with the API's numbers, switches atlas and level, opens a signature, the
validation page and a gene from the search box; screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from _api_helpers import ARTIFACTS, CHROMIUM_ARGS, ROOT, running_server

TOKEN = "web-test-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    subprocess.run(["bash", str(ROOT / "scripts" / "system.sh")], check=True, capture_output=True)  # idempotent
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(api_db: Path, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)  # a token file others may read is refused
    with running_server(api_db, "--token-file", str(token_file)) as url:
        yield url


def _api(url: str, path: str, **params):
    r = httpx.get(url + "/api/v1" + path, params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def _heatmap(page) -> dict:
    return page.evaluate("() => { const d = document.getElementById('heatmap').data[0]; "
                         "return {x: d.x, y: d.y, z: d.z}; }")


def _as_drawn(matrix: dict, drawn: dict) -> list[list]:
    """The API's matrix in the drawn order (the page orders rows and columns itself: clustered or by name)."""
    assert sorted(drawn["y"]) == sorted(matrix["rows"]) and sorted(drawn["x"]) == sorted(matrix["columns"])
    i = [matrix["rows"].index(r) for r in drawn["y"]]
    j = [matrix["columns"].index(c) for c in drawn["x"]]
    return [[matrix["values"][a][b] for b in j] for a in i]


def test_the_page_draws_the_results_and_switches_atlas(browser, server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    failed: list[tuple[int, str]] = []
    page.on("response", lambda r: failed.append((r.status, r.url.removeprefix(server))) if r.status >= 400 else None)

    assert page.goto(server + "/").status == 401  # no token, no page
    page.goto(server + f"/?token={TOKEN}")  # sets the cookie and redirects to /
    assert page.url == server + "/"

    # the heatmap of the first atlas, level and set, with the API's numbers
    page.wait_for_selector('#heatmap[data-drawn="alpha|L1|cytosig"] .main-svg', timeout=30_000)
    matrix = _api(server, "/activity/alpha/L1/cytosig/matrix", top=60)
    drawn = _heatmap(page)
    assert drawn["z"] == _as_drawn(matrix, drawn)
    assert page.locator("#heatmap .hm, #heatmap image, #heatmap .heatmaplayer").count() >= 1
    assert "4 cell types × 43 signatures" in page.inner_text("#status")
    page.screenshot(path=str(ARTIFACTS / "web_heatmap_alpha.png"), full_page=True)

    # switch atlas, then level
    page.select_option("#atlas", "beta")
    page.wait_for_selector('#heatmap[data-drawn="beta|L1|cytosig"]', timeout=30_000)
    beta = _api(server, "/activity/beta/L1/cytosig/matrix", top=60)
    assert _heatmap(page)["z"] == _as_drawn(beta, _heatmap(page)) != drawn["z"]
    assert page.eval_on_selector_all("#level option", "os => os.map(o => o.value)") == ["L1", "L2"]
    page.select_option("#level", "L2")
    page.wait_for_selector('#heatmap[data-drawn="beta|L2|cytosig"]', timeout=30_000)
    beta_l2 = _api(server, "/atlases/beta/levels/L2/cell-types")
    assert sorted(_heatmap(page)["y"]) == sorted(c["cell_type"] for c in beta_l2["rows"])
    # by name: labels in natural order (digits as numbers); the choice is kept in the address
    page.select_option("#order", "name")
    page.wait_for_selector('#heatmap[data-order="name"]', timeout=30_000)
    y = _heatmap(page)["y"]
    natural = lambda s: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]  # noqa: E731
    assert y == sorted(y, key=natural) and "order=name" in page.url
    page.select_option("#order", "cluster")
    page.wait_for_selector('#heatmap[data-order="cluster"]', timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "web_heatmap_beta.png"), full_page=True)

    # a signature from the search box: its activity in every atlas at this level, with CIs
    page.fill("#search", "IFNG")
    page.press("#search", "Enter")
    page.wait_for_selector('#signature-plot[data-drawn="cytosig|IFNG"] .main-svg', timeout=30_000)
    rows = [r for r in _api(server, "/signatures/cytosig/IFNG")["rows"] if r["level"] == "L2"]
    assert page.locator("#signature-table tbody tr").count() == len(rows)
    traces = page.evaluate("() => document.getElementById('signature-plot').data.filter(t => t.mode === 'markers')"
                           ".map(t => [t.name, t.y])")
    assert {t[0] for t in traces} == {"alpha · L2", "beta · L2"}
    assert sorted(y for t in traces for y in t[1]) == sorted(r["z"] for r in rows)
    page.screenshot(path=str(ARTIFACTS / "web_signature.png"), full_page=True)

    # validation: rho per target and the scatter of the best one
    page.click('nav button[data-view="validation"]')
    page.wait_for_selector('#rho-plot[data-drawn="beta|L2|cytosig"] .main-svg', timeout=30_000)
    rho = [r for r in _api(server, "/validation/rho", atlas="beta", level="L2", signature_set="cytosig",
                           representative="true")["rows"] if r["rho"] is not None]
    bars = page.evaluate("() => document.getElementById('rho-plot').data[0].x")
    assert sorted(bars) == sorted(r["target"] for r in rho)
    best = max(rho, key=lambda r: r["rho"])  # selected first; its gene (the rho table's) may not be in the atlas
    assert page.input_value("#target") == best["target"]
    page.select_option("#target", "IFNG")  # paired with IFNGR1 in the rho table
    page.wait_for_selector('#scatter-plot[data-drawn="beta|L2|cytosig|IFNG"] .main-svg', timeout=30_000)
    n_points = page.evaluate("() => document.getElementById('scatter-plot').data.reduce((n, t) => n + t.x.length, 0)")
    assert n_points == _api(server, "/validation/scatter/beta/L2/cytosig/IFNG")["total"] > 0
    assert page.locator("#scatter-plot .scatterlayer path.point").count() == n_points  # drawn as SVG points
    page.screenshot(path=str(ARTIFACTS / "web_validation.png"), full_page=True)

    # a gene from the search box
    page.fill("#search", "IFNGR1")
    page.press("#search", "Enter")
    page.wait_for_selector('#gene-plot[data-drawn="beta|L2|IFNGR1"] .main-svg', timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "web_gene.png"), full_page=True)

    assert errors == []
    # the only failed requests: the page without its token, and the scatter of a target whose gene is not there
    assert [(code, url.split("?")[0]) for code, url in failed] == [
        (401, "/"), (404, f"/api/v1/validation/scatter/beta/L2/cytosig/{best['target']}")]
    assert page.evaluate("() => document.cookie") == ""  # the token cookie is HttpOnly
    assert all(u.startswith((server, "data:")) for u in requests)  # nothing from outside
    page.close()

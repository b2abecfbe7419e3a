"""The web page's Compare tab in headless Chromium against a real `cytoatlas serve`: the volcano of a comparison
drawn with the API's rows, a click on a point drawing its forest plot (the cell type's effect in every atlas and
the pooled estimate), the state in the URL hash; screenshots go to tests/artifacts/."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from _api_helpers import ARTIFACTS, CHROMIUM_ARGS, ROOT, running_server

TOKEN = "compare-web-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CONTRAST = "treated vs untreated"


@pytest.fixture(scope="module")
def server(api_db: Path, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("compare_token") / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)  # a token file others may read is refused
    with running_server(api_db, "--token-file", str(token_file)) as url:
        yield url


def _api(url: str, path: str, **params) -> list[dict]:
    r = httpx.get(url + "/api/v1" + path, params={**params, "limit": 50_000},
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    return r.json()["rows"]


def _traces(page, div: str) -> list[dict]:
    return page.evaluate(f"() => document.getElementById('{div}').data.map(t => ({{name: t.name, x: t.x, y: t.y, "
                         "customdata: t.customdata}))")


def _wait(page, selector: str) -> None:
    try:
        page.wait_for_selector(selector, timeout=90_000)
    except Exception:
        raise AssertionError(f"{selector} not drawn; status {page.inner_text('#status')!r}") from None


def _hash(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(page.evaluate("() => location.hash.slice(1)")).items()}


def test_the_compare_tab_draws_the_volcano_and_a_points_forest(server: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "system.sh")], check=True, capture_output=True)  # idempotent
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1300})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        failed: list[tuple[int, str]] = []
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
        page.goto(server + f"/?token={TOKEN}")
        _wait(page, "#heatmap[data-drawn] .main-svg")  # loaded (else its first render rewrites the hash set next)
        page.goto(server + "/#view=compare&atlas=beta&level=L1&set=cytosig")
        page.reload()  # the state is read on load

        # the volcano of beta L1's treatment contrast (the header's atlas, level and set), with the API's rows
        _wait(page, f'#compare-volcano[data-drawn="differential|beta|L1|cytosig|{CONTRAST}"] .main-svg')
        rows = _api(server, "/compare/differential", atlas="beta", level="L1", signature_set="cytosig",
                    by="treatment", contrast=CONTRAST)
        traces = {t["name"]: t for t in _traces(page, "compare-volcano")}
        significant, rest = traces["FDR < 0.05"], traces["FDR ≥ 0.05 or none"]
        drawn = sorted((c[0], c[1], x, y) for t in (significant, rest)
                       for c, x, y in zip(t["customdata"], t["x"], t["y"], strict=True))
        with_p = [r for r in rows if r["pvalue"] is not None]
        assert 0 < len(with_p) < len(rows)  # rows without a p-value are not drawn (and said so)
        want = sorted((r["cell_type"], r["signature"], r["effect"], -math.log10(r["pvalue"])) for r in with_p)
        assert [d[:3] for d in drawn] == [w[:3] for w in want]  # the effects exactly
        assert [d[3] for d in drawn] == pytest.approx([w[3] for w in want], rel=1e-12)  # JS' log10 may differ by 1 ulp
        assert {(c[0], c[1]) for c in significant["customdata"]} == {
            (r["cell_type"], r["signature"]) for r in with_p if r["fdr"] is not None and r["fdr"] < 0.05}
        # cross-talk in the hover: IL10's correlated signature also significant, the others' nothing
        hover = {c[1]: c[5] for t in (significant, rest) for c in t["customdata"]}
        assert hover["IL10"] == "<br>also: IL27 (r 0.62)" and hover["IFNG"] == ""
        assert "without a p-value" in page.inner_text("#status")
        assert "NK cells (fewer than 3 donors in a group)" in page.inner_text("#compare-note")
        options = page.eval_on_selector_all("#compare-contrast option", "os => os.map(o => o.textContent)")
        assert len(options) == len(_api(server, "/compare/contrasts")) == 8

        # the top hit's forest opens first: IL10 in myeloid cells, in both atlases, with the pooled estimate
        _wait(page, f'#compare-forest[data-drawn="differential|L1|cytosig|{CONTRAST}|myeloid|IL10"] .main-svg')
        forest = {t["name"]: t for t in _traces(page, "compare-forest")}
        assert forest["per atlas"]["y"] == ["alpha · Myeloid", "beta · Myeloid"]
        meta = _api(server, "/compare/meta", analysis="differential", level="L1", by="treatment",
                    contrast=CONTRAST, cl_name="myeloid", signature="IL10")
        assert forest["pooled"]["x"] == [meta[0]["effect"]] and forest["pooled"]["y"] == ["pooled (DL, 2 atlases)"]
        page.screenshot(path=str(ARTIFACTS / "web_compare_volcano.png"), full_page=True)

        # a click on another point (a real mouse click on its marker): its forest across atlases
        target = next(r for r in with_p if r["cell_type"] == "T cells" and r["signature"] == "IFNG")
        trace = significant if target["fdr"] is not None and target["fdr"] < 0.05 else rest
        at = [tuple(c[:2]) for c in trace["customdata"]].index(("T cells", "IFNG"))
        index = list(traces).index(trace["name"])
        marker = page.locator(f"#compare-volcano .scatterlayer .trace:nth-child({index + 1}) path.point").nth(at)
        box = marker.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        _wait(page, f'#compare-forest[data-drawn="differential|L1|cytosig|{CONTRAST}|t|IFNG"] .main-svg')
        across = _api(server, "/compare/differential", level="L1", signature_set="cytosig", by="treatment",
                      contrast=CONTRAST, cl_name="t", signature="IFNG")
        forest = {t["name"]: t for t in _traces(page, "compare-forest")}
        assert forest["per atlas"]["y"] == [f"{r['atlas']} · {r['cell_type']}" for r in across]
        assert [r["atlas"] for r in across] == ["alpha", "beta"]
        assert forest["per atlas"]["x"] == [r["effect"] for r in across]
        meta = _api(server, "/compare/meta", analysis="differential", level="L1", by="treatment",
                    contrast=CONTRAST, cl_name="t", signature="IFNG")
        assert forest["pooled"]["x"] == [meta[0]["effect"]]
        state = _hash(page)
        assert {k: state.get(k) for k in ("view", "analysis", "by", "contrast", "atlas", "level", "set",
                                          "compareCellType", "compareSignature")} == {
            "view": "compare", "analysis": "differential", "by": "treatment", "contrast": CONTRAST, "atlas": "beta",
            "level": "L1", "set": "cytosig", "compareCellType": "T cells", "compareSignature": "IFNG"}
        page.screenshot(path=str(ARTIFACTS / "web_compare_forest.png"), full_page=True)

        # the hash reopens the same view; another comparison from the picker: the bmi scan of alpha at L2
        page.reload()
        _wait(page, f'#compare-forest[data-drawn="differential|L1|cytosig|{CONTRAST}|t|IFNG"] .main-svg')
        label = "alpha · L2 · cytosig — bmi (bmi, association)"
        page.select_option("#compare-contrast", label=label)
        _wait(page, '#compare-volcano[data-drawn="association|alpha|L2|cytosig|bmi"] .main-svg')
        assert page.input_value("#atlas") == "alpha" and page.input_value("#level") == "L2"  # the header follows
        n = sum(len(t["x"]) for t in _traces(page, "compare-volcano"))
        assert n == len(_api(server, "/compare/association", atlas="alpha", level="L2", by="bmi"))
        _wait(page, '#compare-forest[data-drawn^="association|L2|cytosig|bmi|"] .main-svg')
        browser.close()
    assert errors == [] and failed == [], (errors, failed)

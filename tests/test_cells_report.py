"""The report's "Per-cell activity" section (`cytoatlas report --cells RESULTS_DIR`), from real `cytoatlas cells`
outputs of two tiny atlases: one with an embedding (obsm['X_umap']), one without."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _atlas_factory import tiny_config
from _report_factory import validation_dir
from test_cells import write_cells_atlas

import cytoatlas
from cytoatlas.cli import main
from cytoatlas.io import layout
from cytoatlas.io.manifest import file_checksum, read_manifest


@pytest.fixture(scope="module")
def cells_roots(tmp_path_factory) -> tuple[Path, Path]:
    """Two atlases' results directories: ``tiny`` (1,500 cells with an embedding) and ``plain`` (none)."""
    root = tmp_path_factory.mktemp("cells_report")
    with_umap, _ = write_cells_atlas(root / "tiny.h5ad", n_cells=1500, sets=("cytosig",))
    without, _ = write_cells_atlas(root / "plain.h5ad", n_cells=600, seed=1, sets=("cytosig",), embedding=False)
    cytoatlas.cells(tiny_config(with_umap, "tiny"), root / "tiny", signatures=["cytosig"])
    cytoatlas.cells(tiny_config(without, "plain"), root / "plain", signatures=["cytosig"])
    return root / "tiny", root / "plain"


def _section(page: str) -> str:
    return re.search(r'<section id="cells">.*?</section>', page, flags=re.S).group(0)


def _without_cells(page: str) -> str:
    page, n_nav = re.subn(r'<a href="#cells">Per-cell activity</a>', "", page)
    page, n_section = re.subn(r'<section id="cells">.*?</section>', "", page, flags=re.S)
    assert n_nav == n_section == 1
    return page


def _first_row(section: str, table_id: str) -> list[str]:
    body = section[section.index(f'id="{table_id}"'):]
    body = body[body.index("<tbody><tr>"):]
    row = body[:body.index("</tr>")]
    return re.findall(r"<td[^>]*>(.*?)</td>", row)


def test_the_report_gains_a_cells_section_and_is_unchanged_without(cells_roots, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "2026-12-04 20:00")  # the page says when it was written
    tiny, plain = cells_roots
    val = validation_dir(tmp_path / "val")
    before = cytoatlas.report(val).read_text()
    assert '<section id="cells">' not in before
    page = cytoatlas.report(val, cells=[tiny, plain]).read_text()
    assert _without_cells(page) == before  # the rest of the page byte for byte
    section = _section(page)
    # the atlases in the order given
    assert "<h3 id=\"cells_0\">tiny: cytosig</h3>" in section and "<h3 id=\"cells_1\">plain: cytosig</h3>" in section
    # the atlas without an embedding: its summary and a note, no figure
    plain_block = section[section.index('id="cells_1"'):]
    assert "No embedding table" in plain_block and "data:image/png" not in plain_block
    assert "600 cells scored" in plain_block and "1,500 cells scored" in section
    # the atlas with one: its figure written (PNG and SVG), recorded in the report's manifest and embedded
    png, svg = layout.cells_figure_paths(val / layout.VALIDATION_FIGURES_DIR, "tiny", "cytosig")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<image" in svg.read_text()
    assert not layout.cells_figure_paths(val / layout.VALIDATION_FIGURES_DIR, "plain", "cytosig")[0].exists()
    assert section.count("data:image/png;base64,") == 1
    assert base64.b64encode(png.read_bytes()).decode() in section
    assert f"SVG: figures/{svg.name}" in section
    manifest = read_manifest(val)
    figure_records = {k: e for k, e in manifest.items() if e.get("kind") == layout.CELLS_FIGURE_KIND}
    assert set(figure_records) == {f"figures/{png.name}", f"figures/{svg.name}"}
    assert figure_records[f"figures/{png.name}"]["checksum"].endswith(file_checksum(png).split(":")[-1])
    # the signatures drawn: the 4 whose z varies most over the embedding table
    cells_dir = layout.cells_dir(tiny)
    emb = pd.read_csv(layout.cells_embedding_path(cells_dir, "tiny", "cytosig"))
    sd = emb[[c for c in emb.columns if c.startswith("z:")]].std()
    widest = [c[2:] for c in sd.sort_values(ascending=False, kind="stable").index[:4]]
    assert figure_records[f"figures/{png.name}"]["parameters"]["signatures"] == widest
    # per level, the summary's rows of highest mean z: the first row shown is the CSV's
    summary = pd.read_csv(layout.cells_summary_path(cells_dir, "tiny", "cytosig"))
    top = summary[summary.level == "L1"].sort_values("mean", ascending=False).iloc[0]
    cells = _first_row(section, "t_cells_0_0")
    assert cells[:3] == [top.label, top.signature, f"{top.n_cells:,}"] and cells[3] == f"{top['mean']:.3f}"
    assert section.count('<tr><td>') == 2 * 10  # 10 rows per level, one level per atlas
    record = manifest["report.html"]
    assert record["parameters"]["cells"] == [str(tiny), str(plain)]
    assert any(i["name"].endswith("tiny_cells_cytosig_embedding.csv") for i in record["inputs"])
    # a rerun draws the same bytes
    again = cytoatlas.report(val, cells=[tiny, plain]).read_text()
    assert again == page and png.read_bytes() == layout.cells_figure_paths(val / "figures", "tiny", "cytosig")[0] \
        .read_bytes()
    # without the cells again: the page and the report's record as before, the per-cell figures gone
    assert cytoatlas.report(val).read_text() == before
    manifest = read_manifest(val)
    assert manifest["report.html"]["parameters"] == {"title": "cytoatlas validation: alpha", "max_rows": 3000}
    assert not any(e.get("kind") == layout.CELLS_FIGURE_KIND for e in manifest.values())
    assert not png.exists() and not svg.exists()


def test_cli_report_with_cells(cells_roots, tmp_path, capsys) -> None:
    tiny, plain = cells_roots
    val = validation_dir(tmp_path / "val")
    # repeatable; a cells/ directory itself is taken too
    assert main(["report", "--out", str(val), "--cells", str(tiny), "--cells", str(layout.cells_dir(plain))]) == 0
    assert capsys.readouterr().out.strip() == str(val / "report.html")
    page = (val / "report.html").read_text()
    assert '<a href="#cells">Per-cell activity</a>' in page and "plain: cytosig" in page and "tiny: cytosig" in page
    # errors: one line, exit 2, and no report written over the last one
    for bad, message in ((tmp_path / "missing", "per-cell results directory"), (val, "has no per-cell outputs")):
        assert main(["report", "--out", str(val), "--cells", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cytoatlas: error: ") and message in err, err
        assert err.count("\n") == 1
    assert (val / "report.html").read_text() == page
    # the same atlas twice
    assert main(["report", "--out", str(val), "--cells", str(tiny), "--cells", str(layout.cells_dir(tiny))]) == 2
    assert "has per-cell outputs in both" in capsys.readouterr().err
    # from Python, one directory alone is a list of one
    section = _section(cytoatlas.report(val, cells=tiny).read_text())
    assert "tiny: cytosig" in section and "plain: cytosig" not in section


def test_widest_spread_is_deterministic() -> None:
    from cytoatlas._cells.figures import widest_spread

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.normal(size=50), "y": rng.normal(size=50), "label:L1": "T",
                          "z:A": rng.normal(size=50), "z:B": 3 * rng.normal(size=50), "z:C": np.zeros(50),
                          "z:D": np.zeros(50), "z:E": np.full(50, np.nan)})
    assert widest_spread(table, 4) == ["B", "A", "C", "D"]  # ties in column order, an all-NaN column last
    assert widest_spread(table.drop(columns=[c for c in table if c.startswith("z:")])) == []

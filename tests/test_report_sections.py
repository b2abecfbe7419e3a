"""The report assembler: a new section is one function plus one registration line (a toy section), and a source
for a section no one registered is refused by name."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _report_factory import validation_dir

import cytoatlas
from cytoatlas._report import SECTIONS, Section, SectionFigure, register_section
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.html import html_cards
from cytoatlas.io.manifest import read_manifest


def _toy(source: dict, out: Path, max_rows: int) -> Section:
    """The toy section's whole module: cards of the numbers given, and one figure file it writes."""
    figure = out / "figures" / "toy.txt"
    figure.parent.mkdir(exist_ok=True)
    figure.write_text(repr(sorted(source.items())))
    return Section("toy", "Toy numbers", html_cards([(k, str(v)) for k, v in source.items()]),
                   parameters={"toy": dict(source)}, figures=[SectionFigure(figure, {}, [], {"kind": "toy"})])


def test_a_toy_section_is_one_function_and_one_registration_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "2026-12-07 15:00")  # the page says when it was written
    monkeypatch.setattr(cytoatlas._report.assemble, "SECTIONS", dict(SECTIONS))  # the registry, restored after
    val = validation_dir(tmp_path / "val")
    before = cytoatlas.report(val).read_text()
    register_section("toy")(_toy)  # the one registration line (as a decorator in a module)
    page = cytoatlas.report(val, toy={"answer": 42}).read_text()
    section = re.search(r'<section id="toy"><h2>Toy numbers</h2>.*?</section>', page, flags=re.S).group(0)
    assert "<b>42</b><span>answer</span>" in section and '<a href="#toy">Toy numbers</a>' in page
    # the rest of the page is the page without it, byte for byte
    assert re.sub(r'<a href="#toy">Toy numbers</a>|<section id="toy">.*?</section>', "", page, flags=re.S) == before
    manifest = read_manifest(val)
    assert manifest["report.html"]["parameters"]["toy"] == {"answer": 42}
    assert (manifest["figures/toy.txt"]["step"], manifest["figures/toy.txt"]["kind"]) == ("report", "toy")
    # without its source: left out, and the figure it wrote is removed with its record
    assert cytoatlas.report(val).read_text() == before
    assert "figures/toy.txt" not in read_manifest(val) and not (val / "figures" / "toy.txt").exists()


def test_a_source_for_an_unknown_section_is_refused_by_name(tmp_path: Path) -> None:
    val = validation_dir(tmp_path / "val")
    with pytest.raises(CytoatlasError, match="no report section named toys; sections: compare, cells"):
        cytoatlas.report(val, toys=1)

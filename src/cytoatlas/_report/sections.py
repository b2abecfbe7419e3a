"""The report's sections beyond the validation's: one function each, registered by name (the keyword of
:func:`cytoatlas.report` that gives its source). Each step's report module makes the HTML; these functions only
say where it goes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cytoatlas._report.assemble import Section, SectionFigure, register_section
from cytoatlas.io.layout import CELLS_FIGURE_KIND, VALIDATION_FIGURES_DIR


@register_section("compare")
def comparison(source: str | os.PathLike, out: Path, max_rows: int) -> Section:
    """"Condition comparisons", from a directory written by `cytoatlas compare`."""
    from cytoatlas._compare.report import comparison_inputs, comparison_section

    return Section("compare", "Condition comparisons", comparison_section(source, max_rows=max_rows),
                   inputs=comparison_inputs(source), parameters={"compare": str(source)})


@register_section("cells")
def per_cell(source: str | os.PathLike | Sequence[str | os.PathLike], out: Path, max_rows: int) -> Section:
    """"Per-cell activity", from atlases' results directories holding `cytoatlas cells` outputs."""
    from cytoatlas._cells.report import cells_section

    roots = [source] if isinstance(source, (str, os.PathLike)) else list(source)  # one directory, not its characters
    part = cells_section(roots, out / VALIDATION_FIGURES_DIR, max_rows=max_rows)
    figures = [SectionFigure(p, {"signatures": fig.signatures}, fig.outputs.inputs(["embedding"]),
                             {"kind": CELLS_FIGURE_KIND, "atlas": fig.outputs.atlas,
                              "signature": fig.outputs.signature_set})
               for fig in part.figures for p in fig.paths]
    return Section("cells", "Per-cell activity", part.html, inputs=part.inputs,
                   parameters={"cells": [str(c) for c in roots]}, figures=figures)

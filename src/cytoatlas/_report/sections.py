"""The report's sections beyond the validation's: one function each, registered by name (the keyword of
:func:`cytoatlas.report` that gives its source). Each step's report module makes the HTML; these functions only
say where it goes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cytoatlas._report.assemble import Section, SectionFigure, register_section
from cytoatlas._report.inputs import verify_step_directory
from cytoatlas.io.layout import CELLS_FIGURE_KIND, COMPARE_TABLES, VALIDATION_FIGURES_DIR, table_paths


@register_section("compare")
def comparison(source: str | os.PathLike, out: Path, max_rows: int) -> Section:
    """"Condition comparisons", from a directory written by `cytoatlas compare`."""
    from cytoatlas._compare.report import comparison_inputs, comparison_section

    if Path(source).is_dir():  # a directory that is not there gets the section's own error
        verify_step_directory(source, "compare", [*COMPARE_TABLES, "figure"],
                              [table_paths(source, t)[1] for t in COMPARE_TABLES],
                              f"rerun `cytoatlas compare --force --out {source}`")
    return Section("compare", "Condition comparisons", comparison_section(source, max_rows=max_rows),
                   inputs=comparison_inputs(source), parameters={"compare": str(source)})


@register_section("groundtruth")
def perturbation_ground_truth(source: str | os.PathLike, out: Path, max_rows: int) -> Section:
    """"Perturbation ground truth", from a directory written by `cytoatlas groundtruth`."""
    from cytoatlas._groundtruth.report import groundtruth_inputs, groundtruth_section
    from cytoatlas._groundtruth.tables import TABLES

    if Path(source).is_dir():  # a directory that is not there gets the section's own error
        verify_step_directory(source, "groundtruth", ["table", "figure"], [table_paths(source, t)[1] for t in TABLES],
                              f"rerun `cytoatlas groundtruth --force --out {source}`")
    return Section("groundtruth", "Perturbation ground truth", groundtruth_section(source, max_rows=max_rows),
                   inputs=groundtruth_inputs(source), parameters={"groundtruth": str(source)})


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

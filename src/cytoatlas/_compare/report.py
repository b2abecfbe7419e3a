"""The "Condition comparisons" section of `cytoatlas report`, from a directory written by `cytoatlas compare`.

Per contrast: the strongest rows of the differential or association table (by FDR), the meta-analysis' strongest
rows, and the figures; then what could not be tested and why. The tables shown are cut to their strongest rows;
the CSV and Parquet files in the comparison directory hold every row.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from cytoatlas._compare.figures import FDR_THRESHOLD, ComparisonFigure, plan_figures, strongest_first
from cytoatlas.defaults import REPORT_COMPARE_ROWS
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.html import html_cards, html_figure, html_table
from cytoatlas.io.layout import COMPARE_FIGURES_DIR, COMPARE_TABLES, manifest_key, table_paths
from cytoatlas.io.manifest import read_manifest, recorded_checksum
from cytoatlas.io.tables import read_parquet

_SHOWN = {
    "differential": ["atlas", "level", "signature_set", "cell_type", "signature", "n_group", "n_reference",
                     "mean_group", "mean_reference", "effect", "ci_low", "ci_high", "pvalue", "fdr", "fdr_cell_type",
                     "also_significant", "test", "covariates"],
    "association": ["atlas", "level", "signature_set", "cell_type", "signature", "n", "effect", "ci_low", "ci_high",
                    "pvalue", "fdr", "fdr_cell_type", "also_significant", "test", "covariates"],
    "meta": ["level", "signature_set", "resolution", "cl_name", "cl_id", "labels", "signature", "n_atlases",
             "atlases", "effect", "ci_low",
             "ci_high", "pvalue", "fdr", "tau2", "i2", "q_pvalue", "sign_agreement"],
}
_TEXT = ("atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "resolution", "labels", "signature",
         "by", "group", "reference", "contrast", "test", "covariates", "atlases", "analysis", "reason",
         "correlated", "also_significant")


def read_comparison(directory: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The four comparison tables of ``directory`` (from their Parquet files).

    Parameters
    ----------
    directory
        A directory written by `cytoatlas compare`.

    Returns
    -------
    dict
        ``{"differential", "association", "meta", "untestable"}`` frames, text columns without missing values.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CytoatlasError(f"comparison directory {directory} does not exist; run `cytoatlas compare --out "
                             f"{directory}` first")
    tables = {}
    for name in COMPARE_TABLES:
        path = table_paths(directory, name)[1]
        if not path.is_file():
            raise CytoatlasError(f"{directory} has no {path.name}: run `cytoatlas compare --out {directory}` first")
        df = read_parquet(path)
        for col in _TEXT:
            if col in df:
                df[col] = df[col].fillna("").astype(str)
        tables[name] = df
    return tables


def comparison_figures(directory: str | os.PathLike, tables: dict[str, pd.DataFrame]) -> list[ComparisonFigure]:
    """The figures of ``tables`` whose PNG is in ``directory/figures``: those the comparison's manifest records
    when it records figures (a figure left from an earlier run is not shown), else every one on disk."""
    directory = Path(directory)
    recorded = {k for k, e in read_manifest(directory).items() if e.get("kind") == "figure" and k.endswith(".png")}
    out = []
    for plan in plan_figures(tables, top=None, scope="all"):
        png = directory / COMPARE_FIGURES_DIR / f"{plan.stem}.png"
        if png.is_file() and (not recorded or manifest_key(png, directory) in recorded):
            out.append(plan)
    return out


def comparison_inputs(directory: str | os.PathLike) -> list[dict]:
    """The comparison's tables and figures as inputs of the report's manifest record (name and checksum)."""
    directory = Path(directory)
    return [{"name": (directory / k).as_posix(), "checksum": recorded_checksum(e)}
            for k, e in sorted(read_manifest(directory).items())
            if e.get("kind") in (*COMPARE_TABLES, "figure", "table")]


def _contrasts(tables: dict[str, pd.DataFrame]) -> list[tuple[str, str, str]]:
    """(analysis, by, contrast) in the tables' order."""
    keys = []
    for analysis in ("differential", "association"):
        df = tables[analysis]
        keys += [(analysis, by, c) for by, c in df[["by", "contrast"]].drop_duplicates().itertuples(index=False)]
    return keys


def _heading(analysis: str, by: str, contrast: str) -> str:
    return f"{contrast} (by {by})" if analysis == "differential" else f"Association with {by} (slope per unit)"


def _shown(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return strongest_first(df)[[c for c in _SHOWN[name] if c in df.columns]]


def _contrast_block(i: int, key: tuple[str, str, str], tables: dict[str, pd.DataFrame],
                    figures: list[ComparisonFigure], directory: Path, top_rows: int) -> str:
    analysis, by, contrast = key
    df = tables[analysis]
    rows = df[(df["by"] == by) & (df["contrast"] == contrast)]
    n_sig = int((rows["fdr"].astype(float) < FDR_THRESHOLD).sum())
    tests = ", ".join(sorted(set(rows["test"]))) if "test" in rows else ""
    covariates = ", ".join(sorted({c for c in rows.get("covariates", pd.Series(dtype=str)) if c})) or "none"
    parts = [f'<h3 id="compare_{i}">{html.escape(_heading(analysis, by, contrast))}</h3>',
             f'<p class="note">{html.escape(analysis)}: {len(rows):,} rows (atlas x level x set x cell type x '
             f"signature) over {rows['atlas'].nunique():,} atlas(es); {n_sig:,} with FDR &lt; {FDR_THRESHOLD:g}. "
             f"Test: {html.escape(tests)}; covariates: {html.escape(covariates)}. The strongest rows:</p>",
             html_table(_shown(rows, analysis), f"t_cmp_{i}", top_rows, bad=None)]
    meta = tables["meta"]
    meta = meta[(meta["analysis"] == analysis) & (meta["by"] == by) & (meta["contrast"] == contrast)]
    if len(meta):
        n_meta = int((meta["fdr"].astype(float) < FDR_THRESHOLD).sum())
        parts += [f'<p class="note">Across atlases (DerSimonian-Laird random effects per Cell Ontology cell '
                  "type x signature, at the finest term the atlases share and at the lineage resolution): "
                  f"{len(meta):,} rows, {n_meta:,} with FDR &lt; {FDR_THRESHOLD:g}.</p>",
                  html_table(_shown(meta, "meta"), f"t_cmp_meta_{i}", top_rows, bad=None)]
    svg_dir = f"{(directory / COMPARE_FIGURES_DIR).as_posix()}/"
    for kind in ("volcano", "heatmap", "forest"):  # the overview first, then each signature across atlases
        parts += [html_figure(directory / COMPARE_FIGURES_DIR / f"{f.stem}.png", f.title, f.caption, svg_dir)
                  for f in figures if f.kind == kind and (f.analysis, f.by, f.contrast) == key]
    return "".join(parts)


def comparison_section(directory: str | os.PathLike, *, max_rows: int = 3000,
                       top_rows: int = REPORT_COMPARE_ROWS) -> str:
    """The HTML of the report's "Condition comparisons" section.

    Parameters
    ----------
    directory
        A directory written by `cytoatlas compare` (its four tables; its figures when there are any).
    max_rows
        Rows shown of the untestable table.
    top_rows
        Rows shown per contrast of the differential / association and meta tables (the strongest, by FDR); at
        most ``max_rows``.

    Returns
    -------
    str
        The section's content (without its ``<section>`` element and heading).
    """
    directory = Path(directory)
    tables = read_comparison(directory)
    figures = comparison_figures(directory, tables)
    top_rows = min(top_rows, max_rows)
    tested = pd.concat([tables["differential"]["fdr"], tables["association"]["fdr"]]).astype(float)
    untestable = tables["untestable"]
    keys = _contrasts(tables)
    cards = html_cards([("contrasts and covariates", str(len(keys))), ("rows tested", f"{len(tested):,}"),
                        (f"rows with FDR < {FDR_THRESHOLD:g}", f"{int((tested < FDR_THRESHOLD).sum()):,}"),
                        ("meta-analysis rows", f"{len(tables['meta']):,}"),
                        ("not testable", f"{len(untestable):,}"), ("figures", str(len(figures)))])
    intro = (f'<p class="note">Which activities differ between groups of donors, or track a donor covariate, per '
             f"cell type (from {html.escape(directory.as_posix())}). The unit is the donor: one value per donor and "
             "cell type (a donor's samples in one group averaged), never pooled across cell types. Effect: the "
             "difference of mean activity z (group - reference), or for a covariate the slope per unit; FDR: "
             "Benjamini-Hochberg over each atlas x level x set x contrast (fdr) and within each cell type "
             "(fdr_cell_type). also_significant: the signatures of the same set whose gene-response columns correlate "
             "with this one (Pearson r &ge; 0.5 over the genes used) and that are significant too (FDR &lt; 0.05) in "
             "the same cell type and contrast: read them as one finding, not several.</p>")
    blocks = [_contrast_block(i, key, tables, figures, directory, top_rows) for i, key in enumerate(keys)]
    if not keys:
        blocks = ['<p class="note">No contrast could be tested.</p>']
    reasons = untestable["reason"].value_counts() if len(untestable) else pd.Series(dtype=int)
    summary = "; ".join(f"{html.escape(r)} ({n:,})" for r, n in reasons.items())
    untested = ('<h3 id="compare_untestable">Not testable</h3>'
                f'<p class="note">{len(untestable):,} atlas x level x set x cell type x contrast(s) could not be '
                f"tested{': ' + summary if summary else ''}.</p>"
                + html_table(untestable, "t_cmp_untestable", max_rows))
    return intro + cards + "".join(blocks) + untested

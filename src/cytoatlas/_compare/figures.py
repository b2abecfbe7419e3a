"""Comparison figures, each written as PNG and SVG: a volcano and an effect heatmap per atlas x level x signature
set x contrast, and a forest plot across atlases for the signatures of the strongest meta-analysis rows.

The figures are drawn from the comparison tables alone (``differential``, ``association``, ``meta``), on
``matplotlib.figure.Figure`` objects (no pyplot state, no display), in the validation figures' style.
:func:`plan_figures` says which figures the tables make (stems, titles, captions) without drawing; the report uses
it to title the files it embeds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cytoatlas.defaults import COMPARE_FIGURE_TOP
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.figures import new_figure, save_figure
from cytoatlas.io.layout import compare_figure_stem

log = logging.getLogger("cytoatlas.compare")
DIVERGING = "RdBu_r"
FDR_THRESHOLD = 0.05
MAX_HEATMAP_SIGNATURES = 40
MAX_FOREST_CELL_TYPES = 12
N_VOLCANO_LABELS = 8
ANALYSES = ("differential", "association")
# which volcanos and heatmaps are drawn: "shown", per atlas x signature set x contrast the level of its strongest
# row (what the report leads with; one figure of each kind per atlas, set and contrast); "all", every level
FigureScope = Literal["shown", "all"]
FIGURE_SCOPES = ("shown", "all")
_UP, _DOWN, _FLAT = "#c0504d", "#4f81bd", "#b8bec6"

# The columns each figure reads (contract B's tables hold more).
_ROW_COLUMNS = ("atlas", "level", "signature_set", "cell_type", "signature", "by", "contrast",
                "effect", "ci_low", "ci_high", "pvalue", "fdr")
_META_COLUMNS = ("analysis", "level", "signature_set", "resolution", "cl_name", "labels", "signature", "by",
                 "contrast", "effect", "ci_low", "ci_high", "pvalue", "fdr", "tau2", "i2", "n_atlases")




@dataclass(frozen=True)
class ComparisonFigure:
    """One figure the tables make: its kind (``volcano``, ``heatmap``, ``forest``), stem in ``figures/``, the
    analysis and contrast it shows, and a title and caption for the report. ``atlas`` is empty for forests (they
    span atlases), ``signature`` is set for forests only."""

    kind: str
    stem: str
    analysis: str
    level: str
    signature_set: str
    by: str
    contrast: str
    atlas: str
    signature: str
    title: str
    caption: str


def _check(df: pd.DataFrame, columns: tuple[str, ...], name: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CytoatlasError(f"the {name} table has no column {', '.join(missing)}; its columns: "
                             f"{', '.join(map(str, df.columns)) or '(none)'}")
    return df


def strongest_first(df: pd.DataFrame) -> pd.DataFrame:
    """``df``'s rows strongest first: smallest fdr, then p (missing ones last); ties keep the tables' order
    (deterministic: the comparison sorts them by their keys)."""
    return df.sort_values(["fdr", "pvalue"], na_position="last", kind="stable")


def _analysis_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ANALYSES:
        df = tables.get(name)
        if df is not None and len(df):
            out[name] = _check(df, _ROW_COLUMNS, name)
    return out


def _forest_keys(meta: pd.DataFrame, top: int | None) -> pd.DataFrame:
    """The (analysis, level, set, by, contrast, signature) of the ``top`` strongest meta rows' signatures, each
    with its strongest row (whose tau2 and I2 the title shows)."""
    keys = ["analysis", "level", "signature_set", "by", "contrast", "signature"]
    best = strongest_first(meta).drop_duplicates(keys)
    return best if top is None else best.head(top)


def effect_label(by: str, analysis: str, contrast: str) -> str:
    """What a figure shows: the contrast ("treated vs untreated"), or for an association the covariate's slope."""
    return contrast if analysis == "differential" else f"slope per unit of {by}"


def _levels_shown(df: pd.DataFrame) -> pd.DataFrame:
    """The (atlas, level, set, by, contrast) keys of ``df`` at the level of each atlas x set x contrast's strongest
    row, in the table's order."""
    keys = ["atlas", "level", "signature_set", "by", "contrast"]
    best = strongest_first(df).drop_duplicates(["atlas", "signature_set", "by", "contrast"])[keys]
    return df[keys].drop_duplicates().merge(best, on=keys, how="inner")


def plan_figures(tables: dict[str, pd.DataFrame], *, top: int | None = COMPARE_FIGURE_TOP,
                 scope: FigureScope = "shown") -> list[ComparisonFigure]:
    """The figures :func:`write_figures` draws from ``tables``, in order, without drawing them.

    Parameters
    ----------
    tables
        ``{"differential", "association", "meta", "untestable"}`` frames with the comparison tables' columns
        (missing or empty tables make no figures).
    top
        Forest plots for the signatures of this many strongest meta rows (by fdr); None: every meta signature.
    scope
        Volcanos and heatmaps of every level (``"all"``), or per atlas x signature set x contrast only of the level
        holding its strongest row (``"shown"``).

    Returns
    -------
    list of ComparisonFigure
        Volcanos and heatmaps per atlas x level x set x contrast of each analysis, then the forests.
    """
    if scope not in FIGURE_SCOPES:
        raise CytoatlasError(f"figure scope must be one of {', '.join(FIGURE_SCOPES)}, got {scope!r}")
    plans = []
    for analysis, df in _analysis_tables(tables).items():
        keys = df[["atlas", "level", "signature_set", "by", "contrast"]].drop_duplicates() if scope == "all" else \
            _levels_shown(df)
        for atlas, level, sig_set, by, contrast in keys.itertuples(index=False):
            what = effect_label(by, analysis, contrast)
            x = "effect (mean activity z difference)" if analysis == "differential" else "slope"
            plans.append(ComparisonFigure(
                "volcano", compare_figure_stem("volcano", atlas=atlas, level=level, signature_set=sig_set,
                                              contrast=contrast), analysis, level, sig_set, by,
                contrast, atlas, "", f"Volcano: {atlas}, {level}, {sig_set}, {what}",
                f"Each point one signature in one cell type ({analysis}, by {by}): {x} against -log10 p; "
                f"coloured where the BH FDR (over the atlas x level x set x contrast) is below {FDR_THRESHOLD:g}, "
                "the strongest of those labelled \"signature (cell type)\"."))
            plans.append(ComparisonFigure(
                "heatmap", compare_figure_stem("heatmap", atlas=atlas, level=level, signature_set=sig_set,
                                              contrast=contrast), analysis, level, sig_set, by,
                contrast, atlas, "", f"Effects: {atlas}, {level}, {sig_set}, {what}",
                f"{x[0].upper()}{x[1:]} per cell type (rows) and signature (columns; at most "
                f"{MAX_HEATMAP_SIGNATURES}, those with the smallest FDR in any cell type); dots mark FDR < "
                f"{FDR_THRESHOLD:g}."))
    meta = tables.get("meta")
    if meta is not None and len(meta):
        _check(meta, _META_COLUMNS, "meta")
        meta = meta[meta["resolution"] == "fine"]  # forests per finest shared cell type
        for row in _forest_keys(meta, top).itertuples(index=False):
            what = effect_label(row.by, row.analysis, row.contrast)
            plans.append(ComparisonFigure(
                "forest", compare_figure_stem("forest", level=row.level, signature_set=row.signature_set,
                                             contrast=row.contrast, signature=row.signature), row.analysis,
                row.level, row.signature_set, row.by, row.contrast, "", row.signature,
                f"Across atlases: {row.signature} ({row.signature_set}), {row.level}, {what}",
                f"Per Cell Ontology cell type both atlases hold (at most {MAX_FOREST_CELL_TYPES}, strongest "
                "first): each atlas' "
                "effect with its 95% CI (squares) and the DerSimonian-Laird random-effects pooled effect with its "
                "CI (diamond); I2 of each cell type beside its pooled row."))
    return _unique(plans)


def _unique(plans: list[ComparisonFigure]) -> list[ComparisonFigure]:
    """The first plan of each stem: two contrasts whose names differ only in characters a file name cannot hold
    (or a covariate named like a contrast) would write one file twice."""
    seen, out = set(), []
    for plan in plans:
        if plan.stem in seen:
            log.warning("figure %s: drawn once, for the first of the contrasts with this file name", plan.stem)
            continue
        seen.add(plan.stem)
        out.append(plan)
    return out


def _significant(df: pd.DataFrame) -> np.ndarray:
    return df["fdr"].to_numpy(float) < FDR_THRESHOLD  # NaN compares False: not significant


def x_label(analysis: str, by: str) -> str:
    """The effect axis' label of a volcano: a difference of means, or an association's slope."""
    return ("mean activity z difference (group - reference)" if analysis == "differential"
            else f"slope: activity z per unit of {by}")


def draw_volcano(ax, rows: pd.DataFrame, *, analysis: str, by: str, n_labels: int = N_VOLCANO_LABELS) -> int:
    """Draw effect against -log10 p of ``rows`` (one atlas x level x set x contrast) on ``ax``: FDR < 0.05
    coloured by sign, the ``n_labels`` strongest of those labelled "signature (cell type)", the scatter
    rasterised (SecAct has ~1,170 signatures per cell type). Returns how many rows were significant."""
    rows = rows[np.isfinite(rows["pvalue"].to_numpy(float)) & np.isfinite(rows["effect"].to_numpy(float))]
    effect = rows["effect"].to_numpy(float)
    # p = 0 (underflow) would be infinitely high: draw it at the smallest positive double's height
    logp = -np.log10(np.clip(rows["pvalue"].to_numpy(float), np.finfo(float).tiny, 1.0))
    sig = _significant(rows)
    colour = np.where(~sig, _FLAT, np.where(effect > 0, _UP, _DOWN))
    order = np.argsort(sig, kind="stable")  # significant points drawn last, on top
    ax.scatter(effect[order], logp[order], s=9, c=colour[order], alpha=0.8, linewidths=0, rasterized=True)
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    # only significant points are labelled: labels of the null cloud would only overlap one another; a label
    # points inwards so the axes never cut it
    middle = float(np.mean(ax.get_xlim()))
    for i, r in enumerate(strongest_first(rows[sig]).head(n_labels).itertuples(index=False)):
        right = r.effect > middle
        ax.annotate(f"{r.signature} ({r.cell_type})", (r.effect, -np.log10(max(r.pvalue, np.finfo(float).tiny))),
                    fontsize=7, xytext=(-3 if right else 3, 3 if i % 2 == 0 else -9), textcoords="offset points",
                    ha="right" if right else "left")
    ax.set_xlabel(x_label(analysis, by))
    ax.set_ylabel("-log10 p")
    return int(sig.sum())


def volcano(rows: pd.DataFrame, plan: ComparisonFigure, directory: Path) -> list[Path]:
    """Effect against -log10 p of one atlas x level x set x contrast (:func:`draw_volcano`), as PNG and SVG."""
    fig = new_figure(6.0, 4.6)
    ax = fig.subplots()
    n_sig = draw_volcano(ax, rows, analysis=plan.analysis, by=plan.by)
    n = int((np.isfinite(rows["pvalue"].to_numpy(float)) & np.isfinite(rows["effect"].to_numpy(float))).sum())
    what = effect_label(plan.by, plan.analysis, plan.contrast)
    ax.set_title(f"{plan.atlas} · {plan.level} · {plan.signature_set}: {what}"
                 f"\n{n_sig:,} of {n:,} FDR < {FDR_THRESHOLD:g}", fontsize=10)
    return save_figure(fig, directory, plan.stem)


def heatmap_frames(rows: pd.DataFrame, max_signatures: int = MAX_HEATMAP_SIGNATURES
                   ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Effects and FDRs of one atlas x level x set x contrast as cell types x signatures (the ``max_signatures``
    with the smallest min fdr, in that order); None when there are no rows."""
    rows = rows.drop_duplicates(["cell_type", "signature"])
    min_fdr = rows.groupby("signature", sort=True)["fdr"].min()
    chosen = min_fdr.sort_values(na_position="last", kind="stable").index[:max_signatures]
    rows = rows[rows["signature"].isin(chosen)]
    if rows.empty:
        return None
    effect = rows.pivot(index="cell_type", columns="signature", values="effect").reindex(columns=list(chosen))
    fdr = rows.pivot(index="cell_type", columns="signature", values="fdr").reindex(index=effect.index,
                                                                                 columns=effect.columns)
    return effect, fdr


def draw_heatmap(ax, effect: pd.DataFrame, fdr: pd.DataFrame, *, analysis: str):
    """Draw ``effect`` (cell types x signatures, from :func:`heatmap_frames`) on ``ax`` on a diverging scale
    symmetric at the largest |effect|, dots where ``fdr`` < 0.05, missing cells grey, and its colour bar."""
    import matplotlib

    values = effect.to_numpy(float)
    finite = np.abs(values[np.isfinite(values)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = matplotlib.colormaps[DIVERGING].with_extremes(bad="#e6e8eb")  # not computed: grey, never on the scale
    im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, vmin=-vmax, vmax=vmax,
                   interpolation="nearest")
    yi, xi = np.nonzero(fdr.to_numpy(float) < FDR_THRESHOLD)
    if len(xi):
        ax.scatter(xi, yi, s=14, c="black", marker="o", edgecolors="white", linewidths=0.6)  # seen on any colour
    ax.set_xticks(range(values.shape[1]), effect.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(values.shape[0]), effect.index, fontsize=7)
    ax.figure.colorbar(im, ax=ax, shrink=0.7, label="effect" if analysis == "differential" else "slope")
    return im


def heatmap(rows: pd.DataFrame, plan: ComparisonFigure, directory: Path) -> list[Path] | None:
    """Effects of one atlas x level x set x contrast, cell types x signatures (the 40 with the smallest min fdr)."""
    frames = heatmap_frames(rows)
    if frames is None:
        return None
    effect, fdr = frames
    fig = new_figure(max(5.0, 0.22 * effect.shape[1] + 3.0), max(2.6, 0.24 * effect.shape[0] + 2.0))
    ax = fig.subplots()
    ax.set_title(f"{plan.atlas} · {plan.level} · {plan.signature_set}: "
                 f"{effect_label(plan.by, plan.analysis, plan.contrast)}", fontsize=10)
    draw_heatmap(ax, effect, fdr, analysis=plan.analysis)
    return save_figure(fig, directory, plan.stem)


@dataclass(frozen=True)
class ForestLine:
    """One row of a forest plot: its label, effect and 95% CI, and whether it is a pooled (meta) row."""

    label: str
    effect: float
    ci_low: float
    ci_high: float
    pooled: bool


def _pooled_into(label: str, joined: str | None) -> bool:
    """Whether ``label`` is one of the labels a meta row joined with "+" (``joined``, one atlas' part of its
    ``labels``); a label may hold "+" itself (``CD4+ T``), so it is found as a whole "+"-bounded run, not split."""
    if joined is None:
        return False
    return (joined == label or joined.startswith(label + "+") or joined.endswith("+" + label)
            or f"+{label}+" in joined)


def forest_lines(rows: pd.DataFrame, meta: pd.DataFrame) -> list[ForestLine]:
    """The rows of one signature's forest plot: per cell-type unit of ``meta`` (its ``MAX_FOREST_CELL_TYPES``
    strongest), each atlas' row of ``rows`` pooled into it (from the meta row's ``labels``), then the pooled row."""
    meta = strongest_first(meta).drop_duplicates("cl_name").head(MAX_FOREST_CELL_TYPES)
    lines = []
    for m in meta.itertuples(index=False):
        pooled = dict(part.partition(": ")[::2] for part in m.labels.split("; ") if ": " in part)
        keep = [_pooled_into(c, pooled.get(a)) for a, c in zip(rows["atlas"], rows["cell_type"], strict=True)]
        per_atlas = rows[keep].sort_values(["atlas", "cell_type"], kind="stable")
        for r in per_atlas.itertuples(index=False):
            where = "" if r.cell_type == m.cl_name else f" ({r.cell_type})"
            lines.append(ForestLine(f"{m.cl_name} · {r.atlas}{where}", r.effect, r.ci_low, r.ci_high, False))
        i2 = "" if pd.isna(m.i2) else f", I² {m.i2:.0f}%"
        lines.append(ForestLine(f"{m.cl_name} · pooled{i2}", m.effect, m.ci_low, m.ci_high, True))
    return lines


def draw_forest(ax, lines: list[ForestLine], *, analysis: str, by: str) -> None:
    """Draw ``lines`` (top to bottom) on ``ax``: each atlas' effect as a square with its CI, each pooled row as a
    diamond spanning its CI, a faint rule under each cell type's block."""
    from matplotlib.patches import Polygon

    y = np.arange(len(lines))[::-1].astype(float)
    for yy, line in zip(y, lines, strict=True):
        eff, lo, hi = line.effect, line.ci_low, line.ci_high
        if line.pooled and yy > 0:  # a faint rule under each cell type's block
            ax.axhline(yy - 0.5, color="#dde2e8", lw=0.8)
        if line.pooled:
            if np.isfinite([eff, lo, hi]).all():
                ax.add_patch(Polygon([(lo, yy), (eff, yy + 0.32), (hi, yy), (eff, yy - 0.32)], closed=True,
                                     color="#23395d"))
            else:
                ax.plot([eff], [yy], marker="D", color="#23395d")
        else:
            if np.isfinite(lo) and np.isfinite(hi):
                ax.hlines(yy, lo, hi, color="black", lw=0.9)
            ax.plot([eff], [yy], marker="s", ms=4, color="#3b6ea8")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [line.label for line in lines], fontsize=7)
    ax.set_ylim(-0.7, len(lines) - 0.3)
    ax.autoscale(axis="x")
    ax.set_xlabel("mean activity z difference, 95% CI" if analysis == "differential"
                  else f"slope per unit of {by}, 95% CI")


def forest(rows: pd.DataFrame, meta: pd.DataFrame, plan: ComparisonFigure, directory: Path) -> list[Path] | None:
    """One signature across atlases: per cell-type unit, each atlas' effect +- CI (the labels pooled into the
    unit, from the meta row's ``labels``) and the pooled diamond."""
    lines = forest_lines(rows, meta)
    if not lines:
        return None
    fig = new_figure(6.4, 0.24 * len(lines) + 1.6)
    ax = fig.subplots()
    draw_forest(ax, lines, analysis=plan.analysis, by=plan.by)
    top = strongest_first(meta).iloc[0]
    ax.set_title(f"{plan.signature} ({plan.signature_set}) · {plan.level}: "
                 f"{effect_label(plan.by, plan.analysis, plan.contrast)}\n{top['cl_name']}: τ² = {top['tau2']:.3g}, "
                 f"I² = {top['i2']:.0f}%, FDR = {top['fdr']:.2g}", fontsize=10)
    return save_figure(fig, directory, plan.stem)


def write_figures(tables: dict[str, pd.DataFrame], directory: Path, *, top: int = COMPARE_FIGURE_TOP,
                  scope: FigureScope = "shown") -> list[Path]:
    """Draw the comparison figures of ``tables`` into ``directory`` (PNG and SVG each, written atomically).

    Parameters
    ----------
    tables
        ``{"differential", "association", "meta", "untestable"}`` frames with the comparison tables' columns.
        Empty (or absent) tables make no figures.
    directory
        The comparison's ``figures/`` directory (created when there is something to draw).
    top
        Forest plots for the signatures of this many strongest meta rows (by fdr), at most one per signature x
        level x set x contrast.
    scope
        Volcanos and heatmaps of every level, or only of what the report leads with (see :func:`plan_figures`).

    Returns
    -------
    list of Path
        The files written, PNG and SVG of each figure, in :func:`plan_figures`' order.
    """
    t0 = time.perf_counter()
    directory = Path(directory)
    plans = plan_figures(tables, top=top, scope=scope)
    if not plans:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    rows = _analysis_tables(tables)
    parts = {name: dict(iter(df.groupby(["atlas", "level", "signature_set", "contrast"], sort=False)))
             for name, df in rows.items()}
    meta = tables.get("meta")
    written = []
    for plan in plans:
        if plan.kind == "forest":
            df = rows.get(plan.analysis, pd.DataFrame(columns=_ROW_COLUMNS))
            sel = ((df["level"] == plan.level) & (df["signature_set"] == plan.signature_set)
                   & (df["contrast"] == plan.contrast) & (df["signature"] == plan.signature))
            msel = ((meta["analysis"] == plan.analysis) & (meta["level"] == plan.level)
                    & (meta["signature_set"] == plan.signature_set) & (meta["contrast"] == plan.contrast)
                    & (meta["signature"] == plan.signature))
            paths = forest(df[sel], meta[msel], plan, directory)
        else:
            sub = parts[plan.analysis][(plan.atlas, plan.level, plan.signature_set, plan.contrast)]
            paths = (volcano if plan.kind == "volcano" else heatmap)(sub, plan, directory)
        written.extend(paths or [])
    log.info("%d comparison figures (PNG and SVG) in %s in %.1f s", len(written) // 2, directory,
             time.perf_counter() - t0)
    return written

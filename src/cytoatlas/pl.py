"""Plots of cytoatlas results, each drawn on a matplotlib ``Axes`` and returned (as scanpy's ``sc.pl.*``).

Every function takes what a step returns or what a user reads from its output files, and draws through the same
function as the HTML report, so a figure in a notebook is the report's figure:

- :func:`volcano`, :func:`effect_heatmap`, :func:`forest`: the tables of `cytoatlas compare`
  (``pd.read_csv("compare/differential.csv")`` or ``.parquet``; ``association`` alike; ``meta`` for the forest);
- :func:`own_gene_scatter`: a sample x cell type pseudobulk and its activity (``anndata.read_h5ad`` of
  ``{atlas}_pseudobulk_{level}_samples.h5ad`` and ``..._samples_{set}_activity.h5ad``);
- :func:`embedding`: per-cell activity on an embedding, from the ``{atlas}_cells_{set}_embedding.csv`` table of
  `cytoatlas cells` or from an AnnData holding the coordinates in ``obsm`` and the scores as its variables, an obs
  column or an ``obsm`` frame.

Pass ``ax=`` to draw into a figure of your own; without it a new pyplot figure is made (shown by Jupyter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cytoatlas._cells.figures import draw_embedding
from cytoatlas._cells.tables import Z_PREFIX
from cytoatlas._compare.figures import (
    FDR_THRESHOLD,
    MAX_HEATMAP_SIGNATURES,
    N_VOLCANO_LABELS,
    draw_forest,
    draw_heatmap,
    draw_volcano,
    effect_label,
    forest_lines,
    heatmap_frames,
    strongest_first,
)
from cytoatlas._validate.figures import draw_own_gene
from cytoatlas._validate.targets import target_gene
from cytoatlas.errors import CytoatlasError

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

__all__ = ["effect_heatmap", "embedding", "forest", "own_gene_scatter", "volcano"]

# a comparison table's rows of one figure: one value of each of these (the parameter naming it in brackets)
_PART = (("atlas", "atlas"), ("level", "level"), ("signature_set", "signature_set"), ("by", "by"),
         ("contrast", "contrast"))


def _axes(ax: Axes | None, width: float, height: float) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")[1]


def _analysis(table: pd.DataFrame) -> str:
    """``differential`` (a group vs a reference) or ``association`` (a slope), from the table's columns."""
    if "reference" in table.columns:
        return "differential"
    if "n" in table.columns:
        return "association"
    raise CytoatlasError("not a comparison table: expected the columns of `cytoatlas compare`'s differential or "
                         f"association table; got {', '.join(map(str, table.columns[:12])) or '(none)'}")


def _select(table: pd.DataFrame, chosen: Mapping[str, str | None], part: tuple[tuple[str, str], ...] = _PART,
            name: str = "comparison") -> pd.DataFrame:
    """The rows of ``table`` with the ``chosen`` values; each column of ``part`` must then hold one value."""
    missing = [c for c, _ in part if c not in table.columns]
    if missing:
        raise CytoatlasError(f"the {name} table has no column {', '.join(missing)}; its columns: "
                             f"{', '.join(map(str, table.columns)) or '(none)'}")
    for column, param in part:
        values = list(dict.fromkeys(table[column].astype(str)))
        want = chosen.get(param)
        if want is not None:
            if str(want) not in values:
                raise CytoatlasError(f"{param}={want!r} is not in the {name} table; its values: "
                                     f"{', '.join(values) or '(none)'}")
            table = table[table[column].astype(str) == str(want)]
        elif len(values) > 1:
            raise CytoatlasError(f"the {name} table holds {len(values)} values of {column} ({', '.join(values[:10])}"
                                 f"{', ...' if len(values) > 10 else ''}): choose one with {param}=...")
    return table


def _title(rows: pd.DataFrame, analysis: str) -> str:
    first = rows.iloc[0]
    return (f"{first['atlas']} · {first['level']} · {first['signature_set']}: "
            f"{effect_label(first['by'], analysis, first['contrast'])}")


def volcano(table: pd.DataFrame, *, atlas: str | None = None, level: str | None = None,
            signature_set: str | None = None, by: str | None = None, contrast: str | None = None,
            n_labels: int = N_VOLCANO_LABELS, ax: Axes | None = None) -> Axes:
    """Volcano of one comparison: each signature in each cell type, effect against -log10 p.

    Points with a Benjamini-Hochberg FDR below 0.05 are coloured by the effect's sign and the ``n_labels``
    strongest of them labelled "signature (cell type)", as in the report.

    Parameters
    ----------
    table
        The ``differential`` or ``association`` table of :func:`cytoatlas.compare` (e.g. read with
        ``pd.read_csv(OUT / "differential.csv")``).
    atlas, level, signature_set, by, contrast
        Which comparison to draw; needed only for the columns that hold several values.
    n_labels
        How many significant points are labelled.
    ax
        The axes to draw on; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    analysis = _analysis(table)
    rows = _select(table, {"atlas": atlas, "level": level, "signature_set": signature_set, "by": by,
                           "contrast": contrast})
    if rows.empty:
        raise CytoatlasError("the comparison table has no rows to draw")
    ax = _axes(ax, 6.0, 4.6)
    n_sig = draw_volcano(ax, rows, analysis=analysis, by=str(rows["by"].iloc[0]), n_labels=n_labels)
    ax.set_title(f"{_title(rows, analysis)}\n{n_sig:,} FDR < {FDR_THRESHOLD:g}", fontsize=10)
    return ax


def effect_heatmap(table: pd.DataFrame, *, atlas: str | None = None, level: str | None = None,
                   signature_set: str | None = None, by: str | None = None, contrast: str | None = None,
                   max_signatures: int = MAX_HEATMAP_SIGNATURES, ax: Axes | None = None) -> Axes:
    """Heatmap of one comparison's effects: cell types x signatures, dots where the FDR is below 0.05.

    The signatures shown are the ``max_signatures`` with the smallest FDR in any cell type, in that order; the
    colour scale is diverging and symmetric at the largest absolute effect; cells not computed are grey.

    Parameters
    ----------
    table
        The ``differential`` or ``association`` table of :func:`cytoatlas.compare`.
    atlas, level, signature_set, by, contrast
        Which comparison to draw; needed only for the columns that hold several values.
    max_signatures
        At most this many signatures (columns).
    ax
        The axes to draw on (a colour bar is added beside it); default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    analysis = _analysis(table)
    rows = _select(table, {"atlas": atlas, "level": level, "signature_set": signature_set, "by": by,
                           "contrast": contrast})
    frames = heatmap_frames(rows, max_signatures)
    if frames is None:
        raise CytoatlasError("the comparison table has no rows to draw")
    effect, fdr = frames
    ax = _axes(ax, max(5.0, 0.22 * effect.shape[1] + 3.0), max(2.6, 0.24 * effect.shape[0] + 2.0))
    ax.set_title(_title(rows, analysis), fontsize=10)
    draw_heatmap(ax, effect, fdr, analysis=analysis)
    return ax


def forest(table: pd.DataFrame, meta: pd.DataFrame, signature: str, *, level: str | None = None,
           signature_set: str | None = None, by: str | None = None, contrast: str | None = None,
           resolution: str = "fine", ax: Axes | None = None) -> Axes:
    """Forest plot of one signature across atlases: per Cell Ontology cell type, each atlas' effect and 95% CI
    (squares) and the random-effects pooled effect (a diamond spanning its CI).

    The cell types are those of the ``meta`` rows (at most 12, smallest FDR first); each atlas' rows are the
    labels pooled into them (the meta row's ``labels``).

    Parameters
    ----------
    table
        The ``differential`` or ``association`` table of :func:`cytoatlas.compare` (several atlases).
    meta
        The ``meta`` table of the same comparison.
    signature
        The signature to draw.
    level, signature_set, by, contrast
        Which comparison; needed only for the columns of ``meta`` that hold several values.
    resolution
        The meta-analysis' cell-type resolution: ``fine`` (the finest Cell Ontology term the atlases share) or
        ``lineage``.
    ax
        The axes to draw on; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    analysis = _analysis(table)
    part = (("analysis", "analysis"), ("resolution", "resolution"), ("signature", "signature"), *_PART[1:])
    chosen = {"analysis": analysis, "resolution": resolution, "signature": signature, "level": level,
              "signature_set": signature_set, "by": by, "contrast": contrast}
    meta = _select(meta, chosen, part, "meta")
    if meta.empty:
        raise CytoatlasError(f"the meta table has no row of {signature}")
    first = strongest_first(meta).iloc[0]
    keys = ("level", "signature_set", "by", "contrast", "signature")
    rows = table[np.logical_and.reduce([table[k].astype(str) == str(first[k]) for k in keys])]
    lines = forest_lines(rows, meta)
    ax = _axes(ax, 6.4, 0.24 * len(lines) + 1.6)
    draw_forest(ax, lines, analysis=analysis, by=str(first["by"]))
    ax.set_title(f"{signature} ({first['signature_set']}) · {first['level']}: "
                 f"{effect_label(first['by'], analysis, first['contrast'])}", fontsize=10)
    return ax


def _embedding_values(data, signature: str, basis: str, scores: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(n x 2 coordinates, n z) of ``signature`` in an embedding table or an AnnData."""
    if isinstance(data, pd.DataFrame):
        column = Z_PREFIX + signature
        missing = [c for c in ("x", "y", column) if c not in data.columns]
        if missing:
            names = [c[len(Z_PREFIX):] for c in data.columns if c.startswith(Z_PREFIX)]
            raise CytoatlasError(f"the embedding table has no column {', '.join(missing)}; its signatures: "
                                 f"{', '.join(names[:20]) or '(none)'}")
        return data[["x", "y"]].to_numpy(np.float64), data[column].to_numpy(np.float64)
    if basis not in data.obsm:
        raise CytoatlasError(f"obsm has no {basis!r}; its keys: {', '.join(data.obsm) or '(none)'} (basis=...)")
    xy = np.asarray(data.obsm[basis])[:, :2].astype(np.float64)
    if scores is not None:
        if scores not in data.obsm or not isinstance(data.obsm[scores], pd.DataFrame):
            raise CytoatlasError(f"obsm[{scores!r}] is not a frame of scores (cells x signatures); obsm keys: "
                                 f"{', '.join(data.obsm) or '(none)'}")
        frame = data.obsm[scores]
        if signature not in frame.columns:
            raise CytoatlasError(f"obsm[{scores!r}] has no column {signature!r}; its columns: "
                                 f"{', '.join(map(str, frame.columns[:20]))}")
        return xy, frame[signature].to_numpy(np.float64)
    if signature in data.var_names:
        column = data[:, signature].X
        column = column.toarray() if hasattr(column, "toarray") else np.asarray(column)
        return xy, column.reshape(-1).astype(np.float64)
    if signature in data.obs.columns:
        return xy, data.obs[signature].to_numpy(np.float64)
    raise CytoatlasError(f"{signature!r} is neither a variable nor an obs column of the AnnData (its first "
                         f"variables: {', '.join(map(str, data.var_names[:10]))}); scores in obsm: pass scores=KEY")


def embedding(data: pd.DataFrame | AnnData, signature: str, *, basis: str = "X_umap", scores: str | None = None,
              size: float | None = None, ax: Axes | None = None) -> Axes:
    """Per-cell activity of one signature on an embedding.

    Cells are coloured on a diverging scale centred at 0 that saturates at the 99th percentile of ``|z|``, the
    strongest drawn on top, as in the report's "Per-cell activity" section.

    Parameters
    ----------
    data
        The embedding table of `cytoatlas cells` (``{atlas}_cells_{set}_embedding.csv``: columns ``x``, ``y``,
        ``z:{signature}``), or an AnnData with the coordinates in ``obsm[basis]`` and the scores as its variables
        (a per-cell activity AnnData), an obs column, or the columns of the frame ``obsm[scores]``.
    signature
        The signature to colour by.
    basis
        The ``obsm`` key of the coordinates (AnnData only).
    scores
        The ``obsm`` key of a cells x signatures frame of scores (AnnData only).
    size
        The dots' size; default shrinking with the number of cells.
    ax
        The axes to draw on (a colour bar is added beside it); default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    xy, z = _embedding_values(data, signature, basis, scores)
    ax = _axes(ax, 4.2, 3.6)
    draw_embedding(ax, xy[:, 0], xy[:, 1], z, title=signature, size=size)
    return ax


def _dense_column(adata: AnnData, j: int) -> np.ndarray:
    column = adata.X[:, j]
    column = column.toarray() if hasattr(column, "toarray") else np.asarray(column)
    return column.reshape(-1).astype(np.float64)


def own_gene_scatter(pseudobulk: AnnData, activity: AnnData, target: str, *, cell_type: str | None = None,
                     gene: str | None = None, ax: Axes | None = None) -> Axes:
    """A target's activity against its own gene's expression, one point per sample (x cell type), with the
    Spearman rho in the title, as validation's scatter figures.

    Parameters
    ----------
    pseudobulk
        A pseudobulk AnnData (X = log1p CPM; genes by ``var['gene_symbol']`` when present, else var_names), e.g.
        a sample x cell type file of `cytoatlas pseudobulk`.
    activity
        Its activity AnnData (the same rows; X = activity z), e.g. the file `cytoatlas activity` wrote from it.
    target
        The signature; its gene is found as validation finds it (CytoSig names through the shipped table:
        TNFA -> TNF, ...; the signature set read from ``activity.uns['signature']['name']``).
    cell_type
        Draw only the rows of this ``obs['cell_type']`` (validation's stratum); default every row.
    gene
        The gene to use instead of the target's own.
    ax
        The axes to draw on; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    from scipy.stats import spearmanr

    signature_set = str(activity.uns.get("signature", {}).get("name", ""))
    if target not in activity.var_names:
        raise CytoatlasError(f"{target!r} is not a signature of the activity AnnData; its signatures: "
                             f"{', '.join(map(str, activity.var_names[:20]))}")
    gene = gene or target_gene(target, signature_set)
    symbols = pd.Index(np.asarray(pseudobulk.var.get("gene_symbol", pseudobulk.var_names), dtype=str))
    if gene not in symbols:
        raise CytoatlasError(f"gene {gene!r} (of {target!r}) is not in the pseudobulk; pass gene=...")
    missing = activity.obs_names.difference(pseudobulk.obs_names)
    if len(missing):
        raise CytoatlasError(f"{len(missing)} activity rows are not pseudobulk rows (e.g. {missing[0]!r}): pass "
                             "the pseudobulk the activity was computed from")
    rows = np.ones(activity.n_obs, dtype=bool)
    if cell_type is not None:
        labels = activity.obs["cell_type"].astype(str) if "cell_type" in activity.obs else pd.Series(dtype=str)
        if cell_type not in set(labels):
            raise CytoatlasError(f"cell_type={cell_type!r} is not in obs['cell_type']; its values: "
                                 f"{', '.join(dict.fromkeys(labels)) or '(none)'}")
        rows = (labels == cell_type).to_numpy()
    act = activity[rows]
    pb = pseudobulk[act.obs_names]
    x = _dense_column(pb, int(np.flatnonzero(symbols == gene)[0]))
    y = _dense_column(act, int(activity.var_names.get_loc(target)))
    ok = np.isfinite(x) & np.isfinite(y)
    rho = float(spearmanr(x[ok], y[ok]).statistic) if ok.sum() >= 3 else float("nan")
    ax = _axes(ax, 3.6, 3.4)
    draw_own_gene(ax, x[ok], y[ok], target=target, signature_set=signature_set or "activity", gene=gene,
                  stratum=cell_type or "", rho=rho, n=int(ok.sum()))
    return ax

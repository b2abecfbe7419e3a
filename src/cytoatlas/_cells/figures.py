"""The report's per-cell figure: an atlas' embedding subsample (the ``..._embedding.csv`` table of `cytoatlas
cells`) coloured by the activity z of a few signatures, as small multiples, written as PNG and SVG.

Drawn on ``matplotlib.figure.Figure`` objects (no pyplot state, no display), in the validation figures' style: a
diverging colour map centred at 0, the points rasterised (an SVG of 50,000 vector dots would be megabytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas._cells.tables import Z_PREFIX
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.figures import new_figure, save_figure

DIVERGING = "RdBu_r"
N_PANELS = 4  # signatures drawn per atlas x set
COLOUR_PERCENTILE = 99  # each panel's colour scale is symmetric at this percentile of |z| (a few extremes saturate)


def z_columns(table: pd.DataFrame) -> list[str]:
    """The signatures whose z the embedding table holds, in its column order."""
    return [c[len(Z_PREFIX):] for c in table.columns if c.startswith(Z_PREFIX)]


def widest_spread(table: pd.DataFrame, n: int = N_PANELS) -> list[str]:
    """The ``n`` signatures whose z varies most over the subsample (sd, ddof 1), widest first; ties keep the
    table's column order, so the choice is deterministic."""
    names = z_columns(table)
    if not names:
        return []
    sd = table[[Z_PREFIX + s for s in names]].astype(np.float64).std(ddof=1).to_numpy()  # NaNs skipped
    sd = np.where(np.isfinite(sd), sd, -np.inf)  # a column without two finite values is drawn last, if at all
    return [names[j] for j in np.argsort(-sd, kind="stable")[:n]]


def dot_size(n: int) -> float:
    """The marker size of ``n`` cells: dots shrink as cells grow (50,000 cells at 0.3, at most 8)."""
    return float(np.clip(9000 / max(n, 1), 0.3, 8.0))


def draw_embedding(ax, x: np.ndarray, y: np.ndarray, z: np.ndarray, *, title: str, size: float | None = None):
    """Draw cells at (``x``, ``y``) coloured by their activity ``z`` on ``ax``, with a colour bar.

    The scale is diverging, centred at 0 and symmetric at the 99th percentile of |z| (a few extremes saturate);
    the strongest cells are drawn on top, missing z first; the dots are rasterised (an SVG of 50,000 vector dots
    would be megabytes). Returns the scatter's ``PathCollection``.
    """
    finite = np.isfinite(z)
    vmax = float(np.percentile(np.abs(z[finite]), COLOUR_PERCENTILE)) if finite.any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    order = np.argsort(np.where(finite, np.abs(z), -1.0), kind="stable")  # the strongest cells drawn on top
    dots = ax.scatter(x[order], y[order], c=z[order], cmap=DIVERGING, vmin=-vmax, vmax=vmax,
                      s=dot_size(len(z)) if size is None else size, linewidths=0, rasterized=True)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    ax.figure.colorbar(dots, ax=ax, shrink=0.75, label="activity z")
    return dots


def embedding_figure(table: pd.DataFrame, signatures: list[str], directory: Path, stem: str, *,
                     title: str) -> list[Path]:
    """Draw the embedding subsample once per signature, coloured by its z, and write ``directory/stem.png|svg``.

    Parameters
    ----------
    table
        An embedding table of `cytoatlas cells`: columns ``x``, ``y`` and ``z:{signature}``.
    signatures
        The signatures to draw, one panel each (e.g. :func:`widest_spread`).
    directory, stem
        Where the PNG and SVG go, and their file stem (from :mod:`cytoatlas.io.layout`).
    title
        The figure's title (atlas, set, embedding).

    Returns
    -------
    list of Path
        The PNG and SVG written.
    """
    missing = [c for c in ("x", "y", *(Z_PREFIX + s for s in signatures)) if c not in table.columns]
    if missing or not signatures:
        raise CytoatlasError(f"the embedding table has no column {', '.join(missing) or 'z:...'}; its columns: "
                             f"{', '.join(map(str, table.columns[:8])) or '(none)'}")
    x, y = table["x"].to_numpy(np.float64), table["y"].to_numpy(np.float64)
    fig = new_figure(3.3 * len(signatures), 3.3)
    axes = np.atleast_1d(fig.subplots(1, len(signatures), squeeze=False)[0])
    for ax, sig in zip(axes, signatures, strict=True):
        draw_embedding(ax, x, y, table[Z_PREFIX + sig].to_numpy(np.float64), title=sig)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, Path(directory), stem)

"""A comparison's volcano as the screen can show it: the ``top`` strongest rows as points (every column, for
hover, click and the forest) and every other drawable row counted in a grid of ``bins`` x ``bins`` cells over the
plot's range (how many, and how many with FDR < 0.05), so an 80,000-row SecAct level sends 2,000 points and a few
thousand counts instead of 80,000 rows. A point's cross-talk lists (``correlated``, ``also_significant``: hundreds
of names in a SecAct comparison) keep their first entries and say how many more there are.

"Strongest" is the smallest p-value (the top of the plot), ties broken by the table's total order; a drawable row
has an effect and a p-value. The y of a row is -log10 p, with p floored at 1e-300 as the page draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import compare as compare_tables
from .schema import compare_order

SIGNIFICANT = 0.05  # FDR below this is coloured (the page's threshold)
LISTED = 5  # entries of a cross-talk list a point keeps (a hover of hundreds of names shows nothing)
CROSSTALK = ("correlated", "also_significant")
ANALYSES = ("differential", "association")
_DRAWABLE = "pvalue IS NOT NULL AND effect IS NOT NULL AND isfinite(effect) AND isfinite(pvalue)"
_Y = "-log10(greatest(pvalue, 1e-300))"


@dataclass
class Volcano:
    """What the page draws of one comparison."""

    n_rows: int                 # rows of the comparison
    n_drawable: int             # with an effect and a p-value
    n_significant: int          # with FDR < 0.05
    x_range: list[float]        # effect: min, max over the drawable rows (0 if none)
    y_range: list[float]        # -log10 p: 0, max
    columns: list[str]
    points: list[tuple]         # the top rows, strongest first
    bins: int
    cells: list[tuple[int, int, int, int]]  # (ix, iy, rows, rows with FDR < 0.05) of the rows not in points


def shorten(listing: str | None, n: int = LISTED) -> str | None:
    """The first ``n`` entries of a cross-talk list ("A (r 0.9), B (r 0.8), ..."), and how many more."""
    if not listing:
        return listing
    entries = listing.split(", ")
    return listing if len(entries) <= n else ", ".join(entries[:n]) + f", ... ({len(entries) - n} more)"


def volcano(cur, analysis: str, filters: dict, top: int, bins: int) -> Volcano:
    """The volcano of the ``analysis`` table's rows that match ``filters`` (column -> value)."""
    base, params = compare_tables.table_query(analysis, filters, None)
    order = compare_order(analysis)
    n_rows, n_drawable, n_significant, lo, hi, y_max = cur.execute(f"""
        SELECT count(*), count(*) FILTER ({_DRAWABLE}), count(*) FILTER (fdr < {SIGNIFICANT}),
               min(effect) FILTER ({_DRAWABLE}), max(effect) FILTER ({_DRAWABLE}), max({_Y}) FILTER ({_DRAWABLE})
        FROM ({base})""", params).fetchall()[0]
    x_range = [float(lo), float(hi)] if n_drawable else [0.0, 0.0]
    y_range = [0.0, float(y_max)] if n_drawable else [0.0, 0.0]
    result = cur.execute(f"SELECT * FROM ({base}) WHERE {_DRAWABLE} ORDER BY pvalue, {order} LIMIT $top",
                         {**params, "top": top})
    columns = [d[0] for d in result.description]
    points = result.fetchall()
    cut = [j for j, c in enumerate(columns) if c in CROSSTALK]
    if cut:
        points = [tuple(shorten(v) if j in cut else v for j, v in enumerate(row)) for row in points]
    cells: list[tuple[int, int, int, int]] = []
    if n_drawable > top:
        # the grid spans the drawable range; the maximum falls in the last cell, not one past it
        width = (x_range[1] - x_range[0]) / bins or 1.0
        height = y_range[1] / bins or 1.0
        cells = [tuple(map(int, r)) for r in cur.execute(f"""
            SELECT least(CAST(floor((effect - $lo) / $width) AS BIGINT), $last) AS ix,
                   least(CAST(floor({_Y} / $height) AS BIGINT), $last) AS iy,
                   count(*), count(*) FILTER (fdr < {SIGNIFICANT})
            FROM (SELECT *, row_number() OVER (ORDER BY pvalue, {order}) AS strength
                  FROM ({base}) WHERE {_DRAWABLE})
            WHERE strength > $top GROUP BY ALL ORDER BY ix, iy""",
            {**params, "top": top, "lo": x_range[0], "width": width, "height": height,
             "last": bins - 1}).fetchall()]
    return Volcano(n_rows, n_drawable, n_significant, x_range, y_range, columns, points, bins, cells)

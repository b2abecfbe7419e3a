"""Figure files: a matplotlib ``Figure`` (no pyplot state, no display) and its PNG and SVG, each written atomically.

The SVG is reproducible (fixed hash salt, no date, text as text) and the PNG carries no software stamp, so a figure
drawn again from the same numbers is the same file.
"""

from __future__ import annotations

from pathlib import Path

from cytoatlas.io.durable import atomic_path
from cytoatlas.io.layout import figure_paths


def new_figure(width: float, height: float):
    """A ``matplotlib.figure.Figure`` of ``width`` x ``height`` inches with the constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig, directory: str | Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``directory/stem.png`` and ``.svg`` (:func:`cytoatlas.io.layout.figure_paths`), each
    atomically; returns both paths."""
    import matplotlib

    paths = figure_paths(directory, stem)
    Path(directory).mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "cytoatlas", "svg.fonttype": "none"}):
        for path in paths:
            fmt = path.suffix[1:]
            if fmt == "svg":  # the layout computed for the PNG holds: do not compute it again
                fig.set_layout_engine("none")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=100,
                            metadata={"Date": None} if fmt == "svg" else {"Software": None})
    return paths

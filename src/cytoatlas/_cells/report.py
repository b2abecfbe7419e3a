"""The "Per-cell activity" section of `cytoatlas report`, from atlases' results directories whose ``cells/`` holds
the outputs of `cytoatlas cells`.

Per atlas x signature set recorded in ``cells/manifest.json`` (step ``cells``): with an embedding table, a figure
of the embedding subsample coloured by the z of the signatures that vary most over it (written into the report's
``figures/`` and embedded); per level, the summary table's rows of highest mean z. The summary CSV beside the
activity file holds every row.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pandas as pd

from cytoatlas._cells.figures import N_PANELS, embedding_figure, widest_spread, z_columns
from cytoatlas._cells.plan import EMBEDDING_CELLS, EMBEDDING_SEED
from cytoatlas._cells.summary import QUANTILE_CELLS
from cytoatlas.defaults import REPORT_CELLS_ROWS
from cytoatlas.errors import CytoatlasError
from cytoatlas.io import layout
from cytoatlas.io.html import html_cards, html_figure, html_table
from cytoatlas.io.manifest import read_manifest, recorded_checksum

STEP = "cells"
_SHOWN = ["label", "signature", "n_cells", "mean", "sd", "q05", "q50", "q95", "frac_abs_gt2"]


@dataclass(frozen=True)
class CellsOutputs:
    """One atlas x signature set's outputs recorded in a ``cells/`` directory: ``{kind: manifest record}``."""

    directory: Path
    atlas: str
    signature_set: str
    records: dict[str, dict]

    def path(self, kind: str) -> Path:
        return layout.cells_path(self.directory, self.atlas, self.signature_set, kind)

    @property
    def embedding_key(self) -> str:
        """The ``obsm`` key the run subsampled (recorded in its parameters)."""
        return str(self.records["summary"].get("parameters", {}).get("embedding") or "")

    def inputs(self, kinds: Sequence[str] = layout.CELLS_KINDS) -> list[dict]:
        """These outputs as inputs of a manifest record (path and recorded checksum)."""
        return [{"name": self.path(k).as_posix(), "checksum": recorded_checksum(self.records[k])}
                for k in kinds if k in self.records]


@dataclass
class CellsFigure:
    """A figure the section wrote: its files and the outputs it was drawn from."""

    outputs: CellsOutputs
    paths: list[Path]
    signatures: list[str]


@dataclass
class CellsSection:
    """The section's HTML, the figures written for it, and every per-cell file it read (for the manifest)."""

    html: str
    figures: list[CellsFigure] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)


def find_cells_outputs(root: str | os.PathLike) -> list[CellsOutputs]:
    """The per-cell outputs recorded in ``root/cells`` (or in ``root`` itself when it is a ``cells/`` directory).

    Parameters
    ----------
    root
        An atlas' results directory (``cytoatlas cells --out ROOT``).

    Returns
    -------
    list of CellsOutputs
        One per atlas x signature set with a summary table, in (atlas, set) order.
    """
    root = Path(root)
    if not root.is_dir():
        raise CytoatlasError(f"per-cell results directory {root} does not exist; run `cytoatlas cells --atlas ATLAS "
                             f"--out {root}` first")
    directory = layout.cells_dir(root)
    entries = read_manifest(directory)
    if not any(e.get("step") == STEP for e in entries.values()) and root.name == layout.CELLS_DIR:
        directory, entries = root, read_manifest(root)
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for key, e in entries.items():
        atlas, sig, kind = e.get("atlas"), e.get("signature"), e.get("kind")
        if e.get("step") != STEP or kind not in layout.CELLS_KINDS or not atlas or not sig:
            continue
        if key != layout.cells_path(directory, atlas, sig, kind).name:  # not a name the layout makes for it
            continue
        groups.setdefault((atlas, sig), {})[kind] = e
    found = [CellsOutputs(directory, a, s, recs) for (a, s), recs in sorted(groups.items()) if "summary" in recs]
    if not found:
        raise CytoatlasError(f"{root} has no per-cell outputs ({directory / 'manifest.json'} records no summary "
                             f"table): run `cytoatlas cells --atlas ATLAS --out {root}` first")
    for out in found:
        for kind in ("summary", "embedding"):
            if kind in out.records and not out.path(kind).is_file():
                raise CytoatlasError(f"{out.path(kind)} is recorded in {directory / 'manifest.json'} but missing: "
                                     f"rerun `cytoatlas cells --atlas {out.atlas} --out {root}`")
    return found


def _read_csv(path: Path, text: Sequence[str]) -> pd.DataFrame:
    # labels are text even when they look like numbers or "NA"
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(text, str))


def top_rows(summary: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    """Per level (in the table's order): its ``n`` label x signature rows of highest mean z (ties in the table's
    order; labels without a mean last)."""
    return {lev: g.sort_values("mean", ascending=False, na_position="last", kind="stable").head(n)
            for lev, g in summary.groupby("level", sort=False)}


def _n_cells(out: CellsOutputs) -> int | None:
    """The activity file's rows (every kept cell), when it is there."""
    path = out.path("activity")
    if "activity" not in out.records or not path.is_file():
        return None
    with h5py.File(path, "r") as f:
        return int(f["X"].shape[0])


def _block(i: int, out: CellsOutputs, figures_dir: Path, top: int) -> tuple[str, CellsFigure | None, int | None]:
    summary = _read_csv(out.path("summary"), ("level", "label", "signature"))
    n_cells = _n_cells(out)
    where = html.escape(out.directory.as_posix())
    scored = f"{n_cells:,} cells scored" if n_cells is not None else "the activity file is not there"
    parts = [f'<h3 id="cells_{i}">{html.escape(out.atlas)}: {html.escape(out.signature_set)}</h3>',
             f'<p class="note">{scored}; files in {where}.</p>']
    figure = None
    if "embedding" in out.records:
        table = pd.read_csv(out.path("embedding"), keep_default_na=False, na_values=[""],
                            dtype=dict.fromkeys(("cell",), str))
        chosen = widest_spread(table, N_PANELS)
        key = out.embedding_key or "the embedding"
        title = f"{out.atlas}, {out.signature_set}: per-cell activity on obsm['{key}']"
        stem = layout.cells_figure_stem(out.atlas, out.signature_set)
        paths = embedding_figure(table, chosen, figures_dir, stem, title=title)
        figure = CellsFigure(out, paths, chosen)
        caption = (f"{len(table):,} kept cells (a fixed random subsample, seed {EMBEDDING_SEED}, of at most "
                   f"{EMBEDDING_CELLS:,}) on obsm['{key}'], coloured by the exact per-cell z of the {len(chosen)} "
                   f"signature(s) whose z varies most over them (of the {len(z_columns(table))} in the embedding "
                   "table). Each panel's colours are centred at 0 and saturate at the 99th percentile of |z|; the "
                   "strongest cells are drawn on top.")
        parts.append(html_figure(paths[0], f"{out.atlas}, {out.signature_set} on the embedding", caption,
                                 svg_dir=f"{figures_dir.name}/"))  # relative to the report beside figures_dir
    else:
        parts.append('<p class="note">No embedding table: the atlas had no <code>obsm[\'X_umap\']</code> and no '
                     "embedding was named (<code>embedding = \"KEY\"</code> in its registry entry, or "
                     "<code>cytoatlas cells --embedding KEY</code>), so only the summary is shown.</p>")
    for j, (lev, rows) in enumerate(top_rows(summary, top).items()):
        n_labels = rows["label"].nunique() if len(rows) else 0
        parts += [f'<p class="note"><b>Level {html.escape(str(lev))}</b>: the {len(rows)} label x signature pair(s) '
                  f"with the highest mean z over their cells ({n_labels} label(s) among them; q05-q95 of at most "
                  f"{QUANTILE_CELLS:,} cells per label; frac_abs_gt2: the fraction of cells with |z| &gt; 2).</p>",
                  html_table(rows[[c for c in _SHOWN if c in rows.columns]], f"t_cells_{i}_{j}", top, bad=None)]
    return "".join(parts), figure, n_cells


def cells_section(roots: Sequence[str | os.PathLike], figures_dir: str | os.PathLike, *, max_rows: int = 3000,
                  top_rows: int = REPORT_CELLS_ROWS) -> CellsSection:
    """The report's "Per-cell activity" section, and its figures written into ``figures_dir``.

    Parameters
    ----------
    roots
        Atlases' results directories (``cytoatlas cells --out ROOT``), each with a ``cells/`` directory.
    figures_dir
        Where the figures go (the report directory's ``figures/``); names from
        :func:`cytoatlas.io.layout.cells_figure_paths`.
    max_rows, top_rows
        Rows shown per level: the ``top_rows`` of highest mean z, at most ``max_rows``.

    Returns
    -------
    CellsSection
        The section's content (without its ``<section>`` element and heading), the figures, the files read.
    """
    found = [out for root in roots for out in find_cells_outputs(root)]  # every input checked before drawing
    seen: dict[str, CellsOutputs] = {}
    for out in found:
        stem = layout.cells_figure_stem(out.atlas, out.signature_set)
        if stem in seen:
            raise CytoatlasError(f"atlas {out.atlas!r} ({out.signature_set}) has per-cell outputs in both "
                                 f"{seen[stem].directory} and {out.directory}; pass one of them")
        seen[stem] = out
    top = min(top_rows, max_rows)
    blocks, figures, cells = [], [], []
    for i, out in enumerate(found):
        block, figure, n_cells = _block(i, out, Path(figures_dir), top)
        blocks.append(block)
        figures += [figure] if figure else []
        cells.append((out.atlas, n_cells))
    n_scored = {a: n for a, n in cells if n is not None}  # per atlas: its sets score the same cells
    cards = html_cards([("atlases", str(len({o.atlas for o in found}))),
                        ("atlas x signature set", str(len(found))),
                        ("cells scored", f"{sum(n_scored.values()):,}" if n_scored else "-"),
                        ("embedding figures", str(len(figures)))])
    intro = ('<p class="note">Activity of every kept cell (<code>cytoatlas cells</code>: secactpy\'s per-cell '
             "method, the exact permutation z). On each atlas' embedding, where the responding cells are: a fixed "
             "random subsample coloured by the z of the signatures that vary most over it. Per level, the labels "
             "and signatures with the highest mean z; the summary CSV beside each activity file holds every "
             "label x signature (mean, sd, quantiles, fraction |z| &gt; 2).</p>")
    inputs = [i for out in found for i in out.inputs()]
    return CellsSection(intro + cards + "".join(blocks), figures, inputs)

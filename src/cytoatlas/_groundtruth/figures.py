"""Ground-truth figures, PNG and SVG: per atlas x level x signature set, the own signature's rank per treatment x
cell type (a grid; 1 is the best) beside the AUC per treatment (against control, and against the other
treatments). Drawn from the tables alone, on ``matplotlib.figure.Figure`` objects (no pyplot state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas.io.figures import new_figure, save_figure
from cytoatlas.io.layout import safe_name

FIGURES_DIR = "figures"
MAX_RANK_SHOWN = 10  # ranks above are drawn in one colour: "not near the top"


@dataclass(frozen=True)
class GroundTruthFigure:
    """One figure: its stem in ``figures/``, what it shows, and a title and caption for the report."""

    stem: str
    atlas: str
    level: str
    signature_set: str
    title: str
    caption: str


def plan_figures(effects: pd.DataFrame, treatments: pd.DataFrame) -> list[GroundTruthFigure]:
    """The figures the tables make (one per atlas x level x set with a tested treatment), without drawing."""
    tested = treatments[treatments["reason"] == ""]
    out = []
    for atlas, level, sig_set in tested[["atlas", "level", "signature_set"]].drop_duplicates().itertuples(index=False):
        out.append(GroundTruthFigure(
            f"groundtruth__{safe_name(atlas)}__{safe_name(level)}__{safe_name(sig_set)}", atlas, level, sig_set,
            f"Perturbation ground truth: {atlas}, {level}, {sig_set}",
            "Left: the rank of each treatment's own signature among all signatures of the set, by the paired effect "
            "(treated - the same donor's control, mean over donors), per cell type and over all cell types; 1 (dark) "
            f"is the best, ranks above {MAX_RANK_SHOWN} are pale, blank: not testable. Right: the AUC of the own "
            "signature separating treated from control samples (each donor x cell type's own level removed) and, "
            "with several treatments, the treatment's differences from the other treatments' (0.5: no signal)."))
    return out


def _draw(plan: GroundTruthFigure, effects: pd.DataFrame, treatments: pd.DataFrame, directory: Path) -> list[Path]:
    e = effects[(effects["atlas"] == plan.atlas) & (effects["level"] == plan.level)
                & (effects["signature_set"] == plan.signature_set)]
    t = treatments[(treatments["atlas"] == plan.atlas) & (treatments["level"] == plan.level)
                   & (treatments["signature_set"] == plan.signature_set) & (treatments["reason"] == "")]
    rows = list(t["treatment"])
    cols = [c for c in dict.fromkeys(e["cell_type"]) if c != "all"] + ["all"]
    grid = np.full((len(rows), len(cols)), np.nan)
    for r in e[e["treatment"].isin(rows) & (e["reason"] == "")].itertuples(index=False):
        grid[rows.index(r.treatment), cols.index(r.cell_type)] = r.rank_effect
    fig = new_figure(min(3.0 + 0.45 * len(cols), 14.0) + 3.5, 1.6 + 0.35 * len(rows))
    left, right = fig.subplots(1, 2, width_ratios=[max(len(cols), 2), 3])
    shown = np.minimum(grid, MAX_RANK_SHOWN + 1)
    im = left.imshow(np.ma.masked_invalid(shown), cmap="viridis_r", vmin=1, vmax=MAX_RANK_SHOWN + 1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            left.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7,
                      color="white" if v <= MAX_RANK_SHOWN / 2 else "black")
    left.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    left.set_yticks(range(len(rows)), [f"{tr} ({s})" for tr, s in zip(rows, t["signature"], strict=True)],
                    fontsize=7)
    left.set_title("own-signature rank by effect", fontsize=9)
    fig.colorbar(im, ax=left, shrink=0.8, label="rank (1 = best)")
    y = np.arange(len(rows))
    right.barh(y - 0.2, t["auc_control"].to_numpy(float), height=0.4, color="#c0504d", label="vs control")
    if np.isfinite(t["auc_other"].to_numpy(float)).any():
        right.barh(y + 0.2, t["auc_other"].to_numpy(float), height=0.4, color="#4f81bd", label="vs other treatments")
    right.axvline(0.5, color="grey", lw=0.8, ls="--")
    right.set_xlim(0, 1)
    right.set_yticks(y, rows, fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("AUC of the own signature")
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(plan.title, fontsize=10)
    return save_figure(fig, directory, plan.stem)


def write_figures(effects: pd.DataFrame, treatments: pd.DataFrame, directory: Path) -> list[Path]:
    """Draw every planned figure into ``directory``; returns the PNG and SVG paths."""
    return [p for plan in plan_figures(effects, treatments) for p in _draw(plan, effects, treatments, directory)]

"""Validation figures, each written as PNG and SVG: rho distributions, top and bottom targets, expression vs
activity scatters, cross-atlas activity heatmaps of matched cell types, and the agreement matrix of atlas pairs.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state, no display needed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas.io.figures import new_figure, save_figure
from cytoatlas.io.layout import safe_name

log = logging.getLogger("cytoatlas.validate")
DIVERGING = "RdBu_r"


@dataclass
class FigureFile:
    """One figure: its stem in ``figures/``, a title and a caption for the report, the files written."""

    stem: str
    title: str
    caption: str
    paths: list[Path]


def rho_distribution(rho: pd.DataFrame, directory: Path) -> FigureFile | None:
    """Box plots of the representative rho per atlas x level, one panel per signature set."""
    rep = rho[rho["representative"]]
    if rep.empty:
        return None
    sets = list(dict.fromkeys(rep["signature_set"]))
    groups = list(dict.fromkeys(zip(rep["atlas"], rep["level"], strict=True)))
    fig = new_figure(max(5.0, 0.6 * len(groups) + 2), 2.8 * len(sets))
    axes = np.atleast_1d(fig.subplots(len(sets), 1, squeeze=False)[:, 0])
    rng = np.random.default_rng(0)
    for ax, sig_set in zip(axes, sets, strict=True):
        sub = rep[rep["signature_set"] == sig_set]
        data = [sub.loc[(sub["atlas"] == a) & (sub["level"] == lv), "rho"].to_numpy() for a, lv in groups]
        pos = [i for i, d in enumerate(data) if len(d)]
        if pos:
            ax.boxplot([data[i] for i in pos], positions=pos, widths=0.6, showfliers=False)
        for i in pos:
            d = data[i]
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(d)), d, s=6, alpha=0.45, color="#3b6ea8", linewidths=0)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(groups)), [f"{a}\n{lv}" for a, lv in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel("Spearman rho")
        ax.set_title(f"{sig_set}: activity vs own-gene expression, one rho per target", fontsize=10)
    return FigureFile("rho_distribution", "Distribution of rho",
                      "Each target's representative Spearman rho (activity z vs the target gene's log1p CPM across "
                      "samples) per atlas and level; boxes show quartiles.",
                      save_figure(fig, directory, "rho_distribution"))


def top_targets(rho: pd.DataFrame, levels: dict[tuple[str, str], str], directory: Path,
                n: int = 10) -> list[FigureFile]:
    """Per signature set: the ``n`` highest and lowest representative rhos of each atlas (at its consistency
    level), with their bootstrap intervals."""
    out = []
    rep = rho[rho["representative"]]
    for sig_set in dict.fromkeys(rep["signature_set"]):
        atlases = [a for a in dict.fromkeys(rep["atlas"]) if (a, sig_set) in levels]
        panels = []
        for atlas in atlases:
            sub = rep[(rep["atlas"] == atlas) & (rep["signature_set"] == sig_set)
                      & (rep["level"] == levels[(atlas, sig_set)])].sort_values("rho")
            if len(sub):
                panels.append((atlas, levels[(atlas, sig_set)], sub if len(sub) <= 2 * n else
                               pd.concat([sub.head(n), sub.tail(n)])))
        if not panels:
            continue
        height = max(len(p[2]) for p in panels) * 0.22 + 1.2
        fig = new_figure(4.2 * len(panels), height)
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
        for ax, (atlas, level, sub) in zip(axes, panels, strict=True):
            y = np.arange(len(sub))
            r = sub["rho"].to_numpy()
            lo, hi = sub["rho_ci_low"].to_numpy(float), sub["rho_ci_high"].to_numpy(float)
            ax.barh(y, r, color=np.where(r >= 0, "#c0504d", "#4f81bd"))
            has = ~(np.isnan(lo) | np.isnan(hi))
            ax.hlines(y[has], lo[has], hi[has], color="black", lw=0.8)
            labels = [t if s in ("all", "") else f"{t} ({s})" for t, s in zip(sub["target"], sub["stratum"],
                                                                             strict=True)]
            ax.set_yticks(y, labels, fontsize=7)
            ax.axvline(0, color="grey", lw=0.8)
            ax.set_xlim(-1, 1)
            ax.set_xlabel("rho (95% bootstrap CI)")
            ax.set_title(f"{atlas} · {level}", fontsize=10)
        stem = f"top_targets_{safe_name(sig_set)}"
        out.append(FigureFile(stem, f"Top and bottom targets: {sig_set}",
                              f"The {n} highest and {n} lowest representative rhos per atlas ({sig_set}), with "
                              "95% intervals from resampling donors.", save_figure(fig, directory, stem)))
    return out


def draw_own_gene(ax, x: np.ndarray, y: np.ndarray, *, target: str, signature_set: str, gene: str, stratum: str,
                  rho: float, n: int) -> None:
    """Draw a target's activity z (``y``) against its own gene's log1p CPM (``x``), one point per sample, on
    ``ax``, titled with the stratum, Spearman ``rho`` and ``n``."""
    ax.scatter(x, y, s=14, alpha=0.75, color="#3b6ea8", linewidths=0)
    where = "" if stratum in ("all", "") else f", {stratum}"
    ax.set_title(f"{target} ({signature_set}{where})\nrho = {rho:.2f}, n = {n}", fontsize=9)
    ax.set_xlabel(f"{gene} log1p CPM")
    ax.set_ylabel("activity z")


def scatters(chosen: dict[str, list[dict]], load_xy: Callable[[dict], tuple[np.ndarray, np.ndarray] | None],
             directory: Path) -> list[FigureFile]:
    """Per atlas: expression vs activity across the samples of the chosen targets' representative strata."""
    out = []
    for atlas, rows in chosen.items():
        data = [(row, load_xy(row)) for row in rows]
        data = [(row, xy) for row, xy in data if xy is not None]
        if not data:
            continue
        fig = new_figure(3.2 * len(data), 3.0)
        axes = np.atleast_1d(fig.subplots(1, len(data), squeeze=False)[0])
        for ax, (row, (x, y)) in zip(axes, data, strict=True):
            draw_own_gene(ax, x, y, target=row["target"], signature_set=row["signature_set"], gene=row["gene"],
                          stratum=row["stratum"], rho=row["rho"], n=row["n_samples"])
        stem = f"scatter_{safe_name(atlas)}"
        out.append(FigureFile(stem, f"Expression vs activity: {atlas}",
                              f"Per sample ({atlas}, level {data[0][0]['level']}): the target gene's expression "
                              "against the target's activity, in the target's representative stratum.",
                              save_figure(fig, directory, stem)))
    return out


def heatmaps(profiles: dict[tuple[str, str, str], pd.DataFrame], cross: pd.DataFrame, directory: Path,
             max_signatures: int = 40) -> list[FigureFile]:
    """Per signature set, at the compared level with the most matched cell types (fine resolution): mean activity
    of each Cell Ontology unit in each atlas (``profiles[(atlas, level, set)]``: units x signatures)."""
    out = []
    done = cross[(cross["reason"] == "") & (cross["resolution"] == "fine")]
    best = done.groupby(["signature_set", "level"], sort=False)["n_cell_types"].max().reset_index() \
        .sort_values("n_cell_types", ascending=False, kind="stable").drop_duplicates("signature_set")
    for sig_set, level in zip(best["signature_set"], best["level"], strict=True):
        sub = done[(done["signature_set"] == sig_set) & (done["level"] == level)]
        pairs = sub[["atlas_a", "level_a", "atlas_b", "level_b"]].drop_duplicates()
        cols: dict[tuple[str, str], pd.Series] = {}
        for a, la, b, lb in pairs.itertuples(index=False):
            for atlas, lev in ((a, la), (b, lb)):
                frame = profiles[(atlas, lev, sig_set)]
                for ct in frame.index:
                    cols.setdefault((ct, atlas), frame.loc[ct])
        cell_types = sorted({ct for ct, _ in cols if sum(c == ct for c, _ in cols) >= 2})
        if len(cell_types) < 2:
            continue
        atlases = list(dict.fromkeys(a for _, a in cols))
        keys = [(ct, a) for ct in cell_types for a in atlases if (ct, a) in cols]
        mat = pd.DataFrame({f"{ct} | {a}": cols[(ct, a)] for ct, a in keys})
        if len(mat) > max_signatures:  # the most variable signatures (SecAct has 1,170)
            mat = mat.loc[mat.var(axis=1).sort_values(ascending=False).index[:max_signatures]]
        vmax = float(np.nanpercentile(np.abs(mat.to_numpy()), 99)) or 1.0
        fig = new_figure(max(5.0, 0.28 * mat.shape[1] + 2.5), max(3.0, 0.18 * mat.shape[0] + 1.8))
        ax = fig.subplots()
        im = ax.imshow(mat.to_numpy(), aspect="auto", cmap=DIVERGING, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(mat.shape[1]), mat.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(mat.shape[0]), mat.index, fontsize=7)
        ax.set_title(f"{sig_set} activity of matched cell types, level {level}", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.6, label="mean activity z")
        stem = f"heatmap_{safe_name(sig_set)}"
        out.append(FigureFile(stem, f"Cross-atlas activity: {sig_set}, {level}",
                              "Mean activity of each Cell Ontology unit both atlases hold "
                              "(columns: cell type | atlas), "
                              + ("the most variable signatures." if len(mat) == max_signatures else "every signature."),
                              save_figure(fig, directory, stem)))
    return out


def agreement(cross: pd.DataFrame, directory: Path) -> list[FigureFile]:
    """Per signature set: median r over signatures (and levels) of every atlas pair."""
    out = []
    done = cross[cross["reason"] == ""]
    for sig_set, sub in done.groupby("signature_set", sort=False):
        atlases = list(dict.fromkeys([*sub["atlas_a"], *sub["atlas_b"]]))
        if len(atlases) < 2:
            continue
        mat = np.full((len(atlases), len(atlases)), np.nan)
        np.fill_diagonal(mat, 1.0)
        for (a, b), g in sub.groupby(["atlas_a", "atlas_b"]):
            i, j = atlases.index(a), atlases.index(b)
            mat[i, j] = mat[j, i] = float(g["r"].median())
        fig = new_figure(1.2 * len(atlases) + 2.5, 1.0 * len(atlases) + 1.8)
        ax = fig.subplots()
        im = ax.imshow(mat, cmap=DIVERGING, vmin=-1, vmax=1)
        for i in range(len(atlases)):
            for j in range(len(atlases)):
                if not np.isnan(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=9,
                            color="white" if abs(mat[i, j]) > 0.6 else "black")
        ax.set_xticks(range(len(atlases)), atlases, rotation=45, ha="right")
        ax.set_yticks(range(len(atlases)), atlases)
        ax.set_title(f"{sig_set}: median r of mean activity over matched cell types", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.7, label="median r")
        stem = f"agreement_{safe_name(sig_set)}"
        out.append(FigureFile(stem, f"Agreement of atlas pairs: {sig_set}",
                              "Median Pearson r, over signatures and compared levels, of mean activity over the "
                              "matched cell types of each atlas pair.", save_figure(fig, directory, stem)))
    return out

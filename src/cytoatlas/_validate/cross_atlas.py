"""Across atlases: the same cell type should show the same activity in every atlas.

Per atlas and level, each cell-type label is a Cell Ontology term (:mod:`cytoatlas.celltypes`). For each pair of
atlases, the labels of each are compared at the finest CL term both hold (a label rolls up to its nearest ancestor
the other atlas has; labels of one atlas meeting at one term are averaged), and at the lineage resolution. Per
signature set, atlas pair, level and resolution, each signature's mean activities over the shared units are
correlated (Pearson r, >= ``min_cell_types`` of them). Levels are paired by name; two atlases without a level name
in common are compared at the pair of levels that share the most units. A *pair* below is one such comparison (two
atlases at one level and resolution): a signature is conserved when r > 0.7 in at least two pairs (or in the only
pair, when there is one), moderate when r > 0.5 in as many, else not conserved.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cytoatlas import defaults
from cytoatlas._validate.inputs import LevelSet
from cytoatlas.celltypes import UNSTRATIFIED, Resolution, comparable_units, map_labels, ontology_ids

log = logging.getLogger("cytoatlas.validate")

CROSS_COLUMNS = ["signature_set", "signature", "level", "resolution", "atlas_a", "atlas_b", "n_cell_types", "r",
                 "reason", "level_a", "level_b", "pvalue", "cell_types"]
CONSERVATION_COLUMNS = ["signature_set", "signature", "resolution", "n_pairs", "n_pairs_r07", "n_pairs_r05",
                        "conservation", "median_r", "reason"]
MATCH_COLUMNS = ["atlas", "level", "cell_type", "cl_id", "cl_name", "source", "context", "candidates"]
def level_profiles(groups: Sequence[LevelSet], overrides: Mapping[str, str] | None
                   ) -> tuple[dict[tuple[str, str], pd.DataFrame], pd.DataFrame]:
    """Activity per cell-type label of each (level, signature set) of one atlas, and its labels' CL terms.

    Returns ``{(level, set): labels x signatures frame}`` (labels with a CL term or a shared name only) and the
    ``cell_type_matches`` rows.
    """
    profiles, matches = {}, {}
    for g in groups:
        if "celltype" not in g.activity:
            continue
        act = g.load_activity("celltype")
        labels = act.obs["cell_type"].astype(str).to_numpy()
        table = map_labels(labels, overrides=overrides, ontology_ids=ontology_ids(act.obs), separator=act.separator)
        matches.setdefault(g.level, table.assign(atlas=g.atlas, level=g.level))
        if list(labels) == [UNSTRATIFIED]:
            continue  # donors pooled over cell types: nothing to match across atlases
        named = set(table.loc[(table["cl_id"] != "") | (table["cl_name"] != ""), "cell_type"])
        keep = np.array([x in named for x in labels], dtype=bool)
        frame = pd.DataFrame(act.z[keep], columns=act.names)
        profiles[(g.level, g.signature_set)] = frame.groupby(labels[keep], sort=True).mean()
    rows = pd.concat(matches.values(), ignore_index=True) if matches else pd.DataFrame(columns=MATCH_COLUMNS)
    return profiles, rows[MATCH_COLUMNS]


def _units(matches: pd.DataFrame, pair: tuple[tuple[str, str], tuple[str, str]], resolution: Resolution
           ) -> pd.DataFrame:
    """The units of two (atlas, level)s' labels at one resolution."""
    by = {}
    for atlas, level in pair:
        by[atlas] = matches[(matches["atlas"] == atlas) & (matches["level"] == level)]
    return comparable_units(by, resolution)


def _level_pairs(a: dict, b: dict, signature_set: str, shared) -> list[tuple[str, str]]:
    la = [lv for lv, s in a if s == signature_set]
    lb = [lv for lv, s in b if s == signature_set]
    same = [(x, y) for x in la for y in lb if x.lower() == y.lower()]
    if same or not la or not lb:
        return same
    counts = {(x, y): shared(x, y) for x in la for y in lb}
    return [max(counts, key=lambda k: (counts[k], -la.index(k[0]), -lb.index(k[1])))]


def _unit_means(frame: pd.DataFrame, units: pd.DataFrame, atlas: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """``frame``'s labels averaged per unit (index: unit key), and each unit key's labels."""
    u = units[(units["atlas"] == atlas) & units["cell_type"].isin(frame.index)]
    key = (u["unit_name"] + "\t" + u["unit_id"]).to_numpy()
    means = frame.loc[u["cell_type"].to_numpy()].groupby(key, sort=True).mean()
    labels = {k: "+".join(sorted(g)) for k, g in u.groupby(key)["cell_type"]}
    return means, labels


def cross_atlas(profiles: Mapping[str, dict[tuple[str, str], pd.DataFrame]], matches: pd.DataFrame, *,
                resolutions: Sequence[Resolution] = ("fine", "lineage"),
                min_cell_types: int = defaults.VALIDATE_MIN_CELL_TYPES
                ) -> tuple[pd.DataFrame, dict[tuple[str, str, str], pd.DataFrame]]:
    """The ``cross_atlas`` rows: per signature set, signature, atlas pair, level and resolution, r of mean
    activity over the units both atlases hold (or why not); and the fine units' mean activity per (atlas, level,
    set), for the heatmaps."""
    rows, unit_frames = [], {}
    for (na, pa), (nb, pb) in itertools.combinations(profiles.items(), 2):
        def shared(x: str, y: str, na: str = na, nb: str = nb) -> int:
            u = _units(matches, ((na, x), (nb, y)), "fine")
            return len(set(u.loc[u["atlas"] == na, "unit_id"]) & set(u.loc[u["atlas"] == nb, "unit_id"]))

        for sig_set in sorted({s for _, s in pa} & {s for _, s in pb}):
            for la, lb in _level_pairs(pa, pb, sig_set, shared):
                level = la if la.lower() == lb.lower() else f"{la}/{lb}"
                for resolution in resolutions:
                    units = _units(matches, ((na, la), (nb, lb)), resolution)
                    fa, names_a = _unit_means(pa[(la, sig_set)], units, na)
                    fb, names_b = _unit_means(pb[(lb, sig_set)], units, nb)
                    if resolution == "fine":
                        for atlas, lev, f in ((na, la, fa), (nb, lb, fb)):
                            if f.empty:
                                continue
                            old = unit_frames.get((atlas, lev, sig_set))
                            unit_frames[(atlas, lev, sig_set)] = f if old is None else \
                                pd.concat([old, f[~f.index.isin(old.index)]]).sort_index()
                    common = sorted(set(fa.index) & set(fb.index))
                    sigs = [s for s in fa.columns if s in set(fb.columns)]
                    described = [f"{k.split(chr(9))[0]} ({k.split(chr(9))[1] or 'shared name'}): "
                                 f"{names_a[k]} | {names_b[k]}" for k in common]
                    base = {"signature_set": sig_set, "level": level, "resolution": resolution, "atlas_a": na,
                            "atlas_b": nb, "n_cell_types": len(common), "level_a": la, "level_b": lb,
                            "cell_types": "; ".join(described)}
                    if not common:
                        reason = "no matched cell types"
                    elif len(common) < min_cell_types:
                        reason = f"fewer than {min_cell_types} matched cell types"
                    else:
                        reason = ""
                    va, vb = fa.loc[common, sigs].to_numpy(float), fb.loc[common, sigs].to_numpy(float)
                    r, p = pearson_columns(va, vb) if not reason else (np.full(len(sigs), np.nan),) * 2
                    for k, sig in enumerate(sigs):
                        why = reason or ("" if np.isfinite(r[k]) else "activity constant or undefined")
                        rows.append({**base, "signature": sig, "r": float(r[k]), "pvalue": float(p[k]),
                                     "reason": why})
    frames = {k: v.set_axis([i.split("\t")[0] for i in v.index]) for k, v in unit_frames.items()}
    return pd.DataFrame(rows, columns=CROSS_COLUMNS).astype({"n_cell_types": int}), frames


def pearson_columns(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of each column pair of two ``n x k`` arrays and its two-sided p (as scipy.stats.pearsonr);
    NaN where a column is constant or not finite."""
    n = a.shape[0]
    ok = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((a * b).sum(axis=0) / den, -1.0, 1.0)
        t = r * np.sqrt((n - 2) / ((1.0 - r) * (1.0 + r)))
    r[~ok | (den == 0)] = np.nan
    p = np.where(np.isnan(r), np.nan, 2 * stats.t.sf(np.abs(t), n - 2))
    return r, p


def conservation(cross: pd.DataFrame) -> pd.DataFrame:
    """Per signature: how many pairs were compared and how many agree (r > 0.7, r > 0.5), and its class."""
    if cross.empty:
        return pd.DataFrame(columns=CONSERVATION_COLUMNS)
    done = cross["reason"] == ""
    r = cross["r"].where(done)
    g = cross.assign(_n=done, _n7=done & (r > 0.7), _n5=done & (r > 0.5), _r=r) \
        .groupby(["signature_set", "signature", "resolution"], sort=True)
    out = pd.DataFrame({"n_pairs": g["_n"].sum(), "n_pairs_r07": g["_n7"].sum(), "n_pairs_r05": g["_n5"].sum(),
                        "median_r": g["_r"].median()}).reset_index()
    n, need = out["n_pairs"], out["n_pairs"].clip(upper=2)
    out["conservation"] = np.where((n > 0) & (out["n_pairs_r07"] >= need), "conserved",
                                   np.where((n > 0) & (out["n_pairs_r05"] >= need), "moderate", "not conserved"))
    out["reason"] = np.where(n > 0, "", "no pair of atlases with enough matched cell types")
    return out[CONSERVATION_COLUMNS].astype({"n_pairs": int, "n_pairs_r07": int, "n_pairs_r05": int})


def consistency_levels(rho: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Per (atlas, signature set), the level whose representative rho speaks for the atlas: a level without
    cell types (donors pooled, e.g. ``donor_only``) if there is one, else the level with the most targets
    computed (the first in registry order on a tie)."""
    out = {}
    for (atlas, sig_set), sub in rho.groupby(["atlas", "signature_set"], sort=False):
        levels = list(dict.fromkeys(sub["level"]))
        unstratified = [lv for lv in levels if (sub.loc[sub["level"] == lv, "stratum"] == UNSTRATIFIED).any()]
        counts = sub[sub["representative"]].groupby("level").size()
        out[(atlas, sig_set)] = unstratified[0] if unstratified else \
            max(levels, key=lambda lv: (counts.get(lv, 0), -levels.index(lv)))
    return out


def consistency(rho: pd.DataFrame, threshold: float = 0.1) -> pd.DataFrame:
    """Per (signature set, target): in how many atlases its representative rho exceeds ``threshold``, as a tier:
    ``all``, ``most`` (more than half) or ``few``."""
    columns = ["signature_set", "target", "n_atlases", "n_positive", "tier", "median_rho", "rhos", "reason"]
    if rho.empty:
        return pd.DataFrame(columns=columns)
    chosen = consistency_levels(rho)
    keep = np.array([chosen.get((a, s)) == lv for a, s, lv in zip(rho["atlas"], rho["signature_set"], rho["level"],
                                                                  strict=True)], dtype=bool)
    at = rho[keep]
    rep = at[at["representative"].to_numpy(dtype=bool)]
    out = at[["signature_set", "target"]].drop_duplicates().sort_values(["signature_set", "target"])
    if len(rep):
        g = rep.assign(_pos=rep["rho"] > threshold,
                       _txt=[f"{a} ({lv}) {r:.3f}" for a, lv, r in zip(rep["atlas"], rep["level"], rep["rho"],
                                                                        strict=True)]) \
            .groupby(["signature_set", "target"], sort=False)
        agg = pd.DataFrame({"n_atlases": g.size(), "n_positive": g["_pos"].sum(), "median_rho": g["rho"].median(),
                            "rhos": g["_txt"].agg("; ".join)}).reset_index()
        out = out.merge(agg, on=["signature_set", "target"], how="left")
    else:
        out = out.assign(n_atlases=0, n_positive=0, median_rho=np.nan, rhos="")
    out["n_atlases"] = out["n_atlases"].fillna(0).astype(int)
    out["n_positive"] = out["n_positive"].fillna(0).astype(int)
    out["rhos"] = out["rhos"].fillna("")
    n, pos = out["n_atlases"], out["n_positive"]
    out["tier"] = np.where((n > 0) & (pos == n), "all", np.where(pos > n / 2, "most", "few"))
    out["reason"] = np.where(n > 0, "", "no atlas has a representative rho")
    return out[columns].reset_index(drop=True)

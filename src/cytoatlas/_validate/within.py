"""Within an atlas: does a target's activity track the expression of its own gene?

Per (atlas, level, signature set) and target, Spearman rho between the target gene's log1p CPM and the activity
z-score across the samples of each stratum: one stratum ``all`` for a level without cell types, else one per cell
type (a donor appears once per stratum, so the samples of a stratum are independent). A target whose gene the
pseudobulk lacks gets one row (stratum empty on a stratified level) with reason "gene absent". The target's one
*representative* rho is that of its unstratified level, or, for a stratified level, the stratum whose rho is the
median across strata (the lower middle one for an even count): repeated measures of a donor across cell types
never enter one correlation, and the representative is an observed, tested correlation with its own p and CI.
Each rho gets a percentile bootstrap interval from resampling the stratum's donors.

At a level without cell types, beside ``rho``: the partial Spearman rho given each donor's cell-type fractions at
another level (:mod:`cytoatlas._validate.partial`), with its p, interval, the level and the number of fractions
used; empty at stratified levels (a cell type's donors share its composition).

Across cell types (``rho_cell_types``): the same correlation over the cell-type pseudobulks of a level, with the
interval from the ``_resampled`` files: one rho per bootstrap over the resampled cell types.
"""

from __future__ import annotations

import logging
import time
import zlib

import numpy as np
import pandas as pd

from cytoatlas import defaults
from cytoatlas._validate.inputs import LevelSet
from cytoatlas._validate.partial import Fractions, covariate_ranks, partial_spearman
from cytoatlas._validate.stats import (
    bh_fdr,
    bootstrap_ci,
    bootstrap_ci_columns,
    bootstrap_weights,
    spearman_columns,
)
from cytoatlas._validate.targets import target_genes
from cytoatlas.celltypes import UNSTRATIFIED
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import Activity

log = logging.getLogger("cytoatlas.validate")

RHO_COLUMNS = ["atlas", "level", "signature_set", "target", "gene", "stratum", "n_samples", "rho", "pvalue", "fdr",
               "rho_ci_low", "rho_ci_high", "representative", "reason", "n_boot", "n_strata", "median_rho",
               "partial_rho", "partial_pvalue", "partial_ci_low", "partial_ci_high", "fractions_level", "n_fractions",
               "partial_reason"]
PARTIAL_COLUMNS = RHO_COLUMNS[RHO_COLUMNS.index("partial_rho"):]
CELL_TYPE_COLUMNS = ["atlas", "level", "signature_set", "target", "gene", "n_cell_types", "rho", "pvalue", "fdr",
                     "rho_ci_low", "rho_ci_high", "n_boot", "n_cell_types_boot", "reason"]
GENE_ABSENT = "gene absent"


def _expression(group: LevelSet, kind: str, act: Activity, genes: dict[str, str]
                ) -> tuple[np.ndarray, dict[str, int]]:
    """rows x genes log1p CPM of the target genes present (columns indexed by the returned map)."""
    pb = group.load_pseudobulk(kind, set(genes.values()))
    if len(pb.obs) != len(act.obs) or not np.array_equal(pb.obs.index.astype(str), act.obs.index.astype(str)):
        raise CytoatlasError(f"{act.path.name}: its rows are not those of {pb.path.name}; was the pseudobulk "
                             "file rewritten after the activity run? Run `cytoatlas run` again")
    return pb.values.T.astype(float), {g: i for i, g in enumerate(pb.genes)}


def stratum_rng(seed: int, level: str, stratum: str) -> np.random.Generator:
    """The resampling generator of a stratum, shared by every signature set (their intervals are paired)."""
    return np.random.default_rng([seed, zlib.crc32(b"validate"), zlib.crc32(level.encode()),
                                  zlib.crc32(stratum.encode())])


def _reason(x: np.ndarray, y: np.ndarray, min_samples: int) -> str:
    if len(x) < min_samples:
        return f"fewer than {min_samples} samples"
    if np.ptp(x) == 0:
        return "gene expression constant"
    if np.ptp(y) == 0:
        return "activity constant"
    return ""


def _pick_representatives(df: pd.DataFrame, stratified: bool) -> None:
    """Mark each target's representative row and record its strata count and median rho (in place)."""
    df["representative"] = False
    df["n_strata"] = 0
    df["median_rho"] = np.nan
    ok = df[df["reason"] == ""]
    if ok.empty:
        return
    # per target, strata in order of rho (more samples first, then name, on ties); the middle one is picked
    ordered = ok.assign(_neg_n=-ok["n_samples"]).sort_values(["target", "rho", "_neg_n", "stratum"], kind="stable")
    size = ordered.groupby("target", sort=False)["rho"].transform("size").to_numpy()
    rank = ordered.groupby("target", sort=False).cumcount().to_numpy()
    pick = rank == ((size - 1) // 2 if stratified else 0)
    df.loc[ordered.index[pick], "representative"] = True
    df.loc[ordered.index, "n_strata"] = size
    df.loc[ordered.index, "median_rho"] = ordered.groupby("target", sort=False)["rho"].transform("median").to_numpy()


def within_atlas(group: LevelSet, *, min_samples: int = defaults.VALIDATE_MIN_SAMPLES,
                 n_boot: int = defaults.N_BOOTSTRAP, seed: int = defaults.SEED,
                 gene_overrides: dict[str, str] | None = None, fractions: Fractions | None = None) -> pd.DataFrame:
    """The ``rho`` rows of one (atlas, level, signature set): every target x stratum, computed or with a reason.

    Parameters
    ----------
    group
        The level's files (its ``samples`` pair is used).
    min_samples
        Fewest samples (complete pairs) a stratum needs.
    n_boot, seed
        Donor resamples per stratum for the interval (0: no interval) and their seed.
    gene_overrides
        ``{target: gene}`` replacing the shipped target -> gene table.
    fractions
        The donors' cell-type fractions at another level: a level without cell types gets the partial rho given
        them (None: the partial columns are empty).
    """
    t0 = time.perf_counter()
    act = group.load_activity("samples")
    genes = target_genes(act.names, group.signature_set, gene_overrides)
    expr, col = _expression(group, "samples", act, genes)
    obs = act.obs
    cell_type = obs["cell_type"].astype(str).to_numpy() if "cell_type" in obs else np.full(len(obs), UNSTRATIFIED)
    strata = list(dict.fromkeys(cell_type))
    stratified = strata != [UNSTRATIFIED]
    units = (obs["donor"] if "donor" in obs else obs["sample"] if "sample" in obs else obs.index.to_series())
    units = units.astype(str).to_numpy()
    rows, todo_all = [], []
    for target in act.names:  # a target whose gene the file lacks: one row, not one per stratum
        if genes[target] not in col:
            rows.append({"atlas": group.atlas, "level": group.level, "signature_set": group.signature_set,
                         "target": target, "gene": genes[target], "stratum": "" if stratified else UNSTRATIFIED,
                         "n_samples": len(obs), "rho": np.nan, "pvalue": np.nan, "rho_ci_low": np.nan,
                         "rho_ci_high": np.nan, "n_boot": 0, "reason": GENE_ABSENT})
    for stratum in strata:
        idx = np.flatnonzero(cell_type == stratum)
        weights = bootstrap_weights(units[idx], n_boot, stratum_rng(seed, group.level, stratum)) if n_boot else None
        todo = []  # (row index in `rows`, x, y) of the computable pairs, correlated together below
        for j, target in enumerate(act.names):
            if stratified and act.matched is not None and not act.matched[idx, j].any():
                continue  # a cell-type-specific signature is validated in its own cell type only
            gene = genes[target]
            if gene not in col:
                continue  # listed once above
            base = {"atlas": group.atlas, "level": group.level, "signature_set": group.signature_set,
                    "target": target, "gene": gene, "stratum": stratum, "n_samples": len(idx), "rho": np.nan,
                    "pvalue": np.nan, "rho_ci_low": np.nan, "rho_ci_high": np.nan, "n_boot": 0}
            x, y = expr[idx, col[gene]], act.z[idx, j]
            ok = np.isfinite(x) & np.isfinite(y)
            reason = _reason(x[ok], y[ok], min_samples)
            rows.append({**base, "n_samples": int(ok.sum()), "reason": reason})
            if not reason:
                todo.append((len(rows) - 1, ok, x, y))
        todo_all += [(i, idx, ok, x, y) for i, ok, x, y in todo]
        complete = [t for t in todo if t[1].all()]
        if complete:  # the usual case: all samples complete, vectorised over targets
            xs, ys = np.column_stack([t[2] for t in complete]), np.column_stack([t[3] for t in complete])
            rho, p = spearman_columns(xs, ys)
            ci = bootstrap_ci_columns(xs, ys, weights) if weights is not None else None
            for m, (i, *_) in enumerate(complete):
                rows[i].update(rho=float(rho[m]), pvalue=float(p[m]))
                if ci is not None:
                    rows[i].update(rho_ci_low=float(ci[0][m]), rho_ci_high=float(ci[1][m]), n_boot=int(ci[2][m]))
        for i, ok, x, y in todo:
            if ok.all():
                continue
            r, pv = spearman_columns(x[ok, None], y[ok, None])
            rows[i].update(rho=float(r[0]), pvalue=float(pv[0]))
            if weights is not None:
                lo, hi, n_valid = bootstrap_ci(x[ok], y[ok], weights[:, ok])
                rows[i].update(rho_ci_low=lo, rho_ci_high=hi, n_boot=n_valid)
    if fractions is not None and not stratified:
        _partial(rows, todo_all, units, fractions)
    seen = {r["target"] for r in rows}
    for target in act.names:  # cell-type-specific signatures whose cell type is no stratum: listed, not dropped
        if target not in seen:
            rows.append({"atlas": group.atlas, "level": group.level, "signature_set": group.signature_set,
                         "target": target, "gene": genes[target], "stratum": "", "n_samples": 0, "rho": np.nan,
                         "pvalue": np.nan, "rho_ci_low": np.nan, "rho_ci_high": np.nan, "n_boot": 0,
                         "reason": "no stratum of the signature's cell type"})
    df = pd.DataFrame(rows, columns=[c for c in RHO_COLUMNS if c not in ("fdr", "representative", "n_strata",
                                                                        "median_rho", *PARTIAL_COLUMNS)])
    for c in PARTIAL_COLUMNS:
        default = "" if c in ("fractions_level", "partial_reason") else 0 if c == "n_fractions" else np.nan
        df[c] = [r.get(c, default) for r in rows]
    df["fdr"] = bh_fdr(df["pvalue"].to_numpy())
    _pick_representatives(df, stratified)
    df = df[RHO_COLUMNS].astype({"n_samples": int, "n_boot": int, "n_strata": int, "representative": bool,
                                 "n_fractions": int})
    n_ok = int((df["reason"] == "").sum())
    log.info("%s %s %s: %d targets x %d strata, %d correlations (%d not computed) in %.1f s", group.atlas,
             group.level, group.signature_set, len(act.names), len(strata), n_ok, len(df) - n_ok,
             time.perf_counter() - t0)
    return df


def _partial(rows: list[dict], todo: list, units: np.ndarray, fractions: Fractions) -> None:
    """The partial columns of the computed rows of a level without cell types (in place)."""
    for i, idx, ok, x, y in todo:
        f = fractions.of(units[idx][ok])
        known = np.isfinite(f).all(axis=1)
        rows[i]["fractions_level"] = fractions.level
        if known.sum() < len(known):
            log.debug("%s: %d donor(s) without fractions at %s left out of the partial rho", rows[i]["target"],
                      int((~known).sum()), fractions.level)
        covariates = covariate_ranks(f[known])
        res = partial_spearman(x[ok][known], y[ok][known], covariates)
        rows[i].update(partial_rho=res.rho, partial_pvalue=res.pvalue, partial_ci_low=res.ci_low,
                       partial_ci_high=res.ci_high, n_fractions=res.n_covariates, partial_reason=res.reason)


def across_cell_types(group: LevelSet, *, min_samples: int = defaults.VALIDATE_MIN_SAMPLES,
                      gene_overrides: dict[str, str] | None = None) -> pd.DataFrame:
    """The ``rho_cell_types`` rows of one (atlas, level, signature set): rho over the level's cell-type
    pseudobulks, with a percentile interval over the ``_resampled`` files' bootstraps (empty for levels without
    cell types and for cell-type-specific sets)."""
    if "celltype" not in group.activity:
        return pd.DataFrame(columns=CELL_TYPE_COLUMNS)
    act = group.load_activity("celltype")
    if act.matched is not None or list(act.obs.get("cell_type", [])) == [UNSTRATIFIED]:
        return pd.DataFrame(columns=CELL_TYPE_COLUMNS)
    genes = target_genes(act.names, group.signature_set, gene_overrides)
    expr, col = _expression(group, "celltype", act, genes)
    boot = None
    if "resampled" in group.activity:
        bact = group.load_activity("resampled")
        bexpr, bcol = _expression(group, "resampled", bact, genes)
        boot = (bact, bexpr, bcol)
    n = len(act.obs)
    rows, todo = [], []
    for j, target in enumerate(act.names):
        gene = genes[target]
        base = {"atlas": group.atlas, "level": group.level, "signature_set": group.signature_set, "target": target,
                "gene": gene, "n_cell_types": n, "rho": np.nan, "pvalue": np.nan, "rho_ci_low": np.nan,
                "rho_ci_high": np.nan, "n_boot": 0, "n_cell_types_boot": 0}
        if gene not in col:
            rows.append({**base, "reason": GENE_ABSENT})
            continue
        x, y = expr[:, col[gene]], act.z[:, j]
        ok = np.isfinite(x) & np.isfinite(y)
        reason = _reason(x[ok], y[ok], min_samples).replace("samples", "cell types")
        rows.append({**base, "n_cell_types": int(ok.sum()), "reason": reason})
        if not reason:
            r, p = spearman_columns(x[ok, None], y[ok, None])
            rows[-1].update(rho=float(r[0]), pvalue=float(p[0]))
            todo.append((len(rows) - 1, j, gene))
    if boot is not None and todo:
        bact, bexpr, bcol = boot
        b_idx = bact.obs["bootstrap_idx"].to_numpy()
        reps = np.unique(b_idx)
        names = {t: k for k, t in enumerate(bact.names)}
        sel = [(i, names[act.names[j]], bcol[g]) for i, j, g in todo if act.names[j] in names and g in bcol]
        if sel:
            per = np.full((len(reps), len(sel)), np.nan)
            n_types = 0
            for k, b in enumerate(reps):
                rows_b = b_idx == b
                n_types = int(rows_b.sum())
                if n_types >= min_samples:
                    per[k] = spearman_columns(bexpr[rows_b][:, [s[2] for s in sel]],
                                              bact.z[rows_b][:, [s[1] for s in sel]])[0]
            for m, (i, _, _) in enumerate(sel):
                r = per[:, m][~np.isnan(per[:, m])]
                rows[i]["n_cell_types_boot"] = n_types
                if len(r) >= max(2, len(reps) // 2):
                    rows[i].update(rho_ci_low=float(np.quantile(r, 0.025)), rho_ci_high=float(np.quantile(r, 0.975)),
                                   n_boot=len(r))
    df = pd.DataFrame(rows, columns=[c for c in CELL_TYPE_COLUMNS if c != "fdr"])
    df["fdr"] = bh_fdr(df["pvalue"].to_numpy())
    return df[CELL_TYPE_COLUMNS].astype({"n_cell_types": int, "n_boot": int, "n_cell_types_boot": int})

"""`cytoatlas.validate`: within-atlas correlations, cross-atlas agreement, tables and figures in one directory.

Work is done in two stages, both recorded in ``OUT/manifest.json`` (step ``validate``):

1. per (atlas, level, signature set), the correlations (``parts/*.parquet``), the expensive part; a part is
   reused when its inputs (the activity and pseudobulk files, by checksum) and parameters are unchanged;
2. the tables, cross-atlas comparisons and figures, made from the parts and the cell-type activity files;
   skipped when all of them are current.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cytoatlas import defaults
from cytoatlas._harness import StepDirectory, input_fingerprint
from cytoatlas._harness.directory import check_output_dir
from cytoatlas._harness.steps import VALIDATE
from cytoatlas._validate import cross_atlas as xa
from cytoatlas._validate import figures as fg
from cytoatlas._validate.inputs import LevelSet, discover
from cytoatlas._validate.summaries import cytosig_vs_secact, summary
from cytoatlas._validate.within import CELL_TYPE_COLUMNS, RHO_COLUMNS, across_cell_types, within_atlas
from cytoatlas.celltypes import Resolution, cell_ontology, registry_hint, resolutions
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import (
    VALIDATION_FIGURES_DIR,
    VALIDATION_PARTS_DIR,
    table_paths,
    validation_part_paths,
)
from cytoatlas.io.results import read_activity, read_header, read_pseudobulk
from cytoatlas.io.tables import read_parquet, write_parquet, write_table
from cytoatlas.registry import AtlasConfig, atlas_results

log = logging.getLogger("cytoatlas.validate")
TABLES = ("rho", "rho_cell_types", "summary", "cytosig_vs_secact", "cross_atlas", "conservation", "consistency",
          "cell_type_matches")
STEP = VALIDATE.name
_AGGREGATES = ("table", "figure")  # the outputs made from every part (the parts are reused one by one)


@dataclass
class AtlasInput:
    """One atlas to validate: its results directory, its (level, set) file groups and label overrides."""

    name: str
    results: Path
    groups: list[LevelSet]
    harmonise: dict[str, str] = field(default_factory=dict)


def resolve_atlases(atlases, results, registry, data_root, levels, signatures) -> list[AtlasInput]:
    """The atlases to validate with their file groups (see :func:`cytoatlas.registry.atlas_results`)."""
    return [AtlasInput(a.name, a.root, discover(a.name, a.root, a.level_order, levels, signatures), a.harmonise)
            for a in atlas_results(atlases, results, registry, data_root, step="validate")]


def _level_bootstrap(group: LevelSet) -> tuple[int, int]:
    """(n_bootstrap, seed) the level's pseudobulk was made with (the pseudobulk defaults if not recorded)."""
    try:
        p = read_header(group.pseudobulk["samples"], "pseudobulk", var_columns=()).parameters
    except CytoatlasError:
        p = {}
    return int(p.get("n_bootstrap", defaults.N_BOOTSTRAP)), int(p.get("seed", defaults.BOOTSTRAP_SEED))


def _fingerprints(paths: Sequence[Path]) -> list[dict]:
    return [input_fingerprint(p) for p in paths]


def _parts(inputs: list[AtlasInput], d: StepDirectory, *, min_samples: int, n_bootstrap: int | None,
           bootstrap_seed: int | None, gene_overrides: dict[str, str], force: bool) -> tuple[list[pd.DataFrame], ...]:
    """The correlations of every (atlas, level, set): reused when current, else computed and recorded."""
    out = d.out
    (out / VALIDATION_PARTS_DIR).mkdir(exist_ok=True)
    rho_parts, ct_parts, used = [], [], []
    groups = [g for a in inputs for g in a.groups if "samples" in g.activity]
    t0 = time.perf_counter()
    for k, g in enumerate(groups, 1):
        level_boot, level_seed = _level_bootstrap(g)
        params = {"min_samples": min_samples, "n_bootstrap": level_boot if n_bootstrap is None else n_bootstrap,
                  "seed": level_seed if bootstrap_seed is None else bootstrap_seed,
                  "target_genes": dict(sorted(gene_overrides.items())),
                  "atlas": g.atlas, "level": g.level, "signature_set": g.signature_set}
        paths = validation_part_paths(out, g.atlas, g.level, g.signature_set)
        fps = _fingerprints(g.files())
        current = not force and all(d.output_state(p, params, fps) == "complete" for p in paths.values())
        if current:
            log.info("[%d/%d] %s %s %s: correlations are current; reused", k, len(groups), g.atlas, g.level,
                     g.signature_set)
            rho, ct = read_parquet(paths["rho"]), read_parquet(paths["ct"])
        else:
            log.info("[%d/%d] %s %s %s: correlating", k, len(groups), g.atlas, g.level, g.signature_set)
            rho = within_atlas(g, min_samples=min_samples, n_boot=params["n_bootstrap"], seed=params["seed"],
                               gene_overrides=gene_overrides)
            ct = across_cell_types(g, min_samples=min_samples, gene_overrides=gene_overrides)
            write_parquet(rho, paths["rho"])
            write_parquet(ct, paths["ct"])
            d.commit(dict(d.record(p, params, fps, kind="part") for p in paths.values()))
        rho_parts.append(rho.astype({"representative": bool}))
        ct_parts.append(ct)
        used += list(paths.values())
    log.info("correlations of %d (atlas, level, set) groups in %.1f s", len(groups), time.perf_counter() - t0)
    return rho_parts, ct_parts, used


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _chosen_scatters(rho: pd.DataFrame, levels: dict, targets: Sequence[str] | None, n: int = 4) -> dict:
    rep = rho[rho["representative"]]
    chosen = {}
    for atlas in dict.fromkeys(rep["atlas"]):
        sub = rep[rep["atlas"] == atlas]
        sub = sub[[levels.get((atlas, s)) == lv for s, lv in zip(sub["signature_set"], sub["level"], strict=True)]]
        if targets:
            picked = sub[sub["target"].isin(list(targets))].drop_duplicates("target")
        else:
            first = "cytosig" if (sub["signature_set"] == "cytosig").any() else next(iter(sub["signature_set"]), None)
            picked = sub[sub["signature_set"] == first].sort_values("rho", ascending=False).head(n)
        if len(picked):
            chosen[atlas] = picked.to_dict("records")
    return chosen


def _loader(inputs: list[AtlasInput]):
    groups = {(g.atlas, g.level, g.signature_set): g for a in inputs for g in a.groups}
    activities: dict[Path, object] = {}

    def load(row: dict):
        g = groups.get((row["atlas"], row["level"], row["signature_set"]))
        if g is None or "samples" not in g.activity:
            return None
        path = g.activity["samples"]
        act = activities[path] if path in activities else activities.setdefault(path, read_activity(path))
        pb = read_pseudobulk(g.pseudobulk["samples"], {row["gene"]})
        if row["gene"] not in set(pb.genes) or row["target"] not in set(act.names):
            return None
        rows = (act.obs["cell_type"].astype(str) == row["stratum"]).to_numpy()
        x = pb.values[list(pb.genes).index(row["gene"]), rows].astype(float)
        y = act.z[rows, list(act.names).index(row["target"])]
        return x, y

    return load


def validate(
    atlases: str | AtlasConfig | Sequence[str | AtlasConfig],
    out: str | os.PathLike,
    *,
    results: str | os.PathLike | Mapping[str, str | os.PathLike] = "results",
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    levels: Sequence[str] | None = None,
    signatures: Sequence[str] | None = None,
    min_samples: int = defaults.VALIDATE_MIN_SAMPLES,
    min_cell_types: int = defaults.VALIDATE_MIN_CELL_TYPES,
    n_bootstrap: int | None = None,
    bootstrap_seed: int | None = None,
    target_genes: Mapping[str, str] | None = None,
    scatter_targets: Sequence[str] | None = None,
    figures: bool = True,
    resolution: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Validate activity within and across atlases: tables (CSV and Parquet) and figures (PNG and SVG).

    Parameters
    ----------
    atlases
        Registry names (or :class:`~cytoatlas.AtlasConfig` objects) of the atlases to validate.
    out
        Output directory: ``rho``, ``rho_cell_types``, ``summary``, ``cytosig_vs_secact``, ``cross_atlas``,
        ``conservation``, ``consistency`` and ``cell_type_matches`` as ``.csv`` and ``.parquet``,
        ``figures/*.png|svg``, ``parts/`` (per-level correlations, reused by reruns) and ``manifest.json``.
    results
        Parent of the atlases' results directories (``results/NAME/activity`` and ``results/NAME/pseudobulk``,
        as written by ``cytoatlas run --out results/NAME``), or a mapping ``{name: results directory}``.
    registry, data_root
        Registry whose entries give each atlas' level order and ``harmonise`` overrides (cell-type label ->
        shared name, applied before the shipped table).
    levels, signatures
        Restrict to these levels and signature sets (default: every activity file found).
    min_samples
        Fewest samples (or cell types) a correlation needs (10).
    min_cell_types
        Fewest matched cell types a cross-atlas correlation needs (3).
    n_bootstrap, bootstrap_seed
        Donor resamples per stratum for the rho intervals, and their seed; default: each level's pseudobulk
        ``n_bootstrap`` and bootstrap seed (100 and 42 unless changed). 0 disables the intervals.
    target_genes
        ``{target: gene}`` overriding the shipped CytoSig target -> gene table (e.g. ``{"IFN1": "IFNB1"}``).
    scatter_targets
        Targets drawn in the expression vs activity scatters (default: each atlas' four highest rhos).
    figures
        Draw the figures (False: tables only).
    resolution
        Which cell-type resolution the cross-atlas tables report: ``fine`` (each label at the finest Cell Ontology
        term both atlases hold), ``lineage`` (a fixed set of lineage terms) or ``both`` (default).
    force
        Recompute everything, even what is current.

    Returns
    -------
    list of Path
        The tables and figures written (or found current).
    """
    try:
        chosen = resolutions(resolution)
    except ValueError as e:
        raise CytoatlasError(str(e)) from None
    if min_samples < 3:
        raise CytoatlasError(f"min_samples must be >= 3, got {min_samples}")
    if min_cell_types < 2:
        raise CytoatlasError(f"min_cell_types must be >= 2, got {min_cell_types}")
    if n_bootstrap is not None and n_bootstrap < 0:
        raise CytoatlasError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    out = check_output_dir(out)
    t0 = time.perf_counter()
    inputs = resolve_atlases(atlases, results, registry, data_root, list(levels or []) or None,
                             list(signatures or []) or None)
    gene_overrides = dict(target_genes or {})
    for a in inputs:
        log.info("atlas %s: %d (level, signature set) groups in %s", a.name, len(a.groups), a.results)
    with StepDirectory(out, VALIDATE, subdirs=(VALIDATION_PARTS_DIR, VALIDATION_FIGURES_DIR)) as d:
        rho_parts, ct_parts, part_paths = _parts(inputs, d, min_samples=min_samples, n_bootstrap=n_bootstrap,
                                                 bootstrap_seed=bootstrap_seed, gene_overrides=gene_overrides,
                                                 force=force)
        d.touch()
        params = {"atlases": [a.name for a in inputs], "min_samples": min_samples, "min_cell_types": min_cell_types,
                  "n_bootstrap": n_bootstrap, "seed": bootstrap_seed,
                  "target_genes": dict(sorted(gene_overrides.items())),
                  "harmonise": {a.name: dict(sorted(a.harmonise.items())) for a in inputs},
                  "levels": list(levels or []), "signatures": list(signatures or []), "figures": figures,
                  "scatter_targets": list(scatter_targets or []), "resolution": list(chosen),
                  **cell_ontology().provenance}
        cell_files = [g.activity["celltype"] for a in inputs for g in a.groups if "celltype" in g.activity]
        fps = [{"name": d.key(p), "checksum": d.records[d.key(p)].checksum} for p in part_paths]
        fps += _fingerprints(cell_files)
        tables = [p for t in TABLES for p in table_paths(out, t)]
        if not force and d.is_current(params, fps, tables, kinds=_AGGREGATES):
            log.info("validation tables and figures in %s are current; nothing to do", out)
            return sorted(out / k for k in d.previous(_AGGREGATES))
        written = _aggregate(inputs, d, rho_parts, ct_parts, min_cell_types=min_cell_types, figures=figures,
                             resolutions=chosen,
                             scatter_targets=scatter_targets, params=params, fps=fps)
        d.remove_stale(written, kinds=_AGGREGATES)
    log.info("validation of %d atlas(es) written to %s in %.1f s", len(inputs), out, time.perf_counter() - t0)
    return written


def _aggregate(inputs: list[AtlasInput], d: StepDirectory, rho_parts, ct_parts, *, min_cell_types: int,
               figures: bool, resolutions: tuple[Resolution, ...], scatter_targets, params: dict,
               fps: list[dict]) -> list[Path]:
    out = d.out
    t0 = time.perf_counter()
    rho = _concat(rho_parts, RHO_COLUMNS)
    rho["representative"] = rho["representative"].astype(bool)
    cell = _concat(ct_parts, CELL_TYPE_COLUMNS)
    profiles, matches = {}, []
    for a in inputs:
        profiles[a.name], m = xa.level_profiles(a.groups, a.harmonise)
        matches.append(m)
        unmatched = m[m["source"] == "none"].drop_duplicates("cell_type")
        if len(unmatched):
            log.warning("atlas %s: %d cell type label(s) match no Cell Ontology term and take part in no "
                        "cross-atlas comparison (listed in cell_type_matches with candidates); to map them, add "
                        "to the registry:\n%s", a.name, len(unmatched), registry_hint(a.name, unmatched.head(12)))
    all_matches = _concat(matches, xa.MATCH_COLUMNS)
    cross, unit_frames = xa.cross_atlas(profiles, all_matches, resolutions=resolutions,
                                        min_cell_types=min_cell_types)
    tables = {"rho": rho, "rho_cell_types": cell, "summary": summary(rho), "cytosig_vs_secact": cytosig_vs_secact(rho),
              "cross_atlas": cross, "conservation": xa.conservation(cross), "consistency": xa.consistency(rho),
              "cell_type_matches": all_matches}
    written, records = [], {}
    for name, df in tables.items():
        for p in write_table(df, out, name):
            written.append(p)
            records.update([d.record(p, params, fps, kind="table", table=name)])
    log.info("tables: %s", ", ".join(f"{k} ({len(v):,} rows)" for k, v in tables.items()))
    if figures:
        fig_dir = out / VALIDATION_FIGURES_DIR
        fig_dir.mkdir(exist_ok=True)
        levels = xa.consistency_levels(rho) if len(rho) else {}
        figs = [fg.rho_distribution(rho, fig_dir), *fg.top_targets(rho, levels, fig_dir),
                *fg.scatters(_chosen_scatters(rho, levels, scatter_targets), _loader(inputs), fig_dir),
                *fg.heatmaps(unit_frames, cross, fig_dir), *fg.agreement(cross, fig_dir)]
        for f in filter(None, figs):
            for p in f.paths:
                written.append(p)
                records.update([d.record(p, params, fps, kind="figure", figure=f.stem, title=f.title,
                                         caption=f.caption)])
        log.info("%d figures (PNG and SVG) in %s", len(list(filter(None, figs))), fig_dir)
    d.commit(records)
    log.info("tables and figures in %.1f s", time.perf_counter() - t0)
    return written

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
from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas import defaults
from cytoatlas._harness import StepDirectory, input_fingerprint
from cytoatlas._harness.directory import check_output_dir
from cytoatlas._harness.steps import VALIDATE
from cytoatlas._validate import cross_atlas as xa
from cytoatlas._validate import figures as fg
from cytoatlas._validate.inputs import LevelSet, discover
from cytoatlas._validate.partial import composition_from_obs
from cytoatlas._validate.summaries import cytosig_vs_secact, summary
from cytoatlas._validate.targets import CELL_TYPE_SEPARATOR
from cytoatlas._validate.within import (
    CELL_TYPE_COLUMNS,
    PARTIAL_COLUMNS,
    RHO_COLUMNS,
    across_cell_types,
    within_atlas,
)
from cytoatlas.celltypes import UNSTRATIFIED, Resolution, cell_ontology, registry_hint, resolutions
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import (
    VALIDATION_FIGURES_DIR,
    VALIDATION_PARTS_DIR,
    table_paths,
    validation_part_paths,
)
from cytoatlas.io.results import read_activity, read_pseudobulk
from cytoatlas.io.tables import read_parquet, write_parquet, write_table
from cytoatlas.options import check_count, check_known, name_list, name_pairs
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
    """The atlases to validate with their verified file groups (see :func:`cytoatlas.registry.atlas_results`).

    Raises
    ------
    CytoatlasError
        An input is damaged (see :func:`cytoatlas._validate.inputs.discover`), a level or signature set asked for
        is in no atlas, or an atlas has none of them.
    """
    levels, signatures = name_list("levels", levels), name_list("signatures", signatures)
    out, available = [], []
    for a in atlas_results(atlases, results, registry, data_root, step="validate"):
        groups, there = discover(a.name, a.root, a.level_order, list(levels) or None, list(signatures) or None)
        out.append(AtlasInput(a.name, a.root, groups, a.harmonise))
        available += there
    for option, what, asked, there in (("levels", "level", levels, {lv for lv, _ in available}),
                                       ("signatures", "signature set", signatures, {s for _, s in available})):
        try:
            check_known(f"validate --{option}", asked, sorted(there), what=what)
        except CytoatlasError as e:
            missing = [n for n in asked if n.lower() not in {t.lower() for t in there}]
            raise CytoatlasError(f"no activity files of {', '.join(a.name for a in out)} for {what}s "
                                 f"{', '.join(missing)}: {e}") from None
    for a in out:
        if not a.groups:
            raise CytoatlasError(f"atlas {a.name!r}: no activity files for "
                                 f"{' and '.join(filter(None, [', '.join(levels), ', '.join(signatures)]))}")
    return out


def _check_names(inputs: list[AtlasInput], gene_overrides: Mapping[str, str], scatter_targets: Sequence[str],
                 composition_level: str | None) -> None:
    """The targets and level the options name must exist in the inputs (their headers only are read). A gene
    (``target_genes``' values) that a pseudobulk file lacks is no error: its target's rows say "gene absent".

    Raises
    ------
    CytoatlasError
        A target no signature set has (``target_genes``' keys, ``scatter_targets``), a ``composition_level`` no
        atlas has; naming the valid ones.
    """
    if composition_level is not None:
        check_known("composition_level", [composition_level], [g.level for a in inputs for g in a.groups],
                    what="level")
    if not gene_overrides and not scatter_targets:
        return
    targets: dict[str, None] = {}
    for g in (g for a in inputs for g in a.groups):
        for name in g.signature_names():
            targets[name] = None
            if CELL_TYPE_SEPARATOR in name:  # a cell-type-specific signature: its cytokine is a target too
                targets[name.split(CELL_TYPE_SEPARATOR, 1)[1]] = None
    check_known("target_genes", list(gene_overrides), list(targets), what="target", case=True)
    check_known("scatter_targets", scatter_targets, list(targets), what="target", case=True)


def _level_bootstrap(group: LevelSet) -> tuple[int, int]:
    """(n_bootstrap, seed) the level's pseudobulk was made with (the pseudobulk defaults if not recorded)."""
    p = group.pseudobulk_parameters("samples")
    return int(p.get("n_bootstrap", defaults.N_BOOTSTRAP)), int(p.get("seed", defaults.BOOTSTRAP_SEED))


def _fingerprints(paths: Sequence[Path]) -> list[dict]:
    return [input_fingerprint(p) for p in paths]


def _stratified(group: LevelSet) -> bool:
    """Whether a level's sample pseudobulk has cell types (not one ``all`` row per sample)."""
    obs = group.pseudobulk_obs("samples")
    return "cell_type" in obs and set(obs["cell_type"].astype(str)) != {UNSTRATIFIED}


def _composition_groups(inputs: list[AtlasInput], level: str | None) -> dict[str, LevelSet | None]:
    """Per atlas, the level whose cell-type fractions adjust its unstratified levels' rho: ``level`` when given
    (an atlas without it: none), else the first level with cell types in the atlas' level order."""
    out: dict[str, LevelSet | None] = {}
    for a in inputs:
        candidates = [g for g in a.groups if "samples" in g.pseudobulk]
        if level is not None:
            candidates = [g for g in candidates if g.level.lower() == level.lower()]
        out[a.name] = next((g for g in candidates if _stratified(g)), None)
        if level is not None and out[a.name] is None:
            log.warning("atlas %s: no level %r with cell types: no composition-adjusted rho", a.name, level)
    return out


def _parts(inputs: list[AtlasInput], d: StepDirectory, *, min_samples: int, n_bootstrap: int | None,
           bootstrap_seed: int | None, gene_overrides: dict[str, str], force: bool,
           composition_level: str | None = None) -> tuple[list[pd.DataFrame], ...]:
    """The correlations of every (atlas, level, set): reused when current, else computed and recorded."""
    out = d.out
    (out / VALIDATION_PARTS_DIR).mkdir(exist_ok=True)
    rho_parts, ct_parts, used = [], [], []
    groups = [g for a in inputs for g in a.groups if "samples" in g.activity]
    stratified = {id(g): _stratified(g) for g in groups}
    composition = _composition_groups(inputs, composition_level) if not all(stratified.values()) else {}
    t0 = time.perf_counter()
    for k, g in enumerate(groups, 1):
        level_boot, level_seed = _level_bootstrap(g)
        params = {"min_samples": min_samples, "n_bootstrap": level_boot if n_bootstrap is None else n_bootstrap,
                  "seed": level_seed if bootstrap_seed is None else bootstrap_seed,
                  "target_genes": dict(sorted(gene_overrides.items())),
                  "atlas": g.atlas, "level": g.level, "signature_set": g.signature_set}
        paths = validation_part_paths(out, g.atlas, g.level, g.signature_set)
        fps = _fingerprints(g.files())
        fractions_group = None if stratified[id(g)] else composition.get(g.atlas)
        if fractions_group is not None:  # the fractions' file is an input of this part
            params["fractions_level"] = fractions_group.level
            fps += _fingerprints([fractions_group.pseudobulk["samples"]])
        current = not force and all(d.output_state(p, params, fps) == "complete" for p in paths.values())
        if current:
            log.info("[%d/%d] %s %s %s: correlations are current; reused", k, len(groups), g.atlas, g.level,
                     g.signature_set)
            rho, ct = read_parquet(paths["rho"]), read_parquet(paths["ct"])
            for c in PARTIAL_COLUMNS:  # a part written before the partial rho existed (a stratified level's)
                if c not in rho:
                    rho[c] = "" if c in ("fractions_level", "partial_reason") else 0 if c == "n_fractions" else np.nan
        else:
            log.info("[%d/%d] %s %s %s: correlating", k, len(groups), g.atlas, g.level, g.signature_set)
            rho, ct = correlations(g, min_samples=min_samples, n_boot=params["n_bootstrap"], seed=params["seed"],
                                   gene_overrides=gene_overrides, fractions_group=fractions_group)
            write_parquet(rho, paths["rho"])
            write_parquet(ct, paths["ct"])
            d.commit(dict(d.record(p, params, fps, kind="part") for p in paths.values()))
        rho_parts.append(rho.astype({"representative": bool}))
        ct_parts.append(ct)
        used += list(paths.values())
    log.info("correlations of %d (atlas, level, set) groups in %.1f s", len(groups), time.perf_counter() - t0)
    return rho_parts, ct_parts, used


def correlations(g: LevelSet, *, min_samples: int, n_boot: int, seed: int, gene_overrides: Mapping[str, str],
                 fractions_group: LevelSet | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``rho`` and ``rho_cell_types`` rows of one (atlas, level, set), the partial rho given the cell-type
    fractions of ``fractions_group``'s level when given (files or results held in memory alike)."""
    fractions = None if fractions_group is None else \
        composition_from_obs(fractions_group.pseudobulk_obs("samples"), fractions_group.level)
    rho = within_atlas(g, min_samples=min_samples, n_boot=n_boot, seed=seed, gene_overrides=dict(gene_overrides),
                       fractions=fractions)
    ct = across_cell_types(g, min_samples=min_samples, gene_overrides=dict(gene_overrides))
    return rho, ct


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


@dataclass(frozen=True)
class ValidateOptions:
    """The options of a validation, checked (:func:`check_validate_options`)."""

    resolutions: tuple[Resolution, ...]
    min_samples: int
    min_cell_types: int
    n_bootstrap: int | None
    bootstrap_seed: int | None
    levels: tuple[str, ...]
    signatures: tuple[str, ...]
    target_genes: dict[str, str]


def check_validate_options(*, resolution: str | None, min_samples: object, min_cell_types: object,
                           n_bootstrap: object | None, bootstrap_seed: object | None,
                           levels: str | Sequence[str] | None, signatures: str | Sequence[str] | None,
                           target_genes: Mapping[str, str] | str | Sequence[str] | None) -> ValidateOptions:
    """The options the file path and the in-memory path of a validation share, checked once for both.

    Raises
    ------
    CytoatlasError
        An unknown resolution, a count out of range, a name list or ``TARGET=GENE`` pair that names nothing.
    """
    try:
        chosen = resolutions(resolution)
    except ValueError as e:
        raise CytoatlasError(str(e)) from None
    return ValidateOptions(
        chosen, check_count("min_samples", min_samples, minimum=3),
        check_count("min_cell_types", min_cell_types, minimum=2),
        None if n_bootstrap is None else check_count("n_bootstrap", n_bootstrap, minimum=0),
        None if bootstrap_seed is None else check_count("bootstrap_seed", bootstrap_seed, minimum=0),
        name_list("levels", levels), name_list("signatures", signatures),
        name_pairs("target_genes", target_genes, "TARGET=GENE"))


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
    composition_level: str | None = None,
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
    composition_level
        The level whose cell-type fractions (per donor, from its sample pseudobulk's ``n_cells``) adjust the rho
        of levels without cell types (the partial rho columns); default: each atlas' first level with cell types.

    Returns
    -------
    list of Path
        The tables and figures written (or found current).
    """
    chosen, min_samples, min_cell_types, n_bootstrap, bootstrap_seed, levels, signatures, gene_overrides = astuple(
        check_validate_options(resolution=resolution, min_samples=min_samples, min_cell_types=min_cell_types,
                               n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed, levels=levels,
                               signatures=signatures, target_genes=target_genes))
    scatter_targets = name_list("scatter_targets", scatter_targets)
    if composition_level is not None and not str(composition_level).strip():
        raise CytoatlasError("composition_level names nothing: give a level with cell types")
    out = check_output_dir(out)
    t0 = time.perf_counter()
    inputs = resolve_atlases(atlases, results, registry, data_root, levels, signatures)
    _check_names(inputs, gene_overrides, scatter_targets, composition_level)
    for a in inputs:
        log.info("atlas %s: %d (level, signature set) groups in %s", a.name, len(a.groups), a.results)
    with StepDirectory(out, VALIDATE, subdirs=(VALIDATION_PARTS_DIR, VALIDATION_FIGURES_DIR), force=force) as d:
        rho_parts, ct_parts, part_paths = _parts(inputs, d, min_samples=min_samples, n_bootstrap=n_bootstrap,
                                                 bootstrap_seed=bootstrap_seed, gene_overrides=gene_overrides,
                                                 force=force, composition_level=composition_level)
        d.touch()
        params = {"atlases": [a.name for a in inputs], "min_samples": min_samples, "min_cell_types": min_cell_types,
                  "n_bootstrap": n_bootstrap, "seed": bootstrap_seed,
                  "target_genes": dict(sorted(gene_overrides.items())),
                  "harmonise": {a.name: dict(sorted(a.harmonise.items())) for a in inputs},
                  "levels": list(levels or []), "signatures": list(signatures or []), "figures": figures,
                  "scatter_targets": list(scatter_targets or []), "resolution": list(chosen),
                  **cell_ontology().provenance,
                  "composition_level": composition_level}
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


def validation_tables(inputs: Sequence[AtlasInput], rho_parts: Sequence[pd.DataFrame],
                      ct_parts: Sequence[pd.DataFrame], *, min_cell_types: int,
                      resolutions: Sequence[Resolution]) -> tuple[dict[str, pd.DataFrame], dict]:
    """The eight validation tables from the correlations of every (atlas, level, set) and the atlases' cell-type
    activity (the one implementation behind the file step and :func:`cytoatlas._validate.memory.validate_activity`),
    and the fine units' mean activity per (atlas, level, set) for the heatmaps."""
    rho = _concat(list(rho_parts), RHO_COLUMNS)
    rho["representative"] = rho["representative"].astype(bool)
    cell = _concat(list(ct_parts), CELL_TYPE_COLUMNS)
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
    return tables, unit_frames


def _aggregate(inputs: list[AtlasInput], d: StepDirectory, rho_parts, ct_parts, *, min_cell_types: int,
               figures: bool, resolutions: tuple[Resolution, ...], scatter_targets, params: dict,
               fps: list[dict]) -> list[Path]:
    out = d.out
    t0 = time.perf_counter()
    tables, unit_frames = validation_tables(inputs, rho_parts, ct_parts, min_cell_types=min_cell_types,
                                            resolutions=resolutions)
    rho, cross = tables["rho"], tables["cross_atlas"]
    # inputs deliberately left out (a level without a sample x cell type activity file) are recorded as such
    left_out = [{"atlas": g.atlas, "level": g.level, "signature_set": g.signature_set, "reason": g.left_out}
                for a in inputs for g in a.groups if g.left_out]
    written, records = [], {}
    for name, df in tables.items():
        for p in write_table(df, out, name):
            written.append(p)
            records.update([d.record(p, params, fps, kind="table", table=name, left_out=left_out)])
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

"""`cytoatlas.compare`: donor-level group differences and covariate slopes of activity per cell type, and their
random-effects meta-analysis across atlases, as four tables (and figures) in one directory.

The tables (``differential``, ``association``, ``meta``, ``untestable``, CSV and Parquet) and figures are recorded
in ``OUT/manifest.json`` (step ``compare``) with the parameters and the fingerprints of every activity file read;
a rerun with the same inputs and parameters finds them current and does nothing, ``force`` recomputes.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cytoatlas import defaults
from cytoatlas._compare import crosstalk
from cytoatlas._compare import tables as tb
from cytoatlas._compare.analyses import Spec, compare_file
from cytoatlas._compare.crosstalk import SignatureCorrelations
from cytoatlas._compare.inputs import AtlasFiles, resolve_atlases
from cytoatlas._compare.meta import meta_analysis
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.directory import check_output_dir
from cytoatlas._harness.steps import COMPARE
from cytoatlas.celltypes import (
    MATCH_COLUMNS,
    UNIT_COLUMNS,
    Resolution,
    cell_ontology,
    comparable_units,
    map_labels,
    ontology_ids,
    resolutions,
)
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import COMPARE_FIGURES_DIR, COMPARE_TABLES, compare_table_paths
from cytoatlas.io.results import Activity, read_activity
from cytoatlas.io.tables import write_table
from cytoatlas.options import Test, check_choice, check_count, name_list
from cytoatlas.registry import AtlasConfig

log = logging.getLogger("cytoatlas.compare")
STEP = COMPARE.name




def make_spec(by: str | None, reference: str | None, groups: str | Sequence[str] | None,
              continuous: str | Sequence[str] | None, covariates: str | Sequence[str] | None, paired_by: str | None,
              test: str, min_group_size: int) -> Spec:
    """The comparison asked for (see :func:`compare`), checked: what is compared with what, and how.

    Raises
    ------
    CytoatlasError
        Nothing to compare, an unknown test, options that do not go together, a column named twice.
    """
    for option, value in (("by", by), ("paired_by", paired_by), ("reference", reference)):
        if value is not None and not str(value).strip():
            raise CytoatlasError(f"{option} names nothing ({value!r}): give a column name"
                                 if option != "reference" else "reference names nothing: give the reference value")
    spec = Spec(by=by or None, reference=None if reference is None else str(reference),
                groups=name_list("groups", groups), continuous=name_list("continuous", continuous),
                covariates=name_list("covariates", covariates), paired_by=paired_by or None, test=test,
                min_group_size=check_count("min_group_size", min_group_size, minimum=2))
    if not spec.by and not spec.continuous:
        raise CytoatlasError("name what to compare: --by COLUMN (with --reference VALUE) and/or --continuous COLUMN")
    check_choice("test", test, Test)
    if spec.by and spec.reference is None:
        raise CytoatlasError(f"--by {spec.by} needs --reference VALUE: the group the others are compared with")
    if not spec.by and (spec.reference is not None or spec.groups or spec.paired_by):
        raise CytoatlasError("--reference, --groups and --paired-by go with --by COLUMN")
    if test == "wilcoxon" and spec.continuous:
        raise CytoatlasError("--continuous is a regression slope (--test ols); a rank test has no slope")
    if test == "wilcoxon" and spec.covariates:
        raise CytoatlasError("--covariates need --test ols: a rank test cannot adjust for covariates")
    if spec.min_group_size < 2:
        raise CytoatlasError(f"min_group_size must be >= 2 (a group needs a variance), got {spec.min_group_size}")
    named = [c for c in (spec.by, *spec.continuous, spec.paired_by) if c]
    clash = sorted(set(spec.covariates) & set(named))
    if clash or len(set(named)) != len(named) or len(set(spec.covariates)) != len(spec.covariates):
        raise CytoatlasError(f"a column is named twice among --by, --continuous, --covariates and --paired-by: "
                             f"{', '.join(clash or named)}")
    return spec


def _cell_types(act, overrides: Mapping[str, str]) -> pd.DataFrame:
    """The CL term of each cell-type label of an activity file (empty without a ``cell_type`` column)."""
    if "cell_type" not in act.obs:
        return pd.DataFrame(columns=MATCH_COLUMNS)
    return map_labels(act.obs["cell_type"].astype(str), overrides=overrides, ontology_ids=ontology_ids(act.obs),
                      separator=act.separator)


def _with_units(effects: pd.DataFrame, matches: dict[tuple[str, str], pd.DataFrame],
                chosen: Sequence[Resolution]) -> pd.DataFrame:
    """The per-atlas rows once per resolution, with their label's unit across the atlases of the same level as
    ``cl_id`` / ``cl_name`` (see :func:`cytoatlas.celltypes.comparable_units`)."""
    units = []
    for level_key in sorted({lv.lower() for _, lv in matches}):
        by_atlas = {a: m for (a, lv), m in matches.items() if lv.lower() == level_key}
        for resolution in chosen:
            u = comparable_units(by_atlas, resolution)
            units.append(u.assign(level_key=level_key))
    units = pd.concat(units, ignore_index=True) if units else pd.DataFrame(columns=[*UNIT_COLUMNS, "level_key"])
    units = units.rename(columns={"unit_id": "cl_id", "unit_name": "cl_name"})
    rows = effects.drop(columns=["cl_id", "cl_name"]).assign(level_key=effects["level"].str.lower())
    return rows.merge(units, on=["atlas", "level_key", "cell_type"], how="inner").drop(columns="level_key")


@dataclass(frozen=True)
class ActivityItem:
    """One activity result to compare, from a file or held in memory: whose it is, how to get its
    :class:`~cytoatlas.io.results.Activity` and its signature correlations (for the cross-talk columns)."""

    atlas: str
    level: str
    signature_set: str
    load: Callable[[], Activity]
    correlations: Callable[[], SignatureCorrelations | None]


def comparison_tables(items: Sequence[ActivityItem], harmonise: Mapping[str, Mapping[str, str]], spec: Spec,
                      chosen: Sequence[Resolution], touch: Callable[[], None] = lambda: None
                      ) -> dict[str, pd.DataFrame]:
    """The four tables: every result's comparisons, their FDRs, and the meta-analysis across atlases (the one
    implementation behind the file step and :func:`cytoatlas._compare.memory.compare_activity`)."""
    differential, association, untestable = [], [], []
    matches: dict[tuple[str, str], pd.DataFrame] = {}
    for k, item in enumerate(items, 1):
        t0 = time.perf_counter()
        act = item.load()
        table = _cell_types(act, harmonise.get(item.atlas, {}))
        matches.setdefault((item.atlas, item.level), table)
        terms = {c: (i, n) for c, i, n in zip(table["cell_type"], table["cl_id"], table["cl_name"], strict=True)}
        res = compare_file(act, item.atlas, terms, spec)
        differential += res.differential
        association += res.association
        untestable += res.untestable
        n_types = act.obs["cell_type"].nunique()
        log.info("[%d/%d] %s %s %s: %d cell types x %d signatures; %d tested, %d untestable%s in %.1f s", k,
                 len(items), item.atlas, item.level, item.signature_set, n_types, len(act.names),
                 len(res.differential) + len(res.association), len(res.untestable),
                 f"; {res.averaged} (donor, cell type) value(s) averaged over several samples" if res.averaged else "",
                 time.perf_counter() - t0)
        touch()
    out = {"differential": tb.with_fdr("differential", tb.concat("differential", differential)),
           "association": tb.with_fdr("association", tb.concat("association", association)),
           "untestable": tb.table_frame("untestable", untestable)}
    # cross-talk beside every row: appended columns, computed in their own module (see crosstalk.py)
    by_key = {(i.atlas, i.level, i.signature_set): i for i in items}
    cache: dict[tuple, SignatureCorrelations | None] = {}

    def correlations_of(key: tuple) -> SignatureCorrelations | None:
        if key not in cache:
            cache[key] = by_key[key].correlations() if key in by_key else None
        return cache[key]

    for name in ("differential", "association"):
        keys = tb.FDR_PARTS[name][:3]
        out[name] = crosstalk.annotate(out[name], correlations_of, keys, [*tb.FDR_PARTS[name], "cell_type", "test"])
    if len({i.atlas for i in items}) >= 2:
        effects = pd.concat([out["differential"].assign(analysis="differential"),
                             out["association"].assign(analysis="association")], ignore_index=True)
        effects = _with_units(effects, matches, chosen)
        out["meta"] = tb.table_frame("meta", tb.with_fdr("meta", meta_analysis(effects)))
    else:
        out["meta"] = tb.table_frame("meta", [])
    return {name: out[name] for name in COMPARE_TABLES}


def _compute(inputs: list[AtlasFiles], spec: Spec, lock: StepDirectory,
             chosen: Sequence[Resolution]) -> dict[str, pd.DataFrame]:
    """The four tables of the atlases' activity files (read one at a time)."""
    items = [ActivityItem(a.name, f.level, f.signature_set, functools.partial(read_activity, f.path),
                          functools.partial(crosstalk.file_correlations, f.path)) for a in inputs for f in a.files]
    return comparison_tables(items, {a.name: a.harmonise for a in inputs}, spec, chosen, lock.touch)


def _write(d: StepDirectory, tables: dict[str, pd.DataFrame], write_figures, scope: str, params: dict,
           fps: list[dict]) -> list[Path]:
    written, records = [], {}
    for name, df in tables.items():
        for p in write_table(df, d.out, name):  # compare_table_paths(out, name)
            written.append(p)
            records.update([d.record(p, params, fps, kind=name, table=name)])
    log.info("tables: %s", ", ".join(f"{k} ({len(v):,} rows)" for k, v in tables.items()))
    if write_figures is not None:
        fig_dir = d.out / COMPARE_FIGURES_DIR
        fig_dir.mkdir(exist_ok=True)
        paths = write_figures(tables, fig_dir, scope=scope)
        for p in paths:
            written.append(p)
            records.update([d.record(p, params, fps, kind="figure", figure=p.stem)])
        log.info("%d figure files in %s", len(paths), fig_dir)
    d.commit(records)
    return written


def compare(
    atlases: str | AtlasConfig | Sequence[str | AtlasConfig],
    out: str | os.PathLike,
    *,
    results: str | os.PathLike | Mapping[str, str | os.PathLike] = "results",
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    levels: Sequence[str] | None = None,
    signatures: Sequence[str] | None = None,
    by: str | None = None,
    reference: str | None = None,
    groups: Sequence[str] | None = None,
    continuous: Sequence[str] = (),
    covariates: Sequence[str] = (),
    paired_by: str | None = None,
    test: Test = defaults.COMPARE_TEST,
    min_group_size: int = defaults.COMPARE_MIN_GROUP_SIZE,
    figures: bool = True,
    resolution: str | None = None,
    all_figures: bool = False,
    force: bool = False,
) -> list[Path]:
    """Compare activity between donor groups, or along a donor covariate, per cell type; pool across atlases.

    Parameters
    ----------
    atlases
        Registry names (or :class:`~cytoatlas.AtlasConfig` objects) of the atlases to compare.
    out
        Output directory: ``differential``, ``association``, ``meta`` and ``untestable`` as ``.csv`` and
        ``.parquet``, ``figures/*.png|svg`` and ``manifest.json``.
    results
        Parent of the atlases' results directories (``results/NAME/activity``, as written by ``cytoatlas run
        --out results/NAME``), or a mapping ``{name: results directory}``.
    registry, data_root
        Registry whose entries give each atlas' level order and ``harmonise`` overrides (cell-type label -> CL ID,
        CL name or a shared name) for matching cell types across atlases through the Cell Ontology.
    levels, signatures
        Restrict to these levels and signature sets (default: every sample x cell type activity file found).
    by, reference, groups
        The obs column of the groups, the reference value, and the values compared with it (default: every
        other value). Each contrast is ``"{group} vs {reference}"``; its effect ``group - reference``.
    continuous
        Numeric obs columns to scan: the slope of activity per unit of each (averaged per donor).
    covariates
        Obs columns adjusted for in the regressions (numeric: averaged per donor, centred; categorical:
        constant per donor, indicator-coded).
    paired_by
        The column naming the unit seen in both groups (e.g. ``donor`` for stimulated and control samples of
        each donor): the test is on the per-unit differences.
    test
        ``ols`` (regression; t-based SE, CI and p) or ``wilcoxon`` (rank-sum, signed-rank when paired; the
        effect is still the mean difference, with a Welch or paired t interval).
    min_group_size
        Fewest donors per group of a contrast (3); a regression on a covariate needs ``covariates + 3``.
    figures
        Draw the volcano, forest and heatmap figures (False: tables only).
    resolution
        The cell-type resolution of the meta-analysis: ``fine`` (each label at the finest Cell Ontology term
        another atlas holds), ``lineage`` (a fixed set of lineage terms) or ``both`` (default).
    all_figures
        Volcanos and heatmaps of every atlas x level x signature set x contrast; by default only those of the level
        holding each atlas x set x contrast's strongest row (what the report leads with), which for many levels and
        sets is a small share of the drawing time.
    force
        Recompute even when the tables are current.

    Returns
    -------
    list of Path
        The tables and figures written (or found current).

    Raises
    ------
    CytoatlasError
        A missing column (naming the obs columns there are), a reference or group value that is absent (naming
        the values present), a donor in both groups of an unpaired contrast, options that do not go together.
    """
    levels, signatures = name_list("levels", levels), name_list("signatures", signatures)
    spec = make_spec(by, reference, groups, continuous, covariates, paired_by, test, min_group_size)
    try:
        chosen = resolutions(resolution)
    except ValueError as e:
        raise CytoatlasError(str(e)) from None
    write_figures = None
    if figures:  # matplotlib only when figures are drawn
        from cytoatlas._compare.figures import write_figures
    out = check_output_dir(out)
    t0 = time.perf_counter()
    inputs = resolve_atlases(atlases, results, registry, data_root, levels, signatures)
    for a in inputs:
        log.info("atlas %s: %d sample x cell type activity file(s) in %s", a.name, len(a.files), a.results)
    params = {"atlases": [a.name for a in inputs], "levels": list(levels or []), "signatures": list(signatures or []),
              "by": spec.by, "reference": spec.reference, "groups": list(spec.groups),
              "continuous": list(spec.continuous), "covariates": list(spec.covariates), "paired_by": spec.paired_by,
              "test": spec.test, "min_group_size": spec.min_group_size,
              "figures": figures and ("all" if all_figures else "shown"),
              "harmonise": {a.name: dict(sorted(a.harmonise.items())) for a in inputs}, "resolution": list(chosen),
              **cell_ontology().provenance, "crosstalk_threshold": crosstalk.CROSSTALK_THRESHOLD}
    fps = [f.fingerprint for a in inputs for f in a.files]
    with StepDirectory(out, COMPARE, subdirs=[COMPARE_FIGURES_DIR], force=force) as d:
        tables = [p for t in COMPARE_TABLES for p in compare_table_paths(out, t)]
        if not force and d.is_current(params, fps, tables):
            log.info("comparison tables%s in %s are current; nothing to do", " and figures" if figures else "", out)
            return sorted(out / k for k in d.previous())
        written = _write(d, _compute(inputs, spec, d, chosen), write_figures, "all" if all_figures else "shown",
                         params, fps)
        d.remove_stale(written)
    log.info("comparison of %d atlas(es) written to %s in %.1f s", len(inputs), out, time.perf_counter() - t0)
    return written

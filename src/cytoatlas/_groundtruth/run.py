"""`cytoatlas groundtruth`: does each treatment of a perturbation atlas move its own signature? Four tables (and
figures) in one directory.

The tables (``matches``, ``effects``, ``treatments``, ``summary``; CSV and Parquet, see
:mod:`cytoatlas._groundtruth.tables`) and figures are recorded in ``OUT/manifest.json`` (step ``groundtruth``)
with the parameters and the fingerprints of every activity file read; a rerun with the same inputs and parameters
finds them current and does nothing, ``force`` recomputes. The structure follows ``cytoatlas compare`` (inputs,
analyses, tables, figures, report, run).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cytoatlas import defaults
from cytoatlas._compare.crosstalk import CROSSTALK_THRESHOLD, file_correlations
from cytoatlas._compare.inputs import resolve_atlases
from cytoatlas._groundtruth import tables as tb
from cytoatlas._groundtruth.analyses import Spec, groundtruth_file
from cytoatlas._groundtruth.figures import FIGURES_DIR
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.directory import check_output_dir
from cytoatlas._harness.steps import GROUNDTRUTH
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import table_paths
from cytoatlas.io.results import read_activity
from cytoatlas.io.tables import write_table
from cytoatlas.options import name_list, name_pairs
from cytoatlas.registry import AtlasConfig, treatment_aliases

log = logging.getLogger("cytoatlas.groundtruth")


def _compute(inputs, spec: Spec, overrides: dict[str, dict[str, str]], threshold: float,
             lock: StepDirectory) -> dict[str, pd.DataFrame]:
    effects, treatments, matches = [], [], []
    files = [(a, f) for a in inputs for f in a.files]
    for k, (a, f) in enumerate(files, 1):
        t0 = time.perf_counter()
        act = read_activity(f.path)
        res = groundtruth_file(act, a.name, spec, overrides[a.name], file_correlations(f.path), threshold)
        effects += res.effects
        treatments += res.treatments
        matches += res.matches
        unmatched = [m["treatment"] for m in res.matches if not m["signature"]]
        log.info("[%d/%d] %s %s %s: %d treatment(s), %d matched%s in %.1f s", k, len(files), a.name, f.level,
                 f.signature_set, len(res.matches), len(res.matches) - len(unmatched),
                 f"; unmatched: {', '.join(unmatched)}" if unmatched else "", time.perf_counter() - t0)
        lock.touch()
    out = {"matches": tb.table_frame("matches", matches), "effects": tb.table_frame("effects", effects),
           "treatments": tb.table_frame("treatments", treatments)}
    out["summary"] = tb.summary(out["matches"], out["treatments"], out["effects"])
    return out


def _write(d: StepDirectory, tables: dict[str, pd.DataFrame], figures: bool, params: dict,
           fps: list[dict]) -> list[Path]:
    out, written, records = d.out, [], {}
    for name, df in tables.items():
        for p in write_table(df, out, name):
            written.append(p)
            records.update([d.record(p, params, fps, kind="table", table=name)])
    log.info("tables: %s", ", ".join(f"{k} ({len(v):,} rows)" for k, v in tables.items()))
    if figures:
        from cytoatlas._groundtruth.figures import plan_figures, write_figures

        fig_dir = out / FIGURES_DIR
        fig_dir.mkdir(exist_ok=True)
        plans = {p.stem: p for p in plan_figures(tables["effects"], tables["treatments"])}
        for p in write_figures(tables["effects"], tables["treatments"], fig_dir):
            written.append(p)
            plan = plans[p.stem]
            records.update([d.record(p, params, fps, kind="figure", figure=p.stem, title=plan.title,
                                     caption=plan.caption)])
    d.commit(records)
    return written


def groundtruth(
    atlases: str | AtlasConfig | Sequence[str | AtlasConfig],
    out: str | os.PathLike,
    *,
    column: str,
    control: str,
    treatments: Sequence[str] | None = None,
    results: str | os.PathLike | Mapping[str, str | os.PathLike] = "results",
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    levels: Sequence[str] | None = None,
    signatures: Sequence[str] | None = None,
    aliases: Mapping[str, str] | None = None,
    min_donors: int = defaults.COMPARE_MIN_GROUP_SIZE,
    crosstalk_threshold: float = CROSSTALK_THRESHOLD,
    figures: bool = True,
    force: bool = False,
) -> list[Path]:
    """Perturbation ground truth: per treatment and cell type, does the treatment move its own signature?

    Parameters
    ----------
    atlases
        Registry names (or :class:`~cytoatlas.AtlasConfig` objects) of atlases whose samples carry a treatment
        column (in the registry entry's ``sample_columns``, so their sample x cell type files carry it) and a
        donor column (each donor seen under the control and under treatments).
    out
        Output directory: ``matches``, ``effects``, ``treatments``, ``summary`` (CSV and Parquet),
        ``figures/*.png|svg`` and ``manifest.json``.
    column, control
        The treatment column and its control value (e.g. ``treatment`` and ``PBS``).
    treatments
        The treatment values tested (default: every value but the control).
    results, registry, data_root, levels, signatures
        As for :func:`cytoatlas.compare`.
    aliases
        ``{treatment: signature or alias}`` tried before each atlas' registry ``treatment_aliases`` and the
        shipped alias table.
    min_donors
        Fewest donors with both treated and control samples a treatment x cell type needs (3).
    crosstalk_threshold
        Pearson r (over the genes used) from which another signature of the set is listed beside the own one.
    figures
        Draw the rank grid and AUC figure per atlas x level x set.
    force
        Recompute even when the tables are current.

    Returns
    -------
    list of Path
        The tables and figures written (or found current).

    Raises
    ------
    CytoatlasError
        A missing column (naming the obs columns there are), a control or treatment value that is absent (naming
        the values present), a bad option.
    """
    levels, signatures = name_list("levels", levels), name_list("signatures", signatures)
    treatments = name_list("treatments", treatments)
    aliases = name_pairs("aliases", aliases, "TREATMENT=SIGNATURE")
    if not column or not str(column).strip() or control is None or not str(control).strip():
        raise CytoatlasError("name the treatment column and its control value (--perturbation COLUMN "
                             "--control VALUE)")
    if min_donors < 2:
        raise CytoatlasError(f"min_donors must be >= 2 (a paired test needs a variance), got {min_donors}")
    if not -1.0 <= crosstalk_threshold <= 1.0:
        raise CytoatlasError(f"crosstalk_threshold must be a correlation in [-1, 1], got {crosstalk_threshold}")
    spec = Spec(column, str(control), tuple(str(t) for t in treatments or ()), int(min_donors))
    if spec.control in spec.treatments:
        raise CytoatlasError(f"the control {spec.control!r} cannot be one of the treatments")
    out = check_output_dir(out)
    t0 = time.perf_counter()
    inputs = resolve_atlases(atlases, results, registry, data_root, levels, signatures, step="groundtruth")
    configs = [atlases] if isinstance(atlases, (str, AtlasConfig)) else list(atlases)
    overrides = {}
    for a, item in zip(inputs, configs, strict=True):
        overrides[a.name] = {**treatment_aliases(item, registry, data_root), **dict(aliases or {})}
    params = {"atlases": [a.name for a in inputs], "levels": list(levels or []), "signatures": list(signatures or []),
              "column": spec.column, "control": spec.control, "treatments": list(spec.treatments),
              "min_donors": spec.min_donors, "crosstalk_threshold": float(crosstalk_threshold), "figures": figures,
              "aliases": {k: dict(sorted(v.items())) for k, v in overrides.items()}}
    fps = [f.fingerprint for a in inputs for f in a.files]
    with StepDirectory(out, GROUNDTRUTH, subdirs=[FIGURES_DIR], force=force) as d:
        tables = [p for t in tb.TABLES for p in table_paths(out, t)]
        if not force and d.is_current(params, fps, tables):
            log.info("ground-truth tables in %s are current; nothing to do", out)
            return sorted(out / k for k in d.previous())
        written = _write(d, _compute(inputs, spec, overrides, crosstalk_threshold, d), figures, params, fps)
        d.remove_stale(written)
    log.info("ground truth of %d atlas(es) written to %s in %.1f s", len(inputs), out, time.perf_counter() - t0)
    return written

"""The ground truth of one sample x cell type activity file: does each treatment move its own signature?

The unit is the donor. Per cell type, a donor's samples of one treatment value are averaged (activity z), and the
donor's control average subtracted: ``d = treated - control`` per donor x cell type x signature (paired; a donor
without both is left out of that cell type). Then, per treatment x cell type:

- per signature the paired t-test of ``d`` over donors (effect = mean ``d``, its t interval and p); the own
  signature's *rank* among all signatures of the set by effect and by t (1: the largest increase);
- per donor, the own signature's rank in that donor's ``d``: the fraction of donors where it ranks first;
- cross-donor consistency: the mean Spearman rho between the donors' effect profiles (``d`` over signatures).

The row ``cell_type = "all"`` does the same on each donor's ``d`` averaged over its cell types (one value per
donor: the treatment's rank "per treatment"). Per treatment, over the donor x cell type units:

- ``auc_control``: the AUC of the own signature separating treated from control samples, after removing each
  unit's own level (each donor x cell type's mean of its treated and control value); equivalently the fraction of
  unit pairs (i, j) with ``d_i + d_j > 0`` (ties 1/2), 0.5 when the treatment moves nothing, 1 when it raises the
  signature in every unit;
- ``auc_other``: the AUC of the own signature's ``d`` in this treatment's units against the other treatments'
  units (the lab's design: a signature should rise more under its cytokine than under the others); missing with
  one treatment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from cytoatlas._compare import stats
from cytoatlas._compare.crosstalk import CROSSTALK_THRESHOLD, FDR_THRESHOLD, SignatureCorrelations
from cytoatlas._compare.units import unit_means
from cytoatlas._groundtruth.alias import match_treatments
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import Activity

log = logging.getLogger("cytoatlas.groundtruth")
ALL_CELL_TYPES = "all"
ALPHA = 0.05


@dataclass(frozen=True)
class Spec:
    """What the ground truth compares: the treatment column, its control value, the treatments (empty: every
    other value) and the fewest donors a treatment x cell type needs."""

    column: str
    control: str
    treatments: tuple[str, ...] = ()
    min_donors: int = 3


@dataclass
class Differences:
    """The paired differences of one treatment in one cell type (or ``all``): donors x signatures."""

    cell_type: str
    donors: np.ndarray
    d: np.ndarray


@dataclass
class FileResult:
    """The rows one activity file adds to the ``effects`` and ``treatments`` tables, and its matches."""

    effects: list[dict] = field(default_factory=list)
    treatments: list[dict] = field(default_factory=list)
    matches: list[dict] = field(default_factory=list)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The area under the ROC curve of scores ``positive`` against ``negative``: P(pos > neg) + P(pos = neg) / 2
    (the Mann-Whitney U of ``positive`` over ``n_pos * n_neg``); missing values left out, NaN when a side is empty.
    """
    pos, neg = positive[np.isfinite(positive)], negative[np.isfinite(negative)]
    if not len(pos) or not len(neg):
        return np.nan
    ranks = sps.rankdata(np.concatenate([pos, neg]))
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def rank_of(values: np.ndarray, own: int) -> int:
    """The rank of ``values[own]`` among the finite values, 1 for the largest (ties share the best rank);
    0 when it is missing."""
    v = values[own]
    if not np.isfinite(v):
        return 0
    return int(np.sum(values[np.isfinite(values)] > v)) + 1


def row_ranks(d: np.ndarray, own: int) -> np.ndarray:
    """:func:`rank_of` in every row of ``d``."""
    return np.array([rank_of(row, own) for row in d], dtype=np.int64)


def consistency(d: np.ndarray) -> float:
    """The mean Spearman rho between the rows' profiles (each donor's differences over signatures); NaN with
    fewer than two rows."""
    d = d[:, np.isfinite(d).all(axis=0)]
    if d.shape[0] < 2 or d.shape[1] < 3:
        return np.nan
    ranks = sps.rankdata(d, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.corrcoef(ranks)
    upper = rho[np.triu_indices(len(rho), 1)]
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if len(upper) else np.nan


def _labels(act: Activity, spec: Spec, where: str) -> tuple[np.ndarray, list[str]]:
    """Each row's treatment value (None when missing) and the treatments to test."""
    column = act.obs[spec.column]
    missing = column.isna().to_numpy()
    labels = np.where(missing, None, column.astype(str).to_numpy(dtype=object))
    values = sorted(set(labels[~missing]))
    if spec.control not in values:
        raise CytoatlasError(f"{where}: --control {spec.control!r} is not a value of {spec.column!r}; its values: "
                             f"{', '.join(values) or '(none)'}")
    absent = [t for t in spec.treatments if t not in values]
    if absent:
        raise CytoatlasError(f"{where}: {', '.join(map(repr, absent))} not a value of {spec.column!r}; its values: "
                             f"{', '.join(values)}")
    return labels, list(spec.treatments) or [v for v in values if v != spec.control]


def paired_differences(act: Activity, labels: np.ndarray, units: np.ndarray, treatment: str, control: str
                       ) -> tuple[list[Differences], Differences]:
    """Per cell type (sorted), the donors with both ``treatment`` and ``control`` samples and their differences
    ``mean z (treatment) - mean z (control)``; and ``all``: each donor's differences averaged over its cell types.
    A level without cell types (its one label ``all``) has no per-cell-type parts: its one part is ``all``.
    """
    cell_type = act.obs["cell_type"].astype(str).to_numpy(dtype=object)
    out = []
    for ct in sorted(set(cell_type)):
        rows = np.flatnonzero(cell_type == ct)
        codes, uniques = pd.factorize(units[rows], sort=True)
        means, present = [], []
        for value in (treatment, control):
            sel = labels[rows] == value
            means.append(unit_means(codes[sel], len(uniques), act.z[rows][sel]))
            present.append(np.bincount(codes[sel], minlength=len(uniques)) > 0)
        both = present[0] & present[1]
        out.append(Differences(ct, np.asarray(uniques, dtype=object)[both], (means[0] - means[1])[both]))
    if [p.cell_type for p in out] == [ALL_CELL_TYPES]:
        return [], out[0]
    donors = sorted({u for part in out for u in part.donors})
    if donors:
        pos = {u: i for i, u in enumerate(donors)}
        total, count = np.zeros((len(donors), act.z.shape[1])), np.zeros((len(donors), act.z.shape[1]))
        for part in out:
            idx = np.array([pos[u] for u in part.donors], dtype=np.intp)
            finite = np.isfinite(part.d)
            np.add.at(total, idx, np.where(finite, part.d, 0.0))
            np.add.at(count, idx, finite)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return out, Differences(ALL_CELL_TYPES, np.array(donors, dtype=object), mean)
    return out, Differences(ALL_CELL_TYPES, np.array([], dtype=object), np.empty((0, act.z.shape[1])))


def _crosstalk(row: dict, own: str, fdr: np.ndarray | None, names: np.ndarray,
               corr: SignatureCorrelations | None, threshold: float) -> None:
    """The cross-talk columns of an effects row: the signatures correlated with the own one, and those of them
    with a paired-test FDR (over the set's signatures, this treatment and cell type) below 0.05."""
    row.update(correlated="", also_significant="", n_correlated_significant=0)
    if corr is None:
        return
    i = int(np.flatnonzero(corr.names == own)[0])
    partners = corr.partners_of(i, threshold)
    row["correlated"] = ", ".join(f"{s} (r {r:.2f})" for s, r in partners)
    if fdr is not None:
        hits = set(names[fdr < FDR_THRESHOLD])
        both = [(s, r) for s, r in partners if s in hits]
        row["also_significant"] = ", ".join(f"{s} (r {r:.2f})" for s, r in both)
        row["n_correlated_significant"] = len(both)


def _effect_row(base: dict, part: Differences, own: int, names: np.ndarray, min_donors: int
                ) -> tuple[dict, np.ndarray | None]:
    n = len(part.donors)
    row = {**base, "cell_type": part.cell_type, "n_donors": n, "n_signatures": len(names), "effect": np.nan,
           "se": np.nan, "ci_low": np.nan, "ci_high": np.nan, "statistic": np.nan, "pvalue": np.nan,
           "rank_effect": 0, "rank_statistic": 0, "frac_donors_rank1": np.nan, "consistency": np.nan,
           "top_signature": "", "reason": ""}
    if n < min_donors:
        row["reason"] = f"fewer than {min_donors} donors with both treated and control samples"
        return row, None
    est = stats.ols(np.ones((n, 1)), part.d, 0)  # intercept only: the paired t-test of each signature
    donor_ranks = row_ranks(part.d, own)
    top = np.nanargmax(est.effect) if np.isfinite(est.effect).any() else -1
    row.update(effect=float(est.effect[own]), se=float(est.se[own]), ci_low=float(est.ci_low[own]),
               ci_high=float(est.ci_high[own]), statistic=float(est.statistic[own]), pvalue=float(est.pvalue[own]),
               rank_effect=rank_of(est.effect, own), rank_statistic=rank_of(est.statistic, own),
               frac_donors_rank1=float(np.mean(donor_ranks == 1)), consistency=consistency(part.d),
               top_signature=str(names[top]) if top >= 0 else "")
    return row, stats.bh(est.pvalue)


def groundtruth_file(act: Activity, atlas: str, spec: Spec, overrides: Mapping[str, str] | None = None,
                     correlations: SignatureCorrelations | None = None,
                     crosstalk_threshold: float = CROSSTALK_THRESHOLD) -> FileResult:
    """The ``effects`` and ``treatments`` rows of one sample x cell type activity file.

    Parameters
    ----------
    act
        The activity file (obs ``cell_type``, ``donor`` and the treatment column).
    atlas
        Its atlas' name.
    spec
        The treatment column and its control value.
    overrides
        The registry's ``{treatment: signature or alias}``, tried before the alias table.
    correlations
        The set's signature correlations over the genes used (the cross-talk columns; None: left empty).
    crosstalk_threshold
        The Pearson r from which a signature is listed as correlated.

    Raises
    ------
    CytoatlasError
        A missing column (naming those present), a control or treatment value that is absent (naming those
        present).
    """
    where = f"atlas {atlas!r}, level {act.level!r} ({act.path.name})"
    missing = [c for c in (spec.column, "cell_type", "donor") if c not in act.obs]
    if missing:
        hint = (" (the unit is the donor: set donor_col in the registry entry)" if "donor" in missing else
                " (add it to the registry entry's sample_columns and run again)")
        raise CytoatlasError(f"{where}: no obs column {', '.join(map(repr, missing))}{hint}; its obs columns: "
                             f"{', '.join(map(str, act.obs.columns))}")
    labels, treatments = _labels(act, spec, where)
    units = act.obs["donor"].astype(str).to_numpy(dtype=object)
    names = act.names.astype(str)
    out = FileResult()
    base0 = {"atlas": atlas, "level": act.level, "signature_set": act.signature_set, "column": spec.column,
             "control": spec.control}
    tested: dict[str, tuple[int, list[Differences]]] = {}
    matches = match_treatments(treatments, names, overrides)
    for t in treatments:
        m = matches[t]
        n_donors = len(set(units[labels == t]))
        out.matches.append({**base0, "treatment": t, "signature": m.signature, "source": m.source,
                            "n_donors": n_donors, "reason": m.reason})
        if not m.signature:
            continue
        own = int(np.flatnonzero(names == m.signature)[0])
        tested[t] = (own, paired_differences(act, labels, units, t, spec.control))
    for t, (own, (per_type, all_part)) in tested.items():
        base = {**base0, "treatment": t, "signature": names[own]}
        rows = []
        for part in [*per_type, all_part]:
            row, fdr = _effect_row(base, part, own, names, spec.min_donors)
            _crosstalk(row, names[own], fdr, names, correlations, crosstalk_threshold)
            rows.append(row)
        out.effects += rows
        all_row, ct_rows = rows[-1], [r for r in rows[:-1] if r["reason"] == ""]
        # the units: donor x cell type (a level without cell types: donors)
        units_d = [p.d for p in per_type or [all_part] if len(p.donors)]
        d = np.vstack(units_d) if units_d else np.empty((0, len(names)))
        own_d = d[:, own]
        others = [p.d[:, own] for u, (_, (ps, pa)) in tested.items() if u != t for p in ps or [pa] if len(p.donors)]
        n_ct = sum(1 for p in per_type if len(p.donors) >= spec.min_donors)
        # each unit's own level removed: treated +d/2, control -d/2 (see the module docstring)
        out.treatments.append({
            **base, "n_donors": len(all_part.donors), "n_units": int(np.isfinite(own_d).sum()),
            "n_cell_types": n_ct, "auc_control": auc(own_d / 2, -own_d / 2),
            "auc_other": auc(own_d, np.concatenate(others)) if others else np.nan,
            "n_other_units": int(sum(np.isfinite(o).sum() for o in others)),
            "rank_effect": all_row["rank_effect"], "rank_statistic": all_row["rank_statistic"],
            "effect": all_row["effect"], "pvalue": all_row["pvalue"],
            "frac_donors_rank1": all_row["frac_donors_rank1"],
            "frac_units_rank1": float(np.mean(row_ranks(d, own) == 1)) if len(d) else np.nan,
            "frac_cell_types_rank1": float(np.mean([r["rank_effect"] == 1 for r in ct_rows])) if ct_rows else np.nan,
            "consistency": all_row["consistency"], "reason": all_row["reason"]})
    return out

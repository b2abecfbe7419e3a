"""The comparisons of one sample x cell type activity file: per cell type, group differences and covariate slopes.

Per cell type (never pooled across cell types) and contrast, the unit is the donor (obs ``donor`` when the atlas
has one, else ``sample``; with ``paired_by``, that column): a donor's samples in one group are averaged. Then:

- unpaired ``ols``: ``activity ~ 1 + [group] + covariates``, the effect the group coefficient (with no
  covariates, the mean difference); ``wilcoxon``: the rank-sum test, effect the mean difference;
- paired (``paired_by``): per unit the difference group - reference; ``paired-ols``: ``difference ~ 1 +
  covariates`` (centred), the effect the intercept (with no covariates, the paired t-test); ``signed-rank``:
  the Wilcoxon signed-rank test;
- ``continuous``: ``activity ~ 1 + column + covariates`` per unit (the column averaged per unit), the effect
  the slope per unit of the column.

A cell type that cannot be tested (too few units, a constant covariate, a rank-deficient design) gets an
``untestable`` row with the reason and its counts.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cytoatlas._compare import stats
from cytoatlas._compare.units import complete, covariate_columns, is_numeric, unit_covariates, unit_means
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import Activity
from cytoatlas.options import Test, choices

log = logging.getLogger("cytoatlas.compare")
TESTS = choices(Test)


@dataclass(frozen=True)
class Spec:
    """What to compare (see :func:`cytoatlas.compare`)."""

    by: str | None = None
    reference: str | None = None
    groups: tuple[str, ...] = ()
    continuous: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    paired_by: str | None = None
    test: str = "ols"
    min_group_size: int = 3

    @property
    def differential_test(self) -> str:
        """The ``test`` column of the differential rows."""
        if self.paired_by:
            return "paired-ols" if self.test == "ols" else "signed-rank"
        return self.test

    def columns(self) -> list[str]:
        """Every obs column the comparison reads."""
        return [c for c in (self.by, *self.continuous, *self.covariates, self.paired_by) if c]


@dataclass
class FileResult:
    """The rows one activity file adds to each table, and what was averaged (for the log)."""

    differential: list[pd.DataFrame]
    association: list[pd.DataFrame]
    untestable: list[dict]
    averaged: int = 0


class _File:
    """One activity file being compared: its rows' labels, units and z, and the row frames it builds."""

    def __init__(self, act: Activity, atlas: str, terms: Mapping[str, tuple[str, str]], spec: Spec):
        self.atlas, self.level, self.signature_set = atlas, act.level, act.signature_set
        self.spec, self.obs, self.z, self.names = spec, act.obs, act.z, act.names.astype(str)
        self.where = f"atlas {atlas!r}, level {act.level!r} ({act.path.name})"
        missing = [c for c in [*spec.columns(), "cell_type"] if c not in self.obs]
        if missing:
            raise CytoatlasError(f"{self.where}: no obs column {', '.join(map(repr, missing))}; its obs columns: "
                                 f"{', '.join(map(str, self.obs.columns))}")
        self.unit_col = spec.paired_by or ("donor" if "donor" in self.obs else "sample")
        self.units = self.obs[self.unit_col].astype(str).to_numpy(dtype=object)
        self.cell_type = self.obs["cell_type"].astype(str).to_numpy(dtype=object)
        self.cell_types = sorted(set(self.cell_type))
        self.terms = {c: terms.get(c, ("", "")) for c in self.cell_types}
        # (unit[, group], cell type) with several samples: their mean is the unit's value
        keys = pd.DataFrame({"unit": self.units, "cell_type": self.cell_type})
        if spec.paired_by and spec.by:
            keys["group"] = self.obs[spec.by].astype(str).to_numpy()
        self.averaged = int((keys.value_counts() > 1).sum())

    def row_base(self, cell_type: str, by: str, contrast: str, test: str) -> dict:
        """The columns a table row of this file and cell type starts with (``signature``: all of them)."""
        return {"atlas": self.atlas, "level": self.level, "signature_set": self.signature_set, "cell_type": cell_type,
                "cl_id": self.terms[cell_type][0], "cl_name": self.terms[cell_type][1], "signature": self.names,
                "by": by, "contrast": contrast,
                "test": test, "covariates": ",".join(self.spec.covariates)}

    def untestable(self, cell_type: str, analysis: str, by: str, contrast: str, n_group: int, n_reference: int,
                   reason: str) -> dict:
        """An ``untestable`` row."""
        return {"atlas": self.atlas, "level": self.level, "signature_set": self.signature_set, "cell_type": cell_type,
                "analysis": analysis, "by": by, "contrast": contrast, "n_group": int(n_group),
                "n_reference": int(n_reference), "reason": reason}

    def units_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's unit code and the units (sorted)."""
        codes, uniques = pd.factorize(self.units[rows], sort=True)
        return codes, np.asarray(uniques, dtype=object)

    def covariates_of(self, rows: np.ndarray, codes: np.ndarray, uniques: np.ndarray) -> dict[str, np.ndarray]:
        """The covariates per unit of ``rows`` (see :func:`~cytoatlas._compare.units.unit_covariates`)."""
        return unit_covariates(self.obs.iloc[rows], codes, uniques, self.spec.covariates, self.where, self.unit_col)


def _group_labels(f: _File) -> tuple[np.ndarray, list[str]]:
    """Each row's ``by`` value as a string (None when missing) and the values present, in category (else sorted)
    order."""
    column = f.obs[f.spec.by]
    missing = column.isna().to_numpy()
    labels = np.where(missing, None, column.astype(str).to_numpy(dtype=object))
    if missing.any():
        log.info("%s: %d row(s) with no %r left out of the contrasts", f.where, int(missing.sum()), f.spec.by)
    present = set(labels[~missing])
    if isinstance(column.dtype, pd.CategoricalDtype):
        order = [str(c) for c in column.cat.categories if str(c) in present]
    else:
        order = sorted(present)
    return labels, order


def _contrast_groups(f: _File, values: list[str]) -> list[str]:
    spec = f.spec
    if spec.reference not in values:
        raise CytoatlasError(f"{f.where}: --reference {spec.reference!r} is not a value of {spec.by!r}; its values: "
                             f"{', '.join(values) or '(none)'}")
    absent = [g for g in spec.groups if g not in values]
    if absent:
        raise CytoatlasError(f"{f.where}: {', '.join(map(repr, absent))} not a value of {spec.by!r} (--groups); its "
                             f"values: {', '.join(values)}")
    groups = list(spec.groups) or [v for v in values if v != spec.reference]
    if spec.reference in groups:
        raise CytoatlasError(f"{f.where}: the reference {spec.reference!r} cannot be one of --groups")
    return groups


def _check_unpaired(f: _File, labels: np.ndarray, rows: np.ndarray, group: str) -> None:
    per_unit = pd.Series(labels[rows]).groupby(f.units[rows]).nunique()
    mixed = per_unit[per_unit > 1]
    if len(mixed):
        raise CytoatlasError(f"{f.where}: {f.unit_col} {mixed.index[0]!r} has samples in both {group!r} and "
                             f"{f.spec.reference!r} of {f.spec.by!r} ({len(mixed)} such); for a paired design "
                             f"(each {f.unit_col} in both groups) pass --paired-by {f.unit_col}")


def _differential_rows(f: _File, cell_type: str, group: str, est: stats.Estimates, n1: int, n0: int,
                       mean1: np.ndarray, mean0: np.ndarray) -> pd.DataFrame:
    spec = f.spec
    row = f.row_base(cell_type, spec.by, f"{group} vs {spec.reference}", spec.differential_test)
    row.update(group=group, reference=spec.reference, paired=bool(spec.paired_by), n_group=n1, n_reference=n0,
               mean_group=mean1, mean_reference=mean0, effect=est.effect, se=est.se, ci_low=est.ci_low,
               ci_high=est.ci_high, statistic=est.statistic, pvalue=est.pvalue, fdr=np.nan, fdr_cell_type=np.nan)
    return pd.DataFrame(row)


def _nanmean(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": a signature missing everywhere
        return np.nanmean(values, axis=0)


def _unpaired(f: _File, labels: np.ndarray, group: str, cell_type: str, rows: np.ndarray, out: FileResult) -> None:
    spec, contrast = f.spec, f"{group} vs {f.spec.reference}"
    codes, uniques = f.units_of(rows)
    y = unit_means(codes, len(uniques), f.z[rows])
    in_group = unit_means(codes, len(uniques), (labels[rows] == group).astype(float)) == 1.0
    covariates = f.covariates_of(rows, codes, uniques)
    keep = complete(covariates, len(uniques))
    n1, n0 = int((in_group & keep).sum()), int((~in_group & keep).sum())
    if min(n1, n0) < spec.min_group_size:
        out.untestable.append(f.untestable(cell_type, "differential", spec.by, contrast, n1, n0,
                                           f"fewer than {spec.min_group_size} {f.unit_col}s in a group"))
        return
    y, in_group = y[keep], in_group[keep]
    if spec.test == "ols":
        columns, reason = covariate_columns(covariates, keep)
        design = None if columns is None else np.column_stack([np.ones(len(y)), in_group.astype(float), columns])
        if design is None or not stats.full_rank(design):
            reason = reason or ("too few units for the covariates" if design.shape[0] <= design.shape[1] else
                                "a covariate is confounded with the group (rank-deficient design)")
            out.untestable.append(f.untestable(cell_type, "differential", spec.by, contrast, n1, n0, reason))
            return
        est = stats.ols(design, y, 1)
    else:
        est = stats.rank_sum(y[in_group], y[~in_group])
    out.differential.append(_differential_rows(f, cell_type, group, est, n1, n0, _nanmean(y[in_group]),
                                               _nanmean(y[~in_group])))


def _paired(f: _File, labels: np.ndarray, group: str, cell_type: str, rows: np.ndarray, out: FileResult) -> None:
    spec, contrast = f.spec, f"{group} vs {f.spec.reference}"
    codes, uniques = f.units_of(rows)
    means, present = {}, []
    for name in (group, spec.reference):
        sel = labels[rows] == name
        means[name] = unit_means(codes[sel], len(uniques), f.z[rows][sel])
        present.append(np.bincount(codes[sel], minlength=len(uniques)) > 0)
    both = present[0] & present[1]
    covariates = f.covariates_of(rows, codes, uniques)
    keep = both & complete(covariates, len(uniques))
    n = int(keep.sum())
    if n < spec.min_group_size:
        out.untestable.append(f.untestable(cell_type, "differential", spec.by, contrast, n, n,
                                           f"fewer than {spec.min_group_size} {f.unit_col}s with both groups"))
        return
    yg, yr = means[group][keep], means[spec.reference][keep]
    d = yg - yr
    if spec.test == "ols":
        columns, reason = covariate_columns(covariates, keep)
        design = None if columns is None else np.column_stack([np.ones(n), columns])
        if design is None or not stats.full_rank(design):
            reason = reason or "too few units for the covariates (rank-deficient design)"
            out.untestable.append(f.untestable(cell_type, "differential", spec.by, contrast, n, n, reason))
            return
        est = stats.ols(design, d, 0)
    else:
        est = stats.signed_rank(d)
    out.differential.append(_differential_rows(f, cell_type, group, est, n, n, _nanmean(yg), _nanmean(yr)))


def _association(f: _File, column: str, cell_type: str, rows: np.ndarray, out: FileResult) -> None:
    spec = f.spec
    codes, uniques = f.units_of(rows)
    y = unit_means(codes, len(uniques), f.z[rows])
    x = unit_means(codes, len(uniques), f.obs[column].to_numpy(dtype=float)[rows])
    covariates = f.covariates_of(rows, codes, uniques)
    keep = np.isfinite(x) & complete(covariates, len(uniques))
    n = int(keep.sum())
    columns, reason = covariate_columns(covariates, keep)
    least = max(spec.min_group_size, (0 if columns is None else columns.shape[1]) + 3)
    if n < least:
        reason = f"fewer than {least} {f.unit_col}s with {column!r}" + (" and the covariates" if spec.covariates
                                                                          else "")
    elif np.ptp(x[keep]) == 0:
        reason = f"{column!r} is constant among the {f.unit_col}s"
    design = None
    if not reason:
        design = np.column_stack([np.ones(n), x[keep] - x[keep].mean(), columns])
        if not stats.full_rank(design):
            reason = f"{column!r} is confounded with a covariate (rank-deficient design)"
    if reason:
        out.untestable.append(f.untestable(cell_type, "association", column, column, n, 0, reason))
        return
    est = stats.ols(design, y[keep], 1)
    row = f.row_base(cell_type, column, column, "ols")
    row.update(n=n, effect=est.effect, se=est.se, ci_low=est.ci_low, ci_high=est.ci_high, statistic=est.statistic,
               pvalue=est.pvalue, fdr=np.nan, fdr_cell_type=np.nan)
    out.association.append(pd.DataFrame(row))


def compare_file(act: Activity, atlas: str, terms: Mapping[str, tuple[str, str]], spec: Spec) -> FileResult:
    """Every contrast and covariate scan of one sample x cell type activity file, per cell type.

    Parameters
    ----------
    act
        The activity file (its obs holds ``sample``, ``cell_type``, [``donor``] and the sample columns).
    atlas
        Its atlas' name (the tables' ``atlas``).
    terms
        ``{cell type label: (CL ID, CL name)}`` (see :func:`cytoatlas.celltypes.map_labels`; empty when unmatched).
    spec
        What to compare.

    Raises
    ------
    CytoatlasError
        A column that is not in obs (naming those that are), a reference or group value that is absent (naming
        those present), a donor in both groups of an unpaired contrast, a ``continuous`` column that is not numeric.
    """
    f = _File(act, atlas, terms, spec)
    out = FileResult([], [], [], f.averaged)
    if spec.by:
        labels, values = _group_labels(f)
        for group in _contrast_groups(f, values):
            in_contrast = np.isin(labels, [group, spec.reference])
            if not spec.paired_by:
                _check_unpaired(f, labels, np.flatnonzero(in_contrast), group)
            for cell_type in f.cell_types:
                rows = np.flatnonzero(in_contrast & (f.cell_type == cell_type))
                (_paired if spec.paired_by else _unpaired)(f, labels, group, cell_type, rows, out)
    for column in spec.continuous:
        if not is_numeric(f.obs[column]):
            raise CytoatlasError(f"{f.where}: --continuous {column!r} is not numeric (dtype {f.obs[column].dtype}); "
                                 "compare its groups with --by")
        for cell_type in f.cell_types:
            _association(f, column, cell_type, np.flatnonzero(f.cell_type == cell_type), out)
    return out

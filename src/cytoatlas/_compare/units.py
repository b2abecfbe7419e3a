"""From sample x cell type rows to the unit of analysis: one value per donor (x cell type), and its covariates.

A donor with several samples (in one group) contributes their mean: the samples of one donor are not
independent replicates. Numeric covariates are averaged the same way; a categorical covariate must be constant
within a donor. Covariates enter a design centred (categorical ones as centred indicators of every level but
the first), so an intercept is the mean at the covariates' mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError


def is_numeric(column: pd.Series) -> bool:
    """Whether an obs column holds numbers (or booleans), not labels."""
    return not isinstance(column.dtype, pd.CategoricalDtype) and (
        pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype))


def unit_means(codes: np.ndarray, n_units: int, values: np.ndarray) -> np.ndarray:
    """Mean of the rows of each unit (``codes``: each row's unit, 0 .. n_units - 1); missing values are left out,
    and a unit without any value is missing. ``values``: rows, or rows x columns."""
    values = np.asarray(values, dtype=float)
    flat = values.ndim == 1
    values = values[:, None] if flat else values
    onehot = np.zeros((n_units, len(codes)))
    onehot[codes, np.arange(len(codes))] = 1.0
    finite = np.isfinite(values)
    sums = onehot @ np.where(finite, values, 0.0)
    counts = onehot @ finite
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means[:, 0] if flat else means


def unit_covariates(obs: pd.DataFrame, codes: np.ndarray, units: np.ndarray, names: tuple[str, ...],
                    where: str, unit_col: str = "donor") -> dict[str, np.ndarray]:
    """Each covariate per unit: numeric ones the mean over the unit's rows (float, NaN when missing), others the
    unit's one label (object, None when missing).

    Raises
    ------
    CytoatlasError
        If a categorical covariate takes several values within one unit.
    """
    out = {}
    for name in names:
        column = obs[name]
        if is_numeric(column):
            out[name] = unit_means(codes, len(units), column.to_numpy(dtype=float))
            continue
        labels = pd.Series(column.astype(object).where(column.notna(), None).to_numpy(), dtype=object)
        per_unit = labels.groupby(codes).agg(lambda v: sorted({str(x) for x in v if x is not None}))
        several = per_unit[per_unit.map(len) > 1]
        if len(several):
            unit = units[several.index[0]]
            raise CytoatlasError(f"{where}: covariate {name!r} is not constant within {unit_col} {unit!r} "
                                 f"(values {', '.join(several.iloc[0])}); a categorical covariate must be per donor")
        values = np.full(len(units), None, dtype=object)
        for code, v in per_unit.items():
            values[code] = v[0] if v else None
        out[name] = values
    return out


def complete(covariates: dict[str, np.ndarray], n_units: int) -> np.ndarray:
    """The units with every covariate present."""
    ok = np.ones(n_units, dtype=bool)
    for v in covariates.values():
        ok &= np.isfinite(v) if v.dtype.kind == "f" else np.array([x is not None for x in v], dtype=bool)
    return ok


def covariate_columns(covariates: dict[str, np.ndarray], keep: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The design columns of the covariates over the units ``keep``: centred numbers, centred indicators of
    each level but the first (in sorted order); or None and the reason when a covariate is constant there."""
    columns = []
    for name, values in covariates.items():
        v = values[keep]
        if v.dtype.kind == "f":
            if len(v) and np.ptp(v) == 0:
                return None, f"covariate {name!r} is constant among the units"
            columns.append(v - v.mean())
            continue
        levels = sorted(set(v))
        if len(levels) < 2:
            return None, f"covariate {name!r} is constant among the units"
        for level in levels[1:]:
            indicator = (v == level).astype(float)
            columns.append(indicator - indicator.mean())
    n = int(keep.sum())
    return (np.column_stack(columns) if columns else np.empty((n, 0))), ""

"""Sample metadata: the registry's ``sample_columns``, one value per sample, for the sample x cell type files.

Each column is read whole (as obs columns are read anyway), checked to hold one value per sample over the kept
cells, reduced to one value per sample and let go before the next one is read, so memory grows with the number of
samples, not cells, beyond one column at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import ObsReader
from cytoatlas.registry import AtlasConfig, Level

log = logging.getLogger(__name__)

# obs columns of a sample x cell type file besides the level's parts; "donor" is kept for the donor column even
# where an atlas has none, so a sample column never passes for it
RESERVED = ("sample", "donor", "cell_type", "n_cells")
# values of a non-constant sample shown in its error
_SHOWN = 5

SampleValues = dict[str, "np.ndarray | pd.api.extensions.ExtensionArray"]


def check_sample_columns(cfg: AtlasConfig, levels: Sequence[Level]) -> None:
    """Fail if a sample column would clash with a column the sample x cell type file of a level already has."""
    for lev in levels:
        for name in cfg.sample_columns:
            if name in RESERVED or name in lev.by:
                what = "the level's label" if name in lev.by else f"the {name!r}"
                raise CytoatlasError(
                    f"atlas {cfg.name!r}: sample column {name!r} clashes with {what} column of level {lev.name!r}'s "
                    f"sample x cell type file (reserved: {', '.join(RESERVED)} and level columns); drop it from "
                    "sample_columns or copy it to a column of another name"
                )


def read_sample_values(obs: ObsReader, columns: Sequence[str], cell_sample: np.ndarray,
                       sample_labels: np.ndarray) -> SampleValues:
    """Per sample column, its value for every sample (arrays indexed by sample code).

    Parameters
    ----------
    obs
        The atlas' obs columns.
    columns
        The sample columns, in the registry's order.
    cell_sample
        Per cell, its sample code; -1 for cells left out (excluded, or without a sample).
    sample_labels
        The sample names, by code (for messages).

    Returns
    -------
    ``{column: values}``: categoricals keep their categories, numbers and bools their dtype, strings become
    categoricals; a missing value stays missing. A sample without kept cells holds an arbitrary value (no output
    row has it).

    Raises
    ------
    CytoatlasError
        A column is missing (naming the available ones), or holds more than one value within a sample.
    """
    obs.require(list(columns), "sample column")
    kept = np.flatnonzero(cell_sample >= 0)
    present, first = np.unique(cell_sample[kept], return_index=True)
    first = kept[first]
    pick = np.zeros(len(sample_labels), dtype=np.int64)
    pick[present] = first
    out: SampleValues = {}
    for name in columns:
        values = obs.values(name)
        if len(values) != len(cell_sample):
            raise CytoatlasError(f"{obs.filename}: obs column {name!r} has {len(values)} values for "
                                 f"{len(cell_sample)} cells")
        codes = pd.factorize(values)[0]  # missing values share code -1: a sample is all missing or not constant
        first_code = np.zeros(len(sample_labels), dtype=codes.dtype)
        first_code[present] = codes[first]
        differs = kept[codes[kept] != first_code[cell_sample[kept]]]
        if len(differs):
            _not_constant(obs.filename, name, values, codes, cell_sample, sample_labels, int(cell_sample[differs[0]]))
        per_sample = _as_column(values[pick])
        n_missing = int((codes[first] < 0).sum())
        log.info("sample column %s (%s): %d of %d sample(s) missing", name, per_sample.dtype, n_missing,
                 len(present))
        out[name] = per_sample
        del values, codes
    return out


def _not_constant(filename: str, name: str, values, codes: np.ndarray, cell_sample: np.ndarray,
                  sample_labels: np.ndarray, sample: int) -> None:
    in_sample = np.flatnonzero(cell_sample == sample)
    _, where = np.unique(codes[in_sample], return_index=True)
    shown = pd.Series(values[in_sample[np.sort(where)]]).astype(object).tolist()
    listed = ", ".join(map(repr, shown[:_SHOWN])) + (", ..." if len(shown) > _SHOWN else "")
    raise CytoatlasError(f"{filename}: sample column {name!r} is not constant within sample "
                         f"{sample_labels[sample]!r} (values {listed}); sample_columns must hold one value per sample")


def _as_column(values):
    """Strings as a categorical (sorted categories, missing kept); everything else as it is."""
    if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_string_dtype(values.dtype):
        return values
    return pd.Categorical(np.asarray(values, dtype=object))  # None, NaN and pd.NA all become missing


def take_rows(sample_values: SampleValues, sample_codes: np.ndarray) -> dict:
    """The sample columns for output rows of the given sample codes, in the registry's order."""
    return {name: values[sample_codes] for name, values in sample_values.items()}

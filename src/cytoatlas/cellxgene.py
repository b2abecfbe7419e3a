"""CELLxGENE-schema datasets need no registry entry: what the schema fixes becomes the atlas' configuration.

The CELLxGENE schema (``uns['schema_version']``) fixes the obs columns ``donor_id``, ``cell_type`` with
``cell_type_ontology_term_id``, ``disease``, ``sex``, ``development_stage``, ``tissue``; var_names are Ensembl IDs
with the symbols in ``var['feature_name']``; X may be normalised, the raw counts then being in ``raw.X``. From a
file (read with h5py, a few obs columns only) or an AnnData in memory, :func:`detect_h5ad` and
:func:`detect_adata` give the registry table of such a dataset: donors as samples, ``cell_type`` as the level with
its CL IDs, symbols from ``feature_name``, counts from ``raw.X`` when X is not integer, and the standard
donor-level columns that are constant within every donor as sample metadata. A registry entry of the same name
overrides any of it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("cytoatlas.cellxgene")

SAMPLE = "donor_id"
CELL_TYPE = "cell_type"
ONTOLOGY = "cell_type_ontology_term_id"
SYMBOLS = "feature_name"
# the schema's donor-level columns, copied as sample metadata when constant within every donor
DONOR_COLUMNS = ("disease", "sex", "development_stage", "self_reported_ethnicity", "tissue")
REQUIRED = (SAMPLE, CELL_TYPE)
# what a file needs for a run without a registry entry (the error names these)
KEYS_TO_SET = "sample_col (e.g. the donor column), levels (e.g. { cell_type = \"cell_type\" }) and h5ad"
# values checked for integrality: a normalised X shows non-integers within its first stored values
_PROBE_VALUES = 100_000


@dataclass(frozen=True)
class Detected:
    """A CELLxGENE-schema dataset's registry table, and what was found (for the one log line)."""

    entry: dict
    schema_version: str
    counts_reason: str
    left_out: tuple[str, ...] = ()

    def describe(self, name: str) -> str:
        """One line: the schema, the sample column, the level, counts, symbols, CL IDs and sample metadata."""
        meta = ", ".join(self.entry.get("sample_columns", [])) or "none"
        onto = self.entry.get("cell_type_ontology_col", "none")
        left = f" (not constant within donors: {', '.join(self.left_out)})" if self.left_out else ""
        return (f"{name}: CELLxGENE schema {self.schema_version} detected: samples {SAMPLE}, level cell_type, "
                f"counts {self.entry['counts']} ({self.counts_reason}), symbols "
                f"{self.entry.get('gene_symbols') or 'var_names'}, CL IDs {onto}, sample metadata {meta}{left}")

    def log(self, name: str) -> None:
        """Say what was detected, in one line."""
        log.info("%s", self.describe(name))


def _is_integer(values: np.ndarray) -> bool:
    values = np.asarray(values)
    return values.dtype.kind in "biu" or bool(np.all(np.mod(values[np.isfinite(values)], 1) == 0))


def _constant_within(donor_codes: np.ndarray, codes: np.ndarray) -> bool:
    """Whether every donor's cells carry one code of a column (missing is a code of its own)."""
    ok = donor_codes >= 0
    pairs = np.unique(np.stack([donor_codes[ok], codes[ok]]), axis=1)
    return pairs.shape[1] == len(np.unique(donor_codes[ok]))


def _detect(schema_version, obs_columns, labels, var_columns, raw_var_columns, has_raw: bool,
            x_integer: bool) -> Detected | None:
    """The table of a dataset that follows the schema, else None. ``labels(column)`` gives a column's codes."""
    if schema_version is None or any(c not in obs_columns for c in REQUIRED):
        return None
    use_raw = has_raw and not x_integer
    counts = "raw/X" if use_raw else "X"
    reason = "X is not integer" if use_raw else ("X is integer" if x_integer else "X is not integer and there "
                                                  "is no raw")
    entry: dict = {"sample_col": SAMPLE, "levels": {CELL_TYPE: CELL_TYPE}, "counts": counts}
    if SYMBOLS in (raw_var_columns if use_raw else var_columns):
        entry["gene_symbols"] = SYMBOLS
    if ONTOLOGY in obs_columns:
        entry["cell_type_ontology_col"] = ONTOLOGY
    donors = labels(SAMPLE)
    kept, left = [], []
    for column in DONOR_COLUMNS:
        if column in obs_columns:
            (kept if _constant_within(donors, labels(column)) else left).append(column)
    if kept:
        entry["sample_columns"] = kept
    return Detected(entry, str(schema_version), reason, tuple(left))


def detect_h5ad(path: str | os.PathLike) -> Detected | None:
    """The registry table of a CELLxGENE-schema ``.h5ad`` file, or None when it does not follow the schema."""
    import h5py

    from cytoatlas.io.h5ad import ObsReader, open_h5ad

    with open_h5ad(path) as f:
        version = f.get("uns/schema_version")
        version = version[()] if isinstance(version, h5py.Dataset) else None
        if isinstance(version, bytes):
            version = version.decode()
        try:
            obs = ObsReader(f)
        except Exception:  # noqa: BLE001 - no obs group: not a dataset of the schema, whatever else it is
            return None

        def columns_of(group: str) -> list[str]:
            node = f.get(group)
            return [k for k in node if k != node.attrs.get("_index", "_index")] if isinstance(node, h5py.Group) \
                else []

        x = f.get("X")
        if isinstance(x, h5py.Group) and "data" in x:
            probe = x["data"][:_PROBE_VALUES]
        elif isinstance(x, h5py.Dataset):
            probe = x[: max(1, _PROBE_VALUES // max(x.shape[1], 1))] if x.ndim == 2 else x[:0]
        else:
            probe = np.zeros(0)
        return _detect(version, obs.columns, lambda c: obs.labels(c).codes, columns_of("var"),
                       columns_of("raw/var"), "raw/X" in f, _is_integer(probe))


def detect_adata(adata) -> Detected | None:
    """The registry table of a CELLxGENE-schema AnnData in memory, or None when it does not follow the schema."""
    from cytoatlas.io.memory import FrameObs

    if getattr(adata, "isbacked", False):
        return detect_h5ad(adata.filename)
    x = adata.X
    probe = x.data[:_PROBE_VALUES] if hasattr(x, "data") and not isinstance(x, np.ndarray) else \
        np.asarray(x[: max(1, _PROBE_VALUES // max(adata.n_vars, 1))]) if x is not None else np.zeros(0)
    obs = FrameObs(adata.obs)
    raw_var = list(adata.raw.var.columns) if adata.raw is not None else []
    return _detect(adata.uns.get("schema_version"), obs.columns, lambda c: obs.labels(c).codes,
                   list(map(str, adata.var.columns)), raw_var, adata.raw is not None, _is_integer(probe))


def not_schema_error(path: str | os.PathLike, registered: list[str]) -> str:
    """The message for a file that is neither a registered atlas nor a CELLxGENE-schema dataset."""
    return (f"{path} is not a registered atlas (registered: {', '.join(sorted(registered))}) and does not follow "
            f"the CELLxGENE schema (uns['schema_version'] and obs columns {', '.join(REQUIRED)}); add an entry "
            f"[atlas.{Path(path).stem}] to a registry TOML (--registry) setting {KEYS_TO_SET}")


def is_dataset_path(name: str) -> bool:
    """Whether an atlas argument names a dataset file rather than a registry entry."""
    return name.endswith((".h5ad", ".H5AD")) or (os.sep in name and Path(name).is_file())


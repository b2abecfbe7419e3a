"""The atlas' own Cell Ontology IDs of each level's cell types, read from an obs column of CL IDs.

CELLxGENE datasets carry ``cell_type_ontology_term_id`` beside ``cell_type``; any atlas may name such a column
in its registry entry (``cell_type_ontology_col``). The label -> ID relation is read from the kept cells; a label
carrying several IDs is an error naming them. The IDs go into the pseudobulk files' obs (and so into their activity
files) as ``cell_type_ontology_term_id``, where validation and comparison find them
(:func:`cytoatlas.celltypes.ontology_ids`). Levels without such a column are written as before.
"""

from __future__ import annotations

import numpy as np

from cytoatlas._pseudobulk.atoms import AtomTable
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import ObsReader
from cytoatlas.registry import AtlasConfig, Level

SUFFIX = "_ontology_term_id"
# values CELLxGENE uses for "no term": they carry no ID (the label is then matched by name)
_NO_TERM = {"", "unknown", "na", "nan", "none"}


def ontology_columns(cfg: AtlasConfig, levels: list[Level], obs_columns: list[str]) -> dict[str, str]:
    """``{level: obs column of CL IDs}``: the registry's ``cell_type_ontology_col`` (one column for every
    single-column level, or a table per level), else ``{column}_ontology_term_id`` of each single-column level
    when obs has it."""
    chosen = cfg.cell_type_ontology_col
    names = {lev.name for lev in levels}
    if isinstance(chosen, tuple):
        return {lv: col for lv, col in chosen if lv in names}
    if isinstance(chosen, str):
        return {lev.name: chosen for lev in levels if len(lev.by) == 1}
    return {lev.name: lev.by[0] + SUFFIX for lev in levels if len(lev.by) == 1 and lev.by[0] + SUFFIX in obs_columns}


def read_ontology_ids(cfg: AtlasConfig, obs: ObsReader, atoms: AtomTable, columns: dict[str, str]
                      ) -> dict[str, dict[str, str]]:
    """``{level: {label: CL ID}}`` over the kept cells.

    Raises
    ------
    CytoatlasError
        A missing column (naming those there are), or a label carrying several IDs (naming them).
    """
    obs.require(sorted(set(columns.values())), "column of Cell Ontology IDs (cell_type_ontology_col)")
    kept = atoms.cell_atom >= 0
    out = {}
    for level, column in columns.items():
        ids = obs.labels(column)
        groups = atoms.levels[level]
        group = groups.atom_group[atoms.cell_atom[kept]].astype(np.int64)
        code = ids.codes[kept].astype(np.int64)
        ok = (group >= 0) & (code >= 0)
        n = len(ids.categories) + 1
        pairs = np.unique(group[ok] * n + code[ok])
        found: dict[str, list[str]] = {}
        for g, c in zip(pairs // n, pairs % n, strict=True):
            value = str(ids.categories[c]).strip()
            if value.lower() not in _NO_TERM:
                found.setdefault(str(groups.labels[g]), []).append(value)
        several = {label: v for label, v in found.items() if len(v) > 1}
        if several:
            label, values = next(iter(sorted(several.items())))
            raise CytoatlasError(
                f"atlas {cfg.name!r}, level {level!r}: cell type {label!r} carries several Cell Ontology IDs in obs "
                f"column {column!r}: {', '.join(sorted(values))} ({len(several)} label(s) so); each label of a level "
                f"needs one. Name the ID column of the levels it annotates in the registry: "
                f"cell_type_ontology_col = {{ LEVEL = \"{column}\" }}")
        out[level] = {label: v[0] for label, v in found.items()}
    return out

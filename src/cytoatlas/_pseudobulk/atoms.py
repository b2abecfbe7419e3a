"""Atoms: one integer per cell naming its combination of sample, bootstrap unit and every level's label.

Every output of a run (each level's cell-type sums, sample x cell-type sums, bootstrap units) is a sum of atom
rows, so the pass over the cells accumulates atoms only, once, whatever the number of levels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import Labels, ObsReader
from cytoatlas.registry import AtlasConfig, Level

log = logging.getLogger(__name__)

# Joins the parts of composite labels (and sample + cell type in row names); the first one that occurs in no
# label is used, so a combined label can always be split back.
SEPARATORS = ("|", " | ", "::", "__", "/", ";", "#", "~", "\t")


@dataclass
class LevelGroups:
    """The groups of one level, and which atoms belong to them."""

    level: Level
    atom_group: np.ndarray  # per atom: group index, -1 if the atom is not in this level (set by build_atoms)
    labels: np.ndarray  # group label strings
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # per `by` column: each group's label
    n_missing: int = 0  # kept cells left out because a `by` label is NaN
    n_filtered: int = 0  # kept cells left out by `where`


@dataclass
class AtomTable:
    """Per-cell atom codes and, per atom, its sample, unit and group in every level."""

    cell_atom: np.ndarray  # int32 per cell, -1 = excluded
    sample: np.ndarray  # per atom: sample code, -1 = missing
    sample_labels: np.ndarray
    unit: np.ndarray  # per atom: bootstrap unit code (donor or sample), -1 = missing
    unit_labels: np.ndarray
    levels: dict[str, LevelGroups]
    separator: str
    n_excluded: int
    unit_is_sample: bool

    @property
    def n_atoms(self) -> int:
        return len(self.sample)


def unique_rows(columns: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct rows of non-negative code columns, and the index of each row's first cell.

    Columns are packed into one int64 key (re-factorised whenever the packed range nears overflow) and
    factorised by hashing, O(n).
    """
    key, span = columns[0].astype(np.int64), max(sizes[0], 1)
    for col, size in zip(columns[1:], sizes[1:], strict=True):
        if span * max(size, 1) >= 2**62:
            key = pd.factorize(key)[0].astype(np.int64)
            span = int(key.max()) + 1 if len(key) else 1
        key, span = key * max(size, 1) + col, span * max(size, 1)
    codes = pd.factorize(key)[0]
    # factorize numbers rows by first appearance, so a first occurrence is where codes exceed all before it
    first = np.flatnonzero(codes > np.concatenate([[-1], np.maximum.accumulate(codes)[:-1]]))
    return codes.astype(np.int32), first


def _choose_separator(label_sets: list[np.ndarray]) -> str:
    for sep in SEPARATORS:
        if not any(sep in str(lab) for labels in label_sets for lab in labels):
            return sep
    raise CytoatlasError(f"every separator {SEPARATORS!r} occurs inside some label; cannot join labels")


def _select(labels: Labels, values: tuple[str, ...]) -> np.ndarray:
    """Boolean per cell: label is one of ``values``."""
    hit = np.isin(labels.categories, np.asarray(values, dtype=object))
    return (labels.codes >= 0) & hit[np.maximum(labels.codes, 0)]


def _level_groups(lev: Level, kept: np.ndarray, column, sep: str) -> tuple[np.ndarray, LevelGroups]:
    """Per-cell group code (-1 = not in level) and the level's group table."""
    in_level = kept.copy()
    for col, values in lev.where:
        lab = column(col)
        hit = _select(lab, values)
        if not hit.any():
            raise CytoatlasError(
                f"level {lev.name!r}: no cell has {col} in {list(values)}; {col} labels: "
                f"{', '.join(lab.categories[:50])}"
            )
        in_level &= hit
    n_filtered = int(kept.sum() - in_level.sum())
    parts = [column(c) for c in lev.by]
    for lab in parts:
        in_level &= lab.codes >= 0
    n_missing = int(kept.sum() - n_filtered - in_level.sum())
    cell_group = np.full(len(kept), -1, dtype=np.int32)
    if not parts:
        cell_group[in_level] = 0
        return cell_group, LevelGroups(lev, np.empty(0, np.int32), np.array(["all"], dtype=object), {},
                                       n_missing, n_filtered)
    idx = np.flatnonzero(in_level)
    codes, first = unique_rows([lab.codes[idx] for lab in parts], [len(lab.categories) for lab in parts])
    cell_group[idx] = codes
    part_labels = {c: lab.categories[lab.codes[idx[first]]] for c, lab in zip(lev.by, parts, strict=True)}
    labels = np.array([sep.join(t) for t in zip(*part_labels.values(), strict=True)], dtype=object)
    return cell_group, LevelGroups(lev, np.empty(0, np.int32), labels, part_labels, n_missing, n_filtered)


def build_atoms(obs: ObsReader, atlas: AtlasConfig, levels: list[Level]) -> AtomTable:
    """Atom codes of every cell of ``atlas`` for the given ``levels``.

    Raises a :class:`CytoatlasError` naming the available columns if any configured column is missing.
    """
    obs.require(atlas.obs_columns(levels))
    cache: dict[str, Labels] = {}

    def column(name: str) -> Labels:
        if name not in cache:
            cache[name] = obs.labels(name)
        return cache[name]

    sample = column(atlas.sample_col)
    kept = np.ones(len(sample), dtype=bool)
    for col, values in atlas.exclude:
        kept &= ~_select(column(col), values)
    # row names join sample and group labels too, so every label takes part in choosing the separator
    sep = _choose_separator([column(c).categories for lev in levels for c in lev.by] + [sample.categories])
    unit = column(atlas.unit_col)

    key_columns = [sample.codes + 1, unit.codes + 1]
    key_sizes = [len(sample.categories) + 1, len(unit.categories) + 1]
    groups: dict[str, LevelGroups] = {}
    for lev in levels:
        cell_group, groups[lev.name] = _level_groups(lev, kept, column, sep)
        key_columns.append(cell_group + 1)
        key_sizes.append(len(groups[lev.name].labels) + 1)
    cache.clear()

    idx = np.flatnonzero(kept)
    atom_codes, first = unique_rows([c[idx] for c in key_columns], key_sizes)
    cell_atom = np.full(len(kept), -1, dtype=np.int32)
    cell_atom[idx] = atom_codes
    per_atom = [c[idx[first]] - 1 for c in key_columns]
    for lev, codes in zip(levels, per_atom[2:], strict=True):
        groups[lev.name].atom_group = codes.astype(np.int32)
    return AtomTable(
        cell_atom=cell_atom,
        sample=per_atom[0].astype(np.int32),
        sample_labels=sample.categories,
        unit=per_atom[1].astype(np.int32),
        unit_labels=unit.categories,
        levels=groups,
        separator=sep,
        n_excluded=int((~kept).sum()),
        unit_is_sample=atlas.unit_col == atlas.sample_col,
    )

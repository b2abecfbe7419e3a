"""What a comparison reads: each atlas' sample x cell type activity files, and its cell-type harmonisation.

An atlas' results directory (``cytoatlas run --out DIR``) holds ``DIR/activity``; per level and signature set a
comparison reads the sample x cell type file (``{atlas}_pseudobulk_{level}_samples_{set}_activity.h5ad``, kind
``samples``), whose obs carries the registry's sample columns. Its pseudobulk file is not needed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import activity_dir, activity_glob, find_activity
from cytoatlas.io.results import read_header
from cytoatlas.registry import AtlasConfig, atlas_results

log = logging.getLogger("cytoatlas.compare")


@dataclass(frozen=True)
class SampleFile:
    """One sample x cell type activity file of an atlas."""

    atlas: str
    level: str
    signature_set: str
    path: Path


@dataclass
class AtlasFiles:
    """One atlas to compare: its results directory, its sample x cell type activity files and label overrides."""

    name: str
    results: Path
    files: list[SampleFile]
    harmonise: dict[str, str] = field(default_factory=dict)


def discover(atlas: str, results: Path, level_order: Sequence[str] = (), levels: Sequence[str] | None = None,
             signatures: Sequence[str] | None = None) -> list[SampleFile]:
    """The sample x cell type activity files of ``atlas`` in its results directory, levels in ``level_order``
    (the registry's) then name order.

    Raises
    ------
    CytoatlasError
        If there is no activity directory, or no such file (for the levels and sets asked for).
    """
    act_dir = activity_dir(results)
    if not act_dir.is_dir():
        raise CytoatlasError(f"atlas {atlas!r}: no activity directory {act_dir}; run "
                             f"`cytoatlas run --atlas {atlas} --out {results}` first")
    wanted_levels = {lv.lower() for lv in levels or []}
    wanted_sets = {s.lower() for s in signatures or []}
    found = []
    for path in find_activity(act_dir, atlas):
        try:
            head = read_header(path, "activity", var_columns=())
        except CytoatlasError as e:
            log.warning("%s; left out", e)
            continue
        if head.kind != "samples" or not head.level or not head.signature_set:
            continue
        if (wanted_levels and head.level.lower() not in wanted_levels) or (
                wanted_sets and head.signature_set.lower() not in wanted_sets):
            continue
        found.append(SampleFile(atlas, head.level, head.signature_set, path))
    if not found:
        what = [f"levels {', '.join(levels)}"] if levels else []
        what += [f"signature sets {', '.join(signatures)}"] if signatures else []
        raise CytoatlasError(f"atlas {atlas!r}: no sample x cell type activity files ({activity_glob(atlas)} of kind "
                             f"samples) in {act_dir}" + (f" for {' and '.join(what)}" if what else ""))
    order = {name.lower(): i for i, name in enumerate(level_order)}
    return sorted(found, key=lambda f: (order.get(f.level.lower(), len(order)), f.level, f.signature_set))


def resolve_atlases(atlases: str | AtlasConfig | Sequence[str | AtlasConfig],
                    results: str | os.PathLike | Mapping[str, str | os.PathLike], registry, data_root,
                    levels: Sequence[str] | None, signatures: Sequence[str] | None) -> list[AtlasFiles]:
    """The atlases to compare with their files (see :func:`cytoatlas.registry.atlas_results`)."""
    return [AtlasFiles(a.name, a.root, discover(a.name, a.root, a.level_order, levels, signatures), a.harmonise)
            for a in atlas_results(atlases, results, registry, data_root, step="compare")]

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
from cytoatlas.registry import AtlasConfig, load_registry

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


def _entry(name: str, registry, data_root) -> dict | None:
    entries = load_registry(registry, data_root)
    lowered = {k.lower(): k for k in entries}
    key = name if name in entries else lowered.get(name.lower())
    return entries[key]["entry"] if key else None


def _overrides(name: str, entry: dict | None) -> dict[str, str]:
    table = (entry or {}).get("harmonise", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise CytoatlasError(f"atlas {name!r}: harmonise must be a table of label = \"shared name\", got {table!r}")
    return {str(k): v for k, v in table.items()}


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
    """The atlases to compare with their files (``results/NAME``, or a mapping name -> results directory; a
    single atlas may be given its own results directory)."""
    if isinstance(atlases, (str, AtlasConfig)):
        atlases = [atlases]
    if not atlases:
        raise CytoatlasError("name at least one atlas to compare (--atlas)")
    out = []
    for item in atlases:
        if isinstance(item, AtlasConfig):
            name, overrides, order = item.name, dict(item.harmonise), [lv.name for lv in item.levels]
        else:
            name = str(item)
            entry = _entry(name, registry, data_root)
            overrides, order = _overrides(name, entry), list((entry or {}).get("levels", {}))
            if entry is None:
                log.info("atlas %s is not in the registry: no harmonise overrides, levels in name order", name)
        if isinstance(results, Mapping):
            if name not in results:
                raise CytoatlasError(f"no results directory given for atlas {name!r}")
            root = Path(results[name])
        else:
            root = Path(results) / name
            if not root.is_dir() and len(atlases) == 1 and activity_dir(results).is_dir():
                root = Path(results)  # the atlas' own results directory
        if not root.is_dir():
            raise CytoatlasError(f"atlas {name!r}: no results directory {root} (expected {root}/activity from "
                                 f"`cytoatlas run --atlas {name} --out {root}`); point --results at their parent")
        out.append(AtlasFiles(name, root, discover(name, root, order, levels, signatures), overrides))
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise CytoatlasError(f"an atlas is named twice: {', '.join(names)}")
    return out

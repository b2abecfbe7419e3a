"""What validation reads: an atlas' activity files and the pseudobulk files they were made from.

An atlas' results directory (``cytoatlas run --out DIR``) holds ``DIR/pseudobulk`` and ``DIR/activity``. Per level
and signature set validation uses the sample x cell type pair (``..._samples.h5ad`` and its activity), the
cell-type pair (``{atlas}_pseudobulk_{level}.h5ad`` and its activity) and, when present, the bootstrap pair
(``..._resampled.h5ad`` and its activity). Only the target genes of the pseudobulk files are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import activity_dir, activity_glob, find_activity, pseudobulk_dir, pseudobulk_of
from cytoatlas.io.results import read_header

log = logging.getLogger("cytoatlas.validate")


@dataclass
class LevelSet:
    """The files of one (atlas, level, signature set): pseudobulk and activity per kind (None if absent)."""

    atlas: str
    level: str
    signature_set: str
    pseudobulk: dict[str, Path] = field(default_factory=dict)
    activity: dict[str, Path] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """Every input file, pseudobulk and activity."""
        return [*self.pseudobulk.values(), *self.activity.values()]


def discover(atlas: str, results: Path, level_order: list[str] | None = None,
             levels: list[str] | None = None, signatures: list[str] | None = None) -> list[LevelSet]:
    """The (level, signature set) file groups of ``atlas`` in its results directory ``results``.

    Levels follow ``level_order`` (the registry's) then name order; a group without a sample x cell type
    activity file is left out with a warning (nothing to correlate across samples).
    """
    act_dir, pb_dir = activity_dir(results), pseudobulk_dir(results)
    if not act_dir.is_dir():
        raise CytoatlasError(f"atlas {atlas!r}: no activity directory {act_dir}; run "
                             f"`cytoatlas run --atlas {atlas} --out {results}` first")
    groups: dict[tuple[str, str], LevelSet] = {}
    for path in find_activity(act_dir, atlas):
        try:
            head = read_header(path, "activity", var_columns=())
        except CytoatlasError as e:
            log.warning("%s; left out", e)
            continue
        level, kind, sig = head.level, head.kind, head.signature_set
        if not level or not sig:
            log.warning("%s: not an activity file of a pseudobulk output; left out", path.name)
            continue
        if levels and level.lower() not in {lv.lower() for lv in levels}:
            continue
        if signatures and sig.lower() not in {s.lower() for s in signatures}:
            continue
        try:
            pb = pseudobulk_of(path, sig, pb_dir)
        except ValueError as e:  # renamed by hand: its name no longer says which pseudobulk it is of
            log.warning("%s; left out", e)
            continue
        if not pb.is_file():
            log.warning("%s: its pseudobulk file %s is missing; left out", path.name, pb)
            continue
        group = groups.setdefault((level, sig), LevelSet(atlas, level, sig))
        group.pseudobulk[kind], group.activity[kind] = pb, path
    if not groups:
        what = [f"levels {', '.join(levels)}"] if levels else []
        what += [f"signature sets {', '.join(signatures)}"] if signatures else []
        raise CytoatlasError(f"atlas {atlas!r}: no activity files {activity_glob(atlas)} in {act_dir}"
                             + (f" for {' and '.join(what)}" if what else ""))
    out = []
    for key, group in groups.items():
        if "samples" not in group.activity:
            log.warning("atlas %s, level %s, %s: no sample x cell type activity file; level left out of the "
                        "within-atlas correlations", atlas, key[0], key[1])
        out.append(group)
    order = {name.lower(): i for i, name in enumerate(level_order or [])}
    return sorted(out, key=lambda g: (order.get(g.level.lower(), len(order)), g.level, g.signature_set))

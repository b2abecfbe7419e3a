"""What validation reads: an atlas' activity files and the pseudobulk files they were made from.

An atlas' results directory (``cytoatlas run --out DIR``) holds ``DIR/pseudobulk`` and ``DIR/activity``. Per level
and signature set validation uses the sample x cell type pair (``..._samples.h5ad`` and its activity), the
cell-type pair (``{atlas}_pseudobulk_{level}.h5ad`` and its activity) and, when present, the bootstrap pair
(``..._resampled.h5ad`` and its activity). Only the target genes of the pseudobulk files are read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cytoatlas._harness import verified_input
from cytoatlas._harness.inputs import passed_over, recorded_entries, rerun_hint
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import activity_dir, activity_glob, find_activity, pseudobulk_dir, pseudobulk_of
from cytoatlas.io.results import Activity, Pseudobulk, read_activity, read_header, read_pseudobulk

log = logging.getLogger("cytoatlas.validate")


@dataclass
class LevelSet:
    """The files of one (atlas, level, signature set): pseudobulk and activity per kind (None if absent)."""

    atlas: str
    level: str
    signature_set: str
    pseudobulk: dict[str, Path] = field(default_factory=dict)
    activity: dict[str, Path] = field(default_factory=dict)
    #: why the group takes part in no within-atlas correlation (empty: it does)
    left_out: str = ""

    def files(self) -> list[Path]:
        """Every input file, pseudobulk and activity."""
        return [*self.pseudobulk.values(), *self.activity.values()]

    # what the computation reads, through these methods only (an in-memory group answers them from AnnData)

    def load_activity(self, kind: str) -> Activity:
        """The activity of ``kind`` (z-scores, obs, signature names)."""
        return read_activity(self.activity[kind])

    def load_pseudobulk(self, kind: str, genes: Iterable[str]) -> Pseudobulk:
        """The pseudobulk of ``kind``: log1p CPM of ``genes`` (symbols)."""
        return read_pseudobulk(self.pseudobulk[kind], genes)

    def pseudobulk_obs(self, kind: str) -> pd.DataFrame:
        """The rows of the pseudobulk of ``kind`` (no matrix is read)."""
        return read_header(self.pseudobulk[kind], "pseudobulk", var_columns=()).obs

    def pseudobulk_parameters(self, kind: str) -> dict:
        """What the pseudobulk of ``kind`` was made with (``n_bootstrap``, ``seed``...; empty if not recorded)."""
        try:
            return read_header(self.pseudobulk[kind], "pseudobulk", var_columns=()).parameters
        except CytoatlasError:
            return {}

    def signature_names(self) -> list[str]:
        """The signatures of the group's set (those of its first activity result)."""
        return list(read_header(next(iter(self.activity.values())), "activity").var.index.astype(str))


def discover(atlas: str, results: Path, level_order: list[str] | None = None,
             levels: list[str] | None = None, signatures: list[str] | None = None
             ) -> tuple[list[LevelSet], list[tuple[str, str]]]:
    """The (level, signature set) file groups of ``atlas`` in its results directory ``results``, every file
    verified against the manifest that recorded it; and every (level, set) there is (asked for or not).

    Levels follow ``level_order`` (the registry's) then name order. A group without a sample x cell type
    activity file takes part in no within-atlas correlation (:attr:`LevelSet.left_out` says why).

    Raises
    ------
    CytoatlasError
        No activity directory or no activity file; an activity file or the pseudobulk file it was made from that
        is missing, unrecorded, damaged or unreadable, or an unreadable manifest (naming the file and what to
        rerun).
    """
    act_dir, pb_dir = activity_dir(results), pseudobulk_dir(results)
    if not act_dir.is_dir():
        raise CytoatlasError(f"atlas {atlas!r}: no activity directory {act_dir}; run "
                             f"`cytoatlas run --atlas {atlas} --out {results}` first")
    rerun = rerun_hint(atlas, results)
    entries = recorded_entries(act_dir, rerun)
    groups: dict[tuple[str, str], LevelSet] = {}
    available = []
    for path in find_activity(act_dir, atlas):
        entry = entries.get(path.name)
        if passed_over(entry, atlas, (), levels or (), signatures or ()):
            available.append((str(entry.get("file", "")).split("_pseudobulk_", 1)[-1].removesuffix(".h5ad")
                              .removesuffix("_samples").removesuffix("_resampled"), str(entry.get("signature", ""))))
            continue  # another level or set, by its record: not read (a damaged one does not stop this run)
        verified_input(path, rerun)
        try:  # recorded and intact, yet unreadable (written by another release?): remade by a rerun too
            head = read_header(path, "activity", var_columns=())
        except CytoatlasError as e:
            raise CytoatlasError(f"{e}; {rerun}") from None
        level, kind, sig = head.level, head.kind, head.signature_set
        if not level or not sig:
            raise CytoatlasError(f"{path}: not an activity file of a pseudobulk output (no level or signature set "
                                 f"in its uns); {rerun}")
        available.append((level, sig))
        if levels and level.lower() not in {lv.lower() for lv in levels}:
            continue
        if signatures and sig.lower() not in {s.lower() for s in signatures}:
            continue
        try:
            pb = pseudobulk_of(path, sig, pb_dir)
        except ValueError as e:  # renamed by hand: its name no longer says which pseudobulk it is of
            raise CytoatlasError(f"{e}; {rerun}") from None
        verified_input(pb, rerun)
        group = groups.setdefault((level, sig), LevelSet(atlas, level, sig))
        group.pseudobulk[kind], group.activity[kind] = pb, path
    if not available:
        raise CytoatlasError(f"atlas {atlas!r}: no activity files {activity_glob(atlas)} in {act_dir}")
    out = []
    for key, group in groups.items():
        if "samples" not in group.activity:
            group.left_out = "no sample x cell type activity file: left out of the within-atlas correlations"
            log.warning("atlas %s, level %s, %s: no sample x cell type activity file; level left out of the "
                        "within-atlas correlations", atlas, key[0], key[1])
        out.append(group)
    order = {name.lower(): i for i, name in enumerate(level_order or [])}
    return sorted(out, key=lambda g: (order.get(g.level.lower(), len(order)), g.level, g.signature_set)), available

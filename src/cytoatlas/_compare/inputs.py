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

from cytoatlas._harness import verified_input
from cytoatlas._harness.inputs import passed_over, recorded_entries, rerun_hint
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import activity_dir, activity_glob, find_activity
from cytoatlas.io.results import read_header
from cytoatlas.options import check_known, name_list
from cytoatlas.registry import AtlasConfig, atlas_results

log = logging.getLogger("cytoatlas.compare")


@dataclass(frozen=True)
class SampleFile:
    """One sample x cell type activity file of an atlas, with its verified fingerprint (see
    :func:`cytoatlas._harness.verified_input`)."""

    atlas: str
    level: str
    signature_set: str
    path: Path
    fingerprint: dict = field(default_factory=dict, compare=False)


@dataclass
class AtlasFiles:
    """One atlas to compare: its results directory, its sample x cell type activity files and label overrides."""

    name: str
    results: Path
    files: list[SampleFile]
    harmonise: dict[str, str] = field(default_factory=dict)
    #: every (level, signature set) of the atlas' sample x cell type files, asked for or not
    available: list[tuple[str, str]] = field(default_factory=list)


def discover(atlas: str, results: Path, level_order: Sequence[str] = (), levels: Sequence[str] | None = None,
             signatures: Sequence[str] | None = None) -> tuple[list[SampleFile], list[tuple[str, str]]]:
    """The sample x cell type activity files of ``atlas`` in its results directory, levels in ``level_order``
    (the registry's) then name order, each verified against the activity manifest; and every (level, set) of
    such files there is (asked for or not).

    Raises
    ------
    CytoatlasError
        No activity directory, or no such file (for the levels and sets asked for); a file that is unrecorded,
        damaged or unreadable, or an unreadable manifest (naming the file and what to rerun).
    """
    act_dir = activity_dir(results)
    if not act_dir.is_dir():
        raise CytoatlasError(f"atlas {atlas!r}: no activity directory {act_dir}; run "
                             f"`cytoatlas run --atlas {atlas} --out {results}` first")
    rerun = rerun_hint(atlas, results)
    entries = recorded_entries(act_dir, rerun)
    wanted_levels = {lv.lower() for lv in levels or []}
    wanted_sets = {s.lower() for s in signatures or []}
    found, available = [], []
    for path in find_activity(act_dir, atlas):
        entry = entries.get(path.name)
        if passed_over(entry, atlas, ("samples",), (), ()):
            continue  # the record says: not a sample x cell type file
        if passed_over(entry, atlas, ("samples",), levels or (), signatures or ()):
            available.append((_recorded_level(entry), str(entry.get("signature", ""))))
            continue  # a level or set not asked for: not read (a damaged one does not stop this run)
        fingerprint = verified_input(path, rerun)
        try:  # recorded and intact, yet unreadable (written by another release?): remade by a rerun too
            head = read_header(path, "activity", var_columns=())
        except CytoatlasError as e:
            raise CytoatlasError(f"{e}; {rerun}") from None
        if head.kind != "samples" or not head.level or not head.signature_set:
            continue
        available.append((head.level, head.signature_set))
        if (wanted_levels and head.level.lower() not in wanted_levels) or (
                wanted_sets and head.signature_set.lower() not in wanted_sets):
            continue
        found.append(SampleFile(atlas, head.level, head.signature_set, path, fingerprint))
    if not available:
        raise CytoatlasError(f"atlas {atlas!r}: no sample x cell type activity files ({activity_glob(atlas)} of kind "
                             f"samples) in {act_dir}")
    order = {name.lower(): i for i, name in enumerate(level_order)}
    return sorted(found, key=lambda f: (order.get(f.level.lower(), len(order)), f.level, f.signature_set)), available


def _recorded_level(entry: Mapping) -> str:
    """The level an activity record's pseudobulk file name holds (``{atlas}_pseudobulk_{level}_samples.h5ad``)."""
    name = str(entry.get("file", ""))
    stem = name.split("_pseudobulk_", 1)[-1]
    return stem.removesuffix(".h5ad").removesuffix("_samples")


def check_asked(step: str, available: Sequence[tuple[str, str]], levels: Sequence[str],
                signatures: Sequence[str]) -> None:
    """Every level and signature set asked for must be one the atlases have.

    Raises
    ------
    CytoatlasError
        A level or set no atlas has, naming those there are.
    """
    for option, asked, there in (("levels", levels, {lv for lv, _ in available}),
                                 ("signatures", signatures, {s for _, s in available})):
        try:
            check_known(f"{step} --{option}", asked, sorted(there), what="level" if option == "levels" else "set")
        except CytoatlasError as e:
            raise CytoatlasError(f"no sample x cell type activity files: {e}") from None


def resolve_atlases(atlases: str | AtlasConfig | Sequence[str | AtlasConfig],
                    results: str | os.PathLike | Mapping[str, str | os.PathLike], registry, data_root,
                    levels: Sequence[str] | None, signatures: Sequence[str] | None,
                    step: str = "compare") -> list[AtlasFiles]:
    """The atlases to compare with their verified files (see :func:`cytoatlas.registry.atlas_results`).

    Raises
    ------
    CytoatlasError
        As :func:`discover`; or a level or signature set asked for that no atlas has.
    """
    levels, signatures = name_list("levels", levels), name_list("signatures", signatures)
    out = []
    for a in atlas_results(atlases, results, registry, data_root, step=step):
        files, available = discover(a.name, a.root, a.level_order, levels or None, signatures or None)
        out.append(AtlasFiles(a.name, a.root, files, a.harmonise, available))
    check_asked(step, [x for a in out for x in a.available], levels, signatures)
    for a in out:
        if not a.files:
            what = [f"levels {', '.join(levels)}"] if levels else []
            what += [f"signature sets {', '.join(signatures)}"] if signatures else []
            raise CytoatlasError(f"atlas {a.name!r}: no sample x cell type activity files ({activity_glob(a.name)} "
                                 f"of kind samples) in {activity_dir(a.results)} for {' and '.join(what)}; it has "
                                 f"{', '.join(sorted({f'{lv} {s}' for lv, s in a.available}))}")
    return out

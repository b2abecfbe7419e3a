"""What a step reads from an atlas' results, verified before it is used.

Every input file is checked against the manifest that recorded it (:func:`verified_input`): a file that is
missing, unrecorded or damaged, or a manifest that cannot be read, is an error naming the file and what to rerun,
raised before the step writes anything (its previous outputs stay as they were). Files that the manifest says
are not asked for (another level, kind or signature set) are passed over unread, so a damaged file of a level
that is not asked for does not stop the run.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import pseudobulk_path
from cytoatlas.io.manifest import ManifestError, read_manifest


def rerun_hint(atlas: str, results: str | os.PathLike) -> str:
    """What remakes an atlas' pseudobulk and activity files."""
    return f"rerun `cytoatlas run --atlas {atlas} --out {results}` to remake it"


def recorded_entries(directory: str | os.PathLike, rerun: str) -> dict[str, dict]:
    """The manifest entries of an input directory (none without a manifest).

    Raises
    ------
    CytoatlasError
        The manifest exists but cannot be read; the message ends with ``rerun``.
    """
    try:
        return read_manifest(directory, strict=True)
    except ManifestError as e:
        raise CytoatlasError(f"{e}; {rerun}") from None


def passed_over(entry: Mapping | None, atlas: str, kinds: Collection[str], levels: Collection[str],
                signatures: Collection[str]) -> bool:
    """Whether an activity file's manifest record says it is none of ``kinds`` (pseudobulk kinds), ``levels`` or
    ``signatures`` (empty: any). Without a record nothing can be told: the file is verified (and refused)."""
    if not entry:
        return False
    if kinds and entry.get("kind") not in kinds:
        return True
    if signatures and str(entry.get("signature", "")).lower() not in {s.lower() for s in signatures}:
        return True
    if levels and entry.get("file"):
        names = {pseudobulk_path(Path(), atlas, lv, k).name for lv in levels for k in (kinds or [entry.get("kind")])
                 if k}
        return str(entry["file"]) not in names
    return False

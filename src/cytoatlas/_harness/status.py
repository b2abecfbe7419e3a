"""``cytoatlas status`` of any step's directory: every recorded output complete / missing / stale / corrupt /
running, with why; one row type for every step."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from cytoatlas._harness.steps import get_step
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.lock import lock_is_live, read_lock
from cytoatlas.io.manifest import (
    MANIFEST_NAME,
    ManifestError,
    Record,
    check_output,
    read_records,
    same_inputs,
    upstream_fingerprint,
)
from cytoatlas.options import State, choices

#: the states an output can be in
STATES = choices(State)
#: steps whose directories hold one atlas' outputs (judged per atlas, against the run's parameters)
ATLAS_STEPS = ("pseudobulk", "activity", "cells")


@dataclass(frozen=True)
class StatusRow:
    """One output's state, as ``cytoatlas status`` prints it."""

    atlas: str
    level: str
    step: str
    file: str
    state: str
    reason: str
    shape: str = ""
    size: int = 0
    written: str = ""

    def as_dict(self) -> dict:
        """The row as a plain mapping (``status --json``)."""
        return asdict(self)


def _input_changed(fp: Mapping, records: Mapping[str, Record], states: Mapping[str, tuple[str, str]]) -> str | None:
    """Why a recorded input is no longer what it was (``None``: unchanged, or not checkable)."""
    name = str(fp.get("name", ""))
    if fp.get("path"):
        path = Path(fp["path"])
        if not path.is_file():
            return f"its input {path} is gone"
        return None if same_inputs([fp], [upstream_fingerprint(path)]) else f"its input {path} changed"
    if name in records:  # an output of the same directory (a validation part, a table of the report)
        if records[name].checksum != fp.get("checksum"):
            return f"its input {name} changed"
        return None if states[name][0] == "complete" else f"its input {name} is {states[name][0]}"
    return None  # recorded without a path (an older release): the file's own checks still apply


def read_step_records(directory: str | os.PathLike) -> dict[str, Record]:
    """A directory's records for judging them: an unreadable manifest is an error (not "nothing recorded").

    Raises
    ------
    CytoatlasError
        The manifest exists but cannot be read: the message says to rerun the step that wrote the directory.
    """
    try:
        return read_records(directory, strict=True)
    except ManifestError as e:
        raise CytoatlasError(f"{e}; rerun the step that wrote them with --force (`cytoatlas run` for an atlas' "
                             "pseudobulk and activity) to recompute them and their records") from None


def directory_status(directory: str | os.PathLike, *, verify: bool = False, atlas: str = "") -> list[StatusRow]:
    """One row per output a step directory's manifest records (validation, comparison, report...).

    Each output is checked against its record (size; checksum with ``verify``), its step's algorithm version
    and its inputs: an upstream file recorded with its path must still be there with the same content; an input
    from the same directory must still have the checksum it had and be complete itself. The state is ``running``
    while a live run holds the directory.
    """
    directory = Path(directory)
    records = read_step_records(directory)
    states = {}
    for key, rec in records.items():
        step = get_step(rec.step)
        states[key] = check_output(directory / key, rec, verify=verify,
                                   algorithm=None if step is None else step.algorithm)
    changed = True
    while changed:  # staleness flows down (part -> table -> report) until nothing changes
        changed = False
        for key, rec in records.items():
            if states[key][0] == "complete":
                why = next(filter(None, (_input_changed(fp, records, states) for fp in rec.inputs)), None)
                if why:
                    states[key], changed = ("stale", why), True
    running = lock_is_live(read_lock(directory)) if directory.is_dir() else False
    rows = []
    for key, rec in sorted(records.items()):
        st, reason = states[key]
        if st != "complete" and running:
            st, reason = "running", "a live run holds this directory"
        done = st == "complete"
        rows.append(StatusRow(atlas=str(rec.extra.get("atlas", atlas) or atlas), level="",
                              step=f"{rec.step}:{rec.kind}" if rec.kind else rec.step, file=str(directory / key),
                              state=st, reason=reason, size=rec.size if done else 0,
                              written=rec.written if done else ""))
    return rows


def step_directories(root: str | os.PathLike, depth: int = 2) -> list[Path]:
    """Directories at most ``depth`` levels below ``root`` (``root`` too) whose manifest records outputs of a
    step other than the per-atlas ones (validation, comparison, report...), in path order."""
    root = Path(root)
    found = []
    candidates = [root, *(p for d in range(1, depth + 1) for p in root.glob("/".join(["*"] * d)) if p.is_dir())]
    for d in sorted(set(candidates)):
        if (d / MANIFEST_NAME).is_file() and any(r.step not in ATLAS_STEPS for r in read_step_records(d).values()):
            found.append(d)
    return found

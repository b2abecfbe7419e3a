"""One run of a step in its output directory: checks, lock, typed records, "is it current", stale files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cytoatlas._harness.steps import Step
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import manifest_key
from cytoatlas.io.lock import DirectoryLock, remove_leftovers
from cytoatlas.io.manifest import (
    ManifestError,
    Record,
    check_output,
    read_records,
    update_manifest,
    upstream_fingerprint,
    verified_fingerprint,
)


def check_output_dir(out: str | os.PathLike) -> Path:
    """``out`` as a Path, checked to be a directory or nothing yet.

    Raises
    ------
    CytoatlasError
        ``out`` is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CytoatlasError(f"output directory {out} is a file")
    return out


def input_fingerprint(path: str | os.PathLike) -> dict:
    """An upstream file's fingerprint (name, size, checksum) with its absolute path, so that ``status`` can
    check later whether it changed (the path takes no part in "same inputs")."""
    path = Path(path)
    return {**upstream_fingerprint(path), "path": str(path.resolve())}


def verified_input(path: str | os.PathLike, rerun: str, *, required: bool = True) -> dict:
    """:func:`input_fingerprint` of an upstream file, verified first against the manifest that recorded it
    (size; checksum where affordable, see :func:`cytoatlas.io.manifest.verified_fingerprint`).

    Raises
    ------
    CytoatlasError
        The file is missing, unrecorded, damaged, or its manifest is unreadable; the message names the file
        and ends with ``rerun``.
    """
    path = Path(path)
    return {**verified_fingerprint(path, rerun=rerun, required=required), "path": str(path.resolve())}


class StepDirectory:
    """Hold a step's output directory for one run (a ``with`` block).

    On entry: the directory is checked (not a file), locked, the leftovers of interrupted runs in its
    ``subdirs`` removed, at any depth (the lock clears the top directory) and its manifest read as
    :class:`Record` s. A manifest that cannot be read is an error (its records would count as none), unless
    ``force`` (the run recomputes everything anyway; a warning says the records are lost).

    Parameters
    ----------
    out
        The output directory (created if absent).
    step
        The step writing it: its name and algorithm version go into every record.
    subdirs
        Subdirectories the step writes into (e.g. ``figures``).
    force
        The run recomputes every output its records do not vouch for: an unreadable manifest (no records) is
        then replaced, with a warning, not an error. The atlas steps (pseudobulk, activity, cells), which
        recompute whatever is not recorded current, always pass it; the other steps with ``--force``.
    rerun
        What the error of an unreadable manifest tells to do (default: rerun this step with ``--force``).
    """

    def __init__(self, out: str | os.PathLike, step: Step, *, subdirs: Sequence[str] = (), force: bool = False,
                 rerun: str | None = None):
        self.out = check_output_dir(out)
        self.step = step
        self.subdirs = tuple(subdirs)
        self.force = force
        self.rerun = rerun or f"rerun `cytoatlas {step.name}` with --force to recompute them"
        self.records: dict[str, Record] = {}
        self._lock = DirectoryLock(self.out)

    def __enter__(self) -> StepDirectory:
        self._lock.__enter__()
        try:
            for sub in self.subdirs:
                remove_leftovers(self.out / sub, recursive=True)
            self.records = read_records(self.out, strict=not self.force)
        except ManifestError as e:
            self._lock.__exit__(None, None, None)
            raise CytoatlasError(f"{e}; {self.rerun}") from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)

    def touch(self) -> None:
        """Proof of life for the lock (see :meth:`cytoatlas.io.lock.DirectoryLock.touch`)."""
        self._lock.touch()

    def key(self, path: Path) -> str:
        """The manifest key of a file in the directory (its path relative to it)."""
        return manifest_key(path, self.out)

    def previous(self, kinds: Iterable[str] | None = None) -> dict[str, Record]:
        """The records of this step (of these ``kinds``, when given)."""
        kinds = None if kinds is None else set(kinds)
        return {k: r for k, r in self.records.items()
                if r.step == self.step.name and (kinds is None or r.kind in kinds)}

    def output_state(self, path: Path, parameters: Mapping, inputs: Sequence[Mapping], *,
                     verify: bool = False) -> str:
        """``complete`` / ``missing`` / ``stale`` / ``corrupt`` of one output (checksums re-read with ``verify``:
        the steps that skip current outputs one by one, whose files are large and few, verify them)."""
        return check_output(path, self.records.get(self.key(path)), parameters, inputs, verify=verify,
                            algorithm=self.step.algorithm)[0]

    def is_current(self, parameters: Mapping, inputs: Sequence[Mapping], required: Iterable[Path],
                   kinds: Iterable[str] | None = None) -> bool:
        """Whether the step's outputs here (of ``kinds``) are all complete, include every ``required`` file and
        were made from these parameters and inputs by this algorithm version: then the run has nothing to do."""
        previous = self.previous(kinds)
        recorded = {self.out / k for k in previous}
        return bool(previous) and all(p in recorded for p in required) and all(
            check_output(self.out / k, r, parameters, inputs, verify=False, algorithm=self.step.algorithm)[0]
            == "complete" for k, r in previous.items())

    def record(self, path: Path, parameters: Mapping, inputs: Iterable[Mapping], **extra) -> tuple[str, dict]:
        """(manifest key, record) of a finished output of this step."""
        return self.key(path), self.step.record(path, parameters, inputs, **extra)

    def commit(self, records: Mapping[str, dict], remove: Iterable[str] = ()) -> None:
        """Merge ``records`` into the manifest (after their files are in place), dropping ``remove``."""
        update_manifest(self.out, records, remove)
        self.records = read_records(self.out)

    def remove_stale(self, written: Iterable[Path], kinds: Iterable[str] | None = None) -> list[str]:
        """Delete this step's files (of ``kinds``) that this run did not write, with their records."""
        written = set(written)
        stale = [k for k in self.previous(kinds) if self.out / k not in written]
        for k in stale:
            (self.out / k).unlink(missing_ok=True)
        self.commit({}, remove=stale)
        return stale

"""Run manifests: what every output was made from, and a checksum that says it is still what was written.

Each output directory holds ``manifest.json``: per file, its checksum and size, the fingerprints of its inputs
(the atlas' size, mtime and edge hash; an upstream output's checksum), the parameters that shaped it and the
package version. Checksums are ``"xxh3_128:<hex>"``: they detect damage and tell files apart, they do not guard
against forgery, and XXH3 hashes ~7x faster than SHA-256 (~11 vs ~1.5 GB/s here), which is what a 300 k-cell
run's 3.3 GB of outputs and ``status --verify`` over an atlas' results pay. Records written before carry a
``sha256`` instead, and verify as such.

An output is *current* when it exists, its checksum verifies, its inputs and parameters are the ones a new run
would use and it was computed by its step's current *algorithm version* (an integer each step bumps when its
numbers change; a record without one, written before versions were recorded, is version 1); anything else is
recomputed, and only that. The release version is recorded too, as provenance only: a release that changes no
numbers leaves every output current. The manifest is rewritten atomically, after the
files it describes are in place, so a crash can lose a record but never vouch for a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import write_text_atomic

log = logging.getLogger("cytoatlas")

MANIFEST_NAME = "manifest.json"
_CHUNK = 4 << 20


CHECKSUM = "xxh3_128"


def _hasher(algorithm: str):
    if algorithm == "xxh3_128":
        import xxhash

        return xxhash.xxh3_128()
    if algorithm == "sha256":  # records written before XXH3 was adopted
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def file_checksum(path: str | os.PathLike, algorithm: str = CHECKSUM) -> str:
    """``"<algorithm>:<hex digest>"`` of a whole file, read in 4 MiB chunks."""
    h = _hasher(algorithm)
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return f"{algorithm}:{h.hexdigest()}"


def recorded_checksum(entry: Mapping | None) -> str | None:
    """The checksum a manifest record (or an input fingerprint) holds, as ``"<algorithm>:<hex>"``."""
    if not entry:
        return None
    if entry.get("checksum"):
        return str(entry["checksum"])
    return f"sha256:{entry['sha256']}" if entry.get("sha256") else None


def checksum_matches(path: str | os.PathLike, recorded: str | None) -> bool:
    """Whether ``path`` still has the ``recorded`` checksum (computed with the algorithm it names)."""
    algorithm, _, digest = (recorded or "").partition(":")
    try:
        return bool(digest) and file_checksum(path, algorithm) == recorded
    except ValueError:  # an algorithm this version does not know: it cannot vouch for the file
        return False


def canonical(obj) -> str:
    """JSON text of a parameters value, equal for a dict and its round trip through h5ad or JSON."""
    def plain(x):
        if isinstance(x, Mapping):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple, np.ndarray)):
            return [plain(v) for v in x]
        if isinstance(x, bytes):
            return x.decode()
        return x.item() if isinstance(x, np.generic) else x
    return json.dumps(plain(obj), sort_keys=True)


class ManifestError(CytoatlasError):
    """A manifest that exists but cannot be read (its readers add what to rerun to the message)."""


def manifest_path(directory: str | os.PathLike) -> Path:
    """The manifest file of ``directory``."""
    return Path(directory) / MANIFEST_NAME


def read_manifest(directory: str | os.PathLike, *, strict: bool = False) -> dict[str, dict]:
    """``{file name: record}`` of a directory; empty if there is no manifest.

    A manifest that exists but cannot be read or parsed is an error with ``strict`` (for a reader that would
    otherwise act on "no records": drop, skip or trust what it describes); without it, it counts as no records
    and a warning says so (a writer then recomputes what it describes).

    Raises
    ------
    CytoatlasError
        With ``strict``: the manifest exists but is unreadable.
    """
    path = manifest_path(directory)
    try:
        doc = json.loads(path.read_text())
        outputs = doc.get("outputs", {})
        if not isinstance(outputs, Mapping):
            raise ValueError("its 'outputs' is not a mapping")
        return dict(outputs)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as e:
        why = f"{path} cannot be read ({type(e).__name__}: {str(e)[:120]})"
        if strict:
            raise ManifestError(f"{why}: the records of the files in {path.parent} are lost") from None
        log.warning("%s; it counts as no records: a run writing this directory recomputes everything it "
                    "described", why)
        return {}


#: the algorithm version of a record that names none (written before versions were recorded)
FIRST_ALGORITHM = 1
_FIELDS = ("step", "checksum", "size", "mtime_ns", "parameters", "inputs", "version", "algorithm", "written")


@dataclass(frozen=True)
class Record:
    """One output's manifest record.

    Attributes
    ----------
    step
        The step that wrote it (``pseudobulk``, ``activity``, ``cells``, ``validate``, ``compare``, ``report``...).
    checksum
        ``"<algorithm>:<hex>"`` of the whole file (``None`` only in records of another tool).
    size, mtime_ns
        The file's size and modification time when recorded.
    parameters
        The parameters that shaped it (canonical JSON values).
    inputs
        Fingerprints of what it was made from.
    version
        The cytoatlas release that wrote it (provenance only).
    algorithm
        Its step's algorithm version when written (:data:`FIRST_ALGORITHM` if the record names none).
    written
        When it was recorded (local ISO time).
    extra
        What the step adds (``kind``, ``table``, ``figure``, ``title``, ``atlas``, ``signature``...).
    """

    step: str
    checksum: str | None
    size: int
    mtime_ns: int = 0
    parameters: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    version: str = ""
    algorithm: int = FIRST_ALGORITHM
    written: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """The output's kind within its step (``None`` if not recorded)."""
        return self.extra.get("kind")

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Record:
        """A record read from a manifest (either checksum form; a missing algorithm version is the first)."""
        return cls(step=str(entry.get("step", "")), checksum=recorded_checksum(entry), size=int(entry.get("size", -1)),
                   mtime_ns=int(entry.get("mtime_ns", 0)), parameters=dict(entry.get("parameters") or {}),
                   inputs=list(entry.get("inputs") or []), version=str(entry.get("version", "")),
                   algorithm=int(entry.get("algorithm", FIRST_ALGORITHM)), written=str(entry.get("written", "")),
                   extra={k: v for k, v in entry.items() if k not in (*_FIELDS, "sha256")})

    def to_dict(self) -> dict:
        """The record as stored in ``manifest.json``."""
        return {"step": self.step, "checksum": self.checksum, "size": self.size, "mtime_ns": self.mtime_ns,
                "parameters": self.parameters, "inputs": self.inputs, "version": self.version,
                "algorithm": self.algorithm, "written": self.written, **self.extra}


def read_records(directory: str | os.PathLike, *, strict: bool = False) -> dict[str, Record]:
    """``{file name: Record}`` of a directory's manifest (empty without one); see :func:`read_manifest`."""
    return {k: Record.from_dict(v) for k, v in read_manifest(directory, strict=strict).items()
            if isinstance(v, Mapping)}


def record(path: str | os.PathLike, *, step: str, parameters: Mapping, inputs: Iterable[Mapping],
           checksum: str | None = None, algorithm: int = FIRST_ALGORITHM, **extra) -> dict:
    """The manifest record of a finished output; its checksum is computed now unless the writer already
    hashed the file (``checksum``, from :func:`file_checksum`). ``algorithm`` is its step's algorithm version."""
    from cytoatlas._version import __version__

    path = Path(path)
    st = path.stat()
    return Record(step=step, checksum=checksum or file_checksum(path), size=st.st_size, mtime_ns=st.st_mtime_ns,
                  parameters=json.loads(canonical(parameters)), inputs=json.loads(canonical(list(inputs))),
                  version=__version__, algorithm=int(algorithm), written=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  extra=dict(extra)).to_dict()


def update_manifest(directory: str | os.PathLike, records: Mapping[str, dict],
                    remove: Iterable[str] = ()) -> None:
    """Merge ``{file name: record}`` into the directory's manifest (after the files are in place)."""
    directory = Path(directory)
    outputs = read_manifest(directory)
    for name in remove:
        outputs.pop(name, None)
    outputs.update(records)
    write_text_atomic(manifest_path(directory), json.dumps({"outputs": dict(sorted(outputs.items()))}, indent=1))


def upstream_fingerprint(path: str | os.PathLike) -> dict:
    """An input result file's name, size and checksum (taken from its directory's manifest when size and mtime
    agree, so an upstream output is not hashed again)."""
    path = Path(path)
    st = path.stat()
    entry = read_manifest(path.parent).get(path.name)
    checksum = None
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        checksum = recorded_checksum(entry)
    return {"name": path.name, "size": st.st_size, "checksum": checksum or file_checksum(path)}


def same_inputs(old: Iterable[Mapping], new: Iterable[Mapping]) -> bool:
    """Inputs match on everything but their path: size, mtime and content hashes (a touched atlas is stale).
    An earlier version's ``sha256`` of an input is the checksum ``sha256:<hex>``."""
    def key(fp: Mapping) -> tuple:
        fp = {k: v for k, v in fp.items() if k != "path"}
        if "sha256" in fp:
            fp["checksum"] = recorded_checksum(fp)
            del fp["sha256"]
        return tuple(sorted((k, str(v)) for k, v in fp.items()))
    return sorted(map(key, old)) == sorted(map(key, new))


def check_output(path: str | os.PathLike, entry: Mapping | Record | None, parameters: Mapping | None = None,
                 inputs: Iterable[Mapping] | None = None, verify: bool = True,
                 algorithm: int | None = None) -> tuple[str, str]:
    """State of one output and why: ``complete``, ``missing``, ``corrupt`` or ``stale``.

    ``missing``: no file. ``corrupt``: size or (with ``verify``) checksum differ from the manifest's record.
    ``stale``: no record (written by a run that did not finish), computed by another algorithm version of its
    step than ``algorithm`` (when given), or made from other inputs or parameters than ``inputs`` /
    ``parameters`` (when given).
    """
    path = Path(path)
    if not path.is_file():
        return "missing", "no file"
    if entry is None:
        return "stale", "no manifest record (its run did not finish)"
    if isinstance(entry, Record):
        entry = entry.to_dict()
    size = path.stat().st_size
    if size != entry.get("size"):
        return "corrupt", f"size {size:,} bytes, {entry.get('size', 0):,} when written"
    if verify and not checksum_matches(path, recorded_checksum(entry)):
        return "corrupt", "checksum differs from the one recorded when written"
    written_by = int(entry.get("algorithm", FIRST_ALGORITHM))
    if algorithm is not None and written_by != algorithm:
        return "stale", (f"computed by algorithm version {written_by} of step {entry.get('step', '?')}; this "
                         f"release computes version {algorithm}")
    if parameters is not None and canonical(parameters) != canonical(entry.get("parameters", {})):
        old, new = json.loads(canonical(entry.get("parameters", {}))), json.loads(canonical(parameters))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "stale", f"parameters changed: {', '.join(changed)}"
    if inputs is not None and not same_inputs(entry.get("inputs", []), inputs):
        return "stale", "an input changed since it was written"
    return "complete", ""


#: inputs up to this size are re-hashed when verified; larger ones only when their mtime moved since recorded
VERIFY_BUDGET = 256 << 20


def verified_fingerprint(path: str | os.PathLike, *, rerun: str, required: bool = True,
                         directory: str | os.PathLike | None = None) -> dict:
    """An input result file's fingerprint (as :func:`upstream_fingerprint`), verified against the record of the
    manifest beside it first: same size, and the same checksum when the file is small (up to
    :data:`VERIFY_BUDGET`) or was modified since it was recorded.

    Parameters
    ----------
    path
        The input file (an output of an earlier step, recorded in its directory's manifest).
    rerun
        What to rerun to remake it (e.g. ``run `cytoatlas run --atlas A --out DIR``` ), ending every error.
    required
        Whether the file must be recorded; without it, a file its directory's manifest does not record (made
        by another tool, by hand) is fingerprinted as it is, and only a recorded one is verified.
    directory
        The directory whose manifest records it (default: its own; a figure in ``OUT/figures`` is recorded in
        ``OUT``'s).

    Raises
    ------
    CytoatlasError
        The file is missing or unreadable, unrecorded (with ``required``), damaged (size or checksum differ from
        its record), or its directory's manifest is unreadable.
    """
    path = Path(path)
    directory = path.parent if directory is None else Path(directory)
    try:
        entries = read_manifest(directory, strict=True)
    except ManifestError as e:
        raise CytoatlasError(f"{e}; {rerun}") from None
    try:
        st = path.stat()
    except OSError as e:
        raise CytoatlasError(f"input {path} cannot be read ({e.strerror}); {rerun}") from None
    entry = entries.get(path.relative_to(directory).as_posix())
    if entry is None:
        if required:
            raise CytoatlasError(f"input {path} is not recorded in {manifest_path(directory)} (its run did not "
                                 f"finish, or it was put there by other means), so nothing vouches for it; {rerun}")
        return upstream_fingerprint(path)
    if st.st_size != entry.get("size"):
        raise CytoatlasError(f"input {path} is damaged: {st.st_size:,} bytes, {entry.get('size', 0):,} when written "
                             f"(truncated?); {rerun}")
    recorded = recorded_checksum(entry)
    if recorded and (st.st_size <= VERIFY_BUDGET or st.st_mtime_ns != entry.get("mtime_ns")) \
            and not checksum_matches(path, recorded):
        raise CytoatlasError(f"input {path} is damaged: its checksum differs from the one recorded when it was "
                             f"written; {rerun}")
    return {"name": path.name, "size": st.st_size, "checksum": recorded or file_checksum(path)}

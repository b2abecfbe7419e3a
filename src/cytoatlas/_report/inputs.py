"""What the report reads, verified first: every table and figure of a step directory that a section shows must be
the file its step recorded (size and checksum: tables and figures are small), so that a damaged or unrecorded file
is an error naming it, not a section built from part of it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.manifest import ManifestError, read_manifest, verified_fingerprint


def verify_step_directory(directory: str | os.PathLike, step: str, kinds: Iterable[str], read: Iterable[Path],
                          rerun: str) -> None:
    """Verify the outputs of ``step`` of ``kinds`` recorded in ``directory`` and the files ``read`` (which must be
    recorded when they are there) against ``directory``'s manifest.

    Raises
    ------
    CytoatlasError
        The manifest is unreadable, or a file is missing, unrecorded or damaged; the message ends with ``rerun``.
    """
    directory = Path(directory)
    try:
        entries = read_manifest(directory, strict=True)
    except ManifestError as e:
        raise CytoatlasError(f"{e}; {rerun}") from None
    kinds = set(kinds)
    recorded = [directory / k for k, e in sorted(entries.items()) if e.get("step") == step and e.get("kind") in kinds]
    # a table that is not there gets its reader's own error (what to run first); a recorded figure that is not
    # there is an error here (the page would leave it out in silence)
    read = list(read)
    for path in dict.fromkeys([*read, *recorded]):
        if path.is_file() or path not in read:
            verified_fingerprint(path, rerun=rerun, directory=directory)

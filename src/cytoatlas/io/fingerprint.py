"""A cheap content fingerprint of an input file, recorded in every output to tell stale results."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_EDGE = 1 << 20


def file_fingerprint(path: str | os.PathLike) -> dict:
    """Size, mtime and SHA-256 of the first and last MiB: changes when the file is rewritten or touched, and
    costs ~ms even for a 100 GB atlas (a full hash would cost a read of the whole file)."""
    path = Path(path)
    st = path.stat()
    size = st.st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(_EDGE))
        if size > _EDGE:
            fh.seek(max(size - _EDGE, _EDGE))
            h.update(fh.read(_EDGE))
    return {"path": str(path.resolve()), "size": size, "mtime_ns": st.st_mtime_ns, "sha256_edges": h.hexdigest()}

"""Where the built-in CytoSig and SecAct files come from: secactpy 0.3.1's two data files, found, not imported.

secactpy is not a dependency (it pins numpy < 2 and pulls in scanpy, umap-learn, ...); only its data files
``CytoSig.tsv.gz`` and ``SecAct.tsv.gz`` are used. They are looked for, in order, in

1. the directory the user names (``--signature-dir`` or ``$CYTOATLAS_SIGNATURE_DIR``); when set, nothing else
   is looked at, so a wrong directory is an error rather than a silent fallback;
2. an installed secactpy's ``data`` directory (found with ``importlib.util.find_spec``, never imported);
3. the cytoatlas cache, ``$CYTOATLAS_CACHE/signature_data``, filled once by ``cytoatlas signatures fetch``
   (:mod:`cytoatlas._activity.signature_fetch`).

Every file is checked against the SHA-256 sums recorded below, whatever its source, so the matrices, and the
version recorded with every activity output (:data:`RELEASE`), are the same wherever the files come from.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

from cytoatlas.errors import CytoatlasError

log = logging.getLogger("cytoatlas.activity")

SIGNATURE_DIR_ENV = "CYTOATLAS_SIGNATURE_DIR"
SECACTPY_VERSION = "0.3.1"
RELEASE = f"secactpy {SECACTPY_VERSION}"
# SHA-256 of the files in secactpy-0.3.1-py3-none-any.whl (secactpy/data/...), the only release these are from
SHA256 = {
    "CytoSig.tsv.gz": "e72365938f9482b3c211610d873c037c222591a8325eb95f602c79e29c5ea2af",
    "SecAct.tsv.gz": "eda4d822132ce173f23e19104549de3c8894aa93a0bb4ec25810608c525b3f83",
}
FETCH_COMMAND = "cytoatlas signatures fetch"


def data_cache_dir() -> Path:
    """``cache_dir()/signature_data``: where ``cytoatlas signatures fetch`` puts the files."""
    from cytoatlas._activity.signatures import cache_dir  # signatures imports this module

    return cache_dir() / "signature_data"


def secactpy_data_dir() -> Path | None:
    """The ``data`` directory of an installed secactpy, or None when secactpy is not installed."""
    import importlib.util

    # find, not import: importing secactpy costs ~1.3 s and only its data files are needed
    try:
        spec = importlib.util.find_spec("secactpy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@lru_cache(maxsize=16)
def _checked(path: str, size: int, mtime_ns: int) -> str:
    # once per process and file version: SecAct (80 MB) takes ~0.06 s to hash
    return sha256_of(path)


def matches_release(path: Path, filename: str) -> bool:
    """Whether ``path`` holds exactly secactpy 0.3.1's ``filename``."""
    st = path.stat()
    return _checked(str(path.resolve()), st.st_size, st.st_mtime_ns) == SHA256[filename]


def _options() -> str:
    return (f"run `{FETCH_COMMAND}` (pip downloads secactpy {SECACTPY_VERSION}'s wheel once and keeps only its "
            f"two data files, in {data_cache_dir()}), or point --signature-dir or ${SIGNATURE_DIR_ENV} at a "
            f"directory holding {' and '.join(SHA256)} copied from secactpy {SECACTPY_VERSION}, or (Python <= 3.12, "
            f"numpy < 2) pip install secactpy=={SECACTPY_VERSION}")


def signature_data_file(filename: str) -> Path:
    """The verified path of one of secactpy 0.3.1's signature files, from the first source that has it.

    Parameters
    ----------
    filename
        ``"CytoSig.tsv.gz"`` or ``"SecAct.tsv.gz"``.

    Returns
    -------
    Path
        A file whose SHA-256 is the recorded one.

    Raises
    ------
    CytoatlasError
        One line: the named directory lacks the file or holds another one, the cached copy is damaged, or no
        source has the file (listing what to do).
    """
    if filename not in SHA256:
        raise CytoatlasError(f"{filename!r} is not a built-in signature file ({', '.join(SHA256)})")
    named = os.environ.get(SIGNATURE_DIR_ENV)
    if named:
        path = Path(named) / filename
        if not path.is_file():
            raise CytoatlasError(f"signature directory {named} (--signature-dir / ${SIGNATURE_DIR_ENV}) has no "
                                 f"{filename}; copy secactpy {SECACTPY_VERSION}'s data files there or run "
                                 f"`{FETCH_COMMAND} --signature-dir {named}`")
        if not matches_release(path, filename):
            raise CytoatlasError(f"{path} is not secactpy {SECACTPY_VERSION}'s {filename} (SHA-256 mismatch); "
                                 f"replace it, e.g. with `{FETCH_COMMAND} --signature-dir {named}`")
        return path
    other = ""
    installed = secactpy_data_dir()
    if installed is not None and (installed / filename).is_file():
        path = installed / filename
        if matches_release(path, filename):
            return path
        other = f" (the installed secactpy's {path} differs from {SECACTPY_VERSION}'s)"
        log.warning("%s is not secactpy %s's %s (SHA-256 mismatch); looking in the cache", path, SECACTPY_VERSION,
                    filename)
    path = data_cache_dir() / filename
    if path.is_file():
        if matches_release(path, filename):
            return path
        raise CytoatlasError(f"the cached {path} is damaged (SHA-256 mismatch); run `{FETCH_COMMAND}` to "
                             "download it again")
    raise CytoatlasError(f"secactpy {SECACTPY_VERSION}'s {filename} (CytoSig and SecAct signatures) was not "
                         f"found{other}: {_options()}")

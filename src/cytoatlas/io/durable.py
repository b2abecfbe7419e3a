"""Durable writes: every file the project writes appears whole or not at all.

A file is written under a temporary name in its target directory (``.NAME.tmp-PID-THREAD``), flushed to disk,
renamed over the target and the directory entry flushed too. Readers see the old file or the new one, never a
part, and after a crash the new one is whole or absent. A run that dies leaves only temporary names behind;
the next run that locks the directory removes them (:func:`leftovers`, used by :mod:`cytoatlas.io.lock`).

This module is the one place that knows the temporary name: writers get it from :func:`temporary_path` or,
better, write inside :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

# what a temporary name looks like, for the clean-up glob: ".NAME.tmp-PID-THREAD"
TEMPORARY_GLOB = ".*.tmp-*"
_MARK = ".tmp-"


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary name of ``path`` for this process and thread, in the same directory (same file system,
    so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{_MARK}{os.getpid()}-{threading.get_ident()}")


def temporary_owner(path: str | os.PathLike) -> int | None:
    """The process id a temporary name was made by, or None if ``path`` is not a temporary name."""
    name = Path(path).name
    if not name.startswith(".") or _MARK not in name:
        return None
    pid = name.rsplit(_MARK, 1)[1].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def leftovers(directory: str | os.PathLike) -> list[Path]:
    """Temporary files in ``directory`` made by other processes (runs that died, when the directory is locked)."""
    me = os.getpid()
    return sorted(p for p in Path(directory).glob(TEMPORARY_GLOB) if temporary_owner(p) not in (None, me))


def fsync_file(path: str | os.PathLike) -> None:
    """Wait until ``path``'s data is on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename into it) to disk; a file system that cannot is left as it is."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike, *, synced: bool = False) -> Path:
    """Put a finished temporary file in place: fsync it (unless the caller did: ``synced``), rename it over
    ``path``, fsync the directory."""
    path = Path(path)
    if not synced:
        fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Write ``path`` through a temporary name: the block writes the yielded path; on success it is put in place
    (:func:`replace_durably`), on any error it is deleted and ``path`` stays as it was.

    ``durable=False`` skips the fsyncs, for caches whose readers check what they read (a file cut short by a
    crash fails their test and is made again).
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        if durable:
            replace_durably(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text)
    return Path(path)

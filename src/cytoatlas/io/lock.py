"""One writer per output directory: a lock file naming the run that holds it.

A second run refuses, naming the first (pid, host, start, command). A lock left by a dead process (same host,
pid gone) or one not refreshed for ``STALE_AFTER`` seconds (another host, e.g. a SLURM node that died) is
taken over with a warning. The holder refreshes the lock's mtime as it works (:meth:`DirectoryLock.touch`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import leftovers

log = logging.getLogger("cytoatlas")
LOCK_NAME = ".cytoatlas.lock"
STALE_AFTER = 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(directory: str | os.PathLike) -> dict | None:
    """The lock's record (pid, host, start, command, age_s), or None if there is no lock."""
    path = Path(directory) / LOCK_NAME
    try:
        info = json.loads(path.read_text())
        info["age_s"] = time.time() - path.stat().st_mtime
        return info
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"pid": -1, "host": "?", "start": "?", "command": "?", "age_s": STALE_AFTER + 1}


def lock_is_live(info: dict | None) -> bool:
    """Whether a lock record belongs to a run that may still be working."""
    if info is None:
        return False
    if info.get("host") == socket.gethostname():
        return _alive(int(info.get("pid", -1)))
    return info.get("age_s", 0) < STALE_AFTER


def describe(info: dict) -> str:
    """A lock record as text: pid, host, start and command."""
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('start')} "
            f"({info.get('command', '?')})")


def remove_leftovers(directory: str | os.PathLike, *, recursive: bool = False) -> None:
    """Delete the temporary files other processes left in ``directory`` (and, ``recursive``, in every folder
    below it; call with its lock held)."""
    directory = Path(directory)
    folders = [directory, *sorted(p for p in directory.rglob("*") if p.is_dir())] if recursive else [directory]
    for folder in folders:
        for tmp in leftovers(folder):
            log.info("removing %s, left by an interrupted run", tmp)
            tmp.unlink(missing_ok=True)


class DirectoryLock:
    """Hold ``directory/.cytoatlas.lock`` for the duration of a ``with`` block."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._held = False
        self._created = False

    def __enter__(self) -> DirectoryLock:
        self._created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CytoatlasError(f"cannot create output directory {self.directory}: {e.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise CytoatlasError(f"output directory {self.directory} is not writable")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "start": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv[:6])[:200]}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = read_lock(self.directory)
                if info is not None and info.get("pid") == os.getpid() and info.get("host") == record["host"]:
                    raise CytoatlasError(f"{self.directory} is already locked by this process") from None
                if lock_is_live(info):
                    raise CytoatlasError(f"{self.directory} is in use by another cytoatlas run: {describe(info)}; "
                                         f"wait for it or stop it (its lock: {self.path})") from None
                if info is not None:
                    log.warning("taking over the lock of a run that is gone: %s", describe(info))
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh)
            self._held = True
            self._remove_leftovers()
            return self
        raise CytoatlasError(f"could not lock {self.directory}: another run took it at the same moment")

    def _remove_leftovers(self) -> None:
        """Temporary files of runs that died: with the lock held, no other writer is alive."""
        remove_leftovers(self.directory)

    def touch(self) -> None:
        """Refresh the lock's mtime: proof of life for runs on other hosts."""
        if self._held:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def __exit__(self, *exc) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
        if self._created:  # a run that failed before writing anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                self.directory.rmdir()

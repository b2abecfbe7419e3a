"""Crash points for the restart tests: ``CYTOATLAS_KILL_AT=point:n[:SIGNAL]`` sends SIGKILL (or the named
signal, e.g. ``TERM``) to the process the n-th time it reaches ``point``: a stand-in for kill -9, power loss, an
OOM kill or a SLURM time limit at an exact moment. With ``CYTOATLAS_KILL_ONCE=FILE`` only the first process
to get there dies (it creates FILE): a Dask worker killed once, whose task is then retried elsewhere. Unset, as
in every real run, a crash point costs one lookup. The variable is read at each call, not at import: local Dask
workers are forked from a process that imported this module before a test set it."""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Signal this process here if the environment asks for it."""
    spec = os.environ.get("CYTOATLAS_KILL_AT")
    if not spec:
        return
    point, n, sig = (spec.split(":") + ["", "", ""])[:3]
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(n or 1):
        once = os.environ.get("CYTOATLAS_KILL_ONCE")
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}") if sig else signal.SIGKILL)

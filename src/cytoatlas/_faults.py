"""Crash points for the restart tests: ``CYTOATLAS_KILL_AT=point:n`` kills the process with SIGKILL the n-th
time it reaches ``point`` (a stand-in for kill -9, power loss or an OOM kill at an exact moment). Unset, as in
every real run, a crash point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("CYTOATLAS_KILL_AT", "")
_POINT, _, _N = _SPEC.partition(":")
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here if the environment asks for it."""
    if _POINT != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(_N or 1):
        os.kill(os.getpid(), signal.SIGKILL)

"""The per-cell pass' checkpoint: the gene means (pass 1 done), the row the scoring pass reached, and the
summaries so far, beside the partial activity files flushed up to that row.

A checkpoint is written only after every partial file is flushed to disk, so on resume the files hold at least
the rows it names; rows past it are written again with the same values. It is keyed by everything the
results depend on (input, parameters, sets, version): a checkpoint of another run is refused.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from cytoatlas.errors import CytoatlasError
from cytoatlas.io import durable
from cytoatlas.io.manifest import canonical

log = logging.getLogger("cytoatlas.cells")


def save_checkpoint(path: Path, identity: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write the checkpoint atomically (``identity`` is stored as canonical JSON)."""
    with durable.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, identity=np.array(canonical(identity)), **arrays)


def load_checkpoint(path: Path, identity: dict) -> dict[str, np.ndarray] | None:
    """The checkpoint's arrays if it is this run's, None if there is none.

    Raises
    ------
    CytoatlasError
        If it belongs to another run (other input, parameters or sets) or cannot be read.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = str(z["identity"])
            arrays = {k: z[k] for k in z.files if k != "identity"}
    except (OSError, ValueError, KeyError) as e:
        raise CytoatlasError(f"checkpoint {path} is unreadable ({e}); delete it or run without --resume") from None
    if saved != canonical(identity):
        old, new = json.loads(saved), json.loads(canonical(identity))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise CytoatlasError(f"checkpoint {path} is of another run ({', '.join(changed)} differ); run without "
                             "--resume to start again")
    return arrays


def remove(paths: list[os.PathLike]) -> None:
    for p in paths:
        Path(p).unlink(missing_ok=True)


class Stopped(Exception):
    """SIGTERM arrived; the checkpoint is saved."""


class Checkpointer:
    """Checkpoints every ``every`` seconds and on SIGTERM (then stops): partial files flushed first."""

    def __init__(self, path: Path, identity: dict, every: float, lock, writers, state):
        self.path, self.identity, self.every, self.lock, self.writers, self.state = (path, identity, every, lock,
                                                                                   writers, state)
        self.last = time.perf_counter()
        self.terminated = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)

    def _on_term(self, signum, frame) -> None:
        self.terminated = True  # acted on between blocks, where the files and sums agree

    def after_block(self, next_row: int) -> None:
        self.lock.touch()
        if self.terminated or time.perf_counter() - self.last >= self.every:
            for w in self.writers:
                w.flush()
            save_checkpoint(self.path, self.identity, {**self.state(), "next_row": np.int64(next_row)})
            self.last = time.perf_counter()
            log.info("checkpoint at row %s", f"{next_row:,}")
            if self.terminated:
                raise Stopped

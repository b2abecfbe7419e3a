"""Checkpoints of the streaming pass: the accumulator state and the next row, saved atomically.

A pass over CIMA takes hours; a SLURM time limit, an OOM kill or a power cut should cost minutes. The state is
saved every few minutes and on SIGTERM, and a run with ``resume`` continues from it. Block boundaries depend
only on the row a block starts at, so the resumed pass adds exactly the blocks the uninterrupted one would have
added, in the same order, and its outputs are identical. A checkpoint records what it was made from (input
fingerprint, levels, parameters, batch size, version) and is refused for anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cytoatlas._pseudobulk.state import AtomState
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import atomic_path
from cytoatlas.io.manifest import canonical


def save_checkpoint(path: Path, state: AtomState, next_row: int, identity: dict) -> None:
    """Write the state under a temporary name, fsync, rename: an old checkpoint or a new one, never a part."""
    from cytoatlas._faults import crash_point

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, next_row=np.array(next_row), identity=np.array(canonical(identity)), **state.to_arrays())
        crash_point("checkpoint_written")


def checkpoint_levels(path: Path) -> list[str]:
    """The levels a checkpoint's run was computing (empty if it cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(json.loads(str(z["identity"]))["levels"])
    except (OSError, ValueError, KeyError):
        return []


def load_checkpoint(path: Path, identity: dict) -> tuple[AtomState, int]:
    """The saved state and the row to continue from; refused if made from other inputs or parameters."""
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = json.loads(str(z["identity"]))
            arrays = {k: z[k] for k in z.files if k not in ("identity", "next_row")}
            next_row = int(z["next_row"])
    except (OSError, ValueError, KeyError) as e:
        raise CytoatlasError(f"checkpoint {path} is unreadable ({e}); delete it to start over") from None
    if canonical(saved) != canonical(identity):
        new = json.loads(canonical(identity))
        changed = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k))
        raise CytoatlasError(f"checkpoint {path} was made from a different run (changed: {', '.join(changed)}); "
                             "run without --resume to start over, or restore the original input and options")
    return AtomState.from_arrays(arrays), next_row

"""Both per-cell passes on a Dask cluster: partitions of whole stripes, each a task that opens the atlas by path.

Pass 1 tasks return their stripes' gene sums, which the driver folds in stripe order (the sums, and so the
means, are those of one process). Pass 2 tasks return their rows' results, which the driver writes in file
order; at most a few partitions are in flight, so memory stays bounded. Every cell is scored from its own
row with the same kernel, so the files are bit-identical to the single-process run's.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from cytoatlas._cells import means
from cytoatlas._cells.means import GeneSums
from cytoatlas._cells.scoring import score_block
from cytoatlas._faults import crash_point
from cytoatlas._pseudobulk.partitions import partition_bounds
from cytoatlas.errors import CytoatlasError
from cytoatlas.progress import Progress

log = logging.getLogger("cytoatlas.cells")
# pass 2 partitions: results of 2 stripes of SecAct cells (~150 MB float32 per matrix) travel to the driver
SCORE_STRIPES = 2


def _open(h5ad: str, counts_key: str, expected: dict):
    from cytoatlas.io.h5ad import open_counts, open_h5ad

    st = os.stat(h5ad) if os.path.exists(h5ad) else None
    if st is None or (st.st_size, st.st_mtime_ns) != (expected["size"], expected["mtime_ns"]):
        raise CytoatlasError(f"worker on {os.uname().nodename} does not see the driver's {h5ad}; workers need "
                             "the atlas on a shared file system")
    f = open_h5ad(h5ad)
    return f, open_counts(f, counts_key)


def sums_partition(h5ad: str, counts_key: str, expected: dict, lo: int, hi: int, kept: np.ndarray,
                   slot: np.ndarray, n_slots: int, batch_size: int) -> GeneSums:
    """Rows ``lo:hi`` (whole stripes) into a :class:`GeneSums` of their own stripes (a task)."""
    f, counts = _open(h5ad, counts_key, expected)
    sums = GeneSums.empty(n_slots, fold=False)
    with f, counts:
        for block in counts.blocks(batch_size, lo, hi):
            sums.add_block(block, kept[block.start - lo: block.stop - lo], slot)
    return sums.finish()


def score_partition(h5ad: str, counts_key: str, expected: dict, lo: int, hi: int, kept: np.ndarray, models,
                    layers: tuple[str, ...], batch_size: int) -> list[dict[str, np.ndarray]]:
    """The results of rows ``lo:hi``'s kept cells, per model ``{matrix: cells x signatures}`` (a task)."""
    f, counts = _open(h5ad, counts_key, expected)
    parts: list[list[dict]] = [[] for _ in models]
    with f, counts:
        for block in counts.blocks(batch_size, lo, hi):
            crash_point("cells_partition_block")
            for _, outs in score_block(block, kept[block.start - lo: block.stop - lo], models, layers):
                for store, arrays in zip(parts, outs, strict=True):
                    store.append(arrays)
    return [{k: np.concatenate([a[k] for a in store]) for k in store[0]} if store else {} for store in parts]


def sums_on_cluster(cluster, h5ad: str, counts_key: str, fingerprint: dict, plan, batch_size: int,
                    label: str) -> GeneSums:
    """Pass 1 on the cluster: stripe sums from every partition, folded in order."""
    client = cluster.client
    n_rows = len(plan.kept)
    bounds = partition_bounds(n_rows, means.STRIPE_ROWS, cluster.threads())
    slot = client.scatter(plan.slot, broadcast=True)
    t0 = time.perf_counter()
    futures = [client.submit(sums_partition, h5ad, counts_key, fingerprint, lo, hi, plan.kept[lo:hi], slot,
                             len(plan.candidates), batch_size, key=f"cytoatlas-cells-sums-{lo}-{hi}-{t0}",
                             retries=2, pure=False) for lo, hi in bounds]
    total = GeneSums.empty(len(plan.candidates))
    for fut in futures:
        total.absorb(fut.result())
    log.info("%s: gene means from %d partitions", label, len(bounds))
    return total


def score_on_cluster(cluster, h5ad: str, counts_key: str, fingerprint: dict, plan, models, layers, batch_size: int,
                     start_row: int, label: str):
    """Pass 2 on the cluster, as ``(start, stop, 0, outputs, True)`` pieces in file order (see
    :func:`cytoatlas._cells.run._score_local`); a few partitions ahead are in flight."""
    from collections import deque

    client = cluster.client
    n_rows = len(plan.kept)
    rows = SCORE_STRIPES * means.STRIPE_ROWS
    first = -(-start_row // rows) * rows if start_row % rows else start_row
    bounds = ([(start_row, min(first, n_rows))] if first > start_row else []) + \
        [(lo, min(lo + rows, n_rows)) for lo in range(first, n_rows, rows)]
    shared = client.scatter(models, broadcast=True)
    ahead = 2 * cluster.threads()
    t0 = time.perf_counter()
    progress = Progress(log, f"{label} partitions", len(bounds), unit="partitions")

    def submit(lo: int, hi: int):
        return client.submit(score_partition, h5ad, counts_key, fingerprint, lo, hi, plan.kept[lo:hi], shared,
                             layers, batch_size, key=f"cytoatlas-cells-score-{lo}-{hi}-{t0}", retries=2, pure=False)

    queue = deque()
    todo = iter(bounds)
    for lo, hi in todo:
        queue.append((lo, hi, submit(lo, hi)))
        if len(queue) >= ahead:
            break
    while queue:
        lo, hi, fut = queue.popleft()
        outs = fut.result()
        nxt = next(todo, None)
        if nxt is not None:
            queue.append((*nxt, submit(*nxt)))
        progress.update(1)
        yield lo, hi, 0, outs, True
        del outs, fut

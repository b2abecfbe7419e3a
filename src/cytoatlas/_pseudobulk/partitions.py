"""The streaming pass as a map-reduce on a Dask cluster: row partitions accumulated by tasks, merged in a tree.

Each task opens the atlas by path (h5py handles do not pickle), streams its rows into an :class:`AtomState`
over the atoms its cells belong to (a partition of sample-ordered cells touches a few hundred of CIMA's 30 k
atoms, so it ships megabytes, not the full 4.5 GB table), and returns it. Partitions are whole moment stripes,
so the merged state, and every output, is bit-identical to the single-process pass for any number of workers
(see :mod:`cytoatlas._pseudobulk.state`). A task is a pure function of its arguments: when a worker dies,
Dask reruns its tasks elsewhere and the result does not change. The driver keeps everything after the pass.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from cytoatlas._faults import crash_point
from cytoatlas._pseudobulk.state import AtomState
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.chunks import tune_allocator
from cytoatlas.io.prefetch import Prefetch
from cytoatlas.progress import Progress

log = logging.getLogger("cytoatlas.pseudobulk")
MAX_PARTITION_CELLS = 250_000


@dataclass
class PartialState:
    """An :class:`AtomState` over the atoms ``atom_ids`` (sorted global ids of its rows) only."""

    atom_ids: np.ndarray
    state: AtomState
    workers: frozenset[str] = frozenset()  # host:pid[:SLURM job] of the processes that computed it

    def __getstate__(self) -> dict:
        # counts travel between processes as uint16 when they fit (most atoms' sums do): half the bytes of a
        # state, which the driver waits for at the end of the pass
        d = dict(self.__dict__)
        sums = self.state.atom_sums
        if sums.dtype == np.uint32 and sums.size and int(sums.max()) <= np.iinfo(np.uint16).max:
            d["state"] = dataclasses.replace(self.state, atom_sums=sums.astype(np.uint16))
        return d

    def __setstate__(self, d: dict) -> None:
        # the sums stay uint16 here: adding them into a wider state (AtomState.absorb) needs no widened copy,
        # which saved the driver ~0.17 s of page faults on the last, waited-for state
        self.__dict__.update(d)

    def expand(self, ids: np.ndarray) -> AtomState:
        """The state over ``ids`` (a sorted superset of ``atom_ids``), zero rows for the atoms not seen."""
        s = self.state
        if len(ids) == len(self.atom_ids):
            return s
        rows = np.searchsorted(ids, self.atom_ids)
        sums = np.zeros((len(ids), s.atom_sums.shape[1]), s.atom_sums.dtype)
        cells, totals = np.zeros(len(ids), np.int64), np.zeros(len(ids))
        sums[rows], cells[rows], totals[rows] = s.atom_sums, s.atom_cells, s.atom_totals
        return AtomState(sums, cells, totals, s.gene_nnz, s.moments, s.stripe_rows, s.folded, dict(s.stripes))


def merge_partials(a: PartialState, b: PartialState) -> PartialState:
    """Two partitions' states as one (a task: runs on a worker)."""
    ids = np.union1d(a.atom_ids, b.atom_ids)
    return PartialState(ids, a.expand(ids).merge(b.expand(ids)), a.workers | b.workers)


def prepare_worker(probe) -> None:
    """Run once on every worker before the pass: glibc's allocator settings (see
    :func:`~cytoatlas.io.chunks.tune_allocator`; Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``, which made
    the pass ~40 % slower), then the compiled kernels."""
    tune_allocator()
    AtomState.warm_up(probe)


def partition_bounds(n_rows: int, stripe_rows: int, n_partitions: int) -> list[tuple[int, int]]:
    """Row ranges of about ``n_rows / n_partitions`` rows, each made of whole stripes (the last one ends at
    ``n_rows``).

    Edges are the even split of the rows rounded to the nearest stripe edge (not an even split of the stripes,
    which counts a short last stripe as a whole one: 300 k rows in 2 made 163,840 + 136,160 rows, and the pass
    waited for the larger partition).
    """
    n_stripes = max(1, -(-n_rows // stripe_rows))
    cuts = np.linspace(0, n_rows, min(n_partitions, n_stripes) + 1) / stripe_rows
    edges = np.unique(np.append(cuts[:-1].round(), n_stripes).astype(int))
    rows = [min(int(e) * stripe_rows, n_rows) for e in edges]
    return [(lo, hi) for lo, hi in zip(rows[:-1], rows[1:], strict=True) if hi > lo] or [(0, n_rows)]


def accumulate_partition(h5ad: str, counts_key: str, expected: dict, lo: int, hi: int, cell_atom: np.ndarray,
                         n_genes: int, batch_size: int, stripe_rows: int) -> PartialState:
    """Rows ``lo:hi`` of the counts into a :class:`PartialState` (a task: runs on a worker).

    ``cell_atom`` holds the rows' global atom codes (-1 = excluded); ``expected`` the atlas' size and mtime as
    the driver saw them, so that a worker seeing another file (no shared file system, a file replaced meanwhile)
    fails instead of mixing atlases.
    """
    from cytoatlas.io.h5ad import open_counts, open_h5ad

    st = os.stat(h5ad) if os.path.exists(h5ad) else None
    if st is None or (st.st_size, st.st_mtime_ns) != (expected["size"], expected["mtime_ns"]):
        seen = "no such file" if st is None else f"size {st.st_size:,}, mtime_ns {st.st_mtime_ns}"
        raise CytoatlasError(f"worker on {os.uname().nodename} sees {h5ad} as {seen}, not the driver's file "
                             f"(size {expected['size']:,}, mtime_ns {expected['mtime_ns']}); workers need "
                             "the atlas on a shared file system")
    ids, local = np.unique(cell_atom, return_inverse=True)
    keep = ids >= 0
    codes = np.where(keep[local], local - (~keep).sum(), -1).astype(np.int32)
    ids = ids[keep]
    state = AtomState.empty(len(ids), n_genes, stripe_rows=stripe_rows)
    # the next block is read and decoded on a second thread while this one is added (as in one process)
    with open_h5ad(h5ad) as f, open_counts(f, counts_key) as counts, \
            Prefetch(counts.blocks(batch_size, lo, hi)) as blocks:
        for block in blocks:
            crash_point("partition_block")
            state.add_block(block, codes[block.start - lo: block.stop - lo])
            del block
    job = os.environ.get("SLURM_JOB_ID")
    who = f"{os.uname().nodename}:{os.getpid()}" + (f":slurm-job-{job}" if job else "")
    return PartialState(ids.astype(np.int64), state.finish(), frozenset([who]))


def accumulate_on_cluster(cluster, h5ad: str, counts_key: str, fingerprint: dict, cell_atom: np.ndarray,
                          n_atoms: int, n_genes: int, batch_size: int, label: str) -> AtomState:
    """The whole pass on a :class:`~cytoatlas.cluster.Cluster`: partitions in parallel, merged in a tree as
    they finish."""
    from distributed import as_completed

    from cytoatlas._pseudobulk import state as state_module

    client = cluster.client
    stripe_rows = state_module.STRIPE_ROWS
    n_threads = cluster.threads()
    # one partition per worker thread (each merge of two states costs a pass over atoms x genes), and more when
    # partitions would be large, so that a lost worker costs at most ~MAX_PARTITION_CELLS cells to redo
    bounds = partition_bounds(len(cell_atom), stripe_rows,
                              max(n_threads, -(-len(cell_atom) // MAX_PARTITION_CELLS)))
    log.info("%s: %d partitions of ~%s cells on %d worker thread(s)", label, len(bounds),
             f"{bounds[0][1] - bounds[0][0]:,}", n_threads)
    progress = Progress(log, label, len(bounds), unit="partitions")
    t0 = time.perf_counter()
    futures = [client.submit(accumulate_partition, h5ad, counts_key, fingerprint, lo, hi, cell_atom[lo:hi],
                             n_genes, batch_size, stripe_rows, key=f"cytoatlas-partition-{lo}-{hi}-{t0}",
                             retries=2, pure=False)
               for lo, hi in bounds]
    pending = as_completed(futures)
    ready = []
    merged: AtomState | None = None
    workers: frozenset[str] = frozenset()
    first = True
    for fut in pending:
        if fut.status == "error":
            fut.result()  # raises the task's error here
        if fut.key.startswith("cytoatlas-partition"):
            if first:
                log.info("first partition done in %.2fs", time.perf_counter() - t0)
                first = False
            progress.update(1)
        ready.append(fut)
        # pairs of states merge on the workers while more results are to come; the last two come here as each
        # finishes and are added in place (a merge task would ship both to a worker and the result back here)
        while len(ready) >= 2 and pending.count() + len(ready) > 2:
            a, b = ready.pop(), ready.pop()
            pending.add(client.submit(merge_partials, a, b, retries=2, pure=False))
        if ready and pending.count() + len(ready) <= 2:
            for f in ready:
                part: PartialState = f.result()
                workers |= part.workers
                if merged is None:  # uint32 from the start: states arrive as uint16 when their counts fit
                    merged = AtomState.empty(n_atoms, part.state.atom_sums.shape[1], part.state.stripe_rows)
                merged.absorb(part.state, None if len(part.atom_ids) == n_atoms else part.atom_ids)
            ready.clear()
    log.info("%s: pass done in %.2fs on %d worker process(es): %s", label, time.perf_counter() - t0,
             len(workers), ", ".join(sorted(workers)))
    if merged is None or merged.stripes or merged.open_stripe >= 0:
        raise CytoatlasError("internal: partitions did not cover every stripe")
    return merged

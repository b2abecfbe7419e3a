"""The accumulator state of a pass: a mergeable value.

The same :class:`AtomState` serves the block loop (``add_block``), checkpoints and the map-reduce across
workers (``merge``). Atom sums are exact integers, so they do not depend on how the cells were split. The
per-gene moments are floating point, so their rounding would: they are therefore summed per *stripe* of
``stripe_rows`` (16,384) consecutive cells (at fixed positions in the file), and the stripes' moments are merged with
Chan et al.'s formula in stripe order. Every path (any batch size, threads, any number of Dask workers, a
resumed run) adds the same numbers in the same order, so outputs are bit-identical.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from cytoatlas._faults import crash_point
from cytoatlas._pseudobulk._kernels import BAD_VALUE, OK, add_atom_sums, add_moments
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import CSRBlock

# Counts accumulate in uint32 (half of int64's memory: CIMA's ~30 k atoms x 36 k genes is 4.4 GB, not 8.7 GB)
# until an atom's total could overflow it; then the whole array widens to int64, exact up to 2**53.
_LIMITS = {np.dtype(np.uint32): float(2**32 - 1), np.dtype(np.int64): float(2**53)}


@dataclass
class GeneMoments:
    """Count, mean and sum of squared deviations per gene (Chan et al.'s mergeable form)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, n_genes: int) -> GeneMoments:
        return cls(0, np.zeros(n_genes), np.zeros(n_genes))

    @classmethod
    def from_sums(cls, n: int, s1: np.ndarray, s2: np.ndarray) -> GeneMoments:
        if n == 0:
            return cls.empty(len(s1))
        mean = s1 / n
        return cls(n, mean, np.maximum(s2 - s1 * mean, 0.0))

    def merge(self, other: GeneMoments) -> GeneMoments:
        n = self.n + other.n
        if self.n == 0 or other.n == 0:
            return other if self.n == 0 else self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return GeneMoments(n, mean, m2)

    def std(self, ddof: int = 1) -> np.ndarray:
        if self.n - ddof <= 0:
            return np.full_like(self.mean, np.nan)
        return np.sqrt(self.m2 / (self.n - ddof))


# cells per stripe of the moments (see the module docstring): Dask partitions are made of whole stripes, so
# small enough to balance a few workers on 300 k cells; a stripe costs one merge of per-gene arrays
STRIPE_ROWS = 1 << 14


@dataclass
class AtomState:
    """Everything a pass accumulates: atom x gene count sums, atom cell counts and library totals,
    and per-gene moments of single-cell log1p CPM over all kept cells.

    ``moments`` holds stripes ``0 .. folded - 1`` merged in order; ``stripes`` the finished stripes that cannot
    be merged yet (a partition that does not start at row 0 keeps its own until it meets stripe 0); ``open_*``
    the running sums of the stripe being filled (``open_acc``: per gene, sum, sum of squares, nonzeros).
    """

    atom_sums: np.ndarray
    atom_cells: np.ndarray
    atom_totals: np.ndarray
    gene_nnz: np.ndarray
    moments: GeneMoments
    stripe_rows: int = STRIPE_ROWS
    folded: int = 0
    stripes: dict[int, GeneMoments] = field(default_factory=dict)
    open_stripe: int = -1
    open_n: int = 0
    open_acc: np.ndarray | None = None

    @classmethod
    def empty(cls, n_atoms: int, n_genes: int, stripe_rows: int | None = None) -> AtomState:
        return cls(
            atom_sums=np.zeros((n_atoms, n_genes), dtype=np.uint32),
            atom_cells=np.zeros(n_atoms, dtype=np.int64),
            atom_totals=np.zeros(n_atoms),
            gene_nnz=np.zeros(n_genes, dtype=np.int64),
            moments=GeneMoments.empty(n_genes),
            stripe_rows=int(stripe_rows or STRIPE_ROWS),
        )

    @staticmethod
    def warm_up(probe: CSRBlock) -> None:
        """Load the compiled kernels for ``probe``'s dtypes (seconds of numba start-up, paid while the first
        block is read rather than after). A failure here is left for the real call to raise."""
        data, indices, indptr, none = probe.data[:0], probe.indices[:0], probe.indptr[:1], np.zeros(0, np.int32)
        try:
            add_moments(data, indices, indptr, 0, 0, none, np.zeros((1, 3)))
            for dtype in _LIMITS:
                add_atom_sums(data, indices, indptr, np.zeros(0, np.int64), 0, none, np.zeros((1, 1), dtype),
                              np.zeros(1), 1.0)
        except Exception:  # noqa: BLE001
            pass

    def _widen(self) -> None:
        self.atom_sums = self.atom_sums.astype(np.int64)

    def add_block(self, block: CSRBlock, cell_atom: np.ndarray, pool: Executor | None = None) -> None:
        """Accumulate one CSR row block; ``cell_atom`` holds the block's atom codes (-1 = excluded).

        With a ``pool``, the atom sums are added on one of its threads while this one adds the moments.
        """
        n_genes = self.atom_sums.shape[1]
        if len(block.indices) and (block.indices.min() < 0 or block.indices.max() >= n_genes):
            raise CytoatlasError(f"rows {block.start}-{block.stop}: gene indices out of range (corrupt CSR)")
        n_rows = block.stop - block.start
        kept = np.flatnonzero(cell_atom >= 0)
        rows = kept[np.argsort(cell_atom[kept], kind="stable")]
        sums = pool.submit(self._add_atom_sums, block, rows, cell_atom) if pool is not None else None
        row = 0
        try:
            while row < n_rows:
                stripe = (block.start + row) // self.stripe_rows
                if stripe != self.open_stripe:
                    self._open(stripe)
                end = min(n_rows, (stripe + 1) * self.stripe_rows - block.start)
                status, pos = add_moments(block.data, block.indices, block.indptr, row, end, cell_atom,
                                          self.open_acc)
                if status == BAD_VALUE:
                    cell = block.start + int(np.searchsorted(block.indptr, pos, side="right")) - 1
                    raise CytoatlasError(f"counts must be non-negative integers, found {block.data[pos]!r} at cell "
                                         f"{cell}; point `counts` at raw counts (e.g. layers/counts or raw/X)")
                self.open_n += int(np.count_nonzero(cell_atom[row:end] >= 0))
                if block.start + end == (stripe + 1) * self.stripe_rows:
                    self._close()
                row = end
        except BaseException:
            if sums is not None:  # it writes into this state: let it finish before the error goes up
                sums.exception()
            raise
        if sums is None:
            self._add_atom_sums(block, rows, cell_atom)
        else:
            sums.result()
        crash_point("mid_block")  # the counts of this block are in, its cell counts not yet
        self.atom_cells += np.bincount(cell_atom[kept], minlength=len(self.atom_cells))

    def _add_atom_sums(self, block: CSRBlock, rows: np.ndarray, cell_atom: np.ndarray) -> None:
        first = 0
        while True:
            status, first = add_atom_sums(block.data, block.indices, block.indptr, rows, first, cell_atom,
                                          self.atom_sums, self.atom_totals, _LIMITS[self.atom_sums.dtype])
            if status == OK:
                return
            if self.atom_sums.dtype == np.int64:
                raise CytoatlasError("an atom's total count exceeds 2**53; counts cannot be summed exactly")
            self._widen()

    def _open(self, stripe: int) -> None:
        if self.open_stripe >= 0:
            raise CytoatlasError(f"internal: stripe {self.open_stripe} left open before stripe {stripe}")
        self.open_stripe, self.open_n = stripe, 0
        self.open_acc = np.zeros((self.atom_sums.shape[1], 3))

    def _close(self) -> None:
        acc = self.open_acc
        self.stripes[self.open_stripe] = GeneMoments.from_sums(self.open_n, acc[:, 0].copy(), acc[:, 1].copy())
        self.gene_nnz += acc[:, 2].astype(np.int64)
        self.open_stripe, self.open_n, self.open_acc = -1, 0, None
        self._fold()

    def _fold(self) -> None:
        while self.folded in self.stripes:
            self.moments = self.moments.merge(self.stripes.pop(self.folded))
            self.folded += 1

    def finish(self) -> AtomState:
        """Close the last, partial stripe (at the end of the rows this state covers)."""
        if self.open_stripe >= 0:
            self._close()
        return self

    @property
    def n_kept(self) -> int:
        """Kept cells added so far (in any stripe)."""
        return int(self.atom_cells.sum())

    def merge(self, other: AtomState) -> AtomState:
        """The state of both passes together (finished states of disjoint, stripe-aligned row ranges of the
        same atom table); neither is changed."""
        copy = AtomState(self.atom_sums.copy(), self.atom_cells.copy(), self.atom_totals.copy(),
                         self.gene_nnz.copy(), self.moments, self.stripe_rows, self.folded, dict(self.stripes))
        return copy.absorb(other)

    def absorb(self, other: AtomState, rows: np.ndarray | None = None) -> AtomState:
        """Add ``other`` into this state in place and return it (:meth:`merge` without a copy: a CIMA state is
        4.5 GB). ``rows``: this state's atoms that ``other``'s rows are (sorted, unique), all of them if None."""
        if self.open_stripe >= 0 or other.open_stripe >= 0:
            raise CytoatlasError("internal: merging a state with an open stripe (call finish() first)")
        if self.stripe_rows != other.stripe_rows or set(self.stripes) & set(other.stripes) \
                or (self.folded and other.folded):
            raise CytoatlasError("internal: merging states of overlapping rows or different stripes")
        at = slice(None) if rows is None else rows
        totals = self.atom_totals.copy()
        totals[at] += other.atom_totals
        # uint16 sums (a partial state as it travels between processes) are added at uint32 or wider
        dtype = np.promote_types(np.promote_types(self.atom_sums.dtype, other.atom_sums.dtype), np.uint32)
        if dtype != np.int64 and totals.max(initial=0) >= _LIMITS[dtype]:
            dtype = np.dtype(np.int64)
        if self.atom_sums.dtype != dtype:
            self.atom_sums = self.atom_sums.astype(dtype)
        if rows is None:
            np.add(self.atom_sums, other.atom_sums, out=self.atom_sums)
        else:
            self.atom_sums[rows] += other.atom_sums
        self.atom_totals = totals
        self.atom_cells[at] += other.atom_cells
        self.gene_nnz += other.gene_nnz
        if other.folded:
            self.moments, self.folded = other.moments, other.folded
        self.stripes.update(other.stripes)
        self._fold()
        return self

    def final_moments(self) -> GeneMoments:
        """The moments over all rows; every stripe from 0 must be in (finished and merged)."""
        if self.open_stripe >= 0 or self.stripes:
            missing = sorted(self.stripes)[:3]
            raise CytoatlasError(f"internal: moments incomplete (stripes before {missing} are missing)")
        return self.moments

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (for a checkpoint); :meth:`from_arrays` restores it exactly."""
        n_genes = self.atom_sums.shape[1]
        done = sorted(self.stripes)
        empty = np.zeros((0, n_genes))
        return {"atom_sums": self.atom_sums, "atom_cells": self.atom_cells, "atom_totals": self.atom_totals,
                "gene_nnz": self.gene_nnz, "moments_n": np.array(self.moments.n), "moments_mean": self.moments.mean,
                "moments_m2": self.moments.m2, "stripe_rows": np.array(self.stripe_rows),
                "folded": np.array(self.folded), "stripe_index": np.array(done, dtype=np.int64),
                "stripe_n": np.array([self.stripes[i].n for i in done], dtype=np.int64),
                "stripe_mean": np.array([self.stripes[i].mean for i in done]) if done else empty,
                "stripe_m2": np.array([self.stripes[i].m2 for i in done]) if done else empty,
                "open_stripe": np.array(self.open_stripe), "open_n": np.array(self.open_n),
                "open_acc": self.open_acc if self.open_acc is not None else np.zeros((0, 3))}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> AtomState:
        open_stripe = int(a["open_stripe"])
        return cls(atom_sums=a["atom_sums"], atom_cells=a["atom_cells"], atom_totals=a["atom_totals"],
                   gene_nnz=a["gene_nnz"],
                   moments=GeneMoments(int(a["moments_n"]), a["moments_mean"], a["moments_m2"]),
                   stripe_rows=int(a["stripe_rows"]), folded=int(a["folded"]),
                   stripes={int(i): GeneMoments(int(n), m, m2) for i, n, m, m2 in
                            zip(a["stripe_index"], a["stripe_n"], a["stripe_mean"], a["stripe_m2"], strict=True)},
                   open_stripe=open_stripe, open_n=int(a["open_n"]),
                   open_acc=a["open_acc"] if open_stripe >= 0 else None)

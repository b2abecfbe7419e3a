"""The accumulator state of a pass: a mergeable value.

The same :class:`AtomState` serves the block loop (``add_block``), checkpoints and the map-reduce across
workers (``merge``). Atom sums are exact integers, so results do not depend on how cells were split; the
per-gene moments are merged with Chan et al.'s parallel formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytoatlas._faults import crash_point
from cytoatlas._pseudobulk._kernels import BAD_VALUE, NEEDS_WIDER, accumulate_csr
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


@dataclass
class AtomState:
    """Everything a pass accumulates: atom x gene count sums, atom cell counts and library totals,
    and per-gene moments of single-cell log1p CPM over all kept cells."""

    atom_sums: np.ndarray
    atom_cells: np.ndarray
    atom_totals: np.ndarray
    gene_nnz: np.ndarray
    moments: GeneMoments

    @classmethod
    def empty(cls, n_atoms: int, n_genes: int) -> AtomState:
        return cls(
            atom_sums=np.zeros((n_atoms, n_genes), dtype=np.uint32),
            atom_cells=np.zeros(n_atoms, dtype=np.int64),
            atom_totals=np.zeros(n_atoms),
            gene_nnz=np.zeros(n_genes, dtype=np.int64),
            moments=GeneMoments.empty(n_genes),
        )

    @staticmethod
    def warm_up(probe: CSRBlock) -> None:
        """Load the compiled kernel for ``probe``'s dtypes (seconds of numba start-up, paid while the first
        block is read rather than after). A failure here is left for the real call to raise."""
        state = AtomState.empty(1, 1)
        try:
            accumulate_csr(probe.data[:0], probe.indices[:0], probe.indptr[:1], 0, np.zeros(0, np.int32),
                           state.atom_sums, state.atom_totals, 1.0, np.zeros(1), np.zeros(1), state.gene_nnz)
        except Exception:  # noqa: BLE001
            pass

    def _widen(self) -> None:
        self.atom_sums = self.atom_sums.astype(np.int64)

    def add_block(self, block: CSRBlock, cell_atom: np.ndarray) -> None:
        """Accumulate one CSR row block; ``cell_atom`` holds the block's atom codes (-1 = excluded)."""
        n_genes = self.atom_sums.shape[1]
        s1, s2 = np.zeros(n_genes), np.zeros(n_genes)
        if len(block.indices) and (block.indices.min() < 0 or block.indices.max() >= n_genes):
            raise CytoatlasError(f"rows {block.start}-{block.stop}: gene indices out of range (corrupt CSR)")
        row = 0
        while True:
            status, pos = accumulate_csr(
                block.data, block.indices, block.indptr, row, cell_atom, self.atom_sums, self.atom_totals,
                _LIMITS[self.atom_sums.dtype], s1, s2, self.gene_nnz,
            )
            if status == NEEDS_WIDER and self.atom_sums.dtype != np.int64:
                self._widen()
                row = pos
                continue
            if status == BAD_VALUE:
                cell = block.start + int(np.searchsorted(block.indptr, pos, side="right")) - 1
                raise CytoatlasError(
                    f"counts must be non-negative integers, found {block.data[pos]!r} at cell {cell}; "
                    "point `counts` at raw counts (e.g. layers/counts or raw/X)"
                )
            if status == NEEDS_WIDER:
                raise CytoatlasError("an atom's total count exceeds 2**53; counts cannot be summed exactly")
            break
        crash_point("mid_block")  # the counts of this block are in, its cell counts and moments not yet
        kept = cell_atom[cell_atom >= 0]
        self.atom_cells += np.bincount(kept, minlength=len(self.atom_cells))
        self.moments = self.moments.merge(GeneMoments.from_sums(len(kept), s1, s2))

    def merge(self, other: AtomState) -> AtomState:
        """The state of both passes together (for partitions of the same atom table)."""
        dtype = np.promote_types(self.atom_sums.dtype, other.atom_sums.dtype)
        if dtype != np.int64 and (self.atom_totals + other.atom_totals).max(initial=0) >= _LIMITS[dtype]:
            dtype = np.dtype(np.int64)
        return AtomState(
            atom_sums=self.atom_sums.astype(dtype) + other.atom_sums.astype(dtype),
            atom_cells=self.atom_cells + other.atom_cells,
            atom_totals=self.atom_totals + other.atom_totals,
            gene_nnz=self.gene_nnz + other.gene_nnz,
            moments=self.moments.merge(other.moments),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (for a checkpoint); :meth:`from_arrays` restores it exactly."""
        return {"atom_sums": self.atom_sums, "atom_cells": self.atom_cells, "atom_totals": self.atom_totals,
                "gene_nnz": self.gene_nnz, "moments_n": np.array(self.moments.n), "moments_mean": self.moments.mean,
                "moments_m2": self.moments.m2}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> AtomState:
        return cls(atom_sums=a["atom_sums"], atom_cells=a["atom_cells"], atom_totals=a["atom_totals"],
                   gene_nnz=a["gene_nnz"],
                   moments=GeneMoments(int(a["moments_n"]), a["moments_mean"], a["moments_m2"]))

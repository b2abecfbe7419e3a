"""The first pass: per-gene sums of secactpy's per-cell expression over the kept cells, for the gene means.

The means centre every cell in the second pass, so they must be the same numbers whatever the batch size,
threads or workers. Rows are summed in file order into the sums of their *stripe* (a fixed run of
``STRIPE_ROWS`` rows, independent of the blocks), and the stripes' sums are added in stripe order: a stripe
split over two blocks continues the same running sums, so the floating-point operations, and the means, are
identical however the rows were read. Count sums (integers in float64) are exact in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cytoatlas._cells.kernels import BAD_VALUE, add_gene_sums
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import CSRBlock

# the stripe of the pseudobulk pass' moments: a Dask partition of whole stripes serves both passes
STRIPE_ROWS = 1 << 14


@dataclass
class GeneSums:
    """Running sums over the genes in ``slot`` order: ``y_sums`` (stripes ``0 .. folded - 1`` added in order),
    ``count_sums``, ``n_cells``, and the open stripe's own sums (``open_y``).

    A partition that does not start at row 0 keeps its finished stripes in ``stripes`` (stripe -> sums) for
    the driver to fold in order (:meth:`absorb`).
    """

    y_sums: np.ndarray
    count_sums: np.ndarray
    n_cells: int = 0
    folded: int = 0
    stripes: dict[int, np.ndarray] = field(default_factory=dict)
    open_stripe: int = -1
    open_y: np.ndarray | None = None
    stripe_rows: int = STRIPE_ROWS
    fold: bool = True  # fold finished stripes into y_sums as they come (the driver's pass from row 0)

    @classmethod
    def empty(cls, n_slots: int, stripe_rows: int | None = None, fold: bool = True) -> GeneSums:
        return cls(np.zeros(n_slots), np.zeros(n_slots), stripe_rows=stripe_rows or STRIPE_ROWS, fold=fold)

    def add_block(self, block: CSRBlock, kept: np.ndarray, slot: np.ndarray) -> None:
        """Add one CSR row block; ``kept`` is the block's rows' keep mask, ``slot`` the gene -> slot map."""
        n_rows = block.stop - block.start
        if len(block.indices) and (block.indices.min() < 0 or block.indices.max() >= len(slot)):
            raise CytoatlasError(f"rows {block.start}-{block.stop}: gene indices out of range (corrupt CSR)")
        row = 0
        while row < n_rows:
            stripe = (block.start + row) // self.stripe_rows
            if stripe != self.open_stripe:
                self._close()
                self.open_stripe, self.open_y = stripe, np.zeros(len(self.y_sums))
            end = min(n_rows, (stripe + 1) * self.stripe_rows - block.start)
            status, pos = add_gene_sums(block.data, block.indices, block.indptr, row, end, kept, slot,
                                        self.open_y, self.count_sums)
            if status == BAD_VALUE:
                cell = block.start + int(np.searchsorted(block.indptr, pos, side="right")) - 1
                raise CytoatlasError(f"counts must be non-negative integers, found {block.data[pos]!r} at cell "
                                     f"{cell:,}; point `counts` at raw counts (e.g. layers/counts or raw/X)")
            row = end
        self.n_cells += int(np.count_nonzero(kept))

    def _close(self) -> None:
        if self.open_y is None:
            return
        self.stripes[self.open_stripe] = self.open_y
        self.open_stripe, self.open_y = -1, None
        if self.fold:
            self._fold()

    def _fold(self) -> None:
        while self.folded in self.stripes:
            self.y_sums += self.stripes.pop(self.folded)
            self.folded += 1

    def finish(self) -> GeneSums:
        """Close the open stripe (end of the rows)."""
        self._close()
        return self

    def absorb(self, other: GeneSums) -> None:
        """Take a partition's finished stripes and counts (its rows are disjoint from this state's)."""
        if other.open_y is not None:
            raise CytoatlasError("internal: a partition's state was not finished")
        self.stripes.update(other.stripes)
        self.count_sums += other.count_sums
        self.n_cells += other.n_cells
        self._fold()

    def means(self, n_stripes: int) -> np.ndarray:
        """Per-slot mean of y over the kept cells, once all ``n_stripes`` stripes are folded."""
        if self.stripes or self.folded != n_stripes:
            raise CytoatlasError(f"internal: {self.folded} of {n_stripes} stripes summed")
        return self.y_sums / max(self.n_cells, 1)

"""Scoring a row block: every signature set's per-cell activity of the block's kept cells.

Shared by the pass in one process and by the Dask tasks, so both give the same numbers.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np
from scipy.special import ndtr

from cytoatlas._cells.kernels import EPS, score_rows
from cytoatlas._cells.model import CellModel
from cytoatlas.io.h5ad import CSRBlock

# kept cells scored at a time: the float64 group buffer and the float32 outputs stay tens of MB
SUB_ROWS = 4096
MIN_ROWS_PER_THREAD = 64


def score_block(block: CSRBlock, kept: np.ndarray, models: list[CellModel], layers: tuple[str, ...],
                dtype=np.float32, pool: Executor | None = None, n_threads: int = 1):
    """Yield ``(offset, [{"X": z, "beta": ..., "pvalue": ...} per model])`` for the kept rows of ``block``,
    ``offset`` counting kept cells from the block's first one; arrays are cells x output signatures, ``dtype``
    (the files' float32 values are the float64 results rounded once). With a ``pool``, each piece's rows are
    split over ``n_threads`` threads (threads, not numba's ``parallel``: its OpenMP pool does not survive the
    fork of Dask's local workers)."""
    rows = np.flatnonzero(kept)
    buffers = {}
    for lo in range(0, len(rows), SUB_ROWS):
        part = rows[lo: lo + SUB_ROWS]
        out = []
        for model in models:
            k = model.tt.shape[1]
            buf = buffers.get(k)
            if buf is None or len(buf) < len(part):
                buf = buffers[k] = np.empty((min(SUB_ROWS, len(rows)), k))
            beta = buf[:len(part)]
            args = model.kernel_args()
            if pool is None or n_threads < 2 or len(part) < 2 * MIN_ROWS_PER_THREAD:
                score_rows(block.data, block.indices, block.indptr, part, *args, beta)
            else:
                cuts = np.linspace(0, len(part), n_threads + 1).astype(int)
                list(pool.map(lambda ab, part=part, beta=beta, args=args: score_rows(
                    block.data, block.indices, block.indptr, part[ab[0]:ab[1]], *args, beta[ab[0]:ab[1]]),
                    zip(cuts[:-1], cuts[1:], strict=True)))
            out.append(_outputs(beta, model, layers, dtype))
        yield lo, out


def _outputs(beta: np.ndarray, model: CellModel, layers: tuple[str, ...], dtype) -> dict[str, np.ndarray]:
    """The group results as output signatures: z (exact null; 0 where its sd is ~0, as secactpy), layers."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(model.null_sd > EPS, beta / model.null_sd, 0.0)
    arrays = {"X": z[:, model.columns].astype(dtype)}
    if "beta" in layers:
        arrays["beta"] = beta[:, model.columns].astype(dtype)
    if "pvalue" in layers:
        arrays["pvalue"] = (2.0 * ndtr(-np.abs(z)))[:, model.columns].astype(dtype)
    return arrays

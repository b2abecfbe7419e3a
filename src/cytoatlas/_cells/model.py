"""What the per-cell kernel needs of one signature set: the overlap genes, ``T'``, and the gene means' terms."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cytoatlas._activity.model_cache import fitted_model
from cytoatlas._activity.signatures import SignatureSet
from cytoatlas.errors import CytoatlasError

log = logging.getLogger("cytoatlas.cells")


@dataclass
class CellModel:
    """One signature set fitted on the genes ``G`` an atlas shares with it.

    Attributes
    ----------
    sig
        The signature set.
    genes
        Indices of ``G`` in the counts' gene axis (var order, one gene per symbol).
    symbols
        Their symbols.
    pos
        Per gene of the counts: its place in ``G``, -1 if not in it.
    tt
        ``T'`` (``|G|`` x groups, C order), ``T = (X'X + lambda I)^-1 X'`` of the standardised design.
    means
        Gene means of ``y`` over the scored cells, on ``G``.
    tm, t1
        ``T m`` and ``T 1``.
    null_sd
        Per group, the sd of beta under a random permutation of a cell's genes: ``sqrt(diag(T T') - (T 1)^2 / n)``.
    columns
        Per output signature (in the set's output order), its group: ``beta[:, columns]`` is the output.
    """

    sig: SignatureSet
    genes: np.ndarray
    symbols: np.ndarray
    pos: np.ndarray
    tt: np.ndarray
    means: np.ndarray
    tm: np.ndarray
    t1: np.ndarray
    null_sd: np.ndarray
    columns: np.ndarray

    @property
    def n(self) -> int:
        return len(self.genes)

    @property
    def names(self) -> np.ndarray:
        """Output signature names, in output order."""
        return self.sig.signatures[self.sig.output_order]

    @property
    def overlap(self) -> float:
        return self.n / len(self.sig.genes)

    def kernel_args(self) -> tuple:
        """The model's arguments to :func:`cytoatlas._cells.kernels.score_rows`."""
        return (self.pos, self.tt, float(self.n), float(self.means.sum()), float(self.means @ self.means),
                self.means, self.tm, self.t1)


def overlap_genes(sig: SignatureSet, symbols: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Indices (into ``symbols``) of the ``candidates`` (one gene per symbol, var order) in ``sig``."""
    wanted = set(sig.genes)
    return candidates[np.fromiter((symbols[g] in wanted for g in candidates), bool, len(candidates))]


def cell_model(sig: SignatureSet, symbols: np.ndarray, genes: np.ndarray, means: np.ndarray, n_genes: int,
               lambda_: float, atlas: str) -> CellModel:
    """Fit ``sig`` on ``genes`` (indices into the counts' genes, var order) with gene means ``means``.

    Raises
    ------
    CytoatlasError
        If fewer than two of the set's genes are in the atlas (matched on gene symbols).
    """
    if len(genes) < 2:
        raise CytoatlasError(
            f"{atlas}: {len(genes)} of the {len(sig.genes):,} {sig.name} genes are among its gene symbols "
            f"(e.g. {', '.join(map(str, symbols[:3])) or 'none'}); signatures are matched on symbols: if the "
            "atlas' var_names are Ensembl ids, set `gene_symbols` in its registry entry")
    if len(genes) / len(sig.genes) < 0.5:
        log.warning("%s: only %d of %d %s genes (%.0f%%) are in the atlas; activities rest on few genes",
                    atlas, len(genes), len(sig.genes), sig.name, 100 * len(genes) / len(sig.genes))
    used = symbols[genes]
    row_of = {g: i for i, g in enumerate(sig.genes)}
    model = fitted_model(sig, np.array([row_of[g] for g in used], dtype=np.intp), used, lambda_)
    t = model.projection()  # groups x genes, as secactpy forms it
    n = len(genes)
    t1 = t.sum(axis=1)
    null_sd = np.sqrt(np.maximum(np.einsum("ij,ij->i", t, t) - t1**2 / n, 0.0))
    pos = np.full(n_genes, -1, dtype=np.int64)
    pos[genes] = np.arange(n)
    return CellModel(sig=sig, genes=genes, symbols=used, pos=pos, tt=np.ascontiguousarray(t.T), means=means,
                     tm=t @ means, t1=t1, null_sd=null_sd, columns=sig.group_of[sig.output_order])

"""Cross-talk beside every hit: the signatures of the same set that look like this one, and whether they are hits too.

A signature's activity is a regression on its gene-response column; signatures whose columns correlate (IFNG, IL27
and IFN1 share interferon-stimulated genes) track the same exposure, so a table listing them as separate discoveries
misleads. For each row of a comparison (or ground-truth) table this module adds:

- ``correlated``: the signatures of the set whose columns correlate with this one's at Pearson r >= the threshold
  (0.5), over the genes the activity run used (``uns["genes_used"]`` of the activity file), strongest first, e.g.
  ``"IL27 (r 0.62), IFN1 (r 0.55)"``;
- ``also_significant``: those of them that are significant (FDR < 0.05) in the same cell type and contrast;
- ``n_correlated_significant``: how many.

Only positive correlations are listed: a signature that anti-correlates would move the other way, which the table
already shows as an effect of the opposite sign. No conditional test is made (a hit given its strongest correlated
signature would need the joint regression refitted per row): the columns say which hits to read together.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cytoatlas.io.h5ad import open_h5ad, read_strings

log = logging.getLogger("cytoatlas.compare")
CROSSTALK_COLUMNS = ["correlated", "also_significant", "n_correlated_significant"]
CROSSTALK_THRESHOLD = 0.5
FDR_THRESHOLD = 0.05


@dataclass(frozen=True)
class SignatureCorrelations:
    """The Pearson correlations of a set's signature columns over the genes an activity run used."""

    names: np.ndarray
    r: np.ndarray
    n_genes: int

    def partners_of(self, i: int, threshold: float = CROSSTALK_THRESHOLD) -> list[tuple[str, float]]:
        """The signatures other than ``i`` with r >= ``threshold``, strongest first (ties by name)."""
        r = self.r[i]
        js = [j for j in np.flatnonzero(r >= threshold) if j != i]
        return sorted(((str(self.names[j]), float(r[j])) for j in js), key=lambda p: (-p[1], p[0]))

    def partners(self, threshold: float = CROSSTALK_THRESHOLD) -> list[list[tuple[str, float]]]:
        """:meth:`partners_of` every signature."""
        return [self.partners_of(i, threshold) for i in range(len(self.names))]


def correlations(matrix: np.ndarray, names: np.ndarray) -> SignatureCorrelations:
    """Pearson r between the columns of a genes x signatures ``matrix`` (a constant column: missing)."""
    x = np.asarray(matrix, dtype=float)
    x = x - x.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x / norm
        r = x.T @ x
        r = (r + r.T) / 2  # exactly symmetric: "also significant" is read from either side
    r[:, norm == 0] = np.nan
    r[norm == 0, :] = np.nan
    return SignatureCorrelations(np.asarray(names, dtype=object), np.clip(r, -1.0, 1.0), x.shape[0])


def _signature_of(path: Path) -> tuple[str, str, np.ndarray, np.ndarray]:
    """An activity file's signature set (name, source), the genes it used, and its signature names."""
    with open_h5ad(path) as f:
        sig = f.get("uns/signature")
        name = source = ""
        if isinstance(sig, h5py.Group):
            name, source = (_scalar(sig.get(k)) for k in ("name", "source"))
        genes = read_strings(f["uns/genes_used"], "genes_used") if "uns/genes_used" in f else np.array([], object)
        index = f["var"].attrs.get("_index", "_index")
        names = read_strings(f["var"][index], index)
    return name, source, genes, names


def _scalar(node) -> str:
    if not isinstance(node, h5py.Dataset):
        return ""
    v = node[()]
    return v.decode() if isinstance(v, bytes) else str(v)


@functools.lru_cache(maxsize=16)
def _set_correlations(name: str, source: str, genes_key: str, genes: tuple[str, ...]) -> SignatureCorrelations:
    from cytoatlas._activity.signatures import BUILT_IN, load_signatures

    sig = load_signatures(name if name.lower() in BUILT_IN else source)
    rows = {g: i for i, g in enumerate(sig.genes)}
    used = [rows[g] for g in genes if g in rows] if genes else list(range(len(sig.genes)))
    return correlations(sig.matrix[used], sig.signatures)


def file_correlations(path: str | os.PathLike) -> SignatureCorrelations | None:
    """The signature correlations of an activity file's set over the genes its run used, in the file's signature
    order; None (with a warning) when the set cannot be loaded again (a signature file moved away)."""
    path = Path(path)
    return signature_correlations(*_signature_of(path), label=path.name)


def anndata_correlations(adata, label: str = "in-memory activity") -> SignatureCorrelations | None:
    """:func:`file_correlations` of an activity result held in memory (its ``uns["signature"]`` and
    ``uns["genes_used"]`` as the file holds them)."""
    sig = dict(adata.uns.get("signature") or {})
    genes = np.asarray(adata.uns.get("genes_used", []), dtype=object)
    return signature_correlations(str(sig.get("name", "")), str(sig.get("source", "")), genes,
                                  np.asarray(adata.var_names, dtype=object), label=label)


def signature_correlations(name: str, source: str, genes: np.ndarray, names: np.ndarray,
                           label: str) -> SignatureCorrelations | None:
    """The correlations of set ``name``'s signature columns over ``genes``, in the order of ``names``; None
    (with a warning naming ``label``) when the set cannot be loaded again or its signatures are not ``names``."""
    from cytoatlas.errors import CytoatlasError

    key = hashlib.sha256("\0".join(map(str, genes)).encode()).hexdigest()
    try:
        corr = _set_correlations(name, source, key, tuple(map(str, genes)))
    except (CytoatlasError, OSError) as e:
        log.warning("%s: no cross-talk columns: its signature set %s cannot be loaded (%s)", label, name, e)
        return None
    order = {s: i for i, s in enumerate(corr.names)}
    idx = np.array([order.get(str(s), -1) for s in names])
    if (idx < 0).any():
        log.warning("%s: no cross-talk columns: its signatures are not those of set %s", label, name)
        return None
    return SignatureCorrelations(np.asarray(names).astype(object), corr.r[np.ix_(idx, idx)], corr.n_genes)


def _fmt(pairs: list[tuple[str, float]]) -> str:
    return ", ".join(f"{s} (r {r:.2f})" for s, r in pairs)


def annotate(df: pd.DataFrame, correlations_of: Callable[[tuple], SignatureCorrelations | None],
             file_keys: list[str], group_keys: list[str], significant: str = "fdr",
             threshold: float = CROSSTALK_THRESHOLD, alpha: float = FDR_THRESHOLD) -> pd.DataFrame:
    """``df`` with the cross-talk columns appended (see the module docstring).

    Parameters
    ----------
    df
        A table with a ``signature`` column (one row per signature of a tested cell type and contrast).
    correlations_of
        The correlations of the file a row comes from, given the row's ``file_keys`` values.
    file_keys
        The columns naming the activity file (e.g. atlas, level, signature_set).
    group_keys
        The columns of one test (the file's keys, cell type and contrast): "also significant" is within them.
    significant
        The column a row is significant by (``< alpha``).
    """
    df = df.copy()
    correlated = np.full(len(df), "", dtype=object)
    also = np.full(len(df), "", dtype=object)
    n_also = np.zeros(len(df), dtype=np.int64)
    if len(df):
        sig_col = df[significant].to_numpy(dtype=float)
        signature = df["signature"].astype(str).to_numpy(dtype=object)
        for fkey, rows in df.groupby(file_keys, sort=False).indices.items():
            corr = correlations_of(fkey if isinstance(fkey, tuple) else (fkey,))
            if corr is None:
                continue
            partners = dict(zip(map(str, corr.names), corr.partners(threshold), strict=True))
            text = {s: _fmt(p) for s, p in partners.items()}
            correlated[rows] = [text.get(s, "") for s in signature[rows]]
            sub = df.iloc[rows]
            for _, grows in sub.groupby(group_keys, sort=False).indices.items():
                idx = rows[grows]
                hits = [i for i in idx if sig_col[i] < alpha]
                if not hits:
                    continue
                # r is symmetric: a hit h is "also significant" beside each of its own partners (few hits, few
                # partners: no loop over every row of the group)
                row_of = {signature[i]: i for i in idx}
                found: dict[int, list[tuple[str, float]]] = {}
                for h in hits:
                    for s, r in partners.get(signature[h], []):
                        if s in row_of:
                            found.setdefault(row_of[s], []).append((signature[h], r))
                for i, both in found.items():
                    both.sort(key=lambda p: (-p[1], p[0]))
                    also[i], n_also[i] = _fmt(both), len(both)
    df["correlated"], df["also_significant"], df["n_correlated_significant"] = correlated, also, n_also
    return df


def cached_correlations(paths: Mapping[tuple, Path]) -> Callable[[tuple], SignatureCorrelations | None]:
    """A ``correlations_of`` for :func:`annotate` over ``{file key: activity file}`` (each file read once)."""
    cache: dict[tuple, SignatureCorrelations | None] = {}

    def of(key: tuple) -> SignatureCorrelations | None:
        if key not in cache:
            cache[key] = file_correlations(paths[key]) if key in paths else None
        return cache[key]

    return of

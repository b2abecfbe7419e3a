"""Activity of what a user holds: an AnnData (our pseudobulk, a bulk matrix or cells) or a genes x samples table.

The expression becomes the :class:`~cytoatlas.io.results.Pseudobulk` the file path reads from a pseudobulk
file; the centring, the regression and the outputs are then the file path's own functions, so the numbers are
those of ``cytoatlas activity``. Anything but our pseudobulk is normalised first, as documented for bulk input:
``counts`` -> log1p CPM (the pseudobulk's own normalisation), ``tpm`` -> log2(TPM + 1) (how CytoSig and
secactpy's bulk examples prepare TPM), ``log`` -> taken as it is (already log-normalised).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas._activity.files import Centring, SetOutputs, _centres, _run_set, set_outputs
from cytoatlas._activity.outputs import activity_parts
from cytoatlas._activity.run import run_parameters, set_parameters, signature_sets
from cytoatlas._activity.signatures import SignatureSet, group_signatures
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.memory import as_stored
from cytoatlas.io.results import Pseudobulk, unique_symbols
from cytoatlas.options import Method, Values, check_choice

log = logging.getLogger("cytoatlas.activity")
# bulk samples are held dense (float64) for the regression: 2^28 values are 2 GB
MAX_DENSE_VALUES = 1 << 28
NORMALISATIONS = {"counts": "log1p CPM (log(1 + 1e6 x / library size))", "tpm": "log2(TPM + 1)",
                  "log": "none (taken as log-normalised expression)"}


def normalise(matrix: np.ndarray, values: Values) -> np.ndarray:
    """Genes x samples expression as the regression takes it (float64): see the module's description."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if values == "log":
        return matrix
    if (matrix < 0).any():
        raise CytoatlasError(f"values={values!r} but the matrix has negative values: give values='log' for "
                             "expression that is already log-normalised")
    if values == "tpm":
        return np.log2(matrix + 1.0)
    totals = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log1p(matrix * np.where(totals > 0, 1e6 / totals, np.nan))


def _is_integer(matrix) -> bool:
    data = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    return data.dtype.kind in "biu" or bool(np.all(np.mod(data[np.isfinite(data)], 1) == 0))


def is_our_pseudobulk(adata) -> bool:
    """Whether an AnnData is a ``cytoatlas pseudobulk`` output (its X is log1p CPM already)."""
    return "kind" in adata.uns and "atlas_stats" in adata.uns and "gene_symbol" in adata.var


def frame_expression(df: pd.DataFrame, values: Values, name: str = "DataFrame") -> Pseudobulk:
    """A genes x samples table (gene symbols as index) as the regression's input."""
    check_choice("values", values, Values)
    if not all(pd.api.types.is_numeric_dtype(t) for t in df.dtypes):
        bad = [str(c) for c, t in df.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
        raise CytoatlasError(f"{name}: a genes x samples table must be numeric; non-numeric column(s): "
                             f"{', '.join(bad[:5])}")
    matrix = normalise(df.to_numpy(), values)
    return _expression(np.asarray(df.index.astype(str), dtype=object), matrix,
                       pd.DataFrame(index=pd.Index(df.columns.astype(str), dtype=object)), {"kind": "bulk"}, name)


def _expression(symbols: np.ndarray, matrix: np.ndarray, obs: pd.DataFrame, uns: dict, name: str) -> Pseudobulk:
    """One gene per symbol (the highest mean, as the pseudobulk files keep), genes as rows."""
    keep = unique_symbols(symbols, np.nanmean(matrix, axis=1) if matrix.shape[1] else None)
    return Pseudobulk(path=Path(name), kind=uns.get("kind", "bulk"), obs=obs, genes=symbols[keep],
                      values=np.ascontiguousarray(matrix[keep]), uns=uns, n_symbols=len(keep))


def adata_expression(adata, values: Values | None, layer: str | None, gene_symbols: str | None,
                     name: str = "AnnData") -> Pseudobulk:
    """An AnnData as the regression's input: our pseudobulk's X as the file path reads it, anything else
    normalised (``values=None``: counts when the matrix is integer, else taken as log-normalised)."""
    if values is not None:
        check_choice("values", values, Values)
    if is_our_pseudobulk(adata) and layer is None and values in (None, "log"):
        symbols = adata.var["gene_symbol"].to_numpy(object)
        means = adata.uns["atlas_stats"].get("mean")
        keep = unique_symbols(symbols, means if means is not None and len(means) == len(symbols) else None)
        x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        uns = {k: v for k, v in adata.uns.items() if isinstance(v, str | int | float)}
        return Pseudobulk(path=Path(name), kind=str(adata.uns["kind"]), obs=adata.obs.copy(), genes=symbols[keep],
                          values=np.ascontiguousarray(x[:, keep].T), uns=uns, n_symbols=len(keep))
    matrix = adata.layers[layer] if layer is not None else adata.X
    if layer is not None and layer not in adata.layers:
        raise CytoatlasError(f"{name}: no layer {layer!r}; layers: {', '.join(adata.layers) or 'none'}")
    if values is None:
        values = "counts" if _is_integer(matrix) else "log"
        log.info("%s: %s matrix: normalised as %s (give values= to choose)", name,
                 "an integer" if values == "counts" else "a non-integer", NORMALISATIONS[values])
    if gene_symbols is not None and gene_symbols not in adata.var:
        raise CytoatlasError(f"{name}: var has no column {gene_symbols!r}; available: "
                             f"{', '.join(map(str, adata.var.columns))}")
    symbols = (adata.var[gene_symbols] if gene_symbols else adata.var_names.to_series()).astype(str)
    if matrix.shape[0] * matrix.shape[1] > MAX_DENSE_VALUES:
        raise CytoatlasError(f"{name}: {matrix.shape[0]:,} x {matrix.shape[1]:,} is too large to regress as bulk "
                             "samples (held dense); pseudobulk cells first (cytoatlas.pp.pseudobulk), or score them "
                             "one by one (cytoatlas.tl.cell_activity)")
    dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    return _expression(symbols.to_numpy(object), normalise(dense.T, values), adata.obs.copy(),
                       {"kind": "bulk"}, name)


def frame_signatures(df: pd.DataFrame, name: str = "custom") -> SignatureSet:
    """A genes x signatures matrix given as a table, as a signature set (grouped as every set but CytoSig)."""
    if df.index.has_duplicates or df.columns.has_duplicates:
        raise CytoatlasError(f"signature matrix {name!r}: gene and signature names must be unique")
    matrix = np.ascontiguousarray(df.to_numpy(np.float64))
    if not np.isfinite(matrix).all():
        raise CytoatlasError(f"signature matrix {name!r} has missing or infinite values")
    version = "sha256:" + hashlib.sha256(matrix.tobytes() + "\0".join(map(str, df.columns)).encode()).hexdigest()
    return SignatureSet(name=name, genes=df.index.to_numpy(str).astype(object),
                        signatures=df.columns.to_numpy(str).astype(object), matrix=matrix,
                        group_of=group_signatures(matrix), source="a table in memory", version=version)


def set_of(signatures, signature_files=()) -> SignatureSet:
    """One signature set: a name, a file, or a genes x signatures table."""
    if isinstance(signatures, SignatureSet):
        return signatures
    if isinstance(signatures, pd.DataFrame):
        return frame_signatures(signatures)
    (sig,) = signature_sets([str(signatures)], [Path(f) for f in signature_files])
    return sig


def activity_of(pb: Pseudobulk, sig: SignatureSet, *, method: Method, n_rand: int, permutation_seed: int,
                centre: str, lambda_: float, cell_type_map: dict | None = None,
                bootstrap: Pseudobulk | None = None) -> tuple[SetOutputs, object]:
    """A set's activity of one expression matrix: the outputs and the :class:`~cytoatlas._activity.outputs.SetResult`
    (with ``bootstrap``, its resamples' intervals as the file path gives a main file)."""
    check_choice("method", method, Method)
    if method == "permutation" and n_rand < 1:
        raise CytoatlasError(f"n_rand must be >= 1, got {n_rand}")
    if not lambda_ >= 0:
        raise CytoatlasError(f"lambda must be >= 0, got {lambda_}")
    centring = Centring.parse(centre)
    centres, group, file_centring = _centres(pb, centring)
    res = _run_set(pb, sig, centres, group, method, n_rand, permutation_seed, lambda_)
    boot = None
    if bootstrap is not None:
        if not np.array_equal(bootstrap.genes, pb.genes):
            raise CytoatlasError("the bootstrap pseudobulk and the main one have different genes")
        b_centres, b_group = _centres(pb, Centring())[0], np.zeros(bootstrap.values.shape[1], dtype=np.intp)
        # as the file path: resamples centred with the main matrix' gene means, so intervals are on its scale
        boot = (bootstrap, _run_set(bootstrap, sig, b_centres, b_group, method, n_rand, permutation_seed, lambda_))
    cmap = dict(cell_type_map or {})
    params = set_parameters(run_parameters(method, lambda_, centring, n_rand, permutation_seed), sig, cmap)
    source = {"path": str(pb.path), "n_obs": int(pb.values.shape[1]), "n_genes": int(len(pb.genes))}
    return set_outputs(pb, res, params, cmap, file_centring, source, boot), res


def as_anndata(pb: Pseudobulk, res, outputs: SetOutputs):
    """The activity output as an :class:`anndata.AnnData`: what the file path writes for the same input."""
    import anndata as ad

    obs, var, arrays = activity_parts(pb, res, outputs.layers, outputs.obs_extra)
    x = arrays.pop("X")
    return ad.AnnData(X=x, obs=as_stored(obs), var=as_stored(var), layers=arrays, uns=outputs.uns)

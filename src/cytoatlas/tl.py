"""Tools on what a notebook holds (``cytoatlas.tl``, as ``scanpy.tl``): cytokine activity of an AnnData or a
genes x samples table, per-cell activity of cells in memory, and the comparison and validation of activity
results held in memory (the same tables as the files of ``cytoatlas compare`` and ``cytoatlas validate``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cytoatlas import defaults
from cytoatlas._compare import compare_activity as compare
from cytoatlas._validate import validate_activity as validate
from cytoatlas.errors import CytoatlasError
from cytoatlas.options import Method, Values

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from cytoatlas._activity.signatures import SignatureSet
    from cytoatlas.registry import AtlasConfig

__all__ = ["activity", "cell_activity", "compare", "normalise_bulk", "validate"]


def normalise_bulk(data: pd.DataFrame, values: Values) -> pd.DataFrame:
    """Genes x samples expression as activity regresses it.

    Parameters
    ----------
    data
        Genes (symbols, the index) x samples.
    values
        What ``data`` holds: ``"counts"`` (-> log1p CPM, the pseudobulk's normalisation), ``"tpm"``
        (-> log2(TPM + 1), as CytoSig and secactpy prepare bulk TPM) or ``"log"`` (taken as it is).

    Returns
    -------
    The normalised table (float64), same index and columns.

    Examples
    --------
    >>> import pandas as pd
    >>> import cytoatlas
    >>> tpm = pd.DataFrame({"s1": [90, 10], "s2": [0, 5]}, index=["IL6", "IFNG"])
    >>> cytoatlas.tl.normalise_bulk(tpm, "tpm").round(3)
             s1     s2
    IL6   6.508  0.000
    IFNG  3.459  2.585
    """
    import pandas as pd

    from cytoatlas._activity.memory import normalise
    from cytoatlas.options import check_choice

    check_choice("values", values, Values)
    return pd.DataFrame(normalise(data.to_numpy(), values), index=data.index, columns=data.columns)


def activity(
    data: AnnData | pd.DataFrame,
    signatures: str | os.PathLike | pd.DataFrame | SignatureSet = "cytosig",
    *,
    values: Values | None = None,
    layer: str | None = None,
    gene_symbols: str | None = None,
    method: Method = defaults.METHOD,
    n_rand: int = defaults.N_RAND,
    permutation_seed: int = defaults.PERMUTATION_SEED,
    centre: str = defaults.CENTRE,
    lambda_: float = defaults.LAMBDA,
    cell_type_map: Mapping[str, str] | None = None,
    signature_files: Sequence[str | os.PathLike] = (),
    bootstrap: AnnData | None = None,
    key_added: str | None = None,
) -> AnnData:
    """Cytokine / secreted-protein activity (CytoSig, SecAct, LinCytoSig or any genes x signatures matrix).

    The ridge regression of ``cytoatlas activity``, with every one of its options, on what is held in memory:
    on a pseudobulk from :func:`cytoatlas.pp.pseudobulk` (or read from a ``cytoatlas pseudobulk`` file) the
    result equals the CLI's activity file of that pseudobulk.

    Parameters
    ----------
    data
        A :class:`anndata.AnnData` (samples or cells x genes: our pseudobulk, a bulk matrix, or cells), or a
        genes x samples :class:`pandas.DataFrame` (gene symbols as index), as secactpy's
        ``secact_activity_inference`` takes it.
    signatures
        ``"cytosig"``, ``"secact"``, the path of a genes x signatures TSV(.gz) (e.g. LinCytoSig), the stem of a
        file in ``signature_files``, or a genes x signatures :class:`pandas.DataFrame` (a custom matrix).
    values
        What the matrix holds, for anything but our pseudobulk: ``"counts"`` (normalised to log1p CPM),
        ``"tpm"`` (log2(TPM + 1)) or ``"log"`` (already log-normalised, taken as it is). Default: ``"log"`` for a
        DataFrame (secactpy's convention); for an AnnData, ``"counts"`` when the matrix is integer, else ``"log"``.
    layer
        Take the AnnData's matrix from this layer instead of X.
    gene_symbols
        The var column of gene symbols when var_names are gene ids (our pseudobulk's ``gene_symbol`` is used by
        itself).
    method
        ``"exact"`` (closed-form permutation z) or ``"permutation"`` (secactpy's procedure).
    n_rand, permutation_seed
        Permutations and their seed for ``method="permutation"``.
    centre
        ``"across"`` (each gene centred over all samples) or ``"within:COLUMN"`` (within groups of an obs column,
        e.g. ``"within:cell_type"`` for a sample x cell type pseudobulk).
    lambda_
        Ridge penalty (secactpy's 5e5).
    cell_type_map
        ``{label: signature cell type}`` for cell-type-specific sets (LinCytoSig).
    signature_files
        Signature files whose stems ``signatures`` may name.
    bootstrap
        The ``resampled`` pseudobulk of ``data``: adds the bootstrap intervals (layers ``z_boot_mean``,
        ``z_boot_sd``, ``z_ci_low``, ``z_ci_high``; obs ``n_boot``) as the CLI does, the resamples centred with
        ``data``'s gene means. (A resampled pseudobulk given as ``data`` is centred across its own columns; the CLI
        centres its file with the main file's gene means.)
    key_added
        When given (an AnnData input), also write the z-scores into ``data.obsm[key_added]`` and the p-values
        into ``data.obsm[f"{key_added}_pvalue"]`` (data frames: observations x signatures), as decoupler does.

    Returns
    -------
    :class:`anndata.AnnData` of samples x signatures: X the z-scores, layers ``beta``, ``se``, ``pvalue``
    (and ``matched`` for LinCytoSig, the intervals with ``bootstrap``); ``uns`` records the method, centring,
    genes used and signature version.

    Examples
    --------
    >>> import cytoatlas
    >>> pb = cytoatlas.pp.pseudobulk(adata, sample_col="donor", groupby="cell_type")  # doctest: +SKIP
    >>> act = cytoatlas.tl.activity(pb["cell_type"].samples, "cytosig", centre="within:cell_type")  # doctest: +SKIP
    >>> act.to_df().loc[:, "IFNG"].head()  # doctest: +SKIP

    A bulk table of TPM, genes x samples:

    >>> act = cytoatlas.tl.activity(tpm, "secact", values="tpm")  # doctest: +SKIP

    Scores into ``obsm`` as decoupler writes them:

    >>> cytoatlas.tl.activity(bulk_adata, key_added="cytosig")  # doctest: +SKIP
    >>> bulk_adata.obsm["cytosig"]  # doctest: +SKIP
    """
    import pandas as pd

    from cytoatlas._activity import memory

    sig = memory.set_of(signatures, signature_files)
    if isinstance(data, pd.DataFrame):
        if key_added is not None:
            raise CytoatlasError("key_added writes into an AnnData's obsm; a DataFrame has none")
        pb = memory.frame_expression(data, values or "log")
    elif hasattr(data, "obs") and hasattr(data, "var"):
        pb = memory.adata_expression(data, values, layer, gene_symbols)
    else:
        raise CytoatlasError(f"data must be an AnnData or a genes x samples DataFrame, got {type(data).__name__}")
    boot = memory.adata_expression(bootstrap, None, None, None, "bootstrap") if bootstrap is not None else None
    outputs, res = memory.activity_of(pb, sig, method=method, n_rand=n_rand, permutation_seed=permutation_seed,
                                      centre=centre, lambda_=lambda_, cell_type_map=dict(cell_type_map or {}),
                                      bootstrap=boot)
    result = memory.as_anndata(pb, res, outputs)
    if key_added is not None:
        data.obsm[key_added] = result.to_df().set_axis(data.obs_names)
        data.obsm[f"{key_added}_pvalue"] = result.to_df("pvalue").set_axis(data.obs_names)
    return result


def cell_activity(
    adata: AnnData,
    signatures: str | Sequence[str] | None = "cytosig",
    *,
    sample_col: str | None = None,
    groupby: str | Sequence[str] | Mapping[str, object] | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    gene_symbols: str | None = None,
    exclude: Mapping[str, Sequence[str]] | None = None,
    atlas: str | AtlasConfig | None = None,
    registry: str | os.PathLike | None = None,
    name: str | None = None,
    signature_files: Sequence[str | os.PathLike] = (),
    layers: Sequence[str] = ("beta", "pvalue"),
    embedding: str | None = None,
    lambda_: float = defaults.LAMBDA,
    batch_size: int = defaults.BATCH_SIZE,
    threads: int | None = None,
    key_added: str | None = None,
) -> dict[str, AnnData]:
    """Per-cell activity of the cells of an AnnData, as ``cytoatlas cells`` scores them (secactpy's single-cell
    method with the exact permutation z): the same numbers as its files for the same data.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (X, a layer or ``raw``), in memory or backed.
    signatures
        A set name or path, a list of them, or ``None`` for CytoSig, SecAct and every signature file.
    sample_col, groupby, layer, use_raw, gene_symbols, exclude, atlas, registry, name
        Which cells and labels, as :func:`cytoatlas.pp.pseudobulk` (a CELLxGENE dataset needs none of them).
    signature_files
        Genes x signatures TSVs (e.g. LinCytoSig).
    layers
        The matrices besides X (the z-scores): ``"beta"``, ``"pvalue"``.
    embedding
        The obsm key of an embedding (recorded in ``uns``; default ``X_umap`` when present).
    lambda_, batch_size, threads
        As :func:`cytoatlas.cells` (results do not depend on ``batch_size`` or ``threads``).
    key_added
        When given, write each set's z-scores into ``adata.obsm[f"{key_added}_{set}"]`` (a data frame of cells x
        signatures; cells left out by ``exclude`` are NaN), as decoupler does.

    Returns
    -------
    ``{set name: AnnData}`` of kept cells x signatures: X the z-scores (float32, as the files), the ``layers``
    asked for, obs the sample column and every level's label.

    Examples
    --------
    >>> import cytoatlas
    >>> scores = cytoatlas.tl.cell_activity(adata, "cytosig", sample_col="donor", groupby="cell_type",
    ...                                     key_added="act")  # doctest: +SKIP
    >>> adata.obsm["act_cytosig"]["IFNG"].describe()  # doctest: +SKIP
    """
    from cytoatlas._cells.memory import cells_of_adata
    from cytoatlas.pp import atlas_of

    cfg = atlas_of(adata, atlas=atlas, name=name, sample_col=sample_col, groupby=groupby, layer=layer,
                   use_raw=use_raw, gene_symbols=gene_symbols, exclude=exclude, registry=registry)
    names = [signatures] if isinstance(signatures, str | os.PathLike) else signatures
    result = cells_of_adata(adata, cfg, signatures=None if names is None else [str(n) for n in names],
                            signature_files=signature_files, layers=tuple(layers), embedding=embedding,
                            lambda_=lambda_, batch_size=batch_size, threads=threads)
    if key_added is not None:
        for set_name, scores in result.items():
            adata.obsm[f"{key_added}_{set_name}"] = scores.to_df().reindex(adata.obs_names.astype(str)).set_axis(
                adata.obs_names)
    return result

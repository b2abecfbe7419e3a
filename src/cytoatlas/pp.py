"""Preprocessing of AnnData objects held in memory: pseudobulk (``cytoatlas.pp``, as ``scanpy.pp``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cytoatlas import defaults
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.memory import IN_MEMORY
from cytoatlas.registry import AtlasConfig, atlas_from_mapping, get_atlas

if TYPE_CHECKING:
    from anndata import AnnData

    from cytoatlas._pseudobulk.memory import LevelPseudobulk

__all__ = ["pseudobulk"]


def _counts_key(layer: str | None, use_raw: bool) -> str | None:
    if layer is not None and use_raw:
        raise CytoatlasError("give counts from a layer or from raw, not both (layer= or use_raw=True)")
    if layer is not None:
        return f"layers/{layer}"
    return "raw/X" if use_raw else None


def atlas_of(adata: AnnData, *, atlas: str | AtlasConfig | None = None, name: str | None = None,
             sample_col: str | None = None, groupby: str | Sequence[str] | Mapping[str, object] | None = None,
             donor_col: str | None = None, layer: str | None = None, use_raw: bool = False,
             gene_symbols: str | None = None, exclude: Mapping[str, Sequence[str]] | None = None,
             sample_columns: Sequence[str] | None = None, cell_type_ontology_col: str | None = None,
             registry: str | os.PathLike | None = None) -> AtlasConfig:
    """The configuration an AnnData is read with: a registry entry (``atlas``), else what the CELLxGENE schema
    says (when ``adata`` follows it), with every argument given over either."""
    from cytoatlas.cellxgene import detect_adata

    if isinstance(atlas, AtlasConfig):
        entry, base_name = {}, atlas.name
        cfg = atlas
    else:
        cfg = get_atlas(atlas, registry) if atlas is not None else None
        detected = detect_adata(adata) if cfg is None else None
        entry = dict(detected.entry) if detected is not None else {}
        base_name = atlas or name or "adata"
        if detected is not None:
            detected.log(base_name)
    overrides: dict = {}
    if sample_col is not None:
        overrides["sample_col"] = sample_col
    if groupby is not None:
        overrides["levels"] = {groupby: groupby} if isinstance(groupby, str) else \
            dict(groupby) if isinstance(groupby, Mapping) else {"_".join(groupby): list(groupby)}
    for key, value in (("donor_col", donor_col), ("gene_symbols", gene_symbols),
                       ("counts", _counts_key(layer, use_raw)), ("cell_type_ontology_col", cell_type_ontology_col)):
        if value is not None:
            overrides[key] = value
    if exclude is not None:
        overrides["exclude"] = {k: list(v) for k, v in exclude.items()}
    if sample_columns is not None:
        overrides["sample_columns"] = list(sample_columns)
    if cfg is not None:
        if not overrides and name is None:
            return cfg
        entry = _entry_of(cfg)
    entry = {**entry, **overrides, "h5ad": str(Path(IN_MEMORY).resolve())}
    missing = [k for k in ("sample_col", "levels") if k not in entry]
    if missing:
        raise CytoatlasError(f"{IN_MEMORY}: set {' and '.join(missing)} (sample_col=, groupby=), or give a registry "
                             "atlas (atlas=): the object is not a CELLxGENE-schema dataset (no uns['schema_version'] "
                             "with donor_id and cell_type in obs)")
    return atlas_from_mapping(name or base_name, entry)


def _entry_of(cfg: AtlasConfig) -> dict:
    """A registry table equivalent to ``cfg`` (so that arguments can override single keys of it)."""
    levels = {lev.name: {"by": list(lev.by), "where": {c: list(v) for c, v in lev.where}} for lev in cfg.levels}
    entry: dict = {"sample_col": cfg.sample_col, "levels": levels, "counts": cfg.counts,
                   "exclude": {c: list(v) for c, v in cfg.exclude}, "sample_columns": list(cfg.sample_columns),
                   "cell_type_map": dict(cfg.cell_type_map), "harmonise": dict(cfg.harmonise),
                   "signature_files": [str(p) for p in cfg.signature_files],
                   "treatment_aliases": dict(cfg.treatment_aliases)}
    for key in ("donor_col", "gene_symbols", "embedding"):
        if getattr(cfg, key) is not None:
            entry[key] = getattr(cfg, key)
    if cfg.cell_type_ontology_col is not None:
        col = cfg.cell_type_ontology_col
        entry["cell_type_ontology_col"] = col if isinstance(col, str) else dict(col)
    return entry


def pseudobulk(
    adata: AnnData,
    *,
    sample_col: str | None = None,
    groupby: str | Sequence[str] | Mapping[str, object] | None = None,
    donor_col: str | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    gene_symbols: str | None = None,
    exclude: Mapping[str, Sequence[str]] | None = None,
    sample_columns: Sequence[str] | None = None,
    cell_type_ontology_col: str | None = None,
    atlas: str | AtlasConfig | None = None,
    registry: str | os.PathLike | None = None,
    name: str | None = None,
    levels: Sequence[str] | None = None,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    bootstrap_seed: int = defaults.BOOTSTRAP_SEED,
    min_cells: int = defaults.MIN_CELLS,
    min_samples: int = defaults.MIN_SAMPLES,
    batch_size: int = defaults.BATCH_SIZE,
    threads: int | None = None,
) -> dict[str, LevelPseudobulk]:
    """Pseudobulk of an AnnData held in memory (or opened backed): every level, sample x cell type, bootstrap.

    The same pass as :func:`cytoatlas.pseudobulk` over the object's counts: the returned objects hold exactly
    the values of the files ``cytoatlas pseudobulk`` writes for the same data (X log1p CPM, layers ``counts``
    and ``zscore`` against the atlas' per-gene single-cell log1p-CPM mean and std in ``uns['atlas_stats']``).

    Parameters
    ----------
    adata
        Cells x genes, with raw counts in X, a layer or ``raw`` (CSR, CSC or dense; a CSC matrix is copied to CSR
        once). A backed object (``anndata.read_h5ad(path, backed="r")``) is streamed from its file.
    sample_col
        The obs column of samples (default: the registry entry's, or ``donor_id`` for a CELLxGENE dataset).
    groupby
        The annotation level(s): an obs column, a list of columns (one composite level), or ``{level name: column
        or [columns] or {by = ..., where = ...}}`` as the registry's ``levels`` (default: the registry entry's,
        or ``cell_type`` for a CELLxGENE dataset).
    donor_col
        The bootstrap unit when there are several samples per donor (default: the samples).
    layer, use_raw
        Take the counts from ``adata.layers[layer]`` or ``adata.raw`` instead of X (scanpy's arguments).
    gene_symbols
        The var column of gene symbols when var_names are gene ids (signatures are matched on symbols).
    exclude
        ``{column: [labels]}`` of cells left out.
    sample_columns
        Per-sample obs columns copied into the sample x cell type obs.
    cell_type_ontology_col
        The obs column of Cell Ontology IDs of the levels' labels (default: ``{column}_ontology_term_id``).
    atlas, registry
        A registry atlas (name or :class:`~cytoatlas.registry.AtlasConfig`) whose entry gives the arguments not
        given here.
    name
        The atlas name recorded in ``uns['atlas']`` (default: ``atlas``, else ``"adata"``).
    levels
        Names of the levels to compute (default: all).
    n_bootstrap, bootstrap_seed, min_cells, min_samples, batch_size, threads
        As :func:`cytoatlas.pseudobulk` (results do not depend on ``batch_size`` or ``threads``).

    Returns
    -------
    ``{level name: LevelPseudobulk}``, each with the ``celltype``, ``samples`` and ``resampled``
    :class:`anndata.AnnData` (``resampled`` is ``None`` when ``n_bootstrap`` is 0).

    Examples
    --------
    >>> import anndata as ad
    >>> import cytoatlas
    >>> adata = ad.read_h5ad("kang.h5ad")  # doctest: +SKIP
    >>> pb = cytoatlas.pp.pseudobulk(adata, sample_col="donor", groupby="cell_type")  # doctest: +SKIP
    >>> pb["cell_type"].samples  # doctest: +SKIP
    AnnData object with n_obs × n_vars = 64 × 15706 ...

    A CELLxGENE download needs no arguments: donors are the samples, ``cell_type`` the level, counts come
    from ``raw`` and symbols from ``feature_name``.

    >>> pb = cytoatlas.pp.pseudobulk(ad.read_h5ad("cellxgene.h5ad"))  # doctest: +SKIP
    """
    from cytoatlas._pseudobulk.memory import pseudobulk_adata

    cfg = atlas_of(adata, atlas=atlas, name=name, sample_col=sample_col, groupby=groupby, donor_col=donor_col,
                   layer=layer, use_raw=use_raw, gene_symbols=gene_symbols, exclude=exclude,
                   sample_columns=sample_columns, cell_type_ontology_col=cell_type_ontology_col, registry=registry)
    return pseudobulk_adata(adata, cfg, levels=levels, n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed,
                            min_cells=min_cells, min_samples=min_samples, batch_size=batch_size, threads=threads)

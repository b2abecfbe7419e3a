"""The validation of results held in memory: the same tables as ``cytoatlas validate`` writes, from the same code
(:func:`cytoatlas._validate.run.correlations` and :func:`cytoatlas._validate.run.validation_tables`), for a
notebook user who holds the pseudobulk and activity AnnData objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field

import pandas as pd

from cytoatlas import defaults
from cytoatlas._validate.inputs import LevelSet
from cytoatlas._validate.run import (
    AtlasInput,
    _check_names,
    _composition_groups,
    _level_bootstrap,
    _stratified,
    check_validate_options,
    correlations,
    validation_tables,
)
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import Activity, Pseudobulk, activity_of, pseudobulk_of_anndata
from cytoatlas.options import check_known


@dataclass
class MemoryLevelSet(LevelSet):
    """A (level, signature set) of one atlas held in memory: its pseudobulk and activity AnnData objects per kind
    (``pseudobulk`` and ``activity`` map kinds to AnnData, not paths); the validation reads it through the same
    methods as a group of files."""

    labels: dict[str, str] = field(default_factory=dict)

    def files(self) -> list:
        return []

    def load_activity(self, kind: str) -> Activity:
        return activity_of(self.activity[kind], self.labels.get(f"activity:{kind}", "in-memory activity"))

    def load_pseudobulk(self, kind: str, genes: Iterable[str]) -> Pseudobulk:
        return pseudobulk_of_anndata(self.pseudobulk[kind], genes,
                                     self.labels.get(f"pseudobulk:{kind}", "in-memory pseudobulk"))

    def pseudobulk_obs(self, kind: str) -> pd.DataFrame:
        return self.pseudobulk[kind].obs

    def pseudobulk_parameters(self, kind: str) -> dict:
        return dict(self.pseudobulk[kind].uns.get("parameters") or {})

    def signature_names(self) -> list[str]:
        return [str(s) for s in next(iter(self.activity.values())).var_names]


def _groups(atlas: str, objects: Sequence, levels: Sequence[str], signatures: Sequence[str]
            ) -> tuple[list[MemoryLevelSet], list[tuple[str, str]]]:
    """An atlas' results grouped by (level, set), in the order their levels first appear; and every (level, set)
    given (asked for or not)."""
    pseudobulk, activity, there = {}, [], []
    for n, adata in enumerate(objects):
        label = f"atlas {atlas}'s result {n}"
        if adata.uns.get("signature") is not None:
            act = activity_of(adata, label)
            kind = str(dict(adata.uns.get("pseudobulk") or {}).get("kind", ""))
            activity.append((act.level, act.signature_set, kind, adata, label))
            there.append((act.level, act.signature_set))
        else:
            pb = pseudobulk_of_anndata(adata, (), label)
            pseudobulk[(str(pb.uns.get("level", "")).lower(), pb.kind)] = (adata, label)
    groups: dict[tuple[str, str], MemoryLevelSet] = {}
    for level, sig, kind, adata, label in activity:
        if (levels and level.lower() not in {lv.lower() for lv in levels}) or (
                signatures and sig.lower() not in {s.lower() for s in signatures}):
            continue
        if (level.lower(), kind) not in pseudobulk:
            raise CytoatlasError(f"atlas {atlas}: the activity result of level {level}, kind {kind}, set {sig} has no "
                                 f"pseudobulk result of that level and kind among those given (validation correlates "
                                 f"activity with the expression it was computed from)")
        g = groups.setdefault((level, sig), MemoryLevelSet(atlas, level, sig))
        pb, pb_label = pseudobulk[(level.lower(), kind)]
        g.activity[kind], g.pseudobulk[kind] = adata, pb
        g.labels[f"activity:{kind}"], g.labels[f"pseudobulk:{kind}"] = label, pb_label
    for g in groups.values():
        if "samples" not in g.activity:
            g.left_out = "no sample x cell type activity result: left out of the within-atlas correlations"
    return list(groups.values()), there


def validate_activity(
    atlases: Mapping[str, Sequence],
    *,
    harmonise: Mapping[str, Mapping[str, str]] | None = None,
    levels: str | Sequence[str] | None = None,
    signatures: str | Sequence[str] | None = None,
    min_samples: int = defaults.VALIDATE_MIN_SAMPLES,
    min_cell_types: int = defaults.VALIDATE_MIN_CELL_TYPES,
    n_bootstrap: int | None = None,
    bootstrap_seed: int | None = None,
    target_genes: Mapping[str, str] | Sequence[str] | None = None,
    resolution: str | None = None,
    composition_level: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Validate activity results held in memory within and across atlases: the tables :func:`cytoatlas.validate`
    writes for the same results.

    Parameters
    ----------
    atlases
        ``{atlas name: [AnnData, ...]}``: each atlas' pseudobulk results (as :func:`cytoatlas.pseudobulk` writes
        them: log1p CPM in ``X``, ``var["gene_symbol"]``, ``uns`` with level and kind) and activity results (as
        :func:`cytoatlas.activity` writes them: ``uns["signature"]``, ``uns["pseudobulk"]`` with level and kind),
        in any order; each activity result is correlated with the pseudobulk of its level and kind. Levels come
        in the order they first appear.
    harmonise
        ``{atlas: {cell-type label: CL ID, CL name or shared name}}``: the registry's ``harmonise`` overrides.
    levels, signatures
        Restrict to these levels and signature sets (default: all given).
    min_samples, min_cell_types, n_bootstrap, bootstrap_seed, target_genes, resolution, composition_level
        As for :func:`cytoatlas.validate` (``n_bootstrap`` and the seed default to each level's pseudobulk
        parameters, ``uns["parameters"]``).

    Returns
    -------
    dict of str to DataFrame
        ``rho``, ``rho_cell_types``, ``summary``, ``cytosig_vs_secact``, ``cross_atlas``, ``conservation``,
        ``consistency`` and ``cell_type_matches``, as the files of :func:`cytoatlas.validate`.

    Raises
    ------
    CytoatlasError
        An object that is neither result, an activity result without its pseudobulk, an option value that names
        nothing (as :func:`cytoatlas.validate`).

    Examples
    --------
    >>> from pathlib import Path
    >>> import anndata as ad
    >>> import cytoatlas
    >>> pb = ad.read_h5ad(next(Path("results/demo/pseudobulk").glob("*_l2_samples.*")))  # doctest: +SKIP
    >>> act = ad.read_h5ad(next(Path("results/demo/activity").glob("*_l2_samples_cytosig_*")))  # doctest: +SKIP
    >>> tables = cytoatlas.tl.validate({"demo": [pb, act]}, n_bootstrap=0)  # doctest: +SKIP
    >>> tables["rho"].query("representative").sort_values("rho").tail()  # doctest: +SKIP
    """
    chosen, min_samples, min_cell_types, n_bootstrap, bootstrap_seed, levels, signatures, gene_overrides = astuple(
        check_validate_options(resolution=resolution, min_samples=min_samples, min_cell_types=min_cell_types,
                               n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed, levels=levels,
                               signatures=signatures, target_genes=target_genes))
    if not atlases:
        raise CytoatlasError("give at least one atlas' results: {atlas name: [pseudobulk and activity AnnData]}")
    inputs, there = [], []
    for atlas, objects in atlases.items():
        groups, given = _groups(str(atlas), list(objects), levels, signatures)
        inputs.append(AtlasInput(str(atlas), None, groups, dict((harmonise or {}).get(atlas, {}))))
        there += given
    check_known("levels", levels, sorted({lv for lv, _ in there}), what="level")
    check_known("signatures", signatures, sorted({s for _, s in there}), what="signature set")
    _check_names(inputs, gene_overrides, (), composition_level)
    groups = [g for a in inputs for g in a.groups if "samples" in g.activity]
    stratified = {id(g): _stratified(g) for g in groups}
    composition = _composition_groups(inputs, composition_level) if not all(stratified.values()) else {}
    rho_parts, ct_parts = [], []
    for g in groups:
        level_boot, level_seed = _level_bootstrap(g)
        rho, ct = correlations(g, min_samples=min_samples, n_boot=level_boot if n_bootstrap is None else n_bootstrap,
                               seed=level_seed if bootstrap_seed is None else bootstrap_seed,
                               gene_overrides=gene_overrides,
                               fractions_group=None if stratified[id(g)] else composition.get(g.atlas))
        rho_parts.append(rho.astype({"representative": bool}))
        ct_parts.append(ct)
    return validation_tables(inputs, rho_parts, ct_parts, min_cell_types=min_cell_types, resolutions=chosen)[0]

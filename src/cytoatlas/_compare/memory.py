"""The comparison of activity results held in memory: the same tables as ``cytoatlas compare`` writes, from the
same code (:func:`cytoatlas._compare.run.comparison_tables`), for a notebook user who holds AnnData objects."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import pandas as pd

from cytoatlas import defaults
from cytoatlas._compare.crosstalk import anndata_correlations
from cytoatlas._compare.run import ActivityItem, comparison_tables, make_spec
from cytoatlas.celltypes import resolutions
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import activity_of
from cytoatlas.options import Test, check_known, name_list


def with_sample_metadata(adata, sample_meta: pd.DataFrame | None, label: str):
    """``adata`` with the columns of ``sample_meta`` (one row per sample: indexed by the sample, or with a
    ``sample`` column) that its obs lacks, joined on ``obs["sample"]``; ``adata`` itself without any."""
    if sample_meta is None:
        return adata
    meta = sample_meta.set_index("sample") if "sample" in sample_meta.columns else sample_meta
    if "sample" not in adata.obs:
        raise CytoatlasError(f"{label}: no obs column 'sample' to join the sample metadata on; obs columns: "
                             f"{', '.join(map(str, adata.obs.columns))}")
    if not meta.index.is_unique:
        raise CytoatlasError("sample metadata: a sample is listed twice; give one row per sample")
    missing = sorted(set(adata.obs["sample"].astype(str)) - set(meta.index.astype(str)))
    if missing:
        raise CytoatlasError(f"sample metadata: no row for sample(s) {', '.join(missing[:10])} of {label}")
    new = [c for c in meta.columns if c not in adata.obs.columns]
    out = adata.copy()
    joined = meta.loc[adata.obs["sample"].astype(str).to_numpy(), new]
    for c in new:
        out.obs[c] = joined[c].to_numpy()
    return out


def activity_items(atlases: Mapping[str, object], levels: Sequence[str], signatures: Sequence[str],
                   sample_meta: pd.DataFrame | Mapping[str, pd.DataFrame] | None,
                   kinds: Sequence[str] = ("samples",)) -> list[ActivityItem]:
    """The activity results of ``{atlas: AnnData or a sequence of them}`` of ``kinds``, levels and sets asked
    for, as items for :func:`comparison_tables`.

    Raises
    ------
    CytoatlasError
        No atlas, an object that is not an activity result, a level or set asked for that none has.
    """
    if not atlases:
        raise CytoatlasError("give at least one atlas' activity results: {atlas name: AnnData or a list of them}")
    items, there = [], []
    for atlas, value in atlases.items():
        objects = list(value) if isinstance(value, (list, tuple)) else [value]
        meta = sample_meta.get(atlas) if isinstance(sample_meta, Mapping) else sample_meta
        for n, adata in enumerate(objects):
            label = f"atlas {atlas}'s activity result {n}"
            act = activity_of(adata, label)  # checks what the object is before anything is computed
            kind = str(dict(adata.uns.get("pseudobulk") or {}).get("kind", "samples"))
            if kind not in kinds:
                continue
            there.append((act.level, act.signature_set))
            if (levels and act.level.lower() not in {lv.lower() for lv in levels}) or (
                    signatures and act.signature_set.lower() not in {s.lower() for s in signatures}):
                continue
            adata = with_sample_metadata(adata, meta, label)
            items.append(ActivityItem(str(atlas), act.level, act.signature_set,
                                      functools.partial(activity_of, adata, label),
                                      functools.partial(anndata_correlations, adata, label)))
    check_known("levels", levels, sorted({lv for lv, _ in there}), what="level")
    check_known("signatures", signatures, sorted({s for _, s in there}), what="signature set")
    if not items:
        raise CytoatlasError(f"no activity results of kind {' or '.join(kinds)} to compare (each object's "
                             "uns['pseudobulk']['kind'] says which pseudobulk it was made from)")
    return items


def compare_activity(
    atlases: Mapping[str, object],
    *,
    by: str | None = None,
    reference: str | None = None,
    groups: str | Sequence[str] | None = None,
    continuous: str | Sequence[str] = (),
    covariates: str | Sequence[str] = (),
    paired_by: str | None = None,
    test: Test = defaults.COMPARE_TEST,
    min_group_size: int = defaults.COMPARE_MIN_GROUP_SIZE,
    resolution: str | None = None,
    harmonise: Mapping[str, Mapping[str, str]] | None = None,
    sample_meta: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    levels: str | Sequence[str] | None = None,
    signatures: str | Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compare activity between donor groups, or along a donor covariate, per cell type, of results held in
    memory; pool across atlases. The tables equal those :func:`cytoatlas.compare` writes for the same results.

    Parameters
    ----------
    atlases
        ``{atlas name: activity result, or a list of them}``: AnnData objects as :func:`cytoatlas.activity`
        writes them (rows x signatures z-scores in ``X``, ``uns["signature"]``, ``uns["pseudobulk"]`` with
        level and kind); the sample x cell type results (kind ``samples``) are compared, others passed over.
    by, reference, groups, continuous, covariates, paired_by, test, min_group_size, resolution
        As for :func:`cytoatlas.compare`.
    harmonise
        ``{atlas: {cell-type label: CL ID, CL name or shared name}}``: the registry's ``harmonise`` overrides.
    sample_meta
        Sample metadata (one row per sample, indexed by sample or with a ``sample`` column; or one such frame per
        atlas) whose columns the results' obs lacks, joined on ``obs["sample"]``.
    levels, signatures
        Restrict to these levels and signature sets (default: all given).

    Returns
    -------
    dict of str to DataFrame
        ``differential``, ``association``, ``meta`` and ``untestable``, as the files of :func:`cytoatlas.compare`.

    Raises
    ------
    CytoatlasError
        As :func:`cytoatlas.compare`; an object that is not an activity result; a level or set none has.

    Examples
    --------
    >>> from pathlib import Path
    >>> import anndata as ad
    >>> import cytoatlas._compare.memory as cm
    >>> act = ad.read_h5ad(next(Path("results/demo/activity").glob("*_l2_samples_cytosig_*")))  # doctest: +SKIP
    >>> tables = cm.compare_activity({"demo": act}, by="treatment", reference="untreated")  # doctest: +SKIP
    >>> tables["differential"].sort_values("pvalue").head()  # doctest: +SKIP
    """
    spec = make_spec(by, reference, groups, continuous, covariates, paired_by, test, min_group_size)
    try:
        chosen = resolutions(resolution)
    except ValueError as e:
        raise CytoatlasError(str(e)) from None
    items = activity_items(atlases, name_list("levels", levels), name_list("signatures", signatures), sample_meta)
    overrides = {str(a): dict(v) for a, v in (harmonise or {}).items()}
    return comparison_tables(items, overrides, spec, chosen)

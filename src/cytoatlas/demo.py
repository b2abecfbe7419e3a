"""`cytoatlas demo`: build two demo atlases, run every step on each, validate them together and report."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py

from cytoatlas import defaults
from cytoatlas.io import layout
from cytoatlas.registry import AtlasConfig, atlas_from_mapping

log = logging.getLogger(__name__)


# The two demo atlases: the same planted responses in matched cell types, other donors, another seed and the
# second one's cell types named in another vocabulary (one label mapped to a Cell Ontology ID in its registry entry).
DEMO_ATLASES = {
    "demo": {"seed": 0, "n_donors": 24, "donor_prefix": "D", "sample_prefix": "S", "rename": None, "harmonise": {}},
    "demo2": {"seed": 1, "n_donors": 20, "donor_prefix": "P", "sample_prefix": "Q", "rename": "DEMO2_RENAME",
              "harmonise": {"T-unconv": "CL:0002419"}},  # mature T cell: a registry entry by CL ID
}
# the demo's comparison: the planted condition (IL10 in treated donors' monocytes) and covariate (IL6 in CD4 T
# cells along BMI), per cell type with the donor as the unit, adjusted for sex and age
DEMO_COMPARISON = {"by": "treatment", "reference": "untreated", "continuous": ["bmi"], "covariates": ["sex", "age"]}
# bump when the generator's output changes, so `cytoatlas demo` rebuilds atlases written by an older one
DEMO_GENERATION = 3
# per-donor obs columns of the demo atlases, copied into their sample x cell type files (for `cytoatlas compare`)
DEMO_SAMPLE_COLUMNS = ["treatment", "bmi", "sex", "age"]
# the demo's stimulation experiment (for `cytoatlas groundtruth`): a third, smaller atlas whose donors' cells are
# each split into a PBS sample and an IFN-gamma sample (IFNG's response raised in every cell type of the latter);
# its own atlas, so the other two and their validation and comparison are as they were. One level keeps it cheap.
DEMO_STIMULATION = {"name": "demo_stim", "seed": 2, "n_donors": 6, "cells_fraction": 0.1, "donor_prefix": "E",
                    "sample_prefix": "T", "stimulation": ("IFN-gamma", "IFNG", 0.5), "levels": ["L2"],
                    "column": "stimulation"}


def demo_config(h5ad: str | os.PathLike, name: str = "demo", donor_only: bool = False) -> AtlasConfig:
    """The registry entry of the demo atlas ``name`` (``demo`` or ``demo2``) written at ``h5ad``: levels L1-L4,
    and with ``donor_only`` also the level ``donor_only`` (every cell of a donor in one group)."""
    from cytoatlas.demo_atlas import DEMO_EXCLUDE, DEMO_LEVELS

    spec = DEMO_ATLASES.get(name, {"harmonise": {}})
    levels = {**DEMO_LEVELS, **({"donor_only": []} if donor_only else {})}
    return atlas_from_mapping(name, {"h5ad": str(Path(h5ad).resolve()), "sample_col": "sample",
                                     "donor_col": "donor", "exclude": DEMO_EXCLUDE, "levels": levels,
                                     "harmonise": spec["harmonise"], "sample_columns": DEMO_SAMPLE_COLUMNS})


def stimulation_config(h5ad: str | os.PathLike) -> AtlasConfig:
    """The registry entry of the demo's stimulation atlas written at ``h5ad``: its levels, and ``stimulation``
    (PBS or the treatment) as a sample column."""
    from cytoatlas.demo_atlas import DEMO_EXCLUDE, DEMO_LEVELS

    spec = DEMO_STIMULATION
    return atlas_from_mapping(spec["name"], {
        "h5ad": str(Path(h5ad).resolve()), "sample_col": "sample", "donor_col": "donor", "exclude": DEMO_EXCLUDE,
        "levels": {lv: DEMO_LEVELS[lv] for lv in spec["levels"]}, "sample_columns": [spec["column"]]})


def write_stimulation_atlas(out: Path, n_cells: int) -> Path:
    """Write (or reuse) ``out/demo_stim_atlas.h5ad``, the demo's stimulation experiment."""
    from cytoatlas import demo_atlas

    spec = DEMO_STIMULATION
    path, size = out / f"{spec['name']}_atlas.h5ad", max(10 * spec["n_donors"], int(n_cells * spec["cells_fraction"]))
    if _current(path, size, spec["seed"]):
        log.info("reusing demo atlas %s", path)
        return path
    log.info("writing demo atlas %s (%s cells, %d donors, each a PBS and a stimulated sample)", path, f"{size:,}",
             spec["n_donors"])
    return demo_atlas.write_demo_atlas(path, n_cells=size, n_donors=spec["n_donors"], seed=spec["seed"],
                                       donor_prefix=spec["donor_prefix"], sample_prefix=spec["sample_prefix"],
                                       generation=DEMO_GENERATION, stimulation=spec["stimulation"])


def _current(path: Path, n_cells: int, seed: int) -> bool:
    try:
        with h5py.File(path, "r") as f:
            meta = f["uns/demo_atlas"]
            return (int(meta["n_cells"][()]) == n_cells and int(meta["seed"][()]) == seed
                    and int(meta["generation"][()]) == DEMO_GENERATION)
    except (OSError, KeyError):
        return False


def write_demo_atlases(out: Path, n_cells: int) -> dict[str, Path]:
    """Write (or reuse) ``out/{name}_atlas.h5ad`` for both demo atlases."""
    from cytoatlas import demo_atlas

    paths = {}
    for name, spec in DEMO_ATLASES.items():
        path = out / f"{name}_atlas.h5ad"
        if _current(path, n_cells, spec["seed"]):
            log.info("reusing demo atlas %s", path)
        else:
            log.info("writing demo atlas %s (%s cells, %d donors)", path, f"{n_cells:,}", spec["n_donors"])
            rename = getattr(demo_atlas, spec["rename"]) if spec["rename"] else None
            demo_atlas.write_demo_atlas(path, n_cells=n_cells, n_donors=spec["n_donors"], seed=spec["seed"],
                                        donor_prefix=spec["donor_prefix"], sample_prefix=spec["sample_prefix"],
                                        rename=rename, generation=DEMO_GENERATION)
        paths[name] = path
    return paths


def run_demo(out: str | os.PathLike = "cytoatlas_demo", *, n_cells: int = defaults.DEMO_N_CELLS,
             **kwargs) -> list[Path]:
    """Write (or reuse) the two demo atlases, run every step on each, validate them together and report.

    Per atlas NAME (``demo``, ``demo2``): ``out/NAME_atlas.h5ad``, pseudobulk in ``out/NAME/pseudobulk``,
    CytoSig and SecAct activity (sample x cell type files centred within cell type, as the seed did) in
    ``out/NAME/activity``; then ``out/validation`` (tables, figures), ``out/compare`` (:data:`DEMO_COMPARISON`:
    treated vs untreated donors and the BMI scan, per cell type, adjusted for sex and age, and their
    meta-analysis across the two atlases), ``out/groundtruth`` (:data:`DEMO_STIMULATION`: a third, small atlas whose
    donors each have a PBS and an IFN-gamma sample; does IFNG rank first?) and ``out/validation/report.html`` with
    all three. ``kwargs`` go to
    :func:`cytoatlas.pseudobulk`. Outputs that are current are kept, as by ``cytoatlas run``. Returns the paths
    (pseudobulk files, activity files written, validation and comparison outputs and the report).
    """
    from cytoatlas._activity import activity
    from cytoatlas._activity.signature_data import SHA256, signature_data_file
    from cytoatlas._compare import compare
    from cytoatlas._pseudobulk import pseudobulk
    from cytoatlas._report import report
    from cytoatlas._validate import validate
    from cytoatlas.options import check_count

    # ten cells per donor at least (the generator's own bound, as a one-line error rather than a traceback)
    check_count("n_cells", n_cells, minimum=10 * max(spec["n_donors"] for spec in DEMO_ATLASES.values()))
    for filename in SHA256:  # both are needed (atlas genes, activity): say so before any work, not minutes in
        signature_data_file(filename)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths, configs = [], []
    for name, atlas in write_demo_atlases(out, n_cells).items():
        cfg = demo_config(atlas, name, donor_only=True)
        configs.append(cfg)
        # as `cytoatlas run`: outputs that are current (same inputs and parameters) are kept
        pb = pseudobulk(cfg, layout.pseudobulk_dir(out / name), skip_existing=True, **kwargs)
        paths += pb + activity(pb, layout.activity_dir(out / name), centre="within:cell_type", skip_existing=True)
    results = {c.name: out / c.name for c in configs}
    paths += validate(configs, out / "validation", results=results)
    paths += compare(configs, out / "compare", results=results, **DEMO_COMPARISON)
    paths += _stimulation(out, n_cells, kwargs)
    return [*paths, report(out / "validation", compare=out / "compare", groundtruth=out / "groundtruth")]


def _stimulation(out: Path, n_cells: int, kwargs: dict) -> list[Path]:
    """The stimulation atlas through pseudobulk, activity and the perturbation ground truth (``out/groundtruth``)."""
    from cytoatlas._activity import activity
    from cytoatlas._groundtruth import groundtruth
    from cytoatlas._pseudobulk import pseudobulk
    from cytoatlas.demo_atlas import STIMULATION_CONTROL

    spec = DEMO_STIMULATION
    cfg = stimulation_config(write_stimulation_atlas(out, n_cells))
    results = out / cfg.name
    # no bootstrap files: the ground truth reads the sample x cell type files only
    pb = pseudobulk(cfg, layout.pseudobulk_dir(results), skip_existing=True, **{**kwargs, "n_bootstrap": 0})
    paths = pb + activity([p for p in pb if "_samples" in p.name], layout.activity_dir(results),
                          centre="within:cell_type", skip_existing=True)
    return paths + groundtruth(cfg, out / "groundtruth", column=spec["column"], control=STIMULATION_CONTROL,
                               results={cfg.name: results})

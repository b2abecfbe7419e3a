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


def demo_config(h5ad: str | os.PathLike, name: str = "demo", donor_only: bool = False) -> AtlasConfig:
    """The registry entry of the demo atlas ``name`` (``demo`` or ``demo2``) written at ``h5ad``: levels L1-L4,
    and with ``donor_only`` also the level ``donor_only`` (every cell of a donor in one group)."""
    from cytoatlas.demo_atlas import DEMO_EXCLUDE, DEMO_LEVELS

    spec = DEMO_ATLASES.get(name, {"harmonise": {}})
    levels = {**DEMO_LEVELS, **({"donor_only": []} if donor_only else {})}
    return atlas_from_mapping(name, {"h5ad": str(Path(h5ad).resolve()), "sample_col": "sample",
                                     "donor_col": "donor", "exclude": DEMO_EXCLUDE, "levels": levels,
                                     "harmonise": spec["harmonise"], "sample_columns": DEMO_SAMPLE_COLUMNS})


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
    meta-analysis across the two atlases) and ``out/validation/report.html`` with both. ``kwargs`` go to
    :func:`cytoatlas.pseudobulk`. Outputs that are current are kept, as by ``cytoatlas run``. Returns the paths
    (pseudobulk files, activity files written, validation and comparison outputs and the report).
    """
    from cytoatlas._activity import activity
    from cytoatlas._activity.signature_data import SHA256, signature_data_file
    from cytoatlas._compare import compare
    from cytoatlas._pseudobulk import pseudobulk
    from cytoatlas._report import report
    from cytoatlas._validate import validate

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
    return [*paths, report(out / "validation", compare=out / "compare")]

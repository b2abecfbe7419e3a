"""`cytoatlas demo`: build the demo atlas and run every step of the pipeline on it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py

from cytoatlas.registry import AtlasConfig, atlas_from_mapping

log = logging.getLogger(__name__)


def demo_config(h5ad: str | os.PathLike) -> AtlasConfig:
    """The registry entry of the demo atlas written at ``h5ad``."""
    from cytoatlas.demo_atlas import DEMO_EXCLUDE, DEMO_LEVELS

    return atlas_from_mapping("demo", {"h5ad": str(Path(h5ad).resolve()), "sample_col": "sample",
                                       "donor_col": "donor", "exclude": DEMO_EXCLUDE, "levels": DEMO_LEVELS})


def _current(path: Path, n_cells: int) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return int(f["uns/demo_atlas/n_cells"][()]) == n_cells
    except (OSError, KeyError):
        return False


def run_demo(out: str | os.PathLike = "cytoatlas_demo", *, n_cells: int = 50_000, **kwargs) -> list[Path]:
    """Write (or reuse) ``out/demo_atlas.h5ad`` and run every step on it.

    Pseudobulk goes to ``out/demo/pseudobulk``, CytoSig and SecAct activity (sample x cell type files centred
    within cell type, as the seed did) to ``out/demo/activity``. ``kwargs`` go to :func:`cytoatlas.pseudobulk`.
    Returns the written paths.
    """
    from cytoatlas._activity import activity
    from cytoatlas._pseudobulk import pseudobulk
    from cytoatlas.demo_atlas import write_demo_atlas

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atlas = out / "demo_atlas.h5ad"
    if _current(atlas, n_cells):
        log.info("reusing demo atlas %s", atlas)
    else:
        log.info("writing demo atlas %s (%s cells)", atlas, f"{n_cells:,}")
        write_demo_atlas(atlas, n_cells=n_cells)
    paths = pseudobulk(demo_config(atlas), out / "demo" / "pseudobulk", **kwargs)
    return paths + activity(paths, out / "demo" / "activity", centre="within:cell_type")

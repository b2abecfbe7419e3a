"""Shared fixtures: the real multi-donor datasets in ../shared/data and a small demo atlas."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KANG = SHARED_DATA / "kang_ctrl_8donors_muscat.h5ad"
ONEK1K = SHARED_DATA / "onek1k_scdesignpop_subset.h5ad"


@pytest.fixture(scope="session")
def demo_h5ad(tmp_path_factory) -> Path:
    """A 6,000-cell demo atlas (same generator as `cytoatlas demo`)."""
    from cytoatlas.demo_atlas import write_demo_atlas

    return write_demo_atlas(tmp_path_factory.mktemp("demo") / "demo_atlas.h5ad", n_cells=6_000, n_donors=20)


@pytest.fixture(scope="session", autouse=True)
def signature_cache(tmp_path_factory) -> Path:
    """Parsed signature sets are cached in a per-session directory, never in the user's home. CytoSig and SecAct
    files fetched into the user's cache (`cytoatlas signatures fetch`, where no secactpy is installed) are still
    used: the session names their directory."""
    import os

    from cytoatlas._activity.signature_data import SHA256, SIGNATURE_DIR_ENV, data_cache_dir

    saved = {k: os.environ.get(k) for k in ("CYTOATLAS_CACHE", SIGNATURE_DIR_ENV)}
    fetched = data_cache_dir()
    if not saved[SIGNATURE_DIR_ENV] and all((fetched / name).is_file() for name in SHA256):
        os.environ[SIGNATURE_DIR_ENV] = str(fetched)
    path = tmp_path_factory.mktemp("cache")
    os.environ["CYTOATLAS_CACHE"] = str(path)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def demo_pair(tmp_path_factory) -> dict:
    """The two demo atlases (as `cytoatlas demo` builds them, 6,000 cells, 20 donors each) run through pseudobulk
    (levels L2, L3 and donor_only, 20 resamples) and CytoSig + SecAct activity: ``{"configs": [...],
    "results": {name: results directory}, "root": parent}``."""
    import cytoatlas
    from cytoatlas import demo_atlas
    from cytoatlas.demo import DEMO_ATLASES, demo_config

    root = tmp_path_factory.mktemp("demo_pair")
    configs, results = [], {}
    for name, spec in DEMO_ATLASES.items():
        rename = getattr(demo_atlas, spec["rename"]) if spec["rename"] else None
        h5ad = demo_atlas.write_demo_atlas(root / f"{name}_atlas.h5ad", n_cells=6_000, n_donors=20, seed=spec["seed"],
                                           donor_prefix=spec["donor_prefix"], sample_prefix=spec["sample_prefix"],
                                           rename=rename)
        cfg = demo_config(h5ad, name, donor_only=True)
        pb = cytoatlas.pseudobulk(cfg, root / name / "pseudobulk", levels=["L2", "L3", "donor_only"], n_bootstrap=20)
        cytoatlas.activity(pb, root / name / "activity", centre="within:cell_type")
        configs.append(cfg)
        results[name] = root / name
    return {"configs": configs, "results": results, "root": root}


@pytest.fixture(scope="session")
def api_results(demo_h5ad: Path, tmp_path_factory) -> Path:
    """A results tree of two atlases for the store / API / web tests: `alpha` (the demo atlas, levels L1-L3) and
    `beta` (another demo atlas: other seed, fewer cells and donors; levels L1-L2), each with pseudobulk and
    CytoSig + LinCytoSig-like activity, `validation/` tables of known values and `compare/` tables (a treatment
    contrast and a bmi scan of both atlases at L1-L2). Not to be modified: tests that change files copy it."""
    from _api_helpers import (
        build_atlas,
        compare_frames,
        lincytosig_like,
        validation_frames,
        write_compare,
        write_validation,
    )

    from cytoatlas.demo_atlas import write_demo_atlas

    out = tmp_path_factory.mktemp("api_results")
    sig = lincytosig_like(out.parent / "LinCytoSig.tsv")
    build_atlas("alpha", demo_h5ad, out, ["L1", "L2", "L3"], sig)
    beta = write_demo_atlas(out.parent / "beta_atlas.h5ad", n_cells=3_000, n_donors=12, seed=1)
    build_atlas("beta", beta, out, ["L1", "L2"], sig)
    targets = ["IFNG", "IL4", "TNFA", "VEGFA", "TGFB3", "IL2"]
    write_validation(out / "validation", validation_frames(targets, ["alpha", "beta"], ["L1", "L2"]))
    write_compare(out / "compare", compare_frames(["alpha", "beta"], ["L1", "L2"]))
    return out


@pytest.fixture(scope="session")
def api_db(api_results: Path, tmp_path_factory) -> Path:
    """The store of `api_results` (indexed once per session, into a directory of its own)."""
    import cytoatlas

    db = tmp_path_factory.mktemp("api_store") / "store.duckdb"
    cytoatlas.index(api_results, db)
    return db

"""Comparison and validation of results held in memory (issue 24): AnnData objects in, the same tables out as the
file steps write for the same results (one implementation, two doors)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

import cytoatlas
from cytoatlas._compare.inputs import discover as compare_files
from cytoatlas._compare.memory import compare_activity
from cytoatlas._validate.inputs import discover as validate_groups
from cytoatlas._validate.memory import validate_activity
from cytoatlas._validate.run import TABLES as VALIDATION_TABLES
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import COMPARE_TABLES
from cytoatlas.io.tables import read_parquet


def _assert_same(directory: Path, tables: dict[str, pd.DataFrame], names) -> None:
    assert set(tables) == set(names)
    for name in names:
        on_disk = read_parquet(directory / f"{name}.parquet")
        assert len(on_disk) == len(tables[name]), name
        pd.testing.assert_frame_equal(on_disk.reset_index(drop=True), tables[name].reset_index(drop=True),
                                      check_dtype=False, obj=name)


def test_in_memory_comparison_equals_the_file_step(demo_pair: dict, tmp_path: Path) -> None:
    options = {"by": "treatment", "reference": "untreated", "continuous": ["bmi"]}
    out = tmp_path / "cmp"
    cytoatlas.compare(demo_pair["configs"], out, results=demo_pair["results"], figures=False, **options)
    objects = {cfg.name: [ad.read_h5ad(f.path) for f in compare_files(cfg.name, demo_pair["results"][cfg.name],
                                                                       [lv.name for lv in cfg.levels])[0]]
               for cfg in demo_pair["configs"]}
    tables = compare_activity(objects, harmonise={c.name: c.harmonise for c in demo_pair["configs"]}, **options)
    _assert_same(out, tables, COMPARE_TABLES)
    assert len(tables["differential"]) and len(tables["meta"])  # both atlases, pooled: nothing trivially equal


def test_in_memory_comparison_joins_sample_metadata(demo_pair: dict, tmp_path: Path) -> None:
    """Results whose obs lacks a donor column get it from the sample metadata, and compare as the file does."""
    cfg = demo_pair["configs"][0]
    files = compare_files(cfg.name, demo_pair["results"][cfg.name], ["L2"], levels=["L2"])[0]
    act = ad.read_h5ad(files[0].path)
    meta = act.obs[["sample", "bmi"]].drop_duplicates("sample").set_index("sample")
    bare = act.copy()
    del bare.obs["bmi"]
    with pytest.raises(CytoatlasError, match="no obs column 'bmi'"):
        compare_activity({cfg.name: bare}, continuous=["bmi"])
    joined = compare_activity({cfg.name: bare}, continuous=["bmi"], sample_meta=meta)
    direct = compare_activity({cfg.name: act}, continuous=["bmi"])
    pd.testing.assert_frame_equal(joined["association"], direct["association"])


def test_in_memory_validation_equals_the_file_step(demo_pair: dict, tmp_path: Path) -> None:
    out = tmp_path / "val"
    cytoatlas.validate(demo_pair["configs"], out, results=demo_pair["results"], figures=False)
    objects = {}
    for cfg in demo_pair["configs"]:
        groups = validate_groups(cfg.name, demo_pair["results"][cfg.name], [lv.name for lv in cfg.levels])[0]
        objects[cfg.name] = [ad.read_h5ad(p) for g in groups for kind in g.activity
                             for p in (g.pseudobulk[kind], g.activity[kind])]
    tables = validate_activity(objects, harmonise={c.name: c.harmonise for c in demo_pair["configs"]})
    _assert_same(out, tables, VALIDATION_TABLES)
    assert (tables["rho"]["reason"] == "").sum() > 100 and len(tables["cross_atlas"])


def test_in_memory_validation_errors(demo_pair: dict) -> None:
    cfg = demo_pair["configs"][0]
    group = validate_groups(cfg.name, demo_pair["results"][cfg.name], levels=["L2"], signatures=["cytosig"])[0][0]
    act, pb = ad.read_h5ad(group.activity["samples"]), ad.read_h5ad(group.pseudobulk["samples"])
    with pytest.raises(CytoatlasError, match="has no pseudobulk result of that level and kind"):
        validate_activity({cfg.name: [act]})
    with pytest.raises(CytoatlasError, match=r"level 'NOPE' not found; valid: L2"):
        validate_activity({cfg.name: [pb, act]}, levels="L2,NOPE")
    with pytest.raises(CytoatlasError, match="target_genes wants TARGET=GENE"):
        validate_activity({cfg.name: [pb, act]}, target_genes=["IFN1=IFNB1=X"])
    with pytest.raises(CytoatlasError, match="not an activity result"):
        compare_activity({cfg.name: pb}, continuous=["bmi"])

"""`cytoatlas compare` end to end: two synthetic atlases' sample x cell type activity files (written as `cytoatlas
activity` writes them, with a planted treatment effect and a planted bmi slope), the four tables, the
meta-analysis, the manifest and reruns, the CLI; and a run on activity files made by the pipeline itself."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _compare_factory import PLANTED, SIGNATURES, SLOPE, Planted, write_atlas, write_samples_activity

import cytoatlas
from cytoatlas.cli import main
from cytoatlas.io.layout import (
    COMPARE_TABLES,
    activity_dir,
    compare_figure_stem,
    compare_table_paths,
    find_activity,
)
from cytoatlas.io.manifest import read_manifest
from cytoatlas.io.results import read_activity
from cytoatlas.io.tables import read_parquet

# the contract's columns, written out again here (not imported) so that a change to them fails this test
CONTRACT = {
    "differential": ["atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by", "group",
                     "reference", "contrast", "test", "covariates", "paired", "n_group", "n_reference", "mean_group",
                     "mean_reference", "effect", "se", "ci_low", "ci_high", "statistic", "pvalue", "fdr",
                     "fdr_cell_type"],
    "association": ["atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by",
                    "contrast", "test", "covariates", "n", "effect", "se", "ci_low", "ci_high", "statistic",
                    "pvalue", "fdr", "fdr_cell_type"],
    "meta": ["analysis", "level", "signature_set", "resolution", "cl_id", "cl_name", "signature", "by", "contrast",
             "n_atlases", "atlases", "labels", "effect", "se", "ci_low", "ci_high", "pvalue", "fdr", "tau2", "q",
             "q_pvalue", "i2", "sign_agreement"],
    "untestable": ["atlas", "level", "signature_set", "cell_type", "analysis", "by", "contrast", "n_group",
                   "n_reference", "reason"],
}
ATLASES = {"alpha": (14, 1, ["B cells", "CD14 Monocytes", "CD4 T cells"], Planted("CD14 Monocytes", "CD4 T cells")),
           "beta": (12, 2, ["B", "CD4+ T", "Classical monocytes"], Planted("Classical monocytes", "CD4+ T"))}
OPTIONS = {"by": "treatment", "reference": "untreated", "continuous": ["bmi"], "covariates": ["age"],
           "figures": False}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare_results")
    for name, (n_donors, seed, cell_types, where) in ATLASES.items():
        write_atlas(root, name, n_donors, seed, cell_types, where)
    return root


@pytest.fixture(scope="module")
def compared(results: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compared")
    cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)
    return out


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: read_parquet(compare_table_paths(out, name)[1]) for name in COMPARE_TABLES}


def test_tables_follow_the_contract(compared: Path) -> None:
    tables = _tables(compared)
    for name, df in tables.items():
        assert list(df.columns) == CONTRACT[name], name
        csv = pd.read_csv(compare_table_paths(compared, name)[0], keep_default_na=False)
        assert list(csv.columns) == CONTRACT[name] and len(csv) == len(df)
        for column in df.columns:
            want = "int64" if column in ("n_group", "n_reference", "n", "n_atlases") else \
                "bool" if column == "paired" else None
            if want:
                assert str(df[column].dtype) == want, (name, column)
    diff = tables["differential"]
    # every atlas x cell type x signature, one contrast; donors, not samples, counted
    assert len(diff) == 2 * 3 * len(SIGNATURES)
    alpha = diff[diff["atlas"] == "alpha"]
    assert set(alpha["n_group"] + alpha["n_reference"]) == {14}
    assert set(diff["contrast"]) == {"treated vs untreated"} and set(diff["covariates"]) == {"age"}
    keys = ["atlas", "level", "signature_set", "cell_type", "signature"]
    assert diff[keys].equals(diff[keys].sort_values(keys, ignore_index=True))
    # each label's own Cell Ontology term: two vocabularies, the same terms
    assert dict(zip(diff["cell_type"], diff["cl_id"], strict=True)) == {
        "B cells": "CL:0000236", "B": "CL:0000236", "CD14 Monocytes": "CL:0000860",
        "Classical monocytes": "CL:0000860", "CD4 T cells": "CL:0000624", "CD4+ T": "CL:0000624"}
    assert len(tables["untestable"]) == 0


def test_planted_effects_have_the_smallest_fdr(compared: Path) -> None:
    tables = _tables(compared)
    for name, (_, _, _, where) in ATLASES.items():
        diff = tables["differential"][tables["differential"]["atlas"] == name]
        top = diff.sort_values("pvalue").iloc[0]
        assert (top["cell_type"], top["signature"]) == (where.monocytes, PLANTED[0])
        assert top["fdr"] == diff["fdr"].min() and top["fdr"] < 1e-3
        assert top["effect"] == pytest.approx(PLANTED[1], abs=0.6) and top["ci_low"] > 0
        assoc = tables["association"][tables["association"]["atlas"] == name]
        top = assoc.sort_values("pvalue").iloc[0]
        assert (top["cell_type"], top["signature"]) == (where.cd4, SLOPE[0])
        assert top["effect"] == pytest.approx(SLOPE[1], abs=0.15) and top["fdr"] < 0.05
        others = diff[(diff["signature"] != PLANTED[0]) | (diff["cell_type"] != where.monocytes)]
        # unplanted rows: noise, found at most at the 5 % rate (one row allowed in these small tables)
        assert (others["fdr"] < 0.05).sum() <= max(1, 0.05 * len(others))
    meta = tables["meta"]
    # both analyses, every shared cell type, every signature, at the fine and the lineage resolution
    assert len(meta) == 2 * 2 * 3 * len(SIGNATURES)
    fine = meta[meta["resolution"] == "fine"]
    top = fine[fine["analysis"] == "differential"].sort_values("pvalue").iloc[0]
    assert (top["cl_name"], top["signature"], top["n_atlases"], top["atlases"]) == \
        ("classical monocyte", PLANTED[0], 2, "alpha,beta")
    assert top["labels"] == "alpha: CD14 Monocytes; beta: Classical monocytes"
    lineage = meta[(meta["resolution"] == "lineage") & (meta["analysis"] == "differential")]
    assert lineage.sort_values("pvalue").iloc[0]["cl_name"] == "monocyte"
    assert top["sign_agreement"] == 1.0 and top["effect"] > 0 and top["fdr"] < 1e-3
    assert ((meta["i2"] >= 0) & (meta["i2"] <= 100)).all() and (meta["tau2"] >= 0).all()
    top = fine[fine["analysis"] == "association"].sort_values("pvalue").iloc[0]
    assert (top["cl_name"], top["signature"], top["contrast"]) == ("CD4-positive, alpha-beta T cell", SLOPE[0], "bmi")


def test_the_manifest_records_tables_parameters_and_inputs(compared: Path, results: Path) -> None:
    manifest = read_manifest(compared)
    assert {e["kind"] for e in manifest.values()} == set(COMPARE_TABLES)
    assert all(e["step"] == "compare" for e in manifest.values())
    entry = manifest["differential.parquet"]
    assert entry["parameters"]["by"] == "treatment" and entry["parameters"]["covariates"] == ["age"]
    inputs = [p for a in ATLASES for p in find_activity(activity_dir(results / a), a)]
    recorded = {fp["name"]: fp["checksum"] for fp in entry["inputs"]}
    assert recorded == {p.name: read_manifest(p.parent)[p.name]["checksum"] for p in inputs}


def test_rerun_skips_force_recomputes_and_a_change_recomputes(results: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "cmp"
    first = cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)

    def mtimes() -> dict:
        return {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}

    before = mtimes()
    with caplog.at_level(logging.INFO, logger="cytoatlas.compare"):
        again = cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)
    assert "current; nothing to do" in caplog.text and sorted(again) == sorted(first) and mtimes() == before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cytoatlas.compare"):
        cytoatlas.compare(list(ATLASES), out, results=results, force=True, **OPTIONS)
    assert "nothing to do" not in caplog.text and all(mtimes()[k] > v for k, v in before.items())
    # a parameter changes: recomputed
    before = mtimes()
    cytoatlas.compare(list(ATLASES), out, results=results, **{**OPTIONS, "min_group_size": 4})
    assert all(mtimes()[k] > v for k, v in before.items())
    # an input changes (rewritten with its manifest record, as a new activity run would): recomputed
    before = mtimes()
    path = find_activity(activity_dir(results / "beta"), "beta")[0]
    act = read_activity(path)
    write_samples_activity(results / "beta", "beta", act.level, act.signature_set, act.obs, act.z * 1.01,
                           list(act.names))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cytoatlas.compare"):
        cytoatlas.compare(list(ATLASES), out, results=results, **{**OPTIONS, "min_group_size": 4})
    assert "nothing to do" not in caplog.text and all(mtimes()[k] > v for k, v in before.items())


def test_figures_are_drawn_and_recorded(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    written = cytoatlas.compare(list(ATLASES), out, results=results, **{**OPTIONS, "figures": True})
    figure = out / "figures" / "volcano__alpha__L2__cytosig__treated_vs_untreated.png"
    assert figure in written and figure.with_suffix(".svg") in written
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entry = read_manifest(out)["figures/" + figure.name]
    assert (entry["kind"], entry["figure"], entry["step"]) == ("figure", figure.stem, "compare")
    # tables only, next time: the figures and their records go
    cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)
    assert not figure.exists() and "figures/" + figure.name not in read_manifest(out)


def test_figure_stems_and_table_paths_come_from_the_layout(tmp_path: Path) -> None:
    assert compare_figure_stem("forest", level="L2", signature_set="cytosig", contrast="a vs b",
                               signature="IL-10/x") == "forest__L2__cytosig__a_vs_b__IL-10_x"
    assert compare_figure_stem("heatmap", atlas="CIMA", level="L4", signature_set="secact", contrast="bmi") == \
        "heatmap__CIMA__L4__secact__bmi"
    assert compare_table_paths(tmp_path, "meta") == [tmp_path / "meta.csv", tmp_path / "meta.parquet"]
    with pytest.raises(ValueError, match="volcano"):
        compare_figure_stem("volcano", atlas="a")


def test_a_single_atlas_has_an_empty_meta_table_and_a_group_too_small_is_untestable(results: Path,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "one"
    cytoatlas.compare("alpha", out, results=results / "alpha", **{**OPTIONS, "min_group_size": 8})
    tables = _tables(out)
    assert len(tables["meta"]) == 0 and list(tables["meta"].columns) == CONTRACT["meta"]
    assert len(tables["differential"]) == 0
    un = tables["untestable"].query("analysis == 'differential'")
    assert len(un) == 3 and set(un["n_group"] + un["n_reference"]) == {14}
    assert set(un["reason"]) == {"fewer than 8 donors in a group"}


def test_errors(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    with pytest.raises(cytoatlas.CytoatlasError, match=r"no obs column 'disease'.*sample, donor, cell_type"):
        cytoatlas.compare(list(ATLASES), out, results=results, by="disease", reference="healthy", figures=False)
    with pytest.raises(cytoatlas.CytoatlasError, match="its values: untreated, treated"):
        cytoatlas.compare(list(ATLASES), out, results=results, by="treatment", reference="placebo", figures=False)
    with pytest.raises(cytoatlas.CytoatlasError, match="no sample x cell type activity files"):
        cytoatlas.compare("alpha", out, results=results, levels=["L9"], by="treatment", reference="untreated",
                          figures=False)


def test_cli_compare(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    code = main(["-q", "compare", "--atlas", "alpha", "--atlas", "beta", "--results", str(results), "--by",
                 "treatment", "--reference", "untreated", "--groups", "treated", "--continuous", "bmi",
                 "--covariates", "age,sex", "--no-figures", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(p) for t in COMPARE_TABLES for p in compare_table_paths(out, t))
    diff = _tables(out)["differential"]
    assert set(diff["covariates"]) == {"age,sex"}
    assert main(["compare", "--atlas", "alpha", "--results", str(results), "--continuous", "bmi", "--test",
                 "wilcoxon", "--out", str(out)]) == 2
    assert "a rank test has no slope" in capsys.readouterr().err


def test_statsmodels_is_not_imported_by_the_cli_or_the_package() -> None:
    code = ("import sys, cytoatlas, cytoatlas.cli, cytoatlas._compare; cytoatlas.cli.build_parser(); "
            "print('statsmodels' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_compare_reads_the_pipelines_activity_files(demo_h5ad: Path, tmp_path: Path) -> None:
    """On pseudobulk + activity made by the pipeline: a covariate scan of each donor's mean cell count, on a level
    with cell types and on one without (every cell of a sample in one group, ``all``)."""
    from cytoatlas.demo import demo_config

    cfg = demo_config(demo_h5ad, "demo", donor_only=True)
    root = tmp_path / "demo"
    pb = cytoatlas.pseudobulk(cfg, root / "pseudobulk", levels=["L2", "donor_only"], n_bootstrap=0)
    cytoatlas.activity(pb, root / "activity", signatures=["cytosig"], centre="within:cell_type")
    out = tmp_path / "cmp"
    cytoatlas.compare(cfg, out, results={"demo": root}, continuous=["n_cells"], figures=False)
    tables = _tables(out)
    assoc = tables["association"]
    assert set(assoc["level"]) == {"L2", "donor_only"} and set(assoc["signature_set"]) == {"cytosig"}
    for level in ("L2", "donor_only"):
        path = next(p for p in find_activity(root / "activity", "demo") if f"_{level.lower()}_samples_" in p.name)
        act = read_activity(path)
        rows = assoc[assoc["level"] == level]
        untestable = tables["untestable"][tables["untestable"]["level"] == level]
        assert act.obs["cell_type"].nunique() * len(act.names) == len(rows) + len(act.names) * len(untestable)
        n_donors = act.obs.groupby("cell_type", observed=True)["donor"].nunique()
        assert dict(rows.groupby("cell_type")["n"].first()) == {k: v for k, v in n_donors.items()
                                                                if k in set(rows["cell_type"])}
        assert np.isfinite(rows["pvalue"]).all()
    pooled = assoc[assoc["level"] == "donor_only"]
    assert set(pooled["cell_type"]) == {"all"} and set(pooled["cl_name"]) == {""}
    assert json.loads((out / "manifest.json").read_text())["outputs"]["association.parquet"]["step"] == "compare"


def test_dendritic_cells_named_two_ways_pool_in_the_meta_analysis(tmp_path: Path) -> None:
    # one atlas says "Dendritic cells", the other "Conventional dendritic cell" (a child term in CL): they meet at
    # dendritic cell, the finest term both hold, and are pooled; a shared name table kept them apart
    atlases = {"gamma": (12, 3, ["Dendritic cells", "CD14 Monocytes", "CD4 T cells"]),
               "delta": (12, 4, ["Conventional dendritic cell", "Classical monocytes", "CD4+ T"])}
    for name, (n_donors, seed, cell_types) in atlases.items():
        write_atlas(tmp_path, name, n_donors, seed, cell_types, Planted(cell_types[1], cell_types[2]))
    out = tmp_path / "cmp"
    cytoatlas.compare(list(atlases), out, results=tmp_path, **OPTIONS)
    meta = _tables(out)["meta"]
    fine = meta[(meta["resolution"] == "fine") & (meta["analysis"] == "association")]
    assert set(fine["cl_name"]) == {"dendritic cell", "classical monocyte", "CD4-positive, alpha-beta T cell"}
    dc = fine[fine["cl_id"] == "CL:0000451"]
    assert len(dc) == len(SIGNATURES) and set(dc["n_atlases"]) == {2}
    assert set(dc["labels"]) == {"delta: Conventional dendritic cell; gamma: Dendritic cells"}

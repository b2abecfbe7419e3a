"""The `cytoatlas` command: listing atlases, running pseudobulk exactly as the Python API does, --skip-existing,
and how errors reach the user."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _atlas_factory import dense, file_ids, read_level, write_atlas, write_registry

import cytoatlas
from cytoatlas import output_paths
from cytoatlas.cli import main
from cytoatlas.registry import DATA_ROOT_ENV

SEED_ATLASES = ["cima", "inflammation_main", "inflammation_val", "inflammation_ext", "scatlas_normal",
                "scatlas_cancer"]
CLI = Path(sys.executable).parent / "cytoatlas"
REGISTRY = """
[atlas.tiny]
h5ad = "tiny.h5ad"
sample_col = "sample"
donor_col = "donor"
[atlas.tiny.levels]
L1 = "cell_type"
lineage = "lineage"
"""
RUN_ARGS = ["--batch-size", "50", "--n-bootstrap", "5", "--seed", "1", "--min-cells", "3", "--min-samples", "2"]


@pytest.fixture(autouse=True)
def _no_env_data_root(monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


@pytest.fixture
def tiny(tmp_path):
    atlas = write_atlas(tmp_path / "tiny.h5ad", "csr_gzip")
    reg = write_registry(tmp_path / "reg.toml", REGISTRY)
    return atlas, reg


def _env_without_data_root():
    return {k: v for k, v in os.environ.items() if k != DATA_ROOT_ENV}


# ---------------------------------------------------------------------------------------------------------------
# cytoatlas atlases


def test_atlases_console_script_lists_the_six_without_data_root():
    proc = subprocess.run([str(CLI), "atlases"], capture_output=True, text=True, env=_env_without_data_root(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = [line for line in proc.stdout.splitlines() if line and not line.startswith(" ")]
    assert sorted(listed) == sorted(SEED_ATLASES)
    assert "no data root" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_atlases_with_data_root_shows_resolved_paths(tmp_path, capsys):
    assert main(["atlases", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "CIMA") in out and "(missing)" in out
    assert "no data root" not in out


def test_atlases_with_user_registry(tiny, capsys):
    atlas, reg = tiny
    assert main(["atlases", "--registry", str(reg)]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert sorted(listed) == sorted([*SEED_ATLASES, "tiny"])
    tiny_block = out[out.index("tiny\n"):]
    assert f"{atlas.path} (found)" in tiny_block.splitlines()[1]
    assert "L1=cell_type" in tiny_block and "sample: sample" in tiny_block


def test_atlases_reports_a_malformed_entry_truthfully(tmp_path, capsys):
    """An atlas with an absolute path and a misspelt key: the listing must name the real problem (the unknown
    key), either as an error or in the atlas' entry, not claim the path is relative with no data root."""
    reg = write_registry(tmp_path / "reg.toml", '[atlas.x]\nh5ad = "/abs/x.h5ad"\nsample_col = "s"\n'
                                                'levels = { L1 = "c" }\nsampel = "s2"\n')
    rc = main(["atlases", "--registry", str(reg)])
    captured = capsys.readouterr()
    assert rc in (0, 2)
    text = captured.out + captured.err
    assert "sampel" in text
    if rc == 0:
        block = captured.out[captured.out.index("\nx\n") + 1:]
        assert "no data root" not in block.splitlines()[1]


# ---------------------------------------------------------------------------------------------------------------
# cytoatlas pseudobulk == cytoatlas.pseudobulk


def test_cli_pseudobulk_matches_python_api(tiny, tmp_path, capsys):
    _, reg = tiny
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    rc = main(["pseudobulk", "--registry", str(reg), "--atlas", "tiny", "--out", str(cli_out),
               "--levels", "L1, lineage", *RUN_ARGS])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    api_paths = cytoatlas.pseudobulk("tiny", api_out, registry=reg, levels=["L1", "lineage"], batch_size=50,
                                     n_bootstrap=5, bootstrap_seed=1, min_cells=3, min_samples=2)
    assert [Path(p).name for p in printed] == [p.name for p in api_paths]
    assert len(api_paths) == 6
    assert sorted(p.name for p in cli_out.iterdir()) == sorted(p.name for p in api_out.iterdir())
    for level in ("L1", "lineage"):
        a, b = read_level(cli_out, "tiny", level), read_level(api_out, "tiny", level)
        assert set(a) == set(b) == {"celltype", "samples", "resampled"}
        for kind in a:
            assert a[kind].obs.equals(b[kind].obs)
            assert list(a[kind].var_names) == list(b[kind].var_names)
            np.testing.assert_array_equal(dense(a[kind].X), dense(b[kind].X))
            assert set(a[kind].layers) == set(b[kind].layers)
            for layer in a[kind].layers:
                np.testing.assert_array_equal(dense(a[kind].layers[layer]), dense(b[kind].layers[layer]))
        assert a["resampled"].n_obs == 5 * a["resampled"].obs["cell_type"].nunique() > 0
        assert dict(a["celltype"].uns["parameters"])["seed"] == 1


# ---------------------------------------------------------------------------------------------------------------
# --skip-existing


def _run(reg, out, *extra):
    return main(["pseudobulk", "--registry", str(reg), "--atlas", "tiny", "--out", str(out), "--skip-existing",
                 *RUN_ARGS, *extra])


def _level_files(out, level):
    return list(output_paths(out, "tiny", level).values())


def test_skip_existing_leaves_current_files_untouched(tiny, tmp_path, caplog):
    _, reg = tiny
    out = tmp_path / "out"
    assert _run(reg, out) == 0
    files = _level_files(out, "L1") + _level_files(out, "lineage")
    before = file_ids(files)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cytoatlas"):
        assert _run(reg, out) == 0
    assert file_ids(files) == before
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2 and any("L1" in m for m in skipped) and any("lineage" in m for m in skipped)

    # batch size does not change results, so it does not make files stale
    assert _run(reg, out, "--batch-size", "7") == 0
    assert file_ids(files) == before


def test_skip_existing_recomputes_after_parameter_change(tiny, tmp_path):
    _, reg = tiny
    out = tmp_path / "out"
    assert _run(reg, out) == 0
    files = _level_files(out, "L1") + _level_files(out, "lineage")
    before = file_ids(files)
    # each change alone (the others back at RUN_ARGS' values) makes every file stale
    for change in (["--seed", "2"], ["--min-cells", "4"], ["--n-bootstrap", "6"], ["--min-samples", "3"]):
        assert _run(reg, out, *change) == 0
        after = file_ids(files)
        assert all(after[p] != before[p] for p in files), change
        params = dict(read_level(out, "tiny", "L1")["celltype"].uns["parameters"])
        assert params[change[0][2:].replace("-", "_")] == int(change[1])
        before = after
    # and the last files are current for their parameters
    assert _run(reg, out, *change) == 0
    assert file_ids(files) == before


def test_skip_existing_rewrites_only_a_missing_file(tiny, tmp_path):
    _, reg = tiny
    out = tmp_path / "out"
    assert _run(reg, out) == 0
    l1, lineage = _level_files(out, "L1"), _level_files(out, "lineage")
    before = file_ids(l1 + lineage)
    l1[1].unlink()  # the samples file
    assert _run(reg, out) == 0
    assert all(p.exists() for p in l1)
    after = file_ids(l1 + lineage)
    assert after[l1[1]] != before[l1[1]]  # the missing file is written again
    assert all(after[p] == before[p] for p in [l1[0], *l1[2:], *lineage])  # current files are left alone


def test_skip_existing_recomputes_after_input_changes(tiny, tmp_path):
    _, reg = tiny
    out = tmp_path / "out"
    assert _run(reg, out) == 0
    files = _level_files(out, "L1")
    before = file_ids(files)
    old_counts = dense(read_level(out, "tiny", "L1")["celltype"].layers["counts"])
    new = write_atlas(tmp_path / "tiny.h5ad", "csr_gzip", seed=5)
    assert _run(reg, out) == 0
    after = file_ids(files)
    assert all(after[p] != before[p] for p in files)
    new_counts = dense(read_level(out, "tiny", "L1")["celltype"].layers["counts"])
    assert not np.array_equal(new_counts, old_counts)
    np.testing.assert_array_equal(new_counts.sum(axis=0), new.counts.sum(axis=0))


def test_without_skip_existing_files_are_rewritten(tiny, tmp_path):
    _, reg = tiny
    out = tmp_path / "out"
    args = ["pseudobulk", "--registry", str(reg), "--atlas", "tiny", "--out", str(out), "--levels", "L1",
            *RUN_ARGS]
    assert main(args) == 0
    files = _level_files(out, "L1")
    before = file_ids(files)
    assert main(args) == 0
    after = file_ids(files)
    assert all(after[p] != before[p] for p in files)
    assert not (out / output_paths(out, "tiny", "lineage")["celltype"].name).exists()


# ---------------------------------------------------------------------------------------------------------------
# errors


def _assert_cli_error(err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("cytoatlas: error: ")
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0]


def test_cli_unknown_atlas(tmp_path, capsys):
    assert main(["pseudobulk", "--atlas", "nope", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    _assert_cli_error(captured.err, "unknown atlas 'nope'", "cima")
    assert captured.out == ""
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_and_bad_option(tiny, tmp_path, capsys):
    _, reg = tiny
    out = tmp_path / "out"
    base = ["pseudobulk", "--registry", str(reg), "--atlas", "tiny", "--out", str(out)]
    assert main([*base, "--levels", "L7"]) == 2
    _assert_cli_error(capsys.readouterr().err, "L7", "L1", "lineage")
    assert main([*base, "--batch-size", "0"]) == 2
    _assert_cli_error(capsys.readouterr().err, "batch_size")
    write_atlas(tmp_path / "tiny.h5ad", "csc")
    assert main(base) == 2
    _assert_cli_error(capsys.readouterr().err, "CSC")
    assert not out.exists()


def test_cli_no_data_root(tmp_path, capsys):
    assert main(["pseudobulk", "--atlas", "cima", "--out", str(tmp_path / "out")]) == 2
    _assert_cli_error(capsys.readouterr().err, "--data-root")


def test_cli_bad_registry(tmp_path, capsys):
    reg = write_registry(tmp_path / "reg.toml", "[atlas.x\n")
    assert main(["atlases", "--registry", str(reg)]) == 2
    _assert_cli_error(capsys.readouterr().err, "not valid TOML")


def test_console_script_error_exit_code(tmp_path):
    proc = subprocess.run([str(CLI), "pseudobulk", "--atlas", "cima", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env=_env_without_data_root(), timeout=60)
    assert proc.returncode == 2
    _assert_cli_error(proc.stderr, "no such file")
    assert proc.stdout == ""


def test_demo_builds_two_atlases_validates_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out), "--n-cells", "4000", "--n-bootstrap", "5"]) == 0
    printed = [Path(p) for p in capsys.readouterr().out.split()]
    assert all(p.exists() for p in printed)
    for name in ("demo", "demo2"):
        expected = [p for lev in ("L1", "L2", "L3", "L4", "donor_only")
                    for p in output_paths(out / name / "pseudobulk", name, lev).values()]
        assert [p for p in printed if p.parent == out / name / "pseudobulk"] == expected
        # then activity: CytoSig and SecAct on every pseudobulk file, bootstrap intervals as tables
        activity = [p for p in printed if p.parent == out / name / "activity"]
        assert sum(p.name.endswith("_activity.h5ad") for p in activity) == 15 * 2
        assert sum(p.name.endswith("_activity_ci.csv") for p in activity) == 5 * 2
        l4 = ad.read_h5ad(expected[9])
        assert l4.n_obs > 5 and "Doublets" not in set(l4.obs["cell_type"])  # the registry's exclusion applies
    # the two atlases validated together, and the report
    assert out / "validation" / "cross_atlas.parquet" in printed and printed[-1] == out / "validation" / "report.html"
    matches = pd.read_csv(out / "validation" / "cell_type_matches.csv", keep_default_na=False)
    assert matches.loc[matches["cell_type"] == "T-unconv", "cl_id"].unique().tolist() == ["CL:0002419"]
    mtimes = {n: (out / f"{n}_atlas.h5ad").stat().st_mtime_ns for n in ("demo", "demo2")}
    assert main(["-q", "demo", "--out", str(out), "--n-cells", "4000", "--n-bootstrap", "5"]) == 0
    assert {n: (out / f"{n}_atlas.h5ad").stat().st_mtime_ns for n in mtimes} == mtimes  # reused, not rebuilt

"""Nothing dropped in silence (issue 22, the steps' side): inputs verified against their manifests, unreadable
manifests, option values that name nothing, leftovers of dead runs in a step's folders.

Each case ran against main's code first and failed there (exit 0 with a warning, empty tables, an option
silently ignored, a leftover kept).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
from _compare_factory import Planted, write_atlas

import cytoatlas
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.steps import COMPARE, REPORT
from cytoatlas.cli import main
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import find_activity, find_pseudobulk
from cytoatlas.io.manifest import MANIFEST_NAME, read_manifest, record, update_manifest
from cytoatlas.pipeline import atlas_status

COMPARE_OPTIONS = {"by": "treatment", "reference": "untreated", "figures": False}
ATLASES_DEFAULT = {"alpha": (14, 1, ["B cells", "CD14 Monocytes", "CD4 T cells"],
                             Planted("CD14 Monocytes", "CD4 T cells")),
                   "beta": (12, 2, ["B", "CD4+ T", "Classical monocytes"], Planted("Classical monocytes", "CD4+ T"))}


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` (its bytes), to tell that a failed run changed nothing."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _unrecord(path: Path) -> None:
    """Drop ``path``'s record from its directory's manifest (as a run that died before recording it leaves it)."""
    doc = json.loads((path.parent / MANIFEST_NAME).read_text())
    del doc["outputs"][path.name]
    (path.parent / MANIFEST_NAME).write_text(json.dumps(doc))


# --- fixtures: sample activity files (compare), and a pipeline run of the demo atlas (validate) -----------------


@pytest.fixture(scope="module")
def cmp_results(tmp_path_factory) -> Path:
    """Two atlases' results with sample x cell type activity at two levels (L1, L2)."""
    root = tmp_path_factory.mktemp("checks_compare")
    for atlas, (n_donors, seed, cell_types, where) in ATLASES_DEFAULT.items():
        for level in ("L1", "L2"):
            write_atlas(root, atlas, n_donors, seed, cell_types, where, level=level)
    return root


@pytest.fixture
def cmp_copy(cmp_results: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cmp_results, tmp_path / "results"))


@pytest.fixture(scope="module")
def pipeline(demo_h5ad: Path, tmp_path_factory) -> dict:
    """The demo atlas' pseudobulk (L2, donor_only; 5 resamples) and CytoSig activity, and its validation."""
    from cytoatlas.demo import demo_config

    root = tmp_path_factory.mktemp("checks_pipeline")
    cfg = demo_config(demo_h5ad, "demo", donor_only=True)
    pb = cytoatlas.pseudobulk(cfg, root / "demo" / "pseudobulk", levels=["L2", "donor_only"], n_bootstrap=5)
    cytoatlas.activity(pb, root / "demo" / "activity", signatures=["cytosig"], centre="within:cell_type")
    val = root / "val"
    cytoatlas.validate(cfg, val, results={"demo": root / "demo"}, figures=False, n_bootstrap=0)
    return {"cfg": cfg, "root": root, "val": val}


@pytest.fixture
def pipe_copy(pipeline: dict, tmp_path: Path) -> dict:
    root = Path(shutil.copytree(pipeline["root"], tmp_path / "copy"))
    return {"cfg": pipeline["cfg"], "root": root, "results": {"demo": root / "demo"}, "val": root / "val"}


# --- 1. inputs verified against their manifests -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "unrecorded"])
def test_compare_refuses_a_damaged_or_unrecorded_input_and_keeps_its_outputs(cmp_copy: Path, tmp_path: Path,
                                                                            damage: str) -> None:
    out = tmp_path / "cmp"
    cytoatlas.compare(list(ATLASES_DEFAULT), out, results=cmp_copy, **COMPARE_OPTIONS)
    before = _snapshot(out)
    path = next(p for p in find_activity(cmp_copy / "beta" / "activity", "beta") if "_l2_" in p.name)
    (_truncate if damage == "truncated" else _unrecord)(path)
    word = "damaged" if damage == "truncated" else "not recorded"
    with pytest.raises(CytoatlasError, match=rf"{path.name} is {word}.*rerun `cytoatlas run --atlas beta"):
        cytoatlas.compare(list(ATLASES_DEFAULT), out, results=cmp_copy, force=True, **COMPARE_OPTIONS)
    assert _snapshot(out) == before
    # the same from the command line: exit 2, one line naming the file
    code = main(["-q", "compare", "--atlas", "alpha", "--atlas", "beta", "--results", str(cmp_copy), "--out",
                 str(out), "--by", "treatment", "--reference", "untreated", "--no-figures", "--force"])
    assert code == 2 and _snapshot(out) == before


def test_a_damaged_file_of_a_level_not_asked_for_is_not_read(cmp_copy: Path, tmp_path: Path) -> None:
    path = next(p for p in find_activity(cmp_copy / "beta" / "activity", "beta") if "_l1_" in p.name)
    _truncate(path)
    cytoatlas.compare(list(ATLASES_DEFAULT), tmp_path / "cmp", results=cmp_copy, levels=["L2"], **COMPARE_OPTIONS)
    with pytest.raises(CytoatlasError, match="damaged"):
        cytoatlas.compare(list(ATLASES_DEFAULT), tmp_path / "cmp2", results=cmp_copy, **COMPARE_OPTIONS)


@pytest.mark.parametrize("which", ["activity", "pseudobulk"])
def test_validate_refuses_a_truncated_input_and_keeps_its_outputs(pipe_copy: dict, which: str) -> None:
    val = pipe_copy["val"]
    before = _snapshot(val)
    base = pipe_copy["results"]["demo"]
    path = next(p for p in (find_activity(base / "activity", "demo") if which == "activity" else
                            find_pseudobulk(base / "pseudobulk", "demo")) if "_samples" in p.name and "_l2_" in p.name
                or p.name.endswith("_l2_samples.h5ad"))
    _truncate(path)
    with pytest.raises(CytoatlasError, match=rf"{path.name} is damaged.*rerun `cytoatlas run --atlas demo"):
        cytoatlas.validate(pipe_copy["cfg"], val, results=pipe_copy["results"], figures=False, n_bootstrap=0,
                           force=True)
    assert _snapshot(val) == before


def test_validate_refuses_an_unrecorded_activity_file(pipe_copy: dict, tmp_path: Path) -> None:
    base = pipe_copy["results"]["demo"]
    path = next(p for p in find_activity(base / "activity", "demo") if "donor_only" in p.name)
    _unrecord(path)
    with pytest.raises(CytoatlasError, match=rf"{path.name} is not recorded"):
        cytoatlas.validate(pipe_copy["cfg"], tmp_path / "v", results=pipe_copy["results"], figures=False)
    assert not (tmp_path / "v").exists()


def test_groundtruth_refuses_a_truncated_input(cmp_copy: Path, tmp_path: Path) -> None:
    path = next(p for p in find_activity(cmp_copy / "alpha" / "activity", "alpha") if "_l2_" in p.name)
    _truncate(path)
    with pytest.raises(CytoatlasError, match=rf"{path.name} is damaged"):
        cytoatlas.groundtruth("alpha", tmp_path / "gt", results=cmp_copy, column="treatment", control="untreated",
                              figures=False)


def test_activity_refuses_a_truncated_recorded_pseudobulk_file(pipe_copy: dict, tmp_path: Path) -> None:
    base = pipe_copy["results"]["demo"]
    path = next(p for p in find_pseudobulk(base / "pseudobulk", "demo") if p.name.endswith("_l2_samples.h5ad"))
    _truncate(path)
    with pytest.raises(CytoatlasError, match=rf"{path.name} is damaged"):
        cytoatlas.activity([path], tmp_path / "act", signatures=["cytosig"])


def test_report_refuses_a_damaged_or_unrecorded_table(pipe_copy: dict) -> None:
    val = pipe_copy["val"]
    (val / "summary.csv").write_text((val / "summary.csv").read_text() + "\n")
    with pytest.raises(CytoatlasError, match=r"summary.csv is damaged.*cytoatlas validate --force"):
        cytoatlas.report(val)
    assert not (val / "report.html").exists()
    _unrecord(val / "rho.csv")
    with pytest.raises(CytoatlasError, match="rho.csv is not recorded"):
        cytoatlas.report(val)


def test_validate_records_the_groups_it_leaves_out(pipe_copy: dict, tmp_path: Path) -> None:
    """A level whose sample x cell type activity file is not there (deliberately: its run made no such file)
    takes part in no within-atlas correlation, and the tables' records say so."""
    base = pipe_copy["results"]["demo"]
    path = next(p for p in find_activity(base / "activity", "demo") if "donor_only_samples" in p.name)
    path.unlink()
    doc = json.loads((path.parent / MANIFEST_NAME).read_text())
    del doc["outputs"][path.name]
    (path.parent / MANIFEST_NAME).write_text(json.dumps(doc))
    out = tmp_path / "v"
    cytoatlas.validate(pipe_copy["cfg"], out, results=pipe_copy["results"], figures=False, n_bootstrap=0)
    rec = read_manifest(out)["rho.parquet"]
    assert rec["left_out"] == [{"atlas": "demo", "level": "donor_only", "signature_set": "cytosig",
                                "reason": "no sample x cell type activity file: left out of the within-atlas "
                                          "correlations"}]


# --- 2. an unreadable manifest is an error for its readers -------------------------------------------------------


def _break(directory: Path) -> None:
    (directory / MANIFEST_NAME).write_text('{"outputs": {"x.h5ad": ')


def test_an_unreadable_input_manifest_is_an_error_for_compare_validate_status(pipe_copy: dict, cmp_copy: Path,
                                                                             tmp_path: Path) -> None:
    _break(cmp_copy / "alpha" / "activity")
    with pytest.raises(CytoatlasError, match=r"manifest.json cannot be read.*rerun `cytoatlas run --atlas alpha"):
        cytoatlas.compare(list(ATLASES_DEFAULT), tmp_path / "c", results=cmp_copy, **COMPARE_OPTIONS)
    assert not (tmp_path / "c").exists()
    base = pipe_copy["results"]["demo"]
    _break(base / "pseudobulk")
    with pytest.raises(CytoatlasError, match=r"manifest.json cannot be read"):
        cytoatlas.validate(pipe_copy["cfg"], tmp_path / "v", results=pipe_copy["results"], figures=False)
    with pytest.raises(CytoatlasError, match=r"manifest.json cannot be read.*cytoatlas run"):
        atlas_status(pipe_copy["cfg"], base)
    assert main(["-q", "status", "--atlas", "demo", "--out", str(base)]) == 2


def test_an_unreadable_step_manifest_is_an_error_for_its_step_status_and_report(pipe_copy: dict, cmp_results: Path,
                                                                                tmp_path: Path) -> None:
    from cytoatlas._harness import directory_status

    out = tmp_path / "cmp"
    cytoatlas.compare(list(ATLASES_DEFAULT), out, results=cmp_results, **COMPARE_OPTIONS)
    tables = _snapshot(out)
    _break(out)
    with pytest.raises(CytoatlasError, match=r"cannot be read.*cytoatlas compare` with --force"):
        cytoatlas.compare(list(ATLASES_DEFAULT), out, results=cmp_results, **COMPARE_OPTIONS)
    with pytest.raises(CytoatlasError, match="cannot be read"):
        directory_status(out)
    with pytest.raises(CytoatlasError, match=r"cannot be read.*cytoatlas compare --force"):
        cytoatlas.report(pipe_copy["val"], compare=out)
    assert {k for k in _snapshot(out) if k != MANIFEST_NAME} == {k for k in tables if k != MANIFEST_NAME}
    cytoatlas.compare(list(ATLASES_DEFAULT), out, results=cmp_results, force=True, **COMPARE_OPTIONS)
    assert "differential.parquet" in read_manifest(out)
    _break(pipe_copy["val"])
    with pytest.raises(CytoatlasError, match=r"cannot be read.*cytoatlas validate --force"):
        cytoatlas.report(pipe_copy["val"])


def test_run_recomputes_over_an_unreadable_manifest_and_says_so(pipe_copy: dict, caplog) -> None:
    base = pipe_copy["results"]["demo"]
    _break(base / "activity")
    with caplog.at_level(logging.WARNING, logger="cytoatlas"):
        cytoatlas.activity(find_pseudobulk(base / "pseudobulk", "demo"), base / "activity", signatures=["cytosig"],
                           centre="within:cell_type", skip_existing=True)
    assert "cannot be read" in caplog.text and "recomputes everything it described" in caplog.text
    files = {p.name for p in (base / "activity").iterdir() if p.name != MANIFEST_NAME}
    assert set(read_manifest(base / "activity", strict=True)) == files


# --- 3. option values that name nothing ---------------------------------------------------------------------------


def _cli_error(argv: list[str], capsys) -> str:
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line, no traceback
    return err


def _compare_argv(results: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--atlas", "alpha", "--atlas", "beta", "--results", str(results), "--out", str(out),
            "--no-figures", *extra]


@pytest.mark.parametrize(("extra", "python", "message"), [
    (["--by", "treatment", "--reference", "untreated", "--groups", ""], {"groups": ""}, "groups names nothing"),
    (["--continuous", "bmi", "--covariates", ""], {"continuous": ["bmi"], "covariates": ""},
     "covariates names nothing"),
    (["--continuous", ""], {"continuous": ""}, "continuous names nothing"),
    (["--by", "treatment", "--reference", "untreated", "--covariates", "age,,sex"],
     {"covariates": "age,,sex"}, "covariates names nothing"),
    (["--by", "treatment", "--reference", "untreated", "--levels", "L2,NOPE"], {"levels": "L2,NOPE"},
     r"level 'NOPE' not found; valid: (l1, L2|L2, l1)$"),
    (["--by", "treatment", "--reference", "untreated", "--signatures", "cytosig,nope"],
     {"signatures": ["cytosig", "nope"]}, r"set 'nope' not found; valid: cytosig"),
    (["--by", "treatment", "--reference", "untreated", "--levels", ""], {"levels": ""}, "levels names nothing"),
    (["--by", "treatment", "--reference", "untreated", "--min-group-size", "1"], {"min_group_size": 1},
     "min_group_size must be >= 2"),
    (["--by", "", "--reference", "untreated"], {"by": ""}, "by names nothing"),
])
def test_compare_options_that_name_nothing(cmp_results: Path, tmp_path: Path, capsys, extra, python,
                                           message) -> None:
    err = _cli_error(_compare_argv(cmp_results, tmp_path / "c", *extra), capsys)
    assert re.search(message, err), err
    kwargs = {"by": "treatment", "reference": "untreated", **python} if "continuous" not in python else python
    if python.get("by") == "":
        kwargs = {"by": "", "reference": "untreated"}
    with pytest.raises(CytoatlasError, match=message):
        cytoatlas.compare(list(ATLASES_DEFAULT), tmp_path / "c", results=cmp_results, figures=False, **kwargs)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("extra", "python", "message"), [
    (["--scatter", "NOPE"], {"scatter_targets": ["NOPE"]}, r"scatter_targets: target 'NOPE' not found; valid: .*IL6"),
    (["--scatter", ""], {"scatter_targets": ""}, "scatter_targets names nothing"),
    (["--target-gene", "NOSUCH=IL6"], {"target_genes": {"NOSUCH": "IL6"}},
     r"target_genes: target 'NOSUCH' not found; valid: .*IFN1"),
    (["--target-gene", "IFN1=IFNB1=X"], {"target_genes": ["IFN1=IFNB1=X"]},
     r"target_genes wants TARGET=GENE, got 'IFN1=IFNB1=X'"),
    (["--target-gene", "IFN1="], {"target_genes": {"IFN1": ""}}, r"target_genes wants TARGET=GENE"),
    (["--levels", "L2,NOPE"], {"levels": "L2,NOPE"}, r"level 'NOPE' not found; valid: .*L2"),
    (["--signatures", ""], {"signatures": ""}, "signatures names nothing"),
    (["--composition-level", "NOPE"], {"composition_level": "NOPE"}, r"composition_level: level 'NOPE' not found"),
    (["--n-bootstrap", "-1"], {"n_bootstrap": -1}, "n_bootstrap must be >= 0"),
    (["--min-samples", "2"], {"min_samples": 2}, "min_samples must be >= 3"),
    (["--resolution", "both", "--bootstrap-seed", "-3"], {"bootstrap_seed": -3}, "bootstrap_seed must be >= 0"),
])
def test_validate_options_that_name_nothing(pipeline: dict, tmp_path: Path, capsys, extra, python,
                                            message) -> None:
    results = {"demo": pipeline["root"] / "demo"}
    argv = ["validate", "--atlas", "demo", "--results", str(pipeline["root"]), "--out", str(tmp_path / "v"),
            "--no-figures", *extra]
    err = _cli_error(argv, capsys)
    assert re.search(message, err), err
    with pytest.raises(CytoatlasError, match=message):
        cytoatlas.validate(pipeline["cfg"], tmp_path / "v", results=results, figures=False, **python)
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize(("extra", "python", "message"), [
    (["--treatments", ""], {"treatments": ""}, "treatments names nothing"),
    (["--alias", "IL10"], {"aliases": ["IL10"]}, "aliases wants TREATMENT=SIGNATURE"),
    (["--levels", "NOPE"], {"levels": ["NOPE"]}, r"level 'NOPE' not found"),
    (["--min-donors", "1"], {"min_donors": 1}, "min_donors must be >= 2"),
])
def test_groundtruth_options_that_name_nothing(cmp_results: Path, tmp_path: Path, capsys, extra, python,
                                               message) -> None:
    argv = ["groundtruth", "--atlas", "alpha", "--results", str(cmp_results), "--out", str(tmp_path / "g"),
            "--perturbation", "treatment", "--control", "untreated", "--no-figures", *extra]
    assert re.search(message, _cli_error(argv, capsys))
    with pytest.raises(CytoatlasError, match=message):
        cytoatlas.groundtruth("alpha", tmp_path / "g", results=cmp_results, column="treatment", control="untreated",
                              figures=False, **python)


def test_report_max_rows_and_sources_are_checked(pipeline: dict, tmp_path: Path, capsys) -> None:
    val = pipeline["val"]
    for bad in ("-1", "0"):
        assert "max_rows must be >= 1" in _cli_error(["report", "--out", str(val), "--max-rows", bad], capsys)
    with pytest.raises(CytoatlasError, match="max_rows must be >= 1"):
        cytoatlas.report(val, max_rows=-1)
    assert "compare section's source names nothing" in _cli_error(["report", "--out", str(val), "--compare", ""],
                                                                   capsys)
    assert not (val / "report.html").exists()


# --- 4. leftovers of dead runs, at any depth of a step's folders --------------------------------------------------


def _leftover(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".{name}.tmp-999999-1"  # pid 999999: not this process (a run that died)
    path.write_bytes(b"partial")
    return path


def test_a_step_directory_removes_leftovers_at_any_depth(tmp_path: Path) -> None:
    out = tmp_path / "out"
    nested = _leftover(out / "figures" / "deep" / "er", "volcano.png")
    top = _leftover(out / "figures", "forest.svg")
    mine = out / "figures" / f".x.png.tmp-{os.getpid()}-1"
    mine.write_bytes(b"this process")
    with StepDirectory(out, COMPARE, subdirs=["figures"]):
        pass
    assert not nested.exists() and not top.exists() and mine.exists()


def test_report_removes_leftover_figures_of_a_dead_report(pipe_copy: dict) -> None:
    val = pipe_copy["val"]
    left = _leftover(val / "figures", "cells_embedding__demo.png")
    with StepDirectory(val, REPORT, subdirs=["figures"]):
        pass
    assert not left.exists()
    left = _leftover(val / "figures", "cells_embedding__demo.png")
    cytoatlas.report(val)
    assert not left.exists()


def test_verified_fingerprint_checks_a_record_and_a_directory_of_other_files(tmp_path: Path) -> None:
    from cytoatlas.io.manifest import verified_fingerprint

    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "x.bin").write_bytes(b"abc")
    assert verified_fingerprint(loose / "x.bin", rerun="r", required=False)["size"] == 3
    with pytest.raises(CytoatlasError, match="not recorded"):
        verified_fingerprint(loose / "x.bin", rerun="r")
    update_manifest(loose, {"x.bin": record(loose / "x.bin", step="activity", parameters={}, inputs=[])})
    fp = verified_fingerprint(loose / "x.bin", rerun="r")
    (loose / "x.bin").write_bytes(b"abd")  # same size, other content: the checksum tells
    with pytest.raises(CytoatlasError, match="checksum differs.*; r$"):
        verified_fingerprint(loose / "x.bin", rerun="r")
    assert fp["checksum"].startswith("xxh3_128:")


# --- the options of run / status (one dataclass each, shared by the CLI, run() and status()) -----------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"n_bootstrap": -1}, "n_bootstrap must be an integer >= 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"bootstrap_seed": -2}, "bootstrap_seed must be an integer >= 0"),
    ({"threads": 0}, "threads must be an integer >= 1"),
    ({"checkpoint_every": -1.0}, "checkpoint_every must be >= 0"),
])
def test_pseudobulk_options_are_range_checked(options, message) -> None:
    from cytoatlas.options import PseudobulkOptions

    with pytest.raises(CytoatlasError, match=message):
        PseudobulkOptions(**options)


@pytest.mark.parametrize(("options", "message"), [
    ({"signatures": ""}, "signatures names nothing"),
    ({"signatures": ["cytosig", ""]}, "signatures names nothing"),
    ({"signatures": ()}, "signatures names nothing"),
    ({"n_rand": 0}, "n_rand must be >= 1"),
    ({"lambda_": -1.0}, "lambda must be a finite number >= 0"),
    ({"lambda_": float("nan")}, "lambda must be a finite number >= 0"),
])
def test_activity_options_name_something_and_are_range_checked(options, message) -> None:
    from cytoatlas.options import ActivityOptions

    with pytest.raises(CytoatlasError, match=message):
        ActivityOptions(**options)
    assert ActivityOptions(signatures="cytosig, secact").signatures == ("cytosig", "secact")


@pytest.mark.parametrize(("argv", "message"), [
    (["status", "--atlas", "demo", "--n-bootstrap", "-1"], "n_bootstrap must be an integer >= 0"),
    (["status", "--atlas", "demo", "--signatures", ""], "signatures names nothing"),
    (["status", "--atlas", "demo", "--signatures", "cytosig,"], "signatures names nothing"),
    (["run", "--atlas", "demo", "--signatures", ","], "signatures names nothing"),
    (["run", "--atlas", "demo", "--lambda", "-1"], "lambda must be a finite number >= 0"),
])
def test_run_and_status_options_from_the_cli(pipeline: dict, capsys, argv, message) -> None:
    out = ["--out", str(pipeline["root"] / "demo")]
    assert message in _cli_error([*argv, *out], capsys)


def test_demo_cell_count_is_checked_before_any_work(tmp_path: Path, capsys) -> None:
    assert "n_cells must be >= 240" in _cli_error(["demo", "--n-cells", "-5", "--out", str(tmp_path / "d")], capsys)
    assert not (tmp_path / "d").exists()


def test_an_unreadable_manifest_is_an_error_for_groundtruth(cmp_results: Path, tmp_path: Path) -> None:
    out = tmp_path / "gt"
    kwargs = {"results": cmp_results, "column": "treatment", "control": "untreated", "figures": False}
    cytoatlas.groundtruth("alpha", out, **kwargs)
    _break(out)
    with pytest.raises(CytoatlasError, match=r"cannot be read.*cytoatlas groundtruth` with --force"):
        cytoatlas.groundtruth("alpha", out, **kwargs)
    cytoatlas.groundtruth("alpha", out, force=True, **kwargs)
    assert "summary.parquet" in read_manifest(out, strict=True)

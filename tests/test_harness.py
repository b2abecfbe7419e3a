"""The step harness: typed records, algorithm versions, `status` of validation and comparison directories, and
a new step added as one module plus one registration line (a toy step)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _compare_factory import Planted, write_atlas

import cytoatlas
from cytoatlas._harness import STEPS, Step, StepDirectory, directory_status, input_fingerprint, register_step
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.manifest import MANIFEST_NAME, Record, check_output, read_manifest, read_records, record
from cytoatlas.io.tables import write_table
from cytoatlas.pipeline import status

ATLASES = {"alpha": (10, 1, ["B cells", "CD14 Monocytes"], Planted("CD14 Monocytes", "B cells")),
           "beta": (10, 2, ["B", "Classical monocytes"], Planted("Classical monocytes", "B"))}
OPTIONS = {"by": "treatment", "reference": "untreated", "figures": False}


@pytest.fixture
def compared(tmp_path: Path) -> tuple[Path, Path]:
    """Two atlases' activity files and their comparison directory."""
    results = tmp_path / "results"
    for name, (n_donors, seed, cell_types, where) in ATLASES.items():
        write_atlas(results, name, n_donors, seed, cell_types, where)
    out = tmp_path / "compare"
    cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)
    return results, out


def _states(out: Path) -> dict[str, tuple[str, str]]:
    return {Path(r["file"]).name: (r["state"], r["reason"]) for r in status(None, out)}


def test_a_record_round_trips_and_one_without_an_algorithm_version_is_version_1(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("numbers")
    entry = record(path, step="compare", parameters={"a": 1}, inputs=[], algorithm=3, kind="table", table="x")
    rec = Record.from_dict(entry)
    assert (rec.step, rec.algorithm, rec.kind, rec.extra["table"], rec.size) == ("compare", 3, "table", "x", 7)
    assert rec.to_dict() == entry
    old = {k: v for k, v in entry.items() if k != "algorithm"}  # written before versions were recorded
    assert Record.from_dict(old).algorithm == 1
    assert check_output(path, old, {"a": 1}, [], algorithm=1) == ("complete", "")
    state, reason = check_output(path, old, {"a": 1}, [], algorithm=2)
    assert state == "stale" and "algorithm version 1" in reason and "version 2" in reason


def test_status_covers_a_comparison_directory_and_sees_a_changed_input(compared) -> None:
    results, out = compared
    states = _states(out)
    assert set(states) == {f"{t}.{e}" for t in ("differential", "association", "meta", "untestable")
                           for e in ("csv", "parquet")}
    assert {s for s, _ in states.values()} == {"complete"}
    # one atlas' activity file is rewritten with other numbers: every table is stale, naming it
    write_atlas(results, "beta", 10, 7, ["B", "Classical monocytes"], Planted("Classical monocytes", "B"))
    states = _states(out)
    assert {s for s, _ in states.values()} == {"stale"}
    assert all("beta_pseudobulk_l2_samples_cytosig_activity.h5ad changed" in r for _, r in states.values()), states
    before = pd.read_csv(out / "differential.csv")
    cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)  # the rerun recomputes
    assert {s for s, _ in _states(out).values()} == {"complete"}
    after = pd.read_csv(out / "differential.csv")
    beta = (before["atlas"] == "beta").to_numpy()
    assert not np.allclose(before.loc[beta, "effect"], after.loc[beta, "effect"])
    assert before.loc[~beta, "effect"].equals(after.loc[~beta, "effect"])  # alpha's rows: the same numbers


def test_an_older_algorithm_version_is_stale_and_recomputed(compared, monkeypatch) -> None:
    results, out = compared
    mtime = (out / "meta.parquet").stat().st_mtime_ns
    monkeypatch.setattr(STEPS["compare"], "algorithm", 2)  # a release whose comparison numbers changed
    states = _states(out)
    assert {s for s, _ in states.values()} == {"stale"}
    assert "computed by algorithm version 1 of step compare; this release computes version 2" in \
        states["meta.parquet"][1]
    cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)
    assert {e["algorithm"] for e in read_manifest(out).values()} == {2}
    assert (out / "meta.parquet").stat().st_mtime_ns != mtime
    assert {s for s, _ in _states(out).values()} == {"complete"}


def test_outputs_recorded_before_algorithm_versions_stay_current(compared, caplog) -> None:
    results, out = compared
    doc = json.loads((out / MANIFEST_NAME).read_text())
    for entry in doc["outputs"].values():  # as a release before this one wrote them
        del entry["algorithm"]
        for fp in entry["inputs"]:
            fp.pop("path", None)
    (out / MANIFEST_NAME).write_text(json.dumps(doc))
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {s for s, _ in _states(out).values()} == {"complete"}
    with caplog.at_level("INFO", logger="cytoatlas.compare"):
        cytoatlas.compare(list(ATLASES), out, results=results, **OPTIONS)
    assert "are current; nothing to do" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_status_of_a_validation_directory_sees_changed_inputs(tmp_path: Path) -> None:

    # a validation directory written through the harness: a part made from an upstream file, a table from the part
    upstream = tmp_path / "activity.txt"
    upstream.write_text("1 2 3")
    out = tmp_path / "validation"
    with StepDirectory(out, STEPS["validate"], subdirs=["parts"]) as d:
        (out / "parts").mkdir()
        part = out / "parts" / "p.csv"
        part.write_text("rho\n0.5\n")
        d.commit(dict([d.record(part, {}, [input_fingerprint(upstream)], kind="part")]))
        written = write_table(pd.DataFrame({"rho": [0.5]}), out, "rho")
        d.commit(dict(d.record(p, {}, [{"name": "parts/p.csv", "checksum": d.records["parts/p.csv"].checksum}],
                               kind="table") for p in written))
    rows = {Path(r.file).name: r for r in directory_status(out)}
    assert {r.state for r in rows.values()} == {"complete"} and rows["rho.csv"].step == "validate:table"
    upstream.write_text("1 2 4")
    rows = {Path(r.file).name: r for r in directory_status(out)}
    assert (rows["p.csv"].state, rows["p.csv"].reason) == ("stale", f"its input {upstream.resolve()} changed")
    # the table is made from a part that a rerun recomputes: stale too
    assert (rows["rho.csv"].state, rows["rho.csv"].reason) == ("stale", "its input parts/p.csv is stale")
    upstream.write_text("1 2 3")  # back as it was
    assert {r.state for r in directory_status(out)} == {"complete"}
    part.write_text("rho\n0.6\n")  # the same size: only its checksum tells
    rows = {Path(r.file).name: r for r in directory_status(out, verify=True)}
    assert rows["p.csv"].state == "corrupt"
    assert (rows["rho.csv"].state, rows["rho.csv"].reason) == ("stale", "its input parts/p.csv is corrupt")


# --- a toy step: its module is the function below; its registration is one line -------------------------------

TOY = Step("toy", algorithm=1, title="squares of the numbers given")


def toy(values: list[float], out: Path) -> list[Path]:
    """The toy step's whole module: its computation and its output definition; the harness does the rest."""
    params = {"values": list(values)}
    with StepDirectory(out, TOY) as d:
        if d.is_current(params, [], [out / "squares.csv"]):
            return [out / "squares.csv"]
        written = write_table(pd.DataFrame({"square": np.square(values)}), out, "squares")
        d.commit(dict(d.record(p, params, [], kind="table") for p in written))
        d.remove_stale(written)
        return written


def test_a_toy_step_is_one_module_and_one_registration_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(STEPS, "toy", TOY)  # cleaned up after the test; the line a new step adds is:
    assert register_step(TOY) is TOY
    with pytest.raises(CytoatlasError, match="a step named 'toy' is registered already"):
        register_step(Step("toy", algorithm=5))
    out = tmp_path / "toy"
    toy([1.0, 2.0], out)
    assert pd.read_csv(out / "squares.csv")["square"].tolist() == [1.0, 4.0]
    assert {r.step for r in read_records(out).values()} == {"toy"}
    assert {s for s, _ in _states(out).values()} == {"complete"}
    mtime = (out / "squares.csv").stat().st_mtime_ns
    toy([1.0, 2.0], out)  # current: nothing written
    assert (out / "squares.csv").stat().st_mtime_ns == mtime
    monkeypatch.setattr(TOY, "algorithm", 2)
    assert {s for s, _ in _states(out).values()} == {"stale"}
    toy([1.0, 2.0], out)
    assert {s for s, _ in _states(out).values()} == {"complete"}
    assert {r.algorithm for r in read_records(out).values()} == {2}


def test_an_output_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(CytoatlasError, match="is a file"):
        StepDirectory(tmp_path / "f", TOY)

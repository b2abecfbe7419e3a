"""`cytoatlas status` on damaged trees, staleness after changed inputs or parameters, and directory locks."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from cytoatlas.cli import main
from cytoatlas.io.lock import LOCK_NAME

OPTS = ["--n-bootstrap", "8", "--signatures", "cytosig"]


def _registry(path: Path, h5ad: Path, l3: str = "cell_type_l3") -> Path:
    path.write_text(f'[atlas.demo]\nh5ad = "{h5ad}"\nsample_col = "sample"\ndonor_col = "donor"\n'
                    f'[atlas.demo.levels]\nL1 = "cell_type_l1"\nL3 = "{l3}"\n')
    return path


@pytest.fixture
def tree(demo_h5ad: Path, tmp_path: Path, capsys) -> tuple[Path, Path]:
    """A complete results tree (results/demo/...) and its registry."""
    import shutil

    atlas = shutil.copy(demo_h5ad, tmp_path / "atlas.h5ad")  # a copy: some tests touch it
    reg = _registry(tmp_path / "reg.toml", Path(atlas))
    assert main(["-q", "run", "--registry", str(reg), "--atlas", "demo", "--out", str(tmp_path / "results" / "demo"),
                 *OPTS]) == 0
    capsys.readouterr()
    return tmp_path / "results", reg


def _status(results: Path, reg: Path, capsys, *extra: str) -> tuple[int, dict[str, dict]]:
    code = main(["status", "--registry", str(reg), "--atlas", "demo", "--out", str(results), "--json", *OPTS, *extra])
    rows = json.loads(capsys.readouterr().out)
    return code, {Path(r["file"]).name: r for r in rows}


def _ids(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in root.rglob("*") if p.suffix in (".h5ad", ".csv")}


def test_complete_tree_exits_zero(tree, capsys) -> None:
    results, reg = tree
    code, rows = _status(results, reg, capsys, "--verify")
    assert code == 0 and len(rows) == 2 * (3 + 4) and all(r["state"] == "complete" for r in rows.values())
    assert rows["demo_pseudobulk_l1.h5ad"]["shape"].startswith("5 x ")
    assert main(["status", "--registry", str(reg), "--all", "--out", str(results), *OPTS]) == 0
    assert "14 complete (14 outputs)" in capsys.readouterr().out


def test_truncated_deleted_and_older_parameters_are_each_reported(tree, capsys) -> None:
    results, reg = tree
    pb, act = results / "demo" / "pseudobulk", results / "demo" / "activity"
    with open(pb / "demo_pseudobulk_l3_samples.h5ad", "r+b") as fh:
        fh.truncate(4096)
    (act / "demo_pseudobulk_l1_samples_cytosig_activity.h5ad").unlink()
    # level L1 made again with other parameters (older results, from the point of view of the defaults)
    assert main(["-q", "pseudobulk", "--registry", str(reg), "--atlas", "demo", "--out", str(pb), "--levels", "L1",
                 "--n-bootstrap", "8", "--min-cells", "20"]) == 0
    capsys.readouterr()
    code, rows = _status(results, reg, capsys)
    assert code == 1
    assert rows["demo_pseudobulk_l3_samples.h5ad"]["state"] == "corrupt"
    assert rows["demo_pseudobulk_l1_samples_cytosig_activity.h5ad"]["state"] == "missing"
    assert rows["demo_pseudobulk_l1.h5ad"]["state"] == "stale"
    assert "min_cells" in rows["demo_pseudobulk_l1.h5ad"]["reason"]
    # activity made from the replaced L1 files is stale too; L3's main outputs are untouched
    assert rows["demo_pseudobulk_l1_cytosig_activity.h5ad"]["state"] == "stale"
    assert rows["demo_pseudobulk_l3.h5ad"]["state"] == "complete"
    assert rows["demo_pseudobulk_l3_cytosig_activity.h5ad"]["state"] == "complete"


def test_verify_detects_silent_corruption(tree, capsys) -> None:
    results, reg = tree
    path = results / "demo" / "pseudobulk" / "demo_pseudobulk_l1.h5ad"
    stat = path.stat()
    with open(path, "r+b") as fh:  # same size, one byte flipped: only a re-hash sees it
        fh.seek(stat.st_size // 2)
        byte = fh.read(1)
        fh.seek(stat.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _status(results, reg, capsys)[1]["demo_pseudobulk_l1.h5ad"]["state"] == "complete"
    assert _status(results, reg, capsys, "--verify")[1]["demo_pseudobulk_l1.h5ad"]["state"] == "corrupt"


def test_manifests_of_sha256_days_still_verify_and_keep_outputs_current(tree, capsys) -> None:
    """Records and input fingerprints written with SHA-256 (before XXH3) verify as such: nothing is stale or
    recomputed after the upgrade, and a flipped byte is still caught."""
    import hashlib

    results, reg = tree
    for manifest in results.rglob("manifest.json"):
        doc = json.loads(manifest.read_text())
        for name, rec in doc["outputs"].items():
            assert rec.pop("checksum").startswith("xxh3_128:")
            rec["sha256"] = hashlib.sha256((manifest.parent / name).read_bytes()).hexdigest()
            for fp in rec["inputs"]:
                if "checksum" in fp:
                    fp.pop("checksum")
                    upstream = results / "demo" / "pseudobulk" / fp["name"]
                    fp["sha256"] = hashlib.sha256(upstream.read_bytes()).hexdigest()
        manifest.write_text(json.dumps(doc))
    before = _ids(results)
    code, rows = _status(results, reg, capsys, "--verify")
    assert code == 0 and all(r["state"] == "complete" for r in rows.values())
    assert main(["-q", "run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 0
    capsys.readouterr()
    assert _ids(results) == before  # nothing rewritten
    path = results / "demo" / "activity" / "demo_pseudobulk_l1_cytosig_activity.h5ad"
    stat = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(stat.st_size // 2)
        byte = fh.read(1)
        fh.seek(stat.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _status(results, reg, capsys, "--verify")[1][path.name]["state"] == "corrupt"


def test_changed_level_recomputes_only_its_outputs(tree, capsys) -> None:
    results, reg = tree
    before = _ids(results)
    _registry(reg, results.parent / "atlas.h5ad", l3="cell_type_l2")
    code, rows = _status(results, reg, capsys)
    assert code == 1
    stale = {name for name, r in rows.items() if r["state"] != "complete"}
    # L3's pseudobulk is stale; its activity becomes so once the pseudobulk it was made from is replaced
    assert stale == {name for name in rows if "_l3" in name and "activity" not in name}
    assert main(["-q", "run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 0
    capsys.readouterr()
    after = _ids(results)
    assert {n for n in after if after[n] != before[n]} == {name for name in rows if "_l3" in name}
    assert _status(results, reg, capsys, "--verify")[0] == 0


def test_a_new_activity_algorithm_makes_activity_stale_and_run_recomputes_only_it(tree, capsys, monkeypatch) -> None:
    from cytoatlas._harness import STEPS

    results, reg = tree
    before = _ids(results)
    monkeypatch.setattr(STEPS["activity"], "algorithm", 2)  # a release whose activity numbers changed
    code, rows = _status(results, reg, capsys)
    assert code == 1
    assert {n for n, r in rows.items() if r["state"] != "complete"} == {n for n in rows if "activity" in n}
    assert all("algorithm version 1 of step activity; this release computes version 2" in r["reason"]
               for n, r in rows.items() if "activity" in n)
    assert main(["-q", "run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 0
    capsys.readouterr()
    after = _ids(results)
    assert {n for n in after if after[n] != before[n]} == {n for n in rows if "activity" in n}
    assert _status(results, reg, capsys, "--verify")[0] == 0
    monkeypatch.undo()  # this release again: the version-2 outputs are from another algorithm version
    assert _status(results, reg, capsys)[0] == 1


def test_a_new_pseudobulk_algorithm_makes_pseudobulk_stale_and_run_recomputes_it(tree, capsys, monkeypatch) -> None:
    from cytoatlas._harness import STEPS

    results, reg = tree
    before = _ids(results)
    monkeypatch.setattr(STEPS["pseudobulk"], "algorithm", 2)  # a release whose pseudobulk numbers changed
    code, rows = _status(results, reg, capsys)
    assert code == 1
    pseudobulk = {n for n in rows if "activity" not in n}
    assert {n for n, r in rows.items() if r["state"] != "complete"} == pseudobulk
    assert all("algorithm version 1 of step pseudobulk; this release computes version 2" in rows[n]["reason"]
               for n in pseudobulk)
    assert main(["-q", "run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 0
    capsys.readouterr()
    after = _ids(results)
    # the pseudobulk files are rewritten (their activity follows when their bytes changed: a new timestamp)
    assert pseudobulk <= {n for n in after if after[n] != before[n]}
    manifest = json.loads((results / "demo" / "pseudobulk" / "manifest.json").read_text())["outputs"]
    assert {e["algorithm"] for e in manifest.values()} == {2}
    assert _status(results, reg, capsys, "--verify")[0] == 0


def test_records_of_the_release_before_the_harness_stay_current(tree, capsys) -> None:
    """Records as the previous release wrote them (no algorithm version, no input paths) are current: status
    says so and run rewrites nothing."""
    results, reg = tree
    for manifest in results.rglob("manifest.json"):
        doc = json.loads(manifest.read_text())
        for rec in doc["outputs"].values():
            del rec["algorithm"]
            for fp in rec["inputs"]:
                fp.pop("path", None)
        manifest.write_text(json.dumps(doc))
    before = _ids(results)
    code, rows = _status(results, reg, capsys, "--verify")
    assert code == 0 and len(rows) == 14 and all(r["state"] == "complete" for r in rows.values())
    assert main(["-q", "run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 0
    capsys.readouterr()
    assert _ids(results) == before


def test_touched_input_marks_everything_stale(tree, capsys) -> None:
    results, reg = tree
    atlas = results.parent / "atlas.h5ad"
    os.utime(atlas, ns=(atlas.stat().st_atime_ns, atlas.stat().st_mtime_ns + 10**9))
    code, rows = _status(results, reg, capsys)
    assert code == 1
    assert all(r["state"] == "stale" for n, r in rows.items() if "activity" not in n)


def test_a_live_lock_refuses_a_second_run_and_shows_as_running(tree, capsys) -> None:
    results, reg = tree
    pb = results / "demo" / "pseudobulk"
    (pb / "demo_pseudobulk_l3.h5ad").unlink()
    (pb / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                            "start": "2026-11-25 01:00:00", "command": "cytoatlas run"}))
    code, rows = _status(results, reg, capsys)
    assert code == 1 and rows["demo_pseudobulk_l3.h5ad"]["state"] == "running"
    assert main(["run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 2
    err = capsys.readouterr().err
    assert f"pid {os.getppid()}" in err and "in use by another cytoatlas run" in err


def test_a_stale_lock_is_taken_over(tree, capsys, caplog) -> None:
    results, reg = tree
    pb = results / "demo" / "pseudobulk"
    (pb / "demo_pseudobulk_l3.h5ad").unlink()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (pb / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "start": "yesterday"}))
    assert main(["run", "--registry", str(reg), "--atlas", "demo", "--out", str(results / "demo"), *OPTS]) == 0
    capsys.readouterr()
    assert "taking over the lock of a run that is gone" in caplog.text
    assert not (pb / LOCK_NAME).exists()
    assert _status(results, reg, capsys)[0] == 0

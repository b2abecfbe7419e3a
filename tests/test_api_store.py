"""`cytoatlas index`: incremental from the manifests (a second run does no work; a new atlas is read alone;
changed, removed and damaged files are handled), atomic (a failed run leaves the old store), and a running
server follows a rebuilt store."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from _api_helpers import validation_frames, write_validation
from fastapi.testclient import TestClient

import cytoatlas
from cytoatlas._api.app import create_app
from cytoatlas._api.store import store_dir
from cytoatlas.cli import main
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.manifest import read_manifest, update_manifest


def _copy(api_results: Path, dest: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(api_results / name, dest / name, copy_function=shutil.copy2)
    return dest


def _parts(db: Path) -> dict[str, int]:
    """Every Parquet part of a store and its mtime."""
    return {p.relative_to(store_dir(db)).as_posix(): p.stat().st_mtime_ns for p in store_dir(db).rglob("*.parquet")}


def _indexable(out: Path) -> set[str]:
    files = set()
    for manifest in out.rglob("manifest.json"):
        for name, rec in read_manifest(manifest.parent).items():
            if (rec["step"] in ("pseudobulk", "activity") and rec.get("kind") in ("celltype", "samples")
                    and name.endswith(".h5ad")) or rec["step"] == "validate" and name.endswith(".parquet"):
                files.add((manifest.parent / name).relative_to(out).as_posix())
    return files


def test_index_twice_the_second_does_no_work(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "alpha", "validation")
    db = tmp_path / "store.duckdb"
    first = cytoatlas.index(out, db)
    assert set(first.read) == _indexable(out) and first.unchanged == 0 and first.parts_written > 0
    st, parts = db.stat(), _parts(db)
    second = cytoatlas.index(out, db)
    assert second.read == [] and second.removed == [] and not second.changed
    assert second.unchanged == len(first.read) and second.parts_written == second.parts_deleted == 0
    assert (db.stat().st_ino, db.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)  # not even rewritten
    assert _parts(db) == parts


def test_a_new_atlas_is_read_alone(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "alpha")
    db = tmp_path / "store.duckdb"
    first = cytoatlas.index(out, db)
    parts = _parts(db)
    _copy(api_results, out, "beta")
    second = cytoatlas.index(out, db)
    assert second.read and all(p.startswith("beta/") for p in second.read)
    assert set(second.read) == {p for p in _indexable(out) if p.startswith("beta/")}
    assert second.unchanged == len(first.read) and second.parts_deleted == 0
    after = _parts(db)
    assert {k: after[k] for k in parts} == parts  # alpha's parts untouched
    client = TestClient(create_app(db))
    assert [a["atlas"] for a in client.get("/api/v1/atlases").json()["rows"]] == ["alpha", "beta"]


def test_changed_removed_and_damaged_files(api_results: Path, tmp_path: Path, caplog) -> None:
    out = _copy(api_results, tmp_path / "results", "alpha", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    client = TestClient(create_app(db))
    before = client.get("/api/v1/activity/beta/L1/cytosig", params={"signature": "IFNG"}).json()["rows"]
    # changed: beta L1 activity recomputed with another lambda (new records in the manifest)
    pb = out / "beta" / "pseudobulk"
    cytoatlas.activity([pb / f"beta_pseudobulk_l1{s}.h5ad" for s in ("", "_samples", "_resampled")],
                       out / "beta" / "activity", signatures=["cytosig"], lambda_=1e4, centre="within:cell_type")
    # removed: alpha L3 cell-type activity of LinCytoSig leaves the manifest
    act = out / "alpha" / "activity"
    update_manifest(act, {}, remove=["alpha_pseudobulk_l3_lincytosig_activity.h5ad"])
    # damaged: a file rewritten behind its manifest's back (its mtime no longer matches)
    damaged = out / "alpha" / "pseudobulk" / "alpha_pseudobulk_l2.h5ad"
    os.utime(damaged, ns=(damaged.stat().st_atime_ns, damaged.stat().st_mtime_ns + 10**9))
    with caplog.at_level(logging.WARNING, logger="cytoatlas.index"):
        summary = cytoatlas.index(out, db)
    assert sorted(summary.read) == ["beta/activity/beta_pseudobulk_l1_cytosig_activity.h5ad",
                                    "beta/activity/beta_pseudobulk_l1_samples_cytosig_activity.h5ad"]
    assert sorted(summary.removed) == ["alpha/activity/alpha_pseudobulk_l3_lincytosig_activity.h5ad",
                                       "alpha/pseudobulk/alpha_pseudobulk_l2.h5ad"]
    assert summary.skipped == ["alpha/pseudobulk/alpha_pseudobulk_l2.h5ad: differs from its manifest record "
                               "(size or mtime)"]
    assert "alpha_pseudobulk_l2.h5ad: differs from its manifest record" in caplog.text
    assert summary.parts_deleted == 4  # two old beta L1 activity parts, alpha L3 LinCytoSig, alpha L2 expression
    after = client.get("/api/v1/activity/beta/L1/cytosig", params={"signature": "IFNG"}).json()["rows"]
    assert [r["cell_type"] for r in after] == [r["cell_type"] for r in before]
    assert [r["z"] for r in after] != [r["z"] for r in before]  # the server reopened the new store
    import anndata as ad

    new = ad.read_h5ad(out / "beta" / "activity" / "beta_pseudobulk_l1_cytosig_activity.h5ad")
    j = new.var_names.get_loc("IFNG")
    assert [r["z"] for r in after] == [float(new.X[list(new.obs["cell_type"]).index(r["cell_type"]), j])
                                       for r in after]
    assert client.get("/api/v1/activity/alpha/L3/lincytosig").status_code == 404
    r = client.get("/api/v1/expression/alpha/L2", params={"gene": "IFNGR1"})
    assert r.status_code == 404 and "no celltype expression" in r.json()["detail"]


def test_a_failed_index_leaves_the_old_store(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "alpha")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    st, parts = db.stat(), _parts(db)
    _copy(api_results, out, "beta")
    # a damaged file that still matches its manifest's size and mtime: the index fails reading it
    bad = out / "beta" / "activity" / "beta_pseudobulk_l2_cytosig_activity.h5ad"
    times = (bad.stat().st_atime_ns, bad.stat().st_mtime_ns)
    with open(bad, "r+b") as fh:
        fh.write(b"\0" * 4096)
    os.utime(bad, ns=times)
    with pytest.raises(CytoatlasError, match="beta_pseudobulk_l2_cytosig_activity.h5ad"):
        cytoatlas.index(out, db)
    assert (db.stat().st_ino, db.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert not [p for p in store_dir(db).iterdir() if ".tmp-" in p.name or p.name.startswith("spill")]
    assert [a["atlas"] for a in TestClient(create_app(db)).get("/api/v1/atlases").json()["rows"]] == ["alpha"]
    # --verify catches it by checksum and skips it instead
    summary = cytoatlas.index(out, db, verify=True)
    assert summary.skipped == ["beta/activity/beta_pseudobulk_l2_cytosig_activity.h5ad: checksum differs from its "
                               "manifest record"]
    assert all(p.startswith("beta/") for p in summary.read) and set(_parts(db)) >= set(parts)


def test_the_same_result_twice_is_refused(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "beta")
    shutil.copytree(out / "beta", out / "beta_copy")
    with pytest.raises(CytoatlasError, match=r"activity of atlas 'beta' level 'L1' .* is in 2 files"):
        cytoatlas.index(out, tmp_path / "store.duckdb")
    assert not (tmp_path / "store.duckdb").exists()


def test_validation_tables_must_have_their_contract_columns(tmp_path: Path, api_results: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "beta")
    tables = validation_frames(["IFNG"], ["beta", "beta"], ["L1"])
    for row in tables["summary"]:
        del row["median_rho"]
    write_validation(out / "validation", tables)
    with pytest.raises(CytoatlasError, match="validation table 'summary' lacks column.* median_rho"):
        cytoatlas.index(out, tmp_path / "store.duckdb")


def test_expression_kinds_and_a_missing_part(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db, expression=["celltype"])
    client = TestClient(create_app(db))
    assert client.get("/api/v1/expression/beta/L1", params={"gene": "IFNGR1"}).status_code == 200
    r = client.get("/api/v1/expression/beta/L1", params={"gene": "IFNGR1", "by": "sample"})
    assert r.status_code == 404 and "--expression celltype,samples" in r.json()["detail"]
    assert cytoatlas.index(out, db, expression=["celltype", "samples"]).read  # another setting: rebuilt
    assert client.get("/api/v1/expression/beta/L1", params={"gene": "IFNGR1", "by": "sample"}).status_code == 200
    # a part deleted under the server: a clear 503, not a 500
    with duckdb.connect() as con:
        con.execute("ATTACH ? AS s (READ_ONLY)", [str(db)])
        part = con.execute("SELECT part FROM s.sources WHERE atlas = 'beta' AND level = 'L2' AND step = 'activity' "
                           "AND kind = 'celltype' AND signature_set = 'cytosig'").fetchall()[0][0]
    shutil.rmtree(store_dir(db) / part)  # a directory of files
    r = client.get("/api/v1/activity/beta/L2/cytosig")
    assert r.status_code == 503 and "cytoatlas index" in r.json()["detail"] and r.headers["retry-after"] == "1"
    assert cytoatlas.index(out, db).read == ["beta/activity/beta_pseudobulk_l2_cytosig_activity.h5ad"]
    assert client.get("/api/v1/activity/beta/L2/cytosig").status_code == 200


def test_cli_index_and_serve_errors(api_results: Path, tmp_path: Path, capsys) -> None:
    out = _copy(api_results, tmp_path / "results", "beta")
    assert main(["-q", "index", "--out", str(out)]) == 0
    assert "0 unchanged" in capsys.readouterr().out and (out / "cytoatlas.duckdb").is_file()
    assert main(["-q", "index", "--out", str(out)]) == 0
    assert "0 file(s) read" in capsys.readouterr().out
    assert main(["-q", "index", "--out", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["-q", "index", "--out", str(out), "--expression", "counts"]) == 2
    assert "expression kinds must be among celltype, samples" in capsys.readouterr().err
    assert main(["-q", "serve", "--db", str(tmp_path / "missing.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cytoatlas: error: cannot open the store") and err.count("\n") == 1
    short = tmp_path / "token"
    short.write_text("abc\n")
    assert main(["-q", "serve", "--db", str(out / "cytoatlas.duckdb"), "--token-file", str(short)]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["-q", "index", "--out", str(tmp_path / "empty")]) == 2  # no manifest below it
    assert "no pseudobulk, activity or validation outputs" in capsys.readouterr().err


def test_a_running_server_keeps_answering_while_the_store_is_rebuilt(api_results: Path, tmp_path: Path) -> None:
    import threading
    import time

    import httpx
    from _api_helpers import running_server

    out = _copy(api_results, tmp_path / "results", "alpha")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    statuses: list[int] = []
    stop = threading.Event()
    with running_server(db) as url:
        def hammer() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    for path in ("/api/v1/activity/alpha/L1/cytosig?signature=IFNG", "/api/v1/atlases",
                                 "/api/v1/signatures/cytosig/IL4", "/api/v1/expression/alpha/L2?gene=IFNGR1"):
                        statuses.append(client.get(path).status_code)

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        _copy(api_results, out, "beta")
        update_manifest(out / "alpha" / "activity", {}, remove=["alpha_pseudobulk_l1_cytosig_activity.h5ad"])
        summary = cytoatlas.index(out, db)  # a new atlas and a removed file (its part deleted) under load
        assert summary.parts_deleted == 1
        atlases = httpx.get(url + "/api/v1/atlases").json()["rows"]
        deadline = time.monotonic() + 20
        while 404 not in statuses and time.monotonic() < deadline:  # the clients' requests after the rebuild
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
    assert [a["atlas"] for a in atlases] == ["alpha", "beta"]  # the server follows the new file
    assert len(statuses) > 20
    # answers before the rebuild (200) and after it (404: alpha L1 CytoSig is gone); never a server error
    assert set(statuses) <= {200, 404} and 404 in statuses and statuses.count(200) > 10


def test_two_index_runs_do_not_overlap(api_results: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from _api_helpers import SRC

    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cytoatlas.io.lock import DirectoryLock\n"
                               "with DirectoryLock(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
                               str(store_dir(db))], env={"PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CytoatlasError, match="in use by another cytoatlas run"):
            cytoatlas.index(out, db)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert cytoatlas.index(out, db).read  # a dead holder's lock is taken over


def test_the_tidy_views_hold_every_value_of_the_files(api_results: Path, api_db: Path) -> None:
    """The `expression` and `activity` views against the pseudobulk and activity files, row for row (NaN as NULL,
    as a data frame's NaN is stored)."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    con = duckdb.connect(str(api_db), read_only=True)
    sources = con.execute("SELECT step, path, atlas, level, kind, signature_set FROM sources "
                          "WHERE part IS NOT NULL ORDER BY path").fetchall()
    assert {s[0] for s in sources} == {"pseudobulk", "activity"} and len(sources) >= 20
    for step, rel, atlas, level, kind, sset in sources:
        f = ad.read_h5ad(api_results / rel)
        n, k = f.shape
        obs = f.obs
        sample = obs["sample"].astype(object).to_numpy() if "sample" in obs else np.full(n, None, dtype=object)
        want = pd.DataFrame({"cell_type": np.tile(obs["cell_type"].astype(str).to_numpy(), k),
                             "sample": np.tile(sample, k), "name": np.repeat(f.var_names.to_numpy(), n)})
        if step == "pseudobulk":
            want["value"] = np.asarray(f.X, dtype=np.float32).T.ravel()
            want["zscore"] = np.asarray(f.layers["zscore"], dtype=np.float32).T.ravel()
            got = con.execute("""SELECT cell_type, sample, gene AS name, value, zscore FROM expression
                                 WHERE atlas = ? AND level = ? AND kind = ?""", [atlas, level, kind]).df()
            cols = ["value", "zscore"]
        else:
            want["z"] = np.asarray(f.X, dtype=float).T.ravel()
            want["pvalue"] = np.asarray(f.layers["pvalue"], dtype=float).T.ravel()
            got = con.execute("""SELECT cell_type, sample, signature AS name, z, pvalue FROM activity
                                 WHERE atlas = ? AND level = ? AND kind = ? AND signature_set = ?""",
                              [atlas, level, kind, sset]).df()
            cols = ["z", "pvalue"]
        keys = ["name", "cell_type", "sample"]
        got = got.sort_values(keys, na_position="first").reset_index(drop=True)
        want = want.sort_values(keys, na_position="first").reset_index(drop=True)
        assert len(got) == len(want) == n * k, rel
        for c in ["name", "cell_type"]:
            assert got[c].tolist() == want[c].tolist(), (rel, c)
        assert got["sample"].isna().tolist() == want["sample"].isna().tolist(), rel
        for c in cols:
            g, w = got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float)
            assert np.array_equal(np.isnan(g), np.isnan(w)), (rel, c)
            assert np.array_equal(g[~np.isnan(g)], w[~np.isnan(w)]), (rel, c)
    con.close()


# ---- issue 22: nothing dropped in silence ---------------------------------------------------------------------

def _store_state(db: Path) -> tuple:
    """The store file's identity and every part's mtime: what a refused run must leave as it was."""
    return db.stat().st_ino, db.stat().st_mtime_ns, _parts(db)


def test_an_unreadable_manifest_is_an_error_and_the_store_stays(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    before = _store_state(db)
    manifest = out / "beta" / "activity" / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])  # cut mid-record, as a full disk or a crash of another tool would
    with pytest.raises(CytoatlasError, match=r"beta/activity/manifest\.json: the manifest cannot be read") as e:
        cytoatlas.index(out, db)
    assert "Rerun the step that wrote beta/activity" in str(e.value) and "cytoatlas index" in str(e.value)
    assert _store_state(db) == before  # no source dropped, no part deleted
    manifest.write_text('["not", "a", "manifest"]')
    with pytest.raises(CytoatlasError, match="no 'outputs' object"):
        cytoatlas.index(out, db)
    assert _store_state(db) == before
    manifest.write_text(text)
    assert not cytoatlas.index(out, db).changed  # repaired: the store is current as it was


def test_a_truncated_input_is_an_error_naming_it(api_results: Path, tmp_path: Path) -> None:
    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    before = _store_state(db)
    bad = out / "beta" / "pseudobulk" / "beta_pseudobulk_l2.h5ad"
    size, times = bad.stat().st_size, (bad.stat().st_atime_ns, bad.stat().st_mtime_ns)
    with open(bad, "r+b") as fh:
        fh.truncate(size // 2)
    os.utime(bad, ns=times)  # the mtime its manifest recorded: only the size tells
    with pytest.raises(CytoatlasError, match=r"beta/pseudobulk/beta_pseudobulk_l2\.h5ad: [\d,]+ bytes, its manifest "
                       rf"recorded {size:,}") as e:
        cytoatlas.index(out, db)
    assert "`cytoatlas pseudobulk` or `cytoatlas run`" in str(e.value)
    assert _store_state(db) == before
    with pytest.raises(CytoatlasError, match="beta_pseudobulk_l2.h5ad"):  # --force rebuilds nothing either
        cytoatlas.index(out, db, force=True)
    assert _store_state(db) == before


def test_a_killed_index_leaves_no_temporary_parts_behind(api_results: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from cytoatlas.io.durable import temporary_path

    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that is gone: its temporary names are a dead run's
    parts = store_dir(db)
    planted = []
    for sub in ("activity", "pseudobulk"):
        name = temporary_path(parts / sub / "0123abcd.parquet").name.split(".tmp-")[0]
        planted.append(parts / sub / f"{name}.tmp-{dead.pid}-140000")
        planted[-1].write_bytes(b"PAR1 half a part")
    half = parts / "pseudobulk" / f".0123abcd.tmp-{dead.pid}-1"  # an expression part's directory being built
    half.mkdir()
    (half / "g000000.parquet").write_bytes(b"PAR1")
    planted.append(half)
    nested = parts / "pseudobulk" / "deeper"
    nested.mkdir()
    planted.append(nested / f".x.parquet.tmp-{dead.pid}-1")
    planted[-1].write_bytes(b"")
    assert not cytoatlas.index(out, db).changed  # nothing to index; the clean-up runs all the same
    assert [p for p in planted if p.exists()] == []
    assert set(_parts(db)) and all(".tmp-" not in p for p in _parts(db))


@pytest.mark.parametrize("step", ["pseudobulk", "activity"])
def test_a_part_is_files_of_whole_columns(api_results: Path, tmp_path: Path, monkeypatch, step: str) -> None:
    """A part is a directory of files, each a run of whole columns in row groups of whole columns, at most
    FILE_ROW_GROUPS full ones (small sizes here, so that the test atlas' parts span several files); the file
    picked for a column holds that column's rows, equal to the results file's column, and no other column."""
    import anndata as ad
    import numpy as np

    from cytoatlas._api import ingest

    monkeypatch.setattr(ingest, "ROW_GROUP_ROWS", {"activity": 500, "pseudobulk": 700})
    monkeypatch.setattr(ingest, "FILE_ROW_GROUPS", 3)
    out = _copy(api_results, tmp_path / "results", "alpha")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db, expression=["celltype", "samples"])
    con = duckdb.connect(str(db), read_only=True)
    column = "gene" if step == "pseudobulk" else "sig"
    rel, part = con.execute("SELECT path, part FROM sources WHERE step = ? AND kind = 'samples' "
                            "ORDER BY n_cols DESC, path LIMIT 1", [step]).fetchall()[0]
    folder = store_dir(db) / part
    files = sorted(p.name for p in folder.iterdir())
    f = ad.read_h5ad(out / rel)
    per_group = max(1, ingest.ROW_GROUP_ROWS[step] // f.n_obs)  # columns per row group
    assert folder.is_dir() and len(files) > 2 and files[0] == "g000000.parquet"
    starts = [int(name[1:7]) for name in files]
    assert all(b - a == per_group * 3 for a, b in zip(starts, starts[1:], strict=False))  # full files
    for name in files:
        groups = con.execute("SELECT row_group_num_rows FROM parquet_metadata(?) WHERE path_in_schema = ?",
                             [str(folder / name), column]).fetchall()
        full = [n for (n,) in groups if n == per_group * f.n_obs]  # (a block read from the file may end one)
        assert len(full) <= 3 and all(n % f.n_obs == 0 for (n,) in groups)  # whole columns
    value = "value" if step == "pseudobulk" else "z"  # X: log1p CPM, or activity z
    for j in (0, starts[1] - 1, starts[1], f.n_vars - 1):
        picked = ingest.part_files(folder, [j])
        at = starts.index(max(s for s in starts if s <= j))
        assert picked == [str(folder / files[at])]
        lo, hi = con.execute(f"SELECT min({column}), max({column}) FROM read_parquet(?)", [picked]).fetchall()[0]
        assert lo == starts[at] and hi == (starts[at + 1] - 1 if at + 1 < len(starts) else f.n_vars - 1)
        got = con.execute(f'SELECT {value} FROM read_parquet(?) WHERE {column} = ? ORDER BY "row"',
                          [picked, j]).fetchnumpy()[value]
        want = np.asarray(f.X[:, j], dtype=got.dtype)
        assert np.array_equal(np.ma.filled(got, np.nan), want, equal_nan=True)
    assert ingest.part_files(folder, [0, f.n_vars - 1]) == [str(folder / files[0]), str(folder / files[-1])]
    assert ingest.part_files(folder / "gone", [3]) == [str(folder / "gone")]  # DuckDB reports it: a 503


def test_an_activity_part_of_a_store_before_directories_still_reads(api_results: Path, tmp_path: Path) -> None:
    """A store written when an activity part was one file answers the same: the part's file is the part."""
    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db)
    with TestClient(create_app(db)) as client:
        before = client.get("/api/v1/activity/beta/L1/cytosig", params={"by": "sample"}).json()
        client.app.state.reader.close()
    with duckdb.connect(str(db)) as con:
        for sid, part in con.execute("SELECT source_id, part FROM sources WHERE step = 'activity'").fetchall():
            folder = store_dir(db) / part
            (files,) = list(folder.iterdir())  # one file: the test atlas' parts are small
            files.rename(folder.with_suffix(".parquet"))
            folder.rmdir()
            con.execute("UPDATE sources SET part = ? WHERE source_id = ?", [part + ".parquet", sid])
    with TestClient(create_app(db)) as client:
        after = client.get("/api/v1/activity/beta/L1/cytosig", params={"by": "sample"}).json()
    assert after == before and after["total"] > 0


def test_a_rebuild_reuses_the_parts_already_written(api_results: Path, tmp_path: Path) -> None:
    """Other settings rebuild the database and read every file again, but a part of the same checksum on disk
    (an expression part is a directory) is not written again."""
    out = _copy(api_results, tmp_path / "results", "beta")
    db = tmp_path / "store.duckdb"
    cytoatlas.index(out, db, expression=["celltype"])
    before = _parts(db)
    summary = cytoatlas.index(out, db, expression=["celltype", "samples"])
    assert summary.unchanged == 0 and summary.read
    after = _parts(db)
    assert {p: after[p] for p in before} == before  # not rewritten
    added = {Path(p).parent for p in set(after) - set(before)}  # the sample expression parts' directories
    assert added and all(p.parent == Path("pseudobulk") for p in added)
    assert summary.parts_written == len(added)

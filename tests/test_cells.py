"""`cytoatlas cells`: per-cell activity against secactpy 0.3.1's own per-cell inference, bit-identity across
batch sizes / threads / Dask workers, resume after a kill, and bad inputs.

Tests that call secactpy are marked ``parity`` (it is the `parity` extra, not a dependency)."""

from __future__ import annotations

import os
import subprocess
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _atlas_factory import tiny_config
from conftest import KANG

import cytoatlas
from cytoatlas._activity.signatures import load_signatures
from cytoatlas._cells import cell_activity
from cytoatlas.errors import CytoatlasError
from cytoatlas.io import layout


def _secactpy_genes(genes) -> list[str]:
    # secactpy upper-cases expression gene names and cuts them at a '.', but not the signature's: genes that
    # change under that rule match in cytoatlas only, so the comparison atlases leave them out
    return [g for g in genes if g == g.upper() and "." not in g]


def write_cells_atlas(path, n_cells=1500, seed=0, sets=("cytosig", "secact"), embedding=True, exclude_col=False):
    """Synthetic counts over signature genes (and some others): cell 3 empty, cell 4 one count, cell 5 counts
    only outside the signatures."""
    rng = np.random.default_rng(seed)
    sig_genes = sorted(set().union(*(set(_secactpy_genes(load_signatures(s).genes)) for s in sets)))
    genes = list(rng.choice(sig_genes, min(1200, len(sig_genes)), replace=False)) + [f"OTHER{i}" for i in range(60)]
    rates = rng.gamma(0.3, 1.0, size=len(genes))
    counts = rng.poisson(rates * rng.uniform(0.2, 3.0, (n_cells, 1))).astype(np.int32)
    counts[3] = 0
    counts[4] = 0
    counts[4, 7] = 1
    counts[5, :-60] = 0
    counts[5, -3] = 4
    obs = pd.DataFrame({"sample": pd.Categorical([f"S{i % 5}" for i in range(n_cells)]),
                        "cell_type": pd.Categorical([f"T{(i * 7) % 4}" for i in range(n_cells)]),
                        "qc": pd.Categorical(["bad" if i % 11 == 0 else "ok" for i in range(n_cells)])},
                       index=[f"cell{i}" for i in range(n_cells)])
    a = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    if embedding:
        a.obsm["X_umap"] = rng.normal(size=(n_cells, 2))
    a.write_h5ad(path, compression="gzip")
    return path, counts


def secactpy_cells(path, sig: str, n_rand: int) -> dict[str, pd.DataFrame]:
    import secactpy  # the `parity` extra: not a dependency, and absent from the numpy 2 environments

    return secactpy.secact_activity_inference_scrnaseq(str(path), cell_type_col="cell_type", sig_matrix=sig,
                                                       is_single_cell_level=True, streaming=True, n_rand=n_rand)


def assert_beta_close(mine: pd.DataFrame, ref: pd.DataFrame) -> None:
    ref = ref.loc[mine.columns, mine.index].to_numpy().T
    # rtol 1e-9 of each value, with a floor at 1e-9 of the largest |beta| for values that are almost 0
    np.testing.assert_allclose(mine.to_numpy(), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path, counts = write_cells_atlas(tmp_path_factory.mktemp("cells") / "synth.h5ad")
    return path, counts


@pytest.mark.parity
@pytest.mark.parametrize("sig", ["cytosig", "secact"])
def test_beta_equals_secactpy_synthetic(synth, sig):
    path, _ = synth
    mine = cell_activity(tiny_config(path), signatures=[sig])[sig]
    ref = secactpy_cells(path, sig, n_rand=10)  # beta does not depend on the permutations
    assert_beta_close(mine["beta"], ref["beta"])
    # the empty, one-count and off-signature cells get a (non-zero) beta, as in secactpy
    assert np.abs(mine["beta"].iloc[[3, 4, 5]].to_numpy()).min() > 0


@pytest.fixture(scope="module")
def kang_upper(tmp_path_factory):
    """Kang et al. (8 donors) with the genes secactpy's name rule leaves alone (see _secactpy_genes)."""
    a = ad.read_h5ad(KANG)
    a = a[:, _secactpy_genes(a.var_names)].copy()
    path = tmp_path_factory.mktemp("kang") / "kang_upper.h5ad"
    a.write_h5ad(path, compression="gzip")
    return path


@pytest.mark.parity
@pytest.mark.parametrize("sig", ["cytosig", "secact"])
def test_beta_equals_secactpy_kang(kang_upper, sig):
    cfg = tiny_config(kang_upper, "kang", sample_col="donor")
    mine = cell_activity(cfg, signatures=[sig])[sig]
    assert mine["beta"].shape[0] == 12261
    assert_beta_close(mine["beta"], secactpy_cells(kang_upper, sig, n_rand=10)["beta"])


@pytest.mark.parity
def test_exact_z_matches_secactpy_permutations(synth):
    path, _ = synth
    mine = cell_activity(tiny_config(path), signatures=["cytosig"])["cytosig"]["zscore"]
    ref = secactpy_cells(path, "cytosig", n_rand=1000)["zscore"].loc[mine.columns, mine.index].to_numpy().T
    r = np.corrcoef(mine.to_numpy().ravel(), ref.ravel())[0, 1]
    assert r >= 0.999, r


def _read(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {"X": f["X"][()], **{k: f["layers"][k][()] for k in f["layers"]}}


def test_file_is_float32_of_exact_results(synth, tmp_path):
    path, counts = synth
    cfg = tiny_config(path, exclude={"qc": ["bad"]})
    files = cytoatlas.cells(cfg, tmp_path, signatures=["cytosig"], layers=["beta", "pvalue"], batch_size=400)
    assert files == [layout.cells_activity_path(layout.cells_dir(tmp_path), "tiny", "cytosig")]
    mem = cell_activity(cfg, signatures=["cytosig"])["cytosig"]
    out = ad.read_h5ad(files[0])
    kept = [f"cell{i}" for i in range(len(counts)) if i % 11]
    assert list(out.obs_names) == kept
    assert list(out.obs.columns) == ["sample", "L1"]
    assert (out.obs["L1"].astype(str).to_numpy() == [f"T{(i * 7) % 4}" for i in range(len(counts)) if i % 11]).all()
    np.testing.assert_array_equal(out.X, mem["zscore"].to_numpy().astype(np.float32))
    np.testing.assert_array_equal(out.layers["beta"], mem["beta"].to_numpy().astype(np.float32))
    np.testing.assert_array_equal(out.layers["pvalue"], mem["pvalue"].to_numpy().astype(np.float32))
    assert out.uns["n_genes_used"] == len(out.uns["genes_used"]) > 100
    assert out.uns["gene_means"]["n_cells"] == len(kept)
    assert out.uns["input"]["size"] == os.path.getsize(path)
    # the summary: exact per-label means and fractions against the file itself
    table = pd.read_csv(layout.cells_summary_path(layout.cells_dir(tmp_path), "tiny", "cytosig"))
    row = table[(table.label == "T1") & (table.signature == "IFNG")].iloc[0]
    z = out.X[out.obs["L1"].astype(str).to_numpy() == "T1", list(out.var_names).index("IFNG")].astype(np.float64)
    assert row.n_cells == len(z) and np.isclose(row["mean"], z.mean()) and np.isclose(row.sd, z.std(ddof=1))
    assert np.isclose(row.frac_abs_gt2, (np.abs(z) > 2).mean()) and np.isclose(row.q50, np.median(z))
    emb = pd.read_csv(layout.cells_embedding_path(layout.cells_dir(tmp_path), "tiny", "cytosig"))
    ifng = list(out.var_names).index("IFNG")
    assert len(emb) == len(kept) and np.allclose(emb["z:IFNG"], out[emb["cell"].to_numpy()].X[:, ifng])
    manifest = cytoatlas.io.manifest.read_manifest(layout.cells_dir(tmp_path))
    assert {e["kind"] for e in manifest.values()} == {"activity", "summary", "embedding"}


def _run_files(tmp, cfg, **kw):
    files = cytoatlas.cells(cfg, tmp, signatures=["cytosig", "secact"], layers=["beta"], **kw)
    d = layout.cells_dir(tmp)
    summaries = [layout.cells_summary_path(d, "tiny", s).read_bytes() for s in ("cytosig", "secact")]
    return [_read(f) for f in files], summaries


def test_bit_identical_batches_threads_workers(synth, tmp_path):
    path, _ = synth
    cfg = tiny_config(path, exclude={"qc": ["bad"]})
    ref, ref_sum = _run_files(tmp_path / "a", cfg, batch_size=50_000, threads=1)
    for name, kw in {"batch 97, threads 2": {"batch_size": 97, "threads": 2},
                     "batch 600": {"batch_size": 600, "threads": 1},
                     "local:2": {"batch_size": 256, "scheduler": "local:2"}}.items():
        got, got_sum = _run_files(tmp_path / name.replace(" ", "_").replace(",", ""), cfg, **kw)
        for a, b in zip(ref, got, strict=True):
            for k in a:
                assert np.array_equal(a[k], b[k]), (name, k)
        assert got_sum == ref_sum, name


def test_stripe_means_independent_of_blocks(tmp_path, monkeypatch):
    """Several stripes, blocks that cut across them: the means (and every cell) agree bit for bit."""
    from cytoatlas._cells import means

    monkeypatch.setattr(means, "STRIPE_ROWS", 512)
    path, _ = write_cells_atlas(tmp_path / "big.h5ad", n_cells=3000, sets=("cytosig",), embedding=False)
    cfg = tiny_config(path)
    a = cell_activity(cfg, signatures=["cytosig"], batch_size=300)["cytosig"]["beta"].to_numpy()
    b = cell_activity(cfg, signatures=["cytosig"], batch_size=1777)["cytosig"]["beta"].to_numpy()
    assert np.array_equal(a, b)


def test_resume_after_kill_identical(synth, tmp_path):
    path, _ = synth
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.synth]\nh5ad = "{path}"\nsample_col = "sample"\nlevels = {{ L1 = "cell_type" }}\n')
    cmd = [sys.executable, "-m", "cytoatlas", "-q", "cells", "--atlas", "synth", "--registry", str(reg),
           "--signatures", "cytosig,secact", "--layers", "beta", "--batch-size", "200", "--checkpoint-every", "0"]
    env = {**os.environ, "CYTOATLAS_KILL_AT": "cells_block:4"}
    killed = subprocess.run([*cmd, "--out", str(tmp_path / "r")], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    d = layout.cells_dir(tmp_path / "r")
    assert layout.cells_checkpoint_path(d, "synth").exists()
    assert not layout.cells_activity_path(d, "synth", "cytosig").exists()
    resumed = subprocess.run([*cmd, "--out", str(tmp_path / "r"), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    fresh = subprocess.run([*cmd, "--out", str(tmp_path / "f")], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    f = layout.cells_dir(tmp_path / "f")
    for s in ("cytosig", "secact"):
        a, b = _read(layout.cells_activity_path(d, "synth", s)), _read(layout.cells_activity_path(f, "synth", s))
        assert all(np.array_equal(a[k], b[k]) for k in a)
        summary = layout.cells_summary_path(d, "synth", s).read_bytes()
        assert summary == layout.cells_summary_path(f, "synth", s).read_bytes()
    assert not layout.cells_checkpoint_path(d, "synth").exists()
    assert not list(d.glob(".*partial*"))


def _bad(tmp_path, cfg, match, **kw):
    with pytest.raises(CytoatlasError, match=match):
        cytoatlas.cells(cfg, tmp_path / "out", signatures=["cytosig"], **kw)
    assert not (tmp_path / "out").exists()


def test_bad_inputs(tmp_path, synth):
    path, counts = synth
    # no overlap genes
    a = ad.AnnData(sp.csr_matrix(counts[:50, :20]), obs=pd.DataFrame({"sample": pd.Categorical(["S"] * 50),
                   "cell_type": pd.Categorical(["T"] * 50)}, index=[f"c{i}" for i in range(50)]),
                   var=pd.DataFrame(index=[f"NOPE{i}" for i in range(20)]))
    a.write_h5ad(tmp_path / "nogenes.h5ad")
    _bad(tmp_path, tiny_config(tmp_path / "nogenes.h5ad"), "genes are among")
    # a float matrix that is not counts
    b = ad.read_h5ad(path)
    b.X = b.X.astype(np.float32)
    b.X[10, b.X[10].nonzero()[1][0]] += 0.5
    b.write_h5ad(tmp_path / "float.h5ad")
    _bad(tmp_path, tiny_config(tmp_path / "float.h5ad"), "non-negative integers")
    # an atlas without the named columns
    _bad(tmp_path, tiny_config(path, sample_col="donor"), "no column 'donor'")
    _bad(tmp_path, tiny_config(path), "unknown layer", layers=["se"])
    _bad(tmp_path, tiny_config(path), "no embedding", embedding="X_tsne")


def test_registry_key_names_the_embedding(tmp_path):
    """An atlas whose embedding is not X_umap: the registry's `embedding` names it; the argument comes first."""
    path, _ = write_cells_atlas(tmp_path / "tsne.h5ad", n_cells=300, sets=("cytosig",), embedding=False)
    a = ad.read_h5ad(path)
    a.obsm["X_tsne"] = np.random.default_rng(1).normal(size=(a.n_obs, 2))
    a.write_h5ad(path)
    d = layout.cells_dir(tmp_path / "plain")
    cytoatlas.cells(tiny_config(path), tmp_path / "plain", signatures=["cytosig"])
    assert not layout.cells_embedding_path(d, "tiny", "cytosig").exists()  # no X_umap: no embedding table
    cytoatlas.cells(tiny_config(path, embedding="X_tsne"), tmp_path / "keyed", signatures=["cytosig"])
    emb = pd.read_csv(layout.cells_embedding_path(layout.cells_dir(tmp_path / "keyed"), "tiny", "cytosig"))
    np.testing.assert_allclose(emb[["x", "y"]].to_numpy(), a.obsm["X_tsne"])
    out = ad.read_h5ad(layout.cells_activity_path(layout.cells_dir(tmp_path / "keyed"), "tiny", "cytosig"))
    assert out.uns["parameters"]["embedding"] == "X_tsne"
    # the argument before the registry key: a key the file lacks is an error even when the registry's exists
    _bad(tmp_path, tiny_config(path, embedding="X_tsne"), "no embedding 'X_umap'", embedding="X_umap")
    # a registry key naming an absent obsm key: one line naming the key, where it came from, what there is
    with pytest.raises(CytoatlasError) as e:
        cytoatlas.cells(tiny_config(path, embedding="X_pca_umap"), tmp_path / "out", signatures=["cytosig"])
    msg = str(e.value)
    assert "no embedding 'X_pca_umap'" in msg and "registry's `embedding`" in msg and "available: X_tsne" in msg
    assert "\n" not in msg and not (tmp_path / "out").exists()
    with pytest.raises(CytoatlasError, match="embedding must be the obsm key"):
        tiny_config(path, embedding="")


def test_cli_embedding_option_over_the_registry(tmp_path):
    path, _ = write_cells_atlas(tmp_path / "a.h5ad", n_cells=300, sets=("cytosig",))
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.a]\nh5ad = "{path}"\nsample_col = "sample"\nembedding = "X_pca_umap"\n'
                   'levels = { L1 = "cell_type" }\n')
    cmd = [sys.executable, "-m", "cytoatlas", "-q", "cells", "--atlas", "a", "--registry", str(reg),
           "--signatures", "cytosig"]
    r = subprocess.run([*cmd, "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert r.returncode == 2 and "no embedding 'X_pca_umap'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([*cmd, "--out", str(tmp_path / "ok"), "--embedding", "X_umap"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert layout.cells_embedding_path(layout.cells_dir(tmp_path / "ok"), "a", "cytosig").exists()


def test_cli_error_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cytoatlas", "cells", "--atlas", "nosuch", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("cytoatlas: error:") and len(r.stderr.strip().splitlines()) == 1


def test_layout_names_round_trip(tmp_path):
    d = layout.cells_dir(tmp_path)
    for kind in layout.CELLS_KINDS:
        p = layout.cells_path(d, "CIMA", "secact", kind)
        assert layout.parse(p) == layout.ResultName("cells", "cima", kind, "secact")
    assert layout.parse(layout.cells_checkpoint_path(d, "cima")).step == "cells_checkpoint"
    assert layout.parse(layout.cells_partial_path(d, "cima", "cytosig")).step == "cells_partial"
    assert layout.find_cells(d) == []


def test_store_and_api_serve_the_summary_and_embedding(synth, tmp_path):
    from fastapi.testclient import TestClient

    from cytoatlas._api.app import create_app

    path, _ = synth
    root = tmp_path / "results"
    cytoatlas.cells(tiny_config(path), root / "tiny", signatures=["cytosig"])
    summary = cytoatlas.index(root)
    assert any("cells_cytosig_summary" in r for r in summary.read)
    client = TestClient(create_app(summary.db))
    d = layout.cells_dir(root / "tiny")
    table = pd.read_csv(layout.cells_summary_path(d, "tiny", "cytosig"))
    r = client.get("/api/v1/cells/tiny/cytosig/summary", params={"signature": "IFNG", "level": "L1"})
    assert r.status_code == 200, r.text
    rows = pd.DataFrame(r.json()["rows"])
    want = table[(table.signature == "IFNG") & (table.level == "L1")].sort_values("label")
    assert list(rows.label) == list(want.label)
    np.testing.assert_allclose(rows["mean"], want["mean"], rtol=1e-12)
    np.testing.assert_allclose(rows["q95"], want["q95"], rtol=1e-12)
    emb = pd.read_csv(layout.cells_embedding_path(d, "tiny", "cytosig"))
    r = client.get("/api/v1/cells/tiny/cytosig/embedding", params={"signature": "IFNG"})
    assert r.status_code == 200, r.text
    points = pd.DataFrame(r.json()["rows"])
    assert list(points.cell) == list(emb.cell)
    np.testing.assert_allclose(points.z, emb["z:IFNG"], rtol=1e-6)
    assert client.get("/api/v1/cells/tiny/secact/summary").status_code == 404
    assert client.get("/api/v1/cells/nosuch/cytosig/summary").status_code == 404


def test_status_lists_the_cells_outputs(synth, tmp_path):
    from cytoatlas.pipeline import atlas_status

    path, _ = synth
    cfg = tiny_config(path)
    cytoatlas.cells(cfg, tmp_path, signatures=["cytosig"])
    rows = [r for r in atlas_status(cfg, tmp_path, activity={"signatures": ["cytosig"]})
            if r["step"].startswith("cells:")]
    assert {r["step"] for r in rows} == {"cells:activity:cytosig", "cells:summary:cytosig", "cells:embedding:cytosig"}
    assert all(r["state"] == "complete" for r in rows)
    f = layout.cells_activity_path(layout.cells_dir(tmp_path), "tiny", "cytosig")
    with open(f, "r+b") as fh:  # damage the file: status says so
        fh.seek(-10, 2)
        fh.write(b"0123456789")
    rows = atlas_status(cfg, tmp_path, activity={"signatures": ["cytosig"]}, verify=True)
    assert next(r for r in rows if r["step"] == "cells:activity:cytosig")["state"] == "corrupt"


def test_run_with_cells_step(synth, tmp_path):
    path, _ = synth
    cfg = tiny_config(path)
    paths = cytoatlas.run(cfg, tmp_path, pseudobulk_options={"n_bootstrap": 0},
                          activity_options={"signatures": ["cytosig"]}, cells_options={"signatures": ["cytosig"]})
    target = layout.cells_activity_path(layout.cells_dir(tmp_path), "tiny", "cytosig")
    assert target in paths and target.is_file()
    plain = cytoatlas.run(cfg, tmp_path / "plain", pseudobulk_options={"n_bootstrap": 0},
                          activity_options={"signatures": ["cytosig"]})
    assert not layout.cells_dir(tmp_path / "plain").exists() and plain  # off by default


def test_sigterm_saves_a_checkpoint_and_resume_is_identical(synth, tmp_path):
    path, _ = synth
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.synth]\nh5ad = "{path}"\nsample_col = "sample"\nlevels = {{ L1 = "cell_type" }}\n')
    cmd = [sys.executable, "-m", "cytoatlas", "-q", "cells", "--atlas", "synth", "--registry", str(reg),
           "--signatures", "cytosig", "--batch-size", "300"]
    stopped = subprocess.run([*cmd, "--out", str(tmp_path / "r")], capture_output=True, text=True,
                             env={**os.environ, "CYTOATLAS_KILL_AT": "cells_block:2:TERM"})
    assert stopped.returncode == 2 and "stopped by SIGTERM" in stopped.stderr, stopped.stderr
    d = layout.cells_dir(tmp_path / "r")
    assert layout.cells_checkpoint_path(d, "synth").exists()
    assert layout.cells_partial_path(d, "synth", "cytosig").exists()
    assert subprocess.run([*cmd, "--out", str(tmp_path / "r"), "--resume"], capture_output=True).returncode == 0
    assert subprocess.run([*cmd, "--out", str(tmp_path / "f")], capture_output=True).returncode == 0
    a = _read(layout.cells_activity_path(d, "synth", "cytosig"))
    b = _read(layout.cells_activity_path(layout.cells_dir(tmp_path / "f"), "synth", "cytosig"))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_skip_existing_keeps_current_sets_and_redoes_the_rest(synth, tmp_path, caplog):
    path, _ = synth
    cfg = tiny_config(path)
    directory = layout.cells_dir(tmp_path)
    first = cytoatlas.cells(cfg, tmp_path, signatures=["cytosig", "secact"])
    stamps = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    caplog.set_level("INFO", logger="cytoatlas.cells")
    assert cytoatlas.cells(cfg, tmp_path, signatures=["cytosig", "secact"], skip_existing=True) == first
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == stamps
    assert "skipped: cytosig, secact" in caplog.text
    secact = layout.cells_activity_path(directory, "tiny", "secact")
    reference = ad.read_h5ad(secact).X.copy()
    with open(secact, "r+b") as fh:  # a damaged set is scored again, the other one is left alone
        fh.seek(-10, 2)
        fh.write(b"0123456789")
    cytoatlas.cells(cfg, tmp_path, signatures=["cytosig", "secact"], skip_existing=True)
    cytosig = layout.cells_activity_path(directory, "tiny", "cytosig")
    assert cytosig.stat().st_mtime_ns == stamps[cytosig.name] and secact.stat().st_mtime_ns != stamps[secact.name]
    np.testing.assert_array_equal(ad.read_h5ad(secact).X, reference)  # the same scores as with both sets
    cytoatlas.cells(cfg, tmp_path, signatures=["cytosig"], lambda_=1e5, skip_existing=True)  # other parameters
    assert cytosig.stat().st_mtime_ns != stamps[cytosig.name]


def test_an_older_cells_algorithm_is_stale_and_skip_existing_recomputes_it(synth, tmp_path, monkeypatch):
    from cytoatlas._harness import STEPS
    from cytoatlas.io.manifest import read_manifest
    from cytoatlas.pipeline import atlas_status

    path, _ = synth
    cfg = tiny_config(path)
    (first,) = cytoatlas.cells(cfg, tmp_path, signatures=["cytosig"])
    reference, stamp = ad.read_h5ad(first).X.copy(), first.stat().st_mtime_ns
    monkeypatch.setattr(STEPS["cells"], "algorithm", 2)  # a release whose per-cell numbers changed
    rows = [r for r in atlas_status(cfg, tmp_path, activity={"signatures": ["cytosig"]})
            if r["step"].startswith("cells:")]
    assert len(rows) == 3 and all(r["state"] == "stale" for r in rows)
    assert all("algorithm version 1 of step cells; this release computes version 2" in r["reason"] for r in rows)
    assert cytoatlas.cells(cfg, tmp_path, signatures=["cytosig"], skip_existing=True) == [first]
    assert first.stat().st_mtime_ns != stamp
    np.testing.assert_array_equal(ad.read_h5ad(first).X, reference)
    assert {e["algorithm"] for e in read_manifest(layout.cells_dir(tmp_path)).values()} == {2}
    rows = atlas_status(cfg, tmp_path, activity={"signatures": ["cytosig"]})
    assert all(r["state"] == "complete" for r in rows if r["step"].startswith("cells:"))

"""Scale-out gives the single-process outputs, bit for bit: decompression threads, Dask local clusters (also
when a worker is killed), and a real single-node SLURM through dask-jobqueue."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

import cytoatlas
from cytoatlas._pseudobulk import state
from cytoatlas.demo import demo_config
from cytoatlas.errors import CytoatlasError

REPO = Path(__file__).resolve().parents[1]
# the command of the environment running the tests (the Python 3.13 leg's venv is not the repository's .venv)
CLI = Path(sys.executable).parent / "cytoatlas"
RUN = {"n_bootstrap": 4, "min_samples": 3, "batch_size": 700, "levels": ["L1", "L4"]}
# storage forms of X: compression filter and a chunk size that does not divide blocks, stripes or partitions
STORAGES = {"gzip_777": {"compression": "gzip", "chunks": (777,)},
            "lzf_1000": {"compression": "lzf", "chunks": (1000,)},
            "shuffle_gzip_4099": {"compression": "gzip", "shuffle": True, "chunks": (4099,)},
            "raw_999": {"chunks": (999,)}}


@pytest.fixture(autouse=True)
def small_stripes(monkeypatch):
    """Stripes of 512 cells: the 6,000-cell demo atlas makes 12, so partitions and blocks cross them."""
    monkeypatch.setattr(state, "STRIPE_ROWS", 512)


@pytest.fixture(scope="module")
def atlases(demo_h5ad, tmp_path_factory) -> dict[str, Path]:
    """The demo atlas with X stored in each of STORAGES."""
    out = {}
    for name, opts in STORAGES.items():
        path = tmp_path_factory.mktemp(name) / "atlas.h5ad"
        path.write_bytes(Path(demo_h5ad).read_bytes())
        with h5py.File(path, "r+") as f:
            for key in ("data", "indices"):
                values = f["X"][key][()]
                del f["X"][key]
                f["X"].create_dataset(key, data=values, **opts)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def serial(atlases, tmp_path_factory) -> dict[str, Path]:
    """Single-process, single-thread outputs per storage (stripes of 512, as in every test here)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(state, "STRIPE_ROWS", 512)
    try:
        return {name: _run(path, tmp_path_factory.mktemp(f"serial_{name}"), threads=1)
                for name, path in atlases.items()}
    finally:
        mp.undo()


def _run(h5ad: Path, out: Path, **kwargs) -> Path:
    cytoatlas.pseudobulk(demo_config(h5ad), out, **RUN, **kwargs)
    return out


def assert_same_outputs(got: Path, ref: Path) -> None:
    files = sorted(p.name for p in ref.glob("*.h5ad"))
    assert files and sorted(p.name for p in got.glob("*.h5ad")) == files
    for name in files:
        a, b = ad.read_h5ad(got / name), ad.read_h5ad(ref / name)
        pd.testing.assert_frame_equal(a.obs, b.obs)
        assert list(a.var_names) == list(b.var_names)
        np.testing.assert_array_equal(a.X, b.X, err_msg=name)
        assert set(a.layers) == set(b.layers)
        for layer in b.layers:
            np.testing.assert_array_equal(a.layers[layer], b.layers[layer], err_msg=f"{name} {layer}")
        for key in ("mean", "std", "n_cells"):
            np.testing.assert_array_equal(np.asarray(a.uns["atlas_stats"][key]),
                                          np.asarray(b.uns["atlas_stats"][key]), err_msg=f"{name} {key}")


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("threads", [2, 4])
def test_threads_give_the_serial_outputs(atlases, serial, tmp_path, storage, threads):
    assert_same_outputs(_run(atlases[storage], tmp_path, threads=threads), serial[storage])


@pytest.mark.parametrize("workers", [1, 2])
def test_local_cluster_gives_the_serial_outputs(atlases, serial, tmp_path, caplog, workers):
    caplog.set_level(logging.INFO, logger="cytoatlas")
    for storage in ("gzip_777", "lzf_1000"):
        assert_same_outputs(_run(atlases[storage], tmp_path / storage, scheduler=f"local:{workers}"),
                            serial[storage])
    done = [r.getMessage() for r in caplog.records if "pass done" in r.getMessage()]
    assert len(done) == 2 and all(f"on {workers} worker process(es)" in m for m in done), done


def test_a_killed_worker_does_not_change_the_outputs(atlases, serial, tmp_path, monkeypatch):
    """A worker dies (SIGKILL) in the middle of its third block, inside a partition task: Dask reruns the task
    (and any result that lived only on that worker) elsewhere, and the outputs do not change."""
    marker = tmp_path / "killed"
    monkeypatch.setenv("CYTOATLAS_KILL_AT", "partition_block:3")
    monkeypatch.setenv("CYTOATLAS_KILL_ONCE", str(marker))
    got = _run(atlases["gzip_777"], tmp_path / "out", scheduler="local:2")
    assert marker.exists()  # a worker was killed mid-task
    assert_same_outputs(got, serial["gzip_777"])


def test_bad_scheduler_is_refused_before_any_work(atlases, tmp_path):
    for bad in ("local", "local:0", "locale:2", "sge"):
        with pytest.raises(CytoatlasError, match="unknown scheduler"):
            _run(atlases["gzip_777"], tmp_path / "out", scheduler=bad)
    assert not (tmp_path / "out").exists()
    with pytest.raises(CytoatlasError, match="cannot reach the Dask scheduler"):
        _run(atlases["gzip_777"], tmp_path / "out2", scheduler="tcp://127.0.0.1:9")
    with pytest.raises(CytoatlasError, match="unknown SLURM option 'partition'"):
        _run(atlases["gzip_777"], tmp_path / "out3", scheduler="slurm", slurm={"partition": "x"})


@pytest.fixture(scope="module")
def slurm():
    """A single-node SLURM (slurmctld + slurmd + munged) for this module: scripts/slurm.sh starts what is not
    running and installs what is missing; stopped again at the end."""
    script = REPO / "scripts" / "slurm.sh"
    done = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    yield
    subprocess.run(["bash", str(script), "stop"], capture_output=True, text=True, timeout=120)


def test_slurm_cluster_gives_the_serial_outputs(slurm, atlases, serial, tmp_path, caplog, monkeypatch):
    """Two SLURM jobs, each a Dask worker, started by dask-jobqueue's SLURMCluster through sbatch."""
    monkeypatch.chdir(tmp_path)  # SLURM writes its job logs (slurm-*.out) in the working directory
    caplog.set_level(logging.INFO, logger="cytoatlas")
    got = _run(atlases["gzip_777"], tmp_path / "out", scheduler="slurm",
               slurm={"queue": "debug", "cores": 1, "memory": "2GB", "walltime": "00:10:00", "jobs": 2})
    assert_same_outputs(got, serial["gzip_777"])
    done = next(r.getMessage() for r in caplog.records if "pass done" in r.getMessage())
    jobs = {part.rsplit(":", 1)[-1] for part in done.split(": ", 2)[-1].split(", ")}
    assert len(jobs) == 2 and all(j.startswith("slurm-job-") for j in jobs), done


def test_activity_on_a_local_cluster_gives_the_serial_outputs(serial, tmp_path):
    """Files (each with its bootstrap file) as Dask tasks: the same activity files, CIs and manifest records.

    Equal to rounding, not bit for bit: Dask workers run BLAS on one thread, and OpenBLAS' matrix products sum
    in another order on one thread than on two (differences ~1e-15)."""
    files = sorted(serial["gzip_777"].glob("*.h5ad"))
    opts = {"signatures": ["cytosig"], "centre": "within:cell_type"}
    ref = cytoatlas.activity(files, tmp_path / "serial", **opts)
    got = cytoatlas.activity(files, tmp_path / "dask", scheduler="local:2", **opts)
    assert sorted(p.name for p in got) == sorted(p.name for p in ref)
    for p in ref:
        q = tmp_path / "dask" / p.name
        if p.suffix == ".csv":
            pd.testing.assert_frame_equal(pd.read_csv(q), pd.read_csv(p), rtol=1e-12)
            continue
        a, b = ad.read_h5ad(q), ad.read_h5ad(p)
        pd.testing.assert_frame_equal(a.obs, b.obs)
        np.testing.assert_allclose(a.X, b.X, rtol=1e-12, atol=1e-12)
        assert set(a.layers) == set(b.layers)
        for layer in b.layers:
            np.testing.assert_allclose(a.layers[layer], b.layers[layer], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{p.name} {layer}")
    from cytoatlas.io.manifest import read_manifest

    m_ref, m_got = read_manifest(tmp_path / "serial"), read_manifest(tmp_path / "dask")
    assert set(m_got) == set(m_ref) == {p.name for p in ref}
    assert all(m_got[k]["parameters"] == m_ref[k]["parameters"] and m_got[k]["inputs"] == m_ref[k]["inputs"]
               for k in m_ref)
    status = subprocess.run([str(CLI), "activity", *map(str, files), "--out",
                             str(tmp_path / "dask"), "--signatures", "cytosig", "--centre", "within:cell_type",
                             "--skip-existing", "--scheduler", "local:1"], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert status.stderr.count("skipped") == len(files)  # all recorded by the driver: nothing redone


def test_run_command_uses_one_cluster_for_both_steps(atlases, tmp_path):
    """`cytoatlas run --scheduler local:2`: pseudobulk and activity on one local cluster; status verifies all."""
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.demo]\nh5ad = "{atlases["gzip_777"]}"\nsample_col = "sample"\ndonor_col = "donor"\n'
                   '[atlas.demo.exclude]\ncell_type_l1 = ["Doublets"]\n'
                   '[atlas.demo.levels]\nL1 = "cell_type_l1"\nL4 = "cell_type_l4"\n')
    cli = str(CLI)
    common = ["--registry", str(reg), "--atlas", "demo", "--out", str(tmp_path / "res"), "--n-bootstrap", "4",
              "--min-samples", "3", "--signatures", "cytosig"]
    done = subprocess.run([cli, "run", *common, "--batch-size", "700", "--scheduler", "local:2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Dask: local cluster of 2 worker process(es)") == 1
    status = subprocess.run([cli, "status", *common, "--verify"], capture_output=True, text=True)
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.parametrize(("n_rows", "stripe", "parts"), [(300_000, 16_384, 2), (300_000, 16_384, 4),
                                                         (100_000, 1_000, 7), (16_385, 16_384, 2), (10, 16_384, 3),
                                                         (50_000, 16_384, 50)])
def test_partitions_are_whole_stripes_of_even_size(n_rows, stripe, parts):
    from cytoatlas._pseudobulk.partitions import partition_bounds

    bounds = partition_bounds(n_rows, stripe, parts)
    assert bounds[0][0] == 0 and bounds[-1][1] == n_rows
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(bounds[:-1], bounds[1:], strict=True))
    assert all(lo % stripe == 0 and hi > lo for lo, hi in bounds)
    assert len(bounds) in (min(parts, -(-n_rows // stripe)), min(parts, n_rows // stripe))  # a short last stripe
    # each edge is the stripe edge nearest to an even cut: 300 k rows in 2 are 147,456 + 152,544, not 163,840 + ...
    even = n_rows / len(bounds)
    assert all(abs(lo - k * even) <= stripe / 2 for k, (lo, _) in enumerate(bounds))

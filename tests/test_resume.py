"""Runs that survive: kill -9 at exact points of `cytoatlas run`, then `--resume`: outputs equal an uninterrupted
run's. Crash points come from ``CYTOATLAS_KILL_AT`` (see ``cytoatlas._faults``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

CLI = Path(sys.executable).parent / "cytoatlas"
OPTS = ["--batch-size", "500", "--n-bootstrap", "8", "--checkpoint-every", "0", "--signatures", "cytosig"]


@pytest.fixture(scope="module")
def registry(demo_h5ad: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reg") / "reg.toml"
    path.write_text(f'[atlas.demo]\nh5ad = "{demo_h5ad}"\nsample_col = "sample"\ndonor_col = "donor"\n'
                    '[atlas.demo.levels]\nL1 = "cell_type_l1"\nL3 = "cell_type_l3"\n')
    return path


def _run(registry: Path, out: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CYTOATLAS_KILL_AT"}
    if kill_at:
        env["CYTOATLAS_KILL_AT"] = kill_at
    return subprocess.run([str(CLI), "run", "--registry", str(registry), "--atlas", "demo", "--out", str(out),
                           *OPTS, *extra], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(registry: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "demo"
    proc = _run(registry, out)
    assert proc.returncode == 0, proc.stderr
    return out


def _outputs(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.suffix in (".h5ad", ".csv"))


def assert_same_outputs(got: Path, want: Path) -> None:
    assert _outputs(got) == _outputs(want)
    for rel in _outputs(want):
        if rel.suffix == ".csv":
            pd.testing.assert_frame_equal(pd.read_csv(got / rel), pd.read_csv(want / rel))
            continue
        a, b = ad.read_h5ad(got / rel), ad.read_h5ad(want / rel)
        pd.testing.assert_frame_equal(a.obs, b.obs)
        assert list(a.var_names) == list(b.var_names)
        for name in ["X", *b.layers]:
            x, y = (a.X, b.X) if name == "X" else (a.layers[name], b.layers[name])
            assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=x.dtype.kind == "f"), (rel, name)


@pytest.mark.parametrize("kill_at", [
    "block:1",                  # early: before the first checkpoint
    "block:7",                  # mid-pass: continues from the checkpoint after block 6
    "mid_block:9",              # inside a block: its counts added to the state, the rest not yet
    "checkpoint_written:4",     # while a checkpoint is being written: the previous one is intact
    "output_block:3",           # while the output files are being filled
    "commit:2",                 # some files renamed into place, the manifest not yet written
    "activity_set:2",           # during activity
])
def test_kill_then_resume_equals_uninterrupted(registry: Path, reference: Path, tmp_path: Path, kill_at: str) -> None:
    out = tmp_path / "demo"
    killed = _run(registry, out, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _run(registry, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    if kill_at in ("block:7", "mid_block:9", "checkpoint_written:4"):
        assert "resuming from the checkpoint at row" in resumed.stderr
    assert_same_outputs(out, reference)
    assert not list(out.rglob(".*.tmp-*")) and not list(out.rglob("*.checkpoint.npz"))
    status = subprocess.run([str(CLI), "status", "--registry", str(registry), "--atlas", "demo", "--out", str(out),
                             "--verify", "--n-bootstrap", "8", "--signatures", "cytosig"], capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0, status.stdout


def test_sigterm_saves_a_checkpoint_and_resume_finishes(registry: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    stopped = _run(registry, out, kill_at="block:5:TERM")
    assert stopped.returncode == 2
    assert "stopped by SIGTERM" in stopped.stderr and "--resume" in stopped.stderr
    assert list(out.rglob("*.checkpoint.npz"))
    resumed = _run(registry, out, "--resume")
    assert resumed.returncode == 0 and "resuming from the checkpoint at row" in resumed.stderr
    assert_same_outputs(out, reference)


def test_checkpoint_from_other_parameters_is_refused(registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert _run(registry, out, kill_at="block:5").returncode == -signal.SIGKILL
    changed = _run(registry, out, "--resume", "--seed", "7")
    assert changed.returncode == 2
    assert "checkpoint" in changed.stderr and "different run" in changed.stderr and "parameters" in changed.stderr
    assert "Traceback" not in changed.stderr

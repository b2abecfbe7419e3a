"""Helpers of the store / API / web tests: a real two-atlas results tree, validation tables of known values, and a
real server in a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import cytoatlas
from cytoatlas._activity import load_signatures
from cytoatlas.demo_atlas import DEMO_EXCLUDE, DEMO_LEVELS
from cytoatlas.io.manifest import record, update_manifest
from cytoatlas.registry import atlas_from_mapping

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


def lincytosig_like(path: Path) -> Path:
    """A synthetic matrix of LinCytoSig's form (CellType__Cytokine columns), as LinCytoSig is not public."""
    cyto = load_signatures("cytosig")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(cyto.matrix, index=cyto.genes)[[list(cyto.signatures).index(c) for c in ("IFNG", "IL4")]]
    cols = {}
    for cell_type in ("Monocyte", "B_Cell", "T_CD4", "NK_Cell"):
        for j, c in enumerate(("IFNG", "IL4")):
            cols[f"{cell_type}__{c}"] = frame.iloc[:, j].to_numpy() + rng.normal(0, 0.05, len(frame))
    pd.DataFrame(cols, index=frame.index).to_csv(path, sep="\t")
    return path


def build_atlas(name: str, h5ad: Path, out: Path, levels: list[str], signature_file: Path) -> Path:
    """``out/<name>/{pseudobulk,activity}`` of a demo atlas registered as ``name`` (small bootstrap)."""
    cfg = atlas_from_mapping(name, {"h5ad": str(h5ad), "sample_col": "sample", "donor_col": "donor",
                                    "exclude": DEMO_EXCLUDE, "levels": {k: DEMO_LEVELS[k] for k in levels}})
    paths = cytoatlas.pseudobulk(cfg, out / name / "pseudobulk", n_bootstrap=12, batch_size=4000)
    cytoatlas.activity(paths, out / name / "activity", signatures=["cytosig", "lincytosig"],
                       signature_files=[signature_file], centre="within:cell_type",
                       cell_type_map={"CD4 T": "T_CD4", "B": "B_Cell", "Monocytes": "Monocyte", "NK": "NK_Cell"})
    return out / name


def validation_frames(targets: list[str], atlases: list[str], levels: list[str], seed: int = 0) -> dict:
    """The seven validation tables (contract columns plus one extra column), with random but known values."""
    rng = np.random.default_rng(seed)
    rho = []
    for atlas in atlases:
        for level in levels:
            for i, target in enumerate(targets):
                gene = {"IFNG": "IFNGR1"}.get(target, target)
                for stratum in ("all", "T cells"):
                    value = np.nan if i == 1 else float(rng.uniform(-1, 1))
                    rho.append({"atlas": atlas, "level": level, "signature_set": "cytosig", "target": target,
                                "gene": gene, "stratum": stratum, "n_samples": int(rng.integers(5, 40)),
                                "rho": value, "pvalue": float(rng.uniform()), "fdr": float(rng.uniform()),
                                "rho_ci_low": value - 0.1, "rho_ci_high": value + 0.1,
                                "representative": stratum == "all", "reason": "too few samples" if i == 1 else "",
                                "method": "spearman"})
    summary = [{"atlas": a, "level": lev, "signature_set": s, "n_targets": len(targets),
                "median_rho": float(rng.uniform(-1, 1)), "pct_positive": float(rng.uniform(0, 100)),
                "n_significant": int(rng.integers(0, 10))}
               for a in atlases for lev in levels for s in ("cytosig", "lincytosig")]
    versus = [{"atlas": a, "level": lev, "n_shared": int(rng.integers(10, 40)),
               "median_rho_cytosig": float(rng.uniform()), "median_rho_secact": float(rng.uniform()),
               "statistic": float(rng.uniform(0, 100)), "pvalue": float(rng.uniform())}
              for a in atlases for lev in levels]
    cross = [{"signature_set": "cytosig", "signature": t, "level": lev, "atlas_a": atlases[0], "atlas_b": atlases[1],
              "n_cell_types": int(rng.integers(3, 9)), "r": float(rng.uniform(-1, 1)), "reason": ""}
             for t in targets for lev in levels]
    conservation = [{"signature_set": "cytosig", "signature": t, "n_pairs": 1, "n_pairs_r07": int(rng.integers(0, 2)),
                     "n_pairs_r05": 1, "conservation": str(rng.choice(["conserved", "moderate", "not conserved"]))}
                    for t in targets]
    consistency = [{"signature_set": "cytosig", "target": t, "n_atlases": len(atlases),
                    "n_positive": int(rng.integers(0, 3)), "tier": str(rng.choice(["high", "medium", "low"]))}
                   for t in targets]
    matches = [{"atlas": a, "level": "L1", "cell_type": c, "harmonised": c.lower().replace(" ", "_")}
               for a in atlases for c in ("B cells", "Myeloid", "NK cells", "T cells")]
    return {"rho": rho, "summary": summary, "cytosig_vs_secact": versus, "cross_atlas": cross,
            "conservation": conservation, "consistency": consistency, "cell_type_matches": matches}


def write_validation(directory: Path, tables: dict) -> dict[str, pd.DataFrame]:
    """Each table as NAME.parquet (written by DuckDB) and NAME.csv, recorded in a step='validate' manifest."""
    import duckdb

    directory.mkdir(parents=True, exist_ok=True)
    frames, records = {}, {}
    with duckdb.connect() as con:
        for name, rows in tables.items():
            frame = pd.DataFrame(rows)
            frames[name] = frame
            con.register("frame", frame)
            con.execute(f"COPY frame TO '{directory / (name + '.parquet')}' (FORMAT parquet)")
            con.unregister("frame")
            frame.to_csv(directory / f"{name}.csv", index=False)
            for suffix in (".parquet", ".csv"):
                path = directory / f"{name}{suffix}"
                records[path.name] = record(path, step="validate", parameters={"table": name}, inputs=[])
    update_manifest(directory, records)
    return frames


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(db: Path, *extra: str, timeout: float = 30.0):
    """``cytoatlas serve --db DB`` on a free 127.0.0.1 port in a subprocess; yields its base URL."""
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(db.parent / f"serve-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "cytoatlas", "-q", "serve", "--db", str(db), "--port", str(port),
                             "--no-access-log", *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {(db.parent / log.name).read_text()}")
            try:
                if httpx.get(url + "/api/v1/health", timeout=1).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

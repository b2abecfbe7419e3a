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
    cross = [{"signature_set": "cytosig", "signature": t, "level": lev, "resolution": res, "atlas_a": atlases[0],
              "atlas_b": atlases[1], "n_cell_types": int(rng.integers(3, 9)), "r": float(rng.uniform(-1, 1)),
              "reason": ""}
             for t in targets for lev in levels for res in ("fine", "lineage")]
    conservation = [{"signature_set": "cytosig", "signature": t, "resolution": res, "n_pairs": 1,
                     "n_pairs_r07": int(rng.integers(0, 2)), "n_pairs_r05": 1,
                     "conservation": str(rng.choice(["conserved", "moderate", "not conserved"]))}
                    for t in targets for res in ("fine", "lineage")]
    consistency = [{"signature_set": "cytosig", "target": t, "n_atlases": len(atlases),
                    "n_positive": int(rng.integers(0, 3)), "tier": str(rng.choice(["high", "medium", "low"]))}
                   for t in targets]
    matches = [{"atlas": a, "level": "L1", "cell_type": c, "cl_id": "", "cl_name": c.lower().replace(" ", "_"),
                "source": "registry"}
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


COMPARE_CELL_TYPES = {"L1": ["B cells", "Myeloid", "NK cells", "T cells"], "L2": ["B", "CD4 T", "Monocytes", "NK"]}
COMPARE_HARMONISED = {"B cells": "b", "Myeloid": "myeloid", "NK cells": "nk", "T cells": "t", "B": "b",
                      "CD4 T": "cd4_t", "Monocytes": "myeloid", "NK": "nk"}
COMPARE_SIGNATURES = ["Activin A", "IFNG", "IL10", "IL4", "TNFA"]


def compare_frames(atlases: list[str], levels: list[str], seed: int = 0, by: str = "treatment",
                   covariate: str = "bmi") -> dict[str, pd.DataFrame]:
    """The four tables of `cytoatlas compare` (contract columns and dtypes) with random but known values: a
    ``{by}`` contrast "treated vs untreated" and a ``{covariate}`` scan, per atlas x level x cell type x CytoSig
    signature; IL10 in "myeloid" strongly up everywhere; the last atlas' NK cells untestable at the first level;
    a few missing p-values; meta rows for the harmonised types of two or more atlases."""
    rng = np.random.default_rng(seed)
    differential, association, untestable = [], [], []
    for atlas in atlases:
        for level in levels:
            for cell_type in COMPARE_CELL_TYPES[level]:
                if atlas == atlases[-1] and level == levels[0] and cell_type.startswith("NK"):
                    for analysis, contrast in (("differential", "treated vs untreated"), ("association", covariate)):
                        untestable.append({"atlas": atlas, "level": level, "signature_set": "cytosig",
                                           "cell_type": cell_type, "analysis": analysis, "by": by if analysis ==
                                           "differential" else covariate, "contrast": contrast, "n_group": 2,
                                           "n_reference": 0 if analysis == "association" else 4,
                                           "reason": "fewer than 3 donors in a group"})
                    continue
                harmonised = COMPARE_HARMONISED[cell_type]
                for signature in COMPARE_SIGNATURES:
                    planted = signature == "IL10" and harmonised == "myeloid"
                    effect = float(rng.normal(2.5 if planted else 0, 0.3))
                    se = float(rng.uniform(0.2, 0.5))
                    p = 1e-6 if planted else float(rng.uniform(0.001, 1))
                    if signature == "TNFA" and cell_type.startswith("B"):
                        p = np.nan  # e.g. a constant activity
                    base = {"atlas": atlas, "level": level, "signature_set": "cytosig", "cell_type": cell_type,
                            "cl_id": "", "cl_name": harmonised, "signature": signature}
                    differential.append({**base, "by": by, "group": "treated", "reference": "untreated",
                                         "contrast": "treated vs untreated", "test": "ols", "covariates": "age,sex",
                                         "paired": False, "n_group": int(rng.integers(3, 12)),
                                         "n_reference": int(rng.integers(3, 12)),
                                         "mean_group": effect / 2, "mean_reference": -effect / 2, "effect": effect,
                                         "se": se, "ci_low": effect - 1.96 * se, "ci_high": effect + 1.96 * se,
                                         "statistic": effect / se, "pvalue": p})
                    slope = float(rng.normal(0, 0.05))
                    association.append({**base, "by": covariate, "contrast": covariate, "test": "ols",
                                        "covariates": "", "n": int(rng.integers(6, 24)), "effect": slope,
                                        "se": 0.05, "ci_low": slope - 0.098, "ci_high": slope + 0.098,
                                        "statistic": slope / 0.05, "pvalue": float(rng.uniform(0.001, 1))})
    tables = {"differential": pd.DataFrame(differential), "association": pd.DataFrame(association)}
    for frame in tables.values():  # BH is not the point here: fdr is p scaled, kept in [0, 1]
        frame["fdr"] = np.minimum(frame["pvalue"] * 4, 1.0)
        frame["fdr_cell_type"] = np.minimum(frame["pvalue"] * 2, 1.0)
        # cross-talk as `cytoatlas compare` appends it: IL10's hits have a correlated signature also significant
        hit = (frame["signature"] == "IL10").to_numpy()
        frame["correlated"] = np.where(hit, "IL27 (r 0.62), IFN1 (r 0.55)", "")
        frame["also_significant"] = np.where(hit, "IL27 (r 0.62)", "")
        frame["n_correlated_significant"] = hit.astype(np.int64)
    meta = []
    for analysis, frame in tables.items():
        for (level, sset, harmonised, signature, col, contrast), part in frame.groupby(
                ["level", "signature_set", "cl_name", "signature", "by", "contrast"], sort=True):
            if part["atlas"].nunique() < 2:
                continue
            effect = float(part["effect"].mean())
            labels = "; ".join(f"{a}: {c}" for a, c in sorted(set(zip(part["atlas"], part["cell_type"], strict=True))))
            meta.append({"analysis": analysis, "level": level, "signature_set": sset, "resolution": "fine", "cl_id": "",
                         "cl_name": harmonised, "labels": labels,
                         "signature": signature, "by": col, "contrast": contrast, "n_atlases": part["atlas"].nunique(),
                         "atlases": ",".join(sorted(part["atlas"].unique())), "effect": effect, "se": 0.2,
                         "ci_low": effect - 0.392, "ci_high": effect + 0.392, "pvalue": float(rng.uniform()),
                         "fdr": float(rng.uniform()), "tau2": float(rng.uniform(0, 0.1)), "q": float(rng.uniform(0, 3)),
                         "q_pvalue": float(rng.uniform()), "i2": float(rng.uniform(0, 100)),
                         "sign_agreement": float(np.mean(np.sign(part["effect"]) == np.sign(effect)))})
    tables["meta"] = pd.DataFrame(meta, columns=["analysis", "level", "signature_set", "resolution", "cl_id",
                                                 "cl_name", "labels", "signature", "by", "contrast", "n_atlases",
                                                 "atlases", "effect", "se", "ci_low",
                                                 "ci_high", "pvalue", "fdr", "tau2", "q", "q_pvalue", "i2",
                                                 "sign_agreement"])
    tables["untestable"] = pd.DataFrame(untestable, columns=["atlas", "level", "signature_set", "cell_type", "analysis",
                                                             "by", "contrast", "n_group", "n_reference", "reason"])
    return tables


def write_compare(directory: Path, tables: dict[str, pd.DataFrame], formats: tuple[str, ...] = ("csv", "parquet")
                  ) -> dict[str, pd.DataFrame]:
    """Each table as NAME.csv + NAME.parquet (the shared table writer), recorded in a step='compare' manifest
    (kind = the table's name), as `cytoatlas compare` records them; ``formats`` keeps only some of the files."""
    from cytoatlas.io.tables import write_table

    directory.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, frame in tables.items():
        for path in write_table(frame, directory, name):
            if path.suffix[1:] in formats:
                records[path.name] = record(path, step="compare", parameters={"table": name}, inputs=[], kind=name)
            else:
                path.unlink()
    update_manifest(directory, records)
    return tables

"""Sample x cell type activity files for comparison tests, written as `cytoatlas activity` writes them.

Each file goes through the project's writer (:class:`cytoatlas.io.writer.ColumnWriter`) into
``ROOT/activity/{atlas}_pseudobulk_{level}_samples_{set}_activity.h5ad`` with a manifest record (step
``activity``, kind ``samples``), so discovery and input fingerprints work as on real outputs. The obs holds what
a pseudobulk ``_samples`` file with sample columns holds: sample, donor, cell_type, n_cells, then the donors'
columns (treatment, bmi, age, sex).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas.io.layout import activity_dir, activity_path, pseudobulk_dir, pseudobulk_path
from cytoatlas.io.manifest import record, update_manifest
from cytoatlas.io.writer import ColumnWriter

SIGNATURES = ["IL10", "IL6", "IFNG", "TNF", "TGFB1", "IL2"]
PLANTED = ("IL10", 2.5)   # raised in treated donors' monocytes
SLOPE = ("IL6", 0.4)      # per unit of bmi in CD4 T cells


@dataclass
class Planted:
    """Where the effects are: the monocyte and CD4 T labels of the atlas."""

    monocytes: str
    cd4: str


def write_samples_activity(root: Path, atlas: str, level: str, signature_set: str, obs: pd.DataFrame,
                           z: np.ndarray, names: list[str]) -> Path:
    """One sample x cell type activity file and its manifest record in ``root/activity``."""
    act_dir = activity_dir(root)
    act_dir.mkdir(parents=True, exist_ok=True)
    pb_file = pseudobulk_path(pseudobulk_dir(root), atlas, level, "samples")
    path = activity_path(act_dir, pb_file, signature_set)
    var = pd.DataFrame({"group": list(names)}, index=pd.Index(list(names), dtype=object))
    uns = {"signature": {"name": signature_set},
           "pseudobulk": {"atlas": atlas, "level": level, "kind": "samples"}}
    w = ColumnWriter(path, obs, var, uns, {"X": np.dtype(np.float64)})
    try:
        w.write(slice(0, len(names)), {"X": np.asarray(z, dtype=np.float64)})
        w.commit()
    except BaseException:
        w.abort()
        raise
    update_manifest(act_dir, {path.name: record(path, step="activity", parameters={"method": "exact"}, inputs=[],
                                                file=pb_file.name, signature=signature_set, kind="samples")})
    return path


def donor_table(n_donors: int, seed: int, two_samples: int = 2) -> pd.DataFrame:
    """Donors with treatment (half treated), bmi, age and sex; the first ``two_samples`` donors have two
    samples each."""
    rng = np.random.default_rng(seed)
    treated = np.zeros(n_donors, dtype=bool)
    treated[rng.permutation(n_donors)[: n_donors // 2]] = True
    donors = pd.DataFrame({
        "donor": [f"D{i:02d}" for i in range(n_donors)],
        "treatment": np.where(treated, "treated", "untreated"),
        "bmi": np.clip(rng.normal(26, 4, n_donors), 17, 40),
        "age": rng.uniform(20, 80, n_donors).round(),
        "sex": rng.choice(["F", "M"], n_donors),
    })
    samples = [(d, f"{d}_s{k}") for i, d in enumerate(donors["donor"]) for k in range(2 if i < two_samples else 1)]
    return pd.DataFrame(samples, columns=["donor", "sample"]).merge(donors, on="donor")


def samples_obs(samples: pd.DataFrame, cell_types: list[str]) -> pd.DataFrame:
    """The obs of a sample x cell type file: one row per sample and cell type."""
    rows = samples.loc[samples.index.repeat(len(cell_types))].reset_index(drop=True)
    rows.insert(2, "cell_type", np.tile(cell_types, len(samples)))
    obs = pd.DataFrame({
        "sample": pd.Categorical(rows["sample"]),
        "donor": rows["donor"].astype(object).to_numpy(),
        "cell_type": pd.Categorical(rows["cell_type"], categories=cell_types),
        "n_cells": np.full(len(rows), 50, dtype=np.int64),
        "treatment": pd.Categorical(rows["treatment"], categories=["untreated", "treated"]),
        "bmi": rows["bmi"].to_numpy(float),
        "age": rows["age"].to_numpy(float),
        "sex": pd.Categorical(rows["sex"]),
    }, index=pd.Index([f"{s}|{c}" for s, c in zip(rows["sample"], rows["cell_type"], strict=True)], dtype=object))
    return obs


def planted_z(obs: pd.DataFrame, where: Planted, seed: int, noise: float = 0.5) -> np.ndarray:
    """Activity z: noise, plus the planted treatment effect (IL10 in monocytes) and bmi slope (IL6 in CD4 T)."""
    rng = np.random.default_rng(seed + 1000)
    z = rng.normal(0.0, noise, size=(len(obs), len(SIGNATURES)))
    mono = (obs["cell_type"] == where.monocytes).to_numpy()
    treated = (obs["treatment"] == "treated").to_numpy()
    z[mono & treated, SIGNATURES.index(PLANTED[0])] += PLANTED[1]
    cd4 = (obs["cell_type"] == where.cd4).to_numpy()
    z[cd4, SIGNATURES.index(SLOPE[0])] += SLOPE[1] * (obs["bmi"].to_numpy()[cd4] - 26)
    return z


def write_atlas(root: Path, atlas: str, n_donors: int, seed: int, cell_types: list[str], where: Planted,
                level: str = "L2", signature_set: str = "cytosig") -> Path:
    """An atlas' results directory ``root/atlas`` with one level's sample x cell type activity file."""
    obs = samples_obs(donor_table(n_donors, seed), cell_types)
    write_samples_activity(root / atlas, atlas, level, signature_set, obs, planted_z(obs, where, seed), SIGNATURES)
    return root / atlas

"""Activity output files: per (pseudobulk file, signature set) an AnnData of groups x signatures, bootstrap
intervals summarised from the matching ``_resampled`` file, and cell-type matching for LinCytoSig-like sets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas._activity.cell_types import map_cell_types, signature_cell_types
from cytoatlas._activity.signatures import SignatureSet
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import write_text_atomic
from cytoatlas.io.results import Pseudobulk
from cytoatlas.io.writer import ColumnWriter

log = logging.getLogger("cytoatlas.activity")
CI_QUANTILES = (0.025, 0.975)


@dataclass
class SetResult:
    """One signature set on one file: signatures x columns arrays, by regression group (not yet expanded)."""

    sig: SignatureSet
    arrays: dict[str, np.ndarray]
    genes_used: np.ndarray


def expand_groups(res: SetResult) -> dict[str, np.ndarray]:
    """columns x signatures arrays in output order, each signature carrying its group's values."""
    rows = res.sig.group_of[res.sig.output_order]
    return {k: np.ascontiguousarray(v[rows].T) for k, v in res.arrays.items()}


def bootstrap_ci(main_obs: pd.DataFrame, boot_obs: pd.DataFrame, boot_z: np.ndarray) -> dict[str, np.ndarray]:
    """Per main row: mean, sd, 2.5 % and 97.5 % quantiles of z over the row's cell type's bootstraps."""
    n, k = len(main_obs), boot_z.shape[1]
    ci = {name: np.full((n, k), np.nan) for name in ("z_boot_mean", "z_boot_sd", "z_ci_low", "z_ci_high")}
    n_boot = np.zeros(n, dtype=np.int64)
    labels = boot_obs["cell_type"].astype(str).to_numpy()
    for i, label in enumerate(main_obs["cell_type"].astype(str)):
        z = boot_z[labels == label]
        n_boot[i] = len(z)
        if len(z) >= 2:  # a cell type without enough units was not resampled: its CI is NaN, not 0
            ci["z_boot_mean"][i], ci["z_boot_sd"][i] = z.mean(axis=0), z.std(axis=0, ddof=1)
            ci["z_ci_low"][i], ci["z_ci_high"][i] = np.quantile(z, CI_QUANTILES, axis=0)
    return {**ci, "n_boot": n_boot}


def cell_type_matches(pb: Pseudobulk, sig: SignatureSet, names: np.ndarray,
                cell_type_map: Mapping[str, str] | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The ``matched`` layer, each row's mapped cell type, and the mapping record for ``uns``."""
    if "cell_type" not in pb.obs:
        raise CytoatlasError(f"{pb.path.name}: no obs column 'cell_type' to match {sig.name} cell types against")
    labels = pb.obs["cell_type"].astype(str).to_numpy()
    mapping = map_cell_types(labels, signature_cell_types(names), cell_type_map, pb.uns.get("separator"))
    unmapped = sorted(k for k, v in mapping.items() if v is None)
    if unmapped:
        log.warning("%s: %d cell type(s) match no %s cell type (map them with --cell-type-map LABEL=TYPE): %s",
                    pb.path.name, len(unmapped), sig.name, ", ".join(unmapped[:10]))
    row_type = np.array([mapping[x] or "" for x in labels], dtype=object)
    sig_type = np.array([s.split("__", 1)[0] for s in names], dtype=object)
    matched = (row_type[:, None] == sig_type[None, :]) & (row_type[:, None] != "")
    record = {"mapping": {k: v for k, v in mapping.items() if v is not None}, "unmapped": np.array(unmapped, dtype=str)}
    return matched, row_type, record


def write_activity(path: Path, pb: Pseudobulk, res: SetResult, layers: dict[str, np.ndarray], uns: dict,
           obs_extra: Mapping[str, np.ndarray]) -> Path:
    obs, var, arrays = activity_parts(pb, res, layers, obs_extra)
    w = ColumnWriter(path, obs, var, uns, {k: v.dtype for k, v in arrays.items()})
    try:
        w.write(slice(0, len(var)), arrays)
        return w.commit()
    except BaseException:
        w.abort()
        raise


def activity_parts(pb: Pseudobulk, res: SetResult, layers: dict[str, np.ndarray], obs_extra: Mapping[str, np.ndarray]
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """An activity output's obs, var (signatures: their group, and cell type and cytokine for cell-type-specific
    sets) and matrices (``X`` the z-scores, then the other layers)."""
    sig = res.sig
    names = sig.signatures[sig.output_order]
    groups = np.array(sig.group_names, dtype=object)[sig.group_of[sig.output_order]]
    var = pd.DataFrame({"group": groups}, index=pd.Index(names.astype(str), dtype=object))
    if sig.cell_type_specific:
        var["cell_type"] = [s.split("__", 1)[0] for s in names]
        var["cytokine"] = [s.split("__", 1)[1] for s in names]
    obs = pb.obs.copy()
    for k, v in obs_extra.items():
        obs[k] = v
    arrays = {"X": layers["zscore"], **{k: v for k, v in layers.items() if k != "zscore"}}
    return obs, var, arrays


def write_ci_table(path: Path, obs: pd.DataFrame, names: np.ndarray, z: np.ndarray, ci: dict) -> Path:
    n, k = z.shape
    table = pd.DataFrame({"cell_type": np.repeat(obs["cell_type"].astype(str).to_numpy(), k),
                          "signature": np.tile(names.astype(str), n), "z": z.ravel()})
    for name in ("z_boot_mean", "z_boot_sd", "z_ci_low", "z_ci_high"):
        table[name] = ci[name].ravel()
    table["n_boot"] = np.repeat(ci["n_boot"], k)
    write_text_atomic(path, table.to_csv(index=False))
    return path

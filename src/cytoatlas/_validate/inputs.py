"""What validation reads: an atlas' activity files and the pseudobulk files they were made from.

An atlas' results directory (``cytoatlas run --out DIR``) holds ``DIR/pseudobulk`` and ``DIR/activity``. Per level
and signature set validation uses the sample x cell type pair (``..._samples.h5ad`` and its activity), the
cell-type pair (``{atlas}_pseudobulk_{level}.h5ad`` and its activity) and, when present, the bootstrap pair
(``..._resampled.h5ad`` and its activity). Only the target genes of the pseudobulk files are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import open_h5ad, read_strings

log = logging.getLogger("cytoatlas.validate")
KINDS = ("samples", "celltype", "resampled")


@dataclass
class Activity:
    """One activity file: rows (obs), signature names, z-scores (rows x signatures), matched cells (LinCytoSig)."""

    path: Path
    obs: pd.DataFrame
    names: np.ndarray
    z: np.ndarray
    matched: np.ndarray | None
    level: str
    signature_set: str
    separator: str | None


@dataclass
class LevelSet:
    """The files of one (atlas, level, signature set): pseudobulk and activity per kind (None if absent)."""

    atlas: str
    level: str
    signature_set: str
    pseudobulk: dict[str, Path] = field(default_factory=dict)
    activity: dict[str, Path] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """Every input file, pseudobulk and activity."""
        return [*self.pseudobulk.values(), *self.activity.values()]


def _scalar(f: h5py.File, key: str, default: str = "") -> str:
    if key not in f:
        return default
    v = f[key][()]
    return v.decode() if isinstance(v, bytes) else str(v)


def read_activity(path: Path) -> Activity:
    """Read an activity file's obs, signature names, X (z) and the ``matched`` layer if any."""
    from anndata.io import read_elem

    with open_h5ad(path) as f:
        try:
            level = _scalar(f, "uns/pseudobulk/level")
            sig = _scalar(f, "uns/signature/name")
            if not level or not sig or "X" not in f or not isinstance(f["X"], h5py.Dataset):
                raise KeyError("uns/pseudobulk/level, uns/signature/name or a dense X")
            obs = read_elem(f["obs"])
            var = f["var"]
            names = read_strings(var[var.attrs.get("_index", "_index")], "var index")
            z = np.asarray(f["X"][()], dtype=float)
            matched = np.asarray(f["layers/matched"][()], dtype=bool) if "layers/matched" in f else None
            sep = _scalar(f, "uns/pseudobulk/separator") or None
        except (KeyError, OSError, ValueError) as e:
            raise CytoatlasError(f"{path}: not a readable cytoatlas activity file ({e})") from None
    if z.shape != (len(obs), len(names)):
        raise CytoatlasError(f"{path}: X has shape {z.shape}, obs x var is {len(obs)} x {len(names)}")
    return Activity(path, obs, names.astype(str), z, matched, level, sig, sep)


def _describe(path: Path) -> tuple[str, str, str, str]:
    """(atlas, level, kind, signature set) recorded in an activity file."""
    with open_h5ad(path) as f:
        return (_scalar(f, "uns/pseudobulk/atlas"), _scalar(f, "uns/pseudobulk/level"),
                _scalar(f, "uns/pseudobulk/kind"), _scalar(f, "uns/signature/name"))


def discover(atlas: str, results: Path, level_order: list[str] | None = None,
             levels: list[str] | None = None, signatures: list[str] | None = None) -> list[LevelSet]:
    """The (level, signature set) file groups of ``atlas`` in its results directory ``results``.

    Levels follow ``level_order`` (the registry's) then name order; a group without a sample x cell type
    activity file is left out with a warning (nothing to correlate across samples).
    """
    act_dir, pb_dir = results / "activity", results / "pseudobulk"
    if not act_dir.is_dir():
        raise CytoatlasError(f"atlas {atlas!r}: no activity directory {act_dir}; run "
                             f"`cytoatlas run --atlas {atlas} --out {results}` first")
    prefix = f"{atlas.lower()}_pseudobulk_"
    groups: dict[tuple[str, str], LevelSet] = {}
    for path in sorted(act_dir.glob(f"{prefix}*_activity.h5ad")):
        try:
            _, level, kind, sig = _describe(path)
        except CytoatlasError as e:
            log.warning("%s", e)
            continue
        if kind not in KINDS or not level or not sig:
            log.warning("%s: not an activity file of a pseudobulk output; left out", path.name)
            continue
        if levels and level.lower() not in {lv.lower() for lv in levels}:
            continue
        if signatures and sig.lower() not in {s.lower() for s in signatures}:
            continue
        pb = pb_dir / (path.name[: -len(f"_{sig}_activity.h5ad")] + ".h5ad")
        if not pb.is_file():
            log.warning("%s: its pseudobulk file %s is missing; left out", path.name, pb)
            continue
        group = groups.setdefault((level, sig), LevelSet(atlas, level, sig))
        group.pseudobulk[kind], group.activity[kind] = pb, path
    if not groups:
        what = [f"levels {', '.join(levels)}"] if levels else []
        what += [f"signature sets {', '.join(signatures)}"] if signatures else []
        raise CytoatlasError(f"atlas {atlas!r}: no activity files {prefix}*_activity.h5ad in {act_dir}"
                             + (f" for {' and '.join(what)}" if what else ""))
    out = []
    for key, group in groups.items():
        if "samples" not in group.activity:
            log.warning("atlas %s, level %s, %s: no sample x cell type activity file; level left out of the "
                        "within-atlas correlations", atlas, key[0], key[1])
        out.append(group)
    order = {name.lower(): i for i, name in enumerate(level_order or [])}
    return sorted(out, key=lambda g: (order.get(g.level.lower(), len(order)), g.level, g.signature_set))

"""The results layout: every path of every kind of result file, which file is whose input, and the way back
from a path to what it holds.

An atlas' results directory (``cytoatlas run --atlas A --out ROOT``) holds::

    ROOT/pseudobulk/{atlas}_pseudobulk_{level}.h5ad              cell types x genes         (kind celltype)
    ROOT/pseudobulk/{atlas}_pseudobulk_{level}_samples.h5ad      sample x cell type x genes (kind samples)
    ROOT/pseudobulk/{atlas}_pseudobulk_{level}_resampled.h5ad    donor bootstrap            (kind resampled)
    ROOT/activity/{pseudobulk stem}_{set}_activity.h5ad          rows of that file x signatures
    ROOT/activity/{pseudobulk stem}_{set}_activity_ci.csv        bootstrap intervals of a celltype file's activity

(names lower-case, as the seed's contract), each directory with its ``manifest.json`` (:mod:`.manifest`).
Validation writes its tables, parts and figures into a directory of its own (:func:`validation_part_paths`);
comparisons (``cytoatlas compare``) theirs (:func:`compare_table_paths`, :func:`compare_figure_stem`).

Every module that names, finds or matches result files does it through this module, and nothing else spells
a result file name: a new kind of result is added here once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cytoatlas.options import PseudobulkKind, choices

PSEUDOBULK_DIR = "pseudobulk"
ACTIVITY_DIR = "activity"

# the pseudobulk kinds, in the order a level's files are listed (and written)
PSEUDOBULK_KINDS = choices(PseudobulkKind)
# the kinds with one row per group (the bootstrap file holds resamples of the celltype rows)
GROUP_KINDS = ("celltype", "samples")
_KIND_SUFFIX = {"celltype": "", "samples": "_samples", "resampled": "_resampled"}
_PSEUDOBULK = "_pseudobulk_"
ACTIVITY_SUFFIX = "_activity.h5ad"
CI_SUFFIX = "_activity_ci.csv"


def pseudobulk_kinds(n_bootstrap: int) -> tuple[str, ...]:
    """The kinds a pseudobulk run writes: all three, or no ``resampled`` file when ``n_bootstrap`` is 0."""
    return PSEUDOBULK_KINDS if n_bootstrap > 0 else GROUP_KINDS


def pseudobulk_dir(root: str | os.PathLike) -> Path:
    """``ROOT/pseudobulk`` of an atlas' results directory."""
    return Path(root) / PSEUDOBULK_DIR


def activity_dir(root: str | os.PathLike) -> Path:
    """``ROOT/activity`` of an atlas' results directory."""
    return Path(root) / ACTIVITY_DIR


def _stem(atlas: str, level: str) -> str:
    return f"{atlas}{_PSEUDOBULK}{level}".lower()


def pseudobulk_path(directory: str | os.PathLike, atlas: str, level: str, kind: str) -> Path:
    """A level's pseudobulk file of ``kind`` in ``directory`` (a ``pseudobulk/`` directory)."""
    if kind not in _KIND_SUFFIX:
        raise ValueError(f"pseudobulk kind must be one of {', '.join(PSEUDOBULK_KINDS)}, got {kind!r}")
    return Path(directory) / f"{_stem(atlas, level)}{_KIND_SUFFIX[kind]}.h5ad"


def pseudobulk_paths(directory: str | os.PathLike, atlas: str, level: str,
                     kinds: Sequence[str] = PSEUDOBULK_KINDS) -> dict[str, Path]:
    """``{kind: path}`` of a level's pseudobulk files."""
    return {k: pseudobulk_path(directory, atlas, level, k) for k in kinds}


def pseudobulk_glob(atlas: str) -> str:
    """The glob of every pseudobulk file of ``atlas`` (all levels and kinds)."""
    return f"{atlas.lower()}{_PSEUDOBULK}*.h5ad"


def find_pseudobulk(directory: str | os.PathLike, atlas: str) -> list[Path]:
    """Every pseudobulk file of ``atlas`` in ``directory``, in name order."""
    return sorted(Path(directory).glob(pseudobulk_glob(atlas)))


def main_of(resampled: str | os.PathLike) -> Path:
    """The celltype file whose bootstrap ``resampled`` holds (its activity is centred with that file's means)."""
    resampled = Path(resampled)
    suffix = _KIND_SUFFIX["resampled"] + ".h5ad"
    if not resampled.name.endswith(suffix):
        raise ValueError(f"{resampled.name} is not a resampled pseudobulk file name")
    return resampled.with_name(resampled.name[: -len(suffix)] + ".h5ad")


def resampled_of(main: str | os.PathLike) -> Path:
    """The bootstrap file of a celltype pseudobulk file."""
    main = Path(main)
    return main.with_name(f"{main.stem}{_KIND_SUFFIX['resampled']}.h5ad")


def activity_path(directory: str | os.PathLike, pseudobulk_file: str | os.PathLike, signature: str) -> Path:
    """``{directory}/{stem}_{signature}_activity.h5ad`` for a pseudobulk file ``{stem}.h5ad``."""
    return Path(directory) / f"{Path(pseudobulk_file).stem}_{signature}{ACTIVITY_SUFFIX}"


def activity_ci_path(activity_file: str | os.PathLike) -> Path:
    """The bootstrap interval table beside an activity file."""
    activity_file = Path(activity_file)
    return activity_file.with_name(activity_file.name[: -len(ACTIVITY_SUFFIX)] + CI_SUFFIX)


def activity_targets(directory: str | os.PathLike, pseudobulk_file: str | os.PathLike, signature: str,
                     with_ci: bool) -> list[Path]:
    """The activity file of (pseudobulk file, set) and, for a main file with a bootstrap file, its interval
    table."""
    main = activity_path(directory, pseudobulk_file, signature)
    return [main, activity_ci_path(main)] if with_ci else [main]


def activity_glob(atlas: str) -> str:
    """The glob of every activity file of ``atlas``' pseudobulk files."""
    return f"{atlas.lower()}{_PSEUDOBULK}*{ACTIVITY_SUFFIX}"


def find_activity(directory: str | os.PathLike, atlas: str) -> list[Path]:
    """Every activity file of ``atlas`` in ``directory``, in name order."""
    return sorted(Path(directory).glob(activity_glob(atlas)))


def is_activity_file(path: str | os.PathLike) -> bool:
    """Whether a name is an activity file's (not its interval table)."""
    return Path(path).name.endswith(ACTIVITY_SUFFIX)


def pseudobulk_of(activity_file: str | os.PathLike, signature: str, directory: str | os.PathLike) -> Path:
    """The pseudobulk file in ``directory`` an activity file of set ``signature`` was made from."""
    name = Path(activity_file).name
    suffix = f"_{signature}{ACTIVITY_SUFFIX}"
    if not name.endswith(suffix):
        raise ValueError(f"{name} is not an activity file of signature set {signature!r}")
    return Path(directory) / (name[: -len(suffix)] + ".h5ad")


def activity_inputs(pseudobulk_file: str | os.PathLike, kinds: Iterable[str]) -> list[Path]:
    """The pseudobulk files an activity output of ``pseudobulk_file`` is made from, given the ``kinds`` of the
    level present: the file itself; for a celltype file with a bootstrap, its resampled file (the intervals);
    for a resampled file, its main file (the centring)."""
    path = Path(pseudobulk_file)
    kinds = set(kinds)
    if path.name.endswith(_KIND_SUFFIX["resampled"] + ".h5ad"):
        return [path, main_of(path)]
    if not path.name.endswith(_KIND_SUFFIX["samples"] + ".h5ad") and "resampled" in kinds:
        return [path, resampled_of(path)]
    return [path]


def checkpoint_path(directory: str | os.PathLike, atlas: str) -> Path:
    """The pseudobulk pass' checkpoint of ``atlas`` in its output directory."""
    return Path(directory) / f".{atlas.lower()}_pseudobulk.checkpoint.npz"


# a validation directory (``cytoatlas validate --out DIR``): tables, their per-(atlas, level, set) parts and figures
VALIDATION_PARTS_DIR = "parts"
VALIDATION_FIGURES_DIR = "figures"
TABLE_FORMATS = ("csv", "parquet")
FIGURE_FORMATS = ("png", "svg")


def safe_name(name: str) -> str:
    """A file-name-safe version of an atlas, level or set name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "x"


def table_paths(directory: str | os.PathLike, name: str) -> list[Path]:
    """``directory/NAME.csv`` and ``directory/NAME.parquet`` of a table (validation and later steps)."""
    return [Path(directory) / f"{name}.{ext}" for ext in TABLE_FORMATS]


def validation_part_paths(directory: str | os.PathLike, atlas: str, level: str, signature_set: str) -> dict[str, Path]:
    """The within-atlas correlation parts of one (atlas, level, set): ``{"rho": ..., "ct": ...}``."""
    stem = f"{safe_name(atlas)}__{safe_name(level)}__{safe_name(signature_set)}"
    parts = Path(directory) / VALIDATION_PARTS_DIR
    return {"rho": parts / f"{stem}_rho.parquet", "ct": parts / f"{stem}_rho_cell_types.parquet"}


def figure_paths(directory: str | os.PathLike, stem: str) -> list[Path]:
    """A figure's PNG and SVG files in ``directory``."""
    return [Path(directory) / f"{stem}.{fmt}" for fmt in FIGURE_FORMATS]



# a comparison directory (``cytoatlas compare --out DIR``): four tables and, in DIR/figures, their figures
COMPARE_TABLES = ("differential", "association", "meta", "untestable")
COMPARE_FIGURES_DIR = "figures"
# the parts of each figure kind's stem, in order (``volcano__{atlas}__{level}__{set}__{contrast}``)
COMPARE_FIGURE_PARTS = {"volcano": ("atlas", "level", "signature_set", "contrast"),
                        "forest": ("level", "signature_set", "contrast", "signature"),
                        "heatmap": ("atlas", "level", "signature_set", "contrast")}


def compare_table_paths(directory: str | os.PathLike, name: str) -> list[Path]:
    """``directory/NAME.csv`` and ``directory/NAME.parquet`` of a comparison table (one of
    :data:`COMPARE_TABLES`)."""
    if name not in COMPARE_TABLES:
        raise ValueError(f"comparison table must be one of {', '.join(COMPARE_TABLES)}, got {name!r}")
    return table_paths(directory, name)


def compare_figure_stem(kind: str, **parts: str) -> str:
    """A comparison figure's file stem: ``{kind}__{part}__...`` with the parts of :data:`COMPARE_FIGURE_PARTS`
    in order, each through :func:`safe_name` (e.g. ``volcano__demo__L2__cytosig__treated_vs_untreated``)."""
    if kind not in COMPARE_FIGURE_PARTS:
        raise ValueError(f"comparison figure kind must be one of {', '.join(COMPARE_FIGURE_PARTS)}, got {kind!r}")
    names = COMPARE_FIGURE_PARTS[kind]
    if set(parts) != set(names):
        raise ValueError(f"a {kind} figure is named by {', '.join(names)}; got {', '.join(sorted(parts))}")
    return "__".join([kind, *(safe_name(parts[n]) for n in names)])


def manifest_key(path: str | os.PathLike, directory: str | os.PathLike) -> str:
    """The name a file is recorded under in ``directory``'s manifest (its path below the directory)."""
    return Path(path).relative_to(directory).as_posix()


@dataclass(frozen=True)
class ResultName:
    """What a result file's name says. ``step``: ``pseudobulk``, ``activity``, ``activity_ci`` or
    ``checkpoint``; ``stem`` the pseudobulk file's stem (``{atlas}_pseudobulk_{level}[_kind]``), and for activity
    files ``rest`` the ``{set}`` part (split from the stem only where the set is known, see :func:`pseudobulk_of`)."""

    step: str
    stem: str
    kind: str | None = None
    rest: str = ""


def parse(path: str | os.PathLike) -> ResultName | None:
    """What a file name in a results directory is, or None for a name the layout does not make.

    Per-cell names (``{atlas}_cells_{set}_...``) are told by :func:`parse_cells`.

    Pseudobulk names give their kind; activity names give their step (the signature set and pseudobulk stem
    cannot be told apart by name alone when names hold underscores: they are recorded in the file and in its
    manifest record).
    """
    name = Path(path).name
    if _PSEUDOBULK not in name and (_CELLS in name or name.endswith(_CELLS_CHECKPOINT)):
        return parse_cells(name)
    if name.startswith(".") and name.endswith(".checkpoint.npz") and _PSEUDOBULK.rstrip("_") in name:
        return ResultName("checkpoint", name[1: -len(".checkpoint.npz")])
    if _PSEUDOBULK not in name:
        return None
    if name.endswith(CI_SUFFIX):
        return ResultName("activity_ci", name[: -len(CI_SUFFIX)])
    if name.endswith(ACTIVITY_SUFFIX):
        return ResultName("activity", name[: -len(ACTIVITY_SUFFIX)])
    if name.endswith(".h5ad"):
        stem = name[: -len(".h5ad")]
        for kind in ("samples", "resampled"):
            if stem.endswith(_KIND_SUFFIX[kind]):
                return ResultName("pseudobulk", stem, kind)
        return ResultName("pseudobulk", stem, "celltype")
    return None


# --- per-cell activity (``cytoatlas cells``) ---------------------------------------------------------------
#
#     ROOT/cells/{atlas}_cells_{set}_activity.h5ad      kept cells x signatures (X = exact z)   (kind activity)
#     ROOT/cells/{atlas}_cells_{set}_summary.csv        per level x label x signature statistics (kind summary)
#     ROOT/cells/{atlas}_cells_{set}_embedding.csv      a fixed subsample's embedding and z      (kind embedding)
#     ROOT/cells/.{atlas}_cells.checkpoint.npz          the pass' checkpoint
#     ROOT/cells/.{atlas}_cells_{set}_activity.partial.h5ad   an activity file being filled (resumable)

CELLS_DIR = "cells"
_CELLS = "_cells_"
CELLS_KINDS = ("activity", "summary", "embedding")
_CELLS_SUFFIX = {"activity": "_activity.h5ad", "summary": "_summary.csv", "embedding": "_embedding.csv"}
_CELLS_CHECKPOINT = "_cells.checkpoint.npz"
_PARTIAL = ".partial.h5ad"


def cells_dir(root: str | os.PathLike) -> Path:
    """``ROOT/cells`` of an atlas' results directory."""
    return Path(root) / CELLS_DIR


def cells_path(directory: str | os.PathLike, atlas: str, signature_set: str, kind: str) -> Path:
    """A per-cell output of ``kind`` (``activity``, ``summary``, ``embedding``) in ``directory``."""
    if kind not in _CELLS_SUFFIX:
        raise ValueError(f"cells kind must be one of {', '.join(CELLS_KINDS)}, got {kind!r}")
    return Path(directory) / f"{atlas.lower()}{_CELLS}{signature_set.lower()}{_CELLS_SUFFIX[kind]}"


def cells_activity_path(directory: str | os.PathLike, atlas: str, signature_set: str) -> Path:
    """``{directory}/{atlas}_cells_{set}_activity.h5ad``."""
    return cells_path(directory, atlas, signature_set, "activity")


def cells_summary_path(directory: str | os.PathLike, atlas: str, signature_set: str) -> Path:
    """``{directory}/{atlas}_cells_{set}_summary.csv``: the per-label summary table."""
    return cells_path(directory, atlas, signature_set, "summary")


def cells_embedding_path(directory: str | os.PathLike, atlas: str, signature_set: str) -> Path:
    """``{directory}/{atlas}_cells_{set}_embedding.csv``: the embedding subsample's coordinates and z."""
    return cells_path(directory, atlas, signature_set, "embedding")


def cells_partial_path(directory: str | os.PathLike, atlas: str, signature_set: str) -> Path:
    """The activity file while a resumable pass fills it (hidden; renamed to :func:`cells_activity_path`)."""
    final = cells_activity_path(directory, atlas, signature_set)
    return final.with_name(f".{final.name.removesuffix('.h5ad')}{_PARTIAL}")


def cells_checkpoint_path(directory: str | os.PathLike, atlas: str) -> Path:
    """The per-cell pass' checkpoint of ``atlas`` in its output directory."""
    return Path(directory) / f".{atlas.lower()}{_CELLS_CHECKPOINT}"


def find_cells(directory: str | os.PathLike, atlas: str | None = None, kind: str = "activity") -> list[Path]:
    """Every per-cell output of ``kind`` (of ``atlas``, or of any atlas) in ``directory``, in name order."""
    prefix = f"{atlas.lower()}{_CELLS}" if atlas else f"*{_CELLS}"
    return sorted(Path(directory).glob(f"{prefix}*{_CELLS_SUFFIX[kind]}"))


def parse_cells(path: str | os.PathLike) -> ResultName | None:
    """What a per-cell file name holds: ``ResultName("cells", atlas, kind, set)``, ``"cells_checkpoint"`` for
    the checkpoint, ``"cells_partial"`` for a file being filled; None for another name."""
    name = Path(path).name
    if name.startswith(".") and name.endswith(_CELLS_CHECKPOINT):
        return ResultName("cells_checkpoint", name[1: -len(_CELLS_CHECKPOINT)])
    partial = name.startswith(".") and name.endswith(_PARTIAL)
    if partial:
        name = name[1: -len(_PARTIAL)] + ".h5ad"
    if _CELLS not in name:
        return None
    atlas, rest = name.split(_CELLS, 1)
    for kind, suffix in _CELLS_SUFFIX.items():
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return ResultName("cells_partial" if partial else "cells", atlas, kind, rest[: -len(suffix)])
    return None


# the report's per-cell figures (``cytoatlas report --cells ROOT``), in the report directory's figures/ beside the
# validation figures: one per atlas x signature set with an embedding table, recorded in the report directory's
# manifest (step ``report``) under their own kind, so the validation sections never take them for theirs
CELLS_FIGURE_KIND = "cells_figure"
_CELLS_FIGURE = "cells_embedding"


def cells_figure_stem(atlas: str, signature_set: str) -> str:
    """The stem of the report's figure of an atlas' per-cell activity on its embedding:
    ``cells_embedding__{atlas}__{set}`` (each part through :func:`safe_name`)."""
    return "__".join([_CELLS_FIGURE, safe_name(atlas), safe_name(signature_set)])


def cells_figure_paths(directory: str | os.PathLike, atlas: str, signature_set: str) -> list[Path]:
    """The PNG and SVG of :func:`cells_figure_stem` in ``directory`` (a report's ``figures/``)."""
    return figure_paths(directory, cells_figure_stem(atlas, signature_set))

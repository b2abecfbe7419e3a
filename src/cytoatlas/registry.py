"""Atlas registry: one place that says where each atlas is and how its obs columns are named.

The built-in ``atlases.toml`` holds the lab's six atlases; a user TOML adds atlases or overrides keys of the
built-in ones (``[atlas.NAME]`` tables, same keys). Relative ``h5ad`` paths resolve against the data root
(``data_root`` argument or the ``CYTOATLAS_DATA_ROOT`` environment variable), else against the directory of
the TOML file that named them (user files only).
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cytoatlas.cellxgene import is_dataset_path
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import activity_dir

DATA_ROOT_ENV = "CYTOATLAS_DATA_ROOT"
_KEYS = {"h5ad", "sample_col", "donor_col", "gene_symbols", "counts", "exclude", "levels", "signature_files",
         "cell_type_map", "harmonise", "sample_columns", "embedding", "cell_type_ontology_col",
         "treatment_aliases"}


@dataclass(frozen=True)
class Level:
    """An annotation level: cells grouped by the labels of ``by`` (several columns = composite level).

    ``by=()`` puts every cell in one group; ``where`` keeps only cells whose labels are in the given sets.
    """

    name: str
    by: tuple[str, ...]
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def columns(self) -> list[str]:
        """The obs columns the level reads (its labels and its filters)."""
        return list(self.by) + [c for c, _ in self.where]


@dataclass(frozen=True)
class AtlasConfig:
    """Everything a run needs to know about one atlas file."""

    name: str
    h5ad: Path
    sample_col: str
    levels: tuple[Level, ...]
    donor_col: str | None = None
    gene_symbols: str | None = None
    counts: str = "X"
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    signature_files: tuple[Path, ...] = ()
    cell_type_map: tuple[tuple[str, str], ...] = ()
    harmonise: tuple[tuple[str, str], ...] = ()  # cell-type label -> CL ID, CL name or shared name across atlases
    sample_columns: tuple[str, ...] = ()  # per-sample obs columns copied into sample x cell type pseudobulk obs
    embedding: str | None = None  # per-cell activity: the obsm key of the embedding (else X_umap when present)
    # the obs column of CL IDs of the cell types: one column for every single-column level, or per level; None:
    # ``{column}_ontology_term_id`` of each single-column level when obs has it (the CELLxGENE schema)
    cell_type_ontology_col: str | tuple[tuple[str, str], ...] | None = None
    treatment_aliases: tuple[tuple[str, str], ...] = ()  # ground truth: treatment value -> signature (or alias)

    @property
    def unit_col(self) -> str:
        """The bootstrap unit: donors where the atlas has several samples per donor, else samples."""
        return self.donor_col or self.sample_col

    def level(self, name: str) -> Level:
        """The level called ``name``."""
        for lev in self.levels:
            if lev.name == name:
                return lev
        raise CytoatlasError(
            f"atlas {self.name!r} has no level {name!r}; levels: {', '.join(lv.name for lv in self.levels)}"
        )

    def obs_columns(self, levels: list[Level] | None = None) -> list[str]:
        """The obs columns a run of ``levels`` (default: all) reads."""
        cols = [self.sample_col] + ([self.donor_col] if self.donor_col else [])
        cols += [c for c, _ in self.exclude] + [c for lev in (levels or self.levels) for c in lev.columns]
        return list(dict.fromkeys(cols))


def _label_sets(name: str, key: str, table: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(table, dict):
        raise CytoatlasError(f"atlas {name!r}: {key} must be a table of column = [labels]")
    return tuple((str(c), tuple(map(str, v if isinstance(v, list) else [v]))) for c, v in table.items())


def _level(atlas: str, name: str, spec: Any) -> Level:
    if isinstance(spec, str):
        return Level(name, (spec,))
    if isinstance(spec, list) and all(isinstance(s, str) for s in spec):
        return Level(name, tuple(spec))
    if isinstance(spec, dict) and set(spec) <= {"by", "where"}:
        by = spec.get("by", [])
        by = [by] if isinstance(by, str) else by
        return Level(name, tuple(by), _label_sets(atlas, f"level {name} where", spec.get("where", {})))
    raise CytoatlasError(
        f"atlas {atlas!r}: level {name!r} must be a column name, a list of columns, or "
        f"{{ by = [...], where = {{ column = [labels] }} }}; got {spec!r}"
    )


def atlas_from_mapping(name: str, entry: dict, base_dir: Path | None = None, data_root=None) -> AtlasConfig:
    """Build an :class:`AtlasConfig` from a registry table, validating every key."""
    unknown = set(entry) - _KEYS
    if unknown:
        raise CytoatlasError(f"atlas {name!r}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    for key in ("h5ad", "sample_col", "levels"):
        if key not in entry:
            raise CytoatlasError(f"atlas {name!r}: missing required key {key!r}")
    if not isinstance(entry["levels"], dict) or not entry["levels"]:
        raise CytoatlasError(f"atlas {name!r}: levels must be a non-empty table")
    root = data_root or os.environ.get(DATA_ROOT_ENV) or base_dir

    def resolve(value: Any) -> Path:
        path = Path(os.path.expanduser(str(value)))
        if path.is_absolute():
            return path
        if root is None:
            raise CytoatlasError(
                f"atlas {name!r}: path {str(path)!r} is relative and no data root is set; "
                f"pass --data-root or set {DATA_ROOT_ENV}"
            )
        return Path(root) / path

    files = entry.get("signature_files", [])
    if not isinstance(files, list) or not all(isinstance(x, str) for x in files):
        raise CytoatlasError(f"atlas {name!r}: signature_files must be a list of paths, got {files!r}")
    cmap = entry.get("cell_type_map", {})
    if not isinstance(cmap, dict) or not all(isinstance(v, str) for v in cmap.values()):
        raise CytoatlasError(f"atlas {name!r}: cell_type_map must be a table of label = \"CellType\", got {cmap!r}")
    harm = entry.get("harmonise", {})
    if not isinstance(harm, dict) or not all(isinstance(v, str) for v in harm.values()):
        raise CytoatlasError(f"atlas {name!r}: harmonise must be a table of label = \"CL ID, CL name or shared "
                             f"name\", got {harm!r}")
    sample_columns = entry.get("sample_columns", [])
    if not isinstance(sample_columns, list) or not all(isinstance(c, str) and c for c in sample_columns):
        raise CytoatlasError(f"atlas {name!r}: sample_columns must be a list of obs column names, "
                             f"got {sample_columns!r}")
    if len(set(sample_columns)) != len(sample_columns):
        repeated = sorted({c for c in sample_columns if sample_columns.count(c) > 1})
        raise CytoatlasError(f"atlas {name!r}: sample_columns names {', '.join(map(repr, repeated))} more than once")
    aliases = _treatment_aliases(name, entry)
    ontology_col = entry.get("cell_type_ontology_col")
    level_names = {str(k) for k in entry["levels"]}
    if isinstance(ontology_col, dict):
        unknown_levels = sorted(set(map(str, ontology_col)) - level_names)
        if unknown_levels or not all(isinstance(v, str) and v for v in ontology_col.values()):
            raise CytoatlasError(f"atlas {name!r}: cell_type_ontology_col must name an obs column of CL IDs, or be a "
                                 f"table of level = \"column\" over its levels ({', '.join(sorted(level_names))}); "
                                 f"got {ontology_col!r}")
        ontology_col = tuple((str(k), v) for k, v in ontology_col.items())
    elif ontology_col is not None and not (isinstance(ontology_col, str) and ontology_col):
        raise CytoatlasError(f"atlas {name!r}: cell_type_ontology_col must name an obs column of CL IDs, or be a "
                             f"table of level = \"column\"; got {ontology_col!r}")
    embedding = entry.get("embedding")
    if embedding is not None and not (isinstance(embedding, str) and embedding):
        raise CytoatlasError(f"atlas {name!r}: embedding must be the obsm key of an embedding (a non-empty string, "
                             f"e.g. \"X_umap\"), got {embedding!r}")
    return AtlasConfig(
        name=name,
        h5ad=resolve(entry["h5ad"]),
        sample_col=str(entry["sample_col"]),
        levels=tuple(_level(name, str(k), v) for k, v in entry["levels"].items()),
        donor_col=entry.get("donor_col"),
        gene_symbols=entry.get("gene_symbols"),
        counts=str(entry.get("counts", "X")),
        exclude=_label_sets(name, "exclude", entry.get("exclude", {})),
        signature_files=tuple(resolve(x) for x in files),
        cell_type_map=tuple((str(k), v) for k, v in cmap.items()),
        harmonise=tuple((str(k), v) for k, v in harm.items()),
        sample_columns=tuple(sample_columns),
        embedding=embedding,
        cell_type_ontology_col=ontology_col,
        treatment_aliases=tuple(aliases.items()),
    )


def _treatment_aliases(name: str, entry: dict | None) -> dict[str, str]:
    table = (entry or {}).get("treatment_aliases", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
        raise CytoatlasError(f"atlas {name!r}: treatment_aliases must be a table of treatment = \"signature\", "
                             f"got {table!r}")
    return {str(k): v for k, v in table.items()}


def treatment_aliases(atlas: str | AtlasConfig, registry: str | os.PathLike | None = None,
                      data_root: str | os.PathLike | None = None) -> dict[str, str]:
    """An atlas' ``treatment_aliases`` (treatment value -> signature or alias, for the ground truth): its
    registry entry's, or empty when it has none or is not registered."""
    if isinstance(atlas, AtlasConfig):
        return dict(atlas.treatment_aliases)
    return _treatment_aliases(atlas, _entry(str(atlas), registry, data_root))


def _read_doc(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise CytoatlasError(f"registry file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise CytoatlasError(f"registry file {path} is not valid TOML: {e}") from None
    if set(doc) - {"atlas", "slurm"} or not all(isinstance(doc.get(k, {}), dict) for k in ("atlas", "slurm")):
        raise CytoatlasError(f"registry file {path}: expected only [atlas.NAME] tables and a [slurm] table")
    return doc


def _read_toml(path: Path) -> dict:
    atlases = _read_doc(path).get("atlas", {})
    for name, entry in atlases.items():
        if not isinstance(entry, dict):
            raise CytoatlasError(f"registry file {path}: atlas.{name} must be a table ([atlas.{name}]), got {entry!r}")
    return atlases


def load_registry(
    registry: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None
) -> dict[str, dict]:
    """Raw registry entries: the built-in atlases, then the user file's entries merged on top.

    Entries are resolved lazily by :func:`get_atlas`, so listing atlases never needs a data root.
    """
    entries = {name: (dict(e), None) for name, e in _read_built_in().items()}
    if registry is not None:
        path = Path(registry)
        for name, e in _read_toml(path).items():
            old, old_base = entries.get(name, ({}, None))
            # a relative h5ad resolves against the file that named it, not one that overrode other keys
            entries[name] = ({**old, **e}, path.parent.resolve() if "h5ad" in e else old_base)
    return {name: {"entry": e, "base_dir": base, "data_root": data_root} for name, (e, base) in entries.items()}


def load_slurm_options(registry: str | os.PathLike | None) -> dict:
    """The registry's ``[slurm]`` table: dask-jobqueue SLURMCluster options (queue, cores, memory, walltime,
    jobs, job_directives_skip, ...) for ``--scheduler slurm``; empty without a registry file."""
    return dict(_read_doc(Path(registry)).get("slurm", {})) if registry is not None else {}


def _read_built_in() -> dict:
    with resources.files("cytoatlas").joinpath("atlases.toml").open("rb") as fh:
        return tomllib.load(fh)["atlas"]


def get_atlas(
    name: str, registry: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None
) -> AtlasConfig:
    """The resolved configuration of atlas ``name``: a registry name, or the path of an ``.h5ad`` file.

    A file's configuration is its registry entry (the entry named as the file's stem, or whose ``h5ad`` is the
    file) over what the CELLxGENE schema fixes when the file follows it (see :mod:`cytoatlas.cellxgene`); a file
    that has neither gets an error naming the keys to set.
    """
    entries = load_registry(registry, data_root)
    if name not in entries and is_dataset_path(name):
        return _file_atlas(Path(name), entries)
    if name not in entries:
        raise CytoatlasError(f"unknown atlas {name!r}; registered: {', '.join(sorted(entries))}")
    e = entries[name]
    entry = e["entry"]
    if ("sample_col" not in entry or "levels" not in entry) and "h5ad" in entry:
        entry = _with_schema(name, e)  # a partial entry of a CELLxGENE file: the schema gives the rest
    return atlas_from_mapping(name, entry, e["base_dir"], e["data_root"])


def _with_schema(name: str, e: dict) -> dict:
    """A registry entry missing required keys, over what the CELLxGENE schema gives its file (when it does)."""
    from cytoatlas.cellxgene import detect_h5ad

    # the file as the entry resolves it (required keys stood in for: only h5ad is read here)
    path = atlas_from_mapping(name, {**e["entry"], "sample_col": "-", "levels": {"-": "-"}}, e["base_dir"],
                              e["data_root"]).h5ad
    detected = detect_h5ad(path) if path.is_file() else None
    if detected is None:
        return e["entry"]  # the missing keys are then named as such
    detected.log(name)
    return {**detected.entry, **e["entry"]}


def atlas_name(name: str) -> str:
    """The name an atlas argument is known by in results directories: a dataset file's stem, else itself."""
    return Path(name).stem if is_dataset_path(name) else name


def _file_atlas(path: Path, entries: dict) -> AtlasConfig:
    """The configuration of a dataset file: its registry entry over the CELLxGENE schema's table."""
    from cytoatlas.cellxgene import detect_h5ad, not_schema_error

    if not path.is_file():
        raise CytoatlasError(f"{path}: no such file (and no registered atlas of that name; registered: "
                             f"{', '.join(sorted(entries))})")
    name = path.stem
    e = entries.get(name)
    if e is None:  # an entry naming this very file, under another name
        e = next((v for v in entries.values() if "h5ad" in v["entry"] and _same_file(v, path)), None)
    detected = detect_h5ad(path)
    if detected is None and e is None:
        raise CytoatlasError(not_schema_error(path, list(entries)))
    entry = {**(detected.entry if detected is not None else {}), **(e["entry"] if e is not None else {})}
    entry["h5ad"] = str(path.resolve())
    if detected is not None:
        detected.log(name)
        overridden = sorted(k for k in (e["entry"] if e is not None else {}) if k in detected.entry)
        if overridden:
            logging.getLogger("cytoatlas.cellxgene").info("%s: the registry entry sets %s", name,
                                                          ", ".join(overridden))
    return atlas_from_mapping(name, entry)


def _same_file(e: dict, path: Path) -> bool:
    try:
        return atlas_from_mapping("entry", e["entry"], e["base_dir"], e["data_root"]).h5ad.resolve() == \
            path.resolve()
    except CytoatlasError:
        return False


@dataclass(frozen=True)
class AtlasResults:
    """An atlas a cross-atlas step reads results of: its results directory, its levels' order (the registry's,
    else none: name order) and its ``harmonise`` label overrides."""

    name: str
    root: Path
    level_order: list[str]
    harmonise: dict[str, str]


def _entry(name: str, registry, data_root) -> dict | None:
    """The registry entry of ``name`` (matched case-insensitively after an exact match), or None."""
    entries = load_registry(registry, data_root)
    lowered = {k.lower(): k for k in entries}
    key = name if name in entries else lowered.get(name.lower())
    return entries[key]["entry"] if key else None


def _harmonise_of(name: str, entry: dict | None) -> dict[str, str]:
    table = (entry or {}).get("harmonise", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise CytoatlasError(f"atlas {name!r}: harmonise must be a table of label = \"CL ID, CL name or shared "
                             f"name\", got {table!r}")
    return {str(k): v for k, v in table.items()}


def atlas_results(atlases: str | AtlasConfig | list[str | AtlasConfig],
                  results: str | os.PathLike | Mapping[str, str | os.PathLike],
                  registry: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None, *,
                  step: str) -> list[AtlasResults]:
    """The atlases a step such as ``validate`` or ``compare`` reads, with their results directories.

    Parameters
    ----------
    atlases
        Registry names or :class:`AtlasConfig` objects (an atlas missing from the registry is read with no
        overrides and its levels in name order).
    results
        The parent of ``results/NAME`` (a single atlas may also be given its own results directory), or a
        mapping ``{name: results directory}``.
    registry, data_root
        The user registry and data root the names are looked up with.
    step
        The step's name, for the errors (``name at least one atlas to {step}``).
    """
    if isinstance(atlases, (str, AtlasConfig)):
        atlases = [atlases]
    if not atlases:
        raise CytoatlasError(f"name at least one atlas to {step} (--atlas)")
    out = []
    for item in atlases:
        if isinstance(item, AtlasConfig):
            name, overrides, order = item.name, dict(item.harmonise), [lv.name for lv in item.levels]
        else:
            name = atlas_name(str(item))  # a dataset file's results are under its stem
            entry = _entry(name, registry, data_root)
            overrides, order = _harmonise_of(name, entry), list((entry or {}).get("levels", {}))
            if entry is None:
                logging.getLogger(f"cytoatlas.{step}").info(
                    "atlas %s is not in the registry: no harmonise overrides, levels in name order", name)
        if isinstance(results, Mapping):
            if name not in results:
                raise CytoatlasError(f"no results directory given for atlas {name!r}")
            root = Path(results[name])
        else:
            root = Path(results) / name
            if not root.is_dir() and len(atlases) == 1 and activity_dir(results).is_dir():
                root = Path(results)  # the atlas' own results directory
        if not root.is_dir():
            raise CytoatlasError(f"atlas {name!r}: no results directory {root} (expected {root}/activity from "
                                 f"`cytoatlas run --atlas {name} --out {root}`); point --results at their parent")
        out.append(AtlasResults(name, root, order, overrides))
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise CytoatlasError(f"an atlas is named twice: {', '.join(names)}")
    return out

"""Signature matrices: CytoSig and SecAct (secactpy 0.3.1's data files), LinCytoSig and custom sets from files.

The built-in files are located and verified by :mod:`cytoatlas._activity.signature_data` (secactpy itself is
not needed).

A signature set is a genes x signatures matrix of response values. Sets whose signatures overlap heavily
(SecAct, and by secactpy's default every set but CytoSig) are *grouped* as secactpy groups them: complete
linkage on 1 - Pearson r over all signature genes, cut at r = 0.9; a group's signature is its members' mean and
its result is copied back to every member. Parsing SecAct (80 MB of gzip text) and grouping it take ~10 s, so
the parsed matrix and its grouping are cached on disk, keyed by the source file's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas._activity.signature_data import RELEASE, signature_data_file
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import atomic_path

log = logging.getLogger("cytoatlas.activity")

CACHE_ENV = "CYTOATLAS_CACHE"
GROUP_CORRELATION = 0.9
# bump when the cached arrays change meaning (3: built-in sets record "secactpy 0.3.1" as their version)
_CACHE_FORMAT = 3

BUILT_IN = {
    "cytosig": ("CytoSig.tsv.gz", "CytoSig cytokine response signatures (Jiang et al. 2021)"),
    "secact": ("SecAct.tsv.gz", "SecAct secreted-protein activity signatures (Ru et al. 2025)"),
}
# secactpy's rule (`is_group_sig=None`): every set is grouped except CytoSig
UNGROUPED = {"cytosig"}
CELL_TYPE_SEPARATOR = "__"


@dataclass(frozen=True, eq=False)
class SignatureSet:
    """A genes x signatures matrix and how its signatures are grouped for the regression.

    Attributes
    ----------
    name
        Set name used in output file names (``cytosig``, ``secact``, ``lincytosig``, or a file's stem).
    genes, signatures
        Row and column names (unique strings).
    matrix
        ``len(genes) x len(signatures)`` float64 response values.
    group_of
        For each signature, the index of its regression group; ``arange(n)`` when the set is not grouped.
    source, version
        Where the matrix came from (file path) and which release (``secactpy 0.3.1`` or the file's sha256).
    """

    name: str
    genes: np.ndarray
    signatures: np.ndarray
    matrix: np.ndarray
    group_of: np.ndarray
    source: str
    version: str
    group_design: np.ndarray | None = None  # the group means, when loaded from the cache
    # the source file's identity (path, size, mtime) when loaded through the cache: fitted models are cached
    # under it (see :mod:`cytoatlas._activity.model_cache`); empty for a set made otherwise, whose fits are not
    cache_key: str = ""

    @property
    def grouped(self) -> bool:
        return self.name not in UNGROUPED

    @cached_property
    def group_names(self) -> list[str]:
        """secactpy's group names: members sorted and joined by ``|``, groups in cluster-label order."""
        return ["|".join(sorted(self.signatures[self.group_of == g])) for g in range(self.group_of.max() + 1)]

    @cached_property
    def design(self) -> np.ndarray:
        """``genes x groups``: each group's mean signature (the regression's design matrix)."""
        if self.group_design is not None:
            return self.group_design
        return group_means(self.matrix, self.signatures, self.group_of) if self.grouped else self.matrix

    @cached_property
    def output_order(self) -> np.ndarray:
        """Signature order of the outputs: sorted names for grouped sets (as secactpy), else file order."""
        if self.grouped:
            return np.argsort(self.signatures, kind="stable")
        return np.arange(len(self.signatures))

    @property
    def cell_type_specific(self) -> bool:
        """LinCytoSig form: every signature is named ``CellType__Cytokine``."""
        return all(CELL_TYPE_SEPARATOR in s for s in self.signatures)

    def describe(self) -> dict:
        """Size, genes and source, as listed by ``cytoatlas signatures``."""
        return {"name": self.name, "n_genes": len(self.genes), "n_signatures": len(self.signatures),
                "n_groups": int(self.group_of.max()) + 1, "grouped": self.grouped, "source": self.source,
                "version": self.version}


def read_signature_file(path: str | os.PathLike, *, strict: bool = True) -> pd.DataFrame:
    """Parse a genes x signatures TSV (optionally gzip): first column gene symbols, header signature names.

    With ``strict`` (user files), NaN values are an error; secactpy's own files get secactpy's treatment
    (NaN -> 0). Duplicate genes or signatures and non-numeric values are always errors.
    """
    path = Path(path)
    if not path.is_file():
        raise CytoatlasError(f"signature file {path} does not exist")
    try:
        df = pd.read_csv(path, sep="\t", index_col=0)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise CytoatlasError(f"signature file {path} is not a genes x signatures TSV: {e}") from None
    if df.shape[0] < 2 or df.shape[1] < 1:
        raise CytoatlasError(f"signature file {path}: expected genes x signatures, got {df.shape[0]} rows x "
                             f"{df.shape[1]} columns (is it tab-separated with gene symbols in column 1?)")
    df.index = df.index.map(lambda g: "" if pd.isna(g) else str(g).strip())
    for what, names in (("gene", df.index), ("signature", df.columns)):
        dup = names[names.duplicated()].unique()
        if len(dup):
            raise CytoatlasError(f"signature file {path}: {len(dup)} duplicated {what} name(s), e.g. "
                                 f"{', '.join(map(repr, dup[:5]))}; each {what} must appear once")
    if (df.index == "").any():
        raise CytoatlasError(f"signature file {path}: {int((df.index == '').sum())} row(s) without a gene name")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise CytoatlasError(f"signature file {path}: non-numeric values in column(s) {', '.join(bad[:5])}")
    df = df.astype(np.float64)
    n_nan = int(df.isna().to_numpy().sum())
    if n_nan and strict:
        rows = df.index[df.isna().any(axis=1)]
        raise CytoatlasError(f"signature file {path}: {n_nan} missing (NaN) value(s), e.g. in gene(s) "
                             f"{', '.join(rows[:5])}; fill or drop them")
    if not np.isfinite(df.fillna(0.0).to_numpy()).all():
        raise CytoatlasError(f"signature file {path}: infinite values")
    return df.fillna(0.0)


def group_signatures(matrix: np.ndarray, threshold: float = GROUP_CORRELATION) -> np.ndarray:
    """secactpy's grouping: complete linkage on 1 - Pearson r, cut at ``1 - threshold``.

    Returns the 0-based group index of each column, groups numbered in scipy's cluster-label order.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    if matrix.shape[1] <= 1:
        return np.zeros(matrix.shape[1], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.nan_to_num(pdist(matrix.T, metric="correlation"), nan=1.0)  # constant columns: distance 1
    labels = fcluster(linkage(dist, method="complete"), t=1 - threshold, criterion="distance")
    return (np.unique(labels, return_inverse=True)[1]).astype(np.int64)


def group_means(matrix: np.ndarray, signatures: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """Each group's mean signature (``genes x groups``), members averaged in name order as secactpy does."""
    n_groups = int(group_of.max()) + 1
    out = np.empty((matrix.shape[0], n_groups))
    for g in range(n_groups):
        members = np.flatnonzero(group_of == g)
        members = members[np.argsort(signatures[members], kind="stable")]
        out[:, g] = matrix[:, members].mean(axis=1)
    return out


def cache_dir() -> Path:
    """``$CYTOATLAS_CACHE``, else ``$XDG_CACHE_HOME/cytoatlas`` (``~/.cache/cytoatlas``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cytoatlas"


def _cache_key(path: Path, grouped: bool) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{grouped}|{_CACHE_FORMAT}"


def _cache_path(name: str, key: str) -> Path:
    return cache_dir() / "signatures" / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("genes", "signatures", "matrix", "group_of", "version", "design")}
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, arrays: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # no fsync: a cache file cut short by a crash fails to load and is parsed again
        with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as e:  # a read-only home is no reason to fail: the next run parses again
        log.warning("could not cache signatures at %s: %s", path, e)


def _file_version(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()[:16]}"


def set_name(path: str | os.PathLike) -> str:
    """A set's name from its file: ``LinCytoSig.tsv.gz`` -> ``lincytosig``."""
    name = Path(path).name
    for suffix in (".gz", ".tsv", ".txt", ".tab"):
        name = name.removesuffix(suffix)
    return name.lower()


def load_signatures(source: str | os.PathLike) -> SignatureSet:
    """Load a signature set: ``"cytosig"``, ``"secact"`` (secactpy 0.3.1's files) or a genes x signatures TSV.

    Parameters
    ----------
    source
        A built-in name or the path of a TSV(.gz) file, e.g. the LinCytoSig matrix.

    Returns
    -------
    SignatureSet
        Parsed and, for every set but CytoSig, grouped (cached on disk after the first load).
    """
    built_in = str(source).lower() in BUILT_IN
    if built_in:
        name, strict = str(source).lower(), False
        path = signature_data_file(BUILT_IN[name][0])
    else:
        path = Path(source)
        if not path.is_file():
            raise CytoatlasError(f"unknown signature set {str(source)!r}: not one of {', '.join(BUILT_IN)} "
                                 "and not an existing file")
        name, strict = set_name(path), True
    grouped = name not in UNGROUPED
    key = _cache_key(path, grouped)
    cache = _cache_path(name, key)
    arrays = _read_cache(cache)
    if arrays is None:
        log.info("parsing signature set %s from %s (cached afterwards)", name, path)
        df = read_signature_file(path, strict=strict)
        matrix = np.ascontiguousarray(df.to_numpy(np.float64))
        group_of = group_signatures(matrix) if grouped else np.arange(matrix.shape[1], dtype=np.int64)
        names = df.columns.to_numpy(str)
        arrays = {"genes": df.index.to_numpy(str), "signatures": names, "matrix": matrix, "group_of": group_of,
                  "design": group_means(matrix, names.astype(object), group_of) if grouped else np.zeros((0, 0)),
                  "version": np.array(RELEASE if built_in else _file_version(path))}
        _write_cache(cache, arrays)
    return SignatureSet(name=name, genes=arrays["genes"].astype(object), signatures=arrays["signatures"].astype(object),
                        matrix=arrays["matrix"], group_of=arrays["group_of"], source=str(path),
                        version=str(arrays["version"]), group_design=arrays["design"] if grouped else None,
                        cache_key=key)

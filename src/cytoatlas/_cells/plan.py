"""What a per-cell run knows before reading a count: which cells are scored, their annotations, the genes
each signature set may use, and the embedding subsample."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import h5py
import numpy as np

from cytoatlas._activity.signatures import SignatureSet
from cytoatlas._pseudobulk.atoms import build_atoms
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.h5ad import ObsReader, read_strings, read_var
from cytoatlas.registry import AtlasConfig

log = logging.getLogger("cytoatlas.cells")
EMBEDDING_CELLS = 50_000
EMBEDDING_SEED = 0


@dataclass
class CellsPlan:
    """The kept cells (the pseudobulk pass' cells: the registry's exclusions applied) and their labels.

    ``columns`` maps an obs column of the output (the sample column and every level) to ``(codes, categories)``
    over the kept cells; ``levels`` the same for the levels only (the summaries). ``slot`` maps each gene of
    the counts to its place among the ``candidates`` (genes whose symbol is in some set), -1 otherwise.
    """

    kept: np.ndarray
    names: np.ndarray
    columns: dict[str, tuple[np.ndarray, np.ndarray]]
    levels: dict[str, tuple[np.ndarray, np.ndarray]]
    symbols: np.ndarray
    candidates: np.ndarray
    slot: np.ndarray
    embedding_key: str | None
    embedding_rows: np.ndarray  # kept-cell indices of the subsample, sorted
    embedding: np.ndarray | None  # their coordinates (rows x 2)

    @property
    def n_kept(self) -> int:
        return len(self.names)


def plan_cells(f: h5py.File, cfg: AtlasConfig, n_rows: int, n_genes: int, sets: list[SignatureSet],
               embedding: str | None) -> CellsPlan:
    """Read obs, var and the embedding; fail (before any output) on a missing column, no overlap, no cells."""
    index = f["obs"].attrs.get("_index", "_index") if "obs" in f else "_index"
    index = index.decode() if isinstance(index, bytes) else index
    obs = ObsReader(f)
    obsm = f.get("obsm")
    return plan_source(obs, lambda: read_strings(f["obs"][index], index),
                       lambda: read_var(f, cfg.counts, cfg.gene_symbols), obsm if isinstance(obsm, h5py.Group) else {},
                       cfg, n_rows, n_genes, sets, embedding)


def plan_source(obs: ObsReader, cell_names, gene_table, obsm, cfg: AtlasConfig, n_rows: int, n_genes: int,
                sets: list[SignatureSet], embedding: str | None) -> CellsPlan:
    """:func:`plan_cells` of any source (a file or an AnnData in memory): its obs reader, the cells' names and
    the gene table (functions, called once), and its obsm (a mapping of arrays or an HDF5 group)."""
    atoms = build_atoms(obs, cfg, list(cfg.levels))
    cell_atom = atoms.cell_atom
    if len(cell_atom) != n_rows:
        raise CytoatlasError(f"{cfg.h5ad}: obs has {len(cell_atom)} cells, {cfg.counts} has {n_rows} rows")
    kept = cell_atom >= 0
    if not kept.any():
        raise CytoatlasError(f"{cfg.name}: every cell is excluded by the registry's `exclude`; nothing to score")
    atom = cell_atom[kept]
    names = np.asarray(cell_names(), dtype=object)[kept]
    columns = {cfg.sample_col: (atoms.sample[atom], atoms.sample_labels)}
    levels = {}
    for name, g in atoms.levels.items():
        codes = g.atom_group[atom] if len(g.atom_group) else np.zeros(len(atom), np.int32)
        levels[name] = (codes.astype(np.int32), np.asarray(g.labels, dtype=object))
    columns.update(levels)

    var = gene_table()
    if len(var) != n_genes:
        raise CytoatlasError(f"{cfg.h5ad}: {cfg.counts} has {n_genes} genes but var has {len(var)}")
    symbols = var["gene_symbol"].to_numpy(object)
    wanted = set().union(*(set(s.genes) for s in sets))
    candidates = np.flatnonzero(np.fromiter((s in wanted for s in symbols), bool, len(symbols)))
    for sig in sets:
        in_set = set(sig.genes)
        n = len({symbols[g] for g in candidates if symbols[g] in in_set})
        if n < 2:
            raise CytoatlasError(
                f"{cfg.name}: {n} of the {len(sig.genes):,} {sig.name} genes are among the atlas' gene symbols "
                f"(e.g. {', '.join(map(str, symbols[:3])) or 'none'}); signatures are matched on symbols: if the "
                "var_names are Ensembl ids, set `gene_symbols` in the atlas' registry entry")
    slot = np.full(n_genes, -1, dtype=np.int64)
    slot[candidates] = np.arange(len(candidates))
    key, rows, coords = _embedding(obsm, cfg, embedding, kept)
    return CellsPlan(kept, names, columns, levels, symbols, candidates, slot, key, rows, coords)


def _embedding(obsm, cfg: AtlasConfig, key: str | None, kept: np.ndarray):
    """The embedding's fixed random subsample of kept cells: ``obsm[key]``, else ``obsm[cfg.embedding]`` (the
    registry's key), else ``obsm['X_umap']`` when present, else none."""
    have = list(obsm.keys())
    named = key if key is not None else cfg.embedding
    if named is None:
        key = "X_umap" if "X_umap" in have else None
    elif named not in have:
        source = "" if key is not None else f" (the registry's `embedding` of atlas {cfg.name!r})"
        raise CytoatlasError(f"{cfg.h5ad}: obsm has no embedding {named!r}{source}; available: "
                             f"{', '.join(have) or 'none'}")
    else:
        key = named
    n_kept = int(kept.sum())
    if key is None:
        return None, np.zeros(0, np.int64), None
    node = obsm[key]
    if isinstance(node, h5py.Group) or np.ndim(node) != 2 or node.shape[0] != len(kept) or node.shape[1] < 2:
        raise CytoatlasError(f"{cfg.h5ad}: obsm[{key!r}] is not a cells x (>= 2) array")
    rng = np.random.default_rng(EMBEDDING_SEED)
    rows = np.arange(n_kept) if n_kept <= EMBEDDING_CELLS else np.sort(rng.choice(n_kept, EMBEDDING_CELLS,
                                                                                   replace=False))
    file_rows = np.flatnonzero(kept)[rows]
    # 16 bytes a cell: 100 MB for CIMA, read once (an array in memory, or a data frame of coordinates)
    coords = node[:, :2][file_rows] if isinstance(node, h5py.Dataset) else np.asarray(node)[:, :2][file_rows]
    return key, rows.astype(np.int64), np.asarray(coords, dtype=np.float64)

"""Fast, low-memory generator of a synthetic single-cell atlas in the AnnData ``.h5ad`` format.

The file looks like a raw-count atlas written by ``anndata.write_h5ad(..., compression="gzip")``:

* ``X``: CSR, ``data`` float32 (integer counts), ``indices`` int32, ``indptr`` int64, gzip level 4, 1-D
  chunks chosen exactly like h5py/anndata would for a dataset of that size;
* ``obs``: ``sample`` (donors) and four nested annotation levels ``cell_type_l1`` .. ``cell_type_l4``
  (6 / 27 / 38 / 73 categories, like the CIMA atlas), plus ``--extra-obs K`` filler columns
  (numeric and categorical) used to check that time-to-first-block does not depend on obs width;
* ``var``: 20,000 gene names.

Counts follow a multinomial (UMI-like) model: each cell draws a log-normal number of reads from a
Zipf-like gene-frequency distribution (plus 15 % from the marker genes of its finest cell type), and
the per-gene multiplicities are the counts. The number of reads is calibrated so that a cell has on
average ``--nnz-per-cell`` (default 1,200) distinct detected genes.

Cells are generated in fixed blocks of ``BLOCK`` cells, block ``b`` using ``default_rng([seed, b])``,
so the output is deterministic for a seed and an atlas of 600k cells starts with exactly the 300k cells
of the 300k atlas (same seed). X is written block by block to resizable datasets: memory stays at a
few hundred MB whatever the number of cells.

Usage::

    python benchmarks/synth_atlas.py benchmarks/data/synth_300k.h5ad --n-cells 300000 --extra-obs 0

writes ``synth_300k.h5ad`` and the registry ``synth_300k.toml`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numba
import numpy as np
import pandas as pd

GENERATOR_VERSION = 1  # bump when the generated data change
BLOCK = 10_000  # cells per generation block (fixed: it is part of the deterministic definition)
TABLE_BITS = 22  # size of the gene sampling lookup table (2**22 slots)
MARKER_FRACTION = 0.15
N_MARKERS = 100
N_DONORS = 40  # default number of donors (samples); --n-donors changes it (CIMA has 421)

L1_NAMES = ["B", "CD4_T", "CD8_T", "NK", "Myeloid", "Progenitor"]
LEVEL_SIZES = (6, 27, 38, 73)


# --------------------------------------------------------------------------------------------- model
def _nested_hierarchy(rng: np.random.Generator) -> tuple[list[np.ndarray], list[list[str]]]:
    """Parent maps for the four nested levels and category names.

    Returns ``parents`` where ``parents[k][i]`` is the level-k code of level-(k+1) category i
    (k = 0..2), and ``names[k]`` the category names of level k.
    """
    parents = []
    for k in range(3):
        n_parent, n_child = LEVEL_SIZES[k], LEVEL_SIZES[k + 1]
        # every parent gets at least one child, the rest are spread at random
        p = np.concatenate([np.arange(n_parent), rng.integers(0, n_parent, n_child - n_parent)])
        parents.append(np.sort(p))
    names = [list(L1_NAMES)]
    for k in range(3):
        counter: dict[int, int] = {}
        level = []
        for parent in parents[k]:
            counter[parent] = counter.get(parent, 0) + 1
            level.append(f"{names[k][parent]}.{'abcdefgh'[k]}{counter[parent]}")
        names.append(level)
    return parents, names


class Model:
    """Everything that is global to the atlas (drawn from ``default_rng(seed)``)."""

    def __init__(self, seed: int, n_genes: int, nnz_per_cell: float, n_donors: int = N_DONORS):
        rng = np.random.default_rng(seed)
        self.n_genes = n_genes
        self.parents, self.level_names = _nested_hierarchy(rng)
        n4 = LEVEL_SIZES[3]
        # level-4 code -> codes of every level
        self.l4_to_levels = np.empty((4, n4), dtype=np.int64)
        self.l4_to_levels[3] = np.arange(n4)
        for k in (2, 1, 0):
            self.l4_to_levels[k] = self.parents[k][self.l4_to_levels[k + 1]]

        # donors: unequal sizes; cell-type composition varies by donor around a skewed base
        self.n_donors = n_donors
        self.donor_p = rng.dirichlet(np.full(n_donors, 4.0))
        base = 0.8 * rng.dirichlet(np.full(n4, 1.0)) + 0.2 / n4  # skewed, no type below 0.3 %
        comp = np.stack([rng.dirichlet(base * 40.0 + 1e-3) for _ in range(n_donors)])
        self.type_cdf = np.cumsum(comp, axis=1)
        self.type_cdf[:, -1] = 1.0

        # Zipf-like gene frequencies, scattered over gene positions
        rank = np.arange(n_genes, dtype=np.float64)
        p = 1.0 / (rank + 20.0) ** 1.05
        p = p[rng.permutation(n_genes)]
        self.gene_p = p / p.sum()
        t = 1 << TABLE_BITS
        slots = np.floor(self.gene_p * t).astype(np.int64)
        slots = np.maximum(slots, 1)
        short = t - slots.sum()  # largest remainder correction (can be negative by a few)
        order = np.argsort(-self.gene_p)
        slots[order[: abs(short)]] += np.sign(short)
        self.gene_table = np.repeat(np.arange(n_genes, dtype=np.int32), slots)
        assert self.gene_table.size == t
        self.markers = rng.integers(0, n_genes, size=(n4, N_MARKERS), dtype=np.int32)

        # calibrate the mean number of reads so that E[#distinct genes] == nnz_per_cell
        pm = (1 - MARKER_FRACTION) * self.gene_p
        pm_mark = pm.copy()
        np.add.at(pm_mark, self.markers[0], MARKER_FRACTION / N_MARKERS)
        sigma = 0.35
        z = np.random.default_rng(0).standard_normal(64) * sigma - sigma**2 / 2

        def distinct(m: float) -> float:
            return float(np.mean([np.sum(-np.expm1(-m * np.exp(zz) * pm_mark)) for zz in z]))

        lo, hi = 1.0, 1e6
        for _ in range(60):
            mid = np.sqrt(lo * hi)
            lo, hi = (mid, hi) if distinct(mid) < nnz_per_cell else (lo, mid)
        self.mean_reads = float(np.sqrt(lo * hi))
        self.read_sigma = sigma

    def block(self, seed: int, b: int, n: int):
        """Generate block ``b`` of ``n`` cells: obs codes and CSR arrays (indptr relative, int64)."""
        rng = np.random.default_rng([seed, b])
        donor = np.searchsorted(np.cumsum(self.donor_p), rng.random(n), side="right")
        donor = np.minimum(donor, self.n_donors - 1)
        u = rng.random(n)
        l4 = (u[:, None] > self.type_cdf[donor]).sum(axis=1)
        l4 = np.minimum(l4, LEVEL_SIZES[3] - 1)
        reads = rng.lognormal(-(self.read_sigma**2) / 2, self.read_sigma, n) * self.mean_reads
        reads = np.maximum(reads.astype(np.int64), 1)
        n_mark = rng.binomial(reads, MARKER_FRACTION)
        n_base = reads - n_mark
        base_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(n_base, out=base_ptr[1:])
        mark_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(n_mark, out=mark_ptr[1:])
        genes_b = self.gene_table[rng.integers(0, 1 << TABLE_BITS, size=base_ptr[-1], dtype=np.int32)]
        slot = rng.integers(0, N_MARKERS, size=mark_ptr[-1], dtype=np.int32)
        genes_m = self.markers[np.repeat(l4, n_mark), slot]
        indptr = np.zeros(n + 1, dtype=np.int64)
        cap = int(min(base_ptr[-1] + mark_ptr[-1], n * self.n_genes))
        data = np.empty(cap, dtype=np.float32)
        idx = np.empty(cap, dtype=np.int32)
        nnz = _count_cells(genes_b, base_ptr, genes_m, mark_ptr, self.n_genes, idx, data, indptr)
        return donor, l4, indptr, data[:nnz], idx[:nnz]


@numba.njit(nogil=True, cache=True)
def _count_cells(genes_b, base_ptr, genes_m, mark_ptr, n_genes, out_idx, out_data, indptr):
    """Per cell: multiplicity of each drawn gene -> sorted CSR row."""
    cnt = np.zeros(n_genes, np.int32)
    touched = np.empty(n_genes, np.int32)
    nnz = 0
    for i in range(base_ptr.size - 1):
        k = 0
        for j in range(base_ptr[i], base_ptr[i + 1]):
            g = genes_b[j]
            if cnt[g] == 0:
                touched[k] = g
                k += 1
            cnt[g] += 1
        for j in range(mark_ptr[i], mark_ptr[i + 1]):
            g = genes_m[j]
            if cnt[g] == 0:
                touched[k] = g
                k += 1
            cnt[g] += 1
        t = np.sort(touched[:k])
        for q in range(k):
            out_idx[nnz + q] = t[q]
            out_data[nnz + q] = cnt[t[q]]
            cnt[t[q]] = 0
        nnz += k
        indptr[i + 1] = nnz
    return nnz


# -------------------------------------------------------------------------------------------- writer
def _chunks(n_elements: int, itemsize: int) -> tuple[int]:
    """The chunk shape h5py (hence anndata with compression) picks for a 1-D dataset of that size."""
    from h5py._hl.filters import guess_chunk

    return guess_chunk((max(int(n_elements), 1),), None, itemsize)


class _ChunkedGzipWriter:
    """Append to a resizable, gzip-compressed 1-D dataset, compressing whole chunks in threads.

    h5py compresses in the calling thread; here full chunks are deflated (zlib, level 4: exactly what
    HDF5's gzip filter stores) by a thread pool (zlib releases the GIL) and stored in order with
    ``write_direct_chunk``. The file is indistinguishable from one written by h5py with
    ``compression="gzip"``.
    """

    def __init__(self, dset: h5py.Dataset, pool: ThreadPoolExecutor, level: int = 4, max_pending: int = 1024):
        self.dset, self.pool, self.level, self.max_pending = dset, pool, level, max_pending
        self.chunk = dset.chunks[0]
        self.carry = np.empty(0, dtype=dset.dtype)
        self.n_chunks = 0
        self.size = 0
        self.pending: deque = deque()

    def _submit(self, arr: np.ndarray) -> None:
        fut = self.pool.submit(zlib.compress, arr.tobytes(), self.level)
        self.pending.append((self.n_chunks * self.chunk, fut))
        self.n_chunks += 1
        while self.pending and (len(self.pending) > self.max_pending or self.pending[0][1].done()):
            self._flush_one()

    def _flush_one(self) -> None:
        off, fut = self.pending.popleft()
        if self.dset.shape[0] < off + self.chunk:
            self.dset.resize((off + self.chunk,))
        self.dset.id.write_direct_chunk((off,), fut.result(), 0)

    def append(self, arr: np.ndarray) -> None:
        arr = np.asarray(arr, dtype=self.dset.dtype)
        self.size += arr.size
        buf = np.concatenate([self.carry, arr]) if self.carry.size else arr
        n_full = buf.size // self.chunk
        for k in range(n_full):
            self._submit(buf[k * self.chunk : (k + 1) * self.chunk])
        self.carry = buf[n_full * self.chunk :].copy()

    def close(self) -> None:
        if self.carry.size:
            last = np.zeros(self.chunk, dtype=self.dset.dtype)
            last[: self.carry.size] = self.carry
            self._submit(last)
        while self.pending:
            self._flush_one()
        self.dset.resize((self.size,))


def _extra_obs_column(seed: int, j: int, n: int):
    """Filler obs column j: float64 / int32 / small categorical / large categorical."""
    rng = np.random.default_rng([seed, 7919, j])
    kind = j % 4
    if kind == 0:
        return f"qc_metric_{j}", rng.gamma(2.0, 500.0, n)
    if kind == 1:
        return f"count_{j}", rng.integers(0, 10_000, n, dtype=np.int32)
    if kind == 2:
        k = int(rng.integers(3, 40))
        cats = [f"grp{j}_{i}" for i in range(k)]
        return f"group_{j}", pd.Categorical.from_codes(rng.integers(0, k, n).astype(np.int8), cats)
    k = int(rng.integers(1_000, 20_000))
    cats = [f"cluster{j}_{i:05d}" for i in range(k)]
    return f"subcluster_{j}", pd.Categorical.from_codes(rng.integers(0, k, n).astype(np.int16), cats)


def generate(
    out: Path,
    n_cells: int = 300_000,
    n_genes: int = 20_000,
    nnz_per_cell: float = 1_200,
    extra_obs: int = 0,
    seed: int = 0,
    atlas_name: str = "synth",
    verbose: bool = True,
    symbols: bool = False,
    n_donors: int = N_DONORS,
) -> Path:
    """Write the atlas to ``out`` (atomically, via ``out.tmp``) and the registry TOML beside it.

    ``symbols``: name the genes with the CytoSig and SecAct genes' symbols (at positions drawn once from the
    seed) among the ``GENE`` names, so that activity can run on the atlas' pseudobulk."""
    from anndata.io import write_elem

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    params = generation_params(n_cells, n_genes, nnz_per_cell, extra_obs, seed, symbols, n_donors)
    t0 = time.perf_counter()
    model = Model(seed, n_genes, nnz_per_cell, n_donors)
    tmp = out.with_name(out.name + ".tmp")
    est_nnz = int(n_cells * nnz_per_cell)
    comp = {"compression": "gzip", "compression_opts": 4}

    donor_codes = np.empty(n_cells, dtype=np.int16 if n_donors > 127 else np.int8)
    l4_codes = np.empty(n_cells, dtype=np.int8)
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        f.attrs["synth_atlas"] = json.dumps(params)
        gx = f.create_group("X")
        gx.attrs["encoding-type"] = "csr_matrix"
        gx.attrs["encoding-version"] = "0.1.0"
        gx.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
        dd = gx.create_dataset(
            "data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=_chunks(est_nnz, 4), **comp
        )
        di = gx.create_dataset(
            "indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=_chunks(est_nnz, 4), **comp
        )
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        nnz = 0
        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            wd, wi = _ChunkedGzipWriter(dd, pool), _ChunkedGzipWriter(di, pool)
            for b, s in enumerate(range(0, n_cells, BLOCK)):
                e = min(n_cells, s + BLOCK)
                donor, l4, ip, data, idx = model.block(seed, b, e - s)
                donor_codes[s:e], l4_codes[s:e] = donor, l4
                indptr[s + 1 : e + 1] = ip[1:] + nnz
                wd.append(data)
                wi.append(idx)
                nnz += data.size
                if verbose and (b % 10 == 9 or e == n_cells):
                    el = time.perf_counter() - t0
                    print(f"  {e:>9,d}/{n_cells:,d} cells  nnz={nnz:,d}  {el:6.1f}s", file=sys.stderr)
            wd.close()
            wi.close()
        gx.create_dataset("indptr", data=indptr, chunks=_chunks(n_cells + 1, 8), maxshape=(None,), **comp)

        # ---- obs
        obs = pd.DataFrame(index=pd.Index([f"cell{i:08d}" for i in range(n_cells)]))
        width = max(2, len(str(n_donors - 1)))
        obs["sample"] = pd.Categorical.from_codes(donor_codes, [f"donor{d:0{width}d}" for d in range(n_donors)])
        for k in range(4):
            codes = model.l4_to_levels[k][l4_codes].astype(np.int8)
            obs[f"cell_type_l{k + 1}"] = pd.Categorical.from_codes(codes, model.level_names[k])
        write_elem(f, "obs", obs)
        del obs
        if extra_obs:
            gobs = f["obs"]
            order = list(gobs.attrs["column-order"])
            for j in range(extra_obs):  # one column at a time: memory stays low
                name, values = _extra_obs_column(seed, j, n_cells)
                write_elem(gobs, name, values)
                order.append(name)
            gobs.attrs["column-order"] = order

        # ---- var and the (empty) rest of the AnnData layout
        var = pd.DataFrame(index=pd.Index(gene_names(n_genes, seed, symbols)))
        var["gene_ids"] = [f"ENSG9{i:010d}" for i in range(n_genes)]
        write_elem(f, "var", var)
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
    os.replace(tmp, out)
    write_registry(out, atlas_name)
    if verbose:
        size = out.stat().st_size / 1e9
        el = time.perf_counter() - t0
        print(
            f"wrote {out} ({n_cells:,d} x {n_genes:,d}, nnz={nnz:,d} = {nnz / n_cells:.0f}/cell, "
            f"{extra_obs} extra obs, {size:.2f} GB) in {el:.1f}s",
            file=sys.stderr,
        )
    return out


def gene_names(n_genes: int, seed: int, symbols: bool) -> list[str]:
    """``GENE00000``...; with ``symbols``, the CytoSig and SecAct genes (sorted) at random positions among them."""
    names = [f"GENE{i:05d}" for i in range(n_genes)]
    if symbols:
        from cytoatlas import load_signatures

        real = sorted(set(load_signatures("cytosig").genes) | set(load_signatures("secact").genes))[:n_genes]
        at = np.random.default_rng([seed, 7]).choice(n_genes, len(real), replace=False)
        for i, g in zip(np.sort(at), real, strict=True):
            names[i] = g
    return names


def generation_params(n_cells: int, n_genes: int, nnz_per_cell: float, extra_obs: int, seed: int,
                      symbols: bool = False, n_donors: int = N_DONORS) -> dict:
    """What an atlas was generated with (stored as JSON in the file's ``synth_atlas`` root attribute)."""
    extra = {"symbols": True} if symbols else {}  # atlases made before the option keep their parameters
    if n_donors != N_DONORS:
        extra["n_donors"] = int(n_donors)
    return {**extra,
        "generator_version": GENERATOR_VERSION,
        "n_cells": int(n_cells),
        "n_genes": int(n_genes),
        "nnz_per_cell": float(nnz_per_cell),
        "extra_obs": int(extra_obs),
        "seed": int(seed),
    }


def stored_params(h5ad: Path) -> dict | None:
    """The generation parameters stored in an atlas written by this script (None if absent/unreadable)."""
    try:
        with h5py.File(h5ad, "r") as f:
            return json.loads(f.attrs["synth_atlas"])
    except (OSError, KeyError, ValueError):
        return None


def registry_path(h5ad: Path) -> Path:
    return Path(h5ad).with_suffix(".toml")


def write_registry(h5ad: Path, atlas_name: str = "synth") -> Path:
    """Write the cytoatlas registry TOML for the atlas (``<stem>.toml`` beside it)."""
    h5ad = Path(h5ad).resolve()
    levels = "\n".join(f'L{k} = "cell_type_l{k}"' for k in range(1, 5))
    text = (
        f"[atlas.{atlas_name}]\n"
        f'h5ad = "{h5ad.as_posix()}"\n'
        'sample_col = "sample"\n\n'
        f"[atlas.{atlas_name}.levels]\n{levels}\n"
    )
    reg = registry_path(h5ad)
    reg.write_text(text)
    return reg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output .h5ad path (registry written beside it as .toml)")
    ap.add_argument("--n-cells", type=int, default=300_000)
    ap.add_argument("--n-genes", type=int, default=20_000)
    ap.add_argument("--nnz-per-cell", type=float, default=1_200)
    ap.add_argument("--extra-obs", type=int, default=0, help="number of extra (filler) obs columns")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--atlas-name", default="synth")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--symbols", action="store_true", help="CytoSig and SecAct gene symbols among the gene names")
    ap.add_argument("--n-donors", type=int, default=N_DONORS, help="number of donors (samples); CIMA has 421")
    a = ap.parse_args(argv)
    generate(
        a.out,
        n_cells=a.n_cells,
        n_genes=a.n_genes,
        nnz_per_cell=a.nnz_per_cell,
        extra_obs=a.extra_obs,
        seed=a.seed,
        atlas_name=a.atlas_name,
        verbose=not a.quiet,
        symbols=a.symbols,
        n_donors=a.n_donors,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The lab's OLD pseudobulk algorithm ("the seed"), re-implemented from its description.

This is the reference cytoatlas has to beat. It does the same work as ``cytoatlas pseudobulk`` the way
the seed did it, without deliberate slowdowns (where the description leaves a choice open, the cheaper
reasonable option is taken):

1. ``anndata.read_h5ad(path, backed="r")`` to get ``obs`` (all columns are loaded, as anndata does);
2. for each batch of ``--batch-size`` rows: ``X[s:e]`` converted to a DENSE array (float32, the file's
   dtype, unless ``--dense-dtype float64``); then for each
   level and each cell type a boolean mask and ``dense[mask].sum(axis=0)``, and for each level and each
   sample x cell type a mask and a sum (sample-level sums accumulated too);
3. in the same batch: dense single-cell log1p CPM (in place), its per-gene mean and M2, Chan-merged
   into the running atlas mean/variance;
4. at the end, per level: log1p CPM of the cell-type sums, z-score vs the atlas per-gene single-cell
   log1p-CPM mean/std, log1p CPM of the sample x cell type sums, and a donor bootstrap that loops per
   resample (``for b in range(B)``: draw the samples of the cell type with replacement, sum their sample
   sums, CPM, log1p) for every cell type with at least ``--min-samples`` samples;
5. writes ``{atlas}_pseudobulk_{level}.h5ad``, ``..._samples.h5ad`` and ``..._resampled.h5ad`` with
   anndata (``write_h5ad``, uncompressed unless ``--compression``).

The files hold what cytoatlas writes, so both do the same work: X = log1p CPM, layers ``counts``
(cell-type and sample files) and ``zscore`` (all three; std with ddof 1, a gene with std 0 divided by 1),
groups with fewer than ``--min-cells`` cells left out, bootstrap units = samples with at least
``--min-cells`` cells of the type. Rows are sorted as cytoatlas sorts them (cell type, then sample), so
the cell-type and sample files can be compared with cytoatlas' one to one (``bench_pseudobulk.py
--check``); the resamples cannot (different random draws).

Usage::

    python benchmarks/seed_baseline.py --registry benchmarks/data/synth_300k.toml --atlas synth \\
        --out benchmarks/out/seed --batch-size 50000 --n-bootstrap 100 --seed 42

(or give the h5ad path and ``--sample-col`` / ``--level L1=cell_type_l1 ...`` instead of a registry).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

try:  # python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None


def load_registry(path: str, atlas: str) -> tuple[str, str, dict[str, str]]:
    if tomllib is None:
        raise SystemExit("reading a registry needs python >= 3.11 (tomllib)")
    with open(path, "rb") as fh:
        reg = tomllib.load(fh)
    entry = reg["atlas"][atlas]
    return entry["h5ad"], entry["sample_col"], dict(entry["levels"])


def seed_pseudobulk(
    h5ad: str,
    out: str,
    atlas: str,
    sample_col: str,
    levels: dict[str, str],
    batch_size: int = 50_000,
    n_bootstrap: int = 100,
    seed: int = 42,
    min_samples: int = 5,
    min_cells: int = 10,
    dense_dtype: str = "float32",
    compression: str | None = None,
    log=print,
) -> dict:
    t0 = time.perf_counter()
    dense_dtype = np.dtype(dense_dtype)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    adata = ad.read_h5ad(h5ad, backed="r")
    obs = adata.obs
    n_cells, n_genes = adata.shape
    var_names = adata.var_names.copy()

    samples = obs[sample_col].astype("category")
    sample_names = list(samples.cat.categories)
    sample_codes = samples.cat.codes.to_numpy()
    types, type_codes = {}, {}
    for lvl, col in levels.items():
        c = obs[col].astype("category")
        types[lvl] = list(c.cat.categories)
        type_codes[lvl] = c.cat.codes.to_numpy()

    ct_sums = {lvl: np.zeros((len(types[lvl]), n_genes)) for lvl in levels}
    ct_ncells = {lvl: np.zeros(len(types[lvl]), dtype=np.int64) for lvl in levels}
    smp_sums = {lvl: np.zeros((len(sample_names), len(types[lvl]), n_genes)) for lvl in levels}
    smp_ncells = {lvl: np.zeros((len(sample_names), len(types[lvl])), dtype=np.int64) for lvl in levels}
    run_n, run_mean, run_m2 = 0, np.zeros(n_genes), np.zeros(n_genes)

    first_block = None
    for s in range(0, n_cells, batch_size):
        e = min(n_cells, s + batch_size)
        # (batch, n_genes); float32 sums of integer counts are exact within a batch (< 2**24)
        dense = adata.X[s:e].toarray()
        if dense.dtype != dense_dtype:
            dense = dense.astype(dense_dtype)
        smp = sample_codes[s:e]
        for lvl in levels:
            tc = type_codes[lvl][s:e]
            for t in range(len(types[lvl])):
                mask = tc == t
                if not mask.any():
                    continue
                ct_sums[lvl][t] += dense[mask].sum(axis=0)
                ct_ncells[lvl][t] += int(mask.sum())
                for j in range(len(sample_names)):
                    m2 = mask & (smp == j)
                    if not m2.any():
                        continue
                    smp_sums[lvl][j, t] += dense[m2].sum(axis=0)
                    smp_ncells[lvl][j, t] += int(m2.sum())

        # single-cell log1p CPM, in place, then per-gene mean / M2 of the batch, Chan-merged
        lib = dense.sum(axis=1, dtype=np.float64)
        scale = np.divide(1e6, lib, out=np.zeros_like(lib), where=lib > 0).astype(dense_dtype)
        dense *= scale[:, None]
        np.log1p(dense, out=dense)
        nb = e - s
        b_mean = dense.mean(axis=0, dtype=np.float64)
        dense -= b_mean.astype(dense_dtype)
        np.square(dense, out=dense)
        b_m2 = dense.sum(axis=0, dtype=np.float64)
        del dense
        delta = b_mean - run_mean
        tot = run_n + nb
        run_mean = run_mean + delta * (nb / tot)
        run_m2 = run_m2 + b_m2 + delta**2 * (run_n * nb / tot)
        run_n = tot
        if first_block is None:
            first_block = time.perf_counter() - t0
            log(f"seed: first block processed in {first_block:.2f}s")
    t_pass = time.perf_counter() - t0

    atlas_mean = run_mean
    atlas_std = np.sqrt(run_m2 / max(run_n - 1, 1))  # ddof 1
    safe_std = np.where(atlas_std > 0, atlas_std, 1.0)  # a constant gene is divided by 1

    def log1p_cpm(x: np.ndarray) -> np.ndarray:
        lib = x.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log1p(x * np.where(lib > 0, 1e6 / lib, np.nan))

    def zscore(x: np.ndarray) -> np.ndarray:
        return ((x - atlas_mean) / safe_std).astype(np.float32)

    def counts_layer(x: np.ndarray) -> np.ndarray:
        return x.astype(np.int32 if x.max(initial=0) < 2**31 else np.int64)

    var = pd.DataFrame(index=var_names)
    rng = np.random.default_rng(seed)
    written = []
    for lvl in levels:
        name = lvl.lower()
        labels = np.asarray(types[lvl], dtype=object)

        # cell type x genes
        keep = np.flatnonzero(ct_ncells[lvl] >= min_cells)
        keep = keep[np.argsort(labels[keep], kind="stable")]
        lc = log1p_cpm(ct_sums[lvl][keep])
        obs_ct = pd.DataFrame(
            {"cell_type": pd.Categorical(labels[keep]), "n_cells": ct_ncells[lvl][keep]},
            index=pd.Index(labels[keep].astype(str), dtype=object),
        )
        a = ad.AnnData(
            X=lc.astype(np.float32),
            obs=obs_ct,
            var=var,
            layers={"counts": counts_layer(ct_sums[lvl][keep]), "zscore": zscore(lc)},
        )
        p = out_dir / f"{atlas}_pseudobulk_{name}.h5ad"
        a.write_h5ad(p, compression=compression)
        written.append(p)
        del a, lc

        # sample x cell type x genes (rows sorted by cell type, then sample)
        jj, tt = np.nonzero(smp_ncells[lvl] >= min_cells)
        order = np.lexsort((np.asarray(sample_names, dtype=object)[jj], labels[tt]))
        jj, tt = jj[order], tt[order]
        sums = smp_sums[lvl][jj, tt]
        lc = log1p_cpm(sums)
        s_lab = np.asarray(sample_names, dtype=object)[jj]
        obs_s = pd.DataFrame(
            {
                "sample": pd.Categorical(s_lab),
                "cell_type": pd.Categorical(labels[tt]),
                "n_cells": smp_ncells[lvl][jj, tt],
            },
            index=pd.Index([f"{s_}|{t_}" for s_, t_ in zip(s_lab, labels[tt], strict=True)], dtype=object),
        )
        a = ad.AnnData(
            X=lc.astype(np.float32),
            obs=obs_s,
            var=var,
            layers={"counts": counts_layer(sums), "zscore": zscore(lc)},
        )
        p = out_dir / f"{atlas}_pseudobulk_{name}_samples.h5ad"
        a.write_h5ad(p, compression=compression)
        written.append(p)
        del a, lc, sums

        # donor bootstrap, one resample at a time: the samples of the cell type (>= min_cells cells each)
        # drawn with replacement, their sample sums summed, CPM, log1p
        if n_bootstrap > 0:
            rows, rlabels, reps, n_units = [], [], [], []
            for t in np.argsort(labels, kind="stable"):
                have = np.flatnonzero(smp_ncells[lvl][:, t] >= min_cells)
                if have.size < min_samples:
                    continue
                per_sample = smp_sums[lvl][have, t]
                for b in range(n_bootstrap):
                    draw = rng.choice(have.size, size=have.size, replace=True)
                    total = per_sample[draw].sum(axis=0)
                    lib = total.sum()
                    rows.append(np.log1p(total * (1e6 / lib)) if lib > 0 else np.full(n_genes, np.nan))
                    rlabels.append(labels[t])
                    reps.append(b)
                    n_units.append(have.size)
            x = np.asarray(rows).reshape(len(rows), n_genes)
            obs_r = pd.DataFrame(
                {
                    "cell_type": pd.Categorical(rlabels),
                    "bootstrap_idx": np.asarray(reps, dtype=np.int64),
                    "n_units": np.asarray(n_units, dtype=np.int64),
                },
                index=pd.Index([f"{lab}|{b}" for lab, b in zip(rlabels, reps, strict=True)], dtype=object),
            )
            a = ad.AnnData(X=x.astype(np.float32), obs=obs_r, var=var, layers={"zscore": zscore(x)})
            p = out_dir / f"{atlas}_pseudobulk_{name}_resampled.h5ad"
            a.write_h5ad(p, compression=compression)
            written.append(p)
            del a, x, rows

    total = time.perf_counter() - t0
    log(
        f"seed: {n_cells:,d} cells x {n_genes:,d} genes, {len(levels)} levels, "
        f"pass {t_pass:.2f}s, total {total:.2f}s, {len(written)} files in {out_dir}"
    )
    return {
        "seconds": total,
        "pass_seconds": t_pass,
        "first_block_seconds": first_block,
        "files": [str(p) for p in written],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The seed (old, dense) pseudobulk algorithm.")
    ap.add_argument("h5ad", nargs="?", help="atlas .h5ad (or use --registry/--atlas)")
    ap.add_argument("--registry")
    ap.add_argument("--atlas", default="synth")
    ap.add_argument("--sample-col", default="sample")
    ap.add_argument("--level", action="append", default=[], metavar="NAME=COLUMN")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=50_000)
    ap.add_argument("--n-bootstrap", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--min-samples", type=int, default=5, help="samples needed for a bootstrap")
    ap.add_argument("--min-cells", type=int, default=10, help="smallest group kept")
    ap.add_argument("--compression", choices=["gzip", "lzf"], default=None)
    ap.add_argument(
        "--dense-dtype",
        choices=["float32", "float64"],
        default="float32",
        help="dtype of the dense blocks (default float32, the file's dtype: the cheaper choice)",
    )
    ap.add_argument("--json", action="store_true", help="also print the result as a JSON line")
    a = ap.parse_args(argv)
    if a.registry:
        h5ad, sample_col, levels = load_registry(a.registry, a.atlas)
    else:
        if not a.h5ad or not a.level:
            ap.error("give --registry, or an h5ad path and --level NAME=COLUMN ...")
        h5ad, sample_col = a.h5ad, a.sample_col
        levels = dict(lv.split("=", 1) for lv in a.level)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    r = seed_pseudobulk(
        h5ad,
        a.out,
        a.atlas,
        sample_col,
        levels,
        batch_size=a.batch_size,
        n_bootstrap=a.n_bootstrap,
        seed=a.seed,
        min_samples=a.min_samples,
        min_cells=a.min_cells,
        dense_dtype=a.dense_dtype,
        compression=a.compression,
        log=log,
    )
    if a.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`cytoatlas.cells`: secactpy's per-cell activity of every kept cell of an atlas, in two streaming passes.

Pass 1 sums each gene's ``y = log2(1 + 1e5 x / L)`` over the kept cells (the gene means that centre every
cell); pass 2 scores each cell from its own sparse row against every signature set's ``T``, with the exact
permutation null, and writes the rows in file order as it goes. Memory is one block plus the models.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cytoatlas import defaults
from cytoatlas._activity.run import signature_sets
from cytoatlas._cells import checkpoint as ckpt_io
from cytoatlas._cells import means
from cytoatlas._cells.means import GeneSums
from cytoatlas._cells.model import CellModel, cell_model, overlap_genes
from cytoatlas._cells.outputs import CellsWriter, cells_obs, cells_var
from cytoatlas._cells.plan import CellsPlan, plan_cells
from cytoatlas._cells.scoring import score_block
from cytoatlas._cells.summary import QUANTILES, Summary, quantile_sample
from cytoatlas._cells.tables import write_tables
from cytoatlas._faults import crash_point
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.directory import check_output_dir
from cytoatlas._harness.steps import CELLS
from cytoatlas._version import __version__
from cytoatlas.cluster import check_scheduler, dask_client, slurm_options, usable_cores
from cytoatlas.errors import CytoatlasError
from cytoatlas.io import layout
from cytoatlas.io.fingerprint import file_fingerprint
from cytoatlas.io.h5ad import open_counts, open_h5ad
from cytoatlas.io.prefetch import Prefetch
from cytoatlas.io.results import unique_symbols
from cytoatlas.progress import Progress, peak_rss_gb
from cytoatlas.registry import AtlasConfig, get_atlas, load_slurm_options

log = logging.getLogger("cytoatlas.cells")
LAYERS = ("beta", "pvalue")
METHOD = "secactpy single-cell ridge (is_single_cell_level=True), exact permutation null"
NORMALISATION = ("y = log2(1 + 1e5 x / L), L the cell's total count over all genes (0 -> 1); each gene centred "
                 "by its mean over the scored cells; each cell z-scored over the overlap genes (ddof 1, sd < "
                 "1e-12 -> 1); signatures z-scored per column (ddof 1, NaN -> 0)")


def check_cells_options(*, layers: Sequence[str], lambda_: float, batch_size: int, threads: int | None
                        ) -> tuple[str, ...]:
    """The per-cell step's options, for the file path and the in-memory path alike; the layers in their order.

    Raises
    ------
    CytoatlasError
        An unknown layer, a lambda not > 0, a batch size or thread count that is not an integer >= 1.
    """
    for name, value, low in (("batch_size", batch_size, 1), ("threads", threads or 1, 1)):
        if int(value) != value or value < low:
            raise CytoatlasError(f"{name} must be an integer >= {low}, got {value!r}")
    bad = [x for x in layers if x not in LAYERS]
    if bad:
        raise CytoatlasError(f"unknown layer(s) {', '.join(map(repr, bad))}; choose from {', '.join(LAYERS)}")
    if not lambda_ > 0:
        raise CytoatlasError(f"lambda must be > 0, got {lambda_!r}")
    return tuple(x for x in LAYERS if x in layers)


def cells(
    atlas: str | AtlasConfig,
    out: str | os.PathLike,
    *,
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    signatures: Sequence[str] | None = None,
    signature_files: Sequence[str | os.PathLike] = (),
    layers: Sequence[str] = (),
    embedding: str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    lambda_: float = defaults.LAMBDA,
    threads: int | None = None,
    scheduler: str | None = None,
    slurm: Mapping[str, Any] | None = None,
    resume: bool = False,
    skip_existing: bool = False,
    checkpoint_every: float = defaults.CHECKPOINT_EVERY,
) -> list[Path]:
    """Per-cell activity of every kept cell of an atlas, as secactpy computes it (``is_single_cell_level``).

    Writes, per signature set, ``OUT/cells/{atlas}_cells_{set}_activity.h5ad`` (kept cells in file order x
    signatures; X the exact permutation z-score, float32; obs the sample column and every level's label),
    ``..._summary.csv`` (per level, label and signature: mean, sd, quantiles, fraction ``|z| > 2``) and, when the
    atlas has an embedding, ``..._embedding.csv`` (a fixed subsample's coordinates and z).

    Parameters
    ----------
    atlas
        A registry name or an :class:`~cytoatlas.registry.AtlasConfig`.
    out
        The atlas' results directory (files go to ``out/cells``).
    registry, data_root
        A user registry TOML and the root for relative atlas paths.
    signatures, signature_files
        Signature sets by name (default: CytoSig, SecAct and every file) and genes x signatures TSVs.
    layers
        Extra matrices: ``beta`` (ridge coefficients), ``pvalue`` (two-sided, of the exact z).
    embedding
        The ``obsm`` key of the embedding the summaries subsample (default: the registry's ``embedding`` key,
        else ``X_umap`` when present).
    batch_size
        Cells per block read; results do not depend on it.
    lambda_
        Ridge penalty (secactpy's 5e5).
    threads
        Threads decompressing the counts and scoring cells (default: the usable cores); results do not
        depend on it.
    scheduler, slurm
        Run both passes on a Dask cluster (``local:N``, ``tcp://...``, ``slurm``), as ``cytoatlas pseudobulk``;
        results are identical.
    resume
        Continue from the last checkpoint (the files are identical to an uninterrupted run's).
    skip_existing
        Leave the outputs of a signature set alone when they are current: recorded in ``out/cells``' manifest,
        checksums verified, made from this atlas file with these parameters and this version of the set. Only
        the other sets are scored (a set's scores do not depend on which other sets are scored with it).
    checkpoint_every
        Seconds between checkpoints of the scoring pass (also taken on SIGTERM).

    Returns
    -------
    The activity files, one per signature set.
    """
    t0 = time.perf_counter()
    layers = check_cells_options(layers=layers, lambda_=lambda_, batch_size=batch_size, threads=threads)
    check_scheduler(scheduler)
    cfg = atlas if isinstance(atlas, AtlasConfig) else get_atlas(atlas, registry, data_root)
    slurm = slurm_options(load_slurm_options(registry), slurm) if scheduler == "slurm" else None
    sets = signature_sets(signatures, [*cfg.signature_files, *map(Path, signature_files)])
    out = check_output_dir(out)
    directory = layout.cells_dir(out)
    threads = threads or usable_cores()
    with open_h5ad(cfg.h5ad) as f, open_counts(f, cfg.counts, threads) as counts:
        plan = plan_cells(f, cfg, counts.shape[0], counts.shape[1], sets, embedding)
        fingerprint = file_fingerprint(cfg.h5ad)
        params = {"counts": cfg.counts, "sample_col": cfg.sample_col, "gene_symbols": cfg.gene_symbols or "",
                  "exclude": {c: list(v) for c, v in cfg.exclude}, "levels": [lev.name for lev in cfg.levels],
                  "lambda": float(lambda_), "layers": list(layers), "embedding": plan.embedding_key or ""}
        created = not out.exists()  # a run that fails before writing leaves no empty directories behind
        # an unreadable manifest counts as no records (with a warning): every set is then scored again
        with _removed_if_empty(out if created else None), StepDirectory(directory, CELLS, force=True) as d, \
                contextlib.ExitStack() as stack:
            if skip_existing:
                current = [s.name for s in sets if _current(d, cfg.name, s, params, fingerprint,
                                                            plan.embedding is not None)]
                if current:
                    log.info("%s: per-cell outputs exist, verify and are current; skipped: %s", cfg.name,
                             ", ".join(current))
                if len(current) == len(sets):
                    return [layout.cells_activity_path(directory, cfg.name, s.name) for s in sets]
                if current:  # the plan (candidate genes) of the sets left
                    sets = [s for s in sets if s.name not in current]
                    plan = plan_cells(f, cfg, counts.shape[0], counts.shape[1], sets, embedding)
            identity = {"input": {k: v for k, v in fingerprint.items() if k != "path"}, "parameters": params,
                        "sets": [[s.name, s.version] for s in sets], "version": __version__}
            log.info("%s: %s cells (%s kept) x %s genes; %s", cfg.name, f"{counts.shape[0]:,}", f"{plan.n_kept:,}",
                     f"{counts.shape[1]:,}", ", ".join(s.name for s in sets))
            cluster = stack.enter_context(dask_client(scheduler, slurm)) if scheduler else None
            ckpt = layout.cells_checkpoint_path(directory, cfg.name)
            saved = ckpt_io.load_checkpoint(ckpt, identity) if resume else None
            if saved is None and ckpt.exists():
                log.info("%s: ignoring the checkpoint of an earlier run (pass --resume to continue it)", cfg.name)
            sums = gene_sums(saved, cfg, counts, plan, batch_size, cluster, fingerprint)
            models = fit_models(sets, plan, sums, lambda_, cfg.name)
            pool = stack.enter_context(ThreadPoolExecutor(threads, thread_name_prefix="cytoatlas-score")) \
                if threads > 1 and cluster is None else None
            paths = _score(cfg, counts, plan, models, layers, sums, saved, identity, ckpt, d=d,
                           batch_size=batch_size, every=checkpoint_every, cluster=cluster,
                           fingerprint=fingerprint, params=params, workers=(pool, threads))
    log.info("%s: %s cells x %s in %.1f s, peak memory %.2f GB", cfg.name, f"{plan.n_kept:,}",
             ", ".join(f"{m.sig.name} ({m.n:,}/{len(m.sig.genes):,} genes)" for m in models),
             time.perf_counter() - t0, peak_rss_gb())
    return paths


def _record_parameters(params: dict, sig, kind: str) -> dict:
    """What a per-cell output's manifest record holds as its parameters: the run's, the set and its version."""
    return {**params, "signature": sig.name, "signature_version": sig.version, "kind": kind}


def _current(d: StepDirectory, atlas: str, sig, params: dict, fingerprint: dict, with_embedding: bool) -> bool:
    """Whether every output of set ``sig`` is complete (checksums verified) and made from these inputs and
    parameters by this algorithm version."""
    kinds = ["activity", "summary"] + (["embedding"] if with_embedding else [])
    return all(d.output_state(layout.cells_path(d.out, atlas, sig.name, kind), _record_parameters(params, sig, kind),
                              [fingerprint], verify=True) == "complete" for kind in kinds)


@contextlib.contextmanager
def _removed_if_empty(directory: Path | None):
    try:
        yield
    except BaseException:
        if directory is not None:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def gene_sums(saved, cfg: AtlasConfig, counts, plan: CellsPlan, batch_size: int, cluster, fingerprint) -> GeneSums:
    """Pass 1 (or its result from the checkpoint)."""
    n_stripes = -(-counts.shape[0] // means.STRIPE_ROWS)
    if saved is not None:
        sums = GeneSums(saved["y_sums"], saved["count_sums"], int(saved["n_cells"]), folded=n_stripes)
        log.info("%s: gene means from the checkpoint", cfg.name)
        return sums
    t = time.perf_counter()
    if cluster is not None:
        from cytoatlas._cells.partitions import sums_on_cluster

        sums = sums_on_cluster(cluster, str(cfg.h5ad), cfg.counts, fingerprint, plan, batch_size, cfg.name)
    else:
        sums = GeneSums.empty(len(plan.candidates))
        progress = Progress(log, f"{cfg.name} gene means", counts.shape[0])
        with Prefetch(counts.blocks(batch_size)) as blocks:
            for block in blocks:
                sums.add_block(block, plan.kept[block.start:block.stop], plan.slot)
                progress.update(block.stop - block.start)
                del block
        sums.finish()
    sums.means(n_stripes)  # checks every stripe was folded
    log.info("%s: gene means of %s cells in %.1f s", cfg.name, f"{sums.n_cells:,}", time.perf_counter() - t)
    return sums


def fit_models(sets, plan: CellsPlan, sums: GeneSums, lambda_: float, atlas: str) -> list[CellModel]:
    """Every set's model: one gene per symbol (the highest mean count, as secactpy), the set's genes of those."""
    n = max(sums.n_cells, 1)
    keep = plan.candidates[unique_symbols(plan.symbols[plan.candidates], sums.count_sums / n)]
    y_means = sums.y_sums / n
    models = []
    for sig in sets:
        genes = overlap_genes(sig, plan.symbols, keep)
        models.append(cell_model(sig, plan.symbols, genes, y_means[plan.slot[genes]], len(plan.slot), lambda_,
                                 atlas))
    return models


def _score(cfg, counts, plan: CellsPlan, models: list[CellModel], layers, sums: GeneSums, saved, identity, ckpt, *,
           d: StepDirectory, batch_size: int, every: float, cluster, fingerprint, params, workers) -> list[Path]:
    """Pass 2: score, write, summarise; then the tables, the manifest, and the checkpoint removed."""
    directory = d.out
    sampled, per_label = quantile_sample(plan.levels)
    start_row = int(saved["next_row"]) if saved is not None else 0
    writers, summaries = [], []
    try:
        for i, m in enumerate(models):
            final = layout.cells_activity_path(directory, cfg.name, m.sig.name)
            work = layout.cells_partial_path(directory, cfg.name, m.sig.name)
            reopen = saved is not None and work.exists()
            if saved is not None and not reopen:
                raise CytoatlasError(f"{work.name} is missing: the checkpoint cannot be continued; run without "
                                     "--resume")
            uns = None if reopen else cells_uns(m, cfg, plan, sums, fingerprint, params)
            writers.append(CellsWriter(final, work, None if reopen else cells_obs(plan.names, plan.columns),
                                       cells_var(m), uns, layers, plan.n_kept, len(m.names), reopen=reopen))
            s = Summary(plan.levels, m.names, sampled, plan.embedding_rows)
            if saved is not None:
                s.restore(saved, f"s{i}_")
            summaries.append(s)
        kept_before = np.concatenate([[0], np.cumsum(plan.kept, dtype=np.int64)])

        def state() -> dict:
            return {"y_sums": sums.y_sums, "count_sums": sums.count_sums, "n_cells": np.int64(sums.n_cells),
                    **{k: v for i, s in enumerate(summaries) for k, v in s.arrays(f"s{i}_").items()}}

        checkpointer = ckpt_io.Checkpointer(ckpt, identity, every, d, writers, state)
        progress = Progress(log, f"{cfg.name} cells", counts.shape[0] - start_row)
        if cluster is not None:
            from cytoatlas._cells.partitions import score_on_cluster

            parts = score_on_cluster(cluster, str(cfg.h5ad), cfg.counts, fingerprint, plan, models, layers,
                                     batch_size, start_row, cfg.name)
        else:
            parts = _score_local(counts, plan, models, layers, batch_size, start_row, *workers)
        with checkpointer:
            for start, stop, offset, outs, last in parts:
                base = kept_before[start] + offset
                for w, s, arrays in zip(writers, summaries, outs, strict=True):
                    if arrays:
                        w.write(base, arrays)
                        s.add(base, arrays["X"])
                if last:
                    progress.update(stop - start)
                    crash_point("cells_block")
                    checkpointer.after_block(stop)
        paths = [w.commit() for w in writers]
    except (ckpt_io.Stopped, KeyboardInterrupt) as e:
        for w in writers:  # left for --resume, beside the checkpoint just saved
            w.close()
        if isinstance(e, ckpt_io.Stopped):
            raise CytoatlasError(f"stopped by SIGTERM; state saved in {ckpt}; continue with --resume") from None
        raise
    except BaseException:
        for w in writers:  # an error, not an interruption: no output left behind
            w.abort()
        ckpt.unlink(missing_ok=True)  # its partial files are gone
        raise
    records = {}
    for m, path, s in zip(models, paths, summaries, strict=True):
        tables = write_tables(directory, cfg.name, m, s, plan, QUANTILES, per_label)
        for kind, p in [("activity", path), *tables]:
            records.update([d.record(p, _record_parameters(params, m.sig, kind), [fingerprint], atlas=cfg.name,
                                     signature=m.sig.name, kind=kind)])
    d.commit(records)
    ckpt.unlink(missing_ok=True)
    return paths


def _score_local(counts, plan: CellsPlan, models, layers, batch_size: int, start_row: int, pool, n_threads: int):
    """``(block start, block stop, kept offset, outputs, last piece of the block)`` of every scored piece of the
    rows from ``start_row``, in file order."""
    with Prefetch(counts.blocks(batch_size, start=start_row)) as blocks:
        for block in blocks:
            # one piece held back to tell the block's last one (pieces are scored lazily: bounded memory)
            held = (0, [{} for _ in models])
            for j, piece in enumerate(score_block(block, plan.kept[block.start:block.stop], models, layers,
                                                        pool=pool, n_threads=n_threads)):
                if j:
                    yield block.start, block.stop, *held, False
                held = piece
            yield block.start, block.stop, *held, True
            del block, held


def cells_uns(m: CellModel, cfg: AtlasConfig, plan: CellsPlan, sums: GeneSums, fingerprint: dict,
              params: dict) -> dict:
    """A per-cell output's ``uns``: method, normalisation, set, gene means, genes used, input and parameters."""
    return {
        "atlas": cfg.name, "signature_set": m.sig.name, "method": METHOD, "normalisation": NORMALISATION,
        "lambda": params["lambda"], "signature": m.sig.describe(),
        "gene_means": {"source": "first pass over the scored cells (per-gene sums of y, fixed stripes of "
                                 f"{means.STRIPE_ROWS} rows added in order)", "n_cells": int(sums.n_cells),
                       "duplicates": "highest mean count per symbol kept", "values": m.means},
        "genes_used": m.symbols.astype(str), "n_genes_used": m.n, "overlap_fraction": m.overlap,
        "input": fingerprint, "parameters": params, "cytoatlas_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

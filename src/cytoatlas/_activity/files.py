"""Activity of one pseudobulk file: centring, every signature set's regression, the files written.

A Dask task runs :meth:`FileJob.unit` (a file after its bootstrap file); one process runs
:meth:`FileJob.one_file` file by file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas._activity.model_cache import fitted_model
from cytoatlas._activity.outputs import (
    CI_QUANTILES,
    SetResult,
    bootstrap_ci,
    cell_type_matches,
    expand_groups,
    write_activity,
    write_ci_table,
)
from cytoatlas._activity.ridge import exact_test, standardise_columns
from cytoatlas._activity.signatures import SignatureSet
from cytoatlas._faults import crash_point
from cytoatlas._harness.steps import ACTIVITY
from cytoatlas._version import __version__
from cytoatlas.cluster import usable_cores
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.fingerprint import file_fingerprint
from cytoatlas.io.layout import main_of
from cytoatlas.io.results import Pseudobulk, read_pseudobulk
from cytoatlas.progress import Progress

log = logging.getLogger("cytoatlas.activity")
# responses are standardised and regressed this many float64 values at a time (64 MB per temporary)
_BATCH_VALUES = 1 << 23


@dataclass(frozen=True)
class Centring:
    """How each gene is centred before the regression: across all columns, or within groups of ``column``."""

    column: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Centring:
        if spec in ("across", "", None):
            return cls()
        if spec.startswith("within:") and spec[len("within:"):]:
            return cls(spec[len("within:"):])
        raise CytoatlasError(f"centre must be 'across' or 'within:COLUMN', got {spec!r}")

    def __str__(self) -> str:
        return f"within:{self.column}" if self.column else "across"

def _centres(pb: Pseudobulk, centring: Centring) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-gene centres (genes x groups, float64), each column's group, and what was done.

    Centring within a column whose groups are all single columns (``within:cell_type`` on a cell-type file)
    would zero every profile; such a file is centred across its columns instead, and says so.
    """
    across = (pb.values.mean(axis=1, dtype=np.float64)[:, None], np.zeros(pb.values.shape[1], dtype=np.intp),
              "across")
    if centring.column is None:
        return across
    if centring.column not in pb.obs:
        raise CytoatlasError(f"{pb.path.name}: cannot centre within {centring.column!r}: no such obs column; "
                             f"available: {', '.join(map(str, pb.obs.columns))}")
    codes, uniques = pd.factorize(pb.obs[centring.column].astype(str), sort=True)
    if len(uniques) == len(codes) and len(codes) > 1:
        log.info("%s: every %s has one column; centred across columns instead", pb.path.name, centring.column)
        return across
    centres = np.empty((pb.values.shape[0], len(uniques)))
    for g in range(len(uniques)):
        centres[:, g] = pb.values[:, codes == g].mean(axis=1, dtype=np.float64)
    return centres, codes.astype(np.intp), str(centring)


def _run_set(pb: Pseudobulk, sig: SignatureSet, centres: np.ndarray, group: np.ndarray, method: str,
             n_rand: int, seed: int, lambda_: float) -> SetResult:
    wanted = {g: i for i, g in enumerate(sig.genes)}
    rows = np.flatnonzero([g in wanted for g in pb.genes])  # expression order, as secactpy intersects
    if len(rows) < 2:
        raise CytoatlasError(
            f"{pb.path.name}: {len(rows)} of the {len(sig.genes):,} {sig.name} genes are among its "
            f"{pb.n_symbols:,} gene symbols (e.g. {', '.join(map(str, pb.genes[:3])) or 'none'}); signatures are "
            "matched on symbols: if the atlas' var_names are Ensembl ids, set `gene_symbols` in its registry entry")
    frac = len(rows) / len(sig.genes)
    if frac < 0.5:
        log.warning("%s: only %d of %d %s genes (%.0f%%) are in the file; activities rest on few genes",
                    pb.path.name, len(rows), len(sig.genes), sig.name, 100 * frac)
    genes_used = pb.genes[rows]
    model = fitted_model(sig, np.array([wanted[g] for g in genes_used], dtype=np.intp), genes_used, lambda_)
    t = model.projection() if method == "permutation" else None
    n_cols = pb.values.shape[1]
    out = {k: np.empty((model.design.shape[1], n_cols)) for k in ("beta", "se", "zscore", "pvalue")}
    # batches are sized for memory, and their bounds are part of the numbers: BLAS picks its kernels by shape, so a
    # column regressed in a batch of another width can differ in the last bits. Exact batches are regressed on all
    # cores at once (numpy and BLAS release the GIL), each as it would be alone
    step = max(1, _BATCH_VALUES // len(rows))
    threads = usable_cores() if method == "exact" else 1
    progress = Progress(log, f"{pb.path.name} {sig.name} {method}", n_cols, unit="columns")
    if method == "permutation":
        from cytoatlas._activity.permutation import permutation_test

    def batch(start: int) -> None:
        cols = slice(start, min(start + step, n_cols))
        values = pb.values[:, cols] if len(rows) == len(pb.genes) else pb.values[rows, cols]
        # one centre per gene (centring across) broadcasts; groups need each column's own centre
        centre = centres[rows] if centres.shape[1] == 1 else centres[rows][:, group[cols]]
        y = standardise_columns(values - centre, overwrite=True)  # float64: a temporary of its own
        if method == "exact":
            res = exact_test(model, y, overwrite=True)
        else:
            beta = t @ y
            res = {"beta": beta, **permutation_test(t, y, beta, n_rand=n_rand, seed=seed)}
        for k in out:
            out[k][:, cols] = res[k]
        progress.update(cols.stop - cols.start)

    starts = range(0, n_cols, step)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(threads, len(starts)), thread_name_prefix="cytoatlas-ridge") as pool:
            list(pool.map(batch, starts))
    else:
        for start in starts:
            batch(start)
    return SetResult(sig, out, genes_used)

@dataclass
class FileJob:
    """What every file of an activity run shares (sent once to each Dask worker), and the work on one file.

    ``targets(path, sig)`` names a (file, set)'s outputs; ``set_params(sig)`` its recorded parameters.
    """

    out: Path
    genes: set[str]
    centring: Centring
    method: str
    n_rand: int
    seed: int
    lambda_: float
    cmap: dict
    params: dict
    set_params: Callable
    targets: Callable

    def unit(self, paths: list[Path], sets: list[SignatureSet], todo: dict[Path, list[str]],
             stale: dict[Path, set[str]], inputs: dict[Path, list[dict]]) -> tuple[list[Path], dict]:
        """A Dask task: a pseudobulk file (after its bootstrap file, when it has one), written; the manifest
        records are returned for the driver to add (one writer of the manifest)."""
        by_name = {s.name: s for s in sets}
        boot: dict = {}
        written, records = [], {}
        for path in paths:
            files, recs = self.one_file(path, [by_name[n] for n in todo[path]], stale[path], boot,
                                        lambda p=path: inputs[p])
            written += files
            records.update(recs)
        return written, records

    def one_file(self, path: Path, sets: list[SignatureSet], to_write: set[str], boot: dict,
                 inputs: Callable[[], list[dict]]) -> tuple[list[Path], dict]:
        """Activity of ``sets`` on one pseudobulk file; the sets named in ``to_write`` written and their manifest
        records returned (a bootstrap file's current outputs are computed again for its main file's intervals,
        not rewritten). ``boot`` carries a bootstrap file's results to its main file."""
        t0 = time.perf_counter()
        pb = read_pseudobulk(path, self.genes)
        if pb.kind == "resampled":
            main_path = main_of(path)
            if not main_path.is_file():
                raise CytoatlasError(f"{path.name}: its main file {main_path.name} is missing; bootstrap activity "
                                     "is centred with the main file's gene means")
            main = read_pseudobulk(main_path, self.genes)
            if not np.array_equal(main.genes, pb.genes):
                raise CytoatlasError(f"{path.name} and {main_path.name} have different genes")
            centres, group = _centres(main, Centring())[0], np.zeros(pb.values.shape[1], dtype=np.intp)
            file_centring = f"across, with the gene means of {main_path.name}"
        else:
            centres, group, file_centring = _centres(pb, self.centring)
        results = [_run_set(pb, s, centres, group, self.method, self.n_rand, self.seed, self.lambda_) for s in sets]
        if pb.kind == "resampled":
            boot[main_of(path)] = (pb, results)
        written, records = [], {}
        for res in results:
            if res.sig.name in to_write:
                files = self._write(path, pb, res, file_centring, boot)
                written += files
                for f in files:
                    records[f.name] = ACTIVITY.record(f, self.set_params(res.sig), inputs(), file=path.name,
                                                      signature=res.sig.name, kind=pb.kind)
                crash_point("activity_set")
        boot.pop(path, None)
        log.info("%s: %d columns x %s in %.1f s", path.name, pb.values.shape[1],
                 ", ".join(f"{r.sig.name} ({len(r.genes_used):,}/{len(r.sig.genes):,} genes)" for r in results),
                 time.perf_counter() - t0)
        return written, records

    def _write(self, path: Path, pb: Pseudobulk, res: SetResult, file_centring: str, boot: dict) -> list[Path]:
        """The output files of one (file, set): the activity file and, with a bootstrap, its interval table."""
        files = self.targets(path, res.sig)
        boot_res = None
        if len(files) > 1:
            bpb, bres = boot[path]
            boot_res = (bpb, next(r for r in bres if r.sig is res.sig))
        out = set_outputs(pb, res, self.params, self.cmap, file_centring, file_fingerprint(path), boot_res)
        ci_table = write_ci_table(files[1], pb.obs, out.names, out.layers["zscore"], out.ci) if out.ci else None
        return [write_activity(files[0], pb, res, out.layers, out.uns, out.obs_extra)] + \
            ([ci_table] if ci_table else [])


@dataclass
class SetOutputs:
    """What one (file, set)'s activity output holds besides its obs and var: the layers (``zscore`` its X),
    ``uns``, extra obs columns, and the bootstrap intervals when the file has a bootstrap."""

    names: np.ndarray
    layers: dict[str, np.ndarray]
    uns: dict
    obs_extra: dict[str, np.ndarray]
    ci: dict[str, np.ndarray] | None


def set_outputs(pb: Pseudobulk, res: SetResult, params: dict, cmap: dict, file_centring: str, source: dict,
                boot: tuple[Pseudobulk, SetResult] | None) -> SetOutputs:
    """The contents of a (file, set)'s activity output (shared by the files and the objects in memory):
    ``source`` is the input's record, ``boot`` the bootstrap file and its result for this set."""
    sig = res.sig
    names = sig.signatures[sig.output_order]
    layers = expand_groups(res)
    obs_extra: dict[str, np.ndarray] = {}
    uns = {
        **params, "centre": file_centring, "genes_used": res.genes_used.astype(str),
        "n_genes_used": len(res.genes_used), "overlap_fraction": len(res.genes_used) / len(sig.genes),
        "signature": sig.describe(), "input": source,
        "pseudobulk": {k: v for k, v in pb.uns.items() if k in ("atlas", "level", "kind", "separator")},
        "cytoatlas_version": __version__,
    }
    if sig.cell_type_specific:
        matched, row_type, uns["cell_types"] = cell_type_matches(pb, sig, names, cmap)
        layers["matched"] = matched
        obs_extra["signature_cell_type"] = row_type.astype(str)
    ci = None
    if boot is not None:
        bpb, b = boot
        ci = bootstrap_ci(pb.obs, bpb.obs, expand_groups(b)["zscore"])
        layers.update({k: v for k, v in ci.items() if k != "n_boot"})
        obs_extra["n_boot"] = ci["n_boot"]
        uns["bootstrap"] = {"file": bpb.path.name, "quantiles": np.array(CI_QUANTILES)}
    return SetOutputs(names, layers, uns, obs_extra, ci)


def run_unit(job: FileJob, *args) -> tuple[list[Path], dict]:
    """:meth:`FileJob.unit` as a plain function (what a Dask task calls)."""
    return job.unit(*args)

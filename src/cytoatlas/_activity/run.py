"""`cytoatlas._activity`: ridge activity of every signature set on every pseudobulk file, with bootstrap CIs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cytoatlas import defaults
from cytoatlas._activity.files import Centring, FileJob, run_unit
from cytoatlas._activity.signatures import BUILT_IN, SignatureSet, load_signatures, set_name
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.steps import ACTIVITY
from cytoatlas.cluster import check_scheduler, dask_client, slurm_options
from cytoatlas.errors import CytoatlasError
from cytoatlas.io import layout
from cytoatlas.io.chunks import tune_allocator
from cytoatlas.io.manifest import upstream_fingerprint, verified_fingerprint
from cytoatlas.options import Method, check_choice, choices
from cytoatlas.progress import Progress, peak_rss_gb

log = logging.getLogger("cytoatlas.activity")
METHODS = choices(Method)


def _kind(path: Path) -> str:
    """A pseudobulk file's kind as its name says (the layout's contract); "" for a name of another making, which
    is then taken as a main file (its reader checks what it holds)."""
    name = layout.parse(path)
    return name.kind if name is not None and name.step == "pseudobulk" else ""


def signature_sets(names: Sequence[str] | None, files: Sequence[Path]) -> list[SignatureSet]:
    """The signature sets named (default: CytoSig, SecAct and every file), loaded."""
    by_name = {set_name(f): f for f in files}
    if names is None:
        names = [*BUILT_IN, *by_name]
    sets = []
    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        if name.lower() in BUILT_IN:
            sets.append(load_signatures(name.lower()))
        elif name.lower() in by_name:
            sets.append(load_signatures(by_name[name.lower()]))
        elif Path(name).is_file():
            sets.append(load_signatures(name))
        elif name.lower() == "lincytosig":
            raise CytoatlasError(
                "LinCytoSig is not redistributable: give its genes x signatures TSV(.gz) with --signature-file "
                "(or `signature_files` in the atlas' registry entry)")
        else:
            known = [*BUILT_IN, *by_name]
            raise CytoatlasError(f"unknown signature set {name!r}; available: {', '.join(known)} "
                                 "(or pass a genes x signatures TSV with --signature-file)")
    return sets


def activity(
    files: Sequence[str | os.PathLike] | None = None,
    out: str | os.PathLike | None = None,
    *,
    atlas: str | None = None,
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    signatures: Sequence[str] | None = None,
    signature_files: Sequence[str | os.PathLike] = (),
    results: str | os.PathLike | None = None,
    method: Method = defaults.METHOD,
    n_rand: int = defaults.N_RAND,
    permutation_seed: int = defaults.PERMUTATION_SEED,
    centre: str = defaults.CENTRE,
    cell_type_map: Mapping[str, str] | None = None,
    lambda_: float = defaults.LAMBDA,
    skip_existing: bool = False,
    scheduler: str | None = None,
    slurm: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Cytokine and secreted-protein activity (CytoSig, SecAct, LinCytoSig, custom) of pseudobulk files.

    Parameters
    ----------
    files
        Pseudobulk ``.h5ad`` files (outputs of :func:`cytoatlas.pseudobulk`). With ``atlas`` and ``results``
        and no files: every pseudobulk file of the atlas in ``results/pseudobulk``.
    out
        Output directory (default with ``results``: ``results/activity``).
    atlas, registry, data_root
        Registry entry whose ``signature_files`` and ``cell_type_map`` apply.
    results
        The atlas' results directory (``cytoatlas run --out``), to take its pseudobulk files from.
    signatures
        Set names (``cytosig``, ``secact``, the stem of a signature file such as ``lincytosig``) or paths.
        Default: CytoSig, SecAct and every signature file given.
    signature_files
        Genes x signatures TSV(.gz) files (LinCytoSig or any custom matrix of that form).
    method
        ``exact`` (closed-form permutation z, no random numbers) or ``permutation`` (secactpy's procedure).
    n_rand, permutation_seed
        Permutations and their seed for ``permutation`` (secactpy's C ``srand`` RNG; recorded as ``seed``).
    centre
        ``across`` (each gene centred over the file's columns) or ``within:COLUMN`` (within each group of
        that obs column, e.g. ``within:cell_type`` for sample x cell type files; a file whose groups are all
        single columns, such as a cell-type file, is centred across). Bootstrap files are always centred with
        their main file's gene means, so their intervals are on the main estimate's scale.
    cell_type_map
        ``{atlas label: signature cell type}`` overrides for cell-type-specific sets (LinCytoSig).
    lambda_
        Ridge penalty (secactpy's 5e5).
    skip_existing
        Leave (file, signature set) outputs alone that are current: recorded in ``out/manifest.json``, checksums
        verified, made from the same pseudobulk files (checksums) with the same parameters and signature version.
    scheduler, slurm
        Compute the files in parallel on a Dask cluster (``"local:N"``, ``"tcp://host:port"``, ``"slurm"``; see
        :mod:`cytoatlas.cluster`): one task per pseudobulk file, with its bootstrap file when it has one.
        Workers write the activity files; this process records them in the manifest as tasks finish.

    Returns
    -------
    list of Path
        The activity files and bootstrap interval tables written (named by :mod:`cytoatlas.io.layout`).
    """
    tune_allocator()  # the batches' float64 temporaries (<= 64 MB) reuse freed memory instead of fresh pages
    check_choice("method", method, Method)
    if method == "permutation" and n_rand < 1:
        raise CytoatlasError(f"n_rand must be >= 1, got {n_rand}")
    if not lambda_ >= 0:
        raise CytoatlasError(f"lambda must be >= 0, got {lambda_}")
    check_scheduler(scheduler)
    if scheduler == "slurm":
        from cytoatlas.registry import load_slurm_options

        slurm = slurm_options(load_slurm_options(registry), slurm)
    centring = Centring.parse(centre)
    sig_files = [Path(f) for f in signature_files]
    cmap = dict(cell_type_map or {})
    if atlas is not None:
        from cytoatlas.registry import get_atlas

        cfg = get_atlas(atlas, registry, data_root)
        sig_files = list(cfg.signature_files) + sig_files
        cmap = {**dict(cfg.cell_type_map), **cmap}
    if not files:
        if atlas is None or results is None:
            raise CytoatlasError("give pseudobulk files, or an atlas and its results directory to take every "
                                 "pseudobulk file of the atlas")
        pb_dir = layout.pseudobulk_dir(results)
        files = layout.find_pseudobulk(pb_dir, atlas)
        if not files:
            raise CytoatlasError(f"no {layout.pseudobulk_glob(atlas)} files in {pb_dir}; run "
                                 f"`cytoatlas pseudobulk --atlas {atlas} --out {pb_dir}` first")
        out = layout.activity_dir(results) if out is None else out
    if out is None:
        raise CytoatlasError("an output directory is required")
    out = Path(out)
    paths = list(dict.fromkeys(Path(f) for f in files))
    for p in paths:
        if not p.is_file():
            raise CytoatlasError(f"{p}: no such file")
        # a pseudobulk file its manifest records must be what was recorded (a file from elsewhere: as it is)
        verified_fingerprint(p, rerun="rerun `cytoatlas run` (or `cytoatlas pseudobulk`) to remake it",
                             required=False)
    # an unreadable manifest counts as no records (with a warning): every output is then recomputed, which is
    # how `cytoatlas run` heals an atlas' results
    d = StepDirectory(out, ACTIVITY, force=True)
    out = d.out
    sets = signature_sets(signatures, sig_files)
    genes = set().union(*(s.genes for s in sets))

    kinds = {p: _kind(p) for p in paths}
    # a resampled file is computed just before its main file, whose activity file gets its CIs
    order = sorted(paths, key=lambda p: (str(layout.main_of(p)) if kinds[p] == "resampled" else str(p),
                                         kinds[p] != "resampled"))
    boot_of = {layout.main_of(p): p for p in paths if kinds[p] == "resampled"}
    params = run_parameters(method, lambda_, centring, n_rand, permutation_seed)
    upstream: dict[Path, dict] = {}

    def inputs_of(path: Path) -> list[dict]:
        """The pseudobulk files an output is made from (content hashes, from their manifest when it vouches)."""
        needed = layout.activity_inputs(path, [kinds[path]] + (["resampled"] if path in boot_of else []))
        for p in needed:
            if p not in upstream:
                upstream[p] = upstream_fingerprint(p)
        return [upstream[p] for p in needed]

    def set_params(sig: SignatureSet) -> dict:
        return set_parameters(params, sig, cmap)

    def targets(path: Path, sig: SignatureSet) -> list[Path]:
        return layout.activity_targets(out, path, sig.name, path in boot_of)

    todo: dict[Path, list[SignatureSet]] = {}
    with d:
        for path in paths:
            todo[path] = [s for s in sets if not skip_existing or any(
                d.output_state(t, set_params(s), inputs_of(path), verify=True) != "complete"
                for t in targets(path, s))]
        stale = {path: list(v) for path, v in todo.items()}
        for main_path, res_path in boot_of.items():  # a main file's intervals need its bootstrap results
            if main_path in todo:
                todo[res_path] = [s for s in sets if s in todo[res_path] or s in todo[main_path]]
        written = []
        start = time.perf_counter()
        job = FileJob(out, genes, centring, method, n_rand, permutation_seed, lambda_, cmap, params, set_params,
                      targets)
        # units of work: a file, after its bootstrap file when it has one (whose results give its intervals)
        units = [[p for p in ([boot_of[path]] if path in boot_of else []) + [path] if todo[p]]
                 for path in order if kinds[path] != "resampled" or layout.main_of(path) not in paths]
        for path in order:
            if not todo[path]:
                log.info("%s: activity outputs exist, verify and are current; skipped", path.name)
        units = [u for u in units if u]
        if scheduler is not None and units:
            written = _on_cluster(scheduler, slurm, units, job, sets, todo, stale, inputs_of, d)
        else:
            # the inputs' checksums (needed only for the manifest) are computed on a second thread meanwhile
            with ThreadPoolExecutor(1, thread_name_prefix="cytoatlas-hash") as hasher:
                for unit in units:
                    boot: dict = {}  # a bootstrap file's results, for its main file's intervals
                    for path in unit:
                        inputs = hasher.submit(inputs_of, path)
                        files, records = job.one_file(path, todo[path], {s.name for s in stale[path]}, boot,
                                                      inputs.result)
                        d.commit(records)
                        written += files
                        d.touch()
    log.info("activity of %d file(s) x %d signature set(s) in %.1f s, peak memory %.2f GB", len(paths), len(sets),
             time.perf_counter() - start, peak_rss_gb())
    return written


def run_parameters(method: Method, lambda_: float, centring: Centring, n_rand: int, permutation_seed: int) -> dict:
    """What every activity output of a run depends on, besides its signature set."""
    params = {"method": method, "lambda": lambda_, "centre": str(centring)}
    if method == "permutation":
        params.update(n_rand=n_rand, seed=permutation_seed, rng="C srand/rand (glibc), cumulative Fisher-Yates")
    return params


def set_parameters(params: dict, sig: SignatureSet, cell_type_map: Mapping[str, str]) -> dict:
    """A (file, set) output's recorded parameters: the run's, the set and its version, the cell-type map."""
    extra = {"cell_type_map": dict(sorted(cell_type_map.items()))} if sig.cell_type_specific else {}
    return {**params, "signature": sig.name, "signature_version": sig.version, **extra}


def _on_cluster(scheduler: str, slurm: Mapping[str, Any] | None, units: list[list[Path]], job: FileJob,
                sets: list[SignatureSet], todo: dict, stale: dict, inputs_of: Callable, d: StepDirectory
                ) -> list[Path]:
    """Units of work as Dask tasks; their manifest records added here as they finish."""
    from distributed import as_completed

    written = []
    progress = Progress(log, "activity", len(units), unit="files")
    with dask_client(scheduler, slurm) as cluster:
        client = cluster.client
        shared = client.scatter([job, sets], broadcast=True)
        futures = [client.submit(run_unit, shared[0], unit, shared[1], {p: [s.name for s in todo[p]] for p in unit},
                                 {p: {s.name for s in stale[p]} for p in unit}, {p: inputs_of(p) for p in unit},
                                 retries=2, pure=False) for unit in units]
        for fut in as_completed(futures):
            files, records = fut.result()
            d.commit(records)
            written += files
            d.touch()
            progress.update(1)
    return written

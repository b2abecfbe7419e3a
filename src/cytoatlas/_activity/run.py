"""`cytoatlas._activity`: ridge activity of every signature set on every pseudobulk file, with bootstrap CIs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py

from cytoatlas._activity.expression import Pseudobulk
from cytoatlas._activity.files import Centring, _Job, _main_of, _run_unit
from cytoatlas._activity.outputs import (
    SetResult,
)
from cytoatlas._activity.ridge import LAMBDA
from cytoatlas._activity.signatures import BUILT_IN, SignatureSet, load_signatures, set_name
from cytoatlas.cluster import check_scheduler, dask_client, slurm_options
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.lock import DirectoryLock
from cytoatlas.io.manifest import check_output, file_checksum, read_manifest, recorded_checksum, update_manifest
from cytoatlas.progress import Progress, peak_rss_gb

log = logging.getLogger("cytoatlas.activity")
METHODS = ("exact", "permutation")


def activity_path(out: str | os.PathLike, pseudobulk_file: str | os.PathLike, signature: str) -> Path:
    """``{out}/{stem}_{signature}_activity.h5ad`` for a pseudobulk file ``{stem}.h5ad``."""
    return Path(out) / f"{Path(pseudobulk_file).stem}_{signature}_activity.h5ad"


def _kind(path: Path) -> str:
    try:
        with h5py.File(path, "r") as f:
            kind = f["uns/kind"][()] if "uns/kind" in f else b""
    except OSError:
        return ""  # read_pseudobulk says what is wrong with the file
    return kind.decode() if isinstance(kind, bytes) else str(kind)


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
    method: str = "exact",
    n_rand: int = 1000,
    seed: int = 0,
    centre: str = "across",
    cell_type_map: Mapping[str, str] | None = None,
    lambda_: float = LAMBDA,
    skip_existing: bool = False,
    scheduler: str | None = None,
    slurm: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Cytokine and secreted-protein activity (CytoSig, SecAct, LinCytoSig, custom) of pseudobulk files.

    Parameters
    ----------
    files
        Pseudobulk ``.h5ad`` files (outputs of :func:`cytoatlas.pseudobulk`). With ``atlas`` and no files:
        every ``{atlas}_pseudobulk_*.h5ad`` in ``out/pseudobulk``.
    out
        Output directory; with ``atlas`` and no files, the atlas' results directory (outputs go to
        ``out/activity``).
    atlas, registry, data_root
        Registry entry whose ``signature_files`` and ``cell_type_map`` apply.
    signatures
        Set names (``cytosig``, ``secact``, the stem of a signature file such as ``lincytosig``) or paths.
        Default: CytoSig, SecAct and every signature file given.
    signature_files
        Genes x signatures TSV(.gz) files (LinCytoSig or any custom matrix of that form).
    method
        ``exact`` (closed-form permutation z, no random numbers) or ``permutation`` (secactpy's procedure).
    n_rand, seed
        Permutations and seed of ``permutation`` (secactpy's C ``srand`` RNG).
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
        verified, made from the same pseudobulk files (SHA-256) with the same parameters and signature version.
    scheduler, slurm
        Compute the files in parallel on a Dask cluster (``"local:N"``, ``"tcp://host:port"``, ``"slurm"``; see
        :mod:`cytoatlas.cluster`): one task per pseudobulk file, with its bootstrap file when it has one.
        Workers write the activity files; this process records them in the manifest as tasks finish.

    Returns
    -------
    list of Path
        Written ``{stem}_{signature}_activity.h5ad`` files and ``..._activity_ci.csv`` bootstrap tables.
    """
    if method not in METHODS:
        raise CytoatlasError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
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
    if out is None:
        raise CytoatlasError("an output directory is required")
    out = Path(out)
    if not files:
        if atlas is None:
            raise CytoatlasError("give pseudobulk files, or --atlas to take every pseudobulk file of an atlas")
        found = sorted((out / "pseudobulk").glob(f"{atlas.lower()}_pseudobulk_*.h5ad"))
        if not found:
            raise CytoatlasError(f"no {atlas.lower()}_pseudobulk_*.h5ad files in {out / 'pseudobulk'}; run "
                                 f"`cytoatlas pseudobulk --atlas {atlas} --out {out / 'pseudobulk'}` first")
        files, out = found, out / "activity"
    paths = list(dict.fromkeys(Path(f) for f in files))
    for p in paths:
        if not p.is_file():
            raise CytoatlasError(f"{p}: no such file")
    if out.exists() and not out.is_dir():
        raise CytoatlasError(f"output directory {out} is a file")
    sets = signature_sets(signatures, sig_files)
    genes = set().union(*(s.genes for s in sets))

    kinds = {p: _kind(p) for p in paths}
    # a resampled file is computed just before its main file, whose activity file gets its CIs
    order = sorted(paths, key=lambda p: (str(_main_of(p)) if kinds[p] == "resampled" else str(p),
                                         kinds[p] != "resampled"))
    boot_of = {_main_of(p): p for p in paths if kinds[p] == "resampled"}
    params = run_parameters(method, lambda_, centring, n_rand, seed)
    upstream: dict[Path, dict] = {}

    def inputs_of(path: Path) -> list[dict]:
        """The pseudobulk files an output is made from (content hashes, from their manifest when it vouches)."""
        needed = [path] + ([boot_of[path]] if path in boot_of else []) + \
            ([_main_of(path)] if kinds.get(path) == "resampled" else [])
        for p in needed:
            if p not in upstream:
                upstream[p] = upstream_fingerprint(p)
        return [upstream[p] for p in needed]

    def set_params(sig: SignatureSet) -> dict:
        return set_parameters(params, sig, cmap)

    def targets(path: Path, sig: SignatureSet) -> list[Path]:
        return activity_targets(out, path, sig.name, path in boot_of)

    todo: dict[Path, list[SignatureSet]] = {}
    with DirectoryLock(out) as lock:
        entries = read_manifest(out) if skip_existing else {}
        for path in paths:
            todo[path] = [s for s in sets if not skip_existing or any(
                check_output(t, entries.get(t.name), set_params(s), inputs_of(path))[0] != "complete"
                for t in targets(path, s))]
        stale = {path: list(v) for path, v in todo.items()}
        for main_path, res_path in boot_of.items():  # a main file's intervals need its bootstrap results
            if main_path in todo:
                todo[res_path] = [s for s in sets if s in todo[res_path] or s in todo[main_path]]
        written = []
        start = time.perf_counter()
        job = _Job(out, genes, centring, method, n_rand, seed, lambda_, cmap, params, set_params, targets)
        # units of work: a file, after its bootstrap file when it has one (whose results give its intervals)
        units = [[p for p in ([boot_of[path]] if path in boot_of else []) + [path] if todo[p]]
                 for path in order if kinds[path] != "resampled" or _main_of(path) not in paths]
        for path in order:
            if not todo[path]:
                log.info("%s: activity outputs exist, verify and are current; skipped", path.name)
        units = [u for u in units if u]
        if scheduler is not None and units:
            written = _on_cluster(scheduler, slurm, units, job, sets, todo, stale, inputs_of, lock)
        else:
            # the inputs' checksums (needed only for the manifest) are computed on a second thread meanwhile
            with ThreadPoolExecutor(1, thread_name_prefix="cytoatlas-hash") as hasher:
                for unit in units:
                    boot: dict[Path, tuple[Pseudobulk, list[SetResult]]] = {}
                    for path in unit:
                        inputs = hasher.submit(inputs_of, path)
                        files, records = job.one_file(path, todo[path], {s.name for s in stale[path]}, boot,
                                                      inputs.result)
                        update_manifest(out, records)
                        written += files
                        lock.touch()
    log.info("activity of %d file(s) x %d signature set(s) in %.1f s, peak memory %.2f GB", len(paths), len(sets),
             time.perf_counter() - start, peak_rss_gb())
    return written


def run_parameters(method: str, lambda_: float, centring: Centring, n_rand: int, seed: int) -> dict:
    """What every activity output of a run depends on, besides its signature set."""
    params = {"method": method, "lambda": lambda_, "centre": str(centring)}
    if method == "permutation":
        params.update(n_rand=n_rand, seed=seed, rng="C srand/rand (glibc), cumulative Fisher-Yates")
    return params


def set_parameters(params: dict, sig: SignatureSet, cell_type_map: Mapping[str, str]) -> dict:
    """A (file, set) output's recorded parameters: the run's, the set and its version, the cell-type map."""
    extra = {"cell_type_map": dict(sorted(cell_type_map.items()))} if sig.cell_type_specific else {}
    return {**params, "signature": sig.name, "signature_version": sig.version, **extra}


def activity_targets(out: Path, pseudobulk_file: Path, signature: str, with_ci: bool) -> list[Path]:
    """The activity file of (file, set) and, for a main file with a bootstrap file, its interval table."""
    main = activity_path(out, pseudobulk_file, signature)
    return [main] + ([main.with_name(main.stem + "_ci.csv")] if with_ci else [])


def upstream_fingerprint(path: Path) -> dict:
    """An input pseudobulk file's name, size and checksum (taken from its manifest if size and mtime agree)."""
    st = path.stat()
    entry = read_manifest(path.parent).get(path.name)
    checksum = None
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        checksum = recorded_checksum(entry)
    return {"name": path.name, "size": st.st_size, "checksum": checksum or file_checksum(path)}


def _on_cluster(scheduler: str, slurm: Mapping[str, Any] | None, units: list[list[Path]], job: _Job,
                sets: list[SignatureSet], todo: dict, stale: dict, inputs_of: Callable, lock) -> list[Path]:
    """Units of work as Dask tasks; their manifest records added here as they finish."""
    from distributed import as_completed

    written = []
    progress = Progress(log, "activity", len(units), unit="files")
    with dask_client(scheduler, slurm) as cluster:
        client = cluster.client
        shared = client.scatter([job, sets], broadcast=True)
        futures = [client.submit(_run_unit, shared[0], unit, shared[1], {p: [s.name for s in todo[p]] for p in unit},
                                 {p: {s.name for s in stale[p]} for p in unit}, {p: inputs_of(p) for p in unit},
                                 retries=2, pure=False) for unit in units]
        for fut in as_completed(futures):
            files, records = fut.result()
            update_manifest(job.out, records)
            written += files
            lock.touch()
            progress.update(1)
    return written

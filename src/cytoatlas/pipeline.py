"""`cytoatlas run` (pseudobulk, then activity, resumable) and `cytoatlas status` (every output verified).

A results directory per atlas holds ``pseudobulk/`` and ``activity/``, each with its ``manifest.json``;
``status`` also judges every validation, comparison and report directory it finds beside them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cytoatlas._harness.status import STATES, StatusRow, directory_status, step_directories
from cytoatlas._harness.steps import ACTIVITY, CELLS, PSEUDOBULK
from cytoatlas.cluster import check_scheduler, dask_client, slurm_options
from cytoatlas.errors import CytoatlasError
from cytoatlas.io import layout
from cytoatlas.io.results import read_header
from cytoatlas.options import ActivityOptions, PseudobulkOptions
from cytoatlas.registry import AtlasConfig, get_atlas, load_registry, load_slurm_options

log = logging.getLogger("cytoatlas")
__all__ = ["STATES", "atlas_status", "run", "status"]


def run(
    atlas: str | AtlasConfig,
    out: str | os.PathLike,
    *,
    registry: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    levels: Sequence[str] | None = None,
    resume: bool = False,
    pseudobulk_options: PseudobulkOptions | Mapping | None = None,
    activity_options: ActivityOptions | Mapping | None = None,
    cells_options: Mapping | None = None,
    scheduler: str | None = None,
    slurm: Mapping | None = None,
) -> list[Path]:
    """Pseudobulk, then activity of every pseudobulk file, for one atlas into ``out/pseudobulk`` and
    ``out/activity``. Outputs that are current (see :mod:`cytoatlas.io.manifest`) are kept, so a second run
    only does what is missing or stale; ``resume`` also continues an interrupted pass from its checkpoint.

    ``pseudobulk_options`` go to :func:`cytoatlas.pseudobulk` (:class:`~cytoatlas.options.PseudobulkOptions`:
    batch_size, n_bootstrap, bootstrap_seed, ...), ``activity_options`` to :func:`cytoatlas.activity`
    (:class:`~cytoatlas.options.ActivityOptions`: signatures, method, centre, ...; without signature_files, the
    registry entry's); each may be a mapping of those fields. A ``scheduler`` (and ``slurm``) runs both steps on
    one Dask cluster (see :mod:`cytoatlas.cluster`); in ``pseudobulk_options`` it is taken too.
    ``cells_options`` (off by default: ``None``) adds the per-cell step, :func:`cytoatlas.cells` into
    ``out/cells``, with those options (its current outputs are kept too).
    """
    from cytoatlas._activity import activity
    from cytoatlas._pseudobulk import pseudobulk

    cfg = atlas if isinstance(atlas, AtlasConfig) else get_atlas(atlas, registry, data_root)
    out = Path(out)
    if isinstance(pseudobulk_options, Mapping):  # the scale-out options may come with the pseudobulk's
        pseudobulk_options = dict(pseudobulk_options)
        scheduler = pseudobulk_options.pop("scheduler", scheduler)
        slurm = pseudobulk_options.pop("slurm", slurm)
    if isinstance(activity_options, Mapping):
        activity_options = {k: v for k, v in activity_options.items() if k not in ("scheduler", "slurm")}
        activity_options.setdefault("signature_files", None)
    pb = PseudobulkOptions.of(pseudobulk_options).kwargs()
    act_options = ActivityOptions.of(activity_options)
    act = act_options.kwargs()
    if act_options.signature_files is None:
        act["signature_files"] = cfg.signature_files
    act["cell_type_map"] = {**dict(cfg.cell_type_map), **dict(act_options.cell_type_map or {})}
    _require_built_in_sets(act_options.signatures)
    with contextlib.ExitStack() as stack:
        if scheduler is not None:  # one cluster for both steps: started once, reached by its address
            check_scheduler(scheduler)
            slurm = slurm_options(load_slurm_options(registry), slurm) if scheduler == "slurm" else None
            cluster = stack.enter_context(dask_client(scheduler, slurm))
            scheduler = cluster.client.scheduler.address
        paths = pseudobulk(cfg, layout.pseudobulk_dir(out), levels=levels, skip_existing=True, resume=resume,
                           scheduler=scheduler, **pb)
        paths = paths + activity([p for p in paths if p.exists()], layout.activity_dir(out), skip_existing=True,
                                 scheduler=scheduler, **act)
        if cells_options is not None:
            from cytoatlas._cells import cells

            paths += cells(cfg, out, resume=resume, skip_existing=True, scheduler=scheduler, **dict(cells_options))
        return paths


def _require_built_in_sets(signatures: Sequence[str] | None) -> None:
    """Fail before the pass, not after it, when CytoSig or SecAct files are wanted and cannot be found."""
    from cytoatlas._activity.signature_data import signature_data_file
    from cytoatlas._activity.signatures import BUILT_IN

    for name in signatures or BUILT_IN:  # the default sets include both
        if str(name).lower() in BUILT_IN:
            signature_data_file(BUILT_IN[str(name).lower()][0])


def _shape(path: Path) -> str:
    try:
        return " x ".join(map(str, read_header(path, var_columns=()).shape))
    except CytoatlasError:
        return ""


def atlas_status(cfg: AtlasConfig, out: str | os.PathLike, *, verify: bool = False,
                 pseudobulk: PseudobulkOptions | Mapping | None = None,
                 activity: ActivityOptions | Mapping | None = None) -> list[dict]:
    """One row per expected output of ``cfg`` in ``out`` (its results directory): atlas, level, step, file,
    state (complete / missing / stale / corrupt / running), reason, shape, size and time written.

    Staleness is judged against the options given here (the defaults of ``cytoatlas run``); the activity's
    signature files are the registry entry's and ``activity.signature_files``.
    """
    pb_options, act_options = PseudobulkOptions.of(pseudobulk), ActivityOptions.of(activity)
    n_bootstrap = pb_options.n_bootstrap
    from cytoatlas._activity import Centring, run_parameters, set_parameters, signature_sets
    from cytoatlas._pseudobulk import level_parameters
    from cytoatlas.io.fingerprint import file_fingerprint
    from cytoatlas.io.lock import lock_is_live, read_lock
    from cytoatlas.io.manifest import check_output, upstream_fingerprint

    out = Path(out)
    pb_dir, act_dir = layout.pseudobulk_dir(out), layout.activity_dir(out)
    fingerprint = file_fingerprint(cfg.h5ad) if cfg.h5ad.is_file() else None
    kinds = layout.pseudobulk_kinds(n_bootstrap)
    pb_entries, act_entries = _entries(pb_dir), _entries(act_dir)
    running = {d: lock_is_live(read_lock(d)) for d in (pb_dir, act_dir)}
    sets = signature_sets(act_options.signatures,
                          [*cfg.signature_files, *map(Path, act_options.signature_files or ())])
    cmap = {**dict(cfg.cell_type_map), **dict(act_options.cell_type_map or {})}
    params = run_parameters(act_options.method, act_options.lambda_, Centring.parse(act_options.centre),
                            act_options.n_rand, act_options.permutation_seed)
    rows = []

    def add(level: str, step: str, path: Path, entries: dict, state: tuple[str, str]) -> None:
        st, reason = state
        if st != "complete" and running[path.parent]:
            st, reason = "running", "a live run holds this directory"
        rows.append(_row(cfg.name, level, step, path, st, reason, entries.get(path.name)))

    for lev in cfg.levels:
        lp = level_parameters(cfg, lev, n_bootstrap, pb_options.bootstrap_seed, pb_options.min_cells,
                              pb_options.min_samples)
        paths = layout.pseudobulk_paths(pb_dir, cfg.name, lev.name, kinds)
        for kind in kinds:
            state = check_output(paths[kind], pb_entries.get(paths[kind].name), {**lp, "kind": kind},
                                 None if fingerprint is None else [fingerprint], verify, PSEUDOBULK.algorithm)
            if state[0] == "complete" and fingerprint is None:
                state = ("complete", f"atlas file {cfg.h5ad} not found: inputs not checked")
            add(lev.name, f"pseudobulk:{kind}", paths[kind], pb_entries, state)
        for kind in kinds:
            pb = paths[kind]
            needed = layout.activity_inputs(pb, kinds)
            inputs = [upstream_fingerprint(p) for p in needed] if all(p.is_file() for p in needed) else None
            for sig in sets:
                with_ci = kind == "celltype" and "resampled" in kinds
                for target in layout.activity_targets(act_dir, pb, sig.name, with_ci):
                    entry = act_entries.get(target.name)
                    state = check_output(target, entry, set_parameters(params, sig, cmap),
                                         inputs, verify, ACTIVITY.algorithm)
                    if state[0] == "complete" and inputs is None:
                        state = ("stale", "its pseudobulk input is missing")
                    step = layout.parse(target).step
                    add(lev.name, f"{step}:{kind}:{sig.name}", target, act_entries, state)
    rows += _cells_status(cfg, out, fingerprint, verify)
    return [r.as_dict() for r in rows]


def _entries(directory: Path) -> dict[str, dict]:
    """A results directory's manifest entries; unreadable, an error (its outputs would show as unrecorded)."""
    from cytoatlas.io.manifest import ManifestError, read_manifest

    try:
        return read_manifest(directory, strict=True)
    except ManifestError as e:
        raise CytoatlasError(f"{e}; rerun `cytoatlas run`, which recomputes them") from None


def _row(atlas: str, level: str, step: str, path: Path, state: str, reason: str, entry: Mapping | None) -> StatusRow:
    """A status row of an atlas' output; its shape, size and time written when it is complete."""
    done = state == "complete"
    entry = entry or {}
    return StatusRow(atlas=atlas, level=level, step=step, file=str(path), state=state, reason=reason,
                     shape=_shape(path) if done and path.suffix == ".h5ad" else "",
                     size=entry.get("size", 0) if done else 0, written=entry.get("written", "") if done else "")


def _cells_status(cfg: AtlasConfig, out: Path, fingerprint: dict | None, verify: bool) -> list[StatusRow]:
    """Rows for the per-cell outputs (``cytoatlas cells``) recorded in ``out/cells``: each checked against its
    record and the atlas file; an activity file whose run is still going is ``running``."""
    from cytoatlas.io.lock import lock_is_live, read_lock
    from cytoatlas.io.manifest import check_output

    directory = layout.cells_dir(out)
    entries = {k: v for k, v in _entries(directory).items() if v.get("step") == CELLS.name
               and v.get("atlas") == cfg.name}
    running = lock_is_live(read_lock(directory)) if directory.is_dir() else False
    rows = []
    for name, entry in sorted(entries.items()):
        path = directory / name
        st, reason = check_output(path, entry, None, None if fingerprint is None else [fingerprint], verify,
                                  CELLS.algorithm)
        if st != "complete" and running:
            st, reason = "running", "a live run holds this directory"
        rows.append(_row(cfg.name, "", f"cells:{entry.get('kind')}:{entry.get('signature')}", path, st, reason,
                         entry))
    return rows


def status(atlases: Sequence[str] | None, out: str | os.PathLike, *, registry: str | os.PathLike | None = None,
           data_root: str | os.PathLike | None = None, **options) -> list[dict]:
    """:func:`atlas_status` of each atlas (default: every registered atlas with a directory in ``out``), then
    the state of every step directory (validation, comparison, report) in ``out`` or up to two levels below it
    (see :func:`cytoatlas._harness.directory_status`).

    ``out`` is the results root (``out/<atlas>/pseudobulk``); for a single atlas it may also be that atlas'
    own results directory (one that holds ``pseudobulk/``), and it may be a validation or comparison directory.
    """
    out = Path(out)
    if not out.is_dir():
        raise CytoatlasError(f"results directory {out} does not exist")
    names = list(atlases) if atlases else sorted(n for n in load_registry(registry, data_root) if (out / n).is_dir())
    steps = step_directories(out)
    if not names and not steps:
        raise CytoatlasError(f"no atlas results in {out} (expected {out}/<atlas>/pseudobulk), and no validation or "
                             "comparison directory; name an atlas with --atlas")
    rows = []
    for name in names:
        cfg = get_atlas(name, registry, data_root)
        own = len(names) == 1 and layout.pseudobulk_dir(out).is_dir() and not (out / name).is_dir()
        root = out if own else out / name
        rows += atlas_status(cfg, root, **options)
    for directory in steps:
        rows += [r.as_dict() for r in directory_status(directory, verify=options.get("verify", False))]
    return rows

"""The `cytoatlas` command: a thin layer over the Python API, one subcommand per verb."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cytoatlas import defaults
from cytoatlas.errors import CytoatlasError
from cytoatlas.options import ActivityOptions, Method, PseudobulkOptions, Test, Values, choices


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="user registry TOML adding or overriding atlases")
    p.add_argument("--data-root", help="root for relative atlas paths (default: $CYTOATLAS_DATA_ROOT)")


def _signature_dir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signature-dir", metavar="DIR",
                   help="directory holding secactpy 0.3.1's CytoSig.tsv.gz and SecAct.tsv.gz (default: "
                   "$CYTOATLAS_SIGNATURE_DIR, else an installed secactpy, else `cytoatlas signatures fetch`'s cache)")


@contextlib.contextmanager
def _signature_dir(args: argparse.Namespace):
    """``--signature-dir`` as ``$CYTOATLAS_SIGNATURE_DIR`` for the command (Dask workers inherit it too)."""
    from cytoatlas._activity.signature_data import SIGNATURE_DIR_ENV

    value = getattr(args, "signature_dir", None)
    if not value:
        yield
        return
    old = os.environ.get(SIGNATURE_DIR_ENV)
    os.environ[SIGNATURE_DIR_ENV] = str(Path(value).absolute())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SIGNATURE_DIR_ENV, None)
        else:
            os.environ[SIGNATURE_DIR_ENV] = old


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE,
                   help=f"cells per block read (default {defaults.BATCH_SIZE})")
    p.add_argument("--n-bootstrap", type=int, default=defaults.N_BOOTSTRAP,
                   help=f"donor resamples per cell type (default {defaults.N_BOOTSTRAP})")
    p.add_argument("--bootstrap-seed", "--seed", dest="bootstrap_seed", type=int, default=defaults.BOOTSTRAP_SEED,
                   help=f"seed of the donor bootstrap (default {defaults.BOOTSTRAP_SEED}; --seed is its old name)")
    p.add_argument("--min-cells", type=int, default=defaults.MIN_CELLS,
                   help=f"smallest group kept (default {defaults.MIN_CELLS} cells)")
    p.add_argument("--min-samples", type=int, default=defaults.MIN_SAMPLES,
                   help=f"units needed for a bootstrap (default {defaults.MIN_SAMPLES})")
    p.add_argument("--threads", type=int, help="threads decompressing the counts (default: all usable cores)")


def _scheduler_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out (Dask)")
    g.add_argument("--scheduler", help="local:N (N worker processes), tcp://HOST:PORT (a running Dask scheduler) "
                   "or slurm (a dask-jobqueue SLURMCluster); default: this process")
    g.add_argument("--slurm-queue", help="SLURM partition")
    g.add_argument("--slurm-account", help="SLURM account")
    g.add_argument("--slurm-cores", type=int, help="cores per SLURM job")
    g.add_argument("--slurm-memory", help="memory per SLURM job, e.g. 32GB")
    g.add_argument("--slurm-walltime", help="time limit per SLURM job, e.g. 02:00:00")
    g.add_argument("--slurm-jobs", type=int, help="SLURM jobs (workers) to start")


def _scheduler_options(args: argparse.Namespace) -> dict:
    if not hasattr(args, "scheduler"):  # a subcommand without scale-out options (status)
        return {}
    slurm = {k: getattr(args, f"slurm_{k}") for k in ("queue", "account", "cores", "memory", "walltime", "jobs")}
    return {"scheduler": args.scheduler, "slurm": {k: v for k, v in slurm.items() if v is not None}}


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoint (outputs identical to an uninterrupted run)")
    p.add_argument("--checkpoint-every", type=float, default=defaults.CHECKPOINT_EVERY, metavar="SECONDS",
                   help=f"seconds between checkpoints of the pass (default {defaults.CHECKPOINT_EVERY:g}; also on "
                   "SIGTERM)")


def _activity_args(p: argparse.ArgumentParser, old_seed_flag: str = "--seed") -> None:
    p.add_argument("--signatures", help="comma-separated sets (default: cytosig, secact and every signature file)")
    p.add_argument("--signature-file", action="append", metavar="TSV",
                   help="genes x signatures TSV(.gz), e.g. LinCytoSig; repeatable")
    p.add_argument("--method", choices=choices(Method), default=defaults.METHOD,
                   help="exact: closed-form permutation z (default); permutation: secactpy's procedure")
    p.add_argument("--n-rand", type=int, default=defaults.N_RAND,
                   help=f"permutations for --method permutation ({defaults.N_RAND})")
    p.add_argument("--permutation-seed", old_seed_flag, dest="permutation_seed", type=int,
                   default=defaults.PERMUTATION_SEED, help=f"seed of the permutations of --method permutation "
                   f"(secactpy's default {defaults.PERMUTATION_SEED}; {old_seed_flag} is its old name)")
    p.add_argument("--centre", default=defaults.CENTRE,
                   help="'across' (default) or 'within:COLUMN', e.g. within:cell_type for sample x cell type files")
    p.add_argument("--cell-type-map", action="append", metavar="LABEL=CELLTYPE",
                   help="map an atlas label to a LinCytoSig cell type; repeatable")
    p.add_argument("--lambda", dest="lambda_", type=float, default=defaults.LAMBDA,
                   help=f"ridge penalty ({defaults.LAMBDA:g})")
    _signature_dir_args(p)


def _atlas_or_file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE.h5ad",
                   help="a dataset file: a CELLxGENE-schema .h5ad runs with no registry entry (one of the file's "
                   "stem overrides what the schema gives)")
    p.add_argument("--atlas", help="registry name (see `cytoatlas atlases`) or the path of an .h5ad file")


def _atlas(args: argparse.Namespace) -> str:
    """The atlas named: ``--atlas`` or the positional file (not both)."""
    if args.atlas and args.file:
        raise CytoatlasError(f"name the atlas once: --atlas {args.atlas} or the file {args.file}, not both")
    if not args.atlas and not args.file:
        raise CytoatlasError("name an atlas: --atlas NAME (see `cytoatlas atlases`) or a dataset file FILE.h5ad")
    return args.atlas or args.file


def _pseudobulk(args: argparse.Namespace) -> None:
    from cytoatlas._pseudobulk import pseudobulk

    levels = [s.strip() for s in args.levels.split(",") if s.strip()] if args.levels else None
    paths = pseudobulk(_atlas(args), args.out, registry=args.registry, data_root=args.data_root, levels=levels,
                       skip_existing=args.skip_existing, resume=args.resume, **_pseudobulk_options(args).kwargs(),
                       **_scheduler_options(args))
    print("\n".join(map(str, paths)))


def _pseudobulk_options(args: argparse.Namespace) -> PseudobulkOptions:
    return PseudobulkOptions(batch_size=args.batch_size, n_bootstrap=args.n_bootstrap,
                             bootstrap_seed=args.bootstrap_seed, min_cells=args.min_cells,
                             min_samples=args.min_samples,
                             checkpoint_every=getattr(args, "checkpoint_every", defaults.CHECKPOINT_EVERY),
                             threads=getattr(args, "threads", None))


def _activity_options(args: argparse.Namespace) -> ActivityOptions:
    return ActivityOptions(signatures=args.signatures, signature_files=args.signature_file or (), method=args.method,
                           n_rand=args.n_rand, permutation_seed=args.permutation_seed, centre=args.centre,
                           cell_type_map=_pairs(args.cell_type_map), lambda_=args.lambda_)


def _cells_options(args: argparse.Namespace) -> dict | None:
    """``cytoatlas run --cells``: the per-cell step with the run's signature sets and lambda."""
    if not getattr(args, "cells", False):
        return None
    sets = [s for s in args.signatures.split(",") if s.strip()] if args.signatures else None
    return {"signatures": sets, "signature_files": args.signature_file or (), "lambda_": args.lambda_,
            "batch_size": args.batch_size, "threads": args.threads}


def _run(args: argparse.Namespace) -> None:
    from cytoatlas.pipeline import run

    levels = [s.strip() for s in args.levels.split(",") if s.strip()] if args.levels else None
    paths = run(_atlas(args), args.out, registry=args.registry, data_root=args.data_root, levels=levels,
                resume=args.resume, pseudobulk_options=_pseudobulk_options(args),
                activity_options=_activity_options(args), cells_options=_cells_options(args),
                **_scheduler_options(args))
    print("\n".join(map(str, paths)))


def _status(args: argparse.Namespace) -> int:
    import json

    from cytoatlas.pipeline import STATES, status

    if not args.atlas and not args.all:
        raise CytoatlasError("name an atlas with --atlas, or --all for every atlas with results in --out")
    rows = status([args.atlas] if args.atlas else None, args.out, registry=args.registry, data_root=args.data_root,
                  verify=args.verify, pseudobulk=_pseudobulk_options(args), activity=_activity_options(args))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            detail = r["shape"] or r["reason"]
            print(f"{r['state']:<9} {r['atlas']:<16} {r['level']:<14} {r['step']:<32} {Path(r['file']).name}"
                  f"{'  ' + detail if detail else ''}{'  ' + r['written'] if r['written'] else ''}")
        counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
        print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" ({len(rows)} outputs)")
    return 0 if all(r["state"] == "complete" for r in rows) else 1


def _atlases(args: argparse.Namespace) -> None:
    from cytoatlas.registry import atlas_from_mapping, load_registry

    for name, e in sorted(load_registry(args.registry, args.data_root).items()):
        entry = e["entry"]
        try:
            path = atlas_from_mapping(name, entry, e["base_dir"], e["data_root"]).h5ad
            where = f"{path} ({'found' if path.exists() else 'missing'})"
        except CytoatlasError as e:
            where = f"{entry.get('h5ad')} ({e})"
        levels = ", ".join(f"{k}={v}" for k, v in entry.get("levels", {}).items())
        print(f"{name}\n  file: {where}\n  sample: {entry.get('sample_col')}  levels: {levels}")


def _pairs(items: Sequence[str] | None, flag: str = "--cell-type-map", form: str = "LABEL=CELLTYPE") -> dict[str, str]:
    out = {}
    for item in items or []:
        label, sep, target = item.partition("=")
        if not sep or not label or not target:
            raise CytoatlasError(f"{flag} wants {form}, got {item!r}")
        out[label] = target
    return out


def _joined(values: Sequence[str] | None) -> str | None:
    """A repeatable list option as one comma-separated value, passed through to the step (which checks it)."""
    return None if values is None else ",".join(values)


def _cell_types(args: argparse.Namespace) -> None:
    from cytoatlas.celltypes import cell_ontology, lineages, map_labels
    from cytoatlas.celltypes.units import lineage_of

    labels = list(args.labels)
    if args.file:
        try:
            labels += [ln.strip() for ln in Path(args.file).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise CytoatlasError(f"cannot read labels from {args.file}: {e}") from None
    if not labels:
        raise CytoatlasError("give cell-type labels (arguments or --file FILE, one per line)")
    table = map_labels(labels)
    short = lineages()
    print(f"# Cell Ontology {cell_ontology().version} ({cell_ontology().source})")
    print("label\tcl_id\tcl_name\tsource\tlineage\tcandidates")
    for r in table.itertuples(index=False):
        lineage = short.get(lineage_of(r.cl_id) or "", "") if r.cl_id else ""
        print("\t".join([r.cell_type, r.cl_id, r.cl_name, r.source, lineage, r.candidates]))


def _resolution_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolution", choices=("fine", "lineage", "both"), default="both",
                   help="cell types across atlases: fine (each label at the finest Cell Ontology term the other "
                        "atlases hold), lineage (T, CD4 T, B, monocyte, ... and tissue compartments) or both")


def _validate(args: argparse.Namespace) -> None:
    from cytoatlas._validate import validate

    # values are passed through as given: the step checks them (one validation path for the CLI and Python)
    paths = validate(args.atlas, args.out, results=args.results, registry=args.registry, data_root=args.data_root,
                     levels=args.levels, signatures=args.signatures, min_samples=args.min_samples,
                     min_cell_types=args.min_cell_types, n_bootstrap=args.n_bootstrap,
                     bootstrap_seed=args.bootstrap_seed, target_genes=args.target_gene,
                     scatter_targets=_joined(args.scatter), figures=not args.no_figures, resolution=args.resolution,
                     force=args.force, composition_level=args.composition_level)
    print("\n".join(map(str, paths)))


def _compare(args: argparse.Namespace) -> None:
    from cytoatlas._compare import compare

    paths = compare(args.atlas, args.out, results=args.results, registry=args.registry, data_root=args.data_root,
                    levels=args.levels, signatures=args.signatures, by=args.by, reference=args.reference,
                    groups=args.groups, continuous=_joined(args.continuous), covariates=args.covariates,
                    paired_by=args.paired_by, test=args.test,
                    min_group_size=args.min_group_size, figures=not args.no_figures,
                    all_figures=args.all_figures, resolution=args.resolution, force=args.force)
    print("\n".join(map(str, paths)))


def _groundtruth(args: argparse.Namespace) -> None:
    from cytoatlas._groundtruth import groundtruth

    paths = groundtruth(args.atlas, args.out, column=args.perturbation, control=args.control,
                        treatments=args.treatments, results=args.results, registry=args.registry,
                        data_root=args.data_root, levels=args.levels, signatures=args.signatures,
                        aliases=args.alias, min_donors=args.min_donors,
                        crosstalk_threshold=args.crosstalk_threshold, figures=not args.no_figures, force=args.force)
    print("\n".join(map(str, paths)))


def _report(args: argparse.Namespace) -> None:
    from cytoatlas._report import report

    extra = {"groundtruth": args.groundtruth} if args.groundtruth else {}
    print(report(args.out, title=args.title, max_rows=args.max_rows, compare=args.compare, cells=args.cells or (),
                 **extra))


def _activity(args: argparse.Namespace) -> None:
    from cytoatlas._activity import activity

    # with --atlas and no files, --out is the atlas' results directory (its pseudobulk/ read, activity/ written)
    files, out, results = (args.files, args.out, None) if args.files or not args.atlas else (None, None, args.out)
    paths = []
    if files:  # bulk input (tables, AnnData files that are not our pseudobulk) is normalised and regressed here
        from cytoatlas._activity.bulk import bulk_activity, is_bulk_h5ad, is_table

        # an .h5ad that is not our pseudobulk is bulk input only with --values: without, it is the error it was (a
        # cells x genes atlas given by mistake is not densified)
        bulk = [f for f in files if is_table(f) or (args.values is not None and is_bulk_h5ad(f))]
        files = [f for f in files if f not in bulk]
        if bulk:
            paths += bulk_activity(bulk, out, values=args.values, gene_symbols=args.gene_symbols,
                                   **_activity_options(args).kwargs())
        elif args.values is not None:
            raise CytoatlasError("--values is for bulk input (tables, AnnData files that are not cytoatlas "
                                 "pseudobulk); pseudobulk files are log1p CPM already")
    if files or not paths:
        paths += activity(files, out, atlas=args.atlas, results=results, registry=args.registry,
                          data_root=args.data_root, skip_existing=args.skip_existing,
                          **_activity_options(args).kwargs(), **_scheduler_options(args))
    print("\n".join(map(str, paths)))


def _signatures(args: argparse.Namespace) -> None:
    from cytoatlas._activity import BUILT_IN, load_signatures

    if args.action == "fetch":
        from cytoatlas._activity.signature_fetch import fetch_signature_data

        for path in fetch_signature_data(args.signature_dir, force=args.force):
            print(path)
        return

    files = list(args.signature_file or [])
    if args.atlas:
        from cytoatlas.registry import get_atlas

        files = [*get_atlas(args.atlas, args.registry, args.data_root).signature_files, *files]
    print(f"{'name':<14}{'genes':>8}{'signatures':>12}{'groups':>8}  source")
    for source in [*BUILT_IN, *files]:
        d = load_signatures(source).describe()
        print(f"{d['name']:<14}{d['n_genes']:>8,}{d['n_signatures']:>12,}{d['n_groups']:>8,}  {d['source']} "
              f"({d['version']})")
    print("LinCytoSig is not redistributable: add its TSV with --signature-file or `signature_files` in a registry.")


def _demo(args: argparse.Namespace) -> None:
    from cytoatlas.demo import run_demo

    for path in run_demo(args.out, n_cells=args.n_cells, batch_size=args.batch_size,
                         n_bootstrap=args.n_bootstrap, bootstrap_seed=args.bootstrap_seed,
                         min_cells=args.min_cells, min_samples=args.min_samples):
        print(path)


def _index(args: argparse.Namespace) -> None:
    from cytoatlas._api import index

    kinds = [] if args.expression == "none" else [s.strip() for s in args.expression.split(",") if s.strip()]
    print(index(args.out, args.db, expression=kinds, force=args.force, verify=args.verify))


def _serve(args: argparse.Namespace) -> None:
    from cytoatlas._api import serve

    serve(args.db, host=args.host, port=args.port, token_file=args.token_file, access_log=not args.no_access_log,
          log_level="warning" if args.quiet else "info", workers=args.workers)


def _cells(args: argparse.Namespace) -> None:
    from cytoatlas._cells import cells

    sets = [s for s in args.signatures.split(",") if s.strip()] if args.signatures else None
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else ()
    paths = cells(_atlas(args), args.out, registry=args.registry, data_root=args.data_root, signatures=sets,
                  signature_files=args.signature_file or (), layers=layers, embedding=args.embedding,
                  batch_size=args.batch_size, lambda_=args.lambda_, threads=args.threads, resume=args.resume,
                  skip_existing=args.skip_existing, checkpoint_every=args.checkpoint_every, **_scheduler_options(args))
    print("\n".join(map(str, paths)))


def build_parser() -> argparse.ArgumentParser:
    """The ``cytoatlas`` command's parser: one subcommand per step."""
    parser = argparse.ArgumentParser(prog="cytoatlas", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pseudobulk", help="every pseudobulk output of an atlas in one streaming pass")
    _atlas_or_file_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--levels", help="comma-separated levels (default: all)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave levels whose outputs exist and match this input and these parameters")
    _registry_args(p)
    _run_args(p)
    _checkpoint_args(p)
    _scheduler_args(p)
    p.set_defaults(func=_pseudobulk)

    p = sub.add_parser("run", help="pseudobulk then activity for an atlas; keeps what is current, resumable")
    _atlas_or_file_args(p)
    p.add_argument("--out", required=True, help="the atlas' results directory (OUT/pseudobulk, OUT/activity)")
    p.add_argument("--levels", help="comma-separated levels (default: all)")
    _registry_args(p)
    _run_args(p)
    _checkpoint_args(p)
    _activity_args(p, old_seed_flag="--perm-seed")
    p.add_argument("--cells", action="store_true", help="also per-cell activity (cytoatlas cells; off by default)")
    _scheduler_args(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("status", help="verify every output: complete / missing / stale / corrupt / running")
    p.add_argument("--atlas", help="one atlas")
    p.add_argument("--all", action="store_true", help="every registered atlas with a directory in --out")
    p.add_argument("--out", required=True, help="results root (OUT/<atlas>/...) or one atlas' results directory")
    p.add_argument("--verify", action="store_true", help="re-hash every file (default: size and manifest only)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _registry_args(p)
    _run_args(p)
    _activity_args(p, old_seed_flag="--perm-seed")
    p.set_defaults(func=_status)

    p = sub.add_parser("cells", help="per-cell CytoSig / SecAct activity of every kept cell (secactpy's method)")
    _atlas_or_file_args(p)
    p.add_argument("--out", required=True, help="the atlas' results directory (files go to OUT/cells)")
    p.add_argument("--signatures", help="comma-separated sets (default: cytosig, secact and every signature file)")
    p.add_argument("--signature-file", action="append", metavar="TSV",
                   help="genes x signatures TSV(.gz), e.g. LinCytoSig; repeatable")
    p.add_argument("--layers", help="extra matrices besides X (the exact z): beta,pvalue")
    p.add_argument("--embedding", help="obsm key of the embedding to subsample (default: the registry's `embedding`, "
                   "else X_umap when present)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=defaults.LAMBDA,
                   help=f"ridge penalty (default {defaults.LAMBDA:g})")
    p.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE,
                   help=f"cells per block read (default {defaults.BATCH_SIZE})")
    p.add_argument("--threads", type=int, help="threads decompressing and scoring (default: all usable cores)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave signature sets whose outputs exist and match this atlas file and these parameters")
    _registry_args(p)
    _checkpoint_args(p)
    _scheduler_args(p)
    p.set_defaults(func=_cells)

    p = sub.add_parser("atlases", help="list the registered atlases")
    _registry_args(p)
    p.set_defaults(func=_atlases)

    p = sub.add_parser("cell-types", help="the Cell Ontology term of cell-type labels, and how it was found")
    p.add_argument("labels", nargs="*", help="cell-type labels as an atlas writes them")
    p.add_argument("--file", help="a file of labels, one per line")
    p.set_defaults(func=_cell_types)

    p = sub.add_parser("activity", help="CytoSig / SecAct / LinCytoSig activity of pseudobulk files")
    p.add_argument("files", nargs="*", help="pseudobulk .h5ad files (default with --atlas: OUT/pseudobulk/*), or "
                   "bulk input: genes x samples tables (.tsv, .csv, .parquet; symbols in the first column) and, "
                   "with --values, samples x genes .h5ad files that are not cytoatlas pseudobulk")
    p.add_argument("--values", choices=choices(Values),
                   help="what bulk input holds (required for it): counts (-> log1p CPM), tpm (-> log2(TPM + 1)) "
                   "or log (already log-normalised)")
    p.add_argument("--gene-symbols", metavar="COLUMN", help="the var column of gene symbols of bulk .h5ad input "
                   "whose var_names are gene ids")
    p.add_argument("--out", required=True, help="output directory (with --atlas and no files: the atlas' "
                   "results directory; outputs go to OUT/activity)")
    p.add_argument("--atlas", help="registry atlas: its pseudobulk files, signature_files and cell_type_map")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave outputs that verify and were made from the same inputs with the same options")
    _activity_args(p)
    _registry_args(p)
    _scheduler_args(p)
    p.set_defaults(func=_activity)

    p = sub.add_parser("signatures", help="list the signature sets: size, genes, source; or fetch CytoSig/SecAct")
    p.add_argument("action", nargs="?", choices=("list", "fetch"), default="list",
                   help="list (default), or fetch: unless the files are already found, download secactpy 0.3.1's "
                   "wheel with pip once and keep its CytoSig and SecAct files (in --signature-dir if given, else "
                   "the cache)")
    p.add_argument("--force", action="store_true", help="fetch even if the files are there")
    _signature_dir_args(p)
    p.add_argument("--signature-file", action="append", metavar="TSV", help="also describe this file; repeatable")
    p.add_argument("--atlas", help="also the signature_files of this registry atlas")
    _registry_args(p)
    p.set_defaults(func=_signatures)

    p = sub.add_parser("validate", help="activity vs own-gene expression within atlases, agreement across atlases")
    p.add_argument("--atlas", action="append", required=True, metavar="NAME",
                   help="atlas to validate (repeat for several: cross-atlas comparisons need two or more)")
    p.add_argument("--out", required=True, help="output directory for tables, figures and manifest")
    p.add_argument("--results", default="results",
                   help="parent of the atlases' results directories, RESULTS/NAME/activity (default: results)")
    p.add_argument("--levels", help="comma-separated levels (default: every level with activity files)")
    p.add_argument("--signatures", help="comma-separated signature sets (default: every set found)")
    p.add_argument("--min-samples", type=int, default=defaults.VALIDATE_MIN_SAMPLES,
                   help=f"fewest samples a correlation needs ({defaults.VALIDATE_MIN_SAMPLES})")
    p.add_argument("--min-cell-types", type=int, default=defaults.VALIDATE_MIN_CELL_TYPES,
                   help="fewest matched cell types a cross-atlas correlation needs "
                   f"({defaults.VALIDATE_MIN_CELL_TYPES})")
    p.add_argument("--n-bootstrap", type=int, default=None,
                   help="donor resamples per rho interval (default: the level's pseudobulk n_bootstrap; 0: none)")
    p.add_argument("--bootstrap-seed", "--seed", dest="bootstrap_seed", type=int, default=None,
                   help="resampling seed (default: the level's pseudobulk bootstrap seed; --seed is its old name)")
    p.add_argument("--target-gene", action="append", metavar="TARGET=GENE",
                   help="map a target to another gene than the shipped table does, e.g. IFN1=IFNB1; repeatable")
    p.add_argument("--scatter", action="append", metavar="TARGET",
                   help="target to draw in the expression vs activity scatters; repeatable (default: top 4)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    _resolution_arg(p)
    p.add_argument("--force", action="store_true", help="recompute everything, even what is current")
    p.add_argument("--composition-level", metavar="LEVEL",
                   help="level whose cell-type fractions adjust the donor-level rho of levels without cell types "
                        "(partial rho; default: each atlas' first level with cell types)")
    _registry_args(p)
    p.set_defaults(func=_validate)

    p = sub.add_parser("compare", help="activity between donor groups or along a covariate, per cell type; "
                       "meta-analysis across atlases")
    p.add_argument("--atlas", action="append", required=True, metavar="NAME",
                   help="atlas to compare (repeat for several: the meta-analysis needs two or more)")
    p.add_argument("--out", required=True, help="output directory for tables, figures and manifest")
    p.add_argument("--results", default="results",
                   help="parent of the atlases' results directories, RESULTS/NAME/activity (default: results)")
    p.add_argument("--levels", help="comma-separated levels (default: every level with sample activity files)")
    p.add_argument("--signatures", help="comma-separated signature sets (default: every set found)")
    p.add_argument("--by", metavar="COLUMN", help="obs column of the groups (a sample column, e.g. disease)")
    p.add_argument("--reference", metavar="VALUE", help="the group the others are compared with (with --by)")
    p.add_argument("--groups", metavar="V1,V2", help="the groups compared with the reference (default: all others)")
    p.add_argument("--continuous", action="append", metavar="COLUMN",
                   help="numeric obs column whose slope is estimated (e.g. age); repeatable")
    p.add_argument("--covariates", metavar="A,B", help="comma-separated obs columns to adjust for (e.g. age,sex)")
    p.add_argument("--paired-by", metavar="COLUMN",
                   help="the column of the unit seen in both groups (e.g. donor): tests per-unit differences")
    p.add_argument("--test", choices=choices(Test), default=defaults.COMPARE_TEST,
                   help="ols (regression, default) or wilcoxon (rank-sum; signed-rank with --paired-by)")
    p.add_argument("--min-group-size", type=int, default=defaults.COMPARE_MIN_GROUP_SIZE,
                   help=f"fewest donors per group ({defaults.COMPARE_MIN_GROUP_SIZE})")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    _resolution_arg(p)
    p.add_argument("--all-figures", action="store_true",
                   help="volcanos and heatmaps of every level (default: of the level of each atlas x set x "
                        "contrast's strongest row, which the report leads with)")
    p.add_argument("--force", action="store_true", help="recompute even when the tables are current")
    _registry_args(p)
    p.set_defaults(func=_compare)

    p = sub.add_parser("groundtruth", help="perturbation ground truth: does each treatment move its own signature "
                       "(per donor and cell type, treated minus the same donor's control)?")
    p.add_argument("--atlas", action="append", required=True, metavar="NAME", help="atlas to check; repeatable")
    p.add_argument("--out", required=True, help="output directory for tables, figures and manifest")
    p.add_argument("--results", default="results",
                   help="parent of the atlases' results directories, RESULTS/NAME/activity (default: results)")
    p.add_argument("--perturbation", required=True, metavar="COLUMN",
                   help="the obs column naming each sample's treatment (a sample column, e.g. cytokine)")
    p.add_argument("--control", required=True, metavar="VALUE", help="its control value (e.g. PBS)")
    p.add_argument("--treatments", metavar="T1,T2", help="the treatments tested (default: every other value)")
    p.add_argument("--alias", action="append", metavar="TREATMENT=SIGNATURE",
                   help="match a treatment to a signature (or alias), before the registry's and the shipped table; "
                        "repeatable")
    p.add_argument("--levels", help="comma-separated levels (default: every level with sample activity files)")
    p.add_argument("--signatures", help="comma-separated signature sets (default: every set found)")
    p.add_argument("--min-donors", type=int, default=defaults.COMPARE_MIN_GROUP_SIZE,
                   help=f"fewest donors with treated and control samples ({defaults.COMPARE_MIN_GROUP_SIZE})")
    p.add_argument("--crosstalk-threshold", type=float, default=0.5,
                   help="Pearson r of signature columns from which a signature is listed as cross-talk (0.5)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--force", action="store_true", help="recompute even when the tables are current")
    _registry_args(p)
    p.set_defaults(func=_groundtruth)

    p = sub.add_parser("report", help="self-contained HTML report of a validation directory")
    p.add_argument("--out", required=True, help="the directory written by `cytoatlas validate` (gets report.html)")
    p.add_argument("--title", help="page title")
    p.add_argument("--max-rows", type=int, default=3000, help="rows shown per table (files hold all; 3000)")
    p.add_argument("--compare", metavar="CDIR",
                   help="a directory written by `cytoatlas compare`: adds its condition comparisons to the report")
    p.add_argument("--groundtruth", metavar="GDIR",
                   help="a directory written by `cytoatlas groundtruth`: adds its perturbation ground truth")
    p.add_argument("--cells", action="append", metavar="RESULTS_DIR",
                   help="an atlas' results directory whose cells/ holds `cytoatlas cells` outputs: adds its per-cell "
                        "activity (embedding figures, top labels) to the report; repeatable")
    p.set_defaults(func=_report)

    p = sub.add_parser("index", help="build or update the results store (DuckDB + Parquet) from the manifests")
    p.add_argument("--out", required=True, help="results directory to index (every manifest.json below it)")
    p.add_argument("--db", help="store file to write (default OUT/cytoatlas.duckdb; matrices in DB_parquet/)")
    p.add_argument("--expression", default="celltype,samples", metavar="KINDS",
                   help="pseudobulk rows whose expression is stored: celltype,samples (default), celltype, none")
    p.add_argument("--force", action="store_true", help="re-read every file")
    p.add_argument("--verify", action="store_true", help="check every new file's checksum (XXH3) against its manifest")
    p.set_defaults(func=_index)

    p = sub.add_parser("serve", help="serve the HTTP API and the web page over a store")
    p.add_argument("--db", required=True, help="store built by `cytoatlas index`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token-file", help="file holding a bearer token required by every route")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1; about one core each)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=_serve)

    p = sub.add_parser("demo", help="build two demo atlases, run every step on each, validate and report")
    p.add_argument("--out", default="cytoatlas_demo", help="directory for the atlas and results")
    p.add_argument("--n-cells", type=int, default=defaults.DEMO_N_CELLS,
                   help=f"demo atlas size (default {defaults.DEMO_N_CELLS})")
    _run_args(p)
    _signature_dir_args(p)
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cytoatlas`` with ``argv`` (default: the command line); returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        with _signature_dir(args):
            code = args.func(args)
    except CytoatlasError as e:
        if args.debug:
            raise
        print(f"cytoatlas: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a directory that cannot be written: one line, not a traceback
        if args.debug:
            raise
        print(f"cytoatlas: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

"""The `cytoatlas` command: a thin layer over the Python API, one subcommand per verb."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cytoatlas.errors import CytoatlasError


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="user registry TOML adding or overriding atlases")
    p.add_argument("--data-root", help="root for relative atlas paths (default: $CYTOATLAS_DATA_ROOT)")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=50_000, help="cells per block read (default 50000)")
    p.add_argument("--n-bootstrap", type=int, default=100, help="donor resamples per cell type (default 100)")
    p.add_argument("--seed", type=int, default=42, help="bootstrap seed (default 42)")
    p.add_argument("--min-cells", type=int, default=10, help="smallest group kept (default 10 cells)")
    p.add_argument("--min-samples", type=int, default=5, help="units needed for a bootstrap (default 5)")


def _pseudobulk(args: argparse.Namespace) -> None:
    from cytoatlas._pseudobulk import pseudobulk

    levels = [s.strip() for s in args.levels.split(",") if s.strip()] if args.levels else None
    paths = pseudobulk(args.atlas, args.out, registry=args.registry, data_root=args.data_root, levels=levels,
                       batch_size=args.batch_size, n_bootstrap=args.n_bootstrap, seed=args.seed,
                       min_cells=args.min_cells, min_samples=args.min_samples,
                       skip_existing=args.skip_existing)
    print("\n".join(map(str, paths)))


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


def _demo(args: argparse.Namespace) -> None:
    from cytoatlas.demo import run_demo

    for path in run_demo(args.out, n_cells=args.n_cells, batch_size=args.batch_size,
                         n_bootstrap=args.n_bootstrap, seed=args.seed, min_cells=args.min_cells,
                         min_samples=args.min_samples):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cytoatlas", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pseudobulk", help="every pseudobulk output of an atlas in one streaming pass")
    p.add_argument("--atlas", required=True, help="registry name (see `cytoatlas atlases`)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--levels", help="comma-separated levels (default: all)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave levels whose outputs exist and match this input and these parameters")
    _registry_args(p)
    _run_args(p)
    p.set_defaults(func=_pseudobulk)

    p = sub.add_parser("atlases", help="list the registered atlases")
    _registry_args(p)
    p.set_defaults(func=_atlases)

    p = sub.add_parser("demo", help="build the demo atlas and run every step on it")
    p.add_argument("--out", default="cytoatlas_demo", help="directory for the atlas and results")
    p.add_argument("--n-cells", type=int, default=50_000, help="demo atlas size (default 50000)")
    _run_args(p)
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except CytoatlasError as e:
        print(f"cytoatlas: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

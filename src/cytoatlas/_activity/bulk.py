"""`cytoatlas activity` on bulk input: genes x samples tables (TSV, CSV, Parquet) and AnnData files that are not
our pseudobulk, normalised as documented (:mod:`cytoatlas._activity.memory`), then regressed and written as the
pseudobulk files' activity is (:func:`cytoatlas.io.layout.activity_path` of the input's stem, recorded in the
directory's manifest).

Parquet is read through DuckDB (a dependency already), so no pyarrow is needed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cytoatlas import defaults
from cytoatlas._activity.memory import activity_of, adata_expression, frame_expression
from cytoatlas._activity.outputs import write_activity
from cytoatlas._activity.run import signature_sets
from cytoatlas._harness import StepDirectory
from cytoatlas._harness.steps import ACTIVITY
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.fingerprint import file_fingerprint
from cytoatlas.io.layout import activity_path
from cytoatlas.options import Method, Values, check_choice, choices

log = logging.getLogger("cytoatlas.activity")
TABLE_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz", ".csv", ".csv.gz", ".parquet")


def is_table(path: str | os.PathLike) -> bool:
    """Whether a path names a genes x samples table (by its suffix)."""
    return str(path).lower().endswith(TABLE_SUFFIXES)


def is_bulk_h5ad(path: str | os.PathLike) -> bool:
    """Whether an ``.h5ad`` is not a ``cytoatlas pseudobulk`` output (no ``uns['kind']`` and ``atlas_stats``)."""
    from cytoatlas.io.h5ad import open_h5ad

    with open_h5ad(path) as f:
        return not ("uns/kind" in f and "uns/atlas_stats" in f)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A genes x samples table: gene symbols in the first column, one numeric column per sample.

    TSV and text files are tab-separated, CSV comma-separated (either may be gzipped); Parquet is read with DuckDB.
    """
    path = Path(path)
    if not path.is_file():
        raise CytoatlasError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            import duckdb

            con = duckdb.connect()
            try:
                df = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
            finally:
                con.close()
            df = df.set_index(df.columns[0])
        else:
            sep = "," if name.endswith((".csv", ".csv.gz")) else "\t"
            df = pd.read_csv(path, sep=sep, index_col=0)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise CytoatlasError(f"{path}: not a readable genes x samples table: {e}") from None
    except Exception as e:  # duckdb's own errors (not a Parquet file, ...)
        raise CytoatlasError(f"{path}: not a readable genes x samples table: {e}") from None
    if df.shape[1] == 0 or df.shape[0] < 2:
        raise CytoatlasError(f"{path}: a genes x samples table needs gene symbols in its first column and one column "
                             f"per sample; read {df.shape[0]} row(s) x {df.shape[1]} column(s)")
    df.index = df.index.astype(str)
    df.columns = df.columns.astype(str)
    return df


def bulk_activity(files: Sequence[str | os.PathLike], out: str | os.PathLike, *, values: Values | None,
                  gene_symbols: str | None = None, signatures: Sequence[str] | None = None,
                  signature_files: Sequence[str | os.PathLike] = (), method: Method = defaults.METHOD,
                  n_rand: int = defaults.N_RAND, permutation_seed: int = defaults.PERMUTATION_SEED,
                  centre: str = defaults.CENTRE, cell_type_map: Mapping[str, str] | None = None,
                  lambda_: float = defaults.LAMBDA) -> list[Path]:
    """Activity of bulk inputs, one activity file per (input, set) in ``out``, named by
    :func:`~cytoatlas.io.layout.activity_path` from the input's stem.

    Parameters
    ----------
    files
        Genes x samples tables (TSV, CSV, Parquet) and AnnData files (samples x genes) other than our pseudobulk.
    out
        Output directory.
    values
        What the inputs hold: ``counts`` (normalised to log1p CPM), ``tpm`` (log2(TPM + 1)) or ``log`` (taken as
        it is). Required for tables (the CLI requires it for AnnData files too); for an AnnData, ``None`` takes an
        integer matrix as counts, else as log.
    gene_symbols
        The var column of gene symbols of AnnData inputs whose var_names are gene ids.
    signatures, signature_files, method, n_rand, permutation_seed, centre, cell_type_map, lambda_
        As :func:`cytoatlas.activity`.
    """
    paths = [Path(f) for f in files]
    if values is not None:
        check_choice("values", values, Values)
    elif any(is_table(p) for p in paths):
        raise CytoatlasError(f"say what the table(s) hold: --values {{{','.join(choices(Values))}}} (counts -> "
                             "log1p CPM, tpm -> log2(TPM + 1), log: already log-normalised)")
    sets = signature_sets(signatures, [Path(f) for f in signature_files])
    written = []
    # every output is recomputed: an unreadable manifest is replaced (with a warning), not an error
    with StepDirectory(out, ACTIVITY, force=True) as d:
        for path in paths:
            if is_table(path):
                pb = frame_expression(read_table(path), values, path.name)
            else:
                import anndata as ad

                pb = adata_expression(ad.read_h5ad(path), values, None, gene_symbols, path.name)
            fingerprint = file_fingerprint(path)
            records = {}
            for sig in sets:
                outputs, res = activity_of(pb, sig, method=method, n_rand=n_rand, permutation_seed=permutation_seed,
                                           centre=centre, lambda_=lambda_, cell_type_map=dict(cell_type_map or {}))
                outputs.uns["input"] = fingerprint
                outputs.uns["values"] = values or "auto"
                target = write_activity(activity_path(d.out, path.name.split(".")[0], sig.name), pb, res,
                                        outputs.layers, outputs.uns, outputs.obs_extra)
                params = {**{k: v for k, v in outputs.uns.items() if k in ("method", "lambda", "centre", "n_rand",
                                                                             "seed", "rng")},
                          "signature": sig.name, "signature_version": sig.version, "values": values or "auto"}
                records.update([d.record(target, params, [fingerprint], file=path.name, signature=sig.name,
                                         kind="bulk")])
                written.append(target)
            d.commit(records)
            d.touch()
            log.info("%s: %d samples x %s", path.name, pb.values.shape[1], ", ".join(s.name for s in sets))
    return written

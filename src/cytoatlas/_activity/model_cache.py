"""Fitted ridge models cached on disk, next to the parsed signature sets.

Every pseudobulk file of an atlas has the same genes, so each of its files meets the same design (the set's
genes that are in the file, in the file's order) and the same fit. For SecAct that fit (standardising the
7,919 x 657 design, ``X'X``, its Cholesky factor and inverse) is most of a file's time, so it is made once and
stored under ``$CYTOATLAS_CACHE/ridge``, keyed by the signature set's cache identity and version, lambda and
the genes used (in order).

A cache file holds the model's arrays as they were computed, so a cached model gives bit-identical results.
It is written under a temporary name and renamed into place; every array carries a CRC-32, and a file that
is unreadable, truncated, of another format or another key, or fails a checksum is ignored and refitted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import zlib
from pathlib import Path

import numpy as np

from cytoatlas._activity.ridge import RidgeModel, standardise_columns
from cytoatlas._activity.signatures import SignatureSet, cache_dir
from cytoatlas.io.durable import atomic_path

log = logging.getLogger("cytoatlas.activity")

_MAGIC = b"CYTOATLAS-RIDGE\n"
# bump when the stored arrays or how they are computed change meaning
_FORMAT = 1
_ARRAYS = ("design", "factor", "inverse", "row_sum", "row_sq")
_MAX_HEADER = 1 << 20


def model_key(sig: SignatureSet, genes_used: np.ndarray, lambda_: float) -> str | None:
    """What a fitted model depends on, as one string; None for a set not loaded through the signature cache."""
    if not sig.cache_key:
        return None
    genes = hashlib.sha256("\0".join(map(str, genes_used)).encode()).hexdigest()
    return f"{_FORMAT}|{sig.name}|{sig.cache_key}|{sig.version}|{float(lambda_)!r}|{len(genes_used)}|{genes}"


def model_path(sig: SignatureSet, key: str) -> Path:
    return cache_dir() / "ridge" / f"{sig.name}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.bin"


def fitted_model(sig: SignatureSet, rows: np.ndarray, genes_used: np.ndarray, lambda_: float) -> RidgeModel:
    """The ridge model of ``sig``'s design rows ``rows`` (standardised), from the cache when it has it.

    Parameters
    ----------
    sig
        The signature set.
    rows
        Indices into ``sig.design`` of the genes used, in the order of the responses' genes.
    genes_used
        Their symbols (part of the cache key).
    lambda_
        Ridge penalty.
    """
    key = model_key(sig, genes_used, lambda_)
    path = model_path(sig, key) if key else None
    if path is not None:
        model = read_model(path, key, lambda_)
        if model is not None:
            return model
    model = RidgeModel.fit(standardise_columns(sig.design[rows]), lambda_)
    if path is not None:
        write_model(path, key, model)
    return model


def write_model(path: Path, key: str, model: RidgeModel) -> None:
    """Store ``model`` at ``path`` atomically; a failure is logged, never raised (the cache is an optimisation)."""
    if model.factor is None:  # the pinv fallback (lambda 0, singular design) is rare and cheap: not cached
        return
    arrays = {"design": model.design, "factor": model.factor[0], "inverse": model.inverse,
              "row_sum": model.row_sum, "row_sq": model.row_sq}
    arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
    header = {"format": _FORMAT, "key": key, "lower": bool(model.factor[1]),
              "arrays": [[k, list(v.shape), zlib.crc32(v)] for k, v in arrays.items()]}
    text = json.dumps(header).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # no fsync: a file cut short by a crash fails its size or checksum test and is refitted
        with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as fh:
            fh.write(_MAGIC + len(text).to_bytes(8, "little") + text)
            for v in arrays.values():
                fh.write(memoryview(v).cast("B"))
    except OSError as e:  # a read-only cache directory is no reason to fail: the next run fits again
        log.warning("could not cache the fitted model at %s: %s", path, e)


def read_model(path: Path, key: str, lambda_: float) -> RidgeModel | None:
    """The model stored at ``path`` for ``key``, or None if it is missing, of another key, or damaged."""
    try:
        with open(path, "rb", buffering=0) as fh:
            if fh.read(len(_MAGIC)) != _MAGIC:
                return _damaged(path, "not a model cache file")
            file_size = os.fstat(fh.fileno()).st_size
            size = int.from_bytes(fh.read(8), "little")
            if size > min(file_size, _MAX_HEADER):
                return _damaged(path, "bad header length")
            header = json.loads(fh.read(size))
            if header.get("format") != _FORMAT or header.get("key") != key:
                return None  # another format, or a hash-prefix collision: refit (and overwrite)
            # the arrays must fill the rest of the file exactly (no allocation sized by a damaged header)
            if sum(8 * math.prod(shape) for _, shape, _ in header["arrays"]) != file_size - fh.tell():
                return _damaged(path, "truncated, or sizes that do not match its header")
            arrays = {}
            for name, shape, crc in header["arrays"]:
                a = np.empty(shape, dtype=np.float64)
                if fh.readinto(memoryview(a).cast("B")) != a.nbytes or zlib.crc32(a) != crc:
                    return _damaged(path, f"{name} is truncated or fails its checksum")
                arrays[name] = a
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return _damaged(path, str(e))
    if set(arrays) != set(_ARRAYS):
        return _damaged(path, "arrays missing")
    k = arrays["design"].shape[-1]
    expected = {"factor": (k, k), "inverse": (k, k), "row_sum": (k,), "row_sq": (k,)}
    if arrays["design"].ndim != 2 or any(arrays[n].shape != s for n, s in expected.items()):
        return _damaged(path, "array shapes do not fit together")
    return RidgeModel(arrays["design"], lambda_, (arrays["factor"], bool(header["lower"])), arrays["inverse"],
                      arrays["row_sum"], arrays["row_sq"])


def _damaged(path: Path, why: str) -> None:
    log.warning("ignoring the cached model %s (%s); fitting again", path, why)
    return None

"""`cytoatlas index` and `cytoatlas serve`: the results store, its HTTP API and the web page."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cytoatlas._api.store import EXPRESSION_KINDS, IndexSummary, store_dir

log = logging.getLogger("cytoatlas.serve")

__all__ = ["IndexSummary", "index", "serve", "store_dir"]


def index(
    out: str | os.PathLike,
    db: str | os.PathLike | None = None,
    *,
    expression: Sequence[str] = EXPRESSION_KINDS,
    force: bool = False,
    verify: bool = False,
) -> IndexSummary:
    """Build or update the results store of a results directory.

    Every ``manifest.json`` under ``out`` is read: pseudobulk (cell type and sample x cell type files), activity
    and validation outputs are indexed. A file whose manifest record (size, mtime, checksum) is the one stored at
    the last run is not opened again; new and changed files are read, vanished ones dropped, and a run with
    nothing to do writes nothing. The database is rebuilt under a temporary name and renamed into place, so a
    running ``cytoatlas serve`` keeps answering (it reopens the new file on its next request).

    Parameters
    ----------
    out
        Results directory, e.g. ``results`` (holding ``results/<atlas>/pseudobulk``, ``.../activity`` and a
        validation directory) or one atlas' results.
    db
        The DuckDB file to write (default ``out/cytoatlas.duckdb``). The matrices go to Parquet files in
        ``{db stem}_parquet/`` beside it.
    expression
        Pseudobulk rows whose expression is stored: ``"celltype"`` and/or ``"samples"`` (the sample x cell type
        matrices are the large ones). Changing it rebuilds the store.
    force
        Re-read every file, as if the store did not exist.
    verify
        Check each file's checksum (XXH3) against its manifest before indexing it (default: size and mtime).

    Returns
    -------
    IndexSummary
        The files read (none when the store was current), unchanged, removed and skipped, and the Parquet parts
        written and deleted.

    Raises
    ------
    CytoatlasError
        If ``out`` holds no indexable output, two files hold the same result (e.g. two copies of an atlas'
        results), a validation table lacks a contract column, or a file cannot be read.
    """
    from cytoatlas._api.store import index as _index

    return _index(out, db, expression=expression, force=force, verify=verify)


def serve(
    db: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    token_file: str | os.PathLike | None = None,
    access_log: bool = True,
    log_level: str = "info",
    workers: int = 1,
    allow_readable_token_file: bool = False,
    max_active: int = 8,
    max_waiting: int = 32,
    max_wait: float = 2.0,
) -> None:
    """Serve the API (``/api/v1``, OpenAPI schema at ``/api/v1/openapi.json``) and the web page (``/``) over a
    store built by :func:`index`, until interrupted.

    Parameters
    ----------
    db
        The store (a DuckDB file), opened read-only.
    host, port
        Where to listen (a port from 1 to 65535); the default binds to this machine only. Anything else without a
        token is logged as a warning: everyone who can reach the port can read the results.
    token, token_file
        A bearer token (at least 16 characters), or a file holding one (UTF-8 text, readable by its owner only):
        then every route, the page included, answers 401 without ``Authorization: Bearer TOKEN`` (a browser opens
        ``/?token=TOKEN`` once).
    access_log
        Log every request (uvicorn's access log).
    log_level
        uvicorn's log level.
    workers
        Server processes (uvicorn's workers), each with its own read-only connection: one process uses about one
        core (Python holds a lock while it encodes answers), so more workers serve more requests at once.
    allow_readable_token_file
        Accept a token file that its group or others may read (with a warning) instead of refusing it.
    max_active, max_waiting, max_wait
        Load shedding, per worker: at most ``max_active`` API requests run at once, ``max_waiting`` more wait up
        to ``max_wait`` seconds for a turn, and any other is answered 503 with ``Retry-After: 1``.

    Raises
    ------
    CytoatlasError
        If the port is out of range, the store cannot be opened, or the token file cannot be read, is not UTF-8
        text or is readable by others (without ``allow_readable_token_file``).
    """
    import uvicorn

    from cytoatlas._api.app import check_token_file_mode, create_app, read_token
    from cytoatlas._api.shed import Limits
    from cytoatlas.errors import CytoatlasError

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise CytoatlasError(f"the port must be a whole number from 1 to 65535, got {port!r}")
    limits = Limits(active=max_active, waiting=max_waiting, wait=max_wait)
    if token_file is not None:
        if token is not None:
            raise CytoatlasError("give a token or a token file, not both")
        token = read_token(token_file)
        check_token_file_mode(token_file, allow_readable_token_file)
    elif token is not None and len(token) < 16:
        raise CytoatlasError("the token must be at least 16 characters")
    if workers < 1:
        raise CytoatlasError(f"workers must be at least 1, got {workers}")
    app = create_app(db, token=token, limits=limits)  # opened here too, so a bad store fails now with one line
    if token is None and not _loopback(host):
        log.warning("serving on %s without a token: anyone who can reach port %d can read the results "
                    "(use --token-file)", host, port)
    log.info("serving %s on http://%s:%d/ (API under /api/v1)%s", db, host, port,
             ", bearer token required" if token else "")
    if workers == 1:
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level=log_level)
        return
    app.state.reader.close()
    os.environ["CYTOATLAS_SERVE_DB"] = str(app.state.reader.db)
    os.environ["CYTOATLAS_SERVE_LIMITS"] = json.dumps(dataclasses.asdict(limits))
    if token_file is not None:
        os.environ["CYTOATLAS_SERVE_TOKEN_FILE"] = str(Path(token_file).resolve())
    elif token is not None:
        os.environ["CYTOATLAS_SERVE_TOKEN"] = token
    uvicorn.run("cytoatlas._api.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                access_log=access_log, log_level=log_level)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

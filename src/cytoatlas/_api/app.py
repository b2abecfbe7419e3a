"""The FastAPI application: the ``/api/v1`` routes, the web page and its static files, an optional bearer token
for every route, and the errors (404 with valid values, 422 for malformed parameters, 503 while rebuilt)."""

from __future__ import annotations

import hmac
import importlib.util
import json
import logging
import os
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from cytoatlas.errors import CytoatlasError

from .reader import StoreReader
from .respond import NotFound, Unavailable
from .routes import Store, include_routes
from .shed import Limits, Shed

log = logging.getLogger("cytoatlas.serve")
WEB = Path(__file__).with_name("web")
COOKIE = "cytoatlas_token"
# the page loads only its own scripts; plotly.js sets inline styles
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'")


def plotly_js() -> Path | None:
    """plotly.min.js as shipped inside the ``plotly`` Python package (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def read_token(token_file: str | os.PathLike) -> str:
    """The bearer token in a file (UTF-8, surrounding whitespace ignored): at least 16 characters, no spaces."""
    try:
        token = Path(token_file).read_bytes().decode("utf-8").strip()
    except OSError as e:
        raise CytoatlasError(f"cannot read the token file {token_file}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise CytoatlasError(f"the token file {token_file} is not UTF-8 text (byte {e.start}); write the token "
                             "as plain text") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise CytoatlasError(f"the token in {token_file} must be at least 16 characters without spaces")
    return token


class Guard:
    """ASGI middleware: a bearer token on every route (when set) and safe headers on every response.

    A browser proves the token with a cookie: opening ``/?token=TOKEN`` once sets it (HttpOnly, SameSite=Strict)
    and redirects to ``/`` so the token leaves the address bar; programs send ``Authorization: Bearer TOKEN``.
    """

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token.encode() if token else None

    def _valid(self, candidate: bytes | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate, self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode())]
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        if self.token is not None:
            headers = dict(scope.get("headers", []))
            auth = headers.get(b"authorization", b"")
            bearer = auth[7:].strip() if auth[:7].lower() == b"bearer " else None
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
            except Exception:  # a malformed cookie header is no credential
                cookie = SimpleCookie()
            from_cookie = cookie[COOKIE].value.encode() if COOKIE in cookie else None
            if not (self._valid(bearer) or self._valid(from_cookie)):
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = query.get("token", [None])[0]
                if scope["path"] == "/" and given is not None and self._valid(given.encode()):
                    response = Response(status_code=303, headers={"Location": "/"})
                    response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
                    return await response(scope, receive, send_with_headers)
                response = JSONResponse({"detail": "missing or invalid bearer token (send 'Authorization: Bearer "
                                                   "TOKEN'; in a browser open /?token=TOKEN once)"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


def _examples(catalog) -> dict[str, str]:
    """A real name for each parameter, from the store (OpenAPI examples: documentation, and property-based tests
    start from names that exist)."""
    ex = _compare_examples(catalog)
    if not catalog.atlases:
        return ex
    atlas = catalog.atlases[0]
    level = catalog.levels[atlas][0]
    ex.update(atlas=atlas, level=level)
    sets = catalog.sets.get((atlas, level)) or catalog.all_sets
    if sets:
        ex["signature_set"] = sets[0]
        names = sorted(catalog.signatures.get(sets[0], ()))
        if names:
            ex["signature"] = ex["target"] = names[0]
    genes = sorted(catalog.genes.get(atlas, ()))
    if genes:
        ex["gene"] = ex["q"] = genes[len(genes) // 2]
    cell_types = sorted(catalog.cell_types.get((atlas, level), ()))
    if cell_types:
        ex["cell_type"] = cell_types[0]
    return ex


def _compare_examples(catalog) -> dict[str, str]:
    """The comparison columns' examples: from the differential table if indexed, else another compare table."""
    tables = [t for t in ("differential", "association", "meta", "untestable") if t in catalog.compare]
    if not tables:
        return {}
    values = catalog.compare[tables[0]]
    ex = {col: sorted(values[col])[0] for col in ("by", "contrast", "cl_name", "cl_id", "resolution", "test",
                                                    "analysis")
          if values.get(col)}
    ex.setdefault("analysis", tables[0] if tables[0] in ("differential", "association") else "differential")
    return ex


def _openapi_with_examples(app: FastAPI, reader: StoreReader) -> dict:
    from fastapi.openapi.utils import get_openapi

    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        examples = _examples(reader.catalog)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for param in operation.get("parameters", []):
                    if param["name"] in examples:
                        value = examples[param["name"]]
                        is_list = param.get("schema", {}).get("type") == "array"
                        param["example"] = [value] if is_list else value
        app.openapi_schema = schema
    return app.openapi_schema


def check_token_file_mode(token_file: str | os.PathLike, allow_readable: bool = False) -> None:
    """Refuse a token file that users other than its owner may read (a shared secret is no secret), unless
    ``allow_readable``; then it is logged as a warning."""
    if os.name != "posix":
        return
    try:
        mode = os.stat(token_file).st_mode
    except OSError as e:
        raise CytoatlasError(f"cannot read the token file {token_file}: {e.strerror}") from None
    if mode & 0o077:
        what = f"the token file {token_file} is readable by {'group and others' if mode & 0o007 else 'its group'}"
        if not allow_readable:
            raise CytoatlasError(f"{what} (mode {mode & 0o777:o}): run `chmod 600 {token_file}`, or pass "
                                 "--allow-readable-token-file")
        log.warning("%s (mode %o); allowed by --allow-readable-token-file", what, mode & 0o777)


def create_app(db: str | os.PathLike, *, token: str | None = None, limits: Limits | None = None) -> FastAPI:
    """The API and web page over the store ``db`` (read-only); every route needs ``token`` if given; ``limits``:
    how many API requests run and wait at once (:class:`~cytoatlas._api.shed.Limits`; the default if None)."""
    reader = StoreReader(db)

    app = FastAPI(title="cytoatlas", version="1", openapi_url="/api/v1/openapi.json", docs_url=None,
                  redoc_url=None, description="Pseudobulk expression, cytokine / secreted-protein activity and "
                  "their validation, and condition comparisons, from a `cytoatlas index` store. Every table: "
                  "`format=json|csv|parquet`, `limit` / `offset` pages in a stable order.")
    app.state.reader = reader
    app.state.store = Store(reader)  # what the routes get through their dependency

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "valid": exc.valid}, status_code=404)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    include_routes(app)
    app.openapi = lambda: _openapi_with_examples(app, reader)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    plotly = plotly_js()

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_file() -> Response:
        if plotly is None:
            return Response("console.error('plotly.js not found: pip install plotly');",
                            media_type="text/javascript", status_code=404)
        return FileResponse(plotly, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=1)  # 5x faster than 9, 20 % larger
    app.add_middleware(Shed, limits=limits or Limits())  # inside the guard: no turn for a request without the token
    app.add_middleware(Guard, token=token)
    return app


def app_from_environment() -> FastAPI:
    """The app of one ``serve --workers N`` worker process: the store and token come from the environment
    (``CYTOATLAS_SERVE_DB``, and ``CYTOATLAS_SERVE_TOKEN_FILE`` or ``CYTOATLAS_SERVE_TOKEN``), and its
    limits (``CYTOATLAS_SERVE_LIMITS``, JSON)."""
    token_file = os.environ.get("CYTOATLAS_SERVE_TOKEN_FILE")
    token = read_token(token_file) if token_file else os.environ.get("CYTOATLAS_SERVE_TOKEN") or None
    limits = os.environ.get("CYTOATLAS_SERVE_LIMITS")
    return create_app(os.environ["CYTOATLAS_SERVE_DB"], token=token,
                      limits=Limits(**json.loads(limits)) if limits else None)

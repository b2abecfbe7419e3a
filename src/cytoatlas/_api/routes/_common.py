"""What every router of ``/api/v1`` shares: the parameter types, the store as a FastAPI dependency, the route
options of a table endpoint, and the one place where an endpoint gains a query parameter per filter column."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Path, Query, Request
from pydantic import StringConstraints

from ..models import Page, Problem
from ..reader import Catalog, StoreReader
from ..respond import Unavailable

log = logging.getLogger("cytoatlas.serve")

MAX_LIMIT = 50_000
DEFAULT_LIMIT = 1_000
NAME = r"^[^\x00-\x1f\x7f]+$"  # any text without control characters

Name = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME)]
QName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NAME)]
Format = Annotated[Literal["json", "csv", "parquet"], Query(description="json (a page), csv or parquet (the page's "
                                                             "rows; paging in X-Total-Count / X-Next-Offset)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"rows per page (at most {MAX_LIMIT:,})")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
By = Annotated[Literal["cell_type", "sample"], Query(description="cell-type rows, or sample x cell-type rows")]


def name_list(description: str, max_items: int = 1000):
    """A repeatable query parameter of names."""
    return Annotated[list[QName], Query(max_length=max_items, description=description)]


CellTypes = name_list("keep these cell types (repeatable)")
Samples = name_list("keep these samples (repeatable)")
Signatures = name_list("keep these signatures (repeatable)")
OptName = Annotated[QName | None, Query()]
OptBool = Annotated[bool | None, Query()]
FdrMax = Annotated[float | None, Query(ge=0, le=1, description="keep rows with fdr <= this")]

_ERRORS = {404: {"model": Problem, "description": "unknown name; `valid` lists the valid values or the closest"},
           503: {"model": Problem, "description": "the store is being rebuilt; retry"}}
_FILES = {"text/csv": {"schema": {"type": "string"}},
          "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}
ERRORS_AND_FILES = {**_ERRORS, 200: {"content": _FILES}}


def table(model) -> dict:
    """Route options of a table endpoint: the Page model for JSON, CSV and Parquet declared too."""
    return {"response_model": Page[model], "responses": ERRORS_AND_FILES}


def kind(by: str) -> str:
    """The sources' kind of a ``by`` parameter."""
    return "celltype" if by == "cell_type" else "samples"


T = TypeVar("T")


class Store:
    """The store as the routes see it: :meth:`run` calls ``fn(cursor, catalog)`` on its current generation."""

    def __init__(self, reader: StoreReader):
        self.reader = reader

    def run(self, fn: Callable[[Any, Catalog], T]) -> T:
        """``fn(cursor, catalog)`` on the current store, retried once on the new file if a concurrent rebuild
        removed a part under it; a second failure is :class:`~cytoatlas._api.respond.Unavailable` (503)."""
        import duckdb

        reader = self.reader
        reader.refresh()
        for attempt in range(2):
            try:
                with reader.session() as (cur, catalog):
                    return fn(cur, catalog)
            except duckdb.IOException as e:  # a part removed by a concurrent rebuild: the new file knows better
                if attempt:
                    raise Unavailable(f"the store cannot be read right now ({str(e).splitlines()[0]}); if this "
                                      "persists, run `cytoatlas index` again") from None
                log.warning("store read failed (%s); reopening it", str(e).splitlines()[0])
                reader.refresh()
        raise AssertionError("unreachable")


async def _store(request: Request) -> Store:
    # async: resolved on the event loop, so a request costs no extra trip through the thread pool
    return request.app.state.store


StoreDep = Annotated[Store, Depends(_store)]


def with_filters(endpoint: Callable, filters: dict[str, Any]) -> Callable:
    """Give ``endpoint`` (whose last parameter is ``**filters``) one keyword-only query parameter per item of
    ``filters`` (name -> annotation, default None): FastAPI reads the signature, so the schema lists each one."""
    params = [p for p in inspect.signature(endpoint).parameters.values() if p.kind != p.VAR_KEYWORD]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
               for name, annotation in filters.items()]
    endpoint.__signature__ = inspect.Signature(params)
    return endpoint

"""The store's sources a route reads, found in the catalog, or a 404 naming what exists."""

from __future__ import annotations

from .. import axes
from ..queries import Part
from ..reader import Catalog, Source
from ..respond import NotFound, check


def level(cat: Catalog, atlas: str, level: str) -> None:
    """404 unless ``atlas`` and its ``level`` exist."""
    check("atlas", atlas, cat.atlases)
    check("level", level, cat.levels[atlas], f" in atlas {atlas!r}")


def activity(cat: Catalog, atlas: str, level_: str, signature_set: str, kind: str) -> Source:
    """The activity part of an atlas, level, signature set and kind (``celltype`` or ``samples``)."""
    level(cat, atlas, level_)
    check("signature set", signature_set, cat.sets.get((atlas, level_), []), f" in atlas {atlas!r} {level_}")
    src = cat.source("activity", atlas, level_, kind, signature_set)
    if src is None or src.part is None:
        raise NotFound(f"no {kind} activity for {atlas!r} {level_} {signature_set} in the store")
    return src


def expression(cat: Catalog, atlas: str, level_: str, kind: str) -> Source:
    """The pseudobulk expression part of an atlas, level and kind."""
    level(cat, atlas, level_)
    src = cat.source("pseudobulk", atlas, level_, kind)
    if src is None or src.part is None:
        raise NotFound(f"no {kind} expression for {atlas!r} {level_} in the store (index it with "
                       f"`cytoatlas index --expression celltype,samples`)")
    return src


def part(cur, cat: Catalog, src: Source, columns: axes.ColumnTable) -> Part:
    """The part of ``src`` with its axes: its rows, and its ``columns`` (genes or signatures)."""
    return Part(str(src.part), axes.rows(cur, cat, src.source_id), axes.columns(cur, cat, src.source_id, columns))

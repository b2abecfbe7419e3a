"""The names an API filter may take, for the 404 that lists them: a filter value that names nothing in the store
is an error, never a page of no rows.

A value is valid when the store holds it anywhere as that kind of name (an atlas, level, signature set, signature
or target, gene, cell type of the catalog) or when the filtered column holds it. The distinct values of a column
are read once per generation of the store (a rebuilt store is a new catalog) and kept with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .reader import Catalog
from .respond import check

# how a 404 names a filter column
LABELS = {"signature_set": "signature set", "cell_type": "cell type", "atlas_a": "atlas", "atlas_b": "atlas",
          "cl_id": "Cell Ontology ID", "cl_name": "Cell Ontology cell type"}


def catalog_names(cat: Catalog, column: str) -> frozenset[str]:
    """The catalog's names of the kind a filter column holds (none for a kind the catalog does not know); built
    once per store generation (every gene of every atlas is a large set)."""
    return cat.memo(("catalog", column), lambda: frozenset(_catalog_names(cat, column)))


def _catalog_names(cat: Catalog, column: str) -> set[str]:
    if column in ("atlas", "atlas_a", "atlas_b"):
        return set(cat.atlases)
    if column == "level":
        return {lev for levels in cat.levels.values() for lev in levels}
    if column == "signature_set":
        return set(cat.all_sets)
    if column in ("signature", "target"):
        return set().union(*cat.signatures.values())
    if column == "gene":
        return set().union(*cat.genes.values())
    if column == "cell_type":
        return set().union(*cat.cell_types.values())
    return set()


def distinct(cur, cat: Catalog, table: str, columns: Iterable[str]) -> frozenset[str]:
    """The distinct non-null values of ``columns`` (together) of store table ``table``. Table and column names are
    the store schema's constants, never request text."""
    columns = tuple(columns)

    def read():
        union = " UNION ".join(f'SELECT DISTINCT CAST("{c}" AS VARCHAR) FROM {table} WHERE "{c}" IS NOT NULL'
                               for c in columns)
        return frozenset(r[0] for r in cur.execute(union).fetchall())

    return cat.memo(("column", table, columns), read)


def samples(cur, cat: Catalog, atlas: str, level: str) -> frozenset[str]:
    """The samples of an atlas' level (its sample x cell type rows, pseudobulk or activity)."""
    def read():
        return frozenset(r[0] for r in cur.execute(
            "SELECT DISTINCT g.sample FROM groups g JOIN sources s USING (source_id) WHERE s.atlas = $atlas "
            "AND s.level = $level AND s.step IN ('pseudobulk', 'activity') AND g.sample IS NOT NULL",
            {"atlas": atlas, "level": level}).fetchall())

    return cat.memo(("samples", atlas, level), read)


def check_filters(cur, cat: Catalog, table: str, filters: Mapping[str, object], where: str,
                  columns: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """404 for the first text filter whose value names nothing: neither a catalog name of its kind nor a value of
    the column in ``table``. ``columns``: the table columns a filter matches when not its own name (e.g. a pair's
    ``atlas`` matching ``atlas_a`` or ``atlas_b``)."""
    for col, value in filters.items():
        if not isinstance(value, str):
            continue  # unset (None), a boolean or a number: nothing to name
        known, held = catalog_names(cat, col), distinct(cur, cat, table, (columns or {}).get(col, (col,)))
        if value not in known and value not in held:  # the union (36 k genes and more) only for the 404
            check(LABELS.get(col, col.replace("_", " ")), value, known | held, where)


def check_each(what: str, values: Iterable[str], valid: Iterable[str], where: str = "") -> None:
    """404 for the first of ``values`` that is not in ``valid``."""
    valid = valid if isinstance(valid, (set, frozenset)) else set(valid)
    for value in values:
        check(what, value, valid, where)

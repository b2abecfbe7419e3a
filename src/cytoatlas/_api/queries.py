"""Every statement the API runs: fixed SQL text with ``$name`` parameters for every value a request supplies.

No SQL is assembled from request text. The only pieces put together are constants of this module (a WHERE
clause and an ORDER BY that belong to one query, a column chosen from a fixed list) and the store's own
Parquet paths, which are passed as parameters too. Every page is sorted on a key that is unique per row, so
``offset`` pages are stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .axes import Columns, Rows, product_page, read_columns, read_values
from .ingest import ACTIVITY_LAYERS, part_files
from .schema import VALIDATION_TABLES, validation_order, validation_table


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple]
    total: int


def page(cur, base: str, order: str, params: dict, limit: int, offset: int) -> Table:
    """Rows ``offset .. offset + limit`` of ``base`` sorted by ``order``, and how many rows there are in all
    (counted by a second query only when this page does not tell: it is full or not the first)."""
    result = cur.execute(f"{base} ORDER BY {order} LIMIT $limit OFFSET $offset",
                         {**params, "limit": limit, "offset": offset})
    columns = [d[0] for d in result.description]
    rows = result.fetchall()
    if offset == 0 and len(rows) < limit:
        return Table(columns, rows, len(rows))
    total = cur.execute(f"SELECT count(*) FROM ({base})", params).fetchall()[0][0]
    return Table(columns, rows, total)


# ---- atlases, levels, groups, signatures ---------------------------------------------------------------------

ATLASES = """
SELECT atlas, levels, signature_sets, n_cells, n_samples, n_genes FROM atlas_summary"""

LEVELS = """
SELECT level, n_cell_types, n_samples, n_cells, signature_sets, expression FROM level_summary WHERE atlas = $atlas"""

CELL_TYPES = """
SELECT cell_type, n_cells, n_samples FROM cell_types WHERE atlas = $atlas AND level = $level"""

SAMPLES = """
SELECT sample, cell_type, donor, n_cells FROM groups
WHERE source_id = $sid
  AND (len(CAST($cell_types AS VARCHAR[])) = 0 OR list_contains(CAST($cell_types AS VARCHAR[]), cell_type))"""

SIGNATURE_SETS = """
SELECT s.signature_set, count(DISTINCT sg.signature) AS n_signatures, list(DISTINCT s.atlas ORDER BY s.atlas) AS atlases
FROM signatures sg JOIN sources s USING (source_id) GROUP BY s.signature_set"""

SIGNATURES = """
SELECT DISTINCT sg.signature, sg."group", sg.cell_type, sg.cytokine
FROM signatures sg JOIN sources s USING (source_id) WHERE s.signature_set = $signature_set"""


def atlases(cur, limit: int, offset: int) -> Table:
    return page(cur, ATLASES, "atlas", {}, limit, offset)


def levels(cur, atlas: str, limit: int, offset: int) -> Table:
    return page(cur, LEVELS, "level", {"atlas": atlas}, limit, offset)


def cell_types(cur, atlas: str, level: str, limit: int, offset: int) -> Table:
    return page(cur, CELL_TYPES, "cell_type", {"atlas": atlas, "level": level}, limit, offset)


def samples(cur, sid: int, cell_types: list[str], limit: int, offset: int) -> Table:
    return page(cur, SAMPLES, "cell_type, sample", {"sid": sid, "cell_types": cell_types}, limit, offset)


def signature_sets(cur, limit: int, offset: int) -> Table:
    return page(cur, SIGNATURE_SETS, "signature_set", {}, limit, offset)


def signatures(cur, signature_set: str, limit: int, offset: int) -> Table:
    return page(cur, SIGNATURES, 'signature, "group" NULLS FIRST, cell_type NULLS FIRST, cytokine NULLS FIRST',
                {"signature_set": signature_set}, limit, offset)


# ---- activity and expression: pages of parts, found from their axes held in memory (see .axes) -------------

ACTIVITY_VALUES = ("z", "beta", "se", "pvalue", "z_ci_low", "z_ci_high", "z_boot_sd", "matched")
ACTIVITY_COLUMNS = ["atlas", "level", "signature_set", "cell_type", "sample", "signature", "n_cells",
                    *ACTIVITY_VALUES]
EXPRESSION_VALUES = ("value", "zscore")
EXPRESSION_COLUMNS = ["atlas", "level", "gene", "cell_type", "sample", "n_cells", *EXPRESSION_VALUES]


@dataclass(frozen=True)
class Part:
    """A store part (its directory) and its axes."""

    path: str
    rows: Rows
    columns: Columns


def _activity_rows(cur, pieces: list[tuple[tuple[str, str, str], Part, np.ndarray, np.ndarray]]) -> list[tuple]:
    """The page rows of ``pieces``: (name, part, its rows, their signatures), the values of all read at once."""
    if not pieces:
        return []
    sizes = [len(row) for *_, row, _ in pieces]
    values = read_values(cur, [part.path for _, part, *_ in pieces], "sig", ACTIVITY_VALUES,
                         np.concatenate([row for *_, row, _ in pieces]), np.concatenate([sig for *_, sig in pieces]),
                         np.repeat(np.arange(len(pieces)), sizes))
    values = [values[v].tolist() for v in ACTIVITY_VALUES]
    out, start = [], 0
    for (name, part, row, sig), n in zip(pieces, sizes, strict=True):
        out += zip([name[0]] * n, [name[1]] * n, [name[2]] * n, part.rows.cell_type[row].tolist(),
                   part.rows.sample[row].tolist(), part.columns.names[sig].tolist(), part.rows.n_cells[row].tolist(),
                   *(v[start:start + n] for v in values), strict=True)
        start += n
    return out


def activity(cur, name: tuple[str, str, str], part: Part, signatures: list[str], cell_types: list[str],
             samples: list[str], limit: int, offset: int) -> Table:
    """A page of an activity part in (cell type, sample, signature) order. ``name``: (atlas, level, signature
    set) of the part, echoed in every row."""
    rows = part.rows.select(cell_types, samples)
    sigs = part.columns.select(signatures)
    i, j = product_page(len(rows), len(sigs), limit, offset)
    return Table(ACTIVITY_COLUMNS, _activity_rows(cur, [(name, part, rows[i], sigs[j])]), len(rows) * len(sigs))


def activity_matrix(cur, part: Part, value: str, signatures: list[str],
                    cell_types: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    """Row names (cell types), column names (signatures), both sorted, and the values (NaN where missing)."""
    column = {c: c for c in ACTIVITY_LAYERS}[value]  # a fixed column name, chosen by a validated enum
    rows = part.rows.select(cell_types)
    sigs = part.columns.select(signatures)
    got = read_columns(cur, [part.path], "sig", (column,), [sigs] if len(rows) else [sigs[:0]])
    row_at = np.full(len(part.rows.cell_type), -1)
    row_at[rows] = np.arange(len(rows))
    col_at = np.full(len(part.columns.names), -1)
    col_at[sigs] = np.arange(len(sigs))
    i, j = row_at[got["row"]], col_at[got["col"]]
    ok = (i >= 0) & (j >= 0)
    values = np.full((len(rows), len(sigs)), np.nan)
    values[i[ok], j[ok]] = np.ma.filled(got[column].astype(float), np.nan)[ok]
    return part.rows.cell_type[rows].tolist(), part.columns.names[sigs].tolist(), values


def signature_across(cur, parts: list[tuple[tuple[str, str, str], Part]], signature: str, cell_types: list[str],
                     limit: int, offset: int) -> Table:
    """One signature's rows in several parts, in (atlas, level, cell type, sample) order; ``parts``: ((atlas,
    level, signature set), part) pairs."""
    chosen = []  # (name, part, signature index, its rows in page order)
    for name, part in sorted(parts, key=lambda p: p[0][:2]):
        sig = part.columns.index.get(signature)
        if sig is not None:
            chosen.append((name, part, sig, part.rows.select(cell_types)))
    pieces, start = [], 0  # the parts' rows on the page
    for name, part, sig, rows in chosen:
        lo, hi = max(offset, start), min(offset + limit, start + len(rows))
        if lo < hi:
            pieces.append((name, part, rows[lo - start:hi - start], np.full(hi - lo, sig)))
        start += len(rows)
    return Table(ACTIVITY_COLUMNS, _activity_rows(cur, pieces), start)


def expression(cur, name: tuple[str, str], part: Part, genes: list[str], cell_types: list[str],
               samples: list[str], limit: int, offset: int) -> Table:
    """A page of an expression part in (gene, cell type, sample) order. ``name``: (atlas, level) of the part,
    echoed in every row."""
    rows = part.rows.select(cell_types, samples)
    idx = part.columns.select(genes)
    i, j = product_page(len(idx), len(rows), limit, offset)
    row, gene = rows[j], idx[i]
    values = read_values(cur, [part.path], "gene", EXPRESSION_VALUES, row, gene)
    n = len(row)
    out = list(zip([name[0]] * n, [name[1]] * n, part.columns.names[gene].tolist(),
                   part.rows.cell_type[row].tolist(), part.rows.sample[row].tolist(),
                   part.rows.n_cells[row].tolist(), *(values[v].tolist() for v in EXPRESSION_VALUES), strict=True))
    return Table(EXPRESSION_COLUMNS, out, len(rows) * len(idx))


# ---- validation ---------------------------------------------------------------------------------------------

SCATTER = """
WITH act AS (
    SELECT g.sample, g.cell_type, a.z FROM read_parquet($activity_part) a
    JOIN groups g ON g.source_id = $activity_sid AND g."row" = a."row" WHERE a.sig = $sig),
ex AS (
    SELECT g.sample, g.cell_type, e.value FROM read_parquet($expression_part) e
    JOIN groups g ON g.source_id = $expression_sid AND g."row" = e."row" WHERE e.gene = $gene)
SELECT act.sample, act.cell_type, ex.value AS expression, act.z AS activity
FROM act JOIN ex ON ex.sample = act.sample AND ex.cell_type = act.cell_type
WHERE (len(CAST($cell_types AS VARCHAR[])) = 0 OR list_contains(CAST($cell_types AS VARCHAR[]), act.cell_type))"""


def scatter(cur, activity_part: str, activity_sid: int, sig: int, expression_part: str, expression_sid: int,
            gene: int, cell_types: list[str], limit: int, offset: int) -> Table:
    params = {"activity_part": part_files(activity_part, [sig]), "activity_sid": activity_sid, "sig": sig,
              "expression_part": part_files(expression_part, [gene]), "expression_sid": expression_sid,
              "gene": gene, "cell_types": cell_types}
    return page(cur, SCATTER, "act.cell_type, act.sample", params, limit, offset)


def rho_gene(cur, atlas: str, level: str, signature_set: str, target: str) -> str | None:
    """The gene `cytoatlas validate` paired with a target (its rho table), if it did."""
    rows = cur.execute(f"""SELECT gene FROM {validation_table('rho')} WHERE atlas = $atlas AND level = $level
        AND signature_set = $signature_set AND target = $target AND gene IS NOT NULL
        ORDER BY representative DESC NULLS LAST, gene LIMIT 1""",
                       {"atlas": atlas, "level": level, "signature_set": signature_set, "target": target}).fetchall()
    return rows[0][0] if rows else None


# filterable columns of each validation table (a query parameter of the same name, equality)
VALIDATION_FILTERS: dict[str, tuple[str, ...]] = {
    "rho": ("atlas", "level", "signature_set", "target", "gene", "stratum", "representative"),
    "summary": ("atlas", "level", "signature_set"),
    "cytosig_vs_secact": ("atlas", "level"),
    "cross_atlas": ("signature_set", "signature", "level", "resolution", "atlas"),
    "conservation": ("signature_set", "signature", "resolution"),
    "consistency": ("signature_set", "target", "tier"),
    "cell_type_matches": ("atlas", "level", "cell_type"),
}


def validation(cur, name: str, filters: dict, limit: int, offset: int) -> Table:
    columns, _ = VALIDATION_TABLES[name]
    clauses, params = [], {}
    for col in VALIDATION_FILTERS[name]:
        value = filters.get(col)
        if value is None:
            continue
        params[col] = value
        if name == "cross_atlas" and col == "atlas":  # a pair involving the atlas
            clauses.append("(atlas_a = $atlas OR atlas_b = $atlas)")
        else:
            clauses.append(f'"{col}" = ${col}')
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    base = f"SELECT * FROM {validation_table(name)}{where}"
    return page(cur, base, validation_order(name), params, limit, offset)


# ---- search -------------------------------------------------------------------------------------------------

SEARCH = r"""
SELECT * FROM (
    SELECT 'gene' AS kind, gene AS name, CAST(NULL AS VARCHAR) AS signature_set, atlases
    FROM gene_names WHERE gene ILIKE $pattern ESCAPE '\'
    UNION ALL
    SELECT 'signature', n.signature, n.signature_set,
           (SELECT list(DISTINCT s.atlas ORDER BY s.atlas) FROM sources s WHERE s.signature_set = n.signature_set)
    FROM signature_names n WHERE n.signature ILIKE $pattern ESCAPE '\')"""

SEARCH_ORDER = ("lower(name) = lower($q) DESC, starts_with(lower(name), lower($q)) DESC, name, kind, "
                "signature_set NULLS FIRST")


def search(cur, q: str, limit: int, offset: int) -> Table:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    result = cur.execute(f"{SEARCH} ORDER BY {SEARCH_ORDER} LIMIT $limit OFFSET $offset",
                         {"pattern": f"%{escaped}%", "q": q, "limit": limit, "offset": offset})
    columns, rows = [d[0] for d in result.description], result.fetchall()
    if offset == 0 and len(rows) < limit:
        return Table(columns, rows, len(rows))
    total = cur.execute(f"SELECT count(*) FROM ({SEARCH})", {"pattern": f"%{escaped}%"}).fetchall()[0][0]
    return Table(columns, rows, total)

"""Every statement the API runs: fixed SQL text with ``$name`` parameters for every value a request supplies.

No SQL is assembled from request text. The only pieces put together are constants of this module (a WHERE
clause and an ORDER BY that belong to one query, a column chosen from a fixed list) and the store's own
Parquet paths, which are passed as parameters too. Every page is sorted on a key that is unique per row, so
``offset`` pages are stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ingest import ACTIVITY_LAYERS, expression_files
from .schema import VALIDATION_TABLES, validation_order, validation_table


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple]
    total: int


_TOTAL = "__total"


def page(cur, base: str, order: str, params: dict, limit: int, offset: int, one_pass: bool = False) -> Table:
    """Rows ``offset .. offset + limit`` of ``base`` sorted by ``order``, and how many rows there are in all
    (counted by a second query only when this page does not tell: it is full or not the first).

    ``one_pass``: count in the page's own query (``count(*) OVER ()``), for the queries that read Parquet parts:
    a second query would read and join the part again (the sort before the limit sees every row anyway). Only
    for a ``base`` that is one plain ``SELECT`` (no DISTINCT, no GROUP BY).
    """
    if one_pass:
        head, _, rest = base.partition("SELECT ")
        result = cur.execute(f"{head}SELECT count(*) OVER () AS {_TOTAL}, {rest} ORDER BY {order} "
                             "LIMIT $limit OFFSET $offset", {**params, "limit": limit, "offset": offset})
        columns = [d[0] for d in result.description][1:]
        rows = result.fetchall()
        if rows:
            return Table(columns, [row[1:] for row in rows], rows[0][0])
        if offset == 0:
            return Table(columns, [], 0)
        total = cur.execute(f"SELECT count(*) FROM ({base})", params).fetchall()[0][0]
        return Table(columns, [], total)
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


# ---- activity -----------------------------------------------------------------------------------------------

_FILTERS = """
  AND (len(CAST($cell_types AS VARCHAR[])) = 0 OR list_contains(CAST($cell_types AS VARCHAR[]), g.cell_type))
  AND (len(CAST($samples AS VARCHAR[])) = 0 OR list_contains(CAST($samples AS VARCHAR[]), g.sample))"""

ACTIVITY = """
SELECT $atlas AS atlas, $level AS level, $signature_set AS signature_set, g.cell_type, g.sample, sg.signature,
       g.n_cells, a.z, a.beta, a.se, a.pvalue, a.z_ci_low, a.z_ci_high, a.z_boot_sd, a.matched
FROM read_parquet($part) a
JOIN groups g ON g.source_id = $sid AND g."row" = a."row"
JOIN signatures sg ON sg.source_id = $sid AND sg.idx = a.sig
WHERE a.sig BETWEEN $lo AND $hi
  AND (len(CAST($idx AS INTEGER[])) = 0 OR list_contains(CAST($idx AS INTEGER[]), a.sig))""" + _FILTERS

ACTIVITY_ORDER = "g.cell_type, g.sample NULLS FIRST, sg.signature"

# one signature in every atlas and level: parts of several files, each joined to its own source's names
SIGNATURE_ACROSS = """
SELECT s.atlas, s.level, s.signature_set, g.cell_type, g.sample, sg.signature, g.n_cells,
       a.z, a.beta, a.se, a.pvalue, a.z_ci_low, a.z_ci_high, a.z_boot_sd, a.matched
FROM read_parquet($parts, filename = true) a
JOIN sources s ON $root || s.part = a.filename
JOIN signatures sg ON sg.source_id = s.source_id AND sg.idx = a.sig
JOIN groups g ON g.source_id = s.source_id AND g."row" = a."row"
WHERE a.sig BETWEEN $lo AND $hi AND sg.signature = $signature""" + _FILTERS

SIGNATURE_INDEXES = """
SELECT DISTINCT sg.idx FROM signatures sg JOIN sources s USING (source_id)
WHERE s.signature_set = $signature_set AND sg.signature = $signature"""

# the idx range lets DuckDB skip the row groups of other signatures (parts are signature-major)
INDEXES = """
SELECT idx FROM signatures WHERE source_id = $sid AND list_contains(CAST($signatures AS VARCHAR[]), signature)"""


SIGNATURE_ACROSS_ORDER = "s.atlas, s.level, g.cell_type, g.sample NULLS FIRST"


def _sig_range(cur, sid: int, signatures: list[str]) -> dict:
    """``idx``, ``lo``, ``hi`` parameters selecting ``signatures`` of a source (all when none is named)."""
    if not signatures:
        return {"idx": [], "lo": 0, "hi": 2**31 - 1}
    idx = sorted(r[0] for r in cur.execute(INDEXES, {"sid": sid, "signatures": signatures}).fetchall())
    return {"idx": idx or [-1], "lo": idx[0] if idx else -1, "hi": idx[-1] if idx else -1}


def activity(cur, name: tuple[str, str, str], part: str, sid: int, signatures: list[str], cell_types: list[str],
             samples: list[str], limit: int, offset: int) -> Table:
    """``name``: (atlas, level, signature set) of the part, echoed in every row."""
    params = {"part": part, "sid": sid, "cell_types": cell_types, "samples": samples,
              **dict(zip(("atlas", "level", "signature_set"), name, strict=True)), **_sig_range(cur, sid, signatures)}
    return page(cur, ACTIVITY, ACTIVITY_ORDER, params, limit, offset, one_pass=True)


def activity_matrix(cur, part: str, sid: int, value: str, signatures: list[str],
                    cell_types: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    """Row names (cell types), column names (signatures), both sorted, and the values (NaN where missing)."""
    column = {c: c for c in ACTIVITY_LAYERS}[value]  # a fixed column name, chosen by a validated enum
    groups = cur.execute('SELECT "row", cell_type FROM groups WHERE source_id = $sid AND (len(CAST($cell_types AS '
                         'VARCHAR[])) = 0 OR list_contains(CAST($cell_types AS VARCHAR[]), cell_type)) ORDER BY '
                         'cell_type', {"sid": sid, "cell_types": cell_types}).fetchall()
    sigs = cur.execute("SELECT idx, signature FROM signatures WHERE source_id = $sid AND (len(CAST($signatures AS "
                       "VARCHAR[])) = 0 OR list_contains(CAST($signatures AS VARCHAR[]), signature)) ORDER BY "
                       "signature", {"sid": sid, "signatures": signatures}).fetchall()
    rng = _sig_range(cur, sid, signatures)
    got = cur.execute(f"""SELECT "row", sig, {column} AS value FROM read_parquet($part)
        WHERE sig BETWEEN $lo AND $hi AND (len(CAST($idx AS INTEGER[])) = 0 OR list_contains(CAST($idx AS INTEGER[]),
        sig)) AND list_contains(CAST($rows AS INTEGER[]), "row")""",
                      {"part": part, "rows": [r for r, _ in groups], **rng}).fetchnumpy()
    row_at = np.full(max([r for r, _ in groups], default=-1) + 1, -1)
    row_at[[r for r, _ in groups]] = np.arange(len(groups))
    col_at = np.full(max([i for i, _ in sigs], default=-1) + 1, -1)
    col_at[[i for i, _ in sigs]] = np.arange(len(sigs))
    values = np.full((len(groups), len(sigs)), np.nan)
    v = np.ma.filled(np.ma.asarray(got["value"], dtype=float), np.nan)
    i, j = row_at[np.asarray(got["row"])], col_at[np.asarray(got["sig"])]
    ok = (i >= 0) & (j >= 0)
    values[i[ok], j[ok]] = v[ok]
    return [c for _, c in groups], [s for _, s in sigs], values


def signature_across(cur, root: str, parts: list[str], signature_set: str, signature: str, cell_types: list[str],
                     limit: int, offset: int) -> Table:
    """``parts``: absolute paths, each ``root`` + its ``sources.part``."""
    idx = [r[0] for r in cur.execute(SIGNATURE_INDEXES, {"signature_set": signature_set,
                                                         "signature": signature}).fetchall()] or [-1]
    params = {"root": root, "parts": parts, "signature": signature, "cell_types": cell_types, "samples": [],
              "lo": min(idx), "hi": max(idx)}
    return page(cur, SIGNATURE_ACROSS, SIGNATURE_ACROSS_ORDER, params, limit, offset, one_pass=True)


# ---- expression ---------------------------------------------------------------------------------------------

GENE_INDEX = """
SELECT gene, idx FROM genes WHERE source_id = $sid AND list_contains(CAST($genes AS VARCHAR[]), gene)"""

# the idx range lets DuckDB skip the Parquet row groups of other genes (parts are gene-major)
EXPRESSION = """
SELECT $atlas AS atlas, $level AS level, gn.gene, g.cell_type, g.sample, g.n_cells, e.value, e.zscore
FROM read_parquet($part) e
JOIN genes gn ON gn.source_id = $sid AND gn.idx = e.gene
JOIN groups g ON g.source_id = $sid AND g."row" = e."row"
WHERE e.gene BETWEEN $lo AND $hi AND list_contains(CAST($idx AS INTEGER[]), e.gene)""" + _FILTERS

EXPRESSION_ORDER = "gn.gene, g.cell_type, g.sample NULLS FIRST"


def gene_index(cur, sid: int, genes: list[str]) -> dict[str, int]:
    return dict(cur.execute(GENE_INDEX, {"sid": sid, "genes": genes}).fetchall())


def expression(cur, name: tuple[str, str], part: str, sid: int, idx: list[int], cell_types: list[str],
               samples: list[str], limit: int, offset: int) -> Table:
    """``name``: (atlas, level) of the part, echoed in every row. Only the part's files holding ``idx`` are read."""
    params = {"part": expression_files(part, idx), "sid": sid, "idx": idx, "lo": min(idx), "hi": max(idx),
              "cell_types": cell_types, "samples": samples, "atlas": name[0], "level": name[1]}
    return page(cur, EXPRESSION, EXPRESSION_ORDER, params, limit, offset, one_pass=True)


# ---- validation ---------------------------------------------------------------------------------------------

SIGNATURE_INDEX = "SELECT idx FROM signatures WHERE source_id = $sid AND signature = $signature"

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


def signature_index(cur, sid: int, signature: str) -> int | None:
    rows = cur.execute(SIGNATURE_INDEX, {"sid": sid, "signature": signature}).fetchall()
    return rows[0][0] if rows else None


def scatter(cur, activity_part: str, activity_sid: int, sig: int, expression_part: str, expression_sid: int,
            gene: int, cell_types: list[str], limit: int, offset: int) -> Table:
    params = {"activity_part": activity_part, "activity_sid": activity_sid, "sig": sig,
              "expression_part": expression_files(expression_part, [gene]), "expression_sid": expression_sid,
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

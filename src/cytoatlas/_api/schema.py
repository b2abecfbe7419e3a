"""The store's schema: DuckDB tables for what is small, Parquet parts for the matrices, and the contracts of the
validation and comparison tables (their columns and types, as `cytoatlas validate` / `cytoatlas compare` write
them)."""

from __future__ import annotations

from cytoatlas._compare.tables import COLUMNS as COMPARE_COLUMNS
from cytoatlas._compare.tables import column_dtype
from cytoatlas.io.layout import COMPARE_TABLES as COMPARE_TABLE_NAMES

from .cells import DDL as CELLS_DDL
from .groundtruth import DDL as GROUNDTRUTH_DDL

SCHEMA_VERSION = "7"  # 2: sources.checksum ("<algorithm>:<hex>") instead of sources.sha256; 3: cells_* tables;
# 4: compare_* tables; 5: Cell Ontology columns (cl_id, cl_name, resolution, labels) in place of `harmonised`;
# 6: groundtruth_* tables; 7: compare's cross-talk columns

DDL = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
-- one row per indexed file: where it is (relative to the indexed directory), its manifest record, its part
CREATE TABLE sources (
    source_id INTEGER PRIMARY KEY, path VARCHAR NOT NULL UNIQUE, step VARCHAR NOT NULL, kind VARCHAR,
    atlas VARCHAR, level VARCHAR, signature_set VARCHAR, size BIGINT, mtime_ns BIGINT, checksum VARCHAR,
    n_rows BIGINT, n_cols BIGINT, part VARCHAR, indexed VARCHAR);
-- the rows of a pseudobulk or activity file: a cell type, or a sample x cell type
CREATE TABLE groups (source_id INTEGER NOT NULL, "row" INTEGER NOT NULL, name VARCHAR, cell_type VARCHAR,
    sample VARCHAR, donor VARCHAR, n_cells BIGINT, n_boot BIGINT);
CREATE TABLE genes (source_id INTEGER NOT NULL, idx INTEGER NOT NULL, gene VARCHAR NOT NULL, gene_id VARCHAR);
CREATE TABLE signatures (source_id INTEGER NOT NULL, idx INTEGER NOT NULL, signature VARCHAR NOT NULL,
    "group" VARCHAR, cell_type VARCHAR, cytokine VARCHAR);
""" + CELLS_DDL + GROUNDTRUTH_DDL  # the compare_* tables' DDL is appended below, from COMPARE_TABLES

# Rebuilt at the end of every index run, from the tables above.
DERIVED = """
CREATE OR REPLACE TABLE gene_names AS
    SELECT gene, list(DISTINCT s.atlas ORDER BY s.atlas) AS atlases
    FROM genes g JOIN sources s USING (source_id) GROUP BY gene;
CREATE OR REPLACE TABLE signature_names AS
    SELECT DISTINCT s.signature_set, g.signature FROM signatures g JOIN sources s USING (source_id);
CREATE OR REPLACE TABLE cell_types AS
    WITH g AS (SELECT DISTINCT s.atlas, s.level, s.kind, g.cell_type, g.sample, g.n_cells
               FROM groups g JOIN sources s USING (source_id) WHERE s.step IN ('pseudobulk', 'activity'))
    SELECT atlas, level, cell_type, max(n_cells) FILTER (kind = 'celltype') AS n_cells,
           count(DISTINCT sample) FILTER (kind = 'samples') AS n_samples
    FROM g GROUP BY atlas, level, cell_type;
CREATE OR REPLACE TABLE level_summary AS
SELECT s.atlas, s.level,
       (SELECT count(*) FROM cell_types c WHERE c.atlas = s.atlas AND c.level = s.level) AS n_cell_types,
       (SELECT count(DISTINCT g.sample) FROM groups g JOIN sources t USING (source_id)
            WHERE t.atlas = s.atlas AND t.level = s.level AND t.kind = 'samples') AS n_samples,
       (SELECT sum(c.n_cells) FROM cell_types c WHERE c.atlas = s.atlas AND c.level = s.level) AS n_cells,
       coalesce(list(DISTINCT s.signature_set ORDER BY s.signature_set) FILTER (s.step = 'activity'),
                CAST([] AS VARCHAR[])) AS signature_sets,
       coalesce(list(DISTINCT s.kind ORDER BY s.kind) FILTER (s.step = 'pseudobulk' AND s.part IS NOT NULL),
                CAST([] AS VARCHAR[])) AS expression
FROM sources s WHERE s.step IN ('pseudobulk', 'activity') GROUP BY s.atlas, s.level;
CREATE OR REPLACE TABLE atlas_summary AS
SELECT s.atlas,
       list(DISTINCT s.level ORDER BY s.level) AS levels,
       coalesce(list(DISTINCT s.signature_set ORDER BY s.signature_set) FILTER (s.step = 'activity'),
                CAST([] AS VARCHAR[])) AS signature_sets,
       (SELECT max(total) FROM (SELECT sum(g.n_cells) AS total FROM groups g JOIN sources t USING (source_id)
            WHERE t.atlas = s.atlas AND t.kind = 'celltype' AND t.step = 'pseudobulk' GROUP BY t.level)) AS n_cells,
       (SELECT count(DISTINCT g.sample) FROM groups g JOIN sources t USING (source_id)
            WHERE t.atlas = s.atlas AND t.kind = 'samples') AS n_samples,
       (SELECT count(DISTINCT gn.gene) FROM genes gn JOIN sources t USING (source_id)
            WHERE t.atlas = s.atlas) AS n_genes
FROM sources s WHERE s.step IN ('pseudobulk', 'activity') GROUP BY s.atlas;
"""

# name -> ({column: DuckDB type}, ORDER BY columns). Columns are the contract of `cytoatlas validate`; files may
# carry more (kept, after these). The ORDER BY is the whole contract so pages are stable.
VALIDATION_TABLES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "rho": ({"atlas": "VARCHAR", "level": "VARCHAR", "signature_set": "VARCHAR", "target": "VARCHAR",
             "gene": "VARCHAR", "stratum": "VARCHAR", "n_samples": "BIGINT", "rho": "DOUBLE", "pvalue": "DOUBLE",
             "fdr": "DOUBLE", "rho_ci_low": "DOUBLE", "rho_ci_high": "DOUBLE", "representative": "BOOLEAN",
             "reason": "VARCHAR"},
            ("atlas", "level", "signature_set", "target", "stratum", "gene")),
    "summary": ({"atlas": "VARCHAR", "level": "VARCHAR", "signature_set": "VARCHAR", "n_targets": "BIGINT",
                 "median_rho": "DOUBLE", "pct_positive": "DOUBLE", "n_significant": "BIGINT"},
                ("atlas", "level", "signature_set")),
    "cytosig_vs_secact": ({"atlas": "VARCHAR", "level": "VARCHAR", "n_shared": "BIGINT",
                           "median_rho_cytosig": "DOUBLE", "median_rho_secact": "DOUBLE", "statistic": "DOUBLE",
                           "pvalue": "DOUBLE"},
                          ("atlas", "level")),
    "cross_atlas": ({"signature_set": "VARCHAR", "signature": "VARCHAR", "level": "VARCHAR", "resolution": "VARCHAR",
                     "atlas_a": "VARCHAR",
                     "atlas_b": "VARCHAR", "n_cell_types": "BIGINT", "r": "DOUBLE", "reason": "VARCHAR"},
                    ("signature_set", "signature", "level", "resolution", "atlas_a", "atlas_b")),
    "conservation": ({"signature_set": "VARCHAR", "signature": "VARCHAR", "resolution": "VARCHAR", "n_pairs": "BIGINT",
                      "n_pairs_r07": "BIGINT", "n_pairs_r05": "BIGINT", "conservation": "VARCHAR"},
                     ("signature_set", "signature", "resolution")),
    "consistency": ({"signature_set": "VARCHAR", "target": "VARCHAR", "n_atlases": "BIGINT",
                     "n_positive": "BIGINT", "tier": "VARCHAR"},
                    ("signature_set", "target")),
    "cell_type_matches": ({"atlas": "VARCHAR", "level": "VARCHAR", "cell_type": "VARCHAR", "cl_id": "VARCHAR",
                           "cl_name": "VARCHAR", "source": "VARCHAR"},
                          ("atlas", "level", "cell_type")),
}


def validation_table(name: str) -> str:
    """The DuckDB table holding validation table ``name`` (a key of :data:`VALIDATION_TABLES`, never user text)."""
    if name not in VALIDATION_TABLES:
        raise KeyError(name)
    return f"validation_{name}"


def validation_order(name: str) -> str:
    """ORDER BY clause of a validation table: its keys, then every other contract column (a total order)."""
    columns, keys = VALIDATION_TABLES[name]
    return ", ".join(f'"{c}" NULLS FIRST' for c in [*keys, *(c for c in columns if c not in keys)])


# name -> ({column: DuckDB type}, ORDER BY columns): the tables of `cytoatlas compare`, each a directory's
# differential / association / meta / untestable table. Unlike a validation table, a compare table gathers the
# rows of every indexed compare directory (one `source_id` per file; comparisons of other columns may live in
# other directories); columns beyond the contract are not kept.
_DUCKDB_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "object": "VARCHAR"}
# the order rows are served in (paging): one comparison's rows together, then cell type and signature
_COMPARE_ORDER = {
    "differential": ("atlas", "level", "signature_set", "by", "contrast", "cell_type", "signature"),
    "association": ("atlas", "level", "signature_set", "by", "contrast", "cell_type", "signature"),
    "meta": ("analysis", "level", "signature_set", "by", "contrast", "resolution", "cl_name", "signature"),
    "untestable": ("atlas", "level", "signature_set", "analysis", "by", "contrast", "cell_type"),
}
# the cross-talk columns `cytoatlas compare` appends to its per-atlas rows (cytoatlas._compare.crosstalk); NULL
# for comparisons written before they existed
COMPARE_OPTIONAL: dict[str, dict[str, str]] = {
    name: {"correlated": "VARCHAR", "also_significant": "VARCHAR", "n_correlated_significant": "BIGINT"}
    for name in ("differential", "association")
}
# the columns and their types are the ones `cytoatlas compare` writes (cytoatlas._compare.tables)
COMPARE_TABLES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    name: ({**{c: _DUCKDB_TYPES[column_dtype(c)] for c in COMPARE_COLUMNS[name]}, **COMPARE_OPTIONAL.get(name, {})},
           _COMPARE_ORDER[name])
    for name in COMPARE_TABLE_NAMES
}
# what one comparison is, per table: the rows of one (these columns) must all come from one file
COMPARE_UNITS: dict[str, tuple[str, ...]] = {
    "differential": ("atlas", "level", "signature_set", "by", "contrast"),
    "association": ("atlas", "level", "signature_set", "by", "contrast"),
    "meta": ("analysis", "level", "signature_set", "by", "contrast"),
    "untestable": ("atlas", "level", "signature_set", "analysis", "by", "contrast"),
}


def compare_table(name: str) -> str:
    """The DuckDB table holding compare table ``name`` (a key of :data:`COMPARE_TABLES`, never user text)."""
    if name not in COMPARE_TABLES:
        raise KeyError(name)
    return f"compare_{name}"


def compare_order(name: str) -> str:
    """ORDER BY clause of a compare table: its keys, then every other contract column (a total order)."""
    columns, keys = COMPARE_TABLES[name]
    return ", ".join(f'"{c}" NULLS FIRST' for c in [*keys, *(c for c in columns if c not in keys)])


DDL += "".join(
    f"CREATE TABLE {compare_table(name)} (source_id INTEGER NOT NULL, "
    + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ");\n"
    for name, (columns, _) in COMPARE_TABLES.items())

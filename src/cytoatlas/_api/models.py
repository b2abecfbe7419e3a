"""Typed response models of the API (its OpenAPI schema); the rows of every table endpoint."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from .schema import COMPARE_TABLES, VALIDATION_TABLES

T = TypeVar("T")

_PY_TYPES = {"VARCHAR": str, "BIGINT": int, "DOUBLE": float, "BOOLEAN": bool}


class Page(BaseModel, Generic[T]):
    """One page of a table, in a stable order; ``next_offset`` is null on the last page."""

    total: int = Field(description="rows matching the query, over all pages")
    limit: int
    offset: int
    next_offset: int | None
    rows: list[T]


class Problem(BaseModel):
    """An error: what is wrong, and for an unknown name the valid values (or the closest ones)."""

    detail: str
    valid: list[str] | None = None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    schema_version: str
    built: str
    files: int
    atlases: list[str]


class AtlasRow(BaseModel):
    atlas: str
    levels: list[str]
    signature_sets: list[str]
    n_cells: int | None = Field(description="cells in the cell-type pseudobulk of the first level")
    n_samples: int
    n_genes: int


class LevelRow(BaseModel):
    level: str
    n_cell_types: int
    n_samples: int
    n_cells: int | None
    signature_sets: list[str]
    expression: list[str] = Field(description="pseudobulk rows with stored expression: celltype, samples")


class CellTypeRow(BaseModel):
    cell_type: str
    n_cells: int | None
    n_samples: int


class SampleRow(BaseModel):
    sample: str
    cell_type: str
    donor: str | None
    n_cells: int | None


class SignatureSetRow(BaseModel):
    signature_set: str
    n_signatures: int
    atlases: list[str]


class SignatureRow(BaseModel):
    signature: str
    group: str | None = Field(description="regression group (identical signatures share one)")
    cell_type: str | None = Field(description="cell type of a cell-type-specific signature (LinCytoSig)")
    cytokine: str | None


class ActivityRow(BaseModel):
    atlas: str
    level: str
    signature_set: str
    cell_type: str
    sample: str | None = Field(description="null for cell-type rows")
    signature: str
    n_cells: int | None
    z: float | None = Field(description="activity z-score")
    beta: float | None
    se: float | None
    pvalue: float | None
    z_ci_low: float | None = Field(description="2.5 % quantile of z over the donor bootstrap (cell-type rows)")
    z_ci_high: float | None = Field(description="97.5 % quantile of z over the donor bootstrap")
    z_boot_sd: float | None
    matched: bool | None = Field(description="cell-type-specific sets: the signature is this row's cell type's")


class ActivityMatrix(BaseModel):
    """Cell types x signatures; ``values[i][j]`` is row ``rows[i]``, column ``columns[j]`` (null = NaN)."""

    atlas: str
    level: str
    signature_set: str
    value: str
    n_signatures: int = Field(description="signatures before `top` kept the most variable ones")
    rows: list[str]
    columns: list[str]
    values: list[list[float | None]]


class ExpressionRow(BaseModel):
    atlas: str
    level: str
    gene: str
    cell_type: str
    sample: str | None
    n_cells: int | None
    value: float | None = Field(description="log1p CPM")
    zscore: float | None = Field(description="(log1p CPM - atlas gene mean) / atlas gene std")


class ScatterPoint(BaseModel):
    sample: str
    cell_type: str
    expression: float | None = Field(description="log1p CPM of the gene in this sample x cell type")
    activity: float | None = Field(description="activity z-score of the target in this sample x cell type")


class CellsSetRow(BaseModel):
    """An atlas x signature set with per-cell results in the store."""

    atlas: str
    signature_set: str
    kinds: list[str] = Field(description="summary, and embedding when the atlas has one")
    embedding_signatures: list[str] = Field(description="the signatures drawn on the embedding subsample")


class CellsSummaryRow(BaseModel):
    """Per level, label and signature: the per-cell z of the label's cells (``cytoatlas cells``)."""

    level: str
    label: str
    signature: str
    n_cells: int
    mean: float | None
    sd: float | None = Field(description="ddof 1; null for a label of one cell")
    q05: float | None
    q25: float | None
    q50: float | None
    q75: float | None
    q95: float | None
    frac_abs_gt2: float | None = Field(description="fraction of the label's cells with |z| > 2")
    n_quantile_cells: int = Field(description="cells the quantiles are of (all, or a fixed random sample)")


class CellsEmbeddingPoint(BaseModel):
    """One cell of the fixed embedding subsample and its activity z of the signature asked for."""

    idx: int
    cell: str
    x: float
    y: float
    label: str | None = Field(description="the cell's label at the atlas' first level")
    z: float


class ContrastRow(BaseModel):
    """One comparison of ``cytoatlas compare`` in one atlas, level and signature set (for the web page's picker)."""

    analysis: Literal["differential", "association"]
    by: str = Field(description="the obs column compared (differential) or scanned (association)")
    contrast: str = Field(description='"{group} vs {reference}", or the covariate column')
    atlas: str
    level: str
    signature_set: str
    test: str | None = Field(description="ols, wilcoxon, paired-ols or signed-rank; null when nothing was tested")
    reference: str | None = Field(description="the reference group (differential)")
    n_rows: int = Field(description="rows (cell type x signature) in its table")
    n_cell_types: int
    n_signatures: int
    n_significant: int = Field(description="rows with fdr < 0.05")
    n_untestable: int = Field(description="cell types that could not be tested (see /compare/untestable)")


class VolcanoDensity(BaseModel):
    """The drawable rows not sent as points, counted in a ``bins`` x ``bins`` grid over the plot's range."""

    bins: int
    n: int = Field(description="rows counted here (drawable rows beyond the top ones)")
    cells: list[list[int]] = Field(description="[ix, iy, rows, rows with FDR < 0.05] of each non-empty cell: ix "
                                   "counts cells of (x_range[1] - x_range[0]) / bins from x_range[0], iy cells of "
                                   "y_range[1] / bins from 0")


class Volcano(BaseModel):
    """One comparison's volcano (effect vs -log10 p) as the screen can show it: the strongest rows as points, the
    others as counts in a grid."""

    analysis: Literal["differential", "association"]
    atlas: str
    level: str
    signature_set: str
    by: str
    contrast: str
    n_rows: int = Field(description="rows of the comparison")
    n_drawable: int = Field(description="rows with an effect and a p-value")
    n_significant: int = Field(description="rows with fdr < 0.05")
    x_range: list[float] = Field(description="smallest and largest effect of the drawable rows")
    y_range: list[float] = Field(description="0 and the largest -log10 p (p floored at 1e-300)")
    points: list[dict[str, Any]] = Field(description="the `top` drawable rows of smallest p (all columns of the "
                                         "analysis' table; cross-talk lists cut to their first 5 entries), "
                                         "strongest first")
    density: VolcanoDensity


class SearchHit(BaseModel):
    kind: Literal["gene", "signature"]
    name: str
    signature_set: str | None
    atlases: list[str]


def _validation_model(name: str) -> type[BaseModel]:
    columns, _ = VALIDATION_TABLES[name]
    fields = {c: (_PY_TYPES[t] | None, ...) for c, t in columns.items()}
    title = "".join(p.capitalize() for p in name.split("_")) + "Row"
    return create_model(title, __config__=ConfigDict(extra="allow"), **fields)


VALIDATION_MODELS: dict[str, type[BaseModel]] = {name: _validation_model(name) for name in VALIDATION_TABLES}


def _compare_model(name: str) -> type[BaseModel]:
    columns, _ = COMPARE_TABLES[name]
    fields = {c: (_PY_TYPES[t] | None, ...) for c, t in columns.items()}
    title = "Compare" + name.capitalize() + "Row"
    return create_model(title, **fields)


COMPARE_MODELS: dict[str, type[BaseModel]] = {name: _compare_model(name) for name in COMPARE_TABLES}


def _groundtruth_model(name: str) -> type[BaseModel]:
    from .groundtruth import GROUNDTRUTH_TABLES

    columns, _ = GROUNDTRUTH_TABLES[name]
    fields = {c: (_PY_TYPES[t] | None, ...) for c, t in columns.items()}
    return create_model("GroundTruth" + name.capitalize() + "Row", **fields)


GROUNDTRUTH_MODELS: dict[str, type[BaseModel]] = {name: _groundtruth_model(name)
                                                  for name in ("matches", "effects", "treatments", "summary")}

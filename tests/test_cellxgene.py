"""A CELLxGENE-schema dataset runs with no registry entry, as an explicit entry for the same file would."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import KANG

from cytoatlas.cellxgene import detect_adata, detect_h5ad
from cytoatlas.cli import main
from cytoatlas.errors import CytoatlasError
from cytoatlas.registry import get_atlas

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_trees import compare_trees  # noqa: E402

# the Cell Ontology terms of Kang's labels (as CELLxGENE would carry them)
CL = {"B cells": "CL:0000236", "CD14+ Monocytes": "CL:0001054", "CD4 T cells": "CL:0000624",
      "CD8 T cells": "CL:0000625", "Dendritic cells": "CL:0000451", "FCGR3A+ Monocytes": "CL:0002396",
      "Megakaryocytes": "CL:0000556", "NK cells": "CL:0000623"}


def cellxgene_like(source: Path = KANG) -> ad.AnnData:
    """Kang's control cells as the CELLxGENE schema has them: Ensembl var_names with symbols in ``feature_name``,
    log-normalised X with the counts in ``raw.X``, ``donor_id``, CL IDs, donor-level columns, a schema version."""
    src = ad.read_h5ad(source)
    counts = sp.csr_matrix(src.X, dtype=np.float32)
    var = pd.DataFrame({"feature_name": pd.Categorical(src.var["symbol"].astype(str))},
                       index=pd.Index(src.var["ensembl"].astype(str), name=None))
    donors = src.obs["donor"].astype(str)
    order = sorted(donors.unique())
    obs = pd.DataFrame({
        "donor_id": pd.Categorical(donors),
        "cell_type": pd.Categorical(src.obs["cell_type"].astype(str)),
        "cell_type_ontology_term_id": pd.Categorical(src.obs["cell_type"].astype(str).map(CL)),
        "disease": pd.Categorical(["normal"] * src.n_obs),
        "sex": pd.Categorical(donors.map({d: ("female", "male")[i % 2] for i, d in enumerate(order)})),
        "development_stage": pd.Categorical(["adult stage"] * src.n_obs),
        # not a donor-level column here: the cells of a donor come from two tissues
        "tissue": pd.Categorical(np.where(np.arange(src.n_obs) % 2, "blood", "bone marrow")),
    }, index=src.obs_names)
    raw = ad.AnnData(X=counts, var=var.copy(), obs=obs[[]])
    lib = np.asarray(counts.sum(axis=1)).ravel()
    norm = sp.csr_matrix(counts.multiply(1e4 / lib[:, None]))
    norm.data = np.log1p(norm.data)
    adata = ad.AnnData(X=norm.astype(np.float32), obs=obs, var=var, uns={"schema_version": "5.0.0"})
    adata.raw = raw
    return adata


@pytest.fixture(scope="module")
def cxg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cxg") / "kang_cxg.h5ad"
    cellxgene_like().write_h5ad(path)
    return path


EXPLICIT = """
[atlas.kang_cxg]
h5ad = "{h5ad}"
sample_col = "donor_id"
counts = "raw/X"
gene_symbols = "feature_name"
cell_type_ontology_col = "cell_type_ontology_term_id"
sample_columns = ["disease", "sex", "development_stage"]
levels = {{ cell_type = "cell_type" }}
"""


def test_detects_the_schema(cxg_file: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="cytoatlas.cellxgene"):
        cfg = get_atlas(str(cxg_file))
    assert cfg.name == "kang_cxg" and cfg.sample_col == "donor_id" and cfg.counts == "raw/X"
    assert cfg.gene_symbols == "feature_name" and cfg.cell_type_ontology_col == "cell_type_ontology_term_id"
    assert [(lev.name, lev.by) for lev in cfg.levels] == [("cell_type", ("cell_type",))]
    assert cfg.sample_columns == ("disease", "sex", "development_stage")  # tissue varies within donors
    lines = [r.getMessage() for r in caplog.records if "CELLxGENE schema 5.0.0 detected" in r.getMessage()]
    assert len(lines) == 1 and "raw/X (X is not integer)" in lines[0] and "tissue" in lines[0]
    # the same answer from the object in memory
    assert detect_adata(ad.read_h5ad(cxg_file)).entry == detect_h5ad(cxg_file).entry


def test_integer_x_is_the_counts(tmp_path: Path) -> None:
    adata = cellxgene_like()
    adata.X = adata.raw.X.copy()
    assert detect_adata(adata).entry["counts"] == "X"


def test_a_registry_entry_overrides_the_schema(cxg_file: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg.toml"
    reg.write_text('[atlas.kang_cxg]\nsample_columns = ["sex"]\nlevels = { ct = "cell_type" }\n')
    cfg = get_atlas(str(cxg_file), registry=reg)
    assert cfg.sample_columns == ("sex",) and [lev.name for lev in cfg.levels] == ["ct"]
    assert cfg.counts == "raw/X" and cfg.sample_col == "donor_id"  # the rest from the schema


def test_a_partial_registry_entry_of_a_cellxgene_file(cxg_file: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.blood]\nh5ad = "{cxg_file}"\nexclude = {{ cell_type = ["B cells"] }}\n')
    cfg = get_atlas("blood", registry=reg)
    assert cfg.name == "blood" and cfg.sample_col == "donor_id" and cfg.counts == "raw/X"
    assert cfg.exclude == (("cell_type", ("B cells",)),)
    reg.write_text(f'[atlas.plain]\nh5ad = "{KANG}"\n')
    with pytest.raises(CytoatlasError, match="missing required key 'sample_col'"):
        get_atlas("plain", registry=reg)


def test_a_file_neither_registered_nor_schema_conforming_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5ad"
    ad.read_h5ad(KANG).write_h5ad(path)
    with pytest.raises(CytoatlasError, match=r"CELLxGENE schema.*\[atlas\.plain\].*sample_col.*levels"):
        get_atlas(str(path))


def test_run_with_no_registry_equals_an_explicit_entry(cxg_file: Path, tmp_path: Path) -> None:
    opts = ["--n-bootstrap", "6", "--min-samples", "3", "--signatures", "cytosig", "--centre", "within:cell_type"]
    assert main(["-q", "run", str(cxg_file), "--out", str(tmp_path / "detected"), *opts]) == 0
    reg = tmp_path / "reg" / "explicit.toml"
    reg.parent.mkdir()
    reg.write_text(EXPLICIT.format(h5ad=cxg_file))
    assert main(["-q", "run", "--atlas", "kang_cxg", "--registry", str(reg), "--out", str(tmp_path / "explicit"),
                 *opts]) == 0
    files = sorted(p.name for p in (tmp_path / "detected").rglob("*.h5ad"))
    assert "kang_cxg_pseudobulk_cell_type_samples.h5ad" in files and len(files) == 6
    assert compare_trees(tmp_path / "detected", tmp_path / "explicit") == []
    samples = ad.read_h5ad(tmp_path / "detected" / "pseudobulk" / "kang_cxg_pseudobulk_cell_type_samples.h5ad")
    assert {"sex", "disease", "development_stage"} <= set(samples.obs)
    assert samples.var["gene_symbol"].iloc[0] == "ISG15" and samples.var["gene_id"].iloc[0].startswith("ENSG")
    assert set(samples.obs["cell_type_ontology_term_id"]) == set(CL.values())
    # the raw counts, not the normalised X, were summed
    raw = ad.read_h5ad(KANG)
    donor, cell_type = samples.obs["sample"].iloc[0], samples.obs["cell_type"].iloc[0]
    cells = ((raw.obs["donor"].astype(str) == donor) & (raw.obs["cell_type"] == cell_type)).to_numpy()
    np.testing.assert_array_equal(samples.layers["counts"][0], np.asarray(raw.X[cells].sum(axis=0)).ravel())


def test_cells_validate_and_compare_take_the_file(cxg_file: Path, tmp_path: Path) -> None:
    """Every step takes the file as it takes a registry name; results are known by the file's stem."""
    res = tmp_path / "res"
    assert main(["-q", "run", str(cxg_file), "--out", str(res), "--n-bootstrap", "0", "--signatures", "cytosig",
                 "--centre", "within:cell_type"]) == 0
    assert main(["-q", "cells", str(cxg_file), "--out", str(res), "--signatures", "cytosig"]) == 0
    cells = ad.read_h5ad(res / "cells" / "kang_cxg_cells_cytosig_activity.h5ad")
    assert cells.n_obs == 12261 and list(cells.obs.columns) == ["donor_id", "cell_type"]
    assert main(["-q", "validate", "--atlas", str(cxg_file), "--results", str(res), "--out", str(tmp_path / "val"),
                 "--no-figures", "--min-samples", "5"]) == 0
    assert set(pd.read_csv(tmp_path / "val" / "summary.csv")["atlas"]) == {"kang_cxg"}
    assert main(["-q", "compare", "--atlas", str(cxg_file), "--results", str(res), "--out", str(tmp_path / "cmp"),
                 "--by", "sex", "--reference", "female", "--min-group-size", "2", "--no-figures"]) == 0
    diff = pd.read_csv(tmp_path / "cmp" / "differential.csv")
    assert set(diff["atlas"]) == {"kang_cxg"} and set(diff["contrast"]) == {"male vs female"}
    assert set(diff["cl_id"]) <= set(CL.values())  # the schema's CL IDs travelled with the labels


def test_pseudobulk_of_the_object_in_memory_needs_no_arguments(cxg_file: Path, tmp_path: Path) -> None:
    """``pp.pseudobulk`` of a CELLxGENE object detects what the file path detects, and gives its files."""
    from cytoatlas import pp
    from cytoatlas._pseudobulk import pseudobulk

    paths = pseudobulk(str(cxg_file), tmp_path, n_bootstrap=0)
    res = pp.pseudobulk(ad.read_h5ad(cxg_file), name="kang_cxg", n_bootstrap=0)
    for path in paths:
        file = ad.read_h5ad(path)
        mem = getattr(res["cell_type"], file.uns["kind"])
        np.testing.assert_array_equal(mem.layers["counts"], file.layers["counts"])
        np.testing.assert_array_equal(mem.X, file.X)
        pd.testing.assert_frame_equal(mem.obs, file.obs)
        pd.testing.assert_frame_equal(mem.var, file.var)

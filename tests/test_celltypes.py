"""Cell types through the Cell Ontology: the shipped CL table against its source, labels to CL terms (names,
synonyms, atlas shorthand, registry entries, an atlas' own CL ID column), and what two atlases can compare."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _atlas_factory import make_counts, tiny_config

import cytoatlas
from cytoatlas.celltypes import (
    ONTOLOGY_COLUMN,
    cell_ontology,
    comparable_units,
    lineages,
    map_labels,
    match,
    ontology_ids,
    registry_hint,
)
from cytoatlas.celltypes.units import lineage_of, unit_labels
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import read_pseudobulk

ROOT = Path(__file__).resolve().parents[1]


def _build_script():
    spec = importlib.util.spec_from_file_location("build_cell_ontology", ROOT / "scripts" / "build_cell_ontology.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_table_is_the_cl_release_of_cellxgene_ontology_guide_rebuilt() -> None:
    # the test extra pins the guide whose CL release the table was built from; the table is its derivation
    shipped = json.loads(gzip.decompress((ROOT / "src/cytoatlas/celltypes/data/cl.json.gz").read_bytes()))
    rebuilt = json.loads(json.dumps(_build_script().build()))
    assert shipped == rebuilt
    from cellxgene_ontology_guide.supported_versions import CXGSchema

    source = CXGSchema().ontology("CL")
    cl = cell_ontology()
    assert cl.version == shipped["cl_version"] and cl.source.startswith("cellxgene-ontology-guide ")
    live = [t for t, v in source.items() if not v["deprecated"]]
    assert len(cl.terms) == len(live) > 3000
    for term in ("CL:0000895", "CL:0000939", "CL:0002399"):  # ancestors and their distances as CL gives them
        assert cl.term(term).ancestors == source[term]["ancestors"]
        assert cl.name(term) == source[term]["label"]


def test_the_ontology_answers_ancestry_and_resolves_deprecated_ids() -> None:
    cl = cell_ontology()
    naive_cd4 = "CL:0000895"
    assert cl.name(naive_cd4) == "naive thymus-derived CD4-positive, alpha-beta T cell"
    assert cl.lineage_distance(naive_cd4, "CL:0000624") == 1  # CD4-positive, alpha-beta T cell
    assert cl.is_a(naive_cd4, "CL:0000084") and not cl.is_a(naive_cd4, "CL:0000236")  # T, not B
    assert cl.lineage_distance("CL:0000084", "CL:0000084") == 0
    old, new = next(iter(cl.replaced_by.items()))
    assert old not in cl.terms and cl.term(old).id == new
    with pytest.raises(CytoatlasError, match="not a Cell Ontology term of CL v"):
        cl.term("CL:9999999")


# labels as atlases write them (including every one the issue names) and the CL term a reader of CL would pick
LABELS = {
    "B04_Bm_CD27": "CL:0000787",  # memory B cell
    "I01_CD16hiNK_CREM": "CL:0000939",  # CD16-positive, CD56-dim NK cell, human
    "M05_Mo_CD14": "CL:0000860",  # classical monocyte
    "M08_Mph_NLRP3": "CL:0000235",  # macrophage
    "M14_mNeu_CXCR2": "CL:0000775",  # neutrophil
    "Th0": "CL:0000895",  # a CL synonym of naive CD4 T
    "cDC3": "CL:0000990",  # conventional dendritic cell (no term of its own)
    "DC4": "CL:0000451",  # dendritic cell
    "cDC2": "CL:0002399",  # CD1c-positive myeloid dendritic cell
    "DC": "CL:0000451",
    "CD4_regulatory": "CL:0000792",  # CD4-positive, CD25-positive regulatory T cell: a child of Treg
    "Tregs": "CL:0000815",  # regulatory T cell
    "Mono_classical": "CL:0000860",
    "CD14 Mono": "CL:0000860",
    "CD16 Mono": "CL:0000875",  # non-classical monocyte
    "B_Progenitors": "CL:0000826",  # pro-B cell, not HSPC
    "Dendritic cells": "CL:0000451",
    "Conventional dendritic cell": "CL:0000990",
    "T_CD8_EM_CX3CR1high": "CL:0000913",  # effector memory CD8 T
    "CD56_dim_NK": "CL:0000939",
    "NK_CD56bright": "CL:0000938",
    "B_Memory_switched": "CL:0000972",
    "B_Memory_unswitched": "CL:0000970",
    "T_CD4_Naive": "CL:0000895",
    "T_CD8_Naive": "CL:0000900",
    "CD4 TCM": "CL:0000904",
    "T_CD4_EMRA": "CL:0001087",
    "MAIT": "CL:0000940",
    "gdT_V2": "CL:0000798",
    "pDC": "CL:0000784",
    "Plasmablasts": "CL:0000980",
    "Macrophages": "CL:0000235",
    "CD4+ T cells": "CL:0000624",
    "Naive B cells": "CL:0000788",
    "NK_Proliferating": "CL:4033071",  # cycling natural killer cell
    "FCGR3A+ Monocytes": "CL:0000576",  # a marker CL does not name: the lineage
}


@pytest.mark.parametrize(("label", "term"), list(LABELS.items()))
def test_atlas_labels_compose_to_their_cl_term(label: str, term: str) -> None:
    got = match(label)
    assert (got.term, cell_ontology().name(got.term)) == (term, cell_ontology().name(term))


def test_how_a_term_was_found() -> None:
    assert match("Dendritic cells").source == "name"
    assert match("Tregs").source == "synonym" and match("Th0").source == "synonym"
    assert match("T_CD8_EM_CX3CR1high").source == "rule"
    for label in ("Doublets", "Unknown", "Cluster 7", "LowQuality_cells", ""):
        assert match(label).term == "" and match(label).source == "none"


def test_registry_entries_by_id_by_name_and_shared_names() -> None:
    labels = ["T-unconv", "odd cells", "Doublets", "Tumour B", "Mono"]
    overrides = {"T-unconv": "Unconventional T", "odd cells": "CL:0000236", "Doublets": "",
                 "Tumour B": "memory B cell"}
    table = map_labels(labels, overrides=overrides).set_index("cell_type")
    assert tuple(table.loc["odd cells", ["cl_id", "cl_name", "source"]]) == ("CL:0000236", "B cell", "registry")
    assert tuple(table.loc["Tumour B", ["cl_id", "source"]]) == ("CL:0000787", "registry")  # a CL name
    # a shared name of the user's own (as written before the ontology): kept, meets only the same name
    assert tuple(table.loc["T-unconv", ["cl_id", "cl_name", "source"]]) == ("", "Unconventional T", "registry")
    assert tuple(table.loc["Doublets", ["cl_id", "cl_name", "source"]]) == ("", "", "registry")  # out on purpose
    assert tuple(table.loc["Mono", ["cl_id", "source"]]) == ("CL:0000576", "rule")  # shorthand
    with pytest.raises(CytoatlasError, match="CL:1234567"):
        map_labels(["x"], overrides={"x": "CL:1234567"})


def test_unmatched_labels_are_listed_with_candidates_and_a_registry_line() -> None:
    table = map_labels(["Cluster 7", "all", "Lung|CD8 TEM", "Weird T-ish blob"], separator="|")
    rows = table.set_index("cell_type")
    assert rows.loc["all", "source"] == "unstratified level"
    assert tuple(rows.loc["Lung|CD8 TEM", ["cl_id", "context"]]) == ("CL:0000913", "Lung")
    assert rows.loc["Weird T-ish blob", "cl_id"] == "CL:0000084"  # the lineage word alone still places it
    unmatched = table[table["source"] == "none"]
    assert unmatched["cell_type"].tolist() == ["Cluster 7"]
    candidates = unmatched["candidates"].iloc[0].split("; ")
    assert len(candidates) == 3 and all(c.startswith("CL:") for c in candidates)
    hint = registry_hint("lung_atlas", unmatched)
    assert hint.startswith("[atlas.lung_atlas.harmonise]\n\"Cluster 7\" = \"CL:")


def test_an_atlas_own_cl_ids_come_first_and_are_checked() -> None:
    obs = pd.DataFrame({"cell_type": ["weird name", "weird name", "CD14 Mono"],
                        ONTOLOGY_COLUMN: ["CL:0000236", "CL:0000236", ""]})
    ids = ontology_ids(obs)
    assert ids == {"weird name": "CL:0000236"}
    table = map_labels(obs["cell_type"], ontology_ids=ids).set_index("cell_type")
    assert tuple(table.loc["weird name", ["cl_id", "source"]]) == ("CL:0000236", "column")
    assert tuple(table.loc["CD14 Mono", ["cl_id", "source"]]) == ("CL:0000860", "rule")
    with pytest.raises(CytoatlasError, match="not a Cell Ontology ID"):
        map_labels(["x"], ontology_ids={"x": "UBERON:0000178"})


def _units(a: list[str], b: list[str], resolution: str = "fine") -> dict[tuple[str, str], str]:
    u = comparable_units({"A": map_labels(a), "B": map_labels(b)}, resolution)
    return {(x, c): i for x, c, i in zip(u["atlas"], u["cell_type"], u["unit_id"], strict=True)}


def test_each_label_meets_the_other_atlas_at_the_finest_term_both_hold() -> None:
    a = ["cDC2", "CD14 Mono", "CD4 Naive", "CD4 Memory", "B_Progenitors", "NK"]
    b = ["DC", "classical monocyte", "Naive CD4+ T", "CD4+ T cells", "HSPC", "B cells", "CD56_dim_NK"]
    u = _units(a, b)
    assert u[("A", "cDC2")] == u[("B", "DC")] == "CL:0000451"  # cDC2 rolls up to dendritic cell
    assert u[("A", "CD14 Mono")] == u[("B", "classical monocyte")] == "CL:0000860"  # directly
    assert u[("A", "CD4 Naive")] == u[("B", "Naive CD4+ T")] == "CL:0000895"  # naive meets naive, not CD4 T
    assert u[("A", "CD4 Memory")] == u[("B", "CD4+ T cells")] == "CL:0000624"
    assert u[("B", "CD56_dim_NK")] == u[("A", "NK")] == "CL:0000623"
    # B-cell progenitors never roll up out of the B lineage into HSPC
    assert u[("A", "B_Progenitors")] == "CL:0000826" and u[("B", "HSPC")] != u[("A", "B_Progenitors")]
    lin = _units(a, b, "lineage")
    assert lin[("A", "B_Progenitors")] == lin[("B", "B cells")] == "CL:0000945"  # B lineage
    assert lin[("A", "CD4 Naive")] == lin[("B", "CD4+ T cells")] == "CL:0000624"
    assert lin[("A", "cDC2")] == lin[("B", "DC")] == "CL:0000451"


def test_labels_of_one_atlas_meeting_at_one_term_pool_and_contexts_stay_apart() -> None:
    a = map_labels(["CD4 Naive", "CD4 TCM", "CD4 TEM", "Lung|B cells", "Blood|B cells"], separator="|")
    b = map_labels(["CD4+ T cells", "Lung|Memory B"], separator="|")
    u = comparable_units({"A": a, "B": b}, "fine")
    pooled = unit_labels(u)
    cd4 = pooled[(pooled["unit_id"] == "CL:0000624")].set_index("atlas")["labels"].to_dict()
    assert cd4 == {"A": "CD4 Naive+CD4 TCM+CD4 TEM", "B": "CD4+ T cells"}
    b_units = u[u["cell_type"].str.contains("B")].set_index(["atlas", "cell_type"])["unit_name"].to_dict()
    assert b_units[("A", "Lung|B cells")] == b_units[("B", "Lung|Memory B")] == "Lung|B cell"
    assert b_units[("A", "Blood|B cells")] == "Blood|B cell"  # no other atlas holds blood B cells


def test_shared_names_of_the_registry_meet_only_themselves() -> None:
    a = map_labels(["T-unconv"], overrides={"T-unconv": "Unconventional T"})
    b = map_labels(["Innate-like T"], overrides={"Innate-like T": "Unconventional T"})
    c = map_labels(["T cells"])
    u = comparable_units({"A": a, "B": b, "C": c}, "fine").set_index("atlas")
    assert u.loc["A", "unit_name"] == u.loc["B", "unit_name"] == "Unconventional T"
    assert u.loc["A", "unit_id"] == "" and u.loc["C", "unit_id"] == "CL:0000084"


# A hand mapping of labels written the way large public PBMC and tissue atlases write them, at coarse and fine
# levels, to the lineage an annotator would give (lineages.tsv short names; "" = not a cell type)
VOCABULARY = {
    "B": "B", "Plasma": "Plasma", "pDC": "DC", "DC": "DC", "Mono": "Monocyte", "T_CD4_Naive": "CD4 T",
    "T_CD4_NonNaive": "CD4 T", "T_CD8_Naive": "CD8 T", "T_CD8_NonNaive": "CD8 T", "ILC": "ILC", "Platelets": "Platelet",
    "RBC": "Erythroid", "Progenitors": "Progenitor", "B_Transitional": "B", "B_Naive": "B", "B_Memory_ITGAX": "B",
    "B_IFNresponder": "B", "Plasma_IGHA": "Plasma", "Plasma_IGHG": "Plasma", "Plasma_XBP1": "Plasma",
    "Plasma_Proliferative": "Plasma", "cDC1": "DC", "DC5": "DC", "DC_CCR7": "DC", "Mono_nonClassical": "Monocyte",
    "Mono_inflammatory": "Monocyte", "Mono_regulatory": "Monocyte", "Mono_IFNresponse": "Monocyte",
    "T_CD4_CM": "CD4 T", "T_CD4_EM": "CD4 T", "Th1": "CD4 T", "Th2": "CD4 T", "Th17": "CD4 T",
    "Tregs_activated": "CD4 T", "T_CD8_CM": "CD8 T", "T_CD8_EM_CX3CR1int": "CD8 T", "T_CD8_IFNresponse": "CD8 T",
    "T_CD8_Mem_cytotoxic": "CD8 T", "T_CD8_activated": "CD8 T", "MAIT_17": "T", "gdT_V1": "T", "NK_adaptive": "NK",
    "NK_IFN1response": "NK", "T_Proliferative": "T", "CD4 T": "CD4 T", "CD8 T": "CD8 T", "NK cells": "NK",
    "B cells": "B", "CD14+ Monocytes": "Monocyte", "Megakaryocytes": "Megakaryocyte", "Neutrophils": "Neutrophil",
    "Mast cells": "Mast", "Eosinophils": "Eosinophil", "Basophils": "Basophil", "Macrophages": "Macrophage",
    "Alveolar macrophages": "Macrophage", "Kupffer cells": "Macrophage", "Fibroblasts": "Fibroblast",
    "Endothelial cells": "Endothelial", "Lymphatic endothelial cells": "Endothelial", "Pericytes": "Pericyte",
    "Smooth muscle cells": "Smooth muscle", "Epithelial cells": "Epithelial", "Keratinocytes": "Epithelial",
    "HSC": "Progenitor", "HSPC": "Progenitor", "Erythroblasts": "Erythroid", "CD8_Tem_GZMK": "CD8 T",
    "CD4_Tn_CCR7": "CD4 T", "CD8_Tn_CCR7": "CD8 T", "CD4_Treg_FOXP3": "CD4 T", "NK_CD56bright_SELL": "NK",
    "Mono_CD16_FCGR3A": "Monocyte", "cDC2_CD1C": "DC", "pDC_LILRA4": "DC", "B_naive_IGHD": "B",
    "Doublets": "", "LowQuality_cells": "", "Cycling_cells": "",
}


def test_a_realistic_vocabulary_lands_in_its_lineages() -> None:
    table = map_labels(list(VOCABULARY)).set_index("cell_type")
    short = lineages()
    unmatched, wrong = [], []
    for label, want in VOCABULARY.items():
        term = table.loc[label, "cl_id"]
        if not want:
            assert term == "", label  # not a cell type: never forced onto one
            continue
        if not term:
            unmatched.append(label)
            continue
        got = short.get(lineage_of(term) or "", "")
        # a label may land above its lineage (MAIT is a T cell of no CD4/CD8 kind) but never in another one
        if got != want and not cell_ontology().is_a(
                next(t for t, s in short.items() if s == want), next((t for t, s in short.items() if s == got), "")):
            wrong.append((label, want, got, cell_ontology().name(term)))
    assert not wrong
    assert len(unmatched) <= 0.05 * sum(1 for v in VOCABULARY.values() if v), unmatched


def test_pseudobulk_carries_the_atlas_own_cl_ids_the_cellxgene_way(tmp_path: Path) -> None:
    counts, obs = make_counts(n_cells=240, n_types=3, seed=3)
    names = {"T0": "weird label", "T1": "CD14 Mono", "T2": "B cells"}
    obs["cell_type"] = pd.Categorical(obs["cell_type"].map(names))
    ids = {"weird label": "CL:0000236", "CD14 Mono": "CL:0000860", "B cells": "CL:0000236"}
    obs[ONTOLOGY_COLUMN] = pd.Categorical(obs["cell_type"].map(ids).astype(str))
    path = tmp_path / "cxg.h5ad"
    ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(40)])) \
        .write_h5ad(path)
    cfg = tiny_config(path, "cxg")  # no registry key: cell_type_ontology_term_id found beside cell_type
    paths = cytoatlas.pseudobulk(cfg, tmp_path / "pb", n_bootstrap=0)
    for p in paths:
        pb = read_pseudobulk(p)
        assert ontology_ids(pb.obs) == ids, p.name
    import h5py

    with h5py.File(paths[0]) as f:  # recorded with the level's parameters (absent where no such column exists)
        assert f["uns/parameters/cell_type_ontology_col"][()].decode() == ONTOLOGY_COLUMN
    # one label with two IDs is an error naming them
    obs2 = obs.copy()
    col = obs2[ONTOLOGY_COLUMN].astype(str).to_numpy()
    col[np.flatnonzero(obs2["cell_type"].astype(str) == "CD14 Mono")[0]] = "CL:0000576"
    obs2[ONTOLOGY_COLUMN] = pd.Categorical(col)
    bad = tmp_path / "bad.h5ad"
    ad.AnnData(X=sp.csr_matrix(counts), obs=obs2, var=pd.DataFrame(index=[f"G{i}" for i in range(40)])) \
        .write_h5ad(bad)
    with pytest.raises(CytoatlasError, match=r"'CD14 Mono' carries several Cell Ontology IDs .*CL:0000576, "
                                             r"CL:0000860"):
        cytoatlas.pseudobulk(tiny_config(bad, "bad"), tmp_path / "pb2", n_bootstrap=0)
    # a registry key naming a column obs lacks: the error lists the columns there are
    with pytest.raises(CytoatlasError, match="available: .*cell_type"):
        cytoatlas.pseudobulk(tiny_config(path, "cxg", cell_type_ontology_col="cl_ids"), tmp_path / "pb3",
                             n_bootstrap=0)


def test_the_cli_lists_each_label_term_source_and_lineage(tmp_path: Path, capsys) -> None:
    from cytoatlas.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("CD4_c08_Tfh_CXCL13\n\nCluster 3\n")
    assert main(["cell-types", "B04_Bm_CD27", "--file", str(labels)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# Cell Ontology v") and lines[1].split("\t")[:3] == ["label", "cl_id", "cl_name"]
    rows = {r.split("\t")[0]: r.split("\t") for r in lines[2:]}
    assert rows["B04_Bm_CD27"][1:5] == ["CL:0000787", "memory B cell", "rule", "B"]
    assert rows["CD4_c08_Tfh_CXCL13"][1:5] == ["CL:0002038", "T follicular helper cell", "rule", "CD4 T"]
    assert rows["Cluster 3"][3] == "none" and rows["Cluster 3"][5].count("CL:") == 3
    assert main(["cell-types"]) == 2
    assert "give cell-type labels" in capsys.readouterr().err

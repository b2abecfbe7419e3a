"""What cannot be computed is reported in the tables, with its reason, and the rest goes on: too few samples, no
matched cell types, a target whose gene is absent; and unusable inputs end in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import cytoatlas
from cytoatlas import CytoatlasError
from cytoatlas.io.tables import read_parquet


@pytest.fixture(scope="module")
def with_clusters(demo_pair, tmp_path_factory) -> Path:
    """The demo pair plus a third atlas: 12 donors, its cell types named only "cluster N" (nothing to match)."""
    from cytoatlas.demo import demo_config
    from cytoatlas.demo_atlas import DEMO_LEVELS, write_demo_atlas

    root = tmp_path_factory.mktemp("clusters")
    labels = ["CD4 T", "CD8 T", "Unconventional T", "Proliferating T", "B", "Plasma", "Monocytes", "Dendritic cells",
              "NK", "ILC", "T cells", "B cells", "Myeloid", "NK cells"]
    rename = {label: f"cluster {i}" for i, label in enumerate(labels)}
    h5ad = write_demo_atlas(root / "clusters_atlas.h5ad", n_cells=3_000, n_donors=12, seed=3, rename=rename)
    cfg = demo_config(h5ad, "clusters")
    assert set(DEMO_LEVELS) >= {"L2"}
    pb = cytoatlas.pseudobulk(cfg, root / "clusters" / "pseudobulk", levels=["L2"], n_bootstrap=0)
    cytoatlas.activity(pb, root / "clusters" / "activity", signatures=["cytosig"], centre="within:cell_type")
    out = root / "val"
    results = {**demo_pair["results"], "clusters": root / "clusters"}
    cytoatlas.validate([*demo_pair["configs"], cfg], out, results=results, levels=["L2"], signatures=["cytosig"],
                       min_samples=15, target_genes={"IFNG": "NOT_A_GENE"}, n_bootstrap=10, figures=False)
    return out


def test_too_few_samples_are_reported(with_clusters: Path) -> None:
    rho = read_parquet(with_clusters / "rho.parquet")
    clusters = rho[(rho["atlas"] == "clusters") & (rho["reason"] != "gene absent")]
    assert len(clusters) > 0 and (clusters["reason"] == "fewer than 15 samples").all()
    assert clusters["rho"].isna().all() and (clusters["n_samples"] <= 12).all()
    demo = rho[(rho["atlas"] == "demo") & (rho["reason"] == "")]
    assert len(demo) > 100 and (demo["n_samples"] >= 15).all()  # the other atlases are computed
    summary = read_parquet(with_clusters / "summary.parquet").set_index("atlas")
    assert summary.loc["clusters", "n_targets"] == 0 and summary.loc["demo", "n_targets"] > 30


def test_no_matched_cell_types_are_reported(with_clusters: Path) -> None:
    matches = read_parquet(with_clusters / "cell_type_matches.parquet")
    clusters = matches[matches["atlas"] == "clusters"]
    assert len(clusters) >= 8 and (clusters["cl_id"] == "").all()  # listed, unmatched
    assert (clusters["source"] == "none").all() and (clusters["candidates"] != "").all()
    cross = read_parquet(with_clusters / "cross_atlas.parquet")
    with_c = cross[(cross["atlas_a"] == "clusters") | (cross["atlas_b"] == "clusters")]
    assert len(with_c) == 2 * 2 * 43 and (with_c["reason"] == "no matched cell types").all()  # x 2 resolutions
    assert (with_c["n_cell_types"] == 0).all() and with_c["r"].isna().all()
    pair = cross[(cross["atlas_a"] == "demo") & (cross["atlas_b"] == "demo2")]
    assert (pair["reason"] == "").sum() >= 40  # the matched pair is compared all the same
    cons = read_parquet(with_clusters / "conservation.parquet")
    assert (cons["n_pairs"] <= 1).all() and (cons["n_pairs"] == 1).sum() >= 40


def test_a_target_whose_gene_is_absent_is_reported(with_clusters: Path) -> None:
    rho = read_parquet(with_clusters / "rho.parquet")
    ifng = rho[rho["target"] == "IFNG"]
    assert set(ifng["atlas"]) == {"demo", "demo2", "clusters"}
    assert (ifng["gene"] == "NOT_A_GENE").all() and (ifng["reason"] == "gene absent").all()
    assert len(ifng) == 3 and not ifng["representative"].any()  # one row per atlas and level
    tiers = read_parquet(with_clusters / "consistency.parquet").set_index("target")
    assert tiers.loc["IFNG", "n_atlases"] == 0 and tiers.loc["IFNG", "reason"] != ""
    cells = read_parquet(with_clusters / "rho_cell_types.parquet")
    assert (cells.loc[cells["target"] == "IFNG", "reason"] == "gene absent").all()
    # without resampled files there is no interval, and no error
    clusters = cells[cells["atlas"] == "clusters"]
    assert len(clusters) and clusters["rho_ci_low"].isna().all() and (clusters["n_boot"] == 0).all()


def test_unusable_inputs_end_in_one_message(demo_pair, tmp_path: Path) -> None:
    with pytest.raises(CytoatlasError, match="no results directory"):
        cytoatlas.validate(["nope"], tmp_path / "a", results=demo_pair["root"])
    empty = tmp_path / "empty"
    (empty / "activity").mkdir(parents=True)
    with pytest.raises(CytoatlasError, match="no activity files"):
        cytoatlas.validate(["empty"], tmp_path / "b", results=tmp_path)
    with pytest.raises(CytoatlasError, match="no activity files .* for levels L9"):
        cytoatlas.validate(demo_pair["configs"][:1], tmp_path / "c", results=demo_pair["results"], levels=["L9"])
    with pytest.raises(CytoatlasError, match="min_samples"):
        cytoatlas.validate(demo_pair["configs"][:1], tmp_path / "d", results=demo_pair["results"], min_samples=2)
    assert not any((tmp_path / d).exists() for d in "abcd")
    with pytest.raises(CytoatlasError, match="has no summary.csv"):
        cytoatlas.report(tmp_path / "empty")

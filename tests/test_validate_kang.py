"""The real Kang 2018 control PBMCs (8 donors) through pseudobulk, activity and validate, keyed by gene symbols and
again by Ensembl ids with the symbol column named in the registry: the two give the same validation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import KANG

import cytoatlas
from cytoatlas.cli import main
from cytoatlas.io.tables import read_parquet
from cytoatlas.registry import atlas_from_mapping

LEVELS = {"ct": "cell_type", "donor_only": []}


@pytest.fixture(scope="module")
def kang_runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("kang")
    # by symbols: the file as it is (var_names are symbols)
    cfg = atlas_from_mapping("kang", {"h5ad": str(KANG), "sample_col": "donor", "levels": LEVELS})
    cytoatlas.run(cfg, root / "kang", pseudobulk_options={"n_bootstrap": 20},
                  activity_options={"signatures": ["cytosig", "secact"]})
    # by Ensembl ids: the same cells with Ensembl var_names (a temporary file), symbols named in a registry
    ens = ad.read_h5ad(KANG)
    assert ens.var["ensembl"].is_unique and ens.var["symbol"].str.len().gt(0).all()
    ens.var_names = ens.var["ensembl"].astype(str).to_numpy()
    ens.write_h5ad(root / "kang_ensembl.h5ad")
    registry = root / "atlases.toml"
    registry.write_text(f'[atlas.kang_ens]\nh5ad = "{root / "kang_ensembl.h5ad"}"\nsample_col = "donor"\n'
                        'gene_symbols = "symbol"\n[atlas.kang_ens.levels]\nct = "cell_type"\ndonor_only = []\n')
    assert main(["-q", "run", "--registry", str(registry), "--atlas", "kang_ens", "--out", str(root / "kang_ens"),
                 "--n-bootstrap", "20", "--signatures", "cytosig,secact"]) == 0
    # 8 donors: fewer than the default 10 samples a correlation needs; 5 here, and the default once
    assert main(["-q", "validate", "--registry", str(registry), "--atlas", "kang", "--atlas", "kang_ens",
                 "--results", str(root), "--out", str(root / "val"), "--min-samples", "5"]) == 0
    cytoatlas.validate(["kang"], root / "val10", results=root, figures=False)
    return {"root": root, "cfg": cfg, "registry": registry}


def test_ensembl_keyed_run_maps_to_symbols(kang_runs) -> None:
    pb = ad.read_h5ad(kang_runs["root"] / "kang_ens" / "pseudobulk" / "kang_ens_pseudobulk_ct_samples.h5ad")
    assert pb.var_names[0] == "ISG15" and pb.var["gene_id"].iloc[0].startswith("ENSG")
    act_dir = kang_runs["root"] / "kang_ens" / "activity"
    act = ad.read_h5ad(act_dir / "kang_ens_pseudobulk_ct_samples_cytosig_activity.h5ad")
    assert act.uns["n_genes_used"] > 100


def test_symbols_and_ensembl_give_the_same_validation(kang_runs) -> None:
    rho = read_parquet(kang_runs["root"] / "val" / "rho.parquet")
    a = rho[rho["atlas"] == "kang"].drop(columns="atlas").reset_index(drop=True)
    b = rho[rho["atlas"] == "kang_ens"].drop(columns="atlas").reset_index(drop=True)
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, atol=1e-9)
    computed = a[a["reason"] == ""]
    assert len(computed) > 50 and set(computed["stratum"]) >= {"all", "CD14+ Monocytes", "B cells"}
    assert (computed["n_samples"].between(5, 8)).all()
    # Kang has 1,287 genes: most targets' genes are absent, and said so
    assert (a["reason"] == "gene absent").sum() > 500
    # identical atlases agree perfectly across atlases, on all 8 shared cell types
    cross = read_parquet(kang_runs["root"] / "val" / "cross_atlas.parquet")
    done = cross[cross["reason"] == ""]
    assert len(done) > 1000 and (done.loc[done["resolution"] == "fine", "n_cell_types"] == 8).all()
    # the two monocyte labels pool at the lineage resolution
    assert (done.loc[done["resolution"] == "lineage", "n_cell_types"] == 7).all()
    np.testing.assert_allclose(done["r"], 1.0, atol=1e-6)
    cons = read_parquet(kang_runs["root"] / "val" / "conservation.parquet")
    assert (cons.loc[cons["n_pairs"] > 0, "conservation"] == "conserved").all()
    tiers = read_parquet(kang_runs["root"] / "val" / "consistency.parquet")
    both = tiers[tiers["n_atlases"] == 2]
    assert len(both) > 50 and set(both["tier"]) <= {"all", "few"}  # the same rho twice: never "most"
    matches = read_parquet(kang_runs["root"] / "val" / "cell_type_matches.parquet")
    ct = matches[(matches["atlas"] == "kang") & (matches["level"] == "ct")]
    assert len(ct) == 8 and (ct["cl_id"].str.startswith("CL:")).all()


def test_eight_donors_are_too_few_at_the_default_threshold(kang_runs) -> None:
    rho = read_parquet(kang_runs["root"] / "val10" / "rho.parquet")
    assert len(rho) > 0 and rho["rho"].isna().all() and not rho["representative"].any()
    reasons = set(rho["reason"])
    assert reasons == {"fewer than 10 samples", "gene absent"}
    summary = read_parquet(kang_runs["root"] / "val10" / "summary.parquet")
    assert (summary["n_targets"] == 0).all() and summary["median_rho"].isna().all()
    vs = read_parquet(kang_runs["root"] / "val10" / "cytosig_vs_secact.parquet")
    assert (vs["n_shared"] == 0).all() and (vs["reason"] == "no shared target has a rho in both sets").all()
    cross = read_parquet(kang_runs["root"] / "val10" / "cross_atlas.parquet")
    assert cross.empty  # one atlas: no pairs


def test_pseudobulk_inputs_are_fingerprinted(kang_runs) -> None:
    import json
    import re

    manifest = json.loads((kang_runs["root"] / "val" / "manifest.json").read_text())["outputs"]
    part = manifest["parts/kang__ct__cytosig_rho.parquet"]
    names = {i["name"] for i in part["inputs"]}
    assert {"kang_pseudobulk_ct_samples.h5ad", "kang_pseudobulk_ct_samples_cytosig_activity.h5ad",
            "kang_pseudobulk_ct_resampled_cytosig_activity.h5ad"} <= names
    assert all(re.fullmatch(r"xxh3_128:[0-9a-f]{32}", i["checksum"]) for i in part["inputs"])
    assert part["parameters"]["min_samples"] == 5 and part["parameters"]["n_bootstrap"] == 20

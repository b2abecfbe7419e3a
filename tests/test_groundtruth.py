"""Perturbation ground truth (`cytoatlas groundtruth`) on small planted data: the alias table on its spellings, a
treatment that moves one signature ranks it first per donor and cell type, unmatched treatments are listed, the
paired statistics and AUCs against independent computations (scipy, brute force), skip on rerun."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from _compare_factory import write_samples_activity
from scipy import stats

from cytoatlas._groundtruth import groundtruth
from cytoatlas._groundtruth.alias import alias_index, match_treatment, normalise
from cytoatlas._groundtruth.analyses import auc, consistency
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.tables import read_parquet

NAMES = ["IFNG", "IL27", "IFN1", "TNFA", "IL1B", "IL10", "IL6", "TGFB1", "IL2", "IL4"]
CELL_TYPES = ["B", "CD4 T", "Monocytes"]
# treatment value -> (signature raised, by how much); "DrugX" moves nothing and has no alias
PLANTED = {"IFN-gamma": ("IFNG", 2.0), "IL-1beta": ("IL1B", 1.5), "DrugX": (None, 0.0)}


@pytest.mark.parametrize("spelling", ["IFN-gamma", "IFNg", "IFN gamma", "interferon gamma", "IFN-γ", "IFNG",
                                      "Interferon-Gamma", "ifn_gamma"])
def test_alias_spellings_of_ifng(spelling: str) -> None:
    m = match_treatment(spelling, NAMES)
    assert (m.signature, m.source) == ("IFNG", "alias table")


@pytest.mark.parametrize(("treatment", "cytosig", "secact"), [
    ("IFN-beta", "IFN1", "IFNB1"), ("IFN-alpha2", "IFN1", "IFNA2"), ("TNF-alpha", "TNFA", "TNF"),
    ("IL-1beta", "IL1B", "IL1B"), ("IL-1alpha", "IL1A", "IL1A"), ("GM-CSF", "GMCSF", "CSF2"),
    ("M-CSF", "MCSF", "CSF1"), ("TGF-beta1", "TGFB1", "TGFB1"), ("IL-12", "IL12", "IL12A"),
    ("CD40 ligand", "CD40L", "CD40LG"), ("Activin A", "Activin A", "INHBA")])
def test_alias_table_maps_cytosig_names_and_gene_symbols(treatment: str, cytosig: str, secact: str) -> None:
    cytosig_set = ["IFN1", "TNFA", "IL1B", "IL1A", "GMCSF", "MCSF", "TGFB1", "IL12", "CD40L", "Activin A", "IL10"]
    secact_set = ["IFNB1", "IFNA2", "TNF", "IL1B", "IL1A", "CSF2", "CSF1", "TGFB1", "IL12A", "CD40LG", "INHBA"]
    assert match_treatment(treatment, cytosig_set).signature == cytosig
    assert match_treatment(treatment, secact_set).signature == secact


def test_alias_table_covers_every_cytosig_signature_and_never_matches_substrings() -> None:
    from cytoatlas._validate.targets import cytosig_targets

    index = alias_index()
    for name in cytosig_targets()["target"]:  # the 43 CytoSig signatures, each an alias of itself
        assert index[normalise(name)].cytosig == name
    assert len(cytosig_targets()) == 43
    # the seed matched by substring: IL-1 must not become IL10 or IL1A / IL1B
    assert match_treatment("IL-1", ["IL10", "IL1A", "IL1B"]).signature == ""
    # a SecAct protein not in the table is found by its symbol
    assert match_treatment("IL-7", ["IL7", "IL2"]).signature == "IL7"
    assert match_treatment("IL-7", ["IL7", "IL2"]).source == "alias table"
    assert match_treatment("CCL19", ["CCL19", "IL2"]).source == "signature name"


def test_registry_override_comes_first() -> None:
    m = match_treatment("compound 7", NAMES, {"Compound-7": "interferon gamma"})
    assert (m.signature, m.source) == ("IFNG", "registry")
    m = match_treatment("compound 7", NAMES, {"compound 7": "XYZ"})
    assert m.signature == "" and "XYZ" in m.reason


def _planted_atlas(root, n_donors: int = 8, seed: int = 0, noise: float = 0.3):
    """Each donor: a PBS sample and one sample per treatment, in every cell type; a donor x signature baseline
    shared by the donor's samples (what pairing removes), the planted signature raised in the treated ones."""
    rng = np.random.default_rng(seed)
    rows, z = [], []
    baseline = rng.normal(0, 1.0, size=(n_donors, len(CELL_TYPES), len(NAMES)))
    for d in range(n_donors):
        for treatment in ["PBS", *PLANTED]:
            for c, ct in enumerate(CELL_TYPES):
                rows.append({"sample": f"D{d}_{treatment}", "donor": f"D{d}", "cell_type": ct, "n_cells": 50,
                             "treatment": treatment})
                v = baseline[d, c] + rng.normal(0, noise, len(NAMES))
                sig, size = PLANTED.get(treatment, (None, 0.0))
                if sig:
                    v[NAMES.index(sig)] += size
                z.append(v)
    obs = pd.DataFrame(rows)
    obs.index = pd.Index([f"{s}|{c}" for s, c in zip(obs["sample"], obs["cell_type"], strict=True)], dtype=object)
    for col in ("sample", "cell_type", "treatment"):
        obs[col] = pd.Categorical(obs[col])
    obs["donor"] = obs["donor"].astype(object)
    z = np.array(z)
    write_samples_activity(root / "pert", "pert", "L1", "cytosig", obs, z, NAMES)
    return obs, z


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("gt")
    obs, z = _planted_atlas(root)
    paths = groundtruth("pert", root / "out", column="treatment", control="PBS", results=root, figures=True)
    tables = {n: read_parquet(root / "out" / f"{n}.parquet") for n in ("matches", "effects", "treatments", "summary")}
    return {"root": root, "obs": obs, "z": z, "paths": paths, **tables}


def test_planted_treatment_ranks_its_signature_first_per_cell_type_and_donor(planted) -> None:
    e = planted["effects"]
    for treatment, (sig, _) in PLANTED.items():
        if sig is None:
            continue
        rows = e[e["treatment"] == treatment]
        assert set(rows["cell_type"]) == {*CELL_TYPES, "all"}
        assert (rows["signature"] == sig).all()
        assert (rows["rank_effect"] == 1).all() and (rows["rank_statistic"] == 1).all()
        assert (rows["top_signature"] == sig).all()
        assert (rows["frac_donors_rank1"] == 1.0).all()  # in every donor, in every cell type
        assert (rows["n_donors"] == 8).all() and (rows["reason"] == "").all()
    t = planted["treatments"].set_index("treatment")
    assert t.loc["IFN-gamma", "auc_control"] == 1.0 and t.loc["IFN-gamma", "frac_units_rank1"] == 1.0
    assert t.loc["IFN-gamma", "auc_other"] == 1.0  # IFNG rises more under IFN-gamma than under IL-1beta
    s = planted["summary"].iloc[0]
    assert (s["n_treatments"], s["n_matched"], s["n_tested"]) == (3, 2, 2)
    assert s["frac_rank1"] == 1.0 and s["frac_top3"] == 1.0 and s["median_auc_control"] == 1.0


def test_unmatched_treatment_is_listed_not_dropped(planted) -> None:
    m = planted["matches"].set_index("treatment")
    assert m.loc["DrugX", "signature"] == "" and "no alias" in m.loc["DrugX", "reason"]
    assert m.loc["IFN-gamma", "signature"] == "IFNG" and m.loc["IFN-gamma", "source"] == "alias table"
    assert planted["summary"].iloc[0]["unmatched"] == "DrugX"
    assert "DrugX" not in set(planted["effects"]["treatment"])


def test_paired_statistics_against_scipy(planted) -> None:
    obs, z, e = planted["obs"], planted["z"], planted["effects"]
    for ct in CELL_TYPES:
        sel = (obs["cell_type"] == ct).to_numpy()
        treated = z[sel & (obs["treatment"] == "IL-1beta").to_numpy(), NAMES.index("IL1B")]
        control = z[sel & (obs["treatment"] == "PBS").to_numpy(), NAMES.index("IL1B")]  # same donor order
        ref = stats.ttest_rel(treated, control)
        row = e[(e["treatment"] == "IL-1beta") & (e["cell_type"] == ct)].iloc[0]
        assert row["effect"] == pytest.approx(np.mean(treated - control))
        assert row["statistic"] == pytest.approx(ref.statistic)
        assert row["pvalue"] == pytest.approx(ref.pvalue)
        ci = ref.confidence_interval()
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_auc_and_consistency_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(0.5, 1, 9).round(1), rng.normal(0, 1, 7).round(1)
    brute = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])
    assert auc(pos, neg) == pytest.approx(brute)
    d = rng.normal(size=(5, 12))
    pairs = [stats.spearmanr(d[i], d[j]).statistic for i, j in itertools.combinations(range(5), 2)]
    assert consistency(d) == pytest.approx(np.mean(pairs))


def test_weak_treatment_ranks_lower_and_auc_is_symmetric_under_no_effect(tmp_path) -> None:
    """Nothing planted: the own signature's AUC is near 0.5 and its rank is not always first."""
    rng = np.random.default_rng(7)
    rows, z = [], []
    for d in range(12):
        for treatment in ("PBS", "IFN-gamma"):
            rows.append({"sample": f"D{d}_{treatment}", "donor": f"D{d}", "cell_type": "T", "treatment": treatment})
            z.append(rng.normal(size=len(NAMES)))
    obs = pd.DataFrame(rows, index=pd.Index([f"{r['sample']}|T" for r in rows], dtype=object))
    write_samples_activity(tmp_path / "null", "null", "L1", "cytosig", obs, np.array(z), NAMES)
    groundtruth("null", tmp_path / "out", column="treatment", control="PBS", results=tmp_path, figures=False)
    t = read_parquet(tmp_path / "out" / "treatments.parquet").iloc[0]
    d = np.array(z)[1::2, 0] - np.array(z)[0::2, 0]
    brute = np.mean([(a + b > 0) + 0.5 * (a + b == 0) for a, b in itertools.product(d, d)])
    assert t["auc_control"] == pytest.approx(brute)
    assert 0.2 < t["auc_control"] < 0.8


def test_rerun_is_skipped_and_bad_input_is_named(planted, caplog) -> None:
    root = planted["root"]
    before = (root / "out" / "effects.parquet").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="cytoatlas.groundtruth"):
        groundtruth("pert", root / "out", column="treatment", control="PBS", results=root, figures=True)
    assert "current; nothing to do" in caplog.text
    assert (root / "out" / "effects.parquet").stat().st_mtime_ns == before
    assert any(p.suffix == ".png" for p in planted["paths"])
    with pytest.raises(CytoatlasError, match="'saline' is not a value of 'treatment'; its values: DrugX"):
        groundtruth("pert", root / "bad", column="treatment", control="saline", results=root, figures=False)
    with pytest.raises(CytoatlasError, match="no obs column 'stim'"):
        groundtruth("pert", root / "bad", column="stim", control="PBS", results=root, figures=False)


def test_cli_and_report_section(planted, tmp_path, capsys) -> None:
    from _report_factory import validation_dir

    from cytoatlas._report import report
    from cytoatlas.cli import main

    root = planted["root"]
    code = main(["-q", "groundtruth", "--atlas", "pert", "--results", str(root), "--out", str(tmp_path / "gt"),
                 "--perturbation", "treatment", "--control", "PBS", "--alias", "DrugX=IL10", "--no-figures"])
    assert code == 0
    m = read_parquet(tmp_path / "gt" / "matches.parquet").set_index("treatment")
    assert (m.loc["DrugX", "signature"], m.loc["DrugX", "source"]) == ("IL10", "registry")
    val = validation_dir(tmp_path / "val")
    page = report(val, groundtruth=root / "out").read_text()
    assert 'id="groundtruth"' in page and "Perturbation ground truth" in page
    assert "IFN-gamma" in page and "DrugX" in page and "groundtruth__pert__L1__cytosig" in page


def test_the_demo_stimulation_is_found(tmp_path) -> None:
    """The demo's stimulation atlas (each donor a PBS and an IFN-gamma sample) through pseudobulk, activity and
    the ground truth: IFNG ranks first in every cell type (CytoSig) and over all cell types (both sets)."""
    from cytoatlas.defaults import DEMO_N_CELLS
    from cytoatlas.demo import _stimulation

    _stimulation(tmp_path, DEMO_N_CELLS, {})  # the demo's own size
    t = read_parquet(tmp_path / "groundtruth" / "treatments.parquet").set_index("signature_set")
    assert set(t["treatment"]) == {"IFN-gamma"} and set(t["signature"]) == {"IFNG"}
    assert (t["rank_effect"] == 1).all() and (t["auc_control"] == 1.0).all()
    e = read_parquet(tmp_path / "groundtruth" / "effects.parquet")
    cytosig = e[(e["signature_set"] == "cytosig") & (e["reason"] == "")]
    assert len(cytosig) >= 5 and (cytosig["rank_effect"] == 1).all()
    assert cytosig["correlated"].str.startswith("IL27 (r 0.8").all()  # its closest CytoSig neighbour, listed
    assert (e["level"] == "L2").all()


def test_the_store_and_api_serve_the_ground_truth(planted, tmp_path) -> None:
    """`cytoatlas index` over a results tree holding the activity files and the ground truth; /groundtruth/* serve
    each table exactly as written (Parquet), filtered as pandas filters."""
    from fastapi.testclient import TestClient

    import cytoatlas
    from cytoatlas._api.app import create_app

    root = planted["root"]
    summary = cytoatlas.index(root, tmp_path / "store.duckdb")
    assert any(r.startswith("out/") and r.endswith("effects.parquet") for r in summary.read)
    client = TestClient(create_app(tmp_path / "store.duckdb"))
    from cytoatlas._groundtruth.tables import KEYS

    for name in ("matches", "effects", "treatments", "summary"):
        got = client.get(f"/api/v1/groundtruth/{name}", params={"limit": 1000}).json()
        want = planted[name].sort_values(KEYS[name], ignore_index=True)
        served = pd.DataFrame(got["rows"]).sort_values(KEYS[name], ignore_index=True)
        assert got["total"] == len(want) and list(served.columns) == list(want.columns), name
        pd.testing.assert_frame_equal(served, want, check_dtype=False)
    rows = client.get("/api/v1/groundtruth/effects",
                      params={"treatment": "IL-1beta", "cell_type": "all"}).json()["rows"]
    assert len(rows) == 1 and rows[0]["signature"] == "IL1B" and rows[0]["rank_effect"] == 1
    e = planted["effects"]
    assert rows[0]["effect"] == pytest.approx(e.loc[(e["treatment"] == "IL-1beta") & (e["cell_type"] == "all"),
                                                    "effect"].iloc[0])
    unmatched = client.get("/api/v1/groundtruth/matches", params={"treatment": "DrugX"}).json()["rows"]
    assert [(r["signature"], r["reason"][:8]) for r in unmatched] == [("", "no alias")]
    csv = client.get("/api/v1/groundtruth/treatments", params={"format": "csv"})
    assert csv.status_code == 200 and "auc_control" in csv.text.splitlines()[0]


def test_a_store_without_a_ground_truth_serves_empty_tables(planted, tmp_path) -> None:
    from fastapi.testclient import TestClient

    import cytoatlas
    from cytoatlas._api.app import create_app

    cytoatlas.index(planted["root"] / "pert", tmp_path / "store.duckdb")
    got = TestClient(create_app(tmp_path / "store.duckdb")).get("/api/v1/groundtruth/treatments").json()
    assert got["total"] == 0 and got["rows"] == []


def test_a_level_without_cell_types_has_one_row_per_treatment(tmp_path) -> None:
    """A donor-level file (its one label "all"): one effects row, the donors the units of the AUC."""
    rng = np.random.default_rng(11)
    rows, z = [], []
    for d in range(6):
        base = rng.normal(size=len(NAMES))
        for treatment in ("PBS", "IFN-gamma"):
            rows.append({"sample": f"D{d}_{treatment}", "donor": f"D{d}", "cell_type": "all",
                         "treatment": treatment})
            z.append(base + rng.normal(0, 0.2, len(NAMES)) + (2.0 * (np.array(NAMES) == "IFNG")
                                                              if treatment != "PBS" else 0.0))
    obs = pd.DataFrame(rows, index=pd.Index([r["sample"] for r in rows], dtype=object))
    write_samples_activity(tmp_path / "donors", "donors", "donor_only", "cytosig", obs, np.array(z), NAMES)
    groundtruth("donors", tmp_path / "out", column="treatment", control="PBS", results=tmp_path, figures=False)
    e = read_parquet(tmp_path / "out" / "effects.parquet")
    assert list(e["cell_type"]) == ["all"] and e["rank_effect"].iloc[0] == 1 and e["n_donors"].iloc[0] == 6
    t = read_parquet(tmp_path / "out" / "treatments.parquet").iloc[0]
    assert (t["n_units"], t["n_cell_types"], t["auc_control"]) == (6, 0, 1.0)

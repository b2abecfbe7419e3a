"""Comparison figures and the report's "Condition comparisons" section, from small comparison tables made by hand
(contract B's columns): two atlases, three cell types, five signatures, one contrast and one covariate."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _report_factory import validation_dir
from scipy import stats

import cytoatlas
from cytoatlas._compare.figures import plan_figures, write_figures
from cytoatlas.cli import main
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.manifest import read_manifest, record, update_manifest
from cytoatlas.io.tables import write_table

ATLASES = {"alpha": {"CD4 T": "CD4 T", "Monocytes": "Monocytes", "NK": "NK"},
           "beta": {"T CD4": "CD4 T", "Mono": "Monocytes", "NK cells": "NK"}}
SIGNATURES = ["IFNG", "IL10", "IL6", "TGFB1", "TNF"]
CONTRAST = "treated vs untreated"
UNTESTABLE_REASON = "fewer than 3 donors in group treated"
DIFFERENTIAL = ["atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by", "group",
                "reference", "contrast", "test", "covariates", "paired", "n_group", "n_reference", "mean_group",
                "mean_reference", "effect", "se", "ci_low", "ci_high", "statistic", "pvalue", "fdr", "fdr_cell_type"]
ASSOCIATION = ["atlas", "level", "signature_set", "cell_type", "cl_id", "cl_name", "signature", "by", "contrast",
               "test", "covariates", "n", "effect", "se", "ci_low", "ci_high", "statistic", "pvalue", "fdr",
               "fdr_cell_type"]
META = ["analysis", "level", "signature_set", "resolution", "cl_id", "cl_name", "signature", "by", "contrast",
        "n_atlases", "atlases", "labels", "effect", "se", "ci_low", "ci_high", "pvalue", "fdr", "tau2", "q",
        "q_pvalue", "i2", "sign_agreement"]
UNTESTABLE = ["atlas", "level", "signature_set", "cell_type", "analysis", "by", "contrast", "n_group", "n_reference",
              "reason"]


def _rows(analysis: str, rng: np.random.Generator) -> pd.DataFrame:
    """Per atlas x cell type x signature: an effect, its SE, a normal-approximation p; IL10 in monocytes (and IL6
    with bmi in CD4 T) planted strong."""
    planted = ("IL10", "Monocytes") if analysis == "differential" else ("IL6", "CD4 T")
    rows = []
    for atlas, types in ATLASES.items():
        for cell_type, harmonised in types.items():
            for sig in SIGNATURES:
                se = 0.2 + 0.05 * rng.random()
                effect = (2.5 if (sig, harmonised) == planted else 0.0) + rng.normal(0, 0.15)
                rows.append({"atlas": atlas, "level": "L2", "signature_set": "cytosig", "cell_type": cell_type,
                             "cl_id": "", "cl_name": harmonised, "signature": sig, "effect": effect, "se": se})
    df = pd.DataFrame(rows)
    df["statistic"] = df["effect"] / df["se"]
    df["pvalue"] = 2 * stats.norm.sf(np.abs(df["statistic"]))
    df["ci_low"], df["ci_high"] = df["effect"] - 1.96 * df["se"], df["effect"] + 1.96 * df["se"]
    df["fdr"] = np.concatenate([stats.false_discovery_control(g["pvalue"]) for _, g in df.groupby("atlas")])
    df["fdr_cell_type"] = df.groupby(["atlas", "cell_type"])["pvalue"].transform(stats.false_discovery_control)
    if analysis == "differential":
        df = df.assign(by="treatment", group="treated", reference="untreated", contrast=CONTRAST, test="ols",
                       covariates="age", paired=False, n_group=6, n_reference=6, mean_group=df["effect"] / 2,
                       mean_reference=-df["effect"] / 2)
        return df[DIFFERENTIAL]
    df = df.assign(by="bmi", contrast="bmi", test="ols", covariates="", n=12)
    return df[ASSOCIATION]


def _meta(rows: pd.DataFrame, analysis: str) -> pd.DataFrame:
    """Fixed-weight pooled effect per harmonised type x signature (numbers for drawing; the statistics are
    contract B's and tested there)."""
    out = []
    for (harmonised, sig), g in rows.groupby(["cl_name", "signature"], sort=True):
        w = 1 / g["se"].to_numpy() ** 2
        effect = float((w * g["effect"]).sum() / w.sum())
        se = float(np.sqrt(1 / w.sum()))
        q = float((w * (g["effect"] - effect) ** 2).sum())
        out.append({"analysis": analysis, "level": "L2", "signature_set": "cytosig", "resolution": "fine",
                    "cl_id": "", "cl_name": harmonised,
                    "labels": "; ".join(f"{a}: {c}" for a, c in sorted(zip(g["atlas"], g["cell_type"], strict=True))),
                    "signature": sig, "by": rows["by"].iloc[0], "contrast": rows["contrast"].iloc[0],
                    "n_atlases": len(g), "atlases": ",".join(sorted(g["atlas"])), "effect": effect, "se": se,
                    "ci_low": effect - 1.96 * se, "ci_high": effect + 1.96 * se,
                    "pvalue": float(2 * stats.norm.sf(abs(effect / se))), "tau2": 0.0, "q": q,
                    "q_pvalue": float(stats.chi2.sf(q, len(g) - 1)), "i2": max(0.0, 100 * (q - 1) / q) if q else 0.0,
                    "sign_agreement": float((np.sign(g["effect"]) == np.sign(effect)).mean())})
    df = pd.DataFrame(out)
    df["fdr"] = stats.false_discovery_control(df["pvalue"])
    return df[META]


def comparison_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """The four comparison tables of two atlases, three cell types, five signatures, one contrast (treated vs
    untreated) and one covariate (bmi)."""
    rng = np.random.default_rng(seed)
    diff, assoc = _rows("differential", rng), _rows("association", rng)
    meta = pd.concat([_meta(diff, "differential"), _meta(assoc, "association")], ignore_index=True)
    untestable = pd.DataFrame([{"atlas": "beta", "level": "L3", "signature_set": "cytosig", "cell_type": "pDC",
                                "analysis": "differential", "by": "treatment", "contrast": CONTRAST, "n_group": 2,
                                "n_reference": 5, "reason": UNTESTABLE_REASON}])[UNTESTABLE]
    return {"differential": diff, "association": assoc, "meta": meta, "untestable": untestable}


def empty_tables() -> dict[str, pd.DataFrame]:
    return {name: pd.DataFrame(columns=cols) for name, cols in
            (("differential", DIFFERENTIAL), ("association", ASSOCIATION), ("meta", META), ("untestable", UNTESTABLE))}


def test_one_png_and_svg_per_expected_stem(tmp_path: Path) -> None:
    tables = comparison_tables()
    out = tmp_path / "figures"
    paths = write_figures(tables, out)
    per_atlas = {f"{kind}__{atlas}__L2__cytosig__{contrast}" for kind in ("volcano", "heatmap") for atlas in ATLASES
                 for contrast in ("treated_vs_untreated", "bmi")}
    # forests: one per signature of each analysis (ten keys, fewer than top = 12)
    forests = {f"forest__L2__cytosig__{contrast}__{sig}" for contrast in ("treated_vs_untreated", "bmi")
               for sig in SIGNATURES}
    stems = per_atlas | forests
    assert sorted(p.name for p in paths) == sorted(f"{s}.{ext}" for s in stems for ext in ("png", "svg"))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # nothing else, no temporaries
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<?xml" in head or b"<svg" in head
        assert 2_000 < p.stat().st_size < 400_000
    # the strongest meta row's forest comes first among the forests, and the planted signature is labelled
    plans = [p for p in plan_figures(tables) if p.kind == "forest"]
    assert plans[0].signature in {"IL10", "IL6"} and {p.signature for p in plans} == set(SIGNATURES)
    assert "IL10 (Monocytes)" in (out / "volcano__alpha__L2__cytosig__treated_vs_untreated.svg").read_text()
    assert "IL10 (Mono)" in (out / "volcano__beta__L2__cytosig__treated_vs_untreated.svg").read_text()
    forest_svg = (out / "forest__L2__cytosig__treated_vs_untreated__IL10.svg").read_text()
    assert "Monocytes · alpha" in forest_svg and "Monocytes · beta (Mono)" in forest_svg and "pooled" in forest_svg
    assert "τ²" in forest_svg and "I²" in forest_svg


def test_top_bounds_the_forests_and_reruns_are_byte_identical(tmp_path: Path) -> None:
    tables = comparison_tables()
    paths = write_figures(tables, tmp_path / "a", top=3)
    forests = [p for p in paths if p.name.startswith("forest__")]
    assert len(forests) == 6  # three forests, PNG + SVG
    # the three strongest meta rows' signatures
    meta = tables["meta"].sort_values(["fdr", "pvalue"], kind="stable")
    keys = meta.drop_duplicates(["analysis", "signature"]).head(3)
    assert {p.stem for p in forests} == {f"forest__L2__cytosig__{c.replace(' ', '_')}__{s}"
                                        for c, s in zip(keys["contrast"], keys["signature"], strict=True)}
    again = write_figures(tables, tmp_path / "b", top=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_empty_tables_make_no_figures(tmp_path: Path) -> None:
    assert write_figures(empty_tables(), tmp_path / "figures") == []
    assert write_figures({}, tmp_path / "figures") == []
    assert not (tmp_path / "figures").exists()
    # a missing column is named, with the columns there are
    bad = comparison_tables()
    bad["differential"] = bad["differential"].drop(columns="fdr")
    with pytest.raises(CytoatlasError, match="differential table has no column fdr; its columns: atlas, level"):
        write_figures(bad, tmp_path / "figures")


def test_one_file_name_is_planned_once(caplog) -> None:
    tables = comparison_tables()
    diff = tables["differential"]
    once = plan_figures({"differential": diff})
    # a second grouping column with the same contrast name ("treated vs untreated") would write the same files
    twice = plan_figures({"differential": pd.concat([diff, diff.assign(by="arm")], ignore_index=True)})
    assert [p.stem for p in twice] == [p.stem for p in once] and len({p.stem for p in once}) == len(once) == 4
    assert "drawn once" in caplog.text


def test_a_secact_sized_volcano_stays_fast_and_small(tmp_path: Path) -> None:
    """~1,170 signatures x 15 cell types in one volcano: the scatter is rasterised in the SVG."""
    rng = np.random.default_rng(1)
    n_sig, n_ct = 1170, 15
    df = pd.DataFrame({"atlas": "alpha", "level": "L2", "signature_set": "secact",
                       "cell_type": np.repeat([f"type {i}" for i in range(n_ct)], n_sig),
                       "signature": np.tile([f"S{i:04d}" for i in range(n_sig)], n_ct), "by": "treatment",
                       "contrast": CONTRAST, "effect": rng.normal(0, 1, n_sig * n_ct)})
    df["cl_name"] = df["cell_type"]
    df["pvalue"] = rng.uniform(0, 1, len(df)) ** 3
    df["fdr"] = stats.false_discovery_control(df["pvalue"])
    df["ci_low"], df["ci_high"] = df["effect"] - 0.5, df["effect"] + 0.5
    t0 = time.perf_counter()
    paths = write_figures({"differential": df}, tmp_path)
    assert time.perf_counter() - t0 < 30
    assert {p.name for p in paths} == {f"{k}__alpha__L2__secact__treated_vs_untreated.{e}"
                                       for k in ("volcano", "heatmap") for e in ("png", "svg")}
    svg = tmp_path / "volcano__alpha__L2__secact__treated_vs_untreated.svg"
    assert svg.stat().st_size < 400_000 and "<image" in svg.read_text()  # one raster, not 17,550 paths
    heat = (tmp_path / "heatmap__alpha__L2__secact__treated_vs_untreated.svg").read_text()
    assert heat.count(">S0") <= 40  # at most 40 signature labels




def _comparison_dir(path: Path, tables: dict[str, pd.DataFrame], *, top: int = 3) -> Path:
    """What `cytoatlas compare` leaves: the four tables, the figures, a manifest recording them."""
    path.mkdir(parents=True)
    records = {}
    for name, df in tables.items():
        for p in write_table(df, path, name):
            records[p.name] = record(p, step="compare", parameters={}, inputs=[], kind=name)
    for p in write_figures(tables, path / "figures", top=top):
        records[f"figures/{p.name}"] = record(p, step="compare", parameters={}, inputs=[], kind="figure")
    update_manifest(path, records)
    return path


def _without_comparisons(page: str) -> str:
    page, n_nav = re.subn(r'<a href="#compare">Condition comparisons</a>', "", page)
    page, n_section = re.subn(r'<section id="compare">.*?</section>', "", page, flags=re.S)
    assert n_nav == n_section == 1
    return page


def test_the_report_gains_a_comparison_section_and_is_unchanged_without(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "2026-12-04 20:00")  # the page says when it was written
    val = validation_dir(tmp_path / "val")
    before = cytoatlas.report(val).read_text()
    assert '<section id="compare">' not in before and "Condition comparisons" not in before
    tables = comparison_tables()
    cmp = _comparison_dir(tmp_path / "cmp", tables)
    page = cytoatlas.report(val, compare=cmp).read_text()
    # the rest of the page is byte for byte the report without comparisons
    assert _without_comparisons(page) == before
    section = re.search(r'<section id="compare">.*?</section>', page, flags=re.S).group(0)
    assert "treated vs untreated (by treatment)" in section and "Association with bmi" in section
    first = section.index("<tbody><tr>")  # the differential table's first row is the planted signature
    assert "<td>IL10</td>" in section[first:section.index("</tr>", first)]
    assert UNTESTABLE_REASON in section and "pDC" in section
    # every figure recorded in the comparison's manifest is embedded: 8 volcanos / heatmaps, top = 3 forests
    n_figures = len(list((cmp / "figures").glob("*.png")))
    assert n_figures == 11 and section.count("data:image/png;base64,") == n_figures
    assert f"SVG: {(cmp / 'figures').as_posix()}/forest__L2__cytosig__treated_vs_untreated__IL10.svg" in section
    manifest = read_manifest(val)["report.html"]
    assert manifest["parameters"]["compare"] == str(cmp)
    assert any(i["name"].endswith("differential.parquet") for i in manifest["inputs"])
    # a figure the manifest does not record (left from an earlier run) is not shown
    (cmp / "figures" / "volcano__gamma__L2__cytosig__treated_vs_untreated.png").write_bytes(
        (cmp / "figures" / "volcano__alpha__L2__cytosig__treated_vs_untreated.png").read_bytes())
    assert cytoatlas.report(val, compare=cmp).read_text().count("data:image/png;base64,") == n_figures
    # and without the comparison again: the page and the manifest record's parameters as before
    assert cytoatlas.report(val).read_text() == before
    assert read_manifest(val)["report.html"]["parameters"] == {"title": "cytoatlas validation: alpha", "max_rows": 3000}


def test_a_comparison_with_nothing_tested_still_reports_what_was_not(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "2026-12-04 20:00")
    val = validation_dir(tmp_path / "val")
    before = cytoatlas.report(val).read_text()
    tables = {**empty_tables(), "untestable": comparison_tables()["untestable"]}
    cmp = _comparison_dir(tmp_path / "cmp", tables)
    assert not (cmp / "figures").exists()
    page = cytoatlas.report(val, compare=cmp).read_text()
    assert _without_comparisons(page) == before
    assert "No contrast could be tested." in page and UNTESTABLE_REASON in page
    assert "data:image/png" not in page.split('<section id="compare">')[1]


def test_cli_report_with_a_comparison(tmp_path: Path, capsys) -> None:
    val = validation_dir(tmp_path / "val")
    cmp = _comparison_dir(tmp_path / "cmp", {**comparison_tables(), "meta": empty_tables()["meta"]}, top=0)
    assert main(["report", "--out", str(val), "--compare", str(cmp)]) == 0
    assert capsys.readouterr().out.strip() == str(val / "report.html")
    page = (val / "report.html").read_text()
    assert '<a href="#compare">Condition comparisons</a>' in page and "treated vs untreated" in page
    # errors: one line, exit 2
    assert main(["report", "--out", str(val), "--compare", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cytoatlas: error: comparison directory") and err.count("\n") == 1
    (cmp / "meta.parquet").unlink()
    assert main(["report", "--out", str(val), "--compare", str(cmp)]) == 2
    assert "has no meta.parquet: run `cytoatlas compare" in capsys.readouterr().err


def test_by_default_only_the_level_of_each_contrasts_strongest_row_is_drawn() -> None:
    tables = comparison_tables()
    diff = tables["differential"]
    # a second level: weaker everywhere in atlas alpha, stronger everywhere in atlas beta
    l3 = diff.assign(level="L3")
    beta = l3["atlas"] == "beta"
    l3.loc[~beta, ["pvalue", "fdr"]] = (diff.loc[~beta, ["pvalue", "fdr"]].to_numpy() * 10).clip(max=1)
    l3.loc[beta, ["pvalue", "fdr"]] = diff.loc[beta, ["pvalue", "fdr"]].to_numpy() / 10
    tables = {**tables, "differential": pd.concat([diff, l3], ignore_index=True)}
    stems = {p.stem for p in plan_figures(tables) if p.kind != "forest" and p.analysis == "differential"}
    assert stems == {f"{k}__{a}__{lv}__cytosig__treated_vs_untreated" for k in ("volcano", "heatmap")
                     for a, lv in (("alpha", "L2"), ("beta", "L3"))}
    every = {p.stem for p in plan_figures(tables, scope="all") if p.kind != "forest" and p.analysis == "differential"}
    assert every == {f"{k}__{a}__{lv}__cytosig__treated_vs_untreated" for k in ("volcano", "heatmap")
                     for a in ATLASES for lv in ("L2", "L3")}
    with pytest.raises(CytoatlasError, match="figure scope must be one of shown, all, got 'some'"):
        plan_figures(tables, scope="some")

"""`cytoatlas compare` on the demo atlases' planted condition effects (the same generator as `cytoatlas demo`):
treated donors' monocytes respond to IL10, and CD4 T cells' IL6 response tracks BMI, in both atlases."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import cytoatlas
from cytoatlas.io.tables import read_parquet

CONTRAST = "treated vs untreated"


@pytest.fixture(scope="module")
def compared(demo_pair, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    cytoatlas.compare(demo_pair["configs"], out, results=demo_pair["results"], levels=["L2"], signatures=["cytosig"],
                      by="treatment", reference="untreated", continuous=["bmi"], covariates=["sex", "age"],
                      figures=False)
    return out


def _table(out: Path, name: str) -> pd.DataFrame:
    return read_parquet(out / f"{name}.parquet")


def _planted(frame: pd.DataFrame, signature: str, harmonised: str) -> pd.Series:
    return (frame["signature"] == signature) & (frame["cl_name"] == harmonised)


@pytest.mark.parametrize(("table", "contrast", "signature", "cell_type"), [
    ("differential", CONTRAST, "IL10", "Monocytes"),
    ("association", "bmi", "IL6", "CD4 T"),
])
def test_the_planted_effect_is_found_and_little_else(compared, table, contrast, signature, cell_type) -> None:
    frame = _table(compared, table)
    frame = frame[frame["contrast"] == contrast]
    assert set(frame["atlas"]) == {"demo", "demo2"}
    # the planted L2 type as named in `demo`; `demo2` names it in its own vocabulary, matched by harmonisation
    harmonised = frame.loc[(frame["atlas"] == "demo") & (frame["cell_type"] == cell_type), "cl_name"].iloc[0]
    for atlas, part in frame.groupby("atlas"):
        hit = _planted(part, signature, harmonised)
        assert hit.sum() == 1, atlas
        row = part[hit].iloc[0]
        assert row["fdr"] == part["fdr"].min() and row["fdr"] < 0.01 and row["effect"] > 0, (atlas, row.to_dict())
        others = part[~hit]
        assert (others["fdr"] < 0.05).mean() <= 0.05, (atlas, others.nsmallest(10, "fdr")[["cell_type", "signature"]])
        # the same cytokine in the other cell types stays near zero
        same = others[others["signature"] == signature]
        assert (same["fdr"] < 0.05).sum() <= 1, atlas


def test_the_meta_analysis_finds_it_in_both_atlases(compared) -> None:
    meta = _table(compared, "meta")
    differential = _table(compared, "differential")
    monocytes = differential.loc[(differential["atlas"] == "demo") & (differential["cell_type"] == "Monocytes"),
                                 "cl_name"].iloc[0]
    part = meta[(meta["analysis"] == "differential") & (meta["contrast"] == CONTRAST) & (meta["resolution"] == "fine")]
    row = part[_planted(part, "IL10", monocytes)].iloc[0]
    assert row["n_atlases"] == 2 and row["sign_agreement"] == 1.0 and row["effect"] > 0
    assert row["fdr"] == part["fdr"].min() and row["fdr"] < 0.01
    assert 0 <= row["i2"] <= 100 and row["tau2"] >= 0
    assert (part.loc[~_planted(part, "IL10", monocytes), "fdr"] < 0.05).mean() <= 0.05

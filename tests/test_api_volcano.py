"""``/compare/volcano``: a comparison's strongest rows as points and the others counted in a grid, checked against
the comparison's own rows (``/compare/differential``) binned independently with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from cytoatlas._api.app import create_app
from cytoatlas._api.volcano import shorten

CONTRAST = "treated vs untreated"
WHERE = {"atlas": "alpha", "level": "L2", "signature_set": "cytosig", "by": "treatment", "contrast": CONTRAST}


@pytest.fixture(scope="module")
def client(api_db: Path) -> TestClient:
    return TestClient(create_app(api_db))


def _rows(client: TestClient) -> pd.DataFrame:
    got = client.get("/api/v1/compare/differential", params={**WHERE, "limit": 50_000}).json()
    return pd.DataFrame(got["rows"])


@pytest.mark.parametrize(("top", "bins"), [(5, 10), (1, 13), (12, 37)])
def test_the_strongest_rows_as_points_the_others_binned(client: TestClient, top: int, bins: int) -> None:
    rows = _rows(client)
    got = client.get("/api/v1/compare/volcano", params={"analysis": "differential", **WHERE, "top": top,
                                                         "bins": bins}).json()
    drawable = rows[rows["pvalue"].notna() & rows["effect"].notna()]
    assert 0 < len(drawable) < len(rows)  # some rows have no p-value: counted, not drawn
    assert (got["n_rows"], got["n_drawable"]) == (len(rows), len(drawable))
    assert got["n_significant"] == int((rows["fdr"] < 0.05).sum())
    strongest = drawable.sort_values(["pvalue", "cell_type", "signature"], kind="stable")
    points = pd.DataFrame(got["points"])
    assert list(points.columns) == list(rows.columns)  # every column of the table
    assert list(zip(points["cell_type"], points["signature"], strict=True)) == list(
        zip(strongest["cell_type"][:top], strongest["signature"][:top], strict=True))
    assert points["effect"].tolist() == strongest["effect"][:top].tolist()
    # the others, binned here: x over [min, max] effect, y = -log10 p over [0, max]
    y = -np.log10(np.maximum(drawable["pvalue"].to_numpy(), 1e-300))
    x = drawable["effect"].to_numpy()
    assert got["x_range"] == [x.min(), x.max()] and got["y_range"] == pytest.approx([0.0, y.max()], rel=1e-12)
    rest = strongest.iloc[top:]
    rx = rest["effect"].to_numpy()
    ry = -np.log10(np.maximum(rest["pvalue"].to_numpy(), 1e-300))
    ix = np.minimum(np.floor((rx - x.min()) / ((x.max() - x.min()) / bins)), bins - 1).astype(int)
    iy = np.minimum(np.floor(ry / (y.max() / bins)), bins - 1).astype(int)
    sig = (rest["fdr"] < 0.05).to_numpy()
    want = sorted((int(a), int(b), int(((ix == a) & (iy == b)).sum()), int(((ix == a) & (iy == b) & sig).sum()))
                  for a, b in set(zip(ix, iy, strict=True)))
    assert got["density"] == {"bins": bins, "n": len(rest), "cells": [list(c) for c in want]}
    assert len(got["points"]) + got["density"]["n"] == got["n_drawable"]  # every drawable row once


def test_a_small_volcano_is_all_points(client: TestClient) -> None:
    rows = _rows(client)
    got = client.get("/api/v1/compare/volcano", params={"analysis": "differential", **WHERE}).json()
    assert len(got["points"]) == got["n_drawable"] == int(rows["pvalue"].notna().sum())
    assert got["density"] == {"bins": 200, "n": 0, "cells": []}


@pytest.mark.parametrize(("param", "value"), [("atlas", "gamma"), ("contrast", "old vs young"), ("by", "nope")])
def test_an_unknown_name_is_a_404(client: TestClient, param: str, value: str) -> None:
    r = client.get("/api/v1/compare/volcano", params={"analysis": "differential", **WHERE, param: value})
    assert r.status_code == 404 and value in r.json()["detail"] and r.json()["valid"]


def test_names_that_exist_but_no_such_comparison_is_a_404(client: TestClient) -> None:
    r = client.get("/api/v1/compare/volcano", params={"analysis": "association", **WHERE})  # bmi is the scan
    assert r.status_code == 404 and "/compare/contrasts" in r.json()["detail"]


def test_cross_talk_lists_are_cut_for_the_hover() -> None:
    listing = ", ".join(f"S{i} (r 0.{90 - i})" for i in range(8))
    assert shorten(listing) == "S0 (r 0.90), S1 (r 0.89), S2 (r 0.88), S3 (r 0.87), S4 (r 0.86), ... (3 more)"
    assert shorten("IL27 (r 0.62)") == "IL27 (r 0.62)" and shorten("") == "" and shorten(None) is None

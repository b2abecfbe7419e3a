"""The on-disk cache of fitted ridge models: same results as a fresh fit; a damaged file is refitted, not an error."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import cytoatlas
import cytoatlas._activity.model_cache as model_cache
from cytoatlas._activity import activity, load_signatures
from cytoatlas._activity.model_cache import fitted_model, model_key, model_path
from cytoatlas._activity.ridge import RidgeModel, exact_test
from cytoatlas.demo import demo_config


@pytest.fixture(scope="module")
def pb_main(demo_h5ad: Path, tmp_path_factory) -> Path:
    """Level L2 of the demo atlas, cell-type file."""
    out = tmp_path_factory.mktemp("pb")
    paths = cytoatlas.pseudobulk(demo_config(demo_h5ad), out, levels=["L2"], n_bootstrap=0)
    return next(p for p in paths if p.name == "demo_pseudobulk_l2.h5ad")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty model cache (the session's parsed signatures stay where they are: SecAct takes ~10 s to parse)."""
    monkeypatch.setattr(model_cache, "cache_dir", lambda: tmp_path / "cache")
    return tmp_path / "cache"


def _problem(n_genes: int = 300, seed: int = 0):
    sig = load_signatures("secact")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(sig.genes), n_genes, replace=False))
    y = rng.normal(size=(n_genes, 5))
    return sig, rows, sig.genes[rows], y


def _same(a: RidgeModel, b: RidgeModel) -> None:
    for name in ("design", "inverse", "row_sum", "row_sq"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.factor[0], b.factor[0])
    assert a.factor[1] == b.factor[1] and a.lambda_ == b.lambda_


def test_cached_model_is_the_fitted_one(cache: Path, monkeypatch) -> None:
    sig, rows, genes, y = _problem()
    fresh = fitted_model(sig, rows, genes, 5e5)
    (path,) = (cache / "ridge").iterdir()
    assert path == model_path(sig, model_key(sig, genes, 5e5))
    monkeypatch.setattr(RidgeModel, "fit", lambda *a, **k: pytest.fail("cache not used"))
    cached = fitted_model(sig, rows, genes, 5e5)
    _same(fresh, cached)
    for k, v in exact_test(fresh, y).items():
        np.testing.assert_array_equal(v, exact_test(cached, y)[k])


def test_key_depends_on_genes_lambda_and_set(cache: Path) -> None:
    sig, rows, genes, _ = _problem()
    cyto = load_signatures("cytosig")
    keys = {model_key(sig, genes, 5e5), model_key(sig, genes[::-1], 5e5), model_key(sig, genes[1:], 5e5),
            model_key(sig, genes, 1e4), model_key(cyto, genes, 5e5)}
    assert len(keys) == 5
    fitted_model(sig, rows, genes, 5e5)
    fitted_model(sig, rows[1:], genes[1:], 5e5)
    fitted_model(sig, rows, genes, 1e4)
    assert len(list((cache / "ridge").iterdir())) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "header"])
def test_damaged_cache_is_refitted(cache: Path, damage: str, caplog) -> None:
    sig, rows, genes, _ = _problem(seed=1)
    fresh = fitted_model(sig, rows, genes, 5e5)
    (path,) = (cache / "ridge").iterdir()
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-100] ^= 0x40  # inside the last array
    elif damage == "truncate":
        data = data[:-8]
    elif damage == "garbage":
        data = bytearray(b"\x00" * len(data))
    elif damage == "empty":
        data = bytearray()
    else:  # a header that does not parse
        data[20:40] = b"{" * 20
    path.write_bytes(bytes(data))
    again = fitted_model(sig, rows, genes, 5e5)
    _same(fresh, again)
    assert "fitting again" in caplog.text
    # and the damaged file was replaced by a good one
    assert model_cache.read_model(path, model_key(sig, genes, 5e5), 5e5) is not None


def test_unwritable_cache_still_fits(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sig, rows, genes, _ = _problem()
    monkeypatch.setattr(model_cache, "cache_dir", lambda: blocker)
    model = fitted_model(sig, rows, genes, 5e5)
    assert model.design.shape == (len(rows), sig.design.shape[1])


def test_activity_with_a_warm_cache_is_identical(pb_main: Path, cache: Path, tmp_path: Path) -> None:
    cold = activity([pb_main], tmp_path / "cold", signatures=["cytosig", "secact"])
    assert len(list((cache / "ridge").iterdir())) == 2
    warm = activity([pb_main], tmp_path / "warm", signatures=["cytosig", "secact"])
    for a, b in zip(cold, warm, strict=True):
        x, y = ad.read_h5ad(a), ad.read_h5ad(b)
        np.testing.assert_array_equal(x.X, y.X)
        for k in x.layers:
            np.testing.assert_array_equal(x.layers[k], y.layers[k])

"""The compiled permutation test against secactpy 0.3.1 itself: same permutations, same counts, same z-scores.

Tests that call secactpy are marked ``parity`` (it is the `parity` extra, not a dependency)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import numpy as np
import pytest
from scipy import linalg

from cytoatlas._activity import permutation
from cytoatlas._activity._rand import SrandPermutations, rand_stream
from cytoatlas._activity.permutation import permutation_table, permutation_test

# secactpy's "srand" permutations come from the C library's rand(); ours reimplement glibc's
pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="secactpy's srand RNG is glibc's here")

SEEDS = [0, 1, 42, 2**31 + 5]
LAMBDA = 5e5


def _zscore(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=0)) / a.std(axis=0, ddof=1)


def _projection(x: np.ndarray, lambda_: float = LAMBDA) -> np.ndarray:
    """T = (X'X + lambda I)^-1 X' computed as secactpy does (Cholesky, then the inverse times X')."""
    k = x.shape[1]
    chol = linalg.cholesky(x.T @ x + lambda_ * np.eye(k), lower=True)
    return linalg.cho_solve((chol, True), np.eye(k)) @ x.T


def _compare(x: np.ndarray, y: np.ndarray, n_rand: int, seed: int = 0, lambda_: float = LAMBDA) -> dict:
    """Run both implementations on the same inputs and require identical p-values, z and se to 1e-8."""
    t = _projection(x, lambda_)
    beta = t @ y
    ours = permutation_test(t, y, beta, n_rand=n_rand, seed=seed)
    from secactpy import ridge as secact_ridge  # the `parity` extra, absent from the numpy 2 environments

    with np.errstate(divide="ignore", invalid="ignore"):  # secactpy divides by se = 0 before masking it
        ref = secact_ridge(x, y, lambda_=lambda_, n_rand=n_rand, seed=seed, backend="numpy", rng_method="srand")
    np.testing.assert_allclose(beta, ref["beta"], rtol=1e-12, atol=1e-18)
    np.testing.assert_array_equal(ours["pvalue"], ref["pvalue"])
    np.testing.assert_allclose(ours["zscore"], ref["zscore"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours["se"], ref["se"], rtol=0, atol=1e-8)
    # secactpy does not report the mean; it is implied by z = (beta - mean) / se
    implied = np.where(ref["se"] > 1e-12, beta - ref["zscore"] * ref["se"], ours["mean"])
    np.testing.assert_allclose(ours["mean"], implied, rtol=1e-9, atol=1e-15)
    for key in ("mean", "se", "zscore", "pvalue"):
        assert ours[key].dtype == np.float64 and ours[key].shape == beta.shape
    return ours


def _random_problem(genes: int, features: int, samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = _zscore(rng.standard_normal((genes, features)))
    activity = rng.standard_normal((features, samples)) * (rng.random((features, samples)) < 0.3) * 4
    y = _zscore(x @ activity + rng.standard_normal((genes, samples)) * np.sqrt(features))
    return x, y


# --- the random number generator --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [*SEEDS, 2**31, 2**32 - 1])
def test_rand_is_glibc_rand(seed):
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.rand.restype = ctypes.c_int
    libc.srand.argtypes = [ctypes.c_uint]
    libc.srand(seed)
    expected = [libc.rand() for _ in range(1000)]
    np.testing.assert_array_equal(rand_stream(seed, 1000), expected)


@pytest.mark.parity
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 7, 500])
def test_tables_are_secactpys(seed, n):
    from secactpy.rng import CStdlibRNG

    n_rand = 40
    forward = CStdlibRNG(seed).permutation_table(n, n_rand)
    inverse = CStdlibRNG(seed).inverse_permutation_table(n, n_rand)
    got = permutation_table(n, n_rand, seed)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, forward)
    # batches continue the same cumulative shuffle, forward or inverse alike
    stream = SrandPermutations(n, seed)
    parts = [stream.next(1), stream.next(9, inverse=True), stream.next(30)]
    np.testing.assert_array_equal(parts[0], forward[:1])
    np.testing.assert_array_equal(parts[1], inverse[1:10])
    np.testing.assert_array_equal(parts[2], forward[10:])


def test_seed_is_taken_modulo_2_32():
    # secactpy hands the seed to srand as a C unsigned int
    np.testing.assert_array_equal(permutation_table(50, 3, 2**32 + 7), permutation_table(50, 3, 7))


# --- the test itself --------------------------------------------------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize("samples", [5, 12, 40])  # fewer, as many as, and more samples than features
def test_random_data_matches_secactpy(samples):
    x, y = _random_problem(genes=400, features=12, samples=samples)
    _compare(x, y, n_rand=300)


@pytest.mark.parity
@pytest.mark.parametrize("seed", SEEDS[1:])
def test_other_seeds_match_secactpy(seed):
    x, y = _random_problem(genes=150, features=6, samples=9, seed=3)
    _compare(x, y, n_rand=60, seed=seed)


@pytest.mark.parity
def test_cytosig_matches_secactpy():
    from secactpy.signature import load_signature

    x = _zscore(load_signature("cytosig").values)
    rng = np.random.default_rng(7)
    activity = rng.standard_normal((x.shape[1], 60)) * (rng.random((x.shape[1], 60)) < 0.15) * 3
    y = _zscore(x @ activity + rng.standard_normal((x.shape[0], 60)) * np.sqrt(x.shape[1]))
    ours = _compare(x, y, n_rand=500)
    assert np.abs(ours["zscore"]).max() > 10  # strong signals: z is checked far from 0, where se errors show


@pytest.mark.parity
def test_zero_column_single_sample_and_one_permutation():
    x, y = _random_problem(genes=200, features=8, samples=4, seed=5)
    y[:, 2] = 0.0  # a constant column, zero after standardisation
    ours = _compare(x, y, n_rand=50)
    assert (ours["se"][:, 2] == 0).all() and (ours["zscore"][:, 2] == 0).all() and (ours["pvalue"][:, 2] == 1).all()
    _compare(x, y[:, :1], n_rand=50)
    ours = _compare(x, y, n_rand=1)
    assert (ours["se"] == 0).all() and (ours["zscore"] == 0).all()


@pytest.mark.parametrize("samples", [3, 30])
def test_batches_agree_with_one_at_a_time(monkeypatch, samples):
    """Batch sizes change only how permutations are grouped into GEMMs, not which are summed or in what order."""
    x, y = _random_problem(genes=120, features=10, samples=samples, seed=11)
    t = _projection(x)
    beta = t @ y
    whole = permutation_test(t, y, beta, n_rand=37, seed=3)
    monkeypatch.setattr(permutation, "_BATCH_BYTES", 1)  # one permutation per batch
    single = permutation_test(t, y, beta, n_rand=37, seed=3)
    monkeypatch.setattr(permutation, "_BATCH_BYTES", 5 * 8 * 130 * max(samples, 10))  # 13-16 per batch
    few = permutation_test(t, y, beta, n_rand=37, seed=3)  # 37 is prime: the last batch is always partial
    for key in whole:
        np.testing.assert_allclose(single[key], whole[key], rtol=1e-13, atol=0)
        np.testing.assert_allclose(few[key], whole[key], rtol=1e-13, atol=0)
    np.testing.assert_array_equal(single["pvalue"], whole["pvalue"])


def test_rejects_bad_input():
    t, y = np.zeros((3, 10)), np.zeros((10, 4))
    with pytest.raises(ValueError, match="n_rand"):
        permutation_test(t, y, np.zeros((3, 4)), n_rand=0)
    with pytest.raises(ValueError, match="beta"):
        permutation_test(t, y, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="genes"):
        permutation_test(t, y.T, np.zeros((3, 4)))

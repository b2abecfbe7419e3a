"""glibc ``srand``/``rand`` and secactpy's cumulative Fisher-Yates shuffle, compiled.

secactpy 0.3.1 (``rng_method="srand"``, its default) draws its permutations from the C library's ``rand()``
through ctypes, one Python call per swap: ~8 s per 1,000 permutations of 4,800 genes. The same stream is
produced here without ctypes, so the permutations are bit-identical at a negligible cost, and they are made a
batch at a time instead of as one ``n_rand x n_genes`` table.

glibc's ``rand()`` (the default TYPE_3 state of ``random_r``) is an additive lagged-Fibonacci generator:
``r[0] = seed`` (0 is mapped to 1), ``r[i] = 16807 * r[i-1] mod (2**31 - 1)`` for ``i = 1..30``,
``r[i] = r[i-31]`` for ``i = 31..33``, then ``r[i] = r[i-31] + r[i-3]`` modulo 2**32, and the k-th output is
``r[k + 344] >> 1`` (glibc discards the first 310 draws). This is glibc-specific: macOS and Windows C libraries
have other ``rand()`` functions, so secactpy's "srand" permutations differ there and cannot be matched here.
"""

from __future__ import annotations

import numba
import numpy as np

RAND_MAX = 2147483647
_DEG = 31  # words of TYPE_3 state
_SEP = 3  # distance between glibc's front and rear pointers
# state layout: words 0..30 are the ring buffer, word 31 the position of glibc's front pointer in it
_STATE_SIZE = _DEG + 1


@numba.njit(nogil=True, cache=True)
def _seed(seed: int) -> np.ndarray:
    """``srand(seed)`` for glibc's TYPE_3 generator; ``seed`` is the C ``unsigned int`` (0 <= seed < 2**32)."""
    state = np.zeros(_STATE_SIZE, dtype=np.uint32)
    if seed == 0:
        seed = 1
    # glibc keeps the seed in an int32 ``word``: seeds >= 2**31 start negative, and the Schrage step below
    # uses C's truncating division and remainder on it (Python's and numba's ``//``, ``%`` floor instead)
    word = np.int64(seed)
    if word >= 2**31:
        word -= 2**32
    state[0] = np.uint32(seed)
    for i in range(1, _DEG):
        # 16807 * word mod (2**31 - 1) without overflowing 31 bits (Schrage), exactly as glibc computes it
        hi = abs(word) // 127773
        lo = abs(word) % 127773
        if word < 0:
            hi = -hi
            lo = -lo
        word = 16807 * lo - 2836 * hi
        if word < 0:
            word += 2147483647
        state[i] = np.uint32(word)
    state[_DEG] = _SEP
    for _ in range(10 * _DEG):  # glibc discards the first 310 outputs
        _next(state)
    return state


@numba.njit(nogil=True, cache=True, inline="always")
def _next(state: np.ndarray) -> int:
    """One ``rand()`` draw: add the rear word into the front word (mod 2**32), return it without its low bit."""
    f = np.int64(state[_DEG])
    r = f - _SEP
    if r < 0:
        r += _DEG
    # numba widens uint32 + uint32 to 64 bits: wrap modulo 2**32 explicitly, as the C addition does
    v = (np.int64(state[f]) + np.int64(state[r])) & 0xFFFFFFFF
    state[f] = np.uint32(v)
    f += 1
    if f == _DEG:
        f = 0
    state[_DEG] = f
    return v >> 1


@numba.njit(nogil=True, cache=True)
def _draw(state: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` with the next ``len(out)`` ``rand()`` outputs (for tests against libc)."""
    for i in range(out.shape[0]):
        out[i] = _next(state)


@numba.njit(nogil=True, cache=True)
def _shuffle_batch(state: np.ndarray, arr: np.ndarray, divisors: np.ndarray, out: np.ndarray, inverse: bool) -> None:
    """Reshuffle ``arr`` in place once per row of ``out`` and store each result (or its inverse) in that row.

    The shuffle is cumulative, as in secactpy and R SecAct: each permutation shuffles the previous one, not a
    fresh ``0..n-1``. Swap ``i`` exchanges ``arr[i]`` with ``arr[i + rand() // divisors[i]]``, where
    ``divisors[i] = RAND_MAX // (n - i) + 1`` (precomputed: it does not depend on the draw).
    """
    n = arr.shape[0]
    for b in range(out.shape[0]):
        for i in range(n - 1):
            j = i + _next(state) // divisors[i]
            t = arr[i]
            arr[i] = arr[j]
            arr[j] = t
        if inverse:
            for h in range(n):
                out[b, arr[h]] = h
        else:
            for h in range(n):
                out[b, h] = arr[h]


class SrandPermutations:
    """The stream of secactpy's ``CStdlibRNG(seed)`` permutations of ``0..n-1``, produced in batches.

    Parameters
    ----------
    n : int
        Length of each permutation (the number of genes).
    seed : int
        Seed handed to ``srand``; like secactpy's ctypes call, it is taken modulo 2**32.

    Notes
    -----
    ``next(m)`` returns rows ``i..i+m-1`` of secactpy's ``CStdlibRNG(seed).permutation_table(n, n_rand)``,
    where ``i`` is the number of rows already returned; ``next(m, inverse=True)`` returns the same rows of
    ``inverse_permutation_table``. Only the current permutation and one batch are held in memory.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = int(n)
        self._state = _seed(int(seed) % 2**32)
        self._arr = np.arange(self.n, dtype=np.int64)
        # one division per swap instead of two: the bucket width depends only on the position
        self._divisors = RAND_MAX // np.arange(self.n, 0, -1, dtype=np.int64) + 1

    def next(self, m: int, inverse: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """Return the next ``m`` permutations as an ``(m, n)`` array (``out`` if given: any integer dtype).

        With ``inverse=True`` each row ``q`` satisfies ``q[p[h]] = h`` for the forward permutation ``p``,
        so ``T[:, q] @ Y == T @ Y[p, :]``.
        """
        if out is None:
            out = np.empty((m, self.n), dtype=np.int64)
        elif out.shape != (m, self.n):
            raise ValueError(f"out has shape {out.shape}, expected {(m, self.n)}")
        _shuffle_batch(self._state, self._arr, self._divisors, out, inverse)
        return out


def rand_stream(seed: int, count: int) -> np.ndarray:
    """The first ``count`` values of glibc ``rand()`` after ``srand(seed)``, as int64."""
    out = np.empty(count, dtype=np.int64)
    _draw(_seed(int(seed) % 2**32), out)
    return out

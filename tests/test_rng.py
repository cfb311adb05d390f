"""The counter-based generator: spec vs compiled twin, reproducibility, uniformity."""

import numpy as np
import pytest
from scipy import stats

from fastperm import rng as spec

nb_rng = pytest.importorskip("fastperm.backends.numba_cpu.rng")


def test_mix64_known_values():
    # SplitMix64 from state 0: the first outputs are mix64(G), mix64(2G) (published test vector
    # of SplitMix64 seeded with 0: 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4).
    assert spec.mix64(spec.GOLDEN) == 0xE220A8397B1DCDAF
    assert spec.mix64(2 * spec.GOLDEN) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("d", [1, 2, 3, 7, 64, 401])
@pytest.mark.parametrize("stream", [spec.STREAM_FIXED, spec.STREAM_FRESH])
def test_compiled_permutation_matches_spec(d, stream):
    for seed, index, copy in [(0, 0, 1), (1, 5, 3), (2**64 - 1, 2**32 - 1, 2**32 - 1), (7, 123, 9)]:
        want = spec.permutation(seed, stream, spec.counter(index, copy), d)
        got = nb_rng.permutation(np.uint64(seed), stream, index, copy, d)
        np.testing.assert_array_equal(got, want)
        assert sorted(want) == list(range(d))


@pytest.mark.parametrize("d", [1, 2, 5, 33])
def test_compiled_resample_matches_spec(d):
    for seed, index, copy in [(0, 0, 1), (3, 2, 7), (99, 40, 15)]:
        want = spec.resample_indices(seed, spec.STREAM_FIXED, spec.counter(index, copy), d)
        got = nb_rng.resample_indices(np.uint64(seed), spec.STREAM_FIXED, index, copy, d)
        np.testing.assert_array_equal(got, want)


def test_bounded_rejection_path_matches_spec():
    """r = 3·2^30 rejects 25% of draws: the compiled loop must consume draws like the spec."""
    from numba import njit

    @njit
    def draws(k, r, count):
        buf = np.empty(4, dtype=np.uint64)  # short buffer: most draws come from the fallback
        nb_rng.fill_draws(k, buf)
        out = np.empty(count, dtype=np.int64)
        c = 0
        for q in range(count):
            out[q], c = nb_rng.bounded(k, buf, c, r)
        return out, c

    for r in (3 * 2**30, 2**31 + 1, 5, 1):
        key = spec.key(11, 0, 42)
        want = spec.Draws(key)
        expect = [want.bounded(r) for _ in range(200)]
        got, used = draws(np.uint64(key), r, 200)
        np.testing.assert_array_equal(got, expect)
        assert used == want.c
        assert all(0 <= v < r for v in expect)
    # the rejection branch really ran: 200 draws at 25% rejection consume more than 200
    w = spec.Draws(spec.key(11, 0, 42))
    [w.bounded(3 * 2**30) for _ in range(200)]
    assert w.c > 200


def test_reproducible_and_keyed():
    a = spec.permutation(5, 0, spec.counter(1, 1), 50)
    assert np.array_equal(a, spec.permutation(5, 0, spec.counter(1, 1), 50))
    for other in [(6, 0, spec.counter(1, 1)), (5, 1, spec.counter(1, 1)),
                  (5, 0, spec.counter(2, 1)), (5, 0, spec.counter(1, 2))]:
        assert not np.array_equal(a, spec.permutation(*other, 50))


def test_counter_halves_validated():
    with pytest.raises(ValueError, match="counter"):
        spec.counter(2**32, 0)
    with pytest.raises(ValueError, match="counter"):
        spec.counter(0, -1)


@pytest.mark.parametrize("d", [2, 5, 8])
def test_positions_uniform_chi_square(d):
    """Each element lands in each position with probability 1/d (Pearson chi-square)."""
    from numba import njit

    @njit
    def counts(d, N):
        table = np.zeros((d, d), dtype=np.int64)
        for t in range(N):
            p = nb_rng.permutation(np.uint64(2024), 1, t, 1, d)
            for pos in range(d):
                table[p[pos], pos] += 1
        return table

    N = 40000
    table = counts(d, N)
    expected = N / d
    chi2 = ((table - expected) ** 2 / expected).sum()
    dof = (d - 1) * (d - 1)
    assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)
    # all d! orderings appear with equal frequency at d = 3 is checked by the pair test below


def test_pairs_of_positions_uniform_d3():
    """At d = 3 all 6 permutations are equally likely (chi-square over permutations)."""
    from itertools import permutations

    index = {p: i for i, p in enumerate(permutations(range(3)))}
    N = 30000
    hist = np.zeros(6)
    for t in range(N):
        p = nb_rng.permutation(np.uint64(1), 1, t, 2, 3)
        hist[index[tuple(p)]] += 1
    chi2 = ((hist - N / 6) ** 2 / (N / 6)).sum()
    assert stats.chi2.sf(chi2, 5) > 1e-4, hist


def test_resample_uniform_chi_square():
    d, N = 7, 6000
    counts = np.zeros(d)
    for t in range(N):
        idx = nb_rng.resample_indices(np.uint64(3), 1, t, 1, d)
        counts += np.bincount(idx, minlength=d)
    expected = N * d / d
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, d - 1) > 1e-4, counts


def test_chi_square_can_fail():
    """The uniformity test rejects a visibly biased shuffle (guards the test itself)."""
    d, N = 5, 20000
    rs = np.random.default_rng(0)
    table = np.zeros((d, d))
    for _ in range(N):
        p = np.arange(d)
        for i in range(d):  # the classic wrong shuffle: swap with any position
            j = rs.integers(d)
            p[i], p[j] = p[j], p[i]
        table[p, np.arange(d)] += 1
    chi2 = ((table - N / d) ** 2 / (N / d)).sum()
    assert stats.chi2.sf(chi2, (d - 1) ** 2) < 1e-4

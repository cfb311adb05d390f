"""The counter-based generator: spec vs compiled twins, reproducibility, uniformity."""

import importlib

import numpy as np
import pytest
from scipy import stats

from fastperm import rng as spec


def _twins():
    """The compiled generators importable here (Numba's and Cython's)."""
    found = []
    for name in ("fastperm.backends.numba_cpu.rng", "fastperm.backends._cython.rng"):
        try:
            found.append(pytest.param(importlib.import_module(name), id=name.split(".")[2]))
        except ImportError:
            pass
    return found or [pytest.param(None, marks=pytest.mark.skip("no compiled generator"))]


@pytest.fixture(params=_twins())
def twin(request):
    """A compiled generator with ``permutation``, ``resample_indices``, ``bounded_draws``."""
    return request.param


def test_mix64_known_values():
    # SplitMix64 from state 0: the first outputs are mix64(G), mix64(2G) (published test vector
    # of SplitMix64 seeded with 0: 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4).
    assert spec.mix64(spec.GOLDEN) == 0xE220A8397B1DCDAF
    assert spec.mix64(2 * spec.GOLDEN) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("d", [1, 2, 3, 7, 64, 401])
@pytest.mark.parametrize("stream", [spec.STREAM_FIXED, spec.STREAM_FRESH])
def test_compiled_permutation_matches_spec(twin, d, stream):
    for seed, index, copy in [(0, 0, 1), (1, 5, 3), (2**64 - 1, 2**32 - 1, 2**32 - 1), (7, 123, 9)]:
        want = spec.permutation(seed, stream, spec.counter(index, copy), d)
        got = twin.permutation(np.uint64(seed), stream, index, copy, d)
        np.testing.assert_array_equal(got, want)
        assert sorted(want) == list(range(d))


@pytest.mark.parametrize("d", [1, 2, 5, 33])
def test_compiled_resample_matches_spec(twin, d):
    for seed, index, copy in [(0, 0, 1), (3, 2, 7), (99, 40, 15)]:
        want = spec.resample_indices(seed, spec.STREAM_FIXED, spec.counter(index, copy), d)
        got = twin.resample_indices(np.uint64(seed), spec.STREAM_FIXED, index, copy, d)
        np.testing.assert_array_equal(got, want)


def test_bounded_rejection_path_matches_spec(twin):
    """r = 3·2^30 rejects 25% of draws: the compiled loop must consume draws like the spec."""
    for r in (3 * 2**30, 2**31 + 1, 5, 1):
        key = spec.key(11, 0, 42)
        want = spec.Draws(key)
        expect = [want.bounded(r) for _ in range(200)]
        got, used = twin.bounded_draws(np.uint64(key), r, 200)
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
    for other in [
        (6, 0, spec.counter(1, 1)),
        (5, 1, spec.counter(1, 1)),
        (5, 0, spec.counter(2, 1)),
        (5, 0, spec.counter(1, 2)),
    ]:
        assert not np.array_equal(a, spec.permutation(*other, 50))


def test_counter_halves_validated():
    with pytest.raises(ValueError, match="counter"):
        spec.counter(2**32, 0)
    with pytest.raises(ValueError, match="counter"):
        spec.counter(0, -1)


@pytest.mark.parametrize("d", [2, 5, 8])
def test_positions_uniform_chi_square(twin, d):
    """Each element lands in each position with probability 1/d (Pearson chi-square)."""
    N = 40000
    table = np.zeros((d, d), dtype=np.int64)
    for t in range(N):
        table[twin.permutation(np.uint64(2024), 1, t, 1, d), np.arange(d)] += 1
    expected = N / d
    chi2 = ((table - expected) ** 2 / expected).sum()
    dof = (d - 1) * (d - 1)
    assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)
    # all d! orderings appear with equal frequency at d = 3 is checked by the pair test below


def test_pairs_of_positions_uniform_d3(twin):
    """At d = 3 all 6 permutations are equally likely (chi-square over permutations)."""
    from itertools import permutations

    index = {p: i for i, p in enumerate(permutations(range(3)))}
    N = 30000
    hist = np.zeros(6)
    for t in range(N):
        p = twin.permutation(np.uint64(1), 1, t, 2, 3)
        hist[index[tuple(p)]] += 1
    chi2 = ((hist - N / 6) ** 2 / (N / 6)).sum()
    assert stats.chi2.sf(chi2, 5) > 1e-4, hist


def test_resample_uniform_chi_square(twin):
    d, N = 7, 6000
    counts = np.zeros(d)
    for t in range(N):
        idx = twin.resample_indices(np.uint64(3), 1, t, 1, d)
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

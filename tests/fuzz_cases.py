"""Generated inputs for the fuzz suite (``tests/test_fuzz.py``), and the rule every case obeys.

A case calls one public entry point with the same generated arguments on every backend that
implements it. Its outcome must be one of:

* the same named refusal everywhere: a ValueError, TypeError, MemoryError or
  FloatingPointError of the same type and message on every backend;
* results that are finite (NaN only after a reported divergence), equal to the NumPy
  reference's within rounding, with divergences reported at the same step everywhere.

Never a crash, a hang, another exception type, a silent non-finite value, a NumPy
RuntimeWarning on one backend only, or a different answer between backends. Not collected
by pytest itself (no ``test_`` prefix): ``test_fuzz.py`` runs these strategies, the index-
carrying ones in a subprocess so that a memory error fails a test instead of the session.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import fastperm
from fastperm import augment, backends, lie, models, schemes
from fastperm.deep_linear import DeepLinear
from fastperm.deep_linear import train as deep_train

#: examples per entry point: a fixed budget (about 40 s for all seven tests here), the
#: cases derandomised so that CI runs the same ones every time; FASTPERM_FUZZ_EXAMPLES
#: scales it (e.g. 2000 for a long local run, with a random seed: FASTPERM_FUZZ_RANDOM=1)
EXAMPLES = int(os.environ.get("FASTPERM_FUZZ_EXAMPLES", "1000"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FASTPERM_FUZZ_RANDOM"),
    suppress_health_check=list(HealthCheck),
    database=None,
)
NAMED = (ValueError, TypeError, MemoryError, FloatingPointError)
CPU = [b for b in ("numpy", "numba", "cython") if b in backends.available()]
#: the backends of schemes.run and deep_linear.train
NUMBA_AND_NUMPY = [b for b in CPU if b in ("numpy", "numba")]

# -- values: ordinary, extreme, and invalid ---------------------------------------------------

ordinary = st.floats(-3, 3, allow_nan=False)
extreme = st.sampled_from([0.0, 1e-300, -1e-300, 1e150, -1e150, 1e200, 1e300, -1e300])
invalid = st.sampled_from([math.nan, math.inf, -math.inf])
entry = st.one_of(ordinary, ordinary, ordinary, extreme, invalid)


def arrays(shape, elements=entry):
    n = int(np.prod(shape))
    return st.lists(elements, min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=np.float64).reshape(shape)
    )


def shapes_off_by_one(shape):
    """``shape``, or (rarely) one entry one off: a mismatch every entry point must name."""
    bad = [tuple(s + (1 if i == j else 0) for j, s in enumerate(shape)) for i in range(len(shape))]
    return st.one_of(*[st.just(shape)] * 6, st.sampled_from(bad))


ks = st.one_of(st.sampled_from([1, 2, 3, 5, math.inf]), st.sampled_from([0, -1, 2.5, True, "3"]))
lrs = st.one_of(
    st.sampled_from([1e-3, 1e-2, 0.3]),
    st.sampled_from([3.0, 1e3, 1e308]),
    st.sampled_from([0.0, -1e-3, math.nan, math.inf]),
)
steps_ = st.one_of(st.sampled_from([0, 1, 7, 60]), st.sampled_from([-1, 2.0]))
seeds = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64, 1.5]))
samplings = st.sampled_from(["fixed", "fresh", "fixed", "bogus"])


class Deferred:
    """An argument built inside the call (its constructor's refusal is part of the outcome)."""

    def __init__(self, make, *args, **kwargs):
        self.make, self.args, self.kwargs = make, args, kwargs

    def __call__(self):
        return self.make(*self.args, **self.kwargs)

    def __repr__(self):
        args = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{getattr(self.make, '__name__', self.make)}({', '.join(args)})"


def built(kw):
    """``kw`` with every :class:`Deferred` argument built."""
    return {k: v() if isinstance(v, Deferred) else v for k, v in kw.items()}


@st.composite
def augmentations(draw, d, indices=True):
    """A name, a distribution (built in the call), or (with ``indices``) a block permutation
    whose groups may not partition range(d) (too many, too few, repeated, negative)."""
    kinds = ["permutation", "resample", "gaussian", "mask", "shift", "bogus"]
    if indices:
        kinds.append("blocks")
    kind = draw(st.sampled_from(kinds))
    if kind in ("permutation", "resample", "bogus"):
        return kind
    if kind == "gaussian":
        return Deferred(augment.Gaussian, draw(st.sampled_from([0.0, 0.3, 2.0, -1.0])))
    if kind == "mask":
        return Deferred(
            augment.Mask, draw(st.sampled_from([0.2, 1.0, 0.0])), rescale=draw(st.booleans())
        )
    if kind == "shift":
        return Deferred(augment.CyclicShift)
    size = draw(st.sampled_from([d, d, d - 1, d + 1, 1000]))
    perm = list(np.random.default_rng(draw(st.integers(0, 99))).permutation(max(size, 1)))
    if draw(st.integers(0, 5)) == 0 and perm:
        perm[0] = draw(st.sampled_from([-1, perm[-1]]))  # a negative or a repeated index
    cut = draw(st.integers(0, len(perm)))
    groups = [[int(i) for i in g] for g in (perm[:cut], perm[cut:]) if g] or [[0]]
    return Deferred(augment.BlockPermutation, groups)


class Problem(fastperm.LinearProblem):
    """A problem whose repr shows its data (hypothesis prints it for a failing case)."""

    def __repr__(self):
        with np.printoptions(precision=17):
            return (
                f"Problem(X={self.X.tolist()}, y={self.y.tolist()}, w_star={self.w_star.tolist()})"
            )


@st.composite
def problems(draw):
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    X = draw(arrays((n, d), st.one_of(ordinary, ordinary, ordinary, ordinary, extreme)))
    w_star = draw(arrays((d,), st.one_of(ordinary, ordinary, extreme)))
    with np.errstate(all="ignore"):
        y = X @ w_star
    if draw(st.booleans()) or not np.all(np.isfinite(y)):
        y = draw(arrays((n,), ordinary))
    return Problem(X, y, w_star)


# -- the rule ----------------------------------------------------------------------------------


def outcome(call):
    """``("error", type, message)`` or ``("result", value, divergence warnings)``; any other
    warning (a NumPy RuntimeWarning on one backend, say) is itself a failure."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            value = call()
        except NAMED as exc:
            return ("error", type(exc).__name__, str(exc))
    other = [w for w in seen if not _expected_warning(w)]
    assert not other, [f"{w.category.__name__}: {w.message}" for w in other]
    return ("result", value, sorted(str(w.message) for w in seen))


def _expected_warning(w):
    """A divergence, or one of the documented bracket warnings (h out of range, order 4
    with ReLU): the same on every backend, since the front end raises them."""
    if issubclass(w.category, fastperm.DivergenceWarning):
        return True
    return w.category is RuntimeWarning and any(
        s in str(w.message) for s in ("stencil measures", "order=4 assumes")
    )


def check_same(outcomes, compare):
    """Every backend's outcome agrees with the first (the NumPy reference)."""
    names = list(outcomes)
    ref = outcomes[names[0]]
    for name in names[1:]:
        got = outcomes[name]
        assert got[0] == ref[0], (name, got[:2], ref[:2])
        if ref[0] == "error":
            assert got[1:] == ref[1:], (name, got, ref)
        else:
            assert got[2] == ref[2], (name, got[2], ref[2])  # the same divergence warnings
            compare(got[1], ref[1])


def close(a, b, rtol=1e-7):
    """Equal within rounding where finite, NaN at the same places (after a divergence)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN at different places"
    assert not np.isinf(a).any() and not np.isinf(b).any(), "an infinite result"
    ok = ~np.isnan(a)
    scale = max(1.0, float(np.max(np.abs(b[ok]), initial=0.0)))
    assert np.all(np.abs(a[ok] - b[ok]) <= rtol * scale), float(np.max(np.abs(a[ok] - b[ok])))


def same_runs(a, b):
    """Two training results: the same divergence steps, losses and final parameters."""
    assert np.array_equal(
        np.asarray(a.diverged_step, dtype=object), np.asarray(b.diverged_step, dtype=object)
    )
    close(a.loss, b.loss)
    ok = np.isfinite(np.atleast_2d(b.w)).all(axis=-1)
    close(np.atleast_2d(a.w)[ok], np.atleast_2d(b.w)[ok])


# -- the cases ---------------------------------------------------------------------------------


@st.composite
def train_cases(draw, indices=False):
    p = draw(problems())
    kw = dict(
        k=draw(ks),
        lr=draw(lrs),
        steps=draw(steps_),
        sampling=draw(samplings),
        augmentation=draw(augmentations(p.d, indices)),
        seed=draw(seeds),
        record_every=draw(st.sampled_from([1, 1, 4, 0])),
    )
    if draw(st.booleans()):
        kw["w0"] = draw(arrays(draw(shapes_off_by_one((p.d,)))))
    return p, kw


def on_backends(call, names=CPU):
    """The outcome of ``call(backend)`` on each backend."""
    return {b: outcome(lambda b=b: call(b)) for b in names}


def run_train(case):
    p, kw = case
    check_same(on_backends(lambda b: fastperm.train(p, backend=b, **built(kw))), same_runs)


@st.composite
def train_many_cases(draw, indices=False):
    p, kw = draw(train_cases(indices))
    kw.pop("seed")
    runs = draw(st.integers(1, 3))
    kw["seeds"] = draw(st.lists(seeds, min_size=runs, max_size=runs))
    kw["lr"] = draw(st.lists(lrs, min_size=draw(st.sampled_from([1, runs])), max_size=runs))
    return p, kw


def run_train_many(case):
    p, kw = case
    check_same(on_backends(lambda b: fastperm.train_many(p, backend=b, **built(kw))), same_runs)


@st.composite
def gradient_cases(draw, indices=False):
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    return dict(
        w=draw(arrays(draw(shapes_off_by_one((d,))))),
        x=draw(arrays((n, d))),
        y=draw(arrays(draw(shapes_off_by_one((n,))))),
        k=draw(ks),
        seed=draw(seeds),
        augmentation=draw(augmentations(d, indices)),
    )


def run_gradient(kw):
    check_same(on_backends(lambda b: fastperm.augmented_gradient(backend=b, **built(kw))), close)
    expected = {k: v for k, v in kw.items() if k in ("w", "x", "y", "augmentation")}
    got = outcome(lambda: fastperm.expected_gradient(**built(expected)))
    if got[0] == "result":
        close(got[1], got[1])  # finite: a non-finite expected gradient must have raised


@st.composite
def bracket_cases(draw):
    sizes = draw(st.sampled_from([[3, 2], [3, 4, 2], [2, 3, 3, 1]]))
    m = models.MLP(
        sizes,
        activation=draw(st.sampled_from(["tanh", "relu"])),
        loss=draw(st.sampled_from(["bce", "mse"])),
        bias=draw(st.booleans()),
    )
    B = draw(st.integers(1, 4))
    theta = m.init(draw(st.integers(0, 9))) * draw(st.sampled_from([1.0, 1.0, 3.0, 1e100]))
    if draw(st.integers(0, 4)) == 0:
        theta = draw(arrays((m.P,)))
    X = draw(
        arrays(
            draw(shapes_off_by_one((B, m.d))),
            st.one_of(ordinary, ordinary, ordinary, extreme, invalid),
        )
    )
    Y = draw(arrays(draw(shapes_off_by_one((B, m.K))), st.floats(0, 1)))
    kw = dict(
        order=draw(st.sampled_from([2, 2, 4, 3])),
        h=draw(st.sampled_from([None, None, 1e-4, 5e-324, 1e300, -1.0])),
    )
    if draw(st.booleans()):
        kw["pairs"] = draw(
            st.lists(st.tuples(st.integers(-1, B), st.integers(-1, B)), min_size=1, max_size=4)
        )
    return m, theta, X, Y, kw


def _stencil_overflows(m, theta, X, Y, kw):
    """Whether |g_x| / h_x passes float64's range for some example (valid inputs only)."""
    try:
        with np.errstate(all="ignore"):
            G = m.grad(theta, X, Y)
            h = lie.default_step(theta, G, 2) if kw.get("h") is None else kw["h"]
            return bool(np.max(np.abs(G), initial=0.0) / np.min(h) > 1e300)
    except (ValueError, TypeError):
        return False


def run_brackets(case):
    m, theta, X, Y, kw = case
    out = on_backends(lambda b: lie.brackets(m, theta, X, Y, backend=b, **kw))
    # tanh: equal to the stencil's precision. ReLU: a pre-activation at or near a kink (an
    # all-zero input row puts it exactly at 0) makes the stencil pick a side by rounding,
    # which differs between the shortcut and the plain path: only finite and same-shaped
    smooth = m.activation == "tanh"
    # the reference evaluates θ + c h g_x literally; the compiled first-layer shortcut avoids
    # forming h g_x ⊗ x, so it stays finite where the reference overflows (inputs ~1e200):
    # there a compiled result may stand against the reference's FloatingPointError
    # And the kernels scale each stencil gradient by w_j/h before summing, the reference
    # differences first: where |g|/h passes float64's range (|g| beyond ~1e150) a compiled
    # FloatingPointError may stand against the reference's finite result. In these two
    # overflow regimes every outcome is a named error or finite, and the compiled backends
    # agree among themselves.
    ref = out.pop("numpy")
    if ref[:2] == ("error", "FloatingPointError") or _stencil_overflows(m, theta, X, Y, kw):
        for o in out.values():
            if o[0] == "result":
                close(o[1], o[1])  # finite
            else:
                same = ref[0] == "error" and o[1:] == ref[1:]
                assert same or o[1] == "FloatingPointError", (o, ref)
        if len(out) > 1:
            check_same(out, lambda a, b: close(a, b, rtol=1e-5) if smooth else close(a, a))
        return
    out = {"numpy": ref, **out}
    check_same(out, lambda a, b: close(a, b, rtol=1e-5) if smooth else close(a, a))


@st.composite
def scheme_cases(draw):
    p = draw(problems())
    kw = dict(
        scheme=draw(st.sampled_from(["vanilla", "da", "fa", "ea", "bogus"])),
        k=draw(ks),
        lr=draw(lrs),
        steps=draw(steps_),
        sampling=draw(samplings),
        seeds=draw(st.lists(seeds, min_size=1, max_size=2)),
    )
    if draw(st.booleans()):
        kw["w0"] = draw(arrays(draw(shapes_off_by_one((p.d,)))))
    return p, kw


def run_schemes(case):
    p, kw = case
    check_same(on_backends(lambda b: schemes.run(p, backend=b, **kw), NUMBA_AND_NUMPY), same_runs)


@st.composite
def deep_linear_cases(draw):
    p = draw(problems())
    net = DeepLinear([p.d, draw(st.integers(1, 3)), 1])
    kw = dict(
        k=draw(ks),
        sigma=draw(st.sampled_from([0.0, 0.3, -1.0, math.inf])),
        lr=draw(lrs),
        steps=draw(steps_),
        sampling=draw(samplings),
    )
    if draw(st.booleans()):
        kw["theta0"] = draw(arrays((net.P,)))
    return p, net, kw


def run_deep_linear(case):
    p, net, kw = case
    check_same(
        on_backends(lambda b: deep_train(p, net, backend=b, **kw), NUMBA_AND_NUMPY), same_runs
    )

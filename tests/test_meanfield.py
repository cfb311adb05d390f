"""fastperm.meanfield: the schemes at mean-field scale (Maass Martínez & Fontbona, NeurIPS
2024) — equivariance, the schemes' updates against finite differences, the compiled kernels
against the reference, exact W₂ against enumeration and the 1-D closed form, the RMDs'
bounds, and the harness (threads, parts, saving)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fastperm import backends, codes, knobs
from fastperm import meanfield as mf
from fastperm.backends.reference import meanfield as ref

CPU = [b for b in ("numba", "cython") if b in backends.available()]
# The compiled backend the physics tests train on: Numba, or Cython where Numba is absent.
FAST = CPU[0] if CPU else "numpy"
SCHEMES = ["vanilla", "da", "da", "fa", "ea"]
KS = [0, 0, 3, 0, 0]


def particles(n, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal((n, 4)) * scale


# -- the model and its symmetry ----------------------------------------------------------------


def test_unit_and_fa_model_are_equivariant():
    """σ*(Px; PθPᵀ) = P σ*(x; θ) for any θ; the FA model is equivariant whatever the
    particles, the plain network only for particles of a WI law. A unit that is not jointly
    equivariant (tanh(θx + e₁)) fails the same check."""
    theta = particles(7)
    x = np.random.default_rng(1).standard_normal((20, 2))
    Px = x[:, ::-1]
    assert np.allclose(mf.network(mf.reflect(theta), Px), mf.network(theta, x)[:, ::-1])
    fa = mf.network(theta, x, "fa")
    assert np.allclose(mf.network(theta, Px, "fa"), fa[:, ::-1], atol=1e-15)
    assert not np.allclose(mf.network(theta, Px), mf.network(theta, x)[:, ::-1])
    wi = np.concatenate([theta, mf.reflect(theta)])
    assert np.allclose(mf.network(wi, Px), mf.network(wi, x)[:, ::-1], atol=1e-15)

    def biased(th, inputs):  # tanh(θx + e₁): a bias on one coordinate breaks the symmetry
        return np.tanh(np.einsum("noc,ec->eno", th.reshape(-1, 2, 2), inputs) + [1.0, 0.0]).mean(1)

    assert not np.allclose(biased(mf.reflect(theta), Px), biased(theta, x)[:, ::-1])


def test_projection_reflection_and_basis():
    theta = particles(9)
    P = mf.project(theta)
    assert np.array_equal(mf.reflect(P), P)  # π θ ∈ E^G
    assert np.allclose(np.sum((theta - P) * P, axis=1), 0)  # orthogonal projection
    c = mf.coordinates(theta)
    assert np.allclose(np.linalg.norm(c[:, 2:], axis=1), np.linalg.norm(theta - P, axis=1))
    assert np.allclose(mf.BASIS @ mf.BASIS.T, np.eye(4))


def test_teachers_symmetry():
    assert not mf.Teacher.make("arbitrary", 4, seed=2).symmetric
    assert mf.Teacher.make("weak", 4, seed=2).symmetric
    assert mf.Teacher.make("strong", 4, seed=2).symmetric
    strong = mf.Teacher.make("strong", 6, seed=2).particles
    assert np.array_equal(mf.project(strong), strong)


def test_draws_follow_the_specification():
    from fastperm import rng

    got = mf.draw_particles(5, seed=11, scale=2.0)
    want = [2.0 * rng.gaussian_noise(11, rng.STREAM_INIT, rng.counter(i, 0), 4) for i in range(5)]
    assert np.array_equal(got, np.array(want))


# -- one step against finite differences --------------------------------------------------------


def loss_grad(theta, x, y, fa=False):
    """N ∇_θ ½‖f(x) − y‖² by central differences (the mean-field scaled gradient)."""
    N = theta.shape[0]
    g = np.zeros_like(theta)
    h = 1e-6
    for i, c in itertools.product(range(N), range(4)):
        e = np.zeros_like(theta)
        e[i, c] = h
        up = 0.5 * np.sum((mf.network(theta + e, x, "fa" if fa else "vanilla") - y) ** 2)
        dn = 0.5 * np.sum((mf.network(theta - e, x, "fa" if fa else "vanilla") - y) ** 2)
        g[i, c] = N * (up - dn) / (2 * h)
    return g


def one_step(scheme, k, theta, lr=0.3, seed=5, t=7, backend="numpy"):
    T = mf.Teacher.make("arbitrary", 3, seed=4, sigma=0.2)
    res = mf.train(T, theta, scheme=scheme, k=k, lr=lr, steps=1, seeds=seed, start_step=t,
                   backend=backend)  # fmt: skip
    x, y = ref.sample(T.particles, T.s, T.sigma, seed, t, 0)
    return T, res.theta[0], x, y


@pytest.mark.parametrize("backend", ["numpy", *CPU])
def test_vanilla_da_fa_ea_steps_match_finite_differences(backend):
    """One step of each scheme against the mean-field scaled gradient by finite differences:
    vanilla = the sample's gradient; DA (k = 0) = the mean over both group elements; FA =
    the averaged model's gradient; EA = vanilla's step projected onto E^G."""
    theta = particles(4, seed=3)
    lr = 0.3
    _, van, x, y = one_step("vanilla", 0, theta, lr, backend=backend)
    g_x = loss_grad(theta, x, y)
    g_px = loss_grad(theta, x[::-1], y[::-1])
    assert np.allclose(van, theta - lr * g_x, atol=1e-8)
    _, da, _, _ = one_step("da", 0, theta, lr, backend=backend)
    assert np.allclose(da, theta - lr * 0.5 * (g_x + g_px), atol=1e-8)
    assert not np.allclose(da, van, atol=1e-4)
    _, fa, _, _ = one_step("fa", 0, theta, lr, backend=backend)
    assert np.allclose(fa, theta - lr * loss_grad(theta, x, y, fa=True), atol=1e-8)
    si = mf.project(theta)
    _, ea, _, _ = one_step("ea", 0, si, lr, backend=backend)
    assert np.allclose(ea, si - lr * mf.project(loss_grad(si, x, y)), atol=1e-8)


def test_k_fold_da_draws_group_elements():
    """k = 1: the step of the sample or of its image, each for some seeds; large k: close to
    the exact average (weights within 4/√k of ½)."""
    theta = particles(3, seed=8)
    seen = set()
    for seed in range(12):
        _, one, x, y = one_step("da", 1, theta, seed=seed)
        _, van, _, _ = one_step("vanilla", 0, theta, seed=seed)
        image = theta - 0.3 * loss_grad(theta, x[::-1], y[::-1])
        which = "x" if np.allclose(one, van, atol=1e-8) else "Px"
        if which == "Px":
            assert np.allclose(one, image, atol=1e-8)
        seen.add(which)
    assert seen == {"x", "Px"}
    w0, w1 = ref.weights(codes.DA, 4096, 3, 2, 0)
    assert abs(w0 - 0.5) < 4 / math.sqrt(4096) and w0 + w1 == 1.0


# -- compiled against the reference ---------------------------------------------------------------


def kernel_outputs(backend, temp, lr=0.15, perturb=0.0):
    T = mf.Teacher.make("weak", 4, seed=1, sigma=0.1)
    theta0 = np.stack([particles(6, seed=s) for s in range(len(SCHEMES))])
    res = mf.train(
        T, theta0, scheme=SCHEMES, k=KS, lr=lr + perturb, steps=30, batch=3,
        seeds=np.arange(len(SCHEMES)), lam=0.01, temp=temp, record_every=10, start_step=4,
        keep_theta=True, eval_size=16, backend=backend,
    )  # fmt: skip
    return res


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("temp", [0.0, 1e-3])
def test_compiled_matches_reference(backend, temp):
    want = kernel_outputs("numpy", temp)
    got = kernel_outputs(backend, temp)
    for name in ("loss", "offset", "moment", "theta", "theta_path"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0, atol=1e-12)
    assert np.array_equal(got.diverged_step, want.diverged_step)
    off = kernel_outputs("numpy", temp, perturb=1e-9)  # the comparison can fail
    assert np.max(np.abs(off.theta - want.theta)) > 1e-12


@pytest.mark.parametrize("backend", ["numpy", *CPU])
def test_ea_particles_stay_exactly_in_the_fixed_subspace(backend):
    """EA from any start (projected), with noise and L2: every record bitwise in E^G."""
    T = mf.Teacher.make("arbitrary", 4, seed=2)
    res = mf.train(T, particles(8), scheme="ea", lr=0.2, steps=200, temp=1e-3, lam=0.01,
                   record_every=50, keep_theta=True, backend=backend)  # fmt: skip
    path = res.theta_path[0]
    assert np.array_equal(path, mf.reflect(path))
    assert np.all(res.offset == 0.0)
    assert res.rmd_projection().max() == 0.0


def test_a_diverging_run_says_so():
    from fastperm import DivergenceWarning

    T = mf.Teacher.make("arbitrary", 2, seed=2)
    for backend in ["numpy", *CPU]:
        with pytest.warns(DivergenceWarning, match="run 0 .* diverged at step 1"):
            res = mf.train(T, particles(3), lr=[1e300, 0.1], steps=5, backend=backend)
        assert res.diverged_step[0] >= 0 and res.diverged_step[1] == -1
        assert np.isnan(res.loss[0, -1]) and np.isfinite(res.loss[1]).all()
        rmd = res.rmd_projection()  # NaN past the divergence, never a spurious 0
        assert np.isnan(rmd[0, -1]) and np.isfinite(rmd[1]).all()


def test_a_step_that_overflows_is_caught_at_the_same_step_on_every_backend():
    """Finite gradient entries whose sum overflows: every backend checks each entry of the
    step (after EA's projection), so all stop at the same step (the review found Numba and
    Cython one step early, summing the entries)."""
    from fastperm import DivergenceWarning

    T = mf.Teacher.make("arbitrary", 2, seed=2)
    steps = {}
    for backend in ["numpy", *CPU]:
        with pytest.warns(DivergenceWarning):
            res = mf.train(T, np.ones((10, 4)), scheme=["vanilla", "ea"], lr=1e307, lam=1.0,
                           steps=4, record_every=4, backend=backend)  # fmt: skip
        steps[backend] = res.diverged_step.tolist()
    assert len({tuple(v) for v in steps.values()}) == 1, steps


# -- the schemes' physics (fast backend) -----------------------------------------------------------


def test_from_an_si_start_da_and_fa_stay_si_vanilla_leaves():
    """From an SI start, the exact group average (DA, k = 0) and FA keep every particle in
    E^G up to rounding, for any teacher (their step at an SI law is equivariant); vanilla
    and one-copy DA leave it, far more for the arbitrary teacher."""
    theta0 = mf.init(40, seed=3)
    out = {}
    for kind in ("strong", "arbitrary"):
        T = mf.Teacher.make(kind, 4, seed=1)
        res = mf.train(T, theta0, scheme=["vanilla", "da", "da", "fa"], k=[0, 0, 1, 0],
                       lr=0.2, steps=1500, seeds=7, record_every=1500, backend=FAST)  # fmt: skip
        rmd = res.rmd_projection()[:, -1]
        assert rmd[1] < 1e-12 and rmd[3] < 1e-12
        assert rmd[0] > 1e-3 and rmd[2] > 1e-3
        out[kind] = rmd[0]
    assert out["arbitrary"] > 5 * out["strong"]


def test_vanilla_distance_to_the_subspace_shrinks_with_lr():
    """At a fixed training time lr·T, vanilla's RMD to E^G (strong teacher, SI start) is SGD
    noise: a quarter of the step size halves it, roughly (ratio within [0.3, 0.75])."""
    T = mf.Teacher.make("strong", 4, seed=1)
    theta0 = mf.init(200, seed=3)
    rmd = []
    for lr in (0.2, 0.05):
        res = mf.train(T, theta0, lr=lr, steps=round(300 / lr), seeds=np.arange(4),
                       record_every=round(300 / lr), backend=FAST)  # fmt: skip
        rmd.append(res.rmd_projection()[:, -1].mean())
    assert 0.3 < rmd[1] / rmd[0] < 0.75, rmd


# -- optimal transport ---------------------------------------------------------------------------


def brute_w2(a, b):
    n = a.shape[0]
    return min(
        np.mean(np.sum((a - b[list(p)]) ** 2, axis=1)) for p in itertools.permutations(range(n))
    )


@pytest.mark.parametrize("seed", range(4))
def test_w2_against_enumeration(seed):
    g = np.random.default_rng(seed)
    a, b = g.standard_normal((6, 4)), g.standard_normal((6, 4)) + 0.3
    assert mf.w2_squared(a, b) == pytest.approx(brute_w2(a, b), rel=1e-12)
    # unequal sizes: 2 atoms against 4 (each written as 4 atoms)
    c, d = g.standard_normal((2, 3)), g.standard_normal((4, 3))
    assert mf.w2_squared(c, d) == pytest.approx(brute_w2(np.repeat(c, 2, axis=0), d), rel=1e-12)
    # the identity pairing is not optimal in general: the oracle tells them apart
    if seed == 0:
        assert np.mean(np.sum((a - b) ** 2, axis=1)) > brute_w2(a, b) + 1e-3


def test_w2_against_the_sorted_closed_form_in_1d():
    g = np.random.default_rng(5)
    a, b = g.standard_normal(300), g.exponential(size=300)
    assert mf.w2_squared(a[:, None], b[:, None]) == pytest.approx(
        mf.w2_squared_sorted(a, b), rel=1e-10
    )
    assert mf.w2_squared_sorted(a, b) < np.mean((a - b) ** 2)


def test_rmd_bounds_and_zeros():
    g = np.random.default_rng(6)
    for _ in range(5):
        theta = g.standard_normal((30, 4)) * g.uniform(0.1, 3, size=4) + g.standard_normal(4)
        rp, rs = mf.rmd_projection(theta), mf.rmd_symmetrisation(theta)
        assert 0 < rp <= 1 and 0 < rs <= 1
        # the closed form is the exact assignment's value
        assert rp == pytest.approx(mf.rmd(theta, mf.project(theta)), rel=1e-10)
    si = mf.project(theta)
    assert mf.rmd_projection(si) == 0.0
    assert mf.rmd_symmetrisation(np.concatenate([theta, mf.reflect(theta)])) == pytest.approx(
        0.0, abs=1e-7
    )
    # between arbitrary laws RMD reaches √2: opposite Dirac masses
    a = np.array([[1.0, 0, 0, 0]])
    assert mf.rmd(a, -a) == pytest.approx(math.sqrt(2))


# -- the harness -----------------------------------------------------------------------------------


def test_threads_parts_and_continuation_give_one_calls_bits(monkeypatch):
    from fastperm import Interrupted

    T = mf.Teacher.make("weak", 4, seed=1)
    theta0 = mf.init(30, seed=1, invariant=False)
    kw = dict(scheme=["vanilla", "da", "fa", "ea"], k=[0, 2, 0, 0], lr=0.1, seeds=[1, 2, 3, 4],
              temp=1e-4, record_every=50, backend=FAST)  # fmt: skip
    one = mf.train(T, theta0, steps=400, threads=1, **kw)
    two = mf.train(T, theta0, steps=400, threads=2, **kw)
    for name in ("theta", "loss", "offset", "moment"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    kern = backends.get(FAST)
    real, calls = kern.meanfield_runs, []

    def stop_at_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 2e5)
    monkeypatch.setattr(kern, "meanfield_runs", stop_at_third)
    with pytest.raises(Interrupted) as info:
        mf.train(T, theta0, steps=400, **kw)
    monkeypatch.undo()
    part = info.value.result
    done = part.meta["steps_done"]
    assert 0 < done < 400
    rest = mf.train(T, part.theta, steps=400 - done, start_step=done, **kw)
    assert np.array_equal(rest.theta, one.theta)
    kept = np.isfinite(part.loss)  # the records made before the interrupt are one call's
    assert kept[:, 0].all() and np.array_equal(part.loss[kept], one.loss[kept])


def test_dask_client_gives_the_local_bits():
    distributed = pytest.importorskip("dask.distributed")
    T = mf.Teacher.make("weak", 4, seed=1)
    kw = dict(scheme=["vanilla", "da", "fa", "ea"], k=[0, 3, 0, 0], seeds=[1, 2, 3, 4],
              steps=200, record_every=50, keep_theta=True, backend=FAST)  # fmt: skip
    local = mf.train(T, mf.init(12, seed=2), **kw)
    with distributed.Client(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as client:
        spread = mf.train(T, mf.init(12, seed=2), client=client, **kw)
    for name in ("loss", "offset", "moment", "theta", "theta_path"):
        assert np.array_equal(getattr(spread, name), getattr(local, name)), name


def test_results_save_and_load(tmp_path):
    T = mf.Teacher.make("strong", 2, seed=1)
    res = mf.train(T, mf.init(5), scheme=["vanilla", "ea"], steps=20, record_every=10,
                   keep_theta=True, backend=FAST)  # fmt: skip
    res.save(tmp_path / "r.npz")
    back = mf.MeanFieldResult.load(tmp_path / "r.npz")
    assert np.array_equal(back.theta, res.theta) and list(back.scheme) == ["vanilla", "ea"]
    assert back.meta["teacher"]["kind"] == "strong"
    pytest.importorskip("xarray")
    ds = res.to_xarray()
    assert ds["theta_path"].dims == ("run", "step", "particle", "entry")
    try:
        res.save(tmp_path / "r.nc")
    except ImportError:
        pytest.skip("no netCDF engine")


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(scheme="sgd"), "scheme must be one of"),
        (dict(k=-1), "k must be"),
        (dict(k=2**21), "k must be"),
        (dict(scheme=None), "scheme must be one of"),
        (dict(scheme=3), "scheme must be one of"),
        (dict(lr=0.0), "lr"),
        (dict(batch=0), "batch"),
        (dict(steps=-1), "steps"),
        (dict(temp=-1.0), "temp"),
        (dict(lam=float("nan")), "lam"),
        (dict(theta0=np.ones((3, 3))), "theta0"),
        (dict(theta0=np.full((3, 4), np.inf)), "theta0"),
        (dict(seeds=[1, 2], lr=[0.1, 0.2, 0.3]), "equal lengths"),
        (dict(teacher="strong"), "teacher must be"),
        (dict(eval_size=0), "eval_size"),
    ],
)
def test_bad_inputs_are_named(change, match):
    kw = dict(teacher=mf.Teacher.make("strong", 2), theta0=mf.init(3), steps=2, backend="numpy")
    kw.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        mf.train(**kw)


def test_bad_teachers_and_atoms_are_named():
    with pytest.raises(ValueError, match="even m"):
        mf.Teacher.make("weak", 3)
    with pytest.raises(ValueError, match="kind"):
        mf.Teacher.make("odd", 2)
    with pytest.raises(ValueError, match="particles"):
        mf.Teacher(np.ones((2, 3)))
    with pytest.raises(ValueError, match="s must be"):
        mf.Teacher(np.ones((2, 4)), s=0.0)
    with pytest.raises(ValueError, match="must lie in E\\^G"):
        mf.Teacher(mf.draw_particles(2, 1), kind="strong")
    with pytest.raises(ValueError, match="invariant"):
        mf.Teacher(mf.draw_particles(2, 1), kind="weak")
    with pytest.raises(ValueError, match="kind"):
        mf.Teacher(np.ones((2, 4)), kind="odd")
    with pytest.raises(ValueError, match="on the line"):
        mf.w2_squared_sorted([[0, 5], [1, 7]], [[0, -5], [1, 9]])
    with pytest.raises(ValueError, match="theta must be 2-D"):
        mf.rmd_projection([1.0, 2.0, 3.0, 4.0])
    T = mf.Teacher.make("strong", 2)
    for kw, name in [({"seeds": 0}, "seeds"), ({"steps": 0}, "steps"), ({"share": 1.5}, "share")]:
        with pytest.raises(ValueError, match=name):
            mf.discover_subspace(T, **kw)
    with pytest.raises(ValueError, match="one dimension"):
        mf.w2_squared(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="MAX_ATOMS"):
        mf.w2_squared(np.ones((7001, 1)), np.ones((7000, 1)))
    with pytest.raises(ValueError, match="finite"):
        mf.rmd_projection(np.full((2, 4), np.nan))


# -- the subspace-discovery heuristic -------------------------------------------------------------


def test_discovery_finds_the_fixed_subspace_for_invariant_teachers():
    """From the line of I (inside E^G), training escapes along the other direction of E^G,
    then stays: the heuristic ends at E^G for the invariant teachers, and at the whole space
    for the arbitrary one."""
    for kind in ("strong", "weak"):
        found = mf.discover_subspace(mf.Teacher.make(kind, 4, seed=1), n=60, steps=800,
                                     backend=FAST)  # fmt: skip
        assert found.stayed and found.basis.shape[0] == 2
        inside = mf.project(found.basis)  # rows of E^G keep their norm under π
        assert np.allclose(np.linalg.norm(inside, axis=1), 1.0, atol=0.02)
        assert found.rounds[0]["rmd"].min() > 0.1 and found.rounds[-1]["rmd"].max() < 0.02
    found = mf.discover_subspace(mf.Teacher.make("arbitrary", 4, seed=1), n=60, steps=800,
                                 backend=FAST)  # fmt: skip
    assert not found.stayed and found.basis.shape[0] == 4
    with pytest.raises(ValueError, match="linearly independent"):
        mf.discover_subspace(mf.Teacher.make("strong", 2), start=[[1, 0, 0, 1], [2, 0, 0, 2]])

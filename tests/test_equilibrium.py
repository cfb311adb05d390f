"""SGD's noise equilibrium (fastperm.equilibrium, issue 19): the charge's exact per-step
identity on every backend, GD's O(η²) drift, SGD's start-independent plateau, the decay time,
the predicted equilibria, compiled kernels against the NumPy reference, bad inputs."""

import math

import numpy as np
import pytest

from fastperm import backends, knobs, rng
from fastperm import equilibrium as eq

CPU = [b for b in ("numba", "cython") if b in backends.available()]
# The compiled backend the physics tests train on: Numba, or Cython where Numba is absent.
FAST = CPU[0] if CPU else "numpy"


def teacher(d0=6, d2=5, sigma=1.0, seed=0):
    gen = np.random.default_rng(seed)
    L = np.tril(gen.standard_normal((d0, d0))) * 0.3 + np.eye(d0)
    return eq.Teacher(gen.standard_normal((d2, d0)) / np.sqrt(d0), L, sigma)


def balanced_start(T, hidden, g):
    """W = D Q, U = Qᵀ D⁻¹ (UW = I): on the minimum, imbalanced by the diagonal D."""
    d = T.d0
    D = np.ones(hidden)
    D[:d] = g
    W = np.eye(hidden, d) * D[:, None]
    U = np.eye(d, hidden) / D[None, :]
    return np.concatenate([U.ravel(), W.ravel()])


def test_charge_changes_by_exactly_eta_squared_terms():
    """C_{t+1} − C_t = η² (g_W g_Wᵀ − g_Uᵀ g_U) for SGD and GD steps, to rounding; a step
    with a 1e-6 error in one factor breaks it by far more."""
    T = teacher()
    U, W = eq.split(eq.init(T, 7, u_scale=1.2, w_scale=0.8, seed=1), T)
    X, Y = T.sample(3, 0, 10)
    for R in (eq.batch_R(U, W, X, Y), (U @ W - T.A) @ T.sigma_x):
        g_U, g_W = eq.gradients(U, W, R)
        lr = 0.05
        predicted = lr**2 * (g_W @ g_W.T - g_U.T @ g_U)
        change = eq.charge(U - lr * g_U, W - lr * g_W) - eq.charge(U, W)
        scale = np.abs(eq.charge(U, W)).max()
        assert np.abs(change - predicted).max() < 1e-13 * scale
        wrong = eq.charge(U - lr * (1 + 1e-6) * g_U, W - lr * g_W) - eq.charge(U, W)
        assert np.abs(wrong - predicted).max() > 1e-9 * scale


@pytest.mark.parametrize("backend", ["numpy", *CPU])
def test_identity_holds_along_every_backends_run(backend):
    """Along a run of each backend (θ kept at every step), every step's change of C is
    η² (g_W g_Wᵀ − g_Uᵀ g_U) with the gradients recomputed from the teacher's samples."""
    T = teacher()
    res = eq.train(
        T,
        eq.init(T, 7, u_scale=1.5, w_scale=0.5, seed=2),
        lr=0.04,
        batch=[4, 0],
        seeds=9,
        steps=6,
        keep_theta=True,
        backend=backend,
    )
    U, W = eq.split(res.theta_path, T)
    for r, batch in enumerate((4, 0)):
        for t in range(6):
            u, w = U[r, t], W[r, t]
            R = eq.batch_R(u, w, *T.sample(9, t, batch)) if batch else (u @ w - T.A) @ T.sigma_x
            g_U, g_W = eq.gradients(u, w, R)
            predicted = 0.04**2 * (g_W @ g_W.T - g_U.T @ g_U)
            change = eq.charge(U[r, t + 1], W[r, t + 1]) - eq.charge(u, w)
            assert np.abs(change - predicted).max() < 1e-12 * np.abs(eq.charge(u, w)).max()


def test_samples_come_from_the_specification_generator():
    T = teacher(sigma=0.5)
    X, Y = T.sample(7, 4, 3)
    z = rng.gaussian_noise(7, rng.STREAM_DATA, rng.counter(4, 2), 11)
    np.testing.assert_allclose(X[2], T.L @ z[:6], rtol=0, atol=1e-15)
    np.testing.assert_allclose(Y[2], T.A @ X[2] + 0.5 * z[6:], rtol=0, atol=1e-14)


@pytest.mark.parametrize("backend", CPU)
def test_compiled_kernels_match_the_reference(backend):
    """Three runs (SGD with B = 3 and 1, GD), a non-diagonal Σ, d0 ≠ d2: every record and
    the final θ within 1e-12 of the NumPy reference; a reference with lr off by 1e-9
    relative is outside that band (the comparison can fail)."""
    T = teacher(d0=5, d2=3, sigma=0.7)
    th = np.stack([eq.init(T, 4, u_scale=0.5, w_scale=1.5, seed=s) for s in range(3)])
    kw = dict(
        batch=[3, 0, 1],
        seeds=[5, 6, 7],
        steps=60,
        record_every=7,
        keep_theta=True,
        track=[[0, 1], [3, 2]],
    )
    lr = np.array([0.01, 0.02, 0.03])
    ref = eq.train(T, th, lr=lr, backend="numpy", **kw)
    got = eq.train(T, th, lr=lr, backend=backend, **kw)
    off = eq.train(T, th, lr=lr * (1 + 1e-9), backend="numpy", **kw)

    def gap(a, b):
        return max(
            np.max(np.abs(x - y) / (1 + np.abs(y)))
            for x, y in zip(
                (a.loss, a.charge, a.entries, a.u2, a.w2, a.theta, a.theta_path),
                (b.loss, b.charge, b.entries, b.u2, b.w2, b.theta, b.theta_path),
                strict=True,
            )
        )

    assert gap(got, ref) < 1e-12
    assert gap(off, ref) > 1e-11


@pytest.mark.parametrize("backend", ["numpy", *CPU])
def test_divergence_is_reported_at_the_same_step(backend):
    T = teacher()
    th = eq.init(T, 7, u_scale=1.0, w_scale=1.0, seed=0)
    kw = dict(lr=[3.0, 0.01], batch=[2, 0], steps=200, record_every=1)
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        res = eq.train(T, th, backend=backend, **kw)
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        ref = eq.train(T, th, backend="numpy", **kw)
    assert res.diverged_step[0] >= 0 and res.diverged_step[1] == -1
    assert res.diverged_step[0] == ref.diverged_step[0]
    assert (
        np.isnan(res.loss[0, -1]) and np.isnan(res.charge[0, -1]) and np.isnan(res.theta[0]).all()
    )


def test_parts_threads_and_batches_give_one_calls_bits(monkeypatch):
    """A call split into parts (Ctrl-C points), 1 or 2 threads, and run r of a batch of runs
    give the same bits."""
    T = eq.Teacher.isotropic(6)
    th = np.stack([eq.init(T, 8, u_scale=0.5, w_scale=2.0, seed=s) for s in range(3)])
    kw = dict(
        lr=[0.02, 0.03, 0.05],
        batch=[5, 0, 2],
        seeds=[1, 2, 3],
        steps=300,
        record_every=40,
        keep_theta=True,
        backend=FAST,
    )
    one = eq.train(T, th, threads=1, **kw)
    two = eq.train(T, th, threads=2, **kw)
    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 2e4)
    parts = eq.train(T, th, threads=1, **kw)
    alone = eq.train(
        T,
        th[2],
        lr=0.05,
        batch=2,
        seeds=3,
        steps=300,
        record_every=40,
        keep_theta=True,
        backend=FAST,
    )
    for other in (two, parts):
        for name in ("loss", "charge", "entries", "u2", "w2", "theta", "theta_path"):
            assert np.array_equal(getattr(one, name), getattr(other, name)), name
    assert np.array_equal(alone.theta[0], one.theta[2])
    assert np.array_equal(alone.charge[0], one.charge[2])


def test_gd_keeps_the_charge_within_order_eta_squared():
    """Over the same time η·T, halving η divides GD's charge drift by about 2 (O(η²) per
    step, T ∝ 1/η steps), while SGD's charge moves by O(1)."""
    T = teacher()
    th = eq.init(T, 7, u_scale=1.5, w_scale=0.5, seed=1)
    drift = []
    for lr, steps in ((0.02, 400), (0.01, 800)):
        res = eq.train(T, th, lr=lr, batch=0, steps=steps, record_every=steps, backend=FAST)
        drift.append(abs(res.charge[0, -1] - res.charge[0, 0]) / res.charge[0, 0])
    assert 1.7 < drift[0] / drift[1] < 2.3
    assert drift[0] < 0.05


def test_sgd_from_two_starts_reaches_one_plateau_gd_does_not():
    """The paper's Fig. 2 setting scaled down (d = 12, h = 16, B = 10, η = 0.05): from two
    starts of opposite imbalance (‖C‖ 44 and 23, tr C of opposite signs), SGD's final ‖C‖
    (mean of the last third, 4 other seeds each) agree within the seed spread and within
    30 % of :func:`plateau`; GD's stay apart."""
    T = eq.Teacher.isotropic(12)
    starts = [
        eq.init(T, 16, u_scale=0.3, w_scale=2.5, seed=0),
        eq.init(T, 16, u_scale=2.5, w_scale=0.3, seed=1),
    ]
    steps = 12 * int(eq.decay_time(T, 0.05, 10))
    ends, gd = [], []
    for i, th in enumerate(starts):
        res = eq.train(
            T,
            th,
            lr=0.05,
            batch=[10, 10, 10, 10, 0],
            seeds=[4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3, 0],  # (the same samples synchronise)
            steps=steps,
            record_every=steps // 30,
            backend=FAST,
        )
        ends.append(res.charge[:4, -10:].mean(axis=1))
        gd.append(res.charge[4, -1])
    a, b = ends
    spread = np.std(np.concatenate([a, b]), ddof=1)
    assert abs(a.mean() - b.mean()) < 3 * spread
    predicted = eq.plateau(T, 0.05, 10)
    assert abs(np.concatenate([a, b]).mean() / predicted - 1) < 0.3
    assert abs(gd[0] - gd[1]) > 10 * spread
    assert abs(res.charge[4, 0] - res.charge[4, -1]) / res.charge[4, 0] < 0.3  # GD: kept


def test_decay_time_within_25_percent():
    """From the minimum with a diagonal imbalance (C ≈ ±1.8 on the diagonal), the mean over
    8 seeds of C's projection on C_0 decays as exp(−t/τ) with τ within 25 % of
    B / (η² σ² d)."""
    T = eq.Teacher.isotropic(20)
    g = np.where(np.arange(20) < 10, 1.5, 1 / 1.5)
    th = balanced_start(T, 24, g)
    tau = eq.decay_time(T, 0.05, 10)
    steps = int(1.5 * tau)
    C0 = eq.charge(*eq.split(th, T))
    diag = [(i, i) for i in range(20)]
    res = eq.train(
        T,
        th,
        lr=0.05,
        batch=10,
        seeds=np.arange(8),
        steps=steps,
        record_every=max(1, steps // 15),
        track=diag,
        backend=FAST,
    )
    proj = (res.entries * np.diag(C0)[:20]).sum(axis=-1) / np.sum(C0 * C0)
    slope = np.polyfit(res.steps, np.log(proj.mean(axis=0)), 1)[0]
    assert abs(-1 / slope / tau - 1) < 0.25


def test_scalar_output_reaches_the_predicted_rank_one_equilibrium():
    """uᵀ W x (d2 = 1) with anisotropic inputs: SGD ends with W of rank one along u
    (σ₂/σ₁ < 0.1), ‖u‖² and ‖W‖² within 10 % of ‖u‖⁴ = vᵀΣv / tr Σ, ‖W‖² = ‖v‖² / ‖u‖²;
    GD from the same start keeps its imbalance (‖u‖² stays far from the prediction)."""
    v = np.array([1.0, -0.5, 0.8, 0.3])
    T = eq.Teacher(v[None, :], np.diag(np.sqrt([2.0, 1.0, 0.5, 0.25])), 0.5)
    pred = eq.equilibrium(T, 5)
    assert np.isclose(pred["u2"] ** 2, v @ T.sigma_x @ v / np.trace(T.sigma_x))
    th = eq.init(T, 5, u_scale=2.0, w_scale=0.4, seed=3)
    res = eq.train(
        T,
        th,
        lr=0.05,
        batch=[4, 4, 4, 0],
        seeds=[0, 1, 2, 0],
        steps=60000,
        record_every=1000,
        keep_theta=True,
        backend=FAST,
    )
    su, sw = res.singular_values()
    assert np.all(sw[:3, -1, 1] / sw[:3, -1, 0] < 0.1)
    u2 = res.u2[:3, -10:].mean()
    w2 = res.w2[:3, -10:].mean()
    assert abs(u2 / pred["u2"] - 1) < 0.1 and abs(w2 / pred["w2"] - 1) < 0.1
    assert abs(res.u2[3, -1] / pred["u2"] - 1) > 0.5


def test_matrix_equilibrium_prediction_satisfies_its_conditions():
    """The predicted equilibrium satisfies tr(Σ) UᵀU = d2 W Σ Wᵀ and UW = A, and its Hessian
    trace is the minimum over the symmetry's orbit (random G give larger traces)."""
    T = teacher(d0=5, d2=3)
    e = eq.equilibrium(T, 6)
    U, W = e["U"], e["W"]
    S = T.sigma_x
    np.testing.assert_allclose(np.trace(S) * U.T @ U, 3 * W @ S @ W.T, atol=1e-12)
    np.testing.assert_allclose(U @ W, T.A, atol=1e-12)
    assert math.isclose(eq.hessian_trace(T, U, W), e["hessian_trace"], rel_tol=1e-12)
    gen = np.random.default_rng(0)
    for _ in range(20):
        G = np.eye(6) + 0.3 * gen.standard_normal((6, 6))
        assert eq.hessian_trace(T, U @ np.linalg.inv(G), G @ W) > e["hessian_trace"]
    iso = eq.equilibrium(eq.Teacher.isotropic(4), 6)
    np.testing.assert_allclose(iso["sv_U"], 1.0, atol=1e-12)
    np.testing.assert_allclose(iso["sv_W"], 1.0, atol=1e-12)


def test_results_save_and_load(tmp_path):
    T = eq.Teacher.isotropic(3)
    res = eq.train(
        T,
        eq.init(T, 4),
        lr=0.05,
        batch=[2, 0],
        steps=20,
        record_every=5,
        keep_theta=True,
        backend=FAST,
    )
    res.save(tmp_path / "r.npz")
    back = eq.BalanceResult.load(tmp_path / "r.npz")
    assert np.array_equal(back.charge, res.charge) and np.array_equal(
        back.theta_path, res.theta_path
    )
    pytest.importorskip("xarray")
    ds = res.to_xarray()
    assert ds["charge"].dims == ("run", "step") and list(ds["batch"].values) == [2, 0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda T, th: eq.Teacher(np.eye(3), np.eye(2), 1.0), "L must be"),
        (lambda T, th: eq.Teacher(np.eye(3), np.zeros((3, 3)), 1.0), "L must be invertible"),
        (lambda T, th: eq.Teacher(np.eye(3), np.eye(3), -1.0), "sigma"),
        (lambda T, th: eq.Teacher.spectrum([1.0, -2.0]), "positive variances"),
        (lambda T, th: eq.train(T, th[:-1], lr=0.1, steps=1), "theta0 must have"),
        (lambda T, th: eq.train(T, th, lr=0.0, steps=1), "lr"),
        (lambda T, th: eq.train(T, th, lr=0.1, batch=-1, steps=1), "batch"),
        (lambda T, th: eq.train(T, th, lr=0.1, steps=-1), "steps"),
        (lambda T, th: eq.train(T, th, lr=0.1, steps=1, track=[[0, 4]]), "track"),
        (lambda T, th: eq.train(T, th, lr=[0.1, 0.2], seeds=[1, 2, 3], steps=1), "lengths"),
        (lambda T, th: eq.train("T", th, lr=0.1, steps=1), "teacher"),
        (lambda T, th: eq.train(T, np.full_like(th, np.nan), lr=0.1, steps=1), "theta0"),
        (lambda T, th: eq.equilibrium(T, 2), "cannot express"),
        (lambda T, th: eq.plateau(eq.Teacher.spectrum([1.0, 2.0]), 0.1, 2), "isotropic"),
    ],
)
def test_bad_inputs_are_named(call, match):
    T = eq.Teacher.isotropic(3)
    with pytest.raises((ValueError, TypeError), match=match):
        call(T, eq.init(T, 4))


def test_an_interrupted_run_continues_bitwise(monkeypatch):
    """Ctrl-C in the third part of a call: the partial result holds the steps done, and a
    call continuing from it (``start_step``) ends with one call's bits."""
    from fastperm import Interrupted

    T = eq.Teacher.isotropic(5)
    th = eq.init(T, 6, u_scale=0.5, w_scale=2.0, seed=0)
    kw = dict(lr=[0.05, 0.02], batch=[4, 0], seeds=[1, 2], record_every=100, backend=FAST)
    whole = eq.train(T, th, steps=3000, **kw)
    kern = backends.get(FAST)
    real, calls = kern.balance_runs, []

    def stop_at_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 5e5)
    monkeypatch.setattr(kern, "balance_runs", stop_at_third)
    with pytest.raises(Interrupted) as info:
        eq.train(T, th, steps=3000, **kw)
    monkeypatch.undo()
    part = info.value.result
    done = part.meta["steps_done"]
    assert 0 < done < 3000 and np.isnan(part.charge[:, -1]).all()
    rest = eq.train(T, part.theta, steps=3000 - done, start_step=done, **kw)
    assert np.array_equal(rest.theta, whole.theta)
    assert np.array_equal(rest.charge[:, -1], whole.charge[:, -1])


def test_dask_client_gives_the_local_bits():
    distributed = pytest.importorskip("dask.distributed")
    T = eq.Teacher.isotropic(4)
    th = eq.init(T, 5, u_scale=0.5, w_scale=2.0, seed=0)
    kw = dict(
        lr=[0.05, 0.02, 0.03],
        batch=[4, 0, 2],
        seeds=[1, 2, 3],
        steps=300,
        record_every=50,
        backend=FAST,
        keep_theta=True,
    )
    local = eq.train(T, th, **kw)
    with distributed.Client(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as client:
        spread = eq.train(T, th, client=client, **kw)
    for name in ("loss", "charge", "entries", "theta", "theta_path"):
        assert np.array_equal(getattr(spread, name), getattr(local, name)), name


def test_anisotropic_gap_to_the_prediction_shrinks_with_lr():
    """Anisotropic inputs (A = I, Σ spread 10×): W's singular values at SGD's equilibrium
    approach the prediction (s̄/s_j)^{1/4} as η falls (the gap is the finite-η fluctuation
    about it), and the Hessian trace sits below GD's balanced value."""
    from fastperm import equilibrium_study as es

    T = eq.Teacher.spectrum(es.spectrum(4, 10.0))
    pred = eq.equilibrium(T, 5)["sv_W"]
    Q = np.eye(5, 4)
    balanced = np.concatenate([Q.T.ravel(), Q.ravel()])
    gaps = []
    for lr in (0.2, 0.1):
        steps = int(6 * es.slowest_time(T, lr, 10))
        res = eq.train(T, balanced, lr=lr, batch=10, seeds=range(4), steps=steps,
                       record_every=steps // 20, keep_theta=True, backend=FAST)  # fmt: skip
        _, sw = res.singular_values()
        sv = sw[:, -5:].mean(axis=(0, 1))
        gaps.append(np.abs(sv / pred - 1).max())
        U, W = eq.split(res.theta, T)
        assert eq.hessian_trace(T, U, W).mean() < 2 * 4 * np.trace(T.sigma_x)
    assert gaps[1] < 0.75 * gaps[0] and gaps[1] < 0.1


def test_plateau_draws_any_batch_exactly_and_checks_its_inputs():
    """Bartlett's draw of R and the direct one estimate the same E‖RRᵀ − RᵀR‖² (B = 9,
    d = 6: within 3 %, while one sample more, B = 10, is 20 % off: the band can tell); a
    huge batch costs no memory; a step size beyond the linear response and a bad ``draws``
    are refused by name."""
    direct = eq.commutator_moment(6, 9, 40000, seed=1, bartlett=False)
    bartlett = eq.commutator_moment(6, 9, 40000, seed=2, bartlett=True)
    assert abs(bartlett / direct - 1) < 0.03
    other = eq.commutator_moment(6, 10, 40000, seed=2, bartlett=True)
    assert abs(other / direct - 1) > 0.1
    T = eq.Teacher.isotropic(6)
    assert np.isfinite(eq.plateau(T, 0.01, 10**7, draws=50))
    with pytest.raises(ValueError, match="draws"):
        eq.plateau(T, 0.01, 5, draws=0)
    with pytest.raises(ValueError, match="lr"):
        eq.plateau(T, 2.0, 1)


def test_teacher_compares_by_identity_and_theta0_needs_a_row():
    T = eq.Teacher.isotropic(3)
    assert T == T and T != eq.Teacher.isotropic(3) and hash(T) == hash(T)
    with pytest.raises(ValueError, match="theta0"):
        eq.train(T, np.empty((0, 12)), lr=0.1, steps=1)

"""The kernel contract: every kernel family of every backend, declared once.

A *kernel family* is one computation (``sgd_runs``: R independent k-fold SGD runs on the
linear problem) that each backend may implement, in a module of the same file name in
every backend (``numba_cpu/sgd.py``, ``_cython/sgd.pyx``, ``numba_cuda/sgd.py``,
``reference/sgd.py``). This module is its specification: the arguments in order, each with
its role, what the kernel writes and returns, and the rules all kernels share. It drives

* the contract test (``tests/test_contract.py``): every backend's kernels take exactly these
  arguments, live in the family's module, and the reference implements every family;
* :func:`fastperm.backends.get` (``needs=``: only a family named here can be needed);
* the capability matrix (:func:`fastperm.backends.capabilities`) that ``fastperm info``
  prints and the README shows.

Rules every kernel follows
--------------------------
* Arguments arrive validated (``fastperm._checks``): float64, C-contiguous, finite,
  shapes consistent, every index in range. Kernels never validate and never raise in their
  loops; a non-finite value is reported through a status.
* Roles. ``input``: data shared by every run or task. ``start``: one row, or one row per
  run. ``run``: one entry per run (a run reads only its own). ``setting``: a scalar of the
  computation. ``schedule``: what to record when, or how to compute without changing the
  result (the fixed-copy cache). ``output``: written by the kernel, one row per run (or per
  task); never read before written.
* Runs are independent: run r's results depend only on its own ``run`` entries and the
  shared inputs, never on the thread count or on the other runs. A caller may therefore
  split the runs into chunks and call the kernel once per chunk.
* Recording: ``record_steps`` lists the steps 0 = s_0 < s_1 < … < s_m ≤ steps, followed by
  the sentinel ``steps + 1``; ``loss_out[r, q]`` is the loss after ``s_q`` steps (s_m is
  ``steps`` for a whole run; a part of a longer run records only the steps wanted in it).
* Divergence: ``status_out[r]`` is -1, or the first step at which run r's parameters, a
  residual computed from them, or a recorded loss was non-finite; the run stops there and
  its remaining recorded values are NaN.
* ``k = 0`` means k = ∞ (the exact expected gradient) where a family takes a k that may be
  infinite (:data:`K_EXPECTED`).
* Random copies are drawn by the specification of :mod:`fastperm.rng`, identically on every
  backend; ``kind``, ``fparams``, ``gidx``, ``gptr`` say which augmentation
  (:func:`fastperm.augment.Augmentation.sampler`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..codes import K_EXPECTED  # noqa: F401  (k = 0 means k = ∞; defined with the codes)

ROLES = ("input", "start", "run", "setting", "schedule", "output")


@dataclass(frozen=True)
class Arg:
    """One argument of a kernel family: its name, role (:data:`ROLES`) and meaning."""

    name: str
    role: str
    doc: str


@dataclass(frozen=True)
class Family:
    """A kernel family: the module it lives in (in every backend), its arguments in order,
    what it computes and what it returns."""

    name: str
    module: str
    summary: str
    args: tuple[Arg, ...]
    returns: str = "None"
    #: the start and the final parameters: what a run split into calls (``start_step``)
    #: carries from one call to the next
    state: tuple[str, str] = ("W0", "w_out")

    @cached_property
    def arg_names(self) -> list[str]:
        return [a.name for a in self.args]

    @cached_property
    def per_run(self) -> frozenset[str]:
        """Arguments with one entry (or row) per run: a chunk of runs takes a slice of them
        (``run`` and ``output`` roles; ``start`` ones when they have a row per run)."""
        return frozenset(a.name for a in self.args if a.role in ("run", "output", "start"))

    @cached_property
    def recorded(self) -> list[str]:
        """Outputs with a column per record, (R, m + 1, …): the recorded losses and the like,
        and the parameters kept at the records (which may have no columns)."""
        return [a for a in self.role("output") if a not in (self.state[1], "status_out")]

    def role(self, role: str) -> list[str]:
        """Names of the arguments with this role."""
        return [a.name for a in self.args if a.role == role]

    @property
    def docstring(self) -> str:
        """The family's contract as a NumPy-style docstring."""
        params = "\n".join(f"{a.name} : {a.role}\n    {a.doc}" for a in self.args)
        return (
            f"{self.name}({', '.join(self.arg_names)})\n\n{self.summary}\n\n"
            f"Parameters\n----------\n{params}\n\nReturns\n-------\n{self.returns}\n"
        )


def _a(name: str, role: str, doc: str) -> Arg:
    return Arg(name, role, doc)


# -- arguments shared by the families of the linear problem ------------------------------------
X = _a("X", "input", "(n, d) examples")
Y = _a("y", "input", "(n,) labels")
W_STAR = _a("w_star", "input", "(d,) the target of the recorded loss ``mean((w − w_star)²)``")
W0 = _a("W0", "start", "(1, d) or (R, d) starts")
LR = _a("lr", "run", "(R,) step sizes")
SEEDS = _a("seeds", "run", "(R,) uint64 keys of the runs' random copies (:mod:`fastperm.rng`)")
STEPS = _a("steps", "setting", "number of updates T; step t visits example ``t mod n``")
START = _a(
    "start_step",
    "setting",
    "steps the runs took before this call: the call's step t is the run's step "
    "``start_step + t`` (example ``(start_step + t) mod n``, fresh copies keyed by it), so a "
    "run split into calls, each starting from the last one's w, is the same run; "
    "``record_steps`` and ``status_out`` stay counted from the call's start",
)
FRESH = _a(
    "fresh",
    "setting",
    "draw copies anew every step (keyed by the step) instead of "
    "once per example (keyed by the example)",
)
KIND = _a("kind", "setting", "augmentation kind code (``fastperm.rng.KIND_*``)")
FPARAMS = _a("fparams", "setting", "(2,) float parameters of the kind (σ; p and scale)")
GIDX = _a(
    "gidx",
    "setting",
    "(d,) int64 entries of the groups, group g at "
    "``gidx[gptr[g]:gptr[g + 1]]`` (block permutations)",
)
GPTR = _a("gptr", "setting", "(G + 1,) int64 group boundaries in gidx")
RECORD = _a("record_steps", "schedule", "(m + 2,) int64 recorded steps and the sentinel")
LOSS = _a("loss_out", "output", "(R, m + 1) recorded losses ``mean((w − w_star)²)``")
W_REC = _a(
    "w_rec",
    "output",
    "(R, m + 1, d): ``w_rec[r, q]`` = run r's parameters after ``s_q`` steps; or (R, 0, d): "
    "none kept (the kernel writes nothing). Written at the recorded steps only; what a "
    "kernel leaves in rows past a divergence is undefined (the harness sets them to NaN)",
)
W_OUT = _a("w_out", "output", "(R, d) final parameters (the harness sets a diverged run's to NaN)")
STATUS = _a("status_out", "output", "(R,) int64 -1 or the divergence step")

RUNS_RETURN = "None: results are written to the outputs."

# -- arguments shared by the bracket families ---------------------------------------------------
MODEL_ARGS = (
    _a("model", "setting", "a :class:`fastperm.models.Model`"),
    _a("theta", "input", "(P,) parameters"),
    _a("X", "input", "(B, d) inputs"),
    _a("Y", "input", "(B, K) targets"),
)
BRACKET_ARGS = MODEL_ARGS + (
    _a("G", "input", "(B, P) gradients at θ"),
    _a("h", "input", "(B,) finite-difference steps"),
    _a(
        "c",
        "setting",
        "(S,) stencil offsets; S = 0 (the fused families only): exact "
        "Hessian-vector products, forward over reverse, where the backend has them",
    ),
    _a("w", "setting", "(S,) weights"),
)

FAMILIES = {
    f.name: f
    for f in (
        Family(
            "sgd_runs",
            "sgd",
            "R runs of k-fold augmented SGD on the linear problem (k = 1: plain SGD). Step t, "
            "example i = t mod n, copies A_0 = x_i, A_1 … A_{k−1}: "
            "``w ← w − (lr/k) Σ_j (A_j·w − y_i) A_j``.",
            (
                X,
                Y,
                W_STAR,
                W0,
                LR,
                SEEDS,
                _a("k", "setting", "copies per step (≥ 1)"),
                STEPS,
                START,
                FRESH,
                KIND,
                FPARAMS,
                GIDX,
                GPTR,
                RECORD,
                _a(
                    "cache",
                    "schedule",
                    "the kernel may keep the n·k fixed copies (the caller "
                    "checked the memory budget); never changes results",
                ),
                LOSS,
                W_REC,
                W_OUT,
                STATUS,
            ),
            RUNS_RETURN,
        ),
        Family(
            "expected_runs",
            "sgd",
            "R runs with the exact expected gradient (k = ∞) over permutations or resampling: "
            "every coordinate follows the same affine map (O(T + d) per run where compiled).",
            (
                X,
                Y,
                W_STAR,
                W0,
                LR,
                STEPS,
                _a("kind", "setting", "``KIND_PERMUTATION`` or ``KIND_RESAMPLE``"),
                RECORD,
                LOSS,
                W_REC,
                W_OUT,
                STATUS,
            ),
            RUNS_RETURN,
        ),
        Family(
            "augmented_gradient",
            "sgd",
            "``out[i]`` = the mean gradient over the k fixed copies of row i (copy j keyed by "
            "``(seed, STREAM_FIXED, counter(i, j))``, as training draws them).",
            (
                _a("w", "input", "(d,) parameters"),
                X,
                Y,
                _a("k", "setting", "copies (≥ 1)"),
                _a("seed", "setting", "uint64 key of the copies"),
                KIND,
                FPARAMS,
                GIDX,
                GPTR,
                _a("out", "output", "(n, d) gradients"),
            ),
            RUNS_RETURN,
        ),
        Family(
            "fixed_copies",
            "sgd",
            "``out[i, j]`` = copy j of example i, as ``sgd_runs`` draws the fixed copies "
            "(``out[i, 0] = x_i``; copy j ≥ 1 keyed by ``(seed, STREAM_FIXED, counter(i, j))``): "
            "the copies the dual form (``dual_runs``) trains on.",
            (
                X,
                _a("seed", "setting", "uint64 key of the copies"),
                KIND,
                FPARAMS,
                GIDX,
                GPTR,
                _a("out", "output", "(n, k, d) copies"),
            ),
            RUNS_RETURN,
        ),
        Family(
            "dual_runs",
            "dual",
            "R runs of plain or fixed k-fold SGD in the dual (Gram) form: w stays "
            "``w_s + Σ_c β_c c`` over the N = n·k copies c (row ``c = i·k + j``: copy j of "
            "example i), and the residuals ``r_c = c·w − y_i`` follow "
            "``r ← r − Σ_j γ_j G[:, c_j]`` with ``γ_j = (lr/k) r_{c_j}``: O(N·k) per step "
            "instead of O(k·d). The loss ``Σ (w − w*)²`` follows "
            "``− 2 Σ_j γ_j (r_{c_j} + v_{c_j}) + Σ_jl γ_j γ_l G[c_j, c_l]`` with "
            "``v_c = y_i − c·w*``. The same run as ``sgd_runs`` (fixed copies) up to rounding.",
            (
                Y,
                W_STAR,
                W0,
                LR,
                _a(
                    "copies",
                    "input",
                    "(U, N, d) copy sets (N = n·k; for k = 1 the examples): run r trains on "
                    "``copies[which[r]]``",
                ),
                _a("gram", "input", "(U, N, N) Gram matrices ``copies[u] @ copies[u].T``"),
                _a("which", "run", "(R,) int64 index of each run's copy set"),
                _a("k", "setting", "copies per example (≥ 1)"),
                STEPS,
                START,
                _a(
                    "resync",
                    "schedule",
                    "w is formed, and the residuals and loss recomputed from it, at the "
                    "call's start and end and at the run steps that are multiples of "
                    "``resync`` (≥ 1): it bounds the recurrences' rounding; a run split into "
                    "calls at multiples of ``resync`` is bitwise one call",
                ),
                _a(
                    "drop",
                    "setting",
                    "also resynchronise when the loss recurrence falls below ``drop`` times its "
                    "value at the last resynchronisation (its rounding is relative to that "
                    "value: a loss going to zero stays accurate)",
                ),
                _a(
                    "big",
                    "setting",
                    "and at every step while it exceeds ``big`` (a diverging run: residuals and "
                    "loss are then computed from w, as the primal loop does, so that it stops "
                    "at the primal loop's step)",
                ),
                RECORD,
                LOSS,
                W_REC,
                W_OUT,
                STATUS,
            ),
            RUNS_RETURN,
        ),
        Family(
            "balance_runs",
            "equilibrium",
            "R runs of minibatch SGD, or GD, of the two-layer linear network ``f(x) = U W x`` "
            "(U: d2 × h, W: h × d0; θ = [U, W], each row-major) on a Gaussian teacher "
            "(:mod:`fastperm.equilibrium`). Step t draws B samples: sample j is "
            "``z = normal(seed, STREAM_DATA, counter(start_step + t, j))`` of d0 + d2 entries, "
            "``x = L z[:d0]``, ``y = A x + σ z[d0:]``; with ``r_j = U W x_j − y_j`` and "
            "``R = (1/B) Σ_j r_j x_jᵀ`` it steps ``U ← U − lr R Wᵀ``, ``W ← W − lr Uᵀ R`` "
            "(B = 0: the population gradient, ``R = (UW − A) Σ``). Records the population "
            "loss ``½ ‖(UW − A) L‖²_F + ½ σ² d2``, the norm ‖C‖_F of the charge "
            "``C = W Wᵀ − UᵀU``, chosen entries of C, ‖U‖²_F and ‖W‖²_F.",
            (
                _a("A", "input", "(d2, d0) the teacher's map"),
                _a("L", "input", "(d0, d0) the inputs' factor: ``x = L z``"),
                _a("Sigma", "input", "(d0, d0) the inputs' covariance ``Σ = L Lᵀ``"),
                _a("sigma", "setting", "the labels' noise standard deviation σ"),
                _a("Theta0", "start", "(1, P) or (R, P) starts, P = h (d2 + d0)"),
                LR,
                _a(
                    "batch",
                    "run",
                    "(R,) int64 samples per step B ≥ 1; 0: the population "
                    "gradient (gradient descent)",
                ),
                _a("seeds", "run", "(R,) uint64 keys of the runs' samples (:mod:`fastperm.rng`)"),
                STEPS,
                _a(
                    "start_step",
                    "setting",
                    "steps the runs took before this call (the call's step t draws the run's "
                    "step ``start_step + t`` samples): a run split into calls is one run",
                ),
                RECORD,
                _a("track", "setting", "(Q, 2) int64 entries (a, b) of C to record, in range"),
                _a("loss_out", "output", "(R, m + 1) recorded population losses"),
                _a("charge_out", "output", "(R, m + 1) recorded ‖C‖_F"),
                _a("entries_out", "output", "(R, m + 1, Q) recorded ``C[a, b]``"),
                _a("norms_out", "output", "(R, m + 1, 2) recorded ‖U‖²_F, ‖W‖²_F"),
                _a(
                    "theta_rec",
                    "output",
                    "(R, m + 1, P) the parameters at the records, or (R, 0, P): none kept",
                ),
                _a("theta_out", "output", "(R, P) final parameters"),
                STATUS,
            ),
            RUNS_RETURN,
            state=("Theta0", "theta_out"),
        ),
        Family(
            "meanfield_runs",
            "meanfield",
            "R runs of online SGD, with the mean-field scaling, of the shallow network "
            "``f(x) = (1/N) Σ_i tanh(θ_i x)`` of N particles θ_i ∈ R^{2×2} (row-major, 4 "
            "entries each) on the teacher ``f*(x) = (1/M) Σ_m tanh(θ*_m x)`` under the group "
            "C₂ that swaps the two coordinates (:mod:`fastperm.meanfield`). Step t (``T = "
            "start_step + t``) draws B samples: sample j is ``z = normal(seed, STREAM_DATA, "
            "counter(T, j))`` of 4 entries, ``x = s z[:2]``, ``y = f*(x) + σ z[2:]``. Each "
            "sample is seen through the views v = 0 (x, y) and v = 1 (Px, Py) with weights "
            "w_v: vanilla and EA (1, 0); DA with k = 0 and FA (½, ½); DA with k ≥ 1 "
            "((k − n)/k, n/k), n the copies c < k whose draw c of ``key(seed, STREAM_GROUP, "
            "counter(T, j))`` is ≥ 2³¹. With ``f_v = f(x_v)`` and the residuals "
            "``e_v = f_v − y_v`` (FA: ``e_0 = ½ (f_0 + P f_1) − y``, ``e_1 = P e_0``), "
            "particle i accumulates ``G_i[o, c] += w_v e_v[o] (1 − tanh²((θ_i x_v)_o)) "
            "x_v[c]`` over the views with w_v > 0 and the batch, and steps "
            "``θ_i ← θ_i − lr (G_i / B + λ θ_i)`` (EA: the step projected onto E^G, "
            "``Δ ↦ (Δ + PΔPᵀ)/2``), then, when τ > 0, ``θ_i += sqrt(2 lr τ) ξ_i`` with "
            "``ξ_i = normal(seed, STREAM_NOISE, counter(T, i))`` (EA: projected). Records the "
            "risk on an evaluation set (FA: of the averaged model), the mean squared distance "
            "of the particles to E^G and their second moment.",
            (
                _a("teacher", "input", "(M, 4) the teacher's particles θ*_m, row-major"),
                _a("s", "setting", "the inputs' standard deviation: ``x ~ N(0, s² I)``"),
                _a("sigma", "setting", "the labels' noise standard deviation σ"),
                _a("Xeval", "input", "(E, 2) the inputs the recorded risk averages over"),
                _a("Yeval", "input", "(E, 2) the teacher's outputs ``f*(x)`` there"),
                _a("Theta0", "start", "(1, 4N) or (R, 4N) particles, θ_i = Theta0[r, 4i:4i + 4]"),
                _a("scheme", "run", "(R,) int64 ``fastperm.codes.SCHEMES``: vanilla, DA, FA, EA"),
                _a("k", "run", "(R,) int64 DA's copies per sample; 0: the exact group average"),
                LR,
                _a("seeds", "run", "(R,) uint64 keys of the runs' samples (:mod:`fastperm.rng`)"),
                _a("batch", "setting", "samples per step B ≥ 1"),
                _a("lam", "setting", "the L2 coefficient λ ≥ 0"),
                _a("temp", "setting", "the noise temperature τ ≥ 0 (0: plain SGD)"),
                _a("steps", "setting", "number of updates T"),
                _a(
                    "start_step",
                    "setting",
                    "steps the runs took before this call (its step t draws the run's step "
                    "``start_step + t``): a run split into calls is one run",
                ),
                RECORD,
                _a("loss_out", "output", "(R, m + 1) recorded risks ``mean_e ½ ‖f(x_e) − y_e‖²``"),
                _a("offset_out", "output", "(R, m + 1) recorded ``(1/N) Σ_i ‖θ_i − π θ_i‖²``"),
                _a("moment_out", "output", "(R, m + 1) recorded ``(1/N) Σ_i ‖θ_i‖²``"),
                _a(
                    "theta_rec",
                    "output",
                    "(R, m + 1, 4N) the particles at the records, or (R, 0, 4N): none kept",
                ),
                _a("theta_out", "output", "(R, 4N) final particles"),
                STATUS,
            ),
            RUNS_RETURN,
            state=("Theta0", "theta_out"),
        ),
        Family(
            "diag_rank1_runs",
            "closed_forms",
            "k = ∞ runs for a second moment ``β x xᵀ + diag(D_i)`` and mean ``γ x`` "
            "(Gaussian noise, masking): one fused O(d) pass per step.",
            (
                X,
                Y,
                W_STAR,
                W0,
                LR,
                _a("beta", "setting", "rank-one coefficient β"),
                _a("gamma", "setting", "mean coefficient γ"),
                _a("D", "input", "(n, d), or (1, d) when the same for every example"),
                STEPS,
                RECORD,
                LOSS,
                W_REC,
                W_OUT,
                STATUS,
            ),
            RUNS_RETURN,
        ),
        Family(
            "circulant_runs",
            "closed_forms",
            "k = ∞ runs for cyclic shifts (circulant second moment), kept in the Fourier "
            "domain: O(d) per step.",
            (X, Y, W_STAR, W0, LR, STEPS, RECORD, LOSS, W_REC, W_OUT, STATUS),
            RUNS_RETURN,
        ),
        Family(
            "block_runs",
            "closed_forms",
            "k = ∞ runs for permutations within groups: O(G) per step, O(T·G + n·d) per run.",
            (X, Y, W_STAR, W0, LR, GIDX, GPTR, STEPS, RECORD, LOSS, W_REC, W_OUT, STATUS),
            RUNS_RETURN,
        ),
        Family(
            "dense_runs",
            "closed_forms",
            "k = ∞ runs for user moments: ``w ← w − lr (M_i w − y_i μ_i)``, O(d²) per step.",
            (
                _a("M", "input", "(n, d, d) second moments E[x'x'ᵀ]"),
                _a("mu", "input", "(n, d) means E[x']"),
                Y,
                W_STAR,
                W0,
                LR,
                STEPS,
                RECORD,
                LOSS,
                W_REC,
                W_OUT,
                STATUS,
            ),
            RUNS_RETURN,
        ),
        Family(
            "deep_linear_runs",
            "deep_linear",
            "R runs of Gaussian-noise-augmented SGD of a deep linear network "
            "``f(x) = uᵀ W_L ⋯ W_1 x`` (:mod:`fastperm.deep_linear`); the loss is that of the "
            "end-to-end vector v, recorded before each step.",
            (
                X,
                Y,
                W_STAR,
                _a("Theta0", "start", "(1, P) or (R, P) starts"),
                _a("sizes", "setting", "(L + 1,) int64 layer widths [d, h_1, …, h_L]"),
                _a("offs", "setting", "(L + 1,) int64 offsets of W_1 … W_L and u in θ"),
                LR,
                SEEDS,
                _a("k", "setting", "noisy copies per step; 0: k = ∞ (exact)"),
                _a("sigma", "setting", "noise standard deviation"),
                STEPS,
                FRESH,
                RECORD,
                _a(
                    "cache",
                    "schedule",
                    "the kernel may keep the n·k fixed noisy copies (the "
                    "caller checked the memory budget); never changes results",
                ),
                LOSS,
                _a("theta_out", "output", "(R, P) final parameters"),
                STATUS,
            ),
            RUNS_RETURN,
            state=("Theta0", "theta_out"),
        ),
        Family(
            "scheme_runs",
            "schemes",
            "R runs of a symmetry scheme on the linear permutation problem "
            "(:mod:`fastperm.schemes`), recording the loss and the distance of w to span(1).",
            (
                X,
                Y,
                W_STAR,
                W0,
                LR,
                SEEDS,
                _a("scheme", "setting", "``fastperm.codes.SCHEMES``: vanilla, DA, FA, EA"),
                _a("k", "setting", "copies for DA; 0: k = ∞ (the exact group average)"),
                FRESH,
                STEPS,
                RECORD,
                LOSS,
                _a("dist_out", "output", "(R, m + 1) distance of w to span(1)"),
                W_OUT,
                STATUS,
            ),
            RUNS_RETURN,
        ),
        Family(
            "example_grads",
            "lie",
            "``out[b] = g_b(θ)``, the per-example gradients of a model.",
            MODEL_ARGS + (_a("out", "output", "(B, P) gradients"),),
            RUNS_RETURN,
        ),
        Family(
            "brackets_all",
            "lie",
            "``out[x, y] = [v_x, v_y] = H_y g_x − H_x g_y`` for all pairs, with "
            "``H_y g_x ≈ Σ_j w_j g_y(θ + c_j h_x G[x]) / h_x``.",
            BRACKET_ARGS + (_a("out", "output", "(B, B, P) brackets"),),
            RUNS_RETURN,
        ),
        Family(
            "brackets_pairs",
            "lie",
            "``out[q] = [v_a, v_b]`` for the listed pairs (a, b) (zero where a = b).",
            BRACKET_ARGS
            + (
                _a("pairs", "input", "(Q, 2) int64 pairs, in range"),
                _a("out", "output", "(Q, P) brackets"),
            ),
            RUNS_RETURN,
        ),
        Family(
            "bracket_norms",
            "lie",
            "``out[q, t] = Σ_{p ∈ tensor t} [v_a, v_b]_p²`` for the listed pairs, without "
            "writing any bracket out (built-in models; the tensors are contiguous, W₁ and b₁ "
            "first).",
            BRACKET_ARGS
            + (
                _a("pairs", "input", "(Q, 2) int64 pairs, in range"),
                _a("bounds", "setting", "(T + 1,) int64 tensor boundaries in θ"),
                _a("out", "output", "(Q, T) squared norms"),
            ),
            RUNS_RETURN,
        ),
        Family(
            "bracket_logits",
            "lie",
            "``out[q, z] = J_f(θ; Z[z]) · [v_a, v_b]``, the change of input z's logits along "
            "each listed pair's bracket, without writing any bracket out (built-in models).",
            BRACKET_ARGS
            + (
                _a("pairs", "input", "(Q, 2) int64 pairs, in range"),
                _a("Z", "input", "(N, d) inputs whose logits are perturbed"),
                _a("out", "output", "(Q, N, K) logit changes"),
            ),
            RUNS_RETURN,
        ),
    )
}

#: what every backend module offers besides its kernels
#:
#: :meta hide-value:
BACKEND_API = {
    "name": "the backend's name in :data:`fastperm.backends.KNOWN`",
    "compile": "compile(families=None): compile (or load from a cache) the kernels of these "
    "families (None: all it times), outside any timing; a no-op where nothing "
    "compiles at run time. A backend listing float32 in DTYPES takes dtype='float32' too",
    "threads": "threads its parallel drivers use for calls from this Python thread",
    "set_threads": "set_threads(n): set that count for this Python thread; n is checked by "
    ":func:`fastperm.knobs.as_thread_count` (the same refusals on every backend)",
}


#: parameter types a backend's ``sgd_runs`` runs in, when not float64 only: a backend module
#: may list them as ``DTYPES`` (the numba backend: float64 and float32). In float32 the
#: examples, their copies and w are stored in float32; dot products and losses accumulate in
#: float64
DTYPES_ATTR = "DTYPES"

#: augmentation kinds a backend's samplers draw when it does not draw them all: a backend
#: module may list them as ``SAMPLER_KINDS`` (the cuda backend: permutations, resampling)
SAMPLER_KINDS_ATTR = "SAMPLER_KINDS"

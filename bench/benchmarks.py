"""asv benchmarks: training cost per method and backend, cost ratios, memory, compilation.

Run from the repository root (see the README):

    asv run --python=same --quick      # this environment, each benchmark once
    asv run main~5..main               # past commits, each built in its own virtualenv
    asv publish && asv preview         # the html

JIT compilation stays out of every ``time_*`` benchmark (``setup`` compiles or
loads Numba's cache); its cost is tracked on its own by ``Compile``. A backend
that is not available here is skipped (``NotImplementedError`` in ``setup``).
"""

import math
import os
import subprocess
import sys
import tempfile

import fastperm
from fastperm import backends

# Only the public API is imported at module level, so that ``asv run`` over past commits
# can import this suite against every version of fastperm.
METHODS = {
    "k=1": (1, "fixed"),
    "k=16 fixed": (16, "fixed"),
    "k=16 fresh": (16, "fresh"),
    "k=inf": (math.inf, "fixed"),
}
#: steps per run at each d, so that one run stays well under a second
STEPS = {400: 2000, 10_000: 200, 100_000: 20}


def _require(backend):
    if backend not in backends.available():
        raise NotImplementedError(f"backend {backend!r} is not available here")
    if backend == "cuda" and getattr(backends.get("cuda"), "SIMULATOR", False):
        raise NotImplementedError("the cuda backend runs on the simulator here: not timed")


class TrainRun:
    """One training run (n = 40, lr = 0.4/d) per method, backend and d."""

    params = (["numba", "cython", "numpy"], list(METHODS), [400, 10_000, 100_000])
    param_names = ["backend", "method", "d"]
    timeout = 300

    def setup(self, backend, method, d):
        _require(backend)
        self.k, self.sampling = METHODS[method]
        if backend == "numpy":
            # the reference draws permutations in pure Python (~3 ms/step at k = 16):
            # it is timed on the cheap methods at d = 400 only
            if d != 400 or not (self.k == 1 or math.isinf(self.k)):
                raise NotImplementedError("reference backend: k = 1 and k = inf at d = 400 only")
            self.steps = 200
        else:
            self.steps = STEPS[d]
        self.problem = fastperm.LinearProblem.sample(d=d, n=40, seed=0)
        self.lr = 0.4 / d  # lr·E‖x‖² = 0.4: stable at every d
        fastperm.train(
            self.problem, self.k, lr=self.lr, steps=2, sampling=self.sampling, backend=backend
        )

    def time_train(self, backend, method, d):
        fastperm.train(
            self.problem,
            self.k,
            lr=self.lr,
            steps=self.steps,
            sampling=self.sampling,
            backend=backend,
            **_PRIMAL,
        )


def _has_dual():
    import inspect

    return "algorithm" in inspect.signature(fastperm.train).parameters


#: the literal loop (the history of TrainRun is that loop's); commits before the dual form
#: (issue 18) know no ``algorithm`` and run it anyway
_PRIMAL = {"algorithm": "primal"} if _has_dual() else {}


class DualForm:
    """Plain and fixed k-fold runs in both forms (issue 18), side by side in one
    ``setup_cache``: the literal cost of k copies (primal: k times one copy) next to the best
    algorithm's (the dual Gram form, its set-up included). n = 40, one run, one thread; the
    dual form runs T = 20000, the primal loop T = 20000 at d = 400 and 2000 above."""

    timeout = 600
    CASES = {"k=1 d=400": (1, 400), "k=1 d=1e4": (1, 10_000), "k=1 d=1e5": (1, 100_000),
             "k=16 fixed d=1e4": (16, 10_000)}  # fmt: skip

    def setup_cache(self):
        if not _has_dual():
            raise NotImplementedError("the dual form is newer than this commit")
        _require("numba")
        ns = {}
        for case, (k, d) in self.CASES.items():
            problem = fastperm.LinearProblem.sample(d=d, n=40, seed=0)
            for algorithm in ("primal", "dual"):
                steps = 20_000 if algorithm == "dual" or d == 400 else 2000
                kw = dict(lr=0.4 / d, record_every=100, algorithm=algorithm)
                fastperm.train(problem, k, steps=2, **kw)
                best = min(fastperm.train(problem, k, steps=steps, **kw).seconds for _ in range(3))
                ns[(case, algorithm)] = best * 1e9 / steps
        return ns

    def track_ns_per_step(self, ns, case, algorithm):
        return ns[(case, algorithm)]

    track_ns_per_step.params = (list(CASES), ["primal", "dual"])
    track_ns_per_step.param_names = ["case", "algorithm"]
    track_ns_per_step.unit = "ns/step"

    def track_speedup(self, ns, case):
        return ns[(case, "primal")] / ns[(case, "dual")]

    track_speedup.params = list(CASES)
    track_speedup.param_names = ["case"]
    track_speedup.unit = "primal/dual"


def _cost_per_step(backend):
    """ns/step of every method at d = 400, n = 40, T = 20000 (interleaved, best of 3)."""
    _require(backend)
    try:
        from fastperm import timing
    except ImportError:
        raise NotImplementedError("fastperm.timing is newer than this commit") from None
    problem = fastperm.LinearProblem.sample(d=400, n=40, seed=0)
    return timing.measure(problem, list(timing.METHODS), steps=20000, backend=backend, repeat=3)


class CostPerStep:
    """ns/step and cost ratios at d = 400, n = 40, T = 20000, one run (one core), numba.

    The four methods are timed side by side inside one measurement (interleaved,
    best of 3), so the ratios compare like with like.
    """

    timeout = 300

    def setup_cache(self):
        return _cost_per_step("numba")

    def track_ratio_k16_fixed_over_inf(self, ns):
        return ns["k=16 fixed"] / ns["k=inf"]

    track_ratio_k16_fixed_over_inf.unit = "ratio"

    def track_ratio_k16_fresh_over_inf(self, ns):
        return ns["k=16 fresh"] / ns["k=inf"]

    track_ratio_k16_fresh_over_inf.unit = "ratio"

    def track_ratio_inf_over_k1(self, ns):
        return ns["k=inf"] / ns["k=1"]

    track_ratio_inf_over_k1.unit = "ratio"

    def track_ns_per_step(self, ns, method):
        return ns[method]

    track_ns_per_step.params = list(METHODS)
    track_ns_per_step.param_names = ["method"]
    track_ns_per_step.unit = "ns/step"


class CostPerStepCython(CostPerStep):
    """The same ns/step and ratios on the Cython backend."""

    def setup_cache(self):  # its own: asv keys the cache by the function's source line
        return _cost_per_step("cython")


class CythonOverNumba:
    """Cython's time over Numba's per method (d = 400, T = 20000, one run), measured in one
    ``setup_cache`` one backend after the other; the target is ≤ 1.5."""

    timeout = 300

    def setup_cache(self):
        for b in ("numba", "cython"):
            _require(b)  # both, before measuring either
        return {b: _cost_per_step(b) for b in ("numba", "cython")}

    def track_ratio(self, ns, method):
        return ns["cython"][method] / ns["numba"][method]

    track_ratio.params = list(METHODS)
    track_ratio.param_names = ["method"]
    track_ratio.unit = "ratio"


class Memory:
    """Peak memory of k = 16 augmentation at d = 10⁵, n = 40 (numba).

    The n·k augmented copies would take 40·16·10⁵·8 B = 512 MB; fastperm keeps
    them only within ``cache_bytes`` (256 MiB by default) and otherwise draws
    them again, so the peak stays near the data X (32 MB) plus the runtime.
    """

    params = ["fixed", "fresh"]
    param_names = ["sampling"]
    timeout = 300

    def setup(self, sampling):
        _require("numba")
        self.problem = fastperm.LinearProblem.sample(d=100_000, n=40, seed=0)
        fastperm.train(self.problem, 16, lr=4e-6, steps=2, sampling=sampling)

    def peakmem_kfold_d1e5(self, sampling):
        fastperm.train(self.problem, 16, lr=4e-6, steps=50, sampling=sampling)


_COMPILE = (
    "import time; t = time.perf_counter(); "
    "from fastperm.backends import numba_cpu; numba_cpu.compile(); "
    "print(time.perf_counter() - t)"
)


def _compile_seconds(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE], env=env, check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


class Compile:
    """First-call latency of the numba backend, in a fresh interpreter."""

    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        _require("numba")

    def track_compile_cold(self):
        """JIT compilation of every kernel with an empty Numba cache."""
        with tempfile.TemporaryDirectory() as d:
            return _compile_seconds(d)

    track_compile_cold.unit = "seconds"

    def track_compile_cached(self):
        """The same with the on-disk cache filled by a previous process."""
        with tempfile.TemporaryDirectory() as d:
            _compile_seconds(d)
            return _compile_seconds(d)

    track_compile_cached.unit = "seconds"


class Brackets:
    """All 496 brackets among B = 32 examples: ``fastperm.timing.bracket_workload`` (64 inputs
    in [0, 1], one-hot targets — the digits setting without scikit-learn), the same workload
    as ``fastperm bench``.

    ``track_brackets_per_second`` is ``timing.brackets_per_second`` (best of 3 calls, output
    buffer reused); ``time_brackets`` includes allocating the (B, B, P) output.
    """

    params = (["64-32-10", "64-256-10"], ["numba", "cython", "numpy", "cuda"])
    param_names = ["mlp", "backend"]
    timeout = 300

    def setup(self, mlp, backend):
        _require(backend)
        try:
            from fastperm import lie, timing
        except ImportError:
            raise NotImplementedError("fastperm.lie is newer than this commit") from None
        self.lie, self.timing = lie, timing
        self.model, self.theta, self.X, self.Y = timing.bracket_workload(mlp)
        lie.brackets(self.model, self.theta, self.X[:4], self.Y[:4], backend=backend)

    def time_brackets(self, mlp, backend):
        self.lie.brackets(self.model, self.theta, self.X, self.Y, backend=backend)

    def track_brackets_per_second(self, mlp, backend):
        return self.timing.brackets_per_second(mlp, backend=backend)

    track_brackets_per_second.unit = "brackets/s"


class FusedBracketRMS:
    """The per-tensor RMS of all 496 brackets among B = 32 examples (MLP 64-32-10, one
    checkpoint): ``lie.tensor_rms`` with the fused kernels (exact products or FD) and with
    the full (496, P) array (``fused=False``), per backend."""

    params = (["numba", "cython"], ["exact", "fd", "full array"])
    param_names = ["backend", "how"]
    timeout = 300

    def setup(self, backend, how):
        _require(backend)
        from fastperm import lie, timing

        if not hasattr(lie, "bracket_logits"):
            raise NotImplementedError("fused reductions are newer than this commit")
        model, theta, X, Y = timing.bracket_workload("64-32-10")
        kw = {"exact": dict(method="exact"), "fd": {}, "full array": dict(fused=False)}[how]
        self.run = lambda: lie.tensor_rms(model, theta, X, Y, backend=backend, **kw)
        self.run()

    def time_tensor_rms(self, backend, how):
        self.run()

    def track_reduced_brackets_per_second(self, backend, how):
        return 496 / min(_seconds(self.run) for _ in range(5))

    track_reduced_brackets_per_second.unit = "brackets/s"


class TorchModelBrackets:
    """All 496 brackets among B = 32 examples of the MLPs of :class:`Brackets`, through
    ``fastperm.models.TorchModel`` (torch.func, forward over reverse, float64), as a
    (B, B, P) array: the cost of a user's own PyTorch module against the compiled kernels.
    """

    params = (["64-32-10", "64-256-10"],)
    param_names = ["mlp"]
    timeout = 300

    def setup(self, mlp):
        try:
            import torch  # noqa: F401

            from fastperm.models import TorchModel  # noqa: F401
        except ImportError:
            raise NotImplementedError("needs torch and fastperm.models.TorchModel") from None
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent / "compare"))
        import bracket_peers

        from fastperm import timing

        model, theta, X, Y = timing.bracket_workload(mlp)
        self.run = bracket_peers.torch_model_runner(model, theta, X, Y)
        self.run()

    def time_brackets(self, mlp):
        self.run()

    def track_brackets_per_second(self, mlp):

        best = min(_seconds(self.run) for _ in range(3))
        return 496 / best

    track_brackets_per_second.unit = "brackets/s"


def _seconds(fn):
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


#: runs per call in ``BatchedRuns``
RUNS = [1, 10, 100, 1000, 10_000]
#: the most runs timed on a CPU backend per method (beyond it one call takes minutes here)
CPU_RUNS = {"k=1": 10_000, "k=16 fixed": 1000, "k=16 fresh": 1000, "k=inf": 10_000}


class BatchedRuns:
    """R independent runs (d = 400, n = 40, 1000 steps, loss every 100 steps) in one
    ``train_many`` call: runs per second, the GPU against Numba on all CPU cores
    (``fastperm.timing.runs_per_second``; GPU times include the copies to and from the
    device, which synchronise). The GPU is skipped where there is none (or only the simulator).
    """

    params = (["cuda", "numba"], list(METHODS), RUNS)
    param_names = ["backend", "method", "runs"]
    timeout = 600

    def setup(self, backend, method, runs):
        _require(backend)
        try:
            from fastperm import timing
        except ImportError:
            raise NotImplementedError("fastperm.timing is newer than this commit") from None
        if not hasattr(timing, "runs_per_second"):
            raise NotImplementedError("timing.runs_per_second is newer than this commit")
        if backend != "cuda" and runs > CPU_RUNS[method]:
            raise NotImplementedError(f"{runs} runs of {method} take minutes on this CPU")
        self.timing = timing
        timing.runs_per_second(method, 2, backend=backend, steps=2)  # compile

    def track_runs_per_second(self, backend, method, runs):
        return self.timing.runs_per_second(method, runs, backend=backend)

    track_runs_per_second.unit = "runs/s"


def _closed_form_cases():
    from fastperm import augment

    return {
        "permutation": "permutation",
        "gaussian": augment.Gaussian(0.5),
        "mask": augment.Mask(0.5),
        "cyclic": augment.CyclicShift(),
        "block-4": augment.BlockPermutation([range(q * 100, (q + 1) * 100) for q in range(4)]),
        "deep-linear-2": ("deep", [400, 50], 0.5),
    }


class ClosedForms:
    """Per closed form: ns/step of a k = ∞ run vs a k = 16 run (fixed copies) on the reference
    problem (d = 400, n = 40, T = 2000, Numba, one run), and their ratio — where the exact
    expected gradient is cheaper than sampling, and by how much
    (``fastperm.timing.closed_form_costs``, the two interleaved, best of 3)."""

    params = ["permutation", "gaussian", "mask", "cyclic", "block-4", "deep-linear-2"]
    param_names = ["augmentation"]
    timeout = 300

    def setup_cache(self):
        _require("numba")
        try:
            from fastperm import (
                augment,  # noqa: F401
                timing,
            )
        except ImportError:
            raise NotImplementedError("fastperm.augment distributions are newer") from None
        if not hasattr(timing, "closed_form_costs"):
            raise NotImplementedError("timing.closed_form_costs is newer than this commit")
        return {
            name: timing.closed_form_costs(case, backend="numba")
            for name, case in _closed_form_cases().items()
        }

    def track_ns_per_step_inf(self, costs, augmentation):
        return costs[augmentation]["k=inf"]

    track_ns_per_step_inf.unit = "ns/step"

    def track_ns_per_step_k16(self, costs, augmentation):
        return costs[augmentation]["k=16"]

    track_ns_per_step_k16.unit = "ns/step"

    def track_ratio_k16_over_inf(self, costs, augmentation):
        return costs[augmentation]["k=16"] / costs[augmentation]["k=inf"]

    track_ratio_k16_over_inf.unit = "ratio"


class NoiseEquilibrium:
    """SGD of the two-layer linear network U W x on a Gaussian teacher (issue 19): the
    paper's setting (d0 = d2 = 30, h = 40) with batches of 10, and GD (the population
    gradient); one run on one thread, T = 5000."""

    params = (["numba", "cython"], ["sgd B=10", "gd"])
    param_names = ["backend", "method"]

    def setup(self, backend, method):
        _require(backend)
        try:
            from fastperm import equilibrium
        except ImportError:
            raise NotImplementedError("fastperm.equilibrium is newer than this commit") from None
        self.eq = equilibrium
        self.teacher = equilibrium.Teacher.isotropic(30)
        self.theta0 = equilibrium.init(self.teacher, 40, seed=1)
        self.kw = dict(lr=0.02, batch=10 if method.startswith("sgd") else 0, backend=backend,
                       threads=1, record_every=5000)  # fmt: skip
        equilibrium.train(self.teacher, self.theta0, steps=2, **self.kw)

    def time_train(self, backend, method):
        self.eq.train(self.teacher, self.theta0, steps=5000, **self.kw)

    def track_ns_per_step(self, backend, method):
        res = self.eq.train(self.teacher, self.theta0, steps=5000, **self.kw)
        return res.seconds / 5000 * 1e9

    track_ns_per_step.unit = "ns/step"


class MeanField:
    """Online SGD of N tanh particles under the coordinate swap (issue 20): N = 2000, one
    sample per step, vanilla (one view) and DA with the exact group average (two views);
    one run on one thread, T = 500."""

    params = (["numba", "cython"], ["vanilla", "da"])
    param_names = ["backend", "scheme"]

    def setup(self, backend, scheme):
        _require(backend)
        try:
            from fastperm import meanfield
        except ImportError:
            raise NotImplementedError("fastperm.meanfield is newer than this commit") from None
        self.mf = meanfield
        self.teacher = meanfield.Teacher.make("arbitrary", 4, seed=1)
        self.theta0 = meanfield.init(2000, seed=0, invariant=False)
        self.kw = dict(scheme=scheme, lr=0.1, backend=backend, threads=1, record_every=500,
                       eval_size=1)  # fmt: skip
        meanfield.train(self.teacher, self.theta0, steps=2, **self.kw)

    def time_train(self, backend, scheme):
        self.mf.train(self.teacher, self.theta0, steps=500, **self.kw)

    def track_ns_per_particle_step(self, backend, scheme):
        res = self.mf.train(self.teacher, self.theta0, steps=500, **self.kw)
        return res.seconds / (500 * 2000) * 1e9

    track_ns_per_particle_step.unit = "ns/particle-step"

"""The backend registry (the contract itself: tests/test_contract.py)."""

import numpy as np
import pytest

import fastperm
from fastperm import backends


def test_available_and_auto():
    names = backends.available()
    assert "numpy" in names and names == [n for n in backends.KNOWN if n in names]
    assert backends.get().name == names[0]
    assert backends.get("auto").name == names[0]


def test_env_var_forces_backend(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "numpy")
    assert backends.get().name == "numpy"
    assert fastperm.train(fastperm.LinearProblem.sample(d=5, n=2), 1, steps=3).backend == "numpy"
    monkeypatch.setenv(backends.ENV_VAR, "fortran")
    with pytest.raises(ValueError, match=r"\$FASTPERM_BACKEND must be one of"):
        backends.get()


def test_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setattr(backends, "_errors", {})  # keep the registry's memo of failures clean
    monkeypatch.setitem(backends.KNOWN, "ghost", "fastperm.backends._no_such_module")
    assert "ghost" not in backends.available()
    assert "ModuleNotFoundError" in backends.unavailable()["ghost"]
    with pytest.raises(backends.BackendUnavailableError, match="not available here"):
        backends.get("ghost")


def test_progress_chunks_do_not_change_results(compiled):
    p = fastperm.LinearProblem.sample(d=8, n=3, seed=1)
    kw = dict(
        seeds=range(7),
        lr=[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07],
        steps=20,
        sampling="fresh",
        backend=compiled,
    )
    a = fastperm.train_many(p, 3, **kw)
    b = fastperm.train_many(p, 3, progress=True, **kw)
    np.testing.assert_array_equal(a.loss, b.loss)


def test_import_is_light_and_submodules_lazy():
    """``import fastperm`` does not import numba; ``fastperm.lie`` etc. load on first access."""
    import subprocess
    import sys

    code = (
        "import sys, fastperm; assert 'numba' not in sys.modules, 'numba imported'; "
        "assert fastperm.lie.brackets and fastperm.models.MLP and fastperm.timing.METHODS; "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastperm.nope  # noqa: B018


def test_works_without_numba():
    """With ``import numba`` failing, fastperm imports, trains and brackets on the next backend
    (Cython where it was built, else the reference)."""
    import subprocess
    import sys

    code = """
import sys, math
sys.modules['numba'] = None  # any `import numba` now raises ImportError
import numpy as np
import fastperm
from fastperm import backends, lie, models
names = backends.available()
assert names in (['cython', 'numpy'], ['numpy']), names
assert 'numba' in backends.unavailable() and backends.get().name == names[0]
p = fastperm.LinearProblem.sample(d=6, n=3)
for k in (1, 2, math.inf):
    r = fastperm.train(p, k, steps=5)
    assert r.backend == names[0] and np.isfinite(r.loss).all()
m = models.MLP([4, 3, 2])
X = np.random.default_rng(0).random((3, 4)); Y = np.eye(2)[[0, 1, 0]]
b = lie.brackets(m, m.init(0), X, Y)
assert b.shape == (3, 3, m.P) and np.abs(b).max() > 0
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_auto_skips_backends_without_a_needed_kernel(monkeypatch):
    """Kernels only some backends have: auto picks the first that has it; a named backend
    without it says which backends do."""
    if "cython" not in backends.available():
        pytest.skip("needs a backend without the kernel (cython)")
    monkeypatch.setattr(backends, "AUTO", ("cython", "numpy"))
    assert backends.get(needs="scheme_runs").name == "numpy"
    assert backends.get().name == "cython"
    with pytest.raises(
        ValueError,
        match="backend 'cython' does not implement deep_linear_runs; backends that do: .*numpy",
    ):
        backends.get("cython", needs="deep_linear_runs")

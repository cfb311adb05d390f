"""The kernel contract (:mod:`fastperm.backends.contract`) holds for every backend and every
kernel: same arguments, one file name per family in every backend, the reference complete,
and the registry and the capability matrix driven by it."""

import ast
import importlib
import inspect
import pathlib

import pytest

import fastperm
from fastperm import backends
from fastperm.backends import contract

ROOT = pathlib.Path(fastperm.__file__).parent


def _params(fn):
    """Argument names of a kernel: a Python function, a Numba dispatcher or a Cython def."""
    return list(inspect.signature(getattr(fn, "py_func", fn)).parameters)


def _module(fn):
    return getattr(getattr(fn, "py_func", fn), "__module__", None)


def _backend_names():
    names = backends.available()
    try:  # the cuda backend runs on Numba's simulator in CI (conftest sets it up)
        if "cuda" not in names and backends.get("cuda"):
            names.append("cuda")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", _backend_names())
def test_every_kernel_matches_the_contract(name):
    """Each family a backend has takes exactly the contract's arguments, in order, and is
    defined in the family's module of that backend."""
    mod = backends.get(name)
    package = backends.KNOWN[name]
    have = [f for f in contract.FAMILIES if hasattr(mod, f)]
    assert have, f"backend {name} implements no kernel family"
    for fam in have:
        spec = contract.FAMILIES[fam]
        fn = getattr(mod, fam)
        assert _params(fn) == spec.arg_names, (name, fam)
        assert _module(fn) == f"{package}.{spec.module}", (name, fam, _module(fn))
    for attr in contract.BACKEND_API:
        assert hasattr(mod, attr), f"backend {name} lacks {attr}"
    # a backend that runs float32 compiles its float32 kernels when asked (contract.DTYPES_ATTR)
    extra = ["dtype"] if "float32" in getattr(mod, contract.DTYPES_ATTR, ()) else []
    assert _params(mod.compile) == ["families", *extra], name


def test_reference_implements_every_family():
    ref = importlib.import_module(backends.KNOWN["numpy"])
    missing = [f for f in contract.FAMILIES if not hasattr(ref, f)]
    assert not missing, missing


def test_contract_is_consistent():
    """Every argument has a known role, a name appears once per family, and the families that
    record runs share the recording and divergence outputs."""
    for fam, spec in contract.FAMILIES.items():
        assert spec.name == fam
        assert len(set(spec.arg_names)) == len(spec.arg_names), fam
        assert all(a.role in contract.ROLES for a in spec.args), fam
        if fam.endswith("_runs"):
            assert {"record_steps", "loss_out", "status_out"} <= set(spec.arg_names), fam
            # the state a run split into calls carries: real arguments of the right roles
            start, final = spec.state
            roles = {a.name: a.role for a in spec.args}
            assert roles.get(start) == "start" and roles.get(final) == "output", fam
            assert "loss_out" in spec.recorded and final not in spec.recorded, fam
        assert fam in spec.docstring and "Parameters" in spec.docstring


def test_no_backend_kernel_outside_the_contract():
    """A public callable of a backend that looks like a kernel (``*_runs``, ``*_grads``,
    ``brackets_*``, ``*_gradient``) is declared in the contract: nothing is added on the side."""
    for name in _backend_names():
        mod = backends.get(name)
        public = [a for a in dir(mod) if not a.startswith("_")]
        kernels = [
            a
            for a in public
            if a.endswith(("_runs", "_grads", "_gradient")) or a.startswith("brackets_")
        ]
        extra = set(kernels) - set(contract.FAMILIES)
        assert not extra, (name, extra)


def test_registry_uses_the_contract():
    with pytest.raises(ValueError, match="needs must be a kernel family"):
        backends.get(needs="sgd_runs_v2")
    caps = backends.capabilities()
    assert set(caps) == set(backends.available())
    assert all(set(row) == set(contract.FAMILIES) for row in caps.values())
    assert all(caps["numpy"].values())
    table = backends.capability_table()
    for fam in contract.FAMILIES:
        assert fam in table


def test_info_prints_the_capability_matrix(capsys):
    from fastperm import cli

    cli.main(["info"])
    out = capsys.readouterr().out
    assert "kernel family" in out
    for fam in contract.FAMILIES:
        assert fam in out


def _imports(path):
    """Modules of fastperm imported at module level by the file at ``path`` (absolute names)."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = set()
    for node in tree.body:  # module level only: imports inside functions run later
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("fastperm"):
                for alias in node.names:  # `from . import x` imports the submodule x;
                    sub = f"{mod}.{alias.name}"  # any other name needs the module itself
                    found.add(sub if _is_module(sub) else mod)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fastperm"))
    return found


def _is_module(name):
    base = ROOT.parent.joinpath(*name.split("."))
    return (
        base.with_suffix(".py").exists()
        or (base / "__init__.py").exists()
        or any(base.parent.glob(base.name + ".*.so"))
        or base.with_suffix(".pyx").exists()
    )


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_level_import_cycle():
    """The module-level imports among fastperm's modules form no cycle."""
    files = [p for p in ROOT.rglob("*.py")]
    names = {_module_name(p): p for p in files}
    graph = {m: {i for i in _imports(p) if i in names and i != m} for m, p in names.items()}
    # a package's __init__ importing its own submodules is not a cycle of concern when the
    # submodule does not import the package back; plain DFS finds real cycles
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for nxt in graph[m]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                # a submodule importing a name from its own package's __init__ while that
                # __init__ imports the submodule is a real cycle too
                raise AssertionError(" -> ".join(cycle))
            if state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[m] = 2

    for m in graph:
        if state.get(m) is None:
            visit(m)


def test_backends_do_not_import_front_ends():
    """Imports run one way: backends import only the RNG specification and the leaf modules
    (codes, moments, knobs, _jit), never a front end, the harness or the contract."""
    allowed = {
        "fastperm.rng",
        "fastperm.codes",
        "fastperm.moments",
        "fastperm.knobs",
        "fastperm._jit",
        "fastperm",
    }
    for path in (ROOT / "backends").rglob("*.py"):
        mod = _module_name(path)
        if mod in ("fastperm.backends", "fastperm.backends.contract"):
            continue  # the registry and the contract sit above the backends
        for imp in _imports(path):
            if imp.startswith("fastperm.backends"):
                assert imp != "fastperm.backends.contract", (mod, imp)
                continue
            assert imp in allowed, f"{mod} imports {imp}"


POLICIES = {"JIT", "PARALLEL", "NOCACHE", "PARALLEL_NOCACHE"}


def _njit_calls(tree):
    """Every ``njit(...)`` call (decorator or not) in a parsed module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "njit":
            yield node


def test_every_njit_uses_the_one_fastmath_policy():
    """Every compiled CPU kernel takes its options from ``fastperm/_jit.py`` (``**JIT``,
    ``**PARALLEL``, ``**NOCACHE``, ``**PARALLEL_NOCACHE``, or a conditional between them),
    and none sets ``fastmath`` (or any option but ``inline``) itself: one fastmath policy,
    the one that keeps the NaN/inf checks and the same bits compiled or cached."""
    seen = 0
    for path in (ROOT / "backends").rglob("*.py"):
        for call in _njit_calls(ast.parse(path.read_text())):
            seen += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            assert not call.args, where
            spread = [k.value for k in call.keywords if k.arg is None]
            named = {k.arg for k in call.keywords if k.arg is not None}
            assert named <= {"inline"}, f"{where} sets {named - {'inline'}}"
            assert len(spread) == 1, f"{where}: options must come from one policy of _jit.py"
            names = {n.id for n in ast.walk(spread[0]) if isinstance(n, ast.Name)}
            names -= {"cache"}  # Twins: PARALLEL if cache else PARALLEL_NOCACHE
            assert names and names <= POLICIES, f"{where} uses {names}"
    assert seen > 40  # the check saw the kernels (a parse that finds none proves nothing)


def test_the_policy_keeps_nan_checks_and_cached_bits():
    from fastperm import _jit

    assert {"nnan", "ninf", "nsz", "arcp", "fast"}.isdisjoint(_jit.FASTMATH)
    for policy in POLICIES:
        assert getattr(_jit, policy)["fastmath"] == set(_jit.FASTMATH), policy


def test_no_numba_kernel_outside_backends():
    """Every ``@njit`` function lives under ``fastperm/backends`` (``_jit.py`` defines them)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if "backends" in path.parts or path.name == "_jit.py":
            continue
        text = path.read_text()
        if "@njit" in text or "Twins(" in text or "cuda.jit" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_augmentations_never_call_a_backend():
    """``fastperm.augment`` declares plans; it imports no backend and no harness."""
    for path in (ROOT / "augment").rglob("*.py"):
        for imp in _imports(path):
            assert not imp.startswith(("fastperm.backends", "fastperm._runs")), (path, imp)

"""A fuzz suite over every public entry point and backend (issue 13, item 8).

Hypothesis generates arguments — ordinary, extreme (1e-300 … 1e300) and invalid (NaN, inf,
wrong shapes and types, out-of-range indices) — and each case is run on every backend
that implements the entry point; :mod:`fuzz_cases` states the rule each outcome obeys
(one named refusal everywhere, or finite results equal to the NumPy reference's with the
same divergences). The budget is fixed and the cases derandomised
(``FASTPERM_FUZZ_EXAMPLES`` examples per entry point, 1000 by default); the cases whose
augmentation carries indices run in a subprocess, so that an out-of-range access fails a
test instead of crashing the session.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("hypothesis")

import fuzz_cases as fc  # noqa: E402
from hypothesis import given  # noqa: E402


@fc.SETTINGS
@given(fc.train_cases())
def test_fuzz_train(case):
    fc.run_train(case)


@fc.SETTINGS
@given(fc.train_many_cases())
def test_fuzz_train_many(case):
    fc.run_train_many(case)


@fc.SETTINGS
@given(fc.gradient_cases())
def test_fuzz_gradients(case):
    fc.run_gradient(case)


@fc.SETTINGS
@given(fc.bracket_cases())
def test_fuzz_brackets(case):
    fc.run_brackets(case)


@fc.SETTINGS
@given(fc.scheme_cases())
def test_fuzz_schemes(case):
    fc.run_schemes(case)


@fc.SETTINGS
@given(fc.deep_linear_cases())
def test_fuzz_deep_linear(case):
    fc.run_deep_linear(case)


INDEXED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from hypothesis import given
    import fuzz_cases as fc

    for strategy, run in ((fc.train_cases(indices=True), fc.run_train),
                          (fc.train_many_cases(indices=True), fc.run_train_many),
                          (fc.gradient_cases(indices=True), fc.run_gradient)):
        fc.SETTINGS(given(strategy)(run))()
    print("ok")
""")


def test_fuzz_index_carrying_augmentations_in_a_subprocess(tmp_path):
    """Block permutations whose groups do not partition range(d) — the inputs that crashed
    k-fold training before issue 13 — through every entry point that takes them."""
    script = INDEXED.format(tests=str(pathlib.Path(__file__).parent))
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=dict(os.environ),
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (
        f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    )

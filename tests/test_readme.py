"""The README's Python code blocks run as written (issue 15: they used undefined names).

The blocks run in order in one namespace, as a reader pastes them into one session; a
block whose first line is ``# needs a GPU`` runs only on a real GPU (not on the simulator).
"""

import os
import pathlib
import re
import warnings

import pytest

from fastperm import backends

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _real_gpu():
    return os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and "cuda" in backends.available()


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 6


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("xarray")
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # the blocks write files (runs.npz)
    namespace: dict = {}
    for n, code in enumerate(_blocks()):
        if code.startswith("# needs a GPU") and not _real_gpu():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a block that warns is not "as written" either
            # (but PyTorch 2.13 warns about its own use of torch.jit.script inside torch.func)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
            exec(compile(code, f"README.md python block {n}", "exec"), namespace)


def test_an_undefined_name_fails_the_check(tmp_path, monkeypatch):
    """The check can fail: the first block with its problem renamed uses an undefined ``p``
    (as the old README used ``problem``, ``w``, ``x``, ``X``)."""
    monkeypatch.chdir(tmp_path)
    first = _blocks()[0]
    assert "\np = fastperm.LinearProblem" in first
    planted = first.replace("\np = fastperm.LinearProblem", "\nq = fastperm.LinearProblem")
    with pytest.raises(NameError, match="'p'"):
        exec(compile(planted, "planted", "exec"), {})

"""Smoke test of ``bench/loaded.py``: it runs end to end and leaves no background process.

Tiny workloads (at most 200 steps), one repeat, one compiled backend. Timings decide
nothing here: only that every (backend, workload, condition) gets a row with finite
times, and that the benchmark's background processes are gone when it returns.

    pytest bench/compare/test_loaded.py --benchmark-disable -q -p no:cacheprovider
"""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "loaded.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_loaded", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


def _running_benchmark_process(pid, marker):
    """Whether ``pid`` is still one of the benchmark's background processes."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:  # no /proc: ask the kernel (a reused pid counts as still running)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return marker.encode() in cmdline


def test_loaded_runs_end_to_end(tmp_path, capsys):
    loaded = _load_script()
    backends = loaded.compiled_cpu_backends()
    if not backends:
        pytest.skip("no compiled CPU backend (numba or cython) here")
    backend = "numba" if "numba" in backends else backends[0]
    out = tmp_path / "loaded.json"
    loaded.main(
        [
            "--quick",
            "--backends",
            backend,
            "--max-steps",
            "200",
            "--repeats",
            "1",
            "--load-seconds",
            "60",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out

    report = json.loads(out.read_text())
    workloads = loaded.workloads(quick=True, max_steps=200)
    keys = [(r["backend"], r["workload"], r["condition"]) for r in report["rows"]]
    assert sorted(keys) == sorted(
        (backend, w.label, c) for w in workloads for c in loaded.CONDITIONS
    )
    for r in report["rows"]:
        assert math.isfinite(r["ns_per_step"]) and r["ns_per_step"] > 0
        assert math.isfinite(r["ns_per_step_one_thread"]) and r["ns_per_step_one_thread"] > 0
        assert r["verdict"] in ("PASS", "FAIL")  # reported, never asserted
        assert f"{r['workload']:30} {r['condition']:13}" in printed

    pids = {c["condition"]: c["pids"] for c in report["conditions"]}
    assert pids["idle"] == []
    assert len(pids["busy loop"]) == max(1, (os.cpu_count() or 1) - 1)
    assert len(pids["fastperm load"]) == 1
    # stopped by the benchmark, not by their own time bound
    assert not any(any(c["ended_early"]) for c in report["conditions"])
    left = [p for ps in pids.values() for p in ps if _running_benchmark_process(p, loaded.MARKER)]
    assert left == []

"""fastperm.timing and ``fastperm bench``: they measure, they don't assert speed."""

import math

import pytest

import fastperm
from fastperm import backends, cli, timing


def test_measure_and_ratios():
    p = fastperm.LinearProblem.sample(d=20, n=4, seed=0)
    ns = timing.measure(p, list(timing.METHODS), steps=50, repeat=2)
    assert set(ns) == set(timing.METHODS)
    assert all(v > 0 and math.isfinite(v) for v in ns.values())
    r = timing.ratios(ns)
    assert set(r) == set(timing.RATIOS)
    assert r["k=inf / k=1"] == pytest.approx(ns["k=inf"] / ns["k=1"])


def test_stable_lr_matches_reference():
    assert timing.stable_lr(400) == pytest.approx(1e-3)


def test_calibrated_steps_bounded():
    p = fastperm.LinearProblem.sample(d=10, n=3, seed=0)
    t = timing.calibrated_steps(p, "k=1", seconds=0.01, most=300)
    assert 5 <= t <= 300


def test_bench_cli(capsys):
    # the CPU backends only: under the CUDA simulator (which the suite enables) the cuda
    # rows time Python emulating GPU threads — 140 of this test's 142 s, measuring nothing
    cpu = [a for b in backends.available() if b != "cuda" for a in ("--backend", b)]
    code = cli.main(
        [
            "bench",
            *cpu,
            "--d",
            "20",
            "--n",
            "4",
            "--steps",
            "200",
            "--seconds",
            "0.02",
            "--quiet",
            "--no-brackets",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    for m in timing.METHODS:
        assert m in out
    for r in timing.RATIOS:
        assert r in out


def test_brackets_per_second():
    assert timing.brackets_per_second("6-4-3", B=5, repeat=1) > 0

"""The digits study runs end to end and its outputs are consistent (needs scikit-learn)."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fastperm import cli, digits, lie  # noqa: E402


def test_load_split_and_scaling():
    Xtr, Ytr, Xte, Yte, ltr, lte = digits.load(seed=1)
    assert Xtr.shape[1] == 64 and Xte.shape[0] == round(0.25 * 1797)
    assert Xtr.min() >= 0 and Xtr.max() <= 1
    np.testing.assert_array_equal(Yte.argmax(1), lte)


def test_adam_lowers_the_loss():
    Xtr, Ytr, *_ = digits.load()
    m = digits.MLP([64, 8, 10])
    saved = digits.train_adam(m, m.init(0), Xtr, Ytr, steps=60, checkpoints=[0, 60])
    assert m.loss(saved[60], Xtr, Ytr).mean() < 0.8 * m.loss(saved[0], Xtr, Ytr).mean()


def test_run_small(tmp_path):
    res = digits.run(tmp_path, steps=40, hidden=8, progress=False)
    for name in ("rms_loglog.png", "logit_perturbation.png", "summary.txt"):
        assert (tmp_path / name).stat().st_size > 500
    assert res["pairs"].shape == (15, 2) and res["per_logit"].shape == (15, 10)
    assert res["confusion"].sum() == round(0.25 * 1797)
    # the per-logit numbers are the RMS over the batch of J_f·bracket at the final checkpoint
    m, theta = res["model"], res["thetas"][-1]
    Xte = digits.load()[2]
    Yte = digits.load()[3]
    a, b = res["pairs"][4]
    br = lie.brackets(m, theta, Xte[:6], Yte[:6], pairs=[(a, b)])[0]
    J = lie.logit_perturbation(m, theta, br, Xte[:32])
    np.testing.assert_allclose(res["per_logit"][4], np.sqrt(np.mean(J**2, axis=0)), rtol=1e-9)
    assert "slope" in res["summary"] and "confuses most" in res["summary"]


def test_cli(tmp_path, capsys):
    assert (
        cli.main(
            ["lie-digits", "--out", str(tmp_path), "--steps", "20", "--hidden", "6", "--quiet"]
        )
        == 0
    )
    assert "(c) digits the model confuses most" in capsys.readouterr().out

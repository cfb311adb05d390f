"""The attribute study (issue 17, item 3): attribute kinds from the data, a small run end to
end (files, shapes, determinism, interruption keeps finished seeds), the CLI, bad input."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from fastperm import lie_study  # noqa: E402
from fastperm.cli import main  # noqa: E402


def test_attribute_kinds_from_the_data():
    labels = np.arange(10).repeat(3)
    Y = lie_study.attribute_targets(labels)
    names = list(lie_study.ATTRIBUTES)
    assert Y.shape == (30, 7)
    np.testing.assert_array_equal(Y[labels == 8][0], [0, 0, 0, 1, 1, 1, 1])
    kinds = lie_study.pair_kinds(Y)

    def kind(a, b):
        return kinds[tuple(sorted((names.index(a), names.index(b))))]

    assert kind("is 1", "is 3") == "exclusive"
    assert kind("is 3", "≥ 5") == "exclusive"
    assert kind("is 8", "even") == "nested"
    assert kind("is 7", "≥ 5") == "nested"
    assert kind("even", "closed loop") == "overlapping"
    counts = {k: list(kinds.values()).count(k) for k in ("exclusive", "nested", "overlapping")}
    assert counts == {"exclusive": 14, "nested": 4, "overlapping": 3}
    # the classification can fail: one image with both "is 1" and "is 3" makes them overlap
    Y2 = np.vstack([Y, Y[labels == 1][:1] + Y[labels == 3][:1]])
    assert lie_study.pair_kinds(Y2)[(0, 1)] == "overlapping"


def test_small_run_end_to_end_and_deterministic(tmp_path):
    kw = dict(seeds=2, steps=20, n_examples=3, batch_size=4, progress=False)
    r = lie_study.run(str(tmp_path / "a"), **kw)
    assert r["perturbation"].shape == (2, len(r["checkpoints"]), 3, 7)
    assert r["co_movement"].shape == (2, len(r["checkpoints"]), 3, 7, 7)
    assert np.all(np.isfinite(r["perturbation"])) and np.all(r["perturbation"] > 0)
    assert np.isfinite(r["contrast_overall"][0])
    for name in ("perturbation.png", "co_movement.png", "summary.txt", "results.npz"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    saved = np.load(tmp_path / "a" / "results.npz")
    np.testing.assert_array_equal(saved["perturbation"], r["perturbation"])
    again = lie_study.run(str(tmp_path / "b"), **kw)
    np.testing.assert_array_equal(again["perturbation"], r["perturbation"])
    assert "contrast D" in r["summary"]


def test_interrupted_run_keeps_the_finished_seeds(tmp_path, monkeypatch):
    calls = []
    real = lie_study.train

    def train_then_stop(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lie_study, "train", train_then_stop)
    with pytest.raises(KeyboardInterrupt):
        lie_study.run(str(tmp_path), seeds=3, steps=10, n_examples=2, batch_size=2,
                      progress=False)  # fmt: skip
    saved = np.load(tmp_path / "results.npz")
    assert saved["perturbation"].shape[0] == 1


def test_cli_and_bad_input(tmp_path, capsys):
    assert main(["lie-study", "--out", str(tmp_path), "--seeds", "2", "--steps", "5",
                 "--quiet"]) == 0  # fmt: skip
    assert "contrast D" in capsys.readouterr().out
    assert main(["lie-study", "--out", str(tmp_path), "--seeds", "1"]) == 2
    assert "seeds" in capsys.readouterr().err
    with pytest.raises(ValueError, match="seeds"):
        lie_study.run(str(tmp_path), seeds=1)
    with pytest.raises(ValueError, match="n_examples"):
        lie_study.run(str(tmp_path), n_examples=1)

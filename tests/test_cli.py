"""The command line: figure1 and info."""

import shutil
import subprocess

import pytest

from fastperm import cli


def test_figure1_small(tmp_path, capsys):
    out = tmp_path / "f.png"
    code = cli.main(["figure1", "--seeds", "2", "--steps", "50", "--d", "20", "--n", "4",
                     "--out", str(out), "--quiet"])
    assert code == 0
    assert out.exists() and out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "step 10" in text and "step 25" in text and "step 50" in text
    rows = [line.split()[0] for line in text.splitlines() if line[:6].strip() in
            {"1", "2", "4", "8", "16", "inf"}]
    assert rows == ["1", "2", "4", "8", "16", "inf"]


def test_figure1_fresh_and_custom_k(tmp_path, capsys):
    code = cli.main(["figure1", "--seeds", "1", "--steps", "20", "--d", "10", "--n", "3",
                     "--sampling", "fresh", "--k", "1,inf", "--out", "", "--quiet"])
    assert code == 0
    assert "fresh permutation" in capsys.readouterr().out


def test_bad_k_list():
    with pytest.raises(SystemExit):
        cli.main(["figure1", "--k", "1,two"])


def test_bad_value_is_a_clean_error(capsys):
    assert cli.main(["figure1", "--lr", "-1", "--out", "", "--quiet", "--seeds", "1"]) == 2
    assert "lr must be finite and > 0" in capsys.readouterr().err


def test_info(capsys):
    assert cli.main(["info"]) == 0
    assert "backends available: " in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("fastperm") is None, reason="console script not installed")
def test_console_script():
    out = subprocess.run(["fastperm", "info"], capture_output=True, text=True, check=True).stdout
    assert "auto selects" in out

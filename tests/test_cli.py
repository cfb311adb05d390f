"""The command line: figure1, info, and one clean line for every bad option."""

import shutil
import subprocess
import sys

import pytest

from fastperm import cli


def test_figure1_small(tmp_path, capsys):
    out = tmp_path / "f.png"
    code = cli.main(
        [
            "figure1",
            "--seeds",
            "2",
            "--steps",
            "50",
            "--d",
            "20",
            "--n",
            "4",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert out.exists() and out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "step 10" in text and "step 25" in text and "step 50" in text
    rows = [
        line.split()[0]
        for line in text.splitlines()
        if line[:6].strip() in {"1", "2", "4", "8", "16", "inf"}
    ]
    assert rows == ["1", "2", "4", "8", "16", "inf"]


def test_figure1_fresh_and_custom_k(tmp_path, capsys):
    code = cli.main(
        [
            "figure1",
            "--seeds",
            "1",
            "--steps",
            "20",
            "--d",
            "10",
            "--n",
            "3",
            "--sampling",
            "fresh",
            "--k",
            "1,inf",
            "--out",
            "",
            "--quiet",
        ]
    )
    assert code == 0
    assert "fresh permutation" in capsys.readouterr().out


def test_figure_equilibrium_small(tmp_path, capsys):
    """The noise-equilibrium figure at a tiny size: the table (measured next to predicted),
    the figure and the saved curves."""
    import numpy as np

    out, saved = tmp_path / "eq.png", tmp_path / "eq.npz"
    argv = ["figure-equilibrium", "--d", "3", "--hidden", "4", "--seeds", "2", "--lr", "0.1",
            "--out", str(out), "--save", str(saved), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "e-fold time" in text and "deep_linear k = 16" in text and "predicted" in text
    assert out.exists() and out.stat().st_size > 10_000
    with np.load(saved) as archive:
        assert archive["isotropic0_charge"].shape[0] == 3  # two SGD seeds and GD


def test_figure_equilibrium_refuses_too_few_hidden_units(capsys):
    assert cli.main(["figure-equilibrium", "--d", "8", "--hidden", "4", "--out", ""]) == 2
    assert "hidden" in capsys.readouterr().err


def test_figure_meanfield_small(tmp_path, capsys):
    """The mean-field figure at a tiny size: the table, the paper's claims checked, the
    figure and the saved RMDs."""
    import numpy as np

    out, saved = tmp_path / "mf.png", tmp_path / "mf.npz"
    argv = ["figure-meanfield", "--widths", "5,20", "--seeds", "2", "--steps", "100",
            "--ot-max", "20", "--view-n", "20", "--out", str(out), "--save", str(saved),
            "--discover", str(tmp_path / "sub.png"), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "EA's law is SI (in E^G): max RMD to π#μ = 0.0e+00 — agrees" in text
    assert "DA and FA stay near E^G (SI start)" in text and "RMD π#μ" in text
    assert "too few widths to tell" in text  # two widths: no slope in N is claimed
    assert "subspace discovery, strong teacher: dim 1" in text and "stayed in dim 2" in text
    assert (tmp_path / "sub.png").stat().st_size > 10_000
    assert out.exists() and out.stat().st_size > 10_000
    with np.load(saved) as archive:
        assert archive["rmd_projection"].shape == (3, 2, 5, 2)  # teachers, N, schemes, seeds
        assert np.all(archive["rmd_projection"][:, :, 4] == 0)  # EA


def test_figure_meanfield_refuses_a_view_outside_the_widths(capsys):
    argv = ["figure-meanfield", "--widths", "5,20", "--view-n", "7", "--out", ""]
    assert cli.main(argv) == 2
    assert "view_n must be one of widths [5, 20], got 7" in capsys.readouterr().err


def test_bad_k_list(capsys):
    assert cli.main(["figure1", "--k", "1,two"]) == 2
    assert "argument --k" in capsys.readouterr().err


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


BAD_OPTIONS = [
    (["figure1", "--out", "{tmp}/missing/f.png"], "--out", "does not exist"),
    (["figure1", "--out", "{tmp}"], "--out", "is a folder"),
    (["figure1", "--out", "{tmp}/f.txt"], "--out", "must end in one of"),
    (["figure1", "--dpi", "100000"], "--dpi", "dpi must be <= 1200"),
    (["figure1", "--seeds", "0"], "--seeds", "seeds must be >= 1"),
    (["figure1", "--steps", "-5"], "--steps", "steps must be >= 1"),
    (["figure1", "--d", "zero"], "--d", "d must be an integer"),
    (["figure-schemes", "--lr", "nan"], "--lr", "lr must be finite and > 0"),
    (["figure-equilibrium", "--seeds", "1"], "--seeds", "seeds must be >= 2"),
    (["figure-equilibrium", "--save", "{tmp}/x.txt"], "--save", "must end in .npz"),
    (["figure-meanfield", "--widths", "5,0"], "--widths", "must be >= 1"),
    (["figure-meanfield", "--seeds", "1"], "--seeds", "seeds must be >= 2"),
    (["bench", "--steps", "0"], "--steps", "steps must be >= 1"),
    (["bench", "--threads", "0"], "--threads", "threads must be >= 1"),
    (["lie-digits", "--out", "{tmp}/study", "--steps", "-5"], "--steps", "steps must be >= 1"),
    (["lie-digits", "--out", "{tmp}/study", "--seed", "-1"], "--seed", "seed must be >= 0"),
    (["lie-digits", "--out", "{file}"], "--out", "is not a folder"),
    (["lie-study", "--out", "{tmp}/study", "--seeds", "1"], "--seeds", "seeds must be >= 2"),
    (["lie-study", "--out", "{file}"], "--out", "is not a folder"),
]


@pytest.mark.parametrize("argv, option, message", BAD_OPTIONS)
def test_bad_option_is_one_line_before_any_work(tmp_path, capsys, argv, option, message):
    """Every bad option (output paths included) fails at once: exit status 2, one line on
    stderr naming the option, nothing computed or written."""
    (tmp_path / "a-file").write_text("x")
    argv = [a.format(tmp=tmp_path, file=tmp_path / "a-file") for a in argv]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"argument {option}" in lines[0] and message in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("fastperm ")


def test_every_option_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"fastperm {name} {action.option_strings or action.dest}"


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """``fastperm.plot`` used to call ``matplotlib.use("Agg")``: in a notebook its own figure
    and every later plot vanished. Only the CLI (which writes files) chooses Agg now."""
    pytest.importorskip("matplotlib")
    script = (
        "import matplotlib; matplotlib.use('pdf')\n"
        "import numpy as np\n"
        "from fastperm import plot\n"
        "curves = {1: (np.arange(3), np.ones((2, 3))), 2: (np.arange(3), np.ones((2, 3)))}\n"
        "fig = plot.figure1(curves, d=4, n=2, lr=1e-3, sampling='fixed')\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "pdf"

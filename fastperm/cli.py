"""The ``fastperm`` command line.

``fastperm figure1 --out figure1.png --seeds 5``
    Reproduce Figure 1 of the post (k-fold augmentation vs expected gradient).
``fastperm lie-digits --out DIR``
    The Lie-bracket study on scikit-learn's digits (needs the ``study`` extra).
``fastperm bench``
    A quick table (under a minute): ns/step per method and backend, and the cost ratios.
``fastperm figure-schemes --out schemes.png``
    Vanilla / DA / FA / EA: loss and distance to the invariant subspace.
``fastperm figure-equilibrium --out equilibrium.png``
    SGD's noise equilibrium of U W x (Ziyin et al. 2024): charge, norms, singular values,
    anisotropic inputs, and the deep linear network's charge against k; measured vs predicted.
``fastperm figure-meanfield --out meanfield.png``
    DA, FA and EA at mean-field scale (Maass Martínez & Fontbona 2024): the RMD of the
    particle laws to E^G, to their symmetrisation and to DA's law against N, three teachers.
``fastperm sweep SPEC.toml --out sweep.zarr [--scheduler ADDRESS | --workers N]``
    A grid of runs (:mod:`fastperm.sweeps`) into a resumable Zarr store, locally or on Dask.
``fastperm sweep-plot sweep.zarr --out sweep.png``
    Final loss against lr per k, and loss curves per k, with seed bands.
``fastperm info``
    Backends available here, versions, threads, and the GPU (if any).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import warnings

from . import _checks

#: the figure formats ``--out`` accepts (matplotlib writes them without extra packages)
FIGURE_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


class _UsageError(Exception):
    """A bad option: reported in one line, exit status 2, before any computation."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message}")


def _int_at_least(name: str, low: int):
    def convert(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be an integer >= {low}, got {text!r}"
            ) from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {v}")
        return v

    return convert


def _positive_real(name: str):
    def convert(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{name} must be finite and > 0, got {v}")
        return v

    return convert


def _dpi(text):
    v = _int_at_least("dpi", 10)(text)
    if v > 1200:
        raise argparse.ArgumentTypeError(f"dpi must be <= 1200, got {v}")
    return v


def _writable_folder(folder: str, what: str):
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(
            f"{what}: folder {folder!r} does not exist (or is not a folder)"
        )
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"{what}: folder {folder!r} is not writable")


def _figure_path(text):
    """``--out`` of a figure: '' (none), or a new or existing file in a writable folder, with a
    format matplotlib writes; checked before any computation."""
    if text == "":
        return ""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a folder; give a file name such as {os.path.join(text, 'figure.png')}"
        )
    _writable_folder(os.path.dirname(text) or ".", text)
    ext = os.path.splitext(text)[1].lower()
    if ext not in FIGURE_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the file name must end in one of {', '.join(FIGURE_FORMATS)}"
        )
    return text


def _folder_path(text):
    """``--out`` of a study: a folder that exists or can be created (its parent exists)."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    if not os.path.isdir(text):
        _writable_folder(os.path.dirname(os.path.abspath(text)), text)
    return text


def _k_list(text: str):
    ks = []
    for part in text.split(","):
        part = part.strip()
        if _checks.is_inf_name(part):
            ks.append(math.inf)
        else:
            try:
                ks.append(int(part))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"--k takes integers >= 1 and 'inf', comma-separated; got {part!r}"
                ) from None
    return ks


def _report_steps(steps: int):
    """Steps 200, 500, 1000 for the reference run; 20%, 50%, 100% of the run otherwise."""
    want = [200, 500, 1000] if steps == 1000 else [steps // 5, steps // 2, steps]
    return sorted(set(s for s in want if 0 <= s <= steps))


def _k_name(k: float) -> str:
    return "inf" if math.isinf(k) else str(k)


def _mean_sd(values) -> str:
    """``mean ± sd`` in a 22-character cell: fixed point for ordinary losses, 3 significant
    digits beyond 1e4, and the number of diverged runs when there are any."""
    import numpy as np

    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        return f"{f'{bad}/{values.size} diverged':>22}"
    with np.errstate(over="ignore"):  # the sd of huge losses may overflow: shown as inf
        mean, sd = float(values.mean()), float(values.std())
    if abs(mean) < 1e4 and sd < 1e4:
        return f"{mean:>14.4f} ± {sd:<5.3f}"
    return f"{mean:>11.3g} ± {sd:<8.2g}"


def figure1(args) -> int:
    from tqdm.auto import tqdm

    import fastperm

    from . import dual
    from .plot import has_plateaus

    ks = args.k
    # seed s samples run s's data and keys its augmentation draws: one problem per seed
    sample = fastperm.LinearProblem.sample
    problems = [sample(d=args.d, n=args.n, seed=s) for s in range(args.seeds)]
    curves = {}
    timing: dict[float, float] = {}
    diverged = []
    with tqdm(total=len(ks) * args.seeds, unit="run", desc="figure1", disable=args.quiet) as bar:
        for k in ks:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", fastperm.DivergenceWarning)
                r = fastperm.train_many(
                    problems,
                    k,
                    seeds=range(args.seeds),
                    lr=args.lr,
                    steps=args.steps,
                    sampling=args.sampling,
                    augmentation=args.augmentation,
                    backend=args.backend,
                    algorithm=dual.form(args.algorithm, k, args.sampling),
                )
            diverged += [f"k = {_k_name(k)}: {w.message}" for w in caught]
            curves[k] = (r.steps, r.loss)
            timing[k] = r.seconds
            bar.update(args.seeds)

    report = _report_steps(args.steps)
    cols = "".join(f"{'step ' + str(s):>22}" for s in report)
    print(
        f"\nloss mean((w - w*)^2), mean ± sd over {args.seeds} seeds "
        f"(d={args.d}, n={args.n}, lr={args.lr:g}, {args.sampling} {args.augmentation})"
    )
    print(f"{'k':>6}{cols}{'ns/step':>12}{'plateau':>10}")
    for k in ks:
        _, loss = curves[k]
        cells = "".join(_mean_sd(loss[:, s]) for s in report)
        plateau = (
            f"{1 - min(args.n * k, args.d) / args.d:>10.3f}"
            if has_plateaus(args.sampling, args.augmentation) and not math.isinf(k)
            else f"{'':>10}"
        )
        ns = timing[k] * 1e9 / (max(args.steps, 1) * args.seeds)
        print(f"{_k_name(k):>6}{cells}{ns:>12.1f}{plateau}", flush=True)
    for line in diverged:  # one line per k, after the table (not a warning per run)
        print(f"fastperm figure1: {line}", file=sys.stderr)

    if args.out:
        from .plot import figure1 as plot_figure1

        fig = plot_figure1(
            curves,
            d=args.d,
            n=args.n,
            lr=args.lr,
            sampling=args.sampling,
            augmentation=args.augmentation,
        )
        fig.savefig(args.out, dpi=args.dpi)
        print(f"\nwrote {args.out}")
    return 0


def bench(args) -> int:
    import os
    import time

    from . import timing

    if args.threads is not None:
        from . import backends

        for name in backends.available():
            backends.get(name).set_threads(args.threads)
    rows = timing.quick_table(
        args.backend,
        d=args.d,
        n=args.n,
        steps=args.steps,
        seconds_per_run=args.seconds,
        progress=not args.quiet,
    )
    names = list(dict.fromkeys(b for b, _, _, _ in rows))
    cell = {(b, m): (t, ns) for b, m, t, ns in rows}
    print(
        f"fastperm bench: d={args.d}, n={args.n}, one run per call, best of 3, "
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'ns/step':<12}" + "".join(f"{b:>22}" for b in names))
    for m in timing.METHODS:
        print(f"{m:<12}" + "".join(f"{cell[b, m][1]:>12.1f} (T={cell[b, m][0]:>6})" for b in names))
    print(f"{'ratio':<22}" + "".join(f"{b:>12}" for b in names))
    per = {b: timing.ratios({m: cell[b, m][1] for m in timing.METHODS}) for b in names}
    for r in timing.RATIOS:
        print(f"{r:<22}" + "".join(f"{per[b][r]:>12.4g}" for b in names))
    if not args.no_brackets:
        print(f"{'brackets/s (B=32)':<22}" + "".join(f"{b:>12}" for b in names))
        for mlp in timing.BRACKET_MLPS:
            print(
                f"{'MLP ' + mlp:<22}"
                + "".join(f"{timing.brackets_per_second(mlp, backend=b):>12,.0f}" for b in names)
            )
    return 0


def lie_digits(args) -> int:
    from . import digits

    res = digits.run(
        args.out, steps=args.steps, hidden=args.hidden, seed=args.seed, progress=not args.quiet
    )
    print(res["summary"])
    print(
        f"\nwrote {args.out}/rms_loglog.png, {args.out}/logit_perturbation.png, "
        f"{args.out}/summary.txt"
    )
    return 0


def lie_study(args) -> int:
    from . import lie_study as study

    try:
        res = study.run(args.out, seeds=args.seeds, steps=args.steps, progress=not args.quiet)
    except KeyboardInterrupt:
        saved = os.path.join(args.out, "results.npz")
        print("\ninterrupted: " + (f"the seeds finished so far are in {saved}"
              if os.path.exists(saved) else "no seed had finished"), file=sys.stderr)  # fmt: skip
        return 130
    print(res["summary"])
    print(f"\nwrote {args.out}/perturbation.png, {args.out}/co_movement.png, "
          f"{args.out}/summary.txt, {args.out}/results.npz")  # fmt: skip
    return 0


def figure_schemes(args) -> int:
    import fastperm
    from fastperm import plot, schemes

    problem = fastperm.LinearProblem.sample(d=args.d, n=args.n, seed=0)
    results = schemes.compare(
        problem,
        k=args.k,
        lr=args.lr,
        steps=args.steps,
        seeds=range(args.seeds),
        record_every=max(1, args.steps // 200),
        backend=args.backend,
    )
    print(
        f"step {args.steps}: loss / distance to span(1), mean over {args.seeds} runs "
        f"(d={args.d}, n={args.n}, lr={args.lr:g})"
    )
    print(
        f"{'scheme':>10} {'inside: loss':>14} {'distance':>10} {'outside: loss':>15} "
        f"{'distance':>10}"
    )
    labels = list(dict.fromkeys(label for _, label in results))
    for label in labels:
        a, b = results[("inside", label)], results[("outside", label)]
        print(
            f"{label:>10} {a.loss[:, -1].mean():14.4f} {a.distance[:, -1].mean():10.3g} "
            f"{b.loss[:, -1].mean():15.4f} {b.distance[:, -1].mean():10.3g}"
        )
    if args.out:
        fig = plot.schemes_figure(results, d=args.d, n=args.n, lr=args.lr)
        fig.savefig(args.out, dpi=args.dpi)
        print(f"wrote {args.out}")
    return 0


def figure_equilibrium(args) -> int:
    from fastperm import equilibrium_study, plot

    study = equilibrium_study.run(
        d=args.d,
        hidden=args.hidden,
        lr=args.lr,
        batch=args.batch,
        steps=args.steps,
        seeds=args.seeds,
        spread=args.spread,
        link=not args.no_link,
        backend=args.backend,
        progress=not args.quiet,
    )
    st = study.settings
    print(
        f"noise equilibrium of U W x: d = {st['d']}, h = {st['hidden']}, B = {st['batch']}, "
        f"lr = {st['lr']:g}, {st['steps']} steps ({st['anisotropic_steps']} anisotropic), "
        f"{st['seeds']} seeds"
    )
    print(f"{'quantity':<52} {'measured':>10} {'predicted':>10}")
    for name, measured, predicted in study.table:
        print(f"{name:<52} {measured:10.4g} {predicted:10.4g}")
    if args.save:
        study.save(args.save)
        print(f"wrote {args.save}")
    if args.out:
        fig = plot.equilibrium_figure(study)
        fig.savefig(args.out, dpi=args.dpi)
        print(f"wrote {args.out}")
    return 0


def figure_meanfield(args) -> int:
    from fastperm import meanfield_study, plot

    study = meanfield_study.run(
        widths=args.widths,
        seeds=args.seeds,
        lr=args.lr,
        steps=args.steps,
        batch=args.batch,
        ot_max=args.ot_max,
        view_n=args.view_n,
        backend=args.backend,
        progress=not args.quiet,
    )
    st = study.settings
    print(
        f"schemes at mean-field scale: N in {list(study.widths)}, {st['seeds']} seeds, "
        f"lr = {st['lr']:g}, {st['steps']} steps, batch {st['batch']}; {st['inputs']}; "
        f"start {st['init']}"
    )
    meanfield_study.print_table(study)
    if args.save:
        study.save(args.save)
        print(f"wrote {args.save}")
    if args.out:
        fig = plot.meanfield_figure(study)
        fig.savefig(args.out, dpi=args.dpi)
        print(f"wrote {args.out}")
    if args.discover:
        from fastperm import meanfield as mf

        tol = 0.02
        found = {}
        for kind, teacher in study.teachers.items():
            d = mf.discover_subspace(teacher, tol=tol, backend=args.backend)
            found[kind] = d
            path = " → ".join(f"dim {r['dim']} (RMD {r['rmd'].max():.3g})" for r in d.rounds)
            print(f"subspace discovery, {kind} teacher: {path}; {plot.discovery_outcome(d)}")
        fig = plot.discovery_figure(found, tol=tol)
        fig.savefig(args.discover, dpi=args.dpi)
        print(f"wrote {args.discover}")
    return 0


def _widths(text):
    """``--widths``: a comma-separated list of particle counts >= 1."""
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers separated by commas") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: particle counts must be >= 1")
    return widths


def _npz_path(text):
    """``--save``: '' (none), or a new or existing ``.npz`` file in a writable folder."""
    if text == "":
        return ""
    if not text.endswith(".npz"):
        raise argparse.ArgumentTypeError(f"{text!r}: the file name must end in .npz")
    _writable_folder(os.path.dirname(text) or ".", text)
    return text


def _store_path(text):
    """``--out`` of a sweep: a Zarr store (a folder) that exists or can be created."""
    if not text.endswith(".zarr"):
        raise argparse.ArgumentTypeError(f"{text!r}: a sweep store's name ends in .zarr")
    return _folder_path(text)


def _client(args):
    """The Dask client for --scheduler / --workers (None: run locally), and what to close."""
    if args.scheduler is None and args.workers is None:
        return None, []
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError(
            "--scheduler and --workers need Dask: pip install 'fastperm[dask]'"
        ) from None
    if args.workers is not None:
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
        return client, [client, cluster]
    if os.path.isfile(args.scheduler):  # a scheduler file (dask scheduler --scheduler-file)
        client = Client(scheduler_file=args.scheduler)
    else:
        client = Client(args.scheduler)
    return client, [client]


def sweep(args) -> int:
    from fastperm import sweeps

    spec = sweeps.load_spec(args.spec)  # a bad spec fails here, before a cluster starts
    client, to_close = _client(args)
    try:
        ds = sweeps.sweep(
            spec, store=args.out, client=client, backend=args.backend, progress=not args.quiet
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the finished chunks are in {args.out}; run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        for thing in to_close:
            thing.close()
    print(sweeps.summary(ds, args.out))
    return 0


def sweep_plot(args) -> int:
    from fastperm import plot, sweeps

    if not os.path.isdir(args.store):
        raise ValueError(f"{args.store!r} is not a sweep store (no such folder)")
    ds = sweeps.open_store(args.store)
    fig = plot.sweep_figure(ds, metric=args.metric)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0


def info(args) -> int:
    import numpy

    import fastperm
    from fastperm import backends

    print(f"fastperm {fastperm.__version__}")
    print(f"python   {platform.python_version()} ({sys.executable})")
    print(f"numpy    {numpy.__version__}")
    try:
        import numba

        print(
            f"numba    {numba.__version__}, {numba.get_num_threads()} threads "
            f"({numba.threading_layer() if _threads_started() else 'layer chosen at first use'})"
        )
    except ImportError:
        print("numba    not installed")
    if "cython" in backends.available():
        cy = backends.get("cython")
        how = (
            f"OpenMP, {cy.threads()} threads" if cy.have_openmp() else "without OpenMP (one thread)"
        )
        print(f"cython   kernels built with Cython {cy.CYTHON_VERSION} ({how})")
    else:
        print("cython   kernels not built (no C compiler at install time?)")
    if "cuda" in backends.available():
        print(f"cuda:    {backends.get('cuda').describe()}")
    else:
        print("cuda:    unavailable (reason below)")
    print(f"backends available: {', '.join(backends.available())}")
    for name, why in backends.unavailable().items():
        print(f"  {name}: unavailable ({why})")
    print(
        f"auto selects: {backends.get().name}"
        + (f" (forced by ${backends.ENV_VAR})" if backends.os.environ.get(backends.ENV_VAR) else "")
    )
    found = _kernel_cache()
    if found is not None:
        dirs, files = found
        print(
            f"numba kernel cache: {len(files)} file(s) in {', '.join(dirs)} "
            "(`fastperm cache clear` deletes them)"
        )
    print("\nkernel families (fastperm.backends.contract) by backend:")
    print(backends.capability_table())
    return 0


def _kernel_cache():
    """``(directories, files)`` of the cached Numba kernels (all of them imported first);
    None without numba."""
    try:
        import fastperm.backends.numba_cpu  # noqa: F401  (defines every cached kernel)
    except ImportError:
        return None
    from fastperm import _jit

    return _jit.cache_files()


def cache(args) -> int:
    found = _kernel_cache()
    if found is None:
        print("numba is not installed: there is no kernel cache")
        return 0
    dirs, files = found
    if args.action == "clear":
        import os

        removed = 0
        for path in files:
            try:
                os.remove(path)
                removed += 1
            except OSError as exc:
                print(f"fastperm: could not delete {path}: {exc}", file=sys.stderr)
        print(f"deleted {removed} cached kernel file(s) in {', '.join(dirs)}")
        return 0 if removed == len(files) else 1
    print(f"numba kernel cache: {len(files)} file(s) in {', '.join(dirs)}")
    return 0


def _threads_started() -> bool:
    import numba

    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False


def _problem_options(p):
    """--d, --n, --lr, --steps: the linear problem and its SGD runs (figure commands)."""
    p.add_argument("--d", type=_int_at_least("d", 1), default=400, help="features (default 400)")
    p.add_argument("--n", type=_int_at_least("n", 1), default=40, help="examples (default 40)")
    p.add_argument("--lr", type=_positive_real("lr"), default=1e-3, help="step size (default 1e-3)")
    p.add_argument(
        "--steps", type=_int_at_least("steps", 1), default=1000, help="SGD steps (default 1000)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastperm", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    f = sub.add_parser(
        "figure1",
        help="k-fold augmentation vs expected gradient (Figure 1)",
        description="Loss curves for k = 1, 2, 4, 8, 16, ∞ on the linear "
        "permutation problem; seed s samples the data and the "
        "augmentation of run s.",
    )
    f.add_argument(
        "--out",
        type=_figure_path,
        default="figure1.png",
        help="PNG/PDF/SVG to write ('' for none; checked before computing)",
    )
    f.add_argument(
        "--seeds", type=_int_at_least("seeds", 1), default=5, help="runs per k (default 5)"
    )
    f.add_argument(
        "--sampling",
        choices=["fixed", "fresh"],
        default="fixed",
        help="fixed: copies drawn once per example (default); fresh: every step",
    )
    f.add_argument(
        "--augmentation",
        choices=["permutation", "resample"],
        default="permutation",
        help="random permutations of x (default) or entries resampled",
    )
    f.add_argument(
        "--k",
        type=_k_list,
        default=_k_list("1,2,4,8,16,inf"),
        help="comma-separated k values (default 1,2,4,8,16,inf)",
    )
    _problem_options(f)
    f.add_argument("--backend", default=None, help="numba (default), cython or numpy")
    f.add_argument(
        "--algorithm",
        choices=["primal", "dual", "auto"],
        default="primal",
        help="primal: the literal loop, whose ns/step column shows k copies costing k times "
        "one (default); dual: the Gram form (fixed copies, to rounding the same curves); "
        "auto: the cheaper one per k",
    )
    f.add_argument("--dpi", type=_dpi, default=150, help="figure resolution (10..1200)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=figure1)

    b = sub.add_parser(
        "bench",
        help="quick ns/step table per method and backend (< 60 s)",
        description="Times one training run per method and backend on the "
        "reference problem; compiled backends run T steps, the "
        "NumPy reference as many as fit in about half a second.",
    )
    b.add_argument(
        "--backend",
        action="append",
        default=None,
        help="backend to time (repeatable; default: all available)",
    )
    b.add_argument("--d", type=_int_at_least("d", 1), default=400, help="features (default 400)")
    b.add_argument("--n", type=_int_at_least("n", 1), default=40, help="examples (default 40)")
    b.add_argument(
        "--steps",
        type=_int_at_least("steps", 1),
        default=20000,
        help="steps T of a compiled run (default 20000)",
    )
    b.add_argument(
        "--seconds",
        type=_positive_real("seconds"),
        default=0.5,
        help="time budget of one run of a slow backend (default 0.5)",
    )
    b.add_argument(
        "--threads",
        type=_int_at_least("threads", 1),
        default=None,
        help="threads of the parallel kernels (every backend)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--no-brackets", action="store_true", help="skip the bracket throughput rows")
    b.set_defaults(func=bench)

    g = sub.add_parser(
        "lie-digits",
        help="Lie brackets of examples on scikit-learn's digits",
        description="Train MLP([64, H, 10]) with 10 independent sigmoids on the "
        "digits, bracket the first 6 test examples at checkpoints, "
        "and plot/print what the brackets show.",
    )
    g.add_argument(
        "--out",
        type=_folder_path,
        required=True,
        help="folder for the figures and summary (created if missing)",
    )
    g.add_argument(
        "--steps", type=_int_at_least("steps", 1), default=1500, help="Adam steps (default 1500)"
    )
    g.add_argument(
        "--hidden", type=_int_at_least("hidden", 1), default=32, help="hidden units H (default 32)"
    )
    g.add_argument(
        "--seed",
        type=_int_at_least("seed", 0),
        default=0,
        help="seed of the initialisation and batches (default 0)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=lie_digits)

    st = sub.add_parser(
        "lie-study",
        help="mutually exclusive vs overlapping attributes: which logits a swap perturbs",
        description="Train a small CNN (PyTorch) with one sigmoid per attribute on the "
        "digits (exclusive: is 1/3/7/8; overlapping: even, closed loop, >= 5), bracket the "
        "first 6 test images at checkpoints through TorchModel, and compare how much a swap "
        "moves the two kinds of logits, with uncertainties over seeds.",
    )
    st.add_argument(
        "--out",
        type=_folder_path,
        required=True,
        help="folder for the figures, summary and results.npz (created if missing)",
    )
    st.add_argument(
        "--seeds", type=_int_at_least("seeds", 2), default=12, help="trainings (default 12)"
    )
    st.add_argument(
        "--steps", type=_int_at_least("steps", 1), default=1200, help="Adam steps (default 1200)"
    )
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    st.set_defaults(func=lie_study)

    s = sub.add_parser(
        "figure-schemes",
        help="vanilla / DA / FA / EA on the linear problem",
        description="Loss and distance to the invariant subspace span(1) for "
        "vanilla SGD, data augmentation (k-fold and k = ∞), feature "
        "averaging and an equivariant architecture, from a start "
        "inside span(1) (w0 = 0) and outside it.",
    )
    s.add_argument(
        "--out",
        type=_figure_path,
        default="schemes.png",
        help="PNG/PDF/SVG to write ('' for none; checked before computing)",
    )
    s.add_argument(
        "--seeds", type=_int_at_least("seeds", 1), default=5, help="runs per scheme (default 5)"
    )
    s.add_argument(
        "--k", type=_int_at_least("k", 1), default=16, help="copies for k-fold DA (default 16)"
    )
    _problem_options(s)
    s.add_argument("--backend", default=None, help="numba (default) or numpy")
    s.add_argument("--dpi", type=_dpi, default=150, help="figure resolution (10..1200)")
    s.set_defaults(func=figure_schemes)

    e = sub.add_parser(
        "figure-equilibrium",
        help="SGD's noise equilibrium of U W x (Ziyin et al. 2024)",
        description="The charge C = W Wᵀ − UᵀU of a two-layer linear network under SGD and GD "
        "from two starts, norms and singular values, anisotropic inputs, and the charge of "
        "a deep linear network trained with k-fold noise; measured against predicted.",
    )
    e.add_argument(
        "--out",
        type=_figure_path,
        default="equilibrium.png",
        help="PNG/PDF/SVG to write ('' for none; checked before computing)",
    )
    e.add_argument("--save", type=_npz_path, default="", help="also write the curves to this .npz")
    e.add_argument(
        "--seeds", type=_int_at_least("seeds", 2), default=4, help="SGD runs per start (default 4)"
    )
    e.add_argument(
        "--d",
        type=_int_at_least("d", 2),
        default=30,
        help="inputs = outputs (default 30, the paper's)",
    )
    e.add_argument(
        "--hidden",
        type=_int_at_least("hidden", 2),
        default=40,
        help="hidden units, >= d (default 40, the paper's)",
    )
    e.add_argument("--lr", type=_positive_real("lr"), default=0.02, help="step size (default 0.02)")
    e.add_argument(
        "--batch",
        type=_int_at_least("batch", 1),
        default=10,
        help="samples per SGD step (default 10)",
    )
    e.add_argument(
        "--steps",
        type=_int_at_least("steps", 10),
        default=None,
        help="steps of the isotropic runs (default 12 e-fold times B/(lr² d): 10000 at the "
        "defaults)",
    )
    e.add_argument(
        "--spread",
        type=_positive_real("spread"),
        default=100.0,
        help="largest / smallest input variance of the anisotropic case (default 100)",
    )
    e.add_argument("--no-link", action="store_true", help="skip the deep linear network's k runs")
    e.add_argument("--backend", default=None, help="numba (default), cython, cuda or numpy")
    e.add_argument("--dpi", type=_dpi, default=150, help="figure resolution (10..1200)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=figure_equilibrium)

    f = sub.add_parser(
        "figure-meanfield",
        help="DA / FA / EA at mean-field scale (Maass Martínez & Fontbona 2024)",
        description="Students of N tanh particles trained by vanilla SGD, DA (exact and k = 1), "
        "FA and EA from a strongly invariant start, for arbitrary, weakly and strongly "
        "invariant teachers: the RMD of each particle law to E^G, to its symmetrisation and "
        "to DA's law against N; the particles; vanilla's distance against lr. Prints a table "
        "and checks the paper's qualitative claims.",
    )
    f.add_argument(
        "--out",
        type=_figure_path,
        default="meanfield.png",
        help="PNG/PDF/SVG to write ('' for none; checked before computing)",
    )
    f.add_argument("--save", type=_npz_path, default="", help="also write the RMDs to this .npz")
    f.add_argument(
        "--discover",
        type=_figure_path,
        default="",
        help="also run the subspace-discovery heuristic for each teacher and draw it here",
    )
    f.add_argument(
        "--widths",
        type=_widths,
        default=(5, 10, 50, 100, 500, 1000, 5000),  # meanfield_study.WIDTHS (the paper's)
        help="particle counts N, comma-separated (default the paper's 5,10,50,100,500,1000,5000)",
    )
    f.add_argument(
        "--seeds", type=_int_at_least("seeds", 2), default=10, help="seeds per point (default 10)"
    )
    f.add_argument("--lr", type=_positive_real("lr"), default=0.2, help="step size (default 0.2)")
    f.add_argument(
        "--steps", type=_int_at_least("steps", 1), default=1500, help="SGD steps (default 1500)"
    )
    f.add_argument(
        "--batch", type=_int_at_least("batch", 1), default=1, help="samples per step (default 1)"
    )
    f.add_argument(
        "--ot-max",
        type=_int_at_least("ot-max", 0),
        default=1000,
        help="largest N for the exact-assignment RMDs (symmetrisation, DA's law; default 1000)",
    )
    f.add_argument(
        "--view-n",
        type=_int_at_least("view-n", 1),
        default=None,
        help="the N whose particles are drawn (one of --widths; default the nearest to 500)",
    )
    f.add_argument("--backend", default=None, help="numba (default), cython, cuda or numpy")
    f.add_argument("--dpi", type=_dpi, default=150, help="figure resolution (10..1200)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=figure_meanfield)

    w = sub.add_parser(
        "sweep",
        help="a grid of runs into a resumable Zarr store, locally or on a Dask cluster",
        description="Run the grid of a TOML spec (fastperm.sweeps: k, lr, seeds, "
        "augmentation, sampling, d, n, ...) and write every chunk to a Zarr store as it "
        "finishes. Running the same command again resumes: only missing or damaged "
        "chunks are computed. A store of another spec is refused, never overwritten.",
    )
    w.add_argument("spec", help="the sweep's TOML file")
    w.add_argument("--out", type=_store_path, required=True, help="the Zarr store (NAME.zarr)")
    where = w.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://host:8786) or its scheduler file",
    )
    where.add_argument(
        "--workers",
        type=_int_at_least("workers", 1),
        help="start a local Dask cluster of this many single-threaded worker processes",
    )
    w.add_argument("--backend", default=None, help="numba (default), cython or numpy")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=sweep)

    wp = sub.add_parser(
        "sweep-plot",
        help="final loss against lr per k, and loss curves per k, from a sweep store",
    )
    wp.add_argument("store", help="the sweep's Zarr store")
    wp.add_argument("--out", type=_figure_path, default="sweep.png", help="PNG/PDF/SVG to write")
    wp.add_argument("--metric", default=None, help="error, train or test (default: the first)")
    wp.add_argument("--dpi", type=_dpi, default=150, help="figure resolution (10..1200)")
    wp.set_defaults(func=sweep_plot)

    i = sub.add_parser("info", help="backends, versions, threads, the GPU and the kernel cache")
    i.set_defaults(func=info)

    c = sub.add_parser(
        "cache",
        help="the on-disk cache of the Numba kernels",
        description="Where the compiled Numba kernels are cached, and clearing "
        "them (a damaged entry heals itself; clearing is never "
        "needed for correctness, it forces a fresh compilation).",
    )
    c.add_argument(
        "action",
        choices=["info", "clear"],
        help="info: directories and file count; clear: delete every cached kernel",
    )
    c.set_defaults(func=cache)
    return parser


def _version() -> str:
    import fastperm

    return f"fastperm {fastperm.__version__}"


def _draw_to_files() -> None:
    """The CLI only writes figure files: matplotlib's file backend, chosen here and not by
    the library's plotting functions (which leave a notebook's backend alone)."""
    try:
        import matplotlib
    except ImportError:  # said by the command that needs it, as a one-line error
        return
    matplotlib.use("Agg")


def main(argv=None) -> int:
    """Run the command; every failure is one line on stderr and exit status 2 (options are
    checked, output paths included, before any computation)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if getattr(args, "out", None):
        _draw_to_files()
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        print(f"fastperm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

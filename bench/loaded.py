"""Single runs and small batches on a loaded machine: ns/step with the default threads vs one.

Issue 12, item 5: a parallel call whose thread must wait for a busy core pays a fixed
~8 ms (a scheduler time slice) whatever its work. This benchmark measures, for each
compiled CPU backend and each method (k = 1, k = 16 fixed, k = 16 fresh, k = ∞, with the
permutation augmentation) at d = 400, n = 40:

* a single run, ``fastperm.train(problem, k, steps=T, backend=b)``
  (T = 20,000 for k = 1 and k = ∞, T = 5,000 for k = 16), and
* a small batch, ``fastperm.train_many(problem, k, seeds=range(5), steps=1000, backend=b)``,

under three conditions:

``idle``
    nothing started by the benchmark (the machine's load average is reported: other
    people's work is not under its control);
``busy loop``
    one background process per spare core (``os.cpu_count() - 1``, at least one)
    running a pure-Python busy loop;
``fastperm load``
    one background process running fastperm's own parallel kernels in a loop
    (``train_many`` of k = 16 fixed runs, default threads, the backend under test).

Each time is ``TrainResult.seconds`` (the compiled call; validation and compilation
excluded) as ns/step, the median of ``repeats`` calls after one warm-up round, with the
backend's default threads and with one thread (``backends.get(b).set_threads(1)``).
The calls go round-robin (every workload, each with both thread counts, then the next
round) so that a load that drifts during a condition affects all of them alike; the
two thread counts take turns to go first (the first call of a pair finds the caches
cold from the other workloads: ~15 µs, as much as a whole small k = ∞ batch), and half
the calls with the default threads follow a call on one thread, as in interactive use,
so waking idle worker threads is part of what they pay. The
target: default threads within 1.3× of one thread, for every row. The penalty hits
some calls and not others, so the table also counts the "slow" calls (default threads
over 1.3× the one-thread median): a median can hide a penalty paid by a third of the
calls. Timings never make the script fail; the verdict column only reports them.

Background processes are started here (``subprocess.Popen([sys.executable, "-c", ...])``)
and each ends on its own after ``--load-seconds`` (or as soon as this process is gone);
the benchmark also terminates them when a condition ends, error or not.

    python bench/loaded.py                       # numba and cython: ~1 min on 2 cores
    python bench/loaded.py --quick               # smoke run: ~10 s
    python bench/loaded.py --backends cython --json loaded.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

import fastperm
from fastperm.timing import METHODS

D, N = 400, 40
#: the verdict's bound on ns/step with the default threads over ns/step with one thread
TARGET = 1.3
CONDITIONS = ("idle", "busy loop", "fastperm load")
#: marks the command lines of the background processes (so a test can tell them apart)
MARKER = "fastperm-bench-loaded"
#: seconds a background process runs at most, unless stopped earlier
LOAD_SECONDS = 120.0
#: seconds the background processes get to start loading the machine before timing
SETTLE_SECONDS = 0.5
#: seconds a background process may take to import fastperm and load its kernels
READY_TIMEOUT = 90.0

_BUSY_LOOP = """# {marker}
import os, sys, time
deadline, parent = time.monotonic() + {seconds}, os.getppid()
print("ready", flush=True)
while time.monotonic() < deadline and os.getppid() == parent:
    for _ in range(100_000):
        pass
"""

_FASTPERM_LOAD = """# {marker}
import os, sys, time
deadline, parent = time.monotonic() + {seconds}, os.getppid()
sys.path.insert(0, {root!r})  # the fastperm under test, not one in the working directory
import fastperm
if os.path.realpath(fastperm.__file__) != {module!r}:
    sys.exit(f"imported {{fastperm.__file__}}, not the fastperm under test {module!r}")
problem = fastperm.LinearProblem.sample(d={d}, n={n}, seed=1)
runs = 2 * fastperm.backends.get({backend!r}).threads()
fastperm.train_many(problem, 16, seeds=range(runs), steps=100, backend={backend!r})
print("ready", flush=True)
while time.monotonic() < deadline and os.getppid() == parent:
    fastperm.train_many(problem, 16, seeds=range(runs), steps=1000, backend={backend!r})
"""


@dataclasses.dataclass(frozen=True)
class Workload:
    """One timed call: a method, as a single run (``runs = None``) or a batch of runs.

    Attributes
    ----------
    method : str
        A label of :data:`fastperm.timing.METHODS` (``"k=1"``, ``"k=16 fixed"``, …).
    steps : int
        Steps T of each run.
    runs : int or None
        None: ``train`` (one run); an int: ``train_many`` with ``seeds=range(runs)``.
    """

    method: str
    steps: int
    runs: int | None = None

    @property
    def shape(self) -> str:
        return "single" if self.runs is None else f"batch of {self.runs}"

    @property
    def label(self) -> str:
        return f"{self.shape}, {self.method}, T={self.steps}"

    def __call__(self, problem, backend):
        """Run it once; the :class:`fastperm.TrainResult`."""
        k, sampling = METHODS[self.method]
        if self.runs is None:
            return fastperm.train(problem, k, steps=self.steps, sampling=sampling, backend=backend)
        return fastperm.train_many(
            problem, k, seeds=range(self.runs), steps=self.steps, sampling=sampling, backend=backend
        )


def workloads(quick: bool = False, max_steps: int | None = None) -> list[Workload]:
    """The single runs and small batches, every method of :data:`fastperm.timing.METHODS`.

    Parameters
    ----------
    quick : bool
        Single runs of a quarter of the steps (the batches keep their 1000 steps).
    max_steps : int, optional
        Cap on the steps of every workload (the smoke test's tiny workloads).
    """
    out = []
    for method, (k, _) in METHODS.items():
        steps = 20_000 if k == 1 or math.isinf(k) else 5_000
        out.append(Workload(method, steps // 4 if quick else steps))
    out += [Workload(method, 1000, runs=5) for method in METHODS]
    if max_steps is not None:
        out = [dataclasses.replace(w, steps=min(w.steps, max_steps)) for w in out]
    return out


def compiled_cpu_backends() -> list[str]:
    """The compiled CPU backends that import here (all available but numpy and cuda)."""
    return [b for b in fastperm.backends.available() if b not in ("numpy", "cuda")]


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )


def _wait_ready(procs, timeout: float):
    """Wait until every process has printed its "ready" line."""
    deadline = time.monotonic() + timeout
    for p in procs:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"background process {p.pid} not ready after {timeout} s")
            ready, _, _ = select.select([p.stdout], [], [], left)
            if ready:
                line = p.stdout.readline()
                if line.strip() == "ready":
                    break
                if not line:  # end of file: it exited
                    raise RuntimeError(
                        f"background process {p.pid} exited with status "
                        f"{p.wait()} before it was ready"
                    )


def _stop(procs):
    """Terminate the processes, kill those that linger, and reap them all."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


def start_load(
    condition: str,
    backend: str,
    seconds: float = LOAD_SECONDS,
    ready_timeout: float = READY_TIMEOUT,
) -> list[subprocess.Popen]:
    """Start the background processes of ``condition``; they run until stopped or ``seconds``.

    Returns once each is running (and the fastperm load has loaded its kernels), plus
    :data:`SETTLE_SECONDS`. Stop them with :func:`stop_load`.
    """
    if condition == "idle":
        return []
    if condition == "busy loop":
        code = _BUSY_LOOP.format(marker=MARKER, seconds=float(seconds))
        procs_wanted = max(1, (os.cpu_count() or 1) - 1)
    elif condition == "fastperm load":
        module = os.path.realpath(fastperm.__file__)
        code = _FASTPERM_LOAD.format(
            marker=MARKER,
            seconds=float(seconds),
            d=D,
            n=N,
            backend=backend,
            module=module,
            root=str(Path(module).parent.parent),
        )
        procs_wanted = 1
    else:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    procs = []
    try:
        for _ in range(procs_wanted):
            procs.append(_start(code))
        _wait_ready(procs, ready_timeout)
        time.sleep(SETTLE_SECONDS)
    except BaseException:
        _stop(procs)
        raise
    return procs


def stop_load(procs) -> list[int | None]:
    """Stop the background processes; each one's exit status if it had ended by itself."""
    ended = [p.poll() for p in procs]
    _stop(procs)
    return ended


def _time(loads, problem, backend, mod, threads, repeats):
    """ns/step samples of every workload, with ``threads`` (``"default"``) and one (``"one"``).

    Round-robin: each round calls every workload once with each thread count, so that
    a load that changes during the condition affects all workloads alike; the two thread
    counts take turns to go first, since the first call of a pair finds the caches cold
    from the previous workload. Round 0 is the warm-up and is not kept.
    """
    samples = [{"default": [], "one": []} for _ in loads]
    before = mod.threads()
    try:
        for rep in range(repeats + 1):
            for w, kept in zip(loads, samples, strict=False):
                # alternate which goes first: the first call of a pair finds the caches
                # cold from the previous workload (worth ~15 us on a 20 us call)
                order = (("default", threads), ("one", 1))
                for which, t in order if rep % 2 == 0 else order[::-1]:
                    mod.set_threads(t)
                    ns = w(problem, backend).ns_per_step
                    if rep:
                        kept[which].append(ns)
    finally:
        mod.set_threads(before)
    return samples


def measure(
    backends,
    loads=None,
    conditions=CONDITIONS,
    repeats: int = 30,
    load_seconds: float = LOAD_SECONDS,
    log=None,
) -> dict:
    """Time every workload on every backend under every condition.

    Parameters
    ----------
    backends : sequence of str
        Compiled CPU backends (``"numba"``, ``"cython"``).
    loads : list of Workload, optional
        The timed calls; :func:`workloads` by default.
    conditions : sequence of str
        Some of :data:`CONDITIONS`.
    repeats : int >= 1
        Timed rounds (each workload once with each thread count), after one warm-up round.
    load_seconds : float
        Lifetime bound of each background process.
    log : callable, optional
        Called with a line of progress.

    Returns
    -------
    dict
        ``"machine"`` (:func:`machine`, at the start), ``"load_average_end"``,
        ``"conditions"`` (one entry per backend and condition: its background
        processes' pids and how they ended, the load average at its start and end) and
        ``"rows"`` (one per backend, workload and condition: ns/step with the default
        threads and with one, their ratio, the slow calls, the verdict and the samples).
    """
    loads = workloads() if loads is None else loads
    log = log or (lambda line: None)
    report = {"machine": machine(backends), "conditions": [], "rows": []}
    problem = fastperm.LinearProblem.sample(d=D, n=N, seed=0)
    for backend in backends:
        mod = fastperm.backends.get(backend)
        threads = mod.threads()
        for w in loads:  # compile / load caches before any background process starts
            w(problem, backend)
        for condition in conditions:
            log(f"{backend}: {condition} ...")
            entry = {
                "backend": backend,
                "condition": condition,
                "load_average_start": os.getloadavg(),
            }
            procs = start_load(condition, backend, load_seconds)
            entry["pids"] = [p.pid for p in procs]
            entry["load_average_loaded"] = os.getloadavg()
            try:
                samples = _time(loads, problem, backend, mod, threads, repeats)
            finally:
                ended = stop_load(procs)
            for w, kept in zip(loads, samples, strict=False):
                many, one = statistics.median(kept["default"]), statistics.median(kept["one"])
                ratio = many / one
                report["rows"].append(
                    {
                        "backend": backend,
                        "workload": w.label,
                        "shape": w.shape,
                        "method": w.method,
                        "steps": w.steps,
                        "runs": w.runs or 1,
                        "condition": condition,
                        "threads": threads,
                        "ns_per_step": many,
                        "ns_per_step_one_thread": one,
                        "ratio": ratio,
                        "slow_calls": sum(ns > TARGET * one for ns in kept["default"]),
                        "verdict": "PASS" if ratio <= TARGET else "FAIL",
                        "samples": kept["default"],
                        "samples_one_thread": kept["one"],
                    }
                )
            # a background process that had ended by itself loaded only part of the timing
            entry["ended_early"] = [s is not None for s in ended]
            entry["load_average_end"] = os.getloadavg()
            report["conditions"].append(entry)
    report["load_average_end"] = os.getloadavg()
    if "numba" in backends:  # the layer Numba chose, now that its parallel kernels have run
        import numba

        report["machine"]["numba_threading_layer"] = numba.threading_layer()
    return report


def machine(backends=()) -> dict:
    """Date, CPU model, core count, load average, threads and git state of this run."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    package = Path(fastperm.__file__).resolve().parent  # the fastperm being measured
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "fastperm": str(package),
        "fastperm_commit": (
            commit + (" + uncommitted changes in fastperm/" if dirty else "")
            if commit
            else "not a git checkout"
        ),
        "threads": {b: fastperm.backends.get(b).threads() for b in backends},
        "env": {
            v: os.environ[v]
            for v in (
                "OMP_WAIT_POLICY",
                "OMP_NUM_THREADS",
                "NUMBA_NUM_THREADS",
                "NUMBA_THREADING_LAYER",
                "GOMP_SPINCOUNT",
            )
            if v in os.environ
        },
    }
    if "numba" in backends:
        import numba

        info["numba"] = numba.__version__
        try:
            info["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet in this process
            info["numba_threading_layer"] = f"not chosen yet ({numba.config.THREADING_LAYER})"
    return info


def _loadavg(la) -> str:
    return " ".join(f"{x:.2f}" for x in la)


def format_report(report: dict) -> str:
    """The header (machine, conditions) and the table, one row per backend, workload, condition."""
    m = report["machine"]
    lines = [
        f"date: {m['date']}",
        f"CPU: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable)",
        f"load average at start: {_loadavg(m['load_average'])}; "
        f"at end: {_loadavg(report['load_average_end'])}",
        f"fastperm: {m['fastperm']} ({m['fastperm_commit']}); Python {m['python']}"
        + (
            f"; numba {m['numba']} (threading layer {m['numba_threading_layer']})"
            if "numba" in m
            else ""
        ),
        "default threads: "
        + ", ".join(f"{b} {t}" for b, t in m["threads"].items())
        + (f"; env: {m['env']}" if m["env"] else ""),
        f"d = {D}, n = {N}; ns/step: median of TrainResult.seconds per step; "
        f"target: default threads <= {TARGET}x one thread (verdict on the medians)",
        f"slow: calls with the default threads slower than {TARGET}x the one-thread median",
        "",
    ]
    for c in report["conditions"]:
        procs = f"{len(c['pids'])} background process(es)" if c["pids"] else "nothing started"
        early = (
            " (some ENDED EARLY: part of the timing was not loaded)"
            if any(c["ended_early"])
            else ""
        )
        lines.append(
            f"{c['backend']:6} {c['condition']:13}: {procs}{early}; load average "
            f"{_loadavg(c['load_average_start'])} at start, "
            f"{_loadavg(c['load_average_end'])} at end"
        )
    lines.append("")
    head = (
        f"{'backend':7} {'workload':30} {'condition':13} {'default':>10} "
        f"{'1 thread':>10} {'ratio':>7} {'slow':>6}  verdict"
    )
    lines += [head, "-" * len(head)]
    order = {c: i for i, c in enumerate(CONDITIONS)}
    rows = sorted(
        report["rows"],
        key=lambda r: (r["backend"], r["runs"] > 1, r["workload"], order.get(r["condition"], 99)),
    )
    for r in rows:
        lines.append(
            f"{r['backend']:7} {r['workload']:30} {r['condition']:13} "
            f"{r['ns_per_step']:10.1f} {r['ns_per_step_one_thread']:10.1f} "
            f"{r['ratio']:7.2f} {r['slow_calls']:>2}/{len(r['samples']):<3}  "
            f"{r['verdict']}"
        )
    fails = sum(r["verdict"] == "FAIL" for r in rows)
    threads = ", ".join(f"{b} {t}" for b, t in m["threads"].items())
    lines += [
        "",
        f"{len(rows) - fails} of {len(rows)} rows within {TARGET}x of one thread "
        f"(ns/step with the default threads: {threads})",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated compiled CPU backends (default: all available)",
    )
    parser.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"comma-separated, from {', '.join(CONDITIONS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 repeats, single runs of a quarter of the steps"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds (default 30; quick 3)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="cap on the steps of every workload"
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=LOAD_SECONDS,
        help="lifetime bound of each background process",
    )
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)

    have = compiled_cpu_backends()
    backends = have if args.backends is None else [b for b in args.backends.split(",") if b]
    missing = [b for b in backends if b not in have]
    if missing:
        parser.error(
            f"not an available compiled CPU backend: {', '.join(missing)} "
            f"(available: {', '.join(have) or 'none'})"
        )
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition(s) {unknown}; choose from {CONDITIONS}")
    repeats = args.repeats or (3 if args.quick else 30)
    t0 = time.perf_counter()
    report = measure(
        backends,
        workloads(args.quick, args.max_steps),
        conditions,
        repeats,
        args.load_seconds,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    report["seconds"] = time.perf_counter() - t0
    report["repeats"] = repeats
    print(format_report(report))
    print(f"({report['seconds']:.0f} s, {repeats} repeats)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()

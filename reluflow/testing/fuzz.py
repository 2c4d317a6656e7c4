"""Fuzzing the exact solver on random small deep problems (issue: "the exact solver never gives up").

- :func:`draw_problem`: one random deep problem from a seed — width M ∈ 1..4, depth L ∈ 2..3,
  N ≤ 50 points; Haar frames (:func:`reluflow.random_adapted_network`, sometimes one frame for
  all layers), scales, thresholds; uniform (Gaussian) or clustered data; per-point or per-cluster
  targets; optionally point weights, duplicated points and exact ties (a threshold placed on a
  data coordinate, a point placed on a threshold).
- :func:`run_problem`: ``solve(method="exact")`` on it under a wall-clock limit, recording status,
  message, event count, wall time and the finiteness of every output → :class:`FuzzResult`.
- :func:`fuzz`: many problems from one root seed, serially or on an executor; problem p uses the
  p-th child of ``numpy.random.SeedSequence(seed).spawn(n)`` (as :func:`reluflow.pipeline.sweep.sweep`
  does), so results do not depend on scheduling. ``benchmarks/fuzz_solver.py`` is its command line.
- :func:`compare_backends`: ``method="general"`` against ``method="exact"`` on one problem, at the
  requested times both reach (``benchmarks/fuzz_solver.py --compare``).

A problem is identified by ``(root seed, index)``; :func:`problem_seed` rebuilds its SeedSequence.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass

import numpy as np

from reluflow.dynamics.solver import solve

__all__ = ["FuzzProblem", "FuzzResult", "BackendComparison", "draw_problem", "problem_seed", "run_problem", "fuzz",
           "summarize", "compare_backends", "TIME_LIMIT"]

#: Default wall-clock limit per problem, in seconds (a solve that takes longer is recorded as timed out).
TIME_LIMIT = 20.0


@dataclass(frozen=True)
class FuzzProblem:
    """The inputs of one solve and how they were drawn."""

    net: object
    X: np.ndarray
    targets: np.ndarray
    t_eval: np.ndarray
    point_weights: np.ndarray | None
    description: str


@dataclass
class FuzzResult:
    """What one fuzzed solve did. ``status`` is None when it raised or timed out (see ``message``)."""

    seed: int
    index: int
    status: int | None
    message: str
    n_events: int
    wall_time: float
    finite: bool
    timed_out: bool
    error: str
    description: str
    L: int
    M: int
    N: int

    def as_dict(self):
        return asdict(self)


def problem_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The SeedSequence of problem ``index`` of root ``seed``: child ``index`` of SeedSequence(seed).spawn."""
    return np.random.SeedSequence(seed, spawn_key=(int(index),))


def draw_problem(seed_seq) -> FuzzProblem:
    """One random deep problem from a SeedSequence (or an int / Generator)."""
    from reluflow.theory.adapted import random_adapted_network

    rng = np.random.default_rng(seed_seq)
    M = int(rng.integers(1, 5))
    L = int(rng.integers(2, 4))
    N = int(rng.integers(1, 51))
    common = bool(rng.random() < 0.2)
    lo = float(rng.uniform(0.3, 1.2))
    hi = lo * float(rng.uniform(1.0, 3.0))
    tscale = float(rng.choice([0.0, 0.3, 1.0, 2.0]))
    net = random_adapted_network(M, L, seed=rng, common_frame=common, scale_range=(lo, hi), threshold_scale=tscale)
    notes = [f"M={M} L={L} N={N}", "common frame" if common else "Haar frames", f"scales [{lo:.2f},{hi:.2f}]",
             f"threshold scale {tscale}"]
    if rng.random() < 0.5:
        Q = int(rng.integers(1, 5))
        centres = 2.0 * rng.standard_normal((Q, M))
        radius = float(rng.uniform(0.0, 1.0))
        labels = rng.integers(0, Q, size=N)
        X = centres[labels] + radius * rng.standard_normal((N, M))
        per_cluster = rng.random() < 0.7
        Yc = 2.0 * rng.standard_normal((Q, M))
        targets = Yc[labels] if per_cluster else rng.standard_normal((N, M)) + Yc[labels]
        notes.append(f"{Q} clusters r={radius:.2f}" + (" cluster targets" if per_cluster else " noisy targets"))
    else:
        X = rng.standard_normal((N, M)) * float(rng.uniform(0.5, 2.0))
        if rng.random() < 0.5:
            targets = np.tile(2.0 * rng.standard_normal(M), (N, 1))
            notes.append("uniform data, one target")
        else:
            targets = rng.standard_normal((N, M)) + 1.0
            notes.append("uniform data, point targets")
    if N > 1 and rng.random() < 0.3:  # duplicated points
        n_dup = int(rng.integers(1, N))
        src = rng.integers(0, N, size=n_dup)
        dst = rng.integers(0, N, size=n_dup)
        X[dst] = X[src]
        if rng.random() < 0.5:
            targets[dst] = targets[src]
        notes.append(f"{n_dup} duplicates")
    thresholds = net.thresholds.copy()
    if rng.random() < 0.3:  # exact ties: thresholds of layer 1 on data coordinates, or points on thresholds
        R1 = net.frames[0]
        U = X @ R1.T
        for k in range(M):
            if rng.random() < 0.5:
                thresholds[0, k] = U[int(rng.integers(0, N)), k]
        notes.append("ties at layer 1")
    if rng.random() < 0.15:  # a point exactly on a threshold everywhere it can be (layer 1 coordinates)
        i = int(rng.integers(0, N))
        X[i] = thresholds[0] @ net.frames[0]
        notes.append("a point on all layer-1 thresholds")
    from reluflow.theory.adapted import adapted_network

    net = adapted_network(net.frames, net.scales, thresholds)
    weights = None
    if rng.random() < 0.3:
        weights = rng.uniform(0.0, 1.0, size=N)
        if rng.random() < 0.3:
            weights[rng.random(N) < 0.3] = 0.0
            weights[int(rng.integers(0, N))] = float(rng.uniform(0.1, 1.0))  # the cost is not identically 0
        notes.append("point weights")
    t_end = float(rng.choice([1.0, 4.0, 20.0]))
    t_eval = np.linspace(0.0, t_end, 9)[1:]
    return FuzzProblem(net, X, targets, t_eval, weights, "; ".join(notes))


class _TimeOut(Exception):
    pass


def _alarm(_signum, _frame):
    raise _TimeOut


def run_problem(seed: int, index: int, *, time_limit: float = TIME_LIMIT, problem: FuzzProblem | None = None,
                **solve_options) -> FuzzResult:
    """Draw problem ``(seed, index)`` and run ``solve(method="exact")`` on it within ``time_limit`` seconds.

    The limit uses SIGALRM, so it applies only in a process's main thread (elsewhere: no limit).
    """
    p = problem if problem is not None else draw_problem(problem_seed(seed, index))
    L, M, N = p.net.depth, p.net.width, p.X.shape[0]
    use_alarm = time_limit is not None and time_limit > 0
    old = None
    if use_alarm:
        try:
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, float(time_limit))
        except ValueError:  # not the main thread
            use_alarm = False
    t0 = time.perf_counter()
    status, message, n_events, finite, timed_out, error = None, "", 0, False, False, ""
    try:
        ds = solve(p.net, p.X, p.targets, p.t_eval, method="exact", point_weights=p.point_weights, **solve_options)
        status, message, n_events = int(ds.attrs["status"]), str(ds.attrs["message"]), int(ds.attrs["n_events"])
        finite = all(bool(np.all(np.isfinite(ds[v].values))) for v in ds.data_vars
                     if np.issubdtype(ds[v].dtype, np.number))
    except _TimeOut:
        timed_out, message = True, f"timed out after {time_limit} s"
    except Exception as exc:  # recorded, not raised: the fuzz run counts failures
        error = f"{type(exc).__name__}: {exc}"
        message = error
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
            signal.signal(signal.SIGALRM, old)
    wall = time.perf_counter() - t0
    return FuzzResult(int(seed), int(index), status, message, n_events, wall, finite, timed_out, error,
                      p.description, L, M, N)


def _run_many(seed, indices, time_limit):
    return [run_problem(seed, i, time_limit=time_limit) for i in indices]


def fuzz(n: int, seed: int = 0, *, start: int = 0, executor=None, time_limit: float = TIME_LIMIT,
         chunk: int = 50) -> list[FuzzResult]:
    """Problems ``start .. start+n-1`` of root ``seed``, serially or on ``executor`` (chunks of ``chunk``)."""
    indices = list(range(start, start + n))
    if executor is None:
        return _run_many(seed, indices, time_limit)
    chunks = [indices[q:q + chunk] for q in range(0, len(indices), chunk)]
    futures = [executor.submit(_run_many, seed, c, time_limit) for c in chunks]
    out = []
    for f in futures:
        out.extend(f.result())
    return out


def summarize(results) -> dict:
    """Counts over fuzz results: early stops, errors, time-outs, non-finite outputs, timing, event counts."""
    stops = [r for r in results if r.status == -1]
    errors = [r for r in results if r.error]
    timeouts = [r for r in results if r.timed_out]
    nonfinite = [r for r in results if r.status is not None and not r.finite]
    other = [r for r in results if r.status not in (0, -1, None)]
    times = np.array([r.wall_time for r in results])
    events = np.array([r.n_events for r in results])
    slowest = results[int(np.argmax(times))] if results else None
    q = [0, 50, 90, 99, 99.9, 100]
    return {
        "n": len(results),
        "completed": sum(r.status == 0 for r in results),
        "early_stops": len(stops),
        "other_status": len(other),
        "errors": len(errors),
        "timeouts": len(timeouts),
        "non_finite": len(nonfinite),
        "slowest": None if slowest is None else (slowest.index, slowest.wall_time, slowest.n_events),
        "total_time": float(times.sum()),
        "time_percentiles": dict(zip(q, np.percentile(times, q).tolist())) if results else {},
        "event_percentiles": dict(zip(q, np.percentile(events, q).tolist())) if results else {},
        "failures": sorted({r.index for r in stops + errors + timeouts + nonfinite}),
    }


@dataclass
class BackendComparison:
    """The general backend against the exact one on one fuzz problem, at the requested times they both reach."""

    index: int
    exact_status: int | None
    general_status: int | None
    n_compared: int  # requested times compared (up to the general backend's stop, e.g. at the onset of sliding)
    max_error: float  # max |θ_general − θ_exact| there (nan if none)
    general_time: float
    message: str


def compare_backends(seed: int, index: int, *, time_limit: float = TIME_LIMIT, **general_options):
    """Solve fuzz problem ``(seed, index)`` with both methods; compare θ at the common requested times."""
    p = draw_problem(problem_seed(seed, index))
    kw = dict(point_weights=p.point_weights, record_events=False)
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, float(time_limit))
        ex = solve(p.net, p.X, p.targets, p.t_eval, **kw)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, float(time_limit))
        ge = solve(p.net, p.X, p.targets, p.t_eval, method="general", **kw, **general_options)
        tg = time.perf_counter() - t0
    except _TimeOut:
        return BackendComparison(index, None, None, 0, float("nan"), float(time_limit), "timed out")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)
    te = ex.time.values[ex.requested.values == 1]
    tg_ = ge.time.values[ge.requested.values == 1]
    t_stop = ge.time.values[-1]
    common = np.intersect1d(te, tg_)
    if ge.attrs["status"] != 0:  # stopped at the onset of sliding: compare strictly before
        common = common[common < t_stop]
    err = (float(np.abs(ex.thresholds.sel(time=common).values - ge.thresholds.sel(time=common).values).max())
           if common.size else float("nan"))
    return BackendComparison(index, int(ex.attrs["status"]), int(ge.attrs["status"]), int(common.size), err, tg,
                             str(ge.attrs["message"]))

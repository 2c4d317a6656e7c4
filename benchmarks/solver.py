"""Benchmark: the exact event solver against scipy's solve_ivp on one one-layer problem.

The problem is the sweep-and-collapse solution (THEORY.md §5, S2): one layer of width M = 8, one
cluster of N points drawn uniformly from the unit ball, the target beyond the cluster in every
activation coordinate, the lowest 10 % of the points truncated in each coordinate at t = 0 (so
that the sweep takes a time independent of N). Every threshold then sweeps through the rest of
the cluster: 0.9 N truncation events per coordinate, 0.9 N M in all, before t = T_END.

Side by side, in one run:

- ``exact`` against ``solve_ivp`` at N = 10^3 and 10^4: :func:`reluflow.solve` (method "exact",
  the sorted one-layer backend), including its Dataset whose time coordinate holds all event
  times (best of 5), against DOP853 with rtol = 1e-10, atol = 1e-12 on the same flow, recounting
  the truncated points n_k(θ) = #{i : u_ik ≤ θ_k} in every right-hand-side call (a binary search
  in the pre-sorted coordinates, the fastest fair baseline). Without events DOP853 meets each of
  the 0.9 N M discontinuities by rejecting and shrinking steps. Both errors are measured against
  θ_ref, the event formula Δt = (λ² N/n) log((ŷ − θ_m)/(ŷ − u_(m+1))) iterated in a plain loop in
  extended precision (numpy.longdouble), written here independently. The ratio must stay ≥ 1000.
- ``exact`` against the floor at N = 10^5, 10^6 and 10^7 (skip 10^7 with ``--no-1e7``): the floor
  is one ``np.sort`` plus one ``np.cumsum`` of the same (N, M) array, the least any sort-based
  solver must do. ``lean`` is ``record_events=False`` (0 and t_eval in the time coordinate; the
  event log is complete), ``full`` records every event time (not run at 10^7: its Dataset alone
  has 7·10^7 time rows). The peak memory of one lean solve is measured by tracemalloc.

Run from the repository root, single-threaded BLAS:

    .venv/bin/python benchmarks/solver.py
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np
from scipy.integrate import solve_ivp

import reluflow as rf
from reluflow.dynamics.solver import solve

M = 8
N_IVP = [1_000, 10_000]  # exact against solve_ivp (the ratio must stay >= 1000)
N_FLOOR = [100_000, 1_000_000, 10_000_000] if "--no-1e7" not in sys.argv else [100_000, 1_000_000]
T_END = 8.0
T_EVAL = np.linspace(0.0, T_END, 33)
START_FRACTION = 0.1
SEED = 2025


def problem(N):
    rng = np.random.default_rng([SEED, N])
    net0 = rf.random_adapted_network(M, 1, seed=rng.integers(2**32), scale_range=(0.7, 1.3))
    R, lam = net0.frames[0], net0.scales[0]
    X = rf.clustered_data(np.zeros((1, M)), 1.0, N, seed=rng.integers(2**32)).points
    U = X @ R.T
    us = np.sort(U, axis=0)
    n0 = int(START_FRACTION * N)
    theta0 = 0.5 * (us[n0 - 1] + us[n0])  # the lowest n0 points truncated in each coordinate
    y_hat = np.full(M, 1.5)  # beyond the cluster in every coordinate
    net = rf.adapted_network(R[None], lam[None], theta0[None])
    targets = np.tile(y_hat @ R, (N, 1))
    return net, X, targets, U, y_hat


def reference(U, y_hat, lam, theta0, times):
    """θ(t) by the event formula, iterated point by point in numpy.longdouble."""
    ld = np.longdouble
    N = U.shape[0]
    out = np.empty((times.size, U.shape[1]))
    for k in range(U.shape[1]):
        us = np.sort(U[:, k]).astype(ld)
        y, lam2, th0 = ld(y_hat[k]), ld(lam[k]) ** 2, ld(theta0[k])
        n = int(np.count_nonzero(us <= th0))
        starts, th_starts, counts = [ld(0)], [th0], [n]
        t, th = ld(0), th0
        while n < N and y > us[n]:
            t = t + lam2 * ld(N) / ld(n) * np.log((y - th) / (y - us[n]))
            th = us[n]
            n += 1
            starts.append(t)
            th_starts.append(th)
            counts.append(n)
        starts = np.array(starts, dtype=ld)
        for q, tq in enumerate(times.astype(ld)):
            j = int(np.searchsorted(starts, tq, side="right")) - 1
            rate = ld(counts[j]) / (lam2 * ld(N))
            out[q, k] = float(y + (th_starts[j] - y) * np.exp(-rate * (tq - starts[j])))
    return out


def best_of(fn, repeat):
    best, result = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def floor_time(X, R, repeat):
    """The floor: one np.sort and one np.cumsum of the same (N, M) data (the rotated coordinates)."""
    U = X @ R.T

    def run():
        np.cumsum(np.sort(U, axis=0), axis=0)

    return best_of(run, repeat)[0]


def peak_memory(fn):
    """Peak traced memory [GB] of numpy allocations during fn (tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e9
    finally:
        tracemalloc.stop()


def run_ivp(N):
    net, X, targets, U, y_hat = problem(N)
    lam, theta0 = net.scales[0], net.thresholds[0]
    t_exact, ds = best_of(lambda: solve(net, X, targets, T_EVAL), 5)
    ref = reference(U, y_hat, lam, theta0, T_EVAL)
    err_exact = float(np.abs(ds.thresholds.sel(time=T_EVAL, layer=1).values - ref).max())
    lam2 = lam**2
    us = np.sort(U, axis=0)

    def rhs(_t, theta):
        # truncation counts n_k = #{i : u_ik <= θ_k}, recomputed in each call
        n = np.array([np.searchsorted(us[:, k], theta[k], side="right") for k in range(M)])
        return -(n / (lam2 * N)) * (theta - y_hat)

    t0 = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, T_END), theta0, method="DOP853", rtol=1e-10, atol=1e-12, t_eval=T_EVAL)
    t_ivp = time.perf_counter() - t0
    err_ivp = float(np.abs(sol.y.T - ref).max())
    return ds.attrs["n_events"], t_exact, t_ivp, sol.nfev, err_exact, err_ivp


def run_floor(N, full):
    net, X, targets, _, _ = problem(N)
    repeat = 3 if N <= 1_000_000 else 1
    t_floor = floor_time(X, net.frames[0], repeat)
    t_lean, ds = best_of(lambda: solve(net, X, targets, T_EVAL, record_events=False), repeat)
    t_full = best_of(lambda: solve(net, X, targets, T_EVAL), repeat)[0] if full else np.nan
    mem = peak_memory(lambda: solve(net, X, targets, T_EVAL, record_events=False))
    return ds.attrs["n_events"], t_floor, t_lean, t_full, mem


def main():
    print(f"one layer, M = {M}, one cluster of N points, t in [0, {T_END}], {T_EVAL.size} output times")
    print("exact = reluflow.solve (sorted backend) including its Dataset; full = with every event time in the "
          "time coordinate, lean = record_events=False (event log complete in both)")
    print("solve_ivp: DOP853, rtol=1e-10, atol=1e-12, truncation counts recomputed in each call (binary search)")
    print(f"{'N':>9} {'events':>9} {'exact full [s]':>14} {'solve_ivp [s]':>13} {'ivp/exact':>10} {'nfev':>8} "
          f"{'err exact':>10} {'err ivp':>9}")
    for N in N_IVP:
        n_ev, t_exact, t_ivp, nfev, err_exact, err_ivp = run_ivp(N)
        print(f"{N:>9} {n_ev:>9} {t_exact:>14.4f} {t_ivp:>13.3f} {t_ivp / t_exact:>10.0f} {nfev:>8} "
              f"{err_exact:>10.2e} {err_ivp:>9.2e}", flush=True)
    print("floor = np.sort + np.cumsum of the same (N, M) array; peak = tracemalloc peak of one lean solve")
    print(f"{'N':>9} {'events':>9} {'floor [s]':>10} {'lean [s]':>9} {'lean/floor':>10} {'full [s]':>9} "
          f"{'full/floor':>10} {'peak [GB]':>9}")
    for N in N_FLOOR:
        full = N <= 1_000_000
        n_ev, t_floor, t_lean, t_full, mem = run_floor(N, full)
        print(f"{N:>9} {n_ev:>9} {t_floor:>10.3f} {t_lean:>9.3f} {t_lean / t_floor:>10.2f} {t_full:>9.3f} "
              f"{t_full / t_floor:>10.2f} {mem:>9.2f}", flush=True)


if __name__ == "__main__":
    main()

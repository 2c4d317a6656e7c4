"""Benchmark: the exact event solver against scipy's solve_ivp on one one-layer problem.

The problem is the sweep-and-collapse solution (THEORY.md §5, S2): one layer of width M = 8, one
cluster of N points drawn uniformly from the unit ball, the target beyond the cluster in every
activation coordinate, the lowest 10 % of the points truncated in each coordinate at t = 0 (so
that the sweep takes a time independent of N). Every threshold then sweeps through the rest of
the cluster: 0.9 N truncation events per coordinate, 0.9 N M in all, before t = T_END.

Side by side, in one run, for N = 10^2 … 10^5:

- ``exact``: :func:`reluflow.solve` (method "exact", the sorted one-layer algorithm), including the
  construction of its Dataset, whose time coordinate holds all event times (best of 3);
- ``solve_ivp``: DOP853 with rtol = 1e-10, atol = 1e-12 on the same flow, recounting the truncated
  points n_k(θ) = #{i : u_ik ≤ θ_k} in every right-hand-side call. To make the baseline as fast as
  it fairly can be, the count is a binary search in the pre-sorted coordinates (O(M log N) per
  call) rather than a comparison with all N M coordinates. Without events, DOP853 meets each of
  the 0.9 N M discontinuities of the right-hand side by rejecting and shrinking steps, so its cost
  grows roughly like N (number of discontinuities) times nfev per discontinuity. It runs only up
  to N = N_IVP_MAX = 10^4 (a few minutes there);
- both errors against the closed form, max_t |θ(t) − θ_ref(t)| over the output times, where
  θ_ref comes from the one-layer event formula Δt = (λ² N/n) log((ŷ − θ_m)/(ŷ − u_(m+1))) iterated
  in a plain loop in extended precision (numpy.longdouble), written here independently.

It prints the times, their ratio, the errors and the least-squares exponent p of time ∝ N^p of
the exact solver over N ≥ 10^3 (below that, fixed costs dominate). Run from the repository root:

    .venv/bin/python benchmarks/solver.py
"""

from __future__ import annotations

import time

import numpy as np
from scipy.integrate import solve_ivp

import reluflow as rf
from reluflow.dynamics.solver import solve

M = 8
N_VALUES = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
N_IVP_MAX = 10_000
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


def run_one(N):
    net, X, targets, U, y_hat = problem(N)
    lam, theta0 = net.scales[0], net.thresholds[0]
    repeat = 5 if N <= 10_000 else 3
    t_exact, ds = best_of(lambda: solve(net, X, targets, T_EVAL), repeat)
    t_lean, _ = best_of(lambda: solve(net, X, targets, T_EVAL, record_events=False), repeat)
    ref = reference(U, y_hat, lam, theta0, T_EVAL)
    err_exact = float(np.abs(ds.thresholds.sel(time=T_EVAL, layer=1).values - ref).max())
    t_ivp = err_ivp = ratio = np.nan
    nfev = 0
    if N <= N_IVP_MAX:
        lam2 = lam**2
        us = np.sort(U, axis=0)

        def rhs(_t, theta):
            # truncation counts n_k = #{i : u_ik <= θ_k}, recomputed in each call
            n = np.array([np.searchsorted(us[:, k], theta[k], side="right") for k in range(M)])
            return -(n / (lam2 * N)) * (theta - y_hat)

        t0 = time.perf_counter()
        sol = solve_ivp(rhs, (0.0, T_END), theta0, method="DOP853", rtol=1e-10, atol=1e-12, t_eval=T_EVAL)
        t_ivp = time.perf_counter() - t0
        nfev = sol.nfev
        err_ivp = float(np.abs(sol.y.T - ref).max())
        ratio = t_ivp / t_exact
    return t_exact, ds.attrs["n_events"], t_lean, t_ivp, ratio, nfev, err_exact, err_ivp


def main():
    print(f"one layer, M = {M}, one cluster of N points, t in [0, {T_END}], {T_EVAL.size} output times")
    print(f"solve_ivp: DOP853, rtol=1e-10, atol=1e-12, truncation counts recomputed in each call (binary search); "
          f"run up to N = {N_IVP_MAX}")
    header = (f"{'N':>7} {'events':>7} {'exact [s]':>10} {'lean [s]':>9} {'solve_ivp [s]':>13} {'ratio':>9} "
              f"{'nfev':>8} {'err exact':>10} {'err ivp':>9}")
    print(header)
    rows = []
    for N in N_VALUES:
        t_exact, n_events, t_lean, t_ivp, ratio, nfev, err_exact, err_ivp = run_one(N)
        rows.append((N, t_exact))
        print(f"{N:>7} {n_events:>7} {t_exact:>10.4f} {t_lean:>9.4f} {t_ivp:>13.3f} {ratio:>9.0f} "
              f"{nfev:>8} {err_exact:>10.2e} {err_ivp:>9.2e}", flush=True)
    Ns, ts = np.array(rows).T
    fit = Ns >= 1_000
    p = np.polyfit(np.log(Ns[fit]), np.log(ts[fit]), 1)[0]
    p_all = np.polyfit(np.log(Ns), np.log(ts), 1)[0]
    print(f"fitted exponent of the exact solver, time ∝ N^p: p = {p:.3f} for N >= 1000 ({p_all:.3f} over all N)")


if __name__ == "__main__":
    main()

"""Cost of the closed-form threshold gradient (4.1) against one forward pass and the oracles.

Run: ``.venv/bin/python benchmarks/gradients.py [--n-points N] [--repeats K]``.

All four are timed side by side in one run, best of K:

- one forward pass, :func:`reluflow.truncated_data` (x^(τ,0), …, x^(τ,L)), and for reference
  the bare forward pass in activation coordinates that the closed form runs internally;
- the closed-form gradient ∂C_in/∂θ_ℓ, :func:`reluflow.theory.flows.threshold_gradient` (its own forward
  and backward pass, with input validation);
- the autodiff oracle, :func:`reluflow.testing.oracles.oracle_threshold_gradient`: autograd's reverse
  mode through the same vectorised plain forward pass (no per-point loop);
- central finite differences of that forward pass, 2·L·M cost evaluations.

Targets: closed form ≤ 4× one forward pass, and ≥ 2× faster than autodiff.
"""

from __future__ import annotations

import os

# One BLAS thread unless the caller says otherwise, set before numpy loads. The products here are
# (N, M) × (M, M) with M = 8: a second BLAS thread gains little on them. On a machine whose two
# cores are shared with other work, it makes each call wait for a busy core, and the timings become
# erratic. Override with e.g. OPENBLAS_NUM_THREADS=2.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from reluflow import random_adapted_network, truncated_data  # noqa: E402
from reluflow.testing.oracles import frobenius_relative_error, oracle_threshold_gradient, tie_margin  # noqa: E402
from reluflow.theory.flows import adapted_forward, threshold_gradient  # noqa: E402


def best_of(funs: dict, repeats: int) -> dict:
    """Smallest wall time (s) of ``repeats`` calls of each function, the calls interleaved round-robin.

    Interleaving puts every function through the same load on a shared machine, so the ratios
    stay meaningful when the absolute times drift.
    """
    best = {name: np.inf for name in funs}
    for _ in range(repeats):
        for name, fun in funs.items():
            start = time.perf_counter()
            fun()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    N, M, L = args.n_points, args.width, args.depth

    rng = np.random.default_rng(args.seed)
    net = random_adapted_network(M, L, seed=rng, threshold_scale=0.5)
    X = rng.standard_normal((N, M))
    Y = rng.standard_normal((N, M))
    Wc, bc = net.cumulative_parameters()

    # Warm up (imports, BLAS threads) and check agreement once.
    g = threshold_gradient(net, X, Y)
    g_ad = oracle_threshold_gradient(net, X, Y)
    g_fd = oracle_threshold_gradient(net, X, Y, method="finite_difference")
    truncated_data(Wc, bc, X)

    k = args.repeats
    t = best_of(
        {
            "forward": lambda: truncated_data(Wc, bc, X),
            "adapted": lambda: adapted_forward(net.frames, net.thresholds, X),
            "closed": lambda: threshold_gradient(net, X, Y),
            "autodiff": lambda: oracle_threshold_gradient(net, X, Y),
        },
        k,
    )
    t_forward, t_adapted, t_closed, t_autodiff = t["forward"], t["adapted"], t["closed"], t["autodiff"]
    k_fd = max(1, k // 3)
    t_fd = best_of({"fd": lambda: oracle_threshold_gradient(net, X, Y, method="finite_difference")}, k_fd)["fd"]

    print(f"threshold gradient (4.1), N = {N}, M = {M}, L = {L}; best of {k}, interleaved "
          f"(finite differences: best of {k_fd})")
    print(f"BLAS threads: OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"{'':34s}{'time [ms]':>12s}{'/ forward':>12s}{'/ closed form':>15s}")
    for name, t in (
        ("forward pass (truncated_data)", t_forward),
        ("adapted forward, R and θ only", t_adapted),
        ("closed form (threshold_gradient)", t_closed),
        ("autodiff oracle (autograd)", t_autodiff),
        (f"central differences ({2 * L * M} passes)", t_fd),
    ):
        print(f"{name:34s}{1e3 * t:12.2f}{t / t_forward:12.2f}{t / t_closed:15.2f}")
    print()
    print(f"closed form / forward pass = {t_closed / t_forward:.2f}  (target <= 4)")
    print(f"autodiff / closed form     = {t_autodiff / t_closed:.2f}  (target >= 2)")
    print(f"relative error vs autodiff = {frobenius_relative_error(g, g_ad):.2e}")
    print(f"relative error vs central differences = {frobenius_relative_error(g, g_fd):.2e}  (step 1e-5; tie margin of "
          f"this data {tie_margin(Wc, bc, X):.1e}, so some differences straddle a tie)")


if __name__ == "__main__":
    main()

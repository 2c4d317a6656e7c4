"""Time reluflow's gradient-descent engine against its PyTorch peer, side by side, in one run.

Both engines run the same seeded problem (float64, CPU) and record only the first and last steps, so
the timings measure the gradient steps. The script prints milliseconds per step for each engine, the
ratio torch/ours (> 1: ours is faster) and the largest relative difference between the two final
states (cost, cumulative weights and biases).

Usage: .venv/bin/python benchmarks/gd.py [--repeats 3] [--threads T]

``--threads T`` pins both numpy's BLAS and torch to T threads (it must be set before numpy loads,
which this script does). On a shared machine, ``--threads 1`` gives the most stable comparison.
Needs the optional ``bench`` extra (torch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse(argv=None):
    parser = argparse.ArgumentParser(description="reluflow vs PyTorch: gradient descent, side by side")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: libraries')")
    return parser.parse_args(argv)


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread settings)

import reluflow as rf  # noqa: E402
from reluflow.training.gd import train  # noqa: E402

SIZES = {  # name: (N points, M width, L depth, Q outputs, steps)
    "small": (64, 4, 2, 3, 2000),
    "medium": (1024, 32, 4, 10, 300),
}
RUNS = [("biases", "input"), ("full", "input"), ("full", "output"), ("cumulative", "input")]


def problem(N, M, L, Q, seed=0):
    rng = np.random.default_rng(seed)
    Ws, bs = rf.random_network(M, L, seed=rng)
    X = rng.standard_normal((N, M))
    return Ws, bs, X, rng.standard_normal((N, M)), rng.standard_normal((N, Q)), rng.standard_normal((Q, M)), \
        rng.standard_normal(Q)


def best_time(fn, args, kwargs, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(args):
    import torch

    from reluflow.testing.torch_peer import train_torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"numpy {np.__version__}, torch {torch.__version__}; threads: torch {torch.get_num_threads()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; float64, CPU; "
          f"best of {args.repeats}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    header = f"{'size':<7} {'N':>5} {'M':>3} {'L':>2} {'mode':<11} {'cost':<7} {'steps':>5} " \
             f"{'ours ms/step':>13} {'torch ms/step':>14} {'torch/ours':>11} {'max rel diff':>13}"
    print(header)
    print("-" * len(header))
    for size, (N, M, L, Q, steps) in SIZES.items():
        Ws, bs, X, Y_in, Y_out, Wo, bo = problem(N, M, L, Q)
        for mode, cost in RUNS:
            kw = dict(mode=mode, cost=cost, lr=0.01, weight_lr_ratio=0.5, n_steps=steps, record_every=steps,
                      W_out=Wo, b_out=bo, train_terminal=cost == "output")
            data = (Ws, bs, X, Y_in if cost == "input" else Y_out)
            t_ours, ours = best_time(train, data, dict(kw, progress=False), args.repeats)
            t_torch, peer = best_time(train_torch, data, kw, args.repeats)
            diff = max(float(np.abs(ours[k].values[-1] - peer[k][-1]).max() / np.abs(peer[k][-1]).max())
                       for k in ("cost", "cumulative_weights", "cumulative_biases"))
            print(f"{size:<7} {N:>5} {M:>3} {L:>2} {mode:<11} {cost:<7} {steps:>5} {1e3 * t_ours / steps:>13.4f} "
                  f"{1e3 * t_torch / steps:>14.4f} {t_torch / t_ours:>11.2f} {diff:>13.2e}")
            sys.stdout.flush()


if __name__ == "__main__":
    main(ARGS)

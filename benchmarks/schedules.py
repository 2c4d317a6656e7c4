"""The cost of computing each step-size rule of notebook 12, measured side by side in one run.

On the notebook's digits network (64 → 32 → 10, 600 training points, cross-entropy, He initialisation) and on one
idealised problem (one adapted layer, M = 3, N = 60), it times one evaluation of each rule of
:func:`reluflow.training.schedules.run_rule` against one gradient evaluation (``backprop_gradient``) at the same state:

- ``truncation``: the counts and scales by one forward pass and 2/max_k r_k (idealised), or the output-layer bound
  r̂ = λ_max((1/N) Σ κ_i h_i h_iᵀ) (generic network);
- ``curvature``: λ_max of the Hessian by ``--iterations`` power iterations on finite-difference Hessian-vector
  products (two gradients each);
- ``constant`` and ``cosine`` cost nothing worth timing.

It prints the best-of-``--repeats`` wall time of each in ms and as a multiple of one gradient evaluation.

Usage: .venv/bin/python benchmarks/schedules.py [--repeats 20] [--iterations 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

from pinning import pin_threads


def parse(argv=None):
    p = argparse.ArgumentParser(description="cost of one evaluation of each step-size rule")
    p.add_argument("--repeats", type=int, default=20, help="best of this many evaluations (default 20)")
    p.add_argument("--iterations", type=int, default=10, help="power iterations of the curvature rule (default 10)")
    return pin_threads(p, argv)


ARGS = parse() if __name__ == "__main__" else None  # pins the BLAS threads before numpy loads

import numpy as np  # noqa: E402

from reluflow import backprop_gradient  # noqa: E402
from reluflow.theory.realdata import load_split  # noqa: E402
from reluflow.training import schedules as SC  # noqa: E402
from reluflow.training.init import he_network  # noqa: E402


def best(f, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(args):
    split = load_split("digits", seed=0, n_train=600)
    W, b, Wo, bo = he_network([64, 32], 10, seed=0)
    X, y = split.X_train, split.y_train
    p = SC.idealised_problem(0)
    cases = {
        "digits 64-32-10, N=600": (
            lambda: backprop_gradient(W, b, X, y, cost="cross_entropy", W_out=Wo, b_out=bo),
            lambda: SC.output_layer_rate(W, b, Wo, bo, X),
            lambda: SC.hessian_lambda_max((W, b, Wo, bo), X, y, cost="cross_entropy", n_iter=args.iterations)),
        "idealised M=3, N=60": (
            lambda: backprop_gradient(p.weights, p.biases, p.X, p.targets, cost="input", max_condition=np.inf),
            lambda: SC.flow_step(*SC.adapted_counts(p.weights, p.biases, p.X), p.X.shape[0]),
            lambda: SC.hessian_lambda_max((p.weights, p.biases, None, None), p.X, p.targets, cost="input",
                                          mode="biases", train_terminal=False, n_iter=args.iterations)),
    }
    print(f"best of {args.repeats}; curvature rule with {args.iterations} power iterations")
    print(f"{'setting':<24s} {'gradient (ms)':>14s} {'truncation (ms, x grad)':>26s} {'curvature (ms, x grad)':>26s}")
    for name, (grad, trunc, curv) in cases.items():
        g, t, c = best(grad, args.repeats), best(trunc, args.repeats), best(curv, args.repeats)
        print(f"{name:<24s} {1e3 * g:14.3f} {1e3 * t:14.3f} ({t / g:6.2f} x) {1e3 * c:14.3f} ({c / g:6.1f} x)")


if __name__ == "__main__":
    main(ARGS)

"""Time reluflow's gradient-descent engine against the floor of its matrix products, PyTorch and JAX, in one run.

Every case trains the same seeded problem (float64, CPU) and records only the first and last steps, so the
timings measure the steps. Times are process CPU times (``time.process_time``), best of ``--repeats``
interleaved runs: on a shared machine they are far steadier than wall-clock times (with one thread the two
agree on an idle machine). For each case the script prints milliseconds per step for

- ``ours``: :func:`reluflow.train`, the whole call divided by the number of steps;
- ``step``: the marginal cost of a step of :func:`reluflow.train`, (T(S steps) − T(1 step)) / (S − 1), without the
  per-run work (validation, the condition numbers, recording the first and last states);
- ``floor``: only the matrix products one step needs, timed with numpy into preallocated outputs: per layer
  the forward x^(ℓ-1) W_ℓᵀ, and the backward z̄_ℓᵀ x^(ℓ-1) and z̄_ℓ W_ℓ (not for ℓ = 1), plus the output layer
  (x^(L) W_outᵀ, r̄ᵀ x^(L), r̄ W_out) or, for the input cost, the products with (W^(L))^-1;
- ``floor+``: the floor plus the four elementwise passes per layer that any ReLU step makes over its (n, d_ℓ)
  activations (z += b, max(z, 0); the mask 1[x > 0] and its product with the adjoint): at small widths these
  cost a sizeable share of the products (they grow like n·d_ℓ, the products like n·d_ℓ·d_{ℓ-1});
- ``torch``: the PyTorch peer :func:`reluflow.testing.torch_peer.train_torch` (optional, ``bench`` extra);
- ``jax``: JAX with every step in one jitted ``lax.fori_loop`` (no dispatch between steps; XLA pinned to the same
  thread count), if JAX is installed (it is optional and skipped cleanly otherwise);

and the ratios ours/floor and step/floor (1 = nothing but the products), step/floor+, torch/ours and jax/ours (> 1:
ours is faster), and the
largest relative difference between our final state and torch's. A last table checks that a run's peak
traced allocation does not grow with the number of steps (buffers are allocated once per run).

Usage: .venv/bin/python benchmarks/gd.py [--repeats 5] [--threads 1] [--quick]

``--threads T`` pins numpy's BLAS and torch to T threads (set before numpy loads, which this script does).
On a shared machine, ``--threads 1`` gives the most stable comparison.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from pinning import pin_threads


def parse(argv=None):
    parser = argparse.ArgumentParser(description="reluflow gradient descent vs its matmul floor, PyTorch and JAX")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs (default 5)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    return pin_threads(parser, argv)


ARGS = parse() if __name__ == "__main__" else None  # pins the BLAS threads before numpy loads

import numpy as np  # noqa: E402  (after the thread settings)

import reluflow as rf  # noqa: E402
from reluflow.training.gd import train  # noqa: E402

# name: (widths d0..dL, Q outputs, N points, steps, mode, cost, batch size, momentum)
CASES = [
    ("medium", (32,) * 5, 10, 1024, 300, "full", "output", None, 0.0),
    ("medium", (32,) * 5, 10, 1024, 300, "full", "cross_entropy", None, 0.0),
    ("medium", (32,) * 5, 10, 1024, 300, "full", "input", None, 0.0),
    ("medium", (32,) * 5, 10, 1024, 300, "biases", "input", None, 0.0),
    ("medium", (32,) * 5, 10, 1024, 100, "cumulative", "input", None, 0.0),
    ("mlp", (64, 128, 128), 10, 1200, 60, "full", "output", None, 0.0),
    ("mlp", (64, 128, 128), 10, 1200, 60, "full", "cross_entropy", None, 0.0),
    ("mlp-sgd", (64, 128, 128), 10, 1200, 300, "full", "cross_entropy", 120, 0.9),
]


def problem(widths, Q, N, cost, seed=0):
    rng = np.random.default_rng(seed)
    square = len(set(widths)) == 1
    if square:
        Ws, bs = rf.random_network(widths[0], len(widths) - 1, seed=rng)
        Wo, bo = rng.standard_normal((Q, widths[-1])) / np.sqrt(widths[-1]), np.zeros(Q)
    else:
        Ws, bs, Wo, bo = rf.he_network(widths, Q, seed=rng)
        bs = [0.1 * rng.standard_normal(b.shape) for b in bs]
    X = rng.standard_normal((N, widths[0]))
    Y = {"input": rng.standard_normal((N, widths[0])), "output": rng.standard_normal((N, Q)),
         "cross_entropy": rng.integers(0, Q, N)}[cost]
    return Ws, bs, X, Y, Wo, bo


def floor_step(Ws, X, Wo, cost, mode, n, bs=None):
    """A callable doing exactly the matrix products of one step on n points, into preallocated outputs; with the
    biases ``bs`` also the elementwise passes every ReLU step needs: per layer z += b and max(z, 0) forward, the
    mask 1[x > 0] and its product with the adjoint backward (the ``floor+`` of the table)."""
    L = len(Ws)
    masks = [np.empty((n, W.shape[0]), dtype=bool) for W in Ws]
    X = np.ascontiguousarray(X[:n])
    A = [X] + [np.empty((n, W.shape[0])) for W in Ws]
    G = [np.empty((n, W.shape[0])) for W in Ws]
    gW = [np.empty_like(W) for W in Ws]
    M = X.shape[1]
    Winv = np.linalg.inv(np.linalg.multi_dot(Ws[::-1])) if cost == "input" else None
    head = np.empty((n, M if cost == "input" else Wo.shape[0]))
    XT, gWo, AW = np.empty((n, M)), np.empty_like(Wo), np.empty((M, M))
    weights = mode != "biases"

    def step():
        for l in range(L):
            np.matmul(A[l], Ws[l].T, out=A[l + 1])
            if bs is not None:
                np.add(A[l + 1], bs[l], out=A[l + 1])
                np.maximum(A[l + 1], 0.0, out=A[l + 1])
        if cost == "input":
            np.matmul(A[L], Winv.T, out=XT)
            np.matmul(XT, Winv, out=G[L - 1])
            np.matmul(G[L - 1].T, XT, out=AW)
        else:
            np.matmul(A[L], Wo.T, out=head)
            np.matmul(head.T, A[L], out=gWo)
            np.matmul(head, Wo, out=G[L - 1])
        for l in range(L - 1, -1, -1):
            if bs is not None:
                np.greater(A[l + 1], 0.0, out=masks[l])
                np.multiply(G[l], masks[l], out=G[l])
            if weights:
                np.matmul(G[l].T, A[l], out=gW[l])
            if l:
                np.matmul(G[l], Ws[l], out=G[l - 1])

    return step


def repeat(fn, n):
    for _ in range(n):
        fn()


def best_time(fn, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def jax_step_time(Ws, bs, X, Y, Wo, bo, cost, n_steps, repeats):
    """ms/step of a jitted full-batch step in JAX (float64), or None if JAX is not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    if cost == "input":
        return None

    def loss(p, X, Y):
        x = X
        for W, b in zip(p[0], p[1], strict=True):
            x = jax.nn.relu(x @ W.T + b)
        z = x @ p[2].T + p[3]
        if cost == "output":
            return 0.5 * jnp.mean(jnp.sum((z - Y) ** 2, axis=1))
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), Y])

    def step(_i, p):
        g = jax.grad(loss)(p, X, Y)
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g)

    # every step inside one compiled loop (lax.fori_loop): no Python dispatch between steps, JAX at its strongest
    loop = jax.jit(lambda p: jax.lax.fori_loop(0, n_steps, step, p))
    p = ([jnp.asarray(W) for W in Ws], [jnp.asarray(b) for b in bs], jnp.asarray(Wo), jnp.asarray(bo))
    jax.block_until_ready(loop(p))  # compile outside the timing

    return best_time(lambda: jax.block_until_ready(loop(p)), repeats)[0] / n_steps


def peak_allocation(run):
    import tracemalloc

    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(args):
    try:
        import torch

        from reluflow.testing.torch_peer import train_torch

        if args.threads:
            torch.set_num_threads(args.threads)
        tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch = train_torch = None
        tv = "torch not installed (skipped)"
    try:
        import jax

        jv = f"jax {jax.__version__}"
    except ImportError:
        jv = "jax not installed (skipped)"
    print(f"numpy {np.__version__}, {tv}, {jv}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"float64, CPU; best of {args.repeats}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    header = (f"{'case':<8} {'widths':<15} {'Q':>2} {'N':>5} {'B':>4} {'mu':>3} {'mode':<10} {'cost':<13} "
              f"{'steps':>5} {'ours ms':>8} {'step ms':>8} {'floor ms':>8} {'floor+ ms':>9} {'torch ms':>8} "
              f"{'jax ms':>7} {'ours/floor':>10} {'step/floor':>10} {'step/floor+':>11} {'torch/ours':>10} "
              f"{'jax/ours':>8} {'rel diff':>9}")
    print(header)
    print("-" * len(header))
    for name, widths, Q, N, steps, mode, cost, B, mu in CASES:
        if args.quick:
            steps = max(steps // 10, 5)
        Ws, bs, X, Y, Wo, bo = problem(widths, Q, N, cost)
        kw = dict(mode=mode, cost=cost, lr=0.01, weight_lr_ratio=0.5, n_steps=steps, record_every=steps,
                  W_out=Wo, b_out=bo, train_terminal=cost != "input", batch_size=B, momentum=mu, seed=1)
        floor = floor_step(Ws, X, Wo, cost, mode, N if B is None else B)
        floor_plus = floor_step(Ws, X, Wo, cost, mode, N if B is None else B, bs)
        floor()
        floor_plus()
        t_floor, t_plus, t_ours, t_torch = np.inf, np.inf, np.inf, np.inf
        ours = peer = None
        t_one = np.inf
        for _ in range(args.repeats):  # interleaved, so that load changes hit all alike
            t, ours = best_time(functools.partial(train, Ws, bs, X, Y, progress=False, **kw), 1)
            t_ours = min(t_ours, t)
            t, _ = best_time(functools.partial(train, Ws, bs, X, Y, progress=False, **dict(kw, n_steps=1)), 1)
            t_one = min(t_one, t)
            t, _ = best_time(functools.partial(repeat, floor, steps), 1)
            t_floor = min(t_floor, t)
            t, _ = best_time(functools.partial(repeat, floor_plus, steps), 1)
            t_plus = min(t_plus, t)
            if train_torch is not None:
                t, peer = best_time(functools.partial(train_torch, Ws, bs, X, Y, **kw), 1)
                t_torch = min(t_torch, t)
        t_jax = jax_step_time(Ws, bs, X, Y, Wo, bo, cost, steps, args.repeats) if B is None and mu == 0 else None
        diff = np.nan
        if peer is not None:
            keys = ["cost"] + (["cumulative_weights", "cumulative_biases"] if len(set(widths)) == 1
                               else [f"weights_{l}" for l in range(1, len(widths))])
            diff = max(float(np.abs(ours[k].values[-1] - peer[k][-1]).max() / np.abs(peer[k][-1]).max())
                       for k in keys)
        ms = 1e3 / steps
        jax_txt = f"{1e3 * t_jax:>7.3f}" if t_jax is not None else f"{'-':>7}"
        torch_txt = f"{ms * t_torch:>8.3f}" if np.isfinite(t_torch) else f"{'-':>8}"
        t_step = (t_ours - t_one) / (steps - 1)  # the marginal step: run overheads (validation, recording) removed
        print(f"{name:<8} {'-'.join(map(str, widths)):<15} {Q:>2} {N:>5} {B or N:>4} {mu:>3.1f} {mode:<10} "
              f"{cost:<13} {steps:>5} {ms * t_ours:>8.3f} {1e3 * t_step:>8.3f} {ms * t_floor:>8.3f} "
              f"{ms * t_plus:>9.3f} {torch_txt} {jax_txt} {t_ours / t_floor:>10.2f} {t_step * steps / t_floor:>10.2f} "
              f"{t_step * steps / t_plus:>11.2f} {t_torch / t_ours:>10.2f} "
              f"{(t_jax * steps / t_ours if t_jax is not None else np.nan):>8.2f} {diff:>9.1e}")
        sys.stdout.flush()
    print("\npeak traced allocation of one run (tracemalloc), by number of steps: equal peaks = no growth")
    Ws, bs, X, Y, Wo, bo = problem((64, 128, 128), 10, 1200, "cross_entropy")
    for B in (None, 120):
        peaks = []
        for n in (10, 100):
            kw = dict(mode="full", cost="cross_entropy", lr=0.01, n_steps=n, record_every=n, W_out=Wo, b_out=bo,
                      train_terminal=True, batch_size=B, momentum=0.9, progress=False)
            peaks.append(peak_allocation(functools.partial(train, Ws, bs, X, Y, **kw)))
        print(f"  64-128-128-10, N=1200, batch {B or 1200:>4}: {peaks[0] / 2**20:.2f} MiB at 10 steps, "
              f"{peaks[1] / 2**20:.2f} MiB at 100 steps")


if __name__ == "__main__":
    main(ARGS)

"""Throughput of train_many (B stacked networks in one call) against the same networks one by one, JAX, the floor.

For each case, B networks of one shape are trained full-batch with the cross-entropy for S steps on shared data,
and the script prints the time per network-step (process CPU time, best of ``--repeats``):

- ``loop``: :func:`reluflow.train` called once per network (the way a sweep runs today);
- ``many``: :func:`reluflow.training.batched.train_many`, all B in one call;
- ``jax``: a jitted JAX step (float64) with ``lax.fori_loop`` over the steps, one network after another, and
  ``vmap``: the same step vmapped over the B networks, jitted once (the strongest peer), if JAX is installed;
- ``floor``: only the matrix products one step of the B networks needs (forward, and the two backward products
  per layer), batched with ``np.matmul`` into preallocated outputs, right operands laid out contiguously.

Ratios: loop/many (> 1: batching helps), many/floor, and jax/many, vmap/many (> 1: ours is faster).

Usage: .venv/bin/python benchmarks/gd_batched.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

from pinning import pin_threads


def parse(argv=None):
    p = argparse.ArgumentParser(description="train_many against train in a loop, JAX and the floor")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    return pin_threads(p, argv)


ARGS = parse() if __name__ == "__main__" else None  # pins the BLAS threads before numpy loads

import numpy as np  # noqa: E402

from reluflow.training.batched import train_many  # noqa: E402
from reluflow.training.gd import train  # noqa: E402
from reluflow.training.init import he_network  # noqa: E402

#: (name, widths d0..dL, Q, N, B networks, S steps)
CASES = [("small", [4, 4, 4], 3, 64, 64, 200), ("sweep", [64, 32], 10, 600, 32, 60),
         ("medium", [32, 32, 32, 32, 32], 10, 1024, 8, 30)]


def best(fn, repeats):
    t = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        t = min(t, time.process_time() - t0)
    return t


def problem(widths, Q, N, B, seed=0):
    rng = np.random.default_rng(seed)
    nets = [he_network(widths, Q, seed=np.random.default_rng([seed, b])) for b in range(B)]
    X = rng.standard_normal((N, widths[0]))
    y = rng.integers(0, Q, N)
    return nets, X, y


def floor_time(widths, Q, N, B, S, repeats):
    rng = np.random.default_rng(1)
    dims = widths + [Q]
    A = [rng.standard_normal((B, N, d)) for d in dims]
    W = [rng.standard_normal((B, b, a)) for a, b in zip(dims[:-1], dims[1:])]
    WT = [np.ascontiguousarray(w.swapaxes(1, 2)) for w in W]  # the fast layout of a stacked right operand
    Z = [np.empty((B, N, b)) for b in dims[1:]]
    gW = [np.empty_like(w) for w in W]
    gA = [np.empty((B, N, a)) for a in dims[:-1]]

    def run():
        for _ in range(S):
            for l in range(len(W)):
                np.matmul(A[l], WT[l], out=Z[l])
            for l in range(len(W) - 1, -1, -1):
                np.matmul(Z[l].swapaxes(1, 2), A[l], out=gW[l])
                if l > 0:
                    np.matmul(Z[l], W[l], out=gA[l])
    return best(run, repeats)


def jax_times(nets, X, y, S, repeats):
    try:
        import jax
    except ImportError:
        return None, None
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def loss(p, X, y):
        x = X
        for W, b in zip(p[0], p[1], strict=True):
            x = jax.nn.relu(x @ W.T + b)
        z = x @ p[2].T + p[3]
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), y])

    def steps(p, X, y):
        def body(_, q):
            g = jax.grad(loss)(q, X, y)
            return jax.tree_util.tree_map(lambda a, b: a - 0.1 * b, q, g)
        return jax.lax.fori_loop(0, S, body, p)

    one = jax.jit(steps)
    many = jax.jit(jax.vmap(steps, in_axes=(0, None, None)))
    ps = [([jnp.asarray(W) for W in n[0]], [jnp.asarray(b) for b in n[1]], jnp.asarray(n[2]), jnp.asarray(n[3]))
          for n in nets]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ps)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    jax.block_until_ready(one(ps[0], Xj, yj))
    jax.block_until_ready(many(stacked, Xj, yj))
    t_one = best(lambda: [jax.block_until_ready(one(p, Xj, yj)) for p in ps], repeats)
    t_many = best(lambda: jax.block_until_ready(many(stacked, Xj, yj)), repeats)
    return t_one, t_many


def row(name, widths, Q, N, B, S, repeats):
    nets, X, y = problem(widths, Q, N, B)
    Ws = [np.stack([n[0][l] for n in nets]) for l in range(len(widths) - 1)]
    bs = [np.stack([n[1][l] for n in nets]) for l in range(len(widths) - 1)]
    Wo, bo = np.stack([n[2] for n in nets]), np.stack([n[3] for n in nets])

    def loop():
        for n in nets:
            train(n[0], n[1], X, y, mode="full", cost="cross_entropy", lr=0.1, n_steps=S, record_every=S,
                  W_out=n[2], b_out=n[3], train_terminal=True, max_condition=np.inf)

    t_loop = best(loop, repeats)
    t_many = best(lambda: train_many(Ws, bs, Wo, bo, X, y, lr=0.1, n_steps=S), repeats)
    t_floor = floor_time(widths, Q, N, B, S, repeats)
    t_jax, t_vmap = jax_times(nets, X, y, S, repeats)
    per = 1e6 / (B * S)

    def us(t):
        return f"{t * per:>8.2f}" if t is not None else f"{'-':>8}"

    def ratio(t, width):
        return f"{t / t_many:>{width}.2f}" if t is not None else f"{'-':>{width}}"

    return (f"{name:<7} {'-'.join(map(str, widths + [Q])):<18} {N:>5} {B:>4} {S:>4} {us(t_loop)} {us(t_many)} "
            f"{us(t_floor)} {us(t_jax)} {us(t_vmap)} {t_loop / t_many:>9.2f} {t_many / t_floor:>10.2f} "
            f"{ratio(t_jax, 8)} {ratio(t_vmap, 9)}")


def main():
    print(f"numpy {np.__version__}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; float64, CPU; "
          f"process time, best of {ARGS.repeats}; microseconds per network-step; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'case':<7} {'widths':<18} {'N':>5} {'B':>4} {'S':>4} {'loop':>8} {'many':>8} {'floor':>8} {'jax':>8} "
          f"{'vmap':>8} {'loop/many':>9} {'many/floor':>10} {'jax/many':>8} {'vmap/many':>9}")
    for case in CASES:
        print(row(*case, ARGS.repeats), flush=True)


if __name__ == "__main__":
    main()

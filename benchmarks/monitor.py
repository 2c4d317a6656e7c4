"""The training monitor's overhead, measured side by side with the same loop without it, in one run.

Two loops on the issue's sizes (N = 1024 points, widths 32-32-32-32-32 with Q = 10 outputs; and a 64-128-128-10
network on 1,200 points):

- a PyTorch loop (float64, CPU, full-batch SGD, cross-entropy) with and without ``reluflow.monitor.watch``
  around it, recording every ``--every`` steps (default 10, and 1 for the worst case);
- the project's engine: ``reluflow.train`` for the same steps, and ``monitor.from_trajectory`` on its recorded
  states, against the steps alone.

It prints ms per training step, ms per recorded state, and the overhead of the monitor as a share of the
loop's time. The PyTorch loops (alone and with each ``every``) run interleaved, repeat after repeat, and each keeps
its best process CPU time, so a slow spell of a shared machine does not land on one variant only. Without torch
the PyTorch rows are skipped.

Usage: .venv/bin/python benchmarks/monitor.py [--steps 300] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

from pinning import pin_threads


def parse(argv=None):
    p = argparse.ArgumentParser(description="reluflow.monitor overhead against the same loop without it")
    p.add_argument("--steps", type=int, default=300, help="training steps per loop (default 300)")
    p.add_argument("--repeats", type=int, default=5, help="best of this many loops (default 5)")
    return pin_threads(p, argv)


ARGS = parse() if __name__ == "__main__" else None  # pins the BLAS threads before numpy loads

import numpy as np  # noqa: E402

import reluflow as rf  # noqa: E402
from reluflow import monitor  # noqa: E402
from reluflow.theory import generic  # noqa: E402

CASES = {"medium (N=1024, 32x5, Q=10)": ((32,) * 5, 10, 1024), "mlp (N=1200, 64-128-128, Q=10)": ((64, 128, 128), 10,
                                                                                                1200)}


def best(fn, repeats):
    t = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def torch_rows(widths, Q, N, steps, repeats, rng):
    try:
        import torch
        from torch import nn
    except ImportError:
        return ["  PyTorch: not installed, skipped"]
    torch.set_num_threads(ARGS.threads if ARGS else 1)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    X = rng.standard_normal((N, widths[0]))
    y = rng.integers(0, Q, N)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def make():
        torch.manual_seed(0)
        return nn.Sequential(*[type(m)(m.in_features, m.out_features) if isinstance(m, nn.Linear) else nn.ReLU()
                               for m in layers], nn.Linear(widths[-1], Q)).double()

    def loop(every=None):
        model = make()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        ctx = monitor.watch(model, X, y, every=every) if every else None
        if ctx:
            ctx.__enter__()
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xt), yt).backward()
            opt.step()
            if ctx:
                ctx.step()
        if ctx:
            ctx.__exit__(None, None, None)
            ctx.result()

    # the loops are interleaved, repeat by repeat, so a slow spell of the machine hits every variant alike; each
    # variant keeps its best (CPU) time
    variants = (None, 50, 20, 10, 1)
    times = dict.fromkeys(variants, np.inf)
    for _ in range(repeats):
        for every in variants:
            t0 = time.process_time()
            loop(every)
            times[every] = min(times[every], time.process_time() - t0)
    base = times[None]
    step = base / steps
    out = [f"  PyTorch loop alone: {1e3 * step:.3f} ms/step"]
    per_record = []
    for every in variants[1:]:
        t = times[every]
        n_rec = steps // every + 1
        per_record.append((t - base) / n_rec)
        out.append(f"  PyTorch + watch(every={every}): {1e3 * t / steps:.3f} ms/step; overhead "
                   f"{100 * (t - base) / base:.1f} % of the loop, {1e3 * (t - base) / n_rec:.2f} ms per recorded state")
    # the floor of one record: the no-grad forward pass on X that the hooks observe, and the backward pass of the
    # gradient-path probe (N_eff needs v^T J_i for every point); every other quantity is extra
    model = make()
    with monitor.watch(model, X, y) as mon:
        snap = mon._model.snapshot()
    T = [z <= 0.0 for z in snap.pre]

    def floor():
        with torch.no_grad():
            model(Xt)
        generic._probe_truncated(snap.weights, T)

    f = best(lambda: [floor() for _ in range(50)], repeats) / 50
    rec = float(np.median(per_record[1:]))  # every=1's loop is the best-resolved, every=50's the least
    needed = int(np.ceil(rec / (0.05 * step)))
    out.append(f"  one record: {1e3 * rec:.2f} ms = {rec / f:.2f}x its floor ({1e3 * f:.2f} ms: a no-grad forward "
               f"pass on X and the probe's backward pass) = {rec / step:.2f} training steps; overhead <= 5 % from "
               f"every = {needed} (the floor alone: every >= {int(np.ceil(f / (0.05 * step)))})")
    return out


def engine_rows(widths, Q, N, steps, repeats, rng):
    Ws, bs, Wo, bo = rf.he_network(list(widths), Q, seed=rng)
    X = rng.standard_normal((N, widths[0]))
    y = rng.integers(0, Q, N)
    out = []

    def run(e, holder):
        holder["ds"] = rf.train(Ws, bs, X, y, mode="full", cost="cross_entropy", W_out=Wo, b_out=bo,
                                train_terminal=True, lr=0.05, n_steps=steps, record_every=e, max_condition=np.inf)

    for every in (50, 10, 1):
        holder = {}
        t_train = best(lambda e=every, h=holder: run(e, h), repeats)
        t_mon = best(lambda h=holder: monitor.from_trajectory(h["ds"], X, y), repeats)
        n_rec = holder["ds"].sizes["time"]
        out.append(f"  engine, record_every={every}: train {1e3 * t_train / steps:.3f} ms/step (recording included); "
                   f"from_trajectory {1e3 * t_mon / n_rec:.2f} ms per recorded state, "
                   f"{100 * t_mon / t_train:.1f} % of the run")
    return out


def main():
    args = ARGS or parse([])
    rng = np.random.default_rng(0)
    print(f"reluflow.monitor overhead; {args.steps} steps, best of {args.repeats}, {args.threads} thread(s)")
    for name, (widths, Q, N) in CASES.items():
        print(name)
        for line in torch_rows(widths, Q, N, args.steps, args.repeats, rng) + engine_rows(widths, Q, N, args.steps,
                                                                                          args.repeats, rng):
            print(line)


if __name__ == "__main__":
    main()

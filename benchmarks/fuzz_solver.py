"""Fuzz the exact solver: ``python benchmarks/fuzz_solver.py --n 10000 --seed 0 [--workers 2]``.

Draws ``n`` random deep problems (:func:`reluflow.testing.fuzz.draw_problem`; problem p from child p
of ``SeedSequence(seed).spawn(n)``, so the counts do not depend on scheduling), runs
``solve(method="exact")`` on each under a time limit and prints: early stops (status -1),
errors, time-outs, non-finite outputs, the slowest problem and its time, the distribution of
event counts, and the indices of the failing problems.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from reluflow.testing.fuzz import TIME_LIMIT, fuzz, summarize


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT)
    ap.add_argument("--json", help="write every result to this JSON file")
    ap.add_argument("--compare", action="store_true",
                    help="instead: method='general' (default rtol/atol) against 'exact', max |θ_g − θ_e| at the "
                         "requested times both reach, over the n problems")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args)
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as ex:
            results = fuzz(args.n, args.seed, start=args.start, executor=ex, time_limit=args.time_limit)
    else:
        results = fuzz(args.n, args.seed, start=args.start, time_limit=args.time_limit)
    s = summarize(results)
    print(f"{s['n']} problems (seed {args.seed}, start {args.start}) in {time.perf_counter() - t0:.1f} s wall, "
          f"{s['total_time']:.1f} s of solves")
    print(f"completed {s['completed']}, early stops (status -1) {s['early_stops']}, other status "
          f"{s['other_status']}, errors {s['errors']}, time-outs {s['timeouts']}, non-finite {s['non_finite']}")
    idx, wall, nev = s["slowest"]
    print(f"slowest: problem {idx}, {wall:.2f} s, {nev} events")
    print("time percentiles (s):", {k: round(v, 4) for k, v in s["time_percentiles"].items()})
    print("event-count percentiles:", s["event_percentiles"])
    print("failing problems:", s["failures"])
    msgs = Counter(r.message.split(": ", 1)[-1][:90] for r in results if r.status != 0)
    for m, c in msgs.most_common(10):
        print(f"  {c:5d} × {m}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.as_dict() for r in results], fh)


def compare(args):
    from reluflow.testing.fuzz import compare_backends

    out = []
    for i in range(args.start, args.start + args.n):
        out.append(compare_backends(args.seed, i, time_limit=args.time_limit))
        c = out[-1]
        print(f"  problem {i}: exact {c.exact_status}, general {c.general_status}, {c.n_compared} times, "
              f"max error {c.max_error:.3g}, general {c.general_time:.2f} s", flush=True)
    err = np.array([c.max_error for c in out if c.n_compared > 0 and c.exact_status == 0])
    print(f"{len(out)} problems: exact status {Counter(c.exact_status for c in out)}, general status "
          f"{Counter(c.general_status for c in out)}; compared at >= 1 requested time: {err.size}")
    q = [50, 90, 95, 99, 100]
    print("max |θ_general − θ_exact| percentiles:", dict(zip(q, np.percentile(err, q).tolist())) if err.size else {})
    for thr in (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4):
        print(f"  > {thr:.0e}: {int(np.sum(err > thr))}")
    worst = sorted((c for c in out if c.n_compared > 0), key=lambda c: -c.max_error)[:8]
    print("worst:", [(c.index, f"{c.max_error:.2e}", c.general_status) for c in worst])
    times = [c.general_time for c in out]
    print(f"general wall time: median {np.median(times):.2f} s, max {max(times):.2f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([c.__dict__ for c in out], fh)


if __name__ == "__main__":
    main()

"""Gradient descent on the series' setting from near its explicit minimiser and from random starts (notebook 09).

The constructions and the reading of a run live in :mod:`reluflow.theory.constructions` and
:mod:`reluflow.theory.series`; this module trains (:func:`reluflow.training.gd.train`), so it sits in the training
layer, above them:

- gradient descent from near CE23's minimum and from random starts, read by
  :func:`~reluflow.theory.constructions.descent_outcome`                      → :func:`descent_runs`
- the outcomes counted over :data:`reluflow.theory.series.DESCENT_OUTCOMES`  → :func:`descent_outcome_counts`
- the final class states of the stalled runs                                  → :func:`stalled_patterns`
- the fraction of starts with n classes collapsed, over time                  → :func:`collapsed_fraction`
"""

from __future__ import annotations

import warnings

import numpy as np

from reluflow.theory.constructions import ce23_draw, ce23_global_minimum, descent_outcome
from reluflow.theory.network import random_network
from reluflow.theory.series import DESCENT_OUTCOMES
from reluflow.training.gd import train
from reluflow.validation import as_generator, as_interval, as_real, check_positive_int

__all__ = ["descent_runs", "descent_outcome_counts", "stalled_patterns", "collapsed_fraction"]


def descent_runs(Q: int, n_per_class: int, c0_range, n_starts: int, start_noise: float, lr: float, n_steps: int,
                 rng) -> dict:
    """Gradient descent (:func:`reluflow.training.gd.train`, mode ``"full"``, output cost with weights 1/(QN_j),
    i.e. C_𝒩/(2Q), terminal layer trained with its bias) on CE23's setting Q = M = L, from two kinds of start.

    ``"near"``: CE23 Thm 2.3's network (μ at the midpoint, fixed rotations) with every parameter plus
    ``start_noise`` times a standard normal; ``"random"``: :func:`reluflow.random_network` and a terminal layer
    G/√Q, bias 0. Each run is read by :func:`~reluflow.theory.constructions.descent_outcome` at 20 recorded
    times or so; a diverging run stops early (its RuntimeWarnings are silenced) and counts as it ends. Order
    of draws from ``rng``: the data seed, then the near starts' noise, then each random start's seed and
    terminal weights. Returns {"near": [...], "random": [...]}, each a list of outcome dicts with ``time``.
    """
    Q = check_positive_int(Q, "Q", minimum=2)
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    c0_range = as_interval(c0_range, "c0_range")
    n_starts = check_positive_int(n_starts, "n_starts")
    start_noise = as_real(start_noise, "start_noise", minimum=0.0, strict=True)
    lr = as_real(lr, "lr", minimum=0.0, strict=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    rng = as_generator(rng)
    Xg, labg, _ = ce23_draw(Q, n_per_class, c0_range, seed=rng.integers(2**63))
    star = ce23_global_minimum(Xg, labg)
    Yg, wg = np.eye(Q)[labg], 1.0 / (Q * np.bincount(labg)[labg])
    runs = {"near": [], "random": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a diverged start stops early and is counted as "other"
        for kind in runs:
            for _ in range(n_starts):
                if kind == "near":
                    Ws = [W + start_noise * rng.standard_normal(W.shape) for W in star.weights]
                    bs = [b + start_noise * rng.standard_normal(b.shape) for b in star.biases]
                else:
                    Ws, bs = random_network(Q, Q, seed=rng.integers(2**63))
                    Ws, bs = Ws + [rng.standard_normal((Q, Q)) / np.sqrt(Q)], bs + [np.zeros(Q)]
                ds = train(Ws[:-1], bs[:-1], Xg, Yg, mode="full", cost="output", lr=lr, n_steps=n_steps,
                           record_every=max(1, n_steps // 20), W_out=Ws[-1], b_out=bs[-1], train_terminal=True,
                           point_weights=wg)
                runs[kind].append(descent_outcome(ds, Xg, labg) | {"time": ds.time.values})
    return runs


def _runs(runs, name="runs"):
    if not isinstance(runs, dict) or not runs:
        raise TypeError(f"{name} must be a non-empty dict {{kind: list of outcome dicts}} (from descent_runs); "
                        f"got {type(runs).__name__}")
    for kind, rs in runs.items():
        if not rs or not all(isinstance(r, dict) and {"outcome", "states", "s"} <= set(r) for r in rs):
            raise ValueError(f"{name}[{kind!r}] must be a non-empty list of descent_outcome dicts")
    return runs


def descent_outcome_counts(runs) -> dict:
    """{kind: {outcome: number of runs}} over :data:`DESCENT_OUTCOMES`, in that order."""
    runs = _runs(runs)
    unknown = {r["outcome"] for rs in runs.values() for r in rs} - set(DESCENT_OUTCOMES)
    if unknown:
        raise ValueError(f"runs: outcomes must be among {DESCENT_OUTCOMES}; got {sorted(unknown)}")
    return {kind: {o: sum(r["outcome"] == o for r in rs) for o in DESCENT_OUTCOMES} for kind, rs in runs.items()}


def stalled_patterns(rs) -> dict:
    """{s: count} of the final class states s (1 = class untouched) of the runs of Thm 2.4/2.5 type, sorted by s
    (s a tuple of Python ints, so that it prints as (1, 0, 1))."""
    (rs,) = _runs({"runs": rs}).values()
    stalled = [tuple(int(v) for v in r["s"]) for r in rs if r["outcome"] == "Thm 2.4/2.5 type"]
    return {p: stalled.count(p) for p in sorted(set(stalled))}


def collapsed_fraction(runs, Q: int) -> np.ndarray:
    """(kind, n_collapsed = 0..Q, time): the fraction of starts with n_collapsed classes collapsed to one point."""
    runs = _runs(runs)
    Q = check_positive_int(Q, "Q")
    n_coll = np.stack([np.array([(r["states"] == 0).sum(axis=1) for r in rs]) for rs in runs.values()])
    return np.stack([(n_coll == c).mean(axis=1) for c in range(Q + 1)], axis=1)

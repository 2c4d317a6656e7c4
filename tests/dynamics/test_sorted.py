"""Tests of the one-layer sorted backend (reluflow.dynamics.sorted) beyond tests/dynamics/test_solve.py.

Oracles: the event-time formula Δt = (λ² N/n) log((ŷ − θ_m)/(ŷ − u_(m+1))) for a tie group, and the
invariance of the result under a permutation of the points.
"""

from __future__ import annotations

import numpy as np

import reluflow as rf
from reluflow.dynamics.solver import solve
from reluflow.dynamics.sorted import one_layer_sweep


def test_sliding_on_a_tie_group_overflows_the_event_buffer():
    # u = (0, 1, 1): the threshold crosses the tied pair, whose targets then pull it back: it slides on
    # u = 1. Two crossings and two sliding events: more events than points (N M = 3).
    X = np.array([[0.0], [1.0], [1.0]])
    targets = np.array([[10.0], [-100.0], [-100.0]])
    net = rf.adapted_network(np.ones((1, 1, 1)), np.ones((1, 1)), np.array([[0.5]]))
    ds = solve(net, X, targets, [1.0, 5.0])
    got = list(zip(ds.event_point.values.tolist(), ds.event_kind.values.tolist()))
    assert got == [(1, "truncated"), (2, "truncated"), (1, "sliding"), (2, "sliding")]
    t_cross = 3.0 / 1.0 * np.log((10.0 - 0.5) / (10.0 - 1.0))  # λ² N / n · log(...), n = 1
    np.testing.assert_allclose(ds.event_time.values, t_cross, rtol=1e-12)
    assert ds.thresholds.sel(time=5.0).item() == 1.0 and ds.sliding.sel(time=5.0).item() == 1


def test_events_do_not_depend_on_the_order_of_the_points():
    rng = np.random.default_rng(5)
    N, M = 200, 3
    U = np.round(rng.uniform(-1, 1, size=(M, N)) * 9) / 9  # many ties
    Y = rng.uniform(1.5, 2.5, size=(M, 1))
    w = np.full(N, 1.0 / N)
    lam2, theta0 = np.ones(M), np.full(M, -0.95)
    a = one_layer_sweep(U, Y, w, lam2, theta0, 5.0)
    perm = rng.permutation(N)
    b = one_layer_sweep(U[:, perm], Y, w, lam2, theta0, 5.0)
    np.testing.assert_array_equal(a.event_time, b.event_time)
    np.testing.assert_array_equal(a.event_coordinate, b.event_coordinate)
    np.testing.assert_array_equal(a.event_kind, b.event_kind)
    # the same points, renamed; coordinate by coordinate, in time order, ties in increasing point index
    key = np.lexsort((a.event_point, a.event_time, a.event_coordinate))
    np.testing.assert_array_equal(key, np.arange(key.size))
    pb = perm[b.event_point]
    key_b = np.lexsort((pb, b.event_time, b.event_coordinate))
    np.testing.assert_array_equal(pb[key_b], a.event_point)

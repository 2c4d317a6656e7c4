"""train_many: B stacked networks trained in one call.

Oracle: the project's engine run network by network (reluflow.train, mode "full", full batch), whose gradients are
checked against autodiff in tests/training/test_training.py; agreement to round-off (1e-12 relative), since the
batched products may sum in another order.
"""

from __future__ import annotations

import numpy as np
import pytest

from reluflow.training.batched import train_many
from reluflow.training.gd import train
from reluflow.training.init import he_network


def _stack(widths, Q, B, seed):
    nets = [he_network(widths, Q, seed=np.random.default_rng([seed, b])) for b in range(B)]
    for _, bias, _, bo in nets:  # nonzero biases, so their gradients are tested too
        for v in bias:
            v += 0.05
        bo += 0.01
    return ([np.stack([n[0][l] for n in nets]) for l in range(len(widths) - 1)],
            [np.stack([n[1][l] for n in nets]) for l in range(len(widths) - 1)],
            np.stack([n[2] for n in nets]), np.stack([n[3] for n in nets]), nets)


def _final(traj, L):
    last = traj.isel(time=-1)
    W = [last[f"weights_{l + 1}"].values for l in range(L)]
    b = [last[f"biases_{l + 1}"].values for l in range(L)]
    return W, b, last.output_weights.values, last.output_biases.values


@pytest.mark.parametrize("cost", ["cross_entropy", "output"])
@pytest.mark.parametrize("shared", [True, False])
def test_train_many_is_train_network_by_network(cost, shared):
    widths, Q, B, N = [5, 4, 3], 3, 4, 30
    rng = np.random.default_rng(7)
    Ws, bs, Wo, bo, nets = _stack(widths, Q, B, seed=1)
    X = rng.standard_normal((N, 5)) if shared else rng.standard_normal((B, N, 5))
    labels = rng.integers(0, Q, N if shared else (B, N))
    targets = labels if cost == "cross_entropy" else np.eye(Q)[labels]
    pw = rng.uniform(size=(B, N)) * (rng.uniform(size=(B, N)) < 0.7)  # a kept subset per network, uneven weights
    lr = np.array([0.05, 0.1, 0.2, 0.3])
    run = train_many(Ws, bs, Wo, bo, X, targets, cost=cost, lr=lr, weight_lr_ratio=0.5, n_steps=40,
                     record_every=10, point_weights=pw)
    assert run.status.tolist() == [0] * B and run.steps.tolist() == [0, 10, 20, 30, 40]
    for b, (W0, b0, Wo0, bo0) in enumerate(nets):
        Xb = X if shared else X[b]
        tb = targets if shared else targets[b]
        traj = train(W0, b0, Xb, tb, mode="full", cost=cost, lr=float(lr[b]), weight_lr_ratio=0.5, n_steps=40,
                     record_every=10, W_out=Wo0, b_out=bo0, train_terminal=True, point_weights=pw[b])
        ref = _final(traj, 2)
        got = run.network(b)
        for a, r in zip([*got[0], *got[1], got[2], got[3]], [*ref[0], *ref[1], ref[2], ref[3]]):
            np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12 * np.abs(r).max())
        np.testing.assert_allclose(run.cost[b], traj.cost.values, rtol=1e-12)


def test_frozen_terminal_and_inputs_untouched():
    widths, Q, B = [3, 3], 2, 2
    Ws, bs, Wo, bo, nets = _stack(widths, Q, B, seed=2)
    copies = [a.copy() for a in [*Ws, *bs, Wo, bo]]
    X = np.random.default_rng(0).standard_normal((10, 3))
    run = train_many(Ws, bs, Wo, bo, X, np.arange(10) % 2, n_steps=5, train_terminal=False)
    np.testing.assert_array_equal(run.W_out, Wo)
    np.testing.assert_array_equal(run.b_out, bo)
    assert all(np.array_equal(a, c) for a, c in zip([*Ws, *bs, Wo, bo], copies))  # the caller's arrays are kept
    assert run.steps.tolist() == [0, 5] and "2 networks 3-3-2" in repr(run)


def test_a_diverging_network_is_frozen_and_the_others_go_on():
    widths, Q, B = [4, 6], 3, 3
    Ws, bs, Wo, bo, nets = _stack(widths, Q, B, seed=3)
    rng = np.random.default_rng(1)
    X = 50.0 * rng.standard_normal((20, 4))
    Y = np.eye(3)[rng.integers(0, 3, 20)]
    with pytest.warns(RuntimeWarning, match=r"1 of 3 networks diverged .* networks \[1\]"):
        run = train_many(Ws, bs, Wo, bo, X, Y, cost="output", lr=np.array([1e-5, 50.0, 1e-5]), n_steps=60,
                         record_every=1)
    assert run.status.tolist() == [0, -2, 0] and run.diverged_step[1] > 0
    assert np.isnan(run.cost[1, run.diverged_step[1]:]).all() and np.isfinite(run.cost[[0, 2]]).all()
    ref = train(nets[0][0], nets[0][1], X, Y, mode="full", cost="output", lr=1e-5, n_steps=60, W_out=nets[0][2],
                b_out=nets[0][3], train_terminal=True)
    np.testing.assert_allclose(run.network(0)[2], ref.output_weights.values[-1], rtol=1e-12)


@pytest.mark.parametrize("change, match", [
    (dict(cost="input"), "cost must be one of"),
    (dict(lr=-1.0), "lr must be a positive finite number"),
    (dict(lr=np.ones(5)), r"lr must be a positive number or an array \(2,\)"),
    (dict(n_steps=0), "n_steps"),
    (dict(record_every=0), "record_every"),
    (dict(point_weights=np.zeros(8)), "point_weights must be finite, non-negative, with a positive sum"),
    (dict(point_weights=np.ones(7)), r"point_weights must have shape \(8,\)"),
    (dict(targets=np.full(8, 2)), r"targets must be integer labels in 0..1"),
    (dict(X=np.ones((8, 4))), r"X must have shape \(N, 3\)"),
    (dict(X=np.full((8, 3), np.nan)), "X must be finite"),
    (dict(weights="W"), "weights must be a non-empty list"),
    (dict(b_out=np.zeros((3, 2))), r"b_out must have shape \(B, 2\) with B = 2"),
    (dict(train_terminal=1), "train_terminal must be True or False"),
])
def test_bad_input_names_the_argument(change, match):
    Ws, bs, Wo, bo, _ = _stack([3, 2], 2, 2, seed=0)
    kw = dict(weights=Ws, biases=bs, W_out=Wo, b_out=bo, X=np.ones((8, 3)), targets=np.arange(8) % 2)
    kw.update(change)
    args = [kw.pop(k) for k in ("weights", "biases", "W_out", "b_out", "X", "targets")]
    with pytest.raises((ValueError, TypeError), match=match):
        train_many(*args, **kw)

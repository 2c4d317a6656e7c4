"""Every trajectory producer follows reluflow.results.schema (check_dataset): solve, train, spectral_trajectory,
effective_comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import reluflow as rf
from reluflow.dynamics.solver import solve
from reluflow.results.schema import STATUS, check_dataset
from reluflow.theory.adapted import rotation
from reluflow.theory.costs import targets_by_label
from reluflow.training.comparison import effective_comparison
from reluflow.training.gd import MODES, train
from reluflow.training.spectral import spectral_trajectory


def two_clusters(L):
    data = rf.clustered_data([[-1.0, 0.6], [1.0, -0.6]], 0.7, 8, seed=3)
    Y = targets_by_label([[-1.6, 1.4], [1.5, -0.2]], data.labels)
    net = rf.adapted_network([rotation(0.0), rotation(35.0)][:L], [[1.0, 1.3], [0.9, 1.1]][:L],
                             [[-1.2, 0.3], [-0.6, -1.0]][:L])
    return net, data.points, Y


@pytest.mark.parametrize("method,L", [("exact", 1), ("exact", 2), ("general", 1)])
def test_solve_follows_the_schema(method, L):
    net, X, Y = two_clusters(L)
    check_dataset(solve(net, X, Y, np.linspace(0.1, 2.0, 6), method=method), where=f"solve({method}, L={L})")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("terminal", [False, True])
def test_train_follows_the_schema(mode, terminal):
    net, X, Y = two_clusters(2)
    Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
    rng = np.random.default_rng(0)
    kw = dict(mode=mode, lr=0.05, weight_lr_ratio=0.5, n_steps=6, record_every=2)
    if terminal:
        kw.update(cost="output", W_out=rng.standard_normal((2, 2)), b_out=np.zeros(2), train_terminal=True)
        Y = rng.standard_normal(Y.shape)
    ds = train(Ws, bs, X, Y, **kw)
    check_dataset(ds, where=f"train({mode}, terminal={terminal})")
    assert ds.attrs["status"] == 0 and ds.step.dims == ("time",)
    np.testing.assert_allclose(ds.time.values, 0.05 * ds.step.values, rtol=0, atol=1e-15)


def test_a_diverging_train_run_follows_the_schema():
    net, X, Y = two_clusters(2)
    Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
    W_out, b_out = np.array([[1.0, 0.5], [-0.3, 2.0]]), np.zeros(2)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        ds = train(Ws, bs, X, Y, mode="full", cost="output", lr=1e3, n_steps=500, record_every=100, W_out=W_out,
                   b_out=b_out, train_terminal=True)
    check_dataset(ds, where="diverging train")
    assert ds.attrs["status"] == -2 and STATUS[ds.attrs["status"]] == ds.attrs["status_name"] == "diverged"


def test_spectral_trajectory_follows_the_schema():
    net, X, Y = two_clusters(1)
    Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
    run = train(Ws, bs, X, Y, mode="adapted", weight_lr_ratio=0.0, lr=0.05, n_steps=8)
    check_dataset(spectral_trajectory(run, X, Y), where="spectral_trajectory(train)")
    sol = solve(net, X, Y, np.linspace(0.1, 2.0, 6), method="exact")
    check_dataset(spectral_trajectory(sol, X, Y, net=net), where="spectral_trajectory(solve)")
    W_out = np.array([[1.0, 0.5], [-0.3, 2.0]])
    for terminal in ("cumulative", "layer"):
        check_dataset(spectral_trajectory(sol, X, Y, net=net, W_out=W_out, terminal=terminal),
                      where=f"spectral_trajectory(solve, terminal={terminal})")


def test_effective_comparison_follows_the_schema():
    net, X, Y = two_clusters(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = effective_comparison(net, X, Y, weight_lr_ratio=0.3, lr=0.05, n_steps=10, record_every=5)
    check_dataset(ds, where="effective_comparison")
    assert ds.attrs["status"] == 0 and ds.adaptedness.dims == ("time", "layer")

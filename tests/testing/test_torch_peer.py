"""The PyTorch peer (optional `bench` extra) and our engine produce the same trajectories."""

from __future__ import annotations

import numpy as np
import pytest

import reluflow as rf
from reluflow.training.gd import train

torch = pytest.importorskip("torch")

from reluflow.testing.torch_peer import train_torch  # noqa: E402

CASES = [(m, c, t) for m in ("biases", "adapted", "full", "cumulative") for c, t in
         (("input", False), ("output", False), ("output", True))]


@pytest.mark.parametrize("mode,cost,terminal", CASES)
def test_trajectories_agree_with_torch(mode, cost, terminal):
    rng = np.random.default_rng(17)
    M, L, N, Q = 4, 3, 40, 3
    if mode == "adapted":
        Ws, bs = rf.layer_parameters(*rf.random_adapted_network(M, L, seed=4).cumulative_parameters())
    else:
        Ws, bs = rf.random_network(M, L, seed=4)
    X = rng.standard_normal((N, M))
    Y = rng.standard_normal((N, M if cost == "input" else Q))
    kw = dict(mode=mode, cost=cost, lr=0.05, weight_lr_ratio=0.6, n_steps=200, record_every=20,
              W_out=rng.standard_normal((Q, M)), b_out=rng.standard_normal(Q), train_terminal=terminal,
              point_weights=rng.uniform(0.5, 1.5, N) / N)
    ours = train(Ws, bs, X, Y, **kw)
    peer = train_torch(Ws, bs, X, Y, **kw)
    assert ours.attrs["status"] == 0
    np.testing.assert_allclose(ours.time.values, peer["time"], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ours.step.values, peer["step"])
    for name in ("cost", "cumulative_weights", "cumulative_biases", "output_weights", "output_biases"):
        a, b = ours[name].values, peer[name]
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max(), name
    assert ours.cost.values[-1] < ours.cost.values[0]


GENERIC = [  # widths, cost, mode, batch_size, momentum
    ((5, 8, 3), "output", "full", None, 0.0),
    ((6, 3, 7, 4), "cross_entropy", "full", None, 0.0),
    ((4, 9, 2), "cross_entropy", "full", 7, 0.0),
    ((4, 2, 6), "output", "full", 9, 0.8),
    ((3, 6, 6), "cross_entropy", "biases", 10, 0.5),
    ((3, 3, 3), "cross_entropy", "full", 8, 0.9),  # square: recorded through the cumulative schema
]


@pytest.mark.parametrize("widths,cost,mode,batch_size,momentum", GENERIC)
def test_generic_trajectories_agree_with_torch(widths, cost, mode, batch_size, momentum):
    """Oracle: torch autograd of its own forward pass, with its own renormalisation and heavy-ball update on the
    batch order of minibatches; relative difference ≤ 1e-10 at every recorded step over 50 steps."""
    rng = np.random.default_rng(23)
    N, Q = 40, 3
    Ws, bs, Wo, bo = rf.he_network(widths, Q, seed=5)
    bs = [0.1 * rng.standard_normal(b.shape) for b in bs]
    X = rng.standard_normal((N, widths[0]))
    Y = rng.integers(0, Q, N) if cost == "cross_entropy" else rng.standard_normal((N, Q))
    kw = dict(mode=mode, cost=cost, lr=0.05, weight_lr_ratio=0.8, n_steps=50, record_every=10, W_out=Wo, b_out=bo,
              train_terminal=True, point_weights=rng.uniform(0.5, 1.5, N) / N, batch_size=batch_size,
              momentum=momentum, seed=3)
    ours = train(Ws, bs, X, Y, **kw)
    peer = train_torch(Ws, bs, X, Y, **kw)
    assert ours.attrs["status"] == 0
    np.testing.assert_array_equal(ours.step.values, peer["step"])
    square = len(set(widths)) == 1
    L = len(widths) - 1
    names = ["cost", "output_weights", "output_biases"]
    names += ["cumulative_weights", "cumulative_biases"] if square else \
        [f"{k}_{l}" for l in range(1, L + 1) for k in ("weights", "biases")]
    for name in names:
        a, b = ours[name].values, peer[name]
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max(), name
    assert ours.cost.values[-1] < ours.cost.values[0]

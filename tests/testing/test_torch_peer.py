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

"""reluflow.monitor: the recorded counts against a brute-force recount, on the project's arrays and on PyTorch.

Oracles: brute force (loops over points, units and layers on a plain numpy forward pass written here); the
per-point product D_L W_L ⋯ D_1 for the gradient path; for PyTorch, the same recount on the module's weights.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reluflow import monitor  # noqa: E402
from reluflow.results.schema import check_dataset  # noqa: E402


def _layers(widths, seed, shift=-0.3):
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i]) for i in range(len(widths) - 1)]
    bs = [rng.standard_normal(widths[i + 1]) * 0.5 + shift for i in range(len(widths) - 1)]
    return Ws, bs


def _recount(Ws, bs, X):
    """Brute force: per point and unit, pre-activation ≤ 0, with explicit loops."""
    N, L = X.shape[0], len(Ws)
    T = [np.zeros((N, W.shape[0]), bool) for W in Ws]
    J_nonzero = np.zeros(N, bool)
    for i in range(N):
        h, J = X[i], None
        for ell, (W, b) in enumerate(zip(Ws, bs)):
            z = W @ h + b
            for k in range(z.size):
                T[ell][i, k] = z[k] <= 0
            D = np.diag((z > 0).astype(float))
            J = D if J is None else D @ W @ J
            h = np.maximum(z, 0)
        J_nonzero[i] = np.any(J != 0)
    counts = [t.sum(axis=0) for t in T]
    frozen = np.zeros(N, int)
    for i in range(N):
        for ell in range(L):
            if T[ell][i].all():
                frozen[i] = ell + 1
                break
    frac = np.array([sum(t[i].sum() for t in T) / sum(t.shape[1] for t in T) for i in range(N)])
    return counts, [int(t.all(axis=0).sum()) for t in T], frozen, frac, J_nonzero


class _Net:
    def __init__(self, Ws, bs, W_out=None, b_out=None):
        self.weights, self.biases, self.W_out, self.b_out = Ws, bs, W_out, b_out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("widths", [[3, 5, 4, 2], [4, 2, 6], [2, 3]])
def test_counts_equal_a_brute_force_recount_along_a_run(seed, widths):
    rng = np.random.default_rng(100 + seed)
    Ws, bs = _layers(widths, seed)
    X = rng.standard_normal((30, widths[0]))
    net = _Net([W.copy() for W in Ws], [b.copy() for b in bs])
    states = []
    with monitor.watch(net, X, every=2) as mon:
        states.append(([W.copy() for W in net.weights], [b.copy() for b in net.biases]))
        for step in range(1, 7):
            for b in net.biases:  # an in-place update, as a training loop would make
                b -= 0.15 + 0.05 * rng.standard_normal(b.shape)
            net.weights[0] = net.weights[0] * 1.1  # and a rebinding
            mon.step()
            if step % 2 == 0:
                states.append(([W.copy() for W in net.weights], [b.copy() for b in net.biases]))
    ds = mon.result()
    check_dataset(ds, where="monitor result")
    assert ds.step.values.tolist() == [0, 2, 4, 6] and ds.sizes["point"] == 30
    for s, (W_s, b_s) in enumerate(states):
        counts, dead, frozen, frac, path = _recount(W_s, b_s, X)
        for ell, c in enumerate(counts):
            np.testing.assert_array_equal(ds.n_truncated.values[s, ell, :c.size], c)
            assert np.all(ds.n_truncated.values[s, ell, c.size:] == -1)
        assert ds.dead_units.values[s].tolist() == dead
        np.testing.assert_array_equal(ds.frozen_layer.values[s], frozen)
        np.testing.assert_allclose(ds.truncation_fraction.values[s], frac, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(ds.effective.values[s].astype(bool), path)
        assert int(ds.n_effective.values[s]) == int(path.sum())


def test_labels_give_nc1_per_layer_and_accuracy():
    rng = np.random.default_rng(5)
    Ws, bs = _layers([4, 6, 5], 5, shift=0.1)
    W_out, b_out = rng.standard_normal((3, 5)), rng.standard_normal(3)
    X, labels = rng.standard_normal((40, 4)), np.arange(40) % 3
    with monitor.watch(_Net(Ws, bs, W_out, b_out), X, labels) as mon:
        mon.step()
    ds = mon.result()
    from reluflow.theory.collapse import nc1_variability  # the shared measure, on activations recomputed here

    h = X
    for ell, (W, b) in enumerate(zip(Ws, bs)):
        h = np.maximum(h @ W.T + b, 0)
        assert ds.nc1.values[0, ell] == pytest.approx(nc1_variability(h, labels), rel=1e-12)
    acc = np.mean((h @ W_out.T + b_out).argmax(axis=1) == labels)
    assert ds.accuracy.values.tolist() == [acc, acc]


def test_a_callable_model_and_the_time_coordinate():
    Ws, bs = _layers([2, 3], 1)
    with monitor.watch(lambda: (Ws, bs), np.ones((4, 2)), every=3, lr=0.5) as mon:
        for _ in range(6):
            mon.step()
    ds = mon.result()
    assert ds.step.values.tolist() == [0, 3, 6] and ds.time.values.tolist() == [0.0, 1.5, 3.0]


def test_the_plots_draw_from_a_result():
    Ws, bs = _layers([3, 4, 4], 2)
    X, labels = np.random.default_rng(2).standard_normal((20, 3)), np.arange(20) % 2
    with monitor.watch(_Net(Ws, bs), X, labels) as mon:
        for b in bs:
            b -= 0.5
        mon.step()
    fig = monitor.monitor_figure(mon.result(), layer=2)
    assert len(fig.axes) >= 3 and fig.axes[0].get_ylabel() == "unit k of layer 2"
    with pytest.raises(ValueError, match="layer must be one of"):
        monitor.truncation_heatmap(mon.result(), layer=5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"every": 0}, ValueError, "every"), ({"every": 1.5}, TypeError, "every"),
    ({"labels": np.zeros(5, int)}, ValueError, "labels must have shape"),
    ({"labels": np.zeros(4, int)}, ValueError, "at least two classes"),
    ({"labels": np.zeros(4)}, TypeError, "labels"), ({"lr": -1.0}, ValueError, "lr"),
])
def test_bad_arguments_are_refused_with_their_names(kwargs, error, match):
    Ws, bs = _layers([2, 3], 1)
    with pytest.raises(error, match=match):
        monitor.watch(_Net(Ws, bs), np.ones((4, 2)), **kwargs)


def test_bad_models_and_misuse():
    Ws, bs = _layers([2, 3], 1)
    with pytest.raises(TypeError, match="model must be"):
        monitor.watch(42, np.ones((4, 2)))
    with pytest.raises(ValueError, match="X"):
        monitor.watch(_Net(Ws, bs), np.ones((4, 3)))
    mon = monitor.watch(_Net(Ws, bs), np.ones((4, 2)))
    with pytest.raises(RuntimeError, match="inside the `with watch"):
        mon.step()
    with pytest.raises(RuntimeError, match="nothing recorded"):
        mon.result()
    with pytest.raises(TypeError, match="Watch.result"):
        monitor.nc1_plot({"n_truncated": 1})


# ------------------------------------------------------------------------------------------------ PyTorch


@pytest.mark.parametrize("subclass", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_torch_sequential_is_recorded_through_hooks_and_equals_the_recount(inplace, subclass):
    """With ``ReLU(inplace=True)`` the pre-activation tensors are overwritten by the ReLU after they are read; the
    monitor copies them then (it shares them otherwise), and the recount must agree either way. A plain Sequential
    is evaluated module by module; a subclass with its own ``forward`` through forward hooks: both agree."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Chain(nn.Sequential):
        def forward(self, x):
            return super().forward(x)

    torch.manual_seed(0)
    model = (Chain if subclass else nn.Sequential)(nn.Linear(4, 6), nn.ReLU(inplace), nn.Linear(6, 5),
                                                    nn.ReLU(inplace), nn.Linear(5, 3)).double()
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((50, 4)), np.arange(50) % 3
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(labels)
    snapshots, hooked = [], []

    def params():
        lin = [m for m in model if isinstance(m, nn.Linear)]
        return ([m.weight.detach().numpy().copy() for m in lin[:-1]],
                [m.bias.detach().numpy().copy() for m in lin[:-1]])

    with monitor.watch(model, X, labels, every=5) as mon:
        snapshots.append(params())
        for step in range(1, 21):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(Xt), yt)
            loss.backward()
            opt.step()
            mon.step()
            hooked.append(any(m._forward_hooks for m in model))
            if step % 5 == 0:
                snapshots.append(params())
    assert hooked and not any(hooked)  # hooks live only during the monitor's own evaluation
    assert not any(m._forward_hooks for m in model)
    assert mon._model.walk is not subclass
    ds = mon.result()
    assert ds.step.values.tolist() == [0, 5, 10, 15, 20] and ds.attrs["model"] == "torch.nn.Sequential"
    for s, (W_s, b_s) in enumerate(snapshots):
        counts, dead, frozen, _, path = _recount(W_s, b_s, X)
        for ell, c in enumerate(counts):
            np.testing.assert_array_equal(ds.n_truncated.values[s, ell, :c.size], c)
        assert ds.dead_units.values[s].tolist() == dead
        np.testing.assert_array_equal(ds.frozen_layer.values[s], frozen)
        np.testing.assert_array_equal(ds.effective.values[s].astype(bool), path)
    with torch.no_grad():
        acc = float((model(Xt).argmax(1) == yt).double().mean())
    assert ds.accuracy.values[-1] == pytest.approx(acc)


def test_torch_models_that_are_not_linear_relu_chains_are_refused():
    torch = pytest.importorskip("torch")
    from torch import nn

    for bad in (nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), nn.Sequential(nn.Linear(2, 3)),
                nn.Sequential(nn.ReLU(), nn.Linear(2, 3))):
        with pytest.raises(ValueError, match="alternate Linear and ReLU"):
            monitor.watch(bad, np.ones((3, 2)))
    with pytest.raises(TypeError, match="nn.Sequential"):
        monitor.watch(nn.Linear(2, 3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="X must have 2 columns"):
        monitor.watch(nn.Sequential(nn.Linear(2, 3), nn.ReLU()).double(), np.ones((3, 4)))
    del torch


def test_from_trajectory_of_the_engine_equals_the_recount_of_each_recorded_state():
    """Oracle: brute-force recount on the layer parameters recovered here from the recorded cumulative ones
    (W_1 = W^(1), W_ℓ = W^(ℓ) (W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1), by numpy.linalg.solve)."""
    import reluflow as rf

    rng = np.random.default_rng(3)
    weights, biases = rf.random_network(3, 2, seed=4)
    X, labels = rng.standard_normal((25, 3)), np.arange(25) % 2
    W_out, b_out = rng.standard_normal((2, 3)), np.zeros(2)
    ds = rf.train(weights, biases, X, np.eye(2)[labels], mode="full", cost="output", W_out=W_out, b_out=b_out,
                  train_terminal=True, lr=0.1, n_steps=30, record_every=10)
    mon = monitor.from_trajectory(ds, X, labels)
    check_dataset(mon, where="monitor of a trajectory")
    np.testing.assert_array_equal(mon.step.values, ds.step.values)
    np.testing.assert_array_equal(mon.time.values, ds.time.values)
    for s in range(ds.sizes["time"]):
        Wc, bc = ds.cumulative_weights.values[s], ds.cumulative_biases.values[s]
        W2 = np.linalg.solve(Wc[0].T, Wc[1].T).T
        Ws, bs = [Wc[0], W2], [bc[0], bc[1] - W2 @ bc[0]]
        counts, dead, frozen, _, path = _recount(Ws, bs, X)
        for ell, c in enumerate(counts):
            np.testing.assert_array_equal(mon.n_truncated.values[s, ell], c)
        np.testing.assert_array_equal(mon.frozen_layer.values[s], frozen)
        np.testing.assert_array_equal(mon.effective.values[s].astype(bool), path)
        h = np.maximum(np.maximum(X @ Ws[0].T + bs[0], 0) @ Ws[1].T + bs[1], 0)
        out = h @ ds.output_weights.values[s].T + ds.output_biases.values[s]
        assert mon.accuracy.values[s] == pytest.approx(np.mean(out.argmax(1) == labels))
    with pytest.raises(TypeError, match="trajectory of reluflow.train"):
        monitor.from_trajectory(mon, X)


# ------------------------------------------------------------------------------------------------ diverged runs


def test_a_run_that_diverges_is_recorded_not_refused():
    """Oracle: the recount at the finite states; at a state with a NaN weight nothing is counted (the documented
    fill values), ``finite`` says which states those are, and the diagnosis flags the run unstable from the record
    alone."""
    Ws, bs = _layers([3, 5, 4], 0)
    net = _Net([W.copy() for W in Ws], [b.copy() for b in bs], np.ones((2, 4)), np.zeros(2))
    X = np.random.default_rng(1).standard_normal((30, 3))
    labels = np.arange(30) % 2
    with monitor.watch(net, X, labels) as mon:
        mon.step()
        net.weights[1][0, 0] = np.inf
        mon.step()
        net.weights[1][0, 0] = Ws[1][0, 0]  # back to the start's state
        mon.step()
    ds = mon.result()
    check_dataset(ds)
    assert ds.finite.values.tolist() == [1, 1, 0, 1]
    counts, dead, frozen, frac, path = _recount(Ws, bs, X)
    for s in (0, 1, 3):
        for ell, c in enumerate(counts):
            np.testing.assert_array_equal(ds.n_truncated.values[s, ell, :c.size], c)
        np.testing.assert_array_equal(ds.effective.values[s].astype(bool), path)
        assert np.isfinite(ds.nc1.values[s]).all()
    assert (ds.n_truncated.values[2] == -1).all() and (ds.dead_units.values[2] == -1).all()
    assert (ds.frozen_layer.values[2] == -1).all() and ds.n_effective.values[2] == -1
    assert np.isnan(ds.truncation_fraction.values[2]).all() and np.isnan(ds.nc1.values[2]).all()
    assert np.isnan(ds.accuracy.values[2]) and not ds.effective.values[2].any()
    d = monitor.diagnose(ds)
    unstable = next(f for f in d.flags if f.name == "unstable")
    assert unstable.fired and unstable.step == 2 and unstable.evaluated
    dead_flag = next(f for f in d.flags if f.name == "dead_units")
    assert dead_flag.value == max(dead[ell] / Ws[ell].shape[0] for ell in range(2))  # the finite states only
    fig = monitor.monitor_figure(ds)  # the diverged state is left out of the plots, not drawn as -1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_torch_run_that_diverges_is_recorded():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    X = np.random.default_rng(0).standard_normal((20, 3))
    with monitor.watch(model, X, np.arange(20) % 2) as mon:
        with torch.no_grad():
            model[2].weight[0, 0] = float("nan")  # only the output is affected
        mon.step()
        with torch.no_grad():
            model[0].weight[0, 0] = float("nan")
        mon.step()
    ds = mon.result()
    assert ds.finite.values.tolist() == [1, 0, 0]
    assert ds.n_effective.values[1:].tolist() == [-1, -1]


def test_a_model_whose_shapes_change_is_refused():
    Ws, bs = _layers([3, 5, 4], 0)
    net = _Net(list(Ws), list(bs))
    with monitor.watch(net, np.ones((4, 3))) as mon:
        net.weights = [Ws[0][:4], Ws[1][:, :4]]
        net.biases = [bs[0][:4], bs[1]]
        with pytest.raises(ValueError, match="shapes must stay"):
            mon.step()
        net.weights = [Ws[0], Ws[1][:, :4]]  # inconsistent: the full validation names the layer
        with pytest.raises(ValueError, match=r"biases\[0\] \(layer 1\) must have shape \(5,\)"):
            mon.step()

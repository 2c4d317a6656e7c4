"""Generic ReLU networks d0 → d1 → … → dL → Q in the one training engine: rectangular layers, the cross-entropy,
mini-batch SGD with heavy-ball momentum, He initialisation, the per-layer recording, and the error paths.

Oracles, all written here independently of reluflow.training.gd: a plain forward pass in autograd.numpy
(float64) differentiated by autograd; hand-rolled descent loops on those autograd gradients with their own
batch order (numpy permutations per epoch) and their own weight renormalisation; brute-force recounts of
truncated points; separately derived closed forms (two-class cross-entropy, the variance of He draws).
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import reluflow as rf
from reluflow.results.schema import check_dataset
from reluflow.training.gd import backprop_cumulative_gradient, backprop_gradient, minibatches, train
from reluflow.training.init import he_network

REL = 1e-10


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ---------------------------------------------------------------- independent plain forward passes


def plain_logits(Ws, bs, Wo, bo, X):
    x = X
    for W, b in zip(Ws, bs, strict=True):
        x = anp.maximum(anp.dot(x, W.T) + b, 0.0)
    return anp.dot(x, Wo.T) + bo


def plain_cost(params, X, Y, w, cost, L):
    """½ Σ w_i |z_i − y_i|² or Σ w_i (logsumexp(z_i) − z_i[y_i]), params = (W_1..W_L, b_1..b_L, W_out, b_out)."""
    z = plain_logits(params[:L], params[L:2 * L], params[2 * L], params[2 * L + 1], X)
    if cost == "output":
        return 0.5 * anp.sum(w * anp.sum((z - Y) ** 2, axis=1))
    m = anp.max(z, axis=1, keepdims=True)
    lse = anp.log(anp.sum(anp.exp(z - m), axis=1)) + m[:, 0]
    picked = anp.sum(z * np.eye(z.shape[1])[Y], axis=1)
    return anp.sum(w * (lse - picked))


def problem(seed, widths, Q, N, cost, weighted=True):
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(widths[:-1], widths[1:])]
    bs = [0.3 * rng.standard_normal(b) for b in widths[1:]]
    X = rng.standard_normal((N, widths[0]))
    Y = rng.integers(0, Q, N) if cost == "cross_entropy" else rng.standard_normal((N, Q))
    Wo, bo = rng.standard_normal((Q, widths[-1])) / np.sqrt(widths[-1]), 0.1 * rng.standard_normal(Q)
    w = rng.uniform(0.2, 1.0, N) / N if weighted else np.full(N, 1.0 / N)
    return dict(Ws=Ws, bs=bs, X=X, Y=Y, Wo=Wo, bo=bo, w=w)


def widths_strategy():
    """Random widths of 1–3 hidden layers, sorted increasing, decreasing or left mixed."""
    return st.tuples(st.lists(st.integers(1, 7), min_size=2, max_size=4),
                     st.sampled_from(["increasing", "decreasing", "mixed"])).map(
        lambda t: sorted(t[0]) if t[1] == "increasing" else sorted(t[0], reverse=True) if t[1] == "decreasing"
        else t[0])


# ---------------------------------------------------------------- gradients vs autograd


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), widths=widths_strategy(), Q=st.integers(2, 4), N=st.integers(1, 12),
       cost=st.sampled_from(["output", "cross_entropy"]))
def test_rectangular_gradient_matches_autograd(seed, widths, Q, N, cost):
    """Oracle: autograd of the plain forward pass; relative error ≤ 1e-10 per block."""
    p = problem(seed, widths, Q, N, cost)
    L = len(widths) - 1
    g = backprop_gradient(p["Ws"], p["bs"], p["X"], p["Y"], cost=cost, W_out=p["Wo"], b_out=p["bo"],
                          point_weights=p["w"])
    params = (*p["Ws"], *p["bs"], p["Wo"], p["bo"])
    want_C = plain_cost(params, p["X"], p["Y"], p["w"], cost, L)
    ref = autograd.grad(plain_cost)(params, p["X"], p["Y"], p["w"], cost, L)
    assert abs(g.cost - want_C) <= 1e-12 * max(abs(want_C), 1.0)
    got = (*g.weights, *g.biases, g.W_out, g.b_out)
    # an all-truncated unit has an exactly-zero block: measure against the largest gradient of the problem
    scale = max(float(np.abs(r).max()) for r in ref)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= REL * max(np.abs(b).max(), scale, 1e-4)
    square = all(W.shape == (widths[0], widths[0]) for W in p["Ws"])
    assert isinstance(g.weights, np.ndarray if square else tuple)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_square_cross_entropy_cumulative_gradient_matches_autograd(seed):
    """Oracle: autograd of the truncation-map chain τ in cumulative coordinates, then the output layer."""
    rng = np.random.default_rng(seed)
    M, L, N, Q = 3, 2, 11, 4
    Ws, bs = rf.random_network(M, L, seed=rng)
    Wc, bc = (np.stack(a) for a in rf.cumulative_parameters(Ws, bs))
    X, labels = rng.standard_normal((N, M)), rng.integers(0, Q, N)
    Wo, bo = rng.standard_normal((Q, M)), rng.standard_normal(Q)

    def cost(Wc_, bc_, Wo_, bo_):
        x = X
        for l in range(L - 1):
            x = anp.linalg.solve(Wc_[l], (anp.maximum(anp.dot(x, Wc_[l].T) + bc_[l], 0.0) - bc_[l]).T).T
        z = anp.dot(anp.maximum(anp.dot(x, Wc_[-1].T) + bc_[-1], 0.0), Wo_.T) + bo_
        lse = anp.log(anp.sum(anp.exp(z), axis=1))
        return anp.sum((lse - anp.sum(z * np.eye(Q)[labels], axis=1)) / N)

    g = backprop_cumulative_gradient(Wc, bc, X, labels, cost="cross_entropy", W_out=Wo, b_out=bo)
    ref = autograd.grad(cost, argnum=(0, 1, 2, 3))(Wc, bc, Wo, bo)
    assert abs(g.cost - cost(Wc, bc, Wo, bo)) <= 1e-12 * g.cost
    scale = max(float(np.abs(r).max()) for r in ref)
    for a, b in zip((g.weights, g.biases, g.W_out, g.b_out), ref, strict=True):
        assert np.abs(a - b).max() <= REL * scale


def test_cross_entropy_is_stable_and_matches_two_class_closed_form():
    """Closed form: two classes, C = Σ_i w_i log(1 + exp(z_other − z_label)) (np.logaddexp), at logits ~1e4,
    where exp overflows; and shift invariance of softmax: b_out + c leaves C and ∇C unchanged."""
    rng = np.random.default_rng(5)
    N, d = 9, 3
    X = rng.standard_normal((N, d))
    W = [np.eye(d)]
    b = [np.full(d, 5.0)]  # all pre-activations positive for |x| < 5: x^(1) = x + 5
    X = np.clip(X, -4.0, 4.0)
    Wo = 2000.0 * rng.standard_normal((2, d))
    bo = np.array([1e4, -1e4])
    labels = rng.integers(0, 2, N)
    g = backprop_gradient(W, b, X, labels, cost="cross_entropy", W_out=Wo, b_out=bo)
    z = (X + 5.0) @ Wo.T + bo
    margin = z[np.arange(N), 1 - labels] - z[np.arange(N), labels]
    want = float(np.sum(np.logaddexp(0.0, margin)) / N)
    assert np.isfinite(g.cost) and abs(g.cost - want) <= 1e-12 * want
    g2 = backprop_gradient(W, b, X, labels, cost="cross_entropy", W_out=Wo, b_out=bo + 3e4)
    assert abs(g2.cost - g.cost) <= 1e-12 * g.cost
    for a, c in ((g.W_out, g2.W_out), (g.weights[0], g2.weights[0])):
        assert np.abs(a - c).max() <= 1e-12 * max(np.abs(a).max(), 1.0)


# ---------------------------------------------------------------- training vs hand-rolled loops


def oracle_run(p, cost, *, lr, rho, n_steps, mu=0.0, batch_size=None, seed=0, biases_only=False):
    """Hand-rolled heavy ball on autograd gradients: v ← μv + g, p ← p − η_p v, batches from per-epoch
    numpy permutations with renormalised weights. Returns the parameters after every step 0..n_steps."""
    L = len(p["Ws"])
    params = [np.array(a, float) for a in (*p["Ws"], *p["bs"], p["Wo"], p["bo"])]
    rates = [0.0 if biases_only else rho * lr] * L + [lr] * L + [0.0 if biases_only else rho * lr, lr]
    vel = [np.zeros_like(a) for a in params]
    X, Y, w = p["X"], p["Y"], p["w"]
    N = X.shape[0]
    rng = np.random.default_rng(seed)
    order = []
    hist = [[a.copy() for a in params]]
    for _ in range(n_steps):
        if batch_size is None:
            idx = np.arange(N)
        else:
            if not order:
                perm = rng.permutation(N)
                order = [perm[i:i + batch_size] for i in range(0, N, batch_size)]
            idx = order.pop(0)
        wb = w[idx] * w.sum() / w[idx].sum()
        grads = autograd.grad(plain_cost)(tuple(params), X[idx], Y[idx], wb, cost, L)
        for i in range(len(params)):
            vel[i] = mu * vel[i] + grads[i]
            params[i] = params[i] - rates[i] * vel[i]
        hist.append([a.copy() for a in params])
    return hist


def layer_arrays(ds, s, L):
    return [ds[f"weights_{l}"].values[s] for l in range(1, L + 1)] + \
           [ds[f"biases_{l}"].values[s] for l in range(1, L + 1)] + \
           [ds.output_weights.values[s], ds.output_biases.values[s]]


CASES = [  # widths, cost, momentum, batch_size, biases only
    ((5, 7, 3), "output", 0.0, None, False),
    ((6, 4, 4, 2), "cross_entropy", 0.0, None, False),
    ((3, 8, 5), "cross_entropy", 0.9, None, False),
    ((4, 2, 6), "output", 0.5, 7, False),
    ((5, 9, 2), "cross_entropy", 0.0, 4, False),
    ((5, 9, 2), "cross_entropy", 0.7, 6, True),
]


@pytest.mark.parametrize("widths,cost,mu,batch_size,biases_only", CASES)
def test_training_follows_hand_rolled_loop(widths, cost, mu, batch_size, biases_only):
    """Oracle: the hand-rolled heavy-ball / SGD loop above on autograd gradients (relative error ≤ 1e-10 at every
    step); also the recorded cost is the full-data cost (autograd forward pass) at each recorded state."""
    for seed in (3, 4):
        p = problem(seed, list(widths), 3, 20, cost)
        L, n = len(widths) - 1, 12
        kw = dict(mode="biases" if biases_only else "full", cost=cost, lr=0.05, weight_lr_ratio=0.7, n_steps=n,
                  W_out=p["Wo"], b_out=p["bo"], train_terminal=True, point_weights=p["w"], momentum=mu,
                  batch_size=batch_size, seed=seed + 10)
        ds = train(p["Ws"], p["bs"], p["X"], p["Y"], **kw)
        hist = oracle_run(p, cost, lr=0.05, rho=0.7, n_steps=n, mu=mu, batch_size=batch_size, seed=seed + 10,
                          biases_only=biases_only)
        assert ds.attrs["status"] == 0 and list(ds.step.values) == list(range(n + 1))
        for s in range(n + 1):
            for got, want in zip(layer_arrays(ds, s, L), hist[s], strict=True):
                assert rel_err(got, want) <= REL
            C = plain_cost(tuple(hist[s]), p["X"], p["Y"], p["w"], cost, L)
            assert abs(ds.cost.values[s] - C) <= REL * C
        if biases_only:
            for l in range(1, L + 1):
                assert np.array_equal(ds[f"weights_{l}"].values[-1], p["Ws"][l - 1])


def test_minibatches_follow_the_documented_order():
    """Oracle: a fresh rng.permutation(N) per epoch, cut into consecutive batches (the last holds N mod B)."""
    gen = minibatches(10, 4, seed=7)
    got = [next(gen) for _ in range(7)]
    rng = np.random.default_rng(7)
    want = []
    for _ in range(3):
        perm = rng.permutation(10)
        want += [perm[0:4], perm[4:8], perm[8:10]]
    for a, b in zip(got, want[:7], strict=True):
        assert np.array_equal(a, b)
    assert sorted(np.concatenate(got[:3]).tolist()) == list(range(10))


@pytest.mark.parametrize("widths,cost", [((4, 6, 3), "cross_entropy"), ((3, 3, 3), "output"), ((3, 5), "output")])
def test_sgd_with_the_full_batch_is_gradient_descent_exactly(widths, cost):
    """Identity of the implementation: batch_size = N is the full batch in its original order, bit for bit
    (also with momentum); only the extra attributes batch_size, momentum, seed differ."""
    p = problem(8, list(widths), 3, 15, cost)
    for mu in (0.0, 0.6):
        kw = dict(mode="full", cost=cost, lr=0.05, n_steps=25, record_every=5, W_out=p["Wo"], b_out=p["bo"],
                  train_terminal=True, momentum=mu)
        a = train(p["Ws"], p["bs"], p["X"], p["Y"], **kw)
        b = train(p["Ws"], p["bs"], p["X"], p["Y"], batch_size=15, seed=123, **kw)
        assert b.attrs["batch_size"] == 15
        for ds in (a, b):
            ds.attrs = {k: v for k, v in ds.attrs.items() if k not in ("batch_size", "momentum", "seed")}
        xr.testing.assert_identical(a, b)


def test_seeded_sgd_is_reproducible_and_depends_on_the_seed():
    """Identity of the implementation: same seed, identical Dataset; another seed, a different trajectory
    (the batch order changes the iterates by far more than round-off)."""
    p = problem(2, [4, 6, 5], 3, 30, "cross_entropy")
    kw = dict(mode="full", cost="cross_entropy", lr=0.2, n_steps=30, record_every=10, W_out=p["Wo"], b_out=p["bo"],
              train_terminal=True, batch_size=8, momentum=0.5)
    a = train(p["Ws"], p["bs"], p["X"], p["Y"], seed=1, **kw)
    xr.testing.assert_identical(a, train(p["Ws"], p["bs"], p["X"], p["Y"], seed=1, **kw))
    c = train(p["Ws"], p["bs"], p["X"], p["Y"], seed=2, **kw)
    assert rel_err(c.weights_1.values[-1], a.weights_1.values[-1]) > 1e-4
    assert np.array_equal(c.weights_1.values[0], a.weights_1.values[0])
    assert a.attrs["seed"] == 1 and a.attrs["batch_size"] == 8 and a.attrs["momentum"] == 0.5


def test_momentum_on_a_square_network_follows_hand_rolled_loop():
    """Oracle: hand-rolled heavy ball on autograd gradients of the plain forward pass, recorded through the
    square (cumulative) schema: W^(ℓ) = W_ℓ W^(ℓ-1) of the oracle's layers."""
    p = problem(6, [3, 3, 3], 2, 14, "output")
    p["Ws"] = rf.random_network(3, 2, seed=9)[0]
    n = 10
    ds = train(p["Ws"], p["bs"], p["X"], p["Y"], mode="full", cost="output", lr=0.05, weight_lr_ratio=0.5,
               n_steps=n, W_out=p["Wo"], b_out=p["bo"], train_terminal=True, point_weights=p["w"], momentum=0.8)
    hist = oracle_run(p, "output", lr=0.05, rho=0.5, n_steps=n, mu=0.8)
    assert "cumulative_weights" in ds and "weights_1" not in ds
    for s in range(n + 1):
        W1, W2, b1, b2 = hist[s][:4]
        assert rel_err(ds.cumulative_weights.values[s], np.stack([W1, W2 @ W1])) <= REL
        assert rel_err(ds.cumulative_biases.values[s], np.stack([b1, W2 @ b1 + b2])) <= REL


# ---------------------------------------------------------------- the recorded Dataset of a rectangular network


def test_rectangular_recording_layout_and_counts(tmp_path):
    """Schema and a brute-force recount: n_truncated_ℓ[k] = #{i : z_(ℓ,k)(x_i) ≤ 0} by a separate forward pass."""
    rng = np.random.default_rng(0)
    Ws, bs, Wo, bo = he_network((4, 7, 5), 3, seed=1)
    bs = [0.2 * rng.standard_normal(b.shape) for b in bs]
    X, labels = rng.standard_normal((25, 4)), rng.integers(0, 3, 25)
    ds = train(Ws, bs, X, labels, mode="full", cost="cross_entropy", lr=0.1, n_steps=9, record_every=4,
               W_out=Wo, b_out=bo, train_terminal=True)
    check_dataset(ds)
    assert ds.attrs["widths"] == "4,7,5" and ds.attrs["n_layers"] == 2 and "batch_size" not in ds.attrs
    assert list(ds.step.values) == [0, 4, 8, 9]
    assert {k: v.dims for k, v in ds.data_vars.items()} == {
        "cost": ("time",), "weights_1": ("time", "unit_1", "input_coordinate"), "biases_1": ("time", "unit_1"),
        "n_truncated_1": ("time", "unit_1"), "weights_2": ("time", "unit_2", "unit_1"),
        "biases_2": ("time", "unit_2"), "n_truncated_2": ("time", "unit_2"),
        "output_weights": ("time", "output", "coordinate"), "output_biases": ("time", "output")}
    assert ds.sizes["unit_1"] == 7 and ds.sizes["unit_2"] == 5 and ds.sizes["coordinate"] == 5
    for s in range(ds.sizes["time"]):
        z1 = X @ ds.weights_1.values[s].T + ds.biases_1.values[s]
        z2 = np.maximum(z1, 0) @ ds.weights_2.values[s].T + ds.biases_2.values[s]
        assert np.array_equal(ds.n_truncated_1.values[s], (z1 <= 0).sum(0))
        assert np.array_equal(ds.n_truncated_2.values[s], (z2 <= 0).sum(0))
    assert ds.cost.values[-1] < ds.cost.values[0]
    ds.to_netcdf(tmp_path / "generic.nc")
    with xr.open_dataset(tmp_path / "generic.nc") as back:
        xr.testing.assert_allclose(back.load(), ds)


def test_divergence_keeps_last_valid_state_with_sgd():
    """Identity of the implementation: a diverging SGD run stops with status −2 and finite recorded values."""
    p = problem(1, [3, 6, 4], 2, 12, "output")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        ds = train(p["Ws"], p["bs"], p["X"], 50 * p["Y"], mode="full", cost="output", lr=50.0, n_steps=400,
                   record_every=100, W_out=p["Wo"], b_out=p["bo"], train_terminal=True, batch_size=5)
    assert ds.attrs["status"] == -2 and ds.attrs["steps_completed"] < 400
    assert ds.step.values[-1] == ds.attrs["steps_completed"]
    for v in ds.data_vars.values():
        assert np.isfinite(v.values).all()


# ---------------------------------------------------------------- He initialisation


def test_he_network_shapes_and_variances():
    """Closed form: entries N(0, 2/fan_in) and N(0, 1/fan_in); the sample variance of n draws has relative
    standard error √(2/n) ≈ 0.6 % here, tested at 5 %; means within 5 standard errors; zero biases."""
    for seed in (0, 1, 2):
        Ws, bs, Wo, bo = he_network([200, 300, 150], 250, seed=seed)
        assert [W.shape for W in Ws] == [(300, 200), (150, 300)] and Wo.shape == (250, 150)
        assert all(np.array_equal(b, np.zeros(len(b))) for b in bs) and np.array_equal(bo, np.zeros(250))
        for W, var in ((Ws[0], 2 / 200), (Ws[1], 2 / 300), (Wo, 1 / 150)):
            assert abs(W.var() / var - 1) < 0.05
            assert abs(W.mean()) < 5 * np.sqrt(var / W.size)
    a, b = he_network((3, 4), 2, seed=5), he_network((3, 4), 2, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a[0] + [a[2]], b[0] + [b[2]], strict=True))
    assert not np.array_equal(a[0][0], he_network((3, 4), 2, seed=6)[0][0])


def test_he_network_errors():
    for args, exc, msg in [
        (((3,), 2), ValueError, "widths must hold d0 and at least one hidden width"),
        (((3, 0), 2), ValueError, r"widths\[1\] must be >= 1"),
        (((3, 2.5), 2), TypeError, r"widths\[1\] must be an integer"),
        (("34", 2), TypeError, "widths must be a sequence"),
        (((3, 4), 0), ValueError, "n_outputs must be >= 1"),
    ]:
        with pytest.raises(exc, match=msg):
            he_network(*args, seed=0)


# ---------------------------------------------------------------- errors


def test_generic_errors():
    p = problem(0, [3, 5, 4], 3, 6, "cross_entropy")
    Ws, bs, X, y = p["Ws"], p["bs"], p["X"], p["Y"]
    base = dict(mode="full", cost="cross_entropy", W_out=p["Wo"], b_out=p["bo"], n_steps=2)
    bad = [
        (dict(targets=np.array([0, 1, 2, 3, 0, 1])), ValueError, r"in 0\.\.2; got maximum 3"),
        (dict(targets=np.array([0, 1, -1, 0, 0, 1])), ValueError, "class indices >= 0; got minimum -1"),
        (dict(targets=y.astype(float)), TypeError, "integer labels.*must be an integer array.*float64"),
        (dict(targets=y[:5]), ValueError, r"must have shape \(N,\) = \(6,\)"),
        (dict(batch_size=7), ValueError, r"batch_size must be None \(full batch\) or an integer in 1\.\.N = 1\.\.6; "
                                         "got 7"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1; got 0"),
        (dict(batch_size=2.0), TypeError, "batch_size must be an integer"),
        (dict(momentum=1.0), ValueError, r"momentum must be a number in \[0, 1\); got 1.0"),
        (dict(momentum=-0.1), ValueError, r"momentum must be a number in \[0, 1\)"),
        (dict(momentum=float("nan")), ValueError, "momentum must be"),
        (dict(momentum="0.5"), TypeError, "momentum must be"),
        (dict(mode="adapted"), ValueError, r"weights must be square \(M, M\) layers for mode='adapted'.*"
                                           r"got layer shapes \[\(5, 3\), \(4, 5\)\]"),
        (dict(mode="cumulative"), ValueError, "weights must be square .* for mode='cumulative'"),
        (dict(cost="input", W_out=None, b_out=None, targets=X), ValueError,
         "weights must be square .* for cost='input'"),
        (dict(W_out=np.ones((3, 5)), b_out=np.ones(3)), ValueError, r"W_out must have shape \(Q, 4\)"),
        (dict(W_out=np.ones((1, 4)), b_out=np.ones(1), targets=np.zeros(6, int)), ValueError,
         "needs Q >= 2 classes"),
        (dict(W_out=None, b_out=None), ValueError, r"cost='cross_entropy' needs a terminal layer"),
        (dict(X=X[:, :2]), ValueError, r"X must have shape \(N, 3\)"),
        (dict(weights=[Ws[0], np.ones((4, 4))]), ValueError, r"weights\[1\] \(layer 2\) must have 5 columns"),
        (dict(biases=[bs[0], np.ones(5)]), ValueError, r"biases\[1\] \(layer 2\) must have shape \(4,\)"),
        (dict(train_terminal=True, cost="input", W_out=None, b_out=None, targets=X,
              weights=[np.eye(3)], biases=[np.zeros(3)]), ValueError, "train_terminal=True needs cost='output' or"),
    ]
    for change, exc, msg in bad:
        kw = dict(dict(weights=Ws, biases=bs, X=X, targets=y), **base)
        kw.update(change)
        with pytest.raises(exc, match=msg):
            train(**kw)
    with pytest.raises(ValueError, match=r"cumulative weights must be square .* backprop_cumulative_gradient"):
        backprop_cumulative_gradient(Ws, bs, X, y, cost="cross_entropy", W_out=p["Wo"], b_out=p["bo"])
    with pytest.raises(ValueError, match="batch_size must be <= n_points = 3"):
        minibatches(3, 4)  # refused on the call, before the first batch

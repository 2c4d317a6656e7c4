"""Gradient-descent engine: hand-written backpropagation against autograd, the four modes, the
recorded schema, and the error paths.

Oracles are written here, independently of reluflow.training.gd: plain forward passes in
autograd.numpy (float64), central finite differences, and the closed-form one-layer bias step.
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
from reluflow.training.gd import backprop_cumulative_gradient, backprop_gradient, train

REL = 1e-10


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def assert_close(got, want, scale=0.0):
    """Relative error ≤ REL, measured against max(|want|, scale, 1e-4): an exactly-zero gradient block
    (every point truncated) may differ from the oracle by rounding noise of the problem's own size,
    which ``scale`` (e.g. the cost or the largest gradient of the problem) sets."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= REL * max(np.abs(want).max(), scale, 1e-4)


# ---------------------------------------------------------------- independent plain forward passes


def plain_hidden(Ws, bs, X):
    x = X
    for W, b in zip(Ws, bs, strict=True):
        x = anp.maximum(anp.dot(x, W.T) + b, 0.0)
    return x


def plain_cumulative(Ws, bs):
    M = Ws[0].shape[0]
    Wp, bp = anp.eye(M), anp.zeros(M)
    for W, b in zip(Ws, bs, strict=True):
        Wp, bp = anp.dot(W, Wp), anp.dot(W, bp) + b
    return Wp, bp


def plain_input_cost(Ws, bs, X, Y, w):
    """C_in with x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)), x^(L) from the plain forward pass."""
    WL, bL = plain_cumulative(Ws, bs)
    xt = anp.linalg.solve(WL, (plain_hidden(Ws, bs, X) - bL).T).T
    return 0.5 * anp.sum(w * anp.sum((xt - Y) ** 2, axis=1))


def plain_output_cost(Ws, bs, Wo, bo, X, Y, w):
    out = anp.dot(plain_hidden(Ws, bs, X), Wo.T) + bo
    return 0.5 * anp.sum(w * anp.sum((out - Y) ** 2, axis=1))


def tau_chain(Wc, bc, X):
    """x^(τ,L) by composing truncation maps τ(x) = W^-1(σ(Wx + b) − b) in cumulative coordinates."""
    x = X
    for W, b in zip(Wc, bc, strict=True):
        x = anp.linalg.solve(W, (anp.maximum(anp.dot(x, W.T) + b, 0.0) - b).T).T
    return x


def cumulative_cost(Wc, bc, Wo, bo, X, Y, w, cost):
    xt = tau_chain(Wc, bc, X)
    if cost == "input":
        f = xt
    else:  # x^(L) = W^(L) x^(τ,L) + b^(L), then the terminal layer
        f = anp.dot(anp.dot(xt, Wc[-1].T) + bc[-1], Wo.T) + bo
    return 0.5 * anp.sum(w * anp.sum((f - Y) ** 2, axis=1))


def problem(seed, M, L, N, Q=2, weighted=False):
    rng = np.random.default_rng(seed)
    Ws, bs = rf.random_network(M, L, seed=rng)
    X = rng.standard_normal((N, M))
    return dict(
        Ws=np.stack(Ws), bs=np.stack(bs), X=X,
        Y_in=rng.standard_normal((N, M)), Y_out=rng.standard_normal((N, Q)),
        Wo=rng.standard_normal((Q, M)), bo=rng.standard_normal(Q),
        w=rng.uniform(0.1, 1.0, N) if weighted else np.full(N, 1.0 / N),
    )


# ---------------------------------------------------------------- gradients vs autograd


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), M=st.integers(1, 4), L=st.integers(1, 3), N=st.integers(1, 12),
       weighted=st.booleans())
def test_layer_gradient_matches_autograd(seed, M, L, N, weighted):
    p = problem(seed, M, L, N, weighted=weighted)
    pw = p["w"] if weighted else None
    g = backprop_gradient(p["Ws"], p["bs"], p["X"], p["Y_in"], point_weights=pw)
    ref = autograd.grad(plain_input_cost, argnum=(0, 1))(p["Ws"], p["bs"], p["X"], p["Y_in"], p["w"])
    assert abs(g.cost - plain_input_cost(p["Ws"], p["bs"], p["X"], p["Y_in"], p["w"])) <= 1e-12 * max(g.cost, 1)
    for got, want in zip((g.weights, g.biases), ref, strict=True):
        assert_close(got, want)
    assert g.coordinates == "layer" and g.scales is None and g.W_out is None

    g = backprop_gradient(p["Ws"], p["bs"], p["X"], p["Y_out"], cost="output", W_out=p["Wo"], b_out=p["bo"],
                       point_weights=pw)
    args = (p["Ws"], p["bs"], p["Wo"], p["bo"], p["X"], p["Y_out"], p["w"])
    ref = autograd.grad(plain_output_cost, argnum=(0, 1, 2, 3))(*args)
    assert abs(g.cost - plain_output_cost(*args)) <= 1e-12 * max(g.cost, 1)
    for got, want in zip((g.weights, g.biases, g.W_out, g.b_out), ref, strict=True):
        assert_close(got, want)


def test_layer_gradient_matches_central_differences():
    p = problem(7, 3, 2, 10)
    g = backprop_gradient(p["Ws"], p["bs"], p["X"], p["Y_in"])
    h = 1e-6
    for l, k, j in [(0, 0, 1), (1, 2, 0), (0, 1, 1)]:
        Wp, Wm = p["Ws"].copy(), p["Ws"].copy()
        Wp[l, k, j] += h
        Wm[l, k, j] -= h
        fd = (plain_input_cost(Wp, p["bs"], p["X"], p["Y_in"], p["w"])
              - plain_input_cost(Wm, p["bs"], p["X"], p["Y_in"], p["w"])) / (2 * h)
        assert abs(fd - g.weights[l, k, j]) <= 1e-6 * max(1.0, abs(fd))
    for l, k in [(0, 2), (1, 0)]:
        bp, bm = p["bs"].copy(), p["bs"].copy()
        bp[l, k] += h
        bm[l, k] -= h
        fd = (plain_input_cost(p["Ws"], bp, p["X"], p["Y_in"], p["w"])
              - plain_input_cost(p["Ws"], bm, p["X"], p["Y_in"], p["w"])) / (2 * h)
        assert abs(fd - g.biases[l, k]) <= 1e-6 * max(1.0, abs(fd))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), M=st.integers(1, 4), L=st.integers(1, 3), N=st.integers(1, 10),
       cost=st.sampled_from(["input", "output"]))
def test_cumulative_gradient_matches_autograd(seed, M, L, N, cost):
    p = problem(seed, M, L, N, weighted=True)
    Wc, bc = (np.stack(a) for a in rf.cumulative_parameters(list(p["Ws"]), list(p["bs"])))
    Y = p["Y_in"] if cost == "input" else p["Y_out"]
    g = backprop_cumulative_gradient(Wc, bc, p["X"], Y, cost=cost, W_out=p["Wo"], b_out=p["bo"],
                                      point_weights=p["w"])
    args = (Wc, bc, p["Wo"], p["bo"], p["X"], Y, p["w"], cost)
    ref = autograd.grad(cumulative_cost, argnum=(0, 1, 2, 3))(*args)
    assert abs(g.cost - cumulative_cost(*args)) <= 1e-12 * max(g.cost, 1)
    pairs = [(g.weights, ref[0]), (g.biases, ref[1])]
    if cost == "output":
        pairs += [(g.W_out, ref[2]), (g.b_out, ref[3])]
    scale = max(g.cost, *(float(np.abs(want).max()) for _, want in pairs))
    for got, want in pairs:
        assert_close(got, want, scale)
    # ∂C/∂λ at fixed row directions, against autograd of the parametrisation W^(ℓ) = diag(λ_ℓ) R_ℓ
    lam = np.linalg.norm(Wc, axis=2)
    R = Wc / lam[:, :, None]

    def by_scales(lam_):
        return cumulative_cost(lam_[:, :, None] * R, bc, p["Wo"], p["bo"], p["X"], Y, p["w"], cost)

    assert_close(g.scales, autograd.grad(by_scales)(lam), scale)


# ---------------------------------------------------------------- the four modes vs an autograd descent


def oracle_descent(p, mode, cost, lr, rho, n_steps, terminal):
    """Plain gradient descent with autograd gradients in each mode's own parametrisation.

    Returns the cumulative (W, b), W_out, b_out and cost at every step 0..n_steps.
    """
    Y = p["Y_in"] if cost == "input" else p["Y_out"]
    X, w = p["X"], p["w"]
    Ws, bs, Wo, bo = p["Ws"].copy(), p["bs"].copy(), p["Wo"].copy(), p["bo"].copy()
    Wc = np.stack([plain_cumulative(Ws[: l + 1], bs[: l + 1])[0] for l in range(len(Ws))])
    bc = np.stack([plain_cumulative(Ws[: l + 1], bs[: l + 1])[1] for l in range(len(Ws))])
    lam = np.linalg.norm(Wc, axis=2)
    R = Wc / lam[:, :, None]

    def cost_layer(Ws_, bs_, Wo_, bo_):
        if cost == "input":
            return plain_input_cost(Ws_, bs_, X, Y, w)
        return plain_output_cost(Ws_, bs_, Wo_, bo_, X, Y, w)

    def cost_cum(Wc_, bc_, Wo_, bo_):
        return cumulative_cost(Wc_, bc_, Wo_, bo_, X, Y, w, cost)

    def cost_adapted(lam_, bc_, Wo_, bo_):
        return cumulative_cost(lam_[:, :, None] * R, bc_, Wo_, bo_, X, Y, w, cost)

    hist = []
    for _ in range(n_steps + 1):
        if mode in ("biases", "full"):
            Wc = np.stack([plain_cumulative(Ws[: l + 1], bs[: l + 1])[0] for l in range(len(Ws))])
            bc = np.stack([plain_cumulative(Ws[: l + 1], bs[: l + 1])[1] for l in range(len(Ws))])
            C = cost_layer(Ws, bs, Wo, bo)
            gW, gb, gWo, gbo = autograd.grad(cost_layer, argnum=(0, 1, 2, 3))(Ws, bs, Wo, bo)
        elif mode == "cumulative":
            C = cost_cum(Wc, bc, Wo, bo)
            gW, gb, gWo, gbo = autograd.grad(cost_cum, argnum=(0, 1, 2, 3))(Wc, bc, Wo, bo)
        else:
            Wc = lam[:, :, None] * R
            C = cost_adapted(lam, bc, Wo, bo)
            gW, gb, gWo, gbo = autograd.grad(cost_adapted, argnum=(0, 1, 2, 3))(lam, bc, Wo, bo)
        hist.append((Wc.copy(), bc.copy(), Wo.copy(), bo.copy(), C))
        if mode == "biases":
            bs = bs - lr * gb
        elif mode == "full":
            Ws, bs = Ws - rho * lr * gW, bs - lr * gb
        elif mode == "cumulative":
            Wc, bc = Wc - rho * lr * gW, bc - lr * gb
        else:
            lam, bc = lam - rho * lr * gW, bc - lr * gb
        if terminal:
            bo = bo - lr * gbo
            if mode != "biases":
                Wo = Wo - rho * lr * gWo
    return hist


CASES = [(m, c, t) for m in ("biases", "full", "cumulative", "adapted") for c, t in
         (("input", False), ("output", False), ("output", True))]


@pytest.mark.parametrize("mode,cost,terminal", CASES)
def test_modes_follow_autograd_descent(mode, cost, terminal):
    p = problem(11, 3, 2, 9, weighted=True)
    if mode == "adapted":  # start from an adapted network
        net = rf.random_adapted_network(3, 2, seed=5)
        Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
        p["Ws"], p["bs"] = np.stack(Ws), np.stack(bs)
    lr, rho, n = 0.05, 0.7, 6
    Y = p["Y_in"] if cost == "input" else p["Y_out"]
    ds = train(p["Ws"], p["bs"], p["X"], Y, mode=mode, cost=cost, lr=lr, weight_lr_ratio=rho, n_steps=n,
               W_out=p["Wo"], b_out=p["bo"], train_terminal=terminal, point_weights=p["w"])
    hist = oracle_descent(p, mode, cost, lr, rho, n, terminal)
    assert ds.attrs["status"] == 0
    assert list(ds.step.values) == list(range(n + 1))
    for s, (Wc, bc, Wo, bo, C) in enumerate(hist):
        assert rel_err(ds.cumulative_weights.values[s], Wc) <= REL
        assert rel_err(ds.cumulative_biases.values[s], bc) <= REL
        assert abs(ds.cost.values[s] - C) <= REL * C
        assert rel_err(ds.output_weights.values[s], Wo) <= REL
        assert rel_err(ds.output_biases.values[s], bo) <= REL
    assert ds.cost.values[-1] < ds.cost.values[0]


def test_mode_invariants():
    net = rf.random_adapted_network(3, 3, seed=2)
    Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((20, 3)), rng.standard_normal((20, 3))
    kw = dict(lr=0.05, n_steps=40, record_every=10)
    # biases only: the layer weights do not move
    ds = train(Ws, bs, X, Y, mode="biases", **kw)
    for s in range(ds.sizes["time"]):
        Wc = ds.cumulative_weights.values[s]
        assert np.abs(Wc[1] @ np.linalg.inv(Wc[0]) - Ws[1]).max() <= 1e-12
        assert np.abs(Wc[0] - Ws[0]).max() == 0
    # adapted: stays adapted, frames frozen, scales move
    ds = train(Ws, bs, X, Y, mode="adapted", weight_lr_ratio=1.0, **kw)
    assert float(ds.adaptedness.max()) <= 1e-12
    frames = ds.cumulative_weights / ds.scales
    assert float(abs(frames - frames.isel(time=0)).max()) <= 1e-12
    assert float(abs(ds.scales - ds.scales.isel(time=0)).max()) > 1e-6
    # cumulative with ρ = 0: the cumulative bias flow, weights frozen
    ds = train(Ws, bs, X, Y, mode="cumulative", weight_lr_ratio=0.0, **kw)
    assert float(abs(ds.cumulative_weights - ds.cumulative_weights.isel(time=0)).max()) == 0
    assert float(abs(ds.cumulative_biases - ds.cumulative_biases.isel(time=0)).max()) > 1e-6
    # full descent from an adapted start drifts away from adaptedness (THEORY §4.5)
    ds = train(Ws, bs, X, Y, mode="full", **kw)
    assert float(ds.adaptedness.isel(time=0).max()) <= 1e-12
    assert float(ds.adaptedness.isel(time=-1).max()) > 1e-6


def test_one_layer_bias_step_matches_closed_form():
    """θ_k ← θ_k − η/(λ_k² N) Σ_{i truncated in k} (θ_k − (R ỹ_i)_k), the one-layer bias flow step."""
    rng = np.random.default_rng(4)
    M, N, lr = 3, 30, 0.2
    net = rf.random_adapted_network(M, 1, seed=9)
    R, lam = net.frames[0], net.scales[0]
    X = rng.standard_normal((N, M))
    Y = rng.standard_normal((N, M))
    ds = train(*rf.layer_parameters(*net.cumulative_parameters()), X, Y, mode="adapted", weight_lr_ratio=0.0,
               lr=lr, n_steps=3)
    for s in range(3):
        th = ds.thresholds.values[s, 0]
        T = X @ R.T < th  # u_k < θ_k
        yhat = Y @ R.T
        want = th - lr / (lam**2 * N) * (T * (th - yhat)).sum(axis=0)
        assert np.abs(ds.thresholds.values[s + 1, 0] - want).max() <= 1e-12
        assert np.array_equal(ds.n_truncated.values[s, 0], T.sum(axis=0))
    assert np.abs(ds.scales.values - lam).max() <= 1e-12


# ---------------------------------------------------------------- the recorded schema


def test_schema_recording_and_determinism(tmp_path):
    p = problem(21, 3, 2, 15)
    kw = dict(mode="full", cost="output", lr=0.03, n_steps=10, record_every=4, W_out=p["Wo"], b_out=p["bo"],
              train_terminal=True)
    ds = train(p["Ws"], p["bs"], p["X"], p["Y_out"], **kw)
    assert list(ds.step.values) == [0, 4, 8, 10]
    np.testing.assert_allclose(ds.time.values, 0.03 * np.array([0, 4, 8, 10]), rtol=0, atol=1e-15)
    assert list(ds.layer.values) == [1, 2]
    assert ds.sizes == {"time": 4, "layer": 2, "coordinate": 3, "input_coordinate": 3, "output": 2}
    expected = {"cost": ("time",), "cumulative_weights": ("time", "layer", "coordinate", "input_coordinate"),
                "cumulative_biases": ("time", "layer", "coordinate"), "scales": ("time", "layer", "coordinate"),
                "thresholds": ("time", "layer", "coordinate"), "n_truncated": ("time", "layer", "coordinate"),
                "adaptedness": ("time", "layer"), "output_weights": ("time", "output", "coordinate"),
                "output_biases": ("time", "output")}
    assert {k: v.dims for k, v in ds.data_vars.items()} == expected
    for name, var in ds.variables.items():
        if name in ds.data_vars:
            assert isinstance(var.attrs["long_name"], str) and var.attrs["units"] == "1", name
    for key, value in ds.attrs.items():
        assert isinstance(value, (str, int, float)) and not isinstance(value, bool), key
    assert ds.attrs["status"] == 0 and ds.attrs["steps_completed"] == 10
    assert ds.attrs["lr_weights"] == ds.attrs["lr_biases"] * ds.attrs["weight_lr_ratio"]
    # truncation counts and adaptedness against independent computations from the layer parameters
    for s in range(ds.sizes["time"]):
        Wc, bc = ds.cumulative_weights.values[s], ds.cumulative_biases.values[s]
        W2 = Wc[1] @ np.linalg.inv(Wc[0])
        b1, b2 = bc[0], bc[1] - W2 @ bc[0]
        z1 = p["X"] @ Wc[0].T + b1
        z2 = np.maximum(z1, 0) @ W2.T + b2
        assert np.array_equal(ds.n_truncated.values[s], np.stack([(z1 <= 0).sum(0), (z2 <= 0).sum(0)]))
        for l in range(2):
            G = Wc[l] @ Wc[l].T
            off = np.sqrt((G**2).sum() - (np.diag(G) ** 2).sum())
            assert abs(ds.adaptedness.values[s, l] - off / np.linalg.norm(np.diag(G))) <= 1e-12
        lam = np.linalg.norm(Wc, axis=2)
        assert np.abs(ds.thresholds.values[s] + bc / lam).max() <= 1e-15
    # deterministic, and the schema survives netCDF
    xr.testing.assert_identical(ds, train(p["Ws"], p["bs"], p["X"], p["Y_out"], **kw))
    ds.to_netcdf(tmp_path / "traj.nc")
    with xr.open_dataset(tmp_path / "traj.nc") as back:
        xr.testing.assert_allclose(back.load(), ds)


# ---------------------------------------------------------------- divergence and errors


def test_divergence_stops_with_status():
    p = problem(1, 3, 2, 10)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        ds = train(p["Ws"], p["bs"], p["X"], p["Y_out"], mode="full", cost="output", lr=1e3, n_steps=500,
                   record_every=100, W_out=p["Wo"], b_out=p["bo"], train_terminal=True)
    assert ds.attrs["status"] == -2 and ds.attrs["status_name"] == "diverged"
    assert ds.attrs["steps_completed"] < 500
    assert ds.step.values[-1] == ds.attrs["steps_completed"]
    for v in ds.data_vars.values():
        assert np.isfinite(v.values).all()


def test_nonpositive_scale_and_ill_conditioning_stop():
    net = rf.random_adapted_network(2, 1, seed=0, scale_range=(0.5, 0.5))
    Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
    X = np.random.default_rng(0).standard_normal((8, 2))
    with pytest.warns(RuntimeWarning, match="non-positive"):
        ds = train(Ws, bs, X, 50 * X, mode="adapted", weight_lr_ratio=50.0, lr=1.0, n_steps=200)
    assert ds.attrs["status"] == -4 and ds.attrs["status_name"] == "nonpositive_scale"
    assert list(ds.step.values) == [0] and (ds.scales.values > 0).all()
    with pytest.warns(RuntimeWarning, match="ill-conditioned"):
        ds = train(Ws, bs, X, 50 * X, mode="cumulative", weight_lr_ratio=1.0, lr=0.5, n_steps=200,
                   max_condition=3.0)
    assert ds.attrs["status"] == -3 and ds.attrs["status_name"] == "ill_conditioned" and list(ds.step.values) == [0]


def test_errors():
    p = problem(0, 3, 2, 6)
    Ws, bs, X, Y = p["Ws"], p["bs"], p["X"], p["Y_in"]
    bad = [
        (dict(lr=0.0), ValueError, "lr must be a positive finite number; got 0.0"),
        (dict(lr=-1), ValueError, "lr must be"),
        (dict(lr=float("nan")), ValueError, "lr must be"),
        (dict(lr=float("inf")), ValueError, "lr must be"),
        (dict(lr=True), TypeError, "lr must be a positive finite number"),
        (dict(lr="0.1"), TypeError, "lr must be a positive finite number"),
        (dict(weight_lr_ratio=-0.5), ValueError, "weight_lr_ratio must be a non-negative finite number"),
        (dict(mode="sgd"), ValueError, "mode must be one of"),
        (dict(cost="l1"), ValueError, "cost must be one of"),
        (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (dict(n_steps=2.5), TypeError, "n_steps must be an integer"),
        (dict(record_every=0), ValueError, "record_every must be >= 1"),
        (dict(point_weights=np.ones(5)), ValueError, r"point_weights must have shape \(6,\)"),
        (dict(point_weights=-np.ones(6)), ValueError, "non-negative"),
        (dict(point_weights=np.zeros(6)), ValueError, "point_weights must have at least one positive weight"),
        (dict(train_terminal=True), ValueError, "train_terminal=True needs cost='output'"),
        (dict(train_terminal=1), TypeError, "train_terminal must be True or False"),
        (dict(progress="yes"), TypeError, "progress must be"),
        (dict(mode="adapted"), ValueError, "not adapted"),
        (dict(cost="output"), ValueError, "needs a terminal layer"),
        (dict(W_out=np.ones((2, 3))), ValueError, "W_out and b_out must be given together"),
        (dict(W_out=np.ones((2, 4)), b_out=np.ones(2)), ValueError, r"W_out must have shape \(Q, 3\)"),
    ]
    for kwargs, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            train(Ws, bs, X, Y, **kwargs)
    with pytest.raises(ValueError, match=r"targets for cost='input' must have shape \(N, 3\) = \(6, 3\)"):
        train(Ws, bs, X, Y[:, :2])
    with pytest.raises(ValueError, match=r"targets for cost='output' must have shape \(N, 2\) = \(6, 2\)"):
        train(Ws, bs, X, Y, cost="output", W_out=p["Wo"], b_out=p["bo"])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        train(Ws, bs, Xn, Y)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3\)"):
        backprop_gradient(Ws, bs, X[:, :2], Y)
    with pytest.raises(ValueError, match="ill-conditioned"):
        backprop_gradient([np.diag([1.0, 1.0, 1e-12])] * 2, bs, X, Y)
    with pytest.raises(ValueError, match="cost must be one of"):
        backprop_cumulative_gradient(Ws, bs, X, Y, cost="outputs")


def test_progress_switch(monkeypatch, capsys):
    from reluflow.training.gd import progress_enabled

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("RELUFLOW_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr", Stream(False))  # papermill, pytest, pipes: not a terminal
    assert progress_enabled(None, 10**6) is False
    monkeypatch.setattr("sys.stderr", Stream(True))  # a terminal: long runs only
    assert progress_enabled(None, 10**6) is True and progress_enabled(None, 10) is False
    monkeypatch.setenv("RELUFLOW_PROGRESS", "1")
    assert progress_enabled(None, 10) is True
    monkeypatch.setenv("RELUFLOW_PROGRESS", "0")
    assert progress_enabled(None, 10**6) is False
    assert progress_enabled(True, 1) is True
    monkeypatch.undo()
    p = problem(0, 2, 1, 4)
    ds = train(p["Ws"], p["bs"], p["X"], p["Y_in"], n_steps=5, progress=True)
    assert ds.attrs["status"] == 0


def test_tie_counts_as_truncated():
    """A pre-activation exactly 0 uses σ'(0) = 0: the gradient is the limit from the truncated side."""
    W, b = np.diag([2.0, 1.0]), np.array([-1.0, 0.5])
    X = np.array([[0.5, 1.0], [1.5, -0.2], [0.1, 0.3]])  # point 0: (W x + b)_0 = 0 exactly
    Y = np.array([[1.0, 2.0], [0.0, -1.0], [2.0, 0.5]])
    w = np.full(3, 1 / 3)
    g = backprop_gradient([W], [b], X, Y)
    ds = train([W], [b], X, Y, n_steps=1)
    assert ds.n_truncated.values[0, 0, 0] == 2  # the tie and point 2

    def grad_at(shift):
        Xs = X.copy()
        Xs[0, 0] += shift
        return autograd.grad(plain_input_cost, argnum=(0, 1))(W[None], b[None], Xs, Y, w)

    below, above = grad_at(-1e-9), grad_at(+1e-9)
    assert np.abs(g.weights - below[0]).max() <= 1e-7 and np.abs(g.biases - below[1]).max() <= 1e-7
    assert np.abs(g.biases - above[1]).max() > 1e-3  # the other side differs: the test can fail

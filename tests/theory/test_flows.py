"""Gradients and effective flows (THEORY.md §4) against independent oracles.

Two families of oracles, neither of which calls reluflow.theory.flows:
- ``tau_cost`` below: autograd (float64) of C_in written with the truncation map
  τ(x) = W^-1(σ(Wx + b) − b) applied layer by layer, written in this file;
- reluflow.testing.oracles: autograd and central differences of the plain ReLU forward pass on the layer
  parameters (a third formulation), and a skew-matrix chart for the frames.
Plus closed forms derived by hand for one layer, ties, and fully or never truncated data.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from reluflow import (
    AdaptedNetwork,
    adapted_network,
    cumulative_parameters,
    random_adapted_network,
    random_network,
    truncation_pattern,
)
from reluflow.testing import oracles as orc
from reluflow.theory.flows import (
    bias_flow,
    cumulative_gradient,
    frame_flow,
    induced_bias_flow,
    induced_bias_kernel,
    induced_cumulative_flow,
    layer_gradient,
    one_layer_threshold_flow,
    scale_bias_flow,
    scale_bias_invariant,
    threshold_gradient,
)

TOL = 1e-10
SETTINGS = settings(max_examples=30, deadline=None)
shapes = dict(M=st.integers(1, 5), L=st.integers(1, 4), Q=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))


def tau_cost(Wc, bc, X, Y, w):
    """C_in with x^(τ,ℓ) = (W^(ℓ))^-1(σ(W^(ℓ) x^(τ,ℓ-1) + b^(ℓ)) − b^(ℓ)), autograd-compatible."""
    x = X
    for W, b in zip(Wc, bc, strict=True):
        z = anp.dot(x, W.T) + b
        x = anp.transpose(anp.linalg.solve(W, anp.transpose(anp.maximum(z, 0.0) - b)))
    r = x - Y
    return 0.5 * anp.sum(w * anp.sum(r * r, axis=1))


def rel(a, b):
    a, b = np.concatenate([np.ravel(v) for v in a]), np.concatenate([np.ravel(v) for v in b])
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def instance(M, L, Q, seed):
    """Random adapted instance from reluflow.testing.oracles.draw_instance (tie margin ≥ 1e-3, some truncation)."""
    return orc.draw_instance(seed, M=M, L=L, Q=Q)


# --------------------------------------------------------------------------- (4.1), (4.2)


@SETTINGS
@given(**shapes)
def test_threshold_gradient_matches_autodiff_of_tau(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    net, X, Y, w = inst.net, inst.X, inst.targets, inst.point_weights
    Wc = [lam[:, None] * R for lam, R in zip(net.scales, net.frames, strict=True)]

    def f(theta):
        return tau_cost(Wc, [-net.scales[l] * theta[l] for l in range(L)], X, Y, w)

    expected = autograd.grad(f)(net.thresholds)
    g = threshold_gradient(net, X, Y, point_weights=w)
    assert g.shape == (L, M)
    assert rel([g], [expected]) <= TOL


@SETTINGS
@given(**shapes)
def test_bias_flow_matches_oracles(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    args = (inst.net, inst.X, inst.targets)
    flow = bias_flow(*args, point_weights=inst.point_weights)
    assert rel([flow], [orc.oracle_bias_flow(*args, point_weights=inst.point_weights)]) <= TOL
    fd = orc.oracle_bias_flow(*args, point_weights=inst.point_weights, method="finite_difference")
    assert rel([flow], [fd]) <= 1e-6
    # θ̇ = −Λ^-2 ∂C/∂θ
    g = threshold_gradient(*args, point_weights=inst.point_weights)
    np.testing.assert_allclose(flow, -g / inst.net.scales**2, rtol=1e-14, atol=0)


@SETTINGS
@given(M=st.integers(1, 5), Q=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_one_layer_closed_form_agrees(M, Q, seed):
    inst = instance(M, 1, Q, seed)
    args = (inst.net, inst.X, inst.targets)
    closed = one_layer_threshold_flow(*args, point_weights=inst.point_weights)
    np.testing.assert_allclose(closed, bias_flow(*args, point_weights=inst.point_weights), rtol=1e-12, atol=1e-15)
    assert rel([closed], [orc.oracle_bias_flow(*args, point_weights=inst.point_weights)]) <= TOL


def test_one_cluster_rate_by_hand():
    """One layer, R = 1, one cluster: θ̇_k = −(n_k/(λ_k² N))(θ_k − ŷ_k) with n_k counted by hand."""
    X = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, -1.0], [3.0, 5.0]])
    lam, theta, y_hat = np.array([2.0, 0.5]), np.array([1.5, 0.0]), np.array([4.0, 3.0])
    net = adapted_network([np.eye(2)], [lam], [theta])
    Y = np.tile(y_hat, (4, 1))
    n = np.array([2, 1])  # coordinate 0: points 0, 1 below 1.5; coordinate 1: point 2 below 0
    expected = -(n / (lam**2 * 4)) * (theta - y_hat)
    np.testing.assert_allclose(bias_flow(net, X, Y)[0], expected, rtol=1e-15)
    np.testing.assert_allclose(one_layer_threshold_flow(net, X, Y)[0], expected, rtol=1e-15)


# --------------------------------------------------------------------------- (4.3)


@SETTINGS
@given(**shapes)
def test_scale_bias_flow_matches_oracles(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    args = (inst.net, inst.X, inst.targets)
    kw = dict(point_weights=inst.point_weights)
    flow = scale_bias_flow(*args, **kw)
    for method, tol in (("autodiff", TOL), ("finite_difference", 1e-6)):
        ref = orc.oracle_scale_bias_flow(*args, **kw, method=method)
        assert rel([flow.scales, flow.biases, flow.thresholds], [ref.scales, ref.biases, ref.thresholds]) <= tol
    # The rate of λ² + b² vanishes: 2λλ̇ + 2bḃ = 0 to rounding.
    lam, b = inst.net.scales, -inst.net.scales * inst.net.thresholds
    assert np.abs(lam * flow.scales + b * flow.biases).max() <= 1e-14 * (np.abs(lam * flow.scales).max() + 1e-300)
    np.testing.assert_allclose(scale_bias_invariant(inst.net), lam**2 + b**2, rtol=1e-14)


def test_scale_bias_conservation_along_solve_ivp():
    """λ² + b² stays constant to solver tolerance while the threshold sweeps through a cluster.

    One layer, one cluster, targets beyond the cluster in both coordinates (sweep and collapse):
    the right-hand side is smooth between finitely many truncation events, so the solver's
    tolerance is reached. (Targets inside a cluster can make a threshold slide along a data
    coordinate, where any explicit solver chatters.)
    """
    rng = np.random.default_rng(7)
    M, N = 2, 12
    R, _ = np.linalg.qr(rng.standard_normal((M, M)))
    X = rng.uniform(-1.0, 1.0, (N, M)) @ R  # u = R x uniform in [-1, 1]^2
    y_hat = np.array([3.0, 2.0])
    Y = np.tile(y_hat @ R, (N, 1))  # R ỹ = ŷ
    lam0, theta0 = np.array([1.3, 0.7]), np.array([-0.8, -0.9])
    net0 = adapted_network([R], [lam0], [theta0])

    def rhs(t, y):
        lam, b = y[:M].reshape(1, M), y[M:].reshape(1, M)
        f = scale_bias_flow(AdaptedNetwork(frames=net0.frames, scales=lam, thresholds=-b / lam), X, Y)
        return np.concatenate([f.scales.ravel(), f.biases.ravel()])

    y0 = np.concatenate([lam0, -lam0 * theta0])
    sol = solve_ivp(rhs, (0.0, 30.0), y0, method="DOP853", rtol=1e-12, atol=1e-12)
    assert sol.success
    lam, b = sol.y[:M].T, sol.y[M:].T
    invariant = lam**2 + b**2
    drift = np.abs(invariant - invariant[0]).max() / invariant[0].max()
    assert drift <= 1e-9
    # Not trivial: both thresholds swept through the whole cluster (every point truncated at the end).
    theta_end = -b[-1] / lam[-1]
    assert np.all(theta_end > 1.0) and np.all(theta0 < 1.0)
    final = adapted_network([R], [lam[-1]], [theta_end])
    assert truncation_pattern(*final.cumulative_parameters(), X).all()
    assert not truncation_pattern(*net0.cumulative_parameters(), X).all()


# --------------------------------------------------------------------------- (4.4)


@SETTINGS
@given(**shapes)
def test_frame_flow_matches_oracles(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    args = (inst.net, inst.X, inst.targets)
    kw = dict(point_weights=inst.point_weights)
    flow = frame_flow(*args, **kw)
    assert flow.shape == (L, M, M)
    if M > 1:
        assert rel([flow], [orc.oracle_frame_flow(*args, **kw)]) <= TOL
        assert rel([flow], [orc.oracle_frame_flow(*args, **kw, method="finite_difference")]) <= 1e-6
    # Ṙ Rᵀ is skew: the flow is tangent to O(M).
    omega = np.einsum("lij,lkj->lik", flow, inst.net.frames)
    np.testing.assert_allclose(omega, -np.swapaxes(omega, 1, 2), atol=1e-14 * (1 + np.abs(omega).max()))


def test_frame_flow_against_scipy_expm_differences():
    """Central differences of C(expm(εA) R) with scipy's expm: d/dε = −⟨Ṙ Rᵀ, A⟩_F... i.e. ⟨Ω, A⟩."""
    inst = orc.draw_instance(11, M=3, L=2, Q=2)
    net, X, Y = inst.net, inst.X, inst.targets
    flow = frame_flow(net, X, Y)
    rng = np.random.default_rng(0)
    for layer in range(2):
        S = rng.standard_normal((3, 3))
        A = S - S.T
        h = 1e-6

        def cost(eps, layer=layer, A=A):
            frames = net.frames.copy()
            frames[layer] = scipy.linalg.expm(eps * A) @ frames[layer]
            Wc = [lam[:, None] * R for lam, R in zip(net.scales, frames, strict=True)]
            bc = [-lam * t for lam, t in zip(net.scales, net.thresholds, strict=True)]
            return tau_cost(Wc, bc, X, Y, np.full(len(X), 1 / len(X)))

        dC = (cost(h) - cost(-h)) / (2 * h)
        omega = -flow[layer] @ net.frames[layer].T  # Ω = −Ṙ Rᵀ, the Riemannian gradient's generator
        assert dC == pytest.approx(np.sum(omega * A), rel=1e-7, abs=1e-12)


# --------------------------------------------------------------------------- general cumulative parameters


@SETTINGS
@given(**shapes)
def test_cumulative_gradient_matches_autodiff_of_tau(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    Wc, bc = cumulative_parameters(inst.weights, inst.biases)
    X, Y, w = inst.X, inst.targets, inst.point_weights

    def f(Wc_, bc_):
        return tau_cost(Wc_, bc_, X, Y, w)

    eW, eb = autograd.grad(f, argnum=(0, 1))(Wc, bc)
    dW, db = cumulative_gradient(Wc, bc, X, Y, point_weights=w)
    assert rel(dW + db, list(eW) + list(eb)) <= TOL


@SETTINGS
@given(**shapes)
def test_cumulative_gradient_reduces_to_threshold_gradient_when_adapted(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    net = inst.net
    _, db = cumulative_gradient(*net.cumulative_parameters(), inst.X, inst.targets, point_weights=inst.point_weights)
    g = threshold_gradient(net, inst.X, inst.targets, point_weights=inst.point_weights)
    np.testing.assert_allclose(-net.scales * np.stack(db), g, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- (4.5)


def test_induced_bias_kernel_by_hand():
    rng = np.random.default_rng(1)
    W1, W2, W3 = (rng.standard_normal((3, 3)) for _ in range(3))
    np.testing.assert_array_equal(induced_bias_kernel([W1])[0, 0], np.eye(3))
    K = induced_bias_kernel([W1, W2])
    np.testing.assert_allclose(K[0, 0], np.eye(3))
    np.testing.assert_allclose(K[0, 1], W2.T)
    np.testing.assert_allclose(K[1, 0], W2)
    np.testing.assert_allclose(K[1, 1], np.eye(3) + W2 @ W2.T)
    K = induced_bias_kernel([W1, W2, W3])
    np.testing.assert_allclose(K[2, 2], np.eye(3) + W3 @ W3.T + W3 @ W2 @ (W3 @ W2).T, rtol=1e-13)
    np.testing.assert_allclose(K[0, 2], (W3 @ W2).T, rtol=1e-13)
    np.testing.assert_allclose(K[1, 2], W3.T + W2 @ (W3 @ W2).T, rtol=1e-13)
    full = K.transpose(0, 2, 1, 3).reshape(9, 9)
    np.testing.assert_allclose(full, full.T, atol=1e-13)
    assert np.linalg.eigvalsh(full).min() > 0


@SETTINGS
@given(**shapes)
def test_induced_flows_match_oracles(M, L, Q, seed):
    inst = instance(M, L, Q, seed)
    args = (inst.weights, inst.biases, inst.X, inst.targets)
    kw = dict(point_weights=inst.point_weights)
    assert rel([induced_bias_kernel(inst.weights)], [orc.oracle_induced_bias_kernel(inst.weights)]) <= TOL
    flow_b = induced_bias_flow(*args, **kw)
    assert flow_b.shape == (L, M)
    assert rel([flow_b], [orc.oracle_induced_bias_flow(*args, **kw)]) <= TOL
    dW, db = induced_cumulative_flow(*args, **kw)
    eW, eb = orc.oracle_induced_cumulative_flow(*args, **kw)
    assert rel(dW + db, eW + eb) <= TOL
    gW, gb = layer_gradient(*args, **kw)
    eW, eb = orc.oracle_layer_gradient(*args, **kw)
    assert rel(gW + gb, eW + eb) <= TOL
    # Gradient descent on the biases alone: ḃ^(ℓ) = −Σ K ∇_b C, which is the bias-only part of J Jᵀ.
    _, gbc = cumulative_gradient(*cumulative_parameters(inst.weights, inst.biases), inst.X, inst.targets, **kw)
    expected = -np.einsum("lpij,pj->li", orc.oracle_induced_bias_kernel(inst.weights), np.stack(gbc))
    np.testing.assert_allclose(flow_b, expected, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- ties and degenerate cases


def test_ties_count_as_truncated():
    """A coordinate exactly at its threshold counts as truncated, as reluflow.truncation_pattern says."""
    theta = np.array([0.5, -0.25])
    net = adapted_network([np.eye(2)], [np.ones(2)], [theta])
    X = np.array([[0.5, 2.0], [1.0, -0.25], [0.0, 1.0]])  # ties: point 0 coord 0, point 1 coord 1
    Y = np.zeros((3, 2))
    pattern = truncation_pattern(*net.cumulative_parameters(), X)[0]
    np.testing.assert_array_equal(pattern, [[True, False], [False, True], [True, False]])
    # Hand: ∂C/∂θ_k = (1/N) Σ_{i truncated in k} (θ_k − y_k) = (1/3)(2·0.5, 1·(−0.25)).
    np.testing.assert_allclose(threshold_gradient(net, X, Y)[0], [1.0 / 3, -0.25 / 3], rtol=1e-15)
    # That is the one-sided derivative for increasing θ: difference quotient from the right.
    h = 1e-7
    up = adapted_network([np.eye(2)], [np.ones(2)], [theta + [h, 0]])
    cost = orc.plain_input_cost
    right = (cost(*up.cumulative_parameters(), X, Y) - cost(*net.cumulative_parameters(), X, Y)) / h
    assert right == pytest.approx(1.0 / 3, rel=1e-6)


def test_no_truncated_point_gives_zero_flows():
    rng = np.random.default_rng(3)
    M, L = 3, 2
    net0 = random_adapted_network(M, L, seed=rng)
    net = adapted_network(net0.frames, net0.scales, np.full((L, M), -50.0))
    X, Y = rng.standard_normal((10, M)), rng.standard_normal((10, M))
    for value in (threshold_gradient(net, X, Y), bias_flow(net, X, Y), frame_flow(net, X, Y)):
        assert not np.any(value)
    f = scale_bias_flow(net, X, Y)
    assert not np.any(f.scales) and not np.any(f.biases) and not np.any(f.thresholds)
    # The oracle agrees up to its own rounding noise.
    assert np.abs(orc.oracle_threshold_gradient(net, X, Y)).max() <= 1e-13


def test_all_points_truncated_collapse_to_apex():
    """θ above every point: x^(τ,1) = apex p = Rᵀθ for all i; ∂C/∂θ = Σ w_i (θ − R ỹ_i) and the frame flow by hand."""
    rng = np.random.default_rng(4)
    M = 3
    net0 = random_adapted_network(M, 1, seed=rng)
    theta = np.full((1, M), 20.0) + rng.standard_normal((1, M))
    net = adapted_network(net0.frames, net0.scales, theta)
    R = net.frames[0]
    X, Y = rng.standard_normal((8, M)), rng.standard_normal((8, M))
    w = rng.uniform(0.1, 1.0, 8)
    y_bar = (w[:, None] * Y).sum(0)
    W = w.sum()
    g = threshold_gradient(net, X, Y, point_weights=w)[0]
    np.testing.assert_allclose(g, W * theta[0] - R @ y_bar, rtol=1e-13)
    # C = ½ Σ w_i |Rᵀθ − ỹ_i|², so G = ∂C/∂R = θ (W Rᵀθ − ȳ)ᵀ and Ω = skew(G Rᵀ).
    G = np.outer(theta[0], W * R.T @ theta[0] - y_bar)
    GRt = G @ R.T
    expected = -0.5 * (GRt - GRt.T) @ R
    np.testing.assert_allclose(frame_flow(net, X, Y, point_weights=w)[0], expected, rtol=1e-12, atol=1e-12)


def test_all_truncated_in_first_layer_of_deep_network():
    rng = np.random.default_rng(5)
    net0 = random_adapted_network(2, 3, seed=rng)
    theta = net0.thresholds.copy()
    theta[0] = 30.0
    net = adapted_network(net0.frames, net0.scales, theta)
    X, Y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    expected = autograd.grad(
        lambda t: tau_cost([lam[:, None] * R for lam, R in zip(net.scales, net.frames, strict=True)],
                           [-net.scales[l] * t[l] for l in range(3)], X, Y, np.full(6, 1 / 6))
    )(net.thresholds)
    assert rel([threshold_gradient(net, X, Y)], [expected]) <= TOL


# --------------------------------------------------------------------------- error paths


def test_flow_error_paths():
    rng = np.random.default_rng(6)
    net = random_adapted_network(3, 2, seed=rng)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    Wc, bc = net.cumulative_parameters()
    with pytest.raises(TypeError, match="net must be a reluflow.AdaptedNetwork.*got tuple"):
        threshold_gradient((Wc, bc), X, Y)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3\)"):
        bias_flow(net, X[:, :2], Y)
    with pytest.raises(ValueError, match=r"targets must have shape \(N, 3\) = \(5, 3\)"):
        frame_flow(net, X, Y[:4])
    with pytest.raises(ValueError, match="point_weights must be non-negative"):
        scale_bias_flow(net, X, Y, point_weights=-np.ones(5))
    with pytest.raises(ValueError, match="X must be finite"):
        threshold_gradient(net, np.full((5, 3), np.nan), Y)
    with pytest.raises(ValueError, match="one layer.*got L = 2"):
        one_layer_threshold_flow(net, X, Y)
    with pytest.raises(TypeError, match="net must be a reluflow.AdaptedNetwork"):
        scale_bias_invariant(np.ones(3))
    with pytest.raises(ValueError, match="ill-conditioned"):
        cumulative_gradient([np.diag([1.0, 1.0, 1e-13])], [np.zeros(3)], X, Y)
    with pytest.raises(ValueError, match=r"must be square of shape \(3, 3\) like layer 1; got \(2, 2\)"):
        induced_bias_kernel([np.eye(3), np.eye(2)])
    with pytest.raises(ValueError, match="at least one layer"):
        induced_bias_kernel([])
    weights, biases = random_network(3, 2, seed=1)
    with pytest.raises(ValueError, match="weights and biases must have one entry per layer"):
        induced_bias_flow(weights, biases[:1], X, Y)
    with pytest.raises(ValueError, match=r"targets must have shape"):
        layer_gradient(weights, biases, X, Y[:, :2])
    with pytest.raises(ValueError, match="ill-conditioned"):
        induced_cumulative_flow([np.eye(3), np.diag([1.0, 1e-13, 1.0])], biases, X, Y)


# --------------------------------------------------------------------------- frozen patterns (the general backend)


def _frozen_cost(R, X, Y, w, P):
    """C_P(θ) = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² with the pattern P held fixed, m = u + P (θ − u), written with autograd's
    numpy: an independent forward pass for the frozen-pattern kernels."""
    def cost(theta):
        x = X
        for l in range(R.shape[0]):
            u = x @ R[l].T
            m = u + P[l] * (theta[l] - u)
            x = m @ R[l]
        r = x - Y
        return 0.5 * anp.sum(w[:, None] * r * r)
    return cost


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["signs", "boolean", "real"])
def test_frozen_pattern_gradient_matches_autodiff(seed, kind):
    """Oracle: autodiff of a separately written frozen-pattern forward pass (``kind="signs"``: the pattern the signs
    give, where the frozen kernel must also equal the ordinary one, an identity of the implementation)."""
    from reluflow.dynamics.events import event_values
    from reluflow.theory.flows import frame_flow_arrays, scale_bias_flow_arrays, threshold_gradient_arrays

    rng = np.random.default_rng(seed)
    L, N, M = 3, 20, 3
    net = random_adapted_network(M, L, seed=seed)
    X, Y = rng.standard_normal((N, M)), rng.standard_normal((N, M))
    w = rng.uniform(0.1, 1.0, N)
    R, lam, th = net.frames, net.scales, net.thresholds
    signs = event_values(R, th, X) <= 0.0
    P = {"signs": signs, "boolean": rng.random((L, N, M)) < 0.5, "real": rng.random((L, N, M))}[kind]
    g = threshold_gradient_arrays(R, th, X, Y, w, P)
    np.testing.assert_allclose(g, autograd.grad(_frozen_cost(R, X, Y, w, P.astype(float)))(th), rtol=1e-10,
                               atol=1e-12)
    f = scale_bias_flow_arrays(R, lam, th, X, Y, w, P)
    np.testing.assert_allclose(f.thresholds, -(1 + th**2) * g / lam**2, rtol=1e-13, atol=0)
    if kind == "signs":
        np.testing.assert_array_equal(g, threshold_gradient_arrays(R, th, X, Y, w))
        np.testing.assert_allclose(frame_flow_arrays(R, th, X, Y, w, P), frame_flow_arrays(R, th, X, Y, w),
                                   rtol=0, atol=1e-14)
        np.testing.assert_array_equal(event_values(R, th, X, P), event_values(R, th, X))


@pytest.mark.parametrize("kind", ["boolean", "real"])
def test_frozen_pattern_general_gradient_matches_the_adapted_one(kind):
    """Oracle: the adapted kernel (activation coordinates) against the general cumulative one (input space), two
    separately derived formulations, with the same frozen pattern: ∂C/∂θ_ℓ = −λ_ℓ ⊙ ∇_{b^(ℓ)} C."""
    from reluflow.theory.flows import _general_gradient, threshold_gradient_arrays

    rng = np.random.default_rng(11)
    L, N, M = 2, 15, 3
    net = random_adapted_network(M, L, seed=5)
    X, Y, w = rng.standard_normal((N, M)), rng.standard_normal((N, M)), np.full(N, 1 / N)
    P = rng.random((L, N, M)) < 0.5 if kind == "boolean" else rng.random((L, N, M))
    Wc, bc = net.cumulative_parameters()
    _, db = _general_gradient(Wc, bc, X, Y, w, P)
    g = threshold_gradient_arrays(net.frames, net.thresholds, X, Y, w, P)
    np.testing.assert_allclose(g, -net.scales * np.stack(db), rtol=1e-9, atol=1e-12)

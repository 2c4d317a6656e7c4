"""Costs in the input layer and at the output (THEORY.md §3).

Oracles: hand-computed values, and plain forward passes written here independently of
reluflow.theory.costs (a ReLU loop on the layer parameters, and the truncation map τ applied layer by layer).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reluflow import cumulative_parameters, random_network
from reluflow.theory.costs import (
    cost_weights,
    input_cost,
    output_cost,
    output_cumulative_parameters,
    pullback_targets,
    pulled_back_cost,
    targets_by_label,
)

SETTINGS = settings(max_examples=40, deadline=None)


def relu_forward(weights, biases, X):
    x = X
    for W, b in zip(weights, biases, strict=True):
        x = np.maximum(x @ W.T + b, 0.0)
    return x


def tau_forward(Wc, bc, X):
    """x^(τ,L) by τ_{W,b}(x) = W^-1(σ(Wx + b) − b), with an explicit inverse."""
    x = X
    for W, b in zip(Wc, bc, strict=True):
        x = (np.maximum(x @ W.T + b, 0.0) - b) @ np.linalg.inv(W).T
    return x


def draw(seed, M, L, N=12):
    rng = np.random.default_rng(seed)
    weights, biases = random_network(M, L, seed=rng)
    X = rng.standard_normal((N, M))
    return rng, weights, biases, X


# --------------------------------------------------------------------------- weights and targets


def test_cost_weights_uniform_and_balanced_by_hand():
    labels = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(cost_weights(labels), np.full(6, 1 / 6), rtol=0, atol=1e-16)
    expected = np.array([1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 6, 1 / 6])  # 1/(Q N_j), Q = 3, N_j = (3, 1, 2)
    np.testing.assert_allclose(cost_weights(labels, "balanced"), expected, rtol=1e-15)
    assert cost_weights(labels, "balanced").sum() == pytest.approx(1.0, abs=1e-15)
    # Q given explicitly and larger than max + 1 leaves classes empty: refused for balanced weights.
    with pytest.raises(ValueError, match="classes \\[3\\] are empty"):
        cost_weights(labels, "balanced", n_classes=4)
    np.testing.assert_allclose(cost_weights(labels, n_classes=4), np.full(6, 1 / 6))


@pytest.mark.parametrize(
    ("labels", "kwargs", "error", "match"),
    [
        ([0, 1], {"kind": "median"}, ValueError, "kind must be one of"),
        ([True, False], {}, TypeError, "labels must be an integer array"),
        ([0.0, 1.0], {}, TypeError, "labels must be an integer array"),
        ([[0, 1]], {}, ValueError, "1-D array"),
        ([], {}, TypeError, "labels must be an integer array"),
        (np.array([], dtype=int), {}, ValueError, "non-empty"),
        ([0, -1], {}, ValueError, "got minimum -1"),
        ([0, 2], {"n_classes": 2}, ValueError, "in 0..1; got maximum 2"),
        ([0, 1], {"n_classes": 0}, ValueError, "n_classes must be >= 1"),
    ],
)
def test_cost_weights_errors(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        cost_weights(labels, **kwargs)


def test_targets_by_label():
    class_targets = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(targets_by_label(class_targets, [1, 0, 1]), [[3, 4], [1, 2], [3, 4]])
    with pytest.raises(ValueError, match="labels must be class indices in 0..1; got maximum 2"):
        targets_by_label(class_targets, [0, 2])
    with pytest.raises(ValueError, match="class_targets must be a 2-D array"):
        targets_by_label([1.0, 2.0], [0])
    with pytest.raises(ValueError, match="class_targets must be finite"):
        targets_by_label([[np.nan, 1.0]], [0])


# --------------------------------------------------------------------------- C_in


def test_input_cost_by_hand():
    # One layer, W = 1, b = −θ: x^(τ,1) = max(x, θ) coordinatewise.
    X = np.array([[0.0, 2.0], [3.0, -1.0]])
    theta = np.array([1.0, 0.0])
    # x^τ = [[1, 2], [3, 0]]; targets 0; C = ½ · ½ (1 + 4 + 9 + 0) = 3.5
    assert input_cost([np.eye(2)], [-theta], X, np.zeros((2, 2))) == pytest.approx(3.5, rel=1e-15)
    # weights (0.25, 0.75): ½ (0.25·5 + 0.75·9) = 4.0
    assert input_cost([np.eye(2)], [-theta], X, np.zeros((2, 2)), point_weights=[0.25, 0.75]) == pytest.approx(4.0)


@SETTINGS
@given(M=st.integers(1, 5), L=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_input_cost_matches_tau_forward(M, L, seed):
    rng, weights, biases, X = draw(seed, M, L)
    Wc, bc = cumulative_parameters(weights, biases)
    Y = rng.standard_normal(X.shape)
    w = rng.uniform(0, 1, X.shape[0])
    r = tau_forward(Wc, bc, X) - Y
    expected = 0.5 * np.sum(w * np.sum(r**2, axis=1))
    assert input_cost(Wc, bc, X, Y, point_weights=w) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- C_out and the pull-back


@SETTINGS
@given(M=st.integers(1, 5), L=st.integers(1, 4), Q=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_output_cost_matches_relu_forward(M, L, Q, seed):
    rng, weights, biases, X = draw(seed, M, L)
    W_out, b_out = rng.standard_normal((Q, M)), rng.standard_normal(Q)
    Y = rng.standard_normal((X.shape[0], Q))
    r = relu_forward(weights, biases, X) @ W_out.T + b_out - Y
    expected = 0.5 * np.mean(np.sum(r**2, axis=1))
    assert output_cost(weights, biases, W_out, b_out, X, Y) == pytest.approx(expected, rel=1e-12)


@SETTINGS
@given(M=st.integers(1, 5), L=st.integers(1, 4), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_pullback_reaches_targets_and_has_minimum_norm(M, L, data, seed):
    Q = data.draw(st.integers(1, M))
    rng, weights, biases, _ = draw(seed, M, L)
    W_out = rng.standard_normal((Q, M)) + np.eye(Q, M)
    b_out = rng.standard_normal(Q)
    Y = rng.standard_normal((4, Q))
    y_in = pullback_targets(weights, biases, W_out, b_out, Y)
    W_total, b_total = output_cumulative_parameters(weights, biases, W_out, b_out)
    # W^(L+1) = W_out W^(L) built here from an independent product of the layers.
    W_L = np.eye(M)
    for W in weights:
        W_L = W @ W_L
    np.testing.assert_allclose(W_total, W_out @ W_L, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y_in @ W_total.T + b_total, Y, atol=1e-9)
    # Minimum-norm choice: equal to lstsq's solution of the under-determined system.
    expected = np.linalg.lstsq(W_total, (Y - b_total).T, rcond=None)[0].T
    np.testing.assert_allclose(y_in, expected, atol=1e-9)


@SETTINGS
@given(M=st.integers(1, 5), L=st.integers(1, 4), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_output_cost_equals_pulled_back_cost(M, L, data, seed):
    """C_out = ½ Σ w_i |W^(L+1)(x^(τ,L) − ỹ_i)|² for Q ≤ M."""
    Q = data.draw(st.integers(1, M))
    rng, weights, biases, X = draw(seed, M, L)
    Wc, bc = cumulative_parameters(weights, biases)
    W_out, b_out = rng.standard_normal((Q, M)) + np.eye(Q, M), rng.standard_normal(Q)
    Y = rng.standard_normal((X.shape[0], Q))
    w = cost_weights(np.arange(X.shape[0]) % 5, "balanced")  # unequal classes of 3, 3, 2, 2, 2
    W_total, _ = output_cumulative_parameters(weights, biases, W_out, b_out)
    y_in = pullback_targets(weights, biases, W_out, b_out, Y)
    c_out = output_cost(weights, biases, W_out, b_out, X, Y, point_weights=w)
    assert pulled_back_cost(Wc, bc, W_total, X, y_in, point_weights=w) == pytest.approx(c_out, rel=1e-10)


@SETTINGS
@given(M=st.integers(1, 5), L=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_costs_coincide_for_orthogonal_terminal_weights(M, L, seed):
    rng, weights, biases, X = draw(seed, M, L)
    Wc, bc = cumulative_parameters(weights, biases)
    O, _ = np.linalg.qr(rng.standard_normal((M, M)))
    W_out = O @ np.linalg.inv(Wc[-1])  # W^(L+1) = O, orthogonal
    b_out = rng.standard_normal(M)
    Y = rng.standard_normal(X.shape)
    c_out = output_cost(weights, biases, W_out, b_out, X, Y)
    c_in = input_cost(Wc, bc, X, pullback_targets(weights, biases, W_out, b_out, Y))
    assert c_in == pytest.approx(c_out, rel=1e-10)


def test_costs_differ_for_non_orthogonal_terminal_weights():
    rng, weights, biases, X = draw(3, 3, 2, N=20)
    Wc, bc = cumulative_parameters(weights, biases)
    W_out = np.diag([3.0, 1.0, 0.2]) @ np.linalg.inv(Wc[-1])  # W^(L+1) = diag(3, 1, 0.2)
    b_out = np.zeros(3)
    Y = rng.standard_normal(X.shape)
    c_out = output_cost(weights, biases, W_out, b_out, X, Y)
    c_in = input_cost(Wc, bc, X, pullback_targets(weights, biases, W_out, b_out, Y))
    assert abs(c_in - c_out) > 1e-3 * c_out


# --------------------------------------------------------------------------- error paths


def test_cost_error_paths():
    rng, weights, biases, X = draw(0, 3, 2, N=5)
    Wc, bc = cumulative_parameters(weights, biases)
    Y = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"targets must have shape \(N, 3\) = \(5, 3\).*got shape \(4, 3\)"):
        input_cost(Wc, bc, X, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="targets must be finite"):
        input_cost(Wc, bc, X, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="point_weights must be non-negative"):
        input_cost(Wc, bc, X, Y, point_weights=[1, 1, 1, 1, -1])
    with pytest.raises(ValueError, match=r"point_weights must have shape \(5,\)"):
        input_cost(Wc, bc, X, Y, point_weights=[1, 1])
    with pytest.raises(TypeError, match="point_weights must be a real numeric array"):
        input_cost(Wc, bc, X, Y, point_weights=np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="X must be finite"):
        input_cost(Wc, bc, np.full((5, 3), np.inf), Y)
    with pytest.raises(ValueError, match=r"W_out must have shape \(Q, 3\)"):
        output_cost(weights, biases, np.ones((2, 4)), np.ones(2), X, np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"b_out must have shape \(2,\)"):
        output_cost(weights, biases, np.ones((2, 3)), np.ones(3), X, np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"targets must have shape \(N, 2\)"):
        output_cost(weights, biases, np.ones((2, 3)), np.ones(2), X, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at most M = 3 rows"):
        pullback_targets(weights, biases, np.ones((4, 3)), np.ones(4), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="full row rank"):
        pullback_targets(weights, biases, np.ones((2, 3)), np.ones(2), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"targets must have shape \(N, 2\)"):
        pullback_targets(weights, biases, np.eye(2, 3), np.ones(2), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"W_total must have shape \(Q, 3\)"):
        pulled_back_cost(Wc, bc, np.eye(2), X, Y)
    with pytest.raises(ValueError, match="ill-conditioned"):
        input_cost([np.diag([1.0, 1.0, 1e-12])], [np.zeros(3)], X, Y)

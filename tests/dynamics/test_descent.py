"""Gradient descent on the cumulative scales and biases (THEORY §4.3): reluflow.dynamics.descent.

Oracles: central finite differences of the input cost C_in written through the general truncation maps
(reluflow.theory.costs.input_cost on W = diag(λ) R, b), the identity |y + η v|² = |y|² + η²|v|² for v ⊥ y,
and the general ODE solver on the scale-and-bias flow (first-order convergence in η).
"""

import numpy as np
import pytest

import reluflow as rf
from reluflow.dynamics.descent import ScaleBiasDescent, scale_bias_descent
from reluflow.dynamics.solver import solve
from reluflow.theory.adapted import rotation
from reluflow.theory.costs import targets_by_label


def _problem(seed=3, L=1):
    data = rf.clustered_data([[-1.0, 0.3], [0.8, -0.6]], 0.6, 10, seed=seed)
    Y = targets_by_label([[1.6, 1.2], [1.0, 2.0]], data.labels)
    frames = [rotation(20.0), rotation(-35.0)][:L]
    net = rf.adapted_network(frames, [[1.0, 1.3], [0.9, 1.1]][:L], [[-0.5, -0.2], [-0.8, -0.4]][:L])
    return net, data.points, Y


def _cost(frames, lam, b, X, Y):
    """C_in through the general truncation maps, as a function of (λ, b) only."""
    Wc = [s[:, None] * R for R, s in zip(frames, lam)]
    return rf.input_cost(Wc, list(b), X, Y)


@pytest.mark.parametrize("L", [1, 2])
def test_one_step_is_minus_eta_times_the_finite_difference_gradient(L):
    net, X, Y = _problem(L=L)
    lam0, b0 = net.scales, -net.scales * net.thresholds
    eta, h = 0.1, 1e-6
    g_lam, g_b = np.zeros_like(lam0), np.zeros_like(b0)
    for idx in np.ndindex(lam0.shape):
        e = np.zeros_like(lam0)
        e[idx] = h
        g_lam[idx] = (_cost(net.frames, lam0 + e, b0, X, Y) - _cost(net.frames, lam0 - e, b0, X, Y)) / (2 * h)
        g_b[idx] = (_cost(net.frames, lam0, b0 + e, X, Y) - _cost(net.frames, lam0, b0 - e, X, Y)) / (2 * h)
    assert np.abs(g_b).max() > 1e-3  # the instance moves
    gd = scale_bias_descent(net, X, Y, eta, 1)
    np.testing.assert_allclose(gd.scales[1], lam0 - eta * g_lam, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gd.biases[1], b0 - eta * g_b, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(gd.scales[0], lam0)
    np.testing.assert_array_equal(gd.thresholds[0], net.thresholds)


def test_each_step_raises_the_invariant_by_eta_squared_velocity_squared():
    net, X, Y = _problem()
    eta = 0.2
    gd = scale_bias_descent(net, X, Y, eta, 40)
    assert isinstance(gd, ScaleBiasDescent) and gd.n_steps == 40
    np.testing.assert_allclose(gd.time, eta * np.arange(41))
    increment = np.diff(gd.scales**2 + gd.biases**2, axis=0)
    expected = eta**2 * (gd.scale_velocity**2 + gd.bias_velocity**2)
    np.testing.assert_allclose(increment, expected, rtol=0, atol=1e-13)
    assert np.all(increment >= 0) and increment.sum() > 1e-4  # it strictly grows, the flow would conserve it
    np.testing.assert_allclose(gd.invariant, gd.scales**2 + gd.biases**2)


def test_descent_converges_to_the_flow_at_first_order():
    net, X, Y = _problem()
    T = 2.0
    flow = solve(net, X, Y, [T], method="general", flow="scale_bias", record_events=False)
    lam_T = flow.scales.isel(time=-1).values
    errors = []
    for eta in (0.04, 0.02, 0.01):
        gd = scale_bias_descent(net, X, Y, eta, int(round(T / eta)))
        errors.append(np.abs(gd.scales[-1] - lam_T).max())
    slope = np.polyfit(np.log([0.04, 0.02, 0.01]), np.log(errors), 1)[0]
    assert 0.8 <= slope <= 1.2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [(dict(lr=0.0), ValueError, "lr"), (dict(lr=-1.0), ValueError, "lr"), (dict(n_steps=0), ValueError, "n_steps"),
     (dict(n_steps=2.0), TypeError, "n_steps")],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    net, X, Y = _problem()
    args = dict(lr=0.1, n_steps=3) | kwargs
    with pytest.raises(error, match=match):
        scale_bias_descent(net, X, Y, args["lr"], args["n_steps"])


def test_net_must_be_adapted_and_scales_stay_positive():
    net, X, Y = _problem()
    with pytest.raises(TypeError, match="net"):
        scale_bias_descent(net.cumulative_parameters(), X, Y, 0.1, 2)
    # θ > 0 below the target: g = ∂C/∂θ < 0, so λ̇ = θ g/λ < 0 and a huge step overshoots λ = 0
    up = rf.adapted_network([np.eye(2)], [[1.0, 1.0]], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="non-positive"):
        scale_bias_descent(up, X, np.full_like(X, 3.0), 1e4, 5)

"""The oracles themselves, the sympy verification and the ≥ 200-instance battery (THEORY.md §6)."""

import sys

import numpy as np
import pytest
import scipy.linalg
import xarray as xr

from reluflow import adapted_network, random_adapted_network
from reluflow.testing import oracles as orc


@pytest.fixture(scope="module")
def battery():
    return orc.verification_battery(200, seed=2501)


def test_battery_worst_relative_error(battery):
    """Every derived formula agrees with autodiff to ≤ 1e-10 (and with central differences to ≤ 1e-6)."""
    assert battery.sizes["instance"] == 200
    worst = battery["worst_relative_error"]
    assert float(worst.sel(oracle="autodiff").max()) <= orc.TOLERANCE
    assert float(worst.sel(oracle="finite_difference").max()) <= orc.FD_TOLERANCE
    assert np.all(worst.notnull())
    # Every check ran on every instance, except the one-layer closed form (L = 1 only).
    n = battery["n_checked"].to_series()
    assert (n.drop("one_layer_threshold_flow") == 200).all()
    assert n["one_layer_threshold_flow"] == int((battery["L"] == 1).sum()) > 20
    # The instances cover the brief's ranges and respect the tie margin.
    assert set(battery["M"].values) == {1, 2, 3, 4, 5}
    assert set(battery["L"].values) == {1, 2, 3, 4}
    assert set(battery["Q"].values) == {1, 2, 3}
    assert float(battery["tie_margin"].min()) >= orc.TIE_MARGIN


def test_battery_schema(battery):
    for name, var in {**battery.data_vars, **{k: battery[k] for k in ("N", "M", "L", "Q")}}.items():
        assert isinstance(var.attrs["long_name"], str) and var.attrs["units"] == "1", name
    for key, value in battery.attrs.items():
        assert isinstance(value, (str, int, float)) and not isinstance(value, bool), key
    assert list(battery["equation"].values) == list(orc.EQUATIONS)
    assert list(battery["oracle"].values) == ["autodiff", "finite_difference"]


def test_battery_is_deterministic_and_can_skip_differences():
    a = orc.verification_battery(3, seed=9, finite_differences=False)
    b = orc.verification_battery(3, seed=9, finite_differences=False)
    xr.testing.assert_identical(a, b)
    assert bool(a["relative_error"].sel(oracle="finite_difference").isnull().all())
    c = orc.verification_battery(3, seed=10, finite_differences=False)
    assert not a.identical(c)


def test_symbolic_checks():
    result = orc.symbolic_checks()
    assert result.passed is True
    assert len(result.checks) == 7
    assert all(ok is True for _, ok in result.checks)
    assert "conservation" in repr(result)


# --------------------------------------------------------------------------- the oracles on closed forms


def test_oracle_threshold_gradient_one_layer_by_hand():
    """R = 1, λ = (2, 0.5): ∂C/∂θ_k = (1/N) Σ_{x_ik < θ_k} (θ_k − y_ik), both methods."""
    X = np.array([[0.0, 3.0], [2.0, -1.0], [-1.0, 1.0]])
    Y = np.array([[1.0, 1.0], [0.0, 2.0], [0.5, 0.0]])
    theta = np.array([0.7, 0.2])
    net = adapted_network([np.eye(2)], [[2.0, 0.5]], [theta])
    expected = np.array([(0.7 - 1.0) + (0.7 - 0.5), (0.2 - 2.0)]) / 3
    for method, tol in (("autodiff", 1e-14), ("finite_difference", 1e-9)):
        np.testing.assert_allclose(orc.oracle_threshold_gradient(net, X, Y, method=method)[0], expected,
                                   rtol=tol, atol=tol)


def test_oracle_frame_flow_one_point_by_hand():
    """One point, M = 2, R = rotation, nothing truncated in layer 1 except coordinate 0.

    C(R) = ½|Rᵀ m(R) − y|² with m = (θ_0, (Rx)_1); computed here by scipy.linalg.expm and differences.
    """
    x, y = np.array([0.3, 1.1]), np.array([2.0, -1.0])
    phi = 0.4
    R = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    net = adapted_network([R], [[1.5, 0.8]], [[(R @ x)[0] + 0.5, -3.0]])
    B = np.array([[0.0, 1.0], [-1.0, 0.0]]) / np.sqrt(2)

    def cost(a):
        Ra = scipy.linalg.expm(a * B) @ R
        m = np.maximum(Ra @ x, net.thresholds[0])
        return 0.5 * np.sum((Ra.T @ m - y) ** 2)

    h = 1e-6
    a_dot = -(cost(h) - cost(-h)) / (2 * h)
    expected = a_dot * B @ R
    got = orc.oracle_frame_flow(net, x[None, :], y[None, :])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-10)


def test_expm_series_matches_scipy():
    rng = np.random.default_rng(0)
    for scale in (1e-6, 0.3, 3.0, 20.0):
        S = rng.standard_normal((4, 4)) * scale
        A = S - S.T
        np.testing.assert_allclose(orc._expm_series(np, np.asarray, A), scipy.linalg.expm(A), rtol=1e-12, atol=1e-12)


def test_tie_margin_and_relative_error_by_hand():
    theta = np.array([0.5, -0.25])
    net = adapted_network([np.eye(2)], [[4.0, 0.5]], [theta])
    X = np.array([[0.6, 1.0], [-3.0, -0.2]])  # distances |x − θ|: 0.1, 1.25, 3.5, 0.05
    assert orc.tie_margin(*net.cumulative_parameters(), X) == pytest.approx(0.05, rel=1e-12)
    assert orc.frobenius_relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert orc.frobenius_relative_error(np.array([3.0, 4.0]), np.array([0.0, 0.0])) == pytest.approx(5.0)
    got = orc.frobenius_relative_error([np.ones(2), np.zeros(1)], [np.ones(2), np.ones(1)])
    assert got == pytest.approx(1 / np.sqrt(3))


def test_battery_covers_every_size_by_construction():
    for seed in (20, 35, 7):  # any seed: the first five instances take permutations of the sizes
        b = orc.verification_battery(5, seed=seed, finite_differences=False)
        assert set(b["M"].values) == {1, 2, 3, 4, 5}
        assert set(b["L"].values) == {1, 2, 3, 4}
        assert set(b["Q"].values) == {1, 2, 3}
        assert b["redrawn_margin"].dtype.kind == "i" and b["redrawn_conditioning"].dtype.kind == "i"


def test_draw_instance_rejects_ill_conditioned_weights():
    """Every layer and cumulative weight keeps its smallest singular value ≥ MIN_SINGULAR_VALUE; redraws counted."""
    found = False
    for seed in range(40):
        inst = orc.draw_instance(seed, M=1, L=4)
        Wc, _ = orc.cumulative_parameters(inst.weights, inst.biases)
        smallest = min(abs(float(W[0, 0])) for W in [*inst.weights, *Wc])
        assert smallest >= orc.MIN_SINGULAR_VALUE
        found |= inst.redrawn_conditioning > 0
    assert found  # with M = 1 and 4 layers some draws are rejected, so the condition is not vacuous
    with pytest.raises(ValueError, match="ill-conditioned"):
        orc.draw_instance(0, M=2, L=2, min_singular_value=100.0, max_attempts=3)
    with pytest.raises(ValueError, match="min_singular_value"):
        orc.draw_instance(0, min_singular_value=-1.0)


def test_draw_instance_is_deterministic_and_respects_margin():
    a, b = orc.draw_instance(123), orc.draw_instance(123)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.net.thresholds, b.net.thresholds)
    assert a.margin >= orc.TIE_MARGIN
    inst = orc.draw_instance(5, M=4, L=3, Q=2, tie_margin_min=0.01)
    assert inst.shape[1:] == (4, 3, 2) and inst.margin >= 0.01
    assert "OracleInstance" in repr(inst)


def test_no_truncation_oracle_gives_zero_within_rounding():
    rng = np.random.default_rng(1)
    net0 = random_adapted_network(3, 2, seed=rng)
    net = adapted_network(net0.frames, net0.scales, np.full((2, 3), -40.0))
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    assert np.abs(orc.oracle_bias_flow(net, X, Y)).max() <= 1e-13
    assert np.abs(orc.oracle_frame_flow(net, X, Y)).max() <= 1e-13


# --------------------------------------------------------------------------- error paths


def test_oracle_error_paths(monkeypatch):
    inst = orc.draw_instance(0, M=2, L=1, Q=1)
    args = (inst.net, inst.X, inst.targets)
    with pytest.raises(ValueError, match="method must be one of .*got 'symbolic'"):
        orc.oracle_threshold_gradient(*args, method="symbolic")
    with pytest.raises(ValueError, match="step must be a positive finite number; got 0"):
        orc.oracle_bias_flow(*args, method="finite_difference", step=0)
    with pytest.raises(ValueError, match="n_instances must be >= 1; got 0"):
        orc.verification_battery(0)
    with pytest.raises(TypeError, match="finite_differences must be True or False"):
        orc.verification_battery(1, finite_differences=1)
    with pytest.raises(TypeError, match="inst must be an OracleInstance"):
        orc.check_instance("instance")
    with pytest.raises(ValueError, match="tie_margin_min=10 was not reached in max_attempts=3"):
        orc.draw_instance(0, tie_margin_min=10.0, max_attempts=3)
    with pytest.raises(ValueError, match="equal shapes; entry 0 has"):
        orc.frobenius_relative_error(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match="both be arrays or both be sequences"):
        orc.frobenius_relative_error([np.ones(2)], np.ones(2))
    with pytest.raises(ValueError, match=r"targets must have shape \(N, 2\)"):
        orc.oracle_frame_flow(inst.net, inst.X, inst.targets[:, :1])
    # Without autograd, the autodiff oracle says how to install it; finite differences still work.
    monkeypatch.setitem(sys.modules, "autograd", None)
    with pytest.raises(ImportError, match=r"'test' extra: pip install 'reluflow\[test\]'"):
        orc.oracle_threshold_gradient(*args)
    assert orc.oracle_threshold_gradient(*args, method="finite_difference").shape == (1, 2)

"""Effective flows against gradient descent (THEORY §4.2, §4.5, §6) and spectra along a solution (§5, S6).

Oracles: the exact event solver and the solve_ivp backend of reluflow.dynamics.solver (written separately),
the library's own induced flow (4.5) integrated by solve_ivp, hand-written gradient descent in
reluflow.training.gd, closed forms derived here (time rescaling by a scalar kernel, the one-cluster
exponential), the input cost and truncation counts computed directly from u = R x and θ.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import reluflow as rf
from reluflow.dynamics.solver import solve
from reluflow.testing.problems import random_problem, two_cluster_problem
from reluflow.theory.costs import input_cost
from reluflow.training.comparison import (
    asymptotic_slope,
    convergence_slope,
    count_runs,
    effective_comparison,
    errors_decrease,
    events_matched,
    gd_convergence,
    matched_time_error,
)
from reluflow.training.spectral import spectral_trajectory

# --------------------------------------------------------------------------- matching, slopes, convergence


def test_matched_time_error_and_slope():
    times = np.arange(5) * 0.5
    gd = xr.Dataset({"thresholds": (("time", "a"), np.outer(times, [1.0, 2.0]))}, coords={"time": times})
    ref_t = np.arange(9) * 0.25
    ref = xr.Dataset({"thresholds": (("time", "a"), np.outer(ref_t, [1.0, 2.5]))}, coords={"time": ref_t})
    err, n, t_last = matched_time_error(gd, ref)
    assert (err, n, t_last) == (pytest.approx(1.0), 5, 2.0)  # 0.5·2.0 at t = 2
    short = ref.isel(time=slice(0, 5))  # reference up to t = 1: only t ≤ 1 are compared
    assert matched_time_error(gd, short)[1:] == (3, 1.0)
    with pytest.raises(ValueError, match="must hold every recorded time"):
        matched_time_error(gd, ref.isel(time=[0, 1, 3, 4, 5, 6, 7, 8]))
    with pytest.raises(ValueError, match="variable 'cost'"):
        matched_time_error(gd, ref, variable="cost")
    with pytest.raises(TypeError, match="trajectory must be"):
        matched_time_error({"time": times}, ref)
    etas = np.array([0.1, 0.05, 0.025])
    p, c = convergence_slope(etas, 3.0 * etas**1.5)
    assert p == pytest.approx(1.5, abs=1e-12) and np.exp(c) == pytest.approx(3.0, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        convergence_slope(etas, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="equal length"):
        convergence_slope(etas, [1.0, 2.0])


def test_gd_convergence_bias_flow_and_errors():
    net, X, Y = two_cluster_problem(2, n=10)
    weights, biases = rf.layer_parameters(*net.cumulative_parameters())
    etas = [0.1, 0.05, 0.025, 0.0125]
    ref = solve(net, X, Y, np.arange(1, 241) * 0.0125, method="exact", record_events=False)
    res = gd_convergence(weights, biases, X, Y, ref, etas=etas, t_end=3.0, mode="adapted")
    assert res.n_steps.values.tolist() == [30, 60, 120, 240]
    assert np.all(res.t_compared.values == pytest.approx(3.0))
    assert 0.8 <= convergence_slope(etas, res.threshold_error.values[0])[0] <= 1.2
    assert res.cost_error.values[0, -1] < 0.05
    with pytest.raises(TypeError, match="references must be"):
        gd_convergence(weights, biases, X, Y, [ref], etas=etas, t_end=3.0, mode="adapted")
    with pytest.raises(ValueError, match="etas must be"):
        gd_convergence(weights, biases, X, Y, ref, etas=[0.1, -0.1], t_end=3.0, mode="adapted")
    with pytest.raises(ValueError, match="t_end must be"):
        gd_convergence(weights, biases, X, Y, ref, etas=etas, t_end=0.0, mode="adapted")


def test_effective_comparison_one_layer():
    net, X, Y = two_cluster_problem(0, n=10, L=1)
    # ρ = 0, one layer: layer and cumulative parameters coincide, so both runs are the same descent
    same = effective_comparison(net, X, Y, weight_lr_ratio=0.0, lr=0.05, n_steps=60, record_every=6)
    assert same.cost_error.max() <= 1e-12 and same.threshold_error.max() <= 1e-12
    assert same.count_error.max() == 0 and same.adaptedness.max() <= 1e-12 and same.attrs["status"] == 0
    Wc, bc = net.cumulative_parameters()
    assert float(same.cost_gd[0]) == pytest.approx(input_cost(Wc, bc, X, Y), rel=1e-12)
    assert same.time.values[-1] == pytest.approx(3.0)
    moving = effective_comparison(net, X, Y, weight_lr_ratio=1.0, lr=0.05, n_steps=60, record_every=6)
    assert moving.adaptedness.max("layer")[0] <= 1e-12 < moving.adaptedness.max("layer")[-1]
    assert moving.cost_error.max() > 1e-3 and bool(moving.completed.all())
    with pytest.raises(TypeError, match="net must be"):
        effective_comparison(Wc, X, Y, weight_lr_ratio=1.0, lr=0.05, n_steps=6)
    with pytest.raises(ValueError, match="n_steps"):
        effective_comparison(net, X, Y, weight_lr_ratio=1.0, lr=0.05, n_steps=0)


# --------------------------------------------------------------------------- spectral_trajectory along a flow


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), M=st.integers(1, 4))
def test_spectral_trajectory_of_a_flow_one_layer(seed, M):
    net, X, Y = random_problem(seed, M, 1, 20)
    sol = solve(net, X, Y, np.linspace(0.1, 4.0, 25), method="exact", record_events=False)
    spec = spectral_trajectory(sol, X, Y, net=net)
    R, lam = net.frames[0], net.scales[0]
    for s, theta in enumerate(sol.thresholds.values[:, 0]):
        u = X @ R.T
        if np.any(np.abs(u - theta) <= 1e-12):  # a threshold resting on a point (sliding): a rounding-level tie
            continue
        n = (u <= theta).sum(axis=0)  # counts directly from u = R x and θ
        assert np.array_equal(spec.n_truncated.values[s, 0], n)
        want = np.sort((n / lam**2)[n > 0])
        eig = spec.gram_eigenvalues.values[s]  # ascending, N·M of them
        got = eig[eig.size - spec.gram_rank.values[s]:]
        np.testing.assert_allclose(got, want, rtol=1e-10)
        np.testing.assert_allclose(spec.bias_flow_rates.values[s, 0], n / lam**2, rtol=1e-12)
        assert abs(spec.lambda_min.values[s]) <= 1e-12 * max(eig.max(), 1.0)  # D has N·M > M rows
        if n.any():
            assert spec.lambda_min_plus.values[s] == pytest.approx(want.min(), rel=1e-10)
    np.testing.assert_allclose(spec.cost.values, sol.cost.values, rtol=1e-10)
    total = spec.residual_range_norm**2 + spec.residual_orthogonal_norm**2
    np.testing.assert_allclose(total.values, 2 * X.shape[0] * spec.cost.values, rtol=1e-10)
    drift = spec.orthogonal_drift.values
    assert np.nanmax(drift, initial=0.0) <= 1e-10  # constant between events


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_trajectory_of_a_flow_terminal_metric(seed):
    # one layer with a terminal W_out: Dᵀ D = (TᵀT) ⊙ (W_outᵀ W_out) with the cumulative terminal fixed,
    # (UᵀU) ⊙ (W_outᵀ W_out) with the layer's own (W_out, b_out) fixed; T from u = R x ≤ θ, U = 1 − T
    net, X, Y = random_problem(seed, 3, 1, 12)
    rng = np.random.default_rng(seed + 100)
    W_out = rng.standard_normal((3, 3))
    sol = solve(net, X, Y, np.linspace(0.2, 3.0, 8), method="exact", record_events=False)
    cum = spectral_trajectory(sol, X, Y, net=net, W_out=W_out, terminal="cumulative")
    lay = spectral_trajectory(sol, X, Y, net=net, W_out=W_out, terminal="layer")
    assert "cost" not in cum and cum.attrs["outputs"].endswith("cumulative terminal parameters fixed")
    metric = W_out.T @ W_out
    for s, theta in enumerate(sol.thresholds.values[:, 0]):
        u = X @ net.frames[0].T
        if np.any(np.abs(u - theta) <= 1e-12):  # rounding-level tie (sliding point)
            continue
        T = (u <= theta).astype(float)
        for spec, ind in ((cum, T), (lay, 1.0 - T)):
            want = np.sort(np.linalg.eigvalsh((ind.T @ ind) * metric))[::-1]
            got = spec.gram_eigenvalues.values[s][::-1][:3]  # the three largest of the N·Q eigenvalues
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * want.max())
    # W^(2) = W_out W orthogonal: the metric is the identity and the spectrum is n_k/λ_k² again
    Wc, _ = net.cumulative_parameters()
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    ortho = spectral_trajectory(sol, X, Y, net=net, W_out=Q @ np.linalg.inv(Wc[0]), terminal="cumulative")
    plain = spectral_trajectory(sol, X, Y, net=net)
    np.testing.assert_allclose(ortho.gram_eigenvalues.values, plain.gram_eigenvalues.values, rtol=1e-10,
                               atol=1e-12)


def test_spectral_trajectory_of_a_flow_errors():
    net, X, Y = random_problem(0, 2, 1, 5)
    sol = solve(net, X, Y, [1.0], method="exact")
    with pytest.raises(TypeError, match="trajectory must be an xarray.Dataset"):
        spectral_trajectory(sol.thresholds, X, Y, net=net)
    with pytest.raises(ValueError, match="needs net"):
        spectral_trajectory(sol, X, Y)
    with pytest.raises(TypeError, match="net must be a reluflow.AdaptedNetwork"):
        spectral_trajectory(sol, X, Y, net="net")
    deep, _, _ = random_problem(0, 2, 2, 5)
    with pytest.raises(ValueError, match="to match net"):
        spectral_trajectory(sol, X, Y, net=deep)
    with pytest.raises(ValueError, match="rtol"):
        spectral_trajectory(sol, X, Y, net=net, rtol=-1.0)
    with pytest.raises(ValueError, match="terminal must be"):
        spectral_trajectory(sol, X, Y, net=net, W_out=np.eye(2), terminal="output")
    with pytest.raises(ValueError, match="W_out must have shape"):
        spectral_trajectory(sol, X, Y, net=net, W_out=np.eye(3))


def test_asymptotic_slope_fits_the_matched_smallest_steps_only():
    etas = np.array([0.08, 0.04, 0.02, 0.01, 0.005])
    errors = np.array([0.03, 0.029, 0.02, 0.01, 0.005])  # a plateau (near miss crossed) above eta = 0.02
    p, n = asymptotic_slope(etas, errors, np.array([False, False, True, True, True]))
    assert n == 3 and p == pytest.approx(1.0)
    assert convergence_slope(etas, errors)[0] < 0.8  # the plain fit over the plateau is not first order
    p, n = asymptotic_slope(etas[::-1], errors[::-1], np.array([True, True, True, False, True]))  # any order
    assert n == 3 and p == pytest.approx(1.0)
    assert np.isnan(asymptotic_slope(etas, errors, np.array([True, True, True, False, True]))[0])  # 1 < 3
    p2, n = asymptotic_slope(etas, 5 * etas**2, np.ones(5, bool))  # a wrong order still fails [0.8, 1.2]
    assert n == 5 and p2 == pytest.approx(2.0)
    with pytest.raises(ValueError, match="matched"):
        asymptotic_slope(etas, errors, [1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="min_points"):
        asymptotic_slope(etas, errors, np.ones(5, bool), min_points=1)
    with pytest.raises(ValueError, match="errors"):
        asymptotic_slope(etas, errors[:4], np.ones(5, bool))


def test_events_matched_allows_late_and_merged_events_but_not_extra_ones():
    def ds(counts):
        c = np.asarray(counts)[:, None, None]
        return xr.Dataset({"n_truncated": (("time", "layer", "coordinate"), c)},
                          coords={"time": np.arange(c.shape[0], dtype=float)})
    fine = count_runs(ds([5, 5, 4, 4, 3, 2, 2]))
    assert [r.tolist() for r in fine] == [[5, 4, 3, 2]]
    assert events_matched(count_runs(ds([5, 5, 5, 4, 2])), fine)  # late, and two events in one step
    assert not events_matched(count_runs(ds([5, 6, 5, 4, 3, 2])), fine)  # an extra (grazing) event
    assert events_matched(count_runs(ds([5, 4, 3])), fine)  # a run stopped before the last event
    with pytest.raises(ValueError, match="coarse and fine"):
        events_matched(fine, fine + fine)
    with pytest.raises(ValueError, match="n_truncated"):
        count_runs(xr.Dataset(coords={"time": [0.0]}))


def test_errors_decrease_allows_event_phase_scatter_but_not_a_plateau_or_a_wrong_order():
    """Separately derived: e = c(eta) eta with c in [0.13, 0.29] (notebook 06, fast profile, seed 201) passes;
    a plateau, a growing error and an unmatched range fail."""
    etas = 0.08 / 2.0 ** np.arange(8)
    seen = np.array([1.31e-2, 8.99e-3, 5.72e-3, 2.21e-3, 6.71e-4, 6.96e-4, 2.61e-4, 1.22e-4])
    ok, rise, fall = errors_decrease(etas, seen, np.ones(8, bool))
    assert ok and rise == pytest.approx(6.96e-4 / 6.71e-4) and fall == pytest.approx(5.72e-3 / 1.31e-2)
    assert not bool(np.all(np.diff(seen) < 0))  # the strict test this replaces fails on it
    ok, rise, _ = errors_decrease(etas[::-1], seen[::-1], np.ones(8, bool))  # any order
    assert ok and rise == pytest.approx(6.96e-4 / 6.71e-4)
    plateau = np.r_[seen[:4], np.full(4, 6.7e-4)]
    assert not errors_decrease(etas, plateau, np.ones(8, bool))[0]
    assert not errors_decrease(etas, plateau, np.r_[np.zeros(4, bool), np.ones(4, bool)])[0]  # even when fitted alone
    assert not errors_decrease(etas, 0.1 * etas**0.2, np.ones(8, bool))[0]  # order 0.2: 1.32x per quarter, too little
    assert errors_decrease(etas, 0.1 * etas**0.5, np.ones(8, bool))[0]  # order 1/2 decreases (the slope check fails it)
    assert errors_decrease(etas, 0.1 * etas, np.ones(8, bool))[0]
    assert not errors_decrease(etas, seen[::-1], np.ones(8, bool))[0]  # growing
    ok, rise, fall = errors_decrease(etas, seen, np.r_[np.zeros(6, bool), np.ones(2, bool)])  # 2 < min_points
    assert not ok and np.isnan(rise) and np.isnan(fall)
    with pytest.raises(ValueError, match="matched"):
        errors_decrease(etas, seen, np.ones(8, int))

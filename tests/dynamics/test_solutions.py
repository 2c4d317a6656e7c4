"""Solution classes S1–S5: the explicit one-cluster solution, NC1, and the scenario constructors.

Oracles: a direct numerical integration of θ̇ = −(n(θ)/(λ²N))(θ − ŷ) with n recounted from the data
(scipy's solve_ivp, no event handling, small steps), plain loops over points for the variability
measures, and the general truncation maps of reluflow.theory.truncation for the scenarios.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import reluflow as rf
from reluflow.dynamics.solutions import (
    equilibrium_residual,
    interference_point,
    nc1,
    one_cluster_solution,
    separated_clusters,
    separation_margin,
    truncated_images,
    two_cluster_scenario,
    within_class_variability,
)
from reluflow.dynamics.solver import solve
from reluflow.pipeline.sweep import sweep


def _integrate(u, theta0, y_hat, lam, N, times):
    """θ(t) by direct integration of the discontinuous right-hand side (small steps, no events)."""

    def rhs(_t, th):
        n = np.count_nonzero(u <= th[0])
        return [-(n / (lam**2 * N)) * (th[0] - y_hat)]

    sol = solve_ivp(rhs, (0.0, times[-1]), [theta0], t_eval=times, max_step=2e-3, rtol=1e-10, atol=1e-12)
    return sol.y[0]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), case=st.sampled_from(["sweep", "stop", "release"]))
def test_one_cluster_solution_matches_direct_integration(seed, case):
    rng = np.random.default_rng(seed)
    u = np.sort(rng.uniform(-1, 1, 12))
    lam = float(rng.uniform(0.5, 1.5))
    N = 12 + int(rng.integers(0, 5))
    theta0, y_hat = {"sweep": (0.5 * (u[0] + u[1]), 2.0), "stop": (0.5 * (u[0] + u[1]), 0.5 * (u[5] + u[6])),
                     "release": (0.5 * (u[8] + u[9]), -2.0)}[case]
    sol = one_cluster_solution(u, theta0, y_hat, lam, N)
    times = np.linspace(0.0, 3 * lam**2 * N / 3, 60)
    ref = _integrate(u, theta0, y_hat, lam, N, times)
    assert np.abs(sol.theta(times) - ref).max() < 2e-4


def test_event_times_are_first_hitting_times():
    u = np.array([-0.9, -0.5, -0.1, 0.3, 0.7])
    sol = one_cluster_solution(u, -0.95, 1.0, 0.8, 7)
    # θ(0) = −0.95 < u_(1): nothing truncated at the start, so the threshold is dead (S1)
    assert sol.event_time.size == 0 and np.all(sol.theta([0.0, 5.0]) == -0.95)
    sol = one_cluster_solution(u, -0.7, 1.0, 0.8, 7)
    # independent closed form: θ(t) = ŷ + (θ_m − ŷ) exp(−n (t − t_m)/(λ² N)) hits u_(m+1)
    t, theta, n, expected = 0.0, -0.7, 1, []
    for nxt in u[1:]:
        t += np.log((1.0 - theta) / (1.0 - nxt)) * 0.64 * 7 / n
        expected.append(t)
        theta, n = nxt, n + 1
    np.testing.assert_allclose(sol.event_time, expected, rtol=1e-14)
    np.testing.assert_allclose(sol.theta(sol.event_time), u[1:], atol=1e-14)
    assert np.all(sol.event_kind == 1) and sol.n[-1] == 5
    np.testing.assert_allclose(sol.rate[-1], 5 / (0.64 * 7))


def test_release_freezes_at_the_lowest_point():
    u = np.array([-0.9, -0.5, -0.1, 0.3])
    sol = one_cluster_solution(u, 0.0, -3.0, 1.0)
    assert np.all(sol.event_kind == -1) and sol.event_time.size == 3 and sol.n[-1] == 0
    assert sol.theta(1e6)[()] == -0.9


def test_ties_cross_together():
    sol = one_cluster_solution(np.array([0.0, 0.5, 0.5, 0.5, 0.9]), 0.1, 2.0, 1.0)
    assert sol.event_count.tolist() == [3, 1] and sol.n.tolist() == [1, 4, 5]


def test_one_cluster_solution_errors():
    with pytest.raises(ValueError, match="u must hold"):
        one_cluster_solution(np.array([]), 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        one_cluster_solution(np.ones(3), 0.0, 1.0, -1.0)
    with pytest.raises(TypeError, match="theta0"):
        one_cluster_solution(np.ones(3), "a", 1.0, 1.0)
    with pytest.raises(ValueError, match="n_total"):
        one_cluster_solution(np.ones(3), 0.0, 1.0, 1.0, n_total=2)
    with pytest.raises(ValueError, match="finite"):
        one_cluster_solution(np.array([0.0, np.nan]), 0.0, 1.0, 1.0)


def test_variability_and_nc1_against_loops():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((25, 3))
    lab = np.repeat([0, 1, 2], [8, 9, 8])
    mu = np.array([X[lab == j].mean(axis=0) for j in range(3)])
    sw_trace = sum(float(np.sum((X[i] - mu[lab[i]]) ** 2)) for i in range(25)) / 25
    assert within_class_variability(X, lab) == pytest.approx(sw_trace, rel=1e-13)
    Sw = sum(np.outer(X[i] - mu[lab[i]], X[i] - mu[lab[i]]) for i in range(25)) / 25
    g = mu.mean(axis=0)
    Sb = sum(np.outer(m - g, m - g) for m in mu) / 3
    assert nc1(X, lab) == pytest.approx(np.trace(Sw @ np.linalg.pinv(Sb)) / 3, rel=1e-10)
    # collapsed classes: both vanish; stacked inputs are handled per leading index
    Xc = mu[lab]
    out = within_class_variability(np.stack([X, Xc]), lab)
    assert out.shape == (2,) and out[1] <= 1e-30
    assert nc1(np.stack([X, Xc]), lab)[1] <= 1e-28


def test_variability_errors():
    with pytest.raises(ValueError, match="labels must have shape"):
        nc1(np.zeros((4, 2)), np.array([0, 1]))
    with pytest.raises(TypeError, match="labels"):
        within_class_variability(np.zeros((2, 2)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty class"):
        nc1(np.zeros((2, 2)), np.array([0, 2]))


def test_truncated_images_match_truncation_maps():
    net = rf.random_adapted_network(3, 4, seed=5)
    X = np.random.default_rng(6).standard_normal((20, 3))
    Wc, bc = net.cumulative_parameters()
    ref = rf.truncated_data(Wc, bc, X)[-1]
    th = np.stack([net.thresholds, net.thresholds + 0.3])
    imgs = truncated_images(net.frames, th, X)
    np.testing.assert_allclose(imgs[0], ref, atol=1e-12)
    Wc2, bc2 = rf.adapted_network(net.frames, net.scales, th[1]).cumulative_parameters()
    np.testing.assert_allclose(imgs[1], rf.truncated_data(Wc2, bc2, X)[-1], atol=1e-12)
    with pytest.raises(ValueError, match="thresholds must have shape"):
        truncated_images(net.frames, np.zeros((4, 2)), X)


@pytest.mark.parametrize("Q, distance", [(2, 3.0), (3, 8.0)])
def test_separated_clusters_zero_cost_and_margin(Q, distance):
    sc = separated_clusters(Q, Q, 15, distance=distance, seed=1)
    X, lab = sc.data.points, sc.data.labels
    assert separation_margin(sc.net, X, lab, sc.collapse_thresholds) > 0
    # targets lie beyond every point of their cluster in every coordinate of its layer's frame
    for j in range(Q):
        u = sc.data.cluster(j) @ sc.net.frames[j].T
        assert np.all(u < sc.collapse_thresholds[j])
    # at θ* every cluster sits exactly on its target: zero cost through the general truncation maps
    star = rf.adapted_network(sc.net.frames, sc.net.scales, sc.collapse_thresholds)
    Wc, bc = star.cumulative_parameters()
    assert rf.input_cost(Wc, bc, X, sc.targets) <= 1e-28
    # initially each layer truncates only its own cluster (one point per coordinate)
    P = rf.truncation_pattern(*sc.net.cumulative_parameters(), X)
    for ell in range(Q):
        assert not P[ell][lab != ell].any()
        assert np.all(P[ell][lab == ell].sum(axis=0) == 1)


def test_separated_clusters_errors():
    with pytest.raises(ValueError, match="not separated"):
        separated_clusters(3, 3, 10, distance=2.0, radius=0.5, seed=0)
    with pytest.raises(ValueError, match="scales must have shape"):
        separated_clusters(2, 2, 10, scales=np.ones((3, 2)))
    with pytest.raises(ValueError, match="M"):
        separated_clusters(2, 1, 10)


def test_equilibrium_residual_cases():
    X = np.array([[0.0], [1.0], [2.0]])
    Y = np.array([[1.5], [1.5], [0.0]])
    assert equilibrium_residual(X, Y, np.array([1.5]))[0] == 0.0  # at the mean target of {0, 1}
    assert equilibrium_residual(X, Y, np.array([1.2]))[0] == pytest.approx(0.3)
    # resting on x = 2: mean with it 1.0, without it 1.5, and θ = 2 is outside [1.0, 1.5]
    assert equilibrium_residual(X, Y, np.array([2.0]))[0] == pytest.approx(0.5)
    Y2 = np.array([[3.0], [3.0], [0.0]])  # with: 2.0, without: 3.0 -> θ = 2 at rest
    assert equilibrium_residual(X, Y2, np.array([2.0]))[0] == 0.0
    assert equilibrium_residual(X, Y, np.array([-1.0]))[0] == 0.0  # dead
    with pytest.raises(ValueError, match="targets must have shape"):
        equilibrium_residual(X, Y[:2], np.array([0.0]))


def test_two_cluster_scenario_and_phase_points():
    sc = two_cluster_scenario(3.0, 1.5, n_per_cluster=10, seed=0)
    assert sc.data.points.shape == (20, 2) and np.all(sc.class_targets[1] == 1.0)
    assert np.count_nonzero(sc.data.cluster(0)[:, 0] <= sc.net.thresholds[0, 0]) == 1
    sep = interference_point({"separation": 4.0, "target": 1.8}, np.random.SeedSequence(1), n_per_cluster=10)
    assert sep["separated"] == 1 and sep["b_truncated"] == 0 and sep["a_collapsed"] == 1
    assert sep["cost_a"] <= 1e-20 and sep["equilibrium_residual"] <= 1e-8
    mix = interference_point({"separation": 3.0, "target": 3.5}, np.random.SeedSequence(1), n_per_cluster=10)
    assert mix["separated"] == 0 and mix["b_truncated"] > 0 and mix["cost_a"] > 1e-6
    assert mix["equilibrium_residual"] <= 1e-8
    assert mix["final_cost"] == pytest.approx(mix["cost_a"] + mix["cost_b"], rel=1e-12)


def test_phase_sweep_same_with_any_executor():
    f = functools.partial(interference_point, n_per_cluster=8, t_end=50.0)
    grid = {"separation": [2.5, 4.0], "target": [0.5, 2.0, 5.0]}
    serial = sweep(f, grid, seed=3, progress=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = sweep(f, grid, seed=3, executor=pool, progress=False)
    assert serial.identical(threaded)


def test_scenario_argument_errors():
    with pytest.raises(ValueError, match="radius"):
        two_cluster_scenario(3.0, 1.0, radius=0.0)
    with pytest.raises(TypeError, match="separation"):
        two_cluster_scenario("3", 1.0)


def test_exponential_rate_recovers_a_known_decay():
    from reluflow.dynamics.solutions import exponential_rate

    t = np.linspace(0.0, 10.0, 41)
    gap = 3.0 * np.exp(-0.7 * t)
    assert exponential_rate(t, gap) == pytest.approx(0.7, rel=1e-12)
    kinked = np.where(t < 4.0, np.exp(-0.2 * t), np.exp(-0.8) * np.exp(-1.5 * (t - 4.0)))
    assert exponential_rate(t, kinked, t >= 4.0) == pytest.approx(1.5, rel=1e-12)
    with pytest.raises(ValueError, match="where"):
        exponential_rate(t, gap, t > 20.0)
    with pytest.raises(ValueError, match="where"):
        exponential_rate(t, gap - 1.0)  # non-positive gaps
    with pytest.raises(ValueError, match="gap"):
        exponential_rate(t, gap[:3])


def test_tail_rate_fits_where_the_data_allow_and_reports_none_otherwise():
    from reluflow.dynamics.solutions import tail_rate

    t = np.linspace(0.0, 20.0, 81)
    gap = np.where(t < 5.0, np.exp(-0.2 * t), np.exp(-1.0) * np.exp(-0.9 * (t - 5.0)))  # rate 0.9 from t = 5
    fit = tail_rate(t, gap, 5.0, 1e-4)
    assert fit.usable and fit.rate == pytest.approx(0.9, rel=1e-10)
    assert fit.n_points == int(((t >= 5.0) & (gap > 1e-4)).sum())
    # no window: the gap has fallen below the floor before the start, or the start is NaN
    for start in (19.9, float("nan")):
        none = tail_rate(t, gap, start, 1e-4)
        assert not none.usable and np.isnan(none.rate) and none.n_points < 3
    with pytest.raises(ValueError, match="floor"):
        tail_rate(t, gap, 5.0, 0.0)
    with pytest.raises(TypeError, match="start"):
        tail_rate(t, gap, "5", 1e-4)
    with pytest.raises(ValueError, match="gap"):
        tail_rate(t, gap[:-1], 5.0, 1e-4)
# --------------------------------------------------------------------------- random starts, collapse times, rest points


def test_generic_start_is_random_and_truncates_its_own_cluster():
    from reluflow.dynamics.solutions import generic_start

    sc = separated_clusters(3, 3, 12, distance=8.0, seed=2)
    a, b = generic_start(sc, seed=7), generic_start(sc, seed=7)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    assert not np.allclose(a.thresholds, generic_start(sc, seed=8).thresholds)
    np.testing.assert_array_equal(a.frames, sc.net.frames)
    X, lab = sc.data.points, sc.data.labels
    P = rf.truncation_pattern(*a.cumulative_parameters(), X)
    for ell in range(3):
        u = sc.data.cluster(ell) @ sc.net.frames[ell].T
        assert np.all(a.thresholds[ell] > u.min(axis=0)) and np.all(a.thresholds[ell] < sc.collapse_thresholds[ell])
        assert not P[ell][lab != ell].any() and np.all(P[ell][lab == ell].sum(axis=0) >= 1)
    with pytest.raises(TypeError, match="scenario"):
        generic_start(sc.net)


def test_collapse_times_are_the_last_events_of_each_layer():
    from reluflow.dynamics.solutions import collapse_times, separated_solutions

    sc = separated_clusters(2, 2, 6, distance=3.0, seed=3)
    ds = solve(sc.net, sc.data.points, sc.targets, [60.0])
    explicit = separated_solutions(sc)
    T = collapse_times(ds, 2)
    for ell in range(2):
        assert T[ell] == pytest.approx(max(explicit[ell, k].event_time.max() for k in range(2)), abs=1e-10)
    # a layer without events has no collapse time
    net = rf.adapted_network(sc.net.frames, sc.net.scales, sc.net.thresholds - [[0.0, 0.0], [50.0, 50.0]])
    assert np.isnan(collapse_times(solve(net, sc.data.points, sc.targets, [5.0]), 2)[1])
    with pytest.raises(ValueError, match="depth"):
        collapse_times(ds, 0)


def test_frame_jitter_turns_each_frame_by_at_most_the_angle():
    base = separated_clusters(3, 2, 8, distance=10.0, seed=1)
    turned = separated_clusters(3, 2, 8, distance=10.0, seed=1, frame_jitter=0.15, frame_seed=4)
    np.testing.assert_array_equal(base.data.points, turned.data.points)
    for R0, R1 in zip(base.net.frames, turned.net.frames):
        np.testing.assert_allclose(R1 @ R1.T, np.eye(2), atol=1e-12)
        G = R1.T @ R0  # R1 = R0 G^T, so G = R1^T R0; its rotation angle
        angle = np.arctan2(G[1, 0], G[0, 0])
        assert 0 < abs(angle) <= 0.15 + 1e-12
    assert separation_margin(turned.net, turned.data.points, turned.data.labels, turned.collapse_thresholds) > 0
    with pytest.raises(ValueError, match="frame_jitter"):
        separated_clusters(2, 2, 8, frame_jitter=1.0)
    with pytest.raises(ValueError, match="frame_jitter"):
        separated_clusters(2, 2, 8, frame_jitter="0.1")


@pytest.mark.parametrize("x, y, theta0, rest, sliding", [
    ([0.0, 1.0, 3.0], [2.0, 2.0, 2.0], 0.5, 2.0, False),   # rises through x = 1, stops at the mean target 2
    ([0.0, 1.0], [3.0, -3.0], 0.5, 1.0, True),             # truncating x = 1 reverses the pull: rests on it
    ([1.0, 2.0], [0.0, 0.0], 3.0, 1.0, False),             # releases both points, frozen at the lowest
    ([1.0, 2.0], [5.0, -5.0], 3.0, 2.0, True),             # releasing x = 2 would reverse the pull: rests on it
    ([1.0, 2.0], [1.5, 1.5], 3.0, 1.5, False),             # falls to the mean target inside [1, 2)
    ([1.0, 2.0], [5.0, 5.0], 0.5, 0.5, False),             # nothing truncated: dead
])
def test_rest_point_by_hand(x, y, theta0, rest, sliding):
    from reluflow.dynamics.solutions import rest_point

    th, sl = rest_point(np.array(x)[:, None], np.array(y)[:, None], np.array([theta0]))
    assert th[0] == pytest.approx(rest, abs=1e-15) and bool(sl[0]) == sliding


def test_rest_point_matches_direct_integration_and_the_solver():
    from reluflow.dynamics.solutions import rest_point

    rng = np.random.default_rng(11)
    for trial in range(6):
        sc = two_cluster_scenario(rng.uniform(2.0, 5.0), rng.uniform(0.0, 5.0), n_per_cluster=5, seed=trial)
        X, Y = sc.data.points, sc.targets
        theta0 = rng.uniform(X.min(axis=0), X.max(axis=0))
        pred, sliding = rest_point(X, Y, theta0)
        net = rf.adapted_network(np.eye(2)[None], np.ones((1, 2)), theta0[None])
        th = solve(net, X, Y, [3000.0], record_events=False).thresholds.values[-1, 0]
        np.testing.assert_allclose(th, pred, atol=1e-10)
        for k in range(2):  # explicit Euler with a small step on the discontinuous right-hand side
            z, x, y = theta0[k], X[:, k], Y[:, k]
            for _ in range(20000):
                z -= 1e-2 * np.sum(z - y[x <= z]) / X.shape[0]
            assert z == pytest.approx(pred[k], abs=2e-2 if sliding[k] else 1e-6)
    with pytest.raises(ValueError, match="theta0"):
        rest_point(X, Y, np.zeros(3))

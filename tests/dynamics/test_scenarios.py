"""Worked examples of the notebooks: reluflow.dynamics.scenarios.

Oracles: the one-layer closed form θ̇_k = −(1/(λ_k² N)) Σ_{i ∈ T_k} (θ_k − (R ỹ_j(i))_k) (THEORY §4.2) written
here with loops, plain recounts of the truncation pattern, the rotation identities, the conservation of
λ² + b² under (4.3) and the dataset's own inputs.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from reluflow.dynamics.descent import scale_bias_descent
from reluflow.dynamics.scenarios import (
    OneLayerExample,
    cost_shares,
    effective_flow_dataset,
    general_case_dataset,
    mean_target_trajectory,
    one_layer_example,
    rate_staircase,
    scale_bias_run,
    separated_clusters_dataset,
    separated_collapse,
    single_cluster,
    single_cluster_dataset,
    threshold_field,
    threshold_relaxation,
)
from reluflow.dynamics.solver import solve
from reluflow.theory.adapted import rotation


@pytest.fixture(scope="module")
def example():
    return one_layer_example(30.0, [1.0, 1.4], [-1.5, -1.0], 8, seed=5)


def _closed_form_rate(U, point_targets, lam, theta):
    N = U.shape[0]
    out = np.zeros(2)
    for k in range(2):
        for i in range(N):
            if U[i, k] <= theta[k]:
                out[k] -= (theta[k] - point_targets[i, k]) / (lam[k] ** 2 * N)
    return out


def test_one_layer_example_geometry(example):
    assert isinstance(example, OneLayerExample)
    R = rotation(30.0)
    np.testing.assert_allclose(example.frame, R)
    np.testing.assert_allclose(example.X @ R.T, example.U, atol=1e-14)  # u = R x
    rotated = example.targets @ R.T  # R ỹ_j(i) per point
    np.testing.assert_allclose(rotated, example.class_targets[example.clusters.labels], atol=1e-14)
    np.testing.assert_array_equal(example.net.thresholds, [[-1.5, -1.0]])
    np.testing.assert_array_equal(example.scales, [1.0, 1.4])
    assert example.X.shape == (16, 2) and np.bincount(example.clusters.labels).tolist() == [8, 8]
    centres = np.array([[-1.5, 0.0], [0.5, -1.0]])
    for j in range(2):  # points lie in discs of radius 0.7 round the centres, in u
        assert np.linalg.norm(example.U[example.clusters.labels == j] - centres[j], axis=1).max() <= 0.7
    with pytest.raises(ValueError, match="class_targets"):
        one_layer_example(class_targets=[[1.0, 2.0]], seed=0)


def test_threshold_field_matches_the_one_layer_closed_form(example):
    g1, g2 = np.linspace(-2.0, 2.0, 5), np.linspace(-1.5, 2.5, 4)
    field = threshold_field(example.net, example.X, example.targets, g1, g2)
    assert field.shape == (4, 5, 2)
    pt = example.class_targets[example.clusters.labels]
    for b, t2 in enumerate(g2):
        for a, t1 in enumerate(g1):
            np.testing.assert_allclose(field[b, a], _closed_form_rate(example.U, pt, example.scales, [t1, t2]),
                                       rtol=1e-12, atol=1e-15)
    with pytest.raises(TypeError, match="net must be a reluflow.AdaptedNetwork"):
        threshold_field("net", example.X, example.targets, g1, g2)


def test_threshold_relaxation_recounts_the_pattern(example):
    U, lam = example.U, example.scales
    pt = example.class_targets[example.clusters.labels]
    theta = np.array([[-3.0, -3.0], [0.0, 0.0], [3.0, -3.0], [3.0, 3.0]])
    ds = xr.Dataset({"thresholds": (("time", "layer", "coordinate"), theta[:, None, :])},
                    coords={"time": [0.0, 1.0, 2.0, 3.0]})
    r = threshold_relaxation(ds, U, pt, lam)
    for t in range(4):
        for k in range(2):
            n = sum(U[i, k] <= theta[t, k] for i in range(U.shape[0]))
            assert r.n_truncated[t, k] == n
            assert r.rate[t, k] == pytest.approx(n / (lam[k] ** 2 * U.shape[0]))
    np.testing.assert_array_equal(r.n_truncated[[0, 3]], [[0, 0], [16, 16]])
    np.testing.assert_allclose(r.equilibrium, pt.mean(axis=0))  # all truncated at the end
    np.testing.assert_array_equal(r.full, [2, 3])  # first index with every point truncated, per coordinate
    np.testing.assert_array_equal(r.settled, [2, 3])  # first index after the last change of n_k
    still = threshold_relaxation(ds.isel(time=[0, 0, 0]).assign_coords(time=[0.0, 1.0, 2.0]), U, pt, lam)
    np.testing.assert_array_equal(still.settled, [0, 0])  # n_k never changes: settled from the start
    assert np.all(np.isnan(still.equilibrium)) and np.all(np.isnan(still.distance))  # nothing truncated at the end
    np.testing.assert_allclose(r.distance, np.abs(theta - pt.mean(axis=0)))
    with pytest.raises(ValueError, match="point_targets"):
        threshold_relaxation(ds, U, pt[:3], lam)


def test_threshold_relaxation_of_a_solved_flow_reaches_the_equilibrium(example):
    ds = solve(example.net, example.X, example.targets, np.linspace(0.0, 60.0, 61))
    r = threshold_relaxation(ds, example.U, example.class_targets[example.clusters.labels], example.scales)
    assert np.all(np.diff(r.n_truncated, axis=0) >= 0)  # both targets lie beyond the data: no release
    assert r.distance[-1].max() < 1e-8
    grid = ds.requested.values == 1  # away from event times, where the solver reports right limits
    np.testing.assert_array_equal(r.n_truncated[grid], ds.n_truncated.isel(layer=0).values[grid])


def test_scale_bias_run_conserves_lambda_squared_plus_b_squared(example):
    run = scale_bias_run(example.net, example.X, example.targets, 10.0, n_times=51)
    np.testing.assert_allclose(run.thresholds, -run.biases / run.scales, rtol=1e-14)
    np.testing.assert_allclose(run.invariant0, example.scales**2 * (1 + example.net.thresholds[0] ** 2))
    I = run.scales**2 + run.biases**2
    np.testing.assert_allclose(I / run.invariant0 - 1, 0.0, atol=1e-7)
    np.testing.assert_allclose(run.drift, np.abs(I / run.invariant0 - 1), rtol=1e-6, atol=1e-15)
    assert np.all(run.drift <= run.bound)
    np.testing.assert_allclose(run.per_step, 4 * np.sqrt(2) * (1e-10 + 1e-12 / np.sqrt(run.invariant0)))
    assert run.nfev > 0 and run.time[0] == 0.0 and run.time[-1] == pytest.approx(10.0)
    assert np.all(run.scales > 0)
    assert run.scales[0].tolist() == example.scales.tolist()  # the scales move while the thresholds do
    assert np.abs(run.scales[-1] - run.scales[0]).max() > 1e-3


def test_scale_bias_run_on_the_requested_times_only(example):
    # record_events=False: the output grid is exactly the requested one, whatever the number of events
    run = scale_bias_run(example.net, example.X, example.targets, 10.0, n_times=51, record_events=False)
    np.testing.assert_array_equal(run.time, np.linspace(0.0, 10.0, 51))
    assert run.scales.shape == run.drift.shape == run.bound.shape == (51, 2)
    with_events = scale_bias_run(example.net, example.X, example.targets, 10.0, n_times=51)
    assert with_events.time.size > 51  # the default adds the event times
    on_grid = np.isin(with_events.time, run.time)
    np.testing.assert_allclose(with_events.thresholds[on_grid], run.thresholds, atol=1e-8)


def test_effective_flow_dataset_holds_its_inputs(example):
    battery = xr.Dataset({"worst": (("equation",), [1e-12]), "tolerance": ((), 1e-10), "tie_margin": (("instance",),
                                                                                                      [0.1, 0.2])},
                         coords={"equation": ["bias_flow"]}, attrs={"relative_error_definition": "normwise"})
    symbolic = SimpleNamespace(checks=[("one statement", True), ("another", False)])
    g1, g2 = np.linspace(-2.0, 2.0, 3), np.linspace(-1.0, 1.0, 4)
    field = threshold_field(example.net, example.X, example.targets, g1, g2)
    ds = solve(example.net, example.X, example.targets, np.linspace(0.0, 5.0, 6))
    relax = threshold_relaxation(ds, example.U, example.class_targets[example.clusters.labels], example.scales)
    run = scale_bias_run(example.net, example.X, example.targets, 2.0, n_times=5)
    gd = scale_bias_descent(example.net, example.X, example.targets, 0.5, 4)
    out = effective_flow_dataset(battery, symbolic, example, g1, g2, field, relax, run, gd)
    np.testing.assert_array_equal(out.symbolic_passed.values, [1, 0])
    np.testing.assert_allclose(out.field_speed.values, np.linalg.norm(field, axis=-1))
    np.testing.assert_array_equal(out.bias_flow_theta.values, relax.thresholds)
    np.testing.assert_array_equal(out.scale_bias_lambda.values, run.scales)
    np.testing.assert_allclose(out.gd_drift.values, np.abs((gd.scales[:, 0] ** 2 + gd.biases[:, 0] ** 2)
                                                           / run.invariant0 - 1))
    np.testing.assert_array_equal(out.gd_time.values, 0.5 * np.arange(5))
    assert float(out.battery_tolerance) == 1e-10 and "tolerance" not in out and "tie_margin" not in out
    assert all({"long_name", "units"} <= set(out[v].attrs) for v in out.data_vars if v.startswith(("field", "gd")))
    assert out.attrs["relative_error_definition"] == "normwise"


# --------------------------------------------------------------------------- notebook 03


@pytest.fixture(scope="module")
def cluster():
    return single_cluster(12, 1.0, [1.0, 1.5], 30.0, [1.5, 1.0], seed=2)


def test_single_cluster_geometry(cluster):
    a = np.deg2rad(30.0)
    R = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # rows: the frame vectors
    np.testing.assert_allclose(cluster.frame, R, atol=1e-15)
    assert cluster.N == 12 and np.linalg.norm(cluster.X, axis=1).max() <= 1.0
    np.testing.assert_allclose(cluster.u, cluster.X @ R.T, atol=1e-15)
    np.testing.assert_allclose(cluster.y_hat, [2.5, 2.0])
    np.testing.assert_allclose(R @ cluster.target, cluster.y_hat, atol=1e-15)
    for k in range(2):  # the sweep start truncates exactly one point per coordinate
        assert np.count_nonzero(cluster.u[:, k] <= cluster.theta_sweep[k]) == 1
    starts = cluster.starts()
    assert list(starts) == ["S1_dead", "S3_stop", "S3_release"]
    assert np.all(starts["S1_dead"][0] < cluster.u.min(axis=0))
    np.testing.assert_array_equal(starts["S3_release"][1], [-2.0, -2.0])
    with pytest.raises(ValueError, match="scales"):
        single_cluster(scales=[1.0, 1.0, 1.0], seed=0)
    with pytest.raises(ValueError, match="radius"):
        single_cluster(radius=-1.0, seed=0)


def test_single_cluster_run_and_event_time_error(cluster):
    from reluflow.dynamics.solutions import event_time_error, one_cluster_solution

    times = np.linspace(0.0, 40.0, 81)
    ds = cluster.run(cluster.theta_sweep, cluster.y_hat, times)
    assert ds.attrs["n_events"] == 2 * (cluster.N - 1)  # S2: every other point truncated in both coordinates
    u, lam = cluster.u, cluster.scales
    explicit = [one_cluster_solution(u[:, k], cluster.theta_sweep[k], cluster.y_hat[k], lam[k]) for k in range(2)]
    assert event_time_error(ds, explicit) <= 1e-10
    assert event_time_error(ds, {(0, 1): explicit[1]}) <= 1e-10
    assert event_time_error(ds, ds) == 0.0
    shifted = ds.assign(event_time=ds.event_time + 0.25)
    assert event_time_error(shifted, ds) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="events"):
        event_time_error(ds.isel(event=slice(1, None)), ds)
    # a run that ends before the explicit solution's last events: only the events up to its end are compared
    last = float(np.sort(ds.event_time.values)[-1])
    early = cluster.run(cluster.theta_sweep, cluster.y_hat, np.linspace(0.0, 0.5 * last, 41))
    assert early.attrs["n_events"] < ds.attrs["n_events"]
    assert event_time_error(early, explicit) <= 1e-10
    assert event_time_error(early, ds) <= 1e-10  # a Dataset reference is cut at the shorter horizon too
    with pytest.raises(ValueError, match=r"events in solution, .* in reference up to t ="):
        event_time_error(early.isel(event=slice(1, None)), explicit)  # one missing inside the horizon
    with pytest.raises(TypeError, match="OneClusterSolution"):
        event_time_error(ds, [1.0, 2.0])


def test_rate_staircase_equals_the_recounted_rate(cluster):
    times = np.linspace(0.0, 40.0, 81)
    ds = cluster.run(cluster.theta_sweep, cluster.y_hat, times)
    st = rate_staircase(ds, cluster.u, cluster.y_hat, cluster.scales)
    t = ds.time.values
    np.testing.assert_array_equal(st.interval_start, t[:-1])
    # independent: on an interval without an event the threshold is exponential with rate n/(λ² N), n counted here
    th = ds.thresholds.isel(layer=0).values
    for i in np.flatnonzero(st.usable[:, 0])[:10]:
        n = np.count_nonzero(cluster.u[:, 0] <= 0.5 * (th[i, 0] + th[i + 1, 0]))
        assert st.predicted[i, 0] == pytest.approx(n / (cluster.scales[0] ** 2 * cluster.N))
        assert st.measured[i, 0] == pytest.approx(st.predicted[i, 0], rel=1e-6)
    assert st.usable.sum() > 20


def test_single_cluster_dataset_holds_the_runs(cluster):
    times = np.linspace(0.0, 10.0, 11)
    runs = {"S2_sweep": cluster.run(cluster.theta_sweep, cluster.y_hat, times)}
    runs |= {name: cluster.run(th0, y, times) for name, (th0, y) in cluster.starts().items()}
    targets = {"S2_sweep": cluster.y_hat} | {name: y for name, (_, y) in cluster.starts().items()}
    st = rate_staircase(runs["S2_sweep"], cluster.u, cluster.y_hat, cluster.scales)
    snaps = np.zeros((2, cluster.N, 2))
    out = single_cluster_dataset(runs, targets, st, cluster, [0.0, 1.0], snaps, times)
    assert out.scenario.values.tolist() == list(runs)
    for s, ds in runs.items():
        grid = ds.requested.values == 1
        np.testing.assert_array_equal(out.thresholds.sel(scenario=s).values, ds.thresholds.values[grid, 0])
        np.testing.assert_array_equal(out.cost.sel(scenario=s).values, ds.cost.values[grid])
    np.testing.assert_array_equal(out.time.values, times)
    np.testing.assert_array_equal(out.frame_target.sel(scenario="S3_stop").values, [0.0, 0.0])
    np.testing.assert_array_equal(out.event_time.values, runs["S2_sweep"].event_time.values)
    np.testing.assert_array_equal(out.points.values, cluster.X)
    assert all({"long_name", "units"} <= set(out[v].attrs) for v in out.data_vars)


# --------------------------------------------------------------------------- notebook 04


@pytest.fixture(scope="module")
def separated():
    from reluflow.dynamics.solutions import separated_clusters

    sc = separated_clusters(2, 2, 6, radius=0.5, distance=3.0, target_gap=0.5, scales=[[1.0, 1.2], [0.9, 1.1]],
                            seed=4)
    return sc, solve(sc.net, sc.data.points, sc.targets, np.linspace(0.0, 100.0, 201))


def test_separated_solutions_match_the_solver(separated):
    from reluflow.dynamics.solutions import event_time_error, separated_solutions

    sc, ds = separated
    explicit = separated_solutions(sc)
    assert sorted(explicit) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert event_time_error(ds, explicit) <= 1e-10
    for (ell, k), e in explicit.items():
        np.testing.assert_allclose(e.theta(ds.time.values), ds.thresholds.values[:, ell, k], atol=1e-10)
        assert e.n_total == sc.data.points.shape[0] and e.y_hat == sc.collapse_thresholds[ell, k]
    with pytest.raises(TypeError, match="scenario"):
        separated_solutions(sc.net)


def test_separated_collapse_measures(separated):
    from reluflow.dynamics.solutions import separated_solutions

    sc, ds = separated
    s = separated_collapse(sc, ds, separated_solutions(sc))
    X, lab, N = sc.data.points, sc.data.labels, sc.data.points.shape[0]
    grid = ds.requested.values == 1
    np.testing.assert_array_equal(s.t, ds.time.values[grid])
    # independent images: apply the two cone projections by hand at one time
    i = 7
    x = X.copy()
    for ell in range(2):
        R = sc.net.frames[ell]
        x = np.maximum(x @ R.T, s.thresholds[i, ell]) @ R
    np.testing.assert_allclose(s.images[i], x, atol=1e-13)
    for j in range(2):  # per-cluster variability by a plain loop
        pts = s.images[i, lab == j]
        assert s.per_cluster[i, j] == pytest.approx(np.mean(np.sum((pts - pts.mean(axis=0)) ** 2, axis=1)), abs=1e-14)
    np.testing.assert_allclose(s.cost_images, s.cost, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(s.maximal_rate, sc.data.counts[:, None] / (sc.net.scales**2 * N))
    np.testing.assert_allclose(s.fitted_rate, s.maximal_rate, rtol=1e-6)
    assert np.all(s.per_cluster[s.after] <= 1e-26) and np.all(s.nc1[s.after] <= 1e-20)
    assert 2 * s.maximal_rate.min() * (1 - 1e-6) <= s.fit_cost <= 2 * s.maximal_rate.max()
    assert s.fit_cost == pytest.approx(s.fit_formula, rel=1e-5)


def test_separated_clusters_dataset_pads_to_the_largest_case(separated):
    from reluflow.dynamics.solutions import separated_clusters, separated_solutions

    sc, ds = separated
    sc3 = separated_clusters(3, 3, 5, radius=0.5, distance=8.0, target_gap=0.5, seed=1)
    ds3 = solve(sc3.net, sc3.data.points, sc3.targets, np.linspace(0.0, 100.0, 201))
    cases = {2: sc, 3: sc3}
    summary = {2: separated_collapse(sc, ds, separated_solutions(sc)),
               3: separated_collapse(sc3, ds3, separated_solutions(sc3))}
    out = separated_clusters_dataset(cases, summary, [0.0, 1.0], np.zeros((2, 12, 2)))
    assert out.case.values.tolist() == [2, 3] and out.sizes["layer"] == 3 and out.sizes["coordinate_2d"] == 2
    np.testing.assert_array_equal(out.thresholds.sel(case=2).values[:, :2, :2], summary[2].thresholds)
    assert np.all(np.isnan(out.thresholds.sel(case=2).values[:, 2, :]))
    np.testing.assert_array_equal(out.collapse_thresholds.sel(case=3).values, sc3.collapse_thresholds)
    np.testing.assert_array_equal(out.labels_2d.values, sc.data.labels + 1)
    assert all({"long_name", "units"} <= set(out[v].attrs) for v in out.data_vars)


# --------------------------------------------------------------------------- notebook 05


@pytest.fixture(scope="module")
def two_clusters():
    from reluflow.dynamics.solutions import two_cluster_scenario

    sc = two_cluster_scenario(3.0, 3.5, n_per_cluster=8, radius=1.0, b_target_gap=1.0, seed=3)
    return sc, solve(sc.net, sc.data.points, sc.targets, np.linspace(0.0, 200.0, 41))


def test_mean_target_trajectory_recounts_the_truncated_points(two_clusters):
    sc, ds = two_clusters
    X, Y = sc.data.points, sc.targets
    tr = mean_target_trajectory(ds, X, Y)
    grid = ds.requested.values == 1
    np.testing.assert_array_equal(tr.t, ds.time.values[grid])
    np.testing.assert_array_equal(tr.cost, ds.cost.values[grid])
    for i in (0, 5, tr.t.size - 1):
        for k in range(2):
            members = [p for p in range(X.shape[0]) if X[p, k] <= tr.thresholds[i, k]]
            assert tr.n_truncated[i, k] == len(members)
            if members:
                assert tr.mean_target[i, k] == pytest.approx(np.mean([Y[p, k] for p in members]))
            else:
                assert np.isnan(tr.mean_target[i, k])
    from reluflow.dynamics.solutions import equilibrium_residual

    assert equilibrium_residual(X, Y, tr.thresholds[-1]).max() <= 1e-6  # at rest at the end
    with pytest.raises(ValueError, match="targets"):
        mean_target_trajectory(ds, X, Y[:3])


def test_cost_shares_add_up_to_the_input_cost(two_clusters):
    import reluflow as rf

    sc, ds = two_clusters
    X, Y, lab = sc.data.points, sc.targets, sc.data.labels
    theta = ds.thresholds.isel(layer=0, time=-1).values
    shares = cost_shares(X, Y, lab, theta)
    Wc, bc = rf.adapted_network(sc.net.frames, sc.net.scales, theta[None]).cumulative_parameters()
    assert shares.sum() == pytest.approx(rf.input_cost(Wc, bc, X, Y), rel=1e-12)  # the general truncation maps
    assert shares.sum() == pytest.approx(float(ds.cost.values[-1]), rel=1e-9)
    half = cost_shares(X, Y, lab, theta, n_total=2 * X.shape[0])
    np.testing.assert_allclose(half, shares / 2)
    with pytest.raises(ValueError, match="labels"):
        cost_shares(X, Y, lab[:-1], theta)


def test_general_case_dataset_holds_the_example_and_the_phase_diagram(two_clusters):
    sc, ds = two_clusters
    tr = mean_target_trajectory(ds, sc.data.points, sc.targets)
    from reluflow.dynamics.scenarios import PHASE_VARIABLES

    phase = xr.Dataset({name: (("separation", "target"), np.full((2, 3), float(i)))
                        for i, name in enumerate(PHASE_VARIABLES)},
                       coords={"separation": [2.0, 3.0], "target": [0.0, 1.0, 2.0]})
    out = general_case_dataset(sc, tr, np.stack([tr.cost, tr.cost]), phase)
    np.testing.assert_array_equal(out.thresholds.values, tr.thresholds)
    np.testing.assert_array_equal(out.phase_cost_b.values, np.full((2, 3), 2.0))
    np.testing.assert_array_equal(out.target.values, [0.0, 1.0, 2.0])
    assert out.cluster.values.tolist() == ["A", "B"]
    assert all({"long_name", "units"} <= set(out[v].attrs) for v in out.data_vars)


# --------------------------------------------------------------------------- notebook 01


def test_truncation_layers_example_and_dataset():
    import reluflow as rf
    from reluflow.dynamics.scenarios import truncation_layers_example, truncation_maps_dataset

    clusters, net = truncation_layers_example(10, seed=1)
    assert clusters.points.shape == (30, 2) and net.depth == 3
    for R, a in zip(net.frames, (0.0, 30.0, -60.0)):
        np.testing.assert_allclose(R @ [1.0, 0.0], [np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))], atol=1e-15)
    # layer 1 has the identity frame: its truncation clips each coordinate at its threshold
    stages = rf.truncated_data(*net.cumulative_parameters(), clusters.points)
    np.testing.assert_allclose(stages[1], np.maximum(clusters.points, net.thresholds[0]), atol=1e-14)
    identities = xr.Dataset({"representation": (("width",), [1e-16])}, coords={"width": [2]})
    projection = xr.Dataset({"slsqp": (("width",), [1e-9, 2e-9])}, coords={"width": [1, 2]})
    out = truncation_maps_dataset(identities, projection, stages, clusters.labels)
    np.testing.assert_array_equal(out.figure_points.values, np.stack(stages))
    np.testing.assert_array_equal(out.figure_labels.values, clusters.labels + 1)
    assert out.projection_width.values.tolist() == [1, 2] and out.coordinate.values.tolist() == [1, 2]
    assert out.stage.values.tolist() == [0, 1, 2, 3]


def test_recount_truncated_counts_ties_as_truncated():
    from reluflow.dynamics.scenarios import recount_truncated

    u = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    th = np.array([[-1.0, 1.0], [1.0, 2.5], [5.0, 0.0]])
    assert recount_truncated(th, u).tolist() == [[0, 1], [2, 2], [3, 0]]
    with pytest.raises(ValueError, match="columns"):
        recount_truncated(th[:, :1], u)


def test_rate_staircase_floor_options_select_fewer_intervals(cluster):
    times = np.linspace(0.0, 30.0, 121)
    ds = cluster.run(cluster.theta_sweep, cluster.y_hat, times)
    loose = rate_staircase(ds, cluster.u, cluster.y_hat, cluster.scales)
    strict = rate_staircase(ds, cluster.u, cluster.y_hat, cluster.scales, min_log_change=1e-2, min_gap=1e-2)
    assert strict.usable.sum() < loose.usable.sum() and not np.any(strict.usable & ~loose.usable)
    with pytest.raises(ValueError, match="min_gap"):
        rate_staircase(ds, cluster.u, cluster.y_hat, cluster.scales, min_gap=-1.0)
def test_separated_collapse_with_more_clusters_than_dimensions():
    from reluflow.dynamics.solutions import separated_clusters, separated_solutions

    sc = separated_clusters(3, 2, 5, distance=10.0, seed=2, frame_jitter=0.1, frame_seed=3)
    ds = solve(sc.net, sc.data.points, sc.targets, np.linspace(0.0, 120.0, 121))
    s = separated_collapse(sc, ds, separated_solutions(sc), gap_floor=1e-8)
    assert s.fitted_rate.shape == (3, 2) and s.collapse_time.shape == (3,)
    np.testing.assert_allclose(s.fitted_rate, s.maximal_rate, rtol=1e-6)
    assert np.all(s.nc1[s.after] <= 1e-20)
    with pytest.raises(ValueError, match="gap_floor"):
        separated_collapse(sc, ds, separated_solutions(sc), gap_floor=0.0)


def test_coordinatewise_solve_matches_the_joint_problem(two_clusters):
    from reluflow.dynamics.scenarios import coordinatewise_solve
    from reluflow.dynamics.solutions import rest_point

    sc = two_clusters[0]
    X, Y = sc.data.points, sc.targets
    joint = solve(sc.net, X, Y, [200.0], record_events=False)
    exact = coordinatewise_solve(X, Y, sc.net.thresholds[0], 200.0, method="exact")
    np.testing.assert_allclose(exact.thresholds, joint.thresholds.values[-1, 0], atol=1e-12)
    assert exact.cost.sum() == pytest.approx(float(joint.cost.values[-1]), rel=1e-12)
    general = coordinatewise_solve(X, Y, sc.net.thresholds[0], 200.0)
    np.testing.assert_allclose(general.thresholds, rest_point(X, Y, sc.net.thresholds[0])[0], atol=1e-6)
    assert set(general.status.tolist()) <= {0, 1} and np.all(general.t_stop <= 200.0)
    with pytest.raises(ValueError, match="theta0"):
        coordinatewise_solve(X, Y, [0.0], 10.0)

"""reluflow.results.plots: every published figure draws from small synthetic data."""

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from reluflow.dynamics import scenarios as sc
from reluflow.dynamics.descent import scale_bias_descent
from reluflow.dynamics.solutions import separated_clusters, truncated_images
from reluflow.dynamics.solver import solve
from reluflow.results import plots
from reluflow.results.figures import savefig


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def _legend_labels(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


@pytest.fixture(scope="module")
def example():
    return sc.one_layer_example(30.0, [1.0, 1.4], [-1.5, -1.0], 4, seed=0)


def _relaxation(T=21, N=8):
    t = np.linspace(0.0, 10.0, T)
    theta_star = np.array([1.5, 2.0])
    distance = np.outer(np.exp(-t), [3.0, 2.0])
    n = np.minimum(np.outer(np.arange(T), [1, 1]) + 2, N)
    return sc.ThresholdRelaxation(time=t, thresholds=theta_star - distance, n_truncated=n,
                               rate=n / (np.array([1.0, 1.96]) * N), equilibrium=theta_star,
                               truncated_end=np.ones((N, 2), bool), full=np.argmax(n == N, axis=0), distance=distance,
                                  settled=np.argmax(n == N, axis=0))


def test_threshold_flow_figure(example, tmp_path):
    g1, g2 = np.linspace(-2.8, 2.6, 7), np.linspace(-2.4, 3.0, 7)
    field = sc.threshold_field(example.net, example.X, example.targets, g1, g2)
    fig = plots.threshold_flow_figure(example, g1, g2, field, _relaxation())
    assert isinstance(fig, Figure)
    assert _titles(fig) == [r"(b) distance to the equilibrium $\theta^*$",
                            "(c) relaxation rate: jumps at each truncation",
                            r"(a) bias flow (4.2) in threshold space, one layer, $M = 2$"]
    labels = _legend_labels(fig)
    assert len(labels) == 12 and labels[0] == r"cluster 1 points $u_i = R x_i$" and r"target $R\tilde y_2$" in labels
    ax_d = fig.axes[0]
    assert len(ax_d.get_lines()) == 4  # distance and its exponential tail, per coordinate
    assert ax_d.get_yscale() == "log"
    savefig(fig, tmp_path / "a.png")


def test_scale_bias_figure(example, tmp_path):
    T = 11
    t = np.linspace(0.0, 5.0, T)
    lam0 = example.scales
    phi = np.linspace(0.0, 0.5, T)[:, None]
    rho = lam0 * np.sqrt(1 + example.net.thresholds[0] ** 2)
    scales, biases = rho * np.cos(phi + 0.1), rho * np.sin(phi + 0.1)
    run = sc.ScaleBiasRun(time=t, scales=scales, biases=biases, thresholds=-biases / scales, invariant0=rho**2,
                       drift=np.full((T, 2), 1e-12), per_step=np.full(2, 1e-10), bound=np.full((T, 2), 1e-8), nfev=100)
    gd = scale_bias_descent(example.net, example.X, example.targets, 0.5, 10)
    fig = plots.scale_bias_figure(run, gd, _relaxation())
    assert len(fig.axes) == 3
    ax_a, ax_b, ax_c = fig.axes
    assert ax_a.get_yscale() == "log" and ax_a.get_xlim() == (0.0, 5.0)
    assert len(ax_b.get_lines()) == 10 and len(ax_c.get_lines()) == 6
    labels = _legend_labels(fig)
    assert len(labels) == 9 and r"gradient descent, $\eta = 0.5$" in labels
    savefig(fig, tmp_path / "b.png")


def test_threshold_events_figure(tmp_path):
    rng = np.random.default_rng(0)
    ex = sc.one_layer_example(0.0, [1.0, 1.0], [-1.5, -1.0], 4, seed=1)
    times = np.linspace(0.0, 4.0, 9)
    runs = {"a": solve(ex.net, ex.X, ex.targets, times), "b": solve(ex.net, ex.X, ex.targets, times)}
    u = ex.U + 0 * rng.standard_normal(ex.U.shape)
    fig = plots.threshold_events_figure(runs, u, {"a": 1.0, "b": None}, {"a": "first", "b": "second"})
    assert _titles(fig) == ["first", "second"]
    a, b = fig.axes
    assert a.get_xscale() == "symlog" and a.get_xlim() == (0.0, 4.0)
    assert len(a.get_lines()) == 2 and len(b.get_lines()) == 1  # theta and the target line; no target in b
    n_events = int((runs["a"].event_coordinate.values == 0).sum())
    assert len(a.collections[-1].get_offsets()) == n_events  # one dot per event of coordinate 0
    assert _legend_labels(fig) == [r"threshold $\theta_0(t)$", r"target $\hat y_0$", "truncation event",
                                   "release event", r"data values $u_{i,0}$"]
    savefig(fig, tmp_path / "c.png")


def test_collapse_sequence_figure(tmp_path):
    scenario = separated_clusters(2, 2, 4, seed=1)
    X, lab = scenario.data.points, scenario.data.labels
    times = np.array([0.0, 1.5, 12.0])
    # thresholds: the start, halfway to theta*, theta* (each cluster then collapses onto its target)
    start, final = scenario.net.thresholds, scenario.collapse_thresholds
    theta = np.stack([start, 0.5 * (start + final), final])
    images = truncated_images(scenario.net.frames, theta, X)
    fig = plots.collapse_sequence_figure(scenario, times, theta, images)
    assert len(fig.axes) == 3
    assert _titles(fig) == ["t = 0", "t = 1.5", "t = 12"]
    assert _legend_labels(fig) == ["cone $K_1(t)$ of layer 1", "cone $K_2(t)$ of layer 2", "data $x_i$",
                                   "cluster 1 images", "cluster 2 images", "target of cluster 1",
                                   "target of cluster 2"]
    assert fig.axes[0].get_ylabel() == "$x_2$ (a.u.)" and all(ax.get_xlabel() == "$x_1$ (a.u.)" for ax in fig.axes)
    for ax, th, img in zip(fig.axes, theta, images):
        # the scatters: the data (grey), then each cluster's images, at the images given
        data, *clusters = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(clusters) == 2
        np.testing.assert_array_equal(np.asarray(data.get_offsets()), X)
        for j, c in enumerate(clusters):
            np.testing.assert_array_equal(np.asarray(c.get_offsets()), img[lab == j])
        stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
        np.testing.assert_array_equal([ln.get_xydata()[0] for ln in stars], scenario.class_targets)
        # each cone's two edges start at its apex x with R_l x = theta_l
        edges = [ln for ln in ax.get_lines() if ln.get_marker() != "*"]
        assert len(edges) == 4
        for ell in range(2):
            apex = np.linalg.solve(scenario.net.frames[ell], th[ell])
            for ln in edges[2 * ell:2 * ell + 2]:
                np.testing.assert_allclose(ln.get_xydata()[0], apex, atol=1e-12)
        # every point, image and target is inside the panel
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        shown = np.vstack([X, img, scenario.class_targets])
        assert np.all((shown[:, 0] > x0) & (shown[:, 0] < x1) & (shown[:, 1] > y0) & (shown[:, 1] < y1))
    # at theta* each cluster's images are its target
    np.testing.assert_allclose(images[-1], scenario.targets, atol=1e-12)
    savefig(fig, tmp_path / "g.png")
    one = plots.collapse_sequence_figure(scenario, times[:1], theta[:1], images[:1])  # a single panel
    assert _titles(one) == ["t = 0"]


def test_collapse_sequence_figure_bad_input():
    scenario = separated_clusters(2, 2, 4, seed=1)
    X = scenario.data.points
    times = np.array([0.0, 1.0])
    theta = np.stack([scenario.net.thresholds] * 2)
    images = np.stack([X, X])
    bad = [("snapshot_thresholds", (scenario, times, theta[:1], images), ValueError),
           ("snapshot_thresholds", (scenario, times, theta[..., :1], images), ValueError),
           ("snapshot_images", (scenario, times, theta, images[:, :3]), ValueError),
           ("snapshot_images", (scenario, times, theta, np.where(images > 0, np.nan, images)), ValueError),
           ("snapshot_time", (scenario, times[:0], theta[:0], images[:0]), ValueError),
           ("snapshot_time", (scenario, times.reshape(2, 1), theta, images), ValueError),
           ("scenario", ({"data": None}, times, theta, images), TypeError),
           ("scenario", (separated_clusters(3, 3, 4, distance=8.0, seed=1), times, theta, images), ValueError)]
    for name, args, err in bad:
        with pytest.raises(err, match=rf"^{name}\b"):
            plots.collapse_sequence_figure(*args)


def _collapse(Q, T=30):
    t = np.linspace(0.0, 10.0, T)
    decay = np.exp(-t)
    T_j = np.linspace(2.0, 4.0, Q)
    per_cluster = np.where(t[:, None] < T_j, decay[:, None], 0.0)
    gaps = np.broadcast_to(decay[:, None, None], (T, Q, Q)).copy()
    cost = decay**2
    return sc.SeparatedCollapse(t=t, thresholds=np.zeros((T, Q, Q)), images=np.zeros((T, 1, Q)),
                                per_cluster=per_cluster,
                             variability=per_cluster.sum(axis=1), nc1=per_cluster.sum(axis=1), cost=cost,
                             cost_images=cost, cost_formula=cost, collapse_time=T_j, gaps=gaps,
                             maximal_rate=np.ones((Q, Q)), fitted_rate=np.ones((Q, Q)), after=t >= T_j.max(),
                             fit_cost=2.0, fit_formula=2.0)


def test_collapse_rates_figure(tmp_path):
    fig = plots.collapse_rates_figure({2: _collapse(2), 3: _collapse(3)})
    a, b, c = fig.axes
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert len(a.get_lines()) == 4  # cost and asymptote per Q
    assert len(b.get_lines()) == 2 * (2 + 3)  # a curve and a vertical line per cluster
    assert len(c.get_lines()) == 2 * 2 + 3 * 3  # one per layer and coordinate
    assert [t.get_text() for t in c.get_legend().get_texts()] == [f"layer {j}, Q = {Q}" for Q, n in ((2, 2), (3, 3))
                                                                   for j in range(1, n + 1)]
    assert b.get_xlim()[1] == pytest.approx(1.3 * 4.0)
    savefig(fig, tmp_path / "d.png")


def _drift(depths=(1, 2), ratios=(0.0, 0.1, 1.0), scales=(0.5, 1.0), T=5):
    shape = (len(depths), len(scales), len(ratios), T)
    base = np.linspace(0.0, 1.0, T) * np.arange(1, len(ratios) + 1)[:, None]
    values = np.broadcast_to(base, shape).copy()
    coords = {"depth": list(depths), "weight_scale": list(scales), "weight_lr_ratio": list(ratios),
              "time": np.linspace(0.0, 2.0, T)}
    dims = ("depth", "weight_scale", "weight_lr_ratio", "time")
    return xr.Dataset({v: (dims, values) for v in ("adaptedness", "cost_error", "count_error")}, coords=coords)


def test_adaptedness_drift_figure(tmp_path):
    fig = plots.adaptedness_drift_figure(_drift(), holds_tolerance=0.05)
    assert len(fig.axes) == 6
    assert len(fig.axes[0].get_lines()) == 3 and len(fig.axes[1].get_lines()) == 4  # + the tolerance line
    assert _legend_labels(fig) == [r"$\rho = 0$", r"$\rho = 0.1$", r"$\rho = 1$", "tolerance"]
    assert fig.axes[4].get_title() == "L = 2: cost prediction error" and fig.axes[5].get_xlabel() == "t (flow time)"
    savefig(fig, tmp_path / "e.png")


def test_validity_map_figure(tmp_path):
    err = _drift().cost_error.max("time") / 10
    err[0, 1, 0] = 0.01  # within the tolerance
    err[0, 0, 2] = np.nan  # a run that stopped early
    fig = plots.validity_map_figure(err, holds_tolerance=0.05)
    a, b = fig.axes[:2]
    texts = [t.get_text() for t in a.texts]
    assert len(texts) == 6 and "stopped" in texts and "0.01 ✓" in texts
    assert [t.get_text() for t in a.get_xticklabels()] == ["0", "0.1", "1"]
    assert a.get_title() == "L = 1: max relative cost error (✓: holds)" and len(fig.axes) == 3  # two maps, a colorbar
    savefig(fig, tmp_path / "f.png")

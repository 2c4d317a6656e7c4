"""Worked examples of the notebooks: scenario builders, runs through the library, result datasets.

Each notebook shows its equations on a small example. This module builds those examples, runs
them through :func:`reluflow.dynamics.solver.solve` and summarises the runs in the quantities the
notebooks check and plot, so that the notebooks hold narrative, checks and figures only.

Notebook 01 (truncation maps, THEORY.md §1–2):

- three clusters in R² and a three-layer adapted network with frames rotated by 0°, 30°, −60°
  → :func:`truncation_layers_example`
- the notebook's result dataset (identity checks, projections, the figure's x^(τ,ℓ))
  → :func:`truncation_maps_dataset`

Notebook 02 (effective flow equations, THEORY.md §4.2–4.3):

- two clusters in R², one adapted layer, targets beyond both clusters → :func:`one_layer_example`
- the bias-flow field θ ↦ θ̇ (4.2) on a grid of thresholds             → :func:`threshold_field`
- n_k(t) = #{i : u_ik ≤ θ_k(t)}, the rate n_k/(λ_k² N), θ* = the mean target of the points
  truncated at the end, recounted from the data                        → :func:`threshold_relaxation`
- the scale-and-bias flow (4.3) with the drift of λ² + b² and its
  solver-tolerance bound                                               → :func:`scale_bias_run`
- the notebook's result dataset                                        → :func:`effective_flow_dataset`

Notebook 03 (one cluster, solution classes S1–S3, THEORY.md §5):

- one cluster in a disc, one adapted layer, the target beyond it, and the starts of the four
  solution classes                                                     → :func:`single_cluster`
- the measured rate −d/dt log|θ_k − ŷ_k| between output times against n_k/(λ_k² N)
  recounted from the data                                              → :func:`rate_staircase`
- the notebook's result dataset                                        → :func:`single_cluster_dataset`

Notebook 04 (separated clusters S4, THEORY.md §5):

- from a run and the explicit per-cluster solutions: the images x^(τ,L)(t), within-class variability
  per cluster and in all, NC1, the collapse times T_j, the gaps |θ − θ*| and their fitted rates
  against N_j/(λ² N), the cost recomputed from the images and from the explicit solution
  → :func:`separated_collapse`
- the notebook's result dataset                                        → :func:`separated_clusters_dataset`

Notebook 05 (the general case S5, THEORY.md §5), one layer with the identity frame:

- the truncation pattern T_ik(t) = [x_ik ≤ θ_k(t)], n_k(t) and the mean target ȳ_k(t) of the truncated
  points, recounted from the data                                      → :func:`mean_target_trajectory`
- each cluster's share ½ Σ_{i ∈ j} w_i |max(x_i, θ) − ỹ_i|² of the cost  → :func:`cost_shares`
- each coordinate as its own one-dimensional problem (they decouple for one layer with the
  identity frame), solved to its rest, e.g. by the general backend as an independent oracle
  → :func:`coordinatewise_solve`
- the notebook's result dataset                                        → :func:`general_case_dataset`
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from reluflow.results.schema import variable as _var  # a result variable with its long_name and units
from reluflow.theory.adapted import AdaptedNetwork, adapted_network, rotation
from reluflow.theory.costs import targets_by_label
from reluflow.theory.data import ClusteredData, clustered_data
from reluflow.theory.flows import bias_flow, scale_bias_invariant
from reluflow.validation import (
    as_adapted_network,
    as_bool,
    as_coordinate_problem,
    as_dataset,
    as_labels,
    as_points,
    as_positive_float,
    as_real,
    as_real_array,
    check_positive_int,
    check_size,
)

__all__ = [
    "truncation_layers_example",
    "truncation_maps_dataset",
    "OneLayerExample",
    "one_layer_example",
    "threshold_field",
    "ThresholdRelaxation",
    "threshold_relaxation",
    "ScaleBiasRun",
    "scale_bias_run",
    "effective_flow_dataset",
    "SingleCluster",
    "single_cluster",
    "RateStaircase",
    "rate_staircase",
    "recount_truncated",
    "single_cluster_dataset",
    "SeparatedCollapse",
    "separated_collapse",
    "separated_clusters_dataset",
    "MeanTargetTrajectory",
    "mean_target_trajectory",
    "cost_shares",
    "CoordinateRuns",
    "coordinatewise_solve",
    "general_case_dataset",
]


# --------------------------------------------------------------------------- notebook 01: truncation maps


def truncation_layers_example(n_per_cluster=40, *, seed=None):
    """(clusters, net): three clusters in R² and a three-layer adapted network (frames rotated by 0°, 30°, −60°).

    Clusters round (−1.6, 0.2), (1.2, 1.4), (1.0, −1.4) with radii 0.8, 0.7, 0.7; scales (1, 1.5), (0.8, 1.2),
    (1, 1); thresholds (−1, −1), (−0.2, −2.2), (−2, −0.5). Layer 1 truncates cluster 1 in its first coordinate
    and cluster 3 in its second; the later layers project the truncated clusters onto new faces.
    """
    clusters = clustered_data([[-1.6, 0.2], [1.2, 1.4], [1.0, -1.4]], [0.8, 0.7, 0.7], n_per_cluster, seed=seed)
    net = adapted_network([rotation(a) for a in (0.0, 30.0, -60.0)],
                          scales=[[1.0, 1.5], [0.8, 1.2], [1.0, 1.0]],
                          thresholds=[[-1.0, -1.0], [-0.2, -2.2], [-2.0, -0.5]])
    return clusters, net


def truncation_maps_dataset(identities, projection, stages, labels) -> xr.Dataset:
    """Notebook 01's result: the identity checks, the cone projections (dimension ``projection_width``) and
    the figure's points ``stages`` (L + 1, N, M), x^(τ,ℓ) for ℓ = 0..L, with their cluster ``labels`` (from 0)."""
    stages = np.stack(stages)
    figure_points = xr.DataArray(
        stages, dims=("stage", "point", "coordinate"),
        coords={"stage": np.arange(stages.shape[0]), "point": np.arange(stages.shape[1]),
                "coordinate": np.arange(1, stages.shape[2] + 1)},
        attrs={"long_name": "x^(tau,l): data truncated by the first l layers, in input space", "units": "1"},
    )
    result = xr.merge([identities, projection.rename(width="projection_width"),
                       figure_points.to_dataset(name="figure_points")], join="exact")
    result["figure_labels"] = xr.DataArray(np.asarray(labels) + 1, dims="point",
                                           attrs={"long_name": "cluster of each figure point", "units": "1"})
    return result


# --------------------------------------------------------------------------- notebook 02: one-layer example

#: Cluster centres of notebook 02's example, in activation coordinates u = R x.
EXAMPLE_CENTRES = ((-1.5, 0.0), (0.5, -1.0))
#: Rotated class targets R ỹ_j of notebook 02's example, beyond both clusters in u_1 and u_2.
EXAMPLE_TARGETS = ((2.0, 1.5), (1.0, 2.5))


@dataclass(frozen=True, repr=False)
class OneLayerExample:
    """A one-layer adapted network in R² with clustered data: ``net``, ``clusters`` (in u = R x), targets.

    ``class_targets`` are the rotated targets R ỹ_j (Q, 2); ``X`` the input points x_i = Rᵀ u_i (rows);
    ``targets`` the input-space target ỹ_(j(i)) of each point (N, 2).
    """

    net: AdaptedNetwork
    clusters: ClusteredData
    class_targets: np.ndarray
    X: np.ndarray
    targets: np.ndarray

    @property
    def U(self) -> np.ndarray:
        """Activation coordinates u_i = R x_i of the points, shape (N, 2)."""
        return self.clusters.points

    @property
    def frame(self) -> np.ndarray:
        """The frame R (rows: activation directions)."""
        return self.net.frames[0]

    @property
    def scales(self) -> np.ndarray:
        """The scales λ_k, shape (2,)."""
        return self.net.scales[0]

    def __repr__(self) -> str:
        return (f"<OneLayerExample N={self.X.shape[0]} points in R^2, {self.clusters.n_clusters} clusters, "
                f"scales {self.scales.tolist()}>")


def one_layer_example(frame_degrees=30.0, scales=(1.0, 1.4), start=(-1.5, -1.0), n_per_cluster=15, *,
                      seed=None, centres=EXAMPLE_CENTRES, class_targets=EXAMPLE_TARGETS,
                      radius=0.7) -> OneLayerExample:
    """Clusters drawn in activation coordinates u (discs of ``radius`` round ``centres``), frame R = rotation(α).

    x_i = Rᵀ u_i, targets ỹ_j = Rᵀ (R ỹ_j) with R ỹ_j = ``class_targets``, and one adapted layer with
    scales λ = ``scales`` and initial thresholds θ(0) = ``start``.
    """
    R = rotation(as_real(frame_degrees, "frame_degrees"))
    radius = as_positive_float(radius, "radius")
    start = as_real_array(start, "start", ndim=1)
    if start.shape != (2,):
        raise ValueError(f"start must hold the two initial thresholds θ(0), shape (2,); got shape {start.shape}")
    lam = as_real_array(scales, "scales", ndim=1)
    class_targets = as_real_array(class_targets, "class_targets", ndim=2)
    clusters = clustered_data(centres, radius, n_per_cluster, seed=seed)
    if class_targets.shape != clusters.centres.shape:
        raise ValueError(f"class_targets must have shape {clusters.centres.shape} (one per centre); "
                         f"got {class_targets.shape}")
    X = clusters.points @ R
    Y = targets_by_label(class_targets @ R, clusters.labels)
    net = adapted_network([R], [lam], [start])
    return OneLayerExample(net=net, clusters=clusters, class_targets=class_targets, X=X, targets=Y)


def threshold_field(net, X, targets, grid_1, grid_2) -> np.ndarray:
    """The bias-flow velocity θ̇ (4.2) of a one-layer, two-dimensional network at every grid point.

    Returns an array of shape (len(grid_2), len(grid_1), 2): entry [b, a] is θ̇ at θ = (grid_1[a], grid_2[b]),
    the layout of :func:`matplotlib.pyplot.streamplot`.
    """
    net = as_adapted_network(net)
    if net.scales.shape != (1, 2):
        raise ValueError(f"net must be a one-layer AdaptedNetwork of width 2; got L = {net.depth}, M = {net.width}")
    g1 = as_real_array(grid_1, "grid_1", ndim=1)
    g2 = as_real_array(grid_2, "grid_2", ndim=1)
    for name, g in (("grid_1", g1), ("grid_2", g2)):
        if g.size == 0:
            raise ValueError(f"{name} must hold at least one threshold value; got an empty array")
    return np.array([[bias_flow(replace(net, thresholds=np.array([a, b])[None, :]), X, targets)[0] for a in g1]
                     for b in g2])


@dataclass(frozen=True, repr=False)
class ThresholdRelaxation:
    """A one-layer bias-flow trajectory with its truncation counts recounted from the data.

    ``thresholds``, ``n_truncated``, ``rate`` n_k/(λ_k² N) and ``distance`` |θ_k − θ*_k| have shape
    (T, M); ``equilibrium`` θ*_k is the mean target over the points truncated at the end
    (``truncated_end``, (N, M)); ``full[k]`` is the first time index at which every point is
    truncated in coordinate k (0 if never); ``settled[k]`` the first time index after the last change of
    n_k (0 if n_k never changes), from which on θ_k relaxes at the constant rate ``rate[-1, k]``.
    """

    time: np.ndarray
    thresholds: np.ndarray
    n_truncated: np.ndarray
    rate: np.ndarray
    equilibrium: np.ndarray
    truncated_end: np.ndarray
    full: np.ndarray
    distance: np.ndarray
    settled: np.ndarray

    def __repr__(self) -> str:
        return f"<ThresholdRelaxation T={self.time.size}, theta* = {np.round(self.equilibrium, 3).tolist()}>"


def threshold_relaxation(solution: xr.Dataset, U, point_targets, scales) -> ThresholdRelaxation:
    """Recount n_k(t) = #{i : u_ik ≤ θ_k(t)} along a one-layer solution of :func:`~reluflow.dynamics.solver.solve`.

    ``U`` (N, M) are the activation coordinates u_i = R x_i, ``point_targets`` (N, M) the rotated
    target (R ỹ_(j(i))) of each point and ``scales`` λ (M,). The rate is n_k/(λ_k² N) (uniform weights)
    and θ*_k = Σ_i T_ik(end) (R ỹ_(j(i)))_k / n_k(end), NaN (and its ``distance`` too) for a coordinate with no
    truncated point at the end, where the flow has no rest point of that form.
    """
    as_dataset(solution, "solution", ("thresholds",))
    U = as_points(U, "U")
    N, M = U.shape
    point_targets = as_real_array(point_targets, "point_targets", ndim=2)
    lam = as_real_array(scales, "scales", ndim=1)
    if point_targets.shape != (N, M) or lam.shape != (M,):
        raise ValueError(f"point_targets must have shape {(N, M)} and scales ({M},); "
                         f"got {point_targets.shape} and {lam.shape}")
    theta = solution.thresholds.isel(layer=0).values
    n = (U[None, :, :] <= theta[:, None, :]).sum(axis=1)
    truncated_end = U <= theta[-1]
    changes = np.diff(n, axis=0) != 0
    settled = np.where(changes.any(axis=0), changes.shape[0] - np.argmax(changes[::-1], axis=0), 0)
    count = truncated_end.sum(axis=0)
    theta_star = np.where(count > 0, (truncated_end * point_targets).sum(axis=0) / np.maximum(count, 1), np.nan)
    return ThresholdRelaxation(time=solution.time.values, thresholds=theta, n_truncated=n, rate=n / (lam**2 * N),
                               equilibrium=theta_star, truncated_end=truncated_end,
                               full=np.argmax(n == N, axis=0), distance=np.abs(theta - theta_star),
                               settled=settled)


@dataclass(frozen=True, repr=False)
class ScaleBiasRun:
    """A one-layer scale-and-bias trajectory (4.3): λ_k(t), b_k(t), θ_k(t) and the drift of I_k = λ_k² + b_k².

    ``drift`` = |I_k(t)/I_k(0) − 1| and ``bound`` (both (T, M)): the bound n · 4√2 (rtol + atol/ρ_k) + 8 eps
    with n = ``nfev`` ≥ the number of RK45 steps taken, ρ_k = √I_k(0); ``per_step`` = 4√2 (rtol + atol/ρ_k).
    """

    time: np.ndarray
    scales: np.ndarray
    biases: np.ndarray
    thresholds: np.ndarray
    invariant0: np.ndarray
    drift: np.ndarray
    per_step: np.ndarray
    bound: np.ndarray
    nfev: int

    def __repr__(self) -> str:
        return f"<ScaleBiasRun T={self.time.size}, worst drift {self.drift.max():.2e}, nfev {self.nfev}>"


def scale_bias_run(net, X, targets, t_end, *, rtol=1e-10, atol=1e-12, n_times=601,
                   record_events: bool = True) -> ScaleBiasRun:
    """Solve (4.3) with ``solve(method="general", flow="scale_bias", ivp_method="RK45")`` and measure λ² + b².

    The exact flow conserves I_k = λ_k² + b_k². RK45 accepts a step when the RMS over the 2M components of
    its error estimate, each divided by atol + rtol |y_i|, is at most 1, so one step moves I_k by at most
    4√2 (rtol + atol/ρ_k) relative to I_k(0) = ρ_k² (for M = 2); each step costs at least one function
    evaluation, so ``nfev`` bounds the number of steps. Output times: ``n_times`` in [0, t_end], plus the event
    times when ``record_events`` (with False the output grid, and so every array's shape, is exactly those times).
    """
    from reluflow.dynamics.solver import solve

    net = as_adapted_network(net)
    if net.depth != 1:
        raise ValueError(f"net must be a one-layer AdaptedNetwork; got L = {net.depth}")
    t_end = as_positive_float(t_end, "t_end")
    n_times = check_size(n_times, "n_times", minimum=2, bytes_per_unit=8.0 * 12 * net.width)
    record_events = as_bool(record_events, "record_events")
    ds = solve(net, X, targets, np.linspace(0.0, t_end, n_times), method="general", flow="scale_bias",
               ivp_method="RK45", rtol=rtol, atol=atol, record_events=record_events)
    if ds.attrs["status"] != 0:
        raise RuntimeError(f"the scale-and-bias flow did not reach t_end: {ds.attrs['message']}")
    lam = ds.scales.isel(layer=0).values
    theta = ds.thresholds.isel(layer=0).values
    b = -lam * theta
    rho = np.sqrt(scale_bias_invariant(net)[0])
    drift = np.abs((lam**2 + b**2) / rho**2 - 1.0)
    per_step = 4 * np.sqrt(2) * (rtol + atol / rho)
    nfev = int(ds.attrs["nfev"])
    bound = np.broadcast_to(nfev * per_step + 8 * np.finfo(float).eps, drift.shape).copy()
    return ScaleBiasRun(time=ds.time.values, scales=lam, biases=b, thresholds=theta, invariant0=rho**2, drift=drift,
                        per_step=per_step, bound=bound, nfev=nfev)


def effective_flow_dataset(battery, symbolic, example, grid_1, grid_2, field, relaxation, run,
                           descent) -> xr.Dataset:
    """Notebook 02's result: the oracle battery, the sympy checks, the field, the (4.2) and (4.3) runs, descent.

    ``battery`` from :func:`reluflow.testing.oracles.verification_battery`, ``symbolic`` from
    :func:`~reluflow.testing.oracles.symbolic_checks`, ``example`` a :class:`OneLayerExample`, ``field``
    from :func:`threshold_field` on ``grid_1`` × ``grid_2``, ``relaxation`` a :class:`ThresholdRelaxation`,
    ``run`` a :class:`ScaleBiasRun`, ``descent`` a :class:`~reluflow.dynamics.descent.ScaleBiasDescent`.
    """
    from reluflow.testing.oracles import FD_STEP, TIE_MARGIN

    au, rate, per_time = "a.u.", "a.u. per unit flow time", "1 per unit flow time"
    tc, sc, gc = ("bias_flow_time", "coordinate"), ("scale_bias_time", "coordinate"), ("gd_time", "coordinate")
    U, lam = example.U, example.scales
    field = np.asarray(field)
    figures_data = xr.Dataset(
        {
            "symbolic_passed": _var("statement", [int(ok) for _, ok in symbolic.checks],
                                    "1 if sympy reduced the statement to an identity, else 0"),
            "field_rate": _var(("theta_2", "theta_1", "coordinate"), field, "bias-flow velocity d theta_k/dt (4.2)",
                               rate),
            "field_speed": _var(("theta_2", "theta_1"), np.hypot(field[..., 0], field[..., 1]),
                                "speed |d theta/dt| of the bias flow (4.2)", rate),
            "activation_points": _var(("point", "coordinate"), U, "activation coordinates u_i = R x_i of the points",
                                      au),
            "input_points": _var(("point", "coordinate"), example.X, "example points x_i in input space", au),
            "point_cluster": _var("point", example.clusters.labels + 1, "cluster of each example point"),
            "rotated_targets": _var(("cluster", "coordinate"), example.class_targets, "rotated class targets R y~_j",
                                    au),
            "frame": _var(("row", "coordinate"), example.frame,
                          "frame R of the example (rows: activation coordinates)"),
            "example_scales": _var("coordinate", lam, "scales lambda_k of the bias-flow example", au),
            "equilibrium": _var("coordinate", relaxation.equilibrium,
                                "equilibrium theta* = mean target of the truncated points", au),
            "bias_flow_theta": _var(tc, relaxation.thresholds, "thresholds theta_k(t) under (4.2)", au),
            "bias_flow_truncated": _var(tc, relaxation.n_truncated,
                                        "number n_k(t) of points truncated in coordinate k"),
            "bias_flow_rate": _var(tc, relaxation.rate, "relaxation rate n_k(t)/(lambda_k^2 N)", per_time),
            "scale_bias_lambda": _var(sc, run.scales, "scales lambda_k(t) under (4.3)", au),
            "scale_bias_b": _var(sc, run.biases, "biases b_k(t) under (4.3)", au),
            "scale_bias_theta": _var(sc, run.thresholds, "thresholds theta_k(t) = -b_k/lambda_k under (4.3)", au),
            "scale_bias_drift": _var(sc, run.drift, "relative drift of I_k = lambda_k^2 + b_k^2 under (4.3)"),
            "scale_bias_bound": _var(sc, run.bound, "bound nfev 4 sqrt(2) (rtol + atol/rho_k) + 8 eps on the drift"),
            "gd_lambda": _var(gc, descent.scales[:, 0], "scales lambda_k under gradient descent with step gd_step", au),
            "gd_b": _var(gc, descent.biases[:, 0], "biases b_k under gradient descent with step gd_step", au),
            "gd_drift": _var(gc, np.abs(descent.invariant[:, 0] / run.invariant0 - 1.0),
                             "relative change of lambda_k^2 + b_k^2 under gradient descent"),
        },
        coords={
            "statement": ("statement", [statement for statement, _ in symbolic.checks]),
            "theta_1": ("theta_1", np.asarray(grid_1), {"long_name": "threshold theta_1 (grid)", "units": "a.u."}),
            "theta_2": ("theta_2", np.asarray(grid_2), {"long_name": "threshold theta_2 (grid)", "units": "a.u."}),
            "coordinate": ("coordinate", [1, 2]),
            "row": ("row", [1, 2]),
            "point": ("point", np.arange(len(U))),
            "cluster": ("cluster", [1, 2]),
            "bias_flow_time": ("bias_flow_time", relaxation.time,
                               {"long_name": "flow time, (4.2) trajectory", "units": "1"}),
            "scale_bias_time": ("scale_bias_time", run.time,
                                {"long_name": "flow time, (4.3) trajectory", "units": "1"}),
            "gd_time": ("gd_time", descent.time, {"long_name": "time eta * step of gradient descent", "units": "1"}),
        },
    )
    battery_data = battery.drop_vars("tolerance").assign(
        battery_tolerance=battery.tolerance, battery_tie_margin=battery.tie_margin).drop_vars("tie_margin")
    battery_data.attrs = {}
    result = xr.merge([battery_data, figures_data], join="exact")
    result.attrs = {"tie_margin_min": TIE_MARGIN, "finite_difference_step": FD_STEP,
                    "battery_cost_weights": "uniform or balanced, drawn per instance",
                    "example_cost_weights": "uniform",
                    "relative_error_definition": battery.attrs["relative_error_definition"],
                    "theory_equation_labels": "labels (4.1)-(4.5) are the project's theory notes, not the paper's"}
    return result


# --------------------------------------------------------------------------- notebook 03: one cluster


@dataclass(frozen=True, repr=False)
class SingleCluster:
    """One cluster ``X`` (N, 2) in a disc of ``radius`` round 0, a frame R, scales λ, the frame target ŷ.

    ``u`` = X Rᵀ are the activation coordinates, ``target`` = Rᵀ ŷ the target in input space and
    ``theta_sweep`` the start of the sweep (S2): midway between the two smallest u_k, so one point is
    truncated in each coordinate.
    """

    X: np.ndarray
    frame: np.ndarray
    scales: np.ndarray
    y_hat: np.ndarray
    radius: float

    @property
    def N(self) -> int:
        """The number of points."""
        return self.X.shape[0]

    @property
    def u(self) -> np.ndarray:
        """Activation coordinates u_i = R x_i, shape (N, 2)."""
        return self.X @ self.frame.T

    @property
    def target(self) -> np.ndarray:
        """The input-space target ỹ = Rᵀ ŷ."""
        return self.frame.T @ self.y_hat

    @property
    def theta_sweep(self) -> np.ndarray:
        """θ(0) of the sweep: the midpoint of the two smallest u_k in each coordinate."""
        return 0.5 * np.sort(self.u, axis=0)[:2].sum(axis=0)

    def starts(self) -> dict:
        """{name: (θ(0), ŷ)} of S1 (below the cluster), S3 stop (ŷ = 0, the centre) and S3 release (ŷ below)."""
        return {
            "S1_dead": (self.u.min(axis=0) - 0.5 * self.radius, self.y_hat),
            "S3_stop": (self.theta_sweep, np.zeros(2)),
            "S3_release": (np.zeros(2), np.full(2, -self.radius - 1.0)),
        }

    def run(self, theta0, y_hat, times, **solve_options) -> xr.Dataset:
        """The bias flow of the layer (R, λ, θ(0) = ``theta0``) towards the frame target ``y_hat``, by ``solve``."""
        from reluflow.dynamics.solver import solve

        net = adapted_network([self.frame], [self.scales], [theta0])
        return solve(net, self.X, np.tile(self.frame.T @ np.asarray(y_hat, float), (self.N, 1)), times,
                     **solve_options)

    def __repr__(self) -> str:
        return f"<SingleCluster N={self.N} in a disc of radius {self.radius:g}, y_hat={self.y_hat.tolist()}>"


def single_cluster(n_points=40, radius=1.0, scales=(1.0, 1.5), frame_angle=30.0, target_offset=(1.5, 1.0), *,
                   seed=None) -> SingleCluster:
    """One cluster uniform in a disc of ``radius`` round the origin, frame R = rotation(−``frame_angle``).

    The frame's rows are (cos α, sin α) and (−sin α, cos α); the frame target ŷ = radius + ``target_offset``
    lies beyond the disc in both frame coordinates.
    """
    radius = as_positive_float(radius, "radius")
    n_points = check_size(n_points, "n_points", bytes_per_unit=8.0 * 12)
    frame_angle = as_real(frame_angle, "frame_angle")
    lam = as_real_array(scales, "scales", ndim=1)
    offset = as_real_array(target_offset, "target_offset", ndim=1)
    if lam.shape != (2,) or offset.shape != (2,):
        raise ValueError(f"scales and target_offset must have 2 entries; got {lam.shape} and {offset.shape}")
    X = clustered_data([[0.0, 0.0]], radius, n_points, seed=seed).points
    return SingleCluster(X=X, frame=rotation(-frame_angle), scales=lam, y_hat=radius + offset, radius=radius)


@dataclass(frozen=True, repr=False)
class RateStaircase:
    """Measured and predicted rates on each interval between consecutive output times (I, M).

    ``measured`` = −Δ log|θ_k − ŷ_k| / Δt, ``predicted`` = n_k/(λ_k² N) with n_k recounted at the
    interval's midpoint; ``usable`` marks intervals whose log change is well above round-off.
    """

    interval_start: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    usable: np.ndarray

    def __repr__(self) -> str:
        return f"<RateStaircase {self.interval_start.size} intervals, {int(self.usable.sum())} usable>"


def rate_staircase(solution, u, y_hat, scales, *, min_log_change=1e-3, min_gap=None) -> RateStaircase:
    """Between events θ_k is an exact exponential, so −Δ log|θ_k − ŷ_k|/Δt is the rate n_k/(λ_k² N) in force.

    ``solution`` is a one-layer run of :func:`~reluflow.dynamics.solver.solve` (its time grid holds every
    event), ``u`` (N, M) the activation coordinates, ``y_hat`` (M,) the frame target, ``scales`` λ (M,).
    An interval is usable when predicted · Δt > ``min_log_change`` and |θ_k − ŷ_k| > ``min_gap`` at its
    end (default 1e-6 |ŷ_k|). For a trajectory with absolute error δ (a general ODE solver), the
    measured rate's relative error is about 2δ / (min_gap · min_log_change): choose both from δ.
    """
    min_log_change = as_positive_float(min_log_change, "min_log_change")
    if min_gap is not None:
        min_gap = as_positive_float(min_gap, "min_gap")
    as_dataset(solution, "solution", ("thresholds",))
    u = as_points(u, "u")
    y_hat = as_real_array(y_hat, "y_hat", ndim=1)
    lam = as_real_array(scales, "scales", ndim=1)
    M = u.shape[1]
    if y_hat.shape != (M,) or lam.shape != (M,) or np.any(lam <= 0):
        raise ValueError(f"y_hat and scales must have shape ({M},), scales positive; got {y_hat.shape} and "
                         f"{lam.shape}")
    th = solution.thresholds.isel(layer=0).values
    t = solution.time.values
    gap = np.abs(th - y_hat)
    dt = np.diff(t)
    log_gap = np.log(np.where(gap > 0, gap, np.nan))  # the gap reaches exactly 0 once θ rounds to ŷ
    measured = -np.diff(log_gap, axis=0) / dt[:, None]
    mid = 0.5 * (th[1:] + th[:-1])
    n_mid = (u[None, :, :] <= mid[:, None, :]).sum(axis=1)
    predicted = n_mid / (lam**2 * u.shape[0])
    floor = 1e-6 * np.abs(y_hat) if min_gap is None else min_gap
    usable = (predicted * dt[:, None] > min_log_change) & (gap[1:] > floor)
    return RateStaircase(interval_start=t[:-1], measured=measured, predicted=predicted, usable=usable)


def recount_truncated(thresholds, u) -> np.ndarray:
    """n_k(t) = #{i : u_{i,k} ≤ θ_k(t)}, counted from the data (a tie counts as truncated).

    ``thresholds`` (T, M) is one layer's θ(t), ``u`` (N, M) the activation coordinates; returns (T, M)
    integers. Independent of any solver's own count: one sort per coordinate and a binary search.
    """
    u = as_points(u, "u")
    th = as_real_array(thresholds, "thresholds", ndim=2)
    if th.shape[1] != u.shape[1]:
        raise ValueError(f"thresholds must have {u.shape[1]} columns, one per coordinate of u; got {th.shape}")
    if th.shape[0] == 0:
        raise ValueError(f"thresholds must have at least one row (one per time); got shape {th.shape}")
    s = np.sort(u, axis=0)
    return np.stack([np.searchsorted(s[:, k], th[:, k], side="right") for k in range(u.shape[1])], axis=1)


def _on_grid(ds, name):
    values = ds[name].isel(layer=0).values if "layer" in ds[name].dims else ds[name].values
    return values[ds.requested.values == 1]


def single_cluster_dataset(runs: dict, frame_targets: dict, staircase: RateStaircase, cluster: SingleCluster,
                           snapshot_time, snapshot_images, times) -> xr.Dataset:
    """Notebook 03's result: the runs on the requested ``times``, the staircase, the sweep's events, snapshots.

    ``runs`` maps scenario names to solver runs, the first being the sweep (S2); ``frame_targets`` the
    same names to their frame targets ŷ.
    """
    names = list(runs)
    sweep = runs[names[0]]
    attrs = {
        "thresholds": "threshold theta_k(t)", "n_truncated": "number of truncated points n_k(t)",
        "cost": "input-layer cost C_in",
    }
    data = {
        name: (("scenario", "time", "coordinate") if name != "cost" else ("scenario", "time"),
               np.stack([_on_grid(runs[s], name) for s in names]), {"long_name": text, "units": "1"})
        for name, text in attrs.items()
    }
    n_intervals = staircase.interval_start.size
    n_events = sweep.event_time.size
    data.update({
        "frame_target": (("scenario", "coordinate"), np.stack([frame_targets[s] for s in names]),
                         {"long_name": "target y_hat in frame coordinates", "units": "1"}),
        "interval_start": (("interval",), staircase.interval_start,
                           {"long_name": "start of the interval (S2 run)", "units": "1"}),
        # only usable intervals are saved: once |θ − ŷ| nears round-off the measured log-derivative is noise,
        # which differs between machines (NaN marks the intervals left out)
        "measured_rate": (("interval", "coordinate"), np.where(staircase.usable, staircase.measured, np.nan),
                          {"long_name": "-d/dt log|theta_k - y_hat_k| measured over the interval (NaN where "
                                        "the interval is too short or |theta_k - y_hat_k| is at round-off)",
                           "units": "1"}),
        "predicted_rate": (("interval", "coordinate"), staircase.predicted,
                           {"long_name": "n_k/(lambda_k^2 N), n_k recounted from the data", "units": "1"}),
        "event_time": (("event",), sweep.event_time.values,
                       {"long_name": "truncation event time (S2 run, exact solver)", "units": "1"}),
        "event_coordinate": (("event",), sweep.event_coordinate.values,
                             {"long_name": "coordinate of the event", "units": "1"}),
        "event_point": (("event",), sweep.event_point.values,
                        {"long_name": "index of the crossing point", "units": "1"}),
        "frame_points": (("point", "coordinate"), cluster.u,
                         {"long_name": "activation coordinates u = R x", "units": "1"}),
        "points": (("point", "coordinate"), cluster.X, {"long_name": "data points x_i (input space)", "units": "1"}),
        "snapshot_images": (("snapshot", "point", "coordinate"), np.asarray(snapshot_images),
                            {"long_name": "images x^(tau,1)(t) at the snapshot times (S2)", "units": "1"}),
        "snapshot_time": (("snapshot",), np.asarray(snapshot_time), {"long_name": "snapshot time", "units": "1"}),
    })
    return xr.Dataset(data, coords={"scenario": names, "time": np.asarray(times), "coordinate": [0, 1],
                                    "interval": np.arange(n_intervals), "event": np.arange(n_events),
                                    "point": np.arange(cluster.N), "snapshot": np.arange(len(snapshot_time))})


# --------------------------------------------------------------------------- notebook 04: separated clusters


@dataclass(frozen=True, repr=False)
class SeparatedCollapse:
    """Collapse measures of an S4 run on its requested times ``t`` (T,).

    ``thresholds`` (T, L, M); ``images`` x^(τ,L) (T, N, M); ``per_cluster`` tr Σ_W of each cluster alone
    (T, Q); ``variability`` tr Σ_W and ``nc1`` (T,); ``cost`` (solver), ``cost_images`` (recomputed from the
    images) and ``cost_formula`` ½ Σ_j (N_j/N) |θ_j − θ*_j|² of the explicit solutions (T,);
    ``collapse_time`` T_j, the last event of layer j (explicit); ``gaps`` |θ − θ*| (T, L, M);
    ``maximal_rate`` N_j/(λ_j,k² N) and ``fitted_rate`` of each gap after T_j + 1 (L, M); ``after``
    (t ≥ max T_j); ``fit_cost`` and ``fit_formula``, the fitted decay rates of the solver's and the
    explicit cost over the last 60 % of the time after the last collapse.
    """

    t: np.ndarray
    thresholds: np.ndarray
    images: np.ndarray
    per_cluster: np.ndarray
    variability: np.ndarray
    nc1: np.ndarray
    cost: np.ndarray
    cost_images: np.ndarray
    cost_formula: np.ndarray
    collapse_time: np.ndarray
    gaps: np.ndarray
    maximal_rate: np.ndarray
    fitted_rate: np.ndarray
    after: np.ndarray
    fit_cost: float
    fit_formula: float

    def __repr__(self) -> str:
        return f"<SeparatedCollapse T={self.t.size}, collapse times {np.round(self.collapse_time, 3).tolist()}>"


def separated_collapse(scenario, solution, explicit, *, gap_floor: float = 1e-9) -> SeparatedCollapse:
    """Measure the collapse of an S4 ``scenario`` along a ``solution`` of ``solve``, with ``explicit`` solutions.

    ``explicit`` is :func:`~reluflow.dynamics.solutions.separated_solutions` of the scenario (Q = L, any
    width M). ``solution`` may come from either backend of ``solve``; only its requested times are used.
    The rates are fitted where the gap exceeds ``gap_floor`` (raise it for a solver with a tolerance).
    """
    gap_floor = as_positive_float(gap_floor, "gap_floor")
    from reluflow.dynamics.solutions import exponential_rate, nc1, truncated_images, within_class_variability

    X, lab = scenario.data.points, scenario.data.labels
    N, Q, M = X.shape[0], scenario.data.n_clusters, X.shape[1]
    grid = solution.requested.values == 1
    t = solution.time.values[grid]
    th = solution.thresholds.values[grid]
    images = truncated_images(scenario.net.frames, th, X)  # (time, point, coordinate)
    per_cluster = np.stack([within_class_variability(images[:, lab == j], np.zeros(int((lab == j).sum()), int))
                            for j in range(Q)], axis=1)
    cost = solution.cost.values[grid]
    r = images - scenario.targets
    cost_images = 0.5 * np.einsum("tnm,tnm->t", r, r) / N
    T_j = np.array([max(float(explicit[j, k].event_time.max()) for k in range(M)) for j in range(Q)])
    gaps = np.abs(th - scenario.collapse_thresholds)
    kappa = scenario.data.counts[:, None] / (scenario.net.scales**2 * N)
    fit = np.full((Q, M), np.nan)
    for j in range(Q):
        for k in range(M):
            fit[j, k] = exponential_rate(t, gaps[:, j, k], (t > T_j[j] + 1.0) & (gaps[:, j, k] > gap_floor))
    th_explicit = np.stack([np.stack([explicit[j, k].theta(t) for k in range(M)], axis=1) for j in range(Q)], axis=1)
    shares = scenario.data.counts / N
    cost_formula = 0.5 * np.einsum("j,tjk->t", shares, (th_explicit - scenario.collapse_thresholds) ** 2)
    after = t >= T_j.max()
    tail = after & (cost > 1e-20) & (t > t[after][0] + 0.4 * (t[-1] - t[after][0]))
    return SeparatedCollapse(
        t=t, thresholds=th, images=images, per_cluster=per_cluster, variability=within_class_variability(images, lab),
        nc1=nc1(images, lab), cost=cost, cost_images=cost_images, cost_formula=cost_formula, collapse_time=T_j,
        gaps=gaps, maximal_rate=kappa, fitted_rate=fit, after=after, fit_cost=exponential_rate(t, cost, tail),
        fit_formula=exponential_rate(t, cost_formula, tail))


def _pad(a, shape):
    out = np.full(shape, np.nan)
    a = np.asarray(a)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


def separated_clusters_dataset(cases: dict, summary: dict, snapshot_time, snapshot_images, extra=None) -> xr.Dataset:
    """Notebook 04's result: each case Q (``cases[Q]`` a SeparatedClusters, ``summary[Q]`` its collapse),
    padded with NaN to the largest Q; the snapshots of the first case. ``extra`` maps further variable
    names to ``(dims, values, long_name)`` (the oracle comparisons), added as they are."""
    qs = list(summary)
    Qmax = max(qs)
    first = cases[qs[0]]
    t = summary[qs[0]].t
    T = t.size

    def stack(f, shape):
        return np.stack([_pad(f(q), shape) for q in qs])

    v = _var

    lmc = ("case", "layer", "coordinate")
    result = xr.Dataset(
        {
            "thresholds": v(("case", "time", "layer", "coordinate"), stack(lambda q: summary[q].thresholds,
                                                                           (T, Qmax, Qmax)),
                            "threshold theta_(l,k)(t) (NaN: absent for Q = 2)"),
            "collapse_thresholds": v(lmc, stack(lambda q: cases[q].collapse_thresholds, (Qmax, Qmax)),
                                     "zero-cost thresholds theta*_l = R_l y_l"),
            "cost": v(("case", "time"), np.stack([summary[q].cost for q in qs]), "input-layer cost C_in"),
            "within_class_variability": v(("case", "time"), np.stack([summary[q].variability for q in qs]),
                                          "tr Sigma_W of the images x^(tau,L)"),
            "cluster_variability": v(("case", "time", "cluster"), stack(lambda q: summary[q].per_cluster, (T, Qmax)),
                                     "mean squared distance of cluster j's images to their mean"),
            "nc1": v(("case", "time"), np.stack([summary[q].nc1 for q in qs]), "NC1 = tr(Sigma_W Sigma_B^+)/Q"),
            "collapse_time": v(("case", "cluster"), stack(lambda q: summary[q].collapse_time, (Qmax,)),
                               "predicted collapse time T_j (last truncation event of layer j)"),
            "maximal_rate": v(lmc, stack(lambda q: summary[q].maximal_rate, (Qmax, Qmax)),
                              "predicted maximal rate N_j/(lambda_(l,k)^2 N)"),
            "fitted_rate": v(lmc, stack(lambda q: summary[q].fitted_rate, (Qmax, Qmax)),
                             "fitted decay rate of |theta - theta*| after the collapse"),
            "snapshot_images": v(("snapshot", "point", "coordinate_2d"), np.asarray(snapshot_images),
                                 f"images x^(tau,L)(t) for Q = M = {qs[0]} at the snapshot times"),
            "snapshot_time": v(("snapshot",), np.asarray(snapshot_time), "snapshot time"),
            "points_2d": v(("point", "coordinate_2d"), first.data.points, f"data points (Q = M = {qs[0]})"),
            "labels_2d": v(("point",), first.data.labels + 1, f"cluster of each point (Q = M = {qs[0]})"),
        },
        coords={"case": qs, "time": t, "layer": np.arange(1, Qmax + 1), "coordinate": np.arange(Qmax),
                "cluster": np.arange(1, Qmax + 1), "snapshot": np.arange(len(snapshot_time)),
                "point": np.arange(first.data.points.shape[0]), "coordinate_2d": np.arange(first.net.width)},
    )
    result["case"].attrs.update(long_name="Q = M (clusters = layers = width)", units="1")
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError(f"extra must be a dict name -> (dims, values, long_name); got {type(extra).__name__}")
        for name, (dims, values, long_name) in extra.items():
            result[name] = v(tuple(dims), np.asarray(values), long_name)
    return result


# --------------------------------------------------------------------------- notebook 05: the general case


@dataclass(frozen=True, repr=False)
class MeanTargetTrajectory:
    """A one-layer, identity-frame run on its requested times ``t`` (T,), recounted from the data.

    ``thresholds`` θ_k(t) (T, M); ``truncated`` T_ik(t) = [x_ik ≤ θ_k(t)] (T, N, M); ``n_truncated``
    n_k(t) (T, M); ``mean_target`` ȳ_k(t), the mean of (ỹ_i)_k over the truncated points (NaN when
    none is), (T, M); ``cost`` C_in(t) from the solver.
    """

    t: np.ndarray
    thresholds: np.ndarray
    truncated: np.ndarray
    n_truncated: np.ndarray
    mean_target: np.ndarray
    cost: np.ndarray

    def __repr__(self) -> str:
        return f"<MeanTargetTrajectory T={self.t.size}, theta(end) = {np.round(self.thresholds[-1], 3).tolist()}>"


def mean_target_trajectory(solution, X, targets) -> MeanTargetTrajectory:
    """ȳ_k(t) = Σ_i T_ik(t) (ỹ_i)_k / n_k(t) along a one-layer identity-frame ``solution`` of ``solve``."""
    as_dataset(solution, "solution", ("requested", "thresholds"))
    X = as_points(X, "X")
    targets = as_real_array(targets, "targets", ndim=2)
    if targets.shape != X.shape:
        raise ValueError(f"targets must have the shape of X {X.shape}; got {targets.shape}")
    grid = solution.requested.values == 1
    theta = solution.thresholds.isel(layer=0).values[grid]
    trunc = X[None, :, :] <= theta[:, None, :]
    n = trunc.sum(axis=1)
    y_bar = np.where(n > 0, (trunc * targets[None]).sum(axis=1) / np.maximum(n, 1), np.nan)
    return MeanTargetTrajectory(t=solution.time.values[grid], thresholds=theta, truncated=trunc, n_truncated=n,
                                mean_target=y_bar, cost=solution.cost.values[grid])


def cost_shares(X, targets, labels, theta, n_total=None) -> np.ndarray:
    """½ Σ_{i : j(i) = j} |max(x_i, θ) − ỹ_i|² / N for each cluster j (one layer, identity frame).

    N is ``n_total`` (default: the number of points), so shares of a joint problem add up to its C_in.
    """
    X = as_points(X, "X")
    targets = as_real_array(targets, "targets", ndim=2)
    theta = as_real_array(theta, "theta", ndim=1)
    lab = as_labels(labels)
    if targets.shape != X.shape or theta.shape != (X.shape[1],) or lab.shape != (X.shape[0],):
        raise ValueError(f"targets must have shape {X.shape}, theta ({X.shape[1]},) and labels ({X.shape[0]},); "
                         f"got {targets.shape}, {theta.shape} and {lab.shape}")
    N = X.shape[0] if n_total is None else check_positive_int(n_total, "n_total", minimum=X.shape[0])
    r = np.maximum(X, theta) - targets
    return np.array([0.5 * np.sum(r[lab == j] * r[lab == j]) / N for j in range(int(lab.max()) + 1)])


@dataclass(frozen=True, repr=False)
class CoordinateRuns:
    """Coordinate-by-coordinate runs (:func:`coordinatewise_solve`), each of shape (M,).

    ``thresholds`` θ_k at the end of run k; ``t_stop`` the time it ended; ``status`` its solver status
    (0 reached ``t_end``; the general backend follows sliding in one layer, where the threshold rests
    on a point from its onset on, so 1, a stop at that onset, no longer occurs); ``n_events`` its number
    of events; ``cost`` the coordinate's share ½ Σ_i w_i (max(x_ik, θ_k) − ỹ_ik)² of C_in at the end.
    """

    thresholds: np.ndarray
    t_stop: np.ndarray
    status: np.ndarray
    n_events: np.ndarray
    cost: np.ndarray

    def __repr__(self) -> str:
        return f"<CoordinateRuns theta = {np.round(self.thresholds, 3).tolist()}, status {self.status.tolist()}>"


def coordinatewise_solve(X, targets, theta0, t_end, *, scale: float = 1.0, point_weights=None,
                         method: str = "general", rtol: float = 1e-10, atol: float = 1e-12) -> CoordinateRuns:
    """Solve a one-layer, identity-frame bias flow one coordinate at a time, from ``theta0`` to ``t_end``.

    With the identity frame, coordinate k of the bias flow involves only the column k of ``X`` and
    ``targets``, so each is a problem of width 1. Solved separately, the general backend
    (``method="general"``, ``solve_ivp`` with event location) follows every coordinate to its own
    rest, with its own event log and stopping time (a threshold that starts to slide rests on its
    point from then on). ``scale`` is λ (common), ``point_weights`` as in :func:`solve`.
    """
    from reluflow.dynamics.solver import solve

    X, targets, theta0 = as_coordinate_problem(X, targets, theta0, "theta0")
    t_end = as_positive_float(t_end, "t_end")
    lam = as_positive_float(scale, "scale")
    M = X.shape[1]
    out = {k: np.empty(M) for k in ("thresholds", "t_stop", "cost")}
    status, n_events = np.empty(M, int), np.empty(M, int)
    for k in range(M):
        net = adapted_network(np.ones((1, 1, 1)), [[lam]], [[theta0[k]]])
        ds = solve(net, X[:, [k]], targets[:, [k]], [t_end], method=method, point_weights=point_weights,
                   rtol=rtol, atol=atol)
        out["thresholds"][k] = float(ds.thresholds.values[-1, 0, 0])
        out["t_stop"][k] = float(ds.time.values[-1])
        out["cost"][k] = float(ds.cost.values[-1])
        status[k], n_events[k] = int(ds.attrs["status"]), int(ds.attrs["n_events"])
    return CoordinateRuns(thresholds=out["thresholds"], t_stop=out["t_stop"], status=status, n_events=n_events,
                          cost=out["cost"])


#: Variables of the phase diagram (``interference_point``) and their long names.
PHASE_VARIABLES = {
    "final_cost": "input-layer cost C_in at t_end",
    "cost_a": "cluster A's share of C_in at t_end",
    "cost_b": "cluster B's share of C_in at t_end",
    "a_collapsed": "1 if every point of A is truncated in both coordinates",
    "b_truncated": "number of points of B truncated at t_end",
    "threshold": "threshold theta_0 at t_end",
    "sliding": "1 if a threshold rests on a point at t_end",
    "equilibrium_residual": "distance of the thresholds from their equilibrium condition",
    "separated": "1 if the data predict no interference",
    "predicted_threshold": "rest point of theta_0 predicted from the data (rest_point)",
    "rest_error": "max over coordinates of |theta(t_rest) - predicted rest point|, t_rest = max(t_end, 100 N)",
    "predicted_b_truncated": "number of points of B truncated at the predicted rest point",
}


def general_case_dataset(scenario, trajectory: MeanTargetTrajectory, alone_costs, phase) -> xr.Dataset:
    """Notebook 05's result: the worked example (``scenario``, its ``trajectory``, the cost of each cluster
    trained alone ``alone_costs`` (2, T)) and the ``phase`` diagram of :func:`reluflow.pipeline.sweep.sweep`."""
    tr = trajectory
    X = scenario.data.points

    v = _var

    return xr.Dataset(
        {
            "thresholds": v(("time", "coordinate"), tr.thresholds, "threshold theta_k(t), worked example"),
            "mean_target": v(("time", "coordinate"), tr.mean_target,
                             "mean target of the truncated points (NaN: none truncated)"),
            "n_truncated": v(("time", "coordinate"), tr.n_truncated, "number of truncated points n_k(t)"),
            "cost": v(("time",), tr.cost, "input-layer cost C_in, A and B together"),
            "cost_alone": v(("cluster", "time"), alone_costs,
                            "cost of each cluster trained alone (weights 1/N of the joint problem)"),
            "points": v(("point", "coordinate"), X, "data points x_i"),
            "labels": v(("point",), scenario.data.labels, "cluster of each point (0 = A, 1 = B)"),
            "class_targets": v(("cluster", "coordinate"), scenario.class_targets, "targets of A and B"),
            **{f"phase_{name}": v(("separation", "target"), phase[name].values, text)
               for name, text in PHASE_VARIABLES.items()},
        },
        coords={"time": tr.t, "coordinate": [0, 1], "point": np.arange(X.shape[0]), "cluster": ["A", "B"],
                "separation": ("separation", phase.separation.values,
                               {"long_name": "separation s of the cluster centres per coordinate", "units": "1"}),
                "target": ("target", phase.target.values,
                           {"long_name": "A's target h in each coordinate", "units": "1"})},
    )

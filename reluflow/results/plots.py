"""The notebooks' published figures, one function each, drawn from the notebooks' results.

Each function takes the arrays, dataclasses or Datasets a notebook computes and returns a
:class:`matplotlib.figure.Figure` made by :func:`reluflow.results.figures.figure` in the shipped
style; the notebook writes it with :func:`~reluflow.results.figures.savefig`. Keeping the drawing
here lets the notebooks show a figure in one line and lets the tests draw each one from small data.

==============================================  =============================================
``threshold_flow_figure``                       figure 02a: bias-flow field, distance, rate
``scale_bias_figure``                           figure 02b: λ² + b² along (4.3) and descent
``threshold_events_figure``                     figure 03b: θ_0(t) and its events, four classes
``collapse_sequence_figure``                    figure 04a: each layer's cone and the images, snapshots
``collapse_rates_figure``                       figure 04b: cost, NC1 per cluster, apex gaps
``adaptedness_drift_figure``                    figure 06b: drift, cost error, count error
``validity_map_figure``                         figure 06c: where the effective equations hold
==============================================  =============================================
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from reluflow.results.figures import CLUSTER_COLORS, draw_cone, figure
from reluflow.validation import (
    as_data_array,
    as_dataset,
    as_labels,
    as_mapping,
    as_points,
    as_real,
    as_real_array,
    as_tolerance,
    check_positive_int,
)

__all__ = ["COORDINATE_COLORS", "threshold_flow_figure", "scale_bias_figure", "threshold_events_figure",
           "collapse_sequence_figure", "collapse_rates_figure", "adaptedness_drift_figure", "validity_map_figure"]

#: Colours of the activation coordinates k = 1, 2 (distinct from the cluster colours).
COORDINATE_COLORS = ["#009E73", "#CC79A7"]


# --------------------------------------------------------------------------- notebook 02


def threshold_flow_figure(example, grid_1, grid_2, field, relaxation):
    """Figure 02a: (a) the bias flow (4.2) in threshold space, (b) |θ_k − θ*_k|, (c) the rate n_k/(λ_k² N).

    ``example`` is a :class:`~reluflow.dynamics.scenarios.OneLayerExample` (points ``U``, labels,
    ``class_targets``, ``scales``), ``field`` (len(grid_2), len(grid_1), 2) the velocity on the grid
    (:func:`~reluflow.dynamics.scenarios.threshold_field`) and ``relaxation`` a
    :class:`~reluflow.dynamics.scenarios.ThresholdRelaxation`.
    """
    U, labels, class_targets, lam = example.U, example.clusters.labels, example.class_targets, example.scales
    t_flow, theta_t, rate_t = relaxation.time, relaxation.thresholds, relaxation.rate
    theta_star, distance, settled = relaxation.equilibrium, relaxation.distance, relaxation.settled
    field = np.asarray(field)
    speed = np.hypot(field[..., 0], field[..., 1])
    fig, axes = figure(2, 2, width=11.5, height=6.4, width_ratios=[1.35, 1])
    gs = axes[0, 0].get_gridspec()
    for a in axes[:, 0]:
        a.remove()
    ax = fig.add_subplot(gs[:, 0])
    ax_d, ax_r = axes[0, 1], axes[1, 1]

    x0, y0 = grid_1[0], grid_2[0]
    ax.add_patch(Rectangle((x0, y0), U[:, 0].min() - x0, U[:, 1].min() - y0, color="0.88", zorder=0))
    n_clusters = len(class_targets)
    for j in range(n_clusters):
        for u in U[labels == j]:
            ax.axvline(u[0], color=CLUSTER_COLORS[j], lw=0.5, alpha=0.45, zorder=1)
            ax.axhline(u[1], color=CLUSTER_COLORS[j], lw=0.5, alpha=0.45, zorder=1)
    norm = LogNorm(vmin=max(float(speed[speed > 0].min()), 1e-3), vmax=float(speed.max()))
    stream = ax.streamplot(grid_1, grid_2, field[..., 0], field[..., 1], color=np.maximum(speed, norm.vmin),
                           cmap="viridis", norm=norm, density=1.0, linewidth=0.8, arrowsize=0.8, zorder=2)
    fig.colorbar(stream.lines, ax=ax, shrink=0.8, label=r"speed $|\dot\theta|$ (a.u. per unit flow time)")
    for j in range(n_clusters):
        ax.scatter(*U[labels == j].T, s=12, color=CLUSTER_COLORS[j], zorder=3)
        ax.plot(*class_targets[j], marker="*", ms=15, color=CLUSTER_COLORS[j], mec="k", ls="none", zorder=5)
    ax.plot(*theta_t.T, color="k", lw=2, zorder=4)
    ax.plot(*theta_t[0], "o", color="k", ms=7, zorder=5)
    ax.plot(*theta_star, "X", color="k", mec="w", ms=11, zorder=5)
    ax.set(xlim=(grid_1[0], grid_1[-1]), ylim=(grid_2[0], grid_2[-1]), aspect="equal",
           xlabel=r"threshold $\theta_1$ and activation coordinate $u_1$ (a.u.)",
           ylabel=r"threshold $\theta_2$ and activation coordinate $u_2$ (a.u.)",
           title=r"(a) bias flow (4.2) in threshold space, one layer, $M = 2$")

    close = distance.max(axis=1) < 1e-8
    t_max = float(t_flow[np.argmax(close)]) if close.any() else float(t_flow[-1])
    for k in range(2):
        c = COORDINATE_COLORS[k]
        ax_d.semilogy(t_flow, distance[:, k], color=c, lw=1.8)
        tk, final_rate = t_flow[settled[k]], rate_t[-1, k]  # n_k(T) / (lambda_k^2 N) after the last event
        if final_rate > 0:  # a coordinate that truncates no point does not move
            tail = np.linspace(tk, t_max, 50)
            ax_d.semilogy(tail, distance[settled[k], k] * np.exp(-(tail - tk) * final_rate), color="k", ls=":",
                          lw=1.2)
        ax_r.step(t_flow, rate_t[:, k], where="post", color=c, lw=1.8)
        ax_r.axhline(1 / lam[k]**2, color=c, ls="--", lw=1)
    ax_d.set(xlim=(0, t_max), ylim=(1e-8, 10), ylabel=r"$|\theta_k(t) - \theta^*_k|$ (a.u.)",
             title=r"(b) distance to the equilibrium $\theta^*$")
    t_rates = max(float(t_flow[settled].max()), float(t_flow[1]))  # the last truncation event (or one step)
    ax_r.set(xlim=(0, min(t_max, 3 * t_rates)), ylim=(0, 1.1 / lam.min()**2),
             xlabel="t (flow time)", ylabel=r"rate $n_k(t)/(\lambda_k^2 N)$ (1/flow time)",
             title="(c) relaxation rate: jumps at each truncation")

    handles = [
        *[Line2D([], [], marker="o", ls="none", color=CLUSTER_COLORS[j], label=rf"cluster {j + 1} points $u_i = R x_i$")
          for j in range(n_clusters)],
        *[Line2D([], [], marker="*", ms=12, mec="k", ls="none", color=CLUSTER_COLORS[j],
                 label=rf"target $R\tilde y_{j + 1}$") for j in range(n_clusters)],
        Line2D([], [], color="0.5", lw=0.8, label=r"truncation boundaries $\theta_k = u_{i,k}$"),
        Patch(color="0.88", label="no point truncated: at rest"),
        Line2D([], [], color="k", lw=2, marker="o", markevery=[0], label=r"trajectory from $\theta(0)$"),
        Line2D([], [], color="k", marker="X", mec="w", ms=10, ls="none", label=r"equilibrium $\theta^*$"),
        Line2D([], [], color=COORDINATE_COLORS[0], lw=1.8, label=r"coordinate $k = 1$"),
        Line2D([], [], color=COORDINATE_COLORS[1], lw=1.8, label=r"coordinate $k = 2$"),
        Line2D([], [], color="k", ls=":", label=r"$e^{-n_k(T)\,t/(\lambda_k^2 N)}$ after the last event"),
        Line2D([], [], color="0.4", ls="--", label=r"maximal rate $1/\lambda_k^2$"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4)
    return fig


def scale_bias_figure(run, descent, relaxation):
    """Figure 02b: (a) the drift of I_k = λ_k² + b_k², (b) the orbits (λ_k, b_k), (c) the thresholds.

    ``run`` is a :class:`~reluflow.dynamics.scenarios.ScaleBiasRun` of (4.3), ``descent`` the
    :class:`~reluflow.dynamics.descent.ScaleBiasDescent` with step ``descent.lr`` from the same start,
    and ``relaxation`` the bias-flow (4.2) trajectory, for comparison in (c).
    """
    rho = np.sqrt(run.invariant0)
    gd_lam, gd_b, gd_time = descent.scales[:, 0], descent.biases[:, 0], descent.time
    gd_drift = np.abs(descent.invariant[:, 0] / rho**2 - 1.0)
    t_end = float(run.time[-1])
    fig, (ax_a, ax_b, ax_c) = figure(1, 3, width=13.5, height=5.2, width_ratios=[1.2, 1, 1.1])
    for k in range(2):
        c = COORDINATE_COLORS[k]
        # the flow's own drift is solve_ivp's error, ~1e-10, whose digits differ between machines: it is shown as
        # the band below its tolerance bound, in which it stays (checked in the notebook; values in the data)
        if not np.all(run.drift[1:, k] <= run.bound[1:, k]):
            raise ValueError(f"run: the drift of unit {k + 1} leaves its tolerance bound; the band would misstate it")
        ax_a.fill_between(run.time[1:], 1e-17, run.bound[1:, k], color=c, alpha=0.15, lw=0)
        ax_a.semilogy(gd_time[1:], gd_drift[1:, k], color=c, lw=1.5, ls="-.")
        ax_a.semilogy(run.time[1:], run.bound[1:, k], color=c, lw=1, ls="--")
        phi = np.linspace(-np.pi / 2, np.pi / 2, 200)
        ax_b.plot(rho[k] * np.cos(phi), rho[k] * np.sin(phi), color=c, lw=0.8, ls="--")
        ax_b.plot(run.scales[:, k], run.biases[:, k], color=c, lw=2.2)
        ax_b.plot(gd_lam[:, k], gd_b[:, k], color=c, lw=1, ls="-.")
        ax_b.plot(run.scales[0, k], run.biases[0, k], "o", color=c, mec="k")
        ax_b.plot(run.scales[-1, k], run.biases[-1, k], "X", color=c, mec="k", ms=9)
        ax_c.plot(run.time, run.thresholds[:, k], color=c, lw=2)
        ax_c.plot(relaxation.time, relaxation.thresholds[:, k], color=c, lw=1.5, ls=":")
        ax_c.axhline(relaxation.equilibrium[k], color="0.5", lw=0.8, ls="--")
    ax_a.set(xlabel="t (flow time)", ylabel=r"$|I_k(t) - I_k(0)|\,/\,I_k(0)$, $I_k = \lambda_k^2 + b_k^2$ (1)",
             xlim=(0, t_end), ylim=(1e-17, 1), title=r"(a) relative drift of $\lambda^2 + b^2$")
    ax_b.set(xlabel=r"scale $\lambda_k$ (a.u.)", ylabel=r"bias $b_k$ (a.u.)", aspect="equal", xlim=(0, None),
             title=r"(b) orbits on the circles $\lambda^2 + b^2 = \rho_k^2$")
    ax_c.set(xlabel="t (flow time)", ylabel=r"threshold $\theta_k = -b_k/\lambda_k$ (a.u.)", xlim=(0, t_end),
             title=r"(c) thresholds: same equilibrium $\theta^*$ (dashed)")
    handles = [
        Line2D([], [], color=COORDINATE_COLORS[0], lw=2, label=r"unit $k = 1$"),
        Line2D([], [], color=COORDINATE_COLORS[1], lw=2, label=r"unit $k = 2$"),
        Line2D([], [], color="0.3", lw=2, label="flow (4.3), scales free (RK45)"),
        Line2D([], [], color="0.3", lw=1.5, ls="-.", label=rf"gradient descent, $\eta = {descent.lr:g}$"),
        Line2D([], [], color="0.3", lw=1, ls="--", label=r"(a) tolerance bound; (b) circle; (c) $\theta^*_k$"),
        Patch(color="0.3", alpha=0.15, lw=0, label="(a) flow (4.3): its drift stays in this band"),
        Line2D([], [], color="0.3", lw=1.5, ls=":", label="(c) bias flow (4.2), scales frozen"),
        Line2D([], [], color="0.6", marker="o", mec="k", ls="none", label="start"),
        Line2D([], [], color="0.6", marker="X", mec="k", ms=9, ls="none", label="end of the flow"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4)
    return fig


# --------------------------------------------------------------------------- notebook 03


def threshold_events_figure(runs, u, targets, titles, *, coordinate: int = 0):
    """Figure 03b: θ_k(t) of one coordinate in each run, with its events at the crossed data values.

    ``runs`` maps a name to a solution of :func:`~reluflow.dynamics.solver.solve` (one layer), ``u``
    (N, M) are the activation coordinates of the data, ``targets`` maps a name to the frame target
    ŷ_k drawn as a dashed line (or None) and ``titles`` a name to its panel title.
    """
    as_mapping(runs, "runs")
    if not runs:
        raise ValueError("runs must map at least one name to a solution; got an empty mapping")
    for name, ds in runs.items():
        as_dataset(ds, f"runs[{name!r}]", ("time", "thresholds", "requested", "event_coordinate", "event_point",
                                          "event_kind", "event_time"))
    u = as_points(u, "u")
    k0 = check_positive_int(coordinate, "coordinate", minimum=0)
    if k0 >= u.shape[1]:
        raise ValueError(f"coordinate must be a coordinate of u, in 0..{u.shape[1] - 1}; got {k0}")
    for name, ds in runs.items():
        if ds.sizes.get("coordinate") != u.shape[1] or (ds.event_point.size and ds.event_point.values.max() >= len(u)):
            raise ValueError(f"u must have one row per point and one column per coordinate of runs[{name!r}]; got "
                             f"shape {u.shape}")
    as_mapping(targets, "targets", keys=list(runs))
    as_mapping(titles, "titles", keys=list(runs))
    for name in runs:
        if targets[name] is not None:
            as_real(targets[name], f"targets[{name!r}]")
        if not isinstance(titles[name], str):
            raise TypeError(f"titles[{name!r}] must be a str; got {type(titles[name]).__name__}")
    t_end = max(float(ds.time.values[-1]) for ds in runs.values())
    fig, axes = figure(1, len(runs), width=12.5, height=3.6, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, ds) in zip(axes, runs.items()):
        ax.hlines(np.sort(u[:, k0]), 0, t_end, color="0.85", lw=0.6)
        sel = ds.requested.values == 1
        ax.plot(ds.time.values[sel], ds.thresholds.isel(layer=0, coordinate=k0).values[sel], color="k",
                label=rf"$\theta_{k0}(t)$")
        evk = ds.event_coordinate.values == k0
        pts = ds.event_point.values[evk]
        colors = [CLUSTER_COLORS[1] if kd == "truncated" else CLUSTER_COLORS[2] for kd in ds.event_kind.values[evk]]
        ax.scatter(ds.event_time.values[evk], u[pts, k0], s=12, c=colors, zorder=3)
        if targets[name] is not None:
            ax.axhline(targets[name], color=CLUSTER_COLORS[0], ls="--", lw=1, label=rf"target $\hat y_{k0}$")
        ax.set(xscale="symlog", xlim=(0, t_end), xlabel="t (flow time, symlog)", title=titles[name])
    axes[0].set_ylabel(rf"threshold $\theta_{k0}$ (a.u.); grey: data $u_{{i,{k0}}}$")
    handles = [Line2D([], [], color="k", label=rf"threshold $\theta_{k0}(t)$"),
               Line2D([], [], color=CLUSTER_COLORS[0], ls="--", label=rf"target $\hat y_{k0}$"),
               Line2D([], [], marker="o", ls="none", color=CLUSTER_COLORS[1], label="truncation event"),
               Line2D([], [], marker="o", ls="none", color=CLUSTER_COLORS[2], label="release event"),
               Line2D([], [], color="0.85", label=rf"data values $u_{{i,{k0}}}$")]
    fig.legend(handles=handles, loc="outside lower center", ncols=5)
    return fig


# --------------------------------------------------------------------------- notebook 04


def collapse_sequence_figure(scenario, snapshot_time, snapshot_thresholds, snapshot_images):
    """Figure 04a: one panel per snapshot time, with the cone K_ℓ(t) = {x : R_ℓ x ≥ θ_ℓ(t)} of every layer, the
    data, the truncated images x^(τ,L)(t) of each cluster and the cluster targets ỹ_j.

    Parameters
    ----------
    scenario : SeparatedClusters
        An S4 scenario in the plane (:func:`~reluflow.dynamics.solutions.separated_clusters` with M = 2): its
        ``data`` (points (N, 2), labels), ``net.frames`` (L, 2, 2) and ``class_targets`` (Q, 2).
    snapshot_time : array_like, shape (S,)
        The flow times of the snapshots (the panel titles).
    snapshot_thresholds : array_like, shape (S, L, 2)
        The thresholds θ_ℓ(t) at those times (the apexes of the cones).
    snapshot_images : array_like, shape (S, N, 2)
        The images of the points at those times
        (:func:`~reluflow.dynamics.solutions.truncated_images` of the thresholds).

    Returns
    -------
    matplotlib.figure.Figure
        The panels side by side, sharing their axes, with one legend on the right.
    """
    try:
        data, frames, class_targets = scenario.data, scenario.net.frames, scenario.class_targets
        X, lab = data.points, data.labels
    except AttributeError:
        raise TypeError(f"scenario must be a SeparatedClusters (data, net, class_targets); got "
                        f"{type(scenario).__name__}") from None
    X = as_points(X, "scenario.data.points", dim=2)
    lab = as_labels(lab, "scenario.data.labels")
    frames = as_real_array(frames, "scenario.net.frames", ndim=3)
    targets = as_real_array(class_targets, "scenario.class_targets", ndim=2)
    L, Q, N = frames.shape[0], targets.shape[0], X.shape[0]
    if frames.shape[1:] != (2, 2) or targets.shape[1] != 2 or lab.shape != (N,) or lab.max() >= Q:
        raise ValueError(f"scenario must lie in the plane, with (L, 2, 2) frames, (Q, 2) class targets and N labels "
                         f"in [0, Q); got frames {frames.shape}, class targets {targets.shape}, points {X.shape}, "
                         f"labels {lab.shape} up to {int(lab.max())}")
    t = as_real_array(snapshot_time, "snapshot_time", ndim=1)
    S = t.size
    if S == 0:
        raise ValueError("snapshot_time must hold at least one time; got none")
    theta = as_real_array(snapshot_thresholds, "snapshot_thresholds", ndim=3)
    if theta.shape != (S, L, 2):
        raise ValueError(f"snapshot_thresholds must have shape (snapshots, layers, 2) = ({S}, {L}, 2); got "
                         f"{theta.shape}")
    images = as_real_array(snapshot_images, "snapshot_images", ndim=3)
    if images.shape != (S, N, 2):
        raise ValueError(f"snapshot_images must have shape (snapshots, points, 2) = ({S}, {N}, 2); got "
                         f"{images.shape}")
    lo, hi = X.min() - 0.8, X.max() + 0.8
    lim = max(abs(lo), abs(hi)) + 1
    fig, axes = figure(1, S, width=2.55 * S + 1.9, height=3.5, sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, st, sth, img in zip(axes, t, theta, images):
        cones = [draw_cone(ax, frames[ell], sth[ell], lim=lim, color=CLUSTER_COLORS[ell],
                           label=f"cone $K_{ell + 1}(t)$ of layer {ell + 1}") for ell in range(L)]
        ax.scatter(*X.T, s=5, color="0.75", zorder=2)
        pts = [ax.scatter(*img[lab == j].T, s=9, color=CLUSTER_COLORS[j], zorder=3, label=f"cluster {j + 1} images")
               for j in range(Q)]
        stars = [ax.plot(*targets[j], marker="*", ms=12, color=CLUSTER_COLORS[j], mec="k", ls="none", zorder=4,
                         label=f"target of cluster {j + 1}")[0] for j in range(Q)]
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel="$x_1$ (a.u.)", title=f"t = {st:.3g}")
    axes[0].set_ylabel("$x_2$ (a.u.)")
    grey = Line2D([], [], marker="o", ls="none", color="0.75", label="data $x_i$")
    fig.legend(handles=[*cones, grey, *pts, *stars], loc="outside right center")
    return fig


def collapse_rates_figure(summaries, *, styles=None):
    """Figure 04b: (a) the cost and its asymptotic rate, (b) within-class variability per cluster, (c) |θ − θ*|.

    ``summaries`` maps Q (the number of clusters, = M) to a
    :class:`~reluflow.dynamics.scenarios.SeparatedCollapse`; ``styles`` maps Q to a line style
    (default: solid, dashed, dotted, …).
    """
    styles = styles or dict(zip(summaries, ["-", "--", ":", "-."]))
    fig, axes = figure(1, 3, width=13.0, height=3.9)
    for Q, s in summaries.items():
        t = s.t
        axes[0].plot(t, s.cost, styles[Q], color="k", label=f"C(t), Q = M = {Q}")
        j0 = np.argmax(s.after)
        axes[0].plot(t[s.after], s.cost[j0] * np.exp(-2 * s.maximal_rate.min() * (t[s.after] - t[j0])), styles[Q],
                     color=CLUSTER_COLORS[4], lw=1, label=f"slope 2 min N_j/(λ²N), Q = {Q}")
        for j in range(Q):
            v = np.where(s.per_cluster[:, j] > 1e-26, s.per_cluster[:, j], np.nan)  # below: round-off of one point
            axes[1].plot(t, v, styles[Q], color=CLUSTER_COLORS[j], label=f"cluster {j + 1}, Q = {Q}")
            axes[1].axvline(s.collapse_time[j], color=CLUSTER_COLORS[j], ls=styles[Q], lw=0.7)
            for k in range(Q):
                g = np.where(s.gaps[:, j, k] > 0, s.gaps[:, j, k], np.nan)
                axes[2].plot(t, g, styles[Q], color=CLUSTER_COLORS[j], lw=1,
                             label=f"layer {j + 1}, Q = {Q}" if k == 0 else None)
    axes[0].set(yscale="log", ylim=(1e-30, None), xlabel="t (flow time)", ylabel="cost C_in (a.u.)",
                title="(a) cost → 0\n(thin: predicted asymptotic rate)")
    axes[1].set(yscale="log", xlim=(0, 1.3 * max(s.collapse_time.max() for s in summaries.values())),
                xlabel="t (flow time)", ylabel=r"within-class variability tr $\Sigma_{W,j}$ (a.u.)",
                title="(b) NC1: each cluster → one point\n(vertical lines: predicted $T_j$)")
    axes[2].set(yscale="log", ylim=(1e-14, None), xlabel="t (flow time)",
                ylabel=r"$|\theta_{\ell,k} - \theta^*_{\ell,k}|$ (a.u.)",
                title="(c) apex → target\n(every layer and coordinate)")
    for ax in axes:
        ax.legend(fontsize=7, loc="lower left")
    return fig


# --------------------------------------------------------------------------- notebook 06


def adaptedness_drift_figure(drift, *, holds_tolerance: float, weight_scale: float = 1.0):
    """Figure 06b: per depth, non-adaptedness, cost prediction error and truncation-count error over time.

    ``drift`` is :func:`reluflow.training.experiments.validity_map`'s Dataset (dimensions ``depth``,
    ``weight_scale``, ``weight_lr_ratio``, ``time``); one line per weight-to-bias step ratio ρ, at
    ``weight_scale``; the dotted line marks ``holds_tolerance``.
    """
    as_dataset(drift, "drift", ("adaptedness", "cost_error", "count_error", "depth", "weight_scale",
                                "weight_lr_ratio", "time"))
    holds_tolerance = as_tolerance(holds_tolerance, "holds_tolerance")
    weight_scale = as_real(weight_scale, "weight_scale")
    if weight_scale not in drift.weight_scale.values:
        raise ValueError(f"weight_scale must be one of drift's weight scales {drift.weight_scale.values.tolist()}; "
                         f"got {weight_scale!r}")
    depths, ratios = drift.depth.values.tolist(), drift.weight_lr_ratio.values.tolist()
    fig, axes = figure(len(depths), 3, width=12.0, height=3.2 * len(depths), sharex=True)
    axes = np.asarray(axes).reshape(len(depths), 3)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, len(ratios)))
    for row, d in zip(axes, depths):
        sel = drift.sel(depth=d, weight_scale=weight_scale)
        for r, color in zip(ratios, colors):
            s = sel.sel(weight_lr_ratio=r)
            for ax, var in zip(row, ["adaptedness", "cost_error", "count_error"]):
                ax.plot(s.time, s[var], color=color, label=f"$\\rho = {r:g}$")
        row[0].set(ylabel="non-adaptedness (1)", title=f"L = {d}: drift from the adapted form")
        row[1].axhline(holds_tolerance, color="k", ls=":", lw=1, label="tolerance")
        row[1].set(ylabel=r"$|C_{GD} - C_{\rm eff}|/C(0)$ (1)", title=f"L = {d}: cost prediction error")
        row[2].set(ylabel=r"$\max_{\ell,k}|n_{GD} - n_{\rm eff}|/N$ (1)", title=f"L = {d}: truncation-count error")
    for ax in axes[-1]:
        ax.set_xlabel("t (flow time)")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center")
    return fig


def validity_map_figure(map_error, *, holds_tolerance: float):
    """Figure 06c: per depth, the largest relative cost error over (ρ, s), with ✓ where it is within tolerance.

    ``map_error`` (``depth``, ``weight_scale``, ``weight_lr_ratio``) is the second value of
    :func:`reluflow.training.experiments.holds_map`; NaN marks a run that stopped early.
    """
    as_data_array(map_error, "map_error", ("depth", "weight_scale", "weight_lr_ratio"))
    as_real_array(map_error.values, "map_error", finite=False)
    holds_tolerance = as_tolerance(holds_tolerance, "holds_tolerance")
    depths = map_error.depth.values.tolist()
    scales, ratios = map_error.weight_scale.values.tolist(), map_error.weight_lr_ratio.values.tolist()
    fig, axes = figure(1, len(depths), width=5.2 * len(depths) + 1.0, height=4.0)
    axes = np.asarray(axes).reshape(1, len(depths))
    norm = LogNorm(vmin=1e-3, vmax=1.0)
    for ax, d in zip(axes[0], depths):
        m = map_error.sel(depth=d).transpose("weight_scale", "weight_lr_ratio").values
        im = ax.imshow(np.clip(np.nan_to_num(m, nan=1.0), 1e-3, 1.0), origin="lower", cmap="viridis_r", norm=norm,
                       aspect="auto")
        for i in range(len(scales)):
            for j in range(len(ratios)):
                v = m[i, j]
                text = "stopped" if not np.isfinite(v) else (f"{v:.2g}" + (" ✓" if v <= holds_tolerance else ""))
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                        color="k" if np.isfinite(v) and v <= 0.03 else "w")
        ax.set(xticks=range(len(ratios)), xticklabels=[f"{r:g}" for r in ratios],
               yticks=range(len(scales)), yticklabels=[f"{s:g}" for s in scales],
               xlabel=r"weight-to-bias step ratio $\rho$ (1)", ylabel="initial weight scale $s$ (1)",
               title=f"L = {d}: max relative cost error (✓: holds)")
        ax.grid(False)
    fig.colorbar(im, ax=axes[0].tolist(), label=r"$\max_t |C_{GD} - C_{\rm eff}|/C(0)$ (1)")
    return fig

"""The claims A3–A6 over ensembles of random configurations (notebook 08).

A *configuration* is one random problem: an adapted network (Haar frames, random scales and thresholds), Q
clusters of points (random centres, radii and separation) and random class targets in input space. Configuration
i of root seed s draws everything from child i of ``numpy.random.SeedSequence(s).spawn(n)``, as
:func:`reluflow.pipeline.sweep.sweep` hands it out, so :func:`configuration` rebuilds any member alone.

- one configuration from its SeedSequence                              → :func:`draw_configuration`,
  :func:`configuration`
- its exact bias flow (4.2) through every event                         → :func:`solve_configuration`
- A3, the relaxation rate ρ_{ℓ,k} = −∂θ̇_{ℓ,k}/∂θ_{ℓ,k} against the count n_{ℓ,k}  → :func:`rate_growth`
- A4, the jump of the shallower flows θ̇^(ℓ'<ℓ) at an event in layer ℓ ≥ 2 (the Π products)
  → :func:`event_flow_jumps`, :func:`deep_coupling`
- A5, collapse of every cluster to one point and zero loss              → :func:`collapse_outcome`
- A6 (truncation regime), the residual split between events             → :func:`range_decay`
- all of it for one configuration, as a dict of numbers for ``sweep``   → :func:`analyse_configuration`
- the ensemble as an xarray Dataset over ``configuration``              → :func:`claims_ensemble`
- A6 (over-parametrised), the classical bound on random wide networks  → :func:`overparametrised_ensemble`
- hold rates with Wilson 95 % intervals                                  → :func:`wilson_interval`, :func:`hold_rate`
- machinery checks: exact against the general ODE solver, the flow against finite differences of C_in,
  the rate against finite differences of the flow, collapse in the plain forward pass
  → :func:`solver_agreement`,
  :func:`flow_fd_error`, :func:`rate_fd_error`, :func:`forward_collapse_spread`

Every statement is tested on configurations whose exact solve finished (status 0); the others are counted
as "solver did not finish", never as holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import xarray as xr

from reluflow.dynamics.solutions import truncated_images, within_class_variability
from reluflow.dynamics.solver import solve
from reluflow.pipeline.sweep import sweep
from reluflow.results.intervals import wilson_interval
from reluflow.theory.adapted import AdaptedNetwork, random_adapted_network
from reluflow.theory.costs import input_cost, targets_by_label
from reluflow.theory.data import clustered_data
from reluflow.theory.flows import adapted_forward, bias_flow, threshold_gradient_arrays
from reluflow.theory.network import forward, layer_parameters
from reluflow.training.spectral import spectral_trajectory
from reluflow.validation import as_dataset, as_real, check_positive_int

__all__ = [
    "Configuration",
    "DRAW_DEFAULTS",
    "draw_configuration",
    "configuration",
    "solve_configuration",
    "rate_growth",
    "last_layer_rate_error",
    "event_flow_jumps",
    "deep_coupling",
    "collapse_outcome",
    "range_decay",
    "analyse_configuration",
    "claims_ensemble",
    "overparametrised_ensemble",
    "overparametrised_run",
    "wilson_interval",
    "hold_rate",
    "solver_agreement",
    "flow_fd_error",
    "rate_fd_error",
    "forward_collapse_spread",
    "check_sample",
    "STATEMENTS",
    "hold_rate_table",
    "sample_checks",
    "VARIABLES",
    "WIDE_VARIABLES",
]

#: The ranges configurations are drawn from (see :func:`draw_configuration`).
DRAW_DEFAULTS = {"max_width": 8, "max_depth": 4, "max_clusters": 5, "max_units": 8, "max_per_cluster": 3}
#: Relative tolerance of "does not decrease" / "is unchanged" comparisons (far above round-off, ~1e-15).
TOL = 1e-9
#: Half-width ε of the threshold offsets that put an event's point on either side of its threshold (A4).
EVENT_OFFSET = 1e-10
#: A shallower flow "changes" at an event when its jump exceeds this (the jumps are O(|r|/N), the
#: continuous part of the change over ±ε is O(ε)).
JUMP_TOL = 1e-7


@dataclass(frozen=True, repr=False)
class Configuration:
    """One random problem: ``net``, points ``X`` (N, M), ``labels`` (N,), ``targets`` (N, M) and how it was drawn."""

    net: AdaptedNetwork
    X: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    parameters: dict

    def __repr__(self) -> str:
        p = self.parameters
        return (f"<Configuration L={p['depth']} M={p['width']} Q={p['clusters']} N={p['points']} "
                f"separation={p['separation']:.3g} radius={p['radius']:.3g} target_scale={p['target_scale']:.3g}>")


def _check_draw(max_width, max_depth, max_clusters, max_units, max_per_cluster):
    out = {name: check_positive_int(v, name) for name, v in
           (("max_width", max_width), ("max_depth", max_depth), ("max_clusters", max_clusters),
            ("max_units", max_units), ("max_per_cluster", max_per_cluster))}
    if out["max_per_cluster"] < 2:
        raise ValueError(f"max_per_cluster must be >= 2 (a one-point cluster cannot collapse); got {max_per_cluster}")
    if out["max_units"] < out["max_depth"]:
        raise ValueError(f"max_units must be >= max_depth (every depth needs width >= 1); got max_units={max_units}, "
                         f"max_depth={max_depth}")
    return out


def draw_configuration(rng_seed, *, max_width: int = 8, max_depth: int = 4, max_clusters: int = 5,
                       max_units: int = 8, max_per_cluster: int = 3) -> Configuration:
    """One random configuration from a SeedSequence (or int, or Generator).

    Depth L uniform in 1..max_depth; width M uniform in 1..min(max_width, max_units // L) (so L·M ≤ max_units
    keeps the deep exact solves cheap); Q uniform in 1..max_clusters clusters of n points each, n uniform in
    2..max_per_cluster; Haar frames, scales uniform in [0.7, 1.4], thresholds N(0, 1)
    (:func:`reluflow.random_adapted_network`); centres N(0, s²) with separation s uniform in [0.5, 3]; radii
    uniform in [0.1, 0.8] per cluster; class targets N(0, a²) with a uniform in [0.5, 2.5].
    """
    o = _check_draw(max_width, max_depth, max_clusters, max_units, max_per_cluster)
    rng = np.random.default_rng(rng_seed)
    L = int(rng.integers(1, o["max_depth"] + 1))
    M = int(rng.integers(1, min(o["max_width"], o["max_units"] // L) + 1))
    Q = int(rng.integers(1, o["max_clusters"] + 1))
    n = int(rng.integers(2, o["max_per_cluster"] + 1))
    net = random_adapted_network(M, L, seed=rng, scale_range=(0.7, 1.4))
    separation = float(rng.uniform(0.5, 3.0))
    radii = rng.uniform(0.1, 0.8, size=Q)
    data = clustered_data(separation * rng.standard_normal((Q, M)), radii, n, seed=rng)
    target_scale = float(rng.uniform(0.5, 2.5))
    class_targets = target_scale * rng.standard_normal((Q, M))
    params = {"depth": L, "width": M, "clusters": Q, "per_cluster": n, "points": Q * n, "separation": separation,
              "radius": float(radii.max()), "target_scale": target_scale}
    return Configuration(net, data.points, data.labels, targets_by_label(class_targets, data.labels), params)


def configuration(seed: int, index: int, **draw) -> Configuration:
    """Configuration ``index`` of root ``seed``: :func:`draw_configuration` of child ``index`` of SeedSequence(seed)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int; got {seed!r}")
    index = check_positive_int(index, "index", minimum=0)
    return draw_configuration(np.random.SeedSequence(int(seed), spawn_key=(index,)), **draw)


def solve_configuration(cfg: Configuration, *, t_end: float = 400.0, n_times: int = 20,
                        max_events: int = 200, method: str = "exact", **options) -> xr.Dataset:
    """The bias flow (4.2) of ``cfg`` from t = 0 to ``t_end`` (``n_times`` geometric times from t_end/1000), every
    event time included; ``max_events`` caps the work (status -1 beyond it)."""
    if not isinstance(cfg, Configuration):
        raise TypeError(f"cfg must be a Configuration; got {type(cfg).__name__}")
    t_end = as_real(t_end, "t_end", minimum=0.0, strict=True)
    n_times = check_positive_int(n_times, "n_times", minimum=2)
    times = np.geomspace(t_end / 1000.0, t_end, n_times)
    return solve(cfg.net, cfg.X, cfg.targets, times, method=method, max_events=max_events, **options)


def _solution(sol):
    return as_dataset(sol, "sol", ("thresholds", "n_truncated", "rate", "sliding"))


# --------------------------------------------------------------------------------------------------- A3


def rate_growth(sol: xr.Dataset) -> dict:
    """A3 along one exact solution: does ρ_{ℓ,k} = −∂θ̇_{ℓ,k}/∂θ_{ℓ,k} (the solver's ``rate``) grow with n_{ℓ,k}?

    Two statements, over every threshold coordinate (ℓ, k) and every recorded time (event times included, where
    ``rate`` and ``n_truncated`` are right limits):

    - ``own``: at each step between consecutive rows where n_{ℓ,k} increases (a point is truncated in (ℓ, k)),
      ρ_{ℓ,k} does not decrease: ρ(after) ≥ ρ(before) − TOL·ρ_max.
    - ``monotone``: ρ_{ℓ,k} is a nondecreasing function of n_{ℓ,k}: ρ(t) ≥ ρ(s) − TOL·ρ_max whenever
      n(t) > n(s) (whatever the order of s and t). For L = 1, ρ = n/(λ²N) and both hold.

    Returns ``own_steps``, ``own_worst`` (the smallest (ρ(after) − ρ(before))/ρ_max), ``monotone_worst`` (the
    smallest min ρ(n') − max ρ(n) over n' > n, over ρ_max; +inf if no pair) and ``scale`` = ρ_max.
    """
    sol = _solution(sol)
    rate = sol.rate.values
    n = sol.n_truncated.values
    scale = max(float(np.abs(rate).max()), 1e-300)
    up = n[1:] > n[:-1]
    d = (rate[1:] - rate[:-1]) / scale
    own_worst = float(d[up].min()) if up.any() else np.inf
    T, L, M = rate.shape
    nmax = int(n.max()) + 1
    flat_n = n.reshape(T, L * M)
    flat_r = rate.reshape(T, L * M) / scale
    cols = np.broadcast_to(np.arange(L * M), (T, L * M))
    hi = np.full((L * M, nmax), -np.inf)
    lo = np.full((L * M, nmax), np.inf)
    np.maximum.at(hi, (cols, flat_n), flat_r)
    np.minimum.at(lo, (cols, flat_n), flat_r)
    # best[c, m] = max ρ over counts < m ; worst gap = min over m of (lo[m] − best[m])
    best = np.maximum.accumulate(np.concatenate([np.full((L * M, 1), -np.inf), hi[:, :-1]], axis=1), axis=1)
    gaps = lo - best
    finite = np.isfinite(gaps)
    monotone_worst = float(gaps[finite].min()) if finite.any() else np.inf
    return {"own_steps": int(up.sum()), "own_worst": own_worst, "monotone_worst": monotone_worst, "scale": scale}


def last_layer_rate_error(sol: xr.Dataset, scales_last, N: int) -> float:
    """max |ρ_{L,k} − n_{L,k}/(λ_{L,k}² N)| / max ρ along ``sol``: the closed form of the last layer's rate."""
    sol = _solution(sol)
    rate = sol.rate.values[:, -1]
    want = sol.n_truncated.values[:, -1] / (np.asarray(scales_last, float) ** 2 * N)
    return float(np.abs(rate - want).max() / max(float(np.abs(sol.rate.values).max()), 1e-300))


# --------------------------------------------------------------------------------------------------- A4


def _net_with(net, theta):
    return AdaptedNetwork._unchecked(net.frames, net.scales, theta)


def event_flow_jumps(cfg: Configuration, sol: xr.Dataset, *, offset: float = EVENT_OFFSET) -> dict:
    """A4: at every truncation or untruncation event in a layer ℓ ≥ 2, the jump of the shallower flows θ̇^(ℓ'<ℓ).

    At the event state θ(t_e) the event's point i sits on its threshold, u = (R_ℓ x_i^(τ,ℓ−1))_k = θ_{ℓ,k}. The
    right-hand side is a sum over points; point i's term (:func:`reluflow.theory.flows.bias_flow` of point i alone,
    weight 1/N) is evaluated with θ_{ℓ,k} = u − ε (i untruncated in (ℓ, k)) and u + ε (truncated), and ``jump`` =
    max |θ̇^(ℓ')(u + ε) − θ̇^(ℓ')(u − ε)| over ℓ' < ℓ. (The other points' terms are continuous in θ, except those of
    points tied on a threshold, which jump with their own sliding, not with this event.) By (4.1) the jump comes
    only through Π_ℓ of point i, so it can be nonzero only if i is truncated in some coordinate of a layer ℓ' < ℓ
    (``shallower_truncated``). Where point i rests on other thresholds too (other rows of the same instant, a
    threshold it slides on), its side there is the rounding of u − θ ≈ 0, which differed between BLAS kernels
    (issue 9): those thresholds are first raised by ε, so that such ties count as truncated, the solver's
    convention (u ≤ θ; sliding points are reported truncated); that changes the flows by O(ε), far below JUMP_TOL.

    Returns arrays over those events: ``time``, ``layer`` (1-based), ``jump``, ``shallower_truncated``.
    """
    sol = _solution(sol)
    offset = as_real(offset, "offset", minimum=0.0, strict=True)
    kinds = sol.event_kind.values.astype(str)
    layer = sol.event_layer.values
    keep = (layer >= 2) & np.isin(kinds, ("truncated", "untruncated")) if kinds.size else np.zeros(0, bool)
    times = sol.time.values
    R = cfg.net.frames
    w = np.array([1.0 / cfg.X.shape[0]])
    out = {"time": [], "layer": [], "jump": [], "shallower_truncated": []}
    for e in np.flatnonzero(keep):
        t_e, ell, k, i = (float(sol.event_time[e]), int(layer[e]), int(sol.event_coordinate[e]),
                          int(sol.event_point[e]))
        row = int(np.argmin(np.abs(times - t_e)))
        theta = _ties_truncated(R, sol.thresholds.values[row], cfg.X[i], (ell - 1, k), offset)
        _, patterns, acts = adapted_forward(R, theta, cfg.X[i:i + 1], keep_activations=True)
        u = float(acts[ell - 1][0, k])
        flows = []
        for side in (-offset, offset):  # point i's own term of the sum over points, at weight 1/N
            th = theta.copy()
            th[ell - 1, k] = u + side
            g = threshold_gradient_arrays(R, th, cfg.X[i:i + 1], cfg.targets[i:i + 1], w)  # (4.1), unvalidated
            flows.append((-g / cfg.net.scales**2)[: ell - 1])
        out["time"].append(t_e)
        out["layer"].append(ell)
        out["jump"].append(float(np.abs(flows[1] - flows[0]).max()))
        out["shallower_truncated"].append(bool(np.any([p[0].any() for p in patterns[: ell - 1]])))
    return {key: np.asarray(v, dtype=float if key in ("time", "jump") else (int if key == "layer" else bool))
            for key, v in out.items()}


def _ties_truncated(R, theta, x, skip, offset):
    """θ with every threshold that point ``x`` rests on (|u − θ| ≤ EDGE_RTOL (1 + |θ|), layer by layer, the
    coordinate ``skip`` = (ℓ, k) excepted) raised by ``offset``: its ties count as truncated."""
    theta = np.array(theta, float)
    for ell in range(theta.shape[0]):
        _, _, acts = adapted_forward(R[: ell + 1], theta[: ell + 1], x[None, :], keep_activations=True)
        tied = np.abs(acts[ell][0] - theta[ell]) <= EDGE_RTOL * (1.0 + np.abs(theta[ell]))
        if ell == skip[0]:
            tied[skip[1]] = False
        theta[ell, tied] += offset
    return theta


def deep_coupling(cfg: Configuration, sol: xr.Dataset) -> dict:
    """A4 for one configuration: how many layer-≥2 events there are, how many change a shallower flow by more than
    ``JUMP_TOL`` (``coupled``), the largest jump, and the largest jump among events whose point is not truncated in
    any shallower layer (``uncoupled_max``, 0 by (4.1))."""
    j = event_flow_jumps(cfg, sol)
    coupled = j["jump"] > JUMP_TOL
    free = ~j["shallower_truncated"]
    return {"deep_events": int(j["jump"].size), "coupled_events": int(coupled.sum()),
            "eligible_events": int(j["shallower_truncated"].sum()),
            "max_jump": float(j["jump"].max(initial=0.0)),
            "uncoupled_max": float(j["jump"][free].max(initial=0.0))}


# --------------------------------------------------------------------------------------------------- A5


#: :func:`collapse_outcome`: a point whose activation coordinate u lies within TIE_RTOL (1 + max(|u|, |θ|)) above
#: the threshold θ is on it (a tie, counted as truncated): the solver's thresholds and the forward pass agree to
#: ~1e-12, data are O(1) apart.
TIE_RTOL = 1e-9


def collapse_outcome(cfg: Configuration, sol: xr.Dataset) -> dict:
    """A5 at the last time T of ``sol``: is every cluster one point, and is the loss zero?

    - ``clusters_collapsed``: the clusters j for which some layer truncates every coordinate of every point of j
      at θ(T) (ties count as truncated, and a tie is u ≤ θ + TIE_RTOL (1 + max(|u|, |θ|)), so that round-off at a
      threshold that rests on a collapse point does not decide it); such a cluster is sent to that layer's apex.
    - ``variability_ratio``: tr Σ_W(T) / tr Σ_W(0) of the images x^(τ,L) (within-class variability).
    - ``cost_ratio``: C(T)/C(0).
    - ``reason``: 0 zero loss and every cluster collapsed (C(T) ≤ 1e-8 C(0), variability ratio ≤ 1e-8);
      1 a cluster is not collapsed and Q > L; 2 a cluster is not collapsed and Q ≤ L; 3 every cluster collapsed
      but the loss is not zero (clusters share a collapse point or a threshold stopped short of a target).
    """
    sol = _solution(sol)
    theta = sol.thresholds.values[-1]
    _, _, u = adapted_forward(cfg.net.frames, theta, cfg.X, keep_activations=True)
    # a point within round-off of a threshold is a tie, and ties count as truncated: at the end of a collapse the
    # thresholds rest on the apex they sent the cluster to, so u - θ is a few ulps of either sign (which sign
    # depends on the BLAS kernels; the exact test made this count differ between machines)
    full = np.stack([(u_l <= theta[l] + TIE_RTOL * (1.0 + np.maximum(np.abs(u_l), np.abs(theta[l])))).all(axis=1)
                     for l, u_l in enumerate(u)])  # (L, N): every coordinate of layer ℓ truncated
    Q = int(cfg.labels.max()) + 1
    onehot = cfg.labels[None, :] == np.arange(Q)[:, None]  # (Q, N)
    collapsed = np.array([np.any(np.all(full[:, onehot[j]], axis=1)) for j in range(Q)])
    images = truncated_images(cfg.net.frames, np.stack([sol.thresholds.values[0], theta]), cfg.X)
    var = within_class_variability(images, cfg.labels)
    cost = sol.cost.values
    cost_ratio = float(cost[-1] / cost[0]) if cost[0] > 0 else 0.0
    var_ratio = float(var[1] / var[0]) if var[0] > 0 else 0.0
    holds = cost_ratio <= 1e-8 and var_ratio <= 1e-8
    if holds:
        reason = 0
    elif not collapsed.all():
        reason = 1 if Q > cfg.net.depth else 2
    else:
        reason = 3
    return {"clusters_collapsed": int(collapsed.sum()), "all_collapsed": bool(collapsed.all()),
            "variability_ratio": var_ratio, "cost_ratio": cost_ratio, "reason": reason}


def forward_collapse_spread(cfg: Configuration, theta) -> float:
    """The largest spread max_i |x_i^(L) − mean_j x^(L)| of the last hidden layer of the *plain* ReLU network
    (:func:`reluflow.forward` of the layer parameters of (Λ_ℓ R_ℓ, −Λ_ℓ θ_ℓ)) over the clusters that
    :func:`collapse_outcome` calls collapsed at thresholds ``theta``; 0 if none is."""
    theta = np.asarray(theta, float)
    net = _net_with(cfg.net, theta)
    _, patterns, _ = adapted_forward(net.frames, theta, cfg.X)
    full = np.stack([p.all(axis=1) for p in patterns])
    weights, biases = layer_parameters(*net.cumulative_parameters())
    hidden = forward(weights, biases, cfg.X)[-1]
    spread = 0.0
    for j in range(int(cfg.labels.max()) + 1):
        members = cfg.labels == j
        if np.any(np.all(full[:, members], axis=1)):
            h = hidden[members]
            spread = max(spread, float(np.abs(h - h.mean(axis=0)).max()))
    return spread


# --------------------------------------------------------------------------------------------------- A6


def range_decay(cfg: Configuration, sol: xr.Dataset, *, floor: float = 1e-4, per_pair: bool = False) -> dict:
    """A6 in the truncation regime along one exact solution ``sol`` (every event time a row).

    For the bias flow, ṙ = −(1/N) D Dᵀ r with r = x^(τ,L) − ỹ and D = ∂x^(τ,L)/∂b^(ℓ) fixed while the truncation
    pattern is (THEORY S6). Between consecutive rows t1 < t2 there is no event, so θ(t) stays in one pattern's
    region {θ : pattern = P}, a polyhedron (for a fixed pattern every u_ℓ is affine in θ); it is convex, so the chord
    midpoint (θ(t1) + θ(t2))/2 lies in its closure and, unless a point stays on a threshold along the whole chord
    (sliding), has pattern P, away from the ties at the events. There D = D_P (:func:`reluflow.truncated_bias_jacobian`
    of the plain pattern); P is the orthogonal projector onto range(D) and λ_min⁺ the smallest nonzero eigenvalue
    of D Dᵀ. Then:

    - ``drift``: max |(1 − P)(r(t2) − r(t1))| / |r(0)| (the orthogonal component is frozen);
    - ``slack``: max (|P r(t2)| − e^{−λ_min⁺(t2 − t1)/N} |P r(t1)|) / max(|P r(t1)|, floor·|r(0)|) over the
      intervals where no threshold slides at t1 or t2 (``pairs``): the corrected statement;
    - ``slide_slack``, ``sliding_pairs``: the same over the intervals where one slides (where the uncorrected
      statement is tested too). Intervals with D = 0 have nothing to decay and are not counted; intervals whose
      truncated set is ambiguous (tied points at its edge) are counted in ``ambiguous_pairs`` and not tested.

    With ``per_pair`` also ``pair_time`` (t1), ``pair_excess`` and ``pair_sliding`` over the tested intervals.
    """
    # the unvalidated kernel of reluflow.truncated_bias_jacobian (inputs validated once, used at every interval)
    from reluflow.training.spectral import truncated_bias_jacobian_arrays

    sol = _solution(sol)
    floor = as_real(floor, "floor", minimum=0.0, strict=True)
    t = sol.time.values
    theta = sol.thresholds.values
    r = (truncated_images(cfg.net.frames, theta, cfg.X) - cfg.targets).reshape(t.size, -1)
    n0 = max(float(np.linalg.norm(r[0])), 1e-300)
    N = cfg.X.shape[0]
    sliding = sol.sliding.values.reshape(t.size, -1).any(axis=1)
    drift, slack, slide_slack, pairs, sliding_pairs = 0.0, -np.inf, -np.inf, 0, 0
    counts = sol.n_truncated.values
    ambiguous, rows = 0, []
    for j in range(t.size - 1):
        inside = _with_counts(cfg, 0.5 * (theta[j] + theta[j + 1]), counts[j])
        if inside is None:
            ambiguous += 1
            continue
        Wc, bc = _net_with(cfg.net, inside).cumulative_parameters()
        D = truncated_bias_jacobian_arrays(np.asarray(Wc), np.asarray(bc), cfg.X)[0]
        D = D.reshape(N * D.shape[1], -1)
        U, sv, _ = np.linalg.svd(D, full_matrices=False)
        keep = sv > max(D.shape) * np.finfo(float).eps * max(float(sv.max(initial=0.0)), 1e-300)
        if not keep.any():
            continue
        U = U[:, keep]
        p1, p2 = U.T @ r[j], U.T @ r[j + 1]
        ortho = (r[j + 1] - r[j]) - U @ (p2 - p1)
        lam = float(sv[keep].min() ** 2)
        excess = (np.linalg.norm(p2) - np.exp(-lam * (t[j + 1] - t[j]) / N) * np.linalg.norm(p1)) / max(
            float(np.linalg.norm(p1)), floor * n0)
        rows.append((t[j], excess, bool(sliding[j] or sliding[j + 1])))
        if sliding[j] or sliding[j + 1]:
            sliding_pairs += 1
            slide_slack = max(slide_slack, excess)
        else:
            pairs += 1
            slack = max(slack, excess)
            drift = max(drift, float(np.linalg.norm(ortho)) / n0)
    out = {"pairs": pairs, "sliding_pairs": sliding_pairs, "ambiguous_pairs": ambiguous, "drift": drift,
           "slack": float(slack), "slide_slack": float(slide_slack)}
    if per_pair:
        arr = np.array(rows, dtype=float).reshape(-1, 3)
        out.update(pair_time=arr[:, 0], pair_excess=arr[:, 1], pair_sliding=arr[:, 2].astype(bool))
    return out


#: :func:`_with_counts`: a point within EDGE_RTOL (1 + |θ|) of its threshold is on it (round-off decides its side).
EDGE_RTOL = 1e-12


def _with_counts(cfg, theta, counts):
    """Thresholds with the truncation pattern the solver reports (``counts`` n_{ℓ,k}), with a margin: θ, where a
    point rests on a threshold (|u − θ| ≤ EDGE_RTOL (1 + |θ|)) or the count says otherwise (e.g. a threshold frozen
    on a released point), moved half-way between the n-th and the (n+1)-th smallest u; the truncated set of (ℓ, k)
    is always the n_{ℓ,k} points of smallest u. None if that set is ambiguous (tied u at its edge).

    The margin matters where points slide: they rest on their threshold along the whole interval, the solver
    reports them truncated, and the sign of u − θ at the chord midpoint is round-off (it differed between BLAS
    kernels, and with it D and the A6 verdict, issue 9). Moving θ_{ℓ,k} changes no D: for a fixed pattern D does
    not depend on θ."""
    theta = np.array(theta, float)
    R = cfg.net.frames
    for ell in range(theta.shape[0]):
        _, patterns, acts = adapted_forward(R[: ell + 1], theta[: ell + 1], cfg.X, keep_activations=True)
        near = (np.abs(acts[ell] - theta[ell]) <= EDGE_RTOL * (1.0 + np.abs(theta[ell]))).any(axis=0)
        u = np.sort(acts[ell], axis=0)  # (N, M), ascending per coordinate
        have = patterns[ell].sum(axis=0)
        for k in np.flatnonzero((have != counts[ell]) | near):
            n = int(counts[ell, k])
            lo = u[n - 1, k] if n > 0 else u[0, k] - 1.0
            hi = u[n, k] if n < u.shape[0] else u[-1, k] + 1.0
            if not hi - lo > 1e-12 * max(1.0, abs(hi)):
                return None
            theta[ell, k] = 0.5 * (lo + hi)
    return theta


# --------------------------------------------------------------------------------------------------- one configuration

#: The variables of :func:`claims_ensemble`: name → (long_name, units).
VARIABLES = {
    "depth": ("depth L (hidden layers)", "1"),
    "width": ("width M", "1"),
    "clusters": ("number of clusters Q", "1"),
    "per_cluster": ("points per cluster", "1"),
    "points": ("number of points N", "1"),
    "separation": ("standard deviation of the cluster centres", "1"),
    "radius": ("largest cluster radius", "1"),
    "target_scale": ("standard deviation of the class targets", "1"),
    "non_separated": ("1 if some threshold truncates points of two clusters at t = 0 or at the end", "1"),
    "status": ("status of the exact solve (0 finished)", "1"),
    "n_events": ("events of the exact solve", "1"),
    "sliding_rows": ("recorded times at which a threshold slides", "1"),
    "a3_own_steps": ("steps at which a point is truncated in a coordinate", "1"),
    "a3_own_worst": ("smallest relative change of the rate at a truncation of its own coordinate", "1"),
    "a3_monotone_worst": ("smallest min rate(n') - max rate(n), n' > n, relative to the largest rate", "1"),
    "a3_holds": ("1 if the rate does not decrease when its own coordinate truncates a point", "1"),
    "a3_monotone_holds": ("1 if every rate is a nondecreasing function of its count", "1"),
    "a4_deep_events": ("events in layers >= 2", "1"),
    "a4_eligible_events": ("events in layers >= 2 of points truncated in a shallower layer", "1"),
    "a4_coupled_events": ("events in layers >= 2 that change a shallower flow", "1"),
    "a4_max_jump": ("largest jump of a shallower flow at an event in a deeper layer", "1"),
    "a4_uncoupled_max": ("largest such jump for points not truncated in a shallower layer", "1"),
    "a4_holds": ("1 if some event in a layer >= 2 changes a shallower threshold's flow", "1"),
    "a5_clusters_collapsed": ("clusters sent to one point at the end", "1"),
    "a5_variability_ratio": ("within-class variability at the end over its initial value", "1"),
    "a5_cost_ratio": ("cost at the end over the initial cost", "1"),
    "a5_reason": ("0 collapse with zero loss; 1 not collapsed, Q > L; 2 not collapsed, Q <= L; 3 collapsed, loss > 0",
                  "1"),
    "a5_holds": ("1 if every cluster collapses and the loss tends to zero", "1"),
    "a6_pairs": ("pairs of consecutive times without event or sliding", "1"),
    "a6_sliding_pairs": ("pairs of consecutive times without event, with a sliding threshold", "1"),
    "a6_ambiguous_pairs": ("pairs whose truncated set is ambiguous (tied points at its edge), not tested", "1"),
    "a6_drift": ("largest change of the residual orthogonal to range(D) between events, over |r(0)|", "1"),
    "a6_slack": ("largest relative excess of |r_range| over the gap bound, no sliding", "1"),
    "a6_slide_slack": ("largest relative excess of |r_range| over the gap bound, sliding", "1"),
    "a6_holds": ("1 if the range component decays at the gap on intervals without events and sliding", "1"),
    "a6_uncorrected_holds": ("1 if it does on every interval without events, sliding included", "1"),
}


def _non_separated(cfg, theta_rows) -> bool:
    for theta in theta_rows:
        _, patterns, _ = adapted_forward(cfg.net.frames, theta, cfg.X)
        for p in patterns:  # (N, M): clusters met by each threshold's truncation set
            hit = np.zeros((p.shape[1], int(cfg.labels.max()) + 1), bool)
            np.logical_or.at(hit, (np.nonzero(p)[1], cfg.labels[np.nonzero(p)[0]]), True)
            if np.any(hit.sum(axis=1) >= 2):
                return True
    return False


def analyse_configuration(point, rng_seed, *, draw=None, t_end: float = 400.0, n_times: int = 20,
                          max_events: int = 200) -> dict:
    """Draw one configuration, solve its bias flow exactly and test A3–A6 on it: a dict of the numbers of
    :data:`VARIABLES` (hold flags are 0/1; for a solve that did not finish they are -1, and so are the A4 flags of
    one-layer configurations and the A6 flag of configurations with no pair to test)."""
    cfg = draw_configuration(rng_seed, **(draw or {}))
    sol = solve_configuration(cfg, t_end=t_end, n_times=n_times, max_events=max_events)
    p = cfg.parameters
    out = {key: -1.0 for key in VARIABLES}
    out.update({key: float(p[key]) for key in ("depth", "width", "clusters", "per_cluster", "points", "separation",
                                                "radius", "target_scale")})
    status = int(sol.attrs["status"])
    out.update(status=float(status), n_events=float(sol.attrs["n_events"]),
               sliding_rows=float(sol.sliding.values.reshape(sol.sizes["time"], -1).any(axis=1).sum()),
               non_separated=float(_non_separated(cfg, sol.thresholds.values[[0, -1]])))
    if status != 0:
        return out
    a3 = rate_growth(sol)
    out.update(a3_own_steps=a3["own_steps"], a3_own_worst=a3["own_worst"], a3_monotone_worst=a3["monotone_worst"],
               a3_holds=float(a3["own_worst"] >= -TOL), a3_monotone_holds=float(a3["monotone_worst"] >= -TOL))
    if cfg.net.depth >= 2:
        a4 = deep_coupling(cfg, sol)
        out.update({f"a4_{k}": float(v) for k, v in a4.items()})
        out["a4_holds"] = float(a4["coupled_events"] > 0)
    a5 = collapse_outcome(cfg, sol)
    out.update(a5_clusters_collapsed=a5["clusters_collapsed"], a5_variability_ratio=a5["variability_ratio"],
               a5_cost_ratio=a5["cost_ratio"], a5_reason=a5["reason"], a5_holds=float(a5["reason"] == 0))
    a6 = range_decay(cfg, sol)
    out.update({f"a6_{k}": float(v) for k, v in a6.items()})
    if a6["pairs"] > 0:
        out["a6_holds"] = float(a6["slack"] <= TOL and a6["drift"] <= TOL)
    if a6["pairs"] + a6["sliding_pairs"] > 0:
        out["a6_uncorrected_holds"] = float(max(a6["slack"], a6["slide_slack"]) <= TOL and a6["drift"] <= TOL)
    return {k: float(v) for k, v in out.items()}


def claims_ensemble(n_configurations: int, seed: int, *, executor=None, draw=None, t_end: float = 400.0,
                    n_times: int = 20, max_events: int = 200) -> xr.Dataset:
    """:func:`analyse_configuration` on ``n_configurations`` configurations through :func:`reluflow.sweep`
    (configuration i uses child i of SeedSequence(seed); any Executor): a Dataset over ``configuration``."""
    n_configurations = check_positive_int(n_configurations, "n_configurations")
    if draw is not None:
        _check_draw(**{**DRAW_DEFAULTS, **draw})
    func = partial(analyse_configuration, draw=draw, t_end=t_end, n_times=n_times, max_events=max_events)
    ds = sweep(func, {"configuration": np.arange(n_configurations)}, seed=seed, executor=executor, progress=False)
    for name, (long_name, units) in VARIABLES.items():
        ds[name].attrs.update(long_name=long_name, units=units)
    ints = [k for k in VARIABLES if k not in ("separation", "radius", "target_scale") and not k.endswith(
        ("_worst", "_ratio", "_jump", "_max", "_drift", "_slack"))]
    for k in ints:
        ds[k] = ds[k].astype(np.int64)
    ds.configuration.attrs.update(long_name="configuration index (child of SeedSequence(seed))", units="1")
    ds.attrs.update(t_end=float(t_end), max_events=int(max_events))
    return ds


# --------------------------------------------------------------------------------------------------- A6, wide networks


def _wide_point(point, rng_seed, *, lr, n_steps):
    from reluflow.training.experiments import overparametrised_descent

    rng = np.random.default_rng(rng_seed)
    width, depth = int(rng.integers(6, 11)), int(rng.integers(1, 3))
    n_points, n_outputs = int(rng.integers(3, 7)), int(rng.integers(1, 3))
    run, X, Y = overparametrised_descent(width, depth, n_points, n_outputs, lr=lr, n_steps=n_steps, seed=rng)
    sp = spectral_trajectory(run, X, Y)
    ratio = sp.cost.values[1:] / sp.cost_bound.values[1:]
    full = bool((sp.gram_rank.values == n_points * n_outputs).all())
    return {"wide_width": width, "wide_depth": depth, "wide_points": n_points, "wide_outputs": n_outputs,
            "wide_full_rank": float(full), "wide_lambda_min": float(sp.lambda_min.values.min()),
            "wide_ratio": float(ratio.max()), "wide_cost_drop": float(sp.cost.values[-1] / sp.cost.values[0]),
            "wide_holds": float(full and ratio.max() <= 1.0 + 1e-12)}


def overparametrised_run(seed: int, index: int, *, lr: float, n_steps: int) -> dict:
    """Network ``index`` of :func:`overparametrised_ensemble` with root ``seed``, run again with step ``lr`` for
    ``n_steps`` steps (e.g. a smaller step, to tell the flow's bound from the discretisation): its dict of numbers."""
    index = check_positive_int(index, "index", minimum=0)
    lr = as_real(lr, "lr", minimum=0.0, strict=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    return _wide_point({"network": index}, np.random.SeedSequence(int(seed), spawn_key=(index,)), lr=lr,
                       n_steps=n_steps)


WIDE_VARIABLES = {
    "wide_width": ("width of the over-parametrised network", "1"),
    "wide_depth": ("depth of the over-parametrised network", "1"),
    "wide_points": ("training points of the over-parametrised network", "1"),
    "wide_outputs": ("outputs of the over-parametrised network", "1"),
    "wide_full_rank": ("1 if D D^T has full rank at every step", "1"),
    "wide_lambda_min": ("smallest lambda_min(D D^T) along the run", "1"),
    "wide_ratio": ("largest C(t) / (C(0) exp(-2 lambda t / N)) over t > 0", "1"),
    "wide_cost_drop": ("cost at the end over the initial cost", "1"),
    "wide_holds": ("1 if D D^T has full rank and C(t) <= C(0) exp(-2 lambda t/N) at every step", "1"),
}


def overparametrised_ensemble(n_networks: int, seed: int, *, lr: float = 0.02, n_steps: int = 250,
                              executor=None) -> xr.Dataset:
    """A6, over-parametrised: gradient descent (all parameters, output cost; :func:`overparametrised_descent`) on
    ``n_networks`` random networks (width 6–10, depth 1–2, 3–6 points, 1–2 outputs; network i from child i of
    SeedSequence(seed)), and the classical bound C(t) ≤ C(0) e^{−2λt/N}, λ the running minimum of λ_min(D Dᵀ)."""
    n_networks = check_positive_int(n_networks, "n_networks")
    lr = as_real(lr, "lr", minimum=0.0, strict=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    ds = sweep(partial(_wide_point, lr=lr, n_steps=n_steps), {"network": np.arange(n_networks)}, seed=seed,
               executor=executor, progress=False)
    for name, (long_name, units) in WIDE_VARIABLES.items():
        ds[name].attrs.update(long_name=long_name, units=units)
    ds.network.attrs.update(long_name="over-parametrised network index", units="1")
    return ds


# --------------------------------------------------------------------------------------------------- intervals


def hold_rate(flags) -> dict:
    """Hold rate of a claim over configurations: ``flags`` are 1 (holds), 0 (fails) or -1 (not tested: the solver
    did not finish, or the statement does not apply). Returns ``holds``, ``tested``, ``rate`` and the Wilson 95 %
    interval ``low``, ``high``."""
    f = np.asarray(flags)
    if f.ndim != 1 or not np.all(np.isin(f, (-1, 0, 1))):
        raise ValueError("flags must be a 1-D array of -1, 0, 1")
    k, n = int((f == 1).sum()), int((f >= 0).sum())
    lo, hi = wilson_interval(k, n)
    return {"holds": k, "tested": n, "rate": k / n if n else float("nan"), "low": lo, "high": hi}


#: The statements whose hold rates :func:`hold_rate_table` reports: claim label → (flag variable, statement).
STATEMENTS = {
    "A3": ("a3_holds", "the rate rho_lk does not decrease when a point is truncated in (l, k)"),
    "A3_uncorrected": ("a3_monotone_holds", "rho_lk is a nondecreasing function of n_lk along the flow"),
    "A4": ("a4_holds", "L >= 2: some event in a layer >= 2 changes a shallower threshold's flow"),
    "A5": ("a5_holds", "every cluster collapses to one point and C -> 0"),
    "A6_wide": ("wide_holds", "over-parametrised GD: C(t) <= C(0) exp(-2 lambda t/N)"),
    "A6": ("a6_holds", "between events, no sliding: r_orth frozen, |r_range| decays at least at lambda_min+/N"),
    "A6_uncorrected": ("a6_uncorrected_holds", "between events, sliding included: the same"),
}


def hold_rate_table(ds: xr.Dataset, wide: xr.Dataset) -> xr.Dataset:
    """Hold rates of :data:`STATEMENTS` over a :func:`claims_ensemble` ``ds`` and an :func:`overparametrised_ensemble`
    ``wide``: variables over ``statement`` (holds, tested, Wilson 95 % low/high, configurations whose solve did not
    finish), and the statement text."""
    as_dataset(ds, "ds", ("status",))
    as_dataset(wide, "wide", ("wide_holds",))
    rows = {k: [] for k in ("holds", "tested", "low", "high", "not_finished")}
    unfinished = int((ds.status.values != 0).sum())
    for flag, _ in STATEMENTS.values():
        src = wide if flag.startswith("wide") else ds
        r = hold_rate(src[flag].values.astype(int))
        for k in ("holds", "tested", "low", "high"):
            rows[k].append(r[k])
        rows["not_finished"].append(0 if flag.startswith("wide") else unfinished)
    meta = {"holds": "configurations where the statement holds", "tested": "configurations tested",
            "low": "Wilson 95 % interval of the hold rate, low end", "high": "Wilson 95 % interval, high end",
            "not_finished": "configurations whose exact solve did not finish (status != 0), not tested"}
    out = xr.Dataset({k: ("statement", np.asarray(v), {"long_name": meta[k], "units": "1"}) for k, v in rows.items()},
                     coords={"statement": list(STATEMENTS)})
    out["statement_text"] = ("statement", [t for _, t in STATEMENTS.values()],
                             {"long_name": "the statement tested", "units": "1"})
    return out


# --------------------------------------------------------------------------------------------------- checks


def solver_agreement(cfg: Configuration, *, t_end: float = 10.0, n_times: int = 20, rtol: float = 1e-11,
                     atol: float = 1e-13, max_events: int = 50) -> dict:
    """Thresholds of the exact solver against the general ODE solver (solve_ivp, DOP853, ``rtol``, ``atol``) at the
    ``n_times`` geometric times from t_end/100 to ``t_end`` that both reach (the general backend stops at the onset
    of sliding, and after ``max_events`` events): ``error`` = max |Δθ|, ``times`` compared, and both statuses."""
    times = np.geomspace(t_end / 100.0, t_end, n_times)
    ex = solve(cfg.net, cfg.X, cfg.targets, times, method="exact", record_events=False)
    ge = solve(cfg.net, cfg.X, cfg.targets, times, method="general", rtol=rtol, atol=atol, record_events=False,
               max_events=max_events)
    common = np.intersect1d(ex.time.values[ex.requested.values == 1], ge.time.values[ge.requested.values == 1])
    err = float(np.abs(ex.thresholds.sel(time=common).values - ge.thresholds.sel(time=common).values).max(initial=0))
    return {"error": err, "times": int(common.size), "exact_status": int(ex.attrs["status"]),
            "general_status": int(ge.attrs["status"])}


def _cost_of_theta(cfg, theta):
    return input_cost(*_net_with(cfg.net, theta).cumulative_parameters(), cfg.X, cfg.targets)


def _margin(cfg, theta):
    _, _, acts = adapted_forward(cfg.net.frames, theta, cfg.X, keep_activations=True)
    return min(float(np.abs(a - theta[ell]).min()) for ell, a in enumerate(acts))


def _central_differences(f, theta, h):
    """(f(θ + h e_j) − f(θ − h e_j)) / 2h for every entry j of θ, stacked with shape θ.shape + f's shape."""
    out = []
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = h
        e = e.reshape(theta.shape)
        out.append((np.asarray(f(theta + e), float) - np.asarray(f(theta - e), float)) / (2 * h))
    return np.stack(out).reshape(theta.shape + out[0].shape)


def flow_fd_error(cfg: Configuration, theta, h: float = 1e-5) -> float:
    """Relative error of θ̇ = bias_flow against −Λ^-2 ∂C_in/∂θ by central finite differences (step h) of the input
    cost of the plain truncation forward pass (:func:`reluflow.input_cost`), over max(max |θ̇|, 1e-3) (C_in is
    piecewise quadratic, so the central difference is exact up to round-off ~1e-10); NaN if a point lies within 2h of a
    threshold (the difference would straddle a kink)."""
    theta = np.asarray(theta, float)
    if _margin(cfg, theta) <= 2 * h:
        return float("nan")
    grad = _central_differences(lambda t: _cost_of_theta(cfg, t), theta, h)
    want = -grad / cfg.net.scales**2
    got = bias_flow(_net_with(cfg.net, theta), cfg.X, cfg.targets)
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-3))


def rate_fd_error(cfg: Configuration, theta, rate, h: float = 1e-5) -> float:
    """max |ρ − ρ_fd| / max ρ with ρ_fd,ℓk = −(θ̇_ℓk(θ + h e_ℓk) − θ̇_ℓk(θ − h e_ℓk))/(2h) from
    :func:`reluflow.theory.flows.bias_flow`, against a given ``rate`` (L, M); NaN near a kink."""
    theta = np.asarray(theta, float)
    if _margin(cfg, theta) <= 2 * h:
        return float("nan")
    jac = _central_differences(lambda t: bias_flow(_net_with(cfg.net, t), cfg.X, cfg.targets), theta, h)
    fd = -np.einsum("ijij->ij", jac)  # the diagonal ∂θ̇_ℓk/∂θ_ℓk
    rate = np.asarray(rate, float)
    return float(np.abs(rate - fd).max() / max(float(np.abs(rate).max()), 1e-12))


def replace_thresholds(cfg: Configuration, theta) -> Configuration:
    """``cfg`` with its network's initial thresholds replaced (validated)."""
    return replace(cfg, net=replace(cfg.net, thresholds=np.asarray(theta, float)))


def check_sample(ds: xr.Dataset, n: int, *, min_depth: int = 2) -> np.ndarray:
    """The first ``n`` configurations of ``ds`` (a :func:`claims_ensemble` result) whose solve finished without
    sliding and whose depth is at least ``min_depth``: the fixed sub-sample the notebook's machinery checks run on
    (the general backend stops at the onset of sliding, and near it solve_ivp's steps shrink)."""
    as_dataset(ds, "ds", ("status", "depth", "sliding_rows"))
    n = check_positive_int(n, "n")
    ok = (ds.status.values == 0) & (ds.depth.values >= min_depth) & (ds.sliding_rows.values == 0)
    return ds.configuration.values[ok][:n]


def sample_checks(seed: int, indices, *, draw=None, t_end: float = 400.0, n_times: int = 20, max_events: int = 200,
                  general_t_end: float = 10.0) -> dict:
    """The machinery checks on configurations ``indices`` of root ``seed``, each against an independent computation:

    - ``general``: max |θ_exact − θ_general| (:func:`solver_agreement`, up to ``general_t_end``), ``general_times``;
    - ``flow_fd``: max relative error of the flow against finite differences of C_in (:func:`flow_fd_error`) at θ(0)
      and at the chord midpoints of consecutive rows without sliding (``fd_states`` tested, kinks skipped);
    - ``rate_fd``: max relative error of the solver's ``rate`` (row t1) against finite differences of the flow at
      those chord midpoints (:func:`rate_fd_error`);
    - ``last_layer``: :func:`last_layer_rate_error` (the closed form n/(λ²N) of the last layer);
    - ``collapse_spread``: :func:`forward_collapse_spread` at θ(T), over the largest |x^(L)| (plain forward pass),
      and ``collapsed`` configurations it covered.
    """
    out = {"general": 0.0, "general_times": 0, "flow_fd": 0.0, "rate_fd": 0.0, "fd_states": 0, "last_layer": 0.0,
           "collapse_spread": 0.0, "collapsed": 0}
    for i in np.asarray(indices, int):
        cfg = configuration(seed, int(i), **(draw or {}))
        agree = solver_agreement(cfg, t_end=general_t_end)
        out["general"] = max(out["general"], agree["error"])
        out["general_times"] += agree["times"]
        sol = solve_configuration(cfg, t_end=t_end, n_times=n_times, max_events=max_events)
        theta, rate = sol.thresholds.values, sol.rate.values
        sliding = sol.sliding.values.reshape(sol.sizes["time"], -1).any(axis=1)
        errs = [flow_fd_error(cfg, theta[0])]
        rates = []
        for j in np.flatnonzero(~sliding[:-1] & ~sliding[1:]):
            mid = 0.5 * (theta[j] + theta[j + 1])
            errs.append(flow_fd_error(cfg, mid))
            rates.append(rate_fd_error(cfg, mid, rate[j]))
        errs, rates = np.array(errs), np.array(rates)
        out["fd_states"] += int(np.isfinite(errs).sum())
        out["flow_fd"] = max(out["flow_fd"], float(np.nanmax(errs, initial=0.0)))
        out["rate_fd"] = max(out["rate_fd"], float(np.nanmax(rates, initial=0.0)) if rates.size else 0.0)
        out["last_layer"] = max(out["last_layer"], last_layer_rate_error(sol, cfg.net.scales[-1], cfg.X.shape[0]))
        if collapse_outcome(cfg, sol)["clusters_collapsed"] > 0:
            Wc, bc = _net_with(cfg.net, theta[-1]).cumulative_parameters()
            size = max(float(np.abs(forward(*layer_parameters(Wc, bc), cfg.X)[-1]).max()), 1e-300)
            out["collapse_spread"] = max(out["collapse_spread"], forward_collapse_spread(cfg, theta[-1]) / size)
            out["collapsed"] += 1
    return out

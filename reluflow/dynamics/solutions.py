"""Solution classes S1–S5 of the bias flow (THEORY.md §4.2, §5): explicit solutions and scenarios.

The exact solver (:func:`reluflow.dynamics.solver.solve`) integrates the bias flow through its events. This
module holds what the notebooks compare it with, written independently of the solver: the explicit
one-cluster solution, within-class variability (neural collapse, NC1), and constructors of the
scenarios that exhibit each solution class.

Map from formula to function:

- one cluster, one coordinate (S1–S3): θ̇ = −(n(t)/(λ² N)) (θ − ŷ), with events
  Δt = (λ² N / n) log((ŷ − θ(t_m)) / (ŷ − u_(m+1))), found one event at a time; releases
  (ŷ below θ) use the same formula with the next point above ŷ     → :func:`one_cluster_solution`
- θ(t) = ŷ + (θ(t_m) − ŷ) e^{−n (t − t_m)/(λ² N)} between events   → :meth:`OneClusterSolution.theta`
- x^(τ,L) = τ_L ∘ … ∘ τ_1 (x), (R_ℓ τ_ℓ(x))_k = max((R_ℓ x)_k, θ_ℓ,k), at many times at once
  → :func:`truncated_images`
- within-class variability tr Σ_W = (1/N) Σ_i |x_i − μ_{j(i)}|²     → :func:`within_class_variability`
- NC1 = tr(Σ_W Σ_B^+)/Q (Σ_B the covariance of the class means)     → :func:`nc1`
- S4: Q clusters, layer ℓ truncates cluster ℓ only; frames R_ℓ with R_ℓᵀ 𝟙/√M pointing from cluster ℓ
  towards the others, targets ỹ_ℓ beyond the cluster; the zero-cost thresholds θ*_ℓ = R_ℓ ỹ_ℓ
  → :func:`separated_clusters`
- the explicit solution of each (layer ℓ, coordinate k) of an S4 scenario: cluster ℓ alone in
  the frame R_ℓ, target (R_ℓ ỹ_ℓ)_k, with the total N                  → :func:`separated_solutions`
- guaranteed separation: every other cluster, and every image it can take, stays in
  {R_ℓ x ≥ R_ℓ ỹ_ℓ} (a box bound)                                    → :func:`separation_margin`
- S5: two clusters A, B on the diagonal of R², one threshold per coordinate truncating both;
  the equilibrium θ = ȳ(θ) (mean target of the truncated points), or sliding on a point
  → :func:`two_cluster_scenario`,
  :func:`interference_point`
- rest: θ_k = ȳ_k, or θ_k between ȳ_k with and without the points it rests on (sliding)
  → :func:`equilibrium_residual`
- the largest gap between the event times of a solver run and a reference (explicit solutions,
  or another run), coordinate by coordinate                         → :func:`event_time_error`
- a measured exponential rate κ, |θ(t) − θ*| ≈ c e^{−κ t} (least squares on log |θ − θ*|)
  → :func:`exponential_rate`
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.theory.adapted import ORTHOGONALITY_TOL, AdaptedNetwork, adapted_network
from reluflow.theory.data import ClusteredData, clustered_data
from reluflow.validation import (
    as_adapted_network,
    as_coordinate_problem,
    as_dataset,
    as_labels,
    as_mapping,
    as_points,
    as_positive_float,
    as_real_array,
    check_positive_int,
)

__all__ = [
    "OneClusterSolution",
    "one_cluster_solution",
    "truncated_images",
    "within_class_variability",
    "nc1",
    "SeparatedClusters",
    "separated_clusters",
    "separation_margin",
    "separated_solutions",
    "generic_start",
    "collapse_times",
    "TwoClusterScenario",
    "two_cluster_scenario",
    "equilibrium_residual",
    "rest_point",
    "interference_point",
    "exponential_rate",
    "TailRate",
    "tail_rate",
    "event_time_error",
]


def _real(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return value


# --------------------------------------------------------------------------- one cluster, explicit


@dataclass(frozen=True)
class OneClusterSolution:
    """Explicit solution of θ̇ = −(n(t)/(λ² N)) (θ − ŷ) for one cluster in one coordinate.

    Segment s starts at ``t_start[s]`` with threshold ``theta_start[s]`` and ``n[s]`` truncated
    points (the count in force after the event that opens it). ``event_time``/``event_kind``
    (+1 truncation, −1 release) list the events; ``event_count`` the points crossing at each.
    """

    y_hat: float
    scale: float
    n_total: int
    t_start: np.ndarray
    theta_start: np.ndarray
    n: np.ndarray
    event_time: np.ndarray
    event_kind: np.ndarray
    event_count: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        """n/(λ² N), the relaxation rate of each segment."""
        return self.n / (self.scale**2 * self.n_total)

    def theta(self, t) -> np.ndarray:
        """θ(t) = ŷ + (θ(t_m) − ŷ) e^{−n (t − t_m)/(λ² N)} on the segment containing t (frozen if n = 0)."""
        t = as_real_array(t, "t")
        s = np.searchsorted(self.t_start, t, side="right") - 1
        s = np.maximum(s, 0)
        decay = np.exp(-self.rate[s] * (t - self.t_start[s]))
        moving = self.y_hat + (self.theta_start[s] - self.y_hat) * decay
        return np.where(self.n[s] == 0, self.theta_start[s], moving)  # frozen segments exactly

    def count(self, t) -> np.ndarray:
        """n(t), the number of truncated points (right limit at event times)."""
        t = as_real_array(t, "t")
        return self.n[np.maximum(np.searchsorted(self.t_start, t, side="right") - 1, 0)]


def one_cluster_solution(u, theta0, y_hat, scale, n_total: int | None = None) -> OneClusterSolution:
    """Explicit solution of the one-cluster threshold flow θ̇ = −(n(t)/(λ² N)) (θ − ŷ), with all its events.

    n(t) = #{i : u_i ≤ θ(t)} (a tie counts as truncated). Written event by event, independently of
    :mod:`reluflow.dynamics.events`: while the threshold rises (ŷ > θ) the next event truncates the smallest
    u_(m+1) > θ after Δt = (λ² N / n) log((ŷ − θ(t_m)) / (ŷ − u_(m+1))), provided u_(m+1) < ŷ; while
    it falls (ŷ < θ) the next event releases the largest truncated point after the same formula
    with u_(m+1) replaced by that point, provided it lies above ŷ. With no point truncated the
    threshold is frozen (S1); it stops at the last release (S3, release) or relaxes to ŷ.

    Parameters
    ----------
    u : array (N_j,)
        Coordinate k of the cluster's points in the layer's frame.
    theta0 : float
        θ_k(0).
    y_hat : float
        ŷ_k, the cluster's target in the same frame.
    scale : float
        λ_k > 0.
    n_total : int, optional
        N, the total number of points in the cost's 1/N (default: the cluster's size).
    """
    u = as_real_array(u, "u", ndim=1)
    if u.size == 0:
        raise ValueError("u must hold at least one point; got an empty array")
    theta0 = _real(theta0, "theta0")
    y_hat = _real(y_hat, "y_hat")
    lam = as_positive_float(scale, "scale")
    if not np.isfinite(lam * lam * u.size):
        raise ValueError(f"scale must be small enough for λ² N to be finite; got {lam!r}")
    N = u.size if n_total is None else check_positive_int(n_total, "n_total", minimum=u.size)
    values, counts = np.unique(u, return_counts=True)  # ascending distinct values
    m = int(np.searchsorted(values, theta0, side="right"))  # groups of equal values truncated: 0..m-1
    n = int(counts[:m].sum())
    t, theta = 0.0, theta0
    t_start, theta_start, ns = [0.0], [theta0], [n]
    ev_t, ev_kind, ev_count = [], [], []
    while n > 0 and theta != y_hat:
        if y_hat > theta:  # rising: group m is the next above θ
            if m >= values.size or not values[m] < y_hat:
                break
            nxt, step, kind = values[m], int(counts[m]), 1
            m += 1
        else:  # falling: group m-1, the largest truncated value, is released when θ reaches it
            if not values[m - 1] > y_hat:
                break
            nxt, step, kind = values[m - 1], -int(counts[m - 1]), -1
            m -= 1
        t = t + (lam**2 * N / n) * np.log((y_hat - theta) / (y_hat - nxt))
        theta = float(nxt)
        n += step
        ev_t.append(t)
        ev_kind.append(kind)
        ev_count.append(abs(step))
        t_start.append(t)
        theta_start.append(theta)
        ns.append(n)
    return OneClusterSolution(
        y_hat=y_hat, scale=lam, n_total=int(N), t_start=np.array(t_start), theta_start=np.array(theta_start),
        n=np.array(ns, dtype=np.int64), event_time=np.array(ev_t), event_kind=np.array(ev_kind, dtype=np.int64),
        event_count=np.array(ev_count, dtype=np.int64),
    )


# --------------------------------------------------------------------------- neural collapse


def truncated_images(frames, thresholds, X) -> np.ndarray:
    """x^(τ,L) = R_Lᵀ max(R_L ⋯ R_1ᵀ max(R_1 x, θ_1) ⋯, θ_L) for each threshold set in ``thresholds``.

    ``frames`` (L, M, M) orthogonal, ``thresholds`` (..., L, M) (e.g. a trajectory (T, L, M)),
    ``X`` (N, M). Returns the images in input space, shape (..., N, M).
    """
    R = as_real_array(frames, "frames", ndim=3)
    L, M, M2 = R.shape
    if L == 0 or M == 0 or M != M2:
        raise ValueError(f"frames must have shape (L, M, M) with L, M >= 1; got shape {R.shape}")
    err = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(M)).max(axis=(1, 2))
    if np.any(err > ORTHOGONALITY_TOL):
        worst = int(np.argmax(err))
        raise ValueError(f"frames[{worst}] (layer {worst + 1}) must be orthogonal: max |R Rᵀ − 1| = {err[worst]:.3g} "
                         f"exceeds ORTHOGONALITY_TOL = {ORTHOGONALITY_TOL:.3g}")
    th = as_real_array(thresholds, "thresholds")
    if th.ndim < 2 or th.shape[-2:] != (L, M):
        raise ValueError(f"thresholds must have shape (..., {L}, {M}); got {th.shape}")
    X = as_points(X, "X", dim=M)
    x = np.broadcast_to(X, th.shape[:-2] + (X.shape[0], M))
    for ell in range(L):
        u = np.einsum("...nm,km->...nk", x, R[ell])
        x = np.einsum("...nk,km->...nm", np.maximum(u, th[..., ell, None, :]), R[ell])
    return x



def _points_labels(points, labels):
    X = as_real_array(points, "points")
    if X.ndim < 2:
        raise ValueError(f"points must have shape (..., N, M); got shape {X.shape}")
    lab = np.asarray(labels)
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be an integer array of class indices; got dtype {lab.dtype}")
    if lab.ndim != 1 or lab.size != X.shape[-2]:
        raise ValueError(f"labels must have shape (N,) = ({X.shape[-2]},); got shape {lab.shape}")
    if lab.min() < 0:
        raise ValueError(f"labels must be class indices >= 0; got minimum {int(lab.min())}")
    Q = int(lab.max()) + 1
    onehot = (lab[:, None] == np.arange(Q)[None, :]).astype(float)  # (N, Q)
    if np.any(onehot.sum(axis=0) == 0):
        raise ValueError("labels must use every class index 0..Q-1 at least once (empty class)")
    return X, onehot


def _class_means(X, onehot):
    return np.einsum("nq,...nm->...qm", onehot, X) / onehot.sum(axis=0)[:, None]


def within_class_variability(points, labels) -> np.ndarray:
    """tr Σ_W = (1/N) Σ_i |x_i − μ_{j(i)}|², μ_j the mean of class j; ``points`` (..., N, M)."""
    X, onehot = _points_labels(points, labels)
    mu = _class_means(X, onehot)
    r = X - np.einsum("nq,...qm->...nm", onehot, mu)
    return np.einsum("...nm,...nm->...", r, r) / X.shape[-2]


def nc1(points, labels) -> np.ndarray:
    """NC1 = tr(Σ_W Σ_B^+)/Q with Σ_W = (1/N) Σ_i (x_i − μ_j)(x_i − μ_j)ᵀ, Σ_B = (1/Q) Σ_j (μ_j − μ)(μ_j − μ)ᵀ.

    μ is the mean of the class means; ``points`` (..., N, M), computed for each leading index.
    """
    X, onehot = _points_labels(points, labels)
    Q = onehot.shape[1]
    mu = _class_means(X, onehot)
    r = X - np.einsum("nq,...qm->...nm", onehot, mu)
    Sw = np.einsum("...ni,...nj->...ij", r, r) / X.shape[-2]
    c = mu - mu.mean(axis=-2, keepdims=True)
    Sb = np.einsum("...qi,...qj->...ij", c, c) / Q
    return np.einsum("...ij,...ji->...", Sw, np.linalg.pinv(Sb, hermitian=True)) / Q


# --------------------------------------------------------------------------- S4: separated clusters


@dataclass(frozen=True, repr=False)
class SeparatedClusters:
    """An S4 scenario: data, per-point targets, class targets ỹ_j, a network whose layer ℓ truncates
    cluster ℓ only, and the zero-cost thresholds θ*_ℓ = R_ℓ ỹ_ℓ."""

    data: ClusteredData
    targets: np.ndarray
    class_targets: np.ndarray
    net: AdaptedNetwork
    collapse_thresholds: np.ndarray

    def __repr__(self) -> str:
        N, M = self.data.points.shape
        return f"<SeparatedClusters Q={self.data.n_clusters} clusters, N={N} points in R^{M}, L={self.net.depth}>"


def _householder_to(d, e):
    """The reflection H with H e = d (and H d = e) for unit vectors d, e; the identity if d = e."""
    v = d - e
    nv = float(v @ v)
    if nv < 1e-30:
        return np.eye(d.size)
    return np.eye(d.size) - 2.0 * np.outer(v, v) / nv


def _random_rotations(n: int, M: int, angle: float, seed) -> np.ndarray:
    """n rotations of R^M, each turning by at most ``angle``: G = expm(A), A skew with spectral norm ≤ angle."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, M, M))
    A = B - np.swapaxes(B, 1, 2)
    norm = np.linalg.norm(A, ord=2, axis=(1, 2))
    A *= (angle * rng.uniform(0.0, 1.0, n) / np.maximum(norm, 1e-300))[:, None, None]
    return np.stack([expm(a) for a in A])


def separated_clusters(Q: int, M: int, n_per_cluster: int, *, radius: float = 0.5, distance: float = 3.0,
                       target_gap: float = 0.5, scales=None, frame_jitter: float = 0.0, seed=None,
                       frame_seed=None) -> SeparatedClusters:
    """S4 scenario: Q balls in R^M, L = Q layers, layer ℓ truncating cluster ℓ (0-based j = ℓ − 1).

    Cluster centres c_j = D (e_j − 𝟙/Q) / |e_j − 𝟙/Q| (for Q ≤ M: a regular simplex of radius D in the
    span of e_1..e_Q; for Q > M, points on a circle of radius D in the first two coordinates).
    d_j = −c_j/|c_j| points to the middle; the frame R_j is the reflection with R_jᵀ 𝟙/√M = d_j, so
    the cone K_j = {R_j x ≥ θ_j} opens towards the other clusters. Target ỹ_j = c_j + s d_j with
    s = √M ρ + ``target_gap``: beyond every point of cluster j in every coordinate of R_j. Initial
    thresholds: in each coordinate, midway between the two smallest values of cluster j, so one
    point is truncated at t = 0. With ``frame_jitter`` = φ > 0 each frame is turned by a random
    rotation G_j of angle at most φ (radians; R_j ← R_j G_jᵀ, so the cone's axis becomes G_j d_j),
    drawn from ``frame_seed``: a frame not tied to the symmetry of the construction. The separation
    is checked with :func:`separation_margin`; a ValueError says so if it fails.
    """
    Q = check_positive_int(Q, "Q")
    M = check_positive_int(M, "M", minimum=2)
    n_per_cluster = check_positive_int(n_per_cluster, "n_per_cluster", minimum=2)
    rho = as_positive_float(radius, "radius")
    D = as_positive_float(distance, "distance")
    gap = as_positive_float(target_gap, "target_gap")
    if scales is None:
        lam = np.ones((Q, M))
    else:
        lam = as_real_array(scales, "scales", ndim=2)
        if lam.shape != (Q, M):
            raise ValueError(f"scales must have shape (Q, M) = ({Q}, {M}); got {lam.shape}")
    if Q <= M:
        raw = np.eye(M)[:Q] - np.r_[np.ones(Q) / Q, np.zeros(M - Q)][None, :]
        if Q == 1:
            raw = -np.ones((1, M))
    else:
        ang = 2 * np.pi * np.arange(Q) / Q
        raw = np.zeros((Q, M))
        raw[:, 0], raw[:, 1] = np.cos(ang), np.sin(ang)
    centres = D * raw / np.linalg.norm(raw, axis=1, keepdims=True)
    data = clustered_data(centres, rho, n_per_cluster, seed=seed)
    d = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    e = np.ones(M) / np.sqrt(M)
    frames = np.stack([_householder_to(d[j], e) for j in range(Q)])
    jitter = float(frame_jitter) if isinstance(frame_jitter, (int, float)) and not isinstance(frame_jitter, bool) \
        else None
    if jitter is None or not (0.0 <= jitter <= np.pi / 4):
        raise ValueError(f"frame_jitter must be an angle in [0, pi/4] (radians); got {frame_jitter!r}")
    if jitter > 0:
        frames = np.einsum("jkm,jnm->jkn", frames, _random_rotations(Q, M, jitter, frame_seed))
    class_targets = centres + (np.sqrt(M) * rho + gap) * d
    theta0 = np.empty((Q, M))
    for j in range(Q):
        u = np.sort(data.cluster(j) @ frames[j].T, axis=0)
        theta0[j] = 0.5 * (u[0] + u[1])
    net = adapted_network(frames, lam, theta0)
    star = np.einsum("jkm,jm->jk", frames, class_targets)
    targets = class_targets[data.labels]
    margin = separation_margin(net, data.points, data.labels, star)
    if margin <= 0:
        raise ValueError(f"clusters are not separated for distance={D!r}, radius={rho!r}, target_gap={gap!r}: "
                         f"separation margin "
                         f"{margin:.3g} <= 0 (increase distance or decrease radius)")
    return SeparatedClusters(data=data, targets=targets, class_targets=class_targets, net=net,
                             collapse_thresholds=star)


def separated_solutions(scenario: SeparatedClusters) -> dict:
    """{(ℓ, k): OneClusterSolution} of an S4 scenario, layers ℓ = 0..L-1 and coordinates k = 0..M-1.

    Separation decouples the bias flow: threshold (ℓ, k) follows the one-cluster flow of the points of
    cluster ℓ in the frame R_ℓ, u = R_ℓ x, towards (R_ℓ ỹ_ℓ)_k = θ*_ℓ,k, with λ_ℓ,k and the total N.
    """
    if not isinstance(scenario, SeparatedClusters):
        raise TypeError(f"scenario must be a SeparatedClusters (see separated_clusters); got {type(scenario).__name__}")
    net, N = scenario.net, scenario.data.points.shape[0]
    out = {}
    for ell in range(net.depth):
        u = scenario.data.cluster(ell) @ net.frames[ell].T
        for k in range(net.width):
            out[ell, k] = one_cluster_solution(u[:, k], net.thresholds[ell, k], scenario.collapse_thresholds[ell, k],
                                               net.scales[ell, k], N)
    return out


def separation_margin(net, X, labels, final_thresholds) -> float:
    """Smallest slack min (R_ℓ x)_m − θ*_{ℓ,m} over clusters j ≠ ℓ − 1 and every image they can take.

    Layer ℓ is meant to truncate cluster ℓ − 1 (0-based) only, its threshold moving monotonically
    from θ_ℓ(0) towards θ*_ℓ. A point x of cluster j, truncated by its own layer with a threshold
    between θ_j(0) and θ*_j, has its image in the box {v : u ≤ v ≤ max(u, θ*_j)} of frame j
    (u = R_j x). A positive result certifies that every such image of every other cluster lies in
    the cone {R_ℓ x ≥ max(θ_ℓ(0), θ*_ℓ)} of layer ℓ, so that no layer ever truncates a foreign
    cluster: the flow decouples into one-cluster flows (S4).
    """
    net = as_adapted_network(net)
    X = as_points(X, "X", dim=net.width)
    labels = as_labels(labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({X.shape[0]},), one per point; got shape {labels.shape}")
    star = as_real_array(final_thresholds, "final_thresholds", ndim=2)
    L, M = net.scales.shape
    if star.shape != (L, M):
        raise ValueError(f"final_thresholds must have shape ({L}, {M}); got {star.shape}")
    top = np.maximum(star, net.thresholds)
    worst = np.inf
    for j in range(L):
        x = X[labels == j]
        if x.size == 0:
            continue
        lo = x @ net.frames[j].T
        hi = np.maximum(lo, np.maximum(star[j], net.thresholds[j]))
        for ell in range(L):
            if ell == j:
                continue
            A = net.frames[ell] @ net.frames[j].T  # frame-j coordinates → frame-ℓ coordinates
            low = np.einsum("mk,nk->nm", np.maximum(A, 0), lo) + np.einsum("mk,nk->nm", np.minimum(A, 0), hi)
            worst = min(worst, float((low - top[ell]).min()))
    rest = X[labels >= L]
    if rest.size:
        for ell in range(L):
            worst = min(worst, float((rest @ net.frames[ell].T - top[ell]).min()))
    if not np.isfinite(worst):
        raise ValueError(f"labels must put points in at least two clusters, one of them truncated by a layer "
                         f"(cluster j < L = {L}), for a separation margin; got classes {np.unique(labels).tolist()}")
    return worst


def generic_start(scenario: SeparatedClusters, seed=None) -> AdaptedNetwork:
    """The network of an S4 ``scenario`` with random initial thresholds, not built from the answer.

    Threshold (ℓ, k) is drawn uniformly in (u_(1), θ*_ℓ,k), where u_(1) is the smallest coordinate
    (R_ℓ x)_k of cluster ℓ and θ*_ℓ,k = (R_ℓ ỹ_ℓ)_k: each threshold truncates at least one point of its
    own cluster (otherwise its coordinate would be dead, S1) and starts short of its target, anywhere
    from one point truncated to the whole cluster. The frames and scales are the scenario's. A
    ValueError says so if the draw leaves the separation uncertified (:func:`separation_margin`).
    """
    if not isinstance(scenario, SeparatedClusters):
        raise TypeError(f"scenario must be a SeparatedClusters (see separated_clusters); got {type(scenario).__name__}")
    net, star = scenario.net, scenario.collapse_thresholds
    rng = np.random.default_rng(seed)
    low = np.stack([(scenario.data.cluster(ell) @ net.frames[ell].T).min(axis=0) for ell in range(net.depth)])
    theta0 = low + rng.uniform(0.0, 1.0, size=low.shape) * (star - low)
    theta0 = np.maximum(theta0, np.nextafter(low, np.inf))  # strictly above u_(1): one point truncated at least
    start = adapted_network(net.frames, net.scales, theta0)
    margin = separation_margin(start, scenario.data.points, scenario.data.labels, star)
    if margin <= 0:
        raise ValueError(f"seed: the random start leaves the separation uncertified (margin {margin:.3g} <= 0)")
    return start


def collapse_times(solution, depth: int) -> np.ndarray:
    """T_ℓ, the time of the last event of layer ℓ in the event log of a ``solve`` Dataset; shape (depth,).

    In an S4 run this is when cluster ℓ becomes a single point (the last of its points is truncated
    in the last coordinate of its layer); NaN for a layer without events.
    """
    as_dataset(solution, "solution", ("event_layer", "event_time"))
    depth = check_positive_int(depth, "depth")
    layer = solution.event_layer.values
    t = solution.event_time.values
    return np.array([t[layer == ell + 1].max() if np.any(layer == ell + 1) else np.nan for ell in range(depth)])


# --------------------------------------------------------------------------- S5: two clusters, one threshold


@dataclass(frozen=True, repr=False)
class TwoClusterScenario:
    """An S5 scenario: clusters A (label 0) and B (label 1) in R², per-point targets, one-layer network."""

    data: ClusteredData
    targets: np.ndarray
    class_targets: np.ndarray
    net: AdaptedNetwork

    def __repr__(self) -> str:
        return f"<TwoClusterScenario N={self.data.points.shape[0]} points in R^2, sizes {self.data.counts.tolist()}>"


def two_cluster_scenario(separation: float, target: float, *, n_per_cluster: int = 30, radius: float = 1.0,
                         b_target_gap: float = 1.0, scale: float = 1.0, seed=None) -> TwoClusterScenario:
    """S5 scenario in R² with the identity frame: cluster A centred at 0, cluster B at (s, s).

    A's target is ỹ_A = (h, h) (``target``); B's target ỹ_B = (s − ρ − g, s − ρ − g) lies on B's near
    side (g = ``b_target_gap``), so B's points pull a threshold that reaches them back down. The
    threshold of each coordinate starts midway between A's two smallest values, so it truncates
    one point of A (and any point of B below it). When h lies beyond B's near edge the threshold
    sweeps into B and both clusters drive it: θ̇ = −(n/(λ² N)) (θ − ȳ(t)) with ȳ the mean target of
    the truncated points.
    """
    s = _real(separation, "separation")
    h = _real(target, "target")
    rho = as_positive_float(radius, "radius")
    g = as_positive_float(b_target_gap, "b_target_gap")
    lam = as_positive_float(scale, "scale")
    n_per_cluster = check_positive_int(n_per_cluster, "n_per_cluster")
    data = clustered_data([[0.0, 0.0], [s, s]], rho, n_per_cluster, seed=seed)
    class_targets = np.array([[h, h], [s - rho - g, s - rho - g]])
    if not (np.isfinite(np.square(data.points).sum()) and np.isfinite(np.square(class_targets).sum())
            and np.isfinite(lam * lam)):
        raise ValueError(f"separation, target, radius, b_target_gap and scale must keep the points and targets "
                         f"within float range; got separation={s!r}, target={h!r}, radius={rho!r}, "
                         f"b_target_gap={g!r}, scale={lam!r}")
    a = np.sort(data.cluster(0), axis=0)
    theta0 = 0.5 * (a[0] + a[1])
    net = adapted_network(np.eye(2)[None], np.full((1, 2), lam), theta0[None])
    return TwoClusterScenario(data=data, targets=class_targets[data.labels], class_targets=class_targets, net=net)


def equilibrium_residual(X, targets, theta) -> np.ndarray:
    """Distance of each threshold of a one-layer, identity-frame bias flow from its equilibrium condition.

    Coordinate k is at rest when θ_k = ȳ_k, the mean target (ỹ_i)_k over the truncated points
    {i : x_{i,k} ≤ θ_k}. When θ_k rests on points (x_{i,k} = θ_k: sliding), it is at rest when it lies
    between ȳ_k with and without those points (the field pushes it back from both sides; no
    remaining point gives the field 0). With no truncated point, the coordinate is dead (at rest).
    Returns, per coordinate, |θ_k − ȳ_k| or the distance of θ_k to that interval; shape (M,).
    """
    X, targets, theta = as_coordinate_problem(X, targets, theta, "theta")
    out = np.zeros(X.shape[1])
    for k in range(X.shape[1]):
        trunc = X[:, k] <= theta[k]
        if not trunc.any():
            continue
        y_in = targets[trunc, k].mean()
        tie = X[:, k] == theta[k]
        if not tie.any():
            out[k] = abs(theta[k] - y_in)
            continue
        rest = trunc & ~tie
        y_out = targets[rest, k].mean() if rest.any() else theta[k]
        lo, hi = min(y_in, y_out), max(y_in, y_out)
        out[k] = max(lo - theta[k], theta[k] - hi, 0.0)
    return out


def rest_point(X, targets, theta0) -> tuple[np.ndarray, np.ndarray]:
    """Where each threshold of a one-layer, identity-frame bias flow comes to rest, from the data alone.

    Coordinate k obeys the scalar autonomous ODE θ̇ = f(θ) = −(1/(λ² N)) Σ_{i : x_ik ≤ θ} (θ − ỹ_ik), so
    θ moves monotonically in the direction of f(θ_k(0)) and stops at the first rest it meets. With the
    coordinates sorted, x_(1) ≤ … ≤ x_(N), and ȳ_m the mean target of the m lowest points, f is
    −(m/(λ²N))(θ − ȳ_m) on [x_(m), x_(m+1)), so the rest is found by one scan over m:

    - rising (θ(0) < ȳ): stop at ȳ_m in the first interval that holds it, or *slide* on x_(m) when
      truncating point m reverses the pull (ȳ_m ≤ x_(m));
    - falling (θ(0) > ȳ): stop at ȳ_m in the first interval that holds it, slide on x_(m) when
      releasing point m reverses the pull (ȳ_{m-1} > x_(m)), or freeze at x_(1) once the last point is
      released (the coordinate is then dead);
    - no point truncated at the start: dead, θ stays at θ(0).

    The scales λ only set the speed, not the rest. Derived from the data independently of the solvers
    (ties between coordinates are not resolved: continuous data). Returns ``(theta, sliding)``, both (M,):
    the rest point and whether the threshold rests on a point there.
    """
    X, targets, theta0 = as_coordinate_problem(X, targets, theta0, "theta0")
    N, M = X.shape
    rest, sliding = theta0.copy(), np.zeros(M, bool)
    order = np.argsort(X, axis=0, kind="stable")
    xs = np.take_along_axis(X, order, axis=0)
    ys = np.take_along_axis(targets, order, axis=0)
    m_idx = np.arange(1, N + 1)
    y_bar = np.cumsum(ys, axis=0) / m_idx[:, None]  # y_bar[m - 1] = ȳ_m
    x_next = np.vstack([xs[1:], np.full((1, M), np.inf)])  # x_(m+1)
    for k in range(M):
        m0 = int(np.count_nonzero(X[:, k] <= theta0[k]))
        if m0 == 0 or y_bar[m0 - 1, k] == theta0[k]:
            continue
        m = m_idx - 1  # 0-based: row m is the interval with m + 1 points truncated
        if y_bar[m0 - 1, k] > theta0[k]:  # rising through m = m0, m0 + 1, ...
            slide = (m > m0 - 1) & (y_bar[:, k] <= xs[:, k])
            stop = slide | (y_bar[:, k] < x_next[:, k])
            first = m0 - 1 + int(np.argmax(stop[m0 - 1:]))
            sliding[k] = bool(slide[first])
            rest[k] = xs[first, k] if sliding[k] else y_bar[first, k]
        else:  # falling through m = m0, m0 - 1, ..., 1
            inside = y_bar[:m0, k] >= xs[:m0, k]
            below = np.r_[False, y_bar[:m0 - 1, k] > xs[1:m0, k]]  # sliding on x_(m) when ȳ_{m-1} > x_(m)
            stop = inside | below
            stop[0] = True  # the last point released: frozen at x_(1)
            first = int(np.flatnonzero(stop).max())
            if inside[first]:
                rest[k] = y_bar[first, k]
            else:
                rest[k], sliding[k] = xs[first, k], first > 0
    return rest, sliding


def interference_point(point, rng_seed, *, n_per_cluster: int = 30, radius: float = 1.0, b_target_gap: float = 1.0,
                       t_end: float = 200.0) -> dict:
    """One point of the S5 phase diagram (for :func:`reluflow.pipeline.sweep.sweep`): solve and summarise.

    ``point`` holds ``separation`` (s) and ``target`` (h) of :func:`two_cluster_scenario`; the data
    come from ``rng_seed``. Returns numbers at t = ``t_end``: ``final_cost`` C_in, ``cost_a`` and
    ``cost_b`` (each cluster's share), ``a_collapsed`` (1 if every point of A is truncated in both
    coordinates), ``b_truncated`` (points of B truncated in some coordinate), ``threshold`` (θ_0),
    ``sliding`` (1 if a threshold rests on a point), ``equilibrium_residual`` (the largest of
    :func:`equilibrium_residual`), ``separated`` (1 if the target of A lies below every coordinate of
    every point of B), and, from the data alone (:func:`rest_point`), ``predicted_threshold`` (θ_0 at
    rest), ``rest_error`` (max_k |θ_k(t_rest) − predicted rest|, solved on to t_rest = max(t_end, 100 λ² N), when
    the slowest relaxation, of rate 1/(λ² N), has ended) and ``predicted_b_truncated`` (at the predicted rest).
    """
    from reluflow.dynamics.solver import solve

    point = as_mapping(point, "point", keys=("separation", "target"))
    t_end = as_positive_float(t_end, "t_end")
    try:
        sc = two_cluster_scenario(point["separation"], point["target"], n_per_cluster=n_per_cluster, radius=radius,
                                  b_target_gap=b_target_gap, seed=rng_seed)
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(("separation", "target ")):
            raise type(exc)(f"point: {exc}") from None
        raise
    X, lab = sc.data.points, sc.data.labels
    ds = solve(sc.net, X, sc.targets, [t_end], record_events=False)
    theta = ds.thresholds.isel(time=-1, layer=0).values
    r = np.maximum(X, theta) - sc.targets
    e = 0.5 * np.sum(r * r, axis=1) / X.shape[0]
    trunc = X <= theta
    pred, _ = rest_point(X, sc.targets, sc.net.thresholds[0])
    t_rest = 100.0 * X.shape[0] * float(sc.net.scales.max()) ** 2  # every relaxation rate is >= 1/(λ² N)
    theta_rest = solve(sc.net, X, sc.targets, [max(t_end, t_rest)], record_events=False).thresholds.values[-1, 0]
    return {
        "final_cost": float(ds.cost.values[-1]),
        "cost_a": float(e[lab == 0].sum()),
        "cost_b": float(e[lab == 1].sum()),
        "a_collapsed": int(trunc[lab == 0].all()),
        "b_truncated": int(trunc[lab == 1].any(axis=1).sum()),
        "threshold": float(theta[0]),
        "sliding": int(ds.sliding.isel(time=-1).values.any()),
        "equilibrium_residual": float(equilibrium_residual(X, sc.targets, theta).max()),
        "separated": int(sc.class_targets[0].max() < X[lab == 1].min()),
        "predicted_threshold": float(pred[0]),
        "rest_error": float(np.abs(theta_rest - pred).max()),
        "predicted_b_truncated": int((X[lab == 1] <= pred).any(axis=1).sum()),
    }


# --------------------------------------------------------------------------- measured rates


def exponential_rate(t, gap, where=None) -> float:
    """κ of gap(t) ≈ c e^{−κ t}: minus the least-squares slope of log gap against t over the mask ``where``.

    ``t`` and ``gap`` are 1-D of equal length, ``where`` a boolean mask (default: every point). The
    selected gaps must be positive and at least two, at two distinct times.
    """
    t = as_real_array(t, "t", ndim=1)
    gap = as_real_array(gap, "gap", ndim=1)
    if gap.shape != t.shape:
        raise ValueError(f"gap must have the shape of t {t.shape}; got {gap.shape}")
    sel = np.ones(t.shape, bool) if where is None else np.asarray(where, bool)
    if sel.shape != t.shape:
        raise ValueError(f"where must have the shape of t {t.shape}; got {sel.shape}")
    if np.unique(t[sel]).size < 2 or np.any(gap[sel] <= 0):
        raise ValueError(f"where must select at least two distinct times t, and gap must be positive at them; "
                         f"got {np.unique(t[sel]).size} distinct times, minimum gap {gap[sel].min(initial=np.inf):.3g}")
    return float(-np.polyfit(t[sel], np.log(gap[sel]), 1)[0])


@dataclass(frozen=True)
class TailRate:
    """The decay rate fitted on one coordinate's tail: ``rate`` (NaN when no window), the ``window`` mask.

    ``n_points`` is the number of output times in the window; ``usable`` says whether it reached the
    minimum asked of :func:`tail_rate` (otherwise ``rate`` is NaN and nothing was fitted).
    """

    rate: float
    window: np.ndarray
    n_points: int
    usable: bool


def tail_rate(t, gap, start, floor, *, min_points: int = 3) -> TailRate:
    """κ of gap(t) ≈ c e^{−κ t} over the window t ≥ ``start``, gap > ``floor``, if the data allow one.

    The window is chosen per coordinate from the data: ``start`` is the time from which the rate is
    expected to be constant (for example the first output time at which that coordinate has truncated
    every point), ``floor`` > 0 the smallest gap still well above the trajectory's error. When fewer
    than ``min_points`` output times qualify (``start`` is NaN or after the last time, or the gap has
    fallen below ``floor`` by then), nothing is fitted and ``rate`` is NaN with ``usable`` False: the
    caller must report that coordinate as not measurable, not crash on it.
    """
    t = as_real_array(t, "t", ndim=1)
    gap = as_real_array(gap, "gap", ndim=1)
    if gap.shape != t.shape:
        raise ValueError(f"gap must have the shape of t {t.shape}; got {gap.shape}")
    if isinstance(start, (bool, np.bool_)) or not isinstance(start, (int, float, np.integer, np.floating)):
        raise TypeError(f"start must be a real number (NaN: no start); got {type(start).__name__} {start!r}")
    floor = as_positive_float(floor, "floor")
    min_points = check_positive_int(min_points, "min_points", minimum=2)
    window = (t >= start) & (gap > floor) if np.isfinite(start) else np.zeros(t.shape, bool)
    n = int(np.unique(t[window]).size)
    if n < min_points:
        return TailRate(rate=float("nan"), window=window, n_points=n, usable=False)
    return TailRate(rate=exponential_rate(t, gap, window), window=window, n_points=n, usable=True)


def _event_times(solution, layer: int, k: int) -> np.ndarray:
    sel = (solution.event_layer.values == layer) & (solution.event_coordinate.values == k)
    return np.sort(solution.event_time.values[sel])


def event_time_error(solution, reference) -> float:
    """max |t_solution − t_reference| over the events of every (layer ℓ, coordinate k), each sorted in time.

    ``solution`` is a Dataset of :func:`reluflow.dynamics.solver.solve`. ``reference`` is another such
    Dataset, a sequence of :class:`OneClusterSolution` (one per coordinate of layer 1), or a mapping
    {(ℓ, k): OneClusterSolution} with layers counted from 0; an explicit solution's event at which
    several points cross counts once per point. Only the (ℓ, k) present in ``reference`` are compared,
    and only the events up to the horizon both describe: the solution's last time (and the reference's, for a
    Dataset), plus 1e-9 (1 + horizon) for an event that lands on it. An explicit solution goes on forever, so its
    events after the solution's end (a point just below the target, crossed at t = 61.6 of a run to t = 60:
    notebook 03, fast profile, seed 203) are not compared. Within the horizon the numbers of events must agree.
    """
    as_dataset(solution, "solution", ("event_layer", "event_coordinate", "event_time"))
    horizon = float(solution.time.values[-1]) if "time" in solution.coords else np.inf
    if isinstance(reference, xr.Dataset) and "time" in reference.coords:
        horizon = min(horizon, float(reference.time.values[-1]))
    horizon += 1e-9 * (1.0 + abs(horizon)) if np.isfinite(horizon) else 0.0
    if isinstance(reference, xr.Dataset):
        keys = {(int(ell) - 1, int(k)) for ds in (reference, solution)
                for ell, k in zip(ds.event_layer.values, ds.event_coordinate.values)}
        pairs = {key: _event_times(reference, key[0] + 1, key[1]) for key in keys}
    else:
        if not isinstance(reference, (dict, list, tuple)):
            raise TypeError(f"reference must be a solve Dataset, a sequence of OneClusterSolution or a mapping "
                            f"{{(layer, k): OneClusterSolution}}; got {type(reference).__name__}")
        items = reference.items() if isinstance(reference, dict) else (((0, k), e) for k, e in enumerate(reference))
        pairs = {}
        for key, e in items:
            if not isinstance(e, OneClusterSolution):
                raise TypeError(f"reference entries must be OneClusterSolution; got {type(e).__name__}")
            pairs[key] = np.repeat(e.event_time, e.event_count)
    worst = 0.0
    for (ell, k), ref in sorted(pairs.items()):
        got = _event_times(solution, ell + 1, k)
        got, ref = got[got <= horizon], ref[ref <= horizon]
        if got.size != ref.size:
            raise ValueError(f"layer {ell + 1}, coordinate {k}: {got.size} events in solution, {ref.size} in reference "
                             f"up to t = {horizon:.6g}")
        if got.size:
            worst = max(worst, float(np.abs(got - ref).max()))
    return worst

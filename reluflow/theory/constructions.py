"""The series' explicit constructions: zero-cost and local minimisers built from the data.

The statements are those of T. Chen and P. Muñoz Ewald, arXiv:2309.10639 (CE23), arXiv:2405.07098
(CE24), and P. Muñoz Ewald, arXiv:2504.18710 (Ewa25), as restated in the project's notes
(``COMPANION_PAPERS.md``). Everything here is our own implementation in the project's conventions:
points are rows (``X.shape == (N, M)``), ``labels`` are integers 0..Q-1, label vectors y_j are the
rows of ``Y`` (shape (Q, Q_out), default the identity), layer weights are (out, in).

**One cost convention.** Every cost here is the class-weighted sum
C_𝒩 = Σ_j (1/N_j) Σ_i |x^(out)_{j,i} − y_j|² of CE24 (:func:`class_weighted_cost`); CE23's cost is
its square root, √C_𝒩.

Map from statement to function:

- class means x̄_j, barycentre x̄, δ, f_j, c_0, θ_{*,j} → :func:`class_geometry`
- θ_n, λ(θ, θ_n), W_θ = R̃ diag(1, λ, …, λ) R̃ᵀ → :func:`widest_orthant_angle`, :func:`cone_squeeze`
- a rotation R with R a = b → :func:`rotation_to`
- CE23 Thm 2.3 (zero cost, M = Q, L ≥ Q); admissible μ-interval →
  :func:`ce23_global_minimum`, :func:`ce23_mu_interval`
- CE23 Thms 2.4, 2.5 (s ∈ {0,1}^Q, last layer by least squares) → :func:`ce23_local_minimum`
- the optimal last-layer value ‖Y|Δ_2|^{1/2}(1 + Δ_2)^{-1/2}‖² → :func:`ce23_closed_form_cost`
- the least-squares last layer (b^(L+1) = 0) → :func:`optimal_last_layer`
- CE24 Def 3.1 / Prop 3.2: τ_{W,b}(x) = W⁺(σ(Wx + b) − b), the chain →
  :func:`pinv_truncation_map`, :func:`rectangular_truncated_data`
- cumulative parameters for non-increasing widths, and back →
  :func:`rectangular_cumulative_parameters`, :func:`rectangular_layer_parameters`
- CE24 Lemma 3.3: the product of projectors (W^(ℓ))⁺W^(ℓ) → :func:`projector_chain`
- CE24 (2.14): C_𝒩 = within-class spread + mean mismatch → :func:`cost_decomposition`
- CE24 Prop 4.1 (zero cost with width reduction) → :func:`ce24_width_reduction`
- CE24 Def 5.1 / Thm 5.2: SLS checker (linprog) and the network →
  :func:`sls_order`, :func:`find_sls_order`, :func:`ce24_sls_network`
- Ewa25 Lemma 2.1: τ = W⁺Wp + Σ_{a_i>0} a_i v_i, and its converse → :func:`polyhedral_cone_form`, :func:`realise_cone`
- Ewa25 Lemma 2.2: σ(Wx + b) = W̃ τ_{W̃,b}(ιx) + b → :func:`lift_completion`
- Ewa25 Thm 3.3: a lift-and-truncate classifier for concentric data →
  :func:`concentric_classifier`, :func:`concentric_data`
- the plain network (ReLU hidden layers, affine last layer) → :func:`network_output`
- the 8×8 digits (UCI optdigits test set, as shipped by scikit-learn) → :func:`load_digits`

Every builder checks the theorem's assumptions on the data and raises a ``ValueError`` that names
the failed assumption; ``check=False`` builds the network anyway (the negative controls of
notebook 09). The geometric checks are *sufficient* cone conditions: a ball B_r(c) lies in the cone
p + C_θ[h] when ∠(c − p, h) + arcsin(r/|c − p|) ≤ θ/2.

The rectangular truncation maps (:func:`pinv_truncation_map`, :func:`rectangular_truncated_data`,
:func:`rectangular_cumulative_parameters`) call the shared implementation in
:mod:`reluflow.theory.generic`, which also states when the representation fails (a widening layer).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from reluflow.results.intervals import wilson_interval
from reluflow.theory import generic
from reluflow.theory.network import forward, haar_orthogonal
from reluflow.validation import as_labels, as_points, as_real, as_real_array, check_positive_int

__all__ = [
    "ClassGeometry", "class_geometry", "widest_orthant_angle", "squeeze_factor", "cone_squeeze", "rotation_to",
    "Construction", "network_output", "class_weighted_cost", "optimal_last_layer", "ce23_closed_form_cost",
    "ce23_mu_interval", "ce23_global_minimum", "ce23_local_minimum", "pinv_truncation_map",
    "rectangular_truncated_data", "rectangular_cumulative_parameters", "rectangular_layer_parameters",
    "projector_chain", "cost_decomposition", "ce24_width_reduction", "SLSResult", "sls_order", "find_sls_order",
    "ce24_sls_network", "polyhedral_cone_form", "realise_cone", "lift_completion", "concentric_classifier",
    "concentric_data", "clustered_classes", "perturbation_curve", "load_digits", "DIGITS_SHA256", "ce23_draw",
    "admissible_draw", "descent_outcome", "ball_samples", "class_states", "wilson_interval", "random_surjection",
]

#: SHA-256 of the shipped digits file (``digits_8x8.csv.gz``; provenance in ``digits_8x8.md``).
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"

_RANK_TOL = 1e-10


# --------------------------------------------------------------------------------------------------------------
# Data geometry


@dataclass(frozen=True)
class ClassGeometry:
    """The shared notation of the series for classified data (rows = classes)."""

    means: np.ndarray  # (Q, M) class means x̄_j
    barycentre: np.ndarray  # (M,) x̄ = (1/Q) Σ_j x̄_j (not the mean of all the data)
    counts: np.ndarray  # (Q,) N_j
    deviations: np.ndarray  # (N, M) Δx_{j,i} = x_{j,i} − x̄_j
    delta: float  # δ = sup |Δx_{j,i}|
    directions: np.ndarray  # (Q, M) f_j = (x̄ − x̄_j)/|x̄ − x̄_j|
    distances: np.ndarray  # (Q,) |x̄_j − x̄|
    c0: float  # δ / min_j |x̄_j − x̄|, the clustering constant of the data
    theta_star: np.ndarray  # (Q,) θ_{*,j}, full opening angles (π when no cone < π fits)

    @property
    def n_classes(self) -> int:
        return int(self.means.shape[0])


def _labels(labels, N, n_classes=None):
    lab = as_labels(labels, "labels", n_classes=n_classes)
    if lab.shape != (N,):
        raise ValueError(f"labels must have shape ({N},) like the rows of X; got shape {lab.shape}")
    Q = int(lab.max()) + 1 if n_classes is None else n_classes
    counts = np.bincount(lab, minlength=Q)
    if np.any(counts == 0):
        raise ValueError(f"labels must use every class 0..{Q - 1}; classes {np.flatnonzero(counts == 0).tolist()} "
                         "are empty")
    return lab, counts


def _angle(u, v):
    """Angles between the rows of u and v (broadcast), in [0, π]."""
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    den = nu * nv
    c = np.sum(u * v, axis=-1) / np.where(den > 0, den, 1.0)
    return np.arccos(np.clip(c, -1.0, 1.0))


def _ball_half_angle(apex, axis, centre, radius):
    """Half-angle of the narrowest cone apex + C[axis] that holds B_radius(centre) (π/2·2 = π if none)."""
    d = centre - apex
    dist = np.linalg.norm(d, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = np.where(dist > radius, np.arcsin(np.clip(radius / np.where(dist > 0, dist, 1.0), 0, 1)), np.pi)
    return np.minimum(_angle(d, np.broadcast_to(axis, d.shape)) + extra, np.pi)


def class_geometry(X, labels) -> ClassGeometry:
    """Means, barycentre, δ, directions f_j, the clustering constant c_0 and the angles θ_{*,j}.

    θ_{*,j} is the smallest full angle with x̄_j + C_θ[f_j] ⊃ ∪_{j'≠j} B_{4δ}(x̄_{j'}) (π if none).
    """
    X = as_points(X, "X")
    lab, counts = _labels(labels, X.shape[0])
    Q = counts.size
    if Q < 2:
        raise ValueError(f"labels must name at least 2 classes; got {Q}")
    means = np.zeros((Q, X.shape[1]))
    np.add.at(means, lab, X)
    means /= counts[:, None]
    bary = means.mean(axis=0)
    dev = X - means[lab]
    delta = float(np.linalg.norm(dev, axis=1).max())
    to_bary = bary - means
    dist = np.linalg.norm(to_bary, axis=1)
    if np.any(dist <= 0):
        raise ValueError("class means must differ from their barycentre (assumption: x̄_j ≠ x̄)")
    f = to_bary / dist[:, None]
    half = _ball_half_angle(means[:, None, :], f[:, None, :], means[None, :, :], 4 * delta)
    half[np.arange(Q), np.arange(Q)] = 0.0
    theta_star = np.minimum(2 * half.max(axis=1), np.pi)
    return ClassGeometry(means, bary, counts, dev, delta, f, dist, delta / dist.min(), theta_star)


# --------------------------------------------------------------------------------------------------------------
# Cones, squeezes and rotations


def widest_orthant_angle(n: int) -> float:
    """θ_n = 2 arccos √((n−1)/n), the full angle of the widest cone around u_n = (1,…,1) inside R^n_+."""
    n = check_positive_int(n, "n")
    return float(2 * np.arccos(np.sqrt((n - 1) / n)))


def squeeze_factor(theta: float, n: int) -> float:
    """λ(θ, θ_n) = tan(θ_n/2)/tan(θ/2) if θ > θ_n, else 1."""
    theta = as_real(theta, "theta", minimum=0.0, maximum=np.pi, strict=False)
    if not 0 < theta < np.pi:
        raise ValueError(f"theta must lie in (0, π); got {theta!r}")
    tn = widest_orthant_angle(n)
    return float(np.tan(tn / 2) / np.tan(theta / 2)) if theta > tn else 1.0


def cone_squeeze(theta: float, n: int) -> np.ndarray:
    """W_θ = R̃ diag(1, λ, …, λ) R̃ᵀ with R̃e_1 = u_n/|u_n|: maps C_θ[u_n] into C_{θ_n}[u_n] ⊂ R^n_+.

    Written as W_θ = λ·1 + (1 − λ) ûûᵀ with û = u_n/|u_n| (the same matrix, no R̃ needed).
    """
    lam = squeeze_factor(theta, n)
    u = np.full(n, 1 / np.sqrt(n))
    return lam * np.eye(n) + (1 - lam) * np.outer(u, u)


def rotation_to(a, b, *, seed=None) -> np.ndarray:
    """A rotation R ∈ SO(n) with R a/|a| = b/|b|.

    Without ``seed``: the rotation in the plane of a and b (the identity on its complement). With a
    ``seed``, it is composed with a random rotation that fixes a (a draw from the degenerate family).
    """
    a = as_real_array(a, "a", ndim=1)
    b = as_real_array(b, "b", ndim=1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be vectors of one length ≥ 2; got shapes {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("a and b must be non-zero")
    a, b = a / na, b / nb
    n = a.size
    # two reflections: H_b H_c with c = a + b (or any vector ⟂ a when a = −b)
    c = a + b
    if np.linalg.norm(c) < 1e-12:
        e = np.eye(n)[np.argmin(np.abs(a))]
        c = e - (e @ a) * a
    c /= np.linalg.norm(c)
    Hc = np.eye(n) - 2 * np.outer(c, c)  # Hc a = −b
    Hb = np.eye(n) - 2 * np.outer(b, b)  # Hb (−b) = b
    R = Hb @ Hc
    if seed is not None:
        G = haar_orthogonal(np.random.default_rng(seed), n - 1)
        if np.linalg.det(G) < 0:
            G[:, 0] *= -1
        basis = np.linalg.qr(np.column_stack([a, np.eye(n)]))[0]  # first column ±a
        basis[:, 0] = a
        S = np.eye(n)
        S[1:, 1:] = G
        R = R @ (basis @ S @ basis.T)
    return R


# --------------------------------------------------------------------------------------------------------------
# The plain network, its cost, and the least-squares last layer


def network_output(weights, biases, X) -> np.ndarray:
    """The plain network: ReLU hidden layers ``weights[:-1]``, then the affine last layer ``weights[-1]``."""
    if len(weights) < 2 or len(biases) != len(weights):
        raise ValueError("weights and biases must list ≥ 2 layers each (hidden layers, then the last layer)")
    h = forward(weights[:-1], biases[:-1], X)[-1]
    W, b = as_real_array(weights[-1], "weights[-1]", ndim=2), as_real_array(biases[-1], "biases[-1]", ndim=1)
    return h @ W.T + b


def _label_matrix(Y, Q):
    if Y is None:
        return np.eye(Q)
    Y = as_real_array(Y, "Y", ndim=2)
    if Y.shape[0] != Q:
        raise ValueError(f"Y must have one row y_j per class, shape ({Q}, Q_out); got {Y.shape}")
    if np.linalg.matrix_rank(Y, tol=_RANK_TOL * max(1.0, np.abs(Y).max())) < Q:
        raise ValueError("Y: the labels y_j must be linearly independent (assumption of the series)")
    return Y


def class_weighted_cost(outputs, labels, Y=None) -> float:
    """C_𝒩 = Σ_j (1/N_j) Σ_i |x^(out)_{j,i} − y_j|² (CE24's class-weighted cost; CE23's is its square root)."""
    out = as_points(outputs, "outputs")
    lab, counts = _labels(labels, out.shape[0])
    Y = _label_matrix(Y, counts.size)
    if Y.shape[1] != out.shape[1]:
        raise ValueError(f"outputs must have {Y.shape[1]} columns like Y; got {out.shape}")
    return float(np.sum(np.sum((out - Y[lab]) ** 2, axis=1) / counts[lab]))


def optimal_last_layer(Z, labels, Y=None) -> np.ndarray:
    """The W (Q_out, M) minimising Σ_j (1/N_j) Σ_i |W z_{j,i} − y_j|², bias 0, by weighted least squares."""
    Z = as_points(Z, "Z")
    lab, counts = _labels(labels, Z.shape[0])
    Y = _label_matrix(Y, counts.size)
    w = 1 / np.sqrt(counts[lab])
    return np.linalg.lstsq(Z * w[:, None], Y[lab] * w[:, None], rcond=None)[0].T


def ce23_closed_form_cost(Z, labels, Y=None) -> float:
    """The optimal last-layer value tr(Y_c Δ_2 (1 + Δ_2)^{-1} Y_cᵀ) = ‖Y_c|Δ_2|^{1/2}(1 + Δ_2)^{-1/2}‖_F²
    (CE23 cost squared), with Δ_1 = (Z^red)^{-1} ΔZ and Δ_2 = Δ_1 𝒩^{-1} Δ_1ᵀ, for M = Q and b^(L+1) = 0.

    Y_c = Yᵀ holds the labels as columns. Derived separately from :func:`optimal_last_layer`: with
    W = A (Z^red)^{-1} the cost is ‖A − Y_c‖² + tr(A Δ_2 Aᵀ), minimised by A = Y_c (1 + Δ_2)^{-1}.
    """
    geom = class_geometry(Z, labels)
    Q, M = geom.means.shape
    if M != Q:
        raise ValueError(f"Z must have M = Q = {Q} columns (the square setting of CE23); got {M}")
    Y = _label_matrix(Y, Q)
    D1 = np.linalg.solve(geom.means.T, geom.deviations.T)  # (Q, N)
    lab = np.asarray(labels)
    D2 = (D1 / geom.counts[lab]) @ D1.T
    Yc = Y.T
    return float(np.trace(Yc @ D2 @ np.linalg.solve(np.eye(Q) + D2, Yc.T)))


# --------------------------------------------------------------------------------------------------------------
# Constructions


@dataclass(frozen=True)
class Construction:
    """An explicit network: layer parameters, cumulative parameters and what the theorem predicts.

    ``weights``/``biases`` list the hidden layers and then the last (affine) layer, so
    :func:`network_output` evaluates it. ``Wc``/``bc`` are the cumulative parameters of the hidden
    layers, ``W_last`` the cumulative last-layer weight (bias 0). ``points[j]`` is where the theorem
    sends class j in input space (its collapsed point, or its mean when left intact).
    """

    theorem: str
    weights: list
    biases: list
    Wc: list
    bc: list
    W_last: np.ndarray
    points: np.ndarray
    collapsed: np.ndarray  # (Q,) bool: class j is collapsed to points[j]
    mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    apexes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    assumptions: dict = field(default_factory=dict)

    def output(self, X) -> np.ndarray:
        return network_output(self.weights, self.biases, X)

    def truncated(self, X) -> np.ndarray:
        """x^(τ,L): the data after the hidden layers, seen in input space (CE24 Prop 3.2 chain)."""
        return rectangular_truncated_data(self.Wc, self.bc, X)[-1]


def _require(ok, name, detail, check):
    if check and not ok:
        raise ValueError(f"assumption violated: {name} ({detail})")
    return bool(ok)


def _cone_report(geom, apexes, axes, half_angle, collapsed, points, order):
    """Worst slack of the sufficient cone conditions, layer by layer in ``order``.

    At layer ℓ (class order[ℓ]): every class not yet reached keeps B_δ(x̄_j) in the forward cone,
    every class already collapsed keeps its point there, every class already reached but intact keeps
    its ball there. Returns the largest (half-angle needed) − (half-angle available); ≤ 0 means satisfied.
    """
    Q = geom.n_classes
    pos = np.empty(Q, int)
    pos[list(order)] = np.arange(Q)
    A, H = apexes[:, None, :], axes[:, None, :]  # layer ℓ along axis 0, class j along axis 1
    need_ball = _ball_half_angle(A, H, geom.means[None, :, :], geom.delta)
    need_point = _ball_half_angle(A, H, points[None, :, :], 0.0)
    use_point = (pos[None, :] < pos[:, None]) & np.asarray(collapsed, bool)[None, :]
    need = np.where(use_point, need_point, need_ball) - np.asarray(half_angle)[:, None]
    need[np.arange(Q), np.arange(Q)] = -np.inf
    return float(need.max())


def _cumulative_to_layers(Wc, bc, W_last):
    weights, biases = rectangular_layer_parameters(Wc, bc)
    W_out = W_last @ np.linalg.pinv(Wc[-1])
    return weights + [W_out], biases + [-W_out @ bc[-1]]


def ce23_mu_interval(X, labels, *, theta0=None) -> tuple[float, float, float]:
    """CE23's admissible interval for |μ|: (2δ√Q, D), and θ_*.

    D is the largest common |μ| for which the sufficient cone conditions hold for every layer, whichever
    classes are collapsed (so it serves Theorems 2.3 and 2.5 alike; found
    by bisection; the conditions only get harder as |μ| grows, since the apex x̄_ℓ + |μ| f_ℓ moves
    along the cone's axis). Raises if the clustering assumption fails or the interval is empty.
    """
    geom = class_geometry(X, labels)
    theta_s = _theta_star(geom, theta0, True)
    Q = geom.n_classes
    lo = 2 * geom.delta * np.sqrt(Q)

    H = geom.directions[:, None, :]
    off = ~np.eye(Q, dtype=bool)

    def slack(D):  # every other class, collapsed (its point) or intact (its ball): any s
        pts = geom.means + D * geom.directions
        need_b = _ball_half_angle(pts[:, None, :], H, geom.means[None, :, :], geom.delta)
        need_p = _ball_half_angle(pts[:, None, :], H, pts[None, :, :], 0.0)
        return float(np.maximum(need_b, need_p)[off].max() - theta_s / 2)

    hi = float(geom.distances.min())
    if slack(lo) > 0:
        raise ValueError(f"assumption violated: admissible μ-interval (−D, −2δ√Q) is empty (clusters too wide: "
                         f"δ = {geom.delta:.3g}, 2δ√Q = {lo:.3g}, c_0 = {geom.c0:.3g})")
    if slack(hi) <= 0:
        return lo, hi, theta_s
    a, b = lo, hi
    for _ in range(30):  # D to a relative 1e-9 of the bracket
        m = 0.5 * (a + b)
        a, b = (m, b) if slack(m) <= 0 else (a, m)
    return lo, a, theta_s


def _theta_star(geom, theta0, check, c0_max=0.25):
    _require(geom.c0 < c0_max, "clustering δ < c_0 min_j |x̄_j − x̄| with c_0 < 1/4",
             f"the data have c_0 = {geom.c0:.3g}", check)
    tmax = float(geom.theta_star.max())
    _require(tmax < np.pi, "max_j θ_{*,j} < π", f"got {tmax:.4g}", check)
    if theta0 is None:
        theta0 = 0.5 * (np.pi - min(tmax, np.pi - 1e-3))
    theta0 = as_real(theta0, "theta0", minimum=0.0, strict=True)
    ts = tmax + theta0
    _require(ts < np.pi, "θ_* = θ_0 + max_j θ_{*,j} < π", f"got {ts:.4g}", check)
    return min(ts, np.pi - 1e-6)


def _ce23_build(X, labels, Y, mu, L, theta0, seed, check, theorem):
    X = as_points(X, "X")
    geom = class_geometry(X, labels)
    Q, M = geom.means.shape
    if M != Q:
        raise ValueError(f"X must have M = Q = {Q} columns (CE23 works with square weights); got M = {M}")
    Y = _label_matrix(Y, Q)
    L = Q if L is None else check_positive_int(L, "L")
    if L < Q:
        raise ValueError(f"L must be ≥ Q = {Q} (one layer per class); got {L}")
    theta_s = _theta_star(geom, theta0, check)
    mu = as_real_array(mu, "mu", ndim=1)
    if mu.shape != (Q,):
        raise ValueError(f"mu must have shape ({Q},); got {mu.shape}")
    rng = np.random.default_rng(seed)
    W_star = cone_squeeze(theta_s, Q)
    u = np.full(Q, 1 / np.sqrt(Q))
    Wc, bc = [], []
    for ell in range(Q):
        R = rotation_to(geom.directions[ell], u, seed=rng.integers(2**32) if seed is not None else None)
        W = W_star @ R
        Wc.append(W)
        bc.append(-W @ geom.means[ell] + mu[ell] * (R @ geom.directions[ell]))
    for _ in range(L - Q):  # further layers: positive diagonal times a permutation (keeps R^Q_+ fixed)
        P = np.eye(Q)[rng.permutation(Q)] * rng.uniform(0.5, 2.0, Q)[:, None]
        Wc.append(P @ Wc[-1])
        bc.append(P @ bc[-1])
    collapsed = mu < 0
    pts = np.where(collapsed[:, None], geom.means - mu[:, None] * geom.directions, geom.means)
    apexes = geom.means - mu[:, None] * geom.directions
    lo = 2 * geom.delta * np.sqrt(Q)
    report = dict(c0=geom.c0, theta_star=theta_s, delta=geom.delta, mu_lower=lo)
    report["mu_outside_2delta_sqrtQ"] = _require(np.all(np.abs(mu) > lo), "|μ_ℓ| > 2δ√Q (μ in I_0 or I_1)",
                                                 f"min |μ| = {np.abs(mu).min():.3g}, 2δ√Q = {lo:.3g}", check)
    slack = _cone_report(geom, apexes, geom.directions, np.full(Q, theta_s / 2), collapsed, pts, range(Q))
    report["cone_slack"] = slack
    report["cones"] = _require(slack <= 0, "μ_ℓ > −D: the other clusters stay in each forward cone",
                               f"cone condition exceeded by {slack:.3g} rad", check)
    return geom, Y, Wc, bc, pts, collapsed, apexes, report


def ce23_global_minimum(X, labels, Y=None, *, mu=None, L=None, theta0=None, seed=None,
                        check: bool = True) -> Construction:
    """CE23 Theorem 2.3: the cone construction with zero cost (M = Q, L ≥ Q).

    W^(ℓ) = W_{θ_*} R_ℓ, b^(ℓ) = −W^(ℓ) x̄_ℓ + μ_ℓ R_ℓ f_ℓ with R_ℓ f_ℓ = u/|u| and μ_ℓ ∈ (−D, −2δ√Q);
    the cumulative last layer Y_c (X̄^red[μ])^{-1} with X̄^red[μ] = [x̄_j − μ_j f_j], bias 0. Layer ℓ
    collapses class ℓ onto x̄_ℓ − μ_ℓ f_ℓ. ``mu`` defaults to the midpoint of the admissible interval;
    ``seed`` draws the rotations from the degenerate family (fixed rotation without it).
    """
    if mu is None:
        lo, D, _ = ce23_mu_interval(X, labels, theta0=theta0) if check else (0, 0, 0)
        Q = class_geometry(X, labels).n_classes
        mu = np.full(Q, -0.5 * (lo + D))
    geom, Y, Wc, bc, pts, collapsed, apexes, rep = _ce23_build(X, labels, Y, mu, L, theta0, seed, check, "2.3")
    if check and not np.all(collapsed):
        raise ValueError("mu: Theorem 2.3 needs every μ_ℓ < 0 (use ce23_local_minimum for μ_ℓ > 0)")
    Xred = pts.T
    _require(np.linalg.matrix_rank(Xred) == Xred.shape[0], "X̄^red[μ] has full rank Q", "it is singular", check)
    W_last = Y.T @ np.linalg.pinv(Xred)
    weights, biases = _cumulative_to_layers(Wc, bc, W_last)
    return Construction("CE23 Thm 2.3", weights, biases, Wc, bc, W_last, pts, collapsed, np.asarray(mu, float),
                        apexes, rep)


def ce23_local_minimum(X, labels, s, Y=None, *, mu=None, theta0=None, seed=None, check: bool = True) -> Construction:
    """CE23 Theorems 2.4 (s = 1…1) and 2.5 (any s ≠ 0): class j collapsed if s_j = 0, left intact if s_j = 1.

    μ_j ∈ I_0 = (−D, −2δ√Q) when s_j = 0 and μ_j ∈ I_1 = (2δ√Q, ∞) when s_j = 1 (L = Q). The last
    layer is the least-squares optimum on x^(τ,L) with b^(L+1) = 0 (:func:`optimal_last_layer`).
    ``mu`` defaults to ∓ the midpoint of (2δ√Q, D).
    """
    geom = class_geometry(X, labels)
    Q = geom.n_classes
    s = np.asarray(s)
    if s.shape != (Q,) or not np.all((s == 0) | (s == 1)):
        raise ValueError(f"s must be a 0/1 vector of length {Q}; got {s!r}")
    if mu is None:
        lo, D, _ = ce23_mu_interval(X, labels, theta0=theta0)
        mu = np.where(s == 1, 1.0, -1.0) * 0.5 * (lo + D)
    mu = as_real_array(mu, "mu", ndim=1)
    if check and mu.shape == (Q,) and np.any((mu > 0) != (s == 1)):
        raise ValueError("mu: its signs must follow s (μ_j > 0 exactly when s_j = 1)")
    geom, Y, Wc, bc, pts, collapsed, apexes, rep = _ce23_build(X, labels, Y, mu, Q, theta0, seed, check, "2.5")
    Z = rectangular_truncated_data(Wc, bc, X)[-1]
    W_last = optimal_last_layer(Z, labels, Y)
    weights, biases = _cumulative_to_layers(Wc, bc, W_last)
    name = "CE23 Thm 2.4" if np.all(s == 1) else "CE23 Thm 2.5"
    return Construction(name, weights, biases, Wc, bc, W_last, pts, collapsed, mu, apexes, rep)


# --------------------------------------------------------------------------------------------------------------
# CE24: rectangular truncation maps


def _full_row_rank(W, name):
    W = as_real_array(W, name, ndim=2)
    if W.shape[0] > W.shape[1] or np.linalg.matrix_rank(W) < W.shape[0]:
        raise ValueError(f"{name} must have full row rank (surjective, out ≤ in); got shape {W.shape} of rank "
                         f"{np.linalg.matrix_rank(W)}")
    return W


# τ_{W,b}(x) = W⁺(σ(Wx + b) − b): the one implementation lives in reluflow.theory.generic (re-exported here).
pinv_truncation_map = generic.pinv_truncation_map


def rectangular_cumulative_parameters(weights, biases):
    """W^(ℓ) = W_ℓ ⋯ W_1, b^(ℓ) = W_ℓ b^(ℓ−1) + b_ℓ for surjective W_ℓ of non-increasing widths.

    :func:`reluflow.theory.generic.general_cumulative_parameters` with ``surjective=True``.
    """
    return generic.general_cumulative_parameters(weights, biases, surjective=True)


def rectangular_layer_parameters(Wc, bc):
    """Back from cumulative parameters: W_ℓ = W^(ℓ)(W^(ℓ−1))⁺, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ−1).

    Needs the rows of W^(ℓ) in the row space of W^(ℓ−1) (so that W_ℓ W^(ℓ−1) = W^(ℓ)); raises otherwise.
    """
    weights, biases = [], []
    for i, (W, b) in enumerate(zip(Wc, bc)):
        W = _full_row_rank(W, f"Wc[{i}]")
        if not weights:
            weights.append(W)
            biases.append(np.asarray(b, float))
            continue
        prev = Wc[i - 1]
        Wl = W @ np.linalg.pinv(prev)
        err = np.abs(Wl @ prev - W).max()
        if err > 1e-12 * np.linalg.cond(prev) * max(1.0, np.abs(W).max()):  # round-off grows with cond
            raise ValueError(f"Wc[{i}]: its rows must lie in the row space of Wc[{i - 1}] (error {err:.3g})")
        weights.append(Wl)
        biases.append(np.asarray(b, float) - Wl @ np.asarray(bc[i - 1], float))
    return weights, biases


def rectangular_truncated_data(Wc, bc, X) -> list[np.ndarray]:
    """[x^(τ,1), …, x^(τ,L)], x^(τ,ℓ) = τ_{W^(ℓ),b^(ℓ)}(x^(τ,ℓ−1)) with pseudo-inverses (CE24 Prop 3.2).

    :func:`reluflow.theory.generic.pinv_truncated_data` without its first entry x^(τ,0) = X.
    """
    return generic.pinv_truncated_data(Wc, bc, X)[1:]


def projector_chain(Wc) -> tuple[np.ndarray, np.ndarray]:
    """CE24 Lemma 3.3: the product (W^(ℓ))⁺W^(ℓ) ⋯ (W^(1))⁺W^(1), and (W^(ℓ))⁺W^(ℓ), for ℓ = L."""
    P = None
    for i, W in enumerate(Wc):
        W = as_real_array(W, f"Wc[{i}]", ndim=2)
        Pi = np.linalg.pinv(W) @ W
        P = Pi if P is None else Pi @ P
    return P, np.linalg.pinv(Wc[-1]) @ Wc[-1]


def cost_decomposition(Wc, bc, W_last, b_last, X, labels, Y=None) -> tuple[float, float]:
    """CE24 (2.14): C_𝒩 = Σ_j (1/N_j) Σ_i |W^(L) Δx^(τ)_{j,i}|² + Σ_j |W^(L) x̄^(τ)_j + b^(L) − y_j|².

    Here ``Wc, bc`` are the hidden cumulative parameters, ``W_last, b_last`` the cumulative last layer,
    and x^(τ) = x^(τ,L−1) (the data after the hidden layers). Returns (spread term, mean term).
    """
    Z = rectangular_truncated_data(Wc, bc, X)[-1]
    lab, counts = _labels(labels, Z.shape[0])
    Y = _label_matrix(Y, counts.size)
    W_last = as_real_array(W_last, "W_last", ndim=2)
    means = np.zeros((counts.size, Z.shape[1]))
    np.add.at(means, lab, Z)
    means /= counts[:, None]
    dev = (Z - means[lab]) @ W_last.T
    spread = float(np.sum(np.sum(dev**2, axis=1) / counts[lab]))
    mismatch = float(np.sum((means @ W_last.T + b_last - Y) ** 2))
    return spread, mismatch


def ce24_width_reduction(X, labels, widths=None, Y=None, *, mu=None, theta0=None, seed=None,
                         check: bool = True) -> Construction:
    """CE24 Proposition 4.1: zero cost with L = Q + 1 layers and non-increasing widths M ≥ d_1 ≥ … ≥ d_Q ≥ Q.

    Our realisation: an orthonormal basis V of R^M whose first Q columns span the class means;
    W^(ℓ) = W_{θ_*} R_ℓ V_ℓᵀ with V_ℓ = V[:, :d_ℓ], R_ℓ ∈ SO(d_ℓ), R_ℓ V_ℓᵀ f_ℓ = u/|u| (this is
    I(M, d_ℓ) W R_ℓ' with W a squeeze on the first d_ℓ coordinates), b^(ℓ) = −W^(ℓ)(x̄_ℓ + μ_ℓ f_ℓ),
    μ_ℓ ∈ (2δ, 3δ). The nested row spaces make the layer weights W_ℓ = W^(ℓ)(W^(ℓ−1))⁺ surjective.
    The last layer is Y_c ((X̄^red)^(τ,Q))⁺, bias 0. Class ℓ collapses onto x̄_ℓ + μ_ℓ f_ℓ.
    """
    X = as_points(X, "X")
    geom = class_geometry(X, labels)
    Q, M = geom.means.shape
    Y = _label_matrix(Y, Q)
    widths = [M] * Q if widths is None else [check_positive_int(d, "widths") for d in widths]
    if len(widths) != Q or any(d > M for d in widths) or any(a < b for a, b in zip(widths, widths[1:])) \
            or widths[-1] < Q:
        raise ValueError(f"widths must list Q = {Q} non-increasing widths with M = {M} ≥ d_1 ≥ … ≥ d_Q ≥ Q; "
                         f"got {widths}")
    rng = np.random.default_rng(seed)
    if mu is None:
        mu = geom.delta * rng.uniform(2.05, 2.95, Q)
    mu = as_real_array(mu, "mu", ndim=1)
    if mu.shape != (Q,):
        raise ValueError(f"mu must have shape ({Q},); got {mu.shape}")
    rep = dict(c0=geom.c0, delta=geom.delta)
    rep["mu_in_2delta_3delta"] = _require(np.all((mu > 2 * geom.delta) & (mu < 3 * geom.delta)),
                                          "μ_ℓ ∈ (2δ, 3δ)", f"μ/δ = {np.round(mu / geom.delta, 3).tolist()}", check)
    theta_s = _theta_star(geom, theta0, check)
    pts = geom.means + mu[:, None] * geom.directions
    slack = _cone_report(geom, pts, geom.directions, np.full(Q, theta_s / 2), np.ones(Q, bool), pts, range(Q))
    back = max(float(np.arcsin(min(1.0, geom.delta / m))) for m in mu) - theta_s / 2
    rep.update(theta_star=theta_s, cone_slack=slack, backward_slack=back)
    _require(slack <= 0, "the other clusters stay in each forward cone (c_0 small enough)",
             f"cone condition exceeded by {slack:.3g} rad", check)
    _require(back <= 0, "each cluster lies in its layer's backward cone", f"exceeded by {back:.3g} rad", check)
    Vm = np.linalg.qr(np.column_stack([geom.means.T, rng.standard_normal((M, M))]))[0]
    Wc, bc = [], []
    for ell, d in enumerate(widths):
        V = Vm[:, :d]
        u = np.full(d, 1 / np.sqrt(d))
        R = rotation_to(V.T @ geom.directions[ell], u, seed=rng.integers(2**32))
        W = cone_squeeze(theta_s, d) @ R @ V.T
        Wc.append(W)
        bc.append(-W @ pts[ell])
    Zred = rectangular_truncated_data(Wc, bc, geom.means)[-1]  # (X̄^red)^(τ,Q), rows
    rank = np.linalg.matrix_rank(Zred)
    _require(rank == Q, "(X̄^red)^(τ,Q) has full rank Q", f"rank {rank}", check)
    W_last = Y.T @ np.linalg.pinv(Zred.T)
    weights, biases = _cumulative_to_layers(Wc, bc, W_last)
    return Construction("CE24 Prop 4.1", weights, biases, Wc, bc, W_last, pts, np.ones(Q, bool), mu, pts, rep)


# --------------------------------------------------------------------------------------------------------------
# CE24: sequentially linearly separable data


@dataclass(frozen=True)
class SLSResult:
    """The outcome of :func:`sls_order`: whether ``order`` is SLS, and if so the points p_j, normals h_j."""

    order: tuple
    separable: bool
    failed_at: int  # position in ``order`` of the first class that cannot be separated (−1 if none)
    points: np.ndarray  # (Q, M) p_j on the open segment (x̄_j, x̄), by class (NaN where not found)
    normals: np.ndarray  # (Q, M) unit normals h_j pointing away from class j
    segment_t: np.ndarray  # (Q,) p_j = x̄_j + t_j (x̄ − x̄_j), t_j ∈ (0, 1)


def _separating_hyperplane(inside, outside, mean, bary):
    """LP: w·x ≤ β − 1 on ``inside``, w·x ≥ β + 1 on ``outside`` and at the barycentre (scale-free margins)."""
    from scipy.optimize import linprog

    M = inside.shape[1]
    A = np.vstack([np.column_stack([inside, -np.ones(len(inside))]),
                   np.column_stack([-outside, np.ones(len(outside))]),
                   np.append(-bary, 1.0)[None, :]])
    rhs = -np.ones(A.shape[0])
    res = linprog(np.zeros(M + 1), A_ub=A, b_ub=rhs, bounds=[(None, None)] * (M + 1), method="highs")
    if res.status != 0:
        return None
    w, beta = res.x[:M], res.x[M]
    t = (beta - w @ mean) / (w @ (bary - mean))
    return w, beta, t


def sls_order(X, labels, order=None) -> SLSResult:
    """CE24 Definition 5.1: is ``order`` (a permutation of the classes) sequentially linearly separable?

    For each j in turn, a linear programme (``scipy.optimize.linprog``, HiGHS) looks for a hyperplane
    that separates class j from the later classes and from the earlier points p_i, with x̄ on the far
    side; it crosses the open segment (x̄_j, x̄) at p_j. Feasibility with margins 1 is equivalent to
    strict separation (the constraints are homogeneous in (w, β)).

    A separable result is a certificate (the points and normals are returned). A failure at position 0
    is a proof that no order starting with that class is SLS; a later failure is a proof only for the
    points p_i the earlier programmes picked (Definition 5.1 allows any p_i on their segments).
    """
    geom = class_geometry(X, labels)
    X = np.asarray(X, float)
    lab = np.asarray(labels)
    Q, M = geom.means.shape
    order = tuple(range(Q)) if order is None else tuple(int(j) for j in order)
    if sorted(order) != list(range(Q)):
        raise ValueError(f"order must be a permutation of 0..{Q - 1}; got {order}")
    P = np.full((Q, M), np.nan)
    H = np.full((Q, M), np.nan)
    T = np.full(Q, np.nan)
    for pos, j in enumerate(order):
        later = np.isin(lab, order[pos + 1:])
        outside = np.vstack([X[later], P[list(order[:pos])]]) if pos else X[later]
        sol = _separating_hyperplane(X[lab == j], outside, geom.means[j], geom.barycentre)
        if sol is None:
            return SLSResult(order, False, pos, P, H, T)
        w, beta, t = sol
        T[j] = t
        P[j] = geom.means[j] + t * (geom.barycentre - geom.means[j])
        H[j] = w / np.linalg.norm(w)
    return SLSResult(order, True, -1, P, H, T)


def find_sls_order(X, labels, *, orders="greedy"):
    """An SLS order of the classes, or None.

    ``orders="all"`` tries every permutation (Q! of them) and returns the list of those that are SLS;
    ``"greedy"`` builds one order by taking, at each step, the first remaining class that can be
    separated (returns an :class:`SLSResult` for that order, separable or not).
    """
    geom = class_geometry(X, labels)
    Q = geom.n_classes
    if orders == "all":
        return [o for o in itertools.permutations(range(Q)) if sls_order(X, labels, o).separable]
    if orders != "greedy":
        raise ValueError(f"orders must be 'all' or 'greedy'; got {orders!r}")
    chosen = []
    for _ in range(Q):
        rest = [j for j in range(Q) if j not in chosen]
        for j in rest:
            trial = tuple(chosen + [j] + [k for k in rest if k != j])
            res = sls_order(X, labels, trial)
            if res.separable:
                return res
            if res.failed_at > len(chosen):
                chosen.append(j)
                break
        else:
            return sls_order(X, labels, tuple(chosen + rest))
    return sls_order(X, labels, tuple(chosen))


def ce24_sls_network(X, labels, sls: SLSResult, Y=None, *, margin: float = 0.5, check: bool = True) -> Construction:
    """CE24 Theorem 5.2: the zero-cost network for SLS data (L = Q + 1, square hidden width M ≥ Q).

    Layer ℓ (class j = order[ℓ]): W^(ℓ) = W_{θ_j} R_j with R_j h_j = u/|u|, b^(ℓ) = −W^(ℓ) p_j, where
    θ_j/2 is the largest angle, from p_j, of a point that must pass (later classes, earlier p_i) to h_j
    or of class j to −h_j, widened by ``margin`` of the room left below π/2. Last layer Y_c [p]⁺, bias 0.
    """
    X = as_points(X, "X")
    geom = class_geometry(X, labels)
    lab = np.asarray(labels)
    Q, M = geom.means.shape
    Y = _label_matrix(Y, Q)
    if not isinstance(sls, SLSResult):
        raise TypeError(f"sls must be an SLSResult from sls_order; got {type(sls).__name__}")
    _require(sls.separable, "the class order is SLS", f"order {sls.order} fails at position {sls.failed_at}", check)
    margin = as_real(margin, "margin", minimum=0.0, maximum=1.0)
    order = sls.order
    u = np.full(M, 1 / np.sqrt(M))
    Wc, bc, thetas = [], [], []
    P, H = sls.points.copy(), sls.normals.copy()
    if not sls.separable:  # negative control: use the points and normals of a nearby order anyway
        P = np.where(np.isnan(P), geom.means + 0.5 * (geom.barycentre - geom.means), P)
        H = np.where(np.isnan(H), geom.directions, H)
    for pos, j in enumerate(order):
        later = np.isin(lab, order[pos + 1:])
        passing = np.vstack([X[later], P[list(order[:pos])]]) if pos else X[later]
        a_fwd = _angle(passing - P[j], H[j][None, :]).max() if len(passing) else 0.0
        a_bwd = _angle(X[lab == j] - P[j], -H[j][None, :]).max()
        half = max(a_fwd, a_bwd)
        half = min(half + margin * (np.pi / 2 - half), np.pi / 2 - 1e-9) if half < np.pi / 2 else half
        thetas.append(2 * half)
        W = cone_squeeze(min(2 * half, np.pi - 1e-9), M) @ rotation_to(H[j], u)
        Wc.append(W)
        bc.append(-W @ P[j])
    Pm = P[list(range(Q))]
    rank = np.linalg.matrix_rank(Pm)
    _require(rank == Q, "the points p_j are linearly independent", f"rank {rank}", check)
    W_last = Y.T @ np.linalg.pinv(Pm.T)
    weights, biases = _cumulative_to_layers(Wc, bc, W_last)
    return Construction("CE24 Thm 5.2", weights, biases, Wc, bc, W_last, Pm, np.ones(Q, bool), np.zeros(0), Pm,
                        dict(thetas=np.array(thetas), order=order))


# --------------------------------------------------------------------------------------------------------------
# Ewa25


def polyhedral_cone_form(W, b, X) -> np.ndarray:
    """Ewa25 Lemma 2.1: τ_{W,b}(x) = W⁺W p + Σ_{a_i>0} a_i v_i, with p = −W⁺b, v_i = W⁺e_i and the
    coordinates a of x − p − x̃ in the basis (v_i), x̃ the component of x − p in ker W.

    Evaluated from the geometry (p, v_i, the kernel projector) by least squares, without σ(Wx + b).
    """
    W = _full_row_rank(W, "W")
    b = as_real_array(b, "b", ndim=1)
    X = as_points(X, "X", dim=W.shape[1])
    V = np.linalg.pinv(W)  # columns v_i
    p = -V @ b
    K = np.eye(W.shape[1]) - V @ W  # projector onto ker W
    rel = X - p
    a = np.linalg.lstsq(V, (rel - rel @ K.T).T, rcond=None)[0].T  # (N, m)
    return (V @ W @ p)[None, :] + np.where(a > 0, a, 0.0) @ V.T


def realise_cone(p, V) -> tuple[np.ndarray, np.ndarray]:
    """Ewa25 Lemma 2.1, converse: W = V⁺ (so W⁺ = V) and b = −W p, for independent columns v_i of V."""
    V = as_real_array(V, "V", ndim=2)
    p = as_real_array(p, "p", ndim=1)
    if p.shape != (V.shape[0],):
        raise ValueError(f"p must have shape ({V.shape[0]},); got {p.shape}")
    if np.linalg.matrix_rank(V) < V.shape[1]:
        raise ValueError("V: its columns v_i must be linearly independent")
    W = np.linalg.pinv(V)
    return W, -W @ p


def lift_completion(W, *, seed=None) -> np.ndarray:
    """Ewa25 Lemma 2.2: W̃ ∈ GL(m) with W̃ ι = W for W (m, n) injective, n < m (ι = (1_n; 0)).

    The extra columns are an orthonormal basis of the complement of ran W (randomly rotated with ``seed``).
    """
    W = as_real_array(W, "W", ndim=2)
    m, n = W.shape
    if n >= m or np.linalg.matrix_rank(W) < n:
        raise ValueError(f"W must be injective with more rows than columns; got shape {W.shape}")
    Qf = np.linalg.qr(W, mode="complete")[0][:, n:]
    if seed is not None:
        Qf = Qf @ haar_orthogonal(np.random.default_rng(seed), m - n)
    return np.column_stack([W, Qf])


def _simplex_directions(d):
    """d + 1 unit vectors in R^d with zero sum (the vertices of a regular simplex)."""
    E = np.eye(d + 1) - 1.0 / (d + 1)
    B = np.linalg.qr(E)[0][:, :d]  # orthonormal basis of the hyperplane Σ = 0
    V = E @ B
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def concentric_classifier(d0: int, r_inner: float, r_outer: float, *, check: bool = True) -> Construction:
    """A classifier of the kind of Ewa25 Theorem 3.3: R^{d0} → R^{d0+1} → R^2 → R^2, explicit parameters.

    Layer 1 (a lift, by Lemma 2.2 a truncation in R^{d0+1}): a_i = σ(v_i·x − c) for the d0 + 1 vertex
    directions v_i of a regular simplex; Σ_i a_i is 0 on the simplex {v_i·x ≤ c} ⊃ B_c(0) and at least
    |x|/d0 − c outside it. Layer 2: z = (σ(g − s), σ(s − g)) with g = Σ_i a_i and the threshold s
    between the classes. Last layer: the identity (class 0 = inner, class 1 = outer; argmax).
    Needs r_inner < r_outer/d0 (the simplex fits between the classes); c is the midpoint.
    """
    d0 = check_positive_int(d0, "d0")
    r_in = as_real(r_inner, "r_inner", minimum=0.0, strict=True)
    r_out = as_real(r_outer, "r_outer", minimum=0.0, strict=True)
    _require(r_in < r_out / d0, "a simplex separates the classes: r_inner < r_outer / d0",
             f"r_inner = {r_in:.3g}, r_outer/d0 = {r_out / d0:.3g}", check)
    c = 0.5 * (r_in + r_out / d0)
    gap = r_out / d0 - c  # g ≥ gap > 0 on the outer class
    s = 0.5 * gap
    V = _simplex_directions(d0)
    W1, b1 = V, np.full(d0 + 1, -c)
    W2 = np.vstack([np.ones(d0 + 1), -np.ones(d0 + 1)])
    b2 = np.array([-s, s])
    W3, b3 = np.array([[0.0, 1.0], [1.0, 0.0]]), np.zeros(2)
    weights, biases = [W1, W2, W3], [b1, b2, b3]
    return Construction("Ewa25 Thm 3.3", weights, biases, [W1], [b1], W3, np.zeros((2, d0)), np.zeros(2, bool),
                        np.zeros(0), np.zeros((0, 0)), dict(c=c, s=s, gap=gap))


def concentric_data(d0: int, n_per_class: int, r_inner: float, r_outer: tuple, *, seed=None):
    """Two concentric classes: class 0 uniform in B_{r_inner}(0), class 1 in the shell r_outer[0] ≤ |x| ≤ r_outer[1]."""
    d0 = check_positive_int(d0, "d0")
    n = check_positive_int(n_per_class, "n_per_class")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((2 * n, d0))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r = np.concatenate([r_inner * rng.uniform(0, 1, n) ** (1 / d0), rng.uniform(r_outer[0], r_outer[1], n)])
    return g * r[:, None], np.repeat([0, 1], n)


# --------------------------------------------------------------------------------------------------------------
# Data for the ensembles, and perturbations


def clustered_classes(Q: int, M: int, n_per_class: int, c0: float, *, seed=None, spread: float = 1.0):
    """Random classes with means near a regular simplex (offset so that X̄^red has rank Q) and class
    deviations scaled so that δ = c0·min_j |x̄_j − x̄| exactly (the empirical means are the chosen ones).

    Returns (X, labels, means).
    """
    Q, M = check_positive_int(Q, "Q", minimum=2), check_positive_int(M, "M")
    n = check_positive_int(n_per_class, "n_per_class", minimum=2)
    if M < Q:
        raise ValueError(f"M must be ≥ Q = {Q}; got {M}")
    c0 = as_real(c0, "c0", minimum=0.0, strict=True)
    rng = np.random.default_rng(seed)
    S = np.zeros((Q, M))
    S[:, :Q] = np.eye(Q) - 1.0 / Q
    S /= np.linalg.norm(S, axis=1, keepdims=True)
    S += 0.15 * rng.standard_normal((Q, M))
    offset = np.zeros(M)
    offset[:Q] = 1.0 / np.sqrt(Q)
    offset += 0.3 * rng.standard_normal(M)
    means = (S * 2.0 * spread + offset * spread * 1.5) @ haar_orthogonal(rng, M).T
    bary = means.mean(axis=0)
    dmin = np.linalg.norm(means - bary, axis=1).min()
    dev = rng.standard_normal((Q, n, M)) * rng.uniform(0.2, 1.0, (Q, n, 1))
    dev -= dev.mean(axis=1, keepdims=True)
    dev *= c0 * dmin / np.linalg.norm(dev, axis=2).max()
    X = (means[:, None, :] + dev).reshape(Q * n, M)
    return X, np.repeat(np.arange(Q), n), means


def last_layer_features(weights, biases, X) -> np.ndarray:
    """H = x^(L) − b^(L) = W^(L) x^(τ,L): what the last layer of ``weights, biases`` (hidden layers and the last
    one) acts on with cumulative bias 0, b^(L) = W_L ⋯ W_2 b_1 + … + b_L the cumulative bias of the hidden layers."""
    bL = biases[0]
    for w, v in zip(weights[1:-1], biases[1:-1]):
        bL = w @ bL + v
    return forward(weights[:-1], biases[:-1], X)[-1] - bL


def perturbation_curve(con: Construction, X, labels, Y, epsilons, *, kind: str, seed=None,
                       odd: bool = False) -> np.ndarray:
    """|C(ε) − C(0)| along a random unit direction of parameters, for each ε; with ``odd``, the odd part
    |C(ε) − C(−ε)|/2 instead, which is ε|∇C·d| + O(ε³) (zero to round-off at a stationary point).

    ``kind``: ``"hidden"`` perturbs the hidden layers and re-optimises the last layer (the theorems' value
    function); ``"last"`` perturbs the cumulative last-layer weight W^(L+1) only, keeping its cumulative
    bias b^(L+1) = 0 (CE23's last layer); ``"all"`` perturbs every layer's weights and biases with the
    last layer fixed (so the output bias moves too).
    """
    if kind not in ("hidden", "last", "all"):
        raise ValueError(f"kind must be 'hidden', 'last' or 'all'; got {kind!r}")
    eps = as_real_array(epsilons, "epsilons", ndim=1)
    rng = np.random.default_rng(seed)
    Ws, bs = con.weights, con.biases
    dW = [rng.standard_normal(W.shape) for W in Ws]
    db = [rng.standard_normal(b.shape) for b in bs]
    if kind == "hidden":
        dW[-1][:] = 0
        db[-1][:] = 0
    if kind == "last":  # the cumulative last layer W^(L+1) moves, its cumulative bias b^(L+1) stays 0
        bL = bs[0]
        for w, v in zip(Ws[1:-1], bs[1:-1]):
            bL = w @ bL + v
        dW = [np.zeros_like(W) for W in Ws[:-1]] + [dW[-1]]
        db = [np.zeros_like(b) for b in bs[:-1]] + [-dW[-1] @ bL]
    norm = np.sqrt(sum(np.sum(d**2) for d in dW + db))
    dW, db = [d / norm for d in dW], [d / norm for d in db]

    def value(e):
        W = [w + e * d for w, d in zip(Ws, dW)]
        b = [v + e * d for v, d in zip(bs, db)]
        if kind != "hidden":
            return class_weighted_cost(network_output(W, b, X), labels, Y)
        H = last_layer_features(W, b, X)
        A = optimal_last_layer(H, labels, Y)
        return class_weighted_cost(H @ A.T, labels, Y)

    c0 = value(0.0)
    plus, minus = np.array([value(e) for e in eps]), np.array([value(-e) for e in eps])
    if odd:
        return np.abs(plus - minus) / 2
    return np.abs(plus - c0)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8×8 handwritten digits shipped with reluflow: pixels (1797, 64) in 0..16 and digits (1797,).

    The file is scikit-learn's copy of the UCI optdigits test set (see ``digits_8x8.md`` next to this
    module for provenance and licence); its SHA-256 is checked against :data:`DIGITS_SHA256`.
    """
    import gzip
    import hashlib
    from pathlib import Path

    raw = (Path(__file__).with_name("digits_8x8.csv.gz")).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DIGITS_SHA256:
        raise ValueError(f"digits_8x8.csv.gz: SHA-256 {digest} differs from the shipped {DIGITS_SHA256}")
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# Ensembles and outcomes for notebook 09


def admissible_draw(Q: int, M: int, n_per_class: int, c0_range, *, accept, seed=None, max_tries: int = 100):
    """Data satisfying a theorem's assumptions, by rejection: :func:`clustered_classes` with c_0 uniform
    in ``c0_range`` until ``accept(X, labels)`` returns without a ``ValueError``. Returns (X, labels, tries)."""
    rng = np.random.default_rng(seed)
    lo, hi = (as_real(c, "c0_range") for c in c0_range)
    for tries in range(1, check_positive_int(max_tries, "max_tries") + 1):
        X, lab, _ = clustered_classes(Q, M, n_per_class, rng.uniform(lo, hi), seed=rng.integers(2**63))
        try:
            accept(X, lab)
        except ValueError:
            continue
        return X, lab, tries
    raise ValueError(f"c0_range: no admissible draw for Q = {Q}, M = {M} in {max_tries} tries")


def ce23_draw(Q: int, n_per_class: int, c0_range, *, seed=None, max_tries: int = 100):
    """Data in R^Q satisfying CE23's assumptions (a non-empty μ-interval): :func:`admissible_draw`."""
    return admissible_draw(Q, Q, n_per_class, c0_range, accept=ce23_mu_interval, seed=seed, max_tries=max_tries)


def ball_samples(means, delta, n: int, *, seed=None, radius_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n points per class in B_{radius_factor·δ}(x̄_j), half of them on its boundary sphere."""
    rng = np.random.default_rng(seed)
    Q, M = means.shape
    d = rng.standard_normal((Q, n, M))
    d /= np.linalg.norm(d, axis=2, keepdims=True)
    r = np.where(np.arange(n) % 2 == 0, 1.0, rng.uniform(0, 1, n) ** (1 / M)) * radius_factor * delta
    return (means[:, None, :] + d * r[None, :, None]).reshape(Q * n, M), np.repeat(np.arange(Q), n)


def class_states(Wc, bc, X, labels, *, tol: float = 1e-9) -> np.ndarray:
    """Per class: 0 collapsed (x^(τ,L) one point), 1 intact (no coordinate truncated in any layer),
    2 partly truncated, 3 unknown (weights too ill-conditioned to invert). Square cumulative weights."""
    from reluflow.theory.truncation import truncated_data, truncation_pattern

    lab, counts = _labels(labels, np.asarray(X).shape[0])
    try:
        Z = truncated_data(Wc, bc, X)[-1]
        T = truncation_pattern(Wc, bc, X)  # (L, N, M)
    except ValueError:
        return np.full(counts.size, 3)
    scale = max(1.0, float(np.abs(X).max()))
    out = np.full(counts.size, 2)
    for j in range(counts.size):
        Zj = Z[lab == j]
        if np.abs(Zj - Zj[0]).max() <= tol * scale:
            out[j] = 0
        elif not T[:, lab == j].any():
            out[j] = 1
    return out


def descent_outcome(ds, X, labels, Y=None, *, zero_tol: float = 1e-6, gap_tol: float = 1e-2):
    """Read a gradient-descent trajectory of :func:`reluflow.train` (output cost, terminal layer trained)
    in the terms of CE23: C_𝒩 and the class states (:func:`class_states`) at each recorded time.

    Returns a dict: ``cost`` (times,), ``states`` (times, Q), ``outcome`` one of ``"zero cost"``
    (final C_𝒩 ≤ zero_tol), ``"merged classes"`` (two classes collapsed onto one point, so C_𝒩 stays
    bounded away from 0), ``"Thm 2.4/2.5 type"`` (every class collapsed or intact, at least one intact,
    and C_𝒩 within ``gap_tol`` (relative) of the best affine last layer for that truncation),
    ``"partly truncated"`` (some class neither collapsed nor intact) or ``"not converged"``; ``s`` the
    final class states and ``gap``.
    """
    X = as_points(X, "X")
    lab, counts = _labels(labels, X.shape[0])
    Y = _label_matrix(Y, counts.size)
    Wc, bc = ds.cumulative_weights.values, ds.cumulative_biases.values
    Wo, bo = ds.output_weights.values, ds.output_biases.values
    costs, states = [], []
    for t in range(Wc.shape[0]):
        Z = rectangular_truncated_data(list(Wc[t]), list(bc[t]), X)[-1]
        out = (Z @ Wc[t, -1].T + bc[t, -1]) @ Wo[t].T + bo[t]
        costs.append(class_weighted_cost(out, lab, Y))
        states.append(class_states(list(Wc[t]), list(bc[t]), X, lab))
    costs, states = np.array(costs), np.array(states)
    Z1 = np.column_stack([Z, np.ones(len(Z))])
    best = class_weighted_cost(Z1 @ optimal_last_layer(Z1, lab, Y).T, lab, Y)
    gap = (costs[-1] - best) / max(best, 1e-300)
    final = states[-1]
    coll = np.flatnonzero(final == 0)
    pts = np.array([Z[lab == j][0] for j in coll]).reshape(len(coll), Z.shape[1])
    dist = np.where(np.eye(len(coll), dtype=bool), np.inf, np.linalg.norm(pts[:, None] - pts[None], axis=2))
    merged = len(coll) > 1 and bool(dist.min() <= 1e-9 * max(1.0, np.abs(X).max()))
    if costs[-1] <= zero_tol:
        outcome = "zero cost"
    elif merged:
        outcome = "merged classes"
    elif np.all(final <= 1) and np.any(final == 1) and gap <= gap_tol:
        outcome = "Thm 2.4/2.5 type"
    elif np.any(final >= 2):
        outcome = "partly truncated"
    else:
        outcome = "not converged"
    return dict(cost=costs, states=states, outcome=outcome, s=final, gap=float(gap))


def random_surjection(m: int, n: int, *, seed=None, singular_values=(0.5, 2.0)) -> np.ndarray:
    """A random W (m, n), m ≤ n, of full row rank: U diag(s) Vᵀ with Haar U, V and s uniform in
    ``singular_values`` (so its condition number is at most their ratio)."""
    m, n = check_positive_int(m, "m"), check_positive_int(n, "n")
    if m > n:
        raise ValueError(f"m must be ≤ n for a surjection; got m = {m}, n = {n}")
    rng = np.random.default_rng(seed)
    s = rng.uniform(*singular_values, m)
    return haar_orthogonal(rng, m) @ (s[:, None] * haar_orthogonal(rng, n)[:m])

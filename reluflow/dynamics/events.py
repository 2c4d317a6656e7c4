"""Truncation events of the bias flow, located exactly (THEORY.md §4.2, §5).

The bias flow (4.2) moves the thresholds θ with the frames R and scales λ frozen. For a fixed
truncation pattern every layer is affine in θ: a point truncated in the coordinates P_ℓ satisfies
x^(τ,ℓ) = Π_ℓ x^(τ,ℓ-1) + R_ℓᵀ P_ℓ θ_ℓ, so x^(τ,L) = a + B θ and the flow is θ̇ = A θ + c with
A = −Λ^-2 G, G = Σ_i w_i B_iᵀ B_i, c = −Λ^-2 Σ_i w_i B_iᵀ (a_i − ỹ_i). Between two events the
solution is in closed form; an **event** is the first time some point crosses some threshold,
g_{ℓ,i,k}(t) = (R_ℓ x_i^(τ,ℓ-1))_k − θ_{ℓ,k} changing sign. This module computes both.

Map from formula to function:

- one layer, per coordinate k: θ_k(t) = ȳ + (θ_k(t_m) − ȳ) e^{−κ (t − t_m)}, κ = W/λ_k²,
  W = Σ_{i∈T_k} w_i, ȳ = Σ_{i∈T_k} w_i (Rỹ_i)_k / W; next event after
  Δt = (λ_k²/W) log((ȳ − θ_k(t_m)) / (ȳ − u_next)), u_next the next sorted data coordinate
  (one cluster, w_i = 1/N: Δt = (λ_k² N/n) log((ŷ_k − θ_k(t_m))/(ŷ_k − u_(m+1),k))), all
  coordinates at once                                → :func:`reluflow.dynamics.sorted.one_layer_sweep`
- g_{ℓ,i,k} = (R_ℓ x_i^(τ,ℓ-1))_k − θ_{ℓ,k}, the event functions of any depth           → :func:`event_values`
- x^(τ,ℓ) = a_ℓ + B_ℓ θ and g = c + d θ for a fixed pattern                          → :func:`affine_pattern`
- θ(t) = θ_0 + Λ^-1 Q (e^{−μ t} − 1) z, from the eigen-decomposition Λ^-1 G Λ^-1 = Q diag(μ) Qᵀ
  (exp(t A) for the affine flow, written to be exact at t = 0)      → :func:`closed_form`, :func:`closed_form_scaled`
- on a sliding surface n_jᵀ φ = const: φ̇ = −Π (S φ + b), Π ⊥ the normals n_j      → :func:`sliding_flow`
- first time some g_{ℓ,i,k} = α + Σ_j β_j e^{−μ_j t} changes sign, by certified bracketing
  and Brent's method                                                                  → :func:`next_crossing`
- Filippov test: after a crossing, does the field of the new pattern push the point back?
  (numerically, for the general backend; from the closed form, :func:`initial_slopes`)  → :func:`pushes_back`

Conventions. A point is truncated in coordinate k when u_k ≤ θ_k (a tie counts as truncated,
σ'(0) = 0, as in :func:`reluflow.truncation_pattern`). A **truncation** event is a point entering
T_k, an **untruncation** event a point leaving it. **Sliding** is a point whose crossing would
reverse the drift of the threshold at once: the threshold is pushed onto the point from both
sides, f_out > 0 > f_in, and a solver that flips the pattern would chatter. In one layer the
threshold then stays on the point for good (a kink minimum of the cost in θ_k; the point is
"partially truncated" in Filippov's sense), which :func:`reluflow.dynamics.sorted.one_layer_sweep`
returns exactly.
In the deep case the threshold follows the sliding points: Filippov's field is the projection of
the field of either side onto the surface, again affine in θ (:func:`sliding_flow`), and the
exact solver of :mod:`reluflow.dynamics.solver` follows it until the field on one side stops pushing back.

Cost. :func:`reluflow.dynamics.sorted.one_layer_sweep` sorts each coordinate once (O(N log N))
and then finds all events of all coordinates with prefix sums and vectorised numpy (O(N M)),
without a loop over points or events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from reluflow.theory.flows import mix

__all__ = [
    "EVENT_KINDS",
    "event_values",
    "initial_slopes",
    "pushes_back",
    "affine_pattern",
    "closed_form",
    "closed_form_scaled",
    "sliding_flow",
    "next_crossing",
]

#: Event kinds, in the order of their integer codes.
EVENT_KINDS = ("truncated", "untruncated", "sliding")
TRUNCATED, UNTRUNCATED, SLIDING = 0, 1, 2
_EPS = np.finfo(float).eps


# --------------------------------------------------------------------------- event functions, any depth


def event_values(R, theta, X, patterns=None):
    """g_{ℓ,i,k} = (R_ℓ x_i^(τ,ℓ-1))_k − θ_{ℓ,k}, shape (L, N, M), by the cone projections.

    A point is truncated in coordinate k of layer ℓ when g_{ℓ,i,k} ≤ 0 (ties count as truncated).
    ``patterns`` ((L, N, M), bool or real in [0, 1]) freezes the truncation of the earlier layers
    (:func:`reluflow.theory.flows.mix`) instead of reading it from the signs.
    """
    x = X
    out = np.empty((R.shape[0],) + X.shape)
    for l in range(R.shape[0]):
        u = x @ R[l].T
        out[l] = u - theta[l]
        m = np.maximum(u, theta[l]) if patterns is None else mix(patterns[l], theta[l], u)
        x = m @ R[l]
    return out


def pushes_back(rows, t, y, v_old, fun, signed, scale):
    """Filippov test: for each crossing row, whether the field just past the crossing drives it back.

    ``y`` is the state on the threshold, ``v_old`` the field of the old pattern, ``fun(t, y)`` the
    field and ``signed(y)`` the signed event functions of the new pattern (positive while
    consistent). A row slides when, a step 1e-8 max(1, t) past the threshold along the old motion,
    the new field decreases its event function: the fields on both sides push it onto the threshold.
    """
    dt = 1e-8 * max(1.0, t)
    y_after = y + dt * v_old  # continue the old motion a little past the threshold
    h_after = signed(y_after)[rows]
    h_next = signed(y_after + dt * fun(t, y_after))[rows]
    return h_next - h_after < -64 * _EPS * scale


def initial_slopes(s, beta, mu):
    """d(s_f g_f)/dτ at τ = 0 for g_f(τ) = g_f(0) + Σ_j β_fj (e^{−μ_j τ} − 1) and signs s_f."""
    return -(s[:, None] * beta * mu).sum(axis=1)


# --------------------------------------------------------------------------- deep case, affine between events


def affine_pattern(R, P, X):
    """Affine form of the truncated data for a fixed pattern: x^(τ,ℓ) = a_ℓ + B_ℓ θ, g = c + d θ.

    Parameters
    ----------
    R : array (L, M, M)
        Frames.
    P : bool array (L, N, M)
        Truncation pattern (True = truncated).
    X : array (N, M)
        Points.

    Returns ``(c, d, a, B)``: the event functions g_{ℓ,i,k} = (R_ℓ x_i^(τ,ℓ-1))_k − θ_{ℓ,k}
    = c[ℓ,i,k] + d[ℓ,i,k] · θ (θ flattened layer-major, length L·M), and x^(τ,L) = a + B θ with
    a (N, M), B (N, M, L·M).
    """
    L, N, M = P.shape
    K = L * M
    eye = np.eye(M)
    a = X
    B = np.zeros((N, M, K))
    c = np.empty((L, N, M))
    d = np.empty((L, N, M, K))
    for l in range(L):
        ua = a @ R[l].T
        uB = np.einsum("km,nmj->nkj", R[l], B)
        c[l] = ua
        d[l] = uB
        d[l][:, :, l * M:(l + 1) * M] -= eye
        keep = ~P[l]
        ua = np.where(keep, ua, 0.0)
        uB = uB * keep[:, :, None]
        uB[:, :, l * M:(l + 1) * M] += P[l][:, :, None] * eye  # truncated coordinates take the value θ_ℓ,k
        a = ua @ R[l]
        B = np.einsum("km,nkj->nmj", R[l], uB)
    return c, d, a, B


@dataclass(frozen=True)
class ClosedForm:
    """θ(τ) = θ_0 + V (e^{−μ τ} − 1) z and θ̇(τ) = −V (μ e^{−μ τ} z), with V = Λ^-1 Q."""

    theta0: np.ndarray
    V: np.ndarray
    mu: np.ndarray
    z: np.ndarray

    def theta(self, tau):
        tau = np.atleast_1d(tau)
        return self.theta0[None, :] + (np.expm1(-np.outer(tau, self.mu)) * self.z) @ self.V.T

    def theta_dot(self, tau):
        tau = np.atleast_1d(tau)
        return -(np.exp(-np.outer(tau, self.mu)) * (self.mu * self.z)) @ self.V.T


def closed_form(G, h, lam, theta0, *, rel_tol: float = 1e-12) -> ClosedForm:
    """Solution of θ̇ = −Λ^-2 (G θ + h) from θ(0) = θ_0, with G symmetric positive semi-definite.

    In φ = Λ θ the flow is φ̇ = −S φ − b with S = Λ^-1 G Λ^-1 and b = Λ^-1 h; see
    :func:`closed_form_scaled`.
    """
    Dinv = 1.0 / lam
    return closed_form_scaled(Dinv[:, None] * G * Dinv[None, :], Dinv * h, lam, theta0, rel_tol=rel_tol)


def closed_form_scaled(S, b, lam, theta0, *, rel_tol: float = 1e-12) -> ClosedForm:
    """Solution of φ̇ = −S φ − b, φ = Λ θ, from θ(0) = θ_0; S symmetric positive semi-definite.

    With S = Q diag(μ) Qᵀ and b in the range of S (true for a gradient flow of a cost bounded
    below), the components with μ_j = 0 do not move and the others relax exponentially:
    φ(τ) = φ_0 + Q (e^{−μ τ} − 1) z with z = Qᵀ(φ_0 − φ_*) on μ > 0, φ_* = −S⁺ b. This is
    exp(τ A) applied to the affine flow, written to be exact at τ = 0. Eigenvalues below
    ``rel_tol`` · max μ count as 0.
    """
    S = 0.5 * (S + S.T)
    mu, Q = np.linalg.eigh(S)
    mu_max = max(float(mu.max()), 0.0)
    active = mu > rel_tol * mu_max if mu_max > 0 else np.zeros(mu.size, dtype=bool)
    mu = np.where(active, mu, 0.0)
    qb = Q.T @ b
    phi0 = lam * theta0
    z = Q.T @ phi0 + np.divide(qb, mu, out=np.zeros_like(qb), where=active)
    z = np.where(active, z, 0.0)
    return ClosedForm(theta0=theta0.copy(), V=Q / lam[:, None], mu=mu, z=z)


def orthonormal_basis(vectors, *, rel_tol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis (K, r) of the span of the columns of ``vectors`` (K, s), by SVD."""
    if vectors.shape[1] == 0:
        return vectors
    U, sv, _ = np.linalg.svd(vectors, full_matrices=False)
    return U[:, sv > rel_tol * sv.max()] if sv.max() > 0 else U[:, :0]


def sliding_flow(S, b, phi0, normals):
    """The affine flow on a sliding surface: φ̇ = −Π (S φ + b), Π the projector orthogonal to ``normals``.

    On the surface {n_jᵀ φ = n_jᵀ φ_0} the field of a threshold that slides on points is the
    projection of the field on either side: the two sides differ by a multiple of the normal
    (the cost's two branches agree on the surface), and Filippov's convex combination is the one
    that is tangent. With φ = φ_0 + δ, Πδ = δ, this is φ̇ = −(Π S Π) φ − b_eff with
    b_eff = Π S (1 − Π) φ_0 + Π b. Returns (Π S Π, b_eff).
    """
    Qn = orthonormal_basis(normals)
    Pi = np.eye(S.shape[0]) - Qn @ Qn.T
    return Pi @ S @ Pi, Pi @ S @ (phi0 - Pi @ phi0) + Pi @ b


def _exp_terms(mu, taus):
    return np.exp(-np.outer(mu, taus))


def next_crossing(h0, hbeta, mu, tau_end: float, tie, *, slope_tol=None, noise_floor=None, max_rounds: int = 400,
                  subdivisions: int = 8, max_cells: int = 8, max_grid: int = 20_000):
    """Earliest τ ∈ [0, τ_end] at which some h_f(τ) = h0_f + Σ_j hbeta_fj (e^{−μ_j τ} − 1) turns negative.

    Each h_f is a signed event function (positive while the pattern of that point is consistent).
    Rows with ``tie`` set start at h_f(0) = 0 with h_f'(0) ≥ 0; the others start positive.

    Bracketing is *certified*: a sum of exponentials is bounded on [a, b] by
    h ≥ α + Σ_j min(β_j e^{−μ_j a}, β_j e^{−μ_j b}), and a tie row is positive on (0, h'(0)/M₂]
    with M₂ = Σ_j |β_j| μ_j² (Taylor). A geometric grid is refined where no bound proves
    positivity, until every cell before the first sign change is proved crossing-free (or is
    narrower than 1e-13 of its position: a tangential touch, which changes no pattern). In the
    bracketing cell, the crossing rows must be proved decreasing (unique root) before Brent's
    method locates the root to machine precision. A dip below zero within the rounding of h
    (64 ε (|α| + Σ|β|)) counts as no crossing. The refinement works on the ``max_cells`` earliest
    uncertain cells per round and gives up on certifying (treating the rest as crossing-free)
    beyond ``max_grid`` grid points. ``slope_tol`` (per row, optional) is a rounding of h'(0) that
    the caller knows better than 64 ε Σ_j |β_j| μ_j (the rounding of the sum, not of the β_j): a
    tie row whose h'(0) is within it is flat, and decided by h''(0). ``noise_floor`` (per row, optional) is a
    rounding of h that the caller knows to be larger than 64 ε (|α| + Σ|β|) (e.g. that of the data h0 comes from).

    Returns ``(tau, rows)``: the crossing time and the rows that cross then, or ``None``.
    """
    act = mu > 0
    if not np.any(act) or tau_end <= 0:
        return None
    mu = mu[act]
    hbeta = hbeta[:, act]
    tie = tie | (h0 <= 0)
    h0 = np.where(tie, 0.0, h0)
    halpha = h0 - hbeta.sum(axis=1)
    slope = -(hbeta * mu).sum(axis=1)
    curv = (hbeta * mu**2).sum(axis=1)
    m2 = (np.abs(hbeta) * mu**2).sum(axis=1)
    m3 = (np.abs(hbeta) * mu**3).sum(axis=1)
    # Rounding of h is about 64 ε (|α| + Σ|β|): a dip below zero smaller than that is no crossing.
    eps64 = 64 * np.finfo(float).eps
    noise = eps64 * (np.abs(halpha) + np.abs(hbeta).sum(axis=1))
    if noise_floor is not None:
        noise = np.maximum(noise, noise_floor)
    # A tie row is positive on (0, τ_c]: by Taylor to first order, h ≥ h'(0) τ − ½ M₂ τ², or, when
    # h'(0) vanishes within rounding, to second order, h ≥ ½ h''(0) τ² − M₃ τ³/6.
    flat = np.abs(slope) <= eps64 * (np.abs(hbeta) * mu).sum(axis=1)
    if slope_tol is not None:
        flat |= np.abs(slope) <= slope_tol
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_c = np.where(tie & (slope > 0) & ~flat, slope / m2, 0.0)
        tau_c = np.where(tie & flat & (curv > 0), 1.5 * curv / m3, tau_c)
    tau_c = np.nan_to_num(tau_c, nan=0.0, posinf=np.inf)
    # Whole-horizon certificate: most rows never come near their threshold.
    e_end = np.exp(-mu * tau_end)
    a_eff = np.minimum(tau_c, tau_end)
    lb = halpha + np.minimum(hbeta * np.exp(-np.outer(a_eff, mu)), hbeta * e_end).sum(axis=1)
    cand = np.flatnonzero(~((lb >= -noise) | (tau_c >= tau_end)))
    if cand.size == 0:
        return None
    ha, hb, h0c, tc, nz = halpha[cand], hbeta[cand], h0[cand], tau_c[cand], noise[cand]
    mu_max, mu_min = mu.max(), mu.min()
    t_first = 1e-2 / mu_max
    t_last = min(tau_end, 60.0 / mu_min)
    n_geo = max(int(np.ceil(np.log(max(t_last / t_first, 1.0)) / np.log(1.25))), 0) + 1
    grid = np.unique(np.concatenate(([0.0], t_first * 1.25 ** np.arange(n_geo), [t_last, tau_end])))
    grid = grid[grid <= tau_end]
    chunk = max(1, 2_000_000 // (cand.size * mu.size))

    def values(taus):
        return ha[:, None] + hb @ _exp_terms(mu, taus)

    def certified(a, b):
        """Per (row, cell): h ≥ −noise on [a', b], a' = max(a, τ_c), by one of two bounds.

        Interval: h ≥ α + Σ_j min(β_j e^{−μ_j a'}, β_j e^{−μ_j b}). Taylor at a': h(a' + δ) ≥
        h(a') + h'(a') δ − ½ M₂(a') δ², M₂(a') = Σ_j |β_j| μ_j² e^{−μ_j a'}, a concave bound whose
        minimum on the cell is at one of its ends.
        """
        out = np.empty((cand.size, a.size), dtype=bool)
        for q in range(0, a.size, chunk):
            aa, bb = a[q:q + chunk], b[q:q + chunk]
            a_eff = np.maximum(aa[None, :], tc[:, None])
            ea = np.exp(-mu[None, :, None] * a_eff[:, None, :])
            Ea = hb[:, :, None] * ea
            Eb = hb[:, :, None] * np.exp(-mu[None, :, None] * bb[None, None, :])
            interval = (ha[:, None] + np.minimum(Ea, Eb).sum(axis=1)) >= -nz[:, None]
            h_a = ha[:, None] + Ea.sum(axis=1)
            dh_a = -(Ea * mu[None, :, None]).sum(axis=1)
            m2_a = (np.abs(Ea) * mu[None, :, None] ** 2).sum(axis=1)
            width = bb[None, :] - a_eff
            taylor = (h_a >= -nz[:, None]) & (h_a + dh_a * width - 0.5 * m2_a * width**2 >= -nz[:, None])
            out[:, q:q + chunk] = (a_eff >= bb[None, :]) | interval | taylor
        return out

    H = values(grid)
    H[:, 0] = h0c
    for _ in range(max_rounds):
        T = grid.size
        neg = H < -nz[:, None]
        first = np.where(neg.any(axis=1), neg.argmax(axis=1), T)
        i_min = int(first.min())
        n_cells = T - 1 if i_min == T else i_min  # cells 0..n_cells-1 must be certified
        a, b = grid[:n_cells], grid[1:n_cells + 1]
        ok = certified(a, b)
        if i_min < T:
            # in the bracketing cell the crossing rows must decrease monotonically (a unique root)
            cross = first == i_min
            last = n_cells - 1
            ga = -(hb * mu) * np.exp(-mu[None, :] * np.maximum(a[last], tc)[:, None])
            gb = -(hb * mu) * np.exp(-mu * b[last])[None, :]
            decreasing = np.maximum(ga, gb).sum(axis=1) < 0
            ok[cross, last] = decreasing[cross] | (tc[cross] >= b[last])
        bad_cells = np.flatnonzero(~ok.all(axis=0))
        width = b - a
        tiny = width <= 1e-13 * np.maximum(b, 1.0 / mu_max)
        bad_cells = bad_cells[~tiny[bad_cells]][:max_cells]  # the earliest uncertain cells first
        if bad_cells.size == 0 or grid.size > max_grid:
            break
        new = (a[bad_cells, None] + width[bad_cells, None] * np.arange(1, subdivisions) / subdivisions).ravel()
        grid = np.concatenate((grid, new))
        H = np.concatenate((H, values(new)), axis=1)
        o = np.argsort(grid, kind="stable")
        grid, H = grid[o], H[:, o]
    neg = H < -nz[:, None]
    first = np.where(neg.any(axis=1), neg.argmax(axis=1), grid.size)
    i_min = int(first.min())
    if i_min == grid.size:
        return None
    lo, hi = grid[i_min - 1], grid[i_min]
    rows = np.flatnonzero(first == i_min)
    roots = np.empty(rows.size)
    for r, f in enumerate(rows):
        lo_f = max(lo, min(tc[f], hi) * 0.5) if h0c[f] == 0 and lo == 0 else lo

        def fun(t, f=f):
            return ha[f] + hb[f] @ np.exp(-mu * t)

        if fun(lo_f) <= 0:
            roots[r] = lo_f
        else:
            roots[r] = brentq(fun, lo_f, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=200)
    tau = float(roots.min())
    tol = 1e-12 * max(tau, 1.0 / mu_max)
    return tau, cand[rows[roots <= tau + tol]]

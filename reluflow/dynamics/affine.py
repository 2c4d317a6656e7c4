"""The exact backend for any depth and any kernel: closed form between events (THEORY.md §4.2, §4.5).

For a fixed truncation pattern x^(τ,L) = a + Bθ, so ∂C/∂θ = Gθ + h with G = Σ_i w_i B_iᵀB_i and
h = Σ_i w_i B_iᵀ(a_i − ỹ_i). The flow θ̇ = −H (Gθ + h), H = Λ^-1 K Λ^-1 (K = 1: the bias flow
(4.2); K = :func:`reluflow.theory.flows.induced_bias_kernel`: the flow (4.5) induced by gradient
descent on the layer biases), becomes ψ̇ = −Sψ − b with θ = Cψ, C Cᵀ = H, S = CᵀGC, b = Cᵀh: a
symmetric positive semi-definite affine flow (:class:`Metric`), solved by
:func:`reluflow.dynamics.events.closed_form_scaled`. Events are sums of exponentials in time,
located by :func:`reluflow.dynamics.events.next_crossing`.

Sliding. A *sliding unit* is a set of rows (identical points at one threshold) that the fields on
both sides push onto the threshold. While it slides, the unit counts as truncated in the reported
pattern, the flow is the projected affine flow of :func:`reluflow.dynamics.events.sliding_flow`
(Euclidean in ψ, the metric of the gradient flow), and the unit leaves the surface when the field
on one side stops pushing back: dg/dt of the "out" field reaches 0 (the points are released) or
that of the "in" field does (they are truncated). Those rates are affine in ψ, so the exits are
located like crossings. The projected flow moves ψ within the surfaces, so a row whose normal is a
combination of the units' normals (a point that coincides with sliding points by another path, e.g.
through the threshold of an earlier layer that one of them slides on) stays where it is: its motion
is computed with the eigenvectors projected onto the surfaces again, and is 0 to rounding.

Degenerate ties (several units through one point, rows of one point in several layers) are settled
at once, by Filippov's convex combination (:meth:`AffineBackend._settle`) or, where that is not
consistent, by steepest descent over the cells of the tied units (:meth:`AffineBackend._steepest`,
a curve of maximal slope: Filippov's solution where it is unique, the selection rule where it is not).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize import lsq_linear, nnls

from reluflow.dynamics.base import Backend, Values
from reluflow.dynamics.events import (
    SLIDING,
    TRUNCATED,
    UNTRUNCATED,
    ClosedForm,
    affine_pattern,
    closed_form_scaled,
    event_values,
    initial_slopes,
    next_crossing,
    orthonormal_basis,
    sliding_flow,
)
from reluflow.validation import as_real_array

__all__ = ["AffineBackend", "Metric", "as_kernel", "MEMORY_BUDGET", "BYTES_PER_ROW_ENTRY", "memory_estimate"]

#: The most memory (bytes) the affine backend may plan to use; a larger problem is refused up front
#: with a ValueError (see :func:`memory_estimate`). Raise it deliberately for a bigger machine.
MEMORY_BUDGET = 4e9
#: Measured peak bytes per entry of the (F, K) row arrays, F = L·N·M event functions and
#: K = L·M thresholds: the affine form d (F, K), its path B (N, M, K), the event coefficients β
#: (F, K) and the copies next_crossing makes (tracemalloc: 54.8 at N = 5·10³ and 2·10⁴, L = 2, M = 8).
BYTES_PER_ROW_ENTRY = 56

_EPS = np.finfo(float).eps
#: One resolution of the ties at an instant (row by row: flips, starts and ends of sliding) that takes
#: more rounds than this is going round in a circle; the ties are then settled all at once.
_MAX_ROUNDS = 64
#: Settlements allowed at one instant (each pins its rows; a later one settles the rows tied since).
_MAX_SETTLES = 8
#: Settlements by Filippov's convex combination (:meth:`AffineBackend._settle`) at one instant before
#: the ties are settled by steepest descent (:meth:`AffineBackend._steepest`).
_MAX_QP_SETTLES = 2
#: Patterns whose affine forms :meth:`AffineBackend._linear` keeps, and the most memory they may take.
_CACHE_ENTRIES = 64
_CACHE_BYTES = 64e6
#: How far (in roundings of g) a row that a steepest-descent settlement left at rest to first order,
#: and that crosses at second order, is followed past its threshold (:meth:`AffineBackend._next_event`).
_PROBE_DEPTH = 1e3
#: Steepest descent over the cells of at most this many tied units (2^n cells, one cone projection each).
_MAX_STEEPEST = 12


def memory_estimate(N: int, L: int, M: int) -> float:
    """Peak bytes of the affine backend on N points, depth L, width M: ``BYTES_PER_ROW_ENTRY`` · (L N M) · (L M)."""
    return float(BYTES_PER_ROW_ENTRY) * (L * N * M) * (L * M)


def as_kernel(kernel, L: int, M: int) -> np.ndarray:
    """K as a symmetric positive definite (L·M, L·M) matrix, from shape (L·M, L·M) or (L, L, M, M)."""
    K = as_real_array(kernel, "kernel")
    if K.shape == (L, L, M, M):
        K = K.transpose(0, 2, 1, 3).reshape(L * M, L * M)
    if K.shape != (L * M, L * M):
        raise ValueError(f"kernel must have shape ({L * M}, {L * M}) or (L, L, M, M) = ({L}, {L}, {M}, {M}); "
                         f"got {K.shape}")
    if np.abs(K - K.T).max() > 1e-12 * max(np.abs(K).max(), 1.0):
        raise ValueError(f"kernel must be symmetric; got max |K − Kᵀ| = {np.abs(K - K.T).max():.3g}")
    if np.linalg.eigvalsh(0.5 * (K + K.T)).min() <= 0:
        raise ValueError("kernel must be positive definite; got a non-positive eigenvalue")
    return 0.5 * (K + K.T)


@dataclass(frozen=True)
class Metric:
    """θ = C ψ with C Cᵀ = H = Λ^-1 K Λ^-1: C = Λ^-1 (``chol`` None, the bias flow) or Cholesky of H."""

    lam: np.ndarray  # (K,)
    chol: np.ndarray | None = None

    @classmethod
    def of(cls, lam, kernel=None):
        if kernel is None:
            return cls(lam)
        H = kernel / lam[:, None] / lam[None, :]
        return cls(lam, np.linalg.cholesky(0.5 * (H + H.T)))

    def congruence(self, G):
        """S = Cᵀ G C."""
        if self.chol is None:
            Dinv = 1.0 / self.lam
            return Dinv[:, None] * G * Dinv[None, :]
        return self.chol.T @ G @ self.chol

    def pull(self, h):
        """Cᵀ h (a gradient in θ → in ψ)."""
        return (1.0 / self.lam) * h if self.chol is None else self.chol.T @ h

    def to_psi(self, theta):
        return self.lam * theta if self.chol is None else solve_triangular(self.chol, theta, lower=True)

    def from_psi(self, psi):
        """θ = C ψ, for a vector or the columns of a matrix."""
        return psi / self.lam.reshape((-1,) + (1,) * (psi.ndim - 1)) if self.chol is None else self.chol @ psi

    def closed_form(self, S, b, theta):
        """ψ̇ = −Sψ − b from θ: the closed form in θ and the eigenvectors Q of S."""
        if self.chol is None:
            cf = closed_form_scaled(S, b, self.lam, theta)
            return cf, cf.V * self.lam[:, None]
        cf = closed_form_scaled(S, b, np.ones(self.lam.size), self.to_psi(theta))
        return ClosedForm(theta0=theta.copy(), V=self.chol @ cf.V, mu=cf.mu, z=cf.z), cf.V

    def rate(self, G):
        """−∂θ̇_j/∂θ_j = (H G)_jj."""
        if self.chol is None:
            return np.diag(G) / self.lam**2
        return np.einsum("jk,kj->j", self.chol @ self.chol.T, G)

    def dissipation(self, theta_dot, L, M):
        """−dC/dt = |ψ̇|² = θ̇ᵀ H^-1 θ̇ at each time; ``theta_dot`` (T, L·M)."""
        if self.chol is None:
            thd = theta_dot.reshape(-1, L, M)
            return np.einsum("tlm,tlm,lm->t", thd, thd, self.lam.reshape(L, M) ** 2)
        psi_dot = solve_triangular(self.chol, theta_dot.T, lower=True)
        return np.einsum("kt,kt->t", psi_dot, psi_dot)


class ClosedSegment:
    """θ(t) = θ_m + V (e^{−μ (t − t0)} − 1) z from t0, with a fixed (reported) pattern."""

    def __init__(self, t0, cf, n, rate, sliding, metric, L, M):
        self.t0, self.cf, self.n, self.rate, self.sliding = t0, cf, n, rate, sliding
        self.metric, self.L, self.M = metric, L, M

    def evaluate(self, times) -> Values:
        tau = times - self.t0
        theta = self.cf.theta(tau).reshape(-1, self.L, self.M)
        thd = self.cf.theta_dot(tau)
        return Values(thresholds=theta, n=self.n, rate=self.rate, sliding=self.sliding,
                      dissipation=self.metric.dissipation(thd, self.L, self.M))


@dataclass
class _Built:
    """The closed form in force and everything derived from it."""

    cf: ClosedForm
    g: np.ndarray  # event functions at τ = 0, (F,)
    beta: np.ndarray  # g(τ) = g + Σ_j β_j (e^{−μ_j τ} − 1), (F, K)
    ex_h0: np.ndarray  # exit functions of the sliding units, 2 per unit (out, in)
    ex_beta: np.ndarray
    ex_noise: np.ndarray
    rate: np.ndarray  # (L, M)
    reported: np.ndarray  # (F,) the pattern with sliding units counted as truncated
    slope_tol: np.ndarray  # (F,) rounding of dg/dτ at τ = 0: 64 ε Σ_j (|d| |V_j|) |z_j| μ_j
    rest_tol: np.ndarray  # (F,) the same, normwise (64 ε |n_f| |(|S| |ψ| + |b|)|): below it a tied row is at rest


class AffineBackend(Backend):
    """Any depth, θ̇ = −Λ^-1 K Λ^-1 ∂C/∂θ (K = 1 by default). Rows: the event functions g_{ℓ,i,k}, layer-major."""

    algorithm = "affine"

    def __init__(self, problem, kernel=None):
        super().__init__(problem)
        net = problem.net
        self.L, self.N, self.M = problem.shape
        need = memory_estimate(self.N, self.L, self.M)
        if need > MEMORY_BUDGET:
            raise ValueError(
                f"method='exact' on a deep network (the affine backend) needs about {need / 1e9:.3g} GB for "
                f"N = {self.N} points, L = {self.L}, M = {self.M} ({BYTES_PER_ROW_ENTRY} bytes x L·N·M event "
                f"functions x L·M thresholds, rebuilt at every event), more than "
                f"reluflow.dynamics.affine.MEMORY_BUDGET = {MEMORY_BUDGET / 1e9:.3g} GB. Use fewer points "
                f"(identical points can be merged into point_weights), raise MEMORY_BUDGET, or method='general'")
        self.K = self.L * self.M
        self.metric = Metric.of(net.scales.ravel(), kernel)
        self.theta = net.thresholds.ravel().copy()
        self.Pf = (event_values(net.frames, net.thresholds, problem.X) <= 0.0).ravel()  # (ℓ, i, k) flat
        self.F = self.Pf.size
        self.forced = np.zeros(self.F, dtype=bool)
        self.protected = np.zeros(self.F, dtype=bool)
        self.units = []  # sliding units: arrays of rows
        self.side_in = np.zeros(self.F, dtype=bool)  # rows of sliding units whose reference side is "in"
        self.stalls = 0
        self.n_slides = 0
        self.n_settles = 0
        self.n_steepest = 0
        self.n_probes = 0
        self._steepest_now = False  # a steepest-descent settlement happened at the current instant
        self._seen = set()  # states (pattern, units) met at the current instant
        self._settles_now = 0
        self.pinned = np.zeros(self.F, dtype=bool)  # rows whose side a settlement fixed at this instant
        self._scale = problem.scale
        self.built = None
        self._cache = {}  # pattern bytes → _linear(pattern), least recently used first
        entry = 8 * (self.F * (self.K + 1) + 2 * self.K * (self.K + 1))  # bytes of one _linear result
        self._cache_size = int(min(_CACHE_ENTRIES, _CACHE_BYTES // entry))

    # ----------------------------------------------------------------- pieces of the closed form

    def _linear(self, P):
        """(c, d, S, b, G) of the pattern P: g = c + d·θ, ψ̇ = −(Sψ + b), G = ∂²C/∂θ². Read-only arrays.

        They depend on the pattern only (not on θ), and the event resolution asks for the same few
        patterns again and again (the sides of the sliding units, the cells of a settlement), so the
        last ``_CACHE_ENTRIES`` are kept (within ``_CACHE_BYTES``): the same arrays, bit for bit.
        """
        key = P.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache[key] = self._cache.pop(key)  # most recently used last
            return hit
        p = self.problem
        c, d, a, B = affine_pattern(p.net.frames, P.reshape(self.L, self.N, self.M), p.X)
        G = np.einsum("n,nmj,nmk->jk", p.w, B, B)
        h = np.einsum("n,nmj,nm->j", p.w, B, a - p.targets)
        out = (c.ravel(), d.reshape(self.F, self.K), self.metric.congruence(G), self.metric.pull(h), G)
        for arr in out:
            arr.flags.writeable = False
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = out
        return out

    def _normal(self, drow):
        return (1.0 / self.metric.lam) * drow if self.metric.chol is None else drow @ self.metric.chol

    def _field_pattern(self):
        """The pattern whose field drives the flow: ``Pf`` with each sliding unit on its reference side.

        A unit that slides counts as untruncated in ``Pf``; its field is that of its reference side
        (``side_in``: the side of the cell a steepest-descent settlement chose, else "out") projected
        onto the sliding surfaces. On the surfaces the two sides' fields differ by multiples of the
        normals, so the projection is the same; the reference side matters only for the exit functions
        when rows of one point in several layers slide together (the other rows' normals).
        """
        return self.Pf | self.side_in

    def _build(self):
        c, d, S, b, G0 = self._linear(self.Pf)
        Pref = self._field_pattern()
        d_ref, S_ref, b_ref = (d, S, b) if not self.side_in.any() else self._linear(Pref)[1:4]
        psi0 = self.metric.to_psi(self.theta)
        normals = [self._normal(d_ref[u[0]]) for u in self.units]
        S_eff, b_eff = (sliding_flow(S_ref, b_ref, psi0, np.stack(normals, axis=1)) if self.units
                        else (S, b))
        cf, Q = self.metric.closed_form(S_eff, b_eff, self.theta)
        g = c + d @ self.theta
        V = cf.V
        if self.units:
            # On the sliding surfaces ψ(τ) − ψ0 = Π (ψ(τ) − ψ0), so g_f moves by (Π n_f)·(ψ(τ) − ψ0): the
            # eigenvectors Q of Π S Π (μ > 0) are projected onto the surfaces again, V = C Π Q. The same in exact
            # arithmetic; in rounding, a row whose normal is a combination of the units' normals gets β of the
            # rounding of 0 (at rest, as it is exactly), not of the rounding of n_f·Q_j, which can exceed the rest
            # tolerance and give a spurious crossing of 1e-20 that the resolution of ties turns into a cycle
            # (fuzz problems 5169 and 9086, issue 9)
            Qn = _orthonormal(normals, self.K)
            V = V - self.metric.from_psi(Qn) @ (Qn.T @ Q)
        beta = (d @ V) * cf.z
        # rows whose whole motion is below the rounding of g are at rest (see _at_rest): rows a settlement fixed at
        # this instant, and any other, e.g. a point on a threshold that no truncated point drives (frozen where
        # it released the point: its β is the rounding of the eigenvectors, of either sign, issue 9)
        beta = _at_rest(beta, self._ztol())
        ex_h0, ex_beta, ex_noise = self._exit_functions(Pref, normals, S_ref, b_ref, psi0, Q, cf)
        reported = self.Pf.copy()
        for u in self.units:
            reported[u] = True
        G_rep = self._linear(reported)[4] if self.units else G0
        rate = self.metric.rate(G_rep).reshape(self.L, self.M)
        # dg_f/dτ = n_f · ψ̇ with n_f = Cᵀ d_f and ψ̇ = −(Sψ + b) projected: its rounding is at most
        # 64 ε |n_f| · (|S| |ψ| + |b|), whatever the cancellations (a direction that the projection
        # onto a sliding surface removes keeps a velocity of that size)
        C_abs = np.diag(1.0 / self.metric.lam) if self.metric.chol is None else np.abs(self.metric.chol)
        size = np.abs(S_ref) @ np.abs(psi0) + np.abs(b_ref)
        # The eigen-decomposition behind the closed form spreads the rounding of every component of ψ̇ over all
        # of them, so the normwise bound is what a slope computed from it can be trusted to: a row whose
        # threshold does not move in exact arithmetic (an empty truncation set freezes it) gets a slope of
        # ~1e-17 of either sign, whichever the BLAS kernels give (issue 9).
        rest_tol = 64 * _EPS * np.linalg.norm(np.abs(d) @ C_abs, axis=1) * np.linalg.norm(size)
        if self.units and self._steepest_now:  # the projection spreads the rounding of every component over all
            slope_tol = rest_tol
        else:
            slope_tol = 64 * _EPS * ((np.abs(d) @ C_abs) @ size)
        self.built = _Built(cf, g, beta, ex_h0, ex_beta, ex_noise, rate, reported, slope_tol, rest_tol)

    def _exit_functions(self, Pref, normals, S, b, psi0, Q, cf):
        """h = −dg_j/dt under the "out" field and +dg_j/dt under the "in" field, for each unit j.

        Each field is that of the cell with unit j on that side and the other units on their reference
        sides, projected onto the other units' surfaces (with their normals in that cell).
        """
        h0, beta, noise = [], [], []
        for j, u in enumerate(self.units):
            fields = []
            for side in (False, True):
                P = Pref.copy()
                P[u] = side
                if side == bool(self.side_in[u[0]]):
                    d_s, S_s, b_s, nrm = None, S, b, normals
                else:
                    d_s, S_s, b_s = self._linear(P)[1:4]
                    # with unit j on the other side, the other units of the same point (in later layers)
                    # follow another path, and their surfaces have other normals: project with those
                    nrm = [self._normal(d_s[v[0]]) for v in self.units]
                basis = _orthonormal([nv for q, nv in enumerate(nrm) if q != j], self.K)
                fields.append((S_s, b_s, normals[j] - basis @ (basis.T @ normals[j])))  # Π_{−j} n_j
            for (S_s, b_s, n_j), sign in zip(fields, (-1.0, 1.0)):
                lin = -(S_s @ n_j)  # dg_j/dt = −(Π n_j)ᵀ (S_s ψ + b_s) = const + lin · ψ
                const = -float(n_j @ b_s)
                h0.append(sign * (const + lin @ psi0))
                noise.append(64 * _EPS * (abs(const) + np.abs(lin) @ np.abs(psi0)))
                beta.append(sign * (lin @ Q) * cf.z)
                if self.pinned[u].any():
                    beta[-1] = _at_rest(beta[-1][None, :], noise[-1])[0]
        return np.array(h0), np.array(beta).reshape(-1, self.K), np.array(noise)

    @property
    def _in_unit(self):
        return ~self.Pf & self.built.reported

    def _dissolve_split_units(self):
        """Dissolve every unit whose points no longer share one path through the earlier layers.

        Its points are on the threshold now; their patterns are then resolved afresh (a part of
        them may form a new unit). Returns the rows released.
        """
        released = np.zeros(self.F, dtype=bool)
        if self.units:
            d_now = self._linear(self.Pf)[1]
            for j in range(len(self.units) - 1, -1, -1):
                u = self.units[j]
                if not np.all(np.abs(d_now[u] - d_now[u[0]]) <= 1e-12 * (1 + np.abs(d_now[u[0]]))):
                    released[u] = True
                    self.side_in[self.units.pop(j)] = False
        return released

    # ----------------------------------------------------------------- the pattern at an event

    def _release_unit(self, j, side_in):
        """Unit j leaves the surface: released (out field) or truncated (in field)."""
        u = self.units.pop(j)
        self.side_in[u] = False
        self.Pf[u] = bool(side_in)
        self.protected[u] = True
        self.events.add_flat(self.t, u, (self.L, self.N, self.M), TRUNCATED if side_in else UNTRUNCATED)

    def _leave_surface(self):
        """A unit whose field on one side no longer pushes back leaves the surface now."""
        bt = self.built
        ex_slope = -(bt.ex_beta * bt.cf.mu).sum(axis=1)
        leaving = (bt.ex_h0 < -bt.ex_noise) | ((bt.ex_h0 <= bt.ex_noise) & (ex_slope < 0))
        leaving &= np.repeat([not self.pinned[u].any() for u in self.units], 2)  # settled units stay for this instant
        if not leaving.any():
            return False
        e = int(np.flatnonzero(leaving)[np.argmin(bt.ex_h0[leaving])])
        self._release_unit(*divmod(e, 2))
        self._build()
        return True

    def _start_sliding(self, f, ztol):
        """Row f is pushed back after its flip: every tied copy of it at this threshold starts to slide."""
        l, i, k = np.unravel_index(f, (self.L, self.N, self.M))
        d_all = self._linear(self.Pf)[1]
        same = np.zeros(self.F, dtype=bool)
        same.reshape(self.L, self.N, self.M)[l, :, k] = True
        same &= np.abs(self.built.g) <= ztol
        same &= np.all(np.abs(d_all - d_all[f]) <= 1e-12 * (1 + np.abs(d_all[f])), axis=1)
        same &= ~self._in_unit
        same[f] = True
        rows = np.flatnonzero(same)
        self.Pf[rows] = False
        self.units.append(rows)
        self.events.add_flat(self.t, rows, (self.L, self.N, self.M), SLIDING)
        self.n_slides += 1
        self._build()
        return same

    def _ztol(self):
        """The rounding of an event function g = c + d·θ: 64 ε (1 + max|X| + max|ỹ| + max|θ|)."""
        return 64 * _EPS * (self._scale + float(np.abs(self.theta).max(initial=0.0)))

    def _resolve(self, released):
        """Flip the tied rows that the current field pushes across; a row pushed back after its flip slides."""
        s = np.where(self.Pf, -1.0, 1.0)
        ztol = self._ztol()
        Z = (self.forced | released | (s * self.built.g <= ztol)) & ~self._in_unit & ~self.protected
        flipped = np.zeros(self.F, dtype=bool)
        key = self._state_key()
        rounds = 0
        if key in self._seen:  # back where an earlier step of this instant started: settle the ties at once
            if not self._settle(ztol):
                return None, ztol
        self._seen.add(key)
        while True:
            Z &= ~self.pinned
            rounds += 1
            if rounds > _MAX_ROUNDS:  # a circle within one resolution: settle the ties at once
                if not self._settle(ztol):
                    return None, ztol
                rounds = -self.F  # a settled pattern gets a fresh allowance
                Z &= ~self.pinned
                flipped[:] = False
            if self.units and self._leave_surface():
                Z &= ~self.protected
                continue
            s = np.where(self.Pf, -1.0, 1.0)
            slope = initial_slopes(s, self.built.beta, self.built.cf.mu)  # d(s g)/dτ at τ = 0
            # a tied row is pushed across only by a slope beyond its rounding (``_Built.rest_tol``): within it the
            # row is at rest (e.g. a threshold frozen on the point it just released) and keeps its side, whatever
            # the sign the rounding gives; a row the crossing search found crossing (``forced``) flips unless the
            # field carries it back beyond that rounding. A forced row that the field now holds at rest altogether
            # (all its β are rounding, ``_at_rest``: it moves with its threshold, e.g. a point that now coincides
            # with the points of a unit sliding on that threshold) is on the surface: it takes the side of sliding
            # rows (untruncated, Pf = False) and keeps it. Configuration 20 of notebook 08: rows that reach the
            # layer-3 surface from the truncated side are released; configuration 180: a row that reaches it from
            # the untruncated side stays (truncated, it set off a cascade off the Filippov solution, issue 9).
            rest = self.built.rest_tol
            moving = self.built.beta.any(axis=1)
            bad = Z & ((slope < -rest) | (self.forced & ~flipped & (moving | self.Pf) & (slope <= rest)))
            if not bad.any():
                return Z | self.pinned, ztol
            # the steepest row first; slopes equal within their rounding (rows of one threshold whose points
            # coincide) are taken in index order, not in the order the rounding gives (configuration 46)
            f = int(np.flatnonzero(bad & (slope <= slope[bad].min() + rest))[0])
            if flipped[f]:
                Z &= ~self._start_sliding(f, ztol)
                continue
            flipped[f] = True
            self.Pf[f] = ~self.Pf[f]
            self.events.add_flat(self.t, f, (self.L, self.N, self.M), TRUNCATED if self.Pf[f] else UNTRUNCATED)
            Z |= self._dissolve_split_units()
            self._build()

    # ----------------------------------------------------------------- degenerate ties, all at once

    def _state_key(self):
        return self.Pf.tobytes(), tuple(sorted(tuple(int(r) for r in u) for u in self.units))

    def _tied_groups(self, ztol, d):
        """The rows on their threshold now (regular or sliding), grouped into units: one threshold, one d-row."""
        tied = np.abs(self.built.g) <= ztol
        for u in self.units:
            tied[u] = True
        groups = []
        for f in np.flatnonzero(tied):
            l, _, k = np.unravel_index(f, (self.L, self.N, self.M))
            for grp in groups:
                if grp[0] == (l, k) and np.all(np.abs(d[f] - d[grp[1][0]]) <= 1e-12 * (1 + np.abs(d[grp[1][0]]))):
                    grp[1].append(int(f))
                    break
            else:
                groups.append(((l, k), [int(f)]))
        return [np.array(rows) for _, rows in groups]

    def _settle(self, ztol):
        """Resolve every tie of this instant together, as Filippov's convex combination (a box-constrained QP).

        Let the tied rows form units j (one threshold, one affine path), with all of them on the
        "out" side the field F₀ = −(Sψ + b) in ψ, their normals n_j (dg_j/dt = n_j · ψ̇) and
        δ_j = F_in,j − F₀ = κ_j n_j on the surface (the cost is continuous, so the branches'
        gradients differ along the normal). Filippov's field is ψ̇ = F₀ + Σ_j β_j n_j with
        β_j ∈ [0, κ_j], and the one that is consistent with every unit (β_j = 0: the unit leaves
        on the out side, n_j · ψ̇ ≥ 0; β_j = κ_j: it is truncated, n_j · ψ̇ ≤ 0; in between: it
        slides, n_j · ψ̇ = 0) is the minimiser of |F₀ + Σ_j β_j n_j|² on that box (the KKT
        conditions are exactly these; for κ_j > 0, a valley, the minimiser is unique). It is
        computed by bounded-variable least squares (exact active set). A unit without a valley
        (κ_j ≤ its rounding: the fields do not both push it onto the threshold) keeps its side.
        The result pins the tied rows for the rest of this instant: no more flips, no exits.
        With several rows of one point the fields of the mixed patterns need not be additive in
        the δ_j, and the QP's pattern need not be consistent; it is then replaced by
        :meth:`_steepest`, which is consistent by construction, and so is every settlement after the
        first ``_MAX_QP_SETTLES`` at one instant.
        Returns False, having stopped the solver (status −1), after ``_MAX_SETTLES`` settlements at one instant.
        """
        shape = (self.L, self.N, self.M)
        self._settles_now += 1
        self.n_settles += 1
        d_now = self._linear(self.Pf)[1]
        groups = self._tied_groups(ztol, d_now)
        if self._settles_now > _MAX_SETTLES or not groups:
            rows = np.concatenate(groups) if groups else np.flatnonzero(np.abs(self.built.g) <= ztol)
            where = "; ".join(
                f"layer {l + 1} coordinate {k} point {i}"
                for l, i, k in zip(*np.unravel_index(rows[:12], shape)))
            more = f" and {rows.size - 12} more rows" if rows.size > 12 else ""
            self.finish(-1, f"stopped at t = {self.t:.6g}: degenerate ties without a consistent pattern "
                            f"after {self._settles_now - 1} settlement(s) (Filippov's convex combination of the "
                            f"fields of the tied rows is not consistent with their pattern): {where}{more}", self.t)
            return False
        if self._settles_now > _MAX_QP_SETTLES:
            return self._steepest(groups, ztol)
        for u in groups:  # pinned from now on (the candidates below are built with their rows at rest)
            self.pinned[u] = True
        in_unit = np.zeros(self.F, dtype=bool)
        for u in self.units:
            in_unit[u] = True
        old = np.where(in_unit, SLIDING, np.where(self.Pf, TRUNCATED, UNTRUNCATED))
        P_out = self.Pf.copy()
        for u in groups:
            P_out[u] = False
        _, d_out, S, b, _ = self._linear(P_out)
        psi = self.metric.to_psi(self.theta)
        F0 = -(S @ psi + b)
        base = np.abs(S) @ np.abs(psi) + np.abs(b)
        normals, kappa, fixed_in, raw = [], [], [], []
        for u in groups:
            n_j = self._normal(d_out[u[0]])
            P_in = P_out.copy()
            P_in[u] = True
            _, _, S_j, b_j, _ = self._linear(P_in)
            delta = -(S_j @ psi + b_j) - F0
            nn = float(n_j @ n_j)
            k_j = float(n_j @ delta) / nn if nn > 0 else 0.0
            noise = 64 * _EPS * float(np.linalg.norm(base + np.abs(S_j) @ np.abs(psi) + np.abs(b_j)))
            noise /= max(nn, _EPS) ** 0.5  # the rounding of κ_j = n_j·δ_j / |n_j|²
            normals.append(n_j)
            raw.append(k_j)
            kappa.append(k_j if k_j > noise else None)
            fixed_in.append(k_j <= noise and bool(self.Pf[u].all() and not in_unit[u].any()))
        # Units without a valley take the side their field points to (a ridge, where both sides are
        # consistent, keeps its side): found by alternating with the QP of the valleys, each switch
        # making the switched unit consistent.
        side_in = {j: fixed_in[j] for j in range(len(groups)) if kappa[j] is None}
        free = [j for j in range(len(groups)) if kappa[j] is not None]
        w_tol = 64 * _EPS * float(np.linalg.norm(base))
        beta = np.zeros(len(groups))
        for _ in range(2 * len(side_in) + 2):
            F = F0 + sum((raw[j] * normals[j] for j, sin in side_in.items() if sin), np.zeros_like(F0))
            if free:
                Nm = np.stack([normals[j] for j in free], axis=1)
                ub = np.array([kappa[j] for j in free])
                beta[free] = lsq_linear(Nm, -F, bounds=(np.zeros(len(free)), ub), method="bvls").x
                psi_dot = F + Nm @ beta[free]
            else:
                psi_dot = F
            switch = [j for j, sin in side_in.items()
                      if (sin and normals[j] @ psi_dot > w_tol * np.linalg.norm(normals[j]))
                      or (not sin and normals[j] @ psi_dot < -w_tol * np.linalg.norm(normals[j]))]
            if not switch:
                break
            for j in switch:
                side_in[j] = not side_in[j]
        sides = []
        for j in range(len(groups)):
            if kappa[j] is None:
                sides.append(TRUNCATED if side_in[j] else UNTRUNCATED)
            elif beta[j] <= 1e-12 * kappa[j]:  # at a bound to rounding: either side is consistent
                sides.append(UNTRUNCATED)
            elif beta[j] >= (1 - 1e-12) * kappa[j]:
                sides.append(TRUNCATED)
            else:
                sides.append(SLIDING)
        self._apply_sides(groups, sides)
        if not self._consistent(groups):
            # Several rows of one point: their fields are not additive (a flip in layer ℓ changes the
            # path, and so the normal, of the point in the later layers): settle by steepest descent.
            return self._steepest(groups, ztol)
        new_slides = 0
        for u, side in zip(groups, sides):
            if side == SLIDING:
                new_slides += int(not in_unit[u].all())
            for f in u:
                if old[f] != side:
                    self.events.add_flat(self.t, f, shape, side)
            self.pinned[u] = True
        self.n_slides += new_slides
        return True

    def _steepest(self, groups, ztol):
        """Settle the tied units by steepest descent: the cell, and the face of it, along which C decreases fastest.

        Near the tie ψ* (ψ = C⁻¹θ, the metric of the gradient flow), every pattern P of the n tied
        units is a cell, to first order the polyhedral cone {v : s_j n_j^P · v ≥ 0} (s_j = +1 for a
        unit out, −1 in; n_j^P its normal in that pattern: the rows of one point in later layers
        follow the point's path), and C(ψ* + v) = C(ψ*) − F_P · v + O(|v|²) on it, F_P = −(Sψ + b)
        of that pattern. C is continuous, so this first-order model ℓ(v) is a continuous,
        positively homogeneous, piecewise linear function, and the steepest descent direction of C at
        ψ* is the direction of min ℓ(v) over |v| ≤ 1. On one cell, min_{|v| ≤ 1} −F_P · v over the
        cone is attained at the projection v_P of F_P onto the cone (Moreau), with the value −|v_P|.
        The flow leaves along v = v_P of the cell with the largest |v_P| (the local slope |∂C|(ψ*)):
        a curve of maximal slope, |ψ̇| = |∂C|, the selection rule where Filippov's solutions are
        not unique (a ridge: either side; several surfaces through one point). Where they are
        unique it is Filippov's: a unit crossed by both fields is crossed (the far side keeps the
        whole field, the near side only its tangential part); a valley (both fields push onto the
        surface) is slid on (both cells project onto the face, with the same tangential field); a
        regular consistent cell has v_P = F_P. v_P = F_P + Σ_j λ_j s_j n_j (λ ≥ 0, non-negative
        least squares on the dual); units with λ_j > 0 are on the face: they slide, the others take
        the side of P. Ties of the slope (symmetric cells) go to the cell with the fewest units
        flipped from their present side, then to the first in the enumeration order (in before
        out, unit by unit in row order): deterministic. The rows are pinned for this instant.
        """
        shape = (self.L, self.N, self.M)
        in_unit = np.zeros(self.F, dtype=bool)
        for u in self.units:
            in_unit[u] = True
        old = np.where(in_unit, SLIDING, np.where(self.Pf, TRUNCATED, UNTRUNCATED))
        now_in = [bool(self.Pf[u].all()) for u in groups]
        psi = self.metric.to_psi(self.theta)
        cache = {}

        def cell(cand):
            """(slope, flips, cand, λ_j |n_j|, noise) of the cell ``cand`` (a side per unit, True = in)."""
            if cand not in cache:
                P = self.Pf.copy()
                for u, side in zip(groups, cand):
                    P[u] = side
                _, d, S, b, _ = self._linear(P)
                F = -(S @ psi + b)
                A = np.stack([(-1.0 if side else 1.0) * self._normal(d[u[0]]) for u, side in zip(groups, cand)],
                             axis=1)
                lam = nnls(A, -F, maxiter=50 * A.shape[1] + 50)[0]
                noise = 64 * _EPS * float(np.linalg.norm(np.abs(S) @ np.abs(psi) + np.abs(b)))
                flips = sum(side != was for side, was in zip(cand, now_in))
                cache[cand] = (float(np.linalg.norm(F + A @ lam)), flips, cand, lam * np.linalg.norm(A, axis=0), noise)
            return cache[cand]

        def better(a, b):
            return b is None or a[0] > b[0] + a[4] or (a[0] >= b[0] - a[4] and a[1] < b[1])

        best = None
        if len(groups) <= _MAX_STEEPEST:
            for cand in itertools.product((True, False), repeat=len(groups)):
                if better(cell(cand), best):
                    best = cell(cand)
        else:  # local search: single flips from the present sides, all in and all out, best first
            for start in (tuple(now_in), (True,) * len(groups), (False,) * len(groups)):
                cur = cell(start)
                while True:
                    nxt = None
                    for j in range(len(groups)):
                        c = cell(cur[2][:j] + (not cur[2][j],) + cur[2][j + 1:])
                        if c[0] > cur[0] + c[4] and better(c, nxt):
                            nxt = c
                    if nxt is None:
                        break
                    cur = nxt
                if better(cur, best):
                    best = cur
        slope, _, cand, lam_n, noise = best
        self.units = []
        self.side_in[:] = False
        sides = []
        for u, side, ln in zip(groups, cand, lam_n):
            sliding = ln > noise
            self.Pf[u] = side and not sliding
            if sliding:
                self.units.append(u)
                self.side_in[u] = side
            sides.append(SLIDING if sliding else (TRUNCATED if side else UNTRUNCATED))
        self._build()
        for u, side in zip(groups, sides):
            if side == SLIDING and not in_unit[u].all():
                self.n_slides += 1
            for f in u:
                if old[f] != side:
                    self.events.add_flat(self.t, f, shape, side)
            self.pinned[u] = True
        self.n_steepest += 1
        self._steepest_now = True
        return True

    def _apply_sides(self, groups, sides):
        """Put each tied unit on its side (truncated, untruncated, sliding) and build the closed form."""
        self.units = []
        self.side_in[:] = False
        for u, side in zip(groups, sides):
            self.Pf[u] = side == TRUNCATED
            if side == SLIDING:
                self.units.append(u)
        self._build()

    def _consistent(self, groups):
        """Whether the built flow keeps every tied unit on its side: regular rows do not turn back at
        once (to first order, within the rounding of the slope), sliding units do not leave."""
        bt = self.built
        s = np.where(self.Pf, -1.0, 1.0)
        slope = initial_slopes(s, bt.beta, bt.cf.mu)
        slope_tol = bt.slope_tol
        in_unit = ~self.Pf & bt.reported
        rows = np.concatenate(groups)
        reg = rows[~in_unit[rows]]
        if np.any(slope[reg] < -slope_tol[reg]):
            return False
        if self.units:
            ex_slope = -(bt.ex_beta * bt.cf.mu).sum(axis=1)
            leaving = (bt.ex_h0 < -bt.ex_noise) | ((bt.ex_h0 <= bt.ex_noise) & (ex_slope < 0))
            if leaving.any():
                return False
        # and the crossing search agrees: none of these rows crosses (or unit exits) at once
        h0 = np.concatenate((s[reg] * bt.g[reg], bt.ex_h0))
        hb = np.concatenate((s[reg, None] * bt.beta[reg], bt.ex_beta))
        tie = np.ones(h0.size, dtype=bool)
        hit = next_crossing(h0, hb, bt.cf.mu, self.problem.t_end - self.t, tie, slope_tol=self._slope_tol(reg))
        return hit is None or hit[0] > 1e-13 * max(1.0, self.t)

    # ----------------------------------------------------------------- one step

    def step(self):
        released = self._dissolve_split_units()
        self._build()
        Z, ztol = self._resolve(released)
        segment = self._segment()
        if Z is None or self.too_many_events():
            return [segment]
        hit = self._next_event(Z, ztol)
        if hit is None:
            message = f"reached t = {self.problem.t_end:.6g}"
            if self.n_slides:
                message += f"; {self.n_slides} sliding episode(s), followed on the sliding surface"
            self.finish(0, message, self.problem.t_end)
        else:
            self._advance(*hit)
        return [segment]

    def _segment(self):
        bt = self.built
        sliding = np.zeros((self.L, self.M), np.int8)
        for u in self.units:
            l, _, k = np.unravel_index(u[0], (self.L, self.N, self.M))
            sliding[l, k] = 1
        n = bt.reported.reshape(self.L, self.N, self.M).sum(axis=1).astype(np.int64)
        return ClosedSegment(self.t, bt.cf, n, bt.rate, sliding, self.metric, self.L, self.M)

    def _next_event(self, Z, ztol):
        """The next crossing of a regular row or exit of a sliding unit, as (τ, rows, regular rows)."""
        bt = self.built
        s = np.where(self.Pf, -1.0, 1.0)
        reg = np.flatnonzero(~self._in_unit)
        sg = s[reg] * bt.g[reg]
        h0 = np.concatenate((sg, bt.ex_h0))
        hb = np.concatenate((s[reg, None] * bt.beta[reg], bt.ex_beta))
        tie = np.concatenate((Z[reg] | self.protected[reg] | (sg <= ztol), bt.ex_h0 <= bt.ex_noise))
        slope_tol = self._slope_tol(reg)
        # An exit function's value carries the rounding of the field it is computed from (``ex_noise``), far more
        # than next_crossing's 64 ε (|α| + Σ|β|) when the push back decays towards 0 at an equilibrium: its
        # asymptote α = h0 − Σβ is then the rounding of 0, and a dip within ex_noise is no exit (issue 9: such
        # units left the surface near t = 100–200 under one BLAS and not under another, configs 129, 149, 196)
        floor = np.concatenate((np.zeros(reg.size), bt.ex_noise))
        hit = next_crossing(h0, hb, bt.cf.mu, self.problem.t_end - self.t, tie, slope_tol=slope_tol,
                            noise_floor=floor)
        if hit is not None and self._steepest_now and hit[0] <= 1e-13 * max(1.0, self.t):
            rows = hit[1]
            if np.all(rows < reg.size) and np.all(self.pinned[reg[rows]]):
                # Rows that the steepest-descent settlement left at rest to first order (n_f · ψ̇ = 0
                # within rounding) and that cross at second order: no first-order model decides their
                # side. Follow the settled flow until they are _PROBE_DEPTH roundings of g past their
                # threshold (unless another row crosses before); they are then off the tie and
                # resolved like any other row. Meanwhile their contribution to the cost differs from
                # the truth by O(g²) only (the cost is continuous at a threshold).
                h0p, tiep = h0.copy(), tie.copy()
                h0p[rows] = _PROBE_DEPTH * ztol
                tiep[rows] = False
                self.n_probes += 1
                hit = next_crossing(h0p, hb, bt.cf.mu, self.problem.t_end - self.t, tiep, slope_tol=slope_tol,
                                    noise_floor=floor)
                if hit is None:
                    return None
                return hit[0], np.setdiff1d(hit[1], rows), reg
        return None if hit is None else (hit[0], hit[1], reg)

    def _slope_tol(self, reg):
        """The rounding of the slopes of the rows ``reg`` and the exit functions, for :func:`next_crossing`:
        that of ψ̇ (``_Built.slope_tol``) for the rows a settlement pinned at this instant, else none (0;
        the usual relative test applies)."""
        bt = self.built
        tol = np.where(self.pinned[reg], bt.slope_tol[reg], 0.0)
        return np.concatenate((tol, np.zeros(bt.ex_h0.size)))

    def _advance(self, tau, rows, reg):
        self.stalls = self.stalls + 1 if tau <= 1e-13 * max(1.0, self.t) else 0
        if self.stalls > self.F + 2:
            self.finish(-1, f"stopped at t = {self.t:.6g}: the event resolution does not progress (degenerate ties)",
                        self.t)
            return
        if tau > 1e-13 * max(1.0, self.t):  # a new instant
            self._seen = set()
            self._settles_now = 0
            self._steepest_now = False
            self.pinned = np.zeros(self.F, dtype=bool)
        self.theta = self.built.cf.theta(tau)[0]
        self.t = self.t + tau
        self.forced = np.zeros(self.F, dtype=bool)
        self.protected = np.zeros(self.F, dtype=bool)
        self.forced[reg[rows[rows < reg.size]]] = True
        # exit rows come in pairs (2j: leave on the out side, 2j + 1: on the in side). When both sides of unit j
        # fire at one instant the surface repels on both sides (a ridge, where the Filippov solution is not
        # unique); the unit is released once, on the out side, the documented selection rule.
        exits: dict[int, int] = {}
        for e in sorted({int(r - reg.size) for r in rows[rows >= reg.size]}):
            j, side_in = divmod(e, 2)
            exits.setdefault(j, side_in)
        for j in sorted(exits, reverse=True):
            self._release_unit(j, exits[j])


def _at_rest(beta, tol):
    """β with the rows that cannot move by more than ``tol`` set to 0.

    A row h(τ) = h(0) + Σ_j β_j (e^{−μ_j τ} − 1) moves by at most Σ_j |β_j| over all τ ≥ 0. When
    that is below ``tol``, the rounding of h(0) itself (64 ε times the size of the data and the
    thresholds for g), the row is at rest: its β is the rounding of a cancellation (typically a
    point and a threshold that move together, or a direction the flow does not move). Kept, it
    gives a tie row a spurious slope of either sign at τ = 0, and the row is flipped at once
    and flipped back, for ever. Setting it to 0 changes h(τ) by less than its rounding.
    """
    rest = np.abs(beta).sum(axis=1) <= tol
    return np.where(rest[:, None], 0.0, beta)


def _orthonormal(vectors, K):
    if not vectors:
        return np.zeros((K, 0))
    return orthonormal_basis(np.stack(vectors, axis=1))

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
located like crossings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

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

__all__ = ["AffineBackend", "Metric", "as_kernel"]

_EPS = np.finfo(float).eps


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


class AffineBackend(Backend):
    """Any depth, θ̇ = −Λ^-1 K Λ^-1 ∂C/∂θ (K = 1 by default). Rows: the event functions g_{ℓ,i,k}, layer-major."""

    algorithm = "affine"

    def __init__(self, problem, kernel=None):
        super().__init__(problem)
        net = problem.net
        self.L, self.N, self.M = problem.shape
        self.K = self.L * self.M
        self.metric = Metric.of(net.scales.ravel(), kernel)
        self.theta = net.thresholds.ravel().copy()
        self.Pf = (event_values(net.frames, net.thresholds, problem.X) <= 0.0).ravel()  # (ℓ, i, k) flat
        self.F = self.Pf.size
        self.forced = np.zeros(self.F, dtype=bool)
        self.protected = np.zeros(self.F, dtype=bool)
        self.units = []  # sliding units: arrays of rows
        self.stalls = 0
        self.n_slides = 0
        self._scale = problem.scale
        self.built = None

    # ----------------------------------------------------------------- pieces of the closed form

    def _linear(self, P):
        p = self.problem
        c, d, a, B = affine_pattern(p.net.frames, P.reshape(self.L, self.N, self.M), p.X)
        G = np.einsum("n,nmj,nmk->jk", p.w, B, B)
        h = np.einsum("n,nmj,nm->j", p.w, B, a - p.targets)
        return c.ravel(), d.reshape(self.F, self.K), self.metric.congruence(G), self.metric.pull(h), G

    def _normal(self, drow):
        return (1.0 / self.metric.lam) * drow if self.metric.chol is None else drow @ self.metric.chol

    def _build(self):
        c, d, S, b, G0 = self._linear(self.Pf)
        psi0 = self.metric.to_psi(self.theta)
        normals = [self._normal(d[u[0]]) for u in self.units]
        S_eff, b_eff = sliding_flow(S, b, psi0, np.stack(normals, axis=1)) if self.units else (S, b)
        cf, Q = self.metric.closed_form(S_eff, b_eff, self.theta)
        g = c + d @ self.theta
        beta = (d @ cf.V) * cf.z
        ex_h0, ex_beta, ex_noise = self._exit_functions(normals, S, b, psi0, Q, cf)
        reported = self.Pf.copy()
        for u in self.units:
            reported[u] = True
        G_rep = self._linear(reported)[4] if self.units else G0
        rate = self.metric.rate(G_rep).reshape(self.L, self.M)
        self.built = _Built(cf, g, beta, ex_h0, ex_beta, ex_noise, rate, reported)

    def _exit_functions(self, normals, S, b, psi0, Q, cf):
        """h = −dg_j/dt under the "out" field and +dg_j/dt under the "in" field, for each unit j."""
        h0, beta, noise = [], [], []
        for j, u in enumerate(self.units):
            basis = _orthonormal([nv for q, nv in enumerate(normals) if q != j], self.K)
            n_j = normals[j] - basis @ (basis.T @ normals[j])  # Π_{−j} n_j
            Pin = self.Pf.copy()
            Pin[u] = True
            _, _, S_in, b_in, _ = self._linear(Pin)
            for S_s, b_s, sign in ((S, b, -1.0), (S_in, b_in, 1.0)):
                lin = -(S_s @ n_j)  # dg_j/dt = −(Π n_j)ᵀ (S_s ψ + b_s) = const + lin · ψ
                const = -float(n_j @ b_s)
                h0.append(sign * (const + lin @ psi0))
                beta.append(sign * (lin @ Q) * cf.z)
                noise.append(64 * _EPS * (abs(const) + np.abs(lin) @ np.abs(psi0)))
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
                    released[self.units.pop(j)] = True
        return released

    # ----------------------------------------------------------------- the pattern at an event

    def _release_unit(self, j, side_in):
        """Unit j leaves the surface: released (out field) or truncated (in field)."""
        u = self.units.pop(j)
        self.Pf[u] = bool(side_in)
        self.protected[u] = True
        self.events.add_flat(self.t, u, (self.L, self.N, self.M), TRUNCATED if side_in else UNTRUNCATED)

    def _leave_surface(self):
        """A unit whose field on one side no longer pushes back leaves the surface now."""
        bt = self.built
        ex_slope = -(bt.ex_beta * bt.cf.mu).sum(axis=1)
        leaving = (bt.ex_h0 < -bt.ex_noise) | ((bt.ex_h0 <= bt.ex_noise) & (ex_slope < 0))
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

    def _resolve(self, released):
        """Flip the tied rows that the current field pushes across; a row pushed back after its flip slides."""
        s = np.where(self.Pf, -1.0, 1.0)
        ztol = 64 * _EPS * (self._scale + float(np.abs(self.theta).max(initial=0.0)))
        Z = (self.forced | released | (s * self.built.g <= ztol)) & ~self._in_unit & ~self.protected
        flipped = np.zeros(self.F, dtype=bool)
        while True:
            if self.units and self._leave_surface():
                Z &= ~self.protected
                continue
            s = np.where(self.Pf, -1.0, 1.0)
            slope = initial_slopes(s, self.built.beta, self.built.cf.mu)  # d(s g)/dτ at τ = 0
            bad = Z & ((slope < 0) | (self.forced & ~flipped & (slope <= 0)))
            if not bad.any():
                return Z, ztol
            f = int(np.flatnonzero(bad)[np.argmin(slope[bad])])
            if flipped[f]:
                Z &= ~self._start_sliding(f, ztol)
                continue
            flipped[f] = True
            self.Pf[f] = ~self.Pf[f]
            self.events.add_flat(self.t, f, (self.L, self.N, self.M), TRUNCATED if self.Pf[f] else UNTRUNCATED)
            Z |= self._dissolve_split_units()
            self._build()

    # ----------------------------------------------------------------- one step

    def step(self):
        released = self._dissolve_split_units()
        self._build()
        Z, ztol = self._resolve(released)
        segment = self._segment()
        if self.too_many_events():
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
        hit = next_crossing(h0, hb, bt.cf.mu, self.problem.t_end - self.t, tie)
        return None if hit is None else (hit[0], hit[1], reg)

    def _advance(self, tau, rows, reg):
        self.stalls = self.stalls + 1 if tau <= 1e-13 * max(1.0, self.t) else 0
        if self.stalls > self.F + 2:
            self.finish(-1, f"stopped at t = {self.t:.6g}: the event resolution does not progress (degenerate ties)",
                        self.t)
            return
        self.theta = self.built.cf.theta(tau)[0]
        self.t = self.t + tau
        self.forced = np.zeros(self.F, dtype=bool)
        self.protected = np.zeros(self.F, dtype=bool)
        self.forced[reg[rows[rows < reg.size]]] = True
        for e in sorted({int(r - reg.size) for r in rows[rows >= reg.size]}, reverse=True):
            self._release_unit(*divmod(e, 2))


def _orthonormal(vectors, K):
    if not vectors:
        return np.zeros((K, 0))
    return orthonormal_basis(np.stack(vectors, axis=1))

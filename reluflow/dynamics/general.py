"""The general backend: :func:`scipy.integrate.solve_ivp` between events, for any threshold flow (THEORY.md §4).

One terminal event function fires at the first change of the truncation pattern; the solver
restarts after each event. The event function is min_f s_f g_f − ε, with s_f = −1 for truncated
rows and +1 otherwise and ε = 1e-10 · scale: it fires just before the first row reaches its
threshold, while the right-hand side is still smooth (a row that slides would otherwise make the
steps crawl towards its threshold without ever crossing it). The crossing itself is then reached
by a first-order step along the field, Δt = ε/|ḣ_f| (an error O(Δt²)), where the Filippov test
(:func:`reluflow.dynamics.events.pushes_back`) decides between a crossing and sliding; at the
onset of sliding the backend stops with ``status = 1``.

Accuracy (measured by ``benchmarks/fuzz_solver.py --compare`` on the first 98 fuzz problems of
seed 0, deep, M ≤ 4, N ≤ 50, default rtol = 1e-10, atol = 1e-12): where the general backend
reached at least one requested time before stopping (41 problems), max |θ_general − θ_exact| there
had median 7e-10, 90th percentile 9e-9, 95th 4e-8; one problem reached 2.1e-6 (several events within
1e-6 of each other: each restart adds the O(Δt²) error of the step across the ε-level), so the
backend does not meet 1e-6 on every problem. 33 of the 98 stop at the onset of sliding (status 1)
and 29 take more than 15 s (rows that come within ε of their thresholds again and again). On
problem 28 the two backends differ by 0.136 at t = 1: θ(0) is a branching point (points tied on all
thresholds of two layers, six consistent cells, each a classical gradient flow); this backend and
explicit Euler take one branch, the exact backend another, and each follows gradient descent (see
PROBLEM_28 in tests/dynamics/test_fuzz.py). Event logs of the two backends agree only where
the events are well separated: near ties, round-off decides how many events a tie splits into.

Flows (:func:`flow_spec`): ``bias`` (4.2), ``scale_bias`` (4.3, state λ and θ), ``frame`` (4.4,
state R), ``induced_bias`` (4.5, θ = −b^(ℓ)/λ), or a callable ``rhs(net, X, targets, point_weights)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from reluflow.dynamics.base import Backend, Values
from reluflow.dynamics.events import SLIDING, TRUNCATED, UNTRUNCATED, affine_pattern, event_values, pushes_back
from reluflow.theory import flows as _flows
from reluflow.theory.adapted import AdaptedNetwork
from reluflow.theory.network import layer_parameters

__all__ = ["GeneralBackend", "FlowSpec", "flow_spec", "pattern_rate", "MAX_NFEV_PER_SEGMENT", "RATE_BLOCK"]

_EPS = np.finfo(float).eps
_TINY = np.finfo(float).tiny
#: The general backend gives up on a segment after this many right-hand-side evaluations.
MAX_NFEV_PER_SEGMENT = 200_000


class _Stalled(Exception):
    """More than MAX_NFEV_PER_SEGMENT evaluations in one segment; ``args`` = (t, y) of the evaluation that hit it."""


#: Points per block in :func:`pattern_rate` (its affine forms take 8 (L + 1) M · L·M bytes per point).
RATE_BLOCK = 4096


def pattern_rate(R, lam, P, X, w):
    """−∂θ̇_{ℓ,k}/∂θ_{ℓ,k} = Σ_i w_i |Π_L⋯Π_{ℓ+1} R_ℓᵀ P_ℓ e_k|² / λ_{ℓ,k}² for the pattern P.

    A sum over points, taken in blocks of ``RATE_BLOCK`` points so that memory stays bounded for any N.
    """
    out = np.zeros(lam.size)
    for s in range(0, X.shape[0], RATE_BLOCK):
        _, _, _, B = affine_pattern(R, P[:, s:s + RATE_BLOCK], X[s:s + RATE_BLOCK])
        out += np.einsum("n,nmj,nmj->j", w[s:s + RATE_BLOCK], B, B)
    return out.reshape(lam.shape) / lam**2


# --------------------------------------------------------------------------- flows


@dataclass(frozen=True)
class FlowState:
    """Frames, scales and thresholds unpacked from a state vector, unvalidated.

    Runge–Kutta stages are not points of the flow: their frames are orthogonal only to the
    integrator's accuracy and a scale may transiently leave (0, ∞), so they are not
    :class:`~reluflow.theory.adapted.AdaptedNetwork` objects (which refuse such states). The
    right-hand sides evaluate the flows' array kernels on them.
    """

    frames: np.ndarray
    scales: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class FlowSpec:
    """A flow as a state vector: how to unpack it, its right-hand side and dissipation −dC/dt."""

    name: str
    state: np.ndarray  # initial state vector
    network: Callable  # state -> FlowState
    rhs: Callable  # FlowState -> d state / dt (1-D)
    dissipation: Callable  # FlowState -> −dC/dt
    moves: tuple


def flow_spec(flow, net, X, targets, w) -> FlowSpec:
    """The :class:`FlowSpec` of ``flow`` (a name of :data:`reluflow.dynamics.solver.FLOWS` or a callable)."""
    L, M = net.scales.shape
    if callable(flow):
        return _callable_spec(flow, net, X, targets, w)
    if flow in ("bias", "induced_bias"):
        return _threshold_spec(flow, net, X, targets, w)
    if flow == "scale_bias":
        return _scale_bias_spec(net, X, targets, w)
    R0, lam0, th0 = net.frames, net.scales, net.thresholds

    def network(y):
        return FlowState(frames=y.reshape(L, M, M), scales=lam0, thresholds=th0)

    def rhs(n):
        return _flows.frame_flow_arrays(n.frames, n.thresholds, X, targets, w).ravel()

    def diss(n):
        Rdot = _flows.frame_flow_arrays(n.frames, n.thresholds, X, targets, w)
        return float(np.sum(Rdot * Rdot))  # −dC/dt = Σ_ℓ ‖Ω_ℓ‖² = Σ_ℓ ‖Ṙ_ℓ‖²

    return FlowSpec("frame", R0.ravel().copy(), network, rhs, diss, ("frames",))


def _gradient(X, targets, w):
    """∂C_in/∂θ on inputs validated once in solve (the right-hand side is called thousands of times)."""
    def grad(n):
        return _flows.threshold_gradient_arrays(n.frames, n.thresholds, X, targets, w)
    return grad


def _thresholds_network(net):
    L, M = net.scales.shape
    return lambda y: FlowState(frames=net.frames, scales=net.scales, thresholds=y.reshape(L, M))


def _callable_spec(flow, net, X, targets, w):
    L, M = net.scales.shape
    grad = _gradient(X, targets, w)

    def rhs(n):  # the user's flow sees a validated network (frames and scales are frozen, so it is valid)
        out = np.asarray(flow(AdaptedNetwork(n.frames, n.scales, n.thresholds), X, targets, w), dtype=float)
        if out.shape != (L, M):
            raise ValueError(f"flow (a callable) must return θ̇ of shape ({L}, {M}); got shape {out.shape}")
        return out.ravel()

    return FlowSpec(getattr(flow, "__name__", "callable"), net.thresholds.ravel().copy(), _thresholds_network(net),
                    rhs, lambda n: -float(np.sum(grad(n) * rhs(n).reshape(L, M))), ("thresholds",))


def _threshold_spec(flow, net, X, targets, w):
    L, M = net.scales.shape
    grad = _gradient(X, targets, w)
    if flow == "bias":
        def rhs(n):
            return (-grad(n) / n.scales**2).ravel()

        def diss(n):
            g = grad(n)
            return float(np.sum(g * g / n.scales**2))
    else:
        def rhs(n):
            net_n = AdaptedNetwork(n.frames, n.scales, n.thresholds)  # frames and scales frozen: valid
            weights, biases = layer_parameters(*net_n.cumulative_parameters())
            db = _flows.induced_bias_flow(weights, biases, X, targets, point_weights=w)
            return (-db / n.scales).ravel()  # θ = −b^(ℓ)/λ with λ frozen

        def diss(n):
            return -float(np.sum(grad(n) * rhs(n).reshape(L, M)))

    return FlowSpec(flow, net.thresholds.ravel().copy(), _thresholds_network(net), rhs, diss, ("thresholds",))


def _scale_bias_spec(net, X, targets, w):
    L, M = net.scales.shape
    K = L * M
    grad = _gradient(X, targets, w)

    def network(y):
        return FlowState(frames=net.frames, scales=y[:K].reshape(L, M), thresholds=y[K:].reshape(L, M))

    def rhs(n):
        f = _flows.scale_bias_flow_arrays(n.frames, n.scales, n.thresholds, X, targets, w)
        return np.concatenate((f.scales.ravel(), f.thresholds.ravel()))

    def diss(n):
        f = _flows.scale_bias_flow_arrays(n.frames, n.scales, n.thresholds, X, targets, w)
        return -float(np.sum(grad(n) * f.thresholds))

    return FlowSpec("scale_bias", np.concatenate((net.scales.ravel(), net.thresholds.ravel())), network, rhs, diss,
                    ("thresholds", "scales"))


# --------------------------------------------------------------------------- segments


class GeneralSegment:
    """The dense output of solve_ivp from t0, with the pattern in force."""

    def __init__(self, t0, dense, spec, P, rate, problem, sliding=None):
        L, _, M = P.shape
        self.t0, self.dense, self.spec, self.P, self.rate_P = t0, dense, spec, P.copy(), rate
        self.problem = problem
        self.n = P.sum(axis=1).astype(np.int64)
        self.sliding = np.zeros((L, M), np.int8) if sliding is None else sliding

    def evaluate(self, times) -> Values:
        ys = np.asarray(self.dense(times)).T.reshape(np.size(times), -1)
        nets = [self.spec.network(yy) for yy in ys]
        th = np.stack([n.thresholds for n in nets])
        sc = np.stack([n.scales for n in nets])
        fr = np.stack([n.frames for n in nets])
        diss = np.array([self.spec.dissipation(n) for n in nets])
        if self.rate_P is not None:
            rate = self.rate_P
        else:
            X, w = self.problem.X, self.problem.w
            rate = np.stack([pattern_rate(f, s, self.P, X, w) for f, s in zip(fr, sc)])
        return Values(thresholds=th, n=self.n, rate=rate, sliding=self.sliding, dissipation=diss, scales=sc,
                      frames=fr)


def _constant(y):
    return lambda tt: np.broadcast_to(y[:, None], (y.size, np.size(tt)))


def _extrapolated(dense, t_e, y_e, v):
    """The dense output on [t0, t_e], continued linearly to the crossing just after t_e."""
    def state(times):
        times = np.atleast_1d(times)
        out = np.asarray(dense(np.minimum(times, t_e))).reshape(y_e.size, times.size)
        return out + np.maximum(times - t_e, 0.0)[None, :] * v[:, None]

    return state


# --------------------------------------------------------------------------- backend


class GeneralBackend(Backend):
    """solve_ivp between events; one terminal event function for all rows; a restart after each event."""

    algorithm = "solve_ivp"

    def __init__(self, problem, spec: FlowSpec, ivp_method="DOP853", rtol=1e-10, atol=1e-12):
        super().__init__(problem)
        self.spec, self.ivp_method, self.rtol, self.atol = spec, ivp_method, rtol, atol
        self.moves = spec.moves
        self.L, self.N, self.M = problem.shape
        self.y = spec.state.copy()
        n0 = spec.network(self.y)
        self.P = (event_values(n0.frames, n0.thresholds, problem.X) <= 0.0).ravel()
        self.offset = np.zeros(self.P.size)
        self.last_flip_time = np.full(self.P.size, -np.inf)
        self._scale = problem.scale
        self.eps_event = 1e-10 * self._scale
        self.calls = 0

    def fun(self, t, y):
        self.calls += 1
        if self.calls > MAX_NFEV_PER_SEGMENT:
            raise _Stalled(t, y)
        return self.spec.rhs(self.spec.network(y))

    def signed(self, y, s):
        n = self.spec.network(y)
        return s * event_values(n.frames, n.thresholds, self.problem.X).ravel()

    def _P3(self):
        return self.P.reshape(self.L, self.N, self.M)

    def _segment(self, t0, dense, sliding=None):
        rate = None
        if self.spec.moves == ("thresholds",):
            p = self.problem
            rate = pattern_rate(p.net.frames, p.net.scales, self._P3(), p.X, p.w)
        return GeneralSegment(t0, dense, self.spec, self._P3(), rate, self.problem, sliding=sliding)

    def _stop(self, status, message, sliding=None):
        self.finish(status, message, self.t)
        return self._segment(self.t, _constant(self.y), sliding=sliding)

    def _integrate(self, s):
        offset, eps = self.offset, self.eps_event

        def event(_t, y):
            return float(np.min(self.signed(y, s) + offset)) - eps

        event.terminal = True
        event.direction = -1
        self.calls = 0
        try:
            sol = solve_ivp(self.fun, (self.t, self.problem.t_end), self.y, method=self.ivp_method, rtol=self.rtol,
                            atol=self.atol, events=event, dense_output=True)
        except _Stalled as stall:
            self.nfev += self.calls
            self.stall = stall
            return None
        self.nfev += sol.nfev
        return sol

    def step(self):
        t_end = self.problem.t_end
        s = np.where(self.P, -1.0, 1.0)
        sol = self._integrate(s)
        if sol is None:
            t_s, y_s = self.stall.args
            gap = float(np.min(self.signed(y_s, s) + self.offset))
            return [self._stop(-1, f"stopped: the segment from t = {self.t:.6g} reached only t = {t_s:.6g} after "
                                   f"{MAX_NFEV_PER_SEGMENT} right-hand-side evaluations without an event (the "
                                   f"nearest row is {gap:.3g} from its threshold: steps crawl as it approaches)")]
        if sol.status == -1:
            return [self._stop(-1, f"solve_ivp failed after t = {self.t:.6g}: {sol.message}")]
        if sol.status == 0:
            segment = self._segment(self.t, sol.sol)
            self.finish(0, f"reached t = {t_end:.6g}", t_end)
            return [segment]
        t_e, y_e, v, rows, t_cross = self._crossing(sol, s)
        segment = self._segment(self.t, _extrapolated(sol.sol, t_e, y_e, v))
        self.t = min(t_cross, t_end)
        self.y = y_e + (self.t - t_e) * v
        if t_cross > t_end:  # the crossing lies beyond the last requested time
            self.finish(0, f"reached t = {t_end:.6g}", t_end)
            return [segment]
        return [segment] + self._flip(rows, s, v)

    def _crossing(self, sol, s):
        """Step from the ε-level to the threshold along the (smooth) field of the old pattern."""
        t_e = float(sol.t_events[0][0])
        y_e = np.asarray(sol.y_events[0][0], dtype=float)
        v = self.fun(t_e, y_e)
        h = self.signed(y_e, s) + self.offset
        near = np.flatnonzero(h <= self.eps_event * (1 + 1e-6) + 64 * _EPS * self._scale)
        speed = float(np.abs(v).max())
        if near.size == 0 or speed == 0:  # pragma: no cover - the event fired on a row that does not move
            near = np.array([int(np.argmin(h))])
            dt_cross = np.zeros(1)
        else:
            eta = 1e-8 * self._scale / speed
            h_dot = (self.signed(y_e + eta * v, s)[near] + self.offset[near] - h[near]) / eta
            dt_cross = np.where(h_dot < 0, h[near] / np.where(h_dot < 0, -h_dot, 1.0), np.inf)
        dt_star = float(dt_cross.min())
        if not np.isfinite(dt_star):
            dt_star = 0.0
            rows = near[[int(np.argmin(h[near]))]]
        else:
            rows = near[dt_cross <= dt_star + 1e-12 * max(1.0, t_e)]
        return t_e, y_e, v, rows, t_e + dt_star

    def _flip(self, rows, s, v):
        """Flip the crossing rows; stop at the onset of sliding (Filippov) or after max_events."""
        t, shape = self.t, (self.L, self.N, self.M)
        s_new = s.copy()
        s_new[rows] = -s_new[rows]
        slides = pushes_back(rows, t, self.y, v, self.fun, lambda yy: self.signed(yy, s_new), self._scale)
        slides |= t - self.last_flip_time[rows] <= 1e-8 * max(1.0, t)
        for f in rows:
            self.P[f] = ~self.P[f]
            self.events.add_flat(t, f, shape, TRUNCATED if self.P[f] else UNTRUNCATED)
        if slides.any():
            sl = np.zeros((self.L, self.M), np.int8)
            for f in rows[slides]:
                l, _, k = np.unravel_index(f, shape)
                self.events.add_flat(t, f, shape, SLIDING)
                sl[l, k] = 1
            l, i, k = np.unravel_index(rows[slides][0], shape)
            return [self._stop(1, f"stopped at t = {t:.6g}: point {int(i)} slides on the threshold of layer "
                                  f"{int(l) + 1}, coordinate {int(k)} (the field on both sides pushes it onto the "
                                  "threshold)", sliding=sl)]
        self.last_flip_time[:] = -np.inf
        self.last_flip_time[rows] = t
        # A flipped row sits on its threshold; if rounding left it on the wrong side, shift it so that
        # the event function starts strictly positive.
        h_new = self.signed(self.y, np.where(self.P, -1.0, 1.0))
        self.offset = np.zeros(self.P.size)
        self.offset[rows] = np.maximum(-h_new[rows], 0.0) + self.eps_event + _TINY
        if self.too_many_events():
            return [self._segment(self.t, _constant(self.y))]
        return []

"""The general backend: :func:`scipy.integrate.solve_ivp` between events, for any threshold flow (THEORY.md §4).

Between two events the right-hand side is the field of the segment's truncation pattern, *frozen*:
the flows' kernels take the pattern as an argument (``patterns=`` of
:func:`reluflow.theory.flows.adapted_forward`) and continue the pattern's field smoothly across the
thresholds, so a Runge–Kutta stage that overshoots a threshold sees no jump. (Reading the pattern
from the signs instead made the steps shrink with the gap of any row that approached its threshold:
200,000 evaluations for t = 1 on some problems.) One terminal event function fires at the first
change of the pattern: min_f s_f g_f + o_f − e_f, with s_f = −1 for truncated rows and +1 otherwise,
e_f = ε = 1e-10 · scale (it fires just before the row reaches its threshold) and shifts o_f that make
every row start strictly positive (a row on its threshold after a crossing, or tied at t = 0, fires
as soon as it moves towards its other side; without them a tie at t = 0 could be carried across
unseen). The crossing is reached by a first-order step along the field, Δt = ε/|ḣ_f| (an error
O(Δt²)); a row that approaches so slowly that this step would be long gets e_f = 0 and the integrator
follows it to the threshold itself. The Filippov test (:func:`reluflow.dynamics.events.pushes_back`)
then decides between a crossing and sliding. A last guard stops with ``status = -1`` if a row ends a
segment on its wrong side (a crossing inside one step that the event function missed).

Sliding. In one layer the backend follows it: the sliding rows (with every row on the same threshold
at the same point) get real pattern entries p ∈ [0, 1], the weight of their truncated side, chosen so
that each stays on its threshold (Filippov's convex combination, as an equivalent control); a row
whose control reaches 0 or 1, or leaves [0, 1] at an event, leaves its threshold onto that side. In
one layer a sliding threshold rests on its point for good, as the exact backend has it. In deep
networks, and for a callable flow (which reads its own pattern), the backend stops at the onset of
sliding with ``status = 1``, saying so; the exact backend follows sliding at any depth.

Rest. Near a stable rest point explicit methods take steps bounded by stability, so a long horizon
(t_end = 1e6) would need ~t_end steps. When the field has fallen by REST_DROP, the backend tests for
rest (:meth:`GeneralBackend.at_rest`: a Newton step within REST_TOL tolerances) and holds the state
from there, saying so in ``message``.

Accuracy (``benchmarks/fuzz_solver.py --compare``, default rtol = 1e-10, atol = 1e-12):

- deep (the first 98 fuzz problems of seed 0: L 2–3, M ≤ 4, N ≤ 50, ties, duplicates, point weights):
  37 reach t_end and 61 stop at the onset of sliding (status 1), none for any other reason, the
  slowest in 0.26 s; where requested times were reached before stopping (43 problems), max
  |θ_general − θ_exact| had median 6e-11, 95th percentile 1e-9 and maximum 8e-8. (Before the
  frozen pattern: 33 stopped at sliding, 29 took more than 15 s, and one was 2.1e-6 off.)
- one layer (200 problems of seed 1 cut to their first layer): all 200 reach t_end, max error 9.4e-8,
  median 8e-11, the slowest in 0.15 s (before: 17 stopped at sliding, 9 crawled, the worst was 1.2e-5
  off). At t = 0 with points on their thresholds the reported dissipation is the tie convention's
  (σ'(0) = 0) until the first crossing ~1e-9 later, where the exact backend reports the resolved one.

On problem 28, θ(0) is a branching point (points tied on all thresholds of two layers, six consistent
cells, each a classical gradient flow); both backends meet the ties as events one row at a time and
select the same cell, while explicit Euler from θ(0) takes another (tests/dynamics/test_fuzz.py). Event
logs of the two backends agree only where the events are well separated: near ties, round-off decides
how many events a tie splits into.

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

__all__ = ["GeneralBackend", "FlowSpec", "flow_spec", "pattern_rate", "MAX_NFEV_PER_SEGMENT", "REST_DROP", "REST_TOL",
           "RATE_BLOCK"]

_EPS = np.finfo(float).eps
#: The general backend gives up on a segment after this many right-hand-side evaluations.
MAX_NFEV_PER_SEGMENT = 200_000
#: A segment is interrupted to test for rest (:meth:`GeneralBackend.at_rest`) when the field's largest component
#: has fallen to this fraction of its value at the segment's start.
REST_DROP = 1e-6
#: :meth:`GeneralBackend.at_rest` holds a state within REST_TOL (atol + rtol |y|) of a stable rest point.
REST_TOL = 10.0
#: The deepest network in which the backend follows sliding (deeper: it stops at the onset, status 1). Sliding rows
#: of points that cross thresholds in several layers chatter through the equivalent control, which this backend
#: does not group the way the exact backend groups its tied units.
SLIDING_DEPTH = 1
#: Newton iterations of the equivalent control of sliding rows (:meth:`GeneralBackend._controlled`).
_CONTROL_ITERATIONS = 4


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
    rhs: Callable  # (FlowState, pattern (L, N, M), bool or real in [0, 1]) -> d state / dt (1-D)
    dissipation: Callable  # (FlowState, pattern or None: from the signs) -> −dC/dt
    moves: tuple
    along: Callable | None = None  # (FlowState, d state/dt, pattern) -> −dC/dt along that velocity; None: no sliding


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

    def rhs(n, P):
        return _flows.frame_flow_arrays(n.frames, n.thresholds, X, targets, w, P).ravel()

    def diss(n, P=None):
        Rdot = _flows.frame_flow_arrays(n.frames, n.thresholds, X, targets, w, P)
        return float(np.sum(Rdot * Rdot))  # −dC/dt = Σ_ℓ ‖Ω_ℓ‖² = Σ_ℓ ‖Ṙ_ℓ‖²

    def along(n, v, _P=None):  # −dC/dt = −⟨∂C/∂R, Ṙ⟩ by central differences of the (continuous) cost along Ṙ
        speed = float(np.abs(v).max())
        if speed == 0:
            return 0.0
        eta = 1e-6 / speed
        dR = v.reshape(L, M, M)
        return -(_input_cost(n.frames + eta * dR, th0, X, targets, w)
                 - _input_cost(n.frames - eta * dR, th0, X, targets, w)) / (2 * eta)

    return FlowSpec("frame", R0.ravel().copy(), network, rhs, diss, ("frames",), along)


def _input_cost(R, theta, X, targets, w):
    """C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² on plain arrays (x^(τ,L) = R_Lᵀ m_L)."""
    m_L, _, _ = _flows.adapted_forward(R, theta, X)
    r = m_L - targets @ R[-1].T
    return 0.5 * float(np.einsum("n,nm,nm->", w, r, r))


def _gradient(X, targets, w):
    """∂C_in/∂θ on inputs validated once in solve (the right-hand side is called thousands of times)."""
    def grad(n, P=None):
        return _flows.threshold_gradient_arrays(n.frames, n.thresholds, X, targets, w, P)
    return grad


def _thresholds_network(net):
    L, M = net.scales.shape
    return lambda y: FlowState(frames=net.frames, scales=net.scales, thresholds=y.reshape(L, M))


def _callable_spec(flow, net, X, targets, w):
    L, M = net.scales.shape
    grad = _gradient(X, targets, w)

    def rhs(n, _P):  # the user's flow sees a validated network (frames and scales frozen) and reads its own pattern
        out = np.asarray(flow(AdaptedNetwork(n.frames, n.scales, n.thresholds), X, targets, w), dtype=float)
        if out.shape != (L, M):
            raise ValueError(f"flow (a callable) must return θ̇ of shape ({L}, {M}); got shape {out.shape}")
        return out.ravel()

    return FlowSpec(getattr(flow, "__name__", "callable"), net.thresholds.ravel().copy(), _thresholds_network(net),
                    rhs, lambda n, P=None: -float(np.sum(grad(n) * rhs(n, None).reshape(L, M))), ("thresholds",))


def _threshold_spec(flow, net, X, targets, w):
    L, M = net.scales.shape
    grad = _gradient(X, targets, w)
    if flow == "bias":
        def rhs(n, P):
            return (-grad(n, P) / n.scales**2).ravel()

        def diss(n, P=None):
            g = grad(n, P)
            return float(np.sum(g * g / n.scales**2))
    else:
        # Through the general cumulative parameters (not the kernel form the exact backend uses): the weights are
        # frozen, so W^(ℓ) = diag(λ_ℓ) R_ℓ and the kernel K of (4.5) are computed once; b^(ℓ) = −λ_ℓ θ_ℓ.
        Wcs, _ = net.cumulative_parameters()
        K = _flows.induced_bias_kernel(layer_parameters(*net.cumulative_parameters())[0])

        def rhs(n, P):
            bcs = [-s * t for s, t in zip(n.scales, n.thresholds)]
            _, gb = _flows._general_gradient(Wcs, bcs, X, targets, w, P)
            db = -np.einsum("lpij,pj->li", K, np.stack(gb))
            return (-db / n.scales).ravel()  # θ = −b^(ℓ)/λ with λ frozen

        def diss(n, P=None):
            return -float(np.sum(grad(n, P) * rhs(n, P).reshape(L, M)))

    def along(n, v, P=None):
        return -float(np.sum(grad(n, P) * v.reshape(L, M)))

    return FlowSpec(flow, net.thresholds.ravel().copy(), _thresholds_network(net), rhs, diss, ("thresholds",), along)


def _scale_bias_spec(net, X, targets, w):
    L, M = net.scales.shape
    K = L * M
    grad = _gradient(X, targets, w)

    def network(y):
        return FlowState(frames=net.frames, scales=y[:K].reshape(L, M), thresholds=y[K:].reshape(L, M))

    def rhs(n, P):
        f = _flows.scale_bias_flow_arrays(n.frames, n.scales, n.thresholds, X, targets, w, P)
        return np.concatenate((f.scales.ravel(), f.thresholds.ravel()))

    def diss(n, P=None):
        f = _flows.scale_bias_flow_arrays(n.frames, n.scales, n.thresholds, X, targets, w, P)
        return -float(np.sum(grad(n, P) * f.thresholds))

    def along(n, v, P=None):  # C_in does not depend on the scales
        return -float(np.sum(grad(n, P) * v[K:].reshape(L, M)))

    return FlowSpec("scale_bias", np.concatenate((net.scales.ravel(), net.thresholds.ravel())), network, rhs, diss,
                    ("thresholds", "scales"), along)


# --------------------------------------------------------------------------- segments


class GeneralSegment:
    """The dense output of solve_ivp from t0, with the pattern in force."""

    def __init__(self, t0, dense, spec, P, rate, problem, sliding=None, field=None):
        L, _, M = P.shape
        self.t0, self.dense, self.spec, self.P, self.rate_P = t0, dense, spec, P.copy(), rate
        self.problem = problem
        self.n = P.sum(axis=1).astype(np.int64)
        self.sliding = np.zeros((L, M), np.int8) if sliding is None else sliding
        self.field = field  # state -> the sliding field (equivalent control), or None: the pattern's own field

    def evaluate(self, times) -> Values:
        ys = np.asarray(self.dense(times)).T.reshape(np.size(times), -1)
        nets = [self.spec.network(yy) for yy in ys]
        th = np.stack([n.thresholds for n in nets])
        sc = np.stack([n.scales for n in nets])
        fr = np.stack([n.frames for n in nets])
        if self.field is None:  # the segment's own pattern: its field, continued across the thresholds
            diss = np.array([self.spec.dissipation(n, self.P) for n in nets])
        else:  # sliding: along the equivalent control's field, tangent to the sliding thresholds
            diss = np.array([self.spec.along(n, self.field(yy), self.P) for n, yy in zip(nets, ys)])
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
    """solve_ivp between events, on the segment's frozen pattern; one terminal event function for all rows and a
    restart after each event; sliding followed in one layer (equivalent control); a stable rest point held."""

    algorithm = "solve_ivp"

    def __init__(self, problem, spec: FlowSpec, ivp_method="DOP853", rtol=1e-10, atol=1e-12):
        super().__init__(problem)
        self.spec, self.ivp_method, self.rtol, self.atol = spec, ivp_method, rtol, atol
        self.moves = spec.moves
        self.L, self.N, self.M = problem.shape
        self.y = spec.state.copy()
        n0 = spec.network(self.y)
        self.P = (event_values(n0.frames, n0.thresholds, problem.X) <= 0.0).ravel()
        self.last_flip_time = np.full(self.P.size, -np.inf)
        self._scale = problem.scale
        self.eps_event = 1e-10 * self._scale
        # How far before its threshold each row's event fires: ε, or 0 for a row whose linear step across the last
        # ε would be long (it approaches slowly: the integrator then follows it to the threshold itself).
        self.early = np.full(self.P.size, self.eps_event)
        self.S = np.empty(0, np.int64)  # flat indices of the rows that slide on their thresholds
        # Their equivalent control (the weight of the truncated side) at the segment's start: every evaluation in
        # the segment starts Newton's method from it, so that the control is one function of the state (the event
        # of a control reaching 0 or 1 is located by root finding on it).
        self._p = np.empty(0)
        self.offset = self._offsets()
        self.calls = 0
        self._last = None  # (t, y, field, control) of the last evaluation with the present pattern
        self._test_rest = True  # at the start, and after the field has slowed down (the `slow` event)
        self._rest_level = None  # the field's size at which the last failed rest test predicts rest

    def fun(self, t, y, P=None):
        """The field of the segment's pattern (``P``, default the present one), continued across the thresholds;
        with sliding rows, the field of their equivalent control (:meth:`_controlled`)."""
        self.calls += 1
        if self.calls > MAX_NFEV_PER_SEGMENT:
            raise _Stalled(t, y)
        present = P is None
        P = self._P3() if present else P
        if self.S.size:
            f, p = self._controlled(y, P, self.S, self._p)
        else:
            f, p = self.spec.rhs(self.spec.network(y), P), None
        if present:
            self._last = (t, y.copy(), f, p)
        return f

    def _last_at(self, t, y):
        """(field, control) at (t, y), reusing the integrator's own last evaluation when it is there (explicit
        Runge–Kutta methods evaluate the field at the end of each accepted step before the events)."""
        last = self._last
        if last is None or last[0] != t or not np.array_equal(last[1], y):
            self.fun(t, y)
            last = self._last
        return last[2], last[3]

    def _controlled(self, y, P, S, p0, bounded=True):
        """Filippov's sliding field: the rows S get real pattern entries p ∈ [0, 1] (the weight of their truncated
        side, :func:`reluflow.theory.flows.mix`) chosen so that every sliding row stays on its threshold,
        d g_f/dt = 0 for f in S (Utkin's equivalent control).

        d g_f/dt along the field F(p) is a central difference of the event functions (with the same frozen
        pattern) along F; it is affine in each p_f (the field is multilinear in the pattern entries), so Newton's
        method on the |S| equations, its Jacobian by unit secants, converges in one step when the sliding rows
        belong to different points and in a few otherwise. Returns (field, p).
        """
        base = P.astype(float).ravel()
        k = S.size
        n = self.spec.network(y)

        def rates(p):
            Pf = base.copy()
            Pf[S] = p
            Pf = Pf.reshape(P.shape)
            F = self.spec.rhs(n, Pf)
            speed = float(np.abs(F).max())
            if speed == 0 or not np.isfinite(speed):
                return np.zeros(k), F, speed
            eta = 1e-6 * self._scale / speed
            up, down = self.spec.network(y + eta * F), self.spec.network(y - eta * F)
            X = self.problem.X
            g_up = event_values(up.frames, up.thresholds, X, Pf).ravel()[S]
            g_down = event_values(down.frames, down.thresholds, X, Pf).ravel()[S]
            return (g_up - g_down) / (2 * eta), F, speed

        p = np.asarray(p0, dtype=float).copy()
        G, F, speed = rates(p)
        for _ in range(_CONTROL_ITERATIONS):
            if not np.all(np.isfinite(G)) or np.abs(G).max() <= 1e-9 * max(speed, _EPS):
                break
            J = np.empty((k, k))
            for j in range(k):  # a loop over the sliding rows (unit secants), not over data points
                e = p.copy()
                e[j] += 1.0
                J[:, j] = rates(e)[0] - G
            trial = p + np.linalg.lstsq(J, -G, rcond=None)[0]
            G_t, F_t, speed_t = rates(trial)
            # Safeguard: where the field vanishes (a rest point on the surfaces) the control is 0/0 and the secants
            # are rounding; keep the last control unless the step is finite and reduces |G|, and, along a segment
            # (``bounded``: the control moves continuously there), stays near [0, 1].
            if (not np.all(np.isfinite(trial)) or not np.abs(G_t).max() < np.abs(G).max()
                    or (bounded and (trial.min() < -0.5 or trial.max() > 1.5))):
                break
            p, G, F, speed = trial, G_t, F_t, speed_t
        return F, p

    def at_rest(self, y) -> bool:
        """Whether ``y`` lies within REST_TOL tolerances of a stable rest point of the present pattern's field.

        One Newton step δ = −J⁺ F, with J the central-difference Jacobian of the field F at ``y``: at rest when
        every |δ_i| ≤ REST_TOL (atol + rtol |y_i|), F lies in the range of J (the linear model has a rest point;
        lines of rest points, as in the scale-and-bias flow, are allowed) and no eigenvalue of J has a positive
        real part beyond rounding. The flow then stays that close to its rest point for all time, so the backend
        holds the state instead of integrating on: near a stable rest point explicit methods take steps bounded by
        stability, about 1/|eigenvalue| each, and their error control keeps the state only within a few
        tolerances of the rest point anyway (measured on the bad-input matrix's one-layer fixture with RK45 at
        rtol = 1e-8: the state wanders up to ~5 tolerances around it).

        Sets ``_rest_level``, the largest component of the field at which the linear model predicts rest (the next
        test waits for it), or None where the model does not apply.
        """
        f = self.fun(self.t, y)
        tol = REST_TOL * (self.atol + self.rtol * np.abs(y))
        self._rest_level = None
        if not np.all(np.isfinite(f)):
            return False
        if np.all(f == 0):
            return True
        h = 1e-6 * np.maximum(np.abs(y), self._scale)
        J = np.empty((y.size, y.size))
        for j in range(y.size):  # a loop over state components (L·M of them), not over data points
            e = np.zeros(y.size)
            e[j] = h[j]
            J[:, j] = (self.fun(self.t, y + e) - self.fun(self.t, y - e)) / (2 * h[j])
        delta = np.linalg.lstsq(J, -f, rcond=None)[0]
        norm = max(float(np.abs(J).max()), _EPS)
        consistent = np.all(np.abs(J @ delta + f) <= 1e-6 * np.abs(f).max() + _EPS * norm * np.abs(delta).max())
        stable = float(np.linalg.eigvals(J).real.max()) <= 1e-8 * norm
        if not (consistent and stable):
            return False
        moves = np.abs(delta) > 0
        if not moves.any():
            return True
        ratio = float(np.min(tol[moves] / np.abs(delta[moves])))
        self._rest_level = float(np.abs(f).max()) * min(ratio, 1.0)
        return ratio >= 1.0

    def signed(self, y, s):
        n = self.spec.network(y)
        return s * event_values(n.frames, n.thresholds, self.problem.X).ravel()

    def _offsets(self):
        """Shifts that make every row's event function start strictly positive at the present state.

        A flipped row sits on its threshold (or, by rounding, just past it), and a row may start within ε of its
        threshold (a tie at t = 0, or a row near a crossing that was not its own): without a shift its event
        function min_f s_f g_f − ε would start ≤ 0 and could never fire, and the frozen pattern of the segment
        would carry the row across unseen. The shift is ε − s_f g_f plus a few units in the last place of ε
        (the smallest float would be lost in the subtraction of ε), so such a row fires as soon as it moves
        towards its other side, and rows further than ε from their threshold are not shifted.
        """
        h = self.signed(self.y, np.where(self.P, -1.0, 1.0))
        offset = np.maximum(self.early - h + 16 * np.spacing(self.eps_event), 0.0)
        offset[self.S] = np.inf  # sliding rows stay on their thresholds: their control has its own event
        return offset

    def _P3(self):
        return self.P.reshape(self.L, self.N, self.M)

    def _segment(self, t0, dense, sliding=None):
        rate = None
        if self.spec.moves == ("thresholds",):
            p = self.problem
            rate = pattern_rate(p.net.frames, p.net.scales, self._P3(), p.X, p.w)
        field = None
        if self.S.size:
            S, P, p0 = self.S.copy(), self._P3().copy(), self._p.copy()
            field = lambda yy: self._controlled(yy, P, S, p0)[0]  # noqa: E731 - the segment's own sliding set
            if sliding is None:
                sliding = np.zeros((self.L, self.M), np.int8)
                l, _, k = np.unravel_index(S, (self.L, self.N, self.M))
                sliding[l, k] = 1
        return GeneralSegment(t0, dense, self.spec, self._P3(), rate, self.problem, sliding=sliding, field=field)

    def _stop(self, status, message, sliding=None):
        self.finish(status, message, self.t)
        return self._segment(self.t, _constant(self.y), sliding=sliding)

    def _integrate(self, s):
        shift = self.offset - self.early

        def event(_t, y):
            return float(np.min(self.signed(y, s) + shift))

        event.terminal = True
        event.direction = -1
        self.calls, self._last = 0, None
        speed0 = float(np.abs(self.fun(self.t, self.y)).max())
        level = REST_DROP * speed0 if self._rest_level is None else max(REST_DROP * speed0, self._rest_level)
        level = min(level, 0.5 * speed0)

        def slow(t, y):  # the field has fallen to `level`: time to test for rest
            return float(np.abs(self._last_at(t, y)[0]).max()) - level

        slow.terminal = True
        slow.direction = -1
        events = [event, slow]
        if self.S.size:
            def control(t, y):  # a sliding row's control reaches 0 or 1: it leaves its threshold
                p = self._last_at(t, y)[1]
                return float(min(p.min(), (1.0 - p).min()))

            control.terminal = True
            control.direction = -1
            events.append(control)
        try:
            sol = solve_ivp(self.fun, (self.t, self.problem.t_end), self.y, method=self.ivp_method, rtol=self.rtol,
                            atol=self.atol, events=events, dense_output=True)
        except _Stalled as stall:
            self.nfev += self.calls
            self.stall = stall
            return None
        self.nfev += sol.nfev
        return sol

    def step(self):
        t_end = self.problem.t_end
        if self._test_rest and self.at_rest(self.y):
            return [self._hold()]
        self._test_rest = False
        s = np.where(self.P, -1.0, 1.0)
        sol = self._integrate(s)
        if sol is None:
            t_s, y_s = self.stall.args
            field = float(np.abs(self.spec.rhs(self.spec.network(y_s), self._P3())).max())
            return [self._stop(-1, f"stopped: the segment from t = {self.t:.6g} reached only t = {t_s:.6g} after "
                                   f"{MAX_NFEV_PER_SEGMENT} right-hand-side evaluations without an event or a rest "
                                   f"point (the field there is {field:.3g}; an implicit ivp_method such as 'Radau' "
                                   "may take longer steps)")]
        if sol.status == -1:
            return [self._stop(-1, f"solve_ivp failed after t = {self.t:.6g}: {sol.message}")]
        h_end = self.signed(sol.y[:, -1], s) + self.offset
        if h_end.min() < 0.0:  # a row crossed within one step and the event function did not see it
            f = int(np.argmin(h_end))
            l, i, k = np.unravel_index(f, (self.L, self.N, self.M))
            return [self._stop(-1, f"stopped: between t = {self.t:.6g} and t = {sol.t[-1]:.6g} point {int(i)} "
                                   f"crossed the threshold of layer {int(l) + 1}, coordinate {int(k)} by "
                                   f"{-h_end[f]:.3g} without an event (a step longer than the crossing)")]
        if sol.status == 0:
            segment = self._segment(self.t, sol.sol)
            self.finish(0, f"reached t = {t_end:.6g}", t_end)
            return [segment]
        if sol.t_events[0].size == 0:
            segment = self._segment(self.t, sol.sol)
            fired = 1 if sol.t_events[1].size else 2
            self.t, self.y = float(sol.t_events[fired][0]), np.asarray(sol.y_events[fired][0], dtype=float)
            if fired == 1:  # the field has slowed down: continue from there, or hold at rest
                self._test_rest = True
                return [segment]
            return [segment] + self._release()
        t_e, y_e, v, rows, t_cross = self._crossing(sol, s)
        if rows is None:  # integrate on to the threshold itself
            segment = self._segment(self.t, sol.sol)
            self.t, self.y = t_e, y_e
            self.offset = self._offsets()
            return [segment]
        segment = self._segment(self.t, _extrapolated(sol.sol, t_e, y_e, v))
        self.t = min(t_cross, t_end)
        self.y = y_e + (self.t - t_e) * v
        if t_cross > t_end:  # the crossing lies beyond the last requested time
            self.finish(0, f"reached t = {t_end:.6g}", t_end)
            return [segment]
        return [segment] + self._flip(rows, s, v)

    def _same_threshold(self, new):
        """The rows ``new`` and every other row on the same threshold (layer and coordinate) at the same point of it
        (|g| within rounding): duplicated points, or points that an earlier layer maps to one point. They slide
        together; left out, such a row would cross back and forth with the rounding of the sliding ones."""
        L, N, M = self.L, self.N, self.M
        g = self.signed(self.y, np.ones(self.P.size))
        on = np.abs(g) <= 64 * _EPS * self._scale
        l, _, k = np.unravel_index(new, (L, N, M))
        mask = np.zeros((L, M), bool)
        mask[l, k] = True
        rows = np.flatnonzero(on & np.broadcast_to(mask[:, None, :], (L, N, M)).ravel())
        rows = np.union1d(rows, new)
        return np.setdiff1d(rows, self.S)

    def _settle(self, new=None):
        """Rows ``new`` start to slide (tie convention: they count as truncated); then every sliding row whose
        equivalent control lies outside [0, 1] (after an event the fields change, and a side may stop pushing back)
        leaves its threshold, the most outside first, onto the side the control points to, and the control of the
        others is solved again. Returns None, or the stopping segment where the control is not finite."""
        t, shape = self.t, (self.L, self.N, self.M)
        S, p = self.S, self._p
        if new is not None and new.size:
            self.P[new] = True
            S, p = np.concatenate((S, new)), np.concatenate((p, np.full(new.size, 0.5)))
        while S.size:
            _, p = self._controlled(self.y, self._P3(), S, p, bounded=False)
            if not np.all(np.isfinite(p)):
                l, i, k = np.unravel_index(S, shape)
                return self._stop(1, f"stopped at t = {t:.6g}: point {int(i[0])} slides on the threshold of layer "
                                     f"{int(l[0]) + 1}, coordinate {int(k[0])}, and the equivalent control of the "
                                     f"{S.size} sliding rows is not finite")
            outside = np.maximum(p - 1.0, -p)
            j = int(np.argmax(outside))
            if outside[j] <= 1e-9:
                break
            f = S[j]
            self.P[f] = p[j] > 1.0
            self.events.add_flat(t, f, shape, TRUNCATED if self.P[f] else UNTRUNCATED)
            self.last_flip_time[f] = t
            keep = np.arange(S.size) != j
            S, p = S[keep], p[keep]
        self.S, self._p = S, np.clip(p, 0.0, 1.0)
        return None

    def _release(self):
        """A sliding row's control has reached 0 (it leaves onto its untruncated side) or 1 (truncated)."""
        t, shape = self.t, (self.L, self.N, self.M)
        _, p = self._controlled(self.y, self._P3(), self.S, self._p)
        margin = np.minimum(p, 1.0 - p)
        out = margin <= max(1e-9, float(margin.min()) + 1e-12)
        self.last_flip_time[:] = -np.inf
        for f, pf in zip(self.S[out], p[out]):
            self.P[f] = pf > 0.5
            self.events.add_flat(t, f, shape, TRUNCATED if self.P[f] else UNTRUNCATED)
            self.last_flip_time[f] = t  # a released row pushed straight back slides again (see _flip)
        self.S, self._p = self.S[~out], np.clip(p[~out], 0.0, 1.0)
        stop = self._settle()
        if stop is not None:
            return [stop]
        return self._after_event()

    def _after_event(self):
        """After a pattern change (a flip or a release): reset the rest test and the early firing, shift the event
        functions to start positive, and stop once more than max_events events have occurred."""
        self._rest_level = None
        self.early[:] = self.eps_event
        self.offset = self._offsets()
        if self.too_many_events():
            return [self._segment(self.t, _constant(self.y))]
        return []

    def _hold(self):
        """The state rests (:meth:`at_rest`): constant from here to t_end."""
        t_end = self.problem.t_end
        segment = self._segment(self.t, _constant(self.y))
        self.finish(0, f"reached t = {t_end:.6g} (at rest from t = {self.t:.6g} on: within REST_TOL = {REST_TOL:g} "
                       "times atol + rtol |y| of a stable rest point)", t_end)
        return segment

    def _crossing(self, sol, s):
        """Step from the ε-level to the threshold along the (smooth) field of the old pattern."""
        t_e = float(sol.t_events[0][0])
        y_e = np.asarray(sol.y_events[0][0], dtype=float)
        v = self.fun(t_e, y_e)
        h = self.signed(y_e, s) + self.offset
        near = np.flatnonzero(h <= self.early * (1 + 1e-6) + 64 * _EPS * self._scale)
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
        if speed * dt_star > 1e3 * self.eps_event and np.any(self.early[rows] > 0):
            # A slow approach: the linear step across the last ε would be long and could step over other rows'
            # crossings. The integrator follows these rows to their thresholds instead (the frozen pattern keeps
            # its field smooth there).
            self.early[rows] = 0.0
            return t_e, y_e, v, None, t_e
        return t_e, y_e, v, rows, t_e + dt_star

    def _flip(self, rows, s, v):
        """Flip the crossing rows; stop at the onset of sliding (Filippov) or after max_events."""
        t, shape = self.t, (self.L, self.N, self.M)
        s_new = s.copy()
        s_new[rows] = -s_new[rows]
        P_new = self.P.copy()
        P_new[rows] = ~P_new[rows]
        P_new = P_new.reshape(shape)
        slides = pushes_back(rows, t, self.y, v, lambda tt, yy: self.fun(tt, yy, P_new),
                             lambda yy: self.signed(yy, s_new), self._scale)
        slides |= t - self.last_flip_time[rows] <= 1e-8 * max(1.0, t)
        for f in rows:
            self.P[f] = ~self.P[f]
            self.events.add_flat(t, f, shape, TRUNCATED if self.P[f] else UNTRUNCATED)
        new = rows[slides]
        if new.size:
            for f in new:
                self.events.add_flat(t, f, shape, SLIDING)
            if self.spec.along is None or self.L > SLIDING_DEPTH:  # sliding is followed in one layer, named flows
                sl = np.zeros((self.L, self.M), np.int8)
                l, i, k = np.unravel_index(new, shape)
                sl[l, k] = 1
                why = ("a callable flow reads its own pattern" if self.spec.along is None else
                       "this backend follows sliding in one layer only; the exact backend follows it at any depth")
                return [self._stop(1, f"stopped at t = {t:.6g}: point {int(i[0])} slides on the threshold of layer "
                                      f"{int(l[0]) + 1}, coordinate {int(k[0])} (the field on both sides pushes it "
                                      f"onto the threshold; {why})", sliding=sl)]
            new = self._same_threshold(new)
        self.last_flip_time[:] = -np.inf
        self.last_flip_time[rows] = t
        if new.size or self.S.size:
            stop = self._settle(new)
            if stop is not None:
                return [stop]
        return self._after_event()

"""Solving the effective gradient flows through their truncation events (THEORY.md §4.2–4.5, §5).

One entry point, :func:`solve`, in the spirit of :func:`scipy.integrate.solve_ivp`: it integrates
a threshold flow of an adapted network from t = 0 to the last requested time and returns one
:class:`xarray.Dataset` holding the trajectory, the cost and an event log.

The cost is the input-layer cost C = C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² with per-point targets ỹ_i
(N, M) in input space and weights w_i = 1/N unless ``point_weights`` says otherwise.

Backends:

- ``method="exact"`` (bias flow (4.2) only). Between events the flow is affine in θ, θ̇ = A θ + c,
  and solved in closed form; events are located analytically or by certified root finding.
  - one layer (``algorithm="sorted"``): θ_k(t) = ȳ + (θ_k(t_m) − ȳ) e^{−(W/λ_k²)(t − t_m)} and
    Δt = (λ_k²/W) log((ȳ − θ_k(t_m))/(ȳ − u_next)), by sorting and prefix sums, O(N log N)
                                                                   → :func:`.events.one_layer_trajectory`
  - any depth (``algorithm="affine"``): θ(t) = θ_m + Λ^-1 Q (e^{−μ (t−t_m)} − 1) z, the matrix
    exponential of A by a symmetric eigen-decomposition; events by certified bracketing of sums
    of exponentials and Brent's method; sliding followed on its surface
                       → :func:`.events.closed_form_scaled`, :func:`.events.next_crossing`,
                         :func:`.events.sliding_flow`
- ``method="general"``: :func:`scipy.integrate.solve_ivp` (``ivp_method="DOP853"``, ``rtol=1e-10``,
  ``atol=1e-12`` by default) with one terminal event function that fires at the first change of
  the truncation pattern, and a restart after each event. It runs any threshold flow:
  - ``flow="bias"`` (4.2)          → :func:`reluflow.theory.flows.bias_flow`
  - ``flow="scale_bias"`` (4.3)    → :func:`reluflow.theory.flows.scale_bias_flow` (state λ and θ)
  - ``flow="frame"`` (4.4)         → :func:`reluflow.theory.flows.frame_flow` (state R)
  - ``flow="induced_bias"`` (4.5)  → :func:`reluflow.theory.flows.induced_bias_flow` (θ = −b^(ℓ)/λ)
  - a callable ``rhs(net, X, targets, point_weights) -> θ̇ (L, M)`` (λ and R frozen).

Events. An event is a point crossing a threshold: g_{ℓ,i,k} = (R_ℓ x_i^(τ,ℓ-1))_k − θ_{ℓ,k} changes
sign. A tie (g = 0) counts as truncated (σ'(0) = 0). Kinds: ``truncated`` (the point enters T),
``untruncated`` (it leaves T) and ``sliding`` (the threshold is pushed onto the point from both
sides, so that flipping the pattern would chatter). The exact backend follows sliding: in one
layer the threshold rests on the point for good; in the deep case it moves with the sliding
points (the projected, still affine, flow) until the field on one side stops pushing back, when
the points are released or truncated. The general backend detects the onset of sliding (a
Filippov test after each crossing) and stops there with ``status = 1``, saying so in ``message``.

The result (see :func:`solve`) follows the project's conventions: coordinates carry the grid
values, every variable has ``long_name`` and ``units`` (time and all quantities are dimensionless,
units ``"1"``), and attributes are strings or numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp

from reluflow.dynamics.events import (
    EVENT_KINDS,
    SLIDING,
    TRUNCATED,
    UNTRUNCATED,
    affine_pattern,
    closed_form_scaled,
    next_crossing,
    one_layer_trajectory,
    orthonormal_basis,
    sliding_flow,
)
from reluflow.theory import flows as _flows
from reluflow.theory.adapted import AdaptedNetwork
from reluflow.theory.network import layer_parameters
from reluflow.validation import as_point_weights, as_points, as_positive_float, as_targets, as_times, check_positive_int

__all__ = ["solve", "METHODS", "FLOWS", "ALGORITHMS"]

METHODS = ("exact", "general")
FLOWS = ("bias", "scale_bias", "frame", "induced_bias")
ALGORITHMS = ("auto", "sorted", "affine")
IVP_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")

_EPS = np.finfo(float).eps
_TINY = np.finfo(float).tiny
#: The general backend gives up on a segment after this many right-hand-side evaluations.
MAX_NFEV_PER_SEGMENT = 200_000


class _Stalled(Exception):
    pass


# --------------------------------------------------------------------------- public entry point


def solve(net, X, targets, t_eval, *, method: str = "exact", flow="bias", point_weights=None,
          algorithm: str = "auto", ivp_method: str = "DOP853", rtol: float = 1e-10, atol: float = 1e-12,
          max_events: int | None = None, record_events: bool = True) -> xr.Dataset:
    """Integrate a threshold flow of an adapted network through its truncation events.

    Computes θ(t) for θ̇ = −Λ^-2 ∂C_in/∂θ (4.2) (or another flow, ``method="general"``) from
    θ(0) = ``net.thresholds``, with C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|², up to t = max(t_eval).

    Parameters
    ----------
    net : AdaptedNetwork
        Frames R_ℓ, scales λ_ℓ and initial thresholds θ_ℓ(0).
    X : array (N, M)
        Training points as rows.
    targets : array (N, M)
        Input-space target ỹ_i of each point (see :func:`reluflow.theory.costs.targets_by_label`).
    t_eval : 1-D array
        Output times, non-negative and strictly increasing; the flow starts at t = 0.
    method : {"exact", "general"}
        Closed form between exactly located events (bias flow only), or ``solve_ivp`` with
        event detection and restarts (any flow).
    flow : {"bias", "scale_bias", "frame", "induced_bias"} or callable
        The flow (see the module docstring). A callable ``rhs(net, X, targets, point_weights)``
        returns θ̇ of shape (L, M) with λ and R frozen; it needs ``method="general"``.
    point_weights : array (N,), optional
        Cost weights w_i ≥ 0; default 1/N.
    algorithm : {"auto", "sorted", "affine"}
        Exact backend only: ``"sorted"`` (one layer, per-coordinate sweep, O(N log N)),
        ``"affine"`` (any depth, matrix exponential); ``"auto"`` picks ``"sorted"`` for L = 1.
    ivp_method, rtol, atol : general backend only
        Passed to :func:`scipy.integrate.solve_ivp` (DOP853, 1e-10 and 1e-12 by default).
    max_events : int, optional
        Stop (``status = -1``) once more events than this have occurred; default: no limit.
    record_events : bool
        Include every event time in the ``time`` coordinate (default). With False the time
        coordinate holds only 0 and ``t_eval``; the event log is complete either way.

    Returns
    -------
    xarray.Dataset
        Coordinates ``time`` (0, the requested times and the event times), ``layer`` (ℓ = 1..L),
        ``coordinate`` (k = 0..M-1) and ``event``. Variables: ``thresholds`` θ, ``n_truncated``
        n_{ℓ,k} = |T_{ℓ,k}|, ``rate`` (the relaxation rate −∂θ̇_{ℓ,k}/∂θ_{ℓ,k} of the pattern in
        force, n_k/(λ_k² N) for one layer and uniform weights), ``sliding`` (1 while a threshold
        slides on points: they count as truncated), ``cost`` C_in, ``dissipation`` −dC/dt and
        ``cost_decay_rate`` −d log C/dt, ``requested`` (1 at the times of ``t_eval``); the event
        log ``event_time``, ``event_layer``, ``event_coordinate``, ``event_point`` and
        ``event_kind`` (``truncated``/``untruncated``/``sliding``); for the general backend also
        ``scales`` and, for the frame flow, ``frames``. At an event time, ``n_truncated``,
        ``rate``, ``sliding`` and ``dissipation`` are right limits (the pattern that drives the
        flow from then on). Attributes ``status`` (0: reached the last time; 1: the general
        backend stopped at the onset of sliding; -1: failed or stopped by ``max_events``),
        ``message``, ``method``, ``flow``, ``algorithm``,
        ``n_events`` and, for the general backend, ``nfev``, ``ivp_method``, ``rtol``, ``atol``.
        If the solver stops early, the ``time`` coordinate ends at the stopping time.
    """
    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"net must be a reluflow.AdaptedNetwork (see adapted_network); got {type(net).__name__}")
    X = as_points(X, "X", dim=net.width)
    N, M = X.shape
    targets = as_targets(targets, N, M)
    w = as_point_weights(point_weights, N)
    t_eval = as_times(t_eval)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if not (callable(flow) or (isinstance(flow, str) and flow in FLOWS)):
        raise ValueError(f"flow must be one of {FLOWS} or a callable rhs(net, X, targets, point_weights); got {flow!r}")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}")
    if not isinstance(ivp_method, str) or ivp_method not in IVP_METHODS:
        raise ValueError(f"ivp_method must be one of {IVP_METHODS}; got {ivp_method!r}")
    rtol = as_positive_float(rtol, "rtol")
    atol = as_positive_float(atol, "atol")
    if max_events is not None:
        max_events = check_positive_int(max_events, "max_events")
    if not isinstance(record_events, (bool, np.bool_)):
        raise TypeError(f"record_events must be a bool; got {type(record_events).__name__} {record_events!r}")
    flow_name = flow if isinstance(flow, str) else getattr(flow, "__name__", "callable")
    weights_note = "uniform 1/N" if point_weights is None else "point_weights"

    if method == "exact":
        if flow != "bias":
            raise ValueError(
                f"method='exact' solves only flow='bias' (the piecewise affine bias flow (4.2)); "
                f"got flow={flow_name!r}. Use method='general' for the other flows."
            )
        if algorithm == "auto":
            algorithm = "sorted" if net.depth == 1 else "affine"
        if algorithm == "sorted" and net.depth != 1:
            raise ValueError(f"algorithm='sorted' needs a one-layer network (L = 1); got L = {net.depth}. "
                             "Use algorithm='affine' or 'auto'.")
        if algorithm == "sorted":
            traj = _run_sorted(net, X, targets, w, t_eval, max_events)
        else:
            traj = _run_affine(net, X, targets, w, t_eval, max_events)
        extra_attrs = {}
    else:
        if algorithm != "auto":
            raise ValueError(f"algorithm applies to method='exact' only; got algorithm={algorithm!r} "
                             "with method='general'")
        algorithm = "solve_ivp"
        traj = _run_general(_flow_spec(flow, net, X, targets, w), net, X, targets, w, t_eval,
                            ivp_method, rtol, atol, max_events)
        extra_attrs = {"nfev": int(traj.nfev), "ivp_method": ivp_method, "rtol": rtol, "atol": atol}

    attrs = {
        "title": "dynamical truncation: threshold flow through its events",
        "method": method,
        "algorithm": algorithm,
        "flow": flow_name,
        "cost": "C_in = 1/2 sum_i w_i |x_i^(tau,L) - y_i|^2",
        "weights": weights_note,
        "tie_convention": "u_k <= theta_k counts as truncated (sigma'(0) = 0)",
        "event_time_convention": "n_truncated, rate, sliding and dissipation are right limits at event times",
        "status": int(traj.status),
        "message": traj.message,
        "n_events": int(traj.event_time.size),
        **extra_attrs,
    }
    return _assemble(traj, net, X, targets, w, t_eval, bool(record_events), attrs)


# --------------------------------------------------------------------------- validation helpers


# --------------------------------------------------------------------------- shared pieces


@dataclass
class _Trajectory:
    """What a backend hands to :func:`_assemble`.

    ``segments`` is a list of dicts, each valid on [t0, next t0): ``t0``, ``state(times)`` →
    (thresholds (T, L, M), scales (T, L, M), frames (T, L, M, M)), ``theta_dot(times)`` or None,
    ``n`` (L, M), ``rate`` (L, M) or None (computed per time), ``sliding`` (L, M).
    """

    segments: list
    t_stop: float
    status: int
    message: str
    event_time: np.ndarray
    event_layer: np.ndarray
    event_coordinate: np.ndarray
    event_point: np.ndarray
    event_kind: np.ndarray
    nfev: int = 0
    dissipation: Callable | None = None
    moves: tuple = ("thresholds",)
    evaluate: Callable | None = None  # direct evaluator (sorted backend)


def _event_values(R, theta, X):
    """g_{ℓ,i,k} = (R_ℓ x_i^(τ,ℓ-1))_k − θ_{ℓ,k}, shape (L, N, M), by the cone projections."""
    x = X
    out = np.empty((R.shape[0],) + X.shape)
    for l in range(R.shape[0]):
        u = x @ R[l].T
        out[l] = u - theta[l]
        x = np.maximum(u, theta[l]) @ R[l]
    return out


def _pattern_rate(R, lam, P, X, w):
    """−∂θ̇_{ℓ,k}/∂θ_{ℓ,k} = Σ_i w_i |Π_L⋯Π_{ℓ+1} R_ℓᵀ P_ℓ e_k|² / λ_{ℓ,k}² for the pattern P."""
    _, _, _, B = affine_pattern(R, P, X)
    return np.einsum("n,nmj,nmj->j", w, B, B).reshape(lam.shape) / lam**2


def _costs(R, theta, X, targets, w, *, chunk: int = 2_000_000):
    """C_in at each time: theta (T, L, M), R (L, M, M) or (T, L, M, M); vectorised over times."""
    T = theta.shape[0]
    out = np.empty(T)
    step = max(1, chunk // max(X.size, 1))
    for s in range(0, T, step):
        th = theta[s:s + step]
        x = np.broadcast_to(X, (th.shape[0],) + X.shape)
        for l in range(th.shape[1]):
            Rl = R[l] if R.ndim == 3 else R[s:s + step, l]
            u = np.einsum("tnm,km->tnk", x, Rl) if Rl.ndim == 2 else np.einsum("tnm,tkm->tnk", x, Rl)
            m = np.maximum(u, th[:, l, None, :])
            x = np.einsum("tnk,km->tnm", m, Rl) if Rl.ndim == 2 else np.einsum("tnk,tkm->tnm", m, Rl)
        r = x - targets
        out[s:s + step] = 0.5 * np.einsum("n,tnm,tnm->t", w, r, r)
    return out


def _event_arrays(events):
    if not events:
        return (np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                np.empty(0, np.int8))
    t, layer, coord, point, kind = (np.asarray(v) for v in zip(*events))
    return t.astype(float), layer.astype(np.int64), coord.astype(np.int64), point.astype(np.int64), kind.astype(np.int8)


# --------------------------------------------------------------------------- exact, one layer


def _run_sorted(net, X, targets, w, t_eval, max_events):
    R, lam, theta = net.frames[0], net.scales[0], net.thresholds[0]
    u = X @ R.T
    y_hat = targets @ R.T
    t_end = float(t_eval[-1])
    trajs = [one_layer_trajectory(u[:, k], y_hat[:, k], w, float(lam[k] ** 2), float(theta[k]), t_end)
             for k in range(net.width)]
    ev_t = np.concatenate([tr.event_time for tr in trajs])
    ev_k = np.concatenate([np.full(tr.event_time.size, k, np.int64) for k, tr in enumerate(trajs)])
    ev_p = np.concatenate([tr.event_point for tr in trajs])
    ev_kind = np.concatenate([tr.event_kind for tr in trajs])
    status, t_stop = 0, t_end
    message = f"reached t = {t_end:.6g}"
    if max_events is not None and ev_t.size > max_events:
        o = np.argsort(ev_t, kind="stable")
        t_stop = float(ev_t[o[max_events]])
        keep = ev_t < t_stop
        ev_t, ev_k, ev_p, ev_kind = ev_t[keep], ev_k[keep], ev_p[keep], ev_kind[keep]
        status = -1
        message = f"stopped at t = {t_stop:.6g}: more than max_events = {max_events} events"
    n_sliding = int(np.count_nonzero(ev_kind == SLIDING))
    if n_sliding and status == 0:
        message += f"; {n_sliding} point(s) slide: their thresholds rest on them (kink minima of the cost)"

    def evaluate(times):
        cols = [tr.evaluate(times) for tr in trajs]  # per coordinate: θ, θ̇, n, rate, sliding, cost

        def stack(q):
            return np.stack([c[q] for c in cols], axis=1)[:, None, :]

        cost = np.sum([c[5] for c in cols], axis=0)
        return stack(0), stack(1), stack(2), stack(3), stack(4), cost

    return _Trajectory(segments=[], t_stop=t_stop, status=status, message=message, event_time=ev_t,
                       event_layer=np.ones(ev_t.size, np.int64), event_coordinate=ev_k, event_point=ev_p,
                       event_kind=ev_kind, evaluate=evaluate)


# --------------------------------------------------------------------------- exact, any depth


def _run_affine(net, X, targets, w, t_eval, max_events):
    """The exact backend for any depth: closed form between events, certified event location.

    Rows are the event functions g_{ℓ,i,k}, flattened layer-major. A *sliding unit* is a set of
    rows (identical points at one threshold) that the fields on both sides push onto the
    threshold. While it slides, the unit counts as truncated in the reported pattern, the flow is
    the projected affine flow of :func:`reluflow.dynamics.events.sliding_flow` (the threshold follows the
    points), and the unit leaves the surface when the field on one side stops pushing back:
    d g/dt of the "out" field reaches 0 (the points are released) or that of the "in" field does
    (they are truncated). Those two rates are affine in θ, so the exits are located like crossings.
    """
    R, lam = net.frames, net.scales
    L, M = lam.shape
    N = X.shape[0]
    K = L * M
    lam_flat = lam.ravel()
    Dinv = 1.0 / lam_flat
    t_end = float(t_eval[-1])
    theta = net.thresholds.ravel().copy()
    t = 0.0
    Pf = (_event_values(R, theta.reshape(L, M), X) <= 0.0).ravel()  # flat pattern, layer-major (ℓ, i, k)
    F = Pf.size
    forced = np.zeros(F, dtype=bool)
    protected = np.zeros(F, dtype=bool)
    units = []  # sliding units: arrays of rows
    events, segments = [], []
    status, message = 0, f"reached t = {t_end:.6g}"
    scale = 1.0 + float(np.abs(X).max()) + float(np.abs(targets).max())
    stalls = 0
    n_slides = 0

    def unravel(f):
        l, i, k = np.unravel_index(f, (L, N, M))
        return int(l), int(i), int(k)

    def linear(P):
        c, d, a, B = affine_pattern(R, P.reshape(L, N, M), X)
        G = np.einsum("n,nmj,nmk->jk", w, B, B)
        h = np.einsum("n,nmj,nm->j", w, B, a - targets)
        return c.ravel(), d.reshape(F, K), Dinv[:, None] * G * Dinv[None, :], Dinv * h, G

    def build():
        c, d, S, b, G0 = linear(Pf)
        phi0 = lam_flat * theta
        normals = [Dinv * d[u[0]] for u in units]
        if units:
            S_eff, b_eff = sliding_flow(S, b, phi0, np.stack(normals, axis=1))
        else:
            S_eff, b_eff = S, b
        cf = closed_form_scaled(S_eff, b_eff, lam_flat, theta)
        g = c + d @ theta
        beta = (d @ cf.V) * cf.z  # g(τ) = g(0) + Σ_j β_j (e^{−μ_j τ} − 1)
        Q = cf.V * lam_flat[:, None]
        # exit functions of the sliding units: h = −dg/dt (out field), +dg/dt (in field)
        ex_h0, ex_beta, ex_noise = [], [], []
        for j, u in enumerate(units):
            others = [nv for q, nv in enumerate(normals) if q != j]
            basis = _orthonormal(others, K)
            n_j = normals[j] - basis @ (basis.T @ normals[j])  # Π_{−j} n_j
            Pin = Pf.copy()
            Pin[u] = True
            _, _, S_in, b_in, _ = linear(Pin)
            for S_s, b_s, sign in ((S, b, -1.0), (S_in, b_in, 1.0)):
                lin = -(S_s @ n_j)  # dg_j/dt = −(Π n_j)ᵀ (S_s φ + b_s) = const + lin · φ
                const = -float(n_j @ b_s)
                ex_h0.append(sign * (const + lin @ phi0))
                ex_beta.append(sign * (lin @ Q) * cf.z)
                ex_noise.append(64 * _EPS * (abs(const) + np.abs(lin) @ np.abs(phi0)))
        Pin_all = Pf.copy()
        for u in units:
            Pin_all[u] = True
        G_rep = linear(Pin_all)[4] if units else None
        rate = np.diag(G_rep if units else G0) / lam_flat**2
        return (cf, g, beta, np.array(ex_h0), np.array(ex_beta).reshape(-1, K), np.array(ex_noise),
                rate.reshape(L, M), Pin_all)

    def dissolve_split_units():
        """Dissolve every unit whose points no longer share one path through the earlier layers.

        Its points are on the threshold now; their patterns are then resolved afresh (a part of
        them may form a new unit). Returns the rows released.
        """
        released = np.zeros(F, dtype=bool)
        if units:
            d_now = linear(Pf)[1]
            for j in range(len(units) - 1, -1, -1):
                u = units[j]
                if not np.all(np.abs(d_now[u] - d_now[u[0]]) <= 1e-12 * (1 + np.abs(d_now[u[0]]))):
                    released[units.pop(j)] = True
        return released

    while True:
        released = dissolve_split_units()
        cf, g, beta, ex_h0, ex_beta, ex_noise, rate, Pin_all = build()
        in_unit = ~Pf & Pin_all
        s = np.where(Pf, -1.0, 1.0)
        ztol = 64 * _EPS * (scale + float(np.abs(theta).max(initial=0.0)))
        Z = (forced | released | (s * g <= ztol)) & ~in_unit & ~protected
        # Resolve the pattern at time t: flip tied rows that the current field pushes across;
        # a row pushed back after its flip starts to slide.
        flipped = np.zeros(F, dtype=bool)
        while True:
            if units:  # a unit whose field on one side no longer pushes back leaves the surface now
                ex_slope = -(ex_beta * cf.mu).sum(axis=1)
                leaving = (ex_h0 < -ex_noise) | ((ex_h0 <= ex_noise) & (ex_slope < 0))
                if leaving.any():
                    e = int(np.flatnonzero(leaving)[np.argmin(ex_h0[leaving])])
                    j, side_in = divmod(e, 2)
                    u = units.pop(j)
                    Pf[u] = bool(side_in)
                    protected[u] = True
                    Z &= ~protected
                    for r in u:
                        lr, ir, kr = unravel(r)
                        events.append((t, lr + 1, kr, ir, TRUNCATED if side_in else UNTRUNCATED))
                    cf, g, beta, ex_h0, ex_beta, ex_noise, rate, Pin_all = build()
                    in_unit = ~Pf & Pin_all
                    continue
            s = np.where(Pf, -1.0, 1.0)
            slope = -(s[:, None] * beta * cf.mu).sum(axis=1)  # d(s g)/dτ at τ = 0
            bad = Z & ((slope < 0) | (forced & ~flipped & (slope <= 0)))
            if not bad.any():
                break
            f = int(np.flatnonzero(bad)[np.argmin(slope[bad])])
            if flipped[f]:
                # sliding: the unit is every tied copy of this point at this threshold
                l, i, k = unravel(f)
                c_all, d_all = linear(Pf)[:2]
                same = np.zeros(F, dtype=bool)
                same.reshape(L, N, M)[l, :, k] = True
                same &= np.abs(g) <= ztol
                same &= np.all(np.abs(d_all - d_all[f]) <= 1e-12 * (1 + np.abs(d_all[f])), axis=1)
                same &= ~in_unit
                same[f] = True
                rows = np.flatnonzero(same)
                Pf[rows] = False
                units.append(rows)
                for r in rows:
                    lr, ir, kr = unravel(r)
                    events.append((t, lr + 1, kr, ir, SLIDING))
                n_slides += 1
                Z &= ~same
                cf, g, beta, ex_h0, ex_beta, ex_noise, rate, Pin_all = build()
                in_unit = ~Pf & Pin_all
                continue
            flipped[f] = True
            Pf[f] = ~Pf[f]
            l, i, k = unravel(f)
            events.append((t, l + 1, k, i, TRUNCATED if Pf[f] else UNTRUNCATED))
            Z |= dissolve_split_units()
            cf, g, beta, ex_h0, ex_beta, ex_noise, rate, Pin_all = build()
            in_unit = ~Pf & Pin_all
        sliding = np.zeros((L, M), np.int8)
        for u in units:
            l, _, k = unravel(u[0])
            sliding[l, k] = 1
        segments.append(_closed_segment(t, cf, Pin_all.reshape(L, N, M).sum(axis=1), rate, sliding, L, M))
        if max_events is not None and len(events) > max_events:
            status = -1
            message = f"stopped at t = {t:.6g}: more than max_events = {max_events} events"
            return _trajectory_from(segments, t, status, message, events)
        s = np.where(Pf, -1.0, 1.0)
        reg = np.flatnonzero(~in_unit)
        h0 = np.concatenate((s[reg] * g[reg], ex_h0))
        hb = np.concatenate((s[reg, None] * beta[reg], ex_beta))
        tie = np.concatenate((Z[reg] | protected[reg] | (s[reg] * g[reg] <= ztol), ex_h0 <= ex_noise))
        hit = next_crossing(h0, hb, cf.mu, t_end - t, tie)
        if hit is None:
            break
        tau, rows = hit
        stalls = stalls + 1 if tau <= 1e-13 * max(1.0, t) else 0
        if stalls > F + 2:
            status = -1
            message = f"stopped at t = {t:.6g}: the event resolution does not progress (degenerate ties)"
            return _trajectory_from(segments, t, status, message, events)
        theta = cf.theta(tau)[0]
        t = t + tau
        forced = np.zeros(F, dtype=bool)
        protected = np.zeros(F, dtype=bool)
        crossing = rows[rows < reg.size]
        forced[reg[crossing]] = True
        exits = sorted({int(r - reg.size) for r in rows[rows >= reg.size]}, reverse=True)
        for e in exits:  # a unit leaves the surface: released (out field) or truncated (in field)
            j, side_in = divmod(e, 2)
            u = units.pop(j)
            Pf[u] = bool(side_in)
            protected[u] = True
            for r in u:
                lr, ir, kr = unravel(r)
                events.append((t, lr + 1, kr, ir, TRUNCATED if side_in else UNTRUNCATED))
    if n_slides:
        message += f"; {n_slides} sliding episode(s), followed on the sliding surface"
    return _trajectory_from(segments, t_end, status, message, events)


def _orthonormal(vectors, K):
    if not vectors:
        return np.zeros((K, 0))
    return orthonormal_basis(np.stack(vectors, axis=1))


def _closed_segment(t0, cf, n, rate, sliding, L, M):
    def state(times):
        th = cf.theta(times - t0).reshape(-1, L, M)
        return th, None, None

    def theta_dot(times):
        return cf.theta_dot(times - t0).reshape(-1, L, M)

    return {"t0": t0, "state": state, "theta_dot": theta_dot, "n": n.astype(np.int64), "rate": rate,
            "sliding": sliding}


def _trajectory_from(segments, t_stop, status, message, events, **kw):
    t, layer, coord, point, kind = _event_arrays(events)
    return _Trajectory(segments=segments, t_stop=float(t_stop), status=status, message=message, event_time=t,
                       event_layer=layer, event_coordinate=coord, event_point=point, event_kind=kind, **kw)


# --------------------------------------------------------------------------- general backend


@dataclass(frozen=True)
class _FlowSpec:
    name: str
    state: np.ndarray  # initial state vector
    network: Callable  # state -> AdaptedNetwork
    rhs: Callable  # AdaptedNetwork -> d state / dt (1-D)
    dissipation: Callable  # AdaptedNetwork -> −dC/dt
    moves: tuple


def _flow_spec(flow, net, X, targets, w) -> _FlowSpec:
    R0, lam0, th0 = net.frames, net.scales, net.thresholds
    L, M = lam0.shape

    def grad(n):
        return _flows.threshold_gradient(n, X, targets, point_weights=w)

    def thresholds_net(y):
        return AdaptedNetwork(frames=R0, scales=lam0, thresholds=y.reshape(L, M))

    def threshold_dissipation(rhs):
        return lambda n: -float(np.sum(grad(n) * rhs(n).reshape(L, M)))

    if callable(flow):
        def rhs(n):
            out = np.asarray(flow(n, X, targets, w), dtype=float)
            if out.shape != (L, M):
                raise ValueError(f"flow (a callable) must return θ̇ of shape ({L}, {M}); got shape {out.shape}")
            return out.ravel()

        return _FlowSpec(getattr(flow, "__name__", "callable"), th0.ravel().copy(), thresholds_net, rhs,
                         threshold_dissipation(rhs), ("thresholds",))
    if flow == "bias":
        # The inputs are validated once, in solve; the right-hand side is called thousands of times.
        inner = getattr(_flows, "_threshold_gradient", None)

        def rhs(n):
            if inner is None:
                return _flows.bias_flow(n, X, targets, point_weights=w).ravel()
            return (-inner(n, X, targets, w) / n.scales**2).ravel()

        def diss(n):
            g = grad(n)
            return float(np.sum(g * g / n.scales**2))

        return _FlowSpec("bias", th0.ravel().copy(), thresholds_net, rhs, diss, ("thresholds",))
    if flow == "induced_bias":
        def rhs(n):
            Wc, bc = n.cumulative_parameters()
            weights, biases = layer_parameters(Wc, bc)
            db = _flows.induced_bias_flow(weights, biases, X, targets, point_weights=w)
            return (-db / n.scales).ravel()  # θ = −b^(ℓ)/λ with λ frozen

        return _FlowSpec("induced_bias", th0.ravel().copy(), thresholds_net, rhs, threshold_dissipation(rhs),
                         ("thresholds",))
    if flow == "scale_bias":
        K = L * M

        def network(y):
            return AdaptedNetwork(frames=R0, scales=y[:K].reshape(L, M), thresholds=y[K:].reshape(L, M))

        def rhs(n):
            f = _flows.scale_bias_flow(n, X, targets, point_weights=w)
            return np.concatenate((f.scales.ravel(), f.thresholds.ravel()))

        def diss(n):
            f = _flows.scale_bias_flow(n, X, targets, point_weights=w)
            return -float(np.sum(grad(n) * f.thresholds))

        return _FlowSpec("scale_bias", np.concatenate((lam0.ravel(), th0.ravel())), network, rhs, diss,
                         ("thresholds", "scales"))
    # flow == "frame"
    def network(y):
        return AdaptedNetwork(frames=y.reshape(L, M, M), scales=lam0, thresholds=th0)

    def rhs(n):
        return _flows.frame_flow(n, X, targets, point_weights=w).ravel()

    def diss(n):
        Rdot = _flows.frame_flow(n, X, targets, point_weights=w)
        return float(np.sum(Rdot * Rdot))  # −dC/dt = Σ_ℓ ‖Ω_ℓ‖² = Σ_ℓ ‖Ṙ_ℓ‖²

    return _FlowSpec("frame", R0.ravel().copy(), network, rhs, diss, ("frames",))


def _run_general(spec, net, X, targets, w, t_eval, ivp_method, rtol, atol, max_events):
    """solve_ivp between events; one terminal event function for all rows; a restart after each event.

    The event function is min_f s_f g_f − ε, with s_f = −1 for truncated rows and +1 otherwise and
    ε = 1e-10 · scale: it fires just before the first row reaches its threshold, while the
    right-hand side is still smooth (a row that slides would otherwise make the steps crawl towards
    its threshold without ever crossing it). The crossing itself is then reached by a first-order
    step along the field, Δt = ε/|ḣ_f| (an error O(Δt²)), where the Filippov test decides between
    a crossing and sliding.
    """
    L, M = net.scales.shape
    N = X.shape[0]
    t_end = float(t_eval[-1])
    t = 0.0
    y = spec.state.copy()
    n0 = spec.network(y)
    P = (_event_values(n0.frames, n0.thresholds, X) <= 0.0).ravel()
    offset = np.zeros(P.size)
    events, segments = [], []
    last_flip_time = np.full(P.size, -np.inf)
    nfev = 0
    scale = 1.0 + float(np.abs(X).max()) + float(np.abs(targets).max())
    eps_event = 1e-10 * scale
    status, message = 0, f"reached t = {t_end:.6g}"
    calls = [0]

    def fun(_t, y):
        calls[0] += 1
        if calls[0] > MAX_NFEV_PER_SEGMENT:
            raise _Stalled
        return spec.rhs(spec.network(y))

    def signed(y, s):
        n = spec.network(y)
        return s * _event_values(n.frames, n.thresholds, X).ravel()

    def pattern_rate(P):
        return None if spec.moves != ("thresholds",) else _pattern_rate(net.frames, net.scales,
                                                                          P.reshape(L, N, M), X, w)

    def constant(y):
        return lambda tt: np.broadcast_to(y[:, None], (y.size, np.size(tt)))

    def finish(t_stop, sliding=None):
        P3 = P.reshape(L, N, M)
        segments.append(_general_segment(t_stop, constant(y), spec, P3, pattern_rate(P), X, w, L, M,
                                         sliding=sliding))
        return _general_trajectory(segments, t_stop, status, message, events, nfev, spec)

    while True:
        s = np.where(P, -1.0, 1.0)

        def event(_t, y, s=s, offset=offset):
            return float(np.min(signed(y, s) + offset)) - eps_event

        event.terminal = True
        event.direction = -1
        calls[0] = 0
        try:
            sol = solve_ivp(fun, (t, t_end), y, method=ivp_method, rtol=rtol, atol=atol, events=event,
                            dense_output=True)
        except _Stalled:
            nfev += calls[0]
            status = -1
            message = (f"stopped at t = {t:.6g}: more than {MAX_NFEV_PER_SEGMENT} right-hand-side evaluations "
                       "without an event")
            return finish(t)
        nfev += sol.nfev
        if sol.status == -1:
            status, message = -1, f"solve_ivp failed after t = {t:.6g}: {sol.message}"
            return finish(t)
        if sol.status == 0:
            segments.append(_general_segment(t, sol.sol, spec, P.reshape(L, N, M), pattern_rate(P), X, w, L, M))
            return _general_trajectory(segments, t_end, status, message, events, nfev, spec)
        t_e = float(sol.t_events[0][0])
        y_e = np.asarray(sol.y_events[0][0], dtype=float)
        # Step from the ε-level to the threshold along the (smooth) field of the old pattern.
        v = fun(t_e, y_e)
        h = signed(y_e, s) + offset
        near = np.flatnonzero(h <= eps_event * (1 + 1e-6) + 64 * _EPS * scale)
        speed = float(np.abs(v).max())
        if near.size == 0 or speed == 0:  # pragma: no cover - the event fired on a row that does not move
            near = np.array([int(np.argmin(h))])
            dt_cross = np.zeros(1)
        else:
            eta = 1e-8 * scale / speed
            h_dot = (signed(y_e + eta * v, s)[near] + offset[near] - h[near]) / eta
            dt_cross = np.where(h_dot < 0, h[near] / np.where(h_dot < 0, -h_dot, 1.0), np.inf)
        dt_star = float(dt_cross.min())
        if not np.isfinite(dt_star):
            dt_star = 0.0
            rows = near[[int(np.argmin(h[near]))]]
        else:
            rows = near[dt_cross <= dt_star + 1e-12 * max(1.0, t_e)]
        t_x = min(t_e + dt_star, t_end)
        y_x = y_e + (t_x - t_e) * v
        segments.append(_general_segment(t, _extrapolated(sol.sol, t_e, y_e, v), spec, P.reshape(L, N, M),
                                         pattern_rate(P), X, w, L, M))
        y, t = y_x, t_x
        if t_e + dt_star > t_end:  # the crossing lies beyond the last requested time
            return _general_trajectory(segments, t_end, status, message, events, nfev, spec)
        s_new = s.copy()
        s_new[rows] = -s_new[rows]
        # Filippov test: a crossing row slides when the field on its new side pushes it straight back.
        slides = _pushes_back(rows, t, y, v, fun, lambda yy, s_new=s_new: signed(yy, s_new), scale)
        slides |= t - last_flip_time[rows] <= 1e-8 * max(1.0, t)
        for f in rows:
            P[f] = ~P[f]
            l, i, k = np.unravel_index(f, (L, N, M))
            events.append((t, int(l) + 1, int(k), int(i), TRUNCATED if P[f] else UNTRUNCATED))
        if slides.any():
            sl = np.zeros((L, M), np.int8)
            for f in rows[slides]:
                l, i, k = np.unravel_index(f, (L, N, M))
                events.append((t, int(l) + 1, int(k), int(i), SLIDING))
                sl[l, k] = 1
            l, i, k = np.unravel_index(rows[slides][0], (L, N, M))
            status = 1
            message = (f"stopped at t = {t:.6g}: point {int(i)} slides on the threshold of layer {int(l) + 1}, "
                       f"coordinate {int(k)} (the field on both sides pushes it onto the threshold)")
            return finish(t, sliding=sl)
        last_flip_time[:] = -np.inf
        last_flip_time[rows] = t
        # A flipped row sits on its threshold; if rounding left it on the wrong side, shift it so that
        # the event function starts strictly positive.
        h_new = signed(y, np.where(P, -1.0, 1.0))
        offset = np.zeros(P.size)
        offset[rows] = np.maximum(-h_new[rows], 0.0) + eps_event + _TINY
        if max_events is not None and len(events) > max_events:
            status = -1
            message = f"stopped at t = {t:.6g}: more than max_events = {max_events} events"
            return finish(t)


def _extrapolated(dense, t_e, y_e, v):
    """The dense output on [t0, t_e], continued linearly to the crossing just after t_e."""
    def state(times):
        times = np.atleast_1d(times)
        out = np.asarray(dense(np.minimum(times, t_e))).reshape(y_e.size, times.size)
        return out + np.maximum(times - t_e, 0.0)[None, :] * v[:, None]

    return state


def _pushes_back(rows, t, y, v_old, fun, signed, scale):
    """For each crossing row, whether the field just past the crossing drives it back (sliding)."""
    dt = 1e-8 * max(1.0, t)
    y_after = y + dt * v_old  # continue the old motion a little past the threshold
    h_after = signed(y_after)[rows]
    h_next = signed(y_after + dt * fun(t, y_after))[rows]
    return h_next - h_after < -64 * _EPS * scale


def _general_segment(t0, dense, spec, P, rate, X, w, L, M, sliding=None):
    def state(times):
        ys = np.asarray(dense(times)).T.reshape(np.size(times), -1)
        nets = [spec.network(yy) for yy in ys]
        return (np.stack([n.thresholds for n in nets]), np.stack([n.scales for n in nets]),
                np.stack([n.frames for n in nets]))

    return {"t0": t0, "state": state, "theta_dot": None, "n": P.sum(axis=1).astype(np.int64), "rate": rate,
            "sliding": np.zeros((L, M), np.int8) if sliding is None else sliding, "P": P.copy()}


def _general_trajectory(segments, t_stop, status, message, events, nfev, spec):
    return _trajectory_from(segments, t_stop, status, message, events, nfev=nfev, dissipation=spec.dissipation,
                            moves=spec.moves)


# --------------------------------------------------------------------------- result


def _assemble(traj, net, X, targets, w, t_eval, record_events, attrs):
    L, M = net.scales.shape
    t_stop = traj.t_stop
    pieces = [[0.0], t_eval[t_eval <= t_stop]]
    if record_events:
        pieces.append(traj.event_time[traj.event_time <= t_stop])
    times = np.unique(np.concatenate(pieces))
    T = times.size
    scales_t = frames_t = None
    if traj.evaluate is not None:
        theta, theta_dot, n, rate, sliding, cost = traj.evaluate(times)
        dissipation = np.einsum("tlm,tlm,lm->t", theta_dot, theta_dot, net.scales**2)
    else:
        starts = np.array([s["t0"] for s in traj.segments])
        idx = np.searchsorted(starts, times, side="right") - 1
        theta = np.empty((T, L, M))
        n = np.empty((T, L, M), np.int64)
        rate = np.empty((T, L, M))
        sliding = np.empty((T, L, M), np.int8)
        dissipation = np.empty(T)
        general = traj.dissipation is not None
        if general:
            scales_t = np.empty((T, L, M))
            frames_t = np.empty((T, L, M, M))
        for j in np.unique(idx):
            sel = np.flatnonzero(idx == j)
            seg = traj.segments[j]
            th, sc, fr = seg["state"](times[sel])
            theta[sel] = th
            n[sel] = seg["n"]
            sliding[sel] = seg["sliding"]
            if general:
                scales_t[sel] = sc
                frames_t[sel] = fr
                for q, tq in enumerate(sel):
                    netq = AdaptedNetwork(frames=fr[q], scales=sc[q], thresholds=th[q])
                    dissipation[tq] = traj.dissipation(netq)
                    rate[tq] = seg["rate"] if seg["rate"] is not None else _pattern_rate(
                        fr[q], sc[q], seg["P"], X, w)
            else:
                rate[sel] = seg["rate"]
                thd = seg["theta_dot"](times[sel])
                dissipation[sel] = np.einsum("tlm,tlm,lm->t", thd, thd, net.scales**2)
        if general:
            cost = _costs(frames_t, theta, X, targets, w)
        else:
            cost = _costs(net.frames, theta, X, targets, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.where(dissipation > 0, dissipation / cost, 0.0)
    requested = np.isin(times, t_eval).astype(np.int8)

    # Stable in time: simultaneous events keep the order the backend found them in (coordinate by
    # coordinate, and a crossing before the sliding it starts).
    order = np.argsort(traj.event_time, kind="stable")
    kinds = np.array(EVENT_KINDS)[traj.event_kind[order]] if order.size else np.empty(0, dtype="<U11")
    tlm = ("time", "layer", "coordinate")
    data_vars = {
        "thresholds": (tlm, theta, {"long_name": "threshold theta_(l,k)", "units": "1"}),
        "n_truncated": (tlm, n, {"long_name": "number of points truncated in coordinate k of layer l", "units": "1"}),
        "rate": (tlm, rate, {"long_name": "relaxation rate -d(dtheta_(l,k)/dt)/dtheta_(l,k) of the pattern in force "
                                          "(n_k/(lambda_k^2 N) for one layer, uniform weights)", "units": "1"}),
        "sliding": (tlm, sliding, {"long_name": "1 while the threshold rests on a sliding point", "units": "1"}),
        "cost": (("time",), cost, {"long_name": "input-layer cost C_in", "units": "1"}),
        "dissipation": (("time",), dissipation, {"long_name": "-dC_in/dt", "units": "1"}),
        "cost_decay_rate": (("time",), decay, {"long_name": "instantaneous exponential rate -d log C_in/dt "
                                                            "(0 where C_in is stationary)", "units": "1"}),
        "requested": (("time",), requested, {"long_name": "1 at the times requested in t_eval", "units": "1"}),
        "event_time": (("event",), traj.event_time[order], {"long_name": "time of the event", "units": "1"}),
        "event_layer": (("event",), traj.event_layer[order], {"long_name": "layer l of the crossed threshold",
                                                              "units": "1"}),
        "event_coordinate": (("event",), traj.event_coordinate[order],
                             {"long_name": "coordinate k of the crossed threshold", "units": "1"}),
        "event_point": (("event",), traj.event_point[order], {"long_name": "index i of the crossing point (row of X)",
                                                              "units": "1"}),
        "event_kind": (("event",), kinds, {"long_name": "truncated, untruncated or sliding", "units": "1"}),
    }
    if scales_t is not None and "scales" in traj.moves:
        data_vars["scales"] = (tlm, scales_t, {"long_name": "scale lambda_(l,k)", "units": "1"})
    if frames_t is not None and "frames" in traj.moves:
        data_vars["frames"] = (("time", "layer", "frame_row", "frame_column"), frames_t,
                               {"long_name": "frame R_l", "units": "1"})
    coords = {
        "time": ("time", times, {"long_name": "gradient-flow time t", "units": "1"}),
        "layer": ("layer", np.arange(1, L + 1), {"long_name": "hidden layer l (1 = first)", "units": "1"}),
        "coordinate": ("coordinate", np.arange(M), {"long_name": "activation coordinate k (0-based)", "units": "1"}),
        "event": ("event", np.arange(order.size), {"long_name": "event index, in time order", "units": "1"}),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)

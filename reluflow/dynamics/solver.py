"""Solving the effective gradient flows through their truncation events (THEORY.md §4.2–4.5, §5).

One entry point, :func:`solve`, in the spirit of :func:`scipy.integrate.solve_ivp`: it integrates
a threshold flow of an adapted network from t = 0 to the last requested time and returns one
:class:`xarray.Dataset` holding the trajectory, the cost and an event log.

The cost is the input-layer cost C = C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² with per-point targets ỹ_i
(N, M) in input space and weights w_i = 1/N unless ``point_weights`` says otherwise.

Backends:

- ``method="exact"`` (bias flow (4.2), with an optional kernel K: θ̇ = −Λ^-1 K Λ^-1 ∂C/∂θ,
  and the induced flow (4.5) as K = induced_bias_kernel). Between events the flow is affine in θ, θ̇ = A θ + c,
  and solved in closed form; events are located analytically or by certified root finding.

  - one layer (``algorithm="sorted"``): θ_k(t) = ȳ + (θ_k(t_m) − ȳ) e^{−(W/λ_k²)(t − t_m)} and
    Δt = (λ_k²/W) log((ȳ − θ_k(t_m))/(ȳ − u_next)), by sorting and prefix sums, O(N log N)
    → :mod:`.sorted`, :func:`.sorted.one_layer_sweep`
  - any depth (``algorithm="affine"``): θ(t) = θ_m + Λ^-1 Q (e^{−μ (t−t_m)} − 1) z, the matrix
    exponential of A by a symmetric eigen-decomposition; events by certified bracketing of sums
    of exponentials and Brent's method; sliding followed on its surface
    → :func:`.events.closed_form_scaled`, :func:`.events.next_crossing`, :func:`.events.sliding_flow`

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
Filippov test after each crossing); in one layer it follows it (an equivalent control keeps the
sliding rows on their thresholds), in deep networks it stops there with ``status = 1``, saying so
in ``message``. Near a stable rest point it holds the state (see :mod:`reluflow.dynamics.general`).

Degenerate ties (exact backend, deep case). Several rows can sit on their thresholds at one instant:
duplicated points, a point on several thresholds, points collapsed onto one threshold by an earlier
layer. The rows are first resolved one by one (flip the rows the field pushes across; a row pushed
back after its flip slides). If that goes round in a circle (a pattern met before at the same
instant, or more than ``affine._MAX_ROUNDS`` rounds), all tied rows are *settled* at once: grouped into
units (one threshold, one affine path), they get Filippov's convex combination of the fields of
their two sides, the minimiser of |F₀ + Σ_j β_j n_j| over β_j ∈ [0, κ_j] (a box-constrained least
squares problem, solved exactly): β_j = 0 releases unit j, β_j = κ_j truncates it, anything between
makes it slide. Where that is not consistent (rows of one point in several layers: a flip in layer ℓ
changes the point's path, so the fields are not additive), or the ties come back at the same
instant more than ``affine._MAX_QP_SETTLES`` times, they are settled by *steepest descent*
(:meth:`.affine.AffineBackend._steepest`): to first order each pattern of the n tied units is a
polyhedral cone of directions and C is piecewise linear on them, and the flow leaves along the
projection of the field of a cell onto its cone with the largest norm (the local slope |∂C|: a
curve of maximal slope; exhaustive over the 2^n cells for n ≤ ``affine._MAX_STEEPEST``, else a local
search by single flips from the present sides, all in and all out). This is Filippov's solution
wherever that is unique (a crossing is crossed, a valley slid on); where Filippov's solutions are not
unique (a ridge, or several surfaces through one point, typically a point on thresholds of several
layers) it is the selection rule, and the solver continues with it rather than stop. (Where the
row-by-row resolution succeeds, it selects instead, rows pushed hardest first, and its cell need not be
the steepest: at θ(0) of fuzz problem 28, six cells are consistent and it picks UTUT, |ψ̇| = 0.7816,
not the steepest TUUU, 0.7974; the general backend, meeting the ties one row at a time, picks UTUT
too. Both are solutions; see tests/dynamics/test_fuzz.py.) Units on the
face of the chosen cone slide, the others take its sides, and the projected direction is
first-order consistent by construction; a row left at rest to first order that crosses at second
order is followed along the settled flow until it is ``affine._PROBE_DEPTH`` roundings of g past its
threshold (an error O(g²) in the cost), and then resolved like any other row. The
settled rows keep their side for the rest of that instant, and rows whose whole motion is below
the rounding of g (a point and a threshold that move together) count as at rest. ``message``
counts the sliding episodes. ``status = -1`` with a message naming the tied rows ("layer ℓ
coordinate k point i") remains only for ties that recur after ``affine._MAX_SETTLES`` settlements at
one instant: an open defect, not a proof of ill-posedness (``benchmarks/fuzz_solver.py``, seed 0: none of
problems 0–9999 stops early; 11 of problems 0–8999 did before the tie fixes of issue 9, 78 before the
steepest-descent settlement).

The result (see :func:`solve`) follows the project's conventions: coordinates carry the grid
values, every variable has ``long_name`` and ``units`` (time and all quantities are dimensionless,
units ``"1"``), and attributes are strings or numbers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from reluflow.dynamics.affine import AffineBackend, as_kernel
from reluflow.dynamics.base import Backend, Problem, Solution
from reluflow.dynamics.events import EVENT_KINDS
from reluflow.dynamics.general import GeneralBackend, flow_spec
from reluflow.dynamics.sorted import SortedBackend
from reluflow.results.schema import make_dataset
from reluflow.theory.adapted import AdaptedNetwork
from reluflow.theory.flows import induced_bias_kernel
from reluflow.theory.network import layer_parameters
from reluflow.validation import as_point_weights, as_points, as_positive_float, as_targets, as_times, check_positive_int

__all__ = ["solve", "integrate", "assemble", "METHODS", "FLOWS", "ALGORITHMS"]

METHODS = ("exact", "general")
FLOWS = ("bias", "scale_bias", "frame", "induced_bias")
ALGORITHMS = ("auto", "sorted", "affine")
IVP_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


# --------------------------------------------------------------------------- public entry point


def solve(net, X, targets, t_eval, *, method: str = "exact", flow="bias", kernel=None, point_weights=None,
          algorithm: str = "auto", ivp_method: str = "DOP853", rtol: float = 1e-10, atol: float = 1e-12,
          max_events: int | None = None, record_events: bool = True) -> xr.Dataset:
    """Integrate a threshold flow of an adapted network through its truncation events.

    Computes θ(t) for θ̇ = −Λ^-1 K Λ^-1 ∂C_in/∂θ (K = 1: the bias flow (4.2)), or another flow
    (``method="general"``), from θ(0) = ``net.thresholds``, with C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|²,
    up to t = max(t_eval).

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
        Closed form between exactly located events (the bias flow, a kernel flow, or
        ``flow="induced_bias"``), or ``solve_ivp`` with event detection and restarts (any flow).
    flow : {"bias", "scale_bias", "frame", "induced_bias"} or callable
        The flow (see the module docstring). A callable ``rhs(net, X, targets, point_weights)``
        returns θ̇ of shape (L, M) with λ and R frozen; it needs ``method="general"``. With
        ``method="exact"``, ``"induced_bias"`` is the kernel flow with
        K = :func:`reluflow.theory.flows.induced_bias_kernel` of the layer weights.
    kernel : array (L·M, L·M) or (L, L, M, M), optional
        Exact method only: a symmetric positive definite K acting on the stacked cumulative
        biases (layer-major); the flow is then θ̇ = −Λ^-1 K Λ^-1 ∂C_in/∂θ (affine backend).
        Default: K = 1, the bias flow.
    point_weights : array (N,), optional
        Cost weights w_i ≥ 0; default 1/N.
    algorithm : {"auto", "sorted", "affine"}
        Exact backend only: ``"sorted"`` (one layer, all coordinates by one sort, O(N log N)),
        ``"affine"`` (any depth and kernel, matrix exponential); ``"auto"`` picks ``"sorted"``
        for L = 1 without a kernel.
    ivp_method, rtol, atol : general backend only
        Passed to :func:`scipy.integrate.solve_ivp` (DOP853, 1e-10 and 1e-12 by default).
    max_events : int, optional
        Stop (``status = -1``) once more events than this have occurred; default: no limit.
    record_events : bool
        Include every event time in the ``time`` coordinate (default). With False the time
        coordinate holds only 0 and ``t_eval``; the event log is complete either way.

    Raises
    ------
    ValueError
        Besides invalid inputs: with ``method="exact"`` on a deep network, when the affine
        backend's memory estimate (56 bytes × L·N·M × L·M) exceeds
        ``reluflow.dynamics.affine.MEMORY_BUDGET`` (4 GB), before anything is allocated.

    Returns
    -------
    xarray.Dataset
        Built by :func:`reluflow.results.schema.make_dataset`. Coordinates ``time`` (0, the
        requested times and the event times), ``layer`` (ℓ = 1..L), ``coordinate`` (k = 0..M-1)
        and ``event``. Variables: ``thresholds`` θ, ``n_truncated`` n_{ℓ,k} = |T_{ℓ,k}|, ``rate``
        (the relaxation rate −∂θ̇_{ℓ,k}/∂θ_{ℓ,k} of the pattern in force, n_k/(λ_k² N) for one
        layer and uniform weights), ``sliding`` (1 while a threshold slides on points: they count
        as truncated), ``cost`` C_in, ``dissipation`` −dC/dt and ``cost_decay_rate`` −d log C/dt,
        ``requested`` (1 at the times of ``t_eval``); the event log ``event_time``,
        ``event_layer``, ``event_coordinate``, ``event_point`` and ``event_kind``
        (``truncated``/``untruncated``/``sliding``); for the general backend also ``scales`` and,
        for the frame flow, ``frames``. At an event time, ``n_truncated``, ``rate``, ``sliding``
        and ``dissipation`` are right limits (the pattern that drives the flow from then on).
        Attributes ``status`` (a code of :data:`reluflow.results.schema.STATUS`: 0 reached the
        last time (the general backend says so when it held a rest point); 1 the general backend
        stopped at the onset of sliding (deep networks, or a callable flow); -1 stopped by ``max_events``,
        by ``solve_ivp``, by the general backend's evaluation cap or a crossing it missed inside one step,
        or by degenerate ties that recur after every settlement (the
        message names their rows as "layer ℓ coordinate k point i"; see the module docstring)),
        ``status_name``, ``message``, ``method``, ``flow``, ``algorithm``, ``n_events``, for the
        exact method ``kernel`` and, for the general backend, ``nfev``,
        ``ivp_method``, ``rtol``, ``atol``. If the solver stops early, the ``time`` coordinate
        ends at the stopping time.
    """
    problem = _problem(net, X, targets, t_eval, point_weights, max_events, record_events)
    _check_options(method, flow, algorithm, ivp_method)
    rtol = as_positive_float(rtol, "rtol")
    atol = as_positive_float(atol, "atol")
    flow_name = flow if isinstance(flow, str) else getattr(flow, "__name__", "callable")
    if method == "exact":
        backend, kernel_note = _exact_backend(problem, flow, flow_name, kernel, algorithm)
        extra = {"kernel": kernel_note}
    else:
        if algorithm != "auto":
            raise ValueError(f"algorithm applies to method='exact' only; got algorithm={algorithm!r} "
                             "with method='general'")
        if kernel is not None:
            raise ValueError("kernel applies to method='exact' only; use flow='induced_bias' or a callable flow "
                             "with method='general'")
        spec = flow_spec(flow, problem.net, problem.X, problem.targets, problem.w)
        backend = GeneralBackend(problem, spec, ivp_method, rtol, atol)
        extra = {}
    solution = integrate(backend)
    if method == "general":
        extra.update(nfev=int(backend.nfev), ivp_method=ivp_method, rtol=rtol, atol=atol)
    attrs = {
        "title": "dynamical truncation: threshold flow through its events",
        "method": method,
        "algorithm": backend.algorithm,
        "flow": flow_name,
        "cost": "C_in = 1/2 sum_i w_i |x_i^(tau,L) - y_i|^2",
        "weights": "uniform 1/N" if point_weights is None else "point_weights",
        "tie_convention": "u_k <= theta_k counts as truncated (sigma'(0) = 0)",
        "event_time_convention": "n_truncated, rate, sliding and dissipation are right limits at event times",
        **extra,
    }
    return assemble(solution, backend, attrs)


def integrate(backend: Backend) -> Solution:
    """The one loop: step the backend from event to event until it stops; its segments form the solution."""
    segments = []
    while backend.status is None:
        segments.extend(backend.step())
    return Solution(segments, backend.t_stop)


# --------------------------------------------------------------------------- validation and backends


def _problem(net, X, targets, t_eval, point_weights, max_events, record_events) -> Problem:
    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"net must be a reluflow.AdaptedNetwork (see adapted_network); got {type(net).__name__}")
    X = as_points(X, "X", dim=net.width)
    N, M = X.shape
    targets = as_targets(targets, N, M)
    w = as_point_weights(point_weights, N)
    t_eval = as_times(t_eval)
    if max_events is not None:
        max_events = check_positive_int(max_events, "max_events")
    if not isinstance(record_events, (bool, np.bool_)):
        raise TypeError(f"record_events must be a bool; got {type(record_events).__name__} {record_events!r}")
    return Problem(net, X, targets, w, t_eval, max_events, bool(record_events))


def _check_options(method, flow, algorithm, ivp_method):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if not (callable(flow) or (isinstance(flow, str) and flow in FLOWS)):
        raise ValueError(f"flow must be one of {FLOWS} or a callable rhs(net, X, targets, point_weights); got {flow!r}")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}")
    if not isinstance(ivp_method, str) or ivp_method not in IVP_METHODS:
        raise ValueError(f"ivp_method must be one of {IVP_METHODS}; got {ivp_method!r}")


def _exact_backend(problem, flow, flow_name, kernel, algorithm):
    """The exact backend for (flow, kernel, algorithm), and the kernel's note for the attributes."""
    net = problem.net
    L, M = net.depth, net.width
    if flow not in ("bias", "induced_bias"):
        raise ValueError(
            f"method='exact' solves only flow='bias' (the piecewise affine bias flow (4.2), optionally with a "
            f"kernel) and flow='induced_bias' (4.5); got flow={flow_name!r}. Use method='general' for the other flows."
        )
    if flow == "induced_bias":
        if kernel is not None:
            raise ValueError("flow='induced_bias' fixes its own kernel (induced_bias_kernel of the layer weights); "
                             "pass kernel only with flow='bias'")
        weights, _ = layer_parameters(*net.cumulative_parameters())
        K, note = as_kernel(induced_bias_kernel(weights), L, M), "induced_bias_kernel"
    elif kernel is not None:
        K, note = as_kernel(kernel, L, M), "custom"
    else:
        K, note = None, "identity"
    if algorithm == "sorted" and (L != 1 or K is not None):
        raise ValueError(f"algorithm='sorted' needs a one-layer network (L = 1) and no kernel; got L = {L}"
                         f"{' and a kernel' if K is not None else ''}. Use algorithm='affine' or 'auto'.")
    if algorithm == "sorted" or (algorithm == "auto" and L == 1 and K is None):
        return SortedBackend(problem), note
    return AffineBackend(problem, kernel=K), note


# --------------------------------------------------------------------------- result


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


def _output_times(solution, problem, event_time):
    t_stop, t_eval = solution.t_stop, problem.t_eval
    pieces = [[0.0], t_eval[t_eval <= t_stop]]
    if problem.record_events:
        pieces.append(event_time[event_time <= t_stop])
    return np.unique(np.concatenate(pieces))


def _event_log(backend):
    """The event log in time order, stable: simultaneous events keep the order the backend found them in
    (coordinate by coordinate, and a crossing before the sliding it starts)."""
    t, layer, coord, point, kind = backend.events.arrays()
    order = np.argsort(t, kind="stable")
    kinds = np.array(EVENT_KINDS, dtype=object)[kind[order]]
    return {"event_time": t[order], "event_layer": layer[order], "event_coordinate": coord[order],
            "event_point": point[order], "event_kind": kinds}


def assemble(solution: Solution, backend: Backend, attrs: dict) -> xr.Dataset:
    """The one Dataset of a solve: the solution at 0, the requested times and (optionally) the event times."""
    p = backend.problem
    L, M = p.net.depth, p.net.width
    events = _event_log(backend)
    times = _output_times(solution, p, events["event_time"])
    v = solution.evaluate(times)
    cost = v.cost
    if cost is None:
        cost = _costs(v.frames if v.frames is not None else p.net.frames, v.thresholds, p.X, p.targets, p.w)
    with np.errstate(divide="ignore", invalid="ignore"):
        # −d log C/dt; 0 where C = 0 (reached exactly, e.g. one weighted point on its target: the
        # dissipation is then 0 up to rounding, and the ratio of two roundings means nothing)
        decay = np.where((v.dissipation > 0) & (cost > 0), v.dissipation / cost, 0.0)
    data = {"thresholds": v.thresholds, "n_truncated": v.n, "rate": v.rate, "sliding": v.sliding, "cost": cost,
            "dissipation": v.dissipation, "cost_decay_rate": decay,
            "requested": np.isin(times, p.t_eval).astype(np.int8), **events}
    if "scales" in backend.moves:
        data["scales"] = v.scales
    if "frames" in backend.moves:
        data["frames"] = v.frames
    coords = {"time": times, "layer": np.arange(1, L + 1), "coordinate": np.arange(M),
              "event": np.arange(events["event_time"].size)}
    if "frames" in data:
        coords.update(frame_row=np.arange(M), frame_column=np.arange(M))
    attrs = {**attrs, "n_events": int(events["event_time"].size)}
    return make_dataset(data, coords, status=backend.status, message=backend.message, attrs=attrs)

"""The exact one-layer backend: every threshold's sweep in closed form, from one sort (THEORY.md §4.2, S2–S3).

θ_k(t) = ȳ + (θ_k(t_m) − ȳ) e^{−(W/λ_k²)(t − t_m)} between events and
Δt = (λ_k²/W) log((ȳ − θ_k(t_m))/(ȳ − u_next)), for all coordinates at once by sorting and prefix
sums (:func:`one_layer_sweep`). The coordinates of one layer do not
interact, so one :meth:`SortedBackend.step` covers the whole run with one segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.dynamics.base import Backend, Values
from reluflow.dynamics.events import SLIDING, TRUNCATED, UNTRUNCATED

__all__ = ["SortedBackend", "OneLayerSweep", "one_layer_sweep"]


class SweepSegment:
    """The closed form of all M thresholds from t0 = 0 on."""

    t0 = 0.0

    def __init__(self, sweep, lam):
        self.sweep = sweep
        self.lam2 = lam**2

    def evaluate(self, times) -> Values:
        theta, theta_dot, n, rate, sliding, cost = self.sweep.evaluate(times)
        theta, theta_dot = theta[:, None, :], theta_dot[:, None, :]
        dissipation = np.einsum("tlm,tlm,lm->t", theta_dot, theta_dot, self.lam2)
        return Values(thresholds=theta, n=n[:, None, :], rate=rate[:, None, :], sliding=sliding[:, None, :],
                      dissipation=dissipation, cost=cost)


class SortedBackend(Backend):
    """One layer (L = 1), bias flow, any weights: O(N log N) per coordinate, no loop over events."""

    algorithm = "sorted"

    def step(self):
        p = self.problem
        net = p.net
        R, lam, theta = net.frames[0], net.scales[0], net.thresholds[0]
        U = (p.X @ R.T).T.copy()
        Y = (p.targets @ R.T).T.copy()
        keep = None if p.record_events else np.concatenate(([0.0], p.t_eval))
        sweep = one_layer_sweep(U, Y, p.w, lam**2, theta, p.t_end, keep_times=keep)
        del U, Y
        ev_t = sweep.event_time
        self.events.extend(ev_t, np.ones(ev_t.size, np.int64), sweep.event_coordinate, sweep.event_point,
                           sweep.event_kind)
        self._stop(ev_t)
        return [SweepSegment(sweep, net.scales)]

    def _stop(self, ev_t):
        m, t_end = self.problem.max_events, self.problem.t_end
        if m is not None and ev_t.size > m:
            t_stop = float(np.sort(ev_t, kind="stable")[m])
            self.events.truncate(ev_t < t_stop)
            self.finish(-1, f"stopped at t = {t_stop:.6g}: more than max_events = {m} events", t_stop)
            return
        message = f"reached t = {t_end:.6g}"
        n_sliding = int(np.count_nonzero(self.events.arrays()[4] == SLIDING))
        if n_sliding:
            message += f"; {n_sliding} point(s) slide: their thresholds rest on them (kink minima of the cost)"
        self.finish(0, message, t_end)


# --------------------------------------------------------------------------- one layer, exact


@dataclass(frozen=True)
class OneLayerSweep:
    """Piecewise closed form of the M thresholds θ_k(t) of a one-layer bias flow, with all their events.

    The segments of coordinate k are rows ``bounds[k]:bounds[k+1]`` of the segment arrays. Segment
    s covers [t_start[s], next start) and holds θ(t) = ybar[s] + offset[s] e^{−decay[s] τ},
    τ = t − t_start[s]; its cost contribution is ½ (weight[s] (cost_offset[s] e^{−decay[s] τ})²
    + rest[s]) (rest: the spread of the truncated targets plus the untruncated residuals).
    ``n``, ``rate`` and ``sliding`` describe the pattern in force. Events: per coordinate in
    time order, coordinates one after the other (kinds: codes of :data:`EVENT_KINDS`).
    """

    bounds: np.ndarray
    t_start: np.ndarray
    ybar: np.ndarray
    offset: np.ndarray
    decay: np.ndarray
    cost_offset: np.ndarray
    weight: np.ndarray
    rest: np.ndarray
    n: np.ndarray
    rate: np.ndarray
    sliding: np.ndarray
    event_time: np.ndarray
    event_coordinate: np.ndarray
    event_point: np.ndarray
    event_kind: np.ndarray

    def segment_index(self, times):
        """(T, M): the segment of each coordinate in force at each time (right limits at events)."""
        M = self.bounds.size - 1
        idx = np.empty((times.size, M), dtype=np.int64)
        for k in range(M):
            lo, hi = self.bounds[k], self.bounds[k + 1]
            # count the segment starts <= t, by the positions of the starts in the sorted times
            at = np.searchsorted(times, self.t_start[lo + 1:hi], side="left")
            idx[:, k] = lo + np.cumsum(np.bincount(at, minlength=times.size + 1)[:times.size])
        return idx

    def evaluate(self, times):
        """θ, θ̇, n, rate, sliding (each (T, M)) and the cost (T,) at ``times`` (sorted, ≥ 0)."""
        idx = self.segment_index(np.asarray(times, dtype=float))
        tau = times[:, None] - self.t_start[idx]
        decay = self.decay[idx]
        ex = np.exp(-decay * tau)
        offset = self.offset[idx]
        theta = self.ybar[idx] + offset * ex
        theta_dot = -decay * offset * ex
        cost = 0.5 * (self.weight[idx] * (self.cost_offset[idx] * ex) ** 2 + self.rest[idx]).sum(axis=1)
        return theta, theta_dot, self.n[idx], self.rate[idx], self.sliding[idx], cost


#: Coordinates are swept in blocks of about this many sorted entries, to bound the memory.
SWEEP_BLOCK = 4_000_000


def one_layer_sweep(U, Yhat, w, lam2, theta0, t_end: float, *, keep_times=None) -> OneLayerSweep:
    """Exact trajectories of the M thresholds of the one-layer bias flow, with all events up to ``t_end``.

    θ̇_k = −(1/λ_k²) Σ_{i: u_ik ≤ θ_k} w_i (θ_k − ŷ_ik), where u_ik = (R x_i)_k and ŷ_ik = (R ỹ_i)_k.

    Parameters
    ----------
    U, Yhat : arrays (M, N)
        Data coordinates and rotated targets, one row per coordinate k.
    w : array (N,)
        Non-negative weights.
    lam2, theta0 : arrays (M,)
        λ_k² and θ_k(0).
    t_end : float
        Last time of interest; events after it are not returned.
    keep_times : array, optional
        If given, keep only the segments in force at these times (and the last one): the event
        log stays complete, the memory of the closed form does not grow with the number of events.

    The motion of one threshold is monotone: it sweeps up through the data (truncation events)
    while the weighted mean target ȳ of the truncated points lies above it, or down (untruncation
    events) while ȳ lies below. It ends by relaxing to ȳ, by freezing (no truncated weight left:
    a dead coordinate), or by sliding on a point (ȳ jumps to the other side when the point
    crosses). Points with equal coordinates cross together (one event time, one event each).

    Cost: one sort of each coordinate, then prefix sums and elementwise numpy over all
    coordinates of a block at once: every event time is a prefix sum of the step times
    Δt = (λ_k²/W) log1p((u_next − θ_start)/(ȳ − u_next)), with no loop over points or events.
    """
    M, N = U.shape
    block = max(1, SWEEP_BLOCK // max(N, 1))
    uniform = bool(np.all(w == w[0])) if N else True
    parts = [_sweep_block(U[k:k + block], Yhat[k:k + block], w, uniform, lam2[k:k + block],
                          theta0[k:k + block], t_end, keep_times) for k in range(0, M, block)]
    segs = [s for p in parts for s in p[0]]
    evs = [e for p in parts for e in p[1]]
    bounds = np.concatenate(([0], np.cumsum([s[0].size for s in segs])))
    fields = [np.concatenate([s[q] for s in segs]) for q in range(10)]
    ev = [np.concatenate([e[q] for e in evs]) for q in range(3)]
    coord = np.repeat(np.arange(M, dtype=np.int64), [e[0].size for e in evs])
    return OneLayerSweep(bounds, *fields, event_time=ev[0], event_coordinate=coord, event_point=ev[1],
                         event_kind=ev[2])


def _prefix(a):
    """[0, a_0, a_0 + a_1, …] along the last axis."""
    out = np.empty(a.shape[:-1] + (a.shape[-1] + 1,))
    out[..., 0] = 0.0
    np.cumsum(a, axis=-1, out=out[..., 1:])
    return out


def _sorted_block(U, Yhat, w, uniform):
    """Sort each row (stable), gather weights and targets; constant rows are not gathered."""
    order = np.argsort(U, axis=1, kind="stable")
    us = np.take_along_axis(U, order, axis=1)
    ws = np.full(U.shape, w[0]) if uniform else w[order]
    if np.all(Yhat == Yhat[:, :1]):
        return order, us, ws, Yhat[:, :1], Yhat[:, 0].copy()  # one target per coordinate: ys − ref = 0
    return order, us, ws, np.take_along_axis(Yhat, order, axis=1), np.median(Yhat, axis=1)


def _state_sums(us, ws, ys, ref):
    """Per state p (p points truncated, p = 0..N): W, ȳ, the spread V and the untruncated residual E.

    Targets are centred on their median, so that a single cluster (all ŷ equal) gives ȳ exactly.
    """
    W = _prefix(ws)
    e = ws * (us - ys) ** 2
    V = np.zeros_like(W)
    np.cumsum(e[:, ::-1], axis=1, out=V[:, -2::-1])  # E: the untruncated residuals
    del e
    if ys.shape[1] == 1:  # constant targets: ȳ = ref and no spread, exactly
        return W, np.broadcast_to(ref[:, None], W.shape), V
    yc = ys - ref[:, None]
    wy = ws * yc
    S = _prefix(wy)
    Q = _prefix(wy * yc)
    ybar_c = np.divide(S, W, out=np.zeros_like(S), where=W > 0)
    V += np.maximum(Q - S * ybar_c, 0.0)  # only the spread plus E enters the cost
    return W, ref[:, None] + ybar_c, V


def _step_times(us, W, ybar, lam2, theta0, p0, up):
    """The step time Δt of each state of the sweep, and the sweep's states (a boolean mask).

    State p crosses u_next = us[p] going up, us[p−1] going down; it starts from θ_0 (p = p_0) or
    from the value crossed last. The sweep runs through the boundaries of equal values from p_0
    in its direction while W > 0 and ȳ lies beyond u_next; its first state that fails is the last.
    """
    m, N = us.shape
    p = np.arange(N + 1)
    nu = np.empty((m, N + 1))
    nu[:, :N], nu[:, N] = us, np.inf
    nd = np.empty((m, N + 1))
    nd[:, 0], nd[:, 1:] = -np.inf, us
    bnd = np.ones((m, N + 1), dtype=bool)
    bnd[:, 1:N] = us[:, 1:] != us[:, :-1]
    upc = up[:, None]
    nxt = np.where(upc, nu, nd)
    cand = bnd & np.where(upc, p >= p0[:, None], p <= p0[:, None])
    cont = (W > 0) & np.where(upc, ybar > nxt, ybar < nxt)
    fail = cand & ~cont
    p_end = np.where(up, np.argmax(fail, axis=1), N - np.argmax(fail[:, ::-1], axis=1))
    states = cand & np.where(upc, p <= p_end[:, None], p >= p_end[:, None])
    active = states & (p != p_end[:, None])
    start = np.where(upc, nd, nu)
    rows = np.arange(m)
    start[rows, p0] = theta0
    with np.errstate(divide="ignore", invalid="ignore"):
        dt = np.where(active, lam2[:, None] / W * np.log1p((nxt - start) / (ybar - nxt)), 0.0)
    T = np.empty_like(dt)
    T[up] = np.cumsum(dt[up], axis=1)
    T[~up] = np.cumsum(dt[~up][:, ::-1], axis=1)[:, ::-1]
    return T, nxt, states


def _sweep_block(U, Yhat, w, uniform, lam2, theta0, t_end, keep_times):
    m, N = U.shape
    order, us, ws, ys, ref = _sorted_block(U, Yhat, w, uniform)
    W, ybar, rest = _state_sums(us, ws, ys, ref)
    del ws, ys
    p0 = np.count_nonzero(U <= theta0[:, None], axis=1)
    rows = np.arange(m)
    W0, yb0 = W[rows, p0], ybar[rows, p0]
    frozen = (W0 == 0) | (theta0 == yb0)
    up = ~frozen & (theta0 < yb0)
    T, nxt, states = _step_times(us, W, ybar, lam2, theta0, p0, up)
    states[frozen] = False
    states[frozen, p0[frozen]] = True
    segs, evs = [], []
    for r in range(m):
        direction = 0 if frozen[r] else (1 if up[r] else -1)
        seg, ev = _coordinate(r, direction, order[r], T[r], nxt[r], states[r], W[r], ybar[r], rest[r],
                              float(lam2[r]), float(theta0[r]), int(p0[r]), t_end, keep_times)
        segs.append(seg)
        evs.append(ev)
    return segs, evs


def _coordinate(r, direction, order, T, nxt, states, W, ybar, rest, lam2, theta0, p0, t_end, keep_times):
    """The segments and events of one coordinate, read off the sweep's states."""
    seq = np.flatnonzero(states)
    if direction < 0:
        seq = seq[::-1]
    t_ev = T[seq[:-1]]  # the times of the events of the sweep, increasing
    E = int(np.searchsorted(t_ev, t_end, side="right"))
    st_seq = seq[:E + 1]
    t_start = np.concatenate(([0.0], t_ev[:E]))
    st = np.concatenate(([theta0], nxt[seq[:E]]))
    Wk, yb = W[st_seq], ybar[st_seq]
    decay = Wk / lam2
    ybar_eff = yb.copy()
    offset = st - yb
    cost_offset = offset.copy()
    sliding = np.zeros(E + 1, dtype=np.int8)
    last = E  # the final segment is classified only if it is the true end of the motion
    if E == seq.size - 1:
        frozen = Wk[last] == 0 or direction == 0
        if Wk[last] > 0 and E >= 1 and direction * (yb[last] - st[last]) < 0:
            frozen = True
            sliding[last] = 1
        if frozen:
            decay[last] = 0.0
            ybar_eff[last] = st[last]
            offset[last] = 0.0
            if Wk[last] == 0:
                cost_offset[last] = 0.0
    events = _coordinate_events(direction, order, T, seq, E, p0, sliding[last], t_start[last])
    seg = (t_start, ybar_eff, offset, decay, cost_offset, Wk, rest[st_seq], st_seq.astype(np.int64),
           Wk / lam2, sliding)
    if keep_times is not None:
        keep = np.unique(np.concatenate((np.searchsorted(t_start, keep_times, side="right") - 1, [E])))
        seg = tuple(a[keep] for a in seg)
    return seg, events


def _coordinate_events(direction, order, T, seq, E, p0, slides, t_last):
    """Crossed points in sorted order (one contiguous block), their times, kinds, and the sliding group."""
    if E and direction > 0:
        pos = np.arange(p0, seq[E])
        ev_time, kind = T[pos], TRUNCATED
    elif E:
        pos = np.arange(seq[E], p0)
        ev_time, kind = T[pos + 1], UNTRUNCATED
    else:
        pos, ev_time, kind = np.empty(0, dtype=np.int64), np.empty(0), TRUNCATED
    ev_point = order[pos]
    ev_kind = np.full(pos.size, kind, dtype=np.int8)
    if slides:
        lo, hi = (seq[E - 1], seq[E]) if direction > 0 else (seq[E], seq[E - 1])
        pinned = order[lo:hi]
        ev_point = np.concatenate((ev_point, pinned))
        ev_time = np.concatenate((ev_time, np.full(pinned.size, t_last)))
        ev_kind = np.concatenate((ev_kind, np.full(pinned.size, SLIDING, dtype=np.int8)))
    return ev_time, ev_point.astype(np.int64), ev_kind

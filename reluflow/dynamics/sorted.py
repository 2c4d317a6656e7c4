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

__all__ = ["SortedBackend", "OneLayerSweep", "one_layer_sweep", "memory_estimate"]


def memory_estimate(N: int, M: int, n_times: int) -> float:
    """Upper estimate of the sorted backend's peak bytes on N points in M coordinates, ``n_times`` output times.

    97 bytes per (point, coordinate): the event log (time, point, kind: 17 bytes, at most one crossing per point
    and coordinate) and the closed form kept per event (10 fields); 100 bytes per point: the working arrays of
    one coordinate (the sort's complex pairs, prefix sums, targets); 41 bytes per (coordinate, output time): the
    evaluated trajectory. With the event times recorded ``n_times`` counts the worst case, one event per point
    and coordinate. Measured with tracemalloc on Gaussian data (N = 2e4 to 2e5, M = 2 to 4, event times
    recorded): the peak is 0.3 to 0.6 of this estimate.
    """
    return 97.0 * N * M + 100.0 * N + 41.0 * M * n_times


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

    def __init__(self, problem):
        from reluflow.dynamics.affine import MEMORY_BUDGET

        super().__init__(problem)
        _, N, M = problem.shape
        n_times = len(problem.t_eval) + 1 + (N * M if problem.record_events else 0)
        need = memory_estimate(N, M, n_times)
        if need > MEMORY_BUDGET:
            raise ValueError(
                f"method='exact' on a one-layer network (the sorted backend) needs about {need / 1e9:.3g} GB for "
                f"N = {N} points, M = {M} coordinates and up to {n_times} output times (reluflow.dynamics.sorted."
                f"memory_estimate), more than reluflow.dynamics.affine.MEMORY_BUDGET = {MEMORY_BUDGET / 1e9:.3g} GB. "
                "Use fewer points (identical points can be merged into point_weights), record_events=False, or "
                "raise MEMORY_BUDGET")

    def step(self):
        p = self.problem
        net = p.net
        R, lam, theta = net.frames[0], net.scales[0], net.thresholds[0]
        U = (p.X @ R.T).T  # (M, N), a view: each coordinate is copied once, into its sort
        if np.all(p.targets == p.targets[0]):
            Y = (p.targets[:1] @ R.T).T  # one target for all points: (M, 1)
        else:
            Y = (p.targets @ R.T).T
        keep = None if p.record_events else np.concatenate(([0.0], p.t_eval))
        sweep = one_layer_sweep(U, Y, p.w, lam**2, theta, p.t_end, keep_times=keep)
        del U, Y
        ev_t = sweep.event_time
        self.events.extend(ev_t, np.broadcast_to(np.int64(1), ev_t.shape), sweep.event_coordinate, sweep.event_point,
                           sweep.event_kind)
        self._stop(ev_t)
        return [SweepSegment(sweep, net.scales)]

    def _stop(self, ev_t):
        m, t_end = self.problem.max_events, self.problem.t_end
        if m is not None and ev_t.size > m:
            t_stop = float(np.partition(ev_t, m)[m])
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
        idx = np.empty((M, times.size), dtype=np.int64)
        for k in range(M):
            idx[k] = self._segment_column(times, k)
        return idx.T

    def _segment_column(self, times, k):
        lo, hi = self.bounds[k], self.bounds[k + 1]
        # segment lo + j is in force from the first time >= its start (the first segment from t = 0)
        first = np.searchsorted(times, self.t_start[lo + 1:hi], side="left")
        counts = np.diff(np.concatenate(([0], first, [times.size])))
        return np.repeat(np.arange(lo, hi), counts)

    def evaluate(self, times):
        """θ, θ̇, n, rate, sliding (each (T, M)) and the cost (T,) at ``times`` (sorted, ≥ 0).

        Coordinate by coordinate, with a few work buffers of length T, so that asking for every
        event time stays cheap; the (T, M) results are transposed views of (M, T) arrays.
        """
        times = np.asarray(times, dtype=float)
        T, M = times.size, self.bounds.size - 1
        theta, theta_dot, rate, terms = (np.empty((M, T)) for _ in range(4))
        n, sliding = np.empty((M, T), dtype=np.int64), np.empty((M, T), dtype=np.int8)
        ex, a, b = np.empty(T), np.empty(T), np.empty(T)
        for k in range(M):
            j = self._segment_column(times, k)
            np.take(self.t_start, j, out=ex, mode="clip")
            np.subtract(times, ex, out=ex)  # τ
            np.take(self.decay, j, out=a, mode="clip")
            np.negative(a, out=a)
            np.multiply(a, ex, out=ex)
            np.exp(ex, out=ex)  # e^{−decay τ}
            np.take(self.offset, j, out=b, mode="clip")
            np.multiply(a, b, out=a)
            np.multiply(a, ex, out=theta_dot[k])  # −decay · offset · e^{−decay τ}
            np.multiply(b, ex, out=b)
            np.take(self.ybar, j, out=theta[k], mode="clip")
            theta[k] += b
            np.take(self.cost_offset, j, out=a, mode="clip")
            np.multiply(a, ex, out=a)
            np.square(a, out=a)
            np.take(self.weight, j, out=b, mode="clip")
            np.multiply(b, a, out=a)
            np.take(self.rest, j, out=b, mode="clip")
            np.add(a, b, out=terms[k])
            np.take(self.n, j, out=n[k], mode="clip")
            np.take(self.rate, j, out=rate[k], mode="clip")
            np.take(self.sliding, j, out=sliding[k], mode="clip")
        del ex, a, b
        cost = np.empty(T)
        step = max(1, EVALUATE_BLOCK // max(M, 1))
        for s in range(0, T, step):  # the sum over coordinates, in the order of a (T, M) row sum
            cost[s:s + step] = terms[:, s:s + step].T.copy().sum(axis=1)
        cost *= 0.5
        return theta.T, theta_dot.T, n.T, rate.T, sliding.T, cost


#: The cost's sum over coordinates runs in blocks of about this many (time, coordinate) entries.
EVALUATE_BLOCK = 1 << 16


def one_layer_sweep(U, Yhat, w, lam2, theta0, t_end: float, *, keep_times=None) -> OneLayerSweep:
    """Exact trajectories of the M thresholds of the one-layer bias flow, with all events up to ``t_end``.

    θ̇_k = −(1/λ_k²) Σ_{i: u_ik ≤ θ_k} w_i (θ_k − ŷ_ik), where u_ik = (R x_i)_k and ŷ_ik = (R ỹ_i)_k.

    Parameters
    ----------
    U : array (M, N)
        Data coordinates, one row per coordinate k (any strides, e.g. the transpose of X Rᵀ).
    Yhat : array (M, N) or (M, 1)
        Rotated targets; (M, 1) when all points share one target.
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

    Event order: coordinate by coordinate; within a coordinate the crossed points in increasing
    sorted position (u_ik, ties by point index i; for a downward sweep this is reverse time
    order), then the points a threshold slides on. Sorting the log stably by time, as
    :func:`reluflow.dynamics.solver.solve` does, orders simultaneous events by (coordinate,
    crossing before sliding, point).

    Cost, per coordinate: one sort of (u_ik, i) pairs (lexicographic, so ties are ordered by
    point index whatever the sort algorithm), then a few elementwise passes and one prefix sum
    over the states the sweep visits: every event time is a prefix sum of the step times
    Δt = (λ_k²/W) log1p((u_next − θ_start)/(ȳ − u_next)), with no loop over points or events.
    Only the segments that are kept and the event log are stored; the memory of the working
    arrays is O(N), one coordinate at a time.
    """
    U = np.asarray(U, dtype=float)
    Yhat = np.asarray(Yhat, dtype=float)
    w = np.asarray(w, dtype=float)
    M, N = U.shape
    uniform = bool(np.all(w == w[0])) if N else True
    index = np.arange(N, dtype=float)
    pairs, work = np.empty(N, dtype=np.complex128), np.empty(N + 1)  # reused by every coordinate
    shared_W = _prefix(np.full(N, w[0] if N else 0.0)) if uniform else None
    events = _EventBuffer(N * M)
    segs = []
    for k in range(M):
        us, order = _sort_pairs(U[k], index, pairs)
        if uniform:
            ws, W = (w[0] if N else 0.0), shared_W
        else:
            ws = w[order]
            W = _prefix(ws)
        targets = _Targets(Yhat[k], order, ws, W)
        segs.append(_coordinate(us, order, ws, W, targets, uniform, float(lam2[k]), float(theta0[k]), t_end,
                                keep_times, work, events))
        del us, order, ws, targets
    bounds = np.concatenate(([0], np.cumsum([s[0].size for s in segs]))).astype(np.int64)
    fields = [np.concatenate([s[q] for s in segs]) for q in range(10)]
    del pairs, work
    n = events.size
    coord = np.repeat(np.arange(M, dtype=np.int64), events.counts)
    return OneLayerSweep(bounds, *fields, event_time=events.time[:n], event_coordinate=coord,
                         event_point=events.point[:n], event_kind=events.kind[:n])


def _prefix(a):
    """[0, a_0, a_0 + a_1, …] along the last axis."""
    out = np.empty(a.shape[:-1] + (a.shape[-1] + 1,))
    out[..., 0] = 0.0
    np.cumsum(a, axis=-1, out=out[..., 1:])
    return out


def _sort_pairs(u, index, z):
    """Sorted values and the sorting permutation of one coordinate, ties in increasing point index.

    The pairs (u_i, i) are sorted lexicographically as complex numbers u_i + i·1j: the result is
    the stable order whatever the sort algorithm, and the sorted values come out without a
    gather (at N = 10^7 this is ~1.5x faster than an argsort followed by a gather).
    """
    z.real = u
    z.imag = index
    z.sort()
    return z.real.copy(), z.imag.astype(np.int64)


class _Targets:
    """ȳ of the states p = 0..N (p points truncated) and the spread of their targets, for one coordinate.

    Targets are centred on their median, so that a single cluster (all ŷ equal) gives ȳ exactly.
    """

    def __init__(self, yk, order, ws, W):
        self.constant = yk.size == 1 or bool(np.all(yk == yk[0]))
        self.W = W
        if self.constant:
            self.ref = float(yk[0])  # one target: ȳ = ref and no spread, exactly
            return
        self.ref = float(np.median(yk))
        self.ys = yk[order]
        yc = self.ys - self.ref
        wy = ws * yc
        self.S = _prefix(wy)
        wy *= yc
        self.Q = _prefix(wy)

    def centred(self, p):
        """ȳ − ref at the states ``p`` (an index or a slice of 0..N)."""
        S, W = self.S[p], self.W[p]
        return np.divide(S, W, out=np.zeros_like(S), where=W > 0)

    def ybar(self, p):
        return self.ref if self.constant else self.ref + self.centred(p)

    def spread(self, p):
        if self.constant:
            return 0.0
        S = self.S[p]
        return np.maximum(self.Q[p] - S * self.centred(p), 0.0)


def _coordinate(us, order, ws, W, targets, uniform, lam2, theta0, t_end, keep_times, work, events):
    """The segments of one coordinate; its events are appended to ``events``.

    The states of the sweep are indexed in time order by j = |p − p_0| (p = p_0 + j going up,
    p_0 − j going down); state j crosses nxt[j] (us[p] going up, us[p−1] going down) starting
    from θ_0 (j = 0) or the value crossed last, nxt[j−1]. The sweep runs through the boundaries
    of equal values while W > 0 and ȳ lies beyond nxt; its first boundary state that fails is the last.
    """
    N = us.size
    p0 = int(np.searchsorted(us, theta0, side="right"))  # #{i : u_i <= θ_0}
    W0, yb0 = W[p0], targets.ybar(p0)
    if W0 == 0 or theta0 == yb0:
        direction = 0
    else:
        direction = 1 if theta0 < yb0 else -1
    if direction == 0:
        a, nxt, T, bnd = 0, us[:0], np.empty(0), np.ones(1, dtype=bool)
    else:
        if direction > 0:
            nxt, Wt, pt = us[p0:], W[p0:N], slice(p0, N)
        else:
            nxt, Wt, pt = us[p0 - 1::-1] if p0 else us[:0], W[p0:0:-1], slice(p0, 0, -1)
        J = nxt.size  # the state j = J (p = N, resp. 0) crosses ±inf: it always fails
        ybar = targets.ybar(pt)
        fail = np.less_equal(ybar, nxt) if direction > 0 else np.greater_equal(ybar, nxt)
        if not uniform:
            fail |= Wt <= 0
        bnd = np.ones(J + 1, dtype=bool)
        np.not_equal(nxt[1:], nxt[:-1], out=bnd[1:J])
        fail &= bnd[:J]
        a = int(np.argmax(fail)) if J else 0
        if J and not fail[a]:
            a = J
        del fail
        T = _step_times(nxt[:a], Wt[:a], ybar if targets.constant else ybar[:a], lam2, theta0, bnd[:a], work,
                        events.slots(a))  # written where the event times go
    p_end = p0 + direction * a
    ties = not bnd[:a].all()
    seq = np.flatnonzero(bnd[:a + 1]) if ties else None  # the states, in time order
    n_states = a + 1 if seq is None else seq.size
    t_ev = T if seq is None else T[seq[:-1]]  # the times of the events of the sweep, increasing
    E = int(np.searchsorted(t_ev, t_end, side="right"))
    if keep_times is None:
        K = np.arange(E + 1)
    else:
        K = np.unique(np.concatenate((np.searchsorted(t_ev[:E], keep_times, side="right"), [E])))
    jK = K if seq is None else seq[K]  # the kept segments' states
    pK = p0 + direction * jK
    t_start = np.concatenate(([0.0], t_ev[K[1:] - 1])) if K[0] == 0 else t_ev[K - 1]
    prev = (K - 1) if seq is None else seq[np.maximum(K - 1, 0)]
    st = nxt[prev] if nxt.size else np.zeros(K.size)
    st = np.where(K == 0, theta0, st)
    Wk = W[pK]
    yb = np.broadcast_to(np.asarray(targets.ybar(pK), dtype=float), pK.shape)
    decay = Wk / lam2
    ybar_eff = yb.copy()
    offset = st - yb
    cost_offset = offset.copy()
    sliding = np.zeros(K.size, dtype=np.int8)
    last = K.size - 1  # the final segment is classified only if it is the true end of the motion
    if E == n_states - 1:
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
    rest = _residuals(us, ws, targets, min(p0, p_end), pK, work) + targets.spread(pK)
    seg = (t_start, ybar_eff, offset, decay, cost_offset, Wk, rest, pK.astype(np.int64), Wk / lam2, sliding)
    _coordinate_events(events, direction, order, seq, E, p0, sliding[last], t_start[last])
    return seg


def _step_times(nxt, W, ybar, lam2, theta0, bnd, work, dt):
    """T[j], into ``dt``: the time at which the sweep's state j has crossed nxt[j] (a prefix sum of the step times)."""
    a = nxt.size
    if not a:
        return dt
    dt[0] = nxt[0] - theta0
    np.subtract(nxt[1:], nxt[:-1], out=dt[1:])
    den = np.subtract(ybar, nxt, out=work[:a])
    np.divide(dt, den, out=dt)
    np.log1p(dt, out=dt)
    np.divide(lam2, W, out=den)
    np.multiply(den, dt, out=dt)
    if not bnd.all():  # inside a group of equal values nothing is crossed
        dt[~bnd] = 0.0
    return np.cumsum(dt, out=dt)


def _residuals(us, ws, targets, lo, p, work):
    """Σ_{i ≥ p} w_i (u_i − ŷ_i)² over the sorted points, at the states ``p`` ≥ ``lo``: a suffix sum from the end."""
    N = us.size
    suffix = work[:N - lo + 1]
    e = suffix[:-1]
    np.subtract(us[lo:], targets.ref if targets.constant else targets.ys[lo:], out=e)
    np.square(e, out=e)
    np.multiply(ws if np.ndim(ws) == 0 else ws[lo:], e, out=e)
    np.cumsum(e[::-1], out=e[::-1])
    suffix[-1] = 0.0
    return suffix[p - lo]


def _coordinate_events(events, direction, order, seq, E, p0, slides, t_last):
    """Append the crossed points (one contiguous block in sorted order), their kinds and the sliding group.

    The event times are already in place: the sweep's times T, in time order (reversed here for a
    downward sweep, whose points are listed in increasing sorted position).
    """
    pE = seq[E] if seq is not None else E  # the state j of the last segment: pE points crossed
    start = events.size
    if direction > 0:
        events.point[start:start + pE] = order[p0:p0 + pE]
        events.kind[start:start + pE] = TRUNCATED
    elif direction < 0:
        times = events.time[start:start + pE]
        times[:] = times[::-1]
        events.point[start:start + pE] = order[p0 - pE:p0]
        events.kind[start:start + pE] = UNTRUNCATED
    else:
        pE = 0
    events.size += pE
    count = pE
    if slides:
        j_prev = seq[E - 1] if seq is not None else E - 1
        lo, hi = (p0 + j_prev, p0 + pE) if direction > 0 else (p0 - pE, p0 - j_prev)
        at = events.size
        events.slots(hi - lo)
        events.time[at:at + hi - lo] = t_last
        events.point[at:at + hi - lo] = order[lo:hi]
        events.kind[at:at + hi - lo] = SLIDING
        events.size += hi - lo
        count += hi - lo
    events.counts.append(count)


class _EventBuffer:
    """The event log (time, point, kind), filled coordinate by coordinate; grown only if it overflows."""

    def __init__(self, capacity):
        self.time = np.empty(capacity)
        self.point = np.empty(capacity, dtype=np.int64)
        self.kind = np.empty(capacity, dtype=np.int8)
        self.size = 0
        self.counts = []

    def slots(self, n):
        """The time slots of the next n events (a view), growing the arrays if needed."""
        need = self.size + n
        if need > self.time.size:
            capacity = max(need, 2 * self.time.size)
            for name in ("time", "point", "kind"):
                old = getattr(self, name)
                new = np.empty(capacity, dtype=old.dtype)
                new[:self.size] = old[:self.size]
                setattr(self, name, new)
        return self.time[self.size:need]

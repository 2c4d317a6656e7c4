"""The exact one-layer backend: every threshold's sweep in closed form, from one sort (THEORY.md §4.2, S2–S3).

θ_k(t) = ȳ + (θ_k(t_m) − ȳ) e^{−(W/λ_k²)(t − t_m)} between events and
Δt = (λ_k²/W) log((ȳ − θ_k(t_m))/(ȳ − u_next)), for all coordinates at once by sorting and prefix
sums (:func:`reluflow.dynamics.events.one_layer_sweep`). The coordinates of one layer do not
interact, so one :meth:`SortedBackend.step` covers the whole run with one segment.
"""

from __future__ import annotations

import numpy as np

from reluflow.dynamics.base import Backend, Values
from reluflow.dynamics.events import SLIDING, one_layer_sweep

__all__ = ["SortedBackend"]


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

"""What every backend of :func:`reluflow.dynamics.solver.solve` shares, after scipy's ``OdeSolver``.

- :class:`Problem`: the validated inputs (network, points, targets, weights, times, limits);
- :class:`Backend`: advances the flow one segment at a time (:meth:`Backend.step`, between two
  events), keeps the event log and sets ``status``/``message`` when it stops;
- :class:`Values`: what a segment returns at a set of times (its "dense output");
- :class:`Solution`: the segments of one run, evaluated at any time.

A segment is any object with a start time ``t0`` and ``evaluate(times) -> Values``; it is in force
from ``t0`` until the next segment starts (so at an event time it gives the right limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.theory.adapted import AdaptedNetwork

__all__ = ["Problem", "Backend", "Values", "Solution", "EventLog"]


@dataclass(frozen=True)
class Problem:
    """Validated inputs of one solve: C = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|², from θ(0) = ``net.thresholds``."""

    net: AdaptedNetwork
    X: np.ndarray
    targets: np.ndarray
    w: np.ndarray
    t_eval: np.ndarray
    max_events: int | None = None
    record_events: bool = True

    @property
    def t_end(self) -> float:
        return float(self.t_eval[-1])

    @property
    def shape(self):
        """Layers, points and width: (L, N, M)."""
        return self.net.depth, self.X.shape[0], self.net.width

    @property
    def scale(self) -> float:
        """1 + max |X| + max |ỹ|: the size of the data, for tolerances."""
        return 1.0 + float(np.abs(self.X).max()) + float(np.abs(self.targets).max())


@dataclass
class Values:
    """A segment's output at T times; ``None`` where the assembly computes it (cost) or it does not move."""

    thresholds: np.ndarray  # (T, L, M)
    n: np.ndarray  # (T, L, M) or (L, M)
    rate: np.ndarray  # (T, L, M) or (L, M)
    sliding: np.ndarray  # (T, L, M) or (L, M)
    dissipation: np.ndarray  # (T,)
    cost: np.ndarray | None = None  # (T,)
    scales: np.ndarray | None = None  # (T, L, M)
    frames: np.ndarray | None = None  # (T, L, M, M)


class EventLog:
    """Events (time, layer ℓ = 1..L, coordinate k, point i, kind code), appended one by one or in blocks."""

    def __init__(self):
        self._rows = []
        self._blocks = []

    def add(self, t, layer, coordinate, point, kind):
        self._rows.append((float(t), int(layer), int(coordinate), int(point), int(kind)))

    def add_flat(self, t, flat_rows, shape, kind):
        """One event per flat row index f of the (L, N, M) event functions."""
        for f in np.atleast_1d(flat_rows):
            l, i, k = np.unravel_index(int(f), shape)
            self.add(t, l + 1, k, i, kind)

    def extend(self, time, layer, coordinate, point, kind):
        self._flush()
        self._blocks.append((np.asarray(time, float), np.asarray(layer, np.int64), np.asarray(coordinate, np.int64),
                             np.asarray(point, np.int64), np.asarray(kind, np.int8)))

    def _flush(self):
        if self._rows:
            cols = list(zip(*self._rows))
            self._rows = []
            self.extend(*cols)

    def __len__(self):
        return len(self._rows) + sum(b[0].size for b in self._blocks)

    def arrays(self):
        """(time, layer, coordinate, point, kind) arrays, in the order the events were found."""
        self._flush()
        if not self._blocks:
            return (np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                    np.empty(0, np.int8))
        if len(self._blocks) == 1:
            return self._blocks[0]
        return tuple(np.concatenate([b[q] for b in self._blocks]) for q in range(5))

    def truncate(self, keep):
        """Keep only the events where ``keep`` (a boolean array over :meth:`arrays`) is True."""
        arrays = self.arrays()
        self._blocks = [tuple(a[keep] for a in arrays)]


class Backend:
    """One way to advance a threshold flow: :meth:`step` integrates up to the next event.

    Subclasses set ``algorithm`` and ``moves`` (the state variables that change), implement
    :meth:`step` and call :meth:`finish` when they stop. ``nfev`` counts right-hand-side calls.
    """

    algorithm = "base"
    moves = ("thresholds",)

    def __init__(self, problem: Problem):
        self.problem = problem
        self.t = 0.0
        self.t_stop = None
        self.status = None
        self.message = ""
        self.events = EventLog()
        self.nfev = 0

    def step(self) -> list:
        """Advance to the next event (or the end); return the segments that cover the new stretch."""
        raise NotImplementedError

    def finish(self, status: int, message: str, t_stop: float):
        self.status, self.message, self.t_stop = int(status), message, float(t_stop)

    def too_many_events(self) -> bool:
        """True (and stop, status −1) once more than ``max_events`` events have occurred."""
        m = self.problem.max_events
        if m is None or len(self.events) <= m:
            return False
        self.finish(-1, f"stopped at t = {self.t:.6g}: more than max_events = {m} events", self.t)
        return True


class Solution:
    """The segments of one run, each in force from its ``t0`` to the next one's."""

    def __init__(self, segments, t_stop: float):
        self.segments = list(segments)
        self.t_stop = float(t_stop)

    def evaluate(self, times) -> Values:
        """All segment outputs at ``times`` (sorted), stacked along the first axis."""
        times = np.asarray(times, dtype=float)
        starts = np.array([s.t0 for s in self.segments])
        idx = np.searchsorted(starts, times, side="right") - 1
        parts = []
        for j in np.unique(idx):
            sel = np.flatnonzero(idx == j)
            parts.append((sel, self.segments[j].evaluate(times[sel])))
        if len(parts) == 1:
            return _broadcast(parts[0][1], times.size)
        return _stack(parts, times.size)


def _broadcast(v: Values, T: int) -> Values:
    tlm = v.thresholds.shape
    for name in ("n", "rate", "sliding"):
        a = getattr(v, name)
        if a.ndim == 2:
            setattr(v, name, np.broadcast_to(a, tlm))
    return v


def _stack(parts, T: int) -> Values:
    first = parts[0][1]
    out = {}
    for name in ("thresholds", "n", "rate", "sliding", "dissipation", "cost", "scales", "frames"):
        a0 = getattr(first, name)
        if a0 is None:
            out[name] = None
            continue
        shape = (T,) + (first.thresholds.shape[1:] if name in ("n", "rate", "sliding") else a0.shape[1:])
        arr = np.empty(shape, dtype=a0.dtype)
        for sel, v in parts:
            arr[sel] = getattr(v, name)
        out[name] = arr
    return Values(**out)

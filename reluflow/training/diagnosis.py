"""Diagnose a stuck training run from the monitor's record: ``monitor.diagnose(record, trajectory=run)``.

A run is *stuck* when training has stopped making progress for a reason the truncation picture names. The flags,
each a number compared with a documented threshold, evaluated at every recorded state (the first recorded step at
which it holds is reported):

- ``dead_units``: the largest share of a hidden layer's units that truncate every point,
  max_ℓ dead_ℓ(t)/d_ℓ > ``dead_share`` (default 0.5);
- ``frozen_out``: the share of points frozen out, 1 − N_eff(t)/N > ``frozen_share`` (default 0.2), where N_eff
  counts the points with a gradient path to the first layer (:func:`reluflow.theory.generic.gradient_path_mask`);
- ``unstable``: a recorded state that is not finite (the record's ``finite`` = 0: parameters or activations
  overflowed, seen without a trajectory too); with the trajectory's cost also a non-finite cost, a trajectory whose
  ``status`` is not 0 (it stopped: diverged, ill-conditioned), or a cost that rises between two consecutive records,
  (C(t_{s+1}) − C(t_s))/C(t_s) > ``rise_tol`` (default 0.05). Full-batch descent with a stable step decreases the
  cost, so a rise means the step is too large; a step too large often shows as a spike that kills units (then
  ``dead_units`` and ``frozen_out`` fire too), so record densely (``record_every`` small) early in the run.
  Mini-batch runs rise by noise: raise ``rise_tol`` for them;
- ``stalled`` (needs the trajectory's cost): over the last ``tail`` share (default 0.25) of the recorded run the
  cost fell by less than ``min_decrease`` (default 1e-3) of its value at the start of that part,
  (C(t_a) − C(t_end))/C(t_a) < min_decrease, while C(t_end) > ``cost_floor`` (default 1e-3 of C(0));
- ``flow_gap`` (adapted starts, needs the trajectory and a flow ``prediction``): the largest threshold error at the
  matched times t = kη, max_t |θ_GD(t) − θ_flow(t)|, relative to how far the flow moved the thresholds,
  max_t |θ_flow(t) − θ_flow(0)|, above ``gap_share`` (default 0.1)
  (:func:`reluflow.training.comparison.matched_time_error`).

Flags that cannot be evaluated (no trajectory, no prediction) are reported as not evaluated and never fire. States
that are not finite count for ``unstable`` only; ``dead_units`` and ``frozen_out`` look at the finite ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.validation import as_real

__all__ = ["DEFAULT_THRESHOLDS", "FLAG_NAMES", "Flag", "Diagnosis", "diagnose", "BROKEN_KINDS", "KINDS",
           "demonstration", "demonstration_point"]

#: The thresholds of :func:`diagnose` and their defaults (module docstring).
DEFAULT_THRESHOLDS = {"dead_share": 0.5, "frozen_share": 0.2, "rise_tol": 0.05, "tail": 0.25,
                      "min_decrease": 1e-3, "cost_floor": 1e-3, "gap_share": 0.1}

FLAG_NAMES = ("dead_units", "frozen_out", "unstable", "stalled", "flow_gap")


@dataclass(frozen=True)
class Flag:
    """One flag of :class:`Diagnosis`: its ``name``, whether it ``fired``, the ``value`` behind it, the
    ``threshold`` it is compared with, the first recorded ``step`` at which it held (−1: never), and whether it
    could be ``evaluated`` at all."""

    name: str
    fired: bool
    value: float
    threshold: float
    step: int
    evaluated: bool
    meaning: str


@dataclass(frozen=True, repr=False)
class Diagnosis:
    """The flags of one run (:func:`diagnose`); ``str``/``repr`` is a short plain-text table."""

    flags: tuple
    n_points: int
    n_records: int

    @property
    def healthy(self) -> bool:
        """True when no flag fired."""
        return not any(f.fired for f in self.flags)

    @property
    def fired(self) -> tuple:
        """The names of the flags that fired."""
        return tuple(f.name for f in self.flags if f.fired)

    def __getitem__(self, name: str) -> Flag:
        for f in self.flags:
            if f.name == name:
                return f
        raise KeyError(f"name must be one of {FLAG_NAMES}; got {name!r}")

    def __str__(self) -> str:
        lines = [f"{'flag':<11} {'fired':<5} {'value':>9} {'threshold':>9} {'step':>6}  meaning"]
        for f in self.flags:
            if not f.evaluated:
                lines.append(f"{f.name:<11} {'-':<5} {'n/a':>9} {f.threshold:>9.3g} {'-':>6}  {f.meaning}")
                continue
            step = str(f.step) if f.fired else "-"
            lines.append(f"{f.name:<11} {'YES' if f.fired else 'no':<5} {f.value:>9.3g} {f.threshold:>9.3g} "
                         f"{step:>6}  {f.meaning}")
        verdict = "healthy" if self.healthy else "stuck: " + ", ".join(self.fired)
        lines.append(f"{self.n_records} records, {self.n_points} points: {verdict}")
        return "\n".join(lines)

    __repr__ = __str__


def _first(mask, steps) -> int:
    idx = np.flatnonzero(mask)
    return int(steps[idx[0]]) if idx.size else -1


def _as_thresholds(thresholds) -> dict:
    if thresholds is None:
        return dict(DEFAULT_THRESHOLDS)
    if not isinstance(thresholds, dict):
        raise TypeError(f"thresholds must be a dict of name -> number; got {type(thresholds).__name__}")
    unknown = set(thresholds) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise ValueError(f"thresholds has unknown names {sorted(unknown)}; expected a subset of "
                         f"{sorted(DEFAULT_THRESHOLDS)}")
    out = dict(DEFAULT_THRESHOLDS)
    for k, v in thresholds.items():
        hi = 1.0 if k in ("dead_share", "frozen_share", "tail", "min_decrease", "cost_floor") else None
        out[k] = as_real(v, f"thresholds[{k!r}]", minimum=0.0, strict=True, maximum=hi)
    return out


def diagnose(record: xr.Dataset, *, trajectory: xr.Dataset | None = None, prediction: xr.Dataset | None = None,
             thresholds: dict | None = None) -> Diagnosis:
    """The flags of a run (module docstring): dead units, points frozen out, divergence, a stalled cost, and the
    gap to an effective-flow prediction.

    Parameters
    ----------
    record : the monitor's Dataset (:meth:`reluflow.monitor.Watch.result` or :func:`reluflow.monitor.from_trajectory`).
    trajectory : optional run of :func:`reluflow.train` (its ``cost`` and ``status``), for ``unstable`` and
        ``stalled``.
    prediction : optional flow solution with ``thresholds`` over ``time`` (e.g. :func:`reluflow.dynamics.solve`),
        compared with the trajectory's thresholds (an adapted start trained in mode ``"adapted"`` or ``"biases"``).
    thresholds : optional dict overriding :data:`DEFAULT_THRESHOLDS`.
    """
    if not isinstance(record, xr.Dataset) or "dead_units" not in record or "n_effective" not in record:
        raise TypeError(f"record must be the monitor's Dataset (monitor.watch(...).result() or "
                        f"monitor.from_trajectory); got {type(record).__name__}")
    if trajectory is not None and (not isinstance(trajectory, xr.Dataset) or "cost" not in trajectory):
        raise TypeError(f"trajectory must be a Dataset of reluflow.train with a cost; got {type(trajectory).__name__}")
    if prediction is not None:
        if trajectory is None:
            raise ValueError("prediction needs the trajectory (the thresholds of the run) as well; got trajectory=None")
        if not isinstance(prediction, xr.Dataset) or "thresholds" not in prediction:
            raise TypeError(f"prediction must be a Dataset with thresholds over time; got {type(prediction).__name__}")
        if "thresholds" not in trajectory:
            raise ValueError("prediction needs a trajectory with thresholds (a square network); the trajectory has "
                             f"variables {sorted(trajectory.data_vars)}")
    th = _as_thresholds(thresholds)
    steps = np.asarray(record.step.values)
    N = int(record.sizes["point"])
    widths = np.asarray(record.layer_width.values, dtype=float)
    flags = []

    finite = np.asarray(record.finite.values, dtype=bool) if "finite" in record \
        else np.ones(record.sizes["time"], dtype=bool)
    ok = finite.any()
    dead = np.asarray(record.dead_units.values, dtype=float) / widths[None, :]
    dead_share = np.where(finite, dead.max(axis=1), -np.inf)
    hit = dead_share > th["dead_share"]
    flags.append(Flag("dead_units", bool(hit.any()), float(dead_share.max()) if ok else np.nan, th["dead_share"],
                      _first(hit, steps), bool(ok), "largest share of a layer's units dead"))

    frozen = np.where(finite, 1.0 - np.asarray(record.n_effective.values, dtype=float) / N, -np.inf)
    hit = frozen > th["frozen_share"]
    flags.append(Flag("frozen_out", bool(hit.any()), float(frozen.max()) if ok else np.nan, th["frozen_share"],
                      _first(hit, steps), bool(ok), "largest share of points frozen out"))

    if trajectory is None:
        bad = ~finite
        flags.append(Flag("unstable", bool(bad.any()), np.inf if bad.any() else np.nan, th["rise_tol"],
                          _first(bad, steps), bool(bad.any()),
                          "a recorded state not finite" if bad.any()
                          else "largest relative rise of the cost between records"))
        flags.append(Flag("stalled", False, np.nan, th["min_decrease"], -1, False, "relative fall over the tail"))
    else:
        C = np.asarray(trajectory.cost.values, dtype=float)
        tsteps = np.asarray(trajectory.step.values)
        status = int(trajectory.attrs.get("status", 0))
        C0 = C[0] if np.isfinite(C[0]) and C[0] > 0 else 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            rise = np.zeros(C.size)
            rise[1:] = np.where(np.isfinite(C[1:]) & np.isfinite(C[:-1]) & (C[:-1] > 0),
                                (C[1:] - C[:-1]) / np.where(C[:-1] > 0, C[:-1], 1.0), np.inf)
        hit = (rise > th["rise_tol"]) | ~np.isfinite(C)
        fired = bool(hit.any()) or status != 0 or not finite.all()
        step = _first(hit, tsteps) if hit.any() else (int(tsteps[-1]) if status != 0 else -1)
        if not finite.all():
            step = min(s for s in (step, _first(~finite, steps)) if s >= 0)
        flags.append(Flag("unstable", fired, float(rise.max()), th["rise_tol"], step, True,
                          "largest relative rise of the cost between records"))
        S = C.size
        a = min(S - 2, int(np.floor((1.0 - th["tail"]) * (S - 1)))) if S >= 2 else 0
        if S >= 2 and np.isfinite(C[a]) and np.isfinite(C[-1]) and C[a] > 0:
            fall = float((C[a] - C[-1]) / C[a])
            fired = fall < th["min_decrease"] and C[-1] > th["cost_floor"] * C0
            flags.append(Flag("stalled", bool(fired), fall, th["min_decrease"], int(tsteps[a]) if fired else -1, True,
                              "relative fall of the cost over the tail"))
        else:
            flags.append(Flag("stalled", False, np.nan, th["min_decrease"], -1, S >= 2 and status == 0,
                              "relative fall of the cost over the tail"))

    if prediction is None:
        flags.append(Flag("flow_gap", False, np.nan, th["gap_share"], -1, False, "GD vs flow, relative"))
    else:
        from reluflow.training.comparison import matched_time_error

        err, n, _ = matched_time_error(trajectory, prediction, variable="thresholds")
        moved = float(np.abs(prediction.thresholds.values - prediction.thresholds.values[0]).max())
        gap = err / moved if moved > 0 else (0.0 if err == 0 else np.inf)
        fired = bool(gap > th["gap_share"])
        step = -1
        if fired:  # the first matched time at which the gap exceeds the threshold
            t = np.asarray(trajectory.time.values)
            for i, ti in enumerate(t):
                j = int(np.argmin(np.abs(prediction.time.values - ti)))
                if abs(prediction.time.values[j] - ti) <= 1e-9 * max(1.0, ti) and \
                        np.abs(trajectory.thresholds.values[i] - prediction.thresholds.values[j]).max() > \
                        th["gap_share"] * moved:
                    step = int(trajectory.step.values[i])
                    break
        flags.append(Flag("flow_gap", fired, float(gap), th["gap_share"], step, n > 0,
                          "GD vs flow thresholds, relative to the flow's move"))
    return Diagnosis(tuple(flags), N, int(record.sizes["time"]))


# ------------------------------------------------------------------------------------------------ demonstration runs

#: The broken runs of :func:`demonstration`, and the flags each must raise.
BROKEN_KINDS = {"negative_biases": ("frozen_out",), "dying_layer": ("dead_units", "frozen_out"),
                "large_step": ("unstable",)}
#: The kinds of :func:`demonstration`: a healthy run and the broken ones.
KINDS = ("healthy",) + tuple(BROKEN_KINDS)


def demonstration(kind: str, run: int, split, *, seed: int, hidden=(32, 16), n_steps: int = 120, lr: float = 0.1,
                  large_lr: float = 20.0, bias_shift: float = -3.0, layer_shift: float = -5.0, fixed: bool = False):
    """A run of ``kind`` (:data:`KINDS`) on ``split`` with cross-entropy, full batch, He initialisation from
    SeedSequence([seed, run]): ``"healthy"`` (step ``lr``); ``"negative_biases"`` (every hidden bias started at
    ``bias_shift``); ``"dying_layer"`` (the second hidden layer's biases at ``layer_shift``); ``"large_step"`` (step
    ``large_lr``). With ``fixed``, the fix runs instead: negative biases and a dying layer continue for ``n_steps``
    from the stuck run's last state with the offending biases reset to 0; a step too large restarts from the same
    initialisation with the flow step η = 1/r̂ (:func:`reluflow.training.schedules.output_layer_rate`); a healthy run
    continues for ``n_steps``. Returns (record, trajectory, diagnosis, test accuracy); records every step for the
    large step, else every 10 steps."""
    import warnings

    from reluflow.training import monitor
    from reluflow.training.gd import train
    from reluflow.training.init import he_network
    from reluflow.training.schedules import accuracy, output_layer_rate

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    Ws, bs, Wo, bo = he_network([split.n_features, *hidden], split.n_classes, seed=np.random.SeedSequence([seed, run]))
    eta = lr
    if kind == "negative_biases":
        bs = [b + bias_shift for b in bs]
    elif kind == "dying_layer":
        bs[min(1, len(bs) - 1)] = bs[min(1, len(bs) - 1)] + layer_shift
    elif kind == "large_step":
        eta = large_lr
    every = 1 if kind == "large_step" else 10

    def go(state, step):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return train(state[0], state[1], split.X_train, split.y_train, mode="full", cost="cross_entropy", lr=step,
                         n_steps=n_steps, record_every=every, W_out=state[2], b_out=state[3], train_terminal=True)

    state = (Ws, bs, Wo, bo)
    if fixed and kind == "large_step":
        eta = 1.0 / output_layer_rate(Ws, bs, Wo, bo, split.X_train)
        every = 10
    elif fixed:
        tr = go(state, eta)
        weights, biases, W_out, b_out = monitor.trajectory_parameters(tr.isel(time=[-1]))[0]
        if kind == "negative_biases":
            biases = [np.zeros_like(b) for b in biases]
        elif kind == "dying_layer":
            biases[min(1, len(biases) - 1)] = np.zeros_like(biases[min(1, len(biases) - 1)])
        state = (weights, biases, W_out, b_out)
    tr = go(state, eta)
    rec = monitor.from_trajectory(tr, split.X_train, split.y_train)
    final = monitor.trajectory_parameters(tr.isel(time=[-1]))[0]
    return rec, tr, diagnose(rec, trajectory=tr), accuracy(final, split.X_test, split.y_test)


def demonstration_point(point, rng_seed, *, seed: int, split, **kwargs) -> dict:
    """:func:`demonstration` at ``point = {"run", "kind", "fixed"}`` for :func:`reluflow.sweep`: each flag's verdict
    (1/0) and value, whether every flag expected for the kind fired, and the test accuracy."""
    kind, run, fixed = str(point["kind"]), int(point["run"]), bool(point["fixed"])
    _, _, d, acc = demonstration(kind, run, split, seed=seed, fixed=fixed, **kwargs)
    expected = BROKEN_KINDS.get(kind, ())
    return {"fired": np.array([int(d[n].fired) for n in FLAG_NAMES]),
            "value": np.array([d[n].value for n in FLAG_NAMES], dtype=float),
            "expected_fired": int(all(d[n].fired for n in expected)) if expected else -1,
            "healthy": int(d.healthy), "test_accuracy": acc}

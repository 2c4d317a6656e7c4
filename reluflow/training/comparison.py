"""Effective flows against gradient descent (THEORY.md §4, §6).

The cost is the input-layer cost C = C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² (w_i = 1/N unless said
otherwise). Points are rows, ``X.shape == (N, M)``. Gradient descent is :func:`reluflow.training.gd.train`,
whose ``time`` coordinate is t = step·η.

Map from formula to function:

- max over matched times t = kη of |q_GD(t) − q_flow(t)| for a recorded quantity q      → :func:`matched_time_error`
- the least-squares slope of log e(η) against log η                                      → :func:`convergence_slope`
- does a run with a larger η meet no truncation event that the finest run misses?        → :func:`events_matched`
- the slope over the smallest η at which it does (the asymptotic regime)                 → :func:`asymptotic_slope`
- does e(η) fall as η shrinks, in that regime, up to the event-phase scatter?            → :func:`errors_decrease`
- e(η) over several step sizes η, one gradient-descent run per η                          → :func:`gd_convergence`
- unconstrained gradient descent (mode ``"full"``) against the effective scale-and-bias flow
  λ̇ = ρ θ g/λ, θ̇ = −(1 + ρθ²) g/λ² (g = ∂C/∂θ, frames frozen; ρ = 0 is the bias flow (4.2)),
  discretised with the same step η (mode ``"adapted"``)                               → :func:`effective_comparison`

The spectrum of D Dᵀ along a flow solution or a gradient-descent run is
:func:`reluflow.training.spectral.spectral_trajectory`.

The reference flows are solutions of :func:`reluflow.dynamics.solver.solve`: the bias flow (4.2), and the
flow (4.5) that gradient descent on the layer biases induces on the thresholds, θ̇ = −Λ^-1 K Λ^-1 ∂C/∂θ with
K = :func:`reluflow.theory.flows.induced_bias_kernel` (``solve(..., kernel=K)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import xarray as xr

from reluflow.results.schema import make_dataset
from reluflow.theory.adapted import AdaptedNetwork
from reluflow.theory.network import layer_parameters
from reluflow.training.gd import train
from reluflow.validation import (
    as_points,
    as_positive_float,
    as_real_array,
    check_positive_int,
)

__all__ = [
    "matched_time_error",
    "convergence_slope",
    "events_matched",
    "asymptotic_slope",
    "errors_decrease",
    "gd_convergence",
    "effective_comparison",
]

#: Relative tolerance for matching a gradient-descent time kη to a reference time.
TIME_MATCH_RTOL = 1e-9

# --------------------------------------------------------------------------- validation helpers


def _as_adapted(net, name="net") -> AdaptedNetwork:
    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"{name} must be a reluflow.AdaptedNetwork (see adapted_network); got {type(net).__name__}")
    return net


# --------------------------------------------------------------------------- gradient descent against a flow


def _check_recorded(ds, name, variable):
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"{name} must be an xarray.Dataset; got {type(ds).__name__}")
    if "time" not in ds.coords or variable not in ds:
        raise ValueError(f"{name} must hold a 'time' coordinate and the variable {variable!r}; "
                         f"got variables {sorted(ds.data_vars)}")


def matched_time_error(trajectory: xr.Dataset, reference: xr.Dataset, *, variable: str = "thresholds"):
    """max over matched times t = kη ≤ t_ref of |q_GD(t) − q_ref(t)| (max over all other dims too).

    ``trajectory`` is a gradient-descent run of :func:`reluflow.training.gd.train` (``time`` = step·η);
    ``reference`` any Dataset with a ``time`` coordinate (e.g. a flow solution), which must hold every
    recorded time kη up to its own last time, to a relative tolerance of 1e-9. ``variable`` names the
    quantity in both (``"thresholds"``, ``"cost"`` or ``"n_truncated"``). Returns
    ``(error, n_matched, t_last)``: the maximum absolute error,
    the number of matched times and the last matched time.
    """
    keep, j, t = _match_times(trajectory, reference, variable)
    a = np.asarray(trajectory[variable].values, dtype=float)[keep]
    b = np.asarray(reference[variable].values, dtype=float)[j]
    if a.shape != b.shape:
        raise ValueError(f"{variable} has shape {a.shape[1:]} per time in the trajectory and {b.shape[1:]} in the "
                         "reference")
    return float(np.abs(a - b).max()), int(t.size), float(t[-1]) if t.size else 0.0


def _match_times(trajectory, reference, variable):
    """(keep, j, t): the recorded times t = trajectory.time[keep] up to the reference's last time, and the index j
    of each in the reference's time axis (ValueError if one is missing)."""
    _check_recorded(trajectory, "trajectory", variable)
    _check_recorded(reference, "reference", variable)
    t = np.asarray(trajectory["time"].values, dtype=float)
    tr = np.asarray(reference["time"].values, dtype=float)
    keep = t <= tr[-1] * (1 + TIME_MATCH_RTOL) + TIME_MATCH_RTOL
    t = t[keep]
    j = np.clip(np.searchsorted(tr, t), 0, tr.size - 1)
    jm = np.clip(j - 1, 0, tr.size - 1)
    j = np.where(np.abs(tr[jm] - t) < np.abs(tr[j] - t), jm, j)
    bad = np.abs(tr[j] - t) > TIME_MATCH_RTOL * np.maximum(1.0, t)
    if np.any(bad):
        raise ValueError(f"reference must hold every recorded time kη of the trajectory; time {t[bad][0]:.12g} "
                         f"is missing (nearest {tr[j[bad][0]]:.12g})")
    return keep, j, t


def _runs(counts):
    """Per column of ``counts`` (times × k), the sequence of distinct consecutive values (run-length codes)."""
    out = []
    for c in counts.T:
        change = np.concatenate([[True], c[1:] != c[:-1]])
        out.append(c[change])
    return out


def count_runs(trajectory: xr.Dataset) -> list:
    """Per layer and coordinate (flattened), the truncation counts ``n_truncated`` of a gradient-descent run with
    repeats removed: the sequence of count values it goes through, i.e. its truncation events in order."""
    _check_recorded(trajectory, "trajectory", "n_truncated")
    a = np.asarray(trajectory["n_truncated"].values)
    return _runs(a.reshape(a.shape[0], -1))


def _is_subsequence(short, long) -> bool:
    it = iter(long.tolist())
    return all(any(v == w for w in it) for v in short.tolist())


def events_matched(coarse: list, fine: list) -> bool:
    """True when a gradient-descent run with a larger step meets no truncation event that a finer run misses.

    ``coarse`` and ``fine`` are :func:`count_runs` of two runs from the same start (both counted by the same
    forward pass, so ties are treated alike). For every layer and coordinate the coarse sequence of counts must
    be a subsequence of the fine one: events may be met late, or two of them in one step (a count skipped), but
    none may be extra. An extra event is a near miss of the flow (a threshold grazing a point) that a too-long
    step crosses; it adds an error of the size of the near miss, independent of η, so such a step is not yet in
    the first-order regime.
    """
    if len(coarse) != len(fine):
        raise ValueError(f"coarse and fine must count the same layers and coordinates; got {len(coarse)} and "
                         f"{len(fine)}")
    return all(_is_subsequence(c, f) for c, f in zip(coarse, fine))


def asymptotic_slope(etas, errors, matched, *, min_points: int = 3):
    """(p, n): the slope of :func:`convergence_slope` over the n smallest step sizes that all have ``matched``.

    ``matched[i]`` says whether gradient descent with ``etas[i]`` meets no truncation event that the run with
    the smallest step misses (:func:`events_matched`). The fit uses the longest run of the smallest η, in
    increasing order, that all do: the η below the largest step that still resolves every near miss. If fewer
    than ``min_points`` (≥ 2) do, p is NaN (a check on p then fails). The fit itself is the plain least-squares
    slope, so an error of the wrong order still gives the wrong slope.
    """
    etas = as_real_array(etas, "etas", ndim=1)
    errors = as_real_array(errors, "errors", ndim=1)
    matched = np.asarray(matched)
    if matched.shape != etas.shape or matched.dtype != bool:
        raise ValueError(f"matched must be a boolean array of the shape of etas {etas.shape}; got "
                         f"{matched.dtype} of shape {matched.shape}")
    min_points = check_positive_int(min_points, "min_points")
    if min_points < 2:
        raise ValueError(f"min_points must be >= 2; got {min_points}")
    if etas.shape != errors.shape:
        raise ValueError(f"etas and errors must have equal shape; got {etas.shape} and {errors.shape}")
    if min_points > etas.size:
        raise ValueError(f"min_points must be at most the number of etas ({etas.size}); got {min_points}")
    order = np.argsort(etas)
    m = matched[order]
    n = int(m.size if m.all() else np.argmin(m))
    if n < min_points:
        return float("nan"), n
    return convergence_slope(etas[order][:n], errors[order][:n])[0], n


#: :func:`errors_decrease`: the largest rise of e allowed from one η to the next smaller (event-phase scatter), and
#: the least fall demanded when η shrinks 4× (a first-order error falls 4×; 1.5× is a local order of 0.3, so a
#: plateau fails; the order itself is the slope check's business).
HALVING_RISE, QUARTER_FALL = 1.25, 1.5


def errors_decrease(etas, errors, matched, *, min_points: int = 3) -> tuple[bool, float, float]:
    """(ok, worst rise, worst fall): does e(η) fall as η shrinks, over the η that :func:`asymptotic_slope` fits?

    A first-order error with truncation events is e(η) = c(η) η with a bounded but not constant c: where an event
    lands inside a step changes c by a factor of order one, so e need not fall at *every* halving (at the fast
    profile of notebook 06, seed 201: 6.71e-4 at η = 0.005, 6.96e-4 at 0.0025). Over the n smallest η that all meet
    the finest run's events (``matched``, at least ``min_points``), the test asks that no step to the next smaller
    η raise e by more than ``HALVING_RISE`` = 1.25×, and that every η' ≤ η/4 have e(η') ≤ e(η)/``QUARTER_FALL``
    (a first-order error falls 4×; the test demands 1.5×, a local order of 0.3). An error that stalls (a plateau,
    zeroth order) or grows fails; ok is False when fewer than ``min_points`` η match. Returns the largest ratio
    e(η')/e(η) of neighbours and the largest over pairs with η' ≤ η/4 (NaN when there is no such pair).
    """
    etas = as_real_array(etas, "etas", ndim=1)
    errors = as_real_array(errors, "errors", ndim=1)
    _, n = asymptotic_slope(etas, errors, matched, min_points=min_points)
    if n < min_points:
        return False, float("nan"), float("nan")
    order = np.argsort(etas)[:n][::-1]  # the n smallest, largest first
    e, eta = errors[order], etas[order]
    rise = float(np.max(e[1:] / e[:-1]))
    far = eta[None, :] <= eta[:, None] / 4 * (1 + 1e-9)  # far[i, j]: eta_j <= eta_i / 4
    fall = float(np.max((e[None, :] / e[:, None])[far])) if far.any() else float("nan")
    ok = bool(rise <= HALVING_RISE and (not far.any() or fall <= 1 / QUARTER_FALL))
    return ok, rise, fall

def convergence_slope(etas, errors):
    """(p, c) of the least-squares fit log e = p log η + c; p ≈ 1 for a first-order method."""
    etas = as_real_array(etas, "etas", ndim=1)
    errors = as_real_array(errors, "errors", ndim=1)
    if etas.shape != errors.shape or etas.size < 2:
        raise ValueError(f"etas and errors must be 1-D of equal length >= 2; got {etas.shape} and {errors.shape}")
    if np.any(etas <= 0) or np.any(errors <= 0):
        raise ValueError("etas and errors must be positive (they are fitted on log-log axes)")
    p, c = np.polyfit(np.log(etas), np.log(errors), 1)
    return float(p), float(c)


def gd_convergence(weights, biases, X, targets, references, *, etas, t_end: float, mode: str,
                   weight_lr_ratio: float = 0.0) -> xr.Dataset:
    """e(η) = max_{kη ≤ t} |θ_GD(kη) − θ_flow(kη)| (and the same for C) for each step size η.

    One :func:`reluflow.training.gd.train` run per η (every step recorded) with the input cost, from the
    layer parameters ``weights, biases``, for ``round(t_end/η)`` steps, compared with each reference
    flow solution at the matched times (see :func:`matched_time_error`). ``references`` is one Dataset
    or a dict name → Dataset; every reference must hold all times kη up to its last time.

    Returns a Dataset over ``reference`` and ``eta``: ``threshold_error``, ``cost_error``,
    ``count_error`` (max |Δn_{ℓ,k}|, if the reference has ``n_truncated``), ``events_matched``
    (per η: :func:`events_matched` against the run with the smallest η), ``t_compared`` (the last
    matched time) and ``n_steps``; attributes ``mode``, ``weight_lr_ratio``, ``t_end``.
    """
    if isinstance(references, xr.Dataset):
        references = {"flow": references}
    if not isinstance(references, Mapping) or not references:
        raise TypeError(f"references must be a Dataset or a non-empty dict of name -> Dataset; "
                        f"got {type(references).__name__}")
    etas = as_real_array(etas, "etas", ndim=1)
    if etas.size == 0 or np.any(etas <= 0):
        raise ValueError(f"etas must be a non-empty list of positive step sizes; got {etas.tolist()}")
    t_end = as_positive_float(t_end, "t_end")
    names = list(references)
    shape = (len(names), etas.size)
    out = {k: np.full(shape, np.nan) for k in ("threshold_error", "cost_error", "count_error", "t_compared")}
    runs = []
    n_steps = np.empty(etas.size, np.int64)
    for e, eta in enumerate(etas):
        n = max(1, int(round(t_end / eta)))
        n_steps[e] = n
        traj = train(weights, biases, X, targets, mode=mode, cost="input", lr=float(eta),
                     weight_lr_ratio=weight_lr_ratio, n_steps=n, record_every=1, progress=False)
        if traj.attrs["status"] != 0:
            raise ValueError(f"gradient descent with eta={eta:g} stopped early: {traj.attrs['message']}")
        runs.append(count_runs(traj))
        for r, name in enumerate(names):
            ref = references[name]
            err, _, t_last = matched_time_error(traj, ref, variable="thresholds")
            out["threshold_error"][r, e] = err
            out["t_compared"][r, e] = t_last
            out["cost_error"][r, e] = matched_time_error(traj, ref, variable="cost")[0]
            if "n_truncated" in ref:
                out["count_error"][r, e] = matched_time_error(traj, ref, variable="n_truncated")[0]
    finest = runs[int(np.argmin(etas))]
    matched = np.array([events_matched(r, finest) for r in runs])
    one = {"units": "1"}
    dims = ("reference", "eta")
    data = {
        "threshold_error": (dims, out["threshold_error"],
                            {"long_name": "max over t = k eta of |theta_GD - theta_flow| (all layers, coordinates)",
                             **one}),
        "cost_error": (dims, out["cost_error"], {"long_name": "max over t = k eta of |C_GD - C_flow|", **one}),
        "count_error": (dims, out["count_error"],
                        {"long_name": "max over t = k eta of |n_GD - n_flow| (truncation counts)", **one}),
        "t_compared": (dims, out["t_compared"], {"long_name": "last matched time t = k eta", **one}),
        "events_matched": (("eta",), matched, {"long_name": "no truncation event that the run with the smallest "
                                                            "eta misses (events_matched)", **one}),
        "n_steps": (("eta",), n_steps, {"long_name": "number of gradient-descent steps", **one}),
    }
    coords = {"reference": ("reference", np.array(names)), "eta": ("eta", etas, {"long_name": "step size eta", **one})}
    return xr.Dataset(data, coords=coords, attrs={"mode": mode, "weight_lr_ratio": float(weight_lr_ratio),
                                                  "t_end": t_end})


def effective_comparison(net, X, targets, *, weight_lr_ratio: float, lr: float, n_steps: int,
                         record_every: int = 1) -> xr.Dataset:
    """Unconstrained gradient descent against the effective scale-and-bias flow, from one adapted network.

    Both start from ``net`` (W^(ℓ) = Λ_ℓ R_ℓ, b^(ℓ) = −Λ_ℓ θ_ℓ), with the input cost, bias step η = ``lr``
    and weight step ρη (ρ = ``weight_lr_ratio``):

    - *gradient descent*: :func:`reluflow.training.gd.train` in mode ``"full"`` on the layer parameters
      W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1), with nothing held fixed;
    - *effective flow*: λ̇ = ρ θ g/λ, θ̇ = −(1 + ρθ²) g/λ² with g = ∂C/∂θ and the frames frozen
      (for ρ = 0 the bias flow (4.2)), discretised by the same gradient steps in the adapted
      coordinates (mode ``"adapted"``), which converge to it as η → 0 at order η.

    Returns a Dataset in the schema of :mod:`reluflow.results.schema` over ``time`` (the recorded
    t = kη, with ``step`` = k) and ``layer``: ``adaptedness`` (time, layer) of the gradient-descent network
    and, specific to this comparison, ``cost_gd``, ``cost_effective``, ``cost_error`` |C_GD − C_eff|/C(0),
    ``threshold_error`` max_{ℓ,k} |θ_GD − θ_eff| (θ = −b^(ℓ)_k/|row k of W^(ℓ)|), ``count_error``
    max_{ℓ,k} |n_GD − n_eff|/N (truncation counts) and ``completed`` (1 while both runs were still going;
    a run that stops early, e.g. on ill-conditioned weights, leaves NaN afterwards). ``status`` is 0 when
    both runs completed, else the code of the first run that stopped (gradient descent first); the
    attributes ``status_gd`` and ``status_effective`` hold both codes.
    """
    net = _as_adapted(net)
    X = as_points(X, "X", dim=net.width)
    N = X.shape[0]
    n_steps = check_positive_int(n_steps, "n_steps")
    record_every = check_positive_int(record_every, "record_every")
    weights, biases = layer_parameters(*net.cumulative_parameters())
    runs = {}
    for mode in ("full", "adapted"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an early stop is reported through `completed`
            runs[mode] = train(weights, biases, X, targets, mode=mode, cost="input", lr=lr,
                               weight_lr_ratio=weight_lr_ratio, n_steps=n_steps, record_every=record_every,
                               progress=False)
    steps = np.unique(np.concatenate((np.arange(0, n_steps + 1, record_every), [n_steps])))
    times = steps * float(lr)

    def on_grid(ds, var):
        full = np.full((steps.size,) + ds[var].shape[1:], np.nan)
        full[np.searchsorted(steps, ds["step"].values)] = ds[var].values
        return full

    gd, ef = runs["full"], runs["adapted"]
    c_gd, c_ef = on_grid(gd, "cost"), on_grid(ef, "cost")
    c0 = float(c_ef[0])
    th_err = np.abs(on_grid(gd, "thresholds") - on_grid(ef, "thresholds")).max(axis=(1, 2))
    n_err = np.abs(on_grid(gd, "n_truncated") - on_grid(ef, "n_truncated")).max(axis=(1, 2)) / N
    completed = np.isfinite(c_gd) & np.isfinite(c_ef)
    t = ("time",)
    extra = {
        "cost_gd": (t, c_gd, "cost C under unconstrained gradient descent"),
        "cost_effective": (t, c_ef, "cost C under the effective scale-and-bias flow"),
        "cost_error": (t, np.abs(c_gd - c_ef) / c0, "relative cost error |C_GD - C_eff| / C(0)"),
        "threshold_error": (t, th_err, "max |theta_GD - theta_eff| over layers and coordinates"),
        "count_error": (t, n_err, "max |n_GD - n_eff| / N over layers and coordinates"),
        "completed": (t, completed.astype(np.int8), "1 while both runs were going"),
    }
    codes = {"gd": int(gd.attrs["status"]), "effective": int(ef.attrs["status"])}
    stopped = [(name, run) for name, run in (("gradient descent", gd), ("effective flow", ef))
               if run.attrs["status"] != 0]
    status = int(stopped[0][1].attrs["status"]) if stopped else 0
    message = "; ".join(f"{name}: {run.attrs['message']}" for name, run in stopped) or "both runs completed"
    return make_dataset({"adaptedness": on_grid(gd, "adaptedness")},
                        {"time": times, "step": steps, "layer": np.arange(1, net.depth + 1)},
                        status=status, message=message, extra_variables=extra,
                        attrs={"weight_lr_ratio": float(weight_lr_ratio), "lr": float(lr),
                               "status_gd": codes["gd"], "status_effective": codes["effective"]})

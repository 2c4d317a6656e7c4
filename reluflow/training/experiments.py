"""The experiments of notebooks 06 (effective flows against gradient descent) and 07 (spectral gaps).

Each function is one step of a notebook's argument, so that the notebook holds narrative, a few calls,
checks and figures, and the tests reach the logic (THEORY.md §4.5, §5 S6).

Notebook 06, effective flows against gradient descent:

- the scenario: two clusters in R², their targets, a two-layer adapted network whose layer weights are
  scaled by s (λ_ℓ → s^ℓ λ_ℓ, θ unchanged)                                → :func:`two_cluster_problem`,
  :func:`two_cluster_network`
- parameter rules and checks of the notebook   → :data:`FLOW_VS_GD_RULES`, :func:`check_step_grids`,
  :func:`flow_vs_gd_parameters`
- the union of the times kη of several step sizes                          → :func:`matched_time_grid`
- the induced flow (4.5) θ̇ = −Λ^-1 K Λ^-1 ∂C/∂θ, K of the layer weights   → :func:`induced_flow`
- the validity map: :func:`reluflow.training.comparison.effective_comparison` over depth × weight scale ×
  ρ, and where max_t |C_GD − C_eff|/C(0) ≤ tolerance                      → :func:`validity_map`, :func:`holds_map`
- the checks of the map (ρ = 0 in one layer, scale = time change, drift grows with ρ, η resolves the map)
  → :func:`validity_map_checks`
- one layer, ρ = 0: gradient descent on the layer parameters against the exact bias flow, error ∝ η
  → :func:`one_layer_descent_convergence`
- the validity map in words, read off the table                           → :func:`validity_summary`
- the notebook's result Dataset                                            → :func:`flow_vs_gd_result`

Notebook 07, spectral gaps:

- gradient descent on an over-parametrised network with the output cost  → :func:`overparametrised_descent`
- the Gram spectrum at sampled recorded times                               → :func:`sampled_gram_eigenvalues`
- the one-layer scenario and random one-layer instances                     → :func:`spectral_scenario`,
  :func:`random_instances`
- nonzero eigenvalues of D Dᵀ against n_k/λ_k², and λ_min⁺ against min n_k/λ_k²
  → :func:`eigenvalue_identity_error`,
  :func:`gap_identity_error`
- the tie-convention statement (false while a threshold rests on a point)  → :func:`between_event_decay`
- a hand-made problem where thresholds come to rest (sliding, release)     → :func:`resting_counterexample`
- D against central differences of a plain forward pass                   → :func:`bias_jacobian_by_differences`,
  :func:`kink_margin`
- the corrected statement on intervals of fixed active set                 →
  :func:`reluflow.training.spectral.active_set_decay`
- (TᵀT) ⊙ (W_outᵀ W_out) and (UᵀU) ⊙ (W_outᵀ W_out) along θ(t)             → :func:`terminal_hadamard_spectra`
- parameter checks; the k largest eigenvalues of D Dᵀ along a spectrum     → :func:`spectral_gap_parameters`,
  :func:`largest_eigenvalues`
- the notebook's result Dataset                                            → :func:`spectral_gap_result`
"""

from __future__ import annotations

from functools import partial

import numpy as np
import xarray as xr

from reluflow.pipeline import parameters as check
from reluflow.pipeline.sweep import sweep
from reluflow.theory.adapted import adapted_network, random_adapted_network, rotation
from reluflow.theory.costs import targets_by_label
from reluflow.theory.data import clustered_data
from reluflow.theory.flows import induced_bias_kernel
from reluflow.theory.network import random_network
from reluflow.training.comparison import effective_comparison
from reluflow.training.gd import train
from reluflow.training.spectral import (
    bias_flow_gap,
    bias_flow_parameter_gram,
    flow_jacobian,
    gram_eigenvalues,
    spectral_trajectory,
)
from reluflow.validation import (
    as_adapted_network,
    as_dataset,
    as_layer_list,
    as_points,
    as_positive_float,
    as_real_array,
    as_terminal_weights,
    as_times,
    check_memory,
    check_positive_int,
    check_size,
)

__all__ = [
    "TWO_CLUSTER",
    "two_cluster_network",
    "two_cluster_problem",
    "flow_vs_gd_parameters",
    "matched_time_grid",
    "induced_flow",
    "validity_map",
    "holds_map",
    "validity_map_checks",
    "ONE_LAYER_SLOPE",
    "one_layer_etas",
    "one_layer_descent_convergence",
    "validity_summary",
    "flow_vs_gd_result",
    "spectral_gap_parameters",
    "overparametrised_descent",
    "sampled_gram_eigenvalues",
    "spectral_scenario",
    "random_instances",
    "eigenvalue_identity_error",
    "gap_identity_error",
    "between_event_decay",
    "resting_counterexample",
    "bias_jacobian_by_differences",
    "kink_margin",
    "jacobian_difference_error",
    "terminal_hadamard_spectra",
    "largest_eigenvalues",
    "spectral_gap_result",
]

_ONE = {"units": "1"}

# ------------------------------------------------------------------------------------------- notebook 06

#: The scenario of notebook 06: two clusters in R², their input-space targets, and the frames (degrees),
#: scales and thresholds of a two-layer adapted network.
TWO_CLUSTER = {
    "centres": [[-1.0, 0.6], [1.0, -0.6]], "radius": 0.7, "targets": [[-1.6, 1.4], [1.5, -0.2]],
    "frames": [0.0, 35.0], "scales": [[1.0, 1.3], [0.9, 1.1]], "thresholds": [[-1.2, 0.3], [-0.6, -1.0]],
}


def two_cluster_network(depth: int, weight_scale: float = 1.0):
    """The first ``depth`` layers of the scenario, every layer weight W_ℓ multiplied by s: λ_ℓ → s^ℓ λ_ℓ, θ the same."""
    sc = TWO_CLUSTER
    depth = check_positive_int(depth, "depth")
    if depth > len(sc["frames"]):
        raise ValueError(f"depth must be at most {len(sc['frames'])} (the layers of the scenario); got {depth}")
    weight_scale = as_positive_float(weight_scale, "weight_scale")
    with np.errstate(over="ignore", under="ignore"):
        reach = np.float64(weight_scale) ** depth
    if not (np.isfinite(reach) and reach > 1e-150 and reach < 1e150):
        raise ValueError(f"weight_scale ** depth must stay within float range; got weight_scale={weight_scale!r}")
    return adapted_network([rotation(a) for a in sc["frames"][:depth]],
                           [np.multiply(sc["scales"][l], weight_scale ** (l + 1)) for l in range(depth)],
                           sc["thresholds"][:depth])


def two_cluster_problem(n_per_cluster: int, seed: int):
    """(X, Y): ``n_per_cluster`` points per cluster, from the first child of SeedSequence(seed), and their targets."""
    n_per_cluster = check_positive_int(n_per_cluster, "n_per_cluster")
    data = clustered_data(TWO_CLUSTER["centres"], TWO_CLUSTER["radius"], n_per_cluster,
                          seed=np.random.SeedSequence(seed).spawn(1)[0])
    return data.points, targets_by_label(TWO_CLUSTER["targets"], data.labels)


#: Slope interval of :func:`one_layer_descent_convergence`. The slope is fitted over the step sizes whose runs meet
#: no truncation event that the finest run misses (:func:`reluflow.training.comparison.asymptotic_slope`); for one
#: layer every step size usually qualifies, and the remaining scatter is the phase of each event in its step (seed 2
#: of notebook 06's fast profile: all 11 step sizes qualify, slope 1.203), so the interval stays [0.8, 1.25].
ONE_LAYER_SLOPE = (0.8, 1.25)


def one_layer_etas(t_end: float) -> np.ndarray:
    """11 step sizes η = t_end/n from about 0.04 down by factors √2 to about 0.00125, each dividing ``t_end``."""
    t_end = as_positive_float(t_end, "t_end")
    n0 = max(1, round(t_end / 0.04))
    return t_end / np.array(sorted({round(n0 * 2 ** (k / 2)) for k in range(11)}), dtype=float)


def _whole_steps(t_end, eta):
    return abs(t_end / eta - round(t_end / eta)) <= 1e-9 * (t_end / eta)


#: The rule of each parameter of notebook 06 (:func:`reluflow.pipeline.parameters.validate`), in notebook order.
FLOW_VS_GD_RULES = dict(seed="seed", n_per_cluster="int >= 2", t_end="float > 0", etas="[float] > 0",
                        sweep_lr="0 < float <= 0.5", sweep_t_end="float > 0", sweep_record_every="int >= 1",
                        weight_lr_ratios="[float] >= 0", weight_scales="[float] > 0", sweep_depths="1 <= [int] <= 2",
                        holds_tolerance="float > 0")


def flow_vs_gd_parameters(*, seed, n_per_cluster, t_end, etas, sweep_lr, sweep_t_end, sweep_record_every,
                          weight_lr_ratios, weight_scales, sweep_depths, holds_tolerance) -> dict:
    """The parameters of notebook 06, validated (a bad value raises with a message naming the parameter)."""
    p = check.validate(dict(seed=seed, n_per_cluster=n_per_cluster, t_end=t_end, etas=etas, sweep_lr=sweep_lr,
                            sweep_t_end=sweep_t_end, sweep_record_every=sweep_record_every,
                            weight_lr_ratios=weight_lr_ratios, weight_scales=weight_scales, sweep_depths=sweep_depths,
                            holds_tolerance=holds_tolerance), **FLOW_VS_GD_RULES)
    return check_step_grids(p)


def check_step_grids(p: dict) -> dict:
    """Check the relations between notebook 06's validated parameters ``p``; return ``p``.

    At least 3 distinct ``etas``, each dividing ``t_end``; ``sweep_lr`` dividing ``sweep_t_end``; the reference
    cases 1.0 in ``weight_scales`` and 0.0 in ``weight_lr_ratios``.
    """
    if len(p["etas"]) < 3 or len(set(p["etas"])) != len(p["etas"]):
        raise ValueError(f"parameter 'etas' must hold at least 3 distinct step sizes; got {p['etas']!r}")
    for e in p["etas"]:
        if not _whole_steps(p["t_end"], e):
            raise ValueError(f"parameter 't_end' must be a whole number of steps of every eta in 'etas'; got "
                             f"t_end={p['t_end']!r} and eta={e!r}")
    if not _whole_steps(p["sweep_t_end"], p["sweep_lr"]):
        raise ValueError(f"parameter 'sweep_t_end' must be a whole number of steps of 'sweep_lr'; got "
                         f"{p['sweep_t_end']!r} and {p['sweep_lr']!r}")
    if 1.0 not in p["weight_scales"] or 0.0 not in p["weight_lr_ratios"]:
        raise ValueError("parameters 'weight_scales' and 'weight_lr_ratios' must contain 1.0 and 0.0 (the reference "
                         f"cases); got {p['weight_scales']!r} and {p['weight_lr_ratios']!r}")
    return p


def matched_time_grid(etas, t_end: float) -> np.ndarray:
    """The sorted union of the times kη, k = 1 … t_end/η, over the step sizes η (rounded to 12 decimals)."""
    etas = as_real_array(etas, "etas", ndim=1)
    t_end = as_positive_float(t_end, "t_end")
    if etas.size == 0 or np.any(etas <= 0) or np.any(etas > t_end):
        raise ValueError(f"etas must be a non-empty list of step sizes in (0, t_end = {t_end:g}]; got {etas.tolist()}")
    check_memory(8.0 * 2 * float(np.sum(np.round(t_end / etas))), "matched_time_grid (t_end / eta times per eta)")
    return np.unique(np.round(np.concatenate([np.arange(1, round(t_end / e) + 1) * e for e in etas]), 12))


def induced_flow(net, X, targets, t_eval, weights) -> xr.Dataset:
    """The flow (4.5) induced by gradient descent on the layer biases: θ̇ = −Λ^-1 K Λ^-1 ∂C/∂θ with
    K = :func:`reluflow.theory.flows.induced_bias_kernel` of the layer ``weights``, solved exactly between events
    (:func:`reluflow.dynamics.solver.solve` with ``kernel=K``).
    """
    from reluflow.dynamics.solver import solve

    net = as_adapted_network(net)
    Ws = [as_real_array(w, f"weights[{l}] (layer {l + 1})", ndim=2) for l, w in enumerate(as_layer_list(weights,
                                                                                                      "weights"))]
    if len(Ws) != net.depth or Ws[0].shape[0] != net.width:
        raise ValueError(f"weights must be L = {net.depth} layers of shape ({net.width}, {net.width}) like net; "
                         f"got {len(Ws)} of shape {Ws[0].shape}")
    return solve(net, X, targets, t_eval, method="exact", kernel=induced_bias_kernel(weights))


def _validity_point(point, rng_seed, *, X, targets, lr, t_end, record_every):
    """One cell of the validity map (module level, so that a process pool can pickle it)."""
    ds = effective_comparison(two_cluster_network(point["depth"], point["weight_scale"]), X, targets,
                              weight_lr_ratio=point["weight_lr_ratio"], lr=lr, n_steps=round(t_end / lr),
                              record_every=record_every)
    worst = ds.adaptedness.max("layer").assign_attrs(
        long_name="non-adaptedness of the gradient-descent network (max over layers)", **_ONE)
    return ds.assign(adaptedness=worst).drop_vars(["layer", "step"])


def validity_map(X, targets, *, depths, weight_scales, weight_lr_ratios, lr: float, t_end: float,
                 record_every: int, seed: int, executor=None) -> xr.Dataset:
    """:func:`effective_comparison` of the scenario network over depth × weight scale × ρ (a :func:`sweep`).

    Returns the sweep Dataset over ``depth``, ``weight_scale``, ``weight_lr_ratio`` and ``time``, with the
    variables of :func:`effective_comparison` and ``adaptedness`` the largest non-adaptedness over the layers.
    """
    grid = {"depth": depths, "weight_scale": weight_scales, "weight_lr_ratio": weight_lr_ratios}
    func = partial(_validity_point, X=X, targets=targets, lr=lr, t_end=t_end, record_every=record_every)
    return sweep(func, grid, seed=seed, executor=executor, progress=False)


def holds_map(drift: xr.Dataset, tolerance: float):
    """(finished, map_error, holds): runs that completed, max_t |C_GD − C_eff|/C(0) (NaN where a run stopped),
    and where that error is within ``tolerance``."""
    finished = drift.completed.all("time")
    map_error = drift.cost_error.max("time").where(finished)
    return finished, map_error, (map_error <= tolerance) & finished


def validity_map_checks(drift, map_error, X, targets, *, lr, t_end, record_every, weight_lr_ratios, depths) -> dict:
    """The numbers behind the checks of the validity map.

    - ``rho0_worst``: one layer, ρ = 0, the largest difference between the two runs (None without depth 1);
    - ``scale_gap``: one layer, max_t |C_{s=2}(t) − C_{s=1}(t/4)| (multiplying (W, b) by s only changes the
      clock t → t/s²), 50 steps;
    - ``grows`` (per depth) and ``adaptedness`` (per depth and ρ ∈ {ρ_1, ρ_max}): at s = 1 the drift from the
      adapted form grows with ρ;
    - ``ref_point``, ``e_full``, ``e_half``: the map's error at (L = max depth, s = 1, the middle ρ) at step η
      and η/2.
    """
    out = {"rho0_worst": None}
    if 1 in depths:
        one = drift.sel(depth=1, weight_lr_ratio=0.0)
        out["rho0_worst"] = float(np.nanmax([one.cost_error.max(), one.threshold_error.max(),
                                             one.adaptedness.max()]))
    a = effective_comparison(two_cluster_network(1, 2.0), X, targets, weight_lr_ratio=1.0, lr=lr, n_steps=50)
    b = effective_comparison(two_cluster_network(1, 1.0), X, targets, weight_lr_ratio=1.0, lr=lr / 4, n_steps=50)
    out["scale_gap"] = float(np.abs(a.cost_gd - b.cost_gd.values).max())
    at1 = drift.sel(weight_scale=1.0)
    out["grows"] = [bool(at1.adaptedness.sel(depth=d).max("time")[-1] > at1.adaptedness.sel(depth=d).max("time")[1])
                    for d in depths]
    out["adaptedness"] = {(d, r): float(at1.adaptedness.sel(depth=d, weight_lr_ratio=r).max())
                          for d in depths for r in (weight_lr_ratios[1], weight_lr_ratios[-1])}
    ref = dict(depth=max(depths), weight_scale=1.0, weight_lr_ratio=weight_lr_ratios[len(weight_lr_ratios) // 2])
    half = effective_comparison(two_cluster_network(ref["depth"], 1.0), X, targets,
                                weight_lr_ratio=ref["weight_lr_ratio"], lr=lr / 2,
                                n_steps=2 * round(t_end / lr), record_every=2 * record_every)
    out.update(ref_point=ref, e_full=float(map_error.sel(**ref)), e_half=float(half.cost_error.max()))
    return out


def one_layer_descent_convergence(X, targets, *, t_end: float, etas=None):
    """(errors, slope, n_fitted): one layer of the scenario, gradient descent on the layer parameters (mode
    ``"full"``, ρ = 0) with each step η against the exact bias flow (4.2) of :func:`reluflow.dynamics.solver.solve`.

    For one layer and ρ = 0 the unconstrained runs of the map and the discretised effective flow do the same
    arithmetic; this is the check that can fail: the descent and the exact event-driven solution are computed
    differently, and max_{kη ≤ t_end} |θ_GD(kη) − θ(kη)| must shrink like η. ``errors`` has one entry per η (in the
    order given, default :func:`one_layer_etas` of ``t_end``; each must divide ``t_end``); ``slope`` is the
    least-squares slope of log error against log η over the ``n_fitted`` smallest η whose runs meet no
    truncation event that the finest run misses (:func:`reluflow.training.comparison.asymptotic_slope`; NaN if
    fewer than 3; expected interval :data:`ONE_LAYER_SLOPE`).
    """
    from reluflow.dynamics.solver import solve
    from reluflow.theory.network import layer_parameters
    from reluflow.training.comparison import asymptotic_slope, gd_convergence

    t_end = as_positive_float(t_end, "t_end")
    net = two_cluster_network(1)
    X = as_points(X, "X", dim=net.width)
    etas = one_layer_etas(t_end) if etas is None else as_real_array(etas, "etas", ndim=1)
    grid = matched_time_grid(etas, t_end)  # validates etas: non-empty, in (0, t_end]
    if etas.size < 3:
        raise ValueError(f"etas must hold at least 3 step sizes (the slope is fitted over 3 or more); got "
                         f"{etas.tolist()}")
    for e in etas:
        if not _whole_steps(t_end, e):
            raise ValueError(f"t_end must be a whole number of steps of every eta in etas; got t_end={t_end!r}, "
                             f"eta={e!r}")
    flow = solve(net, X, targets, grid, method="exact", record_events=False)
    weights, biases = layer_parameters(*net.cumulative_parameters())
    conv = gd_convergence(weights, biases, X, targets, flow, etas=etas, t_end=t_end, mode="full", weight_lr_ratio=0.0)
    errors = conv.threshold_error.values[0]
    slope, n_fitted = asymptotic_slope(conv.eta.values, errors, conv.events_matched.values)
    return errors, slope, n_fitted


def validity_summary(holds, map_error, drift, *, weight_lr_ratios, weight_scales, depths) -> list[str]:
    """The validity map in words, one line per depth and weight scale: the ρ at which the effective equations hold.

    Each line is read off ``holds`` (depth × weight_scale × weight_lr_ratio) and ``map_error``; a further line per
    depth gives the ρ at which they hold at every scale, those at which they fail at every scale, and, at s = 1 and
    the largest ρ, the largest truncation-count mismatch (fraction of N) and the non-adaptedness at the end.
    """
    lines = []
    for d in depths:
        h = holds.sel(depth=d)
        for s in weight_scales:
            ok = [r for r in weight_lr_ratios if bool(h.sel(weight_scale=s, weight_lr_ratio=r))]
            worst = float(map_error.sel(depth=d, weight_scale=s).max())
            lines.append(f"L = {d}, s = {s:g}: holds for rho in {ok if ok else 'none'} (largest error {worst:.2g})")
        every = [r for r in weight_lr_ratios if bool(h.sel(weight_lr_ratio=r).all())]
        never = [r for r in weight_lr_ratios if not bool(h.sel(weight_lr_ratio=r).any())]
        end = drift.sel(depth=d, weight_scale=1.0, weight_lr_ratio=weight_lr_ratios[-1])
        lines.append(f"L = {d}: holds at every s for rho in {every}; fails at every s for rho in {never}; at s = 1, "
                     f"rho = {weight_lr_ratios[-1]:g}: counts differ by up to {float(end.count_error.max()):.2g} N, "
                     f"non-adaptedness {float(end.adaptedness.isel(time=-1)):.2g} at the end")
    return lines


def flow_vs_gd_result(part1, part2, drift, map_error, holds, *, slopes, holds_tolerance, induced_horizon,
                      bias_flow_events) -> xr.Dataset:
    """The result Dataset of notebook 06: the η-convergence tables (``eta_*`` over ``comparison`` and ``eta``),
    the sweep (over ``sweep_time``), ``map_cost_error``, ``holds`` and the three fitted slopes."""
    conv = xr.concat([part1.drop_vars("n_steps"), part2.drop_vars("n_steps")], dim="reference", data_vars="all",
                     coords="different", compat="equals", join="outer")
    conv = conv.assign_coords(comparison=("reference", ["cumulative biases vs bias flow",
                                                        "layer biases vs induced flow", "layer biases vs bias flow"]))
    conv = conv.swap_dims(reference="comparison").drop_vars("reference")
    conv["n_steps"] = part1.n_steps
    conv = conv.rename({v: f"eta_{v}" for v in conv.data_vars})
    conv.attrs = {}
    result = xr.merge([conv, drift.rename(time="sweep_time")], combine_attrs="override")
    result["map_cost_error"] = map_error.assign_attrs(long_name="max over t of |C_GD - C_eff| / C(0) (NaN: stopped)",
                                                      **_ONE)
    result["holds"] = holds.astype(np.int8).assign_attrs(long_name=f"1 where map_cost_error <= {holds_tolerance:g}",
                                                         **_ONE)
    result["fitted_slope"] = xr.DataArray(list(slopes), dims="comparison", attrs={
        "long_name": "least-squares slope of log threshold_error vs log eta", **_ONE})
    result["sweep_time"].attrs.update(long_name="time t = k eta of the unconstrained runs", units="1")
    names = {"depth": "number of hidden layers L", "weight_scale": "initial weight scale s",
             "weight_lr_ratio": "weight-to-bias step ratio rho"}
    for name, long_name in names.items():
        result[name].attrs.update(units="1", long_name=long_name)
    result.attrs = {"induced_flow_horizon": induced_horizon, "bias_flow_events": int(bias_flow_events)}
    return result


# ------------------------------------------------------------------------------------------- notebook 07


def spectral_gap_parameters(*, seed, wide_width, wide_depth, wide_points, wide_outputs, wide_lr, wide_steps,
                            n_per_cluster, t_end, n_times, n_instances, instance_points, instance_width) -> dict:
    """The parameters of notebook 07, validated (a bad value raises with a message naming the parameter)."""
    ints = dict(wide_width=1, wide_depth=1, wide_points=1, wide_outputs=1, wide_steps=1, n_per_cluster=2,
                n_times=2, n_instances=1, instance_points=2, instance_width=1)
    given = dict(wide_width=wide_width, wide_depth=wide_depth, wide_points=wide_points, wide_outputs=wide_outputs,
                 wide_steps=wide_steps, n_per_cluster=n_per_cluster, n_times=n_times, n_instances=n_instances,
                 instance_points=instance_points, instance_width=instance_width)
    p = {name: check.check_int(given[name], name, minimum=minimum) for name, minimum in ints.items()}
    p.update(wide_lr=check.check_float(wide_lr, "wide_lr", positive=True),
             t_end=check.check_float(t_end, "t_end", positive=True))
    order = ("wide_width", "wide_depth", "wide_points", "wide_outputs", "wide_lr", "wide_steps", "n_per_cluster",
             "t_end", "n_times", "n_instances", "instance_points", "instance_width")
    return {"seed": check.check_seed(seed), **{name: p[name] for name in order}}


def overparametrised_descent(width: int, depth: int, n_points: int, n_outputs: int, *, lr: float, n_steps: int,
                             seed):
    """(trajectory, X, Y): gradient descent on all parameters (mode ``"full"``, terminal layer trained, output cost)
    of a random network with biases shifted by +0.5 (most units active), from random data; every step recorded."""
    width = check_size(width, "width")
    check_memory(8.0 * 8 * width * width, f"width = {width}")
    depth = check_size(depth, "depth", bytes_per_unit=8.0 * 8 * width * (width + 2))
    n_points = check_size(n_points, "n_points", bytes_per_unit=8.0 * 4 * width)
    n_outputs = check_size(n_outputs, "n_outputs", bytes_per_unit=8.0 * 4 * (width + n_points))
    rng = np.random.default_rng(seed)
    weights, biases = random_network(width, depth, seed=rng)
    biases = [b + 0.5 for b in biases]
    W_out = rng.standard_normal((n_outputs, width)) / np.sqrt(width)
    X = rng.standard_normal((n_points, width))
    Y = rng.standard_normal((n_points, n_outputs))
    run = train(weights, biases, X, Y, mode="full", cost="output", lr=lr, weight_lr_ratio=1.0, n_steps=n_steps,
                record_every=1, W_out=W_out, b_out=np.zeros(n_outputs), train_terminal=True, progress=False)
    return run, X, Y


def sampled_gram_eigenvalues(trajectory, X, every: int) -> np.ndarray:
    """Eigenvalues of D Dᵀ (ascending) at every ``every``-th recorded time of a :func:`reluflow.train` run."""
    as_dataset(trajectory, "trajectory", ("cumulative_weights",))
    every = check_positive_int(every, "every")
    return np.stack([gram_eigenvalues(flow_jacobian(trajectory, X, index=s))
                     for s in range(0, trajectory.sizes["time"], every)])


def spectral_scenario(n_per_cluster: int, seed):
    """(net, X, Y) of notebook 07: one adapted layer in R³ (a rotated frame, λ = (1, 1.4, 0.8)), a cluster whose
    target lies beyond it in every coordinate and a smaller second cluster that two thresholds also reach."""
    from scipy.spatial.transform import Rotation

    n_per_cluster = check_size(n_per_cluster, "n_per_cluster")

    R = Rotation.from_euler("zyx", [30.0, -20.0, 45.0], degrees=True).as_matrix()
    data = clustered_data([[0.0, 0.0, 0.0], [2.0, 2.0, 2.5]], [1.0, 0.6],
                          [n_per_cluster, max(1, n_per_cluster // 2)], seed=seed)
    Y = targets_by_label(np.array([[1.8, 2.2, 1.5], [3.0, 2.5, 2.6]]) @ R, data.labels)
    return adapted_network([R], [[1.0, 1.4, 0.8]], [[-0.4, -0.2, 0.0]]), data.points, Y


def random_instances(n_instances: int, width: int, n_points: int, times, seed) -> list:
    """[(solution, spectrum, net, X, Y)]: random one-layer adapted networks and two random clusters (X) with random
    targets (Y), the exact bias flow at ``times`` and :func:`spectral_trajectory` along it; instance i uses child i
    of ``seed``."""
    from reluflow.dynamics.solver import solve

    n_instances = check_size(n_instances, "n_instances", minimum=1, bytes_per_unit=1.0)
    if n_instances > 10_000:
        raise ValueError(f"n_instances must be at most 10000 (each one solves a flow); got {n_instances}")
    width = check_size(width, "width")
    check_memory(8.0 * 8 * width * width, f"width = {width}")
    n_points = check_size(n_points, "n_points", minimum=2, bytes_per_unit=8.0 * 8 * width)
    times = as_times(times, "times")
    out = []
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    for child in root.spawn(n_instances):
        r = np.random.default_rng(child)
        net = random_adapted_network(width, 1, seed=r, threshold_scale=0.5)
        data = clustered_data(r.normal(size=(2, width)), 0.8, n_points // 2, seed=r)
        Y = targets_by_label(r.normal(size=(2, width)) + 1.0, data.labels)
        sol = solve(net, data.points, Y, times, method="exact", record_events=False)
        out.append((sol, spectral_trajectory(sol, data.points, Y, net=net), net, data.points, Y))
    return out


def eigenvalue_identity_error(spec) -> float:
    """max |sorted nonzero eigenvalues of D Dᵀ − sorted n_k/λ_k²| / max n_k/λ_k² (all L·M of them, zeros included)."""
    rates = np.sort(spec.bias_flow_rates.values.reshape(spec.sizes["time"], -1), axis=1)
    eig = spec.gram_eigenvalues.values[:, -rates.shape[1]:]  # ascending: the L·M largest
    return float(np.abs(eig - rates).max() / rates.max())


def gap_identity_error(items) -> float:
    """max over (spectrum, net) and times with D ≠ 0 of |λ_min⁺ − min_{k: n_k > 0} n_k/λ_k²| / λ_min⁺ (one layer)."""
    return max(abs(float(s.lambda_min_plus[i]) - bias_flow_gap(n.scales[0], s.n_truncated.values[i, 0]))
               / float(s.lambda_min_plus[i]) for s, n in items for i in range(s.sizes["time"])
               if s.gram_rank.values[i] > 0)


def between_event_decay(items) -> dict:
    """The *tie-convention* statement of the truncation regime, as first written (it is false while a threshold rests).

    ``items`` are (solution, spectrum) pairs (:func:`spectral_trajectory` builds D with the tie convention: a
    point on its threshold counts as truncated). For consecutive times t1 < t2 with that pattern unchanged and
    D ≠ 0, the statement said |r_range(t2)| ≤ e^{−λ_min⁺(t2 − t1)/N} |r_range(t1)| and r_⊥ constant. Returns
    ``drift`` (largest change of r_⊥), ``slack`` (largest (|r_range(t2)| − bound)/|r_range(t1)|, > 0 where the
    statement fails), ``pairs``, and ``resting_pairs`` / ``resting_slack``: the pairs at which a point sits on a
    threshold (``sliding`` flagged by the solver, or a threshold equal to a point) and the largest slack there.
    The corrected statement is :func:`reluflow.training.spectral.active_set_decay`.
    """
    drifts, slacks, rest_slacks, rest_pairs, pairs = [], [], [], 0, 0
    for sol, sp in items:
        same = np.isfinite(sp.orthogonal_drift.values)  # pattern unchanged since the previous sampled time
        drifts.append(np.nanmax(sp.orthogonal_drift.values, initial=0.0))
        sliding = sol.sliding.values.reshape(sol.sizes["time"], -1).any(axis=1)
        rr, lp, t = sp.residual_range_norm.values, sp.lambda_min_plus.values, sp.time.values
        ok = same[1:] & np.isfinite(lp[:-1])  # D = 0: nothing to decay
        pairs += int(ok.sum())
        bound = np.exp(-np.nan_to_num(lp[:-1]) * np.diff(t) / sp.attrs["n_points"]) * rr[:-1]
        slack = (rr[1:] - bound) / np.maximum(rr[:-1], 1e-300)
        slacks.append(np.max(slack[ok], initial=-np.inf))
        rest = ok & (sliding[1:] | sliding[:-1])
        rest_pairs += int(rest.sum())
        rest_slacks.append(np.max(slack[rest], initial=-np.inf))
    return {"drift": float(max(drifts)), "slack": float(max(slacks)), "pairs": pairs, "resting_pairs": rest_pairs,
            "resting_slack": float(max(rest_slacks))}


def resting_counterexample():
    """(net, X, Y, times): a hand-made one-layer problem in R² where both thresholds come to rest on a point.

    Identity frame, λ = (1, 1), θ(0) = (−0.5, 0.5); three points u = (−1, 0), (0, 1), (1, −1) with per-point
    targets (3, −1), (−10, 0), (0, −1.5). Coordinate 0: θ_0 rises from −0.5 to the second point at u = 0 (at
    t = 3 log(7/6)), where the field pushes back from both sides (with it: −(0 − 3) − (0 + 10) < 0; without
    it: 3 > 0): θ_0 slides, resting at 0. Coordinate 1: θ_1 falls, releases the first point at u = 0 and then
    the third at u = −1 (at t = 1.5 log 1.4 + 3 log 3), after which no point is truncated: θ_1 rests at −1.
    """
    net = adapted_network([np.eye(2)], [[1.0, 1.0]], [[-0.5, 0.5]])
    X = np.array([[-1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    Y = np.array([[3.0, -1.0], [-10.0, 0.0], [0.0, -1.5]])
    return net, X, Y, np.linspace(0.05, 6.0, 120)


def bias_jacobian_by_differences(net, X, *, step: float = 1e-6) -> np.ndarray:
    """∂x^(τ,1)/∂b by central differences of a plain forward pass, x^(τ,1) = W^-1 (σ(W x + b) − b).

    Independent of :func:`reluflow.training.spectral.truncated_bias_jacobian`: W = ΛR and b = −Λθ of the one-layer
    ``net``, σ = ReLU, and (f(b + h e_k) − f(b − h e_k))/(2h) column by column. Exact up to round-off when no
    point lies within ``step``·max|W| of a kink. Returns shape (N·M, M), rows point-major.
    """
    net = as_adapted_network(net)
    if net.depth != 1:
        raise ValueError(f"net must have one layer; got L = {net.depth}")
    X = as_points(X, "X", dim=net.width)
    step = as_positive_float(step, "step")
    W = net.scales[0][:, None] * net.frames[0]
    b0 = -net.scales[0] * net.thresholds[0]
    Winv = np.linalg.inv(W)

    def f(b):
        return ((np.maximum(X @ W.T + b, 0.0) - b) @ Winv.T).ravel()

    E = np.eye(net.width) * step
    return np.stack([(f(b0 + e) - f(b0 - e)) / (2 * step) for e in E], axis=1)


def kink_margin(net, X) -> float:
    """min over points and coordinates of |(W x + b)_k| for the one-layer ``net``: the distance to a kink of σ."""
    net = as_adapted_network(net)
    if net.depth != 1:
        raise ValueError(f"net must have one layer; got L = {net.depth}")
    X = as_points(X, "X", dim=net.width)
    W = net.scales[0][:, None] * net.frames[0]
    return float(np.abs(X @ W.T - net.scales[0] * net.thresholds[0]).min())


def jacobian_difference_error(items, X_of, *, step: float = 1e-6, margin: float = 1e-3) -> tuple[float, int]:
    """(worst relative error, times compared): D of :func:`reluflow.training.spectral.truncated_bias_jacobian`
    against :func:`bias_jacobian_by_differences` at every recorded time of one-layer solutions.

    ``items`` are (solution, net) pairs and ``X_of`` the list of their data matrices; times at which a point
    lies within ``margin`` of a kink (:func:`kink_margin`) are skipped. The error is
    max |D − D_fd| / max(max |D|, 1) over the compared times.
    """
    import dataclasses

    from reluflow.training.spectral import truncated_bias_jacobian

    step = as_positive_float(step, "step")
    margin = as_positive_float(margin, "margin")
    if margin <= 2 * step:
        raise ValueError(f"margin must exceed 2*step = {2 * step:g} (no kink within a difference step); got {margin!r}")
    worst, n = 0.0, 0
    for (sol, net), X in zip(items, X_of, strict=True):
        as_dataset(sol, "solution", ("thresholds",))
        net = as_adapted_network(net)
        X = as_points(X, "X", dim=net.width)
        for theta in sol.thresholds.values:
            net_t = dataclasses.replace(net, thresholds=theta)
            if kink_margin(net_t, X) <= margin:
                continue
            D = truncated_bias_jacobian(*net_t.cumulative_parameters(), X)
            worst = max(worst, float(np.abs(D - bias_jacobian_by_differences(net_t, X, step=step)).max())
                        / max(float(np.abs(D).max()), 1.0))
            n += 1
    return worst, n


def terminal_hadamard_spectra(solution, net, X, W_out):
    """(T, U): along the thresholds of a one-layer solution, the eigenvalues (descending) of (TᵀT) ⊙ (W_outᵀ W_out)
    (:func:`bias_flow_parameter_gram`) and of (UᵀU) ⊙ (W_outᵀ W_out), U = 1 − T, T the truncation indicators."""
    as_dataset(solution, "solution", ("thresholds",))
    net = as_adapted_network(net)
    if net.depth != 1:
        raise ValueError(f"net must have one layer; got L = {net.depth}")
    X = as_points(X, "X", dim=net.width)
    W_out = as_terminal_weights(W_out, net.width)
    metric = W_out.T @ W_out
    Wc, _ = net.cumulative_parameters()
    hadamard_T, hadamard_U = [], []
    for theta in solution.thresholds.values[:, 0]:
        b = -net.scales[0] * theta
        T = (X @ Wc[0].T + b <= 0.0).astype(float)
        hadamard_T.append(np.sort(np.linalg.eigvalsh(bias_flow_parameter_gram(Wc[0], b, X, W_out=W_out)))[::-1])
        hadamard_U.append(np.sort(np.linalg.eigvalsh(((1 - T).T @ (1 - T)) * metric))[::-1])
    return np.array(hadamard_T), np.array(hadamard_U)


def largest_eigenvalues(spec, k: int) -> np.ndarray:
    """The ``k`` largest eigenvalues of D Dᵀ at every time of a :func:`spectral_trajectory` Dataset, descending."""
    return spec.gram_eigenvalues.values[:, ::-1][:, :k]


def spectral_gap_result(wide_spec, wide_eigs, every, spec, spec_cum, spec_lay, sol, instance_errors) -> xr.Dataset:
    """The result Dataset of notebook 07 (its variable names are the notebook's own: ``wide_*`` for part 1, the
    one-layer spectrum over ``time``, ``terminal_eigenvalues`` and ``instance_identity_error``)."""
    K = spec.sizes["coordinate"] * spec.sizes["layer"]
    data = {
        "wide_cost": (("wide_time",), wide_spec.cost.values,
                      {"long_name": "cost C(t), over-parametrised network", **_ONE}),
        "wide_cost_bound": (("wide_time",), wide_spec.cost_bound.values,
                            {"long_name": "C(0) exp(-2 lambda t/N), lambda the running min of lambda_min", **_ONE}),
        "wide_lambda_min": (("wide_time",), wide_spec.lambda_min.values, {"long_name": "lambda_min(D D^T)", **_ONE}),
        "wide_eigenvalues": (("wide_sample", "wide_mode"), wide_eigs,
                             {"long_name": "eigenvalues of D D^T at every sampled step (ascending)", **_ONE}),
        "gram_eigenvalues": (("time", "mode"), largest_eigenvalues(spec, K),
                             {"long_name": "nonzero eigenvalues of D D^T, one adapted layer, input cost", **_ONE}),
        "rates": (("time", "coordinate"), spec.bias_flow_rates.values[:, 0], {"long_name": "n_k / lambda_k^2", **_ONE}),
        "truncation_counts": (("time", "coordinate"), spec.n_truncated.values[:, 0],
                              {"long_name": "number n_k of truncated points", **_ONE}),
        "lambda_min_plus": (("time",), spec.lambda_min_plus.values,
                            {"long_name": "smallest nonzero eigenvalue", **_ONE}),
        "residual_range_norm": (("time",), spec.residual_range_norm.values, {"long_name": "|r in range(D)|", **_ONE}),
        "residual_orthogonal_norm": (("time",), spec.residual_orthogonal_norm.values,
                                     {"long_name": "|r orthogonal to range(D)|", **_ONE}),
        "cost": (("time",), spec.cost.values, {"long_name": "input-layer cost C_in", **_ONE}),
        "event_time": (("event",), sol.event_time.values, {"long_name": "truncation event times", **_ONE}),
        "terminal_eigenvalues": (("terminal", "time", "mode"),
                                 np.stack([largest_eigenvalues(s, K) for s in (spec, spec_cum, spec_lay)]),
                                 {"long_name": "nonzero eigenvalues of D D^T under each convention", **_ONE}),
        "instance_identity_error": (("instance",), np.asarray(instance_errors, dtype=float),
                                    {"long_name": "max relative error of eigenvalues vs n_k/lambda_k^2", **_ONE}),
    }
    coords = {
        "wide_time": ("wide_time", wide_spec.time.values, {"long_name": "time t = k eta (part 1)", **_ONE}),
        "wide_sample": ("wide_sample", wide_spec.time.values[::every], {"long_name": "sampled time (part 1)", **_ONE}),
        "wide_mode": ("wide_mode", np.arange(wide_eigs.shape[1]), {"long_name": "eigenvalue index", **_ONE}),
        "time": ("time", spec.time.values, {"long_name": "flow time t (parts 2-4)", **_ONE}),
        "mode": ("mode", np.arange(K), {"long_name": "eigenvalue index (descending)", **_ONE}),
        "coordinate": ("coordinate", np.arange(spec.sizes["coordinate"]),
                       {"long_name": "activation coordinate k (0-based)", **_ONE}),
        "event": ("event", np.arange(sol.sizes["event"]), {"long_name": "event index", **_ONE}),
        "terminal": ("terminal", ["input cost", "output cost, cumulative terminal fixed",
                                  "output cost, layer terminal fixed"]),
        "instance": ("instance", np.arange(len(instance_errors)), {"long_name": "random instance", **_ONE}),
    }
    return xr.Dataset(data, coords=coords)


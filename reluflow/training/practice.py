"""The truncation picture in ordinary training: generic networks, standard costs, SGD, real data (notebook 10).

One run (:func:`real_run`) trains a He-initialised ReLU network d0 → d1 → … → dL → Q on a bundled dataset
(:func:`reluflow.theory.realdata.load_split`) with the project's engine (:func:`reluflow.train`, mode
``"full"``, the terminal layer trained), by full-batch gradient descent or seeded mini-batch SGD, for the squared
error on one-hot targets or the softmax cross-entropy, and records the monitor's quantities
(:func:`reluflow.monitor.from_trajectory`) at every recorded step. The measures of the five questions:

- progressive truncation: the truncated share of (point, unit) pairs per layer, N_eff(t)/N and dead units
  (from the monitor's Dataset);
- rate against count: ρ_S = Spearman's rank correlation, over the recorded intervals of one run, between the
  local rate r_s = −Δ log C / Δt and the total truncated count n(t) = Σ_{ℓ,k} n_{ℓ,k}(t) at the interval's start
  → :func:`rate_count_correlation`;
- adaptedness: ‖offdiag(W^(ℓ) W^(ℓ)ᵀ)‖_F / ‖diag(W^(ℓ) W^(ℓ)ᵀ)‖_F of the cumulative weights W^(ℓ) = W_ℓ ⋯ W_1,
  at the start and the end (:func:`reluflow.rectangular_adaptedness`);
- collapse through truncation: with z_i the pre-activations of layer ℓ and μ_c their class means, the share of the
  within-class variability Σ_i |z_i − μ_{c(i)}|² carried by truncated entries (z_ik ≤ 0), which the ReLU removes:
  s_ℓ = Σ_{(i,k): z_ik ≤ 0} (z_ik − μ_{c(i),k})² / Σ_{i,k} (z_ik − μ_{c(i),k})²  → :func:`truncated_variability_share`;
- the bias flow from a checkpoint: weights frozen at a recorded state, gradient descent on the biases
  (:func:`reluflow.train` mode ``"biases"``) against the induced bias flow ḃ_ℓ = −∂C/∂b_ℓ (THEORY.md §4.5)
  integrated by :func:`scipy.integrate.solve_ivp` → :func:`bias_flow_prediction`.

Every random choice derives from the run's ``seed`` (the split, the initialisation, the batch order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.theory.generic import general_cumulative_parameters, rectangular_adaptedness
from reluflow.theory.network import forward
from reluflow.theory.realdata import DataSplit
from reluflow.training import monitor
from reluflow.validation import as_positive_float, check_positive_int

__all__ = ["COSTS", "RealRun", "real_run", "study", "finding_lines", "rate_count_correlation",
           "truncated_variability_share", "bias_flow_prediction", "mean_interval"]

#: The two standard costs of the runs.
COSTS = ("squared", "cross_entropy")


@dataclass(frozen=True, repr=False)
class RealRun:
    """One training run: its settings, the engine's trajectory, the monitor's record and summary numbers."""

    dataset: str
    cost: str
    batch_size: int | None
    seed: int
    trajectory: xr.Dataset
    record: xr.Dataset
    train_accuracy: float
    test_accuracy: float
    adaptedness_start: np.ndarray  # (L,)
    adaptedness_end: np.ndarray  # (L,)
    share_start: np.ndarray  # (L,) truncated share of the within-class variability at the start
    share_end: np.ndarray  # (L,)

    def __repr__(self) -> str:
        opt = "full batch" if self.batch_size is None else f"SGD, batches of {self.batch_size}"
        return (f"<RealRun {self.dataset}, {self.cost}, {opt}, seed {self.seed}: test accuracy "
                f"{self.test_accuracy:.3f}>")


def _parameters_at(trajectory, index):
    return monitor.trajectory_parameters(trajectory.isel(time=[index]))[0]


def _accuracy(params, X, y):
    weights, biases, W_out, b_out = params
    h = forward(weights, biases, X)[-1]
    return float(np.mean((h @ W_out.T + b_out).argmax(axis=1) == y))


def truncated_variability_share(weights, biases, X, labels) -> np.ndarray:
    """s_ℓ = Σ_{z_ik ≤ 0} (z_ik − μ_{c(i),k})² / Σ_{i,k} (z_ik − μ_{c(i),k})² for the pre-activations z of each layer.

    The share of layer ℓ's within-class variability (of its pre-activations) that sits in truncated entries, which
    σ maps to 0. Returns (L,); NaN for a layer with no within-class variability."""
    from reluflow.theory.collapse import class_means

    labels = np.asarray(labels)
    out, h = [], np.asarray(X, dtype=float)
    for W, b in zip(weights, biases):
        z = h @ np.asarray(W).T + np.asarray(b)
        dev2 = (z - class_means(z, labels)[labels]) ** 2
        total = dev2.sum()
        out.append(float(dev2[z <= 0.0].sum() / total) if total > 0 else np.nan)
        h = np.maximum(z, 0.0)
    return np.array(out)


def real_run(split: DataSplit, *, hidden=(64, 64), cost: str = "cross_entropy", batch_size: int | None = None,
             seed: int = 0, lr: float = 0.05, n_steps: int = 1000, record_every: int = 20,
             momentum: float = 0.0) -> RealRun:
    """Train a He-initialised network on ``split`` with the project's engine and record the truncation picture.

    ``hidden`` are the hidden widths d1..dL; ``cost`` is ``"squared"`` (½|z − e_y|², one-hot targets) or
    ``"cross_entropy"``; ``batch_size`` None is full-batch descent, an integer B mini-batch SGD; ``seed`` seeds
    the initialisation and the batch order; ``lr`` is η for every parameter."""
    from reluflow.training.gd import train
    from reluflow.training.init import he_network

    if not isinstance(split, DataSplit):
        raise TypeError(f"split must be a DataSplit (reluflow.theory.realdata.load_split); got {type(split).__name__}")
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}; got {cost!r}")
    hidden = [check_positive_int(d, f"hidden[{i}]") for i, d in enumerate(hidden)]
    seed = check_positive_int(seed, "seed", minimum=0)
    lr = as_positive_float(lr, "lr")
    ss = np.random.SeedSequence(seed).spawn(2)
    Q = split.n_classes
    weights, biases, W_out, b_out = he_network([split.n_features, *hidden], Q, seed=np.random.default_rng(ss[0]))
    X, y = split.X_train, split.y_train
    targets = y if cost == "cross_entropy" else np.eye(Q)[y]
    engine_cost = "cross_entropy" if cost == "cross_entropy" else "output"
    traj = train(weights, biases, X, targets, mode="full", cost=engine_cost, lr=lr, n_steps=n_steps,
                 record_every=record_every, W_out=W_out, b_out=b_out, train_terminal=True,
                 batch_size=batch_size, momentum=momentum, seed=np.random.default_rng(ss[1]))
    if traj.attrs["status"] != 0:
        raise RuntimeError(f"training did not complete: {traj.attrs['message']}")
    record = monitor.from_trajectory(traj, X, y)
    first, last = _parameters_at(traj, 0), _parameters_at(traj, -1)
    ad = [rectangular_adaptedness(general_cumulative_parameters(p[0], p[1])[0]) for p in (first, last)]
    # the record's last state is the trained network evaluated on the training set: its accuracy is the train one
    return RealRun(split.name, cost, batch_size, seed, traj, record, float(record.accuracy.values[-1]),
                   _accuracy(last, split.X_test, split.y_test), np.asarray(ad[0], float), np.asarray(ad[1], float),
                   truncated_variability_share(first[0], first[1], X, y),
                   truncated_variability_share(last[0], last[1], X, y))


def rate_count_correlation(run: RealRun) -> float:
    """Spearman's ρ between r_s = −Δ log C/Δt over the recorded intervals and the truncated count n(t_s) at their
    start; NaN if fewer than 3 intervals have a positive cost on both ends."""
    from scipy.stats import spearmanr

    C, t = run.trajectory.cost.values, run.trajectory.time.values
    n = run.record.n_truncated.values.clip(min=0).sum(axis=(1, 2))
    ok = (C[:-1] > 0) & (C[1:] > 0)
    if ok.sum() < 3:
        return float("nan")
    rate = -(np.log(C[1:][ok]) - np.log(C[:-1][ok])) / np.diff(t)[ok]
    if np.ptp(n[:-1][ok]) == 0 or np.ptp(rate) == 0:
        return float("nan")
    return float(spearmanr(rate, n[:-1][ok]).statistic)


def bias_flow_prediction(run: RealRun, split: DataSplit, *, checkpoint: int | None = None, horizon: float = 1.0,
                         lrs=(0.05, 0.005), rtol: float = 1e-7, atol: float = 1e-10) -> dict:
    """From a recorded state of ``run`` with every weight frozen: gradient descent on the hidden and output biases
    for time ``horizon`` at each step size in ``lrs``, against ḃ = −∇_b C integrated by solve_ivp (RK45).

    Returns ``{"lr": array, "relative_error": array}``: |b_GD(T) − b_flow(T)| / |b_flow(T) − b(0)| at T =
    ``horizon`` (the error relative to how far the biases moved), one entry per step size, and ``moved``,
    |b_flow(T) − b(0)|. The default checkpoint is the middle recorded state (training still under way)."""
    from scipy.integrate import solve_ivp

    from reluflow.training.gd import backprop_gradient, train

    if checkpoint is None:
        checkpoint = run.trajectory.sizes["time"] // 2
    weights, biases, W_out, b_out = _parameters_at(run.trajectory, checkpoint)
    X, y = split.X_train, split.y_train
    Q = W_out.shape[0]
    cost = "cross_entropy" if run.cost == "cross_entropy" else "output"
    targets = y if cost == "cross_entropy" else np.eye(Q)[y]
    sizes = [b.size for b in biases] + [Q]

    def unpack(v):
        parts = np.split(v, np.cumsum(sizes)[:-1])
        return parts[:-1], parts[-1]

    def rhs(_t, v):
        bs, bo = unpack(v)
        g = backprop_gradient(weights, bs, X, targets, cost=cost, W_out=W_out, b_out=bo, max_condition=np.inf)
        return -np.concatenate([*(np.asarray(gb) for gb in g.biases), g.b_out])

    b0 = np.concatenate([*biases, b_out])
    sol = solve_ivp(rhs, (0.0, horizon), b0, method="RK45", rtol=rtol, atol=atol)
    if sol.status != 0:
        raise RuntimeError(f"solve_ivp failed on the bias flow: {sol.message}")
    b_flow = sol.y[:, -1]
    moved = float(np.linalg.norm(b_flow - b0))
    errors = []
    for lr in lrs:
        n_steps = max(1, int(round(horizon / lr)))
        ds = train(weights, biases, X, targets, mode="biases", cost=cost, lr=horizon / n_steps, n_steps=n_steps,
                   record_every=n_steps, W_out=W_out, b_out=b_out, train_terminal=True, max_condition=np.inf)
        end = _parameters_at(ds, -1)
        b_gd = np.concatenate([*end[1], end[3]])
        errors.append(float(np.linalg.norm(b_gd - b_flow) / moved) if moved > 0 else np.nan)
    return {"lr": np.asarray(lrs, float), "relative_error": np.asarray(errors), "moved": moved}


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds with its 95 % Student-t interval mean ± t_{0.975, n−1}·sd/√n (NaNs
    dropped); the interval is (mean, mean) for one value."""
    from scipy.stats import t as student

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    m = float(v.mean())
    if v.size == 1:
        return m, m, m
    half = float(student.ppf(0.975, v.size - 1)) * float(v.std(ddof=1)) / np.sqrt(v.size)
    return m, m - half, m + half


def _setting_name(cost, batch_size):
    return f"{cost}, " + ("full batch" if batch_size is None else f"SGD B={batch_size}")


def study(split: DataSplit, *, seeds, hidden, n_steps: int, lr: float, batch_size: int, record_every: int,
          horizon: float = 1.0, flow_lrs=(0.05, 0.005), progress=None) -> tuple[xr.Dataset, dict]:
    """The five questions on one dataset: every cost × (full batch, SGD with ``batch_size``) × seed, one
    :func:`real_run` each. Returns the per-run numbers as a Dataset over (setting, seed[, layer][, flow_lr]) and
    the runs themselves, keyed by (setting name, seed). The bias-flow prediction (:func:`bias_flow_prediction`,
    from the last recorded state) is made for the full-batch runs."""
    seeds = [check_positive_int(s, "seeds[i]", minimum=0) for s in seeds]
    settings = [(c, b) for c in COSTS for b in (None, check_positive_int(batch_size, "batch_size"))]
    names = [_setting_name(c, b) for c, b in settings]
    L = len(hidden)
    per = {k: np.full((len(settings), len(seeds)), np.nan) for k in
           ("train_accuracy", "test_accuracy", "rate_count_correlation", "effective_fraction_end",
            "frozen_fraction_end", "cost_start", "cost_end")}
    lay = {k: np.full((len(settings), len(seeds), L), np.nan) for k in
           ("truncated_share_start", "truncated_share_end", "dead_units_end", "adaptedness_start", "adaptedness_end",
            "variability_share_start", "variability_share_end", "nc1_start", "nc1_end")}
    flow = np.full((len(settings), len(seeds), len(flow_lrs)), np.nan)
    runs = {}
    plan = [(i, j) for i in range(len(settings)) for j in range(len(seeds))]
    if progress:  # a bar for interactive use; quiet by default (papermill, tests)
        from tqdm.auto import tqdm
        plan = tqdm(plan, desc=f"{split.name} runs")
    for i, j in plan:
        cost, b = settings[i]
        r = real_run(split, hidden=hidden, cost=cost, batch_size=b, seed=seeds[j], lr=lr, n_steps=n_steps,
                     record_every=record_every)
        runs[(names[i], seeds[j])] = r
        rec, N = r.record, r.record.sizes["point"]
        widths = rec.layer_width.values
        share = rec.n_truncated.values.clip(min=0).sum(axis=2) / (N * widths)
        per["train_accuracy"][i, j], per["test_accuracy"][i, j] = r.train_accuracy, r.test_accuracy
        per["rate_count_correlation"][i, j] = rate_count_correlation(r)
        per["effective_fraction_end"][i, j] = rec.n_effective.values[-1] / N
        per["frozen_fraction_end"][i, j] = np.mean(rec.frozen_layer.values[-1] > 0)
        per["cost_start"][i, j], per["cost_end"][i, j] = r.trajectory.cost.values[[0, -1]]
        lay["truncated_share_start"][i, j], lay["truncated_share_end"][i, j] = share[0], share[-1]
        lay["dead_units_end"][i, j] = rec.dead_units.values[-1] / widths
        lay["adaptedness_start"][i, j], lay["adaptedness_end"][i, j] = r.adaptedness_start, r.adaptedness_end
        lay["variability_share_start"][i, j], lay["variability_share_end"][i, j] = r.share_start, r.share_end
        lay["nc1_start"][i, j], lay["nc1_end"][i, j] = rec.nc1.values[0], rec.nc1.values[-1]
        if b is None:
            flow[i, j] = bias_flow_prediction(r, split, horizon=horizon, lrs=flow_lrs)["relative_error"]
    long = {
        "train_accuracy": "training accuracy at the end", "test_accuracy": "test accuracy at the end",
        "rate_count_correlation": "Spearman rho of -dlogC/dt against the truncated count, over the run",
        "effective_fraction_end": "N_eff/N at the end", "frozen_fraction_end": "fraction of points frozen out, end",
        "cost_start": "cost at step 0", "cost_end": "cost at the end",
        "truncated_share_start": "share of (point, unit) pairs truncated at step 0",
        "truncated_share_end": "share of (point, unit) pairs truncated at the end",
        "dead_units_end": "fraction of dead units at the end",
        "adaptedness_start": "non-adaptedness of W^(l) at step 0", "adaptedness_end": "non-adaptedness at the end",
        "variability_share_start": "share of within-class variability in truncated entries, step 0",
        "variability_share_end": "share of within-class variability in truncated entries, end",
        "nc1_start": "NC1 of layer l at step 0", "nc1_end": "NC1 of layer l at the end",
    }
    data = {k: (("setting", "seed"), v, {"long_name": long[k], "units": "1"}) for k, v in per.items()}
    data.update({k: (("setting", "seed", "layer"), v, {"long_name": long[k], "units": "1"}) for k, v in lay.items()})
    data["bias_flow_error"] = (("setting", "seed", "flow_lr"), flow,
                               {"long_name": "|b_GD(T) - b_flow(T)| / |b_flow(T) - b(0)|, weights frozen",
                                "units": "1"})
    ds = xr.Dataset(data, coords={
        "setting": ("setting", names, {"long_name": "cost and optimiser", "units": "1"}),
        "seed": ("seed", np.asarray(seeds), {"long_name": "seed of the run", "units": "1"}),
        "layer": ("layer", np.arange(1, L + 1), {"long_name": "hidden layer l", "units": "1"}),
        "flow_lr": ("flow_lr", np.asarray(flow_lrs, float), {"long_name": "step size of GD on the biases",
                                                             "units": "1"})})
    ds.attrs.update(dataset=split.name, hidden=",".join(map(str, hidden)), n_steps=int(n_steps), lr=float(lr))
    return ds, runs


def finding_lines(ds: xr.Dataset, variable: str, *, layer: int | None = None, flow_lr=None,
                  digits: int = 2) -> list[str]:
    """One line per setting: ``setting: mean [low, high]`` over the seeds (95 % t interval, :func:`mean_interval`)
    of ``variable`` (at ``layer`` or ``flow_lr`` if the variable has that dimension), printed to ``digits``
    decimals: the precision its interval supports, not more."""
    if variable not in ds:
        raise ValueError(f"variable must be one of {sorted(ds.data_vars)}; got {variable!r}")
    da = ds[variable]
    if "layer" in da.dims:
        if layer is None:
            raise ValueError(f"{variable} has a layer dimension: pass layer (one of {ds.layer.values.tolist()})")
        da = da.sel(layer=layer)
    if "flow_lr" in da.dims:
        if flow_lr is None:
            raise ValueError(f"{variable} has a flow_lr dimension: pass flow_lr (one of {ds.flow_lr.values.tolist()})")
        da = da.sel(flow_lr=flow_lr)
    out = []
    for setting in ds.setting.values:
        m, lo, hi = mean_interval(da.sel(setting=setting).values)
        if np.isfinite(m):
            out.append(f"{setting:<28s} {m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]")
    return out

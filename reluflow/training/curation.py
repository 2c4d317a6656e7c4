"""Data curation by per-point scores computed early in training: truncation, EL2N, GraNd, forgetting, random.

A *scoring run* is one training run of a ReLU network d0 → d1 → … → dL → Q on the training points (X, y),
recorded at steps 0 = s_0 < s_1 < … < s_S (the project's engine, :func:`engine_run`, or any loop that keeps the
parameters, e.g. a PyTorch ``nn.Sequential`` read by :func:`network_parameters`). With z_{ℓ,i}(s) the
pre-activations of point i in hidden layer ℓ at recorded step s, T_{ℓk,i}(s) = 1[z_{ℓ,i,k}(s) ≤ 0] its truncation
indicators (ties count as truncated, as everywhere in reluflow), U = Σ_ℓ d_ℓ the hidden units, p_i(s) =
softmax(z_out,i(s)) and the scoring step s* (a recorded step; the *window* is the records with s ≤ s*):

- truncation fraction  τ_i = mean_{s ≤ s*} (1/U) Σ_{ℓ,k} T_{ℓk,i}(s)   (hard = *low*)      → ``"truncation"``
- truncation changes   c_i = Σ_{0 < j, s_j ≤ s*} Σ_{ℓ,k} |T_{ℓk,i}(s_j) − T_{ℓk,i}(s_{j−1})|   (hard = high)
                                                                                    → ``"truncation_changes"``
- EL2N (Paul, Ganguli and Dziugaite, 2021, arXiv:2107.07075)  e_i = |p_i(s*) − e_{y_i}|_2   → ``"el2n"``
- GraNd (same paper)  g_i = |∇_θ ℓ_i(s*)|_2, ℓ_i = −log p_i[y_i], over every weight and bias:
  g_i² = Σ_{ℓ=1}^{L+1} |δ_{ℓ,i}|² (|a_{ℓ−1,i}|² + 1), δ_{L+1,i} = p_i − e_{y_i},
  δ_{ℓ,i} = (δ_{ℓ+1,i} W_{ℓ+1}) ⊙ 1[z_{ℓ,i} > 0], a_{ℓ,i} = σ(z_{ℓ,i}), a_0 = x_i                → ``"grand"``
- forgetting events (Toneva et al., 2019, arXiv:1812.05159) over *all* records of the run:
  k_i = #{j ≥ 1 : ok_i(s_{j−1}) = 1, ok_i(s_j) = 0}, ok_i(s) = 1[argmax z_out,i(s) = y_i];
  a point never classified correctly at any record gets k_i = S + 1, more than any count can be   → ``"forgetting"``
- random  r_i ~ U(0, 1), drawn from the run's seed, independent of the training                 → ``"random"``

The truncation fraction is the monitor's ``truncation_fraction`` (:mod:`reluflow.monitor`) averaged over the
window, so a PyTorch model watched by :func:`reluflow.monitor.watch` gives it through :func:`truncation_score`.
Direction: the truncation picture (THEORY.md §5) says a point that the units truncate is mapped onto a face of a
cone and carries less gradient; so the *least* truncated points, those the network still resolves in most units,
are called hardest, and the points whose pattern keeps changing (near moving thresholds) are hard too. Both
directions are measured anyway: :func:`prune` keeps the hardest *or* the easiest.

:func:`scores` averages each score over the runs (seeds) and returns an xarray Dataset over (score, point) with
the per-run values over (run, score, point). :func:`prune` keeps round(f·N) points by one score; ties are broken
by a seeded random order, and (by default) at least one point of every class is kept. :func:`curation_sweep`
retrains from scratch on every kept subset with the same number of steps and measures the test accuracy, through
any :class:`concurrent.futures.Executor` (serial by default): every retraining draws its initialisation from its
own seed only, so the result does not depend on scheduling.

With the project's engine::

    runs = [engine_run(X, y, hidden=[32], seed=s, n_steps=300, lr=0.1, record_every=5) for s in range(5)]
    ds = scores(runs, X, y, score_step=60)
    kept = prune(ds.mean_score.sel(score="el2n"), 0.5, keep="hardest", labels=y)

With a PyTorch ``nn.Sequential`` (float64), keep the parameters at the recorded steps, and the monitor gives the
truncation fraction from its forward hooks::

    pairs = [(0, network_parameters(model))]
    with monitor.watch(model, X, every=5) as mon:
        for step in range(1, 301):
            ...                                   # forward, backward, optimiser step
            mon.step()
            if step % 5 == 0:
                pairs.append((step, network_parameters(model)))
    per_run = run_scores(pairs, X, y, score_step=60)          # every score of this run
    tau = truncation_score(mon.result(), score_step=60)       # equals per_run["truncation"]
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.theory.kernels import forward_pass
from reluflow.training import monitor
from reluflow.validation import (
    as_dataset,
    as_indices,
    as_labels,
    as_network,
    as_points,
    as_positive_float,
    as_real,
    as_real_array,
    check_memory,
    check_positive_int,
)

__all__ = ["SCORES", "KEEPS", "HARD_WHEN_HIGH", "network_parameters", "engine_run", "run_scores", "truncation_score",
           "scores", "prune", "rank_correlations", "accuracy_on", "retrain", "curation_sweep", "CurationData"]

#: The scores, in the order of the Dataset's ``score`` coordinate.
SCORES = ("truncation", "truncation_changes", "el2n", "grand", "forgetting", "random")
#: Which points :func:`prune` keeps.
KEEPS = ("hardest", "easiest")
#: +1 when a high value means a hard point, −1 when a low value does (the truncation fraction).
HARD_WHEN_HIGH = {"truncation": -1, "truncation_changes": 1, "el2n": 1, "grand": 1, "forgetting": 1, "random": 1}

_LONG = {
    "truncation": "mean over the early records of the share of hidden units truncating the point",
    "truncation_changes": "changes of the point's truncation indicators between consecutive early records",
    "el2n": "EL2N |softmax(z) - e_y| at the scoring step",
    "grand": "GraNd |grad of the point's cross-entropy over all parameters| at the scoring step",
    "forgetting": "forgetting events (correct at one record, wrong at the next); never learnt: S + 1",
    "random": "uniform random number drawn from the run's seed",
}


# ------------------------------------------------------------------------------------------- parameters, runs


def network_parameters(model) -> tuple:
    """(weights, biases, W_out, b_out) as float64 numpy arrays, from a PyTorch ``nn.Sequential`` of Linear/ReLU
    (Linear → ReLU → … → Linear; torch is imported only for such a model), an object with ``weights``, ``biases``,
    ``W_out``, ``b_out``, or such a tuple itself."""
    if type(model).__module__.startswith("torch.") and hasattr(model, "named_modules"):
        from torch import nn

        mods = list(model)
        if not mods or not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in mods) or not isinstance(mods[-1],
                                                                                                  nn.Linear):
            raise ValueError("model must be an nn.Sequential Linear -> ReLU -> ... -> Linear; got "
                             f"{[type(m).__name__ for m in mods]}")
        lin = [m for m in mods if isinstance(m, nn.Linear)]
        arr = [(m.weight.detach().cpu().numpy().astype(np.float64),
                (m.bias.detach().cpu().numpy() if m.bias is not None else np.zeros(m.out_features)).astype(np.float64))
               for m in lin]
        return [w for w, _ in arr[:-1]], [b for _, b in arr[:-1]], arr[-1][0], arr[-1][1]
    if hasattr(model, "weights") and hasattr(model, "biases"):
        model = (model.weights, model.biases, getattr(model, "W_out", None), getattr(model, "b_out", None))
    if not isinstance(model, (tuple, list)) or len(model) != 4:
        raise TypeError("model must be a torch nn.Sequential, an object with weights/biases/W_out/b_out or a tuple "
                        f"(weights, biases, W_out, b_out); got {type(model).__name__}")
    weights, biases, W_out, b_out = model
    if W_out is None or b_out is None:
        raise ValueError("the scores need the output layer: W_out and b_out must be given; got None")
    return as_network(weights, biases, W_out, b_out, terminal_required=True, prefix="model: ")


def _states(run):
    """(steps (S+1,), [params, …]) of a run: an engine trajectory or a sequence of (step, params) pairs."""
    if isinstance(run, xr.Dataset):
        return np.asarray(run.step.values, dtype=np.int64), monitor.trajectory_parameters(run)
    try:
        pairs = list(run)
    except TypeError:
        raise TypeError("run must be a trajectory of reluflow.train or a sequence of (step, parameters) pairs; got "
                        f"{type(run).__name__}") from None
    if not pairs:
        raise ValueError("run must hold at least one recorded state; got an empty sequence")
    steps, params = [], []
    for k, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"run[{k}] must be a pair (step, parameters); got {type(pair).__name__}")
        steps.append(check_positive_int(pair[0], f"run[{k}] step", minimum=0))
        params.append(network_parameters(pair[1]))
    steps = np.asarray(steps, dtype=np.int64)
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"run steps must increase strictly; got {steps.tolist()}")
    return steps, params


def engine_run(X, y, *, hidden, seed: int, n_steps: int, lr: float, record_every: int,
               n_classes: int | None = None) -> xr.Dataset:
    """One full-batch run of the project's engine: :func:`reluflow.train` (mode "full", cross-entropy, terminal
    layer trained) from :func:`reluflow.training.init.he_network` seeded by ``SeedSequence(seed)``, recorded every
    ``record_every`` steps. The same seed and steps give the same parameters whatever ``record_every`` is."""
    from reluflow.training.gd import train
    from reluflow.training.init import he_network

    X = as_points(X, "X")
    seed = check_positive_int(seed, "seed", minimum=0)
    hidden = [check_positive_int(d, f"hidden[{i}]") for i, d in enumerate(hidden)]
    if n_classes is not None:
        n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        check_memory(8.0 * n_classes * (hidden[-1] + 1 if hidden else X.shape[1] + 1),
                     f"n_classes = {n_classes}")  # the output layer
    y = as_labels(y, "y", n_classes=n_classes, rows=X.shape[0])
    Q = int(y.max()) + 1 if n_classes is None else n_classes
    params = he_network([X.shape[1], *hidden], Q, seed=np.random.default_rng(np.random.SeedSequence(seed)))
    traj = train(params[0], params[1], X, y, mode="full", cost="cross_entropy", lr=lr, n_steps=n_steps,
                 record_every=record_every, W_out=params[2], b_out=params[3], train_terminal=True)
    if traj.attrs["status"] != 0:  # the run diverged: the step is too large for these data
        raise ValueError(f"lr = {lr!r} is too large for these data: training did not complete: "
                         f"{traj.attrs['message']}")
    return traj


# ------------------------------------------------------------------------------------------------ the scores


def _forward(params, X):
    """Pre-activations [(N, d_ℓ)], activations [X, a_1, …, a_L] (the shared unvalidated pass) and logits (N, Q)."""
    weights, biases, W_out, b_out = params
    pre, acts = forward_pass(weights, biases, X)
    return pre, acts, acts[-1] @ W_out.T + b_out


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _el2n_grand(params, X, y):
    """EL2N |p_i − e_{y_i}| and GraNd g_i with g_i² = Σ_ℓ |δ_{ℓ,i}|² (|a_{ℓ−1,i}|² + 1), for all points at once."""
    weights, _, W_out, _ = params
    pre, acts, logits = _forward(params, X)
    delta = _softmax(logits)
    delta[np.arange(len(y)), y] -= 1.0  # δ_{L+1} = p − e_y = ∂ℓ_i/∂z_out
    el2n = np.sqrt(np.einsum("ij,ij->i", delta, delta))
    sq = np.einsum("ij,ij->i", delta, delta) * (np.einsum("ij,ij->i", acts[-1], acts[-1]) + 1.0)
    W_next = W_out
    for ell in range(len(weights) - 1, -1, -1):
        delta = (delta @ W_next) * (pre[ell] > 0.0)
        sq += np.einsum("ij,ij->i", delta, delta) * (np.einsum("ij,ij->i", acts[ell], acts[ell]) + 1.0)
        W_next = weights[ell]
    return el2n, np.sqrt(sq)


def truncation_score(record: xr.Dataset, score_step: int) -> np.ndarray:
    """τ_i = mean over the records with step ≤ ``score_step`` of the monitor's ``truncation_fraction`` (the share of
    hidden units with pre-activation ≤ 0 at the point), from a monitor Dataset: :func:`reluflow.monitor.watch`'s
    result (e.g. for a PyTorch model) or :func:`reluflow.monitor.from_trajectory`."""
    if not isinstance(record, xr.Dataset) or "truncation_fraction" not in record:
        raise TypeError(f"record must be a monitor Dataset with truncation_fraction; got {type(record).__name__}")
    score_step = check_positive_int(score_step, "score_step", minimum=0)
    window = record.step.values <= score_step
    if not window.any():
        raise ValueError(f"score_step must be >= the first recorded step {int(record.step.values[0])}; "
                         f"got {score_step}")
    return record.truncation_fraction.values[window].mean(axis=0)


def run_scores(run, X, labels, *, score_step: int, seed=0) -> dict:
    """The scores of one scoring run (module docstring): a dict name → (N,) array, in the order of :data:`SCORES`.

    ``run``: a trajectory of :func:`reluflow.train` (or :func:`engine_run`) or a sequence of (step, parameters)
    pairs (parameters as :func:`network_parameters` accepts them: a PyTorch ``nn.Sequential`` read at that step is
    turned into arrays there); ``score_step`` must be a recorded step; ``seed`` (an int or a SeedSequence) draws the
    random score."""
    steps, params = _states(run)
    X = as_points(X, "X", dim=params[0][0][0].shape[1])
    y = as_labels(labels, "labels", n_classes=params[0][2].shape[0], rows=X.shape[0])
    score_step = check_positive_int(score_step, "score_step", minimum=0)
    if score_step not in steps:
        raise ValueError(f"score_step must be one of the recorded steps {steps.tolist()}; got {score_step}")
    w = int(np.searchsorted(steps, score_step)) + 1  # records 0..w−1 form the window
    current = {"i": 0}
    with monitor.watch(lambda: params[current["i"]], X) as mon:  # the monitor's own count of the fractions
        for i in range(1, w):
            current["i"] = i
            mon.step()
    record = mon.result().assign_coords(step=("time", steps[:w]))
    out = {"truncation": truncation_score(record, score_step)}
    changes = np.zeros(X.shape[0], dtype=np.int64)
    prev = None
    correct = np.empty((len(params), X.shape[0]), dtype=bool)
    for i, p in enumerate(params):
        pre, _, logits = _forward(p, X)
        correct[i] = logits.argmax(axis=1) == y
        if i < w:
            T = np.concatenate([z <= 0.0 for z in pre], axis=1)
            if prev is not None:
                changes += np.count_nonzero(T != prev, axis=1)
            prev = T
    out["truncation_changes"] = changes.astype(float)
    out["el2n"], out["grand"] = _el2n_grand(params[w - 1], X, y)
    forgot = np.count_nonzero(correct[:-1] & ~correct[1:], axis=0).astype(float)
    forgot[~correct.any(axis=0)] = len(params)  # never learnt: S + 1 records, more than any count
    out["forgetting"] = forgot
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(
        check_positive_int(seed, "seed", minimum=0))
    out["random"] = np.random.default_rng(ss).random(X.shape[0])
    return out


def _run_scores_task(args):
    run, X, y, score_step, ss = args
    return run_scores(run, X, y, score_step=score_step, seed=ss)


def _map(func, items, executor):
    if executor is None:
        return [func(it) for it in items]
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor (with submit); got {type(executor).__name__}")
    futures = [executor.submit(func, it) for it in items]
    return [f.result() for f in futures]


def scores(runs, X, labels, *, score_step: int, seed: int = 0, executor: Executor | None = None) -> xr.Dataset:
    """Every score of :data:`SCORES` for each run, and their mean over the runs: an xarray Dataset with ``mean_score``
    (score, point), the mean over runs, and ``score_per_run`` (run, score, point).

    ``runs``: a sequence of scoring runs (one per seed; see :func:`run_scores`); run k draws its random score from
    child k of ``SeedSequence(seed)``. The coordinate ``hard_when_high`` on ``score`` is +1 where a high value
    means a hard point and −1 where a low one does (the truncation fraction); :func:`prune` reads it."""
    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold at least one scoring run; got none")
    X = as_points(X, "X")
    seed = check_positive_int(seed, "seed", minimum=0)
    children = np.random.SeedSequence(seed).spawn(len(runs))
    per = _map(_run_scores_task, [(r, X, labels, score_step, c) for r, c in zip(runs, children)], executor)
    values = np.stack([[p[s] for s in SCORES] for p in per])
    ds = xr.Dataset(
        {"score_per_run": (("run", "score", "point"), values,
                           {"long_name": "score of the point in one scoring run", "units": "1"}),
         "mean_score": (("score", "point"), values.mean(axis=0),
                   {"long_name": "score of the point, mean over the scoring runs", "units": "1"})},
        coords={"run": ("run", np.arange(len(runs)), {"long_name": "scoring run (seed index)", "units": "1"}),
                "score": ("score", list(SCORES), {"long_name": "data-curation score", "units": "1"}),
                "point": ("point", np.arange(X.shape[0]), {"long_name": "training point", "units": "1"}),
                "hard_when_high": ("score", np.array([HARD_WHEN_HIGH[s] for s in SCORES]),
                                   {"long_name": "+1: high value = hard point; -1: low value = hard", "units": "1"})})
    ds.attrs.update(score_step=score_step, seed=seed, definitions="; ".join(f"{k}: {v}" for k, v in _LONG.items()))
    return ds


def rank_correlations(score: xr.DataArray) -> xr.DataArray:
    """Spearman's ρ between every pair of scores over the points: (score, score_other), from a (score, point)
    DataArray such as ``scores(...).mean_score`` (NaN for a constant score)."""
    from scipy.stats import spearmanr

    if not isinstance(score, xr.DataArray) or set(score.dims) != {"score", "point"}:
        raise TypeError(f"score must be a DataArray over (score, point); got {type(score).__name__}")
    v = as_real_array(score.transpose("score", "point").values, "score")
    names = score.score.values
    rho = np.full((len(names), len(names)), np.nan)
    ok = np.ptp(v, axis=1) > 0
    if ok.sum() >= 2:
        r = np.atleast_2d(spearmanr(v[ok], axis=1).statistic)
        rho[np.ix_(ok, ok)] = r
    return xr.DataArray(rho, dims=("score", "score_other"), coords={"score": names, "score_other": names},
                        attrs={"long_name": "Spearman rank correlation between two scores over the points",
                               "units": "1"})


# ------------------------------------------------------------------------------------------------- pruning


def prune(scores, fraction: float, *, keep: str = "hardest", seed: int = 0, labels=None,
          min_per_class: int = 1) -> np.ndarray:
    """The sorted indices of the n = round(f·N) points kept by one score: the n hardest or the n easiest.

    ``scores``: a 1-D array (high = hard) or a DataArray over ``point`` from :func:`scores` (e.g.
    ``ds.mean_score.sel(score="el2n")``), whose coordinate ``hard_when_high`` gives the direction. The points are
    ordered from easiest to hardest by (hardness, tie key), the tie key a random permutation from ``seed``; the
    easiest n are the first n, the hardest n the last n, so the n hardest and the N − n easiest partition the
    points. With ``labels``, every class with at least ``min_per_class`` points keeps that many:
    an absent class's best-ranked points replace the lowest-ranked kept points of the most-kept class (n does not
    change). ``fraction`` in (0, 1]; n ≥ 1."""
    sign = 1
    if isinstance(scores, xr.DataArray):
        if scores.dims != ("point",):
            raise ValueError(f"scores must be a DataArray over (point,), one score; got dims {scores.dims}")
        if "hard_when_high" in scores.coords:
            sign = int(scores.coords["hard_when_high"])
        scores = scores.values
    s = np.asarray(scores)
    if s.ndim != 1 or s.size == 0 or s.dtype.kind not in "iuf":
        raise ValueError(f"scores must be a non-empty 1-D array of real numbers; got shape {s.shape}, dtype {s.dtype}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite; got NaN or inf")
    f = as_real(fraction, "fraction", minimum=0.0, strict=True, maximum=1.0)
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {KEEPS}; got {keep!r}")
    seed = check_positive_int(seed, "seed", minimum=0)
    N = s.size
    n = int(round(f * N))
    if n < 1:
        raise ValueError(f"fraction must keep at least one point: round(fraction * N) = round({f} * {N}) = 0")
    tie = np.random.default_rng(np.random.SeedSequence(seed)).permutation(N)
    order = np.lexsort((tie, sign * s.astype(float)))  # easiest first
    ranked = order[::-1] if keep == "hardest" else order  # best-ranked first
    kept = list(ranked[:n])
    if labels is not None:
        y = as_labels(labels, "labels")
        if y.shape != (N,):
            raise ValueError(f"labels must have shape ({N},), one per score; got {y.shape}")
        m = check_positive_int(min_per_class, "min_per_class", minimum=0)
        rest = list(ranked[n:])
        for c in np.unique(y):
            need = min(m, int(np.sum(y == c))) - int(np.sum(y[kept] == c))
            for i in [i for i in rest if y[i] == c][:max(need, 0)]:
                counts = np.bincount(y[kept], minlength=int(y.max()) + 1)
                donor = int(np.argmax(counts))
                if counts[donor] <= m:
                    break
                drop = max(k for k, j in enumerate(kept) if y[j] == donor)
                kept[drop] = i
    return np.sort(np.asarray(kept, dtype=np.int64))


# ---------------------------------------------------------------------------------------- retraining sweep


@dataclass(frozen=True, repr=False)
class CurationData:
    """Training and test points of one curation study: rows, integer labels 0..Q−1."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    def __repr__(self) -> str:
        return (f"<CurationData {self.name}: {len(self.y_train)} train / {len(self.y_test)} test, "
                f"{self.n_classes} classes>")


def accuracy_on(trajectory: xr.Dataset, X, y) -> float:
    """Share of the points (X, y) whose output argmax at the trajectory's last recorded state is their label."""
    as_dataset(trajectory, "trajectory", ("time",))
    params = network_parameters(monitor.trajectory_parameters(trajectory.isel(time=[-1]))[0])
    X = as_points(X, "X", dim=params[0][0].shape[1])
    y = as_labels(y, "y", rows=X.shape[0])
    return float(np.mean(_forward(params, X)[2].argmax(axis=1) == y))


def retrain(data: CurationData, kept, *, hidden, seed: int, n_steps: int, lr: float) -> xr.Dataset:
    """Train from scratch on the kept training points only, with :func:`engine_run` (the same steps, the same
    initialisation for a given seed); records the first and last states."""
    if not isinstance(data, CurationData):
        raise TypeError(f"data must be a CurationData; got {type(data).__name__}")
    kept = as_indices(kept, "kept", len(data.y_train))
    return engine_run(data.X_train[kept], data.y_train[kept], hidden=hidden, seed=seed, n_steps=n_steps, lr=lr,
                      record_every=n_steps, n_classes=data.n_classes)


def _retrain_task(args):
    data, kept, hidden, seed, n_steps, lr = args
    return accuracy_on(retrain(data, kept, hidden=hidden, seed=seed, n_steps=n_steps, lr=lr), data.X_test,
                         data.y_test)


def curation_sweep(data: CurationData, score_ds: xr.Dataset, *, fractions, seeds, hidden, n_steps: int, lr: float,
                   baseline=None, executor: Executor | None = None) -> xr.Dataset:
    """Test accuracy after retraining from scratch on the points each score keeps: (score, keep, fraction, seed).

    For every score × keep × fraction f < 1 × seed: :func:`prune` of the seed-averaged score (the random score:
    that seed's own draw, ``score_per_run`` of run k for seed k, so the random subset changes with the seed), with
    ties broken by the seed and at least one point per class, then :func:`retrain` with that seed. At f = 1
    every point is kept, so the accuracy is the full run's: ``baseline`` (seed,) if given (the scoring runs' test
    accuracy; the notebook checks that a retrain at f = 1 reproduces it bit for bit), else retrained once per
    seed. Also returns ``n_kept`` (fraction,)."""
    fractions = [as_real(f, f"fractions[{i}]", minimum=0.0, strict=True, maximum=1.0) for i, f in enumerate(fractions)]
    if len(set(fractions)) != len(fractions):
        raise ValueError(f"fractions must not repeat a value; got {fractions}")
    seeds = [check_positive_int(s, f"seeds[{i}]", minimum=0) for i, s in enumerate(seeds)]
    n_steps = check_positive_int(n_steps, "n_steps")
    lr = as_positive_float(lr, "lr")
    if score_ds.sizes["run"] != len(seeds):
        raise ValueError(f"seeds must have one entry per scoring run ({score_ds.sizes['run']}); got {len(seeds)}")
    N = data.y_train.size
    names = list(score_ds.score.values)
    plan, where = [], []
    for a, name in enumerate(names):
        for b, keep in enumerate(KEEPS):
            for c, f in enumerate(fractions):
                if f == 1.0:
                    continue
                for d, s in enumerate(seeds):
                    source = score_ds.score_per_run.isel(run=d) if name == "random" else score_ds.mean_score
                    sc = source.sel(score=name)
                    kept = prune(sc, f, keep=keep, seed=s, labels=data.y_train)
                    plan.append((data, kept, tuple(hidden), s, n_steps, lr))
                    where.append((a, b, c, d))
    acc = np.full((len(names), len(KEEPS), len(fractions), len(seeds)), np.nan)
    for (a, b, c, d), value in zip(where, _map(_retrain_task, plan, executor)):
        acc[a, b, c, d] = value
    if 1.0 in fractions:
        if baseline is None:
            full = np.arange(N)
            baseline = _map(_retrain_task, [(data, full, tuple(hidden), s, n_steps, lr) for s in seeds], executor)
        baseline = np.asarray(baseline, dtype=float)
        if baseline.shape != (len(seeds),):
            raise ValueError(f"baseline must have shape ({len(seeds)},), one accuracy per seed; got {baseline.shape}")
        acc[:, :, fractions.index(1.0), :] = baseline
    return xr.Dataset(
        {"accuracy": (("score", "keep", "fraction", "seed"), acc,
                      {"long_name": "test accuracy after retraining on the kept points", "units": "1"}),
         "n_kept": (("fraction",), np.array([int(round(f * N)) for f in fractions]),
                    {"long_name": "number of training points kept", "units": "1"})},
        coords={"score": ("score", names, {"long_name": "data-curation score", "units": "1"}),
                "keep": ("keep", list(KEEPS), {"long_name": "which points are kept", "units": "1"}),
                "fraction": ("fraction", np.asarray(fractions), {"long_name": "kept fraction f of the training set",
                                                                 "units": "1"}),
                "seed": ("seed", np.asarray(seeds), {"long_name": "seed of the retraining", "units": "1"})},
        attrs={"dataset": data.name, "n_train": int(N), "n_steps": int(n_steps), "lr": float(lr),
               "hidden": ",".join(map(str, hidden))})

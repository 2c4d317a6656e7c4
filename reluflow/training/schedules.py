"""Step sizes from the flow's rates: the stability limit of gradient descent in a truncation pattern, a schedule that
follows it as the counts grow, and the rules it is compared with.

The idealised setting is one adapted layer, W = ΛR, b = −Λθ, with the input cost. In a fixed truncation pattern the
threshold k relaxes at the rate r_k = n_k/(λ_k² N) (THEORY.md §4.2, A3): gradient descent on the bias with step η
maps the error e_k = θ_k − ȳ_k (ȳ_k the mean target of the truncated points) to (1 − η r_k) e_k, so it contracts
iff η r_k < 2. Map from formula to function:

- r_k = n_k/(λ_k² N), n_k = #{i : (W x_i + b)_k ≤ 0}, λ_k = |row k of W|        → :func:`threshold_rates`,
  :func:`adapted_counts`
- η_max = 2 / max_k r_k, the stability limit of the current pattern             → :func:`stability_limit`
- η = c / max_k r_k (0 < c < 2; c = 1 removes the fastest threshold's error in one step) → :func:`flow_step`
- the schedule η_s = flow_step(counts at step s), recomputed every ``segment`` steps
  (:func:`reluflow.train` in segments, each restarted from the last state)        → :func:`run_rule` ``"truncation"``
- generic networks (heuristic): r̂ = λ_max((1/N) Σ_i κ_i h_i h_iᵀ), h_i = (x_i^(L), 1) the last hidden layer's
  activations with a 1 appended (zero at truncated units), κ_i = min(1/2, max_q 2p_iq(1 − p_iq)) for the
  cross-entropy (a Gershgorin bound on the largest eigenvalue of diag(p_i) − p_i p_iᵀ), 1 for the squared error:
  the curvature bound of the output layer through the active units, and η = c / r̂ → :func:`output_layer_rate`
- cosine decay η_s = η_0 (1 + cos(π s/S))/2                                      → :func:`cosine_step`
- curvature-adaptive η = c / λ_max(∇²C) (edge-of-stability studies, Cohen et al. 2021), λ_max by power iteration on
  Hessian-vector products Hv ≈ (∇C(p + εv) − ∇C(p − εv))/(2ε), ε shrunk until no ReLU changes sign between the
  two ends (the Hessian within the current activation region)                   → :func:`hessian_lambda_max`,
  :func:`finite_difference_hessian` (the dense matrix, for checks)
- gradient descent on the biases for many η at once, and whether it settles      → :func:`bias_descent`,
  :func:`converges`, :func:`criterion_limit`
- the observed divergence threshold, by repeated grid bisection on η              → :func:`observed_threshold`
- a random idealised problem: S2 sweeps, every target beyond every point, or targets inside the data (S3/S5)
                                                                                 → :func:`idealised_problem`
- the rest pattern of small-step descent, and whether it settles                  → :func:`rest_pattern`
- notebook 12's tables: the best constant step (the most runs at target, then the fewest mean steps), log10 of
  the final / initial excess cost, one formatted row per rule, and the paired difference in steps of two rules
  → :func:`best_constant_index`, :func:`log_excess_ratio`, :func:`rule_summary_rows`, :func:`paired_step_difference`
"""

from __future__ import annotations

import math
import string
import time
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.results.schema import variable
from reluflow.theory.kernels import forward_pass
from reluflow.theory.network import haar_orthogonal, layer_parameters
from reluflow.training.gd import backprop_gradient, train
from reluflow.training.init import he_network
from reluflow.training.practice import mean_interval
from reluflow.validation import (
    as_bool,
    as_labels,
    as_network,
    as_network_state,
    as_points,
    as_real,
    as_real_array,
    as_targets,
    check_memory,
    check_positive_int,
    check_size,
)

__all__ = ["RULES", "IdealisedProblem", "idealised_problem", "threshold_rates", "adapted_counts", "stability_limit",
           "flow_step", "output_layer_rate", "cosine_step", "hessian_lambda_max", "finite_difference_hessian",
           "RuleRun", "run_rule", "bias_descent", "converges", "criterion_limit", "observed_threshold",
           "rest_pattern", "interior_point", "steps_to_target", "contraction_factors", "idealised_point",
           "idealised_rule_names", "accuracy", "digits_point", "best_constant_index", "log_excess_ratio",
           "rule_summary_rows", "paired_step_difference", "step_size_result"]

#: The step-size rules of :func:`run_rule`.
RULES = ("constant", "cosine", "curvature", "truncation")


# ------------------------------------------------------------------------------------------------ the idealised rule


def threshold_rates(counts, scales, n_points) -> np.ndarray:
    """r_k = n_k/(λ_k² N): the relaxation rate of threshold k in its current truncation pattern."""
    counts = as_real_array(counts, "counts", ndim=1)
    scales = as_real_array(scales, "scales", ndim=1)
    N = check_positive_int(n_points, "n_points")
    if counts.shape != scales.shape:
        raise ValueError(f"counts and scales must have the same shape; got {counts.shape} and {scales.shape}")
    if np.any(counts < 0) or np.any(counts > N) or np.any(counts != np.round(counts)):
        raise ValueError(f"counts must be integers in [0, n_points={N}]; got {counts.tolist()}")
    if np.any(scales <= 0):
        raise ValueError(f"scales must be positive; got {scales.tolist()}")
    return counts / (scales ** 2 * N)


def adapted_counts(weights, biases, X) -> tuple[np.ndarray, np.ndarray]:
    """(n, λ) of a one-layer network from a plain forward pass: n_k = #{i : (W x_i + b)_k ≤ 0}, λ_k = |row k of W|."""
    weights, biases, _, _ = as_network(weights, biases)
    if len(weights) != 1 or len(biases) != 1:
        raise ValueError(f"weights and biases must describe one layer (the rate n_k/(λ_k² N) is the one-layer bias "
                         f"flow's); got {len(weights)} and {len(biases)} layers")
    W = as_real_array(weights[0], "weights[0]", ndim=2)
    b = as_real_array(biases[0], "biases[0]", ndim=1)
    X = as_points(X, "X", dim=W.shape[1])
    if b.shape != (W.shape[0],):
        raise ValueError(f"biases[0] must have shape ({W.shape[0]},); got {b.shape}")
    counts = np.count_nonzero(X @ W.T + b <= 0.0, axis=0)
    return counts, np.linalg.norm(W, axis=1)


def stability_limit(counts, scales, n_points) -> float:
    """η_max = 2 / max_k r_k, r_k = n_k/(λ_k² N); inf when no point is truncated (then no threshold moves)."""
    r = threshold_rates(counts, scales, n_points)
    top = float(r.max()) if r.size else 0.0
    return math.inf if top == 0 else 2.0 / top


def flow_step(counts, scales, n_points, *, c: float = 1.0, max_step: float = math.inf) -> float:
    """η = min(c / max_k r_k, max_step): c = 1 (default) removes the fastest threshold's local error in one step;
    descent is stable in the pattern iff c < 2, so c must lie in (0, 2)."""
    c = as_real(c, "c", minimum=0.0, strict=True, maximum=2.0)
    if c >= 2.0:
        raise ValueError(f"c must lie in (0, 2) (c = 2 is the stability limit); got {c!r}")
    max_step = as_real(max_step, "max_step", minimum=0.0, strict=True, allow_inf=True)
    lim = stability_limit(counts, scales, n_points)
    return float(min(c * lim / 2.0, max_step))


def output_layer_rate(weights, biases, W_out, b_out, X, *, cost: str = "cross_entropy") -> float:
    """r̂ = λ_max((1/N) Σ_i κ_i h_i h_iᵀ), h_i = (x_i^(L), 1), κ_i = min(1/2, max_q 2 p_iq (1 − p_iq)) for the
    cross-entropy (p_i = softmax of the output), κ_i = 1 for the squared error.

    An upper bound on the curvature of the cost in the output layer's parameters (W_out, b_out): that block of the
    Hessian is (1/N) Σ_i A_i ⊗ h_i h_iᵀ with A_i = diag(p_i) − p_i p_iᵀ ≤ κ_i (Gershgorin) for the cross-entropy,
    A_i = 1 for the squared error. The counts enter through h_i, zero at the units that truncate point i. A heuristic
    extension of n_k/(λ_k² N) to generic networks: it ignores the hidden layers' own curvature."""
    if cost not in ("cross_entropy", "output"):
        raise ValueError(f"cost must be 'cross_entropy' or 'output'; got {cost!r}")
    weights, biases, W_out, b_out = as_network(weights, biases, W_out, b_out, terminal_required=True)
    X = as_points(X, "X", dim=weights[0].shape[1])
    h = X
    for W, b in zip(weights, biases):
        h = np.maximum(h @ W.T + b, 0.0)
    if cost == "cross_entropy":
        z = h @ W_out.T + b_out
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        kappa = np.minimum(0.5, (2.0 * p * (1.0 - p)).max(axis=1))
    else:
        kappa = np.ones(h.shape[0])
    H = np.hstack([h, np.ones((h.shape[0], 1))])
    G = (H * kappa[:, None]).T @ H / H.shape[0]
    return float(np.linalg.eigvalsh(G)[-1])


def cosine_step(step, n_steps, base_step) -> float:
    """η_s = η_0 (1 + cos(π s/S))/2."""
    s = check_positive_int(step, "step", minimum=0)
    S = check_positive_int(n_steps, "n_steps")
    eta0 = as_real(base_step, "base_step", minimum=0.0, strict=True)
    return float(eta0 * 0.5 * (1.0 + math.cos(math.pi * min(s, S) / S)))


# ------------------------------------------------------------------------------------------------ curvature


def _pack(state, mode, train_terminal):
    weights, biases, W_out, b_out = state
    parts = [] if mode == "biases" else [np.ravel(W) for W in weights]
    parts += [np.ravel(b) for b in biases]
    if train_terminal and W_out is not None:
        if mode != "biases":
            parts.append(np.ravel(W_out))
        parts.append(np.ravel(b_out))
    return np.concatenate(parts)


def _unpack(vec, state, mode, train_terminal):
    weights, biases, W_out, b_out = state
    i = 0

    def take(a):
        nonlocal i
        out = vec[i:i + a.size].reshape(a.shape)
        i += a.size
        return out

    new_w = list(weights) if mode == "biases" else [take(np.asarray(W)) for W in weights]
    new_b = [take(np.asarray(b)) for b in biases]
    Wo, bo = W_out, b_out
    if train_terminal and W_out is not None:
        if mode != "biases":
            Wo = take(np.asarray(W_out))
        bo = take(np.asarray(b_out))
    return new_w, new_b, Wo, bo


def _gradient_vector(state, X, targets, cost, mode, train_terminal):
    weights, biases, W_out, b_out = state
    g = backprop_gradient(weights, biases, X, targets, cost=cost, W_out=W_out, b_out=b_out, max_condition=np.inf)
    return _pack((g.weights, g.biases, g.W_out, g.b_out), mode, train_terminal)


#: the finite-difference step of a Hessian-vector product is divided by this factor, at most HVP_SHRINKS times, until
#: no hidden pre-activation changes sign between p − εv and p + εv (see :func:`_hvp`)
HVP_SHRINK = 4.0
HVP_SHRINKS = 10


def _pattern(state, X):
    """The truncation pattern (z ≤ 0) of every hidden layer at ``state``, one boolean array (N, Σ d_ℓ)."""
    return np.concatenate([z <= 0 for z in forward_pass(state[0], state[1], X)[0]], axis=1)


def _hvp(state, X, targets, cost, mode, train_terminal, v, eps, base=None):
    """Hv within the activation region of ``state``: the central difference (∇C(p + εv) − ∇C(p − εv))/(2ε), with ε
    divided by :data:`HVP_SHRINK` until neither end changes the truncation pattern ``base`` (that of ``state``,
    computed when not given). A kink of the ReLU between the two ends would add a spurious term of order 1/ε (a
    pre-activation 7e-7 from zero gave an eigenvalue of −257 against the region's 2.1 on the digits). When the
    pattern still changes after :data:`HVP_SHRINKS` divisions (a point on a threshold), a one-sided difference from
    the end that keeps it is used; when both ends change it, the central difference at ``eps``."""
    p = _pack(state, mode, train_terminal)
    if base is None:
        base = _pattern(state, X)

    def at(e):
        return _unpack(p + e * v, state, mode, train_terminal)

    def grad(s):
        return _gradient_vector(s, X, targets, cost, mode, train_terminal)

    e, side = eps, None
    for _ in range(HVP_SHRINKS + 1):
        sp, sm = at(e), at(-e)
        keep_p, keep_m = np.array_equal(_pattern(sp, X), base), np.array_equal(_pattern(sm, X), base)
        if keep_p and keep_m:
            return (grad(sp) - grad(sm)) / (2.0 * e)
        if side is None and (keep_p or keep_m):
            side = (e, 1.0 if keep_p else -1.0)
        e /= HVP_SHRINK
    if side is not None:
        e, sign = side
        return sign * (grad(at(sign * e)) - grad(state)) / e
    return (grad(at(eps)) - grad(at(-eps))) / (2.0 * eps)


def _check_rule_inputs(mode, cost, state=None, X=None, targets=None, train_terminal=True, eps=1e-5):
    """Validate the arguments shared by the curvature estimates and :func:`run_rule`; returns the state, X and targets
    as arrays (the state checked by :func:`reluflow.validation.as_network_state`)."""
    if mode not in ("biases", "full"):
        raise ValueError(f"mode must be 'biases' or 'full'; got {mode!r}")
    if cost not in ("input", "output", "cross_entropy"):
        raise ValueError(f"cost must be 'input', 'output' or 'cross_entropy'; got {cost!r}")
    as_bool(train_terminal, "train_terminal")
    _check_eps(eps)
    state = as_network_state(state, terminal_required=cost != "input")
    X = as_points(X, "X", dim=state[0][0].shape[1])
    if cost == "cross_entropy":
        targets = as_labels(targets, "targets", n_classes=state[2].shape[0], rows=X.shape[0])
    else:
        dim = X.shape[1] if cost == "input" else state[2].shape[0]
        targets = as_targets(targets, X.shape[0], dim)
    return state, X, targets


def _check_eps(eps) -> float:
    """A finite-difference step in (0, 1] (the parameters are of order 1; a larger step overflows the cost)."""
    return as_real(eps, "eps", minimum=0.0, strict=True, maximum=1.0,
                   expectation="a finite-difference step in (0, 1]")


def hessian_lambda_max(state, X, targets, *, cost: str, mode: str = "full", train_terminal: bool = True,
                       n_iter: int = 20, eps: float = 1e-5, seed=0) -> float:
    """λ_max(∇²C) over the trained parameters by power iteration v ← Hv/|Hv| on finite-difference Hessian-vector
    products Hv ≈ (∇C(p + εv) − ∇C(p − εv))/(2ε) taken inside the activation region of ``state`` (:func:`_hvp`
    shrinks ε until no pre-activation changes sign); returns the Rayleigh quotient vᵀHv of the last iterate.

    Power iteration finds the eigenvalue of largest *magnitude*. The Hessian of a ReLU network's cost is indefinite,
    so that one can be negative (a saddle direction); then a second power iteration on H − μI, μ the negative
    eigenvalue found, whose eigenvalues λ_i − μ ≥ 0 put λ_max − μ on top, gives λ_max (the shift that Lanczos-free
    edge-of-stability measurements use). ``state`` = (weights, biases, W_out, b_out); 2·n_iter gradient evaluations,
    4·n_iter with the shift (:func:`run_rule` counts them)."""
    return _lambda_max(state, X, targets, cost, mode, train_terminal, n_iter, eps, seed)[0]


def _lambda_max(state, X, targets, cost, mode, train_terminal, n_iter, eps, seed):
    """(λ_max, gradient evaluations) of :func:`hessian_lambda_max`."""
    state, X, targets = _check_rule_inputs(mode, cost, state, X, targets, train_terminal, eps)
    n_iter = check_positive_int(n_iter, "n_iter")
    eps = float(eps)
    p = _pack(state, mode, train_terminal)
    base = _pattern(state, X)

    def power(shift):
        v = np.random.default_rng(seed).standard_normal(p.size)
        v /= np.linalg.norm(v)
        lam = 0.0
        for _ in range(n_iter):
            hv = _hvp(state, X, targets, cost, mode, train_terminal, v, eps, base=base) - shift * v
            lam = float(v @ hv)
            nrm = np.linalg.norm(hv)
            if nrm == 0 or not np.isfinite(nrm):
                break
            v = hv / nrm
        return lam + shift

    lam = power(0.0)
    if lam < 0 and np.isfinite(lam):
        return power(lam), 4 * n_iter
    return lam, 2 * n_iter


def finite_difference_hessian(state, X, targets, *, cost: str, mode: str = "full", train_terminal: bool = True,
                              eps: float = 1e-5) -> np.ndarray:
    """The dense H_{ij} ≈ (∂_i C(p + ε e_j) − ∂_i C(p − ε e_j))/(2ε), symmetrised (H + Hᵀ)/2 (small problems only);
    each column inside the activation region of ``state``, as in :func:`hessian_lambda_max`."""
    state, X, targets = _check_rule_inputs(mode, cost, state, X, targets, train_terminal, eps)
    eps = float(eps)
    p = _pack(state, mode, train_terminal)
    E = np.eye(p.size)
    base = _pattern(state, X)
    H = np.stack([_hvp(state, X, targets, cost, mode, train_terminal, E[j], eps, base=base) for j in range(p.size)],
                 axis=1)
    return 0.5 * (H + H.T)


# ------------------------------------------------------------------------------------------------ running a rule


@dataclass(frozen=True, repr=False)
class RuleRun:
    """One run of a step-size rule: the cost C_s at steps 0..S (NaN after a stop), the step η_s used at steps
    0..S−1, the run's ``status`` (0 completed, else the engine's code of the segment that stopped), the final
    ``state`` (weights, biases, W_out, b_out), the number of rule evaluations and the gradient evaluations they took,
    and the wall time spent in them (seconds; not deterministic, not saved)."""

    cost: np.ndarray
    steps: np.ndarray
    status: int
    state: tuple
    n_evaluations: int
    gradient_evaluations: int
    rule_seconds: float

    @property
    def diverged(self) -> bool:
        """A stop, a non-finite final cost or a final cost above the initial one."""
        c = self.cost
        return bool(self.status != 0 or not np.isfinite(c[-1]) or c[-1] > c[0])

    def __repr__(self) -> str:
        return f"<RuleRun {self.cost.size - 1} steps, status {self.status}, final cost {self.cost[-1]:.4g}>"


def _last_state(tr, state):
    """The (weights, biases, W_out, b_out) at the last recorded time of a train trajectory."""
    s = tr.sizes["time"] - 1
    if "cumulative_weights" in tr:
        weights, biases = layer_parameters(list(tr.cumulative_weights.values[s]), list(tr.cumulative_biases.values[s]),
                                           max_condition=np.inf)
    else:
        L = int(tr.attrs["n_layers"])
        weights = [tr[f"weights_{l}"].values[s] for l in range(1, L + 1)]
        biases = [tr[f"biases_{l}"].values[s] for l in range(1, L + 1)]
    W_out, b_out = state[2], state[3]
    if "output_weights" in tr:
        W_out, b_out = tr.output_weights.values[s], tr.output_biases.values[s]
    return [np.array(W) for W in weights], [np.array(b) for b in biases], W_out, b_out


def run_rule(rule: str, state, X, targets, *, n_steps: int, cost: str, mode: str = "full",
             train_terminal: bool = True, base_step: float | None = None, segment: int = 10, c: float = 1.0,
             max_step: float = math.inf, n_iter: int = 20, eps: float = 1e-5, seed=0) -> RuleRun:
    """Full-batch gradient descent with step-size rule ``rule``, through :func:`reluflow.train` in segments.

    ``rule`` is one of :data:`RULES`:

    - ``"constant"``: η = ``base_step`` throughout (one segment);
    - ``"cosine"``: η_s = :func:`cosine_step` (s, S, base_step), recomputed every ``segment`` steps;
    - ``"curvature"``: η = c / λ_max(∇²C) by :func:`hessian_lambda_max` (``n_iter``, ``eps``) every ``segment`` steps
      (the previous step is kept when the estimate is not positive);
    - ``"truncation"``: η = :func:`flow_step` of the current counts for a one-layer network with ``cost="input"``
      (the idealised rule), else c / :func:`output_layer_rate` (the heuristic for generic networks); every
      ``segment`` steps, capped at ``max_step``.

    ``state`` = (weights, biases, W_out, b_out) (W_out, b_out None for ``cost="input"``). A segment that stops (the
    engine's status ≠ 0) ends the run. Weights and terminal layer, when trained, use the same step as the biases.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    state, X, targets = _check_rule_inputs(mode, cost, state, X, targets, train_terminal, eps)
    S = check_size(n_steps, "n_steps", bytes_per_unit=16.0)  # the cost and the step of every step
    K = check_positive_int(segment, "segment")
    if rule in ("constant", "cosine"):
        if base_step is None:
            raise ValueError(f"base_step must be given for rule {rule!r}; got None")
        base_step = as_real(base_step, "base_step", minimum=0.0, strict=True)
        if rule == "constant":
            K = S
    c = as_real(c, "c", minimum=0.0, strict=True)
    max_step = as_real(max_step, "max_step", minimum=0.0, strict=True, allow_inf=True)
    weights, biases, W_out, b_out = state
    state = ([np.array(W, dtype=float) for W in weights], [np.array(b, dtype=float) for b in biases],
             None if W_out is None else np.array(W_out, dtype=float),
             None if b_out is None else np.array(b_out, dtype=float))
    one_layer_input = cost == "input" and len(state[0]) == 1
    costs, etas = [np.nan] * (S + 1), []
    status, s, n_eval, n_grad, seconds = 0, 0, 0, 0, 0.0
    while s < S:
        k = min(K, S - s)
        t0 = time.perf_counter()
        if rule == "constant":
            eta = base_step
        elif rule == "cosine":
            eta = cosine_step(s, S, base_step)  # > 0 for s < S
        elif rule == "curvature":
            lam, used = _lambda_max(state, X, targets, cost, mode, train_terminal, n_iter, eps, seed)
            # when even λ_max is not positive (a cost flat to round-off, or a maximum) the previous step is kept
            # (max_step at the first evaluation)
            eta = min(c / lam, max_step) if lam > 0 and np.isfinite(lam) else (etas[-1] if etas else max_step)
            n_grad += used
        elif one_layer_input:
            counts, scales = adapted_counts(state[0], state[1], X)
            eta = flow_step(counts, scales, X.shape[0], c=c, max_step=max_step)
        else:
            r = output_layer_rate(state[0], state[1], state[2], state[3], X, cost=cost)
            # a saturated softmax can make the bound vanish to round-off: keep the previous step then
            eta = min(c / r, max_step) if r > 0 else (etas[-1] if etas else max_step)
        seconds += time.perf_counter() - t0
        n_eval += rule != "constant" or s == 0
        if not np.isfinite(eta) or eta <= 0:
            raise ValueError(f"rule {rule!r} gave the step {eta!r} at step {s}: its rate or curvature estimate was not "
                             "positive at its first evaluation (no point truncated, or a flat cost) and max_step is "
                             "inf (pass a finite max_step)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tr = train(state[0], state[1], X, targets, mode=mode, cost=cost, lr=eta, n_steps=k, record_every=1,
                       W_out=state[2], b_out=state[3], train_terminal=train_terminal and state[2] is not None,
                       weight_lr_ratio=1.0, max_condition=np.inf)
        C = tr.cost.values
        steps = tr.step.values
        for st, cv in zip(steps, C):
            costs[s + int(st)] = float(cv)
        etas += [eta] * k
        status = int(tr.attrs["status"])
        state = _last_state(tr, state)
        if status != 0:
            break
        s += k
    return RuleRun(np.array(costs), np.array(etas), status, state, int(n_eval), int(n_grad), seconds)


# ------------------------------------------------------------------------------------------------ the idealised problem


@dataclass(frozen=True, repr=False)
class IdealisedProblem:
    """A one-layer adapted network W = ΛR, b = −Λθ_0, points X (N, M) and input-space targets (N, M)."""

    weights: list
    biases: list
    X: np.ndarray
    targets: np.ndarray
    scales: np.ndarray
    frame: np.ndarray

    @property
    def equilibrium(self) -> np.ndarray:
        """θ* = R mean(ỹ): the rest point once every point is truncated in every coordinate."""
        return self.frame @ self.targets.mean(axis=0)

    @property
    def final_limit(self) -> float:
        """2 / max_k r_k with n_k = N (every point truncated at the rest point): 2 min_k λ_k²."""
        return stability_limit(np.full(self.scales.size, self.X.shape[0]), self.scales, self.X.shape[0])

    def __repr__(self) -> str:
        return f"<IdealisedProblem M={self.X.shape[1]}, N={self.X.shape[0]}, scales {np.round(self.scales, 3)}>"


def idealised_problem(seed, *, M: int = 3, n_clusters: int = 3, n_per_cluster: int = 20, initial_share: float = 0.1,
                      margin: float = 0.5, scale_range=(0.5, 1.5), targets: str = "beyond") -> IdealisedProblem:
    """A random one-layer problem: Haar frame R, scales λ_k ~ U(scale_range), Q Gaussian clusters (centres
    N(0, 4·1), unit spread), and thresholds θ_0 at the ``initial_share`` quantile of each coordinate.

    ``targets="beyond"`` (S2): class targets with R ỹ_j beyond every point in every coordinate (by ``margin`` +
    U(0, 1)), so every point is truncated at the rest point θ* = R mean(ỹ). ``targets="interior"`` (S3/S5): R ỹ_j
    uniform in [lo + 0.2 w, lo + 1.2 w] per coordinate (lo the smallest coordinate of the data, w its range), so the
    rest point truncates part of the data, or sits on a point (a sliding rest point)."""
    if targets not in ("beyond", "interior"):
        raise ValueError(f"targets must be 'beyond' or 'interior'; got {targets!r}")
    M = check_positive_int(M, "M")
    check_memory(8.0 * M * M, f"M = {M}")  # the frame (M, M)
    Q = check_positive_int(n_clusters, "n_clusters")
    n = check_positive_int(n_per_cluster, "n_per_cluster")
    check_memory(8.0 * 4 * Q * n * M, f"n_clusters = {Q}, n_per_cluster = {n}, M = {M}")  # X, U, Y and X @ R
    share = as_real(initial_share, "initial_share", minimum=0.0, strict=True, maximum=1.0)
    margin = as_real(margin, "margin", minimum=0.0)
    if isinstance(scale_range, (str, bytes)) or not hasattr(scale_range, "__len__") or len(scale_range) != 2:
        raise ValueError(f"scale_range must be a pair (low, high) of positive numbers; got {scale_range!r}")
    lo, hi = (as_real(v, f"scale_range[{i}]", minimum=0.0, strict=True) for i, v in enumerate(scale_range))
    if hi < lo:
        raise ValueError(f"scale_range must satisfy low <= high; got {scale_range!r}")
    rng = np.random.default_rng(seed)
    R = haar_orthogonal(rng, M)
    lam = rng.uniform(lo, hi, size=M)
    centres = 2.0 * rng.standard_normal((Q, M))
    labels = np.repeat(np.arange(Q), n)
    X = centres[labels] + rng.standard_normal((Q * n, M))
    U = X @ R.T
    top = U.max(axis=0)
    if targets == "beyond":
        class_u = top + margin + rng.uniform(0.0, 1.0, size=(Q, M))  # R ỹ_j, beyond every point
    else:
        low = U.min(axis=0)
        class_u = low + (top - low) * rng.uniform(0.2, 1.2, size=(Q, M))
    Y = (class_u @ R)[labels]
    theta0 = np.quantile(U, share, axis=0)
    W = lam[:, None] * R
    return IdealisedProblem([W], [-lam * theta0], X, Y, lam, R)


def bias_descent(problem: IdealisedProblem, lrs, n_steps: int) -> np.ndarray:
    """Thresholds θ_s (n_steps + 1, E, M) of gradient descent on the biases for E steps η_e at once:
    θ_k ← θ_k − (η/(λ_k² N)) Σ_{i : u_ik ≤ θ_k} (θ_k − ŷ_ik), u = R x, ŷ = R ỹ (the one-layer input cost; ties
    u = θ count as truncated). Vectorised over steps η, points and coordinates; :func:`reluflow.train` runs the same
    iteration one η at a time."""
    lrs = as_real_array(lrs, "lrs", ndim=1)
    if lrs.size == 0 or np.any(lrs <= 0):
        raise ValueError(f"lrs must be a non-empty list of positive steps; got {lrs.tolist()}")
    problem = _as_problem(problem)
    n_steps = check_size(n_steps, "n_steps", bytes_per_unit=8.0 * lrs.size * problem.X.shape[1],
                         what=f"n_steps = {n_steps} of {lrs.size} steps in {problem.X.shape[1]} coordinates")
    U = problem.X @ problem.frame.T
    Yh = problem.targets @ problem.frame.T
    N = U.shape[0]
    theta0 = -problem.biases[0] / problem.scales
    gain = lrs[:, None] / (problem.scales ** 2 * N)  # (E, M)
    out = np.empty((n_steps + 1, lrs.size, U.shape[1]))
    theta = np.broadcast_to(theta0, (lrs.size, U.shape[1])).copy()
    out[0] = theta
    with np.errstate(over="ignore", invalid="ignore"):
        for s in range(n_steps):
            mask = U[None, :, :] <= theta[:, None, :]  # (E, N, M)
            g = np.einsum("enm,enm->em", mask, theta[:, None, :] - Yh[None])
            theta = theta - gain * g
            out[s + 1] = theta
    return out


def converges(problem: IdealisedProblem, lrs, *, n_steps: int = 1500, window: int = 150) -> np.ndarray:
    """For each step η in ``lrs``: whether gradient descent on the biases (:func:`bias_descent`) settles. After
    ``n_steps`` no coordinate may be dead (some u_ik ≤ θ_k) and the largest threshold change over the last
    ``window`` steps must be ≤ 1e-13 or below half that of the window before it. In a fixed pattern the change
    decays by |1 − η r| per step, so the test accepts η r < 1 + 2^(−1/window) (:func:`criterion_limit`)."""
    n_steps, window = _steps_and_window(n_steps, window)
    th = bias_descent(problem, lrs, n_steps)
    U = problem.X @ problem.frame.T
    with np.errstate(invalid="ignore"):
        alive = np.all(np.any(U[None, :, :] <= th[-1][:, None, :], axis=1), axis=1)
        d = np.abs(np.diff(th[-2 * window - 1:], axis=0)).max(axis=2)  # (2 window, E)
        last, before = d[window:].max(axis=0), d[:window].max(axis=0)
        ok = np.isfinite(th[-1]).all(axis=1) & alive & ((last <= 1e-13) | (last < 0.5 * before))
    return ok


def _steps_and_window(n_steps, window):
    """A number of descent steps and a window of the last steps, below n_steps/2 (two windows are compared)."""
    n_steps = check_positive_int(n_steps, "n_steps")
    window = check_positive_int(window, "window")
    if 2 * window >= n_steps:
        raise ValueError(f"window must be below n_steps/2 = {n_steps / 2}; got {window}")
    return n_steps, window


def _as_problem(problem) -> IdealisedProblem:
    if not isinstance(problem, IdealisedProblem):
        raise TypeError(f"problem must be an IdealisedProblem (schedules.idealised_problem); got "
                        f"{type(problem).__name__}")
    return problem


def criterion_limit(rate: float, window: int) -> float:
    """The largest η that :func:`converges` accepts in a fixed pattern of rate r: (1 + 2^(−1/window))/r
    (|1 − η r|^window = 1/2), which tends to the stability limit 2/r as the window grows."""
    return (1.0 + 0.5 ** (1.0 / check_positive_int(window, "window"))) / as_real(rate, "rate", minimum=0.0,
                                                                                   strict=True)


def observed_threshold(problem: IdealisedProblem, *, n_rounds: int = 3, n_grid: int = 16, n_steps: int = 1500,
                       window: int = 150, reference: float | None = None) -> float:
    """The divergence threshold of gradient descent on the biases: the bracket [0.25, 4] × ``reference`` (default
    :attr:`final_limit`) is cut into ``n_grid`` steps, evaluated at once by :func:`converges`, and narrowed to the
    first step that does not converge and the one below it, ``n_rounds`` times; returns the bracket's midpoint (NaN
    if even the smallest step does not converge, or the largest does)."""
    n_rounds = check_positive_int(n_rounds, "n_rounds")
    problem = _as_problem(problem)
    n_grid = check_size(n_grid, "n_grid", minimum=3, bytes_per_unit=float(problem.X.size),
                        what=f"n_grid = {n_grid} steps on {problem.X.shape[0]} points")  # the mask per step
    ref = problem.final_limit if reference is None else as_real(reference, "reference", minimum=0.0, strict=True)
    lo, hi = 0.25 * ref, 4.0 * ref
    for _ in range(n_rounds):
        grid = np.linspace(lo, hi, n_grid)
        ok = converges(problem, grid, n_steps=n_steps, window=window)
        if not ok[0] or ok[-1]:
            return float("nan")
        j = int(np.argmin(ok))  # the first step that does not converge
        lo, hi = grid[j - 1], grid[j]
    return 0.5 * (lo + hi)


def rest_pattern(problem: IdealisedProblem, *, lr: float = 0.02, n_steps: int = 20000,
                 window: int = 2000) -> tuple[np.ndarray, bool]:
    """(n, settled): the counts n_k at the end of small-step descent on the biases (:func:`bias_descent` with step
    ``lr``), and whether it settled there (:func:`converges`); a sliding rest point never settles."""
    lr = as_real(lr, "lr", minimum=0.0, strict=True)
    n_steps, window = _steps_and_window(n_steps, window)
    th = bias_descent(problem, [lr], n_steps)
    U = problem.X @ problem.frame.T
    n = np.count_nonzero(U <= th[-1, 0], axis=0)
    d = np.abs(np.diff(th[-2 * window - 1:, 0], axis=0)).max(axis=1)
    last, before = d[window:].max(), d[:window].max()
    alive = bool(np.all(n > 0))
    return n, bool(alive and (last <= 1e-13 or last < 0.5 * before))


def interior_point(point, rng_seed, *, seed: int, M: int, n_clusters: int, n_per_cluster: int, threshold_steps: int,
                   window: int, initial_share: float = 0.3) -> dict:
    """One problem with interior targets (:func:`idealised_problem` ``targets="interior"``, SeedSequence([seed, 1000 +
    run])): whether small-step descent settles (:func:`rest_pattern`), the predicted threshold 2/max_k r_k at its
    rest pattern, and the observed one (:func:`observed_threshold`, NaN when it does not settle)."""
    run = int(point["run"])
    p = idealised_problem(np.random.SeedSequence([seed, 1000 + run]), M=M, n_clusters=n_clusters,
                          n_per_cluster=n_per_cluster, initial_share=initial_share, targets="interior")
    n, settled = rest_pattern(p)
    pred = stability_limit(n, p.scales, p.X.shape[0])
    obs = observed_threshold(p, n_steps=threshold_steps, window=window, reference=pred) if settled else float("nan")
    return {"settled": int(settled), "predicted_threshold": pred, "observed_threshold": obs,
            "criterion_threshold": criterion_limit(2.0 / pred, window), "rest_counts": n}


def contraction_factors(problem: IdealisedProblem, lr: float, *, offset: float = 0.05, n_steps: int = 3) -> np.ndarray:
    """Measured per-step factors (θ_{s+1} − θ*)/(θ_s − θ*) (n_steps, M) of gradient descent on the biases started at
    θ* − ``offset``·1 (every point truncated: the final pattern), with θ* = R mean(ỹ).

    A factor is NaN once its error θ_s − θ* has fallen to ``ROUNDOFF_FLOOR`` (1 + |θ*|) = 1e-6 (1 + |θ*|): θ carries
    round-off of ~10 ulps of |θ|, so a factor from a smaller error is off by more than ~1e-8 (a factor near 0, as at
    η ≈ 1/r_k, gets there in two steps: notebook 12, fast profile, seed 210, measured 1.3e-7 from the closed form
    at the third step, from an error of 2.9e-8); the first factor is always measured, from the error ``offset``."""
    lr = as_real(lr, "lr", minimum=0.0, strict=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    theta = problem.equilibrium - as_real(offset, "offset", minimum=0.0, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tr = train(problem.weights, [-problem.scales * theta], problem.X, problem.targets, mode="biases", cost="input",
                   lr=lr, n_steps=n_steps, max_condition=np.inf)
    e = tr.thresholds.values[:, 0, :] - problem.equilibrium
    floor = ROUNDOFF_FLOOR * (1.0 + np.abs(problem.equilibrium))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(e[:-1]) > floor, e[1:] / e[:-1], np.nan)


#: :func:`contraction_factors`: errors below this share of (1 + |θ*|) are too close to round-off to give a factor.
ROUNDOFF_FLOOR = 1e-6


# ------------------------------------------------------------------------------------------------ sweep points


def steps_to_target(cost, target: float) -> int:
    """The first step s with C_s ≤ target, or −1 if none (NaN and +inf, a run after its stop or divergence, never
    reach it)."""
    cost = as_real_array(cost, "cost", ndim=1, finite=False)
    if cost.size == 0 or np.any(cost == -np.inf):
        raise ValueError(f"cost must be a non-empty 1-D array of costs per step (NaN or +inf after a stop); got "
                         f"shape {cost.shape}{', with -inf' if cost.size else ''}")
    target = as_real(target, "target")
    hit = np.flatnonzero(cost <= target)
    return int(hit[0]) if hit.size else -1


def idealised_point(point, rng_seed, *, seed: int, M: int, n_clusters: int, n_per_cluster: int, grid,
                    n_steps: int, threshold_steps: int, window: int, target_share: float, power_iterations: int,
                    cosine_every: int = 10) -> dict:
    """One idealised problem (:func:`idealised_problem` of SeedSequence([seed, run])): its observed and predicted
    divergence thresholds, and every rule's run (the constants of ``grid``, cosine decay from each, the curvature
    rule and the truncation schedule, both recomputed every step with c = 1). The target is an excess cost
    C − C* ≤ ``target_share``·(C_0 − C*), C* the rest point's cost. For :func:`reluflow.sweep`."""
    run = int(point["run"])
    p = idealised_problem(np.random.SeedSequence([seed, run]), M=M, n_clusters=n_clusters, n_per_cluster=n_per_cluster)
    out = {"observed_threshold": observed_threshold(p, n_steps=threshold_steps, window=window),
           "predicted_threshold": p.final_limit,
           "criterion_threshold": criterion_limit(2.0 / p.final_limit, window)}
    Cstar = 0.5 * float(np.mean(np.sum((p.targets - p.targets.mean(axis=0)) ** 2, axis=1)))
    state = (p.weights, p.biases, None, None)
    kw = dict(n_steps=n_steps, cost="input", mode="biases", train_terminal=False)
    runs = {}
    for eta in grid:
        runs[f"constant {eta:g}"] = run_rule("constant", state, p.X, p.targets, base_step=eta, **kw)
        runs[f"cosine {eta:g}"] = run_rule("cosine", state, p.X, p.targets, base_step=eta, segment=cosine_every, **kw)
    runs["curvature"] = run_rule("curvature", state, p.X, p.targets, segment=1, c=1.0, n_iter=power_iterations,
                                 seed=run, **kw)
    runs["truncation"] = run_rule("truncation", state, p.X, p.targets, segment=1, c=1.0, **kw)
    names = list(runs)
    excess = np.stack([runs[n].cost - Cstar for n in names])
    target = target_share * (excess[:, 0])
    out.update({
        "excess_cost": excess,
        "step_size": np.stack([runs[n].steps for n in names]),
        "steps_to_target": np.array([steps_to_target(excess[i], target[i]) for i in range(len(names))]),
        "diverged": np.array([runs[n].diverged for n in names], dtype=np.int8),
        "gradient_evaluations": np.array([runs[n].gradient_evaluations for n in names]),
        "rule_evaluations": np.array([runs[n].n_evaluations for n in names]),
    })
    return out


def idealised_rule_names(grid) -> list:
    """The rule labels of :func:`idealised_point`, in its order."""
    grid = as_real_array(grid, "grid", ndim=1)
    if grid.size == 0 or np.any(grid <= 0):
        raise ValueError(f"grid must be a non-empty 1-D array of positive constant steps; got {grid.tolist()}")
    names = []
    for eta in grid:
        names += [f"constant {eta:g}", f"cosine {eta:g}"]
    return names + ["curvature", "truncation"]


def accuracy(state, X, labels) -> float:
    """The share of points whose output argmax is their label (a plain forward pass)."""
    weights, biases, W_out, b_out = as_network_state(state, terminal_required=True)
    h = as_points(X, "X", dim=weights[0].shape[1])
    labels = as_labels(labels, "labels", rows=h.shape[0])
    for W, b in zip(weights, biases):
        h = np.maximum(h @ W.T + b, 0.0)
    z = h @ W_out.T + b_out
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.argmax(np.nan_to_num(z, nan=-np.inf), axis=1) == labels)) if np.isfinite(z).all() \
            else float("nan")


def digits_point(point, rng_seed, *, seed: int, split, hidden, n_steps: int, target_cost: float,
                 base_step: float | None = None, curvature_every: int = 10, truncation_every: int = 10,
                 power_iterations: int = 10, cosine_every: int = 10) -> dict:
    """One run on a real split: He initialisation from SeedSequence([seed, run]) (the same for every rule), the
    rule ``point["rule"]`` ("constant", "cosine", "curvature" with c = 1, "truncation" with c = 1), the step
    ``point["step"]`` for a constant (else ``base_step``); cross-entropy, full batch, every parameter trained.
    For :func:`reluflow.sweep`."""
    run, rule = int(point["run"]), str(point["rule"])
    state = he_network([split.n_features, *hidden], split.n_classes, seed=np.random.SeedSequence([seed, run]))
    eta = float(point.get("step", base_step if base_step is not None else 0.0))
    kw = dict(n_steps=n_steps, cost="cross_entropy", mode="full", train_terminal=True)
    if rule == "constant":
        r = run_rule("constant", state, split.X_train, split.y_train, base_step=eta, **kw)
    elif rule == "cosine":
        r = run_rule("cosine", state, split.X_train, split.y_train, base_step=eta, segment=cosine_every, **kw)
    elif rule == "curvature":
        r = run_rule("curvature", state, split.X_train, split.y_train, segment=curvature_every, c=1.0,
                     n_iter=power_iterations, seed=run, **kw)
    else:
        r = run_rule("truncation", state, split.X_train, split.y_train, segment=truncation_every, c=1.0, **kw)
    return {"cost": r.cost, "step_size": np.concatenate([r.steps, np.full(n_steps - r.steps.size, np.nan)]),
            "steps_to_target": steps_to_target(r.cost, target_cost), "test_accuracy": accuracy(r.state,
                                                                                                   split.X_test,
                                                                                                   split.y_test),
            "diverged": int(r.diverged), "gradient_evaluations": r.gradient_evaluations,
            "rule_evaluations": r.n_evaluations}


# ------------------------------------------------------------------------------------------------ notebook 12's tables


def _steps_table(steps_to_target, name: str = "steps_to_target") -> np.ndarray:
    """A (runs, rules) table of first steps at target: integers >= -1 (-1: never reached)."""
    steps = as_real_array(steps_to_target, name, ndim=2)
    if steps.shape[0] == 0 or steps.shape[1] == 0:
        raise ValueError(f"{name} must have at least one run and one rule (shape (runs, rules)); got shape "
                         f"{steps.shape}")
    bad = (steps < -1) | (steps != np.round(steps))
    if np.any(bad):
        raise ValueError(f"{name} must hold integers >= -1 (a step, or -1: target never reached); got "
                         f"{steps[bad][:5].tolist()}")
    return steps


def _count_table(value, name: str, shape: tuple, *, maximum: float = np.inf) -> np.ndarray:
    """A (runs, rules) table of the shape of ``steps_to_target`` holding integers in [0, ``maximum``]."""
    arr = as_real_array(value, name, ndim=2)
    if arr.shape != shape:
        raise ValueError(f"{name} must have the shape of steps_to_target, {shape} (runs, rules); got {arr.shape}")
    bad = (arr < 0) | (arr > maximum) | (arr != np.round(arr))
    if np.any(bad):
        expected = "counts (integers >= 0)" if maximum == np.inf else f"integers in [0, {maximum:g}]"
        raise ValueError(f"{name} must hold {expected}; got {arr[bad][:5].tolist()}")
    return arr


def best_constant_index(steps_to_target) -> int:
    """The column j of the best constant step: the most runs with s_j ≥ 0 (target reached), then the fewest mean
    steps over those runs, then the first column.

    Parameters
    ----------
    steps_to_target : array_like, shape (runs, steps)
        The first step at target of each run (row) with each constant step of a grid (column), −1 where the run
        never reached it (:func:`steps_to_target`).

    Returns
    -------
    int
        The column of the best step of the grid; 0 when no step reaches the target on any run (all columns tie).
    """
    steps = _steps_table(steps_to_target)
    hit = steps >= 0
    reached = hit.sum(axis=0)
    total = np.where(hit, steps, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_steps = np.where(reached > 0, total / np.maximum(reached, 1), np.inf)
    return int(np.lexsort((mean_steps, -reached))[0])  # lexsort is stable: ties keep the first column


def log_excess_ratio(excess_cost, *, floor: float = 1e-16) -> np.ndarray:
    """log10 max((C_S − C*)/(C_0 − C*), floor): how far a run's excess cost fell from its start to its last step.

    Parameters
    ----------
    excess_cost : array_like, shape (..., steps + 1)
        The excess cost C_s − C* along each run (steps on the last axis); NaN after a stop, and a final excess at
        or below 0 (round-off at the rest point) counts as ``floor``.
    floor : float, optional
        The smallest ratio reported (default 1e-16, float64's round-off relative to the initial excess).

    Returns
    -------
    numpy.ndarray, shape (...)
        log10 of the ratio of the final to the initial excess, at least log10(floor); NaN where the final excess
        is NaN.
    """
    excess = as_real_array(excess_cost, "excess_cost", finite=False)
    if excess.ndim == 0 or excess.shape[-1] < 2:
        raise ValueError(f"excess_cost must have the steps on its last axis, at least two (the initial and the "
                         f"final excess); got shape {excess.shape}")
    first = excess[..., 0]
    if not np.all(np.isfinite(first) & (first > 0)):
        bad = first[~(np.isfinite(first) & (first > 0))]
        raise ValueError(f"excess_cost[..., 0] (the initial excess C_0 - C*) must be positive and finite; got "
                         f"{bad[:5].tolist()}")
    floor = as_real(floor, "floor", minimum=0.0, strict=True)
    return np.log10(np.maximum(excess[..., -1] / first, floor))


def rule_summary_rows(steps_to_target, final, diverged, gradient_evaluations, rule_evaluations, names,
                      final_format: str) -> list[str]:
    """One text row per rule of notebook 12's tables: its name, the mean steps to target over the runs that reached
    it with the 95 % interval (:func:`reluflow.training.practice.mean_interval`), the runs that reached it, the mean
    and interval of a final measure, the runs that diverged, and the gradient evaluations per rule evaluation.

    Parameters
    ----------
    steps_to_target : array_like, shape (runs, rules)
        The first step at target of each run, −1 where it was never reached (:func:`steps_to_target`).
    final : array_like, shape (runs, rules)
        The final measure of each run (log10 of the excess reduction, a test accuracy); non-finite entries are
        left out of its mean.
    diverged : array_like, shape (runs, rules)
        1 where the run diverged (:attr:`RuleRun.diverged`), else 0.
    gradient_evaluations, rule_evaluations : array_like, shape (runs, rules)
        The gradient evaluations the rule took and its number of evaluations (non-negative integers); the last
        column is their ratio of sums, with at least one rule evaluation in the denominator.
    names : sequence of str, length rules
        The rules' names (the first column, 22 characters wide).
    final_format : str
        A :meth:`str.format` template for the final measure's (mean, low, high), e.g. ``"{:.3f} [{:.3f}, {:.3f}]"``.

    Returns
    -------
    list of str
        ``"{name:<22s} {mean:6.1f} [{low:6.1f}, {high:6.1f}]  {reached}/{runs}   {final}   {diverged}/{runs}
        {ratio:5.0f}"`` for each rule (with ``nan`` steps when no run reached the target).
    """
    steps = _steps_table(steps_to_target)
    shape = steps.shape
    final = as_real_array(final, "final", ndim=2, finite=False)
    if final.shape != shape:
        raise ValueError(f"final must have the shape of steps_to_target, {shape} (runs, rules); got {final.shape}")
    div = _count_table(diverged, "diverged", shape, maximum=1)
    grads = _count_table(gradient_evaluations, "gradient_evaluations", shape)
    evals = _count_table(rule_evaluations, "rule_evaluations", shape)
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a sequence of str, one per rule; got {names!r}")
    names = list(names)
    if len(names) != shape[1]:
        raise ValueError(f"names must have one entry per rule (column of steps_to_target), {shape[1]}; got "
                         f"{len(names)}")
    if not isinstance(final_format, str):
        raise TypeError(f"final_format must be a str.format template with three fields (mean, low, high); got "
                        f"{type(final_format).__name__} {final_format!r}")
    try:
        final_format.format(0.0, 0.0, 0.0)
        n_fields = sum(field is not None for _, field, _, _ in string.Formatter().parse(final_format))
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"final_format must be a str.format template with three fields (mean, low, high); got "
                         f"{final_format!r} ({type(exc).__name__}: {exc})") from None
    if n_fields != 3:
        raise ValueError(f"final_format must be a str.format template with three fields (mean, low, high); got "
                         f"{final_format!r} with {n_fields}")
    runs = shape[0]
    rows = []
    for i, name in enumerate(names):
        s = steps[:, i]
        hit = s >= 0
        ms = mean_interval(s[hit]) if hit.any() else (np.nan,) * 3
        mf = mean_interval(final[:, i])
        ratio = grads[:, i].sum() / max(evals[:, i].sum(), 1)
        rows.append(f"{name:<22s} {ms[0]:6.1f} [{ms[1]:6.1f}, {ms[2]:6.1f}]  {int(hit.sum())}/{runs}   "
                    + final_format.format(*mf) + f"   {int(div[:, i].sum())}/{runs}   {ratio:5.0f}")
    return rows


def paired_step_difference(steps_to_target, a: int, b: int) -> tuple[tuple[float, float, float], int]:
    """((mean, low, high), n): the steps to target of rule ``a`` minus those of rule ``b``, paired by run, over the
    n runs where both reached the target, with the 95 % interval of :func:`reluflow.training.practice.mean_interval`
    (NaN when no run qualifies).

    Parameters
    ----------
    steps_to_target : array_like, shape (runs, rules)
        The first step at target of each run, −1 where it was never reached (:func:`steps_to_target`).
    a, b : int
        The columns of the two rules.
    """
    steps = _steps_table(steps_to_target)
    n_rules = steps.shape[1]
    for value, name in ((a, "a"), (b, "b")):
        if check_positive_int(value, name, minimum=0) >= n_rules:
            raise ValueError(f"{name} must be a column of steps_to_target, in [0, {n_rules - 1}]; got {value}")
    both = (steps[:, a] >= 0) & (steps[:, b] >= 0)
    return mean_interval(steps[both, a] - steps[both, b]), int(both.sum())


# ------------------------------------------------------------------------------------------------ notebook 12's result


def step_size_result(ideal, interior, digits, consts, demo, *, runs, M: int, ideal_rules, digits_grid,
                     best_ideal: float, best_digits: float) -> xr.Dataset:
    """Notebook 12's result Dataset, from the sweeps it ran: ``ideal`` (:func:`idealised_point` over runs),
    ``interior`` (:func:`interior_point`), ``digits`` (the best constant, cosine, curvature and truncation rules
    on the digits, dims run × rule), ``consts`` (every constant step on the digits) and ``demo``
    (:func:`reluflow.training.diagnosis.demonstration_point` over run × kind × fixed, with a ``flag`` dimension).

    ``runs`` are the seed offsets, ``M`` the idealised dimension, ``ideal_rules`` the names of
    :func:`idealised_rule_names`, ``digits_grid`` the constant steps tried on the digits, and ``best_ideal`` /
    ``best_digits`` the best constant steps (stored as attributes). Step counts are read off the arrays."""
    from reluflow.training.diagnosis import FLAG_NAMES, KINDS

    ideal_steps = ideal.excess_cost.shape[-1] - 1
    digits_steps = digits.cost.shape[-1] - 1
    v = variable
    data = {
        "observed_threshold": v(("run",), ideal.observed_threshold.values, "observed divergence threshold of descent"),
        "predicted_threshold": v(("run",), ideal.predicted_threshold.values, "predicted threshold 2/max_k r_k"),
        "criterion_threshold": v(("run",), ideal.criterion_threshold.values, "limit of the convergence test"),
        "interior_settled": v(("interior_run",), interior.settled.values, "1 if small-step descent settles"),
        "interior_predicted_threshold": v(("interior_run",), interior.predicted_threshold.values,
                                          "predicted threshold 2/max_k r_k at the rest pattern (interior targets)"),
        "interior_observed_threshold": v(("interior_run",), interior.observed_threshold.values,
                                         "observed divergence threshold (interior targets; NaN: not settled)"),
        "interior_rest_counts": v(("interior_run", "coordinate"), interior.rest_counts.values,
                                  "points truncated at the rest pattern"),
        "ideal_excess_cost": v(("run", "ideal_rule", "ideal_step"), ideal.excess_cost.values, "C - C* (idealised)"),
        "ideal_step_size": v(("run", "ideal_rule", "ideal_update"), ideal.step_size.values, "step size used"),
        "ideal_steps_to_target": v(("run", "ideal_rule"), ideal.steps_to_target.values,
                                   "first step with the excess cost at target (-1: never)"),
        "ideal_diverged": v(("run", "ideal_rule"), ideal.diverged.values, "1 if the run diverged"),
        "digits_cost": v(("run", "digits_rule", "digits_step"), digits.cost.values, "train cross-entropy", "nats"),
        "digits_step_size": v(("run", "digits_rule", "digits_update"), digits.step_size.values, "step size used"),
        "digits_steps_to_target": v(("run", "digits_rule"), digits.steps_to_target.values,
                                    "first step with the train cost at target (-1: never)"),
        "digits_test_accuracy": v(("run", "digits_rule"), digits.test_accuracy.values, "final test accuracy"),
        "digits_diverged": v(("run", "digits_rule"), digits.diverged.values, "1 if the run diverged"),
        "digits_constant_steps_to_target": v(("run", "digits_grid_step"), consts.steps_to_target.values,
                                             "first step at target for each constant step (-1: never)"),
        "digits_constant_test_accuracy": v(("run", "digits_grid_step"), consts.test_accuracy.values,
                                           "final test accuracy for each constant step"),
        "flag_fired": v(("diag_run", "kind", "fixed", "flag"), demo.fired.values, "1 if the flag fired"),
        "flag_value": v(("diag_run", "kind", "fixed", "flag"), demo.value.values, "the number behind the flag"),
        "expected_fired": v(("diag_run", "kind", "fixed"), demo.expected_fired.values,
                            "1 if every flag expected for the kind fired (-1: none expected)"),
        "diagnosed_healthy": v(("diag_run", "kind", "fixed"), demo.healthy.values, "1 if no flag fired"),
        "diag_test_accuracy": v(("diag_run", "kind", "fixed"), demo.test_accuracy.values, "final test accuracy"),
    }
    coords = {
        "run": v(("run",), np.array(runs), "seed offset of the problem or initialisation"),
        "interior_run": v(("interior_run",), np.arange(interior.sizes["run"]), "interior-target problem"),
        "coordinate": v(("coordinate",), np.arange(M), "threshold coordinate k"),
        "ideal_rule": v(("ideal_rule",), ideal_rules, "step-size rule (idealised)"),
        "ideal_step": v(("ideal_step",), np.arange(ideal_steps + 1), "gradient step"),
        "ideal_update": v(("ideal_update",), np.arange(ideal_steps), "gradient step"),
        "digits_rule": v(("digits_rule",), list(digits.rule.values), "step-size rule (digits)"),
        "digits_step": v(("digits_step",), np.arange(digits_steps + 1), "gradient step"),
        "digits_update": v(("digits_update",), np.arange(digits_steps), "gradient step"),
        "digits_grid_step": v(("digits_grid_step",), np.array(digits_grid), "constant step size"),
        "diag_run": v(("diag_run",), np.arange(demo.sizes["run"]), "run of the diagnosis demo"),
        "kind": v(("kind",), list(KINDS), "kind of run"),
        "fixed": v(("fixed",), np.array([0, 1]), "1 after the fix (healthy: continued)"),
        "flag": v(("flag",), list(FLAG_NAMES), "diagnosis flag"),
    }
    return xr.Dataset(data, coords=coords,
                      attrs={"best_constant_idealised": float(best_ideal), "best_constant_digits": float(best_digits)})

"""Gradient descent on the plain ReLU network, with hand-written backpropagation (THEORY.md §3, §4.5).

Points are rows (``X.shape == (N, M)``); weights are (out, in). The hidden layers are square,
x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ); an optional terminal layer gives x^(L+1) = W_out x^(L) + b_out ∈ R^Q.
Each point carries a weight w_i (uniform w_i = 1/N by default, which gives the 1/(2N) of THEORY.md).

Map from formula to function:

- C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|²,  x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L))   → ``cost="input"``
- C_out = ½ Σ_i w_i |W_out x_i^(L) + b_out − y_i|²                           → ``cost="output"``
- ∇C over the layer parameters (W_ℓ, b_ℓ, W_out, b_out), by backpropagation    → :func:`backprop_gradient`
- ∇_c C = (∂p/∂c)ᵀ ∇_p C over the cumulative parameters c = (W^(ℓ), b^(ℓ)),
  and ∂C/∂λ_{ℓ,k} = ⟨row k of ∇_{W^(ℓ)} C, R_{ℓ,k}⟩ for W^(ℓ) = Λ_ℓ R_ℓ          → :func:`backprop_cumulative_gradient`
- p ← p − η_p ∇_p C, recorded every k steps as an xarray Dataset               → :func:`train`

The four modes of :func:`train` (η is the bias learning rate ``lr``, ρ the ``weight_lr_ratio``):

- ``"biases"``: layer biases b_ℓ ← b_ℓ − η ∂C/∂b_ℓ; weights frozen (the flow of §4.5 with kernel K).
- ``"adapted"``: W^(ℓ) = Λ_ℓ R_ℓ with the frames R_ℓ frozen; λ_ℓ ← λ_ℓ − ρη ∂C/∂λ_ℓ and
  b^(ℓ) ← b^(ℓ) − η ∇_{b^(ℓ)} C (ρ = 1: the scale-and-bias flow of §4.3; ρ = 0: the bias flow of §4.2).
- ``"full"``: W_ℓ ← W_ℓ − ρη ∂C/∂W_ℓ and b_ℓ ← b_ℓ − η ∂C/∂b_ℓ, unconstrained.
- ``"cumulative"``: W^(ℓ) ← W^(ℓ) − ρη ∇_{W^(ℓ)} C and b^(ℓ) ← b^(ℓ) − η ∇_{b^(ℓ)} C.

With ``train_terminal=True`` (output cost only) the terminal layer is trained too: b_out with rate η
in every mode, and W_out with rate ρη in every mode except ``"biases"``. The ``time`` coordinate
of a trajectory is t = step·η, so that gradient descent approximates the gradient flow
∂_t b = −∇_b C, ∂_t W = −ρ ∇_W C.

Ties: a pre-activation exactly 0 counts as truncated (σ'(0) = 0), as in
:func:`reluflow.truncation_pattern`.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.results.schema import STATUS_CODES, make_dataset
from reluflow.theory.adapted import adaptedness, decompose_adapted
from reluflow.theory.kernels import cumulative_pass, forward_pass, layer_pass
from reluflow.theory.truncation import truncation_pattern
from reluflow.validation import (
    MAX_CONDITION,
    as_nonnegative_float,
    as_point_weights,
    as_points,
    as_positive_float,
    as_targets,
    as_terminal_layer,
    as_tolerance,
    check_memory,
    check_positive_int,
    validate_layers,
)

__all__ = ["MODES", "COSTS", "CostGradient", "backprop_gradient", "backprop_cumulative_gradient", "progress_enabled",
           "train"]

#: Training modes of :func:`train`.
MODES = ("biases", "adapted", "full", "cumulative")
#: Costs: the Euclidean cost in the input layer, and the standard output cost.
COSTS = ("input", "output")

#: Runs with at least this many steps show a progress bar when stderr is a terminal.
PROGRESS_MIN_STEPS = 2000


@dataclass(frozen=True, repr=False)
class CostGradient:
    """A cost value and its gradient, in layer or in cumulative coordinates.

    ``weights`` (L, M, M) and ``biases`` (L, M) are ∂C/∂W_ℓ, ∂C/∂b_ℓ (``coordinates == "layer"``) or
    ∇_{W^(ℓ)} C, ∇_{b^(ℓ)} C (``coordinates == "cumulative"``); ``W_out`` (Q, M) and ``b_out`` (Q,) are
    ∂C/∂W_out, ∂C/∂b_out (None without a terminal layer); ``scales`` (L, M) is ∂C/∂λ_ℓ at fixed row
    directions R_ℓ = Λ_ℓ^-1 W^(ℓ) (cumulative coordinates only).
    """

    cost: float
    weights: np.ndarray
    biases: np.ndarray
    W_out: np.ndarray | None
    b_out: np.ndarray | None
    scales: np.ndarray | None
    coordinates: str

    def __repr__(self) -> str:
        L, M = self.biases.shape
        return f"<CostGradient in {self.coordinates} coordinates, L={L}, M={M}, cost={self.cost:.6g}>"


# ---------------------------------------------------------------------------------------------
# The numerical core: plain arrays, no validation (callers validate at the boundary).
# Ws (L, M, M), bs (L, M), X (N, M), Y (N, M) or (N, Q), w (N,).


def _backprop(Ws, bs, X, Y, w, cost, W_out, b_out, Wc=None, bc=None):
    """Cost and its gradient over the layer parameters, by reverse-mode differentiation.

    Input cost: with v_i = (W^(L))^-T w_i r_i, the adjoint of x^(L) is v, and C depends directly on
    the cumulative W^(L), b^(L) with adjoints −Σ v_i x_i^(τ,L)ᵀ and −Σ v_i; these flow back to the
    layer parameters through W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ.
    """
    Z, A = forward_pass(Ws, bs, X)
    L = Ws.shape[0]
    gW = np.empty_like(Ws)
    gb = np.empty_like(bs)
    gWo = gbo = None
    AW = Ab = None
    if cost == "input":
        if Wc is None:
            Wc, bc = cumulative_pass(Ws, bs)
        # one small (M, M) inverse, then matrix products over the N points: much faster than N-column
        # triangular solves, and as accurate for the condition numbers we accept (≤ max_condition)
        Winv = np.linalg.inv(Wc[-1])
        xt = (A[-1] - bc[-1]) @ Winv.T
        r = xt - Y
        rbar = w[:, None] * r
        xbar = rbar @ Winv  # rows of (W^(L))^-T w r
        AW = -(xbar.T @ xt)
        Ab = -xbar.sum(axis=0)
    else:
        r = A[-1] @ W_out.T + b_out - Y
        rbar = w[:, None] * r
        gWo = rbar.T @ A[-1]
        gbo = rbar.sum(axis=0)
        xbar = rbar @ W_out
    C = 0.5 * float(np.dot(w, np.einsum("ij,ij->i", r, r)))
    for l in range(L - 1, -1, -1):
        zbar = xbar * (Z[l] > 0.0)  # σ'(z) = 1[z > 0]: ties count as truncated
        gW[l] = zbar.T @ A[l]
        gb[l] = zbar.sum(axis=0)
        if AW is not None:
            if l > 0:
                gW[l] += AW @ Wc[l - 1].T + np.outer(Ab, bc[l - 1])
            else:
                gW[l] += AW
            gb[l] += Ab
            AW = Ws[l].T @ AW
            Ab = Ws[l].T @ Ab
        if l > 0:
            xbar = zbar @ Ws[l]
    return C, gW, gb, gWo, gbo


def _pullback_to_cumulative(Wc, bc, Ws, gW, gb):
    """∇_c C = (∂p/∂c)ᵀ ∇_p C through W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)."""
    GW = np.zeros_like(Wc)
    Gb = np.zeros_like(bc)
    for l in range(Wc.shape[0]):
        Gb[l] += gb[l]
        if l == 0:
            GW[0] += gW[0]
            continue
        Wbar = gW[l] - np.outer(gb[l], bc[l - 1])  # total adjoint of W_ℓ
        Gb[l - 1] -= Ws[l].T @ gb[l]
        T = np.linalg.solve(Wc[l - 1], Wbar.T).T  # W̄_ℓ (W^(ℓ-1))^-T
        GW[l] += T
        GW[l - 1] -= Ws[l].T @ T
    return GW, Gb


def _cumulative_gradient(Wc, bc, X, Y, w, cost, W_out, b_out):
    Ws, bs = layer_pass(Wc, bc)
    C, gW, gb, gWo, gbo = _backprop(Ws, bs, X, Y, w, cost, W_out, b_out, Wc, bc)
    GW, Gb = _pullback_to_cumulative(Wc, bc, Ws, gW, gb)
    return C, GW, Gb, gWo, gbo


# ---------------------------------------------------------------------------------------------
# Validation shared by the public functions.


def _validate_problem(weights, biases, X, targets, cost, W_out, b_out, point_weights, max_condition, prefix=""):
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}; got {cost!r}")
    Wl, bl = validate_layers(weights, biases, square=True, max_condition=max_condition, prefix=prefix)
    Ws, bs = np.stack(Wl), np.stack(bl)
    M = Ws.shape[1]
    X = as_points(X, "X", dim=M)
    N = X.shape[0]
    if cost == "output" and W_out is None and b_out is None:
        raise ValueError("cost='output' needs a terminal layer: pass W_out (Q, M) and b_out (Q,); got W_out=None")
    W_out, b_out = as_terminal_layer(W_out, b_out, M)
    dim = M if cost == "input" else W_out.shape[0]
    Y = as_targets(targets, N, dim, f"targets for cost={cost!r}")
    return Ws, bs, X, Y, as_point_weights(point_weights, N), W_out, b_out


# ---------------------------------------------------------------------------------------------
# Public gradients.


def backprop_gradient(weights, biases, X, targets, *, cost: str = "input", W_out=None, b_out=None,
                   point_weights=None, max_condition: float = MAX_CONDITION) -> CostGradient:
    """∂C/∂W_ℓ, ∂C/∂b_ℓ (and ∂C/∂W_out, ∂C/∂b_out) by backpropagation, for C = C_in or C_out.

    C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² with x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)); C_out =
    ½ Σ_i w_i |W_out x_i^(L) + b_out − y_i|². ``weights, biases`` are the L square layers; X (N, M);
    targets (N, M) for the input cost, (N, Q) for the output cost; point_weights w (N,), default 1/N.
    """
    Ws, bs, X, Y, w, W_out, b_out = _validate_problem(weights, biases, X, targets, cost, W_out, b_out,
                                                      point_weights, max_condition)
    C, gW, gb, gWo, gbo = _backprop(Ws, bs, X, Y, w, cost, W_out, b_out)
    return CostGradient(C, gW, gb, gWo, gbo, None, "layer")


def backprop_cumulative_gradient(Wc, bc, X, targets, *, cost: str = "input", W_out=None, b_out=None,
                                  point_weights=None, max_condition: float = MAX_CONDITION) -> CostGradient:
    """∇_{W^(ℓ)} C, ∇_{b^(ℓ)} C = (∂p/∂c)ᵀ ∇_p C, and ∂C/∂λ_{ℓ,k} = Σ_j (∇_{W^(ℓ)} C)_{kj} R_{ℓ,kj}.

    The gradient over the cumulative parameters c = (W^(ℓ), b^(ℓ)), obtained from the backpropagated
    layer gradient ∇_p C by the adjoint of p(c): W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1).
    ``scales`` is the derivative along the row norms λ_ℓ at fixed row directions R_ℓ = Λ_ℓ^-1 W^(ℓ).
    Arguments as in :func:`backprop_gradient`, with cumulative parameters in place of layer parameters.
    """
    Wc, bc, X, Y, w, W_out, b_out = _validate_problem(Wc, bc, X, targets, cost, W_out, b_out, point_weights,
                                                      max_condition, prefix="cumulative ")
    C, GW, Gb, gWo, gbo = _cumulative_gradient(Wc, bc, X, Y, w, cost, W_out, b_out)
    R = Wc / np.linalg.norm(Wc, axis=2, keepdims=True)
    return CostGradient(C, GW, Gb, gWo, gbo, np.einsum("lkj,lkj->lk", GW, R), "cumulative")


# ---------------------------------------------------------------------------------------------
# Training.


def progress_enabled(progress: bool | None, n_steps: int) -> bool:
    """Whether :func:`train` shows a progress bar: ``progress`` if given, else ``RELUFLOW_PROGRESS=0|1`` if set,
    else True for runs of at least :data:`PROGRESS_MIN_STEPS` steps when stderr is a terminal."""
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None (automatic); got {progress!r}")
        return progress
    env = os.environ.get("RELUFLOW_PROGRESS")
    if env is not None:
        return env.strip() not in ("", "0", "false", "False", "no")
    isatty = getattr(sys.stderr, "isatty", None)
    return n_steps >= PROGRESS_MIN_STEPS and bool(isatty and isatty())


class _Recorder:
    """Collects the recorded quantities of a trajectory, one entry per recorded step."""

    def __init__(self, X, max_condition):
        self.X = X
        self.max_condition = max_condition
        self.steps, self.costs, self.Wc, self.bc, self.counts, self.adapt = [], [], [], [], [], []
        self.Wo, self.bo = [], []

    def record(self, step, C, Wc, bc, W_out, b_out):
        """Append one state; raises ValueError if the cumulative weights are ill-conditioned."""
        T = truncation_pattern(list(Wc), list(bc), self.X, max_condition=self.max_condition)
        self.steps.append(step)
        self.costs.append(C)
        self.Wc.append(Wc.copy())
        self.bc.append(bc.copy())
        self.counts.append(T.sum(axis=1))
        self.adapt.append(np.atleast_1d(adaptedness(Wc)))
        if W_out is not None:
            self.Wo.append(W_out.copy())
            self.bo.append(b_out.copy())


def _trajectory_dataset(rec: _Recorder, lr, status, message, attrs):
    """The recorded trajectory in the schema of :mod:`reluflow.results.schema` (dimension ``time``, t = step·η)."""
    steps = np.asarray(rec.steps, dtype=np.int64)
    Wc = np.stack(rec.Wc)
    bc = np.stack(rec.bc)
    L, M = bc.shape[1:]
    lam = np.linalg.norm(Wc, axis=3)
    data = {
        "cost": np.asarray(rec.costs),
        "cumulative_weights": Wc,
        "cumulative_biases": bc,
        "scales": lam,
        "thresholds": -bc / lam,
        "n_truncated": np.stack(rec.counts).astype(np.int64),
        "adaptedness": np.stack(rec.adapt),
    }
    coords = {"time": steps * lr, "step": steps, "layer": np.arange(1, L + 1), "coordinate": np.arange(M),
              "input_coordinate": np.arange(M)}
    if rec.Wo:
        data["output_weights"] = np.stack(rec.Wo)
        data["output_biases"] = np.stack(rec.bo)
        coords["output"] = np.arange(rec.Wo[0].shape[0])
    return make_dataset(data, coords, status=STATUS_CODES[status], message=message, attrs=attrs)


def train(weights, biases, X, targets, *, mode: str = "biases", cost: str = "input", lr: float = 0.1,
          weight_lr_ratio: float = 1.0, n_steps: int = 1000, record_every: int = 1, W_out=None, b_out=None,
          train_terminal: bool = False, point_weights=None, adapted_tol: float = 1e-8,
          max_condition: float = MAX_CONDITION, progress: bool | None = None) -> xr.Dataset:
    """Gradient descent p ← p − η_p ∇_p C on the ReLU network; returns the recorded trajectory.

    Parameters
    ----------
    weights, biases : sequences of L arrays (M, M) and (M,)
        The initial *layer* parameters (W_ℓ, b_ℓ), in every mode. In mode ``"adapted"`` their
        cumulative weights must be adapted (:func:`reluflow.adaptedness` ≤ ``adapted_tol``).
    X : array (N, M)
        Training points as rows.
    targets : array (N, M) for ``cost="input"`` (ỹ_i in input space), (N, Q) for ``cost="output"``.
    mode : ``"biases"``, ``"adapted"``, ``"full"`` or ``"cumulative"`` (see the module docstring).
    cost : ``"input"`` (C_in) or ``"output"`` (C_out, needs ``W_out, b_out``).
    lr : η > 0, the learning rate of the biases; ``time = step·η``.
    weight_lr_ratio : ρ ≥ 0; weights (and scales) use the learning rate ρη.
    n_steps : number of gradient steps (≥ 1).
    record_every : k ≥ 1; steps 0, k, 2k, … and the last step are recorded.
    W_out, b_out : optional terminal layer (Q, M), (Q,).
    train_terminal : also train the terminal layer (output cost only).
    point_weights : w (N,), non-negative; default 1/N.
    progress : show a tqdm bar; ``None`` shows it for runs of ≥ 2000 steps when stderr is a terminal
        (so never under pytest or papermill). The environment variable ``RELUFLOW_PROGRESS=0|1``
        overrides the automatic choice.

    Returns
    -------
    xarray.Dataset in the schema of :mod:`reluflow.results.schema`, over ``time`` (t = step·η, with the
    coordinate ``step`` on the same dimension), ``layer`` (1..L), ``coordinate`` and
    ``input_coordinate`` (0..M-1) and ``output`` (0..Q-1): ``cost``, ``cumulative_weights``,
    ``cumulative_biases``, ``scales``, ``thresholds``, ``n_truncated``, ``adaptedness`` and, with a
    terminal layer, ``output_weights``, ``output_biases``. The integer attribute ``status`` is a code of
    :data:`reluflow.results.schema.STATUS`: 0 (completed), −2 (diverged: non-finite cost or parameters),
    −3 (ill_conditioned) or −4 (nonpositive_scale), with ``status_name``; a run that stops early keeps its
    last valid state, warns with a RuntimeWarning and explains itself in the attribute ``message``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    Ws, bs, X, Y, w, W_out, b_out = _validate_problem(weights, biases, X, targets, cost, W_out, b_out,
                                                      point_weights, max_condition)
    lr = as_positive_float(lr, "lr")
    rho = as_nonnegative_float(weight_lr_ratio, "weight_lr_ratio")
    n_steps = check_positive_int(n_steps, "n_steps")
    record_every = check_positive_int(record_every, "record_every")
    adapted_tol = as_tolerance(adapted_tol, "adapted_tol")
    L_, M_ = bs.shape
    Q_ = 0 if W_out is None else W_out.shape[0]
    check_memory(8.0 * (n_steps // record_every + 2) * (L_ * M_ * (M_ + 5) + Q_ * (M_ + 1)),
                 f"train recording n_steps // record_every = {n_steps // record_every} states")
    if not isinstance(train_terminal, bool):
        raise TypeError(f"train_terminal must be True or False; got {train_terminal!r}")
    if train_terminal and cost != "output":
        raise ValueError(f"train_terminal=True needs cost='output' (the input cost ignores the terminal layer); "
                         f"got cost={cost!r}")
    show = progress_enabled(progress, n_steps)

    L, M = bs.shape
    W_out = None if W_out is None else W_out.copy()
    b_out = None if b_out is None else b_out.copy()
    eta_w = rho * lr
    train_Wout = train_terminal and mode != "biases"
    Wc, bc = cumulative_pass(Ws, bs)
    R = lam = None
    if mode == "adapted":
        net = decompose_adapted(list(Wc), list(bc), tol=adapted_tol, max_condition=max_condition)
        R, lam = net.frames, net.scales.copy()
        Wc = lam[:, :, None] * R

    def gradient():
        if mode in ("biases", "full"):
            return _backprop(Ws, bs, X, Y, w, cost, W_out, b_out, Wc, bc)
        return _cumulative_gradient(Wc, bc, X, Y, w, cost, W_out, b_out)

    rec = _Recorder(X, max_condition)
    status, message = "completed", f"completed {n_steps} steps"
    last = None  # the last valid (step, cost, Wc, bc, W_out, b_out) not yet recorded
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=f"gradient descent ({mode}, {cost} cost)", leave=False)
    try:
        for step in range(n_steps + 1):
            C, gW, gb, gWo, gbo = gradient()
            finite = math.isfinite(C) and np.isfinite(gW).all() and np.isfinite(gb).all()
            if not finite:
                status = "diverged"
                message = f"stopped at step {step}: non-finite cost or gradient (cost = {C!r}); try a smaller lr"
                break
            state = (step, C, Wc, bc, W_out, b_out)
            if step % record_every == 0 or step == n_steps:
                try:
                    rec.record(*state)
                except ValueError as exc:
                    status = "ill_conditioned"
                    message = f"stopped at step {step}: {exc}"
                    break
                last = None
            else:
                last = state  # parameters are replaced, never modified in place: no copy needed
            if step == n_steps:
                break
            # one gradient step
            if mode == "biases":
                bs = bs - lr * gb
            elif mode == "full":
                bs = bs - lr * gb
                Ws = Ws - eta_w * gW if eta_w else Ws
            elif mode == "cumulative":
                bc = bc - lr * gb
                Wc = Wc - eta_w * gW if eta_w else Wc
            else:  # adapted: λ_{ℓ,k} moves along the fixed row direction R_{ℓ,k}
                bc = bc - lr * gb
                if eta_w:
                    lam = lam - eta_w * np.einsum("lkj,lkj->lk", gW, R)
                    if np.any(lam <= 0):
                        status = "nonpositive_scale"
                        message = (f"stopped at step {step + 1}: a scale λ became non-positive "
                                   f"(minimum {lam.min():.3g}); try a smaller lr or weight_lr_ratio")
                        break
                    Wc = lam[:, :, None] * R
            if mode in ("biases", "full"):
                Wc, bc = cumulative_pass(Ws, bs)
            if cost == "output" and train_terminal:
                b_out = b_out - lr * gbo
                if train_Wout:
                    W_out = W_out - eta_w * gWo
            if not (np.isfinite(Wc).all() and np.isfinite(bc).all()):
                status = "diverged"
                message = f"stopped at step {step + 1}: non-finite parameters; try a smaller lr"
                break
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if status != "completed" and last is not None:
        try:
            rec.record(*last)
        except ValueError:
            pass
    steps_completed = rec.steps[-1] if rec.steps else 0
    if status != "completed":
        warnings.warn(f"train: {message}", RuntimeWarning, stacklevel=2)
    if not rec.steps:
        raise ValueError(f"train could not record the initial state: {message}")
    attrs = {
        "mode": mode,
        "cost": cost,
        "lr": lr,
        "lr_biases": lr,
        "lr_weights": eta_w,
        "weight_lr_ratio": rho,
        "n_steps": n_steps,
        "record_every": record_every,
        "steps_completed": int(steps_completed),
        "point_weights": "uniform 1/N" if point_weights is None else "custom",
        "train_terminal": int(train_terminal),
        "n_points": int(X.shape[0]),
    }
    return _trajectory_dataset(rec, lr, status, message, attrs)

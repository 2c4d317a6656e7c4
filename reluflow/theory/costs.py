"""Costs in the input layer and at the output, and how they relate (THEORY.md §3).

Points are rows, ``X.shape == (N, M)``. Every cost carries per-point weights w_i ≥ 0; the default
(``point_weights=None``) is the uniform w_i = 1/N, and :func:`cost_weights` gives the class-balanced
alternative w_i = 1/(Q N_{j(i)}). Each result states which weights it used.

Map from formula to function:

- w_i = 1/N (uniform) or 1/(Q N_{j(i)}) (balanced)                     → :func:`cost_weights`
- ỹ_i = ỹ_{j(i)}, class targets expanded to one row per point          → :func:`targets_by_label`
- C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|²                                   → :func:`input_cost`
- x^(L+1) = W_{L+1} x^(L) + b_{L+1},  C_out = ½ Σ_i w_i |x_i^(L+1) − y_i|²  → :func:`output_cost`
- W^(L+1) = W_{L+1} W^(L),  b^(L+1) = W_{L+1} b^(L) + b_{L+1}           → :func:`output_cumulative_parameters`
- ỹ = (W^(L+1))^+ (y − b^(L+1)), the targets pulled back to input space   → :func:`pullback_targets`
- ½ Σ_i w_i |W^(L+1)(x_i^(τ,L) − ỹ_i)|², C_in in the pulled-back metric → :func:`pulled_back_cost`

How the two costs relate. By the representation identity x^(L) = W^(L) x^(τ,L) + b^(L),
x^(L+1) = W^(L+1) x^(τ,L) + b^(L+1). When W^(L+1) (shape (Q, M), Q ≤ M) has full row rank, every
output target is reached, W^(L+1) ỹ_i = y_i − b^(L+1), and so

    x^(L+1) − y_i = W^(L+1)(x^(τ,L) − ỹ_i),   i.e.   C_out = :func:`pulled_back_cost`.

C_in is the same sum with the metric (W^(L+1))ᵀ W^(L+1) replaced by the identity; the two coincide
when W^(L+1) is orthogonal (Q = M and (W^(L+1))ᵀ W^(L+1) = 1). For Q < M the pulled-back target is
fixed only up to ker W^(L+1); :func:`pullback_targets` picks the minimum-norm one, the component in
ker W^(L+1) being zero. C_out does not depend on that choice; C_in does.
"""

from __future__ import annotations

import numpy as np

from reluflow.theory.network import forward
from reluflow.theory.truncation import truncated_data
from reluflow.validation import (
    MAX_CONDITION,
    as_labels,
    as_point_weights,
    as_points,
    as_real_array,
    as_targets,
    as_vector,
    check_memory,
    check_positive_int,
    validate_layers,
)

__all__ = [
    "cost_weights",
    "targets_by_label",
    "input_cost",
    "output_cost",
    "output_cumulative_parameters",
    "pullback_targets",
    "pulled_back_cost",
]

COST_WEIGHT_KINDS = ("uniform", "balanced")


# --------------------------------------------------------------------------- validation helpers


def _weighted_half_sum_of_squares(residuals: np.ndarray, w: np.ndarray) -> float:
    """½ Σ_i w_i |r_i|² for residual rows r_i."""
    return 0.5 * float(np.dot(w, np.einsum("ij,ij->i", residuals, residuals)))


# --------------------------------------------------------------------------- weights and targets


def cost_weights(labels, kind: str = "uniform", *, n_classes: int | None = None) -> np.ndarray:
    """Per-point cost weights: w_i = 1/N (``"uniform"``) or w_i = 1/(Q N_{j(i)}) (``"balanced"``).

    Parameters
    ----------
    labels : int array (N,)
        Class index j(i) in 0..Q-1 of each point.
    kind : {"uniform", "balanced"}
    n_classes : int, optional
        Q. Defaults to ``labels.max() + 1``. Every class must hold at least one point when
        ``kind="balanced"`` (an empty class has no weight 1/(Q N_j) to give).

    Both choices sum to 1.
    """
    if not isinstance(kind, str) or kind not in COST_WEIGHT_KINDS:
        raise ValueError(f"kind must be one of {COST_WEIGHT_KINDS}; got {kind!r}")
    if n_classes is not None:
        n_classes = check_positive_int(n_classes, "n_classes")
        check_memory(8.0 * n_classes, f"n_classes = {n_classes}")
    labels = as_labels(labels, n_classes=n_classes)
    N = labels.size
    if kind == "uniform":
        return np.full(N, 1.0 / N)
    Q = int(labels.max()) + 1 if n_classes is None else n_classes
    counts = np.bincount(labels, minlength=Q)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"labels must give every class at least one point for balanced weights; "
                         f"classes {empty} are empty")
    return 1.0 / (Q * counts[labels])


def targets_by_label(class_targets, labels) -> np.ndarray:
    """ỹ_i = ỹ_{j(i)}: class targets (Q, D) expanded to one row per point, shape (N, D)."""
    class_targets = as_real_array(class_targets, "class_targets", ndim=2)
    if class_targets.shape[0] == 0:
        raise ValueError(f"class_targets must hold at least one class (row); got shape {class_targets.shape}")
    labels = as_labels(labels, n_classes=class_targets.shape[0])
    return class_targets[labels]


# --------------------------------------------------------------------------- costs


def input_cost(Wc, bc, X, targets, *, point_weights=None, max_condition: float = MAX_CONDITION) -> float:
    """C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|², the Euclidean cost in the input layer.

    ``Wc, bc`` are the cumulative parameters (lists of L arrays (M, M) and (M,)); ``targets`` holds
    ỹ_i per point, shape (N, M) (see :func:`targets_by_label`); ``point_weights`` defaults to 1/N.
    For an :class:`~reluflow.AdaptedNetwork` ``net``, pass ``*net.cumulative_parameters()``.
    """
    xs = truncated_data(Wc, bc, X, max_condition=max_condition)
    N, M = xs[0].shape
    targets = as_targets(targets, N, M)
    w = as_point_weights(point_weights, N)
    return _weighted_half_sum_of_squares(xs[-1] - targets, w)


def _validate_output_layer(W_out, b_out, M: int):
    W_out = as_real_array(W_out, "W_out", ndim=2)
    if W_out.shape[1] != M or W_out.shape[0] == 0:
        raise ValueError(f"W_out must have shape (Q, {M}) to follow hidden layers of width {M}; "
                         f"got shape {W_out.shape}")
    b_out = as_vector(b_out, "b_out", W_out.shape[0])
    return W_out, b_out


def output_cost(weights, biases, W_out, b_out, X, targets, *, point_weights=None) -> float:
    """C_out = ½ Σ_i w_i |x_i^(L+1) − y_i|², with x^(L+1) = W_out x^(L) + b_out ∈ R^Q.

    ``weights, biases`` are the hidden layers' own parameters W_ℓ, b_ℓ (not cumulative); x^(L) is
    computed by the plain ReLU forward pass :func:`reluflow.forward`. ``W_out`` has shape (Q, M),
    ``b_out`` (Q,), ``targets`` holds y_i per point, shape (N, Q).
    """
    Ws, _ = validate_layers(weights, biases, square=False, max_condition=np.inf)
    M = Ws[-1].shape[0]
    W_out, b_out = _validate_output_layer(W_out, b_out, M)
    x_L = forward(weights, biases, X)[-1]
    N = x_L.shape[0]
    targets = as_targets(targets, N, W_out.shape[0])
    w = as_point_weights(point_weights, N)
    return _weighted_half_sum_of_squares(x_L @ W_out.T + b_out - targets, w)


def output_cumulative_parameters(weights, biases, W_out, b_out, *, max_condition: float = MAX_CONDITION):
    """(W^(L+1), b^(L+1)) = (W_out W^(L), W_out b^(L) + b_out), shapes (Q, M) and (Q,).

    With them x^(L+1) = W^(L+1) x^(τ,L) + b^(L+1) (representation identity plus the affine layer).
    """
    Ws, bs = validate_layers(weights, biases, square=True, max_condition=max_condition)
    W_out, b_out = _validate_output_layer(W_out, b_out, Ws[0].shape[0])
    W_cum = np.eye(Ws[0].shape[0])
    b_cum = np.zeros(Ws[0].shape[0])
    for W, b in zip(Ws, bs, strict=True):
        W_cum = W @ W_cum
        b_cum = W @ b_cum + b
    return W_out @ W_cum, W_out @ b_cum + b_out


def pullback_targets(weights, biases, W_out, b_out, targets, *, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """ỹ = (W^(L+1))^+ (y − b^(L+1)): output targets pulled back to input space, one row per target.

    For Q = M this is the inverse (W^(L+1))^-1 (y − b^(L+1)). For Q < M it is the Moore–Penrose
    pseudo-inverse: of all ỹ with W^(L+1) ỹ = y − b^(L+1) (they differ by elements of
    ker W^(L+1), a free component), it returns the one of minimum norm, orthogonal to ker W^(L+1).

    Parameters
    ----------
    weights, biases : hidden layers W_ℓ (M, M), b_ℓ (M,)
    W_out, b_out : terminal affine layer, shapes (Q, M) and (Q,), with Q ≤ M
    targets : array (n, Q)
        Output targets y as rows: one per class or one per point.

    Raises ValueError when Q > M or W^(L+1) is rank deficient or has condition number (ratio of
    extreme singular values) above ``max_condition``: then not every y is reachable.
    """
    W_total, b_total = output_cumulative_parameters(weights, biases, W_out, b_out, max_condition=max_condition)
    Q, M = W_total.shape
    if Q > M:
        raise ValueError(f"W_out must have at most M = {M} rows to pull targets back (Q <= M); got Q = {Q}")
    s = np.linalg.svd(W_total, compute_uv=False)
    cond = s[0] / s[-1] if s[-1] > 0 else np.inf
    if not np.isfinite(cond) or cond > max_condition:
        raise ValueError(
            f"W^(L+1) = W_out W^(L) must have full row rank Q = {Q} to pull targets back: its condition number "
            f"{cond:.3g} exceeds max_condition={max_condition:.3g}"
        )
    targets = as_points(targets, "targets", dim=Q)
    shifted = targets - b_total
    if Q == M:
        return np.linalg.solve(W_total, shifted.T).T
    return shifted @ np.linalg.pinv(W_total).T


def pulled_back_cost(Wc, bc, W_total, X, input_targets, *, point_weights=None,
                     max_condition: float = MAX_CONDITION) -> float:
    """½ Σ_i w_i |W^(L+1)(x_i^(τ,L) − ỹ_i)|²: the input-layer cost in the metric (W^(L+1))ᵀ W^(L+1).

    With ``W_total`` = W^(L+1) from :func:`output_cumulative_parameters` and ``input_targets`` =
    ỹ_i from :func:`pullback_targets` (one row per point, shape (N, M)), this equals
    :func:`output_cost`; with ``W_total`` orthogonal it equals :func:`input_cost`.
    """
    xs = truncated_data(Wc, bc, X, max_condition=max_condition)
    N, M = xs[0].shape
    W_total = as_real_array(W_total, "W_total", ndim=2)
    if W_total.shape[1] != M or W_total.shape[0] == 0:
        raise ValueError(f"W_total must have shape (Q, {M}); got shape {W_total.shape}")
    input_targets = as_targets(input_targets, N, M, "input_targets")
    w = as_point_weights(point_weights, N)
    return _weighted_half_sum_of_squares((xs[-1] - input_targets) @ W_total.T, w)

"""The deep ReLU network and its cumulative parameters (THEORY.md §1).

Conventions: points are rows, ``X.shape == (N, M)``; a layer's weight has shape (out, in), as in
``torch.nn.Linear``; hidden layer ℓ computes x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ) with σ = ReLU.

Map from formula to function:

- x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ)                        → :func:`forward`
- W^(ℓ) = W_ℓ W^(ℓ-1),  b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ      → :func:`cumulative_parameters`
- W_ℓ = W^(ℓ) (W^(ℓ-1))^-1,  b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)  → :func:`layer_parameters`
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    MAX_CONDITION,
    as_layer_list,
    as_points,
    as_real_array,
    as_square_invertible,
    as_vector,
    check_positive_int,
    check_same_length,
)

__all__ = ["forward", "cumulative_parameters", "layer_parameters", "random_network", "relu"]


def relu(z: np.ndarray) -> np.ndarray:
    """σ(z) = max(z, 0), componentwise."""
    return np.maximum(z, 0.0)


def _validate_layers(weights, biases, *, square: bool, max_condition: float, prefix: str = ""):
    weights = as_layer_list(weights, f"{prefix}weights")
    biases = as_layer_list(biases, f"{prefix}biases")
    check_same_length(weights, biases, f"{prefix}weights", f"{prefix}biases")
    Ws, bs = [], []
    for i, (W, b) in enumerate(zip(weights, biases), start=1):
        if square:
            W = as_square_invertible(W, f"{prefix}weights[{i - 1}] (layer {i})", max_condition=max_condition)
            if Ws and W.shape != Ws[0].shape:
                raise ValueError(
                    f"{prefix}weights[{i - 1}] (layer {i}) must have shape {Ws[0].shape} like layer 1; "
                    f"got {W.shape}"
                )
        else:
            W = as_real_array(W, f"{prefix}weights[{i - 1}] (layer {i})", ndim=2)
            if Ws and W.shape[1] != Ws[-1].shape[0]:
                raise ValueError(
                    f"{prefix}weights[{i - 1}] (layer {i}) must have {Ws[-1].shape[0]} columns "
                    f"to follow layer {i - 1}; "
                    f"got shape {W.shape}"
                )
        Ws.append(W)
        bs.append(as_vector(b, f"{prefix}biases[{i - 1}] (layer {i})", W.shape[0]))
    return Ws, bs


def forward(weights, biases, X) -> list[np.ndarray]:
    """Hidden activations [x^(1), …, x^(L)] of the ReLU network, x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ).

    Parameters
    ----------
    weights, biases : sequences of length L
        Layer weights of shape (out, in) and biases of shape (out,). Any chain-compatible shapes
        are accepted here; the truncation calculus needs square invertible weights.
    X : array, shape (N, M)
        Input points as rows.
    """
    Ws, bs = _validate_layers(weights, biases, square=False, max_condition=np.inf)
    x = as_points(X, "X", dim=Ws[0].shape[1])
    out = []
    for W, b in zip(Ws, bs):
        x = relu(x @ W.T + b)
        out.append(x)
    return out


def cumulative_parameters(weights, biases, *, max_condition: float = MAX_CONDITION):
    """Cumulative parameters W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ, for ℓ = 1..L.

    Returns ``(Wc, bc)``: lists of L arrays of shapes (M, M) and (M,). Layer weights must be
    square and invertible with condition number at most ``max_condition``.
    """
    Ws, bs = _validate_layers(weights, biases, square=True, max_condition=max_condition)
    Wc, bc = [], []
    W_prev = np.eye(Ws[0].shape[0])
    b_prev = np.zeros(Ws[0].shape[0])
    for W, b in zip(Ws, bs):
        W_prev = W @ W_prev
        b_prev = W @ b_prev + b
        Wc.append(W_prev)
        bc.append(b_prev)
    return Wc, bc


def layer_parameters(Wc, bc, *, max_condition: float = MAX_CONDITION):
    """Inverse of :func:`cumulative_parameters`: W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)."""
    Wcs, bcs = _validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    weights, biases = [], []
    W_prev = np.eye(Wcs[0].shape[0])
    b_prev = np.zeros(Wcs[0].shape[0])
    for W, b in zip(Wcs, bcs):
        Wl = np.linalg.solve(W_prev.T, W.T).T  # W_ℓ = W^(ℓ) (W^(ℓ-1))^-1
        weights.append(Wl)
        biases.append(b - Wl @ b_prev)
        W_prev, b_prev = W, b
    return weights, biases


def random_network(M: int, L: int, *, seed=None, scale: float = 1.0, bias_scale: float = 0.5, orthogonal: bool = False):
    """A random network of L square layers of width M, for experiments and tests.

    Each W_ℓ = scale·(Q + 0.3·G/√M) with Q a Haar-random orthogonal matrix and G Gaussian (or
    scale·Q if ``orthogonal``), which keeps the condition numbers moderate at any depth. Biases
    are Gaussian with standard deviation ``bias_scale``. Returns ``(weights, biases)``.
    """
    M = check_positive_int(M, "M")
    L = check_positive_int(L, "L")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number; got {scale!r}")
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for _ in range(L):
        Q = _haar_orthogonal(rng, M)
        W = Q if orthogonal else Q + 0.3 * rng.standard_normal((M, M)) / np.sqrt(M)
        weights.append(scale * W)
        biases.append(bias_scale * rng.standard_normal(M))
    return weights, biases


def _haar_orthogonal(rng: np.random.Generator, M: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((M, M)))
    return Q * np.sign(np.diag(R))

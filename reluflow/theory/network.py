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

from reluflow.theory.kernels import cumulative_pass, forward_pass, layer_pass
from reluflow.validation import (
    MAX_CONDITION,
    as_bool,
    as_nonnegative_float,
    as_points,
    as_positive_float,
    as_real_array,
    check_memory,
    check_size,
    validate_layers,
)

__all__ = ["forward", "cumulative_parameters", "layer_parameters", "random_network", "relu", "haar_orthogonal"]


def relu(z) -> np.ndarray:
    """σ(z) = max(z, 0), componentwise, for a real array of any shape (NaN and inf are refused)."""
    return np.maximum(as_real_array(z, "z"), 0.0)




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
    Ws, bs = validate_layers(weights, biases, square=False, max_condition=np.inf)
    x = as_points(X, "X", dim=Ws[0].shape[1])
    return forward_pass(Ws, bs, x)[1][1:]


def cumulative_parameters(weights, biases, *, max_condition: float = MAX_CONDITION):
    """Cumulative parameters W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ, for ℓ = 1..L.

    Returns ``(Wc, bc)``: lists of L arrays of shapes (M, M) and (M,). Layer weights must be
    square and invertible with condition number at most ``max_condition``.
    """
    Ws, bs = validate_layers(weights, biases, square=True, max_condition=max_condition)
    Wc, bc = cumulative_pass(np.stack(Ws), np.stack(bs))
    return list(Wc), list(bc)


def layer_parameters(Wc, bc, *, max_condition: float = MAX_CONDITION):
    """Inverse of :func:`cumulative_parameters`: W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)."""
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    weights, biases = layer_pass(np.stack(Wcs), np.stack(bcs))
    return list(weights), list(biases)


def random_network(M: int, L: int, *, seed=None, scale: float = 1.0, bias_scale: float = 0.5, orthogonal: bool = False):
    """A random network of L square layers of width M, for experiments and tests.

    Each W_ℓ = scale·(Q + 0.3·G/√M) with Q a Haar-random orthogonal matrix and G Gaussian (or
    scale·Q if ``orthogonal``), which keeps the condition numbers moderate at any depth. Biases
    are Gaussian with standard deviation ``bias_scale``. Returns ``(weights, biases)``.
    """
    M = check_size(M, "M")
    L = check_size(L, "L")
    check_memory(8.0 * (L + 3) * (M * M + M), f"random_network(M={M}, L={L})")
    scale = as_positive_float(scale, "scale")
    bias_scale = as_nonnegative_float(bias_scale, "bias_scale")
    orthogonal = as_bool(orthogonal, "orthogonal")
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for _ in range(L):
        Q = haar_orthogonal(rng, M)
        W = Q if orthogonal else Q + 0.3 * rng.standard_normal((M, M)) / np.sqrt(M)
        weights.append(scale * W)
        biases.append(bias_scale * rng.standard_normal(M))
    return weights, biases


def haar_orthogonal(rng: np.random.Generator, M: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((M, M)))
    return Q * np.sign(np.diag(R))

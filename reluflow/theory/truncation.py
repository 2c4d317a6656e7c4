"""Truncation maps: how the hidden layers act on input space (THEORY.md §1).

- τ_{W,b}(x) = W^-1(σ(Wx + b) − b) = x + W^-1 (Wx + b)_−          → :func:`truncation_map`
- x^(τ,0) = x_0,  x^(τ,ℓ) = τ_{W^(ℓ), b^(ℓ)}(x^(τ,ℓ-1))             → :func:`truncated_data`
- T_{ℓ,k}(x) = 1 when (W^(ℓ) x^(τ,ℓ-1) + b^(ℓ))_k ≤ 0                → :func:`truncation_pattern`
- apex p = −W^-1 b of the cone S_+ = {Wx + b ≥ 0}                  → :func:`apex`

Representation identity: x^(ℓ) = W^(ℓ) x^(τ,ℓ) + b^(ℓ), with the hidden activations of
:func:`reluflow.forward`.

Convention at ties: a coordinate with pre-activation exactly 0 counts as **truncated**. This
matches σ'(0) = 0, the derivative the gradient formulas use; τ itself is continuous, so its value
does not depend on the convention.
"""

from __future__ import annotations

import numpy as np

from reluflow.validation import MAX_CONDITION, as_points, as_square_invertible, as_vector, validate_layers

__all__ = ["truncation_map", "truncated_data", "truncation_pattern", "apex"]


def _preactivation(W, b, X):
    return X @ W.T + b


def truncation_map(W, b, X, *, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """τ_{W,b}(x) = x + W^-1 (Wx + b)_−, applied to each row of X (shape (N, M)).

    The identity on S_+ = {Wx + b ≥ 0}; the constant apex −W^-1 b on S_− = {Wx + b ≤ 0}.
    """
    W = as_square_invertible(W, "W", max_condition=max_condition)
    b = as_vector(b, "b", W.shape[0])
    X = as_points(X, "X", dim=W.shape[0])
    return _truncate(W, b, X)


def _truncate(W, b, X):
    neg = np.maximum(-_preactivation(W, b, X), 0.0)  # (Wx + b)_−, one row per point
    # W^-1 applied to N rows: one small inverse and a matrix product (W is validated as
    # well-conditioned, so this is as accurate as a solve and several times faster for large N)
    return X + neg @ np.linalg.inv(W).T


def truncated_data(Wc, bc, X, *, max_condition: float = MAX_CONDITION) -> list[np.ndarray]:
    """[x^(τ,0), …, x^(τ,L)]: the data truncated by the first ℓ layers, seen in input space.

    ``Wc, bc`` are the cumulative parameters (see :func:`reluflow.cumulative_parameters`).
    """
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    x = as_points(X, "X", dim=Wcs[0].shape[0])
    out = [x]
    for W, b in zip(Wcs, bcs):
        x = _truncate(W, b, x)
        out.append(x)
    return out


def truncation_pattern(Wc, bc, X, *, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """Truncation indicators T[ℓ-1, i, k] = 1 when (W^(ℓ) x_i^(τ,ℓ-1) + b^(ℓ))_k ≤ 0.

    Returns a boolean array of shape (L, N, M). Ties (pre-activation exactly 0) count as
    truncated, matching σ'(0) = 0.
    """
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    x = as_points(X, "X", dim=Wcs[0].shape[0])
    pattern = []
    for W, b in zip(Wcs, bcs):  # validate once, then one pass through the layers
        pattern.append(_preactivation(W, b, x) <= 0.0)
        x = _truncate(W, b, x)
    return np.stack(pattern)


def apex(W, b, *, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """p = −W^-1 b, the apex of the cone S_+ = {Wx + b ≥ 0} and the value of τ on S_−."""
    W = as_square_invertible(W, "W", max_condition=max_condition)
    b = as_vector(b, "b", W.shape[0])
    return -np.linalg.solve(W, b)

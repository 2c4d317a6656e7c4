"""Unvalidated array passes through a square ReLU network, shared by every module (THEORY.md §1).

These are the numerical cores behind :func:`reluflow.forward`, :func:`reluflow.cumulative_parameters`
and :func:`reluflow.layer_parameters`: plain stacked arrays in, arrays out, no checks. Callers
validate at the library's boundary (see :mod:`reluflow.validation`) and then call these, so that
each pass through the layers exists once.

Shapes: Ws (L, M, M) layer weights (out, in), bs (L, M) layer biases, X (N, M) points as rows.

- z_ℓ = W_ℓ x^(ℓ-1) + b_ℓ,  x^(ℓ) = σ(z_ℓ)                → :func:`forward_pass`
- W^(ℓ) = W_ℓ W^(ℓ-1),  b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ          → :func:`cumulative_pass`
- W_ℓ = W^(ℓ) (W^(ℓ-1))^-1,  b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)      → :func:`layer_pass`
"""

from __future__ import annotations

import numpy as np

__all__ = ["forward_pass", "cumulative_pass", "layer_pass"]


def forward_pass(Ws, bs, X):
    """Pre-activations [z_1..z_L] and activations [x^(0)..x^(L)]."""
    Z, A = [], [X]
    x = X
    for W, b in zip(Ws, bs, strict=True):
        z = x @ W.T + b
        x = np.maximum(z, 0.0)
        Z.append(z)
        A.append(x)
    return Z, A


def cumulative_pass(Ws, bs):
    """W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ, stacked as (L, M, M) and (L, M)."""
    Wc = np.empty_like(Ws)
    bc = np.empty_like(bs)
    Wp = np.eye(Ws.shape[1])
    bp = np.zeros(Ws.shape[1])
    for l in range(Ws.shape[0]):
        Wp = Ws[l] @ Wp
        bp = Ws[l] @ bp + bs[l]
        Wc[l] = Wp
        bc[l] = bp
    return Wc, bc


def layer_pass(Wc, bc):
    """W_ℓ = W^(ℓ) (W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1), stacked."""
    Ws = np.empty_like(Wc)
    bs = np.empty_like(bc)
    Ws[0] = Wc[0]
    bs[0] = bc[0]
    if Wc.shape[0] > 1:
        # W_ℓ^T = (W^(ℓ-1))^-T W^(ℓ)^T
        Ws[1:] = np.swapaxes(np.linalg.solve(np.swapaxes(Wc[:-1], 1, 2), np.swapaxes(Wc[1:], 1, 2)), 1, 2)
        bs[1:] = bc[1:] - np.einsum("lij,lj->li", Ws[1:], bc[:-1])
    return Ws, bs

"""Initialisation of generic ReLU networks d0 → d1 → … → dL → Q for :func:`reluflow.train`.

Map from formula to function:

- W_ℓ ~ N(0, 2/d_{ℓ-1}) entrywise (He/Kaiming normal), b_ℓ = 0, W_out ~ N(0, 1/d_L), b_out = 0
  → :func:`he_network`

The biases start at zero, as in He et al. (2015) and PyTorch's ``kaiming_normal_`` recipes: with zero
biases every hidden threshold starts at the origin of its coordinate, so no point is truncated by a bias
alone at initialisation. The output layer is linear, so it gets the variance-preserving 1/fan_in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reluflow.validation import check_memory, check_positive_int

__all__ = ["he_network"]


def he_network(widths, n_outputs: int, *, seed):
    """W_ℓ ~ N(0, 2/d_{ℓ-1}) (d_ℓ, d_{ℓ-1}), b_ℓ = 0, W_out ~ N(0, 1/d_L) (Q, d_L), b_out = 0.

    ``widths`` = (d0, d1, …, dL) with L ≥ 1 hidden layers (d0 is the input dimension); ``n_outputs`` = Q;
    ``seed`` goes to :func:`numpy.random.default_rng` as it is (an int, a SeedSequence or a Generator).
    The draws are made layer by layer, then the output layer, from one generator. Returns
    ``(weights, biases, W_out, b_out)``: lists of L arrays, then the output layer.
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (Sequence, np.ndarray)):
        raise TypeError(f"widths must be a sequence of layer widths (d0, d1, ..., dL); got {type(widths).__name__}")
    widths = [check_positive_int(d, f"widths[{i}]") for i, d in enumerate(list(widths))]
    if len(widths) < 2:
        raise ValueError(f"widths must hold d0 and at least one hidden width (d0, d1, ..., dL); got {widths}")
    Q = check_positive_int(n_outputs, "n_outputs")
    n_params = sum(a * (b + 1) for a, b in zip(widths[1:], widths[:-1])) + Q * (widths[-1] + 1)
    check_memory(8.0 * n_params, f"he_network(widths={widths}, n_outputs={Q})")
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        weights.append(rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in))
        biases.append(np.zeros(fan_out))
    W_out = rng.standard_normal((Q, widths[-1])) * np.sqrt(1.0 / widths[-1])
    return weights, biases, W_out, np.zeros(Q)

"""Gradient descent with a finite step on the cumulative scales and biases (THEORY.md §4.3).

The scale-and-bias flow (4.3) is the gradient flow of C_in in (λ_ℓ, b^(ℓ)) with the frames R_ℓ
frozen. Its explicit Euler discretisation is plain gradient descent with step η:

    λ ← λ + η λ̇,   b ← b + η ḃ,   (λ̇, ḃ) = −∇_(λ, b) C_in = (θ g/λ, g/λ),  g = ∂C_in/∂θ, θ = −b/λ.

The flow conserves λ² + b² unit by unit (the velocity is orthogonal to (λ, b)); a finite step
raises it by exactly η² (λ̇² + ḃ²) per step, since |y + η v|² = |y|² + η² |v|² when v ⊥ y.

- one step of (4.3) with step η, repeated                      → :func:`scale_bias_descent`
- the iterates λ_s, b_s, θ_s = −b_s/λ_s and λ_s² + b_s²         → :class:`ScaleBiasDescent`
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from reluflow.theory.adapted import AdaptedNetwork
from reluflow.theory.flows import scale_bias_flow
from reluflow.validation import as_positive_float, check_memory, check_positive_int

__all__ = ["ScaleBiasDescent", "scale_bias_descent"]


@dataclass(frozen=True, repr=False)
class ScaleBiasDescent:
    """Iterates of gradient descent on (λ, b): ``scales`` and ``biases`` of shape (n + 1, L, M).

    ``scale_velocity`` and ``bias_velocity`` (n, L, M) are λ̇ and ḃ of (4.3) at the start of each
    step, so ``scales[s + 1] = scales[s] + lr * scale_velocity[s]``.
    """

    lr: float
    scales: np.ndarray
    biases: np.ndarray
    scale_velocity: np.ndarray
    bias_velocity: np.ndarray

    @property
    def n_steps(self) -> int:
        """The number of steps n."""
        return self.scale_velocity.shape[0]

    @property
    def time(self) -> np.ndarray:
        """t_s = η s, the flow time matched to step s; shape (n + 1,)."""
        return self.lr * np.arange(self.n_steps + 1)

    @property
    def thresholds(self) -> np.ndarray:
        """θ_s = −b_s/λ_s; shape (n + 1, L, M)."""
        return -self.biases / self.scales

    @property
    def invariant(self) -> np.ndarray:
        """λ_s² + b_s², conserved by the flow and not by descent; shape (n + 1, L, M)."""
        return self.scales**2 + self.biases**2

    def __repr__(self) -> str:
        _, L, M = self.scales.shape
        return f"<ScaleBiasDescent {self.n_steps} steps of lr={self.lr:g}, L={L}, M={M}>"


def scale_bias_descent(net, X, targets, lr, n_steps, *, point_weights=None) -> ScaleBiasDescent:
    """Gradient descent λ ← λ + η λ̇, b ← b + η ḃ on the scale-and-bias flow (4.3), frames frozen.

    Parameters
    ----------
    net : AdaptedNetwork
        Frames R_ℓ (frozen), initial scales λ_ℓ and thresholds θ_ℓ (so b^(ℓ) = −λ_ℓ θ_ℓ).
    X, targets : arrays (N, M)
        Training points (rows) and their input-space targets.
    lr : float
        The step η > 0.
    n_steps : int
        Number of steps (≥ 1).
    point_weights : array (N,), optional
        Cost weights; default 1/N.

    Raises ``ValueError`` if a scale stops being positive (the iterate has left the adapted
    parametrisation; take a smaller step).
    """
    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"net must be a reluflow.AdaptedNetwork (see adapted_network); got {type(net).__name__}")
    lr = as_positive_float(lr, "lr")
    n_steps = check_positive_int(n_steps, "n_steps")
    L, M = net.scales.shape
    check_memory(8.0 * 4 * (n_steps + 1) * L * M, f"n_steps = {n_steps} (four (n_steps + 1, L, M) arrays)")
    lam = np.empty((n_steps + 1, L, M))
    b = np.empty((n_steps + 1, L, M))
    v_lam = np.empty((n_steps, L, M))
    v_b = np.empty((n_steps, L, M))
    lam[0], b[0] = net.scales, -net.scales * net.thresholds
    for s in range(n_steps):
        rates = scale_bias_flow(replace(net, scales=lam[s], thresholds=-b[s] / lam[s]), X, targets,
                                point_weights=point_weights)
        v_lam[s], v_b[s] = rates.scales, rates.biases
        lam[s + 1] = lam[s] + lr * v_lam[s]
        b[s + 1] = b[s] + lr * v_b[s]
        if np.any(lam[s + 1] <= 0):
            raise ValueError(f"a scale became non-positive at step {s + 1} (min {lam[s + 1].min():.3g}); "
                             f"lr={lr!r} is too large for this problem")
    return ScaleBiasDescent(lr=lr, scales=lam, biases=b, scale_velocity=v_lam, bias_velocity=v_b)

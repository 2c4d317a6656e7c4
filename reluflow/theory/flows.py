"""Gradients of the input-layer cost and the effective gradient-flow equations (THEORY.md §4).

The cost is C = C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² (see :mod:`reluflow.theory.costs`; w_i = 1/N unless
``point_weights`` says otherwise). Points are rows, ``X.shape == (N, M)``; every formula below is
evaluated per point on that point's own path through the layers, vectorised over points.

Map from formula to function:

- ∂C/∂θ_ℓ = Σ_i w_i P_ℓ R_ℓ Π_{ℓ+1} ⋯ Π_L r_i                          (4.1) → :func:`threshold_gradient`
- θ̇_ℓ = −Λ_ℓ^-2 ∂C/∂θ_ℓ  (ḃ^(ℓ) = −∇_{b^(ℓ)} C, Λ and R frozen)          (4.2) → :func:`bias_flow`
- θ̇_k = −(1/λ_k²) Σ_{i ∈ T_k} w_i (θ_k − (R ỹ_i)_k), one layer             (4.2) → :func:`one_layer_threshold_flow`
- ḃ = g/λ,  λ̇ = θ g/λ,  θ̇ = −(1 + θ²) g/λ²,  g = ∂C/∂θ                   (4.3) → :func:`scale_bias_flow`
- λ² + b², conserved per unit by (4.3)                                      → :func:`scale_bias_invariant`
- Ṙ_ℓ = −Ω_ℓ R_ℓ,  Ω_ℓ = skew(G_ℓ R_ℓᵀ),  G_ℓ = ∂C/∂R_ℓ                     (4.4) → :func:`frame_flow`
- ∇_{W^(ℓ)} C, ∇_{b^(ℓ)} C for any (not necessarily adapted) W^(ℓ), b^(ℓ)       → :func:`cumulative_gradient`
- ∇_{W_ℓ} C, ∇_{b_ℓ} C, the gradient that standard gradient descent follows       → :func:`layer_gradient`
- K_{ℓℓ'} = Σ_{k ≤ min(ℓ,ℓ')} (W_ℓ⋯W_{k+1})(W_ℓ'⋯W_{k+1})ᵀ                  (4.5) → :func:`induced_bias_kernel`
- ḃ^(ℓ) = −Σ_ℓ' K_{ℓℓ'} ∇_{b^(ℓ')} C, gradient descent on the b_ℓ only       (4.5) → :func:`induced_bias_flow`
- ċ = −J Jᵀ ∇_c C, J = ∂c/∂p, gradient descent on all p = (W_ℓ, b_ℓ)           (4.5) → :func:`induced_cumulative_flow`

Notation. For an adapted network (W^(ℓ) = Λ_ℓ R_ℓ, b^(ℓ) = −Λ_ℓ θ_ℓ) and one point, write
x_{ℓ-1} = x^(τ,ℓ-1), u = R_ℓ x_{ℓ-1} (activation coordinates), T_{ℓ,k} = [u_k ≤ θ_{ℓ,k}],
P_ℓ = diag(T_ℓ), D_ℓ = 1 − P_ℓ, m_ℓ = max(u, θ_ℓ) = R_ℓ x_ℓ, Π_ℓ = R_ℓᵀ D_ℓ R_ℓ and r = x_L − ỹ.

Derivation for adapted weights. Layer ℓ acts as x_ℓ = τ_ℓ(x_{ℓ-1}) = R_ℓᵀ max(R_ℓ x_{ℓ-1}, θ_ℓ).
Away from ties its differential in all its arguments is

    dx_ℓ = Π_ℓ dx_{ℓ-1} + R_ℓᵀ P_ℓ dθ_ℓ + dR_ℓᵀ m_ℓ + R_ℓᵀ D_ℓ dR_ℓ x_{ℓ-1}.

Let a_ℓ = ∂C/∂x_ℓ (per point, the adjoint). Then a_L = w r and, since Π_ℓ is symmetric,
a_{ℓ-1} = Π_ℓ a_ℓ, so a_ℓ = w Π_{ℓ+1}⋯Π_L r. Writing ã_ℓ = R_ℓ a_ℓ and summing over points:

- (4.1) ∂C/∂θ_ℓ = Σ_i P_ℓ R_ℓ a_ℓ = Σ_i w_i P_ℓ R_ℓ Π_{ℓ+1}⋯Π_L r_i.
- (4.2) b^(ℓ) = −Λ_ℓ θ_ℓ with Λ_ℓ frozen gives ∇_b C = −Λ^-1 ∂C/∂θ, and the flow ḃ = −∇_b C is
  θ̇ = −Λ^-1 ḃ = −Λ^-2 ∂C/∂θ. For L = 1 there is no Π factor and (R r)_k = θ_k − (R ỹ)_k on a
  truncated coordinate, which is the one-layer closed form.
- (4.3) τ_{ΛR, b} = τ_{R, Λ^-1 b}, so C depends on (λ_k, b_k) only through θ_k = −b_k/λ_k. With
  g = ∂C/∂θ: ∂C/∂b = −g/λ and ∂C/∂λ = g b/λ² = −g θ/λ, so the gradient flow in (λ, b) is
  ḃ = g/λ, λ̇ = θ g/λ, and θ̇ = −ḃ/λ + b λ̇/λ² = −(1 + θ²) g/λ². Then
  d(λ² + b²)/dt = 2θg − 2θg = 0 (Euler's relation for a cost homogeneous of degree 0).
- (4.4) From the dR_ℓ terms, dC = Σ_i tr(G_iᵀ dR_ℓ) with G = ∂C/∂R_ℓ = Σ_i (m a_ℓᵀ + D R_ℓ a_ℓ x_{ℓ-1}ᵀ),
  so G R_ℓᵀ = Σ_i (m ãᵀ + (D ã) uᵀ). The tangent space of O(M) at R is {A R : A skew}. We use the
  bi-invariant metric ⟨A R, B R⟩ = tr(Aᵀ B) (the restriction of the Frobenius inner product).
  For a tangent vector A R, dC = tr(Gᵀ A R) = ⟨G Rᵀ, A⟩_F = ⟨Ω, A⟩_F, with Ω = skew(G Rᵀ) =
  ½(G Rᵀ − R Gᵀ). So the Riemannian gradient is Ω R and the flow is Ṙ_ℓ = −Ω_ℓ R_ℓ. It keeps R_ℓ
  orthogonal and in its connected component (SO(M), or the other coset of O(M)). With the
  metric ½ tr(Aᵀ B) the right-hand side doubles. In the chart R = expm(A) R_0 at A = 0, the
  Euclidean gradient of A ↦ C(expm(A) R_0) over skew A is exactly Ω; :mod:`reluflow.testing.oracles`
  checks it that way.

Derivation for general cumulative parameters. τ(x) = W^-1(σ(W x + b) − b), z = W x + b,
D = diag(σ'(z)), T = 1 − D. Let y = τ(x). Differentiating W y = σ(z) − b gives
dy = W^-1(D dW x − dW y − T db) + W^-1 D W dx. With α = W^-ᵀ a, per point:
∂C/∂W = D α xᵀ − α yᵀ, ∂C/∂b = −T α, and the adjoint passed down is Wᵀ D α. For adapted
W = ΛR this gives back the formulas above.

Flows induced by standard gradient descent (4.5). The cumulative map c(p) is
W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ. Gradient descent ṗ = −∇_p C = −Jᵀ ∇_c C moves c
as ċ = J ṗ = −J Jᵀ ∇_c C. Jᵀ is applied by back-propagating through that recursion, and J by
differentiating it forwards. For the biases alone, b^(ℓ) = Σ_{k ≤ ℓ} (W_ℓ⋯W_{k+1}) b_k, so the
bias block of J has entries W_ℓ⋯W_{k+1} (k ≤ ℓ) and J Jᵀ = K.

Ties. A coordinate whose pre-activation is exactly 0 (u_k = θ_k) counts as truncated (σ'(0) = 0),
as :func:`reluflow.truncation_pattern` does. At a tie C is not differentiable. The forward
values do not depend on the branch, and every formula here differentiates the truncated branch.
For θ_{ℓ,k} that is the one-sided derivative for increasing θ_{ℓ,k}. Adapted functions evaluate
the pattern in activation coordinates as u_k ≤ θ_k, with
u_{ℓ+1} = (R_{ℓ+1} R_ℓᵀ) max(u_ℓ, θ_ℓ) and u_1 = R_1 x. In exact arithmetic this is the same as
the pre-activation λ_k(u_k − θ_k) ≤ 0. In floating point it agrees with
:func:`reluflow.truncation_pattern` except for points within rounding error of a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.theory.adapted import AdaptedNetwork
from reluflow.validation import (
    MAX_CONDITION,
    as_layer_list,
    as_point_weights,
    as_points,
    as_real_array,
    as_targets,
    validate_layers,
)

__all__ = [
    "adapted_forward",
    "ScaleBiasFlow",
    "threshold_gradient",
    "threshold_gradient_arrays",
    "scale_bias_flow_arrays",
    "frame_flow_arrays",
    "bias_flow",
    "one_layer_threshold_flow",
    "scale_bias_flow",
    "scale_bias_invariant",
    "frame_flow",
    "cumulative_gradient",
    "layer_gradient",
    "bias_chain_matrix",
    "induced_bias_kernel",
    "induced_bias_flow",
    "induced_cumulative_flow",
]


@dataclass(frozen=True, repr=False)
class ScaleBiasFlow:
    """Right-hand side of the scale-and-bias flow (4.3): λ̇, ḃ and θ̇, each of shape (L, M)."""

    scales: np.ndarray
    biases: np.ndarray
    thresholds: np.ndarray

    def __repr__(self) -> str:
        L, M = self.scales.shape
        return (
            f"<ScaleBiasFlow L={L}, M={M}>\n"
            f"  dλ/dt ∈ [{self.scales.min():.3g}, {self.scales.max():.3g}]\n"
            f"  db/dt ∈ [{self.biases.min():.3g}, {self.biases.max():.3g}]\n"
            f"  dθ/dt ∈ [{self.thresholds.min():.3g}, {self.thresholds.max():.3g}]"
        )


# --------------------------------------------------------------------------- validation


def _as_adapted(net) -> AdaptedNetwork:
    if not isinstance(net, AdaptedNetwork):
        raise TypeError(
            f"net must be a reluflow.AdaptedNetwork (build one with adapted_network or decompose_adapted); "
            f"got {type(net).__name__}"
        )
    return net


def _adapted_inputs(net, X, targets, point_weights):
    net = _as_adapted(net)
    X = as_points(X, "X", dim=net.width)
    N, M = X.shape
    targets = as_targets(targets, N, M)
    w = as_point_weights(point_weights, N)
    return net, X, targets, w


# --------------------------------------------------------------------------- adapted passes


def mix(T, a, b):
    """``a`` where the pattern ``T`` holds and ``b`` elsewhere: np.where for a boolean pattern, and b + T (a − b) for a
    real one in [0, 1], a convex combination of the two sides (Filippov's sliding, :mod:`reluflow.dynamics.general`).
    """
    if T.dtype == bool:
        return np.where(T, a, b)
    return b + T * (np.asarray(a) - b)


def adapted_forward(R, theta, X, *, keep_activations: bool = False, patterns=None):
    """Unvalidated adapted forward pass: m_L = R_L x^(τ,L), the patterns T_ℓ = [u_ℓ ≤ θ_ℓ] and
    (optionally) u_ℓ = R_ℓ x^(τ,ℓ-1), ℓ = 1..L. Arrays in, arrays out: callers validate first.

    Works in activation coordinates throughout: u_{ℓ+1} = (R_{ℓ+1} R_ℓᵀ) max(u_ℓ, θ_ℓ), one
    (N, M) × (M, M) product per layer. x^(τ,L) itself is R_Lᵀ m_L.

    ``patterns`` (L × (N, M), bool, or real in [0, 1]: see :func:`mix`) freezes the truncation pattern
    instead of reading it from the signs: m_ℓ = θ_ℓ where T_ℓ, else u_ℓ. Where T_ℓ = [u_ℓ ≤ θ_ℓ] this is
    the same pass; elsewhere it is the pass of that pattern continued smoothly across the thresholds,
    which is what an ODE solver integrating between two pattern changes needs (its stages may overshoot
    a threshold).
    """
    u = X @ R[0].T
    frozen = patterns is not None
    patterns = list(patterns) if frozen else []
    activations = []
    L = len(R)
    for l in range(L):
        if frozen:
            T = patterns[l]
        else:
            T = u <= theta[l]
            patterns.append(T)
        if keep_activations:
            activations.append(u)
            m = mix(T, theta[l], u) if frozen else np.maximum(u, theta[l])
        else:
            m = mix(T, theta[l], u) if frozen else np.maximum(u, theta[l], out=u)
        if l + 1 < L:
            u = m @ (R[l] @ R[l + 1].T)  # rows: u_{ℓ+1} = R_{ℓ+1} R_ℓᵀ m_ℓ
    return m, patterns, activations


def _adapted_backward(R, patterns, rotated_adjoint, *, keep_adjoints: bool = False):
    """Threshold gradient Σ_i P_ℓ ã_ℓ and (optionally) ã_ℓ = R_ℓ a_ℓ, from ã_L = ``rotated_adjoint``.

    Uses ã_{ℓ-1} = R_{ℓ-1} Π_ℓ a_ℓ = (R_{ℓ-1} R_ℓᵀ) D_ℓ ã_ℓ, one product per layer.
    """
    L, M = len(patterns), R.shape[1]
    g = np.empty((L, M))
    rotated = [None] * L
    at = rotated_adjoint
    for l in range(L - 1, -1, -1):
        T = patterns[l]
        g[l] = np.einsum("ik,ik->k", at, T)  # Σ_i P_ℓ ã_ℓ
        if keep_adjoints:
            rotated[l] = at
        if l > 0:
            # rows: ã_{ℓ-1} = R_{ℓ-1} R_ℓᵀ D_ℓ ã_ℓ; a boolean mask multiplies (~4x faster than np.where at N = 1024)
            D_at = at * ~T if T.dtype == bool else mix(T, 0.0, at)
            at = D_at @ (R[l] @ R[l - 1].T)
    return g, rotated


def _rotated_adjoint(R_last, m_L, targets, w):
    """ã_L = R_L a_L = w (m_L − R_L ỹ), since a_L = w (x^(τ,L) − ỹ) and x^(τ,L) = R_Lᵀ m_L."""
    a = m_L - targets @ R_last.T
    a *= w[:, None]
    return a


def _threshold_gradient(net, X, targets, w):
    return threshold_gradient_arrays(net.frames, net.thresholds, X, targets, w)


def threshold_gradient_arrays(R, theta, X, targets, w, patterns=None) -> np.ndarray:
    """(4.1) ∂C_in/∂θ_ℓ = Σ_i w_i P_ℓ R_ℓ Π_{ℓ+1} ⋯ Π_L r_i on plain arrays, without validation; shape (L, M).

    The kernel of :func:`threshold_gradient`, for callers that validate their inputs once and then
    evaluate the gradient many times (the right-hand side of :func:`reluflow.dynamics.solver.solve`):
    R (L, M, M) orthogonal frames, theta (L, M), X and targets (N, M) finite, w (N,) ≥ 0.
    ``patterns`` (bool (L, N, M)) freezes the truncation pattern (see :func:`adapted_forward`).
    """
    m_L, patterns, _ = adapted_forward(R, theta, X, patterns=patterns)
    g, _ = _adapted_backward(R, patterns, _rotated_adjoint(R[-1], m_L, targets, w))
    return g


# --------------------------------------------------------------------------- (4.1)–(4.4), adapted


def threshold_gradient(net, X, targets, *, point_weights=None) -> np.ndarray:
    """(4.1) ∂C_in/∂θ_ℓ = Σ_i w_i P_ℓ R_ℓ Π_{ℓ+1} ⋯ Π_L r_i, for ℓ = 1..L; shape (L, M).

    With the default uniform weights w_i = 1/N this is (1/N) Σ_i P_ℓ R_ℓ Π_{ℓ+1}⋯Π_L r_i, where
    r_i = x_i^(τ,L) − ỹ_i and each P, Π is evaluated on point i's own path.

    Parameters
    ----------
    net : AdaptedNetwork
        Frames R_ℓ, scales λ_ℓ and thresholds θ_ℓ.
    X : array (N, M)
        Input points as rows.
    targets : array (N, M)
        Input-space target ỹ_i of each point (see :func:`reluflow.theory.costs.targets_by_label`).
    point_weights : array (N,), optional
        Cost weights w_i ≥ 0; default 1/N.
    """
    net, X, targets, w = _adapted_inputs(net, X, targets, point_weights)
    return _threshold_gradient(net, X, targets, w)


def bias_flow(net, X, targets, *, point_weights=None) -> np.ndarray:
    """(4.2) θ̇_ℓ = −Λ_ℓ^-2 ∂C_in/∂θ_ℓ: the thresholds under ḃ^(ℓ) = −∇_{b^(ℓ)} C_in; shape (L, M).

    This is the gradient flow of the cumulative biases with Λ and R frozen. The biases move as
    ḃ^(ℓ) = −λ_ℓ ⊙ θ̇_ℓ. Arguments as for :func:`threshold_gradient`.
    """
    net, X, targets, w = _adapted_inputs(net, X, targets, point_weights)
    return -_threshold_gradient(net, X, targets, w) / net.scales**2


def one_layer_threshold_flow(net, X, targets, *, point_weights=None) -> np.ndarray:
    """(4.2), one layer: θ̇_k = −(1/λ_k²) Σ_{i ∈ T_k} w_i (θ_k − (R ỹ_i)_k); shape (1, M).

    With uniform weights this is −(1/(λ_k² N)) Σ_{i ∈ T_k} (θ_k − (R ỹ_{j(i)})_k), where T_k is the
    set of points truncated in coordinate k (R x_i)_k ≤ θ_k. It is computed directly from
    the pattern and the rotated targets, not from :func:`bias_flow`, and agrees with it for L = 1.
    """
    net, X, targets, w = _adapted_inputs(net, X, targets, point_weights)
    if net.depth != 1:
        raise ValueError(f"net must have one layer (L = 1) for the one-layer closed form; got L = {net.depth}")
    R, lam, theta = net.frames[0], net.scales[0], net.thresholds[0]
    T = X @ R.T <= theta
    y_hat = targets @ R.T  # (R ỹ_i)_k
    return (-(w[:, None] * T * (theta - y_hat)).sum(axis=0) / lam**2)[None, :]


def scale_bias_flow(net, X, targets, *, point_weights=None) -> ScaleBiasFlow:
    """(4.3) ḃ = g/λ, λ̇ = θ g/λ, θ̇ = −(1 + θ²) g/λ², with g = ∂C_in/∂θ (R frozen).

    This is the gradient flow of the cumulative scales λ_ℓ and biases b^(ℓ) = −λ_ℓ θ_ℓ together,
    ḃ = −∇_b C, λ̇ = −∇_λ C, written through g = :func:`threshold_gradient`. Every unit conserves
    λ² + b² (:func:`scale_bias_invariant`). Returns a :class:`ScaleBiasFlow` of (L, M) arrays.
    """
    net, X, targets, w = _adapted_inputs(net, X, targets, point_weights)
    return scale_bias_flow_arrays(net.frames, net.scales, net.thresholds, X, targets, w)


def scale_bias_flow_arrays(R, lam, theta, X, targets, w, patterns=None) -> ScaleBiasFlow:
    """(4.3) on plain arrays, without validation: the kernel of :func:`scale_bias_flow`.

    For solvers that validate once and evaluate the flow many times, including at intermediate
    Runge–Kutta stages where a scale may transiently leave (0, ∞): R (L, M, M), lam and theta (L, M).
    ``patterns`` (bool (L, N, M)) freezes the truncation pattern (see :func:`adapted_forward`).
    """
    g = threshold_gradient_arrays(R, theta, X, targets, w, patterns)
    return ScaleBiasFlow(scales=theta * g / lam, biases=g / lam, thresholds=-(1.0 + theta**2) * g / lam**2)


def scale_bias_invariant(net) -> np.ndarray:
    """λ_{ℓ,k}² + b_{ℓ,k}² = λ_{ℓ,k}² (1 + θ_{ℓ,k}²), conserved by the scale-and-bias flow (4.3); shape (L, M)."""
    net = _as_adapted(net)
    return net.scales**2 * (1.0 + net.thresholds**2)


def frame_flow(net, X, targets, *, point_weights=None) -> np.ndarray:
    """(4.4) Ṙ_ℓ = −Ω_ℓ R_ℓ, Ω_ℓ = ½(G_ℓ R_ℓᵀ − R_ℓ G_ℓᵀ), G_ℓ R_ℓᵀ = Σ_i (m_i ã_iᵀ + (D_ℓ ã_i) u_iᵀ).

    This is the Riemannian gradient flow of each frame R_ℓ on O(M), with Λ and θ frozen, for the
    bi-invariant metric ⟨A R, B R⟩ = tr(Aᵀ B). Here u_i = R_ℓ x_i^(τ,ℓ-1), m_i = max(u_i, θ_ℓ),
    ã_i = R_ℓ Π_{ℓ+1}⋯Π_L w_i r_i and D_ℓ = 1 − P_ℓ. The derivation is in the module docstring.
    Returns Ṙ of shape (L, M, M). Ṙ_ℓ R_ℓᵀ = −Ω_ℓ is skew, so the flow stays on O(M).
    """
    net, X, targets, w = _adapted_inputs(net, X, targets, point_weights)
    return frame_flow_arrays(net.frames, net.thresholds, X, targets, w)


def frame_flow_arrays(R, theta, X, targets, w, patterns=None) -> np.ndarray:
    """(4.4) on plain arrays, without validation: the kernel of :func:`frame_flow`; shape (L, M, M).

    For solvers that validate once and evaluate the flow many times, including at intermediate
    Runge–Kutta stages whose frames are orthogonal only to the integrator's accuracy.
    ``patterns`` (bool (L, N, M)) freezes the truncation pattern (see :func:`adapted_forward`).
    """
    m_L, patterns, us = adapted_forward(R, theta, X, keep_activations=True, patterns=patterns)
    _, rotated = _adapted_backward(R, patterns, _rotated_adjoint(R[-1], m_L, targets, w), keep_adjoints=True)
    out = np.empty_like(R)
    for l in range(R.shape[0]):
        u, T, at = us[l], patterns[l], rotated[l]
        GRt = mix(T, theta[l], u).T @ at + mix(T, 0.0, at).T @ u
        omega = 0.5 * (GRt - GRt.T)
        out[l] = -omega @ R[l]
    return out


# --------------------------------------------------------------------------- general cumulative parameters


def _general_gradient(Wcs, bcs, X, targets, w, patterns=None):
    """∇_{W^(ℓ)} C and ∇_{b^(ℓ)} C by the adjoint recursion of the module docstring.

    ``patterns`` (bool, L × (N, M)) freezes the truncation pattern T = [z ≤ 0]: τ(x) = x + W^-1 (T ⊙ (−z)),
    the same map where T agrees with the signs, continued smoothly across the thresholds elsewhere.
    """
    frozen = patterns is not None
    xs, patterns = [X], list(patterns) if frozen else []
    x = X
    for l, (W, b) in enumerate(zip(Wcs, bcs, strict=True)):
        z = x @ W.T + b
        if frozen:
            T = patterns[l]
            x = x + np.linalg.solve(W, mix(T, -z, 0.0).T).T
        else:
            T = z <= 0.0
            x = x + np.linalg.solve(W, np.maximum(-z, 0.0).T).T  # τ(x) = x + W^-1 (Wx + b)_−
            patterns.append(T)
        xs.append(x)
    a = w[:, None] * (x - targets)
    dW, db = [None] * len(Wcs), [None] * len(Wcs)
    for l in range(len(Wcs) - 1, -1, -1):
        W = Wcs[l]
        alpha = np.linalg.solve(W.T, a.T).T  # α_i = W^-ᵀ a_i
        D_alpha = mix(patterns[l], 0.0, alpha)
        dW[l] = D_alpha.T @ xs[l] - alpha.T @ xs[l + 1]  # Σ_i (D α_i) x_iᵀ − α_i y_iᵀ
        db[l] = D_alpha.sum(axis=0) - alpha.sum(axis=0)  # −Σ_i T α_i
        a = D_alpha @ W  # Wᵀ D α
    return dW, db


def cumulative_gradient(Wc, bc, X, targets, *, point_weights=None, max_condition: float = MAX_CONDITION):
    """∇_{W^(ℓ)} C_in and ∇_{b^(ℓ)} C_in for full cumulative parameters (adapted or not).

    Per point and layer, with z = W^(ℓ) x^(τ,ℓ-1) + b^(ℓ), D = diag(σ'(z)), T = 1 − D,
    α = (W^(ℓ))^-ᵀ a_ℓ and a_{ℓ-1} = (W^(ℓ))ᵀ D α:
    ∇_{W^(ℓ)} C = Σ_i (D α_i) (x_i^(τ,ℓ-1))ᵀ − α_i (x_i^(τ,ℓ))ᵀ and ∇_{b^(ℓ)} C = −Σ_i T α_i,
    starting from a_L = w_i r_i.

    Returns ``(dWc, dbc)``: lists of L arrays of shapes (M, M) and (M,). For an adapted network,
    ∂C/∂θ_ℓ = −λ_ℓ ⊙ ∇_{b^(ℓ)} C.
    """
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    X = as_points(X, "X", dim=Wcs[0].shape[0])
    N, M = X.shape
    targets = as_targets(targets, N, M)
    w = as_point_weights(point_weights, N)
    return _general_gradient(Wcs, bcs, X, targets, w)


# --------------------------------------------------------------------------- (4.5) standard gradient descent


def _cumulative_chain(Ws, bs):
    """W^(ℓ), b^(ℓ) for ℓ = 0..L (index 0 is W^(0) = 1, b^(0) = 0)."""
    M = Ws[0].shape[0]
    Wc, bc = [np.eye(M)], [np.zeros(M)]
    for W, b in zip(Ws, bs, strict=True):
        Wc.append(W @ Wc[-1])
        bc.append(W @ bc[-1] + b)
    return Wc, bc


def _cumulative_vjp(Ws, Wc, bc, gW, gb):
    """Jᵀ applied to (gW, gb) = gradient w.r.t. c: the gradient w.r.t. the layer parameters p."""
    L = len(Ws)
    dW, db = [None] * L, [None] * L
    adj_W, adj_b = np.zeros_like(Ws[0]), np.zeros(Ws[0].shape[0])
    for l in range(L - 1, -1, -1):
        if l + 1 < L:  # through W^(ℓ+1) = W_{ℓ+1} W^(ℓ) and b^(ℓ+1) = W_{ℓ+1} b^(ℓ) + b_{ℓ+1}
            adj_W = Ws[l + 1].T @ adj_W
            adj_b = Ws[l + 1].T @ adj_b
        adj_W = adj_W + gW[l]
        adj_b = adj_b + gb[l]
        dW[l] = adj_W @ Wc[l].T + np.outer(adj_b, bc[l])  # Wc[l] = W^(ℓ-1) in the 0-based chain
        db[l] = adj_b.copy()
    return dW, db


def _cumulative_jvp(Ws, Wc, bc, dW, db):
    """J applied to a tangent (dW_ℓ, db_ℓ): the resulting (dW^(ℓ), db^(ℓ))."""
    M = Ws[0].shape[0]
    dWc, dbc = [], []
    tW, tb = np.zeros((M, M)), np.zeros(M)
    for l, W in enumerate(Ws):
        tW = dW[l] @ Wc[l] + W @ tW
        tb = dW[l] @ bc[l] + W @ tb + db[l]
        dWc.append(tW)
        dbc.append(tb)
    return dWc, dbc


def _layer_inputs(weights, biases, X, targets, point_weights, max_condition):
    Ws, bs = validate_layers(weights, biases, square=True, max_condition=max_condition)
    Wc, bc = _cumulative_chain(Ws, bs)
    Wcs, bcs = validate_layers(Wc[1:], bc[1:], square=True, max_condition=max_condition, prefix="cumulative ")
    X = as_points(X, "X", dim=Ws[0].shape[0])
    N, M = X.shape
    targets = as_targets(targets, N, M)
    w = as_point_weights(point_weights, N)
    gW, gb = _general_gradient(Wcs, bcs, X, targets, w)
    return Ws, Wc, bc, gW, gb


def layer_gradient(weights, biases, X, targets, *, point_weights=None, max_condition: float = MAX_CONDITION):
    """∇_p C_in = Jᵀ ∇_c C_in for the layer parameters p = (W_ℓ, b_ℓ); J = ∂c/∂p, c = (W^(ℓ), b^(ℓ)).

    This is the gradient that standard gradient descent on the layers follows. ``weights, biases``
    are the layers' own W_ℓ (M, M), b_ℓ (M,). Returns ``(dW, db)``, lists of L arrays.
    """
    Ws, Wc, bc, gW, gb = _layer_inputs(weights, biases, X, targets, point_weights, max_condition)
    return _cumulative_vjp(Ws, Wc, bc, gW, gb)


def induced_cumulative_flow(weights, biases, X, targets, *, point_weights=None,
                            max_condition: float = MAX_CONDITION):
    """(4.5) ċ = −J Jᵀ ∇_c C_in: how c = (W^(ℓ), b^(ℓ)) moves under gradient descent ṗ = −∇_p C_in.

    Here p = (W_ℓ, b_ℓ) are the layer parameters and J = ∂c/∂p is the Jacobian of
    W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ. Returns ``(dWc, dbc)`` = (Ẇ^(ℓ), ḃ^(ℓ)) as
    lists of L arrays of shapes (M, M) and (M,).
    """
    Ws, Wc, bc, gW, gb = _layer_inputs(weights, biases, X, targets, point_weights, max_condition)
    dW, db = _cumulative_vjp(Ws, Wc, bc, gW, gb)
    return _cumulative_jvp(Ws, Wc, bc, [-d for d in dW], [-d for d in db])


def bias_chain_matrix(weights) -> np.ndarray:
    """J = ∂(b^(1), …, b^(L))/∂(b_1, …, b_L): block (ℓ, k) = W_ℓ⋯W_{k+1} for k ≤ ℓ, 0 above.

    b^(ℓ) = Σ_{k≤ℓ} W_ℓ⋯W_{k+1} b_k (the empty product is 1). J Jᵀ is the kernel K of the flow that
    gradient descent on the layer biases induces on the cumulative biases. Shape (L·M, L·M).
    """
    Wl = as_layer_list(weights, "weights")
    Wl = [as_real_array(W, f"weights[{l}] (layer {l + 1})", ndim=2) for l, W in enumerate(Wl)]
    M = Wl[0].shape[0]
    for l, W in enumerate(Wl):
        if W.shape != (M, M) or M == 0:
            raise ValueError(f"weights[{l}] (layer {l + 1}) must be square of shape ({M}, {M}) like layer 1; "
                             f"got {W.shape}")
    L = len(Wl)
    J = np.zeros((L * M, L * M))
    for k in range(L):
        P = np.eye(M)
        for l in range(k, L):
            if l > k:
                P = Wl[l] @ P
            J[l * M:(l + 1) * M, k * M:(k + 1) * M] = P
    return J


def induced_bias_kernel(weights) -> np.ndarray:
    """K_{ℓℓ'} = Σ_{k ≤ min(ℓ,ℓ')} (W_ℓ⋯W_{k+1})(W_ℓ'⋯W_{k+1})ᵀ (empty product = 1); shape (L, L, M, M).

    ``K[l, l2]`` is the (M, M) block for layers ℓ = l+1, ℓ' = l2+1. It is J Jᵀ, with J the Jacobian
    of the cumulative biases b^(ℓ) with respect to the layer biases b_k (:func:`bias_chain_matrix`).
    So the full matrix ``K.transpose(0, 2, 1, 3).reshape(L*M, L*M)`` is symmetric positive definite.
    The weights need not be invertible here.
    """
    J = bias_chain_matrix(weights)
    L = len(weights)
    M = J.shape[0] // L
    return (J @ J.T).reshape(L, M, L, M).transpose(0, 2, 1, 3)



def induced_bias_flow(weights, biases, X, targets, *, point_weights=None,
                      max_condition: float = MAX_CONDITION) -> np.ndarray:
    """(4.5) ḃ^(ℓ) = −Σ_ℓ' K_{ℓℓ'} ∇_{b^(ℓ')} C_in, under gradient descent on the layer biases b_ℓ only.

    K is :func:`induced_bias_kernel`. The weights, and so the W^(ℓ), stay fixed. Returns ḃ^(ℓ) for
    ℓ = 1..L, shape (L, M).
    """
    Ws, _, _, _, gb = _layer_inputs(weights, biases, X, targets, point_weights, max_condition)
    K = induced_bias_kernel(Ws)
    return -np.einsum("lpij,pj->li", K, np.stack(gb))

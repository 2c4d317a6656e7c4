"""Weights adapted to the activation coordinates (THEORY.md §2).

The cumulative weights are *adapted* when W^(ℓ) = Λ_ℓ R_ℓ with Λ_ℓ = diag(λ_ℓ) positive and
R_ℓ orthogonal (equivalently, the rows of W^(ℓ) are pairwise orthogonal). With the thresholds
θ_ℓ = −Λ_ℓ^-1 b^(ℓ), the truncation map of layer ℓ is the Euclidean projection onto the cone
K_ℓ = {x : R_ℓ x ≥ θ_ℓ}.

- (W^(ℓ), b^(ℓ)) = (Λ_ℓ R_ℓ, −Λ_ℓ θ_ℓ)                 → :func:`adapted_network`,
  :meth:`AdaptedNetwork.cumulative_parameters`
- (R_ℓ, λ_ℓ, θ_ℓ) from adapted (W^(ℓ), b^(ℓ))          → :func:`decompose_adapted`
- ‖offdiag(W Wᵀ)‖_F / ‖diag(W Wᵀ)‖_F                    → :func:`adaptedness`
- Rᵀ max(R x, θ), the projection onto K                 → :func:`cone_projection`
- apex p_ℓ = R_ℓᵀ θ_ℓ                                   → :attr:`AdaptedNetwork.apexes`
- a frame: the rotation by an angle in one coordinate plane → :func:`rotation`
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.theory.network import haar_orthogonal
from reluflow.validation import (
    MAX_CONDITION,
    as_bool,
    as_layer_list,
    as_points,
    as_real,
    as_real_array,
    as_tolerance,
    check_memory,
    check_size,
    validate_layers,
)

__all__ = [
    "AdaptedNetwork",
    "adapted_network",
    "decompose_adapted",
    "adaptedness",
    "cone_projection",
    "random_adapted_network",
    "rotation",
]

#: Default tolerance for orthogonality checks (‖RᵀR − 1‖ and the adaptedness of W).
ORTHOGONALITY_TOL = 1e-10


@dataclass(frozen=True, repr=False)
class AdaptedNetwork:
    """Frames R_ℓ (L, M, M), scales λ_ℓ (L, M) and thresholds θ_ℓ (L, M) of an adapted network.

    Build it with :func:`adapted_network` or :func:`decompose_adapted`, or directly. Every construction is
    validated (frames orthogonal within :data:`ORTHOGONALITY_TOL`, scales finite and > 0, thresholds
    finite, all float64 of matching shapes), and the fields are read-only copies, so an AdaptedNetwork
    cannot be in an invalid state: ``net.thresholds[0, 0] = 1.0`` raises. Use
    ``dataclasses.replace(net, thresholds=...)`` for a changed network.
    """

    frames: np.ndarray
    scales: np.ndarray
    thresholds: np.ndarray

    def __post_init__(self):
        R = _field(self.frames, "frames", 3)
        L, M, M2 = R.shape
        if M != M2 or M == 0 or L == 0:
            raise ValueError(f"frames must have shape (L, M, M) with L, M >= 1; got shape {R.shape}")
        lam = _field(self.scales, "scales", 2)
        theta = _field(self.thresholds, "thresholds", 2)
        for name, arr in (("scales", lam), ("thresholds", theta)):
            if arr.shape != (L, M):
                raise ValueError(f"{name} must have shape (L, M) = ({L}, {M}) to match frames; got shape {arr.shape}")
        if not np.all(lam > 0):
            raise ValueError(f"scales must be positive; got minimum {lam.min():.3g}")
        err = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(M)).max(axis=(1, 2))
        if np.any(err > ORTHOGONALITY_TOL):
            worst = int(np.argmax(err))
            raise ValueError(f"frames[{worst}] (layer {worst + 1}) must be orthogonal: max |R Rᵀ − 1| = "
                             f"{err[worst]:.3g} exceeds ORTHOGONALITY_TOL = {ORTHOGONALITY_TOL:.3g}")
        for name, arr in (("frames", R), ("scales", lam), ("thresholds", theta)):
            object.__setattr__(self, name, arr)

    @classmethod
    def _unchecked(cls, frames, scales, thresholds) -> AdaptedNetwork:
        """An AdaptedNetwork without validation, for solver internals only: the intermediate states of an
        integrator (e.g. Runge–Kutta stages of the frame flow) are not exactly on O(M). Not public."""
        net = object.__new__(cls)
        object.__setattr__(net, "frames", frames)
        object.__setattr__(net, "scales", scales)
        object.__setattr__(net, "thresholds", thresholds)
        return net

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return self.frames.shape[0]

    @property
    def width(self) -> int:
        """M, the width of every hidden layer (and the input dimension)."""
        return self.frames.shape[1]

    @property
    def apexes(self) -> np.ndarray:
        """p_ℓ = R_ℓᵀ θ_ℓ, the apex of each cone K_ℓ; shape (L, M)."""
        return np.einsum("lkm,lk->lm", self.frames, self.thresholds)

    def cumulative_parameters(self):
        """(Wc, bc) with W^(ℓ) = diag(λ_ℓ) R_ℓ and b^(ℓ) = −λ_ℓ θ_ℓ, as lists of L arrays."""
        Wc = [s[:, None] * R for R, s in zip(self.frames, self.scales)]
        bc = [-s * t for s, t in zip(self.scales, self.thresholds)]
        return Wc, bc

    def __repr__(self) -> str:
        return (
            f"<AdaptedNetwork depth L={self.depth}, width M={self.width}>\n"
            f"  scales λ ∈ [{self.scales.min():.3g}, {self.scales.max():.3g}]\n"
            f"  thresholds θ ∈ [{self.thresholds.min():.3g}, {self.thresholds.max():.3g}]"
        )


def _field(value, name: str, ndim: int) -> np.ndarray:
    """A read-only float64 copy of one field (one copy at most; an already read-only float64 array is kept)."""
    if isinstance(value, np.ndarray) and value.dtype == np.float64 and not value.flags.writeable \
            and value.ndim == ndim and value.base is None:
        arr = value
    else:
        arr = np.array(as_real_array(value, name, ndim=ndim, finite=False), dtype=np.float64, copy=True)
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite; got {bad} NaN or inf entr{'y' if bad == 1 else 'ies'}")
    arr.setflags(write=False)
    return arr


def adapted_network(frames, scales, thresholds, *, tol: float = ORTHOGONALITY_TOL) -> AdaptedNetwork:
    """Validate frames R_ℓ (orthogonal), scales λ_ℓ (> 0) and thresholds θ_ℓ; return an AdaptedNetwork.

    Each argument is a sequence of L per-layer arrays (or one stacked array): frames (M, M),
    scales (M,), thresholds (M,). Frames orthogonal within ``tol`` but not within
    :data:`ORTHOGONALITY_TOL` (only possible with ``tol`` > ORTHOGONALITY_TOL) are replaced by their
    nearest orthogonal matrix (the polar factor).
    """
    tol = as_tolerance(tol, "tol")
    R = as_real_array(np.stack(as_layer_list(frames, "frames")) if not isinstance(frames, np.ndarray) else frames,
                      "frames", ndim=3)
    L, M, M2 = R.shape
    if M != M2 or M == 0:
        raise ValueError(f"frames must have shape (L, M, M); got {R.shape}")
    lam = as_real_array(scales, "scales", ndim=2)
    theta = as_real_array(thresholds, "thresholds", ndim=2)
    for name, arr in (("scales", lam), ("thresholds", theta)):
        if arr.shape != (L, M):
            raise ValueError(f"{name} must have shape (L, M) = ({L}, {M}) to match frames; got {arr.shape}")
    if np.any(lam <= 0):
        raise ValueError(f"scales must be positive; got minimum {lam.min():.3g}")
    err = np.abs(np.einsum("lij,lkj->lik", R, R) - np.eye(M)).max(axis=(1, 2))
    if np.any(err > tol):
        worst = int(np.argmax(err))
        raise ValueError(
            f"frames[{worst}] must be orthogonal: max |R Rᵀ − 1| = {err[worst]:.3g} exceeds tol={tol:.3g}"
        )
    return AdaptedNetwork(frames=_snap_orthogonal(R, err), scales=lam, thresholds=theta)


def _snap_orthogonal(R, err):
    """R with each frame whose orthogonality error exceeds ORTHOGONALITY_TOL replaced by its polar factor U Vᵀ."""
    loose = err > ORTHOGONALITY_TOL
    if not np.any(loose):
        return R
    R = R.copy()
    U, _, Vt = np.linalg.svd(R[loose])
    R[loose] = U @ Vt
    return R


def adaptedness(W) -> np.ndarray | float:
    """Non-adaptedness ‖offdiag(W Wᵀ)‖_F / ‖diag(W Wᵀ)‖_F of a matrix or a stack (..., M, M).

    It is 0 exactly when the rows of W are pairwise orthogonal, i.e. W = Λ R is adapted.
    """
    if isinstance(W, (list, tuple)):
        W = np.stack([as_real_array(w, f"W[{i}]", ndim=2) for i, w in enumerate(W)])
    W = as_real_array(W, "W")
    if W.ndim < 2 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"W must be a square matrix or a stack of them, shape (..., M, M); got {W.shape}")
    G = W @ np.swapaxes(W, -1, -2)
    diag = np.diagonal(G, axis1=-2, axis2=-1)
    M = W.shape[-1]
    off = np.sqrt((np.where(np.eye(M, dtype=bool), 0.0, G) ** 2).sum(axis=(-2, -1)))
    dnorm = np.sqrt((diag**2).sum(axis=-1))
    if np.any(dnorm == 0):
        raise ValueError("W must not be zero: its adaptedness is undefined")
    out = off / dnorm
    return float(out) if out.ndim == 0 else out


def decompose_adapted(Wc, bc, *, tol: float = 1e-8, max_condition: float = MAX_CONDITION) -> AdaptedNetwork:
    """Frames, scales and thresholds of adapted cumulative parameters.

    λ_ℓ are the row norms of W^(ℓ), R_ℓ = Λ_ℓ^-1 W^(ℓ), θ_ℓ = −Λ_ℓ^-1 b^(ℓ). Raises ValueError if a
    layer's :func:`adaptedness` exceeds ``tol``. A frame Λ_ℓ^-1 W^(ℓ) that is orthogonal within ``tol`` but
    not within :data:`ORTHOGONALITY_TOL` is replaced by its nearest orthogonal matrix (the polar factor).
    """
    tol = as_tolerance(tol, "tol")
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    W = np.stack(Wcs)
    a = np.atleast_1d(adaptedness(W))
    if np.any(a > tol):
        worst = int(np.argmax(a))
        raise ValueError(
            f"cumulative weights[{worst}] (layer {worst + 1}) are not adapted: adaptedness {a[worst]:.3g} "
            f"exceeds tol={tol:.3g} (rows must be pairwise orthogonal)"
        )
    lam = np.linalg.norm(W, axis=2)
    R = W / lam[:, :, None]
    theta = -np.stack(bcs) / lam
    err = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(R.shape[1])).max(axis=(1, 2))
    return AdaptedNetwork(frames=_snap_orthogonal(R, err), scales=lam, thresholds=theta)


def cone_projection(R, theta, X) -> np.ndarray:
    """Euclidean projection Rᵀ max(R x, θ) of each row of X onto K = {x : R x ≥ θ}.

    R must be orthogonal (M, M); theta has shape (M,); X has shape (N, M).
    """
    R = as_real_array(R, "R", ndim=2)
    M = R.shape[0]
    if R.shape != (M, M) or np.abs(R @ R.T - np.eye(M)).max() > ORTHOGONALITY_TOL:
        raise ValueError(f"R must be an orthogonal (M, M) matrix; got shape {R.shape}")
    theta = as_real_array(theta, "theta", ndim=1)
    if theta.shape != (M,):
        raise ValueError(f"theta must have shape ({M},); got {theta.shape}")
    X = as_points(X, "X", dim=M)
    return np.maximum(X @ R.T, theta) @ R


def random_adapted_network(M: int, L: int, *, seed=None, common_frame: bool = False,
                           scale_range=(0.5, 2.0), threshold_scale: float = 1.0) -> AdaptedNetwork:
    """A random adapted network: Haar frames, scales uniform in ``scale_range``, Gaussian thresholds."""
    M = check_size(M, "M")
    L = check_size(L, "L")
    check_memory(8.0 * (L + 3) * (M * M + 2 * M), f"random_adapted_network(M={M}, L={L})")
    common_frame = as_bool(common_frame, "common_frame")
    threshold_scale = as_real(threshold_scale, "threshold_scale", minimum=0.0)
    try:
        lo, hi = (as_real(v, f"scale_range[{i}]") for i, v in enumerate(scale_range))
    except TypeError:
        raise TypeError(f"scale_range must be a pair (low, high) of real numbers; got {scale_range!r}") from None
    except ValueError as exc:
        if "unpack" not in str(exc):
            raise
        raise ValueError(f"scale_range must be a pair (low, high); got {scale_range!r}") from None
    if not (0 < lo <= hi):
        raise ValueError(f"scale_range must satisfy 0 < low <= high; got {scale_range!r}")
    rng = np.random.default_rng(seed)
    if common_frame:
        R = np.broadcast_to(haar_orthogonal(rng, M), (L, M, M)).copy()
    else:
        R = np.stack([haar_orthogonal(rng, M) for _ in range(L)])
    lam = rng.uniform(lo, hi, size=(L, M))
    theta = threshold_scale * rng.standard_normal((L, M))
    return adapted_network(R, lam, theta)


def rotation(degrees, dim: int = 2, plane=(0, 1)) -> np.ndarray:
    """Rotation by ``degrees`` in one coordinate plane: R[i,i] = R[j,j] = cos a, R[j,i] = −R[i,j] = sin a.

    For ``dim = 2`` and the default plane this is the counter-clockwise rotation
    [[cos a, −sin a], [sin a, cos a]], a = ``degrees`` · π/180. In higher dimension it is the Givens
    rotation in the plane of the coordinates ``plane = (i, j)``, the identity elsewhere. The result is
    in SO(dim); used as a frame R_ℓ its rows are the activation directions.
    """
    if isinstance(degrees, (bool, np.bool_)) or not isinstance(degrees, (int, float, np.integer, np.floating)):
        raise TypeError(f"degrees must be a real number; got {type(degrees).__name__} {degrees!r}")
    if not np.isfinite(degrees):
        raise ValueError(f"degrees must be finite; got {degrees!r}")
    dim = check_size(dim, "dim", minimum=2)
    check_memory(8.0 * dim * dim, f"rotation(dim={dim})")
    try:
        i, j = (int(v) for v in plane)
    except (TypeError, ValueError):
        raise TypeError(f"plane must be a pair of coordinate indices (i, j); got {plane!r}") from None
    if not (0 <= i < dim and 0 <= j < dim and i != j):
        raise ValueError(f"plane must hold two different indices in 0..{dim - 1}; got {plane!r}")
    a = np.deg2rad(degrees)
    R = np.eye(dim)
    R[i, i], R[i, j], R[j, i], R[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return R

"""Spectral gaps of gradient flows (THEORY.md §4.5 and §5, S6).

If the trained parameters p follow ∂_t p = −∇_p C with C = (1/2N) Σ_i |f_i − y_i|², the stacked outputs
f = (f_1, …, f_N) follow ∂_t f = −(1/N) D Dᵀ (f − y), with D = ∂f/∂p. When λ_min(D Dᵀ) ≥ λ on
[0, t], C(t) ≤ e^{−2λt/N} C(0). When D Dᵀ is rank-deficient (the truncation regime) the component of
the residual orthogonal to range(D) is frozen between events, and the component in range(D) decays
at least at the rate λ_min⁺(D Dᵀ)/N, the smallest *nonzero* eigenvalue.

Rows of every Jacobian here are the stacked outputs, point-major: row i·Q + q is coordinate q of
point i (points are rows of X, shape (N, M)). Columns are the parameters in the order requested.

Map from formula to function:

- D = ∂x^(L+1)/∂p for p among W_ℓ, b_ℓ, W_out, b_out, b^(ℓ)           → :func:`output_jacobian`
- D = ∂x^(τ,L)/∂b^(ℓ): D_i^(ℓ) = −Π_L⋯Π_{ℓ+1} (W^(ℓ))^-1 P_ℓ(x_i)       → :func:`truncated_bias_jacobian`
- ∂b^(ℓ)/∂b_k = W_ℓ⋯W_{k+1} (k ≤ ℓ); K = J Jᵀ is the kernel of §4.5    → :func:`reluflow.theory.flows.bias_chain_matrix`
- eigenvalues of D Dᵀ; λ_min, λ_min⁺                                   → :func:`gram_eigenvalues`, :func:`spectral_gap`
- n_k/λ_k², the nonzero eigenvalues of D Dᵀ for one adapted layer      → :func:`bias_flow_rates`
- λ_min⁺ = min_{k: n_k > 0} n_k/λ_k²                                    → :func:`bias_flow_gap`
- Dᵀ (1 ⊗ G) D = (TᵀT) ⊙ (W^-T G W^-1), one layer, G = 1 or
  G = (W^(2))ᵀ W^(2) (so that W^-T G W^-1 = W_outᵀ W_out)               → :func:`bias_flow_parameter_gram`
- D H^½ at a recorded time of a trajectory (H: learning-rate ratios)    → :func:`flow_jacobian`
- eigenvalues of D Dᵀ, λ_min, λ_min⁺, n_k/λ_k², the residual split and
  C(0) e^{−2λt/N} along a gradient-descent run or a threshold flow       → :func:`spectral_trajectory`
- the pattern that acts (ties resolved by Filippov's rule) and the resting thresholds, one layer
                                                                         → :func:`active_bias_pattern`
- D_A = ∂x^(τ,1)/∂b restricted to the active pattern and the moving thresholds
                                                                         → :func:`active_bias_jacobian`
- the corrected truncation-regime statement, checked along a solution    → :func:`active_set_decay`

The truncation-regime statement, precisely (one adapted layer, bias flow, input cost; THEORY.md §5 S6).
Call the *active pattern* A(t) the truncation pattern that drives the flow: a point strictly on one side
of its threshold counts as usual; a point *on* its threshold (a tie) counts as truncated only if the
threshold moves on to truncate it. A threshold *rests* when it sits on a point and the field pushes it
back from both sides (Filippov sliding), or when it has released its last point (S3): then it does not
move. Let D_A be the Jacobian ∂x^(τ,1)/∂b built from A, with the columns of resting thresholds set to 0.
On any time interval on which A and the set of resting thresholds are constant,

    ∂_t r = −(1/N) D_A D_Aᵀ r,        r = x^(τ,1) − ỹ,

so the component of r orthogonal to range(D_A) is constant and
|P_A r(t2)| ≤ e^{−λ_min⁺(D_A D_Aᵀ)(t2 − t1)/N} |P_A r(t1)|, with λ_min⁺(D_A D_Aᵀ) = min over the moving
coordinates with n_k > 0 of n_k/λ_k². The earlier statement, with D built from the tie convention (a tie
counts as truncated) and every column kept, is *false* while a threshold rests on a point: the tie
point's column is in range(D), but its residual is frozen. (In the deep case the same holds with D_A
composed with the projection onto the sliding surface, :func:`reluflow.dynamics.events.sliding_flow`;
only one layer is implemented here.)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from reluflow.results.schema import STATUS, make_dataset
from reluflow.theory.flows import bias_chain_matrix
from reluflow.theory.kernels import cumulative_pass, forward_pass, layer_pass
from reluflow.validation import (
    MAX_CONDITION,
    as_bool,
    as_max_condition,
    as_points,
    as_real,
    as_real_array,
    as_square_invertible,
    as_targets,
    as_terminal_layer,
    as_terminal_weights,
    as_vector,
    validate_layers,
)

__all__ = [
    "JACOBIAN_PARAMETERS",
    "output_jacobian",
    "truncated_bias_jacobian",
    "truncated_bias_jacobian_arrays",
    "gram_eigenvalues",
    "spectral_gap",
    "bias_flow_rates",
    "bias_flow_gap",
    "bias_flow_parameter_gram",
    "flow_jacobian",
    "spectral_trajectory",
    "TERMINALS",
    "active_bias_pattern",
    "active_bias_jacobian",
    "active_set_decay",
]

#: Parameter groups :func:`output_jacobian` differentiates with respect to.
JACOBIAN_PARAMETERS = ("weights", "biases", "W_out", "b_out", "cumulative_biases")


def _parameter_names(parameters):
    names = (parameters,) if isinstance(parameters, str) else parameters
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"parameters must be a name or a sequence of names from {JACOBIAN_PARAMETERS}; "
                        f"got {type(parameters).__name__}") from None
    if not names:
        raise ValueError(f"parameters must name at least one group from {JACOBIAN_PARAMETERS}; got none")
    for n in names:
        if n not in JACOBIAN_PARAMETERS:
            raise ValueError(f"parameters must be names from {JACOBIAN_PARAMETERS}; got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"parameters must not repeat a group; got {names!r}")
    return names


def truncated_bias_jacobian_arrays(Wc, bc, X):
    """(N, M, L, M) array D[i, :, ℓ, :] = ∂x_i^(τ,L)/∂b^(ℓ), and the truncation masks (L, N, M).

    The unvalidated kernel of :func:`truncated_bias_jacobian`, for loops that call it many times on
    arrays already checked (float64, Wc (L, M, M) invertible, bc (L, M), X (N, M)).
    """
    N, M = X.shape
    L = Wc.shape[0]
    x = X
    masks = []
    for W, b in zip(Wc, bc, strict=True):
        z = x @ W.T + b
        masks.append(z <= 0.0)  # ties count as truncated (σ'(0) = 0)
        x = x + np.linalg.solve(W, np.maximum(-z, 0.0).T).T
    A = np.broadcast_to(np.eye(M), (N, M, M))  # ∂x^(τ,L)/∂x^(τ,ℓ)
    D = np.empty((N, M, L, M))
    for l in range(L - 1, -1, -1):
        Dl = -(A @ np.linalg.inv(Wc[l])) * masks[l][:, None, :]  # ∂τ_ℓ/∂b^(ℓ) = −(W^(ℓ))^-1 P_ℓ
        D[:, :, l, :] = Dl
        A = A + Dl @ Wc[l]  # ∂τ_ℓ/∂x = 1 − (W^(ℓ))^-1 P_ℓ W^(ℓ)
    return D, np.stack(masks)


def _output_jacobian(Ws, bs, W_out, X, names, scale=None):
    """Unvalidated core of :func:`output_jacobian`; ``scale`` maps a group name to a column factor."""
    N = X.shape[0]
    L, M = bs.shape
    Q = W_out.shape[0]
    Z, A = forward_pass(Ws, bs, X)
    J = [None] * L  # J[l][i] = ∂x_i^(L+1)/∂z_l, shape (N, Q, M)
    Jl = W_out[None, :, :] * (Z[-1] > 0.0)[:, None, :]
    for l in range(L - 1, -1, -1):
        J[l] = Jl
        if l > 0:
            Jl = (Jl @ Ws[l]) * (Z[l - 1] > 0.0)[:, None, :]
    blocks = []
    for name in names:
        if name == "biases":
            block = np.concatenate(J, axis=2)
        elif name == "weights":
            block = np.concatenate([np.einsum("nqk,nj->nqkj", J[l], A[l]).reshape(N, Q, M * M) for l in range(L)],
                                   axis=2)
        elif name == "W_out":
            block = np.einsum("qp,nj->nqpj", np.eye(Q), A[L]).reshape(N, Q, Q * M)
        elif name == "b_out":
            block = np.broadcast_to(np.eye(Q), (N, Q, Q))
        else:  # cumulative_biases: x^(L) = W^(L) x^(τ,L) + b^(L) with the layer (W_out, b_out) fixed
            Wcs, bcs = cumulative_pass(Ws, bs)
            Din, _ = truncated_bias_jacobian_arrays(Wcs, bcs, X)
            dx = np.einsum("km,nmlj->nklj", Wcs[-1], Din)
            dx[:, :, L - 1, :] += np.eye(M)
            block = np.einsum("qk,nklj->nqlj", W_out, dx).reshape(N, Q, L * M)
        if scale is not None and scale.get(name, 1.0) != 1.0:
            block = block * np.sqrt(scale[name])
        blocks.append(block)
    return np.concatenate(blocks, axis=2).reshape(N * Q, -1)


def output_jacobian(weights, biases, W_out, b_out, X, *, parameters="biases",
                    max_condition: float = MAX_CONDITION) -> np.ndarray:
    """D = ∂x^(L+1)/∂p, the Jacobian of the stacked outputs x_i^(L+1) = W_out x_i^(L) + b_out.

    ``parameters`` is one name or a sequence of names from :data:`JACOBIAN_PARAMETERS`; the column
    blocks follow that order:

    - ``"weights"``: W_1, …, W_L, each (M, M) flattened row-major (L·M² columns);
    - ``"biases"``: the layer biases b_1, …, b_L (L·M columns);
    - ``"W_out"``: (Q, M) row-major (Q·M columns); ``"b_out"``: Q columns;
    - ``"cumulative_biases"``: b^(1), …, b^(L) with the layer weights W_ℓ and the terminal layer
      (W_out, b_out) fixed (L·M columns; needs invertible weights).

    Returns an array of shape (N·Q, P), rows point-major. ``weights, biases``: L square layers;
    ``W_out`` (Q, M), ``b_out`` (Q,); X (N, M).
    """
    names = _parameter_names(parameters)
    max_condition = as_max_condition(max_condition)
    cond = max_condition if "cumulative_biases" in names else np.inf
    Wl, bl = validate_layers(weights, biases, square=True, max_condition=cond)
    Ws, bs = np.stack(Wl), np.stack(bl)
    W_out, b_out = as_terminal_layer(W_out, b_out, Ws.shape[1], required=True)
    X = as_points(X, "X", dim=Ws.shape[1])
    return _output_jacobian(Ws, bs, W_out, X, names)


def truncated_bias_jacobian(Wc, bc, X, *, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """D = ∂x^(τ,L)/∂b^(ℓ), with blocks D_i^(ℓ) = −Π_L⋯Π_{ℓ+1} (W^(ℓ))^-1 P_ℓ(x_i^(τ,ℓ-1)).

    Π_ℓ = 1 − (W^(ℓ))^-1 P_ℓ W^(ℓ) is the Jacobian of τ_ℓ in x and P_ℓ = diag(T_ℓ,·) the truncation
    indicators (ties count as truncated). ``Wc, bc`` are the cumulative parameters (L square
    layers); X (N, M). Returns shape (N·M, L·M): row i·M + m, column (ℓ-1)·M + k.
    """
    Wl, bl = validate_layers(Wc, bc, square=True, max_condition=max_condition, prefix="cumulative ")
    Wcs, bcs = np.stack(Wl), np.stack(bl)
    X = as_points(X, "X", dim=Wcs.shape[1])
    D, _ = truncated_bias_jacobian_arrays(Wcs, bcs, X)
    N, M, L, _ = D.shape
    return D.reshape(N * M, L * M)


def gram_eigenvalues(D) -> np.ndarray:
    """Eigenvalues of the Gram matrix D Dᵀ in ascending order (length D.shape[0]).

    Computed as the squared singular values of D, padded with exact zeros when D has fewer columns
    than rows.
    """
    D = _as_jacobian(D)
    s = np.linalg.svd(D, compute_uv=False)
    eig = np.zeros(D.shape[0])
    eig[: s.size] = s**2
    return np.sort(eig)


def _as_jacobian(D):
    D = as_real_array(D, "D", ndim=2)
    if D.size == 0:
        raise ValueError(f"D must have at least one row and one column; got shape {D.shape}")
    return D


def _as_rtol(rtol):
    """None (the default max(D.shape)·ε) or a relative rank tolerance in (0, 1)."""
    if rtol is None:
        return None
    return as_real(rtol, "rtol", minimum=0.0, strict=True, maximum=1.0,
                   expectation="None or a relative tolerance in (0, 1]")


def _rank_tol(s, shape, rtol):
    if rtol is None:
        rtol = max(shape) * np.finfo(float).eps
    return (s.max() if s.size else 0.0) * rtol


def spectral_gap(D, *, nonzero: bool = False, rtol: float | None = None) -> float:
    """λ_min(D Dᵀ), or with ``nonzero=True`` the smallest nonzero eigenvalue λ_min⁺(D Dᵀ).

    An eigenvalue σ² counts as zero when its singular value σ ≤ rtol·σ_max (default rtol =
    max(D.shape)·ε). λ_min⁺ is NaN when D = 0 (no nonzero eigenvalue).
    """
    D = _as_jacobian(D)
    nonzero = as_bool(nonzero, "nonzero")
    rtol = _as_rtol(rtol)
    s = np.linalg.svd(D, compute_uv=False)
    if not nonzero:
        return 0.0 if D.shape[0] > s.size else float(s.min() ** 2)
    keep = s[s > _rank_tol(s, D.shape, rtol)]
    return float(keep.min() ** 2) if keep.size else float("nan")


def _scales_counts(scales, counts):
    lam = as_real_array(scales, "scales", ndim=1)
    n = as_real_array(counts, "counts", ndim=1)
    if n.shape != lam.shape:
        raise ValueError(f"counts must have the shape of scales, {lam.shape}; got {n.shape}")
    if np.any(lam <= 0):
        raise ValueError(f"scales must be positive; got minimum {lam.min():.3g}")
    if np.any(n < 0) or np.any(n != np.round(n)):
        raise ValueError("counts must be non-negative integers (numbers of truncated points)")
    return lam, n


def bias_flow_rates(scales, counts) -> np.ndarray:
    """n_k/λ_k² for each coordinate k: the eigenvalues of Dᵀ D = diag(n_k/λ_k²) for one adapted layer.

    D = ∂x^(τ,1)/∂b^(1); ``scales`` λ (M,) > 0, ``counts`` n (M,) the numbers of truncated points.
    The nonzero ones are the nonzero eigenvalues of D Dᵀ, and n_k/(λ_k² N) is the relaxation rate of
    θ_k in the one-cluster bias flow.
    """
    lam, n = _scales_counts(scales, counts)
    return n / lam**2


def bias_flow_gap(scales, counts) -> float:
    """λ_min⁺ = min_{k: n_k > 0} n_k/λ_k², the spectral gap of the one-layer adapted bias flow.

    NaN when no point is truncated in any coordinate (then D = 0 and the flow is stationary).
    """
    rates = bias_flow_rates(scales, counts)
    pos = rates[rates > 0]
    return float(pos.min()) if pos.size else float("nan")


def bias_flow_parameter_gram(W, b, X, *, W_out=None, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """Dᵀ (1 ⊗ G) D = (TᵀT) ⊙ (W^-T G W^-1) for one layer, D = ∂x^(τ,1)/∂b^(1) (shape (M, M)).

    T (N, M) are the truncation indicators of the layer (W, b) on X, so (TᵀT)_{kk'} counts the points
    truncated in both k and k'. Without ``W_out``, G = 1 (the input-layer cost): for adapted W = ΛR
    this is diag(n_k/λ_k²). With ``W_out`` (Q, M), G = (W^(2))ᵀ W^(2) with W^(2) = W_out W, the metric of
    the output cost pulled back to input space, and W^-T G W^-1 = W_outᵀ W_out: this is the Gram of
    the outputs x^(2) = W^(2) x^(τ,1) + b^(2) with the *cumulative* terminal (W^(2), b^(2)) fixed. The
    nonzero eigenvalues of this (M, M) matrix are those of the output-side Gram (1 ⊗ W^(2)) D Dᵀ (1 ⊗ W^(2))ᵀ.
    """
    W = as_square_invertible(W, "W", max_condition=max_condition)
    M = W.shape[0]
    b = as_vector(b, "b", M)
    X = as_points(X, "X", dim=M)
    T = (X @ W.T + b <= 0.0).astype(float)
    if W_out is None:
        Winv = np.linalg.inv(W)
        metric = Winv.T @ Winv
    else:
        W_out = as_terminal_weights(W_out, M)
        metric = W_out.T @ W_out
    return (T.T @ T) * metric


def _trajectory_layout(attrs):
    """Which parameters a trajectory trained, as (kind, names, column scales)."""
    mode, cost = attrs.get("mode"), attrs.get("cost")
    rho = float(attrs.get("weight_lr_ratio", 1.0))
    terminal = bool(attrs.get("train_terminal", 0))
    if mode == "biases":
        names = ["biases"] + (["b_out"] if terminal else [])
        return names, {}
    if mode in ("adapted", "cumulative") and rho == 0:
        return ["cumulative_biases"] + (["b_out"] if terminal else []), {}
    if mode == "full" and cost == "output":
        names = ["weights", "biases"] + (["W_out", "b_out"] if terminal else [])
        return names, {"weights": rho, "W_out": rho}
    raise ValueError(
        "spectral_trajectory supports trajectories of mode 'biases', of mode 'adapted' or 'cumulative' with "
        f"weight_lr_ratio=0, and of mode 'full' with cost='output'; got mode={mode!r}, cost={cost!r}, "
        f"weight_lr_ratio={rho!r}"
    )


def _check_trajectory(trajectory, X, caller):
    if not isinstance(trajectory, xr.Dataset):
        raise TypeError(f"trajectory must be an xarray.Dataset returned by reluflow.train; "
                        f"got {type(trajectory).__name__}")
    missing = [v for v in ("cost", "cumulative_weights", "cumulative_biases") if v not in trajectory]
    if missing or "mode" not in trajectory.attrs:
        raise ValueError(f"trajectory must come from reluflow.train; missing {missing or ['attribute mode']}")
    if trajectory.attrs.get("point_weights") != "uniform 1/N":
        raise ValueError(f"{caller} needs uniform point weights 1/N; got "
                         f"point_weights={trajectory.attrs.get('point_weights')!r}")
    names, scale = _trajectory_layout(trajectory.attrs)
    X = as_points(X, "X", dim=trajectory.sizes["coordinate"])
    return names, scale, X


def _flow_jacobian_at(trajectory, X, s, names, scale):
    """(D H^½, f) at recorded time index s: the scaled Jacobian and the stacked outputs (N, dim)."""
    Wc = trajectory["cumulative_weights"].values[s]
    bc = trajectory["cumulative_biases"].values[s]
    N, M = X.shape
    Ws, bs = layer_pass(Wc, bc)
    if trajectory.attrs["cost"] == "output":
        Wo = trajectory["output_weights"].values[s]
        bo = trajectory["output_biases"].values[s]
        return _output_jacobian(Ws, bs, Wo, X, names, scale), forward_pass(Ws, bs, X)[1][-1] @ Wo.T + bo
    Din, _ = truncated_bias_jacobian_arrays(Wc, bc, X)
    D = Din.reshape(N * M, -1)
    if names[0] == "biases":
        D = D @ bias_chain_matrix(list(Ws))
    return D, (forward_pass(Ws, bs, X)[1][-1] - bc[-1]) @ np.linalg.inv(Wc[-1]).T


def flow_jacobian(trajectory: xr.Dataset, X, *, index: int = 0) -> np.ndarray:
    """D H^½ at a recorded time of a :func:`reluflow.train` trajectory: ∂_t f = −(1/N) (D H^½)(D H^½)ᵀ (f − y).

    D = ∂f/∂p for the parameters p the trajectory trained (see :func:`spectral_trajectory`), and
    H = diag(1 for biases, ρ for weights). Rows: the stacked outputs f, point-major; ``index`` is
    the position along the ``time`` dimension (negative values count from the end).
    """
    names, scale, X = _check_trajectory(trajectory, X, "flow_jacobian")
    n = trajectory.sizes["time"]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
        raise ValueError(f"index must be an integer in [{-n}, {n - 1}] (a recorded time position); got {index!r}")
    s = int(index) % n
    Wc = trajectory["cumulative_weights"].values[s]
    for l in range(Wc.shape[0]):
        cond = np.linalg.cond(Wc[l])
        if not np.isfinite(cond) or cond > 1e15:
            raise ValueError(f"trajectory: cumulative weights of layer {l + 1} at time index {s} are singular "
                             f"(condition number {cond:.3g}); the flow Jacobian needs invertible W^(ℓ)")
    return _flow_jacobian_at(trajectory, X, s, names, scale)[0]


#: How :func:`spectral_trajectory` holds a terminal layer fixed along a threshold-flow solution.
TERMINALS = ("cumulative", "layer")


class _Spectra:
    """Accumulates, time by time, the spectrum of D Dᵀ and the split of the residual r by range(D)."""

    def __init__(self, rtol):
        self.rtol = rtol
        self.eig, self.rank, self.lam_min, self.lam_plus = [], [], [], []
        self.r_range, self.r_orth, self.drift = [], [], []
        self._prev = None

    def add(self, D, r=None, pattern=None):
        """D (rows, P); r the stacked residual (rows,) or None; pattern: the truncation pattern (for the drift)."""
        U, sv, _ = np.linalg.svd(D, full_matrices=False)
        keep = sv > _rank_tol(sv, D.shape, self.rtol)
        eig = np.zeros(D.shape[0])
        eig[: sv.size] = sv**2
        self.eig.append(np.sort(eig))
        self.rank.append(int(keep.sum()))
        self.lam_min.append(float(np.linalg.eigvalsh(D @ D.T)[0]))  # from the matrix: ≈ 0 when rows > columns
        self.lam_plus.append(float(sv[keep].min() ** 2) if keep.any() else np.nan)
        if r is None:
            return
        rr = U[:, keep] @ (U[:, keep].T @ r)
        ro = r - rr
        self.r_range.append(float(np.linalg.norm(rr)))
        self.r_orth.append(float(np.linalg.norm(ro)))
        same = self._prev is not None and pattern is not None and np.array_equal(self._prev[0], pattern)
        self.drift.append(float(np.linalg.norm(ro - self._prev[1])) if same else np.nan)
        self._prev = (pattern, ro)

    def data(self, t, cost, N):
        """The schema variables; ``cost`` (T,) or None (then no residual variables and no bound)."""
        out = {"gram_eigenvalues": np.stack(self.eig), "gram_rank": np.asarray(self.rank, dtype=np.int64),
               "lambda_min": np.asarray(self.lam_min), "lambda_min_plus": np.asarray(self.lam_plus)}
        if cost is not None:
            lam_run = np.maximum(np.minimum.accumulate(out["lambda_min"]), 0.0)
            out.update(cost=np.asarray(cost, dtype=float), cost_bound=float(cost[0]) * np.exp(-2.0 * lam_run * t / N),
                       residual_range_norm=np.asarray(self.r_range),
                       residual_orthogonal_norm=np.asarray(self.r_orth), orthogonal_drift=np.asarray(self.drift))
        return out


def _trained_spectrum(trajectory, X, targets, rtol):
    """Spectra along a :func:`reluflow.train` trajectory (the parameters it trained, D H^½)."""
    names, scale, X = _check_trajectory(trajectory, X, "spectral_trajectory")
    cost = trajectory.attrs["cost"]
    N, M = X.shape
    dim = M if cost == "input" else trajectory.sizes["output"]
    Y = as_targets(targets, N, dim, f"targets for cost={cost!r}")
    w = np.full(N, 1.0 / N)
    spectra = _Spectra(rtol)
    Wc_all = trajectory["cumulative_weights"].values
    bc_all = trajectory["cumulative_biases"].values
    for s in range(trajectory.sizes["time"]):
        D, f = _flow_jacobian_at(trajectory, X, s, names, scale)
        C = 0.5 * float(np.dot(w, ((f - Y) ** 2).sum(axis=1)))
        C_rec = float(trajectory["cost"].values[s])
        if abs(C - C_rec) > 1e-8 * max(abs(C_rec), 1e-300) + 1e-14:
            raise ValueError(f"X and targets do not match the trajectory: cost at time "
                             f"{float(trajectory['time'].values[s]):.6g} is {C:.6g}, recorded {C_rec:.6g}")
        pattern = truncated_bias_jacobian_arrays(Wc_all[s], bc_all[s], X)[1] if "n_truncated" in trajectory else None
        spectra.add(D, (f - Y).ravel(), pattern)
    t = np.asarray(trajectory["time"].values, dtype=float)
    data = spectra.data(t, trajectory["cost"].values, N)
    counts = trajectory["n_truncated"].values
    data.update(n_truncated=counts, bias_flow_rates=counts / trajectory["scales"].values ** 2)
    attrs = {"parameters": ", ".join(names), "weight_lr_ratio": float(trajectory.attrs.get("weight_lr_ratio", 1.0)),
             "cost": cost, "mode": trajectory.attrs["mode"], "n_points": N,
             "outputs": "x^(L+1) (output cost)" if cost == "output" else "x^(tau,L) (input cost)"}
    coords = {"time": t, "step": trajectory["step"].values}
    return data, coords, attrs


def _threshold_flow_spectrum(solution, net, X, targets, W_out, terminal, rtol):
    """Spectra along a threshold-flow solution (D = ∂x^(τ,L)/∂b^(ℓ), or the outputs' with a terminal layer)."""
    from reluflow.theory.adapted import AdaptedNetwork
    from reluflow.theory.network import layer_parameters
    from reluflow.theory.truncation import truncated_data, truncation_pattern

    if not isinstance(net, AdaptedNetwork):
        raise TypeError("net must be a reluflow.AdaptedNetwork (the frames and scales of the flow); "
                        f"got {type(net).__name__}")
    X = as_points(X, "X", dim=net.width)
    N, M = X.shape
    L = net.depth
    Y = as_targets(targets, N, M)
    theta = np.asarray(solution["thresholds"].values, dtype=float)
    if theta.shape[1:] != (L, M):
        raise ValueError(f"solution thresholds must have shape (time, {L}, {M}) to match net; got {theta.shape}")
    if not isinstance(terminal, str) or terminal not in TERMINALS:
        raise ValueError(f"terminal must be one of {TERMINALS}; got {terminal!r}")
    if W_out is not None:
        W_out = as_terminal_weights(W_out, M)
    T = theta.shape[0]
    scales = solution["scales"].values if "scales" in solution else np.broadcast_to(net.scales, (T, L, M))
    frames = solution["frames"].values if "frames" in solution else np.broadcast_to(net.frames, (T, L, M, M))
    spectra = _Spectra(rtol)
    counts = np.empty((T, L, M), np.int64)
    cost = np.empty(T)
    for s in range(T):
        Wc, bc = AdaptedNetwork(frames=frames[s], scales=scales[s], thresholds=theta[s]).cumulative_parameters()
        D = truncated_bias_jacobian(Wc, bc, X)
        if W_out is not None and terminal == "cumulative":
            D = np.kron(np.eye(N), W_out @ Wc[-1]) @ D
        elif W_out is not None:
            weights, biases = layer_parameters(Wc, bc)
            D = output_jacobian(weights, biases, W_out, np.zeros(W_out.shape[0]), X, parameters="cumulative_biases")
        pattern = truncation_pattern(Wc, bc, X)
        counts[s] = pattern.sum(axis=1)
        r = (truncated_data(Wc, bc, X)[-1] - Y).ravel()
        cost[s] = 0.5 * float(r @ r) / N
        spectra.add(D, None if W_out is not None else r, pattern)
    t = np.asarray(solution["time"].values, dtype=float)
    data = spectra.data(t, None if W_out is not None else cost, N)
    data.update(n_truncated=counts, bias_flow_rates=counts / scales**2)
    attrs = {"n_points": N, "outputs": "x^(tau,L) (input cost)" if W_out is None else
             f"x^(L+1) with the {terminal} terminal parameters fixed"}
    return data, {"time": t}, attrs


def spectral_trajectory(trajectory: xr.Dataset, X, targets, *, net=None, W_out=None, terminal: str = "cumulative",
                        rtol: float | None = None) -> xr.Dataset:
    """The spectrum of D Dᵀ along a trajectory: eigenvalues, λ_min, λ_min⁺, the residual split and C(0) e^{−2λt/N}.

    The outputs f of the network follow ∂_t f = −(1/N) D Dᵀ (f − y) (THEORY.md §5 S6). At every time of
    ``trajectory`` this computes D, the eigenvalues of D Dᵀ (``gram_eigenvalues``, ascending: the squared
    singular values σ_i(D)², exact zeros beyond the number of columns), the rank of D (singular values
    above ``rtol``·σ_max, default max(D.shape)·ε), λ_min (the smallest eigenvalue of D Dᵀ, computed from the
    matrix D Dᵀ itself, so ≈ 0 up to round-off when D has more rows than columns), λ_min⁺ (the smallest
    nonzero one; NaN if D = 0), the counts ``n_truncated`` and the rates n_{ℓ,k}/λ_{ℓ,k}² (for one adapted
    layer and the input cost, the nonzero eigenvalues), and, for the cost of the trajectory, ``cost``, the
    norms of the residual r = f − y in range(D) and orthogonal to it, the change ``orthogonal_drift`` of
    the orthogonal component since the previous time when the truncation pattern is unchanged (NaN
    otherwise) and ``cost_bound`` = C(0) e^{−2λt/N}, λ the running minimum of λ_min over times ≤ t (taken ≥ 0).
    Uniform point weights 1/N throughout.

    Two kinds of trajectory, told apart by what the Dataset holds:

    - **gradient descent** (:func:`reluflow.train`: cumulative parameters and the attribute ``mode``;
      leave ``net``, ``W_out`` at None). D = ∂f/∂p H^½ for the parameters p the run trained, with
      H = diag(1 for biases, ρ for weights), so that with t = step·η, ∂_t f = −(1/N) D Dᵀ (f − y); f is x^(L+1)
      for the output cost and x^(τ,L) for the input cost. Supported: mode ``"biases"`` (p = the layer biases
      b_ℓ, and b_out if trained); modes ``"adapted"``/``"cumulative"`` with weight_lr_ratio 0 (p = the
      cumulative biases b^(ℓ), and b_out if trained); mode ``"full"`` with the output cost (p = W_ℓ, b_ℓ, and
      W_out, b_out if trained). ``X`` and ``targets`` must be the run's training data (checked against its cost).
    - **threshold flow** (:func:`reluflow.dynamics.solver.solve`: ``thresholds`` over ``time``; pass the
      :class:`~reluflow.AdaptedNetwork` ``net`` whose frames and scales the flow used; ``scales`` or
      ``frames`` in the solution override them time by time). D = ∂x^(τ,L)/∂b^(ℓ) (N·M rows, L·M columns)
      and the input cost. With a terminal layer ``W_out`` (Q, M), D is the Jacobian of the outputs
      x^(L+1) with respect to the cumulative biases, holding fixed either the cumulative terminal
      parameters W^(L+1) = W_out W^(L), b^(L+1) (``terminal="cumulative"``: D = (1_N ⊗ W^(L+1)) ∂x^(τ,L)/∂b;
      for one layer Dᵀ D = (TᵀT) ⊙ (W_outᵀ W_out)) or the terminal layer's own (W_out, b_out)
      (``terminal="layer"``: for one layer Dᵀ D = (UᵀU) ⊙ (W_outᵀ W_out), U = 1 − T); the cost, residual and
      bound variables are then left out (they belong to the input cost).

    Returns a Dataset in the schema of :mod:`reluflow.results.schema` over ``time`` (with ``step`` for
    gradient descent), ``mode`` (one per row of D), ``layer`` and ``coordinate``; it carries the
    ``status`` and ``message`` of the trajectory. Cost: one SVD of D and one eigendecomposition of D Dᵀ per time.
    """
    if not isinstance(trajectory, xr.Dataset):
        raise TypeError(f"trajectory must be an xarray.Dataset from reluflow.train or reluflow.dynamics.solver.solve; "
                        f"got {type(trajectory).__name__}")
    rtol = _as_rtol(rtol)
    if "cumulative_weights" in trajectory or "mode" in trajectory.attrs:
        if net is not None or W_out is not None:
            raise ValueError("net and W_out are for threshold-flow solutions; a reluflow.train trajectory carries "
                             f"its own parameters (got net={type(net).__name__}, W_out="
                             f"{'None' if W_out is None else 'an array'})")
        data, coords, attrs = _trained_spectrum(trajectory, X, targets, rtol)
    elif "thresholds" in trajectory and "time" in trajectory.coords:
        if net is None:
            raise ValueError("a threshold-flow solution needs net, the AdaptedNetwork whose frames and scales the "
                             "flow used; got net=None")
        data, coords, attrs = _threshold_flow_spectrum(trajectory, net, X, targets, W_out, terminal, rtol)
    else:
        raise ValueError("trajectory must come from reluflow.train (cumulative_weights, attribute mode) or hold "
                         f"'thresholds' over a 'time' coordinate; got variables {sorted(trajectory.data_vars)}")
    L, M = data["n_truncated"].shape[1:]
    coords.update(mode=np.arange(data["gram_eigenvalues"].shape[1]), layer=np.arange(1, L + 1),
                  coordinate=np.arange(M))
    status = trajectory.attrs.get("status", 0)
    status = int(status) if isinstance(status, (int, np.integer)) and int(status) in STATUS else 0
    message = str(trajectory.attrs.get("message", "spectrum at every time of the trajectory"))
    return make_dataset(data, coords, status=status, message=message, attrs=attrs)


# ------------------------------------------------------------------ the corrected truncation-regime statement

#: Relative distance |u − θ| / max(1, |θ|) below which a point counts as sitting on its threshold.
TIE_RTOL = 1e-10


def _one_layer(net, X, targets, caller):
    from reluflow.theory.adapted import AdaptedNetwork

    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"net must be a reluflow.AdaptedNetwork; got {type(net).__name__}")
    if net.depth != 1:
        raise ValueError(f"{caller} is implemented for one layer; got net with L = {net.depth} layers")
    X = as_points(X, "X", dim=net.width)
    Y = as_targets(targets, X.shape[0], net.width)
    return net.frames[0], net.scales[0], X @ net.frames[0].T, Y @ net.frames[0].T


def _active_pattern(U, Yh, theta):
    """Unvalidated core of :func:`active_bias_pattern`: U, Yh (N, M) in the frame, theta (M,)."""
    tie = np.abs(U - theta) <= TIE_RTOL * np.maximum(1.0, np.abs(theta))
    strict = (U < theta) & ~tie
    push = theta - Yh  # each truncated point adds −(θ_k − ŷ_ik) to λ_k² N θ̇_k
    f_out = -np.where(strict, push, 0.0).sum(axis=0)  # ties released
    f_in = f_out - np.where(tie, push, 0.0).sum(axis=0)  # ties truncated
    has_tie = tie.any(axis=0)
    keep_ties = has_tie & (f_in > 0)  # the threshold moves up, through the tied points: they stay truncated
    resting = has_tie & ~keep_ties & ((f_out > 0) | ~strict.any(axis=0))  # pushed back, or nothing left to move it
    active = strict | (tie & keep_ties[None, :])
    return active, resting


def active_bias_pattern(net, X, targets, thresholds=None):
    """(A, resting): the truncation pattern that drives the one-layer bias flow at θ, and the resting thresholds.

    A (N, M) bool: point i drives θ_k. A point strictly below its threshold (u_ik < θ_k, u = R x) does;
    a point *on* it (|u_ik − θ_k| ≤ :data:`TIE_RTOL`·max(1, |θ_k|)) does only if the field with the
    tied points truncated, F_in = −Σ (θ_k − ŷ_ik), moves θ_k up (F_in > 0), so that they stay truncated.
    ``resting`` (M,) bool: θ_k sits on a point and does not move, because the field pushes it back from
    both sides (F_in ≤ 0 < F_out, Filippov sliding; F_out the field with the tied points released) or
    because no point is strictly truncated any more (it released its last point). ``net`` is a one-layer
    :class:`~reluflow.AdaptedNetwork` (its thresholds are used unless ``thresholds`` (M,) is given);
    ``targets`` (N, M) per-point targets in input space. The statement this serves is in the module
    docstring.
    """
    R, lam, U, Yh = _one_layer(net, X, targets, "active_bias_pattern")
    theta = net.thresholds[0] if thresholds is None else as_vector(np.ravel(as_real_array(thresholds, "thresholds")),
                                                                    "thresholds", net.width)
    return _active_pattern(U, Yh, theta)


def _active_jacobian(R, lam, active, resting):
    N, M = active.shape
    A = active & ~resting[None, :]
    # x_i^(τ) = Rᵀ max(u_i, θ), θ_k = −b_k/λ_k: ∂x_i^(τ)/∂b_k = −A_ik R[k, :]/λ_k
    D = -(A[:, None, :] * (R.T / lam[None, :])[None, :, :])
    return D.reshape(N * M, M)


def active_bias_jacobian(net, X, targets, thresholds=None) -> np.ndarray:
    """D_A = ∂x^(τ,1)/∂b on the active pattern, the columns of resting thresholds zero (shape (N·M, M)).

    Row i·M + m, column k: −A_ik R_km/λ_k with (A, resting) from :func:`active_bias_pattern`. While A and
    the resting set are constant, ∂_t r = −(1/N) D_A D_Aᵀ r for r = x^(τ,1) − ỹ (module docstring).
    """
    R, lam, U, Yh = _one_layer(net, X, targets, "active_bias_jacobian")
    theta = net.thresholds[0] if thresholds is None else as_vector(np.ravel(as_real_array(thresholds, "thresholds")),
                                                                    "thresholds", net.width)
    active, resting = _active_pattern(U, Yh, theta)
    return _active_jacobian(R, lam, active, resting)


def active_set_decay(solution: xr.Dataset, net, X, targets) -> dict:
    """The corrected truncation-regime statement along a one-layer bias-flow solution, pair by pair of times.

    At each recorded time: the active pattern A and the resting thresholds (:func:`active_bias_pattern`),
    D_A (:func:`active_bias_jacobian`), λ⁺ = λ_min⁺(D_A D_Aᵀ) from its singular values, and the split of
    r = x^(τ,1) − ỹ by range(D_A). For consecutive times t1 < t2 with the same A and resting set and
    D_A ≠ 0, the statement says |r_⊥(t2) − r_⊥(t1)| = 0 and |P_A r(t2)| ≤ e^{−λ⁺(t1)(t2 − t1)/N} |P_A r(t1)|.

    Returns a dict: ``pairs`` (pairs checked), ``drift`` (largest |r_⊥(t2) − r_⊥(t1)|), ``slack`` (largest
    (|P_A r(t2)| − bound)/|P_A r(t1)|, ≤ 0 when the statement holds), ``rest_motion`` (largest |θ_k(t2) − θ_k(t1)|
    over thresholds resting at both times), ``resting_pairs`` (pairs with a resting threshold), and the
    per-time arrays ``resting`` (T, M) and ``lambda_plus`` (T,).
    """
    if not isinstance(solution, xr.Dataset) or "thresholds" not in solution or "time" not in solution.coords:
        raise TypeError("solution must be an xarray.Dataset with 'thresholds' over 'time' (reluflow.dynamics.solve)")
    R, lam, U, Yh = _one_layer(net, X, targets, "active_set_decay")
    N, M = U.shape
    theta = np.asarray(solution["thresholds"].values, dtype=float)
    if theta.shape[1:] != (1, M):
        raise ValueError(f"solution thresholds must have shape (time, 1, {M}) to match net; got {theta.shape}")
    theta = theta[:, 0]
    t = np.asarray(solution["time"].values, dtype=float)
    Y = np.asarray(targets, dtype=float)
    T = t.size
    pats, rest = np.empty((T, N, M), bool), np.empty((T, M), bool)
    lam_plus, r_par, r_perp = np.full(T, np.nan), np.empty(T), np.empty((T, N * M))
    for s in range(T):
        pats[s], rest[s] = _active_pattern(U, Yh, theta[s])
        D = _active_jacobian(R, lam, pats[s], rest[s])
        r = (np.maximum(U, theta[s]) @ R - Y).ravel()
        Uq, sv, _ = np.linalg.svd(D, full_matrices=False)
        keep = sv > _rank_tol(sv, D.shape, None)
        p = Uq[:, keep] @ (Uq[:, keep].T @ r)
        r_par[s], r_perp[s] = np.linalg.norm(p), r - p
        if keep.any():
            lam_plus[s] = sv[keep].min() ** 2
    same = np.all(pats[1:] == pats[:-1], axis=(1, 2)) & np.all(rest[1:] == rest[:-1], axis=1) & np.isfinite(
        lam_plus[:-1])
    drift = np.linalg.norm(r_perp[1:] - r_perp[:-1], axis=1)
    bound = np.exp(-np.nan_to_num(lam_plus[:-1]) * np.diff(t) / N) * r_par[:-1]
    slack = (r_par[1:] - bound) / np.maximum(r_par[:-1], 1e-300)
    both = rest[1:] & rest[:-1]
    motion = np.abs(np.diff(theta, axis=0))
    return {"pairs": int(same.sum()), "drift": float(np.max(drift[same], initial=0.0)),
            "slack": float(np.max(slack[same], initial=-np.inf)),
            "rest_motion": float(np.max(motion[both], initial=0.0)),
            "resting_pairs": int((same & both.any(axis=1)).sum()), "resting": rest, "lambda_plus": lam_plus}

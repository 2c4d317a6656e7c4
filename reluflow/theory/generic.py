"""Truncation quantities of any ReLU network: widths d_0 = M, d_1, …, d_L of any sizes (THEORY.md §1, CE24).

The network is given by its layer parameters: ``weights`` = L arrays W_ℓ of shape (d_ℓ, d_{ℓ-1}), ``biases``
= L arrays b_ℓ of shape (d_ℓ,); hidden layers x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ), x^(0) = x. Points are rows,
X.shape == (N, M). A *pattern* is the list of L boolean arrays (N, d_ℓ) returned by
:func:`layer_truncation_pattern`; the counting functions take it, so one forward pass serves them all.

Ties: a pre-activation exactly 0 counts as truncated (σ'(0) = 0), as in :mod:`reluflow.theory.truncation`.
D_ℓ(x) = diag(1 − T_ℓ(x)) = diag σ'(W_ℓ x^(ℓ-1) + b_ℓ) is the activation mask of layer ℓ at x.

Map from formula to function:

- T_{ℓ,k}(x_i) = 1[(W_ℓ x_i^(ℓ-1) + b_ℓ)_k ≤ 0]                      → :func:`layer_truncation_pattern`
- n_{ℓ,k} = Σ_i T_{ℓ,k}(x_i)                                          → :func:`truncation_counts`
- f_ℓ(x_i) = (1/d_ℓ) Σ_k T_{ℓ,k}(x_i),  f(x_i) = Σ_{ℓ,k} T_{ℓ,k}(x_i) / Σ_ℓ d_ℓ → :func:`truncation_fractions`
- unit (ℓ, k) dead ⟺ n_{ℓ,k} = N                                      → :func:`dead_units`
- ℓ*(x_i) = min{ℓ : T_{ℓ,k}(x_i) = 1 for every k} (0 if none)         → :func:`frozen_layer`
- N_eff = #{i : J_i = D_L(x_i) W_L D_{L-1}(x_i) ⋯ W_2 D_1(x_i) ≠ 0}    → :func:`effective_training_set`
  (from a pattern already computed: :func:`gradient_path_mask`)
- all of the above from one pattern, each reduction once                  → :func:`pattern_summary`
- W^(ℓ) = W_ℓ ⋯ W_1 (d_ℓ, M),  b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ              → :func:`general_cumulative_parameters`
- τ_{W,b}(x) = W⁺(σ(Wx + b) − b), W of full row rank (CE24 Def 3.1)   → :func:`pinv_truncation_map`
- x^(τ,0) = x,  x^(τ,ℓ) = τ_{W^(ℓ),b^(ℓ)}(x^(τ,ℓ-1)) (CE24 Prop 3.2)   → :func:`pinv_truncated_data`
- r_ℓ = max_i |W^(ℓ) x_i^(τ,ℓ) + b^(ℓ) − x_i^(ℓ)|_∞                    → :func:`representation_residual`
- ‖offdiag(W Wᵀ)‖_F / ‖diag(W Wᵀ)‖_F for W (d_ℓ, M)                   → :func:`rectangular_adaptedness`

**When the representation holds.** x^(ℓ) = W^(ℓ) x^(τ,ℓ) + b^(ℓ) needs W^(ℓ)(W^(ℓ))⁺ = 1_{d_ℓ}, i.e. every
cumulative weight of full row rank d_ℓ. That is the case exactly when the widths do not increase
(M ≥ d_1 ≥ … ≥ d_L) and every W_ℓ is surjective. When a layer widens (d_ℓ > d_{ℓ-1}), W^(ℓ) has rank
≤ d_{ℓ-1} < d_ℓ and no right inverse: W^(ℓ) y + b^(ℓ) ranges over an affine subspace of dimension
< d_ℓ, which σ(W_ℓ x^(ℓ-1) + b_ℓ) leaves for generic data, so *no* input-space point x^(τ,ℓ) represents
x^(ℓ). The pseudo-inverse gives the best one (least squares), and :func:`representation_residual`
measures the failure: it is zero to round-off for non-increasing widths and O(1) after a widening layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.validation import (
    as_bool,
    as_layer_list,
    as_points,
    as_real_array,
    as_vector,
    check_memory,
    validate_layers,
)

__all__ = [
    "layer_truncation_pattern",
    "truncation_counts",
    "truncation_fractions",
    "dead_units",
    "frozen_layer",
    "effective_training_set",
    "gradient_path_mask",
    "pattern_summary",
    "PatternSummary",
    "general_cumulative_parameters",
    "pinv_truncation_map",
    "pinv_truncated_data",
    "representation_residual",
    "rectangular_adaptedness",
]

#: Points per block in the passes through the layers: bounds the float work arrays at
#: _BLOCK_BYTES bytes whatever N is (a loop over blocks of points, not over points).
_BLOCK_BYTES = 32 * 2**20

#: Seed of the fixed probe vector v in :func:`effective_training_set` (deterministic results).
_PROBE_SEED = 20250113


# --------------------------------------------------------------------------------------------------------------
# validation


def _network(weights, biases, X):
    """Validated layer lists (chain-compatible shapes, finite) and points X (N, d_0)."""
    Ws, bs = validate_layers(weights, biases, square=False, max_condition=np.inf)
    X = as_points(X, "X", dim=Ws[0].shape[1])
    return Ws, bs, X


def _blocks(N, width):
    step = max(1, _BLOCK_BYTES // (8 * max(width, 1)))
    return [slice(s, min(s + step, N)) for s in range(0, N, step)]


def _as_pattern(pattern, name="pattern"):
    """A pattern: a non-empty sequence of boolean (N, d_ℓ) arrays with one N."""
    if isinstance(pattern, np.ndarray) and pattern.ndim != 3:
        raise TypeError(f"{name} must be a sequence of per-layer boolean (N, d_ℓ) arrays (or an (L, N, d) "
                        f"array); got an array of shape {pattern.shape}")
    out = []
    for i, T in enumerate(as_layer_list(pattern, name)):
        T = np.asarray(T)
        if T.dtype != bool:
            raise TypeError(f"{name}[{i}] (layer {i + 1}) must be a boolean array (truncated = True); "
                            f"got dtype {T.dtype}")
        if T.ndim != 2 or T.shape[0] == 0 or T.shape[1] == 0:
            raise ValueError(f"{name}[{i}] (layer {i + 1}) must have shape (N, d_{i + 1}) with N, d >= 1; "
                             f"got shape {T.shape}")
        if out and T.shape[0] != out[0].shape[0]:
            raise ValueError(f"{name}[{i}] (layer {i + 1}) must have N = {out[0].shape[0]} rows like layer 1; "
                             f"got shape {T.shape}")
        out.append(T)
    return out


# --------------------------------------------------------------------------------------------------------------
# truncation pattern and what it counts


def layer_truncation_pattern(weights, biases, X) -> list[np.ndarray]:
    """[T_1, …, T_L], T_ℓ[i, k] = 1[(W_ℓ x_i^(ℓ-1) + b_ℓ)_k ≤ 0]: boolean (N, d_ℓ) arrays, any widths.

    Ties (pre-activation exactly 0) count as truncated, matching σ'(0) = 0. ``weights[ℓ-1]`` has shape
    (d_ℓ, d_{ℓ-1}), ``biases[ℓ-1]`` (d_ℓ,), ``X`` (N, d_0).
    """
    Ws, bs, X = _network(weights, biases, X)
    N = X.shape[0]
    check_memory(N * sum(W.shape[0] for W in Ws), f"the truncation pattern of N = {N} points")
    out = [np.empty((N, W.shape[0]), dtype=bool) for W in Ws]
    for sl in _blocks(N, max(W.shape[0] for W in Ws)):
        x = X[sl]
        for T, W, b in zip(out, Ws, bs):
            z = x @ W.T + b
            T[sl] = z <= 0.0
            x = np.maximum(z, 0.0)
    return out


def _count_dtype(N, d):
    """The float type in which sums of N (or d) zeros and ones are exact: float32 below 2**24, else float64."""
    return np.float32 if max(N, d) < 2**24 else np.float64


def _counts(T) -> tuple[list[np.ndarray], np.ndarray]:
    """(n_ℓ per layer, the (N, L) counts per point), each as the product of the 0/1 pattern with a vector of ones.

    The products run in BLAS (a boolean reduction along an axis is several times slower); they are exact, since
    every partial sum is an integer below 2**24 in float32 (float64 beyond), so the counts equal a recount.
    """
    units, points = [], np.empty((T[0].shape[0], len(T)), dtype=np.int64)
    for l, t in enumerate(T):
        f = t.astype(_count_dtype(*t.shape))
        units.append((np.ones(t.shape[0], dtype=f.dtype) @ f).astype(np.int64))
        points[:, l] = f @ np.ones(t.shape[1], dtype=f.dtype)
    return units, points


def _unit_counts(T) -> list[np.ndarray]:
    return _counts(T)[0]


def _point_counts(T) -> np.ndarray:
    return _counts(T)[1]  # (N, L)


def _frozen(point_counts, widths) -> np.ndarray:
    full = point_counts == widths  # (N, L): every unit of layer ℓ truncates x_i
    return np.where(full.any(axis=1), full.argmax(axis=1) + 1, 0)


def truncation_counts(pattern) -> list[np.ndarray]:
    """[n_1, …, n_L], n_ℓ[k] = n_{ℓ,k} = Σ_i T_{ℓ,k}(x_i): how many points unit k of layer ℓ truncates."""
    return _unit_counts(_as_pattern(pattern))


def truncation_fractions(pattern) -> tuple[np.ndarray, np.ndarray]:
    """Each point's truncated fraction: (per layer (N, L) with f_ℓ(x_i) = (1/d_ℓ) Σ_k T_{ℓ,k}(x_i),
    overall (N,) with f(x_i) = Σ_{ℓ,k} T_{ℓ,k}(x_i) / Σ_ℓ d_ℓ)."""
    T = _as_pattern(pattern)
    counts = _point_counts(T)
    widths = np.array([t.shape[1] for t in T])
    return counts / widths, counts.sum(axis=1) / widths.sum()


def dead_units(pattern) -> list[np.ndarray]:
    """[D_1, …, D_L], D_ℓ[k] = 1 when unit k of layer ℓ truncates every point (n_{ℓ,k} = N)."""
    T = _as_pattern(pattern)
    return [n == T[0].shape[0] for n in _unit_counts(T)]


def frozen_layer(pattern) -> np.ndarray:
    """ℓ*(x_i) = min{ℓ : T_{ℓ,k}(x_i) = 1 for all k}, the first layer (1..L) that truncates every unit at x_i;
    0 if there is none. Shape (N,), integers.

    From layer ℓ* on, x^(ℓ)(x_i) no longer depends on x_i (x^(ℓ*) = 0), and no gradient flows below ℓ*.
    """
    T = _as_pattern(pattern)
    return _frozen(_point_counts(T), np.array([t.shape[1] for t in T]))


@dataclass(frozen=True, repr=False)
class PatternSummary:
    """Everything the counting functions give for one pattern, each reduction done once (:func:`pattern_summary`)."""

    counts: list  # n_ℓ (d_ℓ,) per layer, as truncation_counts
    layer_fractions: np.ndarray  # (N, L), as truncation_fractions()[0]
    fractions: np.ndarray  # (N,), as truncation_fractions()[1]
    dead: list  # boolean (d_ℓ,) per layer, as dead_units
    frozen: np.ndarray  # (N,), as frozen_layer
    effective: np.ndarray | None  # (N,) boolean, as gradient_path_mask (None without weights)

    def __repr__(self) -> str:
        eff = "" if self.effective is None else f", N_eff = {int(self.effective.sum())}"
        return (f"<PatternSummary: N = {self.frozen.size}, widths {[c.size for c in self.counts]}, "
                f"dead units {[int(d.sum()) for d in self.dead]}, frozen out {int((self.frozen > 0).sum())}{eff}>")


def pattern_summary(pattern, weights=None) -> PatternSummary:
    """The truncation counts, fractions, dead units, frozen layers and (with ``weights``) the gradient-path mask
    of one pattern, with one validation and each reduction over points and units done once: the same values as
    :func:`truncation_counts`, :func:`truncation_fractions`, :func:`dead_units`, :func:`frozen_layer` and
    :func:`gradient_path_mask`, which share its kernels (the training monitor calls this at every record)."""
    T = _as_pattern(pattern)
    return _summary(T, None if weights is None else _path_weights(weights, T))


def _summary(T, Ws=None) -> PatternSummary:
    """:func:`pattern_summary` of a validated pattern T (boolean (N, d_ℓ) per layer) and matching weights Ws (or
    None): the kernel the training monitor calls on the masks of its own forward pass."""
    N, widths = T[0].shape[0], np.array([t.shape[1] for t in T])
    units, points = _counts(T)
    effective = None if Ws is None else _gradient_path_mask(Ws, T)
    return PatternSummary(units, points / widths, points.sum(axis=1) / widths.sum(), [n == N for n in units],
                          _frozen(points, widths), effective)


def effective_training_set(weights, biases, X) -> tuple[np.ndarray, int]:
    """(mask, N_eff): mask[i] ⟺ J_i = D_L(x_i) W_L D_{L-1}(x_i) ⋯ W_2 D_1(x_i) ≠ 0, and N_eff = Σ_i mask[i].

    J_i = ∂x^(L)/∂b_1 at x_i, so mask[i] says that point i still sends a gradient to the first layer.
    A point frozen at some layer (:func:`frozen_layer` > 0) has J_i = 0; J_i can also vanish without a
    frozen layer (the active units of one layer see only zero weights from the active units below).

    Computed as vᵀJ_i ≠ 0 for one fixed Gaussian probe v ∈ R^{d_L} (a backward pass, O(N Σ d_ℓ d_{ℓ-1})):
    vᵀJ_i = 0 with J_i ≠ 0 happens only for v in a null set, and a zero product that is structural (masks and
    zero weights) gives an exact float 0. Evaluated in floating point, like J_i itself: a product that
    vanishes only through cancellation between nonzero paths (a non-generic case) may show as round-off.
    """
    Ws, bs, X = _network(weights, biases, X)
    N = X.shape[0]
    mask = np.empty(N, dtype=bool)
    for sl in _blocks(N, max(W.shape[0] for W in Ws)):
        x, active = X[sl], []
        for W, b in zip(Ws, bs):
            z = x @ W.T + b
            active.append(z > 0.0)
            x = np.maximum(z, 0.0)
        mask[sl] = _probe(Ws, active)
    return mask, int(mask.sum())


def _probe(Ws, active):
    """vᵀ J_i ≠ 0 for the rows of the activation masks ``active`` (1 − T_ℓ, boolean), with the fixed probe v.

    The masks multiply (D_ℓ as 0/1 factors) rather than select: g·0 is an exact 0 for every finite g, and this
    runs about 2.5× faster than ``np.where``. Weights are finite (validated), so g is finite unless a product
    overflows, and an overflowed J_i is reported as nonzero."""
    v = np.random.default_rng(_PROBE_SEED).standard_normal(Ws[-1].shape[0])
    g = active[-1] * v  # rows: vᵀ D_L
    for W, a in zip(Ws[:0:-1], active[-2::-1]):  # g ← (g W_ℓ) D_{ℓ-1}, ℓ = L..2
        g = g @ W
        g *= a
    return g.any(axis=1)


def _probe_truncated(Ws, T):
    """vᵀ J_i ≠ 0 from the truncation masks T_ℓ (rows of one block of points), with the fixed probe v."""
    return _probe(Ws, [~t for t in T])


def _path_weights(weights, T):
    Ws = as_layer_list(weights, "weights")
    Ws = [as_real_array(W, f"weights[{i}]", ndim=2) for i, W in enumerate(Ws)]
    if len(Ws) != len(T):
        raise ValueError(f"weights and pattern must have the same number of layers; got {len(Ws)} and {len(T)}")
    for i, (W, t) in enumerate(zip(Ws, T)):
        if W.shape[0] != t.shape[1] or (i > 0 and W.shape[1] != Ws[i - 1].shape[0]):
            raise ValueError(f"weights[{i}] (layer {i + 1}) has shape {W.shape}, which does not match the pattern's "
                             f"width {t.shape[1]} or the layer below")
    return Ws


def _gradient_path_mask(Ws, T):
    N = T[0].shape[0]
    mask = np.empty(N, dtype=bool)
    for sl in _blocks(N, max(W.shape[0] for W in Ws)):
        mask[sl] = _probe_truncated(Ws, [t[sl] for t in T])
    return mask


def gradient_path_mask(weights, pattern) -> np.ndarray:
    """mask[i] ⟺ J_i = D_L(x_i) W_L ⋯ W_2 D_1(x_i) ≠ 0, from a truncation pattern already computed.

    The same quantity as :func:`effective_training_set` (same probe, same answer), for callers that hold the
    pattern of a forward pass (the training monitor): it needs the weights W_2..W_L and the masks only.
    """
    T = _as_pattern(pattern)
    return _gradient_path_mask(_path_weights(weights, T), T)


# --------------------------------------------------------------------------------------------------------------
# cumulative parameters and input-space truncation with right inverses (CE24 Def 3.1, Prop 3.2)


def _as_surjective(W, name):
    if W.shape[0] > W.shape[1] or np.linalg.matrix_rank(W) < W.shape[0]:
        widen = " (out > in: the layer widens, so it has no right inverse)" if W.shape[0] > W.shape[1] else ""
        raise ValueError(f"{name} must have full row rank (surjective, out ≤ in){widen}; got shape {W.shape} "
                         f"of rank {np.linalg.matrix_rank(W)}")
    return W


def general_cumulative_parameters(weights, biases, *, surjective: bool = False):
    """W^(ℓ) = W_ℓ ⋯ W_1 (shape (d_ℓ, M)), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ, for ℓ = 1..L and any widths.

    With ``surjective=True`` every W_ℓ must have full row rank (non-increasing widths; the setting of CE24
    Prop 3.2), else a ValueError names the layer. Returns ``(Wc, bc)``, lists of L arrays.
    """
    surjective = as_bool(surjective, "surjective")
    Ws, bs = validate_layers(weights, biases, square=False, max_condition=np.inf)
    Wc, bc = [], []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        if surjective:
            _as_surjective(W, f"weights[{i}] (layer {i + 1})")
        Wc.append(W if not Wc else W @ Wc[-1])
        bc.append(b if not bc else W @ bc[-1] + b)
    return Wc, bc


def _pinv_truncate(W, Wp, b, X):
    return (np.maximum(X @ W.T + b, 0.0) - b) @ Wp.T


def pinv_truncation_map(W, b, X) -> np.ndarray:
    """τ_{W,b}(x) = W⁺(σ(Wx + b) − b) for W (m, n) of full row rank, applied to each row of X (N, n)."""
    W = _as_surjective(as_real_array(W, "W", ndim=2), "W")
    b = as_vector(b, "b", W.shape[0])
    X = as_points(X, "X", dim=W.shape[1])
    return _pinv_truncate(W, np.linalg.pinv(W), b, X)


def _cumulative_layers(Wc, bc, X, *, require_rank):
    Wcs = as_layer_list(Wc, "cumulative weights")
    bcs = as_layer_list(bc, "cumulative biases")
    if len(Wcs) != len(bcs):
        raise ValueError(f"cumulative weights and cumulative biases must have one entry per layer; "
                         f"got {len(Wcs)} and {len(bcs)}")
    X = as_points(X, "X")
    out_W, out_b = [], []
    for i, (W, b) in enumerate(zip(Wcs, bcs)):
        name = f"cumulative weights[{i}] (layer {i + 1})"
        W = as_real_array(W, name, ndim=2)
        if W.shape[1] != X.shape[1] or W.shape[0] == 0:
            raise ValueError(f"{name} must have shape (d_{i + 1}, {X.shape[1]}) (cumulative weights act on "
                             f"input space, like X's rows); got shape {W.shape}")
        if require_rank:
            _as_surjective(W, name)
        out_W.append(W)
        out_b.append(as_vector(b, f"cumulative biases[{i}] (layer {i + 1})", W.shape[0]))
    return out_W, out_b, X


def pinv_truncated_data(Wc, bc, X) -> list[np.ndarray]:
    """[x^(τ,0), …, x^(τ,L)], x^(τ,ℓ) = τ_{W^(ℓ),b^(ℓ)}(x^(τ,ℓ-1)) with pseudo-inverses (CE24 Prop 3.2).

    ``Wc, bc``: cumulative parameters (:func:`general_cumulative_parameters`), W^(ℓ) of shape (d_ℓ, M) and
    **full row rank** (non-increasing widths, surjective layers); then x^(ℓ) = W^(ℓ) x^(τ,ℓ) + b^(ℓ) holds for
    every hidden layer. A cumulative weight without a right inverse (a widening layer, d_ℓ > d_{ℓ-1}, or a
    rank-deficient one) is refused with a ValueError; :func:`representation_residual` shows what fails then.
    """
    Wcs, bcs, X = _cumulative_layers(Wc, bc, X, require_rank=True)
    out, x = [X], X
    for W, b in zip(Wcs, bcs):
        x = _pinv_truncate(W, np.linalg.pinv(W), b, x)
        out.append(x)
    return out


def representation_residual(weights, biases, X) -> np.ndarray:
    """r_ℓ = max_i |W^(ℓ) x_i^(τ,ℓ) + b^(ℓ) − x_i^(ℓ)|_∞, ℓ = 1..L, with x^(τ,ℓ) the pseudo-inverse chain.

    Any widths: no rank is required here. r_ℓ is round-off when M ≥ d_1 ≥ … ≥ d_ℓ with surjective layers
    (CE24 Prop 3.2), and O(|x^(ℓ)|) for generic data once a layer up to ℓ widens, since W^(ℓ)(W^(ℓ))⁺ is then
    a projector of rank < d_ℓ. Shape (L,).
    """
    Ws, bs, X = _network(weights, biases, X)
    Wc, bc = general_cumulative_parameters(Ws, bs)
    res = np.zeros(len(Ws))
    Wps = [np.linalg.pinv(W) for W in Wc]
    for sl in _blocks(X.shape[0], max(W.shape[0] for W in Ws)):
        h, t = X[sl], X[sl]
        for l, (W, b, Wl, bl, Wp) in enumerate(zip(Wc, bc, Ws, bs, Wps)):
            h = np.maximum(h @ Wl.T + bl, 0.0)  # the plain forward pass
            t = _pinv_truncate(W, Wp, b, t)
            res[l] = max(res[l], float(np.abs(t @ W.T + b - h).max()))
    return res


# --------------------------------------------------------------------------------------------------------------
# adaptedness of rectangular cumulative weights (THEORY.md §2)


def rectangular_adaptedness(Wc) -> np.ndarray | float:
    """‖offdiag(W Wᵀ)‖_F / ‖diag(W Wᵀ)‖_F for W (d_ℓ, M) of any shape; a matrix, a stack or a list of layers.

    The same measure as :func:`reluflow.adaptedness` (equal to it on square matrices): 0 exactly when the rows
    of W are pairwise orthogonal, i.e. W = Λ R with Λ diagonal and R with orthonormal rows (R Rᵀ = 1). For
    d_ℓ > M at most M rows can be nonzero and pairwise orthogonal, so a widened W with no zero row is never
    adapted (value > 0). A list of cumulative weights of different widths gives an array (L,).
    """
    if isinstance(Wc, (list, tuple)):
        layers = as_layer_list(Wc, "Wc")
        return np.array([_adaptedness(as_real_array(W, f"Wc[{i}]", ndim=2), f"Wc[{i}]")
                         for i, W in enumerate(layers)])
    W = as_real_array(Wc, "Wc")
    if W.ndim < 2:
        raise ValueError(f"Wc must be a matrix (d, M), a stack (..., d, M) or a list of matrices; got shape {W.shape}")
    return _adaptedness(W, "Wc")


def _adaptedness(W, name):
    if W.shape[-1] == 0 or W.shape[-2] == 0:
        raise ValueError(f"{name} must have at least one row and one column; got shape {W.shape}")
    G = W @ np.swapaxes(W, -1, -2)
    d = W.shape[-2]
    diag = np.diagonal(G, axis1=-2, axis2=-1)
    off = np.sqrt((np.where(np.eye(d, dtype=bool), 0.0, G) ** 2).sum(axis=(-2, -1)))
    dnorm = np.sqrt((diag**2).sum(axis=-1))
    if np.any(dnorm == 0):
        raise ValueError(f"{name} must not be zero: its adaptedness is undefined")
    out = off / dnorm
    return float(out) if np.ndim(out) == 0 else out

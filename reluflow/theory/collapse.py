"""Neural-collapse measures NC1–NC4 (Papyan, Han & Donoho, arXiv:2008.08186), for the features of any layer.

Features H (N, p) with rows h_i (a layer's activations x^(ℓ)(x_i)), labels y_i ∈ 0..Q-1 with every class
present (Q ≥ 2), class sizes N_j, classifier rows W (Q, p) and bias b (Q,).

- μ_j = (1/N_j) Σ_{y_i=j} h_i                                             → :func:`class_means`
- μ_G = (1/Q) Σ_j μ_j,  M̃ with rows μ̃_j = μ_j − μ_G                         → :func:`centred_class_means`
- Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ,  Σ_B = (1/Q) Σ_j μ̃_j μ̃_jᵀ   → :func:`class_covariances`
- NC1 = tr(Σ_W Σ_B⁺)/Q                                                     → :func:`nc1_variability`
  (of several layers' features with one set of labels, NaN where undefined: :func:`nc1_layers`)
- NC2 (ETF) = ‖ M̃M̃ᵀ/‖M̃M̃ᵀ‖_F − (1_Q − 𝟙𝟙ᵀ/Q)/√(Q−1) ‖_F                    → :func:`nc2_etf_error`
- NC2 (equinorm) = std_j ‖μ̃_j‖ / mean_j ‖μ̃_j‖                              → :func:`nc2_equinorm`
- NC2 (equiangularity) = mean_{j≠k} |cos∠(μ̃_j, μ̃_k) + 1/(Q−1)|             → :func:`nc2_equiangularity`
- NC3 = ‖ W/‖W‖_F − M̃/‖M̃‖_F ‖²_F                                           → :func:`nc3_self_duality`
- NC4 = (1/N) #{i : argmax_j (W h_i + b)_j ≠ argmin_j ‖h_i − μ_j‖}            → :func:`nc4_ncc_mismatch`
- NC1, NC2 at every layer ℓ = 0..L of a ReLU network, NC3, NC4 at layer L     → :func:`collapse_by_layer`

Each is 0 at exact collapse: no within-class spread (NC1), centred means forming a simplex equiangular tight
frame (NC2: equal norms, pairwise cosines −1/(Q−1)), classifier rows proportional to the centred means (NC3),
and a classifier that decides like the nearest class mean (NC4). The std in NC2 is the population one (ddof 0).

**Centre.** Papyan et al. centre at the global mean of all features, in a balanced setting (all N_j equal),
where it equals the mean of the class means. We centre at μ_G = (1/Q) Σ_j μ_j for any class sizes, as
:func:`reluflow.nc1` does: then Σ_j μ̃_j = 0, and a simplex ETF of class means scores exactly 0 whatever the
class sizes. NC1 uses the same pseudo-inverse cut-off as ``numpy.linalg.pinv(Σ_B, hermitian=True)``
(eigenvalues below 1e-15 of the largest count as 0), computed from the thin SVD of M̃ without forming Σ_W.

**Undefined cases** raise a ValueError: fewer than two classes, an empty class, class means that coincide
(‖M̃‖_F ≤ 1e-12 max_j ‖μ_j‖: Σ_B = 0 and the normalised means do not exist), a zero centred mean in the
equiangularity (its angle is undefined), a zero classifier in NC3.

The tests check each measure against analytic fixtures, a second formula, and the independent package
rhubarbwu/neural-collapse (torch; not on PyPI, so a copy of it serves as a test oracle in ``tests/third_party``;
``tests/theory/test_collapse_peer.py`` maps each of its definitions onto ours: NC1, NC2 and NC4 agree on any
features, NC3 where the rows of W and of M̃ each have one norm, since that package normalises row by row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.validation import (
    as_labels,
    as_points,
    as_terminal_layer,
    as_terminal_weights,
    as_vector,
    check_positive_int,
    validate_layers,
)

__all__ = [
    "class_means",
    "centred_class_means",
    "class_covariances",
    "nc1_variability",
    "nc1_layers",
    "nc2_etf_error",
    "nc2_equinorm",
    "nc2_equiangularity",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
    "LayerCollapse",
    "collapse_by_layer",
]

#: Relative size of ‖M̃‖_F below which the class means count as coincident (see the module docstring).
MEANS_TOL = 1e-12

#: Pseudo-inverse cut-off of Σ_B, relative to its largest eigenvalue (numpy.linalg.pinv's default rcond).
PINV_RCOND = 1e-15


# --------------------------------------------------------------------------------------------------------------
# validation and the shared pieces


def _features(H, labels, n_classes=None, name="H"):
    """(H (N, p), labels (N,), one-hot (N, Q), class sizes (Q,)) with every class 0..Q-1 present, Q ≥ 2."""
    H = as_points(H, name)
    return (H, *_label_data(labels, H.shape[0], n_classes, name))


def _label_data(labels, N, n_classes=None, name="H"):
    """(labels (N,), one-hot (N, Q), class sizes (Q,)), validated: every class 0..Q-1 present, Q ≥ 2."""
    if n_classes is not None:
        n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
    lab = as_labels(labels, "labels", n_classes=n_classes, rows=N, of=name)
    Q = n_classes if n_classes is not None else int(lab.max()) + 1
    if Q < 2:
        raise ValueError(f"labels must hold at least 2 classes (neural collapse compares classes); got Q = {Q}")
    sizes = np.bincount(lab, minlength=Q)
    if np.any(sizes == 0):
        raise ValueError(f"labels must use every class 0..{Q - 1}; class {int(np.argmin(sizes))} has no point")
    onehot = np.zeros((N, Q))
    onehot[np.arange(N), lab] = 1.0
    return lab, onehot, sizes


def _means(H, onehot, sizes):
    return (onehot.T @ H) / sizes[:, None]


def _centred(mu, what="class means"):
    Mt = mu - mu.mean(axis=0)
    scale = float(np.linalg.norm(mu, axis=1).max())
    if np.linalg.norm(Mt) <= MEANS_TOL * scale or not np.any(Mt):
        raise ValueError(f"{what} must not coincide: ‖M̃‖_F = {np.linalg.norm(Mt):.3g} ≤ {MEANS_TOL:g} · "
                         f"max_j ‖μ_j‖ = {MEANS_TOL * scale:.3g} (Σ_B = 0; the measure is undefined)")
    return Mt


def _nc1(H, lab, mu, Mt):
    U, s, Vt = np.linalg.svd(Mt, full_matrices=False)  # Σ_B = (1/Q) V diag(s²) Vᵀ
    keep = s**2 > PINV_RCOND * s[0] ** 2
    Vs = Vt[keep].T / s[keep]  # (p, r): v_k / s_k
    RV = H @ Vs
    RV -= (mu @ Vs)[lab]  # (h_i − μ_{y_i})ᵀ v_k / s_k, (N, r)
    # tr(Σ_W Σ_B⁺)/Q = Σ_k s_k⁻² v_kᵀ Σ_W v_k · Q / Q = Σ_k s_k⁻² ‖R v_k‖² / N
    RV = RV.ravel()
    return float(RV @ RV / H.shape[0])


def _etf(Mt):
    Q = Mt.shape[0]
    Gm = Mt @ Mt.T
    ideal = (np.eye(Q) - 1.0 / Q) / np.sqrt(Q - 1)
    return float(np.linalg.norm(Gm / np.linalg.norm(Gm) - ideal))


def _equinorm(Mt):
    n = np.linalg.norm(Mt, axis=1)
    return float(n.std() / n.mean())


def _equiangularity(Mt):
    Q = Mt.shape[0]
    n = np.linalg.norm(Mt, axis=1)
    if np.any(n == 0):
        raise ValueError(f"class {int(np.argmin(n))}'s centred mean μ̃_j is 0, so its angles are undefined")
    cos = (Mt @ Mt.T) / np.outer(n, n)
    off = ~np.eye(Q, dtype=bool)
    return float(np.abs(cos[off] + 1.0 / (Q - 1)).mean())


def _nc3(W, Mt):
    nw = np.linalg.norm(W)
    if nw == 0:
        raise ValueError("W must not be zero: its normalised rows W/‖W‖_F are undefined")
    return float(np.sum((W / nw - Mt / np.linalg.norm(Mt)) ** 2))


def _nc4(W, b, H, mu):
    pred = np.argmax(H @ W.T + b, axis=1)
    ncc = np.argmin((mu**2).sum(axis=1) - 2.0 * (H @ mu.T), axis=1)  # ‖h − μ_j‖² up to the constant ‖h‖²
    return float(np.mean(pred != ncc))


def _classifier(W, Q, p):
    W = as_terminal_weights(W, p, "W")
    if W.shape[0] != Q:
        raise ValueError(f"W must have one row per class, shape ({Q}, {p}); got shape {W.shape}")
    return W


# --------------------------------------------------------------------------------------------------------------
# the measures


def class_means(H, labels, *, n_classes=None) -> np.ndarray:
    """μ_j = (1/N_j) Σ_{y_i=j} h_i, the class means as rows, shape (Q, p)."""
    H, _, onehot, sizes = _features(H, labels, n_classes)
    return _means(H, onehot, sizes)


def centred_class_means(H, labels, *, n_classes=None) -> np.ndarray:
    """M̃: rows μ̃_j = μ_j − μ_G with μ_G = (1/Q) Σ_j μ_j (so Σ_j μ̃_j = 0), shape (Q, p)."""
    H, _, onehot, sizes = _features(H, labels, n_classes)
    return _means(H, onehot, sizes) - _means(H, onehot, sizes).mean(axis=0)


def class_covariances(H, labels, *, n_classes=None) -> tuple[np.ndarray, np.ndarray]:
    """(Σ_W, Σ_B): Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/Q) Σ_j μ̃_j μ̃_jᵀ, each (p, p)."""
    H, lab, onehot, sizes = _features(H, labels, n_classes)
    mu = _means(H, onehot, sizes)
    R = H - mu[lab]
    Mt = mu - mu.mean(axis=0)
    return R.T @ R / H.shape[0], Mt.T @ Mt / mu.shape[0]


def nc1_variability(H, labels, *, n_classes=None) -> float:
    """NC1 = tr(Σ_W Σ_B⁺)/Q: within-class spread measured in the between-class directions; 0 at collapse."""
    H, lab, onehot, sizes = _features(H, labels, n_classes)
    mu = _means(H, onehot, sizes)
    return _nc1(H, lab, mu, _centred(mu))



def nc1_layers(features, labels, *, n_classes=None) -> np.ndarray:
    """[NC1(H_1), …, NC1(H_L)] for feature matrices H_ℓ (N, p_ℓ) that share ``labels``, validated once.

    The value of :func:`nc1_variability` for each H_ℓ, or NaN where its class means coincide (Σ_B = 0, e.g. a layer
    whose units are all dead), so a training monitor can record every layer at every step. Shape (L,).
    """
    Hs = [as_points(H, f"features[{i}]") for i, H in enumerate(features)]
    if not Hs:
        raise ValueError("features must hold at least one (N, p) array; got none")
    H0, lab, onehot, sizes = _features(Hs[0], labels, n_classes, name="features[0]")
    for i, H in enumerate(Hs):
        if H.shape[0] != H0.shape[0]:
            raise ValueError(f"features[{i}] must have N = {H0.shape[0]} rows like features[0]; got shape {H.shape}")
    return _nc1_each(Hs, lab, onehot, sizes)


def _nc1_each(Hs, lab, onehot, sizes) -> np.ndarray:
    """NC1 of each validated H_ℓ with the label data of :func:`_label_data`; NaN where the class means coincide
    (the kernel of :func:`nc1_layers`, which the training monitor calls with labels validated once)."""
    out = np.empty(len(Hs))
    for i, H in enumerate(Hs):
        mu = _means(H, onehot, sizes)
        try:
            out[i] = _nc1(H, lab, mu, _centred(mu))
        except ValueError:  # the class means coincide: Σ_B = 0
            out[i] = np.nan
    return out


def nc2_etf_error(H, labels, *, n_classes=None) -> float:
    """NC2 = ‖ M̃M̃ᵀ/‖M̃M̃ᵀ‖_F − (1_Q − 𝟙𝟙ᵀ/Q)/√(Q−1) ‖_F: distance of the centred means' normalised Gram matrix
    from a simplex ETF's (in [0, 2]; 0 exactly for a simplex ETF of any scale and rotation)."""
    H, _, onehot, sizes = _features(H, labels, n_classes)
    return _etf(_centred(_means(H, onehot, sizes)))


def nc2_equinorm(H, labels, *, n_classes=None) -> float:
    """NC2 (equinorm) = std_j ‖μ̃_j‖ / mean_j ‖μ̃_j‖ (population std): 0 when the centred means have one norm."""
    H, _, onehot, sizes = _features(H, labels, n_classes)
    return _equinorm(_centred(_means(H, onehot, sizes)))


def nc2_equiangularity(H, labels, *, n_classes=None) -> float:
    """NC2 (equiangularity) = mean_{j≠k} |cos∠(μ̃_j, μ̃_k) + 1/(Q−1)|: 0 when every pair of centred means has the
    simplex angle, cos = −1/(Q−1)."""
    H, _, onehot, sizes = _features(H, labels, n_classes)
    return _equiangularity(_centred(_means(H, onehot, sizes)))


def nc3_self_duality(W, H, labels) -> float:
    """NC3 = ‖ W/‖W‖_F − M̃/‖M̃‖_F ‖²_F for classifier rows W (Q, p): 0 when W ∝ M̃ (self-duality)."""
    H, _, onehot, sizes = _features(H, labels)
    W = _classifier(W, sizes.size, H.shape[1])
    return _nc3(W, _centred(_means(H, onehot, sizes)))


def nc4_ncc_mismatch(W, b, H, labels) -> float:
    """NC4 = (1/N) #{i : argmax_j (W h_i + b)_j ≠ argmin_j ‖h_i − μ_j‖}: how often the classifier (W (Q, p),
    b (Q,)) disagrees with the nearest-class-mean classifier (ties: the lowest class index)."""
    H, _, onehot, sizes = _features(H, labels)
    W = _classifier(W, sizes.size, H.shape[1])
    return _nc4(W, as_vector(b, "b", sizes.size), H, _means(H, onehot, sizes))


# --------------------------------------------------------------------------------------------------------------
# per layer of a ReLU network


@dataclass(frozen=True)
class LayerCollapse:
    """NC1, NC2 at layers ℓ = 0..L (the input, then each hidden layer x^(ℓ); arrays (L+1,)), and NC3, NC4 of the
    terminal classifier at layer L. NaN where a measure is undefined: NC1, NC2 at a layer whose class means
    coincide (e.g. every point frozen), NC3, NC4 without a terminal layer."""

    nc1: np.ndarray
    nc2_etf: np.ndarray
    nc2_equinorm: np.ndarray
    nc2_equiangularity: np.ndarray
    nc3: float
    nc4: float


def _or_nan(f, *args):
    try:
        return f(*args)
    except ValueError:
        return np.nan


def collapse_by_layer(weights, biases, X, labels, W_out=None, b_out=None) -> LayerCollapse:
    """NC1, NC2 of the features x^(ℓ) at every layer ℓ = 0..L of x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ) (any widths), and
    NC3, NC4 at layer L for the terminal layer x^(L+1) = W_out x^(L) + b_out, given as (Q, d_L) and (Q,)."""
    Ws, bs = validate_layers(weights, biases, square=False, max_condition=np.inf)
    X, lab, onehot, sizes = _features(as_points(X, "X", dim=Ws[0].shape[1]), labels, name="X")
    W_out, b_out = as_terminal_layer(W_out, b_out, Ws[-1].shape[0])
    if W_out is not None and W_out.shape[0] != sizes.size:
        raise ValueError(f"W_out must have one row per class, shape ({sizes.size}, {Ws[-1].shape[0]}); "
                         f"got shape {W_out.shape}")
    rows, h = [], X
    for l in range(len(Ws) + 1):
        if l > 0:
            h = np.maximum(h @ Ws[l - 1].T + bs[l - 1], 0.0)
        mu = _means(h, onehot, sizes)
        try:
            Mt = _centred(mu, f"the class means at layer {l}")
        except ValueError:
            rows.append((np.nan,) * 4)
            continue
        rows.append((_nc1(h, lab, mu, Mt), _etf(Mt), _equinorm(Mt), _or_nan(_equiangularity, Mt)))
    nc3 = nc4 = np.nan
    if W_out is not None:
        mu = _means(h, onehot, sizes)
        nc4 = _nc4(W_out, b_out, h, mu)
        if not np.isnan(rows[-1][0]):  # class means at layer L distinct
            nc3 = _or_nan(_nc3, W_out, _centred(mu))
    cols = np.array(rows, dtype=float).T
    return LayerCollapse(nc1=cols[0], nc2_etf=cols[1], nc2_equinorm=cols[2], nc2_equiangularity=cols[3],
                         nc3=float(nc3), nc4=float(nc4))

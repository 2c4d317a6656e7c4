"""Neural-collapse measures NC1–NC4 (reluflow.theory.collapse) against analytic fixtures and second formulas.

The independent package rhubarbwu/neural-collapse is not installed here (it needs torch and is not a project
dependency; nothing is installed for the tests), so the second formulas are written in this file: per-class
loops, an eigen-decomposition, numpy's pseudo-inverse, explicit distances, and reluflow.nc1 (a separate
implementation in reluflow.dynamics.solutions).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reluflow as rf
from reluflow.theory import collapse as NC

seeds = st.integers(0, 2**31 - 1)


def simplex_etf(Q, p, seed, scale=2.0):
    """Q class means forming a simplex ETF in R^p (p ≥ Q): scale·U(e_j − 𝟙/Q) for a random isometry U, plus an
    offset; pairwise cosines −1/(Q−1) by construction."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((p, Q)))[0]  # orthonormal columns
    return scale * (np.eye(Q) - 1.0 / Q) @ U.T + rng.standard_normal(p)


def random_features(Q, p, seed, sizes=None):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, Q) if sizes is None else np.asarray(sizes)
    lab = rng.permutation(np.repeat(np.arange(Q), sizes))
    centres = 3.0 * rng.standard_normal((Q, p))
    return centres[lab] + rng.standard_normal((lab.size, p)), lab


def loop_stats(H, lab):
    """Class means, centred means, Σ_W, Σ_B by explicit loops over classes and points."""
    Q, p = int(lab.max()) + 1, H.shape[1]
    mu = np.array([np.mean([H[i] for i in range(len(H)) if lab[i] == j], axis=0) for j in range(Q)])
    Mt = mu - sum(mu) / Q
    Sw = np.zeros((p, p))
    for i in range(len(H)):
        r = H[i] - mu[lab[i]]
        Sw += np.outer(r, r)
    Sb = sum(np.outer(m, m) for m in Mt) / Q
    return mu, Mt, Sw / len(H), Sb


# --------------------------------------------------------------------------------------------------------------
# analytic fixtures


@pytest.mark.parametrize("Q,p,seed", [(2, 2, 0), (3, 5, 1), (4, 4, 2), (6, 9, 3)])
def test_a_simplex_etf_without_spread_scores_zero(Q, p, seed):
    """Oracle: analytic fixture; every point on its class mean, means a simplex ETF (unequal class sizes):
    NC1 = NC2 = 0, NC3 = 0 for W = c·M̃, NC4 = 0 for the nearest-mean classifier."""
    mu = simplex_etf(Q, p, seed)
    sizes = np.arange(1, Q + 1)
    lab = np.repeat(np.arange(Q), sizes)
    H = mu[lab]
    assert NC.nc1_variability(H, lab) <= 1e-28
    assert NC.nc2_etf_error(H, lab) <= 1e-14
    assert NC.nc2_equinorm(H, lab) <= 1e-14
    assert NC.nc2_equiangularity(H, lab) <= 1e-14
    Mt = mu - mu.mean(axis=0)
    assert NC.nc3_self_duality(3.7 * Mt, H, lab) <= 1e-28
    assert NC.nc3_self_duality(-Mt, H, lab) == pytest.approx(4.0, rel=1e-14)  # ‖a − (−a)‖², |a| = 1
    # W = M̃, b = −M̃ μ_G: (W μ_k + b)_j = μ̃_j·μ̃_k, largest at j = k for an ETF (|μ̃|² > −|μ̃|²/(Q−1))
    assert NC.nc4_ncc_mismatch(Mt, -Mt @ mu.mean(axis=0), H, lab) == 0.0


def test_a_small_configuration_computed_by_hand():
    """Oracle: a closed form computed by hand. Q = 3 in R²: means (0,0), (3,0), (0,3), each with the two points
    μ_j ± (1, 0). μ_G = (1, 1), M̃ = [(−1,−1), (2,−1), (−1,2)], Σ_W = diag(1, 0), Σ_B = [[2,−1],[−1,2]],
    Σ_B⁻¹ = [[2,1],[1,2]]/3, NC1 = (2/3)/3 = 2/9. Gram M̃M̃ᵀ = [[2,−1,−1],[−1,5,−4],[−1,−4,5]] (‖·‖_F = √90),
    cosines −1/√10, −1/√10, −4/5. Classifier W = [[1,0],[0,1],[0,0]], b = 0: ⟨W, M̃⟩ = −2, so NC3 = 2 + 4/√24;
    it disagrees with the nearest mean at 5 of the 6 points (only (1, 0) agrees), NC4 = 5/6."""
    mu = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    H = np.concatenate([mu + [1.0, 0.0], mu - [1.0, 0.0]])
    lab = np.array([0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(NC.class_means(H, lab), mu)
    np.testing.assert_array_equal(NC.centred_class_means(H, lab), [[-1, -1], [2, -1], [-1, 2]])
    Sw, Sb = NC.class_covariances(H, lab)
    np.testing.assert_allclose(Sw, [[1, 0], [0, 0]], atol=1e-15)
    np.testing.assert_allclose(Sb, [[2, -1], [-1, 2]], atol=1e-15)
    assert NC.nc1_variability(H, lab) == pytest.approx(2 / 9, rel=1e-14)
    gram = np.array([[2.0, -1, -1], [-1, 5, -4], [-1, -4, 5]]) / np.sqrt(90)
    ideal = (np.eye(3) - 1 / 3) / np.sqrt(2)
    assert NC.nc2_etf_error(H, lab) == pytest.approx(np.sqrt(np.sum((gram - ideal) ** 2)), rel=1e-14)
    norms = np.array([np.sqrt(2), np.sqrt(5), np.sqrt(5)])
    assert NC.nc2_equinorm(H, lab) == pytest.approx(np.sqrt(np.mean((norms - norms.mean()) ** 2)) / norms.mean(),
                                                    rel=1e-14)
    assert NC.nc2_equiangularity(H, lab) == pytest.approx(
        (2 * abs(-1 / np.sqrt(10) + 0.5) + abs(-0.8 + 0.5)) / 3, rel=1e-14)
    W = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert NC.nc3_self_duality(W, H, lab) == pytest.approx(2 + 4 / np.sqrt(24), rel=1e-14)
    assert NC.nc4_ncc_mismatch(W, np.zeros(3), H, lab) == pytest.approx(5 / 6, abs=0)


def test_two_classes_in_one_dimension():
    """Oracle: closed form; class 0 at {−2, 0}, class 1 at {1, 3}: Σ_W = 1, Σ_B = 1.5² = 2.25, NC1 = 1/(2·2.25);
    two centred means ±1.5 always form a simplex ETF (NC2 = 0)."""
    H = np.array([[-2.0], [0.0], [1.0], [3.0]])
    lab = np.array([0, 0, 1, 1])
    assert NC.nc1_variability(H, lab) == pytest.approx(2 / 9, rel=1e-14)
    assert NC.nc2_etf_error(H, lab) <= 1e-15 and NC.nc2_equinorm(H, lab) == 0.0


@settings(max_examples=25)
@given(Q=st.integers(2, 5), p=st.integers(1, 6), seed=seeds)
def test_nc4_of_the_nearest_mean_classifier_and_its_opposite(Q, p, seed):
    """Oracle: closed form; W = μ (rows), b_j = −|μ_j|²/2 is the nearest-class-mean rule itself (NC4 = 0), and
    W = −μ, b_j = +|μ_j|²/2 picks the farthest mean, which differs from the nearest wherever the distances
    are not all equal (NC4 = 1)."""
    H, lab = random_features(Q, p, seed)
    mu = NC.class_means(H, lab)
    sq = (mu**2).sum(axis=1)
    assert NC.nc4_ncc_mismatch(mu, -sq / 2, H, lab) == 0.0
    assert NC.nc4_ncc_mismatch(-mu, sq / 2, H, lab) == 1.0


# --------------------------------------------------------------------------------------------------------------
# second formulas


@settings(max_examples=40)
@given(Q=st.integers(2, 6), p=st.integers(1, 7), seed=seeds)
def test_measures_match_loops_and_an_eigen_decomposition(Q, p, seed):
    """Oracle: second formulas; class loops for μ, M̃, Σ_W, Σ_B; NC1 = tr(Σ_W Σ_B⁺)/Q with Σ_B⁺ from numpy's pinv
    and from eigh (inverting eigenvalues above 1e-15 λ_max); reluflow.nc1 (separate implementation); NC2, NC3,
    NC4 from explicit pairwise dot products, norms and distances."""
    H, lab = random_features(Q, p, seed)
    mu, Mt, Sw, Sb = loop_stats(H, lab)
    np.testing.assert_allclose(NC.class_means(H, lab), mu, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(NC.centred_class_means(H, lab), Mt, rtol=1e-13, atol=1e-13)
    Sw2, Sb2 = NC.class_covariances(H, lab)
    np.testing.assert_allclose(Sw2, Sw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Sb2, Sb, rtol=1e-12, atol=1e-12)
    w, V = np.linalg.eigh(Sb)
    keep = w > 1e-15 * w.max()
    Sb_plus = (V[:, keep] / w[keep]) @ V[:, keep].T
    nc1 = NC.nc1_variability(H, lab)
    # inverting Σ_B's eigenvalues from eigh loses ~eps·κ (κ = λ_max/λ_min kept; seed 2239 of a 3000-seed sweep
    # has κ = 3e8 and a relative difference of 8e-8), so the tolerance follows κ
    rel = 1e-10 + 100 * np.finfo(float).eps * w.max() / w[keep].min()
    assert nc1 == pytest.approx(np.trace(Sw @ Sb_plus) / Q, rel=rel, abs=1e-300)
    assert nc1 == pytest.approx(np.trace(Sw @ np.linalg.pinv(Sb, hermitian=True)) / Q, rel=rel, abs=1e-300)
    assert nc1 == pytest.approx(float(rf.nc1(H, lab)), rel=rel, abs=1e-300)

    G = np.array([[Mt[j] @ Mt[k] for k in range(Q)] for j in range(Q)])
    etf = np.sqrt(sum((G[j, k] / np.sqrt((G**2).sum()) - ((j == k) - 1 / Q) / np.sqrt(Q - 1)) ** 2
                      for j in range(Q) for k in range(Q)))
    assert NC.nc2_etf_error(H, lab) == pytest.approx(etf, rel=1e-10, abs=1e-14)
    n = [np.sqrt(G[j, j]) for j in range(Q)]
    assert NC.nc2_equinorm(H, lab) == pytest.approx(np.std(n) / np.mean(n), rel=1e-10, abs=1e-14)
    ang = [abs(G[j, k] / (n[j] * n[k]) + 1 / (Q - 1)) for j in range(Q) for k in range(Q) if j != k]
    assert NC.nc2_equiangularity(H, lab) == pytest.approx(np.mean(ang), rel=1e-10, abs=1e-14)

    rng = np.random.default_rng(seed)
    W, b = rng.standard_normal((Q, p)), rng.standard_normal(Q)
    nw, nm = np.sqrt((W**2).sum()), np.sqrt((Mt**2).sum())
    assert NC.nc3_self_duality(W, H, lab) == pytest.approx(
        sum((W[j, c] / nw - Mt[j, c] / nm) ** 2 for j in range(Q) for c in range(p)), rel=1e-10, abs=1e-14)
    pred = [int(np.argmax(W @ h + b)) for h in H]
    ncc = [int(np.argmin([np.linalg.norm(h - m) for m in mu])) for h in H]
    assert NC.nc4_ncc_mismatch(W, b, H, lab) == pytest.approx(np.mean(np.array(pred) != np.array(ncc)), abs=0)


@settings(max_examples=25)
@given(Q=st.integers(2, 5), p=st.integers(2, 6), seed=seeds)
def test_invariances_of_the_definitions(Q, p, seed):
    """Oracle: identities of the definitions; NC1, NC2 are invariant under h ↦ c·U h + t (U orthogonal, c > 0),
    NC3 under W ↦ a·W U ᵀ with the same map of the features, NC4 under W ↦ W Uᵀ/c, b ↦ b − W Uᵀ t/c."""
    H, lab = random_features(Q, p, seed)
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((p, p)))[0]
    c, t = rng.uniform(0.2, 5.0), rng.standard_normal(p)
    H2 = c * H @ U.T + t
    for f in (NC.nc1_variability, NC.nc2_etf_error, NC.nc2_equinorm, NC.nc2_equiangularity):
        assert f(H2, lab) == pytest.approx(f(H, lab), rel=1e-8, abs=1e-12)
    W, b = rng.standard_normal((Q, p)), rng.standard_normal(Q)
    assert NC.nc3_self_duality(2.5 * W @ U.T, H2, lab) == pytest.approx(NC.nc3_self_duality(W, H, lab), rel=1e-10)
    W2 = W @ U.T / c
    assert NC.nc4_ncc_mismatch(W2, b - W2 @ t, H2, lab) == NC.nc4_ncc_mismatch(W, b, H, lab)


def test_spread_within_classes_raises_nc1_linearly_in_the_variance():
    """Oracle: closed form; ETF means plus within-class noise ε·Z: NC1(ε) = ε² NC1(1) exactly (Σ_W scales by ε²,
    the class means are corrected to stay on the ETF)."""
    Q, p = 4, 6
    mu = simplex_etf(Q, p, 5)
    lab = np.repeat(np.arange(Q), 25)
    Z = np.random.default_rng(5).standard_normal((lab.size, p))
    Z -= np.array([Z[lab == j].mean(axis=0) for j in range(Q)])[lab]  # zero class means of the noise
    base = NC.nc1_variability(mu[lab] + Z, lab)
    for eps in (1e-3, 0.1, 3.0):
        assert NC.nc1_variability(mu[lab] + eps * Z, lab) == pytest.approx(eps**2 * base, rel=1e-9)
        assert NC.nc2_etf_error(mu[lab] + eps * Z, lab) <= 1e-12


# --------------------------------------------------------------------------------------------------------------
# per layer of a network


def test_collapse_by_layer_is_the_measures_of_the_forward_pass():
    """Oracle: forward pass; each entry equals the measure of x^(ℓ) from reluflow.forward (widths 5 → 8 → 4)."""
    rng = np.random.default_rng(0)
    X, lab = random_features(3, 5, 1, sizes=[30, 20, 25])
    weights = [rng.standard_normal((8, 5)), rng.standard_normal((4, 8))]
    biases = [rng.standard_normal(8), rng.standard_normal(4)]
    W_out, b_out = rng.standard_normal((3, 4)), rng.standard_normal(3)
    res = NC.collapse_by_layer(weights, biases, X, lab, W_out, b_out)
    feats = [X] + rf.forward(weights, biases, X)
    for name, f in (("nc1", NC.nc1_variability), ("nc2_etf", NC.nc2_etf_error), ("nc2_equinorm", NC.nc2_equinorm),
                    ("nc2_equiangularity", NC.nc2_equiangularity)):
        np.testing.assert_allclose(getattr(res, name), [f(h, lab) for h in feats], rtol=1e-12)
    assert res.nc3 == pytest.approx(NC.nc3_self_duality(W_out, feats[-1], lab), rel=1e-12)
    assert res.nc4 == NC.nc4_ncc_mismatch(W_out, b_out, feats[-1], lab)
    no_head = NC.collapse_by_layer(weights, biases, X, lab)
    assert np.isnan(no_head.nc3) and np.isnan(no_head.nc4)
    np.testing.assert_array_equal(no_head.nc1, res.nc1)


def test_collapse_by_layer_marks_a_layer_whose_class_means_coincide():
    """Oracle: analytic fixture; a layer with bias −100 truncates every point (x^(1) = 0 for all), so its class
    means coincide: NC1, NC2 are NaN there, the input layer keeps its values, and the standalone measures
    refuse the same features."""
    X, lab = random_features(3, 4, 2)
    weights, biases = [np.ones((3, 4)), np.eye(3)], [np.full(3, -100.0), np.ones(3)]
    res = NC.collapse_by_layer(weights, biases, X, lab, np.eye(3), np.zeros(3))
    assert not np.isnan(res.nc1[0]) and np.all(np.isnan(res.nc1[1:])) and np.all(np.isnan(res.nc2_etf[1:]))
    assert np.isnan(res.nc3) and res.nc4 == 0.0  # one constant output: argmax and the nearest mean both give 0
    with pytest.raises(ValueError, match="class means must not coincide"):
        NC.nc1_variability(np.zeros((lab.size, 3)), lab)


# --------------------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_argument():
    """Oracle: identity of the implementation (the validation contract of CONVENTIONS.md)."""
    H, lab = random_features(3, 4, 0, sizes=[3, 3, 3])
    W, b = np.ones((3, 4)), np.zeros(3)
    bad = H.copy()
    bad[0, 0] = np.inf
    cases = [
        (ValueError, "H must be finite", lambda: NC.nc1_variability(bad, lab)),
        (ValueError, r"labels must have shape \(9,\)", lambda: NC.nc2_etf_error(H, lab[:8])),
        (TypeError, "labels must be an integer array", lambda: NC.nc2_equinorm(H, lab.astype(float))),
        (ValueError, "labels must be class indices >= 0", lambda: NC.class_means(H, lab - 1)),
        (ValueError, r"labels must be class indices in 0\.\.1", lambda: NC.class_means(H, lab, n_classes=2)),
        (ValueError, "labels must use every class 0..3; class 3 has no point",
         lambda: NC.nc1_variability(H, lab, n_classes=4)),
        (ValueError, "labels must hold at least 2 classes", lambda: NC.nc1_variability(H, np.zeros(9, int))),
        (ValueError, "n_classes must be >= 2", lambda: NC.class_means(H, lab, n_classes=1)),
        (ValueError, r"W must have one row per class, shape \(3, 4\)", lambda: NC.nc3_self_duality(W[:2], H, lab)),
        (ValueError, r"W must have shape \(Q, 4\)", lambda: NC.nc4_ncc_mismatch(W[:, :3], b, H, lab)),
        (ValueError, r"b must have shape \(3,\)", lambda: NC.nc4_ncc_mismatch(W, b[:2], H, lab)),
        (ValueError, "W must not be zero", lambda: NC.nc3_self_duality(0 * W, H, lab)),
        (ValueError, "class 0's centred mean", lambda: NC.nc2_equiangularity(
            np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]), np.array([0, 1, 2]))),  # μ̃_0 = μ_0 − μ_G = 0
        (ValueError, "H must hold at least one point", lambda: NC.nc1_variability(H[:0], lab[:0])),
        (ValueError, "W_out and b_out must be given together",
         lambda: NC.collapse_by_layer([np.eye(4)], [np.zeros(4)], H, lab, W)),
        (ValueError, r"W_out must have one row per class", lambda: NC.collapse_by_layer(
            [np.eye(4)], [np.zeros(4)], H, lab, W[:2], b[:2])),
        (ValueError, r"X must have shape \(N, 3\)", lambda: NC.collapse_by_layer([np.eye(3)], [np.zeros(3)], H, lab)),
    ]
    for exc, msg, call in cases:
        with pytest.raises(exc, match=msg):
            call()


def test_nc1_layers_is_nc1_per_layer_with_nan_where_the_means_coincide():
    """Oracle: nc1_variability called layer by layer; a layer of coinciding class means gives NaN (it raises there)."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 5)
    Hs = [rng.standard_normal((15, p)) + 3 * np.eye(3, p)[labels] for p in (3, 5)] + [np.ones((15, 2))]
    got = NC.nc1_layers(Hs, labels)
    assert got.shape == (3,) and np.isnan(got[2])
    np.testing.assert_array_equal(got[:2], [NC.nc1_variability(H, labels) for H in Hs[:2]])
    with pytest.raises(ValueError, match="class means must not coincide"):
        NC.nc1_variability(Hs[2], labels)
    with pytest.raises(ValueError, match=r"features\[1\] must have N = 15 rows"):
        NC.nc1_layers([Hs[0], Hs[1][:4]], labels)
    with pytest.raises(ValueError, match="at least one"):
        NC.nc1_layers([], labels)
    with pytest.raises(ValueError, match=r"features\[1\]"):
        NC.nc1_layers([Hs[0], np.full((15, 2), np.nan)], labels)

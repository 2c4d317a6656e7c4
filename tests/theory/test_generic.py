"""Truncation quantities of any ReLU network (reluflow.theory.generic) against brute-force recounts and second formulas.

Every reference below is written independently of reluflow: per-point loops over layers and units, explicit
products of the activation masks and weights, autograd Jacobians, closed forms derived by hand.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reluflow as rf
from reluflow.theory import constructions as C
from reluflow.theory import generic as G

seeds = st.integers(0, 2**31 - 1)
width_lists = st.lists(st.integers(1, 6), min_size=2, max_size=5)  # [d_0, d_1, ..., d_L], any order


def random_layers(widths, seed, bias_shift=0.0):
    """Gaussian layers of the given widths; a negative ``bias_shift`` makes truncations (and dead layers) common."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    biases = [rng.standard_normal(w) + bias_shift for w in widths[1:]]
    return weights, biases


def loop_preactivations(weights, biases, x):
    """Pre-activations of one point x (1-D), layer by layer, unit by unit (brute force)."""
    out, h = [], list(x)
    for W, b in zip(weights, biases):
        z = [sum(W[k, j] * h[j] for j in range(len(h))) + b[k] for k in range(W.shape[0])]
        out.append(np.array(z))
        h = [max(v, 0.0) for v in z]
    return out


def loop_pattern(weights, biases, X):
    """T[ℓ][i, k] = 1[z ≤ 0], recounted point by point."""
    rows = [loop_preactivations(weights, biases, x) for x in X]
    return [np.array([r[l] <= 0.0 for r in rows]) for l in range(len(weights))]


def mask_product(weights, biases, x):
    """J = D_L W_L D_{L-1} ⋯ W_2 D_1 for one point, as an explicit matrix product."""
    z = loop_preactivations(weights, biases, x)
    J = np.diag((z[0] > 0).astype(float))
    for W, zl in zip(weights[1:], z[1:]):
        J = np.diag((zl > 0).astype(float)) @ W @ J
    return J


# --------------------------------------------------------------------------------------------------------------
# 1. pattern, counts, fractions


@settings(max_examples=40)
@given(widths=width_lists, seed=seeds, shift=st.sampled_from([0.0, -1.0]))
def test_pattern_counts_and_fractions_match_a_recount(widths, seed, shift):
    """Oracle: brute-force recount (per-point, per-unit loops)."""
    weights, biases = random_layers(widths, seed, shift)
    X = np.random.default_rng(seed + 1).standard_normal((15, widths[0]))
    T = G.layer_truncation_pattern(weights, biases, X)
    ref = loop_pattern(weights, biases, X)
    assert [t.shape for t in T] == [(15, w) for w in widths[1:]]
    for t, r in zip(T, ref):
        assert t.dtype == bool and np.array_equal(t, r)
    counts = G.truncation_counts(T)
    per_layer, overall = G.truncation_fractions(T)
    for l, (n, r) in enumerate(zip(counts, ref)):
        assert n.tolist() == [sum(int(r[i, k]) for i in range(15)) for k in range(r.shape[1])]
        assert per_layer[:, l].tolist() == pytest.approx([sum(r[i]) / r.shape[1] for i in range(15)], abs=0)
    total_units = sum(widths[1:])
    recount = [sum(int(r[i, k]) for r in ref for k in range(r.shape[1])) / total_units for i in range(15)]
    np.testing.assert_allclose(overall, recount, rtol=0, atol=1e-15)


def test_ties_count_as_truncated():
    """Oracle: analytic fixture; pre-activations exactly 0 (integer data) are truncated, as σ'(0) = 0."""
    weights = [np.array([[1.0, -1.0], [1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, -1.0, 0.0]])]
    biases = [np.array([0.0, -2.0, 0.0]), np.array([0.0])]
    X = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    # layer 1 pre-activations: (0, 0, 1), (2, 0, 0), (0, -2, 0); x^(1) = (0,0,1), (2,0,0), (0,0,0)
    # layer 2 pre-activation: 0 − 0 = 0, 2 − 0 = 2, 0
    T = G.layer_truncation_pattern(weights, biases, X)
    assert T[0].tolist() == [[True, True, False], [False, True, True], [True, True, True]]
    assert T[1].tolist() == [[True], [False], [True]]
    assert [c.tolist() for c in G.truncation_counts(T)] == [[2, 3, 2], [2]]
    assert [d.tolist() for d in G.dead_units(T)] == [[False, True, False], [False]]
    assert G.frozen_layer(T).tolist() == [2, 0, 1]
    per_layer, overall = G.truncation_fractions(T)
    np.testing.assert_array_equal(per_layer, [[2 / 3, 1.0], [2 / 3, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(overall, [3 / 4, 2 / 4, 4 / 4])


def test_pattern_agrees_with_the_square_truncation_pattern():
    """Oracle: a second formula; for square invertible layers T equals reluflow.truncation_pattern, computed
    on the truncated data x^(τ,ℓ-1) with cumulative parameters."""
    for seed in range(5):
        weights, biases = rf.random_network(4, 3, seed=seed)
        X = 2.0 * np.random.default_rng(seed).standard_normal((60, 4))
        Wc, bc = rf.cumulative_parameters(weights, biases)
        assert np.array_equal(np.stack(G.layer_truncation_pattern(weights, biases, X)),
                              rf.truncation_pattern(Wc, bc, X))


def test_blocked_passes_equal_one_block(monkeypatch):
    """Oracle: identity of the implementation; splitting the points into blocks changes no result."""
    weights, biases = random_layers([5, 7, 3, 4], 3, -0.5)
    X = np.random.default_rng(4).standard_normal((301, 5))
    whole = (G.layer_truncation_pattern(weights, biases, X), G.effective_training_set(weights, biases, X),
             G.representation_residual(weights, biases, X))
    monkeypatch.setattr(G, "_BLOCK_BYTES", 8 * 7 * 13)  # 13 points per block, 24 blocks
    assert len(G._blocks(301, 7)) == 24
    blocked = (G.layer_truncation_pattern(weights, biases, X), G.effective_training_set(weights, biases, X),
               G.representation_residual(weights, biases, X))
    for a, b in zip(whole[0], blocked[0]):
        assert np.array_equal(a, b)
    assert np.array_equal(whole[1][0], blocked[1][0]) and whole[1][1] == blocked[1][1]
    np.testing.assert_array_equal(whole[2], blocked[2])


# --------------------------------------------------------------------------------------------------------------
# 2–3. dead units, frozen points


@settings(max_examples=40)
@given(widths=width_lists, seed=seeds)
def test_dead_units_and_frozen_layers_match_a_recount(widths, seed):
    """Oracle: brute-force recount per unit and per point."""
    weights, biases = random_layers(widths, seed, -1.0)
    X = np.random.default_rng(seed + 1).standard_normal((12, widths[0]))
    ref = loop_pattern(weights, biases, X)
    T = G.layer_truncation_pattern(weights, biases, X)
    for d, r in zip(G.dead_units(T), ref):
        assert d.tolist() == [all(r[i, k] for i in range(12)) for k in range(r.shape[1])]
    expect = []
    for i in range(12):
        first = [l + 1 for l in range(len(ref)) if all(ref[l][i])]
        expect.append(first[0] if first else 0)
    assert G.frozen_layer(T).tolist() == expect


def test_a_dead_unit_and_frozen_points_by_construction():
    """Oracle: analytic fixture and the forward pass; a unit with a large negative bias is dead, and points
    frozen at layer ℓ* share one output (x^(ℓ*) = 0, so everything above is a constant)."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((200, 3))
    # layer 1: unit 0 = x_0 − 0.5 (frozen-out below), unit 1 dead (bias −100), unit 2 = x_0 − 0.5
    W1 = np.array([[1.0, 0.0, 0.0], [0.1, 0.2, 0.3], [1.0, 0.0, 0.0]])
    b1 = np.array([-0.5, -100.0, -0.5])
    W2, b2 = rng.standard_normal((4, 3)), rng.standard_normal(4)
    W3, b3 = rng.standard_normal((2, 4)), rng.standard_normal(2)
    weights, biases = [W1, W2, W3], [b1, b2, b3]
    T = G.layer_truncation_pattern(weights, biases, X)
    assert G.dead_units(T)[0].tolist() == [False, True, False]
    frozen = G.frozen_layer(T)
    assert np.array_equal(frozen == 1, X[:, 0] <= 0.5) and (frozen == 1).sum() > 50
    out = rf.forward(weights, biases, X)[-1]
    np.testing.assert_array_equal(out[frozen == 1], np.broadcast_to(out[frozen == 1][0], out[frozen == 1].shape))
    np.testing.assert_allclose(out[frozen == 1][0], np.maximum(W3 @ np.maximum(b2, 0) + b3, 0), atol=1e-15)
    mask, _ = G.effective_training_set(weights, biases, X)
    assert not mask[frozen == 1].any()


# --------------------------------------------------------------------------------------------------------------
# 4. effective training set


@settings(max_examples=40)
@given(widths=width_lists, seed=seeds, shift=st.sampled_from([0.0, -0.7, -1.5]))
def test_effective_training_set_matches_the_brute_force_product(widths, seed, shift):
    """Oracle: brute force; J_i = D_L W_L ⋯ W_2 D_1 built per point as a matrix product, mask[i] ⟺ J_i ≠ 0."""
    weights, biases = random_layers(widths, seed, shift)
    X = np.random.default_rng(seed + 1).standard_normal((20, widths[0]))
    mask, n_eff = G.effective_training_set(weights, biases, X)
    ref = np.array([np.any(mask_product(weights, biases, x) != 0) for x in X])
    assert mask.dtype == bool and np.array_equal(mask, ref) and n_eff == int(ref.sum())
    pattern = G.layer_truncation_pattern(weights, biases, X)
    assert not mask[G.frozen_layer(pattern) > 0].any()  # a frozen point sends no gradient to layer 1
    assert np.array_equal(G.gradient_path_mask(weights, pattern), ref)  # the same mask from a pattern in hand


def test_gradient_path_mask_refuses_a_pattern_of_another_network():
    weights, biases = random_layers([3, 4, 2], 1, 0.0)
    pattern = G.layer_truncation_pattern(weights, biases, np.ones((5, 3)))
    with pytest.raises(ValueError, match="same number of layers"):
        G.gradient_path_mask(weights[:1], pattern)
    with pytest.raises(ValueError, match=r"weights\[1\] \(layer 2\)"):
        G.gradient_path_mask([weights[0], weights[1].T], pattern)


def test_the_mask_product_is_the_jacobian_with_respect_to_the_first_bias():
    """Oracle: autodiff; the brute-force J_i used above equals ∂x^(L)/∂b_1 computed by autograd."""
    weights, biases = random_layers([3, 5, 4, 2], 11, -0.3)
    X = np.random.default_rng(12).standard_normal((8, 3))

    def out(b1, x):
        h = anp.maximum(anp.dot(weights[0], x) + b1, 0.0)
        for W, b in zip(weights[1:], biases[1:]):
            h = anp.maximum(anp.dot(W, h) + b, 0.0)
        return h

    for x in X:
        np.testing.assert_allclose(autograd.jacobian(out)(biases[0], x), mask_product(weights, biases, x),
                                   atol=1e-14)


def test_gradient_path_lost_without_a_frozen_layer():
    """Oracle: analytic fixtures; J_i = 0 with no fully truncated layer, (a) structurally, (b) by an exact
    cancellation of two nonzero paths (integer weights, so the float product is exactly 0)."""
    X = np.array([[0.5], [-0.5], [0.2]])
    # (a) layer 1 unit 0 active only for x > 0; layer 2's only active unit reads unit 1, which is dead
    weights = [np.array([[1.0], [0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])]
    biases = [np.array([0.0, -1.0]), np.array([1.0, -10.0])]
    T = G.layer_truncation_pattern(weights, biases, X)
    assert G.frozen_layer(T).tolist() == [0, 1, 0]
    assert G.effective_training_set(weights, biases, X)[0].tolist() == [False, False, False]
    # (b) h = x + 1 ∈ (0, 2), x^(2) = (h, 2 − h), x^(3) = σ(h + (2 − h) − 1) = 1: constant, so J = 0 exactly
    # (J = (1, 1)·(1, −1)ᵀ), though every unit is active
    weights = [np.array([[1.0]]), np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])]
    biases = [np.array([1.0]), np.array([0.0, 2.0]), np.array([-1.0])]
    assert not any(t.any() for t in G.layer_truncation_pattern(weights, biases, X))
    assert G.effective_training_set(weights, biases, X)[0].tolist() == [False, False, False]
    assert all(np.all(mask_product(weights, biases, x) == 0) for x in X)
    # the same network with unequal last-layer weights keeps the path (J = 1 − 2)
    weights[2] = np.array([[1.0, 2.0]])
    mask, n_eff = G.effective_training_set(weights, biases, X)
    assert mask.tolist() == [True, True, True] and n_eff == 3


# --------------------------------------------------------------------------------------------------------------
# 5. cumulative parameters and the pseudo-inverse truncation chain


def narrowing_layers(widths, seed):
    """Surjective layers of non-increasing widths (condition number ≤ 4 each)."""
    rng = np.random.default_rng(seed)
    weights = [C.random_surjection(widths[i + 1], widths[i], seed=rng) for i in range(len(widths) - 1)]
    biases = [rng.standard_normal(w) for w in widths[1:]]
    return weights, biases


@settings(max_examples=30)
@given(widths=st.lists(st.integers(1, 7), min_size=2, max_size=6).map(lambda w: sorted(w, reverse=True)),
       seed=seeds)
def test_representation_holds_for_non_increasing_widths(widths, seed):
    """Oracle: forward pass; x^(ℓ) = W^(ℓ) x^(τ,ℓ) + b^(ℓ) to 1e-12 against rf.forward."""
    weights, biases = narrowing_layers(widths, seed)
    X = 2.0 * np.random.default_rng(seed + 1).standard_normal((40, widths[0]))
    Wc, bc = G.general_cumulative_parameters(weights, biases, surjective=True)
    taus = G.pinv_truncated_data(Wc, bc, X)
    assert len(taus) == len(weights) + 1 and np.array_equal(taus[0], X)
    for h, W, b, t in zip(rf.forward(weights, biases, X), Wc, bc, taus[1:]):
        assert t.shape == X.shape
        np.testing.assert_allclose(t @ W.T + b, h, rtol=0, atol=1e-12)
    assert G.representation_residual(weights, biases, X).max() <= 1e-12


@settings(max_examples=30)
@given(widths=width_lists, seed=seeds)
def test_cumulative_parameters_compose_the_affine_maps(widths, seed):
    """Oracle: brute force; W^(ℓ) x + b^(ℓ) equals the network without ReLUs, applied layer by layer."""
    weights, biases = random_layers(widths, seed)
    X = np.random.default_rng(seed).standard_normal((5, widths[0]))
    Wc, bc = G.general_cumulative_parameters(weights, biases)
    x = X
    for l, (W, b) in enumerate(zip(weights, biases)):
        x = x @ W.T + b
        assert Wc[l].shape == (widths[l + 1], widths[0])
        np.testing.assert_allclose(X @ Wc[l].T + bc[l], x, rtol=1e-12, atol=1e-12)


def test_square_case_agrees_with_the_inverse_truncation_maps():
    """Oracle: a second formula; for square invertible weights the pseudo-inverse chain is the W^-1 chain of
    reluflow.truncated_data."""
    for seed in range(4):
        weights, biases = rf.random_network(5, 3, seed=seed)
        X = np.random.default_rng(seed).standard_normal((30, 5))
        Wc, bc = G.general_cumulative_parameters(weights, biases)
        for a, b in zip(G.pinv_truncated_data(Wc, bc, X), rf.truncated_data(Wc, bc, X)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(G.pinv_truncation_map(weights[0], biases[0], X),
                                   rf.truncation_map(weights[0], biases[0], X), rtol=0, atol=1e-12)


def test_a_widening_layer_breaks_the_representation():
    """Oracle: a separately derived closed form. M = 1, d_1 = 2, W_1 = (1, −1)ᵀ, b_1 = 0: x^(1) = (x_+, x_−),
    W W⁺ = projector onto (1, −1)/√2, so W x^(τ,1) + b = (x/2, −x/2) and the residual is |x|/2 in each unit.
    No input-space point does better (the pseudo-inverse is the least-squares choice)."""
    W1, b1 = np.array([[1.0], [-1.0]]), np.zeros(2)
    X = np.array([[3.0], [-1.0], [0.5]])
    np.testing.assert_allclose(G.representation_residual([W1], [b1], X), [1.5], rtol=1e-15)
    Wc, bc = G.general_cumulative_parameters([W1], [b1])
    with pytest.raises(ValueError, match=r"cumulative weights\[0\] \(layer 1\) must have full row rank.*widens"):
        G.pinv_truncated_data(Wc, bc, X)
    with pytest.raises(ValueError, match=r"weights\[0\] \(layer 1\) must have full row rank"):
        G.general_cumulative_parameters([W1], [b1], surjective=True)
    h = rf.forward([W1], [b1], X)[0]
    best = np.linalg.lstsq(W1, (h - b1).T, rcond=None)[0].T  # the best y for each point
    np.testing.assert_allclose(np.abs(best @ W1.T + b1 - h).max(axis=1), np.abs(X[:, 0]) / 2, rtol=1e-14)


@pytest.mark.parametrize("seed", range(5))
def test_generic_widening_residual_is_large_and_narrowing_is_round_off(seed):
    """Oracle: forward pass. 4 → 6 → 3 (widening first layer): the residual at layer 1 is O(1) for generic data,
    while 6 → 4 → 3 gives round-off; the residual is the plain-forward-pass mismatch (recomputed here)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 4))
    weights, biases = random_layers([4, 6, 3], seed)
    r = G.representation_residual(weights, biases, X)
    Wc, bc = G.general_cumulative_parameters(weights, biases)
    t = (np.maximum(X @ Wc[0].T + bc[0], 0) - bc[0]) @ np.linalg.pinv(Wc[0]).T  # W⁺(σ(Wx + b) − b), 6 × 4 W
    direct = np.abs(t @ Wc[0].T + bc[0] - rf.forward(weights, biases, X)[0]).max()
    assert r[0] == pytest.approx(direct, rel=1e-12) and r[0] > 0.1
    assert G.representation_residual(*narrowing_layers([6, 4, 3], seed), rng.standard_normal((200, 6))).max() \
        <= 1e-12


def test_constructions_use_the_shared_maps():
    """Oracle: identity of the implementation; constructions' CE24 maps are the generic ones."""
    weights, biases = narrowing_layers([6, 5, 3], 2)
    X = np.random.default_rng(3).standard_normal((10, 6))
    assert C.pinv_truncation_map is G.pinv_truncation_map
    Wc, bc = C.rectangular_cumulative_parameters(weights, biases)
    Wg, bg = G.general_cumulative_parameters(weights, biases)
    assert all(np.array_equal(a, b) for a, b in zip(Wc + bc, Wg + bg))
    for a, b in zip(C.rectangular_truncated_data(Wc, bc, X), G.pinv_truncated_data(Wc, bc, X)[1:]):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------------------------------
# 6. adaptedness of rectangular cumulative weights


def loop_adaptedness(W):
    """(Σ_{j≠k} (w_j·w_k)²)^{1/2} / (Σ_k (w_k·w_k)²)^{1/2}, by a loop over row pairs."""
    d = W.shape[0]
    off = sum(float(W[j] @ W[k]) ** 2 for j in range(d) for k in range(d) if j != k)
    on = sum(float(W[k] @ W[k]) ** 2 for k in range(d))
    return np.sqrt(off / on)


@settings(max_examples=40)
@given(d=st.integers(1, 7), M=st.integers(1, 7), seed=seeds)
def test_rectangular_adaptedness_matches_a_loop(d, M, seed):
    """Oracle: brute force over row pairs; also the pairwise-orthogonal case Λ R (R Rᵀ = 1) gives 0."""
    W = np.random.default_rng(seed).standard_normal((d, M))
    assert G.rectangular_adaptedness(W) == pytest.approx(loop_adaptedness(W), rel=1e-12, abs=1e-15)
    if d <= M:
        R = C.random_surjection(d, M, seed=seed, singular_values=(1.0, 1.0))  # orthonormal rows
        lam = np.random.default_rng(seed).uniform(0.5, 2.0, d)
        assert G.rectangular_adaptedness(lam[:, None] * R) <= 1e-14
    elif M >= 1:
        assert G.rectangular_adaptedness(W) > 0  # d > M rows, none zero: never pairwise orthogonal


def test_rectangular_adaptedness_reduces_to_the_square_measure_and_a_hand_value():
    """Oracle: a second implementation (reluflow.adaptedness) on square matrices; a value computed by hand:
    W = [[1, 0, 0], [1, 1, 0]] has W Wᵀ = [[1, 1], [1, 2]], so √(1² + 1²)/√(1² + 2²) = √(2/5)."""
    rng = np.random.default_rng(0)
    S = rng.standard_normal((4, 5, 5))
    np.testing.assert_allclose(G.rectangular_adaptedness(S), rf.adaptedness(S), rtol=1e-15)
    assert G.rectangular_adaptedness(S[0]) == pytest.approx(rf.adaptedness(S[0]), rel=1e-15)
    assert G.rectangular_adaptedness(np.array([[1.0, 0, 0], [1, 1, 0]])) == pytest.approx(np.sqrt(0.4), rel=1e-15)
    weights, biases = narrowing_layers([6, 4, 2], 1)
    Wc, _ = G.general_cumulative_parameters(weights, biases)
    a = G.rectangular_adaptedness(Wc)
    assert a.shape == (2,)
    np.testing.assert_allclose(a, [loop_adaptedness(W) for W in Wc], rtol=1e-12)


# --------------------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_argument():
    """Oracle: identity of the implementation (the validation contract of CONVENTIONS.md)."""
    weights, biases = random_layers([3, 4, 2], 0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    T = G.layer_truncation_pattern(weights, biases, X)
    bad_X = X.copy()
    bad_X[1, 1] = np.nan
    cases = [
        (ValueError, "X must be finite", lambda: G.layer_truncation_pattern(weights, biases, bad_X)),
        (ValueError, r"X must have shape \(N, 3\)", lambda: G.effective_training_set(weights, biases, X[:, :2])),
        (ValueError, "X must hold at least one point", lambda: G.layer_truncation_pattern(weights, biases,
                                                                                          X[:0])),
        (ValueError, r"weights\[1\] \(layer 2\) must have 4 columns",
         lambda: G.layer_truncation_pattern([weights[0], weights[1][:, :3]], biases, X)),
        (ValueError, r"biases\[0\] \(layer 1\) must have shape \(4,\)",
         lambda: G.representation_residual(weights, [biases[0][:3], biases[1]], X)),
        (ValueError, "weights and biases must have one entry per layer",
         lambda: G.general_cumulative_parameters(weights, biases[:1])),
        (TypeError, "surjective must be True or False", lambda: G.general_cumulative_parameters(weights, biases,
                                                                                              surjective=1)),
        (TypeError, r"pattern\[0\] \(layer 1\) must be a boolean array", lambda: G.truncation_counts(
            [T[0].astype(int), T[1]])),
        (ValueError, r"pattern\[1\] \(layer 2\) must have N = 5 rows", lambda: G.dead_units([T[0], T[1][:4]])),
        (ValueError, "pattern must hold at least one layer", lambda: G.frozen_layer([])),
        (TypeError, "pattern must be a sequence", lambda: G.truncation_fractions(T[0])),
        (ValueError, r"cumulative weights\[0\] \(layer 1\) must have shape \(d_1, 3\)",
         lambda: G.pinv_truncated_data([np.ones((2, 4))], [np.zeros(2)], X)),
        (ValueError, r"cumulative biases\[0\] \(layer 1\) must have shape \(2,\)",
         lambda: G.pinv_truncated_data([np.eye(3)[:2]], [np.zeros(3)], X)),
        (ValueError, "W must have full row rank", lambda: G.pinv_truncation_map(np.ones((2, 3)), np.zeros(2), X)),
        (ValueError, "Wc must not be zero", lambda: G.rectangular_adaptedness(np.zeros((2, 3)))),
        (ValueError, r"Wc\[1\] must be a 2-D array", lambda: G.rectangular_adaptedness([np.eye(2), np.ones(2)])),
        (TypeError, "Wc must be a real numeric array", lambda: G.rectangular_adaptedness(np.eye(2, dtype=bool))),
    ]
    for exc, msg, call in cases:
        with pytest.raises(exc, match=msg):
            call()


def test_a_square_stack_pattern_is_accepted():
    """Oracle: a second formula; reluflow.truncation_pattern's (L, N, M) array is a valid pattern."""
    weights, biases = rf.random_network(3, 2, seed=5)
    X = np.random.default_rng(5).standard_normal((9, 3))
    Wc, bc = rf.cumulative_parameters(weights, biases)
    stack = rf.truncation_pattern(Wc, bc, X)
    assert [c.tolist() for c in G.truncation_counts(stack)] == [list(t.sum(axis=0)) for t in stack]


@settings(max_examples=30)
@given(widths=width_lists, seed=seeds, shift=st.sampled_from([0.0, -0.7, -1.5]))
def test_pattern_summary_matches_a_brute_force_recount(widths, seed, shift):
    """Oracle: brute force (per-point loops and the explicit mask product); every field of the one-pass summary."""
    weights, biases = random_layers(widths, seed, shift)
    X = np.random.default_rng(seed + 1).standard_normal((15, widths[0]))
    ref = loop_pattern(weights, biases, X)
    s = G.pattern_summary(G.layer_truncation_pattern(weights, biases, X), weights)
    for l, r in enumerate(ref):
        assert s.counts[l].tolist() == [int(sum(r[:, k])) for k in range(r.shape[1])]
        assert s.dead[l].tolist() == [bool(all(r[:, k])) for k in range(r.shape[1])]
        assert s.layer_fractions[:, l].tolist() == pytest.approx([sum(r[i]) / r.shape[1] for i in range(15)], abs=0)
    frozen = [next((l + 1 for l, r in enumerate(ref) if all(r[i])), 0) for i in range(15)]
    assert s.frozen.tolist() == frozen
    total = sum(widths[1:])
    np.testing.assert_allclose(s.fractions, [sum(int(v) for r in ref for v in r[i]) / total for i in range(15)],
                               rtol=0, atol=1e-15)
    assert s.effective.tolist() == [bool(np.any(mask_product(weights, biases, x) != 0)) for x in X]
    assert G.pattern_summary(ref).effective is None and "PatternSummary" in repr(s)
    with pytest.raises(ValueError, match="weights"):
        G.pattern_summary(ref, [*weights, weights[-1]])

"""Truncation calculus (THEORY.md §1–2): unit and property tests against independent references."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reluflow as rf
from reluflow.testing import strategies as rs
from reluflow.testing.verification import polyhedral_projection, representation_error

widths = rs.widths(6)
depths = rs.depths(5)
seeds = rs.seeds()


def plain_preactivations(weights, biases, X):
    """Pre-activations W_ℓ x^(ℓ-1) + b_ℓ of the plain network, written independently of reluflow."""
    out, x = [], X
    for W, b in zip(weights, biases):
        z = x @ W.T + b
        out.append(z)
        x = np.where(z > 0, z, 0.0)
    return out


def tau_reference(W, b, X):
    """τ(x) = W^-1(σ(Wx + b) − b), the other form of the definition, via an explicit inverse."""
    Winv = np.linalg.inv(W)
    return (np.maximum(X @ W.T + b, 0.0) - b) @ Winv.T


@given(M=widths, L=depths, seed=seeds)
def test_representation_identity(M, L, seed):
    weights, biases = rf.random_network(M, L, seed=seed)
    X = 2.0 * np.random.default_rng(seed).standard_normal((50, M))
    assert representation_error(weights, biases, X) <= 1e-12
    # and directly against the plain forward pass
    Wc, bc = rf.cumulative_parameters(weights, biases)
    xs, xt = rf.forward(weights, biases, X), rf.truncated_data(Wc, bc, X)
    assert len(xt) == L + 1 and np.array_equal(xt[0], X)
    for ell in range(L):
        np.testing.assert_allclose(xt[ell + 1] @ Wc[ell].T + bc[ell], xs[ell], rtol=0, atol=1e-12)


@given(M=widths, L=depths, seed=seeds)
def test_cumulative_parameters_compose_the_affine_maps(M, L, seed):
    weights, biases = rf.random_network(M, L, seed=seed)
    Wc, bc = rf.cumulative_parameters(weights, biases)
    X = np.random.default_rng(seed).standard_normal((7, M))
    x = X
    for ell, (W, b) in enumerate(zip(weights, biases)):
        x = x @ W.T + b  # the network without its ReLUs
        np.testing.assert_allclose(X @ Wc[ell].T + bc[ell], x, atol=1e-12)
    W2, b2 = rf.layer_parameters(Wc, bc)
    for a, c in zip(weights + biases, W2 + b2):
        np.testing.assert_allclose(a, c, atol=1e-12)


@given(M=widths, seed=seeds)
def test_truncation_map_matches_definition_and_properties(M, seed):
    (W,), (b,) = rf.random_network(M, 1, seed=seed, bias_scale=1.0)
    rng = np.random.default_rng(seed)
    X = 2.0 * rng.standard_normal((40, M))
    T = rf.truncation_map(W, b, X)
    np.testing.assert_allclose(T, tau_reference(W, b, X), atol=1e-12)
    np.testing.assert_allclose(rf.truncation_map(W, b, T), T, atol=1e-12)  # idempotent
    lam = np.exp(rng.uniform(-2, 2, M))
    np.testing.assert_allclose(rf.truncation_map(lam[:, None] * W, lam * b, X), T, atol=1e-12)  # scale invariant
    p = rf.apex(W, b)
    np.testing.assert_allclose(W @ p + b, 0.0, atol=1e-12)
    v = np.abs(rng.standard_normal((10, M)))
    inside, outside = p + np.linalg.solve(W, v.T).T, p - np.linalg.solve(W, v.T).T
    np.testing.assert_allclose(rf.truncation_map(W, b, inside), inside, atol=1e-12)
    np.testing.assert_allclose(rf.truncation_map(W, b, outside), np.broadcast_to(p, outside.shape), atol=1e-12)


@given(M=widths, L=depths, seed=seeds)
def test_truncation_pattern_is_the_plain_network_activation_pattern(M, L, seed):
    weights, biases = rf.random_network(M, L, seed=seed)
    X = 2.0 * np.random.default_rng(seed).standard_normal((30, M))
    Wc, bc = rf.cumulative_parameters(weights, biases)
    T = rf.truncation_pattern(Wc, bc, X)
    assert T.shape == (L, 30, M) and T.dtype == bool
    expected = np.stack([z <= 0 for z in plain_preactivations(weights, biases, X)])
    assert np.array_equal(T, expected)


def test_tie_counts_as_truncated():
    W, b = np.eye(2), np.zeros(2)
    X = np.array([[0.0, 1.0], [-1.0, 2.0], [1.0, 1.0]])
    T = rf.truncation_pattern([W], [b], X)[0]
    assert T.tolist() == [[True, False], [True, False], [False, False]]


@given(M=widths, L=depths, seed=seeds)
def test_adapted_roundtrip_and_adaptedness(M, L, seed):
    net = rf.random_adapted_network(M, L, seed=seed)
    Wc, bc = net.cumulative_parameters()
    assert np.all(np.atleast_1d(rf.adaptedness(Wc)) < 1e-12)
    back = rf.decompose_adapted(Wc, bc)
    # frames are determined up to the sign convention λ > 0, so they must match exactly
    np.testing.assert_allclose(back.frames, net.frames, atol=1e-12)
    np.testing.assert_allclose(back.scales, net.scales, rtol=1e-12)
    np.testing.assert_allclose(back.thresholds, net.thresholds, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.apexes, [rf.apex(W, b) for W, b in zip(Wc, bc)], atol=1e-12)


@given(M=st.integers(2, 6), seed=seeds)
def test_adaptedness_is_right_orthogonal_invariant_and_detects_oblique_rows(M, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((M, M)) + 3 * np.eye(M)
    Q, _ = np.linalg.qr(rng.standard_normal((M, M)))
    assert rf.adaptedness(W @ Q) == pytest.approx(rf.adaptedness(W), rel=1e-10)
    G = W @ W.T
    off = np.sqrt(np.sum(G**2) - np.sum(np.diag(G) ** 2))
    assert rf.adaptedness(W) == pytest.approx(off / np.linalg.norm(np.diag(G)), rel=1e-12)
    assert rf.adaptedness(W) > 0


@given(M=st.integers(1, 6), seed=seeds)
def test_cone_projection_is_the_euclidean_projection(M, seed):
    net = rf.random_adapted_network(M, 1, seed=seed)
    (W,), (b,) = net.cumulative_parameters()
    R, theta = net.frames[0], net.thresholds[0]
    Y = net.apexes[0] + 1.5 * np.random.default_rng(seed).standard_normal((25, M))
    P = rf.cone_projection(R, theta, Y)
    np.testing.assert_allclose(P, rf.truncation_map(W, b, Y), atol=1e-12)
    # KKT conditions of min ½|x − y|² s.t. R x ≥ θ, written directly
    slack, mult = P @ R.T - theta, (P - Y) @ R.T  # multipliers μ = R(p − y) ≥ 0, complementary to slack
    assert np.all(slack >= -1e-12) and np.all(mult >= -1e-12)
    assert np.abs(slack * mult).max() <= 1e-10
    if M <= 4:
        np.testing.assert_allclose(P, polyhedral_projection(W, b, Y), atol=1e-10)


def test_common_frame_composition_is_coordinatewise_clipping():
    net = rf.random_adapted_network(3, 4, seed=7, common_frame=True)
    Wc, bc = net.cumulative_parameters()
    X = np.random.default_rng(1).standard_normal((50, 3)) * 2
    R = net.frames[0]
    expected = np.maximum(X @ R.T, net.thresholds.max(axis=0)) @ R
    np.testing.assert_allclose(rf.truncated_data(Wc, bc, X)[-1], expected, atol=1e-12)


@given(Q=st.integers(1, 4), M=st.integers(1, 5), seed=seeds)
def test_clustered_data(Q, M, seed):
    rng = np.random.default_rng(seed)
    centres, radii = rng.standard_normal((Q, M)) * 5, rng.uniform(0.1, 2.0, Q)
    counts = rng.integers(1, 20, Q)
    d = rf.clustered_data(centres, radii, counts, seed=seed)
    assert d.points.shape == (counts.sum(), M) and np.array_equal(d.counts, counts)
    dist = np.linalg.norm(d.points - centres[d.labels], axis=1)
    assert np.all(dist <= radii[d.labels] + 1e-12)
    again = rf.clustered_data(centres, radii, counts, seed=seed)
    assert np.array_equal(again.points, d.points)
    np.testing.assert_array_equal(d.cluster(0), d.points[d.labels == 0])

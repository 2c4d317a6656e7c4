"""The series' constructions (reluflow.theory.constructions): zero cost, local minima, identities, errors.

Oracles: the plain forward pass (reluflow.forward, written independently of the constructions), closed
forms derived by hand in the tests, brute-force least squares, and negative controls that must fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reluflow.theory import constructions as C
from reluflow.theory.network import forward, haar_orthogonal


def _data(Q, M=None, c0=0.03, seed=0, n=12):
    X, lab, _ = C.clustered_classes(Q, Q if M is None else M, n, c0, seed=seed)
    return X, lab


def _plain_cost(con, X, lab, Y=None):
    """C_N from the layer parameters through reluflow.forward and a hand-written last layer."""
    h = forward(con.weights[:-1], con.biases[:-1], X)[-1]
    out = h @ con.weights[-1].T + con.biases[-1]
    Y = np.eye(int(lab.max()) + 1) if Y is None else Y
    N_j = np.bincount(lab)
    return sum(np.sum((out[lab == j] - Y[j]) ** 2) / N_j[j] for j in range(len(N_j)))


def test_geometry_by_hand():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    g = C.class_geometry(X, [0, 0, 1, 1])
    np.testing.assert_allclose(g.means, [[1, 0], [11, 0]])
    np.testing.assert_allclose(g.barycentre, [6, 0])
    assert g.delta == 1.0 and g.c0 == pytest.approx(1 / 5)
    np.testing.assert_allclose(g.directions, [[1, 0], [-1, 0]])
    # θ_* of class 0: the ball B_4(x̄_1) seen from x̄_0 at distance 10 along f_0: 2 arcsin(0.4)
    np.testing.assert_allclose(g.theta_star, 2 * np.arcsin(0.4))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_cone_squeeze_maps_the_cone_into_the_orthant(n):
    theta = 0.5 * (C.widest_orthant_angle(n) + np.pi)
    W = C.cone_squeeze(theta, n)
    u = np.ones(n) / np.sqrt(n)
    np.testing.assert_allclose(W @ u, u, atol=1e-15)
    rng = np.random.default_rng(n)
    v = rng.standard_normal((2000, n))
    v -= (v @ u)[:, None] * u
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    edge = np.cos(theta / 2) * u + np.sin(theta / 2) * v  # on the boundary of C_θ[u]
    assert np.all(edge @ W.T >= -1e-12)
    # widest cone: θ_n by hand for n = 2 is π/2
    assert C.widest_orthant_angle(2) == pytest.approx(np.pi / 2)


def test_rotation_to_is_a_rotation_and_hits_the_target():
    rng = np.random.default_rng(0)
    for n in (2, 3, 6):
        a, b = rng.standard_normal(n), rng.standard_normal(n)
        for seed in (None, 1):
            R = C.rotation_to(a, b, seed=seed)
            np.testing.assert_allclose(R @ R.T, np.eye(n), atol=1e-13)
            assert np.linalg.det(R) == pytest.approx(1.0)
            np.testing.assert_allclose(R @ (a / np.linalg.norm(a)), b / np.linalg.norm(b), atol=1e-13)
    R = C.rotation_to(np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]))
    np.testing.assert_allclose(R @ [1, 0, 0], [-1, 0, 0], atol=1e-15)


@pytest.mark.parametrize("Q", [2, 3, 4, 5])
def test_ce23_global_minimum_has_zero_cost_by_the_plain_forward_pass(Q):
    X, lab = _data(Q, seed=Q)
    con = C.ce23_global_minimum(X, lab, seed=1, L=Q + 1)
    assert _plain_cost(con, X, lab) < 1e-20
    # each class goes to x̄_j − μ_j f_j, and so does a fresh point of the ball B_δ(x̄_j)
    g = C.class_geometry(X, lab)
    np.testing.assert_allclose(con.truncated(X), (g.means - con.mu[:, None] * g.directions)[lab], atol=1e-12)
    rng = np.random.default_rng(3)
    d = rng.standard_normal((Q, g.means.shape[1]))
    ball = g.means + 0.999 * g.delta * d / np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(con.output(ball), np.eye(Q), atol=1e-9)


def test_ce23_zero_cost_with_random_labels():
    X, lab = _data(3, seed=7)
    Y = np.random.default_rng(0).standard_normal((3, 3)) + 2 * np.eye(3)
    con = C.ce23_global_minimum(X, lab, Y)
    assert _plain_cost(con, X, lab, Y) < 1e-18


def test_ce23_closed_form_against_brute_force_least_squares():
    X, lab = _data(3, seed=2)
    Y = np.random.default_rng(1).standard_normal((3, 3))
    N_j = np.bincount(lab)
    # brute force: minimise over the 9 entries of W with a generic solver-free normal equation
    w = 1 / N_j[lab]
    G = (X * w[:, None]).T @ X
    Wt = np.linalg.solve(G, (X * w[:, None]).T @ Y[lab])
    brute = float(np.sum(w * np.sum((X @ Wt - Y[lab]) ** 2, axis=1)))
    assert C.ce23_closed_form_cost(X, lab, Y) == pytest.approx(brute, rel=1e-10)
    assert C.class_weighted_cost(X @ C.optimal_last_layer(X, lab, Y).T, lab, Y) == pytest.approx(brute, rel=1e-10)


@pytest.mark.parametrize("s", [s for s in itertools.product([0, 1], repeat=3) if any(s)])
def test_ce23_local_minima_leave_the_right_classes_intact(s):
    X, lab = _data(3, seed=4)
    con = C.ce23_local_minimum(X, lab, np.array(s))
    Z = con.truncated(X)
    g = C.class_geometry(X, lab)
    for j in range(3):
        expected = X[lab == j] if s[j] else np.tile(g.means[j] - con.mu[j] * g.directions[j], (np.sum(lab == j), 1))
        np.testing.assert_allclose(Z[lab == j], expected, atol=1e-12)
    value = _plain_cost(con, X, lab)
    assert value == pytest.approx(C.ce23_closed_form_cost(Z, lab), rel=1e-9)
    assert value > 0


def test_theorem_24_value_is_independent_of_mu_and_of_hidden_perturbations():
    X, lab = _data(3, seed=5)
    lo, D, _ = C.ce23_mu_interval(X, lab)
    vals = [_plain_cost(C.ce23_local_minimum(X, lab, np.ones(3, int), mu=np.full(3, m)), X, lab)
            for m in (1.1 * lo, 3 * lo, 50 * lo)]
    np.testing.assert_allclose(vals, vals[0], rtol=1e-10)
    con = C.ce23_local_minimum(X, lab, np.ones(3, int))
    assert C.perturbation_curve(con, X, lab, None, [1e-4, 1e-3], kind="hidden", seed=0).max() < 1e-14
    d = C.perturbation_curve(con, X, lab, None, [1e-3, 1e-2], kind="last", seed=0)
    assert d[1] / d[0] == pytest.approx(100, rel=0.05)  # second order in the last layer


def test_negative_control_too_wide_clusters_are_refused_and_fail():
    X, lab = _data(3, c0=0.3, seed=1)
    with pytest.raises(ValueError, match="assumption violated: clustering"):
        C.ce23_global_minimum(X, lab)
    X, lab = _data(4, c0=0.24, seed=1, n=20)
    with pytest.raises(ValueError, match="assumption violated: admissible μ-interval"):
        C.ce23_mu_interval(X, lab)
    X, lab = _data(3, c0=0.5, seed=1, n=20)  # forced anyway: the cost is far from 0
    g = C.class_geometry(X, lab)
    con = C.ce23_global_minimum(X, lab, mu=np.full(3, -2.2 * g.delta * np.sqrt(3)), check=False)
    assert _plain_cost(con, X, lab) > 1.0


def test_errors_name_the_argument():
    X, lab = _data(3)
    with pytest.raises(ValueError, match="M = Q"):
        C.ce23_global_minimum(np.column_stack([X, X[:, :1]]), lab)
    with pytest.raises(ValueError, match="L must be"):
        C.ce23_global_minimum(X, lab, L=2)
    with pytest.raises(ValueError, match="s must be"):
        C.ce23_local_minimum(X, lab, [0, 2, 1])
    with pytest.raises(ValueError, match="linearly independent"):
        C.ce23_global_minimum(X, lab, np.ones((3, 3)))
    with pytest.raises(ValueError, match="labels must use every class"):
        C.class_geometry(X, np.where(lab == 1, 2, lab))
    with pytest.raises(ValueError, match="widths"):
        C.ce24_width_reduction(X, lab, widths=[3, 2, 2])
    with pytest.raises(TypeError, match="sls must be"):
        C.ce24_sls_network(X, lab, "order")
    with pytest.raises(ValueError, match="full row rank"):
        C.pinv_truncation_map(np.ones((2, 3)), np.zeros(2), X)


def test_rectangular_representation_matches_the_forward_pass():
    rng = np.random.default_rng(0)
    widths = [6, 5, 5, 3]
    weights = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(3)]
    biases = [rng.standard_normal(w) for w in widths[1:]]
    X = rng.standard_normal((40, 6))
    Wc, bc = C.rectangular_cumulative_parameters(weights, biases)
    hidden = forward(weights, biases, X)
    taus = C.rectangular_truncated_data(Wc, bc, X)
    for h, W, b, t in zip(hidden, Wc, bc, taus):
        np.testing.assert_allclose(t @ W.T + b, h, atol=1e-12)
    back_W, back_b = C.rectangular_layer_parameters(Wc, bc)
    for a, b_ in zip(back_W + back_b, weights + biases):
        np.testing.assert_allclose(a, b_, atol=1e-12)
    P, P_last = C.projector_chain(Wc)  # Lemma 3.3
    np.testing.assert_allclose(P, P_last, atol=1e-12)
    np.testing.assert_allclose(P_last @ P_last, P_last, atol=1e-12)
    np.testing.assert_allclose(P_last, P_last.T, atol=1e-12)


def test_cost_decomposition_equals_the_plain_cost_for_arbitrary_parameters():
    rng = np.random.default_rng(1)
    X, lab = _data(3, M=5, seed=3)
    weights = [rng.standard_normal((5, 5)), rng.standard_normal((4, 5)), rng.standard_normal((3, 4))]
    biases = [rng.standard_normal(5), rng.standard_normal(4), rng.standard_normal(3)]
    Wc, bc = C.rectangular_cumulative_parameters(weights, biases)
    spread, mismatch = C.cost_decomposition(Wc[:-1], bc[:-1], Wc[-1], bc[-1], X, lab)
    plain = C.class_weighted_cost(C.network_output(weights, biases, X), lab)
    assert spread + mismatch == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("widths", [None, [5, 4, 3], [4, 4, 4], [3, 3, 3]])
def test_ce24_width_reduction_has_zero_cost(widths):
    X, lab = _data(3, M=5, seed=6)
    con = C.ce24_width_reduction(X, lab, widths, seed=2)
    assert _plain_cost(con, X, lab) < 1e-20
    g = C.class_geometry(X, lab)
    np.testing.assert_allclose(con.truncated(X), (g.means + con.mu[:, None] * g.directions)[lab], atol=1e-12)


def test_sls_checker_refuses_a_middle_class_on_a_line():
    # three classes along a line: every hyperplane meets the line once, and p_j lies on it, so the middle
    # class can never be cut off from what lies on both sides of it -- no order is SLS
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0, 1], [2.0, 0, 1], [10.0, 0, 1]])
    X = np.repeat(centres, 10, axis=0) + 0.05 * rng.uniform(-1, 1, (30, 3)) * [0, 1, 1]
    lab = np.repeat([0, 1, 2], 10)
    assert C.find_sls_order(X, lab, orders="all") == []
    assert C.sls_order(X, lab, (1, 0, 2)).failed_at == 0
    with pytest.raises(ValueError, match="assumption violated: the class order is SLS"):
        C.ce24_sls_network(X, lab, C.sls_order(X, lab, (0, 2, 1)))


def test_sls_network_has_zero_cost_on_generic_data():
    X, lab = _data(4, M=6, c0=0.1, seed=1)
    res = C.find_sls_order(X, lab)
    assert res.separable and np.all((res.segment_t > 0) & (res.segment_t < 1))
    # each p_j lies on its hyperplane's side boundary: class j strictly on one side, the rest on the other
    con = C.ce24_sls_network(X, lab, res)
    assert _plain_cost(con, X, lab) < 1e-18


def test_lemma_21_formula_and_its_converse():
    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    X = rng.standard_normal((50, 5))
    direct = (np.maximum(X @ W.T + b, 0) - b) @ np.linalg.pinv(W).T
    np.testing.assert_allclose(C.polyhedral_cone_form(W, b, X), direct, atol=1e-12)
    V, p = rng.standard_normal((5, 3)), rng.standard_normal(5)
    W2, b2 = C.realise_cone(p, V)
    np.testing.assert_allclose(np.linalg.pinv(W2), V, atol=1e-12)
    np.testing.assert_allclose(-np.linalg.pinv(W2) @ b2, V @ np.linalg.pinv(V) @ p, atol=1e-12)


def test_lemma_22_lift():
    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((5, 3)), rng.standard_normal(5)
    Wt = C.lift_completion(W, seed=1)
    np.testing.assert_allclose(Wt[:, :3], W)
    X = rng.standard_normal((30, 3))
    lifted = np.column_stack([X, np.zeros((30, 2))])
    tau = (np.maximum(lifted @ Wt.T + b, 0) - b) @ np.linalg.inv(Wt).T
    np.testing.assert_allclose(tau @ Wt.T + b, np.maximum(X @ W.T + b, 0), atol=1e-12)


@pytest.mark.parametrize("d0", [2, 3, 4])
def test_concentric_classifier_separates_and_refuses_overlap(d0):
    r_in, r_out = 0.4, 1.1 * d0 * 0.4 + 0.2
    X, lab = C.concentric_data(d0, 200, r_in, (r_out, r_out + 1), seed=d0)
    con = C.concentric_classifier(d0, r_in, r_out)
    assert np.all(C.network_output(con.weights, con.biases, X).argmax(axis=1) == lab)
    with pytest.raises(ValueError, match="simplex separates"):
        C.concentric_classifier(d0, r_in, 0.9 * d0 * r_in)


def test_clustered_classes_hits_the_requested_c0():
    X, lab, means = C.clustered_classes(4, 6, 10, 0.05, seed=0)
    g = C.class_geometry(X, lab)
    np.testing.assert_allclose(g.means, means, atol=1e-12)
    assert g.c0 == pytest.approx(0.05)


def test_digits_file_loads_and_is_checked():
    X, y = C.load_digits()
    assert X.shape == (1797, 64) and set(np.unique(y)) == set(range(10)) and X.min() == 0 and X.max() == 16


def test_haar_helper_is_used_consistently():
    # the degenerate family: a seeded rotation still sends f to u
    R = C.rotation_to(np.array([1.0, 2.0, 2.0]), np.ones(3), seed=5)
    np.testing.assert_allclose(R @ np.array([1, 2, 2]) / 3, np.ones(3) / np.sqrt(3), atol=1e-13)
    assert haar_orthogonal(np.random.default_rng(0), 3).shape == (3, 3)


def test_admissible_draw_rejects_until_the_assumption_holds_and_gives_up_clearly():
    X, lab, tries = C.ce23_draw(3, 8, [0.02, 0.05], seed=0)
    C.ce23_mu_interval(X, lab)  # accepted data pass the assumption
    assert tries >= 1
    with pytest.raises(ValueError, match="c0_range: no admissible draw"):
        C.ce23_draw(3, 8, [0.4, 0.5], seed=0, max_tries=3)


def test_ball_samples_lie_in_their_balls_half_on_the_sphere():
    means = np.array([[0.0, 0.0], [5.0, 0.0]])
    X, lab = C.ball_samples(means, 0.5, 10, seed=0, radius_factor=2.0)
    r = np.linalg.norm(X - means[lab], axis=1)
    assert np.all(r <= 1.0 + 1e-12) and np.sum(np.isclose(r, 1.0)) >= 10


def test_class_states_by_hand():
    # one layer, identity frame: class 0 lies in the truncation region (collapsed), class 1 in S_+ (intact),
    # class 2 straddles the threshold (partly truncated)
    X = np.array([[-2.0, -2.0], [-3.0, -1.5], [2.0, 2.0], [3.0, 2.5], [0.5, 2.0], [-0.5, 2.0]])
    lab = np.array([0, 0, 1, 1, 2, 2])
    states = C.class_states([np.eye(2)], [np.zeros(2)], X, lab)
    np.testing.assert_array_equal(states, [0, 1, 2])


def test_wilson_interval_known_values():
    lo, hi = C.wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0713, abs=1e-3)
    lo, hi = C.wilson_interval(25, 50)
    assert lo == pytest.approx(0.366, abs=1e-3) and hi == pytest.approx(0.634, abs=1e-3)
    assert C.wilson_interval(0, 0) == (0.0, 1.0)  # the shared helper: nothing tested, no information


def test_perturbation_odd_part_vanishes_at_a_stationary_point():
    X, lab = _data(3, seed=8)
    con = C.ce23_global_minimum(X, lab)
    eps = np.array([1e-4, 1e-3])
    change = C.perturbation_curve(con, X, lab, None, eps, kind="all", seed=1)
    odd = C.perturbation_curve(con, X, lab, None, eps, kind="all", seed=1, odd=True)
    assert np.all(odd <= 1e-2 * change)  # the cost is 0 and minimal: no first-order part
    assert change[1] / change[0] == pytest.approx(100, rel=0.05)


def test_descent_outcome_reads_a_short_gradient_descent_run():
    from reluflow.training.gd import train

    X, lab = _data(2, seed=9, n=6)
    con = C.ce23_global_minimum(X, lab)
    w = 1.0 / (2 * np.bincount(lab)[lab])
    ds = train(con.weights[:-1], con.biases[:-1], X, np.eye(2)[lab], mode="full", cost="output", lr=0.05,
               n_steps=4, record_every=2, W_out=con.weights[-1], b_out=con.biases[-1], train_terminal=True,
               point_weights=w)
    out = C.descent_outcome(ds, X, lab)
    assert out["outcome"] == "zero cost" and out["cost"].shape == (3,)
    np.testing.assert_allclose(out["cost"], 2 * 2 * ds.cost.values, atol=1e-20)  # C_N = 2Q x the weighted cost
    np.testing.assert_array_equal(out["states"][-1], [0, 0])


def test_descent_outcome_detects_merged_classes():
    # a one-layer network that sends both classes to the apex 0: both collapsed onto one point
    import xarray as xr

    X = np.array([[-1.0, -2.0], [-2.0, -1.0], [-3.0, -1.0], [-1.0, -3.0]])
    lab = np.array([0, 0, 1, 1])
    ds = xr.Dataset({"cumulative_weights": (("time", "layer", "a", "b"), np.eye(2)[None, None]),
                     "cumulative_biases": (("time", "layer", "a"), np.zeros((1, 1, 2))),
                     "output_weights": (("time", "o", "a"), np.eye(2)[None]),
                     "output_biases": (("time", "o"), np.full((1, 2), 0.5))})
    out = C.descent_outcome(ds, X, lab)
    assert out["outcome"] == "merged classes" and out["cost"][-1] == pytest.approx(1.0)

"""Notebook 09's ensembles (reluflow.theory.series): the claims they measure, their random streams, their errors.

Oracles, named in each test: the plain forward pass (inside the ensembles, written independently of the
constructions); closed forms derived by hand here (the weighted least-squares value of CE23 Thm 2.4 by normal
equations, a cost exactly quadratic in the last layer, Definition 5.1's inequalities, points on a line); brute-force
recounts (of cases, of SLS orders, of outcomes); and identities of the implementation (the documented order of
draws, replayed from a fresh generator).
"""

from __future__ import annotations

import numpy as np
import pytest

from reluflow.theory import constructions as C
from reluflow.theory import series as S

C0 = (0.02, 0.08)
SEEDS = (0, 1, 2)


def _least_squares_value(X, lab):
    """min_W Σ_j (1/N_j) Σ_i |W x_{j,i} − e_j|², bias 0, by the weighted normal equations (derived by hand)."""
    Q = int(lab.max()) + 1
    w = 1.0 / np.bincount(lab)[lab]
    Y = np.eye(Q)[lab]
    A = (X * w[:, None]).T @ X  # Σ w_i x_i x_iᵀ
    B = (Y * w[:, None]).T @ X  # Σ w_i y_i x_iᵀ
    W = np.linalg.solve(A, B.T).T
    return float(np.sum(w * np.sum((X @ W.T - Y) ** 2, axis=1)))


# ------------------------------------------------------------------------------------------ zero-cost statements


@pytest.mark.parametrize("seed", SEEDS)
def test_ce23_global_minimum_ensemble_has_zero_cost_and_collapses_each_class(seed):
    """Oracle: plain forward pass against CE23 Thm 2.3's closed-form claims (C_N = 0, stated points, balls ↦ y_j)."""
    r = S.ce23_global_minimum_ensemble([2, 3, 4], 4, C0, 2, np.random.default_rng(seed))
    assert r.cost.shape == r.collapse_error.shape == r.ball_error.shape == (3,)
    assert r.cost.max() <= 1e-20
    assert r.collapse_error.max() <= 1e-12
    assert r.ball_error.max() <= 1e-10
    assert np.all(r.classifier_agreement == 1.0)
    assert np.all(r.tries >= 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_ce24_zero_cost_ensemble_has_zero_cost(seed):
    """Oracle: plain forward pass against CE24 Prop 4.1's and Thm 5.2's claims (C_N = 0, class j ↦ its point)."""
    r = S.ce24_zero_cost_ensemble([2, 3], 4, C0, (0.05, 0.2), 2, np.random.default_rng(seed))
    assert r.width_reduction_cost.max() <= 1e-20 and r.sls_cost.max() <= 1e-12
    assert r.width_reduction_collapse_error.max() <= 1e-12 and r.sls_collapse_error.max() <= 1e-9
    assert r.width_reduction_ball_error.max() <= 1e-10


# ------------------------------------------------------------------------------------------ local minima


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("Q", [2, 3])
def test_ce23_local_minimum_values_equal_an_independent_least_squares(Q, seed):
    """Oracle: closed form derived here. The data are replayed from the documented first draw (identity), and
    Thm 2.4's value (nothing truncated) is the weighted least-squares optimum on X, solved by normal equations."""
    r = S.ce23_local_minima_ensemble([Q], 4, C0, np.random.default_rng(seed))
    X, lab, _ = C.ce23_draw(Q, 4, C0, seed=np.random.default_rng(seed).integers(2**63))
    v = _least_squares_value(X, lab)
    np.testing.assert_allclose(r.thm24_values[0], v, rtol=1e-9)
    np.testing.assert_allclose(r.thm24_closed_form[0], v, rtol=1e-9)
    assert r.thm24_error[0] <= 1e-9 and r.thm24_spread[0] <= 1e-9
    # s = 1…1 is one of the 2^Q − 1 patterns, so the smallest value is at most Thm 2.4's
    assert 0 < r.smallest_value[0] <= v * (1 + 1e-9)


def test_ce23_local_minima_ensemble_counts_every_case():
    """Oracle: brute-force recount. Each draw has 2^Q − 1 patterns s ≠ 0, one of them with a second μ."""
    Qs = [2, 3, 2]
    r = S.ce23_local_minima_ensemble(Qs, 4, C0, np.random.default_rng(5))
    assert len(r.thm25_error) == sum(2**Q - 1 for Q in Qs) + len(Qs)
    assert r.thm25_error.max() <= 1e-9
    assert r.mu_dependence.shape == r.smallest_gap.shape == (len(Qs),)
    assert np.all(r.smallest_gap > 0)


def test_ensembles_are_determined_by_their_generator():
    """Oracle: identity of the implementation (one Generator, a fixed order of draws)."""
    a = S.ce23_local_minima_ensemble([2, 3], 4, C0, np.random.default_rng(11))
    b = S.ce23_local_minima_ensemble([2, 3], 4, C0, np.random.default_rng(11))
    c = S.ce23_local_minima_ensemble([2, 3], 4, C0, np.random.default_rng(12))
    np.testing.assert_array_equal(a.thm24_values, b.thm24_values)
    np.testing.assert_array_equal(a.thm25_error, b.thm25_error)
    assert not np.array_equal(a.thm24_values, c.thm24_values)


# ------------------------------------------------------------------------------------------ perturbations


@pytest.mark.parametrize("seed", [0, 1])
def test_perturbation_ensemble_last_layer_change_is_exactly_quadratic(seed):
    """Oracle: closed form. Moving only the last layer, the output is linear in ε and C_N quadratic; at the
    least-squares last layer its linear term vanishes, so |C(ε) − C(0)|/ε² is the same at every ε, and the odd
    part is round-off. Also finite differences: slope 2 at Thm 2.3's zero-cost point in every direction."""
    eps = [1e-4, 1e-3, 1e-2]
    r = S.ce23_perturbation_ensemble(2, 4, C0, eps, np.random.default_rng(seed))
    assert r.reference_index == 1
    for name in S.CE23_STATEMENTS:
        assert r.curves[name]["last"].shape == (2, 3)
        q = r.curves[name]["last"] / np.array(eps) ** 2
        np.testing.assert_allclose(q, np.broadcast_to(q[:, [-1]], q.shape), rtol=1e-5)
        assert r.first_order_share[name]["last"] <= 1e-6
        assert abs(r.slope[name]["last"] - 2) <= 1e-4
    assert r.base["Thm 2.3"].max() <= 1e-20
    assert abs(r.slope["Thm 2.3"]["all"] - 2) <= 0.1


# ------------------------------------------------------------------------------------------ identities, Ewa25


@pytest.mark.parametrize("seed", SEEDS)
def test_identities_ensemble_errors_are_round_off(seed):
    """Oracle: the plain forward pass and closed forms inside (CE24 Prop 3.2, (2.14), Lemma 3.3; Ewa25 2.1, 2.2)."""
    r = S.identities_ensemble([2, 3, 4], 4, np.random.default_rng(seed))
    for field in ("representation_error", "decomposition_error", "projector_error", "cone_formula_error",
                  "cone_converse_error", "lift_error"):
        values = getattr(r, field)
        assert values.shape == (3,) and values.max() <= 1e-11, field


@pytest.mark.parametrize("seed", SEEDS)
def test_concentric_ensemble_classifies_every_point(seed):
    """Oracle: plain forward pass against the labels by radius (ball = 0, shell = 1)."""
    r = S.concentric_ensemble([2, 3, 5], np.random.default_rng(seed), n_per_class=40)
    assert np.all(r.accuracy == 1.0) and np.all(r.margin > 0)


# ------------------------------------------------------------------------------------------ negative controls


@pytest.mark.parametrize("seed", [0, 1])
def test_negative_controls_refuse_and_fail(seed):
    """Oracle: identity (the refusal names the assumption) and the plain forward pass (the SLS order: C_N = 0)."""
    r = S.negative_controls_ensemble([2, 3], 4, (0.3, 0.6), (0.05, 0.2), np.random.default_rng(seed))
    assert r.refused.dtype == bool and np.all(r.refused)
    assert r.sls_cost.max() <= 1e-12
    assert r.forced_cost.shape == r.reversed_cost.shape == (2,)
    assert r.line_orders == []


def test_collinear_classes_lie_on_the_line_and_have_no_sls_order():
    """Oracle: closed form (every point on {(t, 0, 1)}, t within 0.3 of 0, 2, 10; a hyperplane meets the line once,
    so the middle class cannot be separated). Control: lifting the middle class off the line makes some order SLS."""
    X, lab = S.collinear_classes(5, np.random.default_rng(3))
    assert X.shape == (15, 3) and np.array_equal(lab, np.repeat([0, 1, 2], 5))
    assert np.all(X[:, 1] == 0) and np.all(X[:, 2] == 1)
    assert np.all(np.abs(X[:, 0] - np.array([0.0, 2.0, 10.0])[lab]) <= 0.3)
    assert C.find_sls_order(X, lab, orders="all") == []
    off = X + np.where(lab[:, None] == 1, [0.0, 5.0, 0.0], 0.0)
    assert len(C.find_sls_order(off, lab, orders="all")) >= 1


# ------------------------------------------------------------------------------------------ SLS certificates, digits


def _two_classes():
    X = np.array([[-1.0, 0.1], [-1.0, -0.1], [1.0, 0.1], [1.0, -0.1]])
    return X, np.array([0, 0, 1, 1])


def test_sls_certificate_by_hand():
    """Oracle: closed form. Means (±1, 0), barycentre 0; p_0 = (−½, 0) with h_0 = e_1, p_1 = (½, 0) with
    h_1 = −e_1 satisfy Definition 5.1 with t = ½; a flipped normal, t on the segment's end, or an order
    marked not separable do not."""
    X, lab = _two_classes()
    P, H = np.array([[-0.5, 0.0], [0.5, 0.0]]), np.array([[1.0, 0.0], [-1.0, 0.0]])
    good = C.SLSResult((0, 1), True, -1, P, H, np.array([0.5, 0.5]))
    assert S.sls_certificate_holds(X, lab, good) is True
    assert not S.sls_certificate_holds(X, lab, C.SLSResult((0, 1), True, -1, P, -H, np.array([0.5, 0.5])))
    assert not S.sls_certificate_holds(X, lab, C.SLSResult((0, 1), True, -1, P, H, np.array([1.0, 0.5])))
    assert not S.sls_certificate_holds(X, lab, C.SLSResult((0, 1), False, 1, P, H, np.array([0.5, 0.5])))
    # p_1 moved past class 0's side: the earlier point p_0 is no longer on the far side of hyperplane 1
    P_bad = np.array([[-0.5, 0.0], [-0.75, 0.0]])
    assert not S.sls_certificate_holds(X, lab, C.SLSResult((0, 1), True, -1, P_bad, H, np.array([0.5, 0.5])))


@pytest.mark.parametrize("seed", [0, 1])
def test_sls_certificate_holds_for_the_linear_programme(seed):
    """Oracle: Definition 5.1's inequalities evaluated directly on the checker's certificate."""
    X, lab, _ = C.clustered_classes(4, 5, 6, 0.1, seed=seed)
    res = C.find_sls_order(X, lab)
    assert res.separable and S.sls_certificate_holds(X, lab, res)


@pytest.mark.parametrize("seed", [0, 1])
def test_digits_sls_table_recounts_the_orders(seed):
    """Oracle: brute-force recount with find_sls_order(orders="all") on the replayed training split (identity:
    the split is the generator's first draw), and the plain forward pass (Thm 5.2: zero training cost)."""
    X, y, _ = C.clustered_classes(5, 6, 8, 0.05, seed=10 + seed)
    subsets = {"pair": [3, 1], "all five": [0, 1, 2, 3, 4]}
    table = S.digits_sls_table(X, y, subsets, 30, 2, np.random.default_rng(seed))
    assert list(table) == ["pair", "all five"]
    rng = np.random.default_rng(seed)
    tr = rng.permutation(len(y))[:30]
    m = np.isin(y[tr], [1, 3])
    sls_orders = C.find_sls_order(X[tr][m], np.searchsorted([1, 3], y[tr][m]), orders="all")
    pair = table["pair"]
    assert pair.n_orders == 2 and pair.n_sls == len(sls_orders) and pair.n_held_out == 10
    assert pair.separable == ((1, 0) in sls_orders)  # the stated order 3, 1 is (1, 0) in sorted labels
    random_orders = [tuple(rng.permutation(5)) for _ in range(2)]  # drawn after the split, for the larger subset
    five = table["all five"]
    assert five.n_orders == 2 and five.n_sls == sum(C.sls_order(X[tr], y[tr], o).separable for o in random_orders)
    for row in table.values():
        if row.separable:
            assert row.certificate and row.cost <= 1e-12 and row.train_accuracy == 1.0
            assert 0 <= row.test_accuracy <= 1 and 0 < row.room < np.pi and row.condition >= 1
        else:
            assert np.isnan(row.cost) and not row.certificate


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("call, error, words", [
    (lambda: S.ce23_global_minimum_ensemble([2], 4, C0, 2, 0), TypeError, "rng"),
    (lambda: S.ce23_global_minimum_ensemble([1], 4, C0, 2, np.random.default_rng()), ValueError, "Qs[0]"),
    (lambda: S.ce23_global_minimum_ensemble([], 4, C0, 2, np.random.default_rng()), ValueError, "Qs"),
    (lambda: S.ce23_global_minimum_ensemble(3, 4, C0, 2, np.random.default_rng()), TypeError, "Qs"),
    (lambda: S.ce23_global_minimum_ensemble([2], 1, C0, 2, np.random.default_rng()), ValueError, "n_per_class"),
    (lambda: S.ce23_global_minimum_ensemble([2], 4, C0, 0, np.random.default_rng()), ValueError, "n_ball"),
    (lambda: S.ce24_zero_cost_ensemble([2], 4, C0, (0.2, 0.05), 2, np.random.default_rng()), ValueError,
     "sls_c0_range"),
    (lambda: S.ce23_local_minima_ensemble([2], 4, (0.08, 0.02), np.random.default_rng()), ValueError, "c0_range"),
    (lambda: S.ce23_local_minima_ensemble([2], 4, (np.nan, 0.1), np.random.default_rng()), ValueError,
     "c0_range[0]"),
    (lambda: S.ce23_local_minima_ensemble([2], 4, (0.02,), np.random.default_rng()), ValueError, "c0_range"),
    (lambda: S.ce23_perturbation_ensemble(1, 4, C0, [-1e-3, 1e-2], np.random.default_rng()), ValueError, "epsilons"),
    (lambda: S.ce23_perturbation_ensemble(1, 4, C0, [1e-6, 1e-2], np.random.default_rng()), ValueError, "epsilons"),
    (lambda: S.ce23_perturbation_ensemble(0, 4, C0, [1e-3, 1e-2], np.random.default_rng()), ValueError, "n_draws"),
    (lambda: S.identities_ensemble([2], 4, np.random.RandomState(0)), TypeError, "rng"),
    (lambda: S.concentric_ensemble([0], np.random.default_rng()), ValueError, "dims[0]"),
    (lambda: S.negative_controls_ensemble([2], 4, (0.6, 0.3), (0.05, 0.2), np.random.default_rng()), ValueError,
     "wide_c0_range"),
    (lambda: S.collinear_classes(0, np.random.default_rng()), ValueError, "n_per_class"),
    (lambda: S.sls_certificate_holds(*_two_classes(), "order"), TypeError, "sls"),
    (lambda: S.sls_certificate_holds(_two_classes()[0], [0, 1], None), ValueError, "labels"),
    (lambda: S.digits_sls_table(*_two_classes(), {"a": [0, 1]}, 4, 0, np.random.default_rng()), ValueError,
     "n_train"),
    (lambda: S.digits_sls_table(*_two_classes(), {"a": [0, 7]}, 2, 0, np.random.default_rng()), ValueError,
     "subsets['a']"),
    (lambda: S.digits_sls_table(*_two_classes(), [[0, 1]], 2, 0, np.random.default_rng()), TypeError, "subsets"),
    (lambda: S.digits_sls_table(_two_classes()[0], [0.0, 0, 1, 1], {"a": [0, 1]}, 2, 0, np.random.default_rng()),
     ValueError, "digits"),
])
def test_errors_name_the_argument(call, error, words):
    """Oracle: identity of the boundary checks (the message names the argument and what was received)."""
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_every_public_name_is_documented():
    """Oracle: identity (each public function has a docstring with its formula line; __all__ is complete)."""
    public = [n for n in dir(S) if not n.startswith("_") and callable(getattr(S, n))
              and getattr(getattr(S, n), "__module__", "") == S.__name__]
    assert sorted(public) == sorted(n for n in S.__all__ if callable(getattr(S, n)))
    assert all(getattr(S, n).__doc__ for n in public)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thm24_hidden_perturbations_stay_within_the_roundoff_bound_and_real_changes_do_not(seed):
    """Oracle: the perturbation curves themselves. Re-optimising the last layer after a hidden perturbation leaves
    Thm 2.4's value unchanged up to ``roundoff`` (u κ(H) C(0 output)/C), for every draw and every ε ≤ 1e-3;
    perturbing every parameter (the output bias too, a first-order change) exceeds that bound by far, so the bound
    cannot hide a real change."""
    eps = np.array([1e-6, 1e-4, 1e-3])
    r = S.ce23_perturbation_ensemble(4, 6, [0.02, 0.08], eps, np.random.default_rng(seed))
    rel = r.curves["Thm 2.4"]["hidden"] / r.base["Thm 2.4"][:, None]
    assert np.all(rel <= r.roundoff[:, None])
    assert np.all(r.roundoff < 1e-9) and np.all(r.conditioning >= 1.0)
    moved = r.curves["Thm 2.4"]["all"][:, -1] / r.base["Thm 2.4"]
    assert np.all(moved > 1e3 * r.roundoff)

"""The ensemble experiments of notebook 09: the series' explicit minimisers on random data, and gradient descent.

Each function runs one of the notebook's ensembles over the constructions of
:mod:`reluflow.theory.constructions` (CE23 arXiv:2309.10639, CE24 arXiv:2405.07098, Ewa25 arXiv:2504.18710,
as restated in ``COMPANION_PAPERS.md``) and returns the measured numbers as a small frozen dataclass of
arrays; the notebook prints them, checks them and plots them. Costs are C_𝒩 = Σ_j (1/N_j) Σ_i |x^(out) − y_j|²
(:func:`~reluflow.theory.constructions.class_weighted_cost`), labels y_j = e_j.

**Random streams.** Every function takes one ``numpy.random.Generator`` and draws from it in a fixed, documented
order (each data set, network or sample is seeded by ``rng.integers(2**63)`` drawn in turn), so that a
notebook passing ``streams[k]`` gets the same numbers as the code it replaced.

Map from statement to function:

- CE23 Thm 2.3: C_𝒩 = 0; x^(L) = W^(L)(x̄_j − μ_j f_j) + b^(L); B_δ(x̄_j) ↦ y_j;
  argmax = argmin_j |W^(L+1)(x^(τ,L) − q_j)|                                   → :func:`ce23_global_minimum_ensemble`
- CE24 Prop 4.1 (C_𝒩 = 0, class j ↦ x̄_j + μ_j f_j) and Thm 5.2 (C_𝒩 = 0, class j ↦ p_j)
                                                                                → :func:`ce24_zero_cost_ensemble`
- CE23 Thms 2.4, 2.5: C_𝒩 = ‖Y|Δ_2|^{1/2}(1 + Δ_2)^{-1/2}‖² for every s ≠ 0     → :func:`ce23_local_minima_ensemble`
- |C(ε) − C(0)| and |C(ε) − C(−ε)|/2 along random directions, log-log slopes  → :func:`ce23_perturbation_ensemble`
- CE24 Prop 3.2, (2.14), Lemma 3.3; Ewa25 Lemmas 2.1 (and converse), 2.2       → :func:`identities_ensemble`
- Ewa25 Thm 3.3: the lift-and-truncate classifier of concentric data          → :func:`concentric_ensemble`
- negative controls: c_0 > 1/4, reversed SLS order, three classes on a line   → :func:`negative_controls_ensemble`,
  :func:`collinear_classes`
- CE24 Def 5.1 checked from a certificate (p_j, h_j): (x − p_j)·h_j < 0 on class j, > 0 on later classes
  and earlier p_i, t_j ∈ (0, 1)                                                → :func:`sls_certificate_holds`
- the SLS orders of real data (the 8×8 digits) and Thm 5.2's network on them  → :func:`digits_sls_table`
- the outcomes a gradient-descent run can have (read by :func:`~reluflow.theory.constructions.descent_outcome`)
  → :data:`DESCENT_OUTCOMES`; the runs themselves train, so they live in the training layer
  (:mod:`reluflow.training.series_descent`)
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from reluflow.theory import constructions as C
from reluflow.theory.network import forward, relu
from reluflow.theory.truncation import truncation_map
from reluflow.validation import as_generator, as_interval, as_points, as_real_array, check_positive_int

__all__ = [
    "CE23GlobalMinimumEnsemble", "ce23_global_minimum_ensemble", "CE24ZeroCostEnsemble", "ce24_zero_cost_ensemble",
    "CE23LocalMinimaEnsemble", "ce23_local_minima_ensemble", "PERTURBATION_KINDS", "CE23_STATEMENTS",
    "PerturbationEnsemble", "ce23_perturbation_ensemble", "IdentitiesEnsemble", "identities_ensemble",
    "ConcentricEnsemble", "concentric_ensemble", "NegativeControls", "negative_controls_ensemble",
    "collinear_classes", "sls_certificate_holds", "SLSTableRow", "digits_sls_table", "DESCENT_OUTCOMES",
]

#: The three ways of perturbing a construction (see :func:`~reluflow.theory.constructions.perturbation_curve`).
PERTURBATION_KINDS = ("last", "hidden", "all")
#: CE23's three constructions, in the order of the perturbation curves.
CE23_STATEMENTS = ("Thm 2.3", "Thm 2.4", "Thm 2.5")
#: The outcomes of :func:`~reluflow.theory.constructions.descent_outcome`, in the order they are reported.
DESCENT_OUTCOMES = ("zero cost", "Thm 2.4/2.5 type", "merged classes", "partly truncated", "not converged")


# --------------------------------------------------------------------------------------------------------------
# Argument checks


def _class_numbers(Qs, name="Qs", minimum=2):
    if isinstance(Qs, (str, bytes)) or not hasattr(Qs, "__len__"):
        raise TypeError(f"{name} must be a non-empty list of integers >= {minimum}; got {type(Qs).__name__}")
    if len(Qs) == 0:
        raise ValueError(f"{name} must be a non-empty list of integers >= {minimum}; got an empty list")
    return [check_positive_int(Q, f"{name}[{i}]", minimum=minimum) for i, Q in enumerate(Qs)]


def _relative_error(hidden, predicted):
    return np.abs(hidden - predicted).max() / np.abs(predicted).max()


# --------------------------------------------------------------------------------------------------------------
# Zero-cost constructions


@dataclass(frozen=True)
class CE23GlobalMinimumEnsemble:
    """CE23 Theorem 2.3 measured on random draws (one entry per draw)."""

    cost: np.ndarray  # C_𝒩 of the network on its data (the theorem: 0)
    collapse_error: np.ndarray  # max |x^(L) − (W^(L) q_j + b^(L))| / max |W^(L) q_j + b^(L)|, q_j = x̄_j − μ_j f_j
    ball_error: np.ndarray  # max |output − y_j| on fresh points of B_δ(x̄_j), half on the sphere
    classifier_agreement: np.ndarray  # fraction with argmax output = argmin_j |W^(L+1)(x^(τ,L) − q_j)|, |x − x̄_j| ≤ 3δ
    tries: np.ndarray  # data sets drawn until the μ-interval was non-empty


def ce23_global_minimum_ensemble(Qs, n_per_class: int, c0_range, n_ball: int, rng) -> CE23GlobalMinimumEnsemble:
    """CE23 Thm 2.3 on one draw per entry of ``Qs``: C_𝒩 = 0, x^(L) = W^(L)(x̄_j − μ_j f_j) + b^(L), B_δ ↦ y_j.

    Draw k: data in R^Q (:func:`~reluflow.theory.constructions.ce23_draw`, c_0 in ``c0_range``), μ uniform in
    the admissible interval (−D, −2δ√Q), L = Q + k mod 3 hidden layers; ``n_ball`` fresh points per ball
    B_δ(x̄_j) and per ball B_{3δ}(x̄_j) (for the classifier). Order of draws from ``rng``, per draw: the data
    seed, μ (Q uniforms), the rotations' seed, the two balls' seeds.
    """
    Qs = _class_numbers(Qs)
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    c0_range = as_interval(c0_range, "c0_range")
    n_ball = check_positive_int(n_ball, "n_ball")
    rng = as_generator(rng)
    rows, tries = [], []
    for k, Q in enumerate(Qs):
        X, lab, t = C.ce23_draw(Q, n_per_class, c0_range, seed=rng.integers(2**63))
        lo, D, _ = C.ce23_mu_interval(X, lab)
        mu = -rng.uniform(lo, D, Q)  # any mu in the admissible interval
        con = C.ce23_global_minimum(X, lab, mu=mu, L=Q + k % 3, seed=rng.integers(2**63))
        g = C.class_geometry(X, lab)
        q = g.means - mu[:, None] * g.directions  # the stated collapsed points
        hidden = forward(con.weights[:-1], con.biases[:-1], X)[-1]
        pred = q[lab] @ con.Wc[-1].T + con.bc[-1]
        Bx, Bl = C.ball_samples(g.means, g.delta, n_ball, seed=rng.integers(2**63))
        Tx, _ = C.ball_samples(g.means, g.delta, n_ball, seed=rng.integers(2**63), radius_factor=3.0)
        out_T, Z_T = con.output(Tx), con.truncated(Tx)
        d = np.linalg.norm((Z_T[:, None, :] - q[None]) @ con.W_last.T, axis=2)  # d(x, q_j) = |W^(L+1)(x - q_j)|
        rows.append((C.class_weighted_cost(con.output(X), lab), _relative_error(hidden, pred),
                     np.abs(con.output(Bx) - np.eye(Q)[Bl]).max(), np.mean(out_T.argmax(axis=1) == d.argmin(axis=1))))
        tries.append(t)
    cost, collapse, ball, agree = (np.array(v) for v in zip(*rows))
    return CE23GlobalMinimumEnsemble(cost, collapse, ball, agree, np.array(tries))


@dataclass(frozen=True)
class CE24ZeroCostEnsemble:
    """CE24 Proposition 4.1 and Theorem 5.2 measured on random draws (one entry per draw)."""

    width_reduction_cost: np.ndarray  # Prop 4.1: C_𝒩 (the statement: 0)
    width_reduction_collapse_error: np.ndarray  # relative error of x^(L) against W^(L)(x̄_j + μ_j f_j) + b^(L)
    width_reduction_ball_error: np.ndarray  # max |output − y_j| on fresh points of B_δ(x̄_j)
    sls_cost: np.ndarray  # Thm 5.2: C_𝒩 on SLS data (the statement: 0)
    sls_collapse_error: np.ndarray  # relative error of x^(L) against W^(L) p_j + b^(L)


def ce24_zero_cost_ensemble(Qs, n_per_class: int, c0_range, sls_c0_range, n_ball: int, rng) -> CE24ZeroCostEnsemble:
    """CE24 Prop 4.1 (non-increasing widths, class j ↦ x̄_j + μ_j f_j) and Thm 5.2 (SLS data, class j ↦ p_j):
    C_𝒩 = 0, one draw of each per entry of ``Qs``, input dimension M = Q + k mod 3.

    Prop 4.1: admissible data (c_0 in ``c0_range``), widths M ≥ d_1 ≥ … ≥ d_Q ≥ Q drawn at random,
    ``n_ball`` fresh points per ball. Thm 5.2: c_0 uniform in ``sls_c0_range``, the greedy SLS order of
    :func:`~reluflow.theory.constructions.find_sls_order`. Order of draws from ``rng``, per draw: the data
    seed, the Q widths, the network seed, the ball seed; then c_0 and the seed of the SLS data.
    """
    Qs = _class_numbers(Qs)
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    c0_range = as_interval(c0_range, "c0_range")
    sls_c0_range = as_interval(sls_c0_range, "sls_c0_range")
    n_ball = check_positive_int(n_ball, "n_ball")
    rng = as_generator(rng)
    r = {"cost41": [], "pts41": [], "ball41": [], "cost52": [], "pts52": []}
    for k, Q in enumerate(Qs):
        M = Q + k % 3
        X, lab, _ = C.admissible_draw(Q, M, n_per_class, c0_range, seed=rng.integers(2**63),
                                      accept=lambda X, lab: C.ce24_width_reduction(X, lab))
        widths = sorted(rng.integers(Q, M + 1, Q).tolist(), reverse=True)
        con = C.ce24_width_reduction(X, lab, widths, seed=rng.integers(2**63))
        g = C.class_geometry(X, lab)
        hidden = forward(con.weights[:-1], con.biases[:-1], X)[-1]
        pred = con.points[lab] @ con.Wc[-1].T + con.bc[-1]
        Bx, Bl = C.ball_samples(g.means, g.delta, n_ball, seed=rng.integers(2**63))
        r["cost41"].append(C.class_weighted_cost(con.output(X), lab))
        r["pts41"].append(_relative_error(hidden, pred))
        r["ball41"].append(np.abs(con.output(Bx) - np.eye(Q)[Bl]).max())
        X, lab, _ = C.clustered_classes(Q, M, n_per_class, rng.uniform(*sls_c0_range), seed=rng.integers(2**63))
        net = C.ce24_sls_network(X, lab, C.find_sls_order(X, lab))
        hidden = forward(net.weights[:-1], net.biases[:-1], X)[-1]
        pred = net.points[lab] @ net.Wc[-1].T + net.bc[-1]
        r["cost52"].append(C.class_weighted_cost(net.output(X), lab))
        r["pts52"].append(_relative_error(hidden, pred))
    return CE24ZeroCostEnsemble(*(np.array(r[key]) for key in ("cost41", "pts41", "ball41", "cost52", "pts52")))


# --------------------------------------------------------------------------------------------------------------
# Local minima and perturbations


def _mu_in_I1(lo, n, rng):
    """n values of μ in I_1 = (2δ√Q, ∞) spread over five decades: 2δ√Q (1 + 10^u), u uniform in [−2, 3]."""
    return lo * (1 + 10 ** rng.uniform(-2, 3, n))


@dataclass(frozen=True)
class CE23LocalMinimaEnsemble:
    """CE23 Theorems 2.4 and 2.5 measured on random draws."""

    thm24_values: np.ndarray  # (draws, 3): C_𝒩 of the Thm 2.4 network (s = 1…1) for three μ in I_1
    thm24_closed_form: np.ndarray  # (draws,): ‖Y|Δ_2^(0)|^{1/2}(1 + Δ_2^(0))^{-1/2}‖² on the data
    thm24_error: np.ndarray  # (draws,): max |value / closed form − 1|
    thm24_spread: np.ndarray  # (draws,): (max − min of the three values) / closed form
    thm25_error: np.ndarray  # (cases,): |value / closed form on the predicted τ(X_0) − 1|, every (draw, s ≠ 0, μ)
    smallest_value: np.ndarray  # (draws,): the smallest of the 2^Q − 1 values
    smallest_gap: np.ndarray  # (draws,): smallest relative gap between two sorted values (inf if only one)
    mu_dependence: np.ndarray  # (draws,): |value(μ') / value(μ) − 1| for one s and a second draw of μ


def ce23_local_minima_ensemble(Qs, n_per_class: int, c0_range, rng) -> CE23LocalMinimaEnsemble:
    """CE23 Thms 2.4, 2.5: C_𝒩 = ‖Y|Δ_2|^{1/2}(1 + Δ_2)^{-1/2}‖², Δ_1 = ((τX_0)^red)^{-1}Δ(τX_0), for every s ≠ 0.

    Per draw (data in R^Q by :func:`~reluflow.theory.constructions.ce23_draw`): Theorem 2.4 with three draws of
    μ ∈ I_1, |μ| = 2δ√Q (1 + 10^u), u uniform in [−2, 3]; then every s ≠ 0 in lexicographic order with μ_j in
    I_1 (s_j = 1) or uniform in I_0 = (−D, −2δ√Q) (s_j = 0), one pattern (drawn) getting a second draw of μ.
    Each value is compared with :func:`~reluflow.theory.constructions.ce23_closed_form_cost` on the truncated
    data the theorem predicts: X where s_j = 1, x̄_j − μ_j f_j where s_j = 0. Order of draws from ``rng``,
    per draw: the data seed, 3·Q exponents u, the repeated pattern, then per pattern (and repeat) Q exponents
    u and Q uniforms in I_0.
    """
    Qs = _class_numbers(Qs)
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    c0_range = as_interval(c0_range, "c0_range")
    rng = as_generator(rng)
    r = {"v24": [], "cf24": [], "err24": [], "spread24": [], "err25": [], "min_value": [], "min_gap": [],
         "mu_dependence": []}
    for Q in Qs:
        X, lab, _ = C.ce23_draw(Q, n_per_class, c0_range, seed=rng.integers(2**63))
        lo, D, _ = C.ce23_mu_interval(X, lab)
        g = C.class_geometry(X, lab)
        cf = C.ce23_closed_form_cost(X, lab)
        v24 = [C.class_weighted_cost(C.ce23_local_minimum(X, lab, np.ones(Q, int), mu=_mu_in_I1(lo, Q, rng))
                                     .output(X), lab) for _ in range(3)]
        r["v24"].append(v24)
        r["cf24"].append(cf)
        r["err24"].append(np.abs(np.array(v24) / cf - 1).max())
        r["spread24"].append(np.ptp(v24) / cf)
        values, patterns = [], [np.array(s) for s in itertools.product([0, 1], repeat=Q) if any(s)]
        again = rng.integers(len(patterns) - 1)  # one mixed s per draw gets a second draw of mu
        for i, s in enumerate(patterns):
            pair = []
            for _ in range(2 if i == again else 1):
                mu = np.where(s == 1, _mu_in_I1(lo, Q, rng), -rng.uniform(lo, D, Q))
                v = C.class_weighted_cost(C.ce23_local_minimum(X, lab, s, mu=mu).output(X), lab)
                Z = np.where(s[lab][:, None] == 1, X, (g.means - mu[:, None] * g.directions)[lab])
                r["err25"].append(abs(v / C.ce23_closed_form_cost(Z, lab) - 1))
                pair.append(v)
            values.append(pair[0])
            if len(pair) == 2:
                r["mu_dependence"].append(abs(pair[1] / pair[0] - 1))
        values = np.sort(values)
        r["min_value"].append(values[0])
        r["min_gap"].append((np.diff(values) / values[1:]).min() if len(values) > 1 else np.inf)
    return CE23LocalMinimaEnsemble(*(np.array(v) for v in r.values()))


@dataclass(frozen=True)
class PerturbationEnsemble:
    """|C(ε) − C(0)| of CE23's constructions along random unit parameter directions, per statement and kind."""

    epsilons: np.ndarray  # (n_eps,) the perturbation sizes ε
    curves: dict  # statement → kind → (draws, n_eps): |C(ε) − C(0)|
    odd: dict  # statement → kind → (draws, n_eps): |C(ε) − C(−ε)|/2, the first-order part
    base: dict  # statement → (draws,): C(0)
    reference_index: int  # index of the ε nearest 1e-3
    first_order_share: dict  # statement → kind → max over draws of odd / change at ε[reference_index]
    slope: dict  # statement → kind → log-log slope of the median curve over ε ≥ 1e-4
    conditioning: np.ndarray  # (draws,) κ(H) of Thm 2.4's last-layer least squares at ε = 0 (H = W^(L) x^(τ,L))
    roundoff: np.ndarray  # (draws,) u κ(H) C(0 output)/C(0): the relative round-off of Thm 2.4's re-optimised value


def ce23_perturbation_ensemble(n_draws: int, n_per_class: int, c0_range, epsilons, rng) -> PerturbationEnsemble:
    """|C(ε) − C(0)| and |C(ε) − C(−ε)|/2 for CE23 Thms 2.3, 2.4 and 2.5 (a random mix s), kinds last/hidden/all.

    Draw k has Q = 2 + k mod 4 (:func:`~reluflow.theory.constructions.perturbation_curve` on each
    construction, the same direction for the curve and its odd part). The slope is the least-squares slope of
    log(median curve + 1e-300) against log ε over ε ≥ 1e-4 (round-off below). Order of draws from ``rng``,
    per draw: the data seed, the size and the permutation of s, then one direction seed per (statement, kind).
    """
    n_draws = check_positive_int(n_draws, "n_draws")
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    c0_range = as_interval(c0_range, "c0_range")
    eps = as_real_array(epsilons, "epsilons", ndim=1)
    if eps.size == 0 or np.any(eps <= 0):
        raise ValueError(f"epsilons must be a non-empty list of positive sizes; got {list(epsilons)!r}")
    if np.count_nonzero(eps >= 1e-4) < 2:
        raise ValueError(f"epsilons must hold at least two sizes >= 1e-4 (for the slopes); got {eps.tolist()}")
    rng = as_generator(rng)
    kinds = PERTURBATION_KINDS
    curves = {name: {kind: [] for kind in kinds} for name in CE23_STATEMENTS}
    odd = {name: {kind: [] for kind in kinds} for name in curves}  # |C(eps) - C(-eps)|/2: the first-order part
    base = {name: [] for name in curves}  # C(0) of each draw
    kappa, scale = [], []
    for k in range(n_draws):
        Q = 2 + k % 4
        X, lab, _ = C.ce23_draw(Q, n_per_class, c0_range, seed=rng.integers(2**63))
        s = rng.permutation(np.arange(Q) < rng.integers(1, Q))  # a mix: some collapsed, some intact
        cons = {"Thm 2.3": C.ce23_global_minimum(X, lab), "Thm 2.4": C.ce23_local_minimum(X, lab, np.ones(Q, int)),
                "Thm 2.5": C.ce23_local_minimum(X, lab, s.astype(int))}
        kappa.append(_last_layer_conditioning(cons["Thm 2.4"], X))
        zero_output = C.class_weighted_cost(np.zeros_like(cons["Thm 2.4"].output(X)), lab)
        scale.append(zero_output / C.class_weighted_cost(cons["Thm 2.4"].output(X), lab))
        for name, con in cons.items():
            base[name].append(C.class_weighted_cost(con.output(X), lab))
            for kind in kinds:
                sd = rng.integers(2**63)
                curves[name][kind].append(C.perturbation_curve(con, X, lab, None, eps, kind=kind, seed=sd))
                odd[name][kind].append(C.perturbation_curve(con, X, lab, None, eps, kind=kind, seed=sd, odd=True))
    curves = {n: {k: np.array(v) for k, v in c.items()} for n, c in curves.items()}
    odd = {n: {k: np.array(v) for k, v in c.items()} for n, c in odd.items()}
    base = {n: np.array(v) for n, v in base.items()}
    i3 = int(np.argmin(np.abs(np.log(eps / 1e-3))))  # the size 1e-3 (or the nearest given)
    ratio = {n: {k: np.max(odd[n][k][:, i3] / np.maximum(curves[n][k][:, i3], 1e-300)) for k in kinds} for n in odd}
    fit = eps >= 1e-4  # slopes from the largest sizes (round-off below)
    slope = {n: {k: np.polyfit(np.log(eps[fit]), np.log(np.median(v[:, fit], axis=0) + 1e-300), 1)[0]
                 for k, v in c.items()} for n, c in curves.items()}
    kappa = np.array(kappa)
    return PerturbationEnsemble(eps, curves, odd, base, i3, ratio, slope, kappa,
                                np.finfo(float).eps * kappa * np.array(scale))


def _last_layer_conditioning(con, X) -> float:
    """κ(H), H the features of the last layer at ε = 0 (:func:`constructions.last_layer_features`)."""
    return float(np.linalg.cond(C.last_layer_features(con.weights, con.biases, X)))


# --------------------------------------------------------------------------------------------------------------
# Identities for arbitrary parameters, and Ewa25's classifier


@dataclass(frozen=True)
class IdentitiesEnsemble:
    """CE24 Prop 3.2, (2.14), Lemma 3.3 and Ewa25 Lemmas 2.1, 2.2 on random networks (worst error per network)."""

    representation_error: np.ndarray  # max_ℓ |W^(ℓ) x^(τ,ℓ) + b^(ℓ) − x^(ℓ)| / max(1, |x^(ℓ)|)   (Prop 3.2)
    decomposition_error: np.ndarray  # |spread + mismatch − C_𝒩| / C_𝒩                            (2.14)
    projector_error: np.ndarray  # |Π_ℓ (W^(ℓ))⁺W^(ℓ) − (W^(L))⁺W^(L)|                                 (Lemma 3.3)
    cone_formula_error: np.ndarray  # |W⁺Wp + Σ_{a_i>0} a_i v_i − W⁺(σ(Wx + b) − b)|                   (Lemma 2.1)
    cone_converse_error: np.ndarray  # |W⁺ − V|, |W⁺b + VV⁺p| for W = V⁺, b = −Wp               (Lemma 2.1, converse)
    lift_error: np.ndarray  # |W̃ τ_{W̃,b}(ιx) + b − σ(Wx + b)| for a widening W                       (Lemma 2.2)


def identities_ensemble(Qs, n_per_class: int, rng) -> IdentitiesEnsemble:
    """CE24 Prop 3.2 (x^(ℓ) = W^(ℓ)x^(τ,ℓ) + b^(ℓ)), (2.14), Lemma 3.3; Ewa25 Lemma 2.1 and its converse, Lemma 2.2.

    One random network per entry Q of ``Qs``: widths d_0 ≥ d_1 ≥ d_2 ≥ d_3 ≥ Q (d_1..d_3 in Q..Q+3, d_0 one
    more at most), surjective layers with singular values in [0.5, 2]
    (:func:`~reluflow.theory.constructions.random_surjection`), Gaussian biases, Q classes in R^{d_0} with
    c_0 uniform in [0.1, 1]; Lemma 2.1 on 40 Gaussian points for the second layer, Lemma 2.2 for a widening
    layer R^{d_0} → R^{d_0 + 2}. Order of draws from ``rng``, per network: the widths, the layer seeds, the
    biases, c_0 and the data seed, the points, V and p, the widening layer and its completion seed.
    """
    Qs = _class_numbers(Qs)
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    rng = as_generator(rng)
    r = {k: [] for k in ("rep", "dec", "proj", "l21", "l21c", "l22")}
    for Q in Qs:
        widths = sorted(rng.integers(Q, Q + 4, 3).tolist(), reverse=True)
        d = [widths[0] + rng.integers(0, 2)] + widths + [Q]
        Ws = [C.random_surjection(d[i + 1], d[i], seed=rng.integers(2**63)) for i in range(len(d) - 1)]
        bs = [rng.standard_normal(d[i + 1]) for i in range(len(d) - 1)]
        X, lab, _ = C.clustered_classes(Q, d[0], n_per_class, rng.uniform(0.1, 1.0), seed=rng.integers(2**63))
        Wc, bc = C.rectangular_cumulative_parameters(Ws, bs)
        hid = forward(Ws[:-1], bs[:-1], X)
        taus = C.rectangular_truncated_data(Wc[:-1], bc[:-1], X)
        r["rep"].append(max(np.abs(t @ W.T + b - h).max() / max(1.0, np.abs(h).max())
                            for t, W, b, h in zip(taus, Wc, bc, hid)))
        spread, mismatch = C.cost_decomposition(Wc[:-1], bc[:-1], Wc[-1], bc[-1], X, lab)
        plain = C.class_weighted_cost(C.network_output(Ws, bs, X), lab)
        r["dec"].append(abs(spread + mismatch - plain) / plain)
        P, P_last = C.projector_chain(Wc)
        r["proj"].append(np.abs(P - P_last).max())
        W, b = Ws[1], bs[1]
        Xw = rng.standard_normal((40, W.shape[1]))
        r["l21"].append(np.abs(C.polyhedral_cone_form(W, b, Xw) - C.pinv_truncation_map(W, b, Xw)).max())
        V, p = rng.standard_normal((W.shape[1], W.shape[0])), rng.standard_normal(W.shape[1])
        Wr, br = C.realise_cone(p, V)
        r["l21c"].append(max(np.abs(np.linalg.pinv(Wr) - V).max(),
                             np.abs(np.linalg.pinv(Wr) @ br + V @ np.linalg.pinv(V) @ p).max()))
        Wu, bu = rng.standard_normal((d[0] + 2, d[0])), rng.standard_normal(d[0] + 2)  # a widening layer
        Wt = C.lift_completion(Wu, seed=rng.integers(2**63))
        lifted = truncation_map(Wt, bu, np.column_stack([X, np.zeros((len(X), 2))])) @ Wt.T + bu
        r["l22"].append(np.abs(lifted - relu(X @ Wu.T + bu)).max())
    return IdentitiesEnsemble(*(np.array(v) for v in r.values()))


@dataclass(frozen=True)
class ConcentricEnsemble:
    """Ewa25 Thm 3.3's kind of classifier on concentric draws (one entry per draw)."""

    accuracy: np.ndarray  # training accuracy of argmax of the output
    margin: np.ndarray  # min over points of |o_1 − o_0|


def concentric_ensemble(dims, rng, *, n_per_class: int = 200) -> ConcentricEnsemble:
    """Ewa25 Thm 3.3: R^{d0} → R^{d0+1} → R^2 → R^2 classifies a ball B_r(0) against a shell r' ≤ |x| ≤ r' + 1.

    One draw per d0 in ``dims``: r uniform in [0.2, 1], r' = d0·r·U(1.05, 1.5) (so r < r'/d0), ``n_per_class``
    points per class. Order of draws from ``rng``, per draw: r, the factor of r', the data seed.
    """
    dims = _class_numbers(dims, "dims", minimum=1)
    n_per_class = check_positive_int(n_per_class, "n_per_class")
    rng = as_generator(rng)
    acc, margin = [], []
    for d0 in dims:
        r_in = rng.uniform(0.2, 1.0)
        r_out = d0 * r_in * rng.uniform(1.05, 1.5)
        X, lab = C.concentric_data(d0, n_per_class, r_in, (r_out, r_out + 1.0), seed=rng.integers(2**63))
        net = C.concentric_classifier(d0, r_in, r_out)
        out = C.network_output(net.weights, net.biases, X)
        acc.append(np.mean(out.argmax(axis=1) == lab))
        margin.append(np.min(np.abs(out[:, 1] - out[:, 0])))
    return ConcentricEnsemble(np.array(acc), np.array(margin))


# --------------------------------------------------------------------------------------------------------------
# Negative controls


def collinear_classes(n_per_class: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three classes on the line {(t, 0, 1)} ⊂ R^3 around t = 0, 2, 10 (t ± 0.3 uniform): no order is SLS.

    Every hyperplane meets the line once and every p_j lies on it, so the middle class can never be
    separated from both others (derived by hand). Draws 3·n_per_class·3 uniforms from ``rng``.
    Returns (X, labels).
    """
    n_per_class = check_positive_int(n_per_class, "n_per_class")
    rng = as_generator(rng)
    line = np.repeat([[0.0, 0, 1], [2.0, 0, 1], [10.0, 0, 1]], n_per_class, axis=0)
    line = line + 0.3 * rng.uniform(-1, 1, line.shape) * [1, 0, 0]  # every point on the line {(t, 0, 1)}
    return line, np.repeat([0, 1, 2], n_per_class)


@dataclass(frozen=True)
class NegativeControls:
    """The constructions when their assumptions fail (one entry per draw), and the SLS checker on a line."""

    refused: np.ndarray  # (draws,) bool: Thm 2.3's builder refused c_0 > 1/4 naming the clustering assumption
    forced_cost: np.ndarray  # (draws,) C_𝒩 of Thm 2.3 built anyway (check=False, μ_ℓ = −2.2δ√Q)
    reversed_cost: np.ndarray  # (draws,) C_𝒩 of Thm 5.2's layers in the reverse of the SLS order
    sls_cost: np.ndarray  # (draws,) C_𝒩 of Thm 5.2 in the SLS order (the control's control: 0)
    line_orders: list  # the orders the checker accepts for three classes on a line (should be [])


def negative_controls_ensemble(Qs, n_per_class: int, wide_c0_range, sls_c0_range, rng) -> NegativeControls:
    """Negative controls: Thm 2.3 with c_0 in ``wide_c0_range`` (refused; built anyway, C_𝒩 > 0), Thm 5.2 in the
    reversed SLS order (C_𝒩 > 0), and :func:`collinear_classes` (no SLS order).

    Per entry Q of ``Qs``: data in R^Q with c_0 uniform in ``wide_c0_range``; SLS data in R^{Q + k mod 3} with
    c_0 uniform in ``sls_c0_range``. Order of draws from ``rng``: per draw c_0 and the data seed of each
    data set; then the points of the line.
    """
    Qs = _class_numbers(Qs)
    n_per_class = check_positive_int(n_per_class, "n_per_class", minimum=2)
    wide_c0_range = as_interval(wide_c0_range, "wide_c0_range")
    sls_c0_range = as_interval(sls_c0_range, "sls_c0_range")
    rng = as_generator(rng)
    refused, forced, wrong, good = [], [], [], []
    for k, Q in enumerate(Qs):
        X, lab, _ = C.clustered_classes(Q, Q, n_per_class, rng.uniform(*wide_c0_range), seed=rng.integers(2**63))
        try:
            C.ce23_global_minimum(X, lab)
            refused.append(False)
        except ValueError as err:
            refused.append("clustering" in str(err))
        g = C.class_geometry(X, lab)
        con = C.ce23_global_minimum(X, lab, mu=np.full(Q, -2.2 * g.delta * np.sqrt(Q)), check=False)
        forced.append(C.class_weighted_cost(con.output(X), lab))
        X, lab, _ = C.clustered_classes(Q, Q + k % 3, n_per_class, rng.uniform(*sls_c0_range), seed=rng.integers(2**63))
        res = C.find_sls_order(X, lab)
        good.append(C.class_weighted_cost(C.ce24_sls_network(X, lab, res).output(X), lab))
        bad = dataclasses.replace(res, order=res.order[::-1])
        wrong.append(C.class_weighted_cost(C.ce24_sls_network(X, lab, bad, check=False).output(X), lab))
    line, line_labels = collinear_classes(n_per_class, rng)
    line_orders = C.find_sls_order(line, line_labels, orders="all")
    return NegativeControls(np.array(refused), np.array(forced), np.array(wrong), np.array(good), line_orders)


# --------------------------------------------------------------------------------------------------------------
# Real data: SLS orders of the digits


def sls_certificate_holds(X, labels, sls: C.SLSResult) -> bool:
    """CE24 Def 5.1 checked from the certificate alone (no linear programme): for class j at position k of the
    order, (x − p_j)·h_j < 0 on class j, > 0 on the later classes and on the earlier p_i, and t_j ∈ (0, 1)."""
    X = as_points(X, "X")
    lab = np.asarray(labels)
    if lab.shape != (X.shape[0],):
        raise ValueError(f"labels must have shape ({X.shape[0]},) like the rows of X; got shape {lab.shape}")
    if not isinstance(sls, C.SLSResult):
        raise TypeError(f"sls must be an SLSResult from sls_order; got {type(sls).__name__}")
    if not sls.separable:
        return False
    ok_sides = []
    for pos, j in enumerate(sls.order):
        later = np.isin(lab, sls.order[pos + 1:])
        p, h = sls.points[j], sls.normals[j]
        ok_sides.append(bool(np.all((X[lab == j] - p) @ h < 0) and np.all((X[later] - p) @ h > 0)
                             and np.all((sls.points[list(sls.order[:pos])] - p) @ h > 0)
                             and 0 < sls.segment_t[j] < 1))
    return all(ok_sides)


@dataclass(frozen=True)
class SLSTableRow:
    """One subset of the digits: is its stated order SLS, how many orders tried are, and Thm 5.2's network."""

    order: list  # the digits, in the stated order
    separable: bool  # the stated order is SLS (on the training images)
    n_orders: int  # orders tried: all of them for ≤ 4 digits, else the random ones
    n_sls: int  # of which SLS
    proofs: int  # failures at the first class (a proof that the order is not SLS)
    n_held_out: int  # images in the test split (all digits)
    cost: float = np.nan  # training C_𝒩 of Thm 5.2's network in the stated order (NaN if not SLS)
    train_accuracy: float = np.nan
    test_accuracy: float = np.nan  # on the held-out images of the subset's digits
    room: float = np.nan  # π − max_j θ_j, the angular room of the cones
    condition: float = np.nan  # largest condition number of a cumulative weight W^(ℓ)
    certificate: bool = False  # :func:`sls_certificate_holds` for the stated order


def digits_sls_table(X, digits, subsets: dict, n_train: int, n_random_orders: int, rng) -> dict:
    """CE24 Def 5.1 and Thm 5.2 on real data: for each named subset of digits, is its stated order SLS on a
    training split, how many other orders are, and the training cost and test accuracy of Thm 5.2's network.

    A random permutation of the images puts the first ``n_train`` in the training set. A subset of at most 4
    digits tries all its orders; a larger one ``n_random_orders`` random orders. Order of draws from ``rng``:
    the split, then the random orders of each larger subset in turn. Returns {name: :class:`SLSTableRow`}.
    """
    X = as_points(X, "X")
    yd = np.asarray(digits)
    if yd.shape != (X.shape[0],) or not np.issubdtype(yd.dtype, np.integer):
        raise ValueError(f"digits must be integers of shape ({X.shape[0]},) like the rows of X; got "
                         f"{yd.dtype} of shape {yd.shape}")
    n_train = check_positive_int(n_train, "n_train")
    if n_train >= len(yd):
        raise ValueError(f"n_train must be < the {len(yd)} images (the rest is the test set); got {n_train}")
    n_random_orders = check_positive_int(n_random_orders, "n_random_orders", minimum=0)
    if not isinstance(subsets, dict) or not subsets:
        raise TypeError(f"subsets must be a non-empty dict {{name: list of digits}}; got {subsets!r}")
    for name, sub in subsets.items():
        if len(sub) < 2 or len(set(sub)) != len(sub) or not set(sub) <= set(yd.tolist()):
            raise ValueError(f"subsets[{name!r}] must list >= 2 distinct digits present in the data; got {sub!r}")
    rng = as_generator(rng)
    perm = rng.permutation(len(yd))
    tr, te = perm[:n_train], perm[n_train:]
    table = {}
    for name, sub in subsets.items():
        sub = list(sub)
        m_tr, m_te = np.isin(yd[tr], sub), np.isin(yd[te], sub)
        Xs, lab = X[tr][m_tr], np.searchsorted(np.sort(sub), yd[tr][m_tr])
        Xt, labt = X[te][m_te], np.searchsorted(np.sort(sub), yd[te][m_te])
        stated = tuple(int(np.searchsorted(np.sort(sub), v)) for v in sub)  # the order as given
        res = C.sls_order(Xs, lab, stated)
        orders = (list(itertools.permutations(range(len(sub)))) if len(sub) <= 4
                  else [tuple(rng.permutation(len(sub))) for _ in range(n_random_orders)])
        tried = [C.sls_order(Xs, lab, o) for o in orders]
        first_fail = [r.failed_at for r in tried if not r.separable]
        row = dict(order=sub, separable=res.separable, n_orders=len(orders), n_sls=sum(r.separable for r in tried),
                   proofs=sum(f == 0 for f in first_fail), n_held_out=len(te))
        if res.separable:
            net = C.ce24_sls_network(Xs, lab, res)
            row.update(cost=C.class_weighted_cost(net.output(Xs), lab),
                       test_accuracy=np.mean(net.output(Xt).argmax(1) == labt),
                       train_accuracy=np.mean(net.output(Xs).argmax(1) == lab),
                       room=np.pi - net.assumptions["thetas"].max(),
                       condition=max(np.linalg.cond(W) for W in net.Wc),
                       certificate=sls_certificate_holds(Xs, lab, res))
        table[name] = SLSTableRow(**row)
    return table

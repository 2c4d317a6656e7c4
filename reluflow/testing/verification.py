"""Numerical verification of the truncation calculus (THEORY.md §1–2).

Each function runs one family of checks over many seeded random instances and returns an
xarray Dataset of worst-case errors, which notebook 01 reports and the tests assert on.
Independent oracles used here:

- the plain ReLU forward pass (:func:`reluflow.forward`) for the representation identity;
- an exact active-set solution of the projection quadratic programme
  min ½|x − y|² subject to Wx + b ≥ 0 (:func:`polyhedral_projection`), which knows nothing of
  frames, scales or thresholds, and scipy's SLSQP as a second, generic solver.

Errors are *relative*: max |difference| / max(1, max |reference|).
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from reluflow.pipeline.parameters import check_int, check_int_list, check_seed
from reluflow.theory.adapted import adaptedness, cone_projection, random_adapted_network
from reluflow.theory.network import cumulative_parameters, forward, random_network
from reluflow.theory.truncation import apex, truncated_data, truncation_map
from reluflow.validation import MAX_CONDITION, as_points, as_square_invertible, as_vector

__all__ = [
    "max_relative_error",
    "representation_error",
    "polyhedral_projection",
    "slsqp_projection",
    "truncation_identities",
    "projection_checks",
]


def max_relative_error(a, ref) -> float:
    """max |a − ref| / max(1, max |ref|)."""
    a, ref = np.asarray(a, float), np.asarray(ref, float)
    return float(np.abs(a - ref).max() / max(1.0, float(np.abs(ref).max())))


def representation_error(weights, biases, X, *, max_condition: float = MAX_CONDITION) -> float:
    """max over ℓ of the relative error of x^(ℓ) = W^(ℓ) x^(τ,ℓ) + b^(ℓ) (forward pass as reference)."""
    Wc, bc = cumulative_parameters(weights, biases, max_condition=max_condition)
    xs = forward(weights, biases, X)
    xt = truncated_data(Wc, bc, X, max_condition=max_condition)
    return max(max_relative_error(xt[l + 1] @ Wc[l].T + bc[l], xs[l]) for l in range(len(Wc)))


def polyhedral_projection(W, b, Y, *, max_dim: int = 10) -> np.ndarray:
    """Euclidean projection of each row of Y onto {x : Wx + b ≥ 0}, by exact active-set search.

    For every active set A, the KKT point x = y + W_Aᵀ μ with μ = −(W_A W_Aᵀ)^-1 (W_A y + b_A) is
    the projection when μ ≥ 0 and Wx + b ≥ 0; the QP is strictly convex, so that point is unique.
    Enumerates all 2^M active sets (vectorised over points), hence ``max_dim``.
    """
    W = as_square_invertible(W, "W")
    M = W.shape[0]
    if M > max_dim:
        raise ValueError(f"W must have M <= max_dim={max_dim} for active-set enumeration; got M={M}")
    b = as_vector(b, "b", M)
    Y = as_points(Y, "Y", dim=M)
    best = np.full(Y.shape, np.nan)
    found = np.zeros(len(Y), dtype=bool)
    scale = 1e-9 * (1.0 + np.abs(Y @ W.T).max() + np.abs(b).max())
    for r in range(M + 1):
        for A in itertools.combinations(range(M), r):
            A = list(A)
            if A:
                WA = W[A]
                mu = -np.linalg.solve(WA @ WA.T, (Y @ WA.T + b[A]).T).T  # (N, |A|)
                X = Y + mu @ WA
                ok = np.all(mu >= -scale, axis=1)
            else:
                X = Y.copy()
                ok = np.ones(len(Y), dtype=bool)
            ok &= np.all(X @ W.T + b >= -scale, axis=1) & ~found
            best[ok] = X[ok]
            found |= ok
    if not found.all():  # cannot happen for invertible W; guard against silent garbage
        raise RuntimeError(f"active-set search found no KKT point for {int((~found).sum())} points")
    return best


def slsqp_projection(W, b, Y) -> np.ndarray:
    """Projection onto {x : Wx + b ≥ 0} by scipy's generic SLSQP solver (a loose second oracle)."""
    from scipy.optimize import minimize

    W = as_square_invertible(W, "W")
    b = as_vector(b, "b", W.shape[0])
    Y = as_points(Y, "Y", dim=W.shape[0])
    out = np.empty_like(Y)
    for i, y in enumerate(Y):  # an oracle, not a hot path
        res = minimize(lambda x, y=y: 0.5 * np.sum((x - y) ** 2), y, jac=lambda x, y=y: x - y, method="SLSQP",
                       constraints=[{"type": "ineq", "fun": lambda x: W @ x + b, "jac": lambda x: W}],
                       options={"ftol": 1e-15, "maxiter": 500})
        out[i] = res.x
    return out


def truncation_identities(widths, depths, *, n_networks: int, n_points: int, seed: int) -> xr.Dataset:
    """Worst relative errors of the §1 identities over random deep networks, per (width, depth).

    Variables: ``representation`` (x^(ℓ) = W^(ℓ)x^(τ,ℓ) + b^(ℓ)), ``idempotence`` (τ∘τ = τ),
    ``scale_invariance`` (τ_{ΛW,Λb} = τ_{W,b}), ``identity_on_cone`` (τ = id on S_+),
    ``apex_on_complement`` (τ = p on S_−), and ``condition_number`` (largest cond W^(ℓ) seen).
    """
    widths = check_int_list(widths, "widths", minimum=1)
    depths = check_int_list(depths, "depths", minimum=1)
    n_networks = check_int(n_networks, "n_networks", minimum=1)
    n_points = check_int(n_points, "n_points", minimum=1)
    seeds = iter(np.random.SeedSequence(check_seed(seed)).spawn(len(widths) * len(depths)))
    names = ["representation", "idempotence", "scale_invariance", "identity_on_cone", "apex_on_complement",
             "condition_number"]
    out = {n: np.zeros((len(widths), len(depths))) for n in names}
    for i, M in enumerate(widths):
        for j, L in enumerate(depths):
            rng = np.random.default_rng(next(seeds))
            for _ in range(n_networks):
                weights, biases = random_network(M, L, seed=rng, bias_scale=1.0)
                X = 2.0 * rng.standard_normal((n_points, M))
                Wc, bc = cumulative_parameters(weights, biases)
                xt = truncated_data(Wc, bc, X)
                errs = {"representation": representation_error(weights, biases, X),
                        "condition_number": max(np.linalg.cond(W) for W in Wc)}
                e = dict.fromkeys(names[1:5], 0.0)
                for ell in range(L):
                    W, b, x, tx = Wc[ell], bc[ell], xt[ell], xt[ell + 1]
                    lam = np.exp(rng.uniform(-2.0, 2.0, M))
                    p = apex(W, b)
                    v = np.abs(rng.standard_normal((n_points, M)))
                    on_cone = p + np.linalg.solve(W, v.T).T          # Wx + b = v ≥ 0
                    off_cone = p - np.linalg.solve(W, v.T).T         # Wx + b = −v ≤ 0
                    e["idempotence"] = max(e["idempotence"], max_relative_error(truncation_map(W, b, tx), tx))
                    e["scale_invariance"] = max(e["scale_invariance"], max_relative_error(
                        truncation_map(lam[:, None] * W, lam * b, x), tx))
                    e["identity_on_cone"] = max(e["identity_on_cone"], max_relative_error(
                        truncation_map(W, b, on_cone), on_cone))
                    e["apex_on_complement"] = max(e["apex_on_complement"], max_relative_error(
                        truncation_map(W, b, off_cone), np.broadcast_to(p, off_cone.shape)))
                errs.update(e)
                for n in names:
                    out[n][i, j] = max(out[n][i, j], errs[n])
    long = {
        "representation": "max relative error of x^(l) = W^(l) x^(tau,l) + b^(l)",
        "idempotence": "max relative error of tau(tau(x)) = tau(x)",
        "scale_invariance": "max relative error of tau_(Lambda W, Lambda b) = tau_(W,b)",
        "identity_on_cone": "max relative error of tau(x) = x on S+",
        "apex_on_complement": "max relative error of tau(x) = apex on S-",
        "condition_number": "largest condition number of a cumulative weight",
    }
    return xr.Dataset(
        {n: (("width", "depth"), out[n], {"long_name": long[n], "units": "1"}) for n in names},
        coords={"width": ("width", widths, {"long_name": "width M", "units": "1"}),
                "depth": ("depth", depths, {"long_name": "depth L", "units": "1"})},
    )


def projection_checks(widths, *, n_networks: int, n_points: int, seed: int, n_slsqp: int = 5) -> xr.Dataset:
    """τ against the Euclidean projection onto its cone, per width M.

    For adapted weights: ``cone_formula`` (τ vs Rᵀmax(Rx, θ)), ``active_set_qp`` (τ vs the exact
    QP oracle) and ``slsqp`` (τ vs SLSQP on ``n_slsqp`` points per network). As a control, for
    random *non-adapted* weights, ``nonadapted_gap`` is the largest distance between τ and the
    projection (relative), with ``nonadapted_adaptedness`` the median adaptedness of those weights.
    """
    widths = check_int_list(widths, "widths", minimum=1, maximum=10)
    n_networks = check_int(n_networks, "n_networks", minimum=1)
    n_points = check_int(n_points, "n_points", minimum=1)
    seeds = np.random.SeedSequence(check_seed(seed)).spawn(len(widths))
    names = ["cone_formula", "active_set_qp", "slsqp", "nonadapted_gap", "nonadapted_adaptedness"]
    out = {n: np.zeros(len(widths)) for n in names}
    for i, M in enumerate(widths):
        rng = np.random.default_rng(seeds[i])
        adapt = []
        for _ in range(n_networks):
            net = random_adapted_network(M, 1, seed=rng)
            (W,), (b,) = net.cumulative_parameters()
            Y = net.apexes[0] + 1.5 * rng.standard_normal((n_points, M))
            tau = truncation_map(W, b, Y)
            out["cone_formula"][i] = max(out["cone_formula"][i],
                                         max_relative_error(tau, cone_projection(net.frames[0], net.thresholds[0], Y)))
            out["active_set_qp"][i] = max(out["active_set_qp"][i],
                                          max_relative_error(tau, polyhedral_projection(W, b, Y)))
            k = min(n_slsqp, n_points)
            out["slsqp"][i] = max(out["slsqp"][i], max_relative_error(tau[:k], slsqp_projection(W, b, Y[:k])))
            Wn, bn = (w[0] for w in random_network(M, 1, seed=rng, bias_scale=1.0))
            if M > 1:
                Yn = apex(Wn, bn) + 1.5 * rng.standard_normal((n_points, M))
                gap = max_relative_error(truncation_map(Wn, bn, Yn), polyhedral_projection(Wn, bn, Yn))
                out["nonadapted_gap"][i] = max(out["nonadapted_gap"][i], gap)
            adapt.append(adaptedness(Wn))
        out["nonadapted_adaptedness"][i] = float(np.median(adapt))
    long = {
        "cone_formula": "max relative error of tau vs R^T max(R x, theta) (adapted)",
        "active_set_qp": "max relative error of tau vs exact QP projection (adapted)",
        "slsqp": "max relative error of tau vs SLSQP projection (adapted)",
        "nonadapted_gap": "max relative distance of tau from the projection (non-adapted control)",
        "nonadapted_adaptedness": "median adaptedness of the non-adapted control weights",
    }
    return xr.Dataset(
        {n: (("width",), out[n], {"long_name": long[n], "units": "1"}) for n in names},
        coords={"width": ("width", widths, {"long_name": "width M", "units": "1"})},
    )

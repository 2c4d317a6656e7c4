"""Independent oracles for the formulas of :mod:`reluflow.theory.costs` and :mod:`reluflow.theory.flows` (THEORY.md §6).

The oracles never call the formula code. They differentiate a *plain forward pass*. From layer
parameters (W_ℓ, b_ℓ) it computes the hidden activations x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ) with ReLU,
accumulates W^(L), b^(L), and returns to input space by the representation identity
x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)). Cumulative parameters are first turned into layer
parameters, W_ℓ = W^(ℓ)(W^(ℓ-1))^-1 and b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1), and adapted ones into
cumulative ones, W^(ℓ) = diag(λ_ℓ) R_ℓ and b^(ℓ) = −λ_ℓ θ_ℓ. Two methods:

- ``method="autodiff"``: reverse-mode automatic differentiation with autograd, in float64, of that
  same vectorised forward pass. autograd is imported only when needed. It ships with the ``test``
  extra.
- ``method="finite_difference"``: central differences (f(p + h e_j) − f(p − h e_j)) / 2h of the same
  pass in plain numpy, step h = ``step``.

Map from quantity to oracle (each returns what the named library function returns):

- C_in from the plain forward pass                 → :func:`plain_input_cost`
- x^(τ,ℓ) from the plain forward pass (np.maximum)  → :func:`plain_input_space_images`, checked against the
  composed truncation maps and cone projections by :func:`forward_pass_truncation_check`
- ∂C/∂θ (4.1), θ̇ (4.2), (λ̇, ḃ, θ̇) (4.3)            → :func:`oracle_threshold_gradient`, :func:`oracle_bias_flow`,
  :func:`oracle_scale_bias_flow`
- Ṙ (4.4), by differentiating A ↦ C(expm(A) R_ℓ) over skew A at A = 0 → :func:`oracle_frame_flow`
- ∇_c C, ∇_p C, K, ḃ^(ℓ), ċ (4.5)                  → :func:`oracle_cumulative_gradient`, :func:`oracle_layer_gradient`,
  :func:`oracle_induced_bias_kernel`, :func:`oracle_induced_bias_flow`, :func:`oracle_induced_cumulative_flow`
- θ* of a one-layer flow, by root finding on that gradient  → :func:`one_layer_equilibrium`
- tie margin, relative error                       → :func:`tie_margin`, :func:`frobenius_relative_error`
- one random instance / the whole battery          → :func:`draw_instance`, :func:`check_instance`,
  :func:`verification_battery`
- sympy: one-layer one-cluster flow, its closed form and event time, conservation law of (4.3)
  → :func:`symbolic_checks`

Frame-flow oracle. Let B_q be an orthonormal basis of the skew matrices, B = (E_pq − E_qp)/√2 for
p < q. In the chart a ↦ R(a) = expm(Σ_q a_q B_q) R_0, the differential at a = 0 is A ↦ A R_0. This
is an isometry for the metric ⟨A R, B R⟩ = tr(Aᵀ B), so the Riemannian gradient flow at R_0 is
Ṙ = Σ_q ȧ_q B_q R_0 with ȧ = −∂C/∂a. autograd cannot differentiate ``scipy.linalg.expm``, so both
oracles use a Taylor series with scaling and squaring (20 terms, tested against
``scipy.linalg.expm``).

Tie margin. The derived formulas hold where C is differentiable, that is, where no pre-activation
is 0. :func:`tie_margin` is the smallest distance in input space from a point x_i^(τ,ℓ-1) to one
of the hyperplanes {(W^(ℓ) x + b^(ℓ))_k = 0}, over all points, layers and units:
min |z_{ℓ,i,k}| / ‖W^(ℓ)_{k,·}‖ (for adapted weights, min |u_k − θ_k|). The instances of the battery
are drawn with margin ≥ ``TIE_MARGIN`` = 1e-3. That is 100 times the finite-difference step, so no
perturbation crosses a tie.

Conditioning. Central differences of step h have truncation error ~ h² f‴/6, and the cost depends on
each layer weight through its inverse: for a weight with smallest singular value σ, the relative error
grows like (h/σ)². A 1×1 layer weight of −0.010 gave 1.3e-6 at h = 1e-5 (and scaled exactly as h²),
above ``FD_TOLERANCE``. The instances are therefore also redrawn unless every layer weight and every
cumulative weight of both networks has smallest singular value ≥ ``MIN_SINGULAR_VALUE`` = 0.1
(h/σ ≤ 1e-4); :class:`OracleInstance` counts the redraws. Relative errors are normwise:
‖value − reference‖_F / ‖reference‖_F (absolute when the reference is exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.theory.adapted import AdaptedNetwork, cone_projection, random_adapted_network
from reluflow.theory.costs import (
    cost_weights,
    input_cost,
    output_cost,
    output_cumulative_parameters,
    pullback_targets,
    pulled_back_cost,
    targets_by_label,
)
from reluflow.theory.data import clustered_data
from reluflow.theory.flows import (
    ScaleBiasFlow,
    bias_flow,
    cumulative_gradient,
    frame_flow,
    induced_bias_flow,
    induced_bias_kernel,
    induced_cumulative_flow,
    layer_gradient,
    one_layer_threshold_flow,
    scale_bias_flow,
    threshold_gradient,
)
from reluflow.theory.network import cumulative_parameters, haar_orthogonal, random_network
from reluflow.theory.truncation import truncated_data, truncation_map, truncation_pattern
from reluflow.validation import (
    MAX_CONDITION,
    as_layer_list,
    as_point_weights,
    as_points,
    as_real_array,
    as_targets,
    check_positive_int,
    validate_layers,
)

__all__ = [
    "TIE_MARGIN",
    "MIN_SINGULAR_VALUE",
    "TOLERANCE",
    "FD_STEP",
    "FD_TOLERANCE",
    "EQUATIONS",
    "OracleInstance",
    "SymbolicCheck",
    "plain_input_cost",
    "plain_input_space_images",
    "forward_pass_truncation_check",
    "one_layer_equilibrium",
    "oracle_threshold_gradient",
    "oracle_bias_flow",
    "oracle_scale_bias_flow",
    "oracle_frame_flow",
    "oracle_cumulative_gradient",
    "oracle_layer_gradient",
    "oracle_induced_bias_kernel",
    "oracle_induced_bias_flow",
    "oracle_induced_cumulative_flow",
    "tie_margin",
    "frobenius_relative_error",
    "draw_instance",
    "check_instance",
    "verification_battery",
    "symbolic_checks",
]

#: Minimum tie margin (input-space distance of any point to any threshold hyperplane) of the battery's instances.
TIE_MARGIN = 1e-3
#: Required worst relative error of every derived formula against the autodiff oracle.
TOLERANCE = 1e-10
#: Default central finite-difference step.
FD_STEP = 1e-5
#: Tolerance that the finite-difference check is held to (its truncation and rounding errors are larger).
FD_TOLERANCE = 1e-6
METHODS = ("autodiff", "finite_difference")
#: Smallest singular value required of every layer and cumulative weight of a battery instance (10⁴ FD steps).
MIN_SINGULAR_VALUE = 0.1

#: The checks of :func:`check_instance`, each with the part of THEORY.md it verifies.
EQUATIONS = {
    "input_cost": "§3 C_in",
    "output_cost_identity": "§3 C_out = ½Σ w|W^(L+1)(x^(τ,L) − ỹ)|²",
    "orthogonal_output_cost": "§3 C_out = C_in for orthogonal W^(L+1)",
    "threshold_gradient": "(4.1)",
    "bias_flow": "(4.2)",
    "one_layer_threshold_flow": "(4.2) one layer",
    "scale_bias_flow": "(4.3)",
    "scale_bias_conservation": "(4.3) d(λ² + b²)/dt = 0",
    "frame_flow": "(4.4)",
    "cumulative_gradient": "∇_c C_in",
    "layer_gradient": "∇_p C_in",
    "induced_bias_kernel": "(4.5) K",
    "induced_bias_flow": "(4.5) biases",
    "induced_cumulative_flow": "(4.5) −J Jᵀ ∇_c C",
}


# --------------------------------------------------------------------------- machinery


def _autograd():
    """Import autograd lazily, with an error that says how to install it."""
    try:
        import autograd
        import autograd.numpy as anp
        from autograd.tracer import getval
    except ImportError as exc:
        raise ImportError(
            "the automatic-differentiation oracle needs autograd, which ships with reluflow's 'test' extra: "
            "pip install 'reluflow[test]' (or pip install autograd)"
        ) from exc
    return autograd, anp, getval


def _check_method(method, step):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if not (isinstance(step, (int, float, np.floating)) and np.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive finite number; got {step!r}")


def _namespace(method):
    return _autograd()[1] if method == "autodiff" else np


def _gradient(make_fun, p0, method, step):
    """Gradient of the scalar p ↦ make_fun(xp)(p) at p0, by autograd or central differences."""
    p0 = np.asarray(p0, dtype=float)
    if p0.size == 0:
        return np.zeros(0)
    if method == "autodiff":
        autograd, anp, _ = _autograd()
        return np.asarray(autograd.grad(make_fun(anp))(p0), dtype=float)
    fun = make_fun(np)
    g = np.empty_like(p0)
    for j in range(p0.size):
        e = np.zeros_like(p0)
        e[j] = step
        g[j] = (fun(p0 + e) - fun(p0 - e)) / (2.0 * step)
    return g


def _jacobian(make_fun, p0, method, step):
    """Jacobian (out, in) of the vector map p ↦ make_fun(xp)(p) at p0."""
    p0 = np.asarray(p0, dtype=float)
    if method == "autodiff":
        autograd, anp, _ = _autograd()
        return np.asarray(autograd.jacobian(make_fun(anp))(p0), dtype=float)
    fun = make_fun(np)
    cols = []
    for j in range(p0.size):
        e = np.zeros_like(p0)
        e[j] = step
        cols.append((np.asarray(fun(p0 + e)) - np.asarray(fun(p0 - e))) / (2.0 * step))
    return np.stack(cols, axis=1)


def _directional(make_fun, p0, v, method, step):
    """Directional derivative J v of the vector map p ↦ make_fun(xp)(p) at p0 (forward mode or central differences)."""
    p0, v = np.asarray(p0, dtype=float), np.asarray(v, dtype=float)
    if method == "autodiff":
        autograd, anp, _ = _autograd()
        return np.asarray(autograd.make_jvp(make_fun(anp))(p0)(v)[1], dtype=float)
    fun = make_fun(np)
    size = float(np.linalg.norm(v))
    if size == 0:
        return np.zeros_like(np.asarray(fun(p0)))
    u = v / size
    return size * (np.asarray(fun(p0 + step * u)) - np.asarray(fun(p0 - step * u))) / (2.0 * step)


def _unpack(p, shapes):
    """Split a flat vector into arrays of the given shapes (works on autograd boxes)."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(p[start:start + size].reshape(shape))
        start += size
    return out


def _pack(arrays):
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def _plain_cost(xp, weights, biases, X, targets, w):
    """C_in from the plain ReLU forward pass and x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L))."""
    M = X.shape[1]
    x = X
    W_cum, b_cum = xp.eye(M), xp.zeros(M)
    for W, b in zip(weights, biases, strict=True):
        x = xp.maximum(xp.dot(x, xp.transpose(W)) + b, 0.0)
        W_cum = xp.dot(W, W_cum)
        b_cum = xp.dot(W, b_cum) + b
    x_tau = xp.transpose(xp.linalg.solve(W_cum, xp.transpose(x - b_cum)))
    r = x_tau - targets
    return 0.5 * xp.sum(w * xp.sum(r * r, axis=1))


def plain_input_space_images(weights, biases, X) -> list[np.ndarray]:
    """x^(τ,ℓ) for ℓ = 1..L from the plain ReLU forward pass, written without the truncation calculus.

    x^(ℓ) = np.maximum(x^(ℓ-1) W_ℓᵀ + b_ℓ, 0) layer by layer; the cumulative W^(ℓ), b^(ℓ) are accumulated
    alongside in plain numpy, and each layer's output is pulled back to input space by solving
    W^(ℓ) x^(τ,ℓ) = x^(ℓ) − b^(ℓ). ``weights`` (L of (M, M), square invertible), ``biases`` (L of (M,)),
    ``X`` (N, M) points as rows. Returns L arrays of shape (N, M).
    """
    Ws, bs = validate_layers(weights, biases, square=True, max_condition=MAX_CONDITION)
    x = as_points(X, "X", dim=Ws[0].shape[1])
    M = x.shape[1]
    W_cum, b_cum, out = np.eye(M), np.zeros(M), []
    for W, b in zip(Ws, bs, strict=True):
        x = np.maximum(x @ W.T + b, 0.0)
        W_cum, b_cum = W @ W_cum, W @ b_cum + b
        out.append(np.linalg.solve(W_cum, (x - b_cum).T).T)
    return out


def _max_rel(a, ref) -> float:
    return float(np.abs(a - ref).max() / max(1.0, float(np.abs(ref).max())))


def forward_pass_truncation_check(widths, depths, *, n_networks: int, n_points: int, seed) -> xr.Dataset:
    """Composed truncation maps against the plain ReLU forward pass, per (width M, depth L).

    For ``n_networks`` random general networks (:func:`reluflow.theory.network.random_network`) and as
    many random adapted ones (:func:`reluflow.theory.adapted.random_adapted_network`, turned into layer
    weights W_ℓ = W^(ℓ)(W^(ℓ-1))^-1 by plain numpy), with ``n_points`` Gaussian points each:

    - ``composed_maps``: τ_{W^(L),b^(L)} ∘ ⋯ ∘ τ_{W^(1),b^(1)} applied one :func:`truncation_map` at a time
      vs :func:`plain_input_space_images` (worst over layers ℓ of max |difference| / max(1, max |reference|));
    - ``adapted_projections``: the composition of cone projections R_ℓᵀ max(R_ℓ x, θ_ℓ)
      (:func:`reluflow.theory.adapted.cone_projection`) vs the forward pass of the adapted network;
    - ``truncated_fraction``: the smallest, over networks, fraction of (point, layer, unit) triples the
      forward pass truncates (a pre-activation < 0), so that a vacuous comparison shows.
    """
    from reluflow.pipeline.parameters import check_int_list, check_seed

    widths = check_int_list(widths, "widths", minimum=1)
    depths = check_int_list(depths, "depths", minimum=1)
    n_networks = check_positive_int(n_networks, "n_networks")
    n_points = check_positive_int(n_points, "n_points")
    seeds = iter(np.random.SeedSequence(check_seed(seed)).spawn(len(widths) * len(depths)))
    names = ["composed_maps", "adapted_projections", "truncated_fraction"]
    out = {n: np.zeros((len(widths), len(depths))) for n in names}
    out["truncated_fraction"][:] = 1.0
    for i, M in enumerate(widths):
        for j, L in enumerate(depths):
            rng = np.random.default_rng(next(seeds))
            for _ in range(n_networks):
                X = 2.0 * rng.standard_normal((n_points, M))
                weights, biases = random_network(M, L, seed=rng, bias_scale=1.0)
                ref = plain_input_space_images(weights, biases, X)
                Wc, bc = np.eye(M), np.zeros(M)
                x, e = X, 0.0
                for ell, (W, b) in enumerate(zip(weights, biases)):
                    Wc, bc = W @ Wc, W @ bc + b
                    x = truncation_map(Wc, bc, x)
                    e = max(e, _max_rel(x, ref[ell]))
                out["composed_maps"][i, j] = max(out["composed_maps"][i, j], e)
                z, frac = X, []
                for W, b in zip(weights, biases):
                    pre = z @ W.T + b
                    frac.append(float((pre < 0).mean()))
                    z = np.maximum(pre, 0.0)
                out["truncated_fraction"][i, j] = min(out["truncated_fraction"][i, j], float(np.mean(frac)))
                net = random_adapted_network(M, L, seed=rng)
                Wcs = [lam[:, None] * R for R, lam in zip(net.frames, net.scales)]
                bcs = [-lam * th for lam, th in zip(net.scales, net.thresholds)]
                lw = [Wcs[0]] + [np.linalg.solve(Wcs[k - 1].T, Wcs[k].T).T for k in range(1, L)]
                lb = [bcs[0]] + [bcs[k] - lw[k] @ bcs[k - 1] for k in range(1, L)]
                ref = plain_input_space_images(lw, lb, X)
                x, e = X, 0.0
                for ell in range(L):
                    x = cone_projection(net.frames[ell], net.thresholds[ell], x)
                    e = max(e, _max_rel(x, ref[ell]))
                out["adapted_projections"][i, j] = max(out["adapted_projections"][i, j], e)
    long = {
        "composed_maps": "max relative error of the composed truncation maps vs the plain forward pass",
        "adapted_projections": "max relative error of the composed cone projections vs the plain forward pass",
        "truncated_fraction": "smallest fraction of (point, layer, unit) with a negative pre-activation",
    }
    return xr.Dataset(
        {n: (("width", "depth"), out[n], {"long_name": long[n], "units": "1"}) for n in names},
        coords={"width": ("width", widths, {"long_name": "width M", "units": "1"}),
                "depth": ("depth", depths, {"long_name": "depth L", "units": "1"})},
    )


def one_layer_equilibrium(net, X, targets, lower, upper, *, point_weights=None, method: str = "autodiff",
                          xtol: float = 1e-14) -> np.ndarray:
    """θ* of a one-layer threshold flow: the zero of ∂C_in/∂θ_k in [lower_k, upper_k], by root finding.

    For one layer the coordinates decouple (∂C_in/∂θ_k depends on θ_k alone), so each θ*_k is found by
    :func:`scipy.optimize.brentq` on k ↦ (:func:`oracle_threshold_gradient`)_k, the gradient of the plain
    forward pass by ``method`` ("autodiff" or "finite_difference"), with the other thresholds at
    ``net.thresholds``. The gradient must change sign on each bracket (negative at ``lower``, positive at
    ``upper``, so that the flow θ̇ = −Λ⁻² ∂C/∂θ is attracted to the root); it is piecewise affine with
    jumps where θ_k crosses a data coordinate, and brentq returns a sign change to ``xtol``. A
    coordinate with no point truncated at ``lower`` (counted by the plain forward pass: a dead coordinate,
    which does not move; its gradient is 0 up to round-off) returns ``lower_k``.
    """
    from dataclasses import replace

    from scipy.optimize import brentq

    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"net must be an AdaptedNetwork; got {type(net).__name__}")
    L, M = net.scales.shape
    if L != 1:
        raise ValueError(f"net must have one layer; got L = {L}")
    lower = as_real_array(lower, "lower", ndim=1)
    upper = as_real_array(upper, "upper", ndim=1)
    if lower.shape != (M,) or upper.shape != (M,) or np.any(lower >= upper):
        raise ValueError(f"lower and upper must have shape ({M},) with lower < upper; got {lower} and {upper}")
    _check_method(method, FD_STEP)

    def g(value, k):
        theta = net.thresholds.copy()
        theta[0, k] = value
        return float(oracle_threshold_gradient(replace(net, thresholds=theta), X, targets,
                                               point_weights=point_weights, method=method)[0, k])

    X_arr = np.asarray(X, dtype=float)
    # pre-activations of the plain layer at θ = lower: λ_k (R x_i)_k − λ_k lower_k; a point is truncated where ≤ 0
    pre = X_arr @ (net.scales[0][:, None] * net.frames[0]).T - net.scales[0] * lower
    n_lower = (pre <= 0).sum(axis=0)
    out = np.empty(M)
    for k in range(M):
        if n_lower[k] == 0:  # nothing truncated at lower: the coordinate is dead (S1) and lower is its equilibrium
            out[k] = lower[k]  # (its gradient is 0 up to round-off, so the count decides, not the gradient's sign)
            continue
        lo, hi = g(lower[k], k), g(upper[k], k)
        if not (lo < 0 < hi):
            raise ValueError(f"the gradient must be negative at lower and positive at upper in coordinate {k}; "
                             f"got {lo:.3g} and {hi:.3g}")
        out[k] = brentq(g, lower[k], upper[k], args=(k,), xtol=xtol, rtol=4 * np.finfo(float).eps)
    return out


def _layers_from_cumulative(xp, Wc, bc):
    """W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)."""
    weights, biases = [], []
    W_prev, b_prev = None, None
    for W, b in zip(Wc, bc, strict=True):
        if W_prev is None:
            Wl, bl = W, b
        else:
            Wl = xp.transpose(xp.linalg.solve(xp.transpose(W_prev), xp.transpose(W)))
            bl = b - xp.dot(Wl, b_prev)
        weights.append(Wl)
        biases.append(bl)
        W_prev, b_prev = W, b
    return weights, biases


def _plain_cost_cumulative(xp, Wc, bc, X, targets, w):
    weights, biases = _layers_from_cumulative(xp, Wc, bc)
    return _plain_cost(xp, weights, biases, X, targets, w)


def _cumulative_biases(xp, weights, bs):
    """b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ, stacked as one flat vector."""
    b_cum, out = None, []
    for W, b in zip(weights, bs, strict=True):
        b_cum = b if b_cum is None else xp.dot(W, b_cum) + b
        out.append(b_cum)
    return xp.concatenate(out)


def _expm_series(xp, getval, A, terms: int = 20):
    """exp(A) by a Taylor series with scaling and squaring, differentiable by autograd."""
    norm = float(np.abs(np.asarray(getval(A))).sum(axis=0).max())
    s = max(0, int(np.ceil(np.log2(norm))) + 1) if norm > 0 else 0
    A = A / 2.0**s
    M = A.shape[0]
    E = term = xp.eye(M)
    for k in range(1, terms + 1):
        term = xp.dot(term, A) / k
        E = E + term
    for _ in range(s):
        E = xp.dot(E, E)
    return E


def _skew_basis(M: int) -> np.ndarray:
    """Orthonormal basis (E_pq − E_qp)/√2, p < q, of the skew matrices; shape (M(M-1)/2, M, M)."""
    basis = []
    for p in range(M):
        for q in range(p + 1, M):
            B = np.zeros((M, M))
            B[p, q], B[q, p] = 1.0, -1.0
            basis.append(B / np.sqrt(2.0))
    return np.array(basis).reshape(-1, M, M)


def _general_inputs(Wc, bc, X, targets, point_weights, prefix="cumulative "):
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=np.inf, prefix=prefix)
    X = as_points(X, "X", dim=Wcs[0].shape[0])
    N, M = X.shape
    return Wcs, bcs, X, as_targets(targets, N, M), as_point_weights(point_weights, N)


# --------------------------------------------------------------------------- oracles


def _oracle_inputs(net, X, targets, point_weights):
    """The validated (net, X, targets, w) of an adapted flow problem, as the flows themselves check them."""
    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"net must be a reluflow.AdaptedNetwork (see adapted_network); got {type(net).__name__}")
    X = as_points(X, "X", dim=net.width)
    N, M = X.shape
    return net, X, as_targets(targets, N, M), as_point_weights(point_weights, N)


def plain_input_cost(Wc, bc, X, targets, *, point_weights=None) -> float:
    """C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|², with x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)) from the plain forward pass."""
    Wcs, bcs, X, targets, w = _general_inputs(Wc, bc, X, targets, point_weights)
    return float(_plain_cost_cumulative(np, Wcs, bcs, X, targets, w))


def oracle_threshold_gradient(net, X, targets, *, point_weights=None, method: str = "autodiff",
                              step: float = FD_STEP) -> np.ndarray:
    """∂C_in/∂θ_ℓ (L, M), by differentiating θ ↦ C_in(W^(ℓ) = Λ_ℓ R_ℓ, b^(ℓ) = −Λ_ℓ θ_ℓ) through the plain pass."""
    _check_method(method, step)
    net, X, targets, w = _oracle_inputs(net, X, targets, point_weights)
    L, M = net.scales.shape
    Wc = [lam[:, None] * R for lam, R in zip(net.scales, net.frames, strict=True)]

    def make(xp):
        def f(p):
            theta = p.reshape(L, M)
            return _plain_cost_cumulative(xp, Wc, [-net.scales[l] * theta[l] for l in range(L)], X, targets, w)
        return f

    return _gradient(make, net.thresholds.ravel(), method, step).reshape(L, M)


def oracle_bias_flow(net, X, targets, *, point_weights=None, method: str = "autodiff",
                     step: float = FD_STEP) -> np.ndarray:
    """θ̇ = −ḃ/λ with ḃ^(ℓ) = −∇_{b^(ℓ)} C_in differentiated through the plain pass (Λ, R frozen); (L, M)."""
    _check_method(method, step)
    net, X, targets, w = _oracle_inputs(net, X, targets, point_weights)
    L, M = net.scales.shape
    Wc = [lam[:, None] * R for lam, R in zip(net.scales, net.frames, strict=True)]

    def make(xp):
        def f(p):
            b = p.reshape(L, M)
            return _plain_cost_cumulative(xp, Wc, [b[l] for l in range(L)], X, targets, w)
        return f

    b_dot = -_gradient(make, (-net.scales * net.thresholds).ravel(), method, step).reshape(L, M)
    return -b_dot / net.scales


def oracle_scale_bias_flow(net, X, targets, *, point_weights=None, method: str = "autodiff",
                           step: float = FD_STEP) -> ScaleBiasFlow:
    """λ̇ = −∇_λ C_in and ḃ = −∇_b C_in through the plain pass with W^(ℓ) = diag(λ_ℓ) R_ℓ, and θ̇ = d(−b/λ)/dt."""
    _check_method(method, step)
    net, X, targets, w = _oracle_inputs(net, X, targets, point_weights)
    L, M = net.scales.shape
    lam0, b0 = net.scales, -net.scales * net.thresholds

    def make(xp):
        def f(p):
            lam, b = _unpack(p, [(L, M), (L, M)])
            Wc = [xp.reshape(lam[l], (M, 1)) * net.frames[l] for l in range(L)]
            return _plain_cost_cumulative(xp, Wc, [b[l] for l in range(L)], X, targets, w)
        return f

    grad = _gradient(make, _pack([lam0, b0]), method, step)
    lam_dot, b_dot = (-g for g in _unpack(grad, [(L, M), (L, M)]))
    theta_dot = -b_dot / lam0 + b0 * lam_dot / lam0**2  # chain rule for θ = −b/λ
    return ScaleBiasFlow(scales=lam_dot, biases=b_dot, thresholds=theta_dot)


def oracle_frame_flow(net, X, targets, *, point_weights=None, method: str = "autodiff",
                      step: float = FD_STEP) -> np.ndarray:
    """Ṙ_ℓ = Σ_q ȧ_q B_q R_ℓ, ȧ = −∂/∂a C_in(expm(Σ_q a_q B_q) R_ℓ) at a = 0 (see the module docstring); (L, M, M)."""
    _check_method(method, step)
    net, X, targets, w = _oracle_inputs(net, X, targets, point_weights)
    L, M = net.scales.shape
    basis = _skew_basis(M)
    n_skew = basis.shape[0]
    if n_skew == 0:
        return np.zeros((L, M, M))
    bc = [-lam * theta for lam, theta in zip(net.scales, net.thresholds, strict=True)]

    def make(xp):
        getval = _autograd()[2] if xp is not np else np.asarray

        def expm(A):
            return _expm_series(xp, getval, A)

        def f(p):
            a = p.reshape(L, n_skew)
            Wc = []
            for l in range(L):
                if xp is np and not np.any(a[l]):  # expm(0) = 1: skip the unperturbed layers
                    R = net.frames[l]
                else:
                    R = xp.dot(expm(xp.tensordot(a[l], basis, axes=1)), net.frames[l])
                Wc.append(net.scales[l][:, None] * R)
            return _plain_cost_cumulative(xp, Wc, bc, X, targets, w)
        return f

    a_dot = -_gradient(make, np.zeros(L * n_skew), method, step).reshape(L, n_skew)
    return np.einsum("lq,qij,ljk->lik", a_dot, basis, net.frames)


def oracle_cumulative_gradient(Wc, bc, X, targets, *, point_weights=None, method: str = "autodiff",
                               step: float = FD_STEP):
    """(∇_{W^(ℓ)} C_in, ∇_{b^(ℓ)} C_in) through the plain pass on W_ℓ = W^(ℓ)(W^(ℓ-1))^-1; two lists of L arrays."""
    _check_method(method, step)
    Wcs, bcs, X, targets, w = _general_inputs(Wc, bc, X, targets, point_weights)
    L, M = len(Wcs), X.shape[1]
    shapes = [(M, M)] * L + [(M,)] * L

    def make(xp):
        def f(p):
            parts = _unpack(p, shapes)
            return _plain_cost_cumulative(xp, parts[:L], parts[L:], X, targets, w)
        return f

    parts = _unpack(_gradient(make, _pack(Wcs + bcs), method, step), shapes)
    return parts[:L], parts[L:]


def oracle_layer_gradient(weights, biases, X, targets, *, point_weights=None, method: str = "autodiff",
                          step: float = FD_STEP):
    """(∇_{W_ℓ} C_in, ∇_{b_ℓ} C_in) through the plain pass on the layer parameters; two lists of L arrays."""
    _check_method(method, step)
    Ws, bs, X, targets, w = _general_inputs(weights, biases, X, targets, point_weights, prefix="")
    L, M = len(Ws), X.shape[1]
    shapes = [(M, M)] * L + [(M,)] * L

    def make(xp):
        def f(p):
            parts = _unpack(p, shapes)
            return _plain_cost(xp, parts[:L], parts[L:], X, targets, w)
        return f

    parts = _unpack(_gradient(make, _pack(Ws + bs), method, step), shapes)
    return parts[:L], parts[L:]


def _bias_jacobian(Ws, method, step):
    """J_b = ∂(b^(1), …, b^(L))/∂(b_1, …, b_L) of the plain recursion, shape (LM, LM)."""
    L, M = len(Ws), Ws[0].shape[0]

    def make(xp):
        def f(p):
            bs = p.reshape(L, M)
            return _cumulative_biases(xp, Ws, [bs[l] for l in range(L)])
        return f

    return _jacobian(make, np.zeros(L * M), method, step)


def oracle_induced_bias_kernel(weights, *, method: str = "autodiff", step: float = FD_STEP) -> np.ndarray:
    """K = J_b J_bᵀ, J_b the Jacobian of b ↦ (b^(ℓ)) through b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ; shape (L, L, M, M)."""
    _check_method(method, step)
    Ws = [as_real_array(W, f"weights[{i}] (layer {i + 1})", ndim=2)
          for i, W in enumerate(as_layer_list(weights, "weights"))]
    M = Ws[0].shape[0]
    for i, W in enumerate(Ws):
        if W.shape != (M, M):
            raise ValueError(f"weights[{i}] (layer {i + 1}) must have shape ({M}, {M}); got {W.shape}")
    L = len(Ws)
    J = _bias_jacobian(Ws, method, step)
    return (J @ J.T).reshape(L, M, L, M).transpose(0, 2, 1, 3)


def oracle_induced_bias_flow(weights, biases, X, targets, *, point_weights=None, method: str = "autodiff",
                             step: float = FD_STEP) -> np.ndarray:
    """ḃ^(ℓ) = J_b ḃ, ḃ_k = −∇_{b_k} C_in (plain pass), J_b ḃ the derivative of b ↦ (b^(ℓ)) along ḃ; (L, M)."""
    _check_method(method, step)
    Ws, bs, X, targets, w = _general_inputs(weights, biases, X, targets, point_weights, prefix="")
    L, M = len(Ws), X.shape[1]

    def make(xp):
        def f(p):
            b = p.reshape(L, M)
            return _plain_cost(xp, Ws, [b[l] for l in range(L)], X, targets, w)
        return f

    def make_map(xp):
        def c(p):
            b = p.reshape(L, M)
            return _cumulative_biases(xp, Ws, [b[l] for l in range(L)])
        return c

    b_dot = -_gradient(make, _pack(bs), method, step)
    return _directional(make_map, _pack(bs), b_dot, method, step).reshape(L, M)


def oracle_induced_cumulative_flow(weights, biases, X, targets, *, point_weights=None, method: str = "autodiff",
                                   step: float = FD_STEP):
    """ċ = J ṗ, ṗ = −∇_p C_in (plain pass), J ṗ the derivative of the cumulative recursion c(p) along ṗ.

    Returns (Ẇ^(ℓ), ḃ^(ℓ)) as two lists of L arrays.
    """
    _check_method(method, step)
    Ws, bs, X, targets, w = _general_inputs(weights, biases, X, targets, point_weights, prefix="")
    L, M = len(Ws), X.shape[1]
    shapes = [(M, M)] * L + [(M,)] * L
    p0 = _pack(Ws + bs)

    def make_cost(xp):
        def f(p):
            parts = _unpack(p, shapes)
            return _plain_cost(xp, parts[:L], parts[L:], X, targets, w)
        return f

    def make_map(xp):
        def c(p):
            parts = _unpack(p, shapes)
            W_cum, b_cum, out_W, out_b = None, None, [], []
            for W, b in zip(parts[:L], parts[L:], strict=True):
                W_cum = W if W_cum is None else xp.dot(W, W_cum)
                b_cum = b if b_cum is None else xp.dot(W, b_cum) + b
                out_W.append(xp.reshape(W_cum, (-1,)))
                out_b.append(b_cum)
            return xp.concatenate(out_W + out_b)
        return c

    p_dot = -_gradient(make_cost, p0, method, step)
    parts = _unpack(_directional(make_map, p0, p_dot, method, step), shapes)
    return parts[:L], parts[L:]


# --------------------------------------------------------------------------- margins and errors


def tie_margin(Wc, bc, X) -> float:
    """min over ℓ, i, k of |(W^(ℓ) x_i^(τ,ℓ-1) + b^(ℓ))_k| / ‖W^(ℓ)_{k,·}‖: the distance to the nearest tie.

    It is the smallest input-space distance from a point entering layer ℓ to one of that layer's
    threshold hyperplanes. For adapted weights it is min |(R_ℓ x)_k − θ_{ℓ,k}|.
    """
    xs = truncated_data(Wc, bc, X)
    Wcs, bcs = validate_layers(Wc, bc, square=True, max_condition=np.inf, prefix="cumulative ")
    margins = [
        (np.abs(x @ W.T + b) / np.linalg.norm(W, axis=1)).min() for W, b, x in zip(Wcs, bcs, xs[:-1], strict=True)
    ]
    return float(min(margins))


def frobenius_relative_error(value, reference) -> float:
    """‖value − reference‖_F / ‖reference‖_F, or the absolute ‖value − reference‖_F when the reference is 0.

    Arrays or sequences of arrays (compared entry by entry, as one concatenated vector).
    """
    if isinstance(value, ScaleBiasFlow):
        value = [value.scales, value.biases, value.thresholds]
    if isinstance(reference, ScaleBiasFlow):
        reference = [reference.scales, reference.biases, reference.thresholds]
    if isinstance(value, (list, tuple)) != isinstance(reference, (list, tuple)):
        raise TypeError("value and reference must both be arrays or both be sequences of arrays; got "
                        f"{type(value).__name__} and {type(reference).__name__}")
    if isinstance(value, (list, tuple)):
        if len(value) != len(reference):
            raise ValueError(f"value and reference must have the same number of arrays; got {len(value)} and "
                             f"{len(reference)}")
        v = [as_real_array(a, f"value[{i}]") for i, a in enumerate(value)]
        r = [as_real_array(a, f"reference[{i}]") for i, a in enumerate(reference)]
    else:
        v, r = [as_real_array(value, "value")], [as_real_array(reference, "reference")]
    for i, (a, b) in enumerate(zip(v, r, strict=True)):
        if a.shape != b.shape:
            raise ValueError(f"value and reference must have equal shapes; entry {i} has {a.shape} and {b.shape}")
    v, r = _pack(v), _pack(r)
    diff = float(np.linalg.norm(v - r))
    ref = float(np.linalg.norm(r))
    return diff / ref if ref > 0 else diff


# --------------------------------------------------------------------------- random instances


@dataclass(frozen=True, repr=False)
class OracleInstance:
    """One random test instance: data, an adapted network, a general network and a terminal layer.

    ``net`` is adapted (for (4.1)–(4.4)); ``weights, biases`` are the layer parameters of a general,
    non-adapted network (for ∇_c C and (4.5)). ``targets`` are input-space targets ỹ_{j(i)} (N, M);
    ``W_out`` (Q', M), ``b_out`` (Q',) and ``output_targets`` (N, Q') form a terminal layer with
    Q' = min(Q, M) outputs. ``weighting`` is ``"uniform"`` or ``"balanced"`` (``point_weights``).
    ``margin`` is the smaller of the two networks' :func:`tie_margin`. ``redrawn_margin`` and
    ``redrawn_conditioning`` count the draws rejected before this one for a tie margin below the minimum
    (or no truncated coordinate) and for a weight with smallest singular value below ``MIN_SINGULAR_VALUE``.
    """

    net: AdaptedNetwork
    weights: list
    biases: list
    X: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    point_weights: np.ndarray
    weighting: str
    W_out: np.ndarray
    b_out: np.ndarray
    output_targets: np.ndarray
    margin: float
    redrawn_margin: int = 0
    redrawn_conditioning: int = 0

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Points, width, depth and clusters: (N, M, L, Q)."""
        return self.X.shape[0], self.X.shape[1], self.net.depth, int(self.labels.max()) + 1

    def __repr__(self) -> str:
        N, M, L, Q = self.shape
        return (f"<OracleInstance N={N}, M={M}, L={L}, Q={Q}, {self.weighting} weights, "
                f"tie margin {self.margin:.3g}>")


def _smallest_singular_value(matrices) -> float:
    return float(min(np.linalg.svd(np.asarray(W), compute_uv=False).min() for W in matrices))


def draw_instance(seed=None, *, M: int | None = None, L: int | None = None, Q: int | None = None,
                  tie_margin_min: float = TIE_MARGIN, min_singular_value: float = MIN_SINGULAR_VALUE,
                  max_attempts: int = 500) -> OracleInstance:
    """A random :class:`OracleInstance` whose tie margin is at least ``tie_margin_min``.

    M, L and Q are drawn uniformly from 1..5, 1..4 and 1..3 unless given. Clusters hold 2 to 8
    points each, and the weights are uniform or class-balanced with equal probability. Draws
    are repeated, from the same generator, until the margin holds and each network truncates
    at least one coordinate of one point (otherwise every gradient is exactly 0, the oracles
    return rounding noise, and a relative error means nothing; that case is tested on its own),
    and every layer weight and cumulative weight of both networks has smallest singular value at
    least ``min_singular_value`` (else central differences are inaccurate: see the module docstring).
    Deterministic for a given ``seed`` (an int or a ``numpy.random.SeedSequence``).
    """
    rng = np.random.default_rng(seed)
    M = int(rng.integers(1, 6)) if M is None else check_positive_int(M, "M")
    L = int(rng.integers(1, 5)) if L is None else check_positive_int(L, "L")
    Q = int(rng.integers(1, 4)) if Q is None else check_positive_int(Q, "Q")
    max_attempts = check_positive_int(max_attempts, "max_attempts")
    if not (np.isfinite(tie_margin_min) and tie_margin_min >= 0):
        raise ValueError(f"tie_margin_min must be a non-negative finite number; got {tie_margin_min!r}")
    if not (isinstance(min_singular_value, (int, float, np.floating)) and np.isfinite(min_singular_value)
            and min_singular_value >= 0):
        raise ValueError(f"min_singular_value must be a non-negative finite number; got {min_singular_value!r}")
    best = 0.0
    redrawn = {"margin": 0, "conditioning": 0}
    for _ in range(max_attempts):
        sizes = rng.integers(2, 9, size=Q)
        data = clustered_data(rng.standard_normal((Q, M)), 0.8, sizes.tolist(), seed=rng)
        net = random_adapted_network(M, L, seed=rng, threshold_scale=0.8)
        weights, biases = random_network(M, L, seed=rng, bias_scale=0.5)
        Wc, bc = cumulative_parameters(weights, biases)
        margin = min(tie_margin(*net.cumulative_parameters(), data.points), tie_margin(Wc, bc, data.points))
        best = max(best, margin)
        truncates = (truncation_pattern(*net.cumulative_parameters(), data.points).any()
                     and truncation_pattern(Wc, bc, data.points).any())
        if margin < tie_margin_min or not truncates:
            redrawn["margin"] += 1
            continue
        if _smallest_singular_value([*weights, *Wc, *net.cumulative_parameters()[0]]) < min_singular_value:
            redrawn["conditioning"] += 1
            continue
        weighting = "balanced" if rng.uniform() < 0.5 else "uniform"
        Qo = min(Q, M)
        W_out = rng.standard_normal((Qo, M)) / np.sqrt(M) + np.eye(Qo, M)
        return OracleInstance(
            net=net, weights=weights, biases=biases, X=data.points, labels=data.labels,
            targets=targets_by_label(1.2 * rng.standard_normal((Q, M)), data.labels),
            point_weights=cost_weights(data.labels, weighting, n_classes=Q), weighting=weighting,
            W_out=W_out, b_out=0.5 * rng.standard_normal(Qo),
            output_targets=targets_by_label(rng.standard_normal((Q, Qo)), data.labels), margin=margin,
            redrawn_margin=redrawn["margin"], redrawn_conditioning=redrawn["conditioning"],
        )
    raise ValueError(f"tie_margin_min={tie_margin_min:.3g} was not reached in max_attempts={max_attempts} draws "
                     f"(M={M}, L={L}, Q={Q}; best margin {best:.3g}; {redrawn['conditioning']} draws ill-conditioned); "
                     "lower it or allow more attempts")


def check_instance(inst: OracleInstance, *, methods=METHODS, step: float = FD_STEP) -> dict:
    """Relative error of every library formula against the oracles on one instance.

    Returns ``{equation: {method: error}}`` for the keys of :data:`EQUATIONS` and the requested
    ``methods``. The cost identities take no derivative, so their errors are the same under both
    methods. ``one_layer_threshold_flow`` is NaN when L > 1.
    """
    if not isinstance(inst, OracleInstance):
        raise TypeError(f"inst must be an OracleInstance (see draw_instance); got {type(inst).__name__}")
    methods = tuple(methods)
    for m in methods:
        _check_method(m, step)
    net, X, Y, w = inst.net, inst.X, inst.targets, inst.point_weights
    Wc_a, bc_a = net.cumulative_parameters()
    Wc, bc = cumulative_parameters(inst.weights, inst.biases)
    kw = dict(point_weights=w)
    N, M, L, _ = inst.shape

    # Value identities (no derivative).
    e_cost = frobenius_relative_error(input_cost(Wc, bc, X, Y, **kw), plain_input_cost(Wc, bc, X, Y, **kw))
    W_total, b_total = output_cumulative_parameters(inst.weights, inst.biases, inst.W_out, inst.b_out)
    y_in = pullback_targets(inst.weights, inst.biases, inst.W_out, inst.b_out, inst.output_targets)
    e_identity = frobenius_relative_error(
        pulled_back_cost(Wc, bc, W_total, X, y_in, **kw),
        output_cost(inst.weights, inst.biases, inst.W_out, inst.b_out, X, inst.output_targets, **kw),
    )
    rng = np.random.default_rng([N, M, L])  # fixed by the instance's shape only
    W_orth = haar_orthogonal(rng, M) @ np.linalg.inv(Wc[-1])  # then W^(L+1) = W_orth W^(L) is orthogonal
    b_orth, y_orth = rng.standard_normal(M), rng.standard_normal((N, M))
    e_orth = frobenius_relative_error(
        input_cost(Wc, bc, X, pullback_targets(inst.weights, inst.biases, W_orth, b_orth, y_orth), **kw),
        output_cost(inst.weights, inst.biases, W_orth, b_orth, X, y_orth, **kw),
    )

    library = {
        "threshold_gradient": threshold_gradient(net, X, Y, **kw),
        "bias_flow": bias_flow(net, X, Y, **kw),
        "scale_bias_flow": scale_bias_flow(net, X, Y, **kw),
        "frame_flow": frame_flow(net, X, Y, **kw),
        "cumulative_gradient": list(cumulative_gradient(Wc, bc, X, Y, **kw)),
        "layer_gradient": list(layer_gradient(inst.weights, inst.biases, X, Y, **kw)),
        "induced_bias_kernel": induced_bias_kernel(inst.weights),
        "induced_bias_flow": induced_bias_flow(inst.weights, inst.biases, X, Y, **kw),
        "induced_cumulative_flow": list(induced_cumulative_flow(inst.weights, inst.biases, X, Y, **kw)),
    }
    if L == 1:
        library["one_layer_threshold_flow"] = one_layer_threshold_flow(net, X, Y, **kw)

    out = {name: {} for name in EQUATIONS}
    for method in methods:
        o = dict(method=method, step=step)
        sb = oracle_scale_bias_flow(net, X, Y, **kw, **o)
        oracle = {
            "threshold_gradient": oracle_threshold_gradient(net, X, Y, **kw, **o),
            "bias_flow": oracle_bias_flow(net, X, Y, **kw, **o),
            "scale_bias_flow": sb,
            "frame_flow": oracle_frame_flow(net, X, Y, **kw, **o),
            "cumulative_gradient": list(oracle_cumulative_gradient(Wc, bc, X, Y, **kw, **o)),
            "layer_gradient": list(oracle_layer_gradient(inst.weights, inst.biases, X, Y, **kw, **o)),
            "induced_bias_kernel": oracle_induced_bias_kernel(inst.weights, **o),
            "induced_bias_flow": oracle_induced_bias_flow(inst.weights, inst.biases, X, Y, **kw, **o),
            "induced_cumulative_flow": list(oracle_induced_cumulative_flow(inst.weights, inst.biases, X, Y, **kw, **o)),
        }
        if L == 1:
            oracle["one_layer_threshold_flow"] = oracle["bias_flow"]
        for name in EQUATIONS:
            if name in oracle:
                out[name][method] = frobenius_relative_error(library[name], oracle[name])
        out["one_layer_threshold_flow"].setdefault(method, np.nan)
        # d(λ² + b²)/dt = 2λλ̇ + 2bḃ from the oracle's own rates, relative to the size of the two terms.
        lam, b = net.scales, -net.scales * net.thresholds
        rate = np.linalg.norm(lam * sb.scales + b * sb.biases)
        size = np.linalg.norm(np.abs(lam * sb.scales) + np.abs(b * sb.biases))
        out["scale_bias_conservation"][method] = float(rate / size if size > 0 else rate)
        out["input_cost"][method] = e_cost
        out["output_cost_identity"][method] = e_identity
        out["orthogonal_output_cost"][method] = e_orth
    return out


def verification_battery(n_instances: int = 200, seed=0, *, tie_margin_min: float = TIE_MARGIN,
                         finite_differences: bool = True, step: float = FD_STEP, progress: bool = False):
    """Worst relative errors of every derived formula against autodiff (and finite differences).

    ``n_instances`` instances come from :func:`draw_instance`, instance n seeded by
    ``numpy.random.SeedSequence(seed).spawn(n_instances + 1)[n]``, with M ∈ 1..5, L ∈ 1..4, Q ∈ 1..3.
    The sizes cover every value by construction: instances 0..4 take M from a random permutation of
    1..5, instances 0..3 L from one of 1..4 and instances 0..2 Q from one of 1..3 (the permutations
    drawn from the last spawned child); every other size is drawn uniformly. So with
    ``n_instances`` ≥ 5 each M, L and Q occurs. Each instance is checked by :func:`check_instance`.

    Returns an ``xarray.Dataset`` with dims ``oracle`` (autodiff, finite_difference), ``instance``
    and ``equation``. Variables: ``relative_error`` (oracle, instance, equation),
    ``worst_relative_error`` (oracle, equation), ``n_checked`` (equation), ``tie_margin`` (instance),
    ``redrawn_margin`` and ``redrawn_conditioning`` (instance; see :class:`OracleInstance`) and
    ``tolerance`` (oracle). Coordinates ``M``, ``L``, ``Q``, ``N`` are on ``instance``, and
    ``theory_reference`` on ``equation``. The finite-difference rows are NaN when
    ``finite_differences`` is False.
    """
    import xarray as xr

    n_instances = check_positive_int(n_instances, "n_instances")
    if not isinstance(finite_differences, bool):
        raise TypeError(f"finite_differences must be True or False; got {finite_differences!r}")
    _check_method("finite_difference", step)
    methods = METHODS if finite_differences else ("autodiff",)
    if methods[0] == "autodiff":
        _autograd()  # fail early, with the install hint
    *children, size_seed = np.random.SeedSequence(seed).spawn(n_instances + 1)
    size_rng = np.random.default_rng(size_seed)
    forced = {name: size_rng.permutation(np.arange(1, top + 1)) for name, top in (("M", 5), ("L", 4), ("Q", 3))}
    names = list(EQUATIONS)
    err = np.full((len(METHODS), n_instances, len(names)), np.nan)
    dims = np.zeros((4, n_instances), dtype=np.int64)
    margins = np.empty(n_instances)
    redraws = np.zeros((2, n_instances), dtype=np.int64)
    iterator = range(n_instances)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="verification battery", unit="instance")
    for n in iterator:
        sizes = {name: int(values[n]) for name, values in forced.items() if n < values.size}
        inst = draw_instance(children[n], tie_margin_min=tie_margin_min, **sizes)
        redraws[:, n] = inst.redrawn_margin, inst.redrawn_conditioning
        result = check_instance(inst, methods=methods, step=step)
        for e, name in enumerate(names):
            for m, method in enumerate(METHODS):
                err[m, n, e] = result[name].get(method, np.nan)
        dims[:, n] = inst.shape
        margins[n] = inst.margin
    checked = np.isfinite(err[0]).sum(axis=0)
    worst = np.where(checked > 0, np.nanmax(np.where(np.isfinite(err), err, -np.inf), axis=1), np.nan)
    worst[~np.isfinite(worst)] = np.nan
    ds = xr.Dataset(
        {
            # error measures: their digits are round-off and finite-difference truncation, which change by O(1)
            # relatively between BLAS kernels; ``error_bound`` (the finite-difference tolerance, the larger of the
            # two) tells the reproducibility check to compare them as "at most the bound"
            # (reluflow.pipeline.compare); the notebook's checks hold the autodiff errors to TOLERANCE
            "relative_error": (("oracle", "instance", "equation"), err,
                               {"long_name": "relative error of the library formula against the oracle", "units": "1",
                                "error_bound": FD_TOLERANCE}),
            "worst_relative_error": (("oracle", "equation"), worst,
                                     {"long_name": "worst relative error over the instances", "units": "1",
                                      "error_bound": FD_TOLERANCE}),
            "n_checked": ("equation", checked.astype(np.int64),
                          {"long_name": "number of instances where the check applies", "units": "1"}),
            "tie_margin": ("instance", margins,
                           {"long_name": "smallest input-space distance of a point to a threshold hyperplane",
                            "units": "1"}),
            "redrawn_margin": ("instance", redraws[0],
                               {"long_name": "draws rejected for a tie margin below the minimum or no truncation",
                                "units": "1"}),
            "redrawn_conditioning": ("instance", redraws[1],
                                     {"long_name": "draws rejected for a weight with smallest singular value below "
                                                   "the minimum", "units": "1"}),
            "tolerance": ("oracle", np.array([TOLERANCE, FD_TOLERANCE]),
                          {"long_name": "required worst relative error", "units": "1"}),
        },
        coords={
            "oracle": ("oracle", list(METHODS)),
            "instance": ("instance", np.arange(n_instances)),
            "equation": ("equation", names),
            "theory_reference": ("equation", [EQUATIONS[k] for k in names]),
            "N": ("instance", dims[0], {"long_name": "number of points", "units": "1"}),
            "M": ("instance", dims[1], {"long_name": "width and input dimension", "units": "1"}),
            "L": ("instance", dims[2], {"long_name": "number of hidden layers", "units": "1"}),
            "Q": ("instance", dims[3], {"long_name": "number of clusters", "units": "1"}),
        },
        attrs={
            "title": "reluflow derived formulas against autodiff and finite-difference oracles",
            "seed": str(seed),
            "n_instances": n_instances,
            "tie_margin_min": float(tie_margin_min),
            "min_singular_value": float(MIN_SINGULAR_VALUE),
            "finite_difference_step": float(step),
            "finite_differences": int(finite_differences),
            "relative_error_definition": "||value - reference||_F / ||reference||_F (absolute if the reference is 0)",
        },
    )
    return ds


# --------------------------------------------------------------------------- sympy


@dataclass(frozen=True, repr=False)
class SymbolicCheck:
    """Outcome of :func:`symbolic_checks`: ``passed`` and, for each statement checked, whether it holds."""

    passed: bool
    checks: tuple

    def __repr__(self) -> str:
        lines = [f"<SymbolicCheck passed={self.passed}>"]
        lines += [f"  [{'ok' if ok else 'FAILED'}] {statement}" for statement, ok in self.checks]
        return "\n".join(lines)


def _sympy():
    try:
        import sympy
    except ImportError as exc:
        raise ImportError("symbolic_checks needs sympy, which ships with reluflow's 'test' extra: "
                          "pip install 'reluflow[test]' (or pip install sympy)") from exc
    return sympy


def symbolic_checks() -> SymbolicCheck:
    """Verify symbolically, with sympy, the one-layer one-cluster flow (4.2) and the conservation law of (4.3).

    Statements checked (each by simplifying a difference to 0):

    1. One layer, M = 2, W = diag(λ_1, λ_2) R(φ) for a rotation R(φ), one cluster of N = 3 points
       with symbolic coordinates and target ỹ. The points have truncation patterns (1,1), (1,0)
       and (0,0), so n = (2, 1). The cost is built from the definition τ(x) = W^-1(σ(Wx + b) − b),
       with σ(z) = 0 on truncated and z on untruncated coordinates. Then ḃ = −∂C/∂b gives
       θ̇_k = −(n_k/(λ_k² N))(θ_k − (R ỹ)_k) for k = 1, 2.
    2. The cost of statement 1 is invariant under (λ, b) ↦ (cλ, cb) for c > 0.
    3. θ(t) = ŷ + (θ_0 − ŷ) exp(−n t/(λ² N)) solves θ̇ = −(n/(λ² N))(θ − ŷ) with θ(0) = θ_0.
    4. With d_0 = ŷ − θ_0 > 0 and d_1 = ŷ − u > 0, the time Δt = (λ² N/n) log(d_0/d_1) gives θ(Δt) = u.
    5. For any cost C = f(θ) with θ = −b/λ, the flow ḃ = −∂C/∂b, λ̇ = −∂C/∂λ satisfies
       ḃ = g/λ, λ̇ = θ g/λ, θ̇ = −(1 + θ²) g/λ² with g = f'(θ), and d(λ² + b²)/dt = 0.
    """
    sp = _sympy()
    checks = []

    def is_zero(expr) -> bool:
        return bool(sp.simplify(expr) == 0)

    # 1–2: one layer, one cluster, built from the ReLU definition of τ.
    phi = sp.symbols("phi", real=True)
    lam = sp.symbols("lambda1 lambda2", positive=True)
    b = sp.symbols("b1 b2", real=True)
    y = sp.Matrix(sp.symbols("y1 y2", real=True))
    patterns = [(1, 1), (1, 0), (0, 0)]
    N = len(patterns)
    n = [sum(p[k] for p in patterns) for k in range(2)]
    R = sp.Matrix([[sp.cos(phi), -sp.sin(phi)], [sp.sin(phi), sp.cos(phi)]])

    def cost(lam_, b_):
        W = sp.diag(*lam_) * R
        bv = sp.Matrix(b_)
        W_inv = W.inv()
        total = 0
        for i, pattern in enumerate(patterns):
            x = sp.Matrix(sp.symbols(f"s{i} t{i}", real=True))
            z = W * x + bv
            sigma = sp.Matrix([0 if pattern[k] else z[k] for k in range(2)])
            r = W_inv * (sigma - bv) - y
            total += (r.T * r)[0]
        return total / (2 * N)

    C = cost(lam, b)
    y_hat = R * y
    for k in range(2):
        b_dot = -sp.diff(C, b[k])
        theta_dot = -b_dot / lam[k]  # θ = −b/λ with λ frozen
        expected = -sp.Rational(n[k], N) / lam[k] ** 2 * (-b[k] / lam[k] - y_hat[k])
        checks.append((f"one layer, one cluster: θ̇_{k + 1} = −(n_{k + 1}/(λ_{k + 1}² N))(θ_{k + 1} − (Rỹ)_{k + 1}) "
                       f"with n = {tuple(n)}, N = {N}, from τ(x) = W^-1(σ(Wx + b) − b)",
                       is_zero(theta_dot - expected)))
    c = sp.symbols("c", positive=True)
    checks.append(("the one-layer cost is unchanged by (λ, b) ↦ (cλ, cb), c > 0",
                   is_zero(cost([c * v for v in lam], [c * v for v in b]) - C)))

    # 3–4: closed form between events, and the time of the next event.
    t, lam1, Nn, nn = sp.symbols("t lambda N n", positive=True)
    yk, th0, u = sp.symbols("yhat theta0 u", real=True)
    rate = nn / (lam1**2 * Nn)
    theta_t = yk + (th0 - yk) * sp.exp(-rate * t)
    checks.append(("θ(t) = ŷ + (θ_0 − ŷ) exp(−n t/(λ² N)) solves θ̇ = −(n/(λ² N))(θ − ŷ), θ(0) = θ_0",
                   is_zero(sp.diff(theta_t, t) + rate * (theta_t - yk)) and is_zero(theta_t.subs(t, 0) - th0)))
    d0, d1 = sp.symbols("d0 d1", positive=True)
    dt = sp.log(d0 / d1) / rate
    checks.append(("Δt = (λ² N/n) log((ŷ − θ_0)/(ŷ − u)) gives θ(Δt) = u",
                   is_zero(theta_t.subs({th0: yk - d0, t: dt}) - (yk - d1))))

    # 5: scale-and-bias flow and its conservation law, for an arbitrary cost f(θ).
    lam_s = sp.symbols("lambda", positive=True)
    b_s, theta_s = sp.symbols("b theta", real=True)
    f = sp.Function("f")
    C5 = f(-b_s / lam_s)
    b_dot = -sp.diff(C5, b_s)
    lam_dot = -sp.diff(C5, lam_s)
    g = sp.diff(f(theta_s), theta_s).subs(theta_s, -b_s / lam_s)
    th = -b_s / lam_s
    theta_dot = sp.diff(th, b_s) * b_dot + sp.diff(th, lam_s) * lam_dot
    checks.append(("scale-and-bias flow: ḃ = g/λ, λ̇ = θ g/λ, θ̇ = −(1 + θ²) g/λ² for C = f(θ), θ = −b/λ",
                   is_zero((b_dot - g / lam_s).doit()) and is_zero((lam_dot - th * g / lam_s).doit())
                   and is_zero((theta_dot + (1 + th**2) * g / lam_s**2).doit())))
    checks.append(("conservation: d(λ² + b²)/dt = 2λλ̇ + 2bḃ = 0 for C = f(−b/λ)",
                   is_zero((2 * lam_s * lam_dot + 2 * b_s * b_dot).doit())))
    return SymbolicCheck(passed=all(ok for _, ok in checks), checks=tuple(checks))

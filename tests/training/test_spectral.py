"""Spectral gaps (THEORY §5, S6): Jacobians against autograd, the eigenvalue identity n_k/λ_k²,
the terminal metric, and the bounds along gradient-descent trajectories.

Oracles: autograd (float64) Jacobians of plain forward passes written here, numpy eigvalsh of the
full Gram matrix, and truncation counts computed directly from u = R x and θ.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reluflow as rf
from reluflow.training.gd import train
from reluflow.training.spectral import (
    active_bias_jacobian,
    active_bias_pattern,
    active_set_decay,
    bias_chain_matrix,
    bias_flow_gap,
    bias_flow_parameter_gram,
    bias_flow_rates,
    flow_jacobian,
    gram_eigenvalues,
    output_jacobian,
    spectral_gap,
    spectral_trajectory,
    truncated_bias_jacobian,
)

REL = 1e-10


def assert_close(got, want, floor=1e-4):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    assert np.abs(got - want).max(initial=0) <= REL * max(np.abs(want).max(initial=0), floor)


def hidden(Ws, bs, X):
    x = X
    for W, b in zip(Ws, bs, strict=True):
        x = anp.maximum(anp.dot(x, W.T) + b, 0.0)
    return x


def tau_chain(Wc, bc, X):
    x = X
    for W, b in zip(Wc, bc, strict=True):
        x = anp.linalg.solve(W, (anp.maximum(anp.dot(x, W.T) + b, 0.0) - b).T).T
    return x


def setup(seed, M, L, N, Q):
    rng = np.random.default_rng(seed)
    Ws, bs = rf.random_network(M, L, seed=rng)
    return (np.stack(Ws), np.stack(bs), rng.standard_normal((N, M)), rng.standard_normal((Q, M)),
            rng.standard_normal(Q))


# ---------------------------------------------------------------- Jacobians


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), M=st.integers(1, 4), L=st.integers(1, 3), N=st.integers(1, 6),
       Q=st.integers(1, 3))
def test_output_jacobian_matches_autograd(seed, M, L, N, Q):
    Ws, bs, X, Wo, bo = setup(seed, M, L, N, Q)

    def out(Ws_, bs_, Wo_, bo_):
        return (anp.dot(hidden(Ws_, bs_, X), Wo_.T) + bo_).ravel()

    refs = [autograd.jacobian(out, argnum=a)(Ws, bs, Wo, bo).reshape(N * Q, -1) for a in range(4)]
    D = output_jacobian(Ws, bs, Wo, bo, X, parameters=("weights", "biases", "W_out", "b_out"))
    assert_close(D, np.concatenate(refs, axis=1))
    assert_close(output_jacobian(list(Ws), list(bs), Wo, bo, X), refs[1])
    assert_close(output_jacobian(Ws, bs, Wo, bo, X, parameters=["b_out", "biases"]),
                 np.concatenate([refs[3], refs[1]], axis=1))

    # cumulative biases, with the layer weights and the terminal layer (W_out, b_out) fixed
    Wc, bc = (np.stack(a) for a in rf.cumulative_parameters(list(Ws), list(bs)))

    def out_cum(bc_):
        b_layer = [bc_[0]] + [bc_[l] - anp.dot(Ws[l], bc_[l - 1]) for l in range(1, L)]
        return (anp.dot(hidden(Ws, b_layer, X), Wo.T) + bo).ravel()

    assert_close(output_jacobian(Ws, bs, Wo, bo, X, parameters="cumulative_biases"),
                 autograd.jacobian(out_cum)(bc).reshape(N * Q, -1))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), M=st.integers(1, 4), L=st.integers(1, 3), N=st.integers(1, 6))
def test_truncated_bias_jacobian_and_chain_matrix(seed, M, L, N):
    Ws, bs, X, _, _ = setup(seed, M, L, N, 1)
    Wc, bc = (np.stack(a) for a in rf.cumulative_parameters(list(Ws), list(bs)))
    D = truncated_bias_jacobian(Wc, bc, X)
    assert_close(D, autograd.jacobian(lambda b: tau_chain(Wc, b, X).ravel())(bc).reshape(N * M, L * M))

    # the chain matrix turns it into the Jacobian with respect to the layer biases b_ℓ
    def by_layer_biases(bs_):
        Wp, bp = anp.eye(M), anp.zeros(M)
        for W, b in zip(Ws, bs_, strict=True):
            Wp, bp = anp.dot(W, Wp), anp.dot(W, bp) + b
        return anp.linalg.solve(Wp, (hidden(Ws, bs_, X) - bp).T).T.ravel()

    J = bias_chain_matrix(Ws)
    assert_close(D @ J, autograd.jacobian(by_layer_biases)(bs).reshape(N * M, L * M))
    # J Jᵀ is the kernel K_{ℓℓ'} = Σ_{k ≤ min(ℓ,ℓ')} (W_ℓ⋯W_{k+1})(W_ℓ'⋯W_{k+1})ᵀ of §4.5
    def prod(l, k):  # W_l ⋯ W_{k+1}, 1-based layers, empty product = 1
        P = np.eye(M)
        for m in range(k + 1, l + 1):
            P = Ws[m - 1] @ P
        return P

    K = np.block([[sum(prod(l, k) @ prod(lp, k).T for k in range(1, min(l, lp) + 1)) for lp in range(1, L + 1)]
                  for l in range(1, L + 1)])
    assert_close(J @ J.T, K)


# ---------------------------------------------------------------- the one-layer eigenvalue identity


def adapted_layer(seed, M, N, spread=1.0):
    net = rf.random_adapted_network(M, 1, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = spread * rng.standard_normal((N, M))
    R, lam, theta = net.frames[0], net.scales[0], net.thresholds[0]
    W, b = lam[:, None] * R, -lam * theta
    counts = (X @ R.T < theta).sum(axis=0)  # u_k < θ_k, computed directly
    return W, b, X, R, lam, counts


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), M=st.integers(1, 4), N=st.integers(1, 15))
def test_one_layer_gram_eigenvalues_are_counts_over_scales_squared(seed, M, N):
    W, b, X, R, lam, counts = adapted_layer(seed, M, N)
    D = autograd.jacobian(lambda b_: tau_chain([W], [b_], X).ravel())(b)  # (N·M, M), independent oracle
    eig = np.linalg.eigvalsh(D @ D.T)
    nonzero = np.sort(eig[eig > 1e-8])
    want = np.sort(counts[counts > 0] / lam[counts > 0] ** 2)
    assert nonzero.shape == want.shape
    assert np.abs(nonzero - want).max(initial=0) <= 1e-10 * max(want.max(initial=0), 1)
    assert np.abs(eig[eig <= 1e-8]).max(initial=0) <= 1e-12
    assert_close(D.T @ D, np.diag(counts / lam**2))
    # the library's closed forms and generic spectral routines agree with the oracle
    assert_close(bias_flow_rates(lam, counts), counts / lam**2)
    assert_close(bias_flow_parameter_gram(W, b, X), D.T @ D)
    gap = bias_flow_gap(lam, counts)
    if counts.any():
        assert abs(gap - want.min()) <= 1e-10 * want.min()
        assert abs(spectral_gap(truncated_bias_jacobian([W], [b], X), nonzero=True) - gap) <= 1e-10 * gap
    else:
        assert np.isnan(gap) and np.isnan(spectral_gap(np.zeros((N * M, M)), nonzero=True))
    assert spectral_gap(D) == (0.0 if N * M > M else pytest.approx(eig.min(), abs=1e-12))
    assert_close(gram_eigenvalues(D), np.sort(np.clip(eig, 0, None)), floor=1.0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), M=st.integers(1, 4), N=st.integers(1, 12), Q=st.integers(1, 4))
def test_terminal_metric_enters_between_the_factors(seed, M, N, Q):
    W, b, X, R, lam, counts = adapted_layer(seed, M, N)
    rng = np.random.default_rng(seed + 2)
    W_out = rng.standard_normal((Q, M))
    W2 = W_out @ W  # W^(2) = W_out W^(1)
    G = W2.T @ W2  # metric pulled back to input space
    b2 = rng.standard_normal(Q)

    # outputs with the cumulative terminal (W^(2), b^(2)) fixed: x^(2) = W^(2) x^(τ,1) + b^(2)
    def out(b_):
        return (anp.dot(anp.maximum(anp.dot(X, W.T) + b_, 0.0), W_out.T) + b2 - anp.dot(W_out, b_)).ravel()

    D_out = autograd.jacobian(out)(b)  # (N·Q, M)
    closed = bias_flow_parameter_gram(W, b, X, W_out=W_out)
    assert_close(closed, D_out.T @ D_out)
    D = truncated_bias_jacobian([W], [b], X).reshape(N, M, M)
    assert_close(closed, np.einsum("nmk,mp,npj->kj", D, G, D))  # Dᵀ (1 ⊗ G) D
    eig = np.linalg.eigvalsh(D_out @ D_out.T)
    big = np.sort(eig[eig > 1e-8 * max(eig.max(), 1)])
    ce = np.linalg.eigvalsh(closed)
    assert_close(big, np.sort(ce[ce > 1e-8 * max(ce.max(), 1)]), floor=1.0)
    # with W^(2) orthogonal the output cost is the input cost: back to diag(n_k/λ_k²)
    O = np.linalg.qr(rng.standard_normal((M, M)))[0]
    assert_close(bias_flow_parameter_gram(W, b, X, W_out=O @ np.linalg.inv(W)), np.diag(counts / lam**2))
    # with the *layer* bias b_out fixed instead, the untruncated coordinates move: D_i = W_out (1 − P_i)
    T = (X @ W.T + b <= 0).astype(float)
    Dl = output_jacobian([W], [b], W_out, b2, X, parameters="cumulative_biases").reshape(N, Q, M)
    assert_close(Dl, W_out[None] * (1 - T)[:, None, :])


# ---------------------------------------------------------------- bounds along trajectories


def test_output_cost_bound_along_overparametrised_descent():
    rng = np.random.default_rng(5)
    M, L, N, Q = 5, 2, 4, 1
    Ws, bs = rf.random_network(M, L, seed=6, bias_scale=1.0)
    bs = [b + 1.0 for b in bs]  # mostly active units: D D^T of full rank
    X, Y = rng.standard_normal((N, M)), rng.standard_normal((N, Q))
    Wo, bo = rng.standard_normal((Q, M)), np.zeros(Q)
    traj = train(Ws, bs, X, Y, mode="full", cost="output", lr=0.02, weight_lr_ratio=0.5, n_steps=300,
                 W_out=Wo, b_out=bo, train_terminal=True)
    sp = spectral_trajectory(traj, X, Y)
    assert (sp.lambda_min.values > 1e-3).all() and (sp.gram_rank.values == N * Q).all()
    assert (sp.cost.values <= sp.cost_bound.values * (1 + 1e-12)).all()
    assert sp.cost.values[-1] < 0.5 * sp.cost.values[0]
    assert np.allclose(sp.residual_orthogonal_norm.values, 0, atol=1e-12)
    for name, var in sp.data_vars.items():
        assert var.attrs["units"] == "1" and var.attrs["long_name"], name

    # the output flow ∂_t f = −(1/N) D H Dᵀ (f − y): one tiny step, with H = diag(ρ weights, 1 biases)
    eta, rho = 1e-7, 0.5
    step = train(Ws, bs, X, Y, mode="full", cost="output", lr=eta, weight_lr_ratio=rho, n_steps=1,
                 W_out=Wo, b_out=bo, train_terminal=True)
    D = output_jacobian(Ws, bs, Wo, bo, X, parameters=("weights", "biases", "W_out", "b_out"))
    nW, nb = L * M * M, L * M
    H = np.concatenate([np.full(nW, rho), np.ones(nb), np.full(Q * M, rho), np.ones(Q)])
    f0 = hidden(Ws, bs, X) @ Wo.T + bo
    Wc, bc = step.cumulative_weights.values[1], step.cumulative_biases.values[1]
    W1, W2 = Wc[0], Wc[1] @ np.linalg.inv(Wc[0])
    f1 = hidden([W1, W2], [bc[0], bc[1] - W2 @ bc[0]], X) @ step.output_weights.values[1].T + \
        step.output_biases.values[1]
    predicted = -(D * H) @ D.T @ (f0 - Y).ravel() / N
    assert np.abs((f1 - f0).ravel() / eta - predicted).max() <= 1e-5 * np.abs(predicted).max()


def test_bias_flow_residual_split_along_descent():
    """One adapted layer, cumulative bias flow: between events the residual's component orthogonal to
    range(D) is frozen and the component in range(D) decays at least at the rate λ_min⁺/N."""
    M, N, lr = 2, 12, 0.05
    net = rf.adapted_network([np.eye(M)], [[1.0, 1.5]], [[0.9, 1.0]])
    rng = np.random.default_rng(8)
    X = 0.3 * rng.standard_normal((N, M)) + 1.0  # one cluster around (1, 1), thresholds inside it
    Y = np.tile([2.5, 2.0], (N, 1))  # target beyond the cluster: the thresholds sweep through it
    Ws, bs = rf.layer_parameters(*net.cumulative_parameters())
    traj = train(Ws, bs, X, Y, mode="adapted", weight_lr_ratio=0.0, lr=lr, n_steps=400)
    sp = spectral_trajectory(traj, X, Y)
    # rank-deficient: λ_min(D Dᵀ), computed from the matrix, is 0 up to round-off; the classical bound says nothing
    assert (np.abs(sp.lambda_min.values) <= 1e-12 * sp.gram_eigenvalues.values.max()).all()
    counts = traj.n_truncated.values[:, 0]
    lam = traj.scales.values[:, 0]
    gaps = np.array([bias_flow_gap(lam[s], counts[s]) for s in range(len(counts))])
    assert_close(sp.lambda_min_plus.values, gaps, floor=1.0)
    theta = traj.thresholds.values[:, 0]
    pattern = X[None, :, :] < theta[:, None, :]  # (step, point, coordinate), computed directly
    same = np.array([np.array_equal(pattern[s], pattern[s + 1]) for s in range(len(pattern) - 1)])
    assert same.sum() > 300 and (~same).sum() >= 3  # several events, long quiet stretches
    orth, rng_norm = sp.residual_orthogonal_norm.values, sp.residual_range_norm.values
    for s in np.flatnonzero(same):
        assert abs(orth[s + 1] - orth[s]) <= 1e-12 * max(orth[s], 1)
        assert rng_norm[s + 1] <= np.exp(-lr * gaps[s] / N) * rng_norm[s] * (1 + 1e-12) + 1e-15
    assert counts[-1].tolist() == [N, N]  # swept through: every point truncated in both coordinates
    assert sp.cost.values[-1] < 1e-3 * sp.cost.values[0]  # the cluster collapses onto its target
    assert (sp.cost.values <= sp.cost_bound.values * (1 + 1e-12)).all()


def test_layer_bias_trajectory_uses_the_kernel():
    """Mode 'biases' with the input cost: λ_min⁺ of D K Dᵀ with K = J Jᵀ, against autograd at step 0."""
    rng = np.random.default_rng(2)
    M, L, N = 2, 2, 6
    Ws, bs = rf.random_network(M, L, seed=3)
    X, Y = rng.standard_normal((N, M)), rng.standard_normal((N, M))
    traj = train(Ws, bs, X, Y, mode="biases", lr=0.1, n_steps=5)
    sp = spectral_trajectory(traj, X, Y)

    def by_layer_biases(bs_):
        Wp, bp = anp.eye(M), anp.zeros(M)
        for W, b in zip(Ws, bs_, strict=True):
            Wp, bp = anp.dot(W, Wp), anp.dot(W, bp) + b
        return anp.linalg.solve(Wp, (hidden(Ws, bs_, X) - bp).T).T.ravel()

    D = autograd.jacobian(by_layer_biases)(np.stack(bs)).reshape(N * M, L * M)
    eig = np.linalg.eigvalsh(D @ D.T)
    pos = eig[eig > 1e-9]
    assert abs(sp.lambda_min_plus.values[0] - pos.min()) <= 1e-10 * pos.max()
    assert sp.gram_rank.values[0] == pos.size


LAYOUTS = [("biases", "input", False, 1.0), ("biases", "output", False, 1.0), ("biases", "output", True, 1.0),
           ("cumulative", "input", False, 0.0), ("cumulative", "output", True, 0.0), ("adapted", "input", False, 0.0),
           ("adapted", "output", False, 0.0), ("full", "output", False, 0.5), ("full", "output", True, 0.3)]


@pytest.mark.parametrize("mode,cost,terminal,rho", LAYOUTS)
def test_flow_jacobian_predicts_one_small_step(mode, cost, terminal, rho):
    """Δf/η → −(1/N) (D H^½)(D H^½)ᵀ (f − y) for every trajectory layout spectral_trajectory supports."""
    rng = np.random.default_rng(12)
    M, L, N, Q, eta = 3, 2, 7, 2, 1e-7
    if mode == "adapted":
        Ws, bs = rf.layer_parameters(*rf.random_adapted_network(M, L, seed=1).cumulative_parameters())
    else:
        Ws, bs = rf.random_network(M, L, seed=1)
    X = rng.standard_normal((N, M))
    Y = rng.standard_normal((N, M if cost == "input" else Q))
    Wo, bo = rng.standard_normal((Q, M)), rng.standard_normal(Q)
    traj = train(Ws, bs, X, Y, mode=mode, cost=cost, lr=eta, weight_lr_ratio=rho, n_steps=1, W_out=Wo, b_out=bo,
                 train_terminal=terminal)

    def outputs(s):  # computed here from the recorded parameters, independently of reluflow.training.spectral
        Wc, bc = traj.cumulative_weights.values[s], traj.cumulative_biases.values[s]
        if cost == "input":
            return tau_chain(Wc, bc, X)
        W2 = Wc[1] @ np.linalg.inv(Wc[0])
        x = hidden([Wc[0], W2], [bc[0], bc[1] - W2 @ bc[0]], X)
        return x @ traj.output_weights.values[s].T + traj.output_biases.values[s]

    D = flow_jacobian(traj, X, index=0)
    f0, f1 = outputs(0), outputs(1)
    predicted = -D @ (D.T @ (f0 - Y).ravel()) / N
    assert np.abs((f1 - f0).ravel() / eta - predicted).max() <= 1e-5 * np.abs(predicted).max()
    assert np.array_equal(flow_jacobian(traj, X, index=-1), flow_jacobian(traj, X, index=1))


# ---------------------------------------------------------------- errors


def test_errors():
    Ws, bs, X, Wo, bo = setup(0, 3, 2, 5, 2)
    with pytest.raises(ValueError, match="parameters must be names from"):
        output_jacobian(Ws, bs, Wo, bo, X, parameters="thresholds")
    with pytest.raises(ValueError, match="must not repeat"):
        output_jacobian(Ws, bs, Wo, bo, X, parameters=["biases", "biases"])
    with pytest.raises(ValueError, match="at least one group"):
        output_jacobian(Ws, bs, Wo, bo, X, parameters=[])
    with pytest.raises(ValueError, match=r"W_out must have shape \(Q, 3\)"):
        output_jacobian(Ws, bs, Wo[:, :2], bo, X)
    with pytest.raises(ValueError, match=r"b_out must have shape \(2,\)"):
        output_jacobian(Ws, bs, Wo, bo[:1], X)
    with pytest.raises(ValueError, match="ill-conditioned"):
        truncated_bias_jacobian([np.diag([1.0, 1.0, 1e-12])], [np.zeros(3)], X)
    with pytest.raises(ValueError, match="scales must be positive"):
        bias_flow_rates([1.0, 0.0], [1, 2])
    with pytest.raises(ValueError, match="counts must be non-negative integers"):
        bias_flow_gap([1.0, 1.0], [1.5, 2])
    with pytest.raises(ValueError, match="counts must have the shape of scales"):
        bias_flow_gap([1.0, 1.0], [1, 2, 3])
    with pytest.raises(ValueError, match="D must be finite"):
        gram_eigenvalues(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="rtol must be"):
        spectral_gap(np.eye(2), nonzero=True, rtol=-1.0)
    with pytest.raises(TypeError, match="trajectory must be an xarray.Dataset"):
        spectral_trajectory({"cost": 1}, X, X)
    Y = np.zeros((5, 3))
    traj = train(Ws, bs, X, Y, mode="full", n_steps=2)
    with pytest.raises(ValueError, match="spectral_trajectory supports"):
        spectral_trajectory(traj, X, Y)
    traj = train(Ws, bs, X, Y, mode="biases", n_steps=2)
    with pytest.raises(ValueError, match="do not match the trajectory"):
        spectral_trajectory(traj, X, Y + 1.0)
    with pytest.raises(ValueError, match=r"targets for cost='input' must have shape \(N, 3\) = \(5, 3\)"):
        spectral_trajectory(traj, X, Y[:, :2])
    with pytest.raises(ValueError, match=r"index must be an integer in \[-3, 2\]"):
        flow_jacobian(traj, X, index=3)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3\)"):
        flow_jacobian(traj, X[:, :2])
    traj = train(Ws, bs, X, Y, mode="biases", n_steps=2, point_weights=np.arange(1.0, 6.0))
    with pytest.raises(ValueError, match="uniform point weights"):
        spectral_trajectory(traj, X, Y)


# ------------------------------------------------------------------ the corrected truncation-regime statement


def _line_net(theta):
    return rf.adapted_network([np.eye(1)], [[1.0]], [[theta]])


def test_active_bias_pattern_resolves_ties_by_filippov():
    """Each case worked out by hand from θ̇ = −(1/(λ²N)) Σ_{i truncated} (θ − ŷ_i), one coordinate."""
    X = np.array([[-1.0], [0.0]])
    # the tied point's target lies above θ = 0: the field moves θ up through it, so it stays truncated
    A, rest = active_bias_pattern(_line_net(0.0), X, np.array([[5.0], [1.0]]))
    assert A[:, 0].tolist() == [True, True] and not rest[0]
    # both targets far below: θ moves down, releasing the tied point, and keeps moving (the strict point drives it)
    A, rest = active_bias_pattern(_line_net(0.0), X, np.array([[-5.0], [-5.0]]))
    assert A[:, 0].tolist() == [True, False] and not rest[0]
    # with the tied point: −(0 − 3) − (0 + 10) < 0; without it: 3 > 0. Pushed back from both sides: sliding
    A, rest = active_bias_pattern(_line_net(0.0), X, np.array([[3.0], [-10.0]]))
    assert rest[0]
    # the threshold sits on its last point, whose target lies below: released, nothing left to move it
    A, rest = active_bias_pattern(_line_net(-1.0), X, np.array([[-3.0], [0.0]]))
    assert A[:, 0].tolist() == [False, False] and rest[0]
    # no tie: the plain pattern u < θ, nothing rests
    A, rest = active_bias_pattern(_line_net(-0.5), X, np.array([[-3.0], [0.0]]), thresholds=[-0.5])
    assert A[:, 0].tolist() == [True, False] and not rest[0]


@given(seed=st.integers(0, 2**32 - 1), M=st.integers(1, 4), N=st.integers(1, 12))
@settings(max_examples=30, deadline=None)
def test_active_bias_jacobian_is_the_plain_jacobian_away_from_ties(seed, M, N):
    rng = np.random.default_rng(seed)
    net = rf.random_adapted_network(M, 1, seed=rng)
    X = rng.normal(size=(N, M))
    Y = rng.normal(size=(N, M))
    Wc, bc = net.cumulative_parameters()
    assert np.abs(X @ net.frames[0].T - net.thresholds[0]).min() > 1e-6  # no tie (probability 1)
    assert_close(active_bias_jacobian(net, X, Y), truncated_bias_jacobian(Wc, bc, X))


def test_active_set_decay_on_resting_thresholds():
    """Both thresholds of this problem come to rest (one slides, one releases its last point)."""
    net = rf.adapted_network([np.eye(2)], [[1.0, 1.0]], [[-0.5, 0.5]])
    X = np.array([[-1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    Y = np.array([[3.0, -1.0], [-10.0, 0.0], [0.0, -1.5]])
    times = np.linspace(0.05, 6.0, 120)
    sol = rf.solve(net, X, Y, times, method="exact", record_events=False)
    d = active_set_decay(sol, net, X, Y)
    assert d["resting"][-1].tolist() == [True, True] and d["resting"][0].tolist() == [False, False]
    assert d["pairs"] > 50 and d["resting_pairs"] > 20
    assert d["drift"] <= 1e-12 and d["slack"] <= 1e-12 and d["rest_motion"] == 0.0
    # the tie-convention Jacobian keeps the sliding point's column, whose residual does not move
    spec = spectral_trajectory(sol, X, Y, net=net)
    rr = spec.residual_range_norm.values
    assert rr[-1] > 0.9 * rr[-10]  # far from e^{-λ⁺ Δt/N} decay with λ⁺ = 1: e^{-9·0.05/3} = 0.86


def test_active_jacobian_gives_the_velocity_of_the_residual():
    """∂_t r = −(1/N) D_A D_Aᵀ r, checked by central differences in time of the exact solution (any state)."""
    net = rf.adapted_network([np.eye(2)], [[1.0, 1.0]], [[-0.5, 0.5]])
    X = np.array([[-1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    Y = np.array([[3.0, -1.0], [-10.0, 0.0], [0.0, -1.5]])
    h = 1e-5
    for t in (0.2, 2.0, 5.0):  # moving; θ_0 sliding; both resting
        sol = rf.solve(net, X, Y, [t - h, t, t + h], method="exact", record_events=False)
        th = sol.thresholds.values[-3:, 0]  # solve also records t = 0
        r = [(np.maximum(X, th[s]) - Y).ravel() for s in range(3)]  # identity frame: x^(τ) = max(x, θ)
        D = active_bias_jacobian(net, X, Y, thresholds=th[1])
        np.testing.assert_allclose((r[2] - r[0]) / (2 * h), -D @ (D.T @ r[1]) / 3, atol=1e-8)


def test_active_statement_errors():
    deep = rf.random_adapted_network(2, 2, seed=0)
    X, Y = np.zeros((3, 2)), np.zeros((3, 2))
    with pytest.raises(ValueError, match="L = 2"):
        active_bias_pattern(deep, X, Y)
    with pytest.raises(TypeError, match="net"):
        active_bias_jacobian("net", X, Y)
    one = rf.random_adapted_network(2, 1, seed=0)
    with pytest.raises(ValueError, match="thresholds"):
        active_bias_pattern(one, X, Y, thresholds=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="targets"):
        active_bias_jacobian(one, X, np.zeros((2, 2)))
    with pytest.raises(TypeError, match="solution"):
        active_set_decay("sol", one, X, Y)

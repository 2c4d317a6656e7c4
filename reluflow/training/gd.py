"""Gradient descent on ReLU networks, with hand-written backpropagation (THEORY.md §3, §4.5).

Points are rows (``X.shape == (N, d0)``); weights are (out, in). The hidden layers are
x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ) with W_ℓ of shape (d_ℓ, d_{ℓ-1}); an optional affine terminal layer gives
z = x^(L+1) = W_out x^(L) + b_out ∈ R^Q. A network is *square* when every d_ℓ = d0 = M: the paper's setting,
where the cumulative parameters W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ and the truncation maps exist.
Each point carries a weight w_i (uniform w_i = 1/N by default, which gives the 1/(2N) of THEORY.md).

Map from formula to function:

- C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|²,  x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L))   → ``cost="input"`` (square only)
- C_out = ½ Σ_i w_i |W_out x_i^(L) + b_out − y_i|²                           → ``cost="output"``
- C_CE = Σ_i w_i (−log softmax(z_i)[label_i]) = Σ_i w_i (logsumexp(z_i) − z_i[label_i]) → ``cost="cross_entropy"``
- ∇C over the layer parameters (W_ℓ, b_ℓ, W_out, b_out), by backpropagation    → :func:`backprop_gradient`
- ∇_c C = (∂p/∂c)ᵀ ∇_p C over the cumulative parameters c = (W^(ℓ), b^(ℓ)),
  and ∂C/∂λ_{ℓ,k} = ⟨row k of ∇_{W^(ℓ)} C, R_{ℓ,k}⟩ for W^(ℓ) = Λ_ℓ R_ℓ          → :func:`backprop_cumulative_gradient`
- v ← μ v + g,  p ← p − η_p v (μ = 0: plain descent), recorded every k steps   → :func:`train`
- the mini-batch order: one permutation of 0..N-1 per epoch, cut into batches  → :func:`minibatches`

The four modes of :func:`train` (η is the bias learning rate ``lr``, ρ the ``weight_lr_ratio``):

- ``"biases"``: layer biases b_ℓ ← b_ℓ − η ∂C/∂b_ℓ; weights frozen (the flow of §4.5 with kernel K).
- ``"adapted"``: W^(ℓ) = Λ_ℓ R_ℓ with the frames R_ℓ frozen; λ_ℓ ← λ_ℓ − ρη ∂C/∂λ_ℓ and
  b^(ℓ) ← b^(ℓ) − η ∇_{b^(ℓ)} C (ρ = 1: the scale-and-bias flow of §4.3; ρ = 0: the bias flow of §4.2).
- ``"full"``: W_ℓ ← W_ℓ − ρη ∂C/∂W_ℓ and b_ℓ ← b_ℓ − η ∂C/∂b_ℓ, unconstrained.
- ``"cumulative"``: W^(ℓ) ← W^(ℓ) − ρη ∇_{W^(ℓ)} C and b^(ℓ) ← b^(ℓ) − η ∇_{b^(ℓ)} C.

Rectangular (generic) networks d0 → d1 → … → dL → Q are trained in modes ``"full"`` and ``"biases"`` with
the costs ``"output"`` and ``"cross_entropy"``; ``"adapted"``, ``"cumulative"`` and ``cost="input"`` need the
cumulative parameters, hence square invertible layers, and refuse anything else.

With ``train_terminal=True`` (output and cross-entropy costs) the terminal layer is trained too: b_out with
rate η in every mode, and W_out with rate ρη in every mode except ``"biases"``. The ``time`` coordinate
of a trajectory is t = step·η, so that gradient descent approximates the gradient flow
∂_t b = −∇_b C, ∂_t W = −ρ ∇_W C.

Mini-batches (``batch_size=B < N``): each step uses one batch 𝓑 of :func:`minibatches` (seeded by ``seed``;
a fresh permutation every epoch, the last batch of an epoch holds the N mod B remaining points), with the
point weights restricted to 𝓑 and renormalised to the full-batch total, w_i^𝓑 = w_i · (Σ_j w_j)/(Σ_{j∈𝓑} w_j),
so the batch cost estimates C on the scale of the full-batch cost (uniform weights: w_i^𝓑 = 1/|𝓑|). A batch
whose points all have weight 0 gives a zero gradient. ``batch_size=N`` is the full batch in its original order,
so it is full-batch gradient descent bit for bit.

Ties: a pre-activation exactly 0 counts as truncated (σ'(0) = 0), as in
:func:`reluflow.truncation_pattern`.

Implementation: the layer modes run one forward and one backward pass per step in buffers allocated once
per run (:class:`_Workspace`): ``np.matmul(..., out=...)`` and in-place ufuncs, with the parameters
double-buffered (:class:`_Parameters`), so a step allocates nothing of size N and the memory a run uses does
not depend on what ran before it. ``benchmarks/gd.py`` compares a step with the matrix products it needs.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.results.schema import STATUS_CODES, make_dataset
from reluflow.theory.adapted import adaptedness, decompose_adapted
from reluflow.theory.kernels import cumulative_pass, forward_pass, layer_pass
from reluflow.theory.truncation import truncation_pattern
from reluflow.validation import (
    MAX_CONDITION,
    as_labels,
    as_nonnegative_float,
    as_point_weights,
    as_points,
    as_positive_float,
    as_real,
    as_targets,
    as_terminal_layer,
    as_tolerance,
    check_memory,
    check_positive_int,
    validate_layers,
)

__all__ = ["MODES", "COSTS", "CostGradient", "backprop_gradient", "backprop_cumulative_gradient", "minibatches",
           "progress_enabled", "train"]

#: Training modes of :func:`train`.
MODES = ("biases", "adapted", "full", "cumulative")
#: Costs: the Euclidean cost in the input layer, the squared error on output targets, the cross-entropy on labels.
COSTS = ("input", "output", "cross_entropy")
#: The modes and costs that need square invertible layers (they use the cumulative parameters).
SQUARE_MODES = ("adapted", "cumulative")
SQUARE_COSTS = ("input",)

#: Runs with at least this many steps show a progress bar when stderr is a terminal.
PROGRESS_MIN_STEPS = 2000


@dataclass(frozen=True, repr=False)
class CostGradient:
    """A cost value and its gradient, in layer or in cumulative coordinates.

    ``weights`` and ``biases`` are ∂C/∂W_ℓ, ∂C/∂b_ℓ (``coordinates == "layer"``) or ∇_{W^(ℓ)} C, ∇_{b^(ℓ)} C
    (``coordinates == "cumulative"``): arrays (L, M, M) and (L, M) for a square network, tuples of L arrays
    (d_ℓ, d_{ℓ-1}) and (d_ℓ,) for a rectangular one; ``W_out`` (Q, d_L) and ``b_out`` (Q,) are ∂C/∂W_out,
    ∂C/∂b_out (None without a terminal layer); ``scales`` (L, M) is ∂C/∂λ_ℓ at fixed row directions
    R_ℓ = Λ_ℓ^-1 W^(ℓ) (cumulative coordinates only).
    """

    cost: float
    weights: np.ndarray | tuple
    biases: np.ndarray | tuple
    W_out: np.ndarray | None
    b_out: np.ndarray | None
    scales: np.ndarray | None
    coordinates: str

    def __repr__(self) -> str:
        widths = [self.weights[0].shape[1]] + [b.shape[0] for b in self.biases]
        return f"<CostGradient in {self.coordinates} coordinates, L={len(self.biases)}, " \
               f"widths={'-'.join(map(str, widths))}, cost={self.cost:.6g}>"


# ---------------------------------------------------------------------------------------------
# The numerical core: plain arrays, no validation (callers validate at the boundary).


class _Workspace:
    """Preallocated buffers of one forward and backward pass over n points.

    ``A[ℓ]`` (n, d_ℓ) holds x^(ℓ) (``A[0]`` is the input, not a buffer); ``G[ℓ-1]`` (n, d_ℓ) holds the adjoint of
    x^(ℓ), then of z_ℓ; ``R`` (n, Q) the residual, or the logits and then their adjoint. ``Xb, Yb, wb`` hold
    a mini-batch gathered by :meth:`load`.
    """

    def __init__(self, widths, n, n_out, cost, y_shape):
        self.cost = cost
        self.A = [None] + [np.empty((n, d)) for d in widths[1:]]
        self.G = [np.empty((n, d)) for d in widths[1:]]
        self.mask = [np.empty((n, d), dtype=bool) for d in widths[1:]]
        self.R = np.empty((n, n_out))
        self.ones = np.ones(n)
        self.sq = np.empty(n)
        if cost == "input":
            self.T = np.empty((n, widths[0]))
            self.XT = np.empty((n, widths[0]))
        if cost == "cross_entropy":
            self.E = np.empty((n, n_out))
            self.m = np.empty(n)
            self.ones_q = np.ones(n_out)
            self.rows = np.arange(n)
        self.Xb = np.empty((n, widths[0]))
        self.Yb = np.empty((n,) + tuple(y_shape), dtype=np.intp if cost == "cross_entropy" else np.float64)
        self.wb = np.empty(n)

    def load(self, X, Y, w, idx, total):
        """Gather the batch ``idx``; its point weights renormalised to sum to ``total``."""
        np.take(X, idx, axis=0, out=self.Xb)
        np.take(Y, idx, axis=0, out=self.Yb)
        np.take(w, idx, out=self.wb)
        s = float(self.wb.sum())
        if s > 0:
            np.multiply(self.wb, total / s, out=self.wb)
        return self.Xb, self.Yb, self.wb

    def run(self, Ws, bs, W_out, b_out, X, Y, w, grads=None, Wc=None, bc=None):
        """C; with ``grads = (gW, gb, gWo, gbo)`` (lists of arrays; None entries are skipped) also ∇C, written there.

        Forward z_ℓ = x^(ℓ-1) W_ℓᵀ + b_ℓ, x^(ℓ) = σ(z_ℓ); backward z̄_ℓ = x̄^(ℓ) ⊙ 1[z_ℓ > 0],
        ∂C/∂W_ℓ = z̄_ℓᵀ x^(ℓ-1), ∂C/∂b_ℓ = 1ᵀ z̄_ℓ, x̄^(ℓ-1) = z̄_ℓ W_ℓ. The input cost (square only) needs the
        cumulative ``Wc, bc``: C depends on W^(L), b^(L) directly, with adjoints −Σ v_i x_i^(τ,L)ᵀ and −Σ v_i
        (v_i = (W^(L))^-T w_i r_i), which flow back through W^(ℓ) = W_ℓ W^(ℓ-1), b^(ℓ) = W_ℓ b^(ℓ-1) + b_ℓ.
        """
        A, L, R = self.A, len(Ws), self.R
        A[0] = X
        for l in range(L):
            z = A[l + 1]
            np.matmul(A[l], Ws[l].T, out=z)
            np.add(z, bs[l], out=z)
            np.maximum(z, 0.0, out=z)  # x^(ℓ); 1[z > 0] = 1[x > 0] is recovered from it
        x = A[L]
        cost = self.cost
        if cost == "input":
            # one small (M, M) inverse, then matrix products over the points: much faster than N-column
            # triangular solves, and as accurate for the condition numbers we accept (≤ max_condition)
            Winv = np.linalg.inv(Wc[-1])
            np.subtract(x, bc[-1], out=self.T)
            np.matmul(self.T, Winv.T, out=self.XT)  # x^(τ,L)
            np.subtract(self.XT, Y, out=R)
            C = 0.5 * float(np.dot(w, np.einsum("ij,ij->i", R, R, out=self.sq)))
        elif cost == "output":
            np.matmul(x, W_out.T, out=R)
            np.add(R, b_out, out=R)
            np.subtract(R, Y, out=R)
            C = 0.5 * float(np.dot(w, np.einsum("ij,ij->i", R, R, out=self.sq)))
        else:  # cross-entropy with log-sum-exp shifted by the largest logit
            E = self.E
            np.matmul(x, W_out.T, out=R)
            np.add(R, b_out, out=R)
            m = self.m
            if R.shape[1] <= 64:  # a running maximum over the columns: faster than a reduction along short rows
                np.copyto(m, R[:, 0])
                for q in range(1, R.shape[1]):
                    np.maximum(m, R[:, q], out=m)
            else:
                np.max(R, axis=1, out=m)
            np.subtract(R, m[:, None], out=R)  # s_i = z_i − max_q z_iq ≤ 0
            np.exp(R, out=E)
            np.matmul(E, self.ones_q, out=self.sq)  # Σ_q exp(s_iq) ∈ [1, Q]
            C = float(np.dot(w, np.log(self.sq) - R[self.rows, Y]))
        if grads is None:
            return C
        gW, gb, gWo, gbo = grads
        AW = Ab = None
        if cost == "input":
            np.multiply(R, w[:, None], out=R)
            G = self.G[L - 1]
            np.matmul(R, Winv, out=G)  # rows of (W^(L))^-T w r
            AW = -(G.T @ self.XT)
            Ab = -(self.ones @ G)
        else:
            if cost == "cross_entropy":  # ∂C/∂z_i = w_i (softmax(z_i) − e_{label_i})
                np.divide(w, self.sq, out=m)  # w_i / Σ_q exp(s_iq)
                np.multiply(E, m[:, None], out=R)
                R[self.rows, Y] -= w
            else:
                np.multiply(R, w[:, None], out=R)
            if gWo is not None:
                np.matmul(R.T, x, out=gWo)
            if gbo is not None:
                np.matmul(self.ones, R, out=gbo)
            np.matmul(R, W_out, out=self.G[L - 1])
        for l in range(L - 1, -1, -1):
            G = self.G[l]
            np.greater(A[l + 1], 0.0, out=self.mask[l])  # σ'(z) = 1[z > 0]: ties count as truncated
            np.multiply(G, self.mask[l], out=G)
            if gW[l] is not None:  # None: a frozen weight, whose gradient is not needed
                np.matmul(G.T, A[l], out=gW[l])
            np.matmul(self.ones, G, out=gb[l])
            if AW is not None:
                if gW[l] is not None:
                    gW[l] += AW @ Wc[l - 1].T + np.outer(Ab, bc[l - 1]) if l > 0 else AW
                gb[l] += Ab
                AW = Ws[l].T @ AW
                Ab = Ws[l].T @ Ab
            if l > 0:
                np.matmul(G, Ws[l], out=self.G[l - 1])
        return C


def _workspace(Ws, X, Y, cost, W_out, n=None):
    widths = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    n_out = widths[0] if cost == "input" else W_out.shape[0]
    return _Workspace(widths, X.shape[0] if n is None else n, n_out, cost, Y.shape[1:])


def _backprop(Ws, bs, X, Y, w, cost, W_out, b_out, Wc=None, bc=None, ws=None):
    """Cost and its gradient over the layer parameters, in fresh arrays shaped like ``Ws, bs`` (stacked or lists)."""
    if ws is None:
        ws = _workspace(Ws, X, Y, cost, W_out)
    if cost == "input" and Wc is None:
        Wc, bc = cumulative_pass(Ws, bs)
    stacked = isinstance(Ws, np.ndarray)
    gW = np.empty_like(Ws) if stacked else [np.empty_like(W) for W in Ws]
    gb = np.empty_like(bs) if stacked else [np.empty_like(b) for b in bs]
    gWo = gbo = None
    if cost != "input":
        gWo, gbo = np.empty_like(W_out), np.empty_like(b_out)
    C = ws.run(Ws, bs, W_out, b_out, X, Y, w, (gW, gb, gWo, gbo), Wc, bc)
    return C, gW, gb, gWo, gbo


def _pullback_to_cumulative(Wc, bc, Ws, gW, gb):
    """∇_c C = (∂p/∂c)ᵀ ∇_p C through W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1)."""
    GW = np.zeros_like(Wc)
    Gb = np.zeros_like(bc)
    for l in range(Wc.shape[0]):
        Gb[l] += gb[l]
        if l == 0:
            GW[0] += gW[0]
            continue
        Wbar = gW[l] - np.outer(gb[l], bc[l - 1])  # total adjoint of W_ℓ
        Gb[l - 1] -= Ws[l].T @ gb[l]
        T = np.linalg.solve(Wc[l - 1], Wbar.T).T  # W̄_ℓ (W^(ℓ-1))^-T
        GW[l] += T
        GW[l - 1] -= Ws[l].T @ T
    return GW, Gb


def _cumulative_gradient(Wc, bc, X, Y, w, cost, W_out, b_out, ws=None):
    Ws, bs = layer_pass(Wc, bc)
    C, gW, gb, gWo, gbo = _backprop(Ws, bs, X, Y, w, cost, W_out, b_out, Wc, bc, ws)
    GW, Gb = _pullback_to_cumulative(Wc, bc, Ws, gW, gb)
    return C, GW, Gb, gWo, gbo


class _Parameters:
    """Parameter arrays, updated by heavy-ball descent v ← μ v + g, p ← p − η v (μ = 0: v = g).

    The arrays with a nonzero rate η are views into one flat buffer, and so are their gradients (``grads``, where
    the gradient code writes), so an update is a handful of vectorised operations whatever the number of
    layers. Each update is written into a second flat buffer and the two are swapped, so the arrays of the
    previous state stay valid (and unmodified) until the update after next; arrays with rate 0 are never written.
    """

    def __init__(self, arrays, rates, momentum):
        arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
        rates = [float(r) for r in rates]
        self.momentum = momentum
        trained = [i for i, r in enumerate(rates) if r]
        size = sum(arrays[i].size for i in trained)
        self.flat = [np.empty(size), np.empty(size)]
        self.gflat = np.zeros(size)
        self.tmp = np.empty(size)
        self.vel = np.zeros(size) if momentum else None
        self.rate = np.empty(size)
        views = [[a.copy() for a in arrays], [None] * len(arrays)]
        self.grads = [np.empty_like(a) for a in arrays]  # rate-0 arrays: scratch space for their gradients
        pos = 0
        for i in trained:
            a = arrays[i]
            sl = slice(pos, pos + a.size)
            for k in (0, 1):
                views[k][i] = self.flat[k][sl].reshape(a.shape)
            views[0][i][...] = a
            self.grads[i] = self.gflat[sl].reshape(a.shape)
            self.rate[sl] = rates[i]
            pos += a.size
        for i, r in enumerate(rates):
            if not r:
                views[1][i] = views[0][i]
        self.views = views
        self.cur = views[0]
        self.k = 0

    def grads_finite(self) -> bool:
        # one reduction; an overflowing sum of finite entries falls back to the exact test
        return math.isfinite(float(self.gflat.sum())) or bool(np.isfinite(self.gflat).all())

    def step(self):
        """One update from the gradient in ``grads``."""
        d = self.gflat
        if self.momentum:
            np.multiply(self.vel, self.momentum, out=self.vel)
            np.add(self.vel, d, out=self.vel)
            d = self.vel
        np.multiply(d, self.rate, out=self.tmp)
        np.subtract(self.flat[self.k], self.tmp, out=self.flat[1 - self.k])
        self.k = 1 - self.k
        self.cur = self.views[self.k]

    def finite(self) -> bool:
        f = self.flat[self.k]
        return math.isfinite(float(f.sum())) or bool(np.isfinite(f).all())


def minibatches(n_points: int, batch_size: int, *, seed=0):
    """The mini-batch order of :func:`train`: for each epoch a fresh permutation π = rng.permutation(N), cut into
    the batches π[0:B], π[B:2B], …, the last holding the N mod B remaining points (if any).

    ``rng = numpy.random.default_rng(seed)``. An infinite generator of index arrays (views of π). The arguments
    are checked when it is called, before the first batch: a permutation of N points (8N bytes) must fit the
    memory budget.
    """
    N = check_positive_int(n_points, "n_points")
    B = check_positive_int(batch_size, "batch_size")
    if B > N:
        raise ValueError(f"batch_size must be <= n_points = {N}; got {B}")
    check_memory(8.0 * N, f"the batch order of n_points = {N}")
    return _batches(N, B, np.random.default_rng(seed))


def _batches(N, B, rng):
    while True:
        perm = rng.permutation(N)
        for start in range(0, N, B):
            yield perm[start:start + B]


# ---------------------------------------------------------------------------------------------
# Validation shared by the public functions.


def _layer_shapes(Wl):
    return "[" + ", ".join(f"({a}, {b})" for a, b in (W.shape for W in Wl)) + "]"


def _validate_problem(weights, biases, X, targets, cost, W_out, b_out, point_weights, max_condition, prefix="",
                      mode=None, square_only=False):
    """Validated (Ws, bs, X, Y, w, W_out, b_out, square): Ws, bs stacked (L, M, M), (L, M) when square, else lists."""
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}; got {cost!r}")
    Wl, bl = validate_layers(weights, biases, square=False, max_condition=max_condition, prefix=prefix)
    d0 = Wl[0].shape[1]
    square = all(W.shape == (d0, d0) for W in Wl)
    if not square:
        need = ("backprop_cumulative_gradient" if square_only else f"mode={mode!r}" if mode in SQUARE_MODES
                else f"cost={cost!r}" if cost in SQUARE_COSTS else None)
        if need is not None:
            raise ValueError(f"{prefix}weights must be square (M, M) layers for {need} (it uses the cumulative "
                             f"parameters W^(l)); rectangular layers train in modes 'full' and 'biases' with cost "
                             f"'output' or 'cross_entropy'; got layer shapes {_layer_shapes(Wl)}")
        Ws, bs = Wl, bl
    else:
        Wl, bl = validate_layers(Wl, bl, square=True, max_condition=max_condition, prefix=prefix)
        Ws, bs = np.stack(Wl), np.stack(bl)
    X = as_points(X, "X", dim=d0)
    N = X.shape[0]
    if cost != "input" and W_out is None and b_out is None:
        raise ValueError(f"cost={cost!r} needs a terminal layer: pass W_out (Q, {Wl[-1].shape[0]}) and b_out (Q,); "
                         "got W_out=None")
    W_out, b_out = as_terminal_layer(W_out, b_out, Wl[-1].shape[0])
    if cost == "cross_entropy":
        Q = W_out.shape[0]
        if Q < 2:
            raise ValueError(f"cost='cross_entropy' needs Q >= 2 classes: W_out must have shape (Q, "
                             f"{Wl[-1].shape[0]}) with Q >= 2; got shape {W_out.shape}")
        name = "targets for cost='cross_entropy' (integer labels)"
        Y = as_labels(targets, name, n_classes=Q)
        if Y.shape != (N,):
            raise ValueError(f"{name} must have shape (N,) = ({N},), one label per point; got shape {Y.shape}")
    else:
        dim = d0 if cost == "input" else W_out.shape[0]
        Y = as_targets(targets, N, dim, f"targets for cost={cost!r}")
    return Ws, bs, X, Y, as_point_weights(point_weights, N), W_out, b_out, square


# ---------------------------------------------------------------------------------------------
# Public gradients.


def backprop_gradient(weights, biases, X, targets, *, cost: str = "input", W_out=None, b_out=None,
                      point_weights=None, max_condition: float = MAX_CONDITION) -> CostGradient:
    """∂C/∂W_ℓ, ∂C/∂b_ℓ (and ∂C/∂W_out, ∂C/∂b_out) by backpropagation, for C = C_in, C_out or C_CE.

    C_in = ½ Σ_i w_i |x_i^(τ,L) − ỹ_i|² with x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)) (square layers only); C_out =
    ½ Σ_i w_i |W_out x_i^(L) + b_out − y_i|²; C_CE = Σ_i w_i (−log softmax(W_out x_i^(L) + b_out)[label_i]).
    ``weights, biases`` are the L layers (d_ℓ, d_{ℓ-1}), (d_ℓ,); X (N, d0); targets (N, d0) for the input cost,
    (N, Q) for the output cost, integer labels (N,) in 0..Q-1 for the cross-entropy; point_weights w (N,),
    default 1/N.
    """
    Ws, bs, X, Y, w, W_out, b_out, square = _validate_problem(weights, biases, X, targets, cost, W_out, b_out,
                                                              point_weights, max_condition)
    C, gW, gb, gWo, gbo = _backprop(Ws, bs, X, Y, w, cost, W_out, b_out)
    if not square:
        gW, gb = tuple(gW), tuple(gb)
    return CostGradient(C, gW, gb, gWo, gbo, None, "layer")


def backprop_cumulative_gradient(Wc, bc, X, targets, *, cost: str = "input", W_out=None, b_out=None,
                                 point_weights=None, max_condition: float = MAX_CONDITION) -> CostGradient:
    """∇_{W^(ℓ)} C, ∇_{b^(ℓ)} C = (∂p/∂c)ᵀ ∇_p C, and ∂C/∂λ_{ℓ,k} = Σ_j (∇_{W^(ℓ)} C)_{kj} R_{ℓ,kj}.

    The gradient over the cumulative parameters c = (W^(ℓ), b^(ℓ)) of a square network, obtained from the
    backpropagated layer gradient ∇_p C by the adjoint of p(c): W_ℓ = W^(ℓ)(W^(ℓ-1))^-1, b_ℓ = b^(ℓ) − W_ℓ b^(ℓ-1).
    ``scales`` is the derivative along the row norms λ_ℓ at fixed row directions R_ℓ = Λ_ℓ^-1 W^(ℓ).
    Arguments as in :func:`backprop_gradient`, with cumulative parameters in place of layer parameters.
    """
    Wc, bc, X, Y, w, W_out, b_out, _ = _validate_problem(Wc, bc, X, targets, cost, W_out, b_out, point_weights,
                                                         max_condition, prefix="cumulative ", square_only=True)
    C, GW, Gb, gWo, gbo = _cumulative_gradient(Wc, bc, X, Y, w, cost, W_out, b_out)
    R = Wc / np.linalg.norm(Wc, axis=2, keepdims=True)
    return CostGradient(C, GW, Gb, gWo, gbo, np.einsum("lkj,lkj->lk", GW, R), "cumulative")


# ---------------------------------------------------------------------------------------------
# Training.


def progress_enabled(progress: bool | None, n_steps: int) -> bool:
    """Whether :func:`train` shows a progress bar: ``progress`` if given, else ``RELUFLOW_PROGRESS=0|1`` if set,
    else True for runs of at least :data:`PROGRESS_MIN_STEPS` steps when stderr is a terminal."""
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None (automatic); got {progress!r}")
        return progress
    env = os.environ.get("RELUFLOW_PROGRESS")
    if env is not None:
        return env.strip() not in ("", "0", "false", "False", "no")
    isatty = getattr(sys.stderr, "isatty", None)
    return n_steps >= PROGRESS_MIN_STEPS and bool(isatty and isatty())


class _Recorder:
    """Collects the recorded quantities of a trajectory, one entry per recorded step.

    A state is ``(Wc, bc, Ws, bs, W_out, b_out)``: cumulative parameters (or None, then computed from the layer
    parameters) for a square network; layer parameters (lists) for a rectangular one.
    """

    def __init__(self, X, max_condition, square):
        self.X = X
        self.max_condition = max_condition
        self.square = square
        self.steps, self.costs, self.Wc, self.bc, self.counts, self.adapt = [], [], [], [], [], []
        self.Wo, self.bo = [], []

    def record(self, step, C, Wc, bc, Ws, bs, W_out, b_out):
        """Append one state; raises ValueError if the cumulative weights are ill-conditioned."""
        if self.square:
            if Wc is None:
                Wc, bc = cumulative_pass(np.stack(Ws), np.stack(bs))
            T = truncation_pattern(list(Wc), list(bc), self.X, max_condition=self.max_condition)
            self.counts.append(T.sum(axis=1))
            self.Wc.append(Wc.copy())
            self.bc.append(bc.copy())
            self.adapt.append(np.atleast_1d(adaptedness(Wc)))
        else:  # n_truncated_(ℓ,k) = #{i : z_(ℓ,k)(x_i) ≤ 0}, by a plain forward pass
            Z, _ = forward_pass(Ws, bs, self.X)
            self.counts.append([np.count_nonzero(z <= 0.0, axis=0) for z in Z])
            self.Wc.append([W.copy() for W in Ws])
            self.bc.append([b.copy() for b in bs])
        self.steps.append(step)
        self.costs.append(C)
        if W_out is not None:
            self.Wo.append(W_out.copy())
            self.bo.append(b_out.copy())


def _trajectory_dataset(rec: _Recorder, lr, status, message, attrs):
    """The recorded trajectory in the schema of :mod:`reluflow.results.schema` (dimension ``time``, t = step·η)."""
    steps = np.asarray(rec.steps, dtype=np.int64)
    coords = {"time": steps * lr, "step": steps}
    extra = None
    if rec.square:
        Wc = np.stack(rec.Wc)
        bc = np.stack(rec.bc)
        L, M = bc.shape[1:]
        lam = np.linalg.norm(Wc, axis=3)
        data = {
            "cost": np.asarray(rec.costs),
            "cumulative_weights": Wc,
            "cumulative_biases": bc,
            "scales": lam,
            "thresholds": -bc / lam,
            "n_truncated": np.stack(rec.counts).astype(np.int64),
            "adaptedness": np.stack(rec.adapt),
        }
        coords.update(layer=np.arange(1, L + 1), coordinate=np.arange(M), input_coordinate=np.arange(M))
    else:
        L = len(rec.Wc[0])
        widths = [rec.Wc[0][0].shape[1]] + [b.shape[0] for b in rec.bc[0]]
        data = {"cost": np.asarray(rec.costs)}
        extra = {}
        for l in range(1, L + 1):
            unit, prev = f"unit_{l}", "input_coordinate" if l == 1 else f"unit_{l - 1}"
            extra[f"weights_{l}"] = (("time", unit, prev), np.stack([s[l - 1] for s in rec.Wc]),
                                     f"layer weights W_{l} ({unit}: unit of layer {l}; {prev}: its input)")
            extra[f"biases_{l}"] = (("time", unit), np.stack([s[l - 1] for s in rec.bc]), f"layer biases b_{l}")
            extra[f"n_truncated_{l}"] = (("time", unit), np.stack([s[l - 1] for s in rec.counts]).astype(np.int64),
                                         f"number of points truncated in unit k of layer {l} (z_({l},k) <= 0)")
        coords.update(input_coordinate=np.arange(widths[0]), coordinate=np.arange(widths[-1]))
        attrs = dict(attrs, widths=",".join(map(str, widths)), n_layers=L)
    if rec.Wo:
        data["output_weights"] = np.stack(rec.Wo)
        data["output_biases"] = np.stack(rec.bo)
        coords["output"] = np.arange(rec.Wo[0].shape[0])
    return make_dataset(data, coords, status=STATUS_CODES[status], message=message, attrs=attrs,
                        extra_variables=extra)


def _as_batch_size(batch_size, N):
    if batch_size is None:
        return None
    B = check_positive_int(batch_size, "batch_size")
    if B > N:
        raise ValueError(f"batch_size must be None (full batch) or an integer in 1..N = 1..{N}; got {B}")
    return B


def _as_momentum(momentum):
    mu = as_real(momentum, "momentum", minimum=0.0, expectation="a number in [0, 1)")
    if mu >= 1.0:
        raise ValueError(f"momentum must be a number in [0, 1); got {mu!r}")
    return mu


def train(weights, biases, X, targets, *, mode: str = "biases", cost: str = "input", lr: float = 0.1,
          weight_lr_ratio: float = 1.0, n_steps: int = 1000, record_every: int = 1, W_out=None, b_out=None,
          train_terminal: bool = False, point_weights=None, batch_size: int | None = None, momentum: float = 0.0,
          seed=0, adapted_tol: float = 1e-8, max_condition: float = MAX_CONDITION,
          progress: bool | None = None) -> xr.Dataset:
    """Gradient descent v ← μ v + ∇_p C, p ← p − η_p v on the ReLU network; returns the recorded trajectory.

    Parameters
    ----------
    weights, biases : sequences of L arrays (d_ℓ, d_{ℓ-1}) and (d_ℓ,)
        The initial *layer* parameters (W_ℓ, b_ℓ), in every mode. Square (M, M) layers are required by
        the modes ``"adapted"``, ``"cumulative"`` and by ``cost="input"``. In mode ``"adapted"`` their
        cumulative weights must be adapted (:func:`reluflow.adaptedness` ≤ ``adapted_tol``).
    X : array (N, d0)
        Training points as rows.
    targets : array (N, d0) for ``cost="input"`` (ỹ_i in input space), (N, Q) for ``cost="output"``, integer
        labels (N,) in 0..Q-1 for ``cost="cross_entropy"``.
    mode : ``"biases"``, ``"adapted"``, ``"full"`` or ``"cumulative"`` (see the module docstring).
    cost : ``"input"`` (C_in), ``"output"`` (C_out) or ``"cross_entropy"`` (C_CE); the last two need
        ``W_out, b_out``.
    lr : η > 0, the learning rate of the biases; ``time = step·η``.
    weight_lr_ratio : ρ ≥ 0; weights (and scales) use the learning rate ρη.
    n_steps : number of gradient steps (≥ 1), one batch each.
    record_every : k ≥ 1; steps 0, k, 2k, … and the last step are recorded.
    W_out, b_out : optional terminal layer (Q, d_L), (Q,).
    train_terminal : also train the terminal layer (output and cross-entropy costs).
    point_weights : w (N,), non-negative; default 1/N.
    batch_size : None (full batch) or B in 1..N: mini-batch SGD over the batches of :func:`minibatches`, with the
        point weights of a batch renormalised to the full-batch total (module docstring). B = N is the full
        batch, in its original order.
    momentum : μ in [0, 1), heavy ball v ← μ v + g, p ← p − η_p v (v starts at 0; μ = 0 is plain descent).
    seed : seed of the batch order, passed to :func:`numpy.random.default_rng` (unused for the full batch).
    progress : show a tqdm bar; ``None`` shows it for runs of ≥ 2000 steps when stderr is a terminal
        (so never under pytest or papermill). The environment variable ``RELUFLOW_PROGRESS=0|1``
        overrides the automatic choice.

    Returns
    -------
    xarray.Dataset in the schema of :mod:`reluflow.results.schema`, over ``time`` (t = step·η, with the
    coordinate ``step`` on the same dimension). ``cost`` is always the full-data cost C at the recorded state
    (with mini-batches it is evaluated on all N points at the recorded steps only).

    A square network records, over ``layer`` (1..L), ``coordinate`` and ``input_coordinate`` (0..M-1):
    ``cost``, ``cumulative_weights``, ``cumulative_biases``, ``scales``, ``thresholds``, ``n_truncated``,
    ``adaptedness``. A rectangular network records, per layer ℓ = 1..L, ``weights_ℓ`` (time, unit_ℓ,
    unit_{ℓ-1}) (unit_0 is ``input_coordinate``), ``biases_ℓ`` (time, unit_ℓ) and ``n_truncated_ℓ`` (time,
    unit_ℓ), with the attributes ``widths`` (``"d0,d1,…,dL"``) and ``n_layers``. With a terminal layer both
    add ``output_weights`` (time, output, coordinate), ``output_biases`` (time, output), where ``coordinate``
    indexes the units of the last hidden layer. The integer attribute ``status`` is a code of
    :data:`reluflow.results.schema.STATUS`: 0 (completed), −2 (diverged: non-finite cost or parameters),
    −3 (ill_conditioned) or −4 (nonpositive_scale), with ``status_name``; a run that stops early keeps its
    last valid state, warns with a RuntimeWarning and explains itself in the attribute ``message``. Runs with
    ``batch_size`` or ``momentum`` set also carry the attributes ``batch_size``, ``momentum`` and ``seed``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    Ws, bs, X, Y, w, W_out, b_out, square = _validate_problem(weights, biases, X, targets, cost, W_out, b_out,
                                                              point_weights, max_condition, mode=mode)
    lr = as_positive_float(lr, "lr")
    rho = as_nonnegative_float(weight_lr_ratio, "weight_lr_ratio")
    n_steps = check_positive_int(n_steps, "n_steps")
    record_every = check_positive_int(record_every, "record_every")
    adapted_tol = as_tolerance(adapted_tol, "adapted_tol")
    N = X.shape[0]
    B = _as_batch_size(batch_size, N)
    mu = _as_momentum(momentum)
    widths = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    L = len(Ws)
    Q_ = 0 if W_out is None else W_out.shape[0]
    n_par = sum(a * (b + 1) for a, b in zip(widths[1:], widths[:-1])) + Q_ * (widths[-1] + 1)
    check_memory(8.0 * (n_steps // record_every + 2) * (n_par + 3 * sum(widths)),
                 f"train recording n_steps // record_every = {n_steps // record_every} states")
    check_memory(8.0 * N * (3 * sum(widths) + 3 * max(Q_, widths[0])) * (1 if B is None else 3),
                 f"train buffers for N = {N} points and widths {widths}")
    if not isinstance(train_terminal, bool):
        raise TypeError(f"train_terminal must be True or False; got {train_terminal!r}")
    if train_terminal and cost == "input":
        raise ValueError(f"train_terminal=True needs cost='output' or 'cross_entropy' (the input cost ignores the "
                         f"terminal layer); got cost={cost!r}")
    show = progress_enabled(progress, n_steps)

    X = np.ascontiguousarray(X)
    full_batch = B is None or B == N
    batches = None if full_batch else minibatches(N, B, seed=seed)
    w_total = float(w.sum())
    eta_w = rho * lr
    layer_mode = mode in ("biases", "full")
    W_out = None if W_out is None else W_out.copy()
    b_out = None if b_out is None else b_out.copy()
    terminal_rates = [eta_w if mode != "biases" else 0.0, lr] if train_terminal else []
    terminal = [W_out, b_out] if train_terminal else []
    R = None
    if layer_mode:
        params = _Parameters(list(Ws) + list(bs) + terminal,
                             [eta_w if mode == "full" else 0.0] * L + [lr] * L + terminal_rates, mu)
        gW, gb = params.grads[:L], params.grads[L:2 * L]
        if not eta_w or mode == "biases":
            gW = [None] * L  # frozen weights: their gradient is not computed
        gWo, gbo = (params.grads[2 * L], params.grads[2 * L + 1]) if train_terminal else (None, None)
        if train_terminal and not terminal_rates[0]:
            gWo = None
    else:
        Wc, bc = cumulative_pass(Ws, bs)
        first = Wc
        if mode == "adapted":
            net = decompose_adapted(list(Wc), list(bc), tol=adapted_tol, max_condition=max_condition)
            R, lam = net.frames, net.scales.copy()
            Wc = lam[:, :, None] * R
            first = lam
        params = _Parameters([first, bc] + terminal, [eta_w, lr] + terminal_rates, mu)

    def state():
        """The current (Wc, bc, Ws, bs, W_out, b_out), as references (valid until the update after next)."""
        cur = params.cur
        Wo, bo = (cur[-2], cur[-1]) if train_terminal else (W_out, b_out)
        if layer_mode:
            return None, None, cur[:L], cur[L:2 * L], Wo, bo
        return (cur[0][:, :, None] * R if mode == "adapted" else cur[0]), cur[1], None, None, Wo, bo

    workspaces = {}

    def workspace(n):
        if n not in workspaces:
            workspaces[n] = _workspace(Ws, X, Y, cost, W_out, n)
        return workspaces[n]

    def evaluate(st, Xb, Yb, wb, with_grad):
        """C at the state ``st`` on the points (Xb, Yb, wb); with ``with_grad`` also the gradient in grad_list."""
        Wc_, bc_, Ws_, bs_, Wo, bo = st
        ws = workspace(Xb.shape[0])
        if layer_mode:
            if cost == "input":
                Wc_, bc_ = cumulative_pass(np.stack(Ws_), np.stack(bs_))
            grads = (gW, gb, gWo, gbo) if with_grad else None
            return ws.run(Ws_, bs_, Wo, bo, Xb, Yb, wb, grads, Wc_, bc_)
        if not with_grad:
            Ws_, bs_ = layer_pass(Wc_, bc_)
            return ws.run(Ws_, bs_, Wo, bo, Xb, Yb, wb, None, Wc_, bc_)
        C, GW, Gb, gWo_, gbo_ = _cumulative_gradient(Wc_, bc_, Xb, Yb, wb, cost, Wo, bo, ws)
        g = params.grads
        g[0][...] = np.einsum("lkj,lkj->lk", GW, R) if mode == "adapted" else GW
        g[1][...] = Gb
        if train_terminal:
            g[2][...], g[3][...] = gWo_, gbo_
        return C

    rec = _Recorder(X, max_condition, square)
    status, message = "completed", f"completed {n_steps} steps"
    last = None  # the last valid (step, cost or None, state) not yet recorded
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=f"gradient descent ({mode}, {cost} cost)", leave=False)
    try:
        for step in range(n_steps + 1):
            st = state()
            record_now = step % record_every == 0 or step == n_steps
            if full_batch:
                C = C_step = evaluate(st, X, Y, w, True)
                have_grad = True
            else:
                C = evaluate(st, X, Y, w, False) if record_now else None
                have_grad = step < n_steps
                C_step = C
                if have_grad:
                    idx = next(batches)
                    ws = workspace(idx.shape[0])
                    C_step = evaluate(st, *ws.load(X, Y, w, idx, w_total), True)
            finite = math.isfinite(C_step) and (C is None or math.isfinite(C))
            if finite and have_grad:
                finite = params.grads_finite()
            if not finite:
                status = "diverged"
                message = (f"stopped at step {step}: non-finite cost or gradient (cost = {C_step!r}); "
                           "try a smaller lr")
                break
            if record_now:
                try:
                    rec.record(step, C, *st)
                except ValueError as exc:
                    status = "ill_conditioned"
                    message = f"stopped at step {step}: {exc}"
                    break
                last = None
            else:
                last = (step, C, st)  # double-buffered parameters: st stays valid through the next update
            if step == n_steps:
                break
            params.step()
            if mode == "adapted" and eta_w:  # λ_{ℓ,k} moves along the fixed row direction R_{ℓ,k}
                lam = params.cur[0]
                if np.any(lam <= 0):
                    status = "nonpositive_scale"
                    message = (f"stopped at step {step + 1}: a scale λ became non-positive "
                               f"(minimum {lam.min():.3g}); try a smaller lr or weight_lr_ratio")
                    break
            if not params.finite():
                status = "diverged"
                message = f"stopped at step {step + 1}: non-finite parameters; try a smaller lr"
                break
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if status != "completed" and last is not None:
        step_, C_, st_ = last
        try:
            if C_ is None:
                C_ = evaluate(st_, X, Y, w, False)
            rec.record(step_, C_, *st_)
        except ValueError:
            pass
    steps_completed = rec.steps[-1] if rec.steps else 0
    if status != "completed":
        warnings.warn(f"train: {message}", RuntimeWarning, stacklevel=2)
    if not rec.steps:
        raise ValueError(f"train could not record the initial state: {message}")
    attrs = {
        "mode": mode,
        "cost": cost,
        "lr": lr,
        "lr_biases": lr,
        "lr_weights": eta_w,
        "weight_lr_ratio": rho,
        "n_steps": n_steps,
        "record_every": record_every,
        "steps_completed": int(steps_completed),
        "point_weights": "uniform 1/N" if point_weights is None else "custom",
        "train_terminal": int(train_terminal),
        "n_points": int(N),
    }
    if batch_size is not None or mu:
        attrs.update(batch_size=int(N if B is None else B), momentum=mu,
                     seed=int(seed) if isinstance(seed, (int, np.integer)) else repr(seed))
    return _trajectory_dataset(rec, lr, status, message, attrs)

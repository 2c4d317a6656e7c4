"""Many small networks trained in one call: full-batch gradient descent on a stack of B networks of one shape.

A sweep over seeds, step sizes or kept subsets of the data trains many networks d0 → d1 → … → dL → Q of the same
widths. Trained one at a time (:func:`reluflow.train`), a small network spends most of each step in the
per-operation overhead of numpy, not in arithmetic. :func:`train_many` stacks the B networks along a leading
axis and runs every operation of a step once for all of them (``np.matmul`` over the stack, in preallocated
buffers), so the overhead is paid once per step instead of B times.

The arithmetic is that of :func:`reluflow.train` in mode ``"full"`` with a terminal layer, full batch, no
momentum, for each network b separately:

- forward z_ℓ = x^(ℓ-1) W_ℓᵀ + b_ℓ, x^(ℓ) = σ(z_ℓ), z = x^(L) W_outᵀ + b_out;
- C_b = ½ Σ_i w_bi |z_i − y_i|² (``cost="output"``) or Σ_i w_bi (logsumexp(z_i) − z_i[label_i])
  (``cost="cross_entropy"``), the log-sum-exp shifted by the largest logit;
- backward ∂C/∂z_i = w_bi (z_i − y_i) or w_bi (softmax(z_i) − e_{label_i}), z̄_ℓ = x̄^(ℓ) ⊙ 1[z_ℓ > 0] (ties count
  as truncated), ∂C/∂W_ℓ = z̄_ℓᵀ x^(ℓ-1), ∂C/∂b_ℓ = 1ᵀ z̄_ℓ;
- update W ← W − ρη_b ∂C/∂W, b ← b − η_b ∂C/∂b, and likewise W_out (ρη_b) and b_out (η_b) when
  ``train_terminal``; η_b may differ from network to network.

Each network may have its own data X_b and targets, or share one X; its own point weights w_b (N,), e.g. zero
outside a kept subset of the points, which trains network b on that subset alone (curation sweeps). The result
agrees with :func:`reluflow.train` run network by network to round-off (the tests ask 1e-12 relative; the batched
products may sum in another order). ``benchmarks/gd_batched.py`` prints the throughput per network against
:func:`reluflow.train` in a loop, a jitted JAX step (if installed) and the floor of the matrix products.

A network whose cost or gradient stops being finite is *diverged*: from that step on its rate is 0 (it is frozen,
the others go on), its ``status`` is −2 and ``diverged_step`` says when; its parameters are returned as they were
at that step (they may hold non-finite values) and its later costs are NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from reluflow.validation import (
    as_labels,
    as_nonnegative_float,
    as_positive_float,
    as_real_array,
    check_memory,
    check_positive_int,
)

__all__ = ["BatchRun", "train_many"]

COSTS = ("output", "cross_entropy")


@dataclass(frozen=True, repr=False)
class BatchRun:
    """The final parameters of B networks trained by :func:`train_many`, and their costs at the recorded steps.

    ``weights[ℓ]`` (B, d_ℓ, d_{ℓ-1}), ``biases[ℓ]`` (B, d_ℓ), ``W_out`` (B, Q, d_L), ``b_out`` (B, Q); ``cost``
    (B, S) at ``steps`` (S,) (the state *before* the update of that step, as :func:`reluflow.train` records it;
    the last entry is the final state); ``status`` (B,) 0 or −2 (diverged) with ``diverged_step`` (−1: never).
    """

    weights: tuple
    biases: tuple
    W_out: np.ndarray
    b_out: np.ndarray
    cost: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    diverged_step: np.ndarray
    cost_name: str
    lr: np.ndarray

    @property
    def n_networks(self) -> int:
        return self.W_out.shape[0]

    def network(self, b: int) -> tuple:
        """(weights, biases, W_out, b_out) of network ``b``, in the layout of :func:`reluflow.train`."""
        b = int(b)
        if not 0 <= b < self.n_networks:
            raise ValueError(f"b must be in 0..{self.n_networks - 1}; got {b}")
        return [W[b] for W in self.weights], [v[b] for v in self.biases], self.W_out[b], self.b_out[b]

    def __repr__(self) -> str:
        widths = [self.weights[0].shape[2]] + [W.shape[1] for W in self.weights] + [self.W_out.shape[1]]
        return (f"<BatchRun: {self.n_networks} networks {'-'.join(map(str, widths))}, {self.cost_name} cost, "
                f"{int(self.steps[-1])} steps, {int((self.status != 0).sum())} diverged>")


def _stack(arrays, name, shape_of, B=None, *, single=False):
    out = []
    for i, a in enumerate(arrays):
        label = name if single else f"{name}[{i}]"
        a = as_real_array(a, label, finite=False)  # bool, complex, object and strings refused by name
        want = shape_of(i)
        if a.ndim != len(want) + 1 or a.shape[1:] != want or (B is not None and a.shape[0] != B):
            raise ValueError(f"{label} must have shape (B, {', '.join(map(str, want))})"
                             f"{'' if B is None else f' with B = {B}'}; got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{label} must be finite; got NaN or inf")
        out.append(np.array(a, dtype=np.float64))  # a private copy: the caller's arrays are never written
        B = a.shape[0]
    return out, B


def _per_network(value, name, B, tail_shape, *, dtype=np.float64):
    """``value`` shared by all networks (shape tail_shape) or given per network (B, *tail_shape)."""
    a = as_labels(value, name, ndim=(1, 2)) if dtype is np.intp else as_real_array(value, name, finite=False)
    if a.shape == tuple(tail_shape):
        return a.astype(dtype, copy=False), True
    if a.shape == (B, *tail_shape):
        return a.astype(dtype, copy=False), False
    raise ValueError(f"{name} must have shape {tuple(tail_shape)} (shared) or {(B, *tail_shape)} (one per network); "
                     f"got shape {a.shape}")


def train_many(weights, biases, W_out, b_out, X, targets, *, cost: str = "cross_entropy", lr=0.1,
               weight_lr_ratio: float = 1.0, n_steps: int = 100, record_every: int | None = None,
               point_weights=None, train_terminal: bool = True) -> BatchRun:
    """Full-batch gradient descent on B stacked networks of one shape (the module docstring gives the arithmetic).

    Parameters
    ----------
    weights, biases : L arrays (B, d_ℓ, d_{ℓ-1}) and (B, d_ℓ): the initial layers of every network.
    W_out, b_out : (B, Q, d_L) and (B, Q): the terminal layers.
    X : (N, d0) shared by every network, or (B, N, d0).
    targets : integer labels (N,) or (B, N) in 0..Q-1 for ``cost="cross_entropy"``; (N, Q) or (B, N, Q) for
        ``cost="output"``.
    lr : η > 0, one for all or an array (B,): the bias rate of each network; ``time = step·η``.
    weight_lr_ratio : ρ ≥ 0; weights use the rate ρη.
    n_steps : gradient steps (≥ 1).
    record_every : k ≥ 1; the cost is kept at steps 0, k, 2k, … and the last step (default: only 0 and the last).
    point_weights : w (N,) or (B, N), non-negative with a positive sum per network; default 1/N.
    train_terminal : also train W_out (rate ρη) and b_out (η).
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}; got {cost!r}")
    if not isinstance(train_terminal, bool):
        raise TypeError(f"train_terminal must be True or False; got {train_terminal!r}")
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError("weights must be a non-empty list of L arrays (B, d_l, d_{l-1}); got "
                        f"{type(weights).__name__}")
    if not isinstance(biases, (list, tuple)) or len(biases) != len(weights):
        raise ValueError(f"biases must be a list of {len(weights)} arrays (B, d_l), one per layer of weights; got "
                         f"{type(biases).__name__} of length {len(biases) if hasattr(biases, '__len__') else '?'}")
    first = np.asarray(weights[0])
    if first.ndim != 3:
        raise ValueError(f"weights[0] must have shape (B, d_1, d_0); got shape {first.shape}")
    widths = [first.shape[2]]
    for W in weights:
        widths.append(np.asarray(W).shape[1] if np.asarray(W).ndim == 3 else -1)
    Ws, B = _stack(weights, "weights", lambda i: (widths[i + 1], widths[i]))
    bs, _ = _stack(biases, "biases", lambda i: (widths[i + 1],), B)
    shape_out = np.shape(W_out)
    if len(shape_out) != 3:
        raise ValueError(f"W_out must have shape (B, Q, {widths[-1]}); got shape {shape_out}")
    (Wo,), _ = _stack([W_out], "W_out", lambda i: (shape_out[1], widths[-1]), B, single=True)
    Q = Wo.shape[1]
    (bo,), _ = _stack([b_out], "b_out", lambda i: (Q,), B, single=True)
    if cost == "cross_entropy" and Q < 2:
        raise ValueError(f"cost='cross_entropy' needs Q >= 2 classes; got W_out of shape {Wo.shape}")
    Xa = as_real_array(X, "X", finite=False)
    if Xa.ndim not in (2, 3) or Xa.shape[-1] != widths[0] or (Xa.ndim == 3 and Xa.shape[0] != B) or \
            Xa.shape[-2] == 0:
        raise ValueError(f"X must have shape (N, {widths[0]}) (shared) or ({B}, N, {widths[0]}) with N >= 1; got "
                         f"shape {Xa.shape}")
    if not np.isfinite(Xa).all():
        raise ValueError("X must be finite; got NaN or inf")
    N = Xa.shape[-2]
    if cost == "cross_entropy":
        Y, _ = _per_network(targets, "targets (integer labels)", B, (N,), dtype=np.intp)
        if not np.all((Y >= 0) & (Y < Q)):
            raise ValueError(f"targets must be integer labels in 0..{Q - 1}; got values in {Y.min()}..{Y.max()}")
        Y = np.broadcast_to(Y, (B, N))
    else:
        Y, _ = _per_network(targets, "targets", B, (N, Q))
        if not np.isfinite(Y).all():
            raise ValueError("targets must be finite; got NaN or inf")
        Y = np.broadcast_to(Y, (B, N, Q))
    if point_weights is None:
        w = np.full((B, N), 1.0 / N)
    else:
        w, _ = _per_network(point_weights, "point_weights", B, (N,))
        w = np.array(np.broadcast_to(w, (B, N)), dtype=np.float64)
        if not np.isfinite(w).all() or np.any(w < 0) or np.any(w.sum(axis=1) <= 0):
            raise ValueError("point_weights must be finite, non-negative, with a positive sum for every network; got "
                             f"minimum {np.nanmin(w):.3g} and smallest network sum {np.nansum(w, axis=1).min():.3g}")
    if np.ndim(lr) == 0:
        eta = np.full(B, as_positive_float(lr, "lr"))
    else:
        eta = as_real_array(lr, "lr")
        if eta.shape != (B,) or np.any(eta <= 0):
            raise ValueError(f"lr must be a positive number or an array ({B},) of positive numbers; got {lr!r}")
    rho = as_nonnegative_float(weight_lr_ratio, "weight_lr_ratio")
    n_steps = check_positive_int(n_steps, "n_steps")
    k = n_steps if record_every is None else check_positive_int(record_every, "record_every")
    check_memory(8.0 * (B + 1) * (n_steps // k + 2), f"the cost record of B = {B} networks, n_steps = {n_steps}, "
                 f"record_every = {k}")
    rec_steps = np.union1d(np.arange(0, n_steps + 1, k), [n_steps]).tolist()
    check_memory(8.0 * B * N * (3 * sum(widths[1:]) + 4 * Q + widths[0]), f"train_many buffers for B = {B} networks "
                 f"of widths {widths + [Q]} on N = {N} points")

    L = len(Ws)
    # every network's parameters lie contiguously in one row of P (B, n_par), its gradient in the same place of
    # Gp, its rates in Rate: one update and one finiteness test per step for all the arrays of all the networks
    shapes = [W.shape[1:] for W in Ws] + [v.shape[1:] for v in bs] + [Wo.shape[1:], bo.shape[1:]]
    sizes = [int(np.prod(sh)) for sh in shapes]
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    P, Gp, Rate = np.empty((B, offsets[-1])), np.zeros((B, offsets[-1])), np.empty((B, offsets[-1]))
    T = np.empty_like(P)

    def views(flat):
        return [flat[:, offsets[i]:offsets[i + 1]].reshape((B, *sh)) for i, sh in enumerate(shapes)]

    pv, gv, rv = views(P), views(Gp), views(Rate)
    for a, v in zip([*Ws, *bs, Wo, bo], pv):
        v[...] = a
    for i, r in enumerate(rv):
        weight_like = i < L or (i == 2 * L)
        terminal = i >= 2 * L
        r[...] = (0.0 if terminal and not train_terminal else (rho if weight_like else 1.0) *
                  eta.reshape((B,) + (1,) * (r.ndim - 1)))
    Ws, bs, Wo, bo = pv[:L], pv[L:2 * L], pv[2 * L], pv[2 * L + 1]
    gW, gb, gWo, gbo = gv[:L], gv[L:2 * L], gv[2 * L], gv[2 * L + 1]
    # contiguous copies of W_ℓᵀ: np.matmul over a stack is ~2x slower with a transposed (swapaxes) right operand
    WT = [np.empty((B, W.shape[2], W.shape[1])) for W in Ws] + [np.empty((B, Wo.shape[2], Q))]
    Z = [np.empty((B, N, d)) for d in widths[1:]]  # x^(ℓ) (σ applied in place)
    G = [np.empty((B, N, d)) for d in widths[1:]]
    mask = [np.empty((B, N, d), dtype=bool) for d in widths[1:]]
    R = np.empty((B, N, Q))
    E = np.empty((B, N, Q)) if cost == "cross_entropy" else None
    m, S = np.empty((B, N)), np.empty((B, N))
    ones_n, ones_q = np.ones(N), np.ones(Q)
    if cost == "cross_entropy":
        # the label entries of the (B, N, Q) logits, as flat indices (a gather by np.take is ~4x faster than fancy
        # indexing), and w_i at each point's label as a dense array (subtracting it is ~10x faster than a
        # fancy-indexed update; x - 0.0 = x, so the other entries are unchanged, bit for bit)
        label_at = ((np.arange(B)[:, None] * N + np.arange(N)[None, :]) * Q + Y).ravel()
        w_at_label = np.zeros((B, N, Q))
        w_at_label.reshape(-1)[label_at] = w.ravel()
    status = np.zeros(B, dtype=np.int64)
    div_step = np.full(B, -1, dtype=np.int64)
    costs = np.full((B, len(rec_steps)), np.nan)
    col = {s: j for j, s in enumerate(rec_steps)}

    def diverge(bad, step):
        status[bad], div_step[bad] = -2, step
        Rate[bad] = 0.0  # frozen from now on: it keeps the parameters it had when it diverged

    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(n_steps + 1):
            # forward
            A = Xa
            for l in range(L):
                np.copyto(WT[l], Ws[l].swapaxes(1, 2))
                np.matmul(A, WT[l], out=Z[l])
                Z[l] += bs[l][:, None, :]
                np.maximum(Z[l], 0.0, out=Z[l])
                A = Z[l]
            np.copyto(WT[L], Wo.swapaxes(1, 2))
            np.matmul(A, WT[L], out=R)
            R += bo[:, None, :]
            if cost == "cross_entropy":
                np.copyto(m, R[:, :, 0])  # a running maximum over the Q columns: faster than a short-row reduction
                for q in range(1, Q):
                    np.maximum(m, R[:, :, q], out=m)
                R -= m[:, :, None]
                np.exp(R, out=E)
                np.matmul(E, ones_q, out=S)
                C = np.einsum("bn,bn->b", w, np.log(S) - np.take(R.reshape(-1), label_at).reshape(B, N))
            else:
                R -= Y
                C = 0.5 * np.einsum("bn,bnq,bnq->b", w, R, R)
            new = (status == 0) & ~np.isfinite(C)
            if new.any():
                diverge(new, step)
            if step in col:
                costs[:, col[step]] = np.where(status == 0, C, np.nan)
            if step == n_steps:
                break
            # backward
            if cost == "cross_entropy":
                np.divide(w, S, out=m)
                np.multiply(E, m[:, :, None], out=R)
                R -= w_at_label
            else:
                R *= w[:, :, None]
            np.matmul(R, Wo, out=G[L - 1])
            if train_terminal:
                np.matmul(R.swapaxes(1, 2), A, out=gWo)
                np.matmul(ones_n, R, out=gbo)
            for l in range(L - 1, -1, -1):
                np.greater(Z[l], 0.0, out=mask[l])
                G[l] *= mask[l]
                np.matmul(G[l].swapaxes(1, 2), Xa if l == 0 else Z[l - 1], out=gW[l])
                np.matmul(ones_n, G[l], out=gb[l])
                if l > 0:
                    np.matmul(G[l], Ws[l], out=G[l - 1])
            # a gradient that overflowed: that network diverges at this step, before its update
            if not math.isfinite(float(Gp.sum())):
                bad = (status == 0) & ~np.isfinite(Gp.sum(axis=1))
                diverge(bad, step)
                Gp[status != 0] = 0.0
            elif (status != 0).any():
                Gp[status != 0] = 0.0
            np.multiply(Gp, Rate, out=T)
            P -= T
    if (status != 0).any():
        warnings.warn(f"train_many: {int((status != 0).sum())} of {B} networks diverged (non-finite cost or "
                      f"gradient) and were frozen: networks {np.flatnonzero(status != 0).tolist()[:10]}; try a "
                      "smaller lr", RuntimeWarning, stacklevel=2)
    Ws, bs = [W.copy() for W in Ws], [v.copy() for v in bs]
    Wo, bo = Wo.copy(), bo.copy()
    return BatchRun(tuple(Ws), tuple(bs), Wo, bo, costs, np.array(rec_steps, dtype=np.int64), status, div_step, cost,
                    eta)

"""A PyTorch peer of :func:`reluflow.train`: the same gradient-descent run, with torch autograd.

Optional (the ``bench`` extra): used by ``benchmarks/gd.py`` to time our hand-written numpy
backpropagation against PyTorch on the CPU, and by ``tests/test_torch_peer.py`` to check that the
two engines produce the same trajectories. Everything runs in float64. The forward passes are
written here independently of :mod:`reluflow.training.gd`: layer modes use the plain network
x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ) and C_in through x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)); the cumulative and
adapted modes compose the truncation maps τ(x) = W^-1(σ(Wx + b) − b) directly.
"""

from __future__ import annotations

import numpy as np

from reluflow.training.gd import COSTS, MODES

__all__ = ["train_torch"]


def train_torch(weights, biases, X, targets, *, mode: str = "biases", cost: str = "input", lr: float = 0.1,
                weight_lr_ratio: float = 1.0, n_steps: int = 1000, record_every: int = 1, W_out=None, b_out=None,
                train_terminal: bool = False, point_weights=None) -> dict:
    """Gradient descent p ← p − η_p ∇_p C in PyTorch (float64, CPU), with the conventions of :func:`reluflow.train`.

    Arguments as in :func:`reluflow.train` (validated there; this peer assumes valid input). Returns a
    dict of numpy arrays over the recorded steps: ``time`` (t = step·η, as in the ``time`` dimension of
    :func:`reluflow.train`), ``step``, ``cost``, ``cumulative_weights`` (S, L, M, M),
    ``cumulative_biases`` (S, L, M) and, with a terminal layer, ``output_weights``, ``output_biases``.
    """
    import torch

    if mode not in MODES or cost not in COSTS:
        raise ValueError(f"mode must be one of {MODES} and cost one of {COSTS}; got {mode!r}, {cost!r}")
    f64 = torch.float64

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=f64).clone()

    Ws = t(np.stack(weights))
    bs = t(np.stack(biases))
    Xt, Yt = t(X), t(targets)
    L, M = bs.shape
    N = Xt.shape[0]
    w = t(np.full(N, 1.0 / N) if point_weights is None else point_weights)
    Wo = None if W_out is None else t(W_out)
    bo = None if b_out is None else t(b_out)
    eta, eta_w = float(lr), float(lr) * float(weight_lr_ratio)

    def cumulative(Ws_, bs_):
        Wc, bc = [], []
        Wp, bp = torch.eye(M, dtype=f64), torch.zeros(M, dtype=f64)
        for l in range(L):
            Wp = Ws_[l] @ Wp
            bp = Ws_[l] @ bp + bs_[l]
            Wc.append(Wp)
            bc.append(bp)
        return torch.stack(Wc), torch.stack(bc)

    def half_sq(f):
        return 0.5 * torch.sum(w * torch.sum((f - Yt) ** 2, dim=1))

    def cost_layer(Ws_, bs_, Wo_, bo_):
        x = Xt
        for l in range(L):
            x = torch.relu(x @ Ws_[l].T + bs_[l])
        if cost == "output":
            return half_sq(x @ Wo_.T + bo_)
        Wc, bc = cumulative(Ws_, bs_)
        return half_sq(torch.linalg.solve(Wc[-1], (x - bc[-1]).T).T)

    def cost_cumulative(Wc, bc, Wo_, bo_):
        x = Xt
        for l in range(L):
            s = torch.relu(x @ Wc[l].T + bc[l])
            if cost == "output" and l == L - 1:
                return half_sq(s @ Wo_.T + bo_)  # x^(L) = σ(W^(L) x^(τ,L-1) + b^(L))
            x = torch.linalg.solve(Wc[l], (s - bc[l]).T).T
        return half_sq(x)

    if mode in ("biases", "full"):
        params = [Ws, bs]
        evaluate = cost_layer
    elif mode == "cumulative":
        params = list(cumulative(Ws, bs))
        evaluate = cost_cumulative
    else:
        Wc0, bc0 = cumulative(Ws, bs)
        lam = torch.linalg.norm(Wc0, dim=2)
        R = Wc0 / lam[:, :, None]
        params = [lam, bc0]

        def evaluate(lam_, bc_, Wo_, bo_):
            return cost_cumulative(lam_[:, :, None] * R, bc_, Wo_, bo_)

    terminal = [Wo, bo] if Wo is not None else []
    train_out = bool(train_terminal) and Wo is not None
    leaves = params + terminal
    for p in leaves:
        p.requires_grad_(True)

    rec = {"step": [], "cost": [], "cumulative_weights": [], "cumulative_biases": [], "output_weights": [],
           "output_biases": []}
    for step in range(n_steps + 1):
        C = evaluate(*params, *(terminal or [None, None]))
        grads = torch.autograd.grad(C, leaves, allow_unused=True)
        if step % record_every == 0 or step == n_steps:
            with torch.no_grad():
                if mode in ("biases", "full"):
                    Wc, bc = cumulative(*params)
                elif mode == "cumulative":
                    Wc, bc = params
                else:
                    Wc, bc = params[0][:, :, None] * R, params[1]
            rec["step"].append(step)
            rec["cost"].append(float(C.detach()))
            rec["cumulative_weights"].append(Wc.detach().numpy().copy())
            rec["cumulative_biases"].append(bc.detach().numpy().copy())
            if Wo is not None:
                rec["output_weights"].append(Wo.detach().numpy().copy())
                rec["output_biases"].append(bo.detach().numpy().copy())
        if step == n_steps:
            break
        with torch.no_grad():
            gW, gb = grads[0], grads[1]
            if mode != "biases" and eta_w:
                params[0] -= eta_w * gW
            params[1] -= eta * gb
            if train_out:
                gWo, gbo = grads[2], grads[3]
                bo -= eta * gbo
                if mode != "biases":
                    Wo -= eta_w * gWo
    out = {k: np.asarray(v) for k, v in rec.items() if v}
    return {"time": out["step"] * eta, **out}

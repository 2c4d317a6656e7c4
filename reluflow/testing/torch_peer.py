"""A PyTorch peer of :func:`reluflow.train`: the same gradient-descent run, with torch autograd.

Optional (the ``bench`` extra): used by ``benchmarks/gd.py`` to time our hand-written numpy
backpropagation against PyTorch on the CPU, and by ``tests/testing/test_torch_peer.py`` to check that the
two engines produce the same trajectories. Everything runs in float64. The forward passes are
written here independently of :mod:`reluflow.training.gd`: layer modes use the plain network
x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ) (any widths d0 → … → dL), C_out, the cross-entropy through
``torch.log_softmax``, and C_in through x^(τ,L) = (W^(L))^-1 (x^(L) − b^(L)); the cumulative and adapted
modes compose the truncation maps τ(x) = W^-1(σ(Wx + b) − b) directly. Mini-batch SGD takes its batch
order from :func:`reluflow.training.gd.minibatches` (the schedule is part of the definition of a run,
not of the arithmetic), and does its own weight renormalisation and heavy-ball update.
"""

from __future__ import annotations

import numpy as np

from reluflow.training.gd import COSTS, MODES, minibatches

__all__ = ["train_torch"]


def train_torch(weights, biases, X, targets, *, mode: str = "biases", cost: str = "input", lr: float = 0.1,
                weight_lr_ratio: float = 1.0, n_steps: int = 1000, record_every: int = 1, W_out=None, b_out=None,
                train_terminal: bool = False, point_weights=None, batch_size: int | None = None,
                momentum: float = 0.0, seed=0) -> dict:
    """Descent v ← μ v + ∇_p C, p ← p − η_p v in PyTorch (float64, CPU), with the conventions of :func:`reluflow.train`.

    Arguments as in :func:`reluflow.train` (validated there; this peer assumes valid input). Returns a
    dict of numpy arrays over the recorded steps: ``time`` (t = step·η, as in the ``time`` dimension of
    :func:`reluflow.train`), ``step``, ``cost`` (full-data cost); for a square network ``cumulative_weights``
    (S, L, M, M) and ``cumulative_biases`` (S, L, M), for a rectangular one ``weights_ℓ`` (S, d_ℓ, d_{ℓ-1}) and
    ``biases_ℓ`` (S, d_ℓ), ℓ = 1..L; with a terminal layer ``output_weights``, ``output_biases``.
    """
    import torch

    if mode not in MODES or cost not in COSTS:
        raise ValueError(f"mode must be one of {MODES} and cost one of {COSTS}; got {mode!r}, {cost!r}")
    f64 = torch.float64

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=f64).clone()

    Wl = [t(W) for W in weights]
    bl = [t(b) for b in biases]
    L = len(Wl)
    M = Wl[0].shape[1]
    square = all(tuple(W.shape) == (M, M) for W in Wl)
    Xt = t(X)
    Yt = torch.as_tensor(np.asarray(targets)).clone() if cost == "cross_entropy" else t(targets)
    N = Xt.shape[0]
    w = t(np.full(N, 1.0 / N) if point_weights is None else point_weights)
    Wo = None if W_out is None else t(W_out)
    bo = None if b_out is None else t(b_out)
    eta, eta_w, mu = float(lr), float(lr) * float(weight_lr_ratio), float(momentum)

    def cumulative(Ws_, bs_):
        Wc, bc = [], []
        Wp, bp = torch.eye(M, dtype=f64), torch.zeros(M, dtype=f64)
        for l in range(L):
            Wp = Ws_[l] @ Wp
            bp = Ws_[l] @ bp + bs_[l]
            Wc.append(Wp)
            bc.append(bp)
        return torch.stack(Wc), torch.stack(bc)

    def final_cost(f, Y_, w_):
        """C_in / C_out on the final features f, or C_CE on the logits f."""
        if cost == "cross_entropy":
            logp = torch.log_softmax(f, dim=1)
            return -torch.sum(w_ * logp[torch.arange(f.shape[0]), Y_])
        return 0.5 * torch.sum(w_ * torch.sum((f - Y_) ** 2, dim=1))

    def cost_layer(Ws_, bs_, Wo_, bo_, X_, Y_, w_):
        x = X_
        for l in range(L):
            x = torch.relu(x @ Ws_[l].T + bs_[l])
        if cost != "input":
            return final_cost(x @ Wo_.T + bo_, Y_, w_)
        Wc, bc = cumulative(Ws_, bs_)
        return final_cost(torch.linalg.solve(Wc[-1], (x - bc[-1]).T).T, Y_, w_)

    def cost_cumulative(Wc, bc, Wo_, bo_, X_, Y_, w_):
        x = X_
        for l in range(L):
            s = torch.relu(x @ Wc[l].T + bc[l])
            if cost != "input" and l == L - 1:
                return final_cost(s @ Wo_.T + bo_, Y_, w_)  # x^(L) = σ(W^(L) x^(τ,L-1) + b^(L))
            x = torch.linalg.solve(Wc[l], (s - bc[l]).T).T
        return final_cost(x, Y_, w_)

    if mode in ("biases", "full"):
        params = Wl + bl
        rates = [eta_w if mode == "full" else 0.0] * L + [eta] * L

        def evaluate(*p, X_, Y_, w_):
            return cost_layer(p[:L], p[L:2 * L], *(p[2 * L:] or (Wo, bo)), X_, Y_, w_)
    elif mode == "cumulative":
        params = list(cumulative(torch.stack(Wl), torch.stack(bl)))
        rates = [eta_w, eta]

        def evaluate(*p, X_, Y_, w_):
            return cost_cumulative(p[0], p[1], *(p[2:] or (Wo, bo)), X_, Y_, w_)
    else:
        Wc0, bc0 = cumulative(torch.stack(Wl), torch.stack(bl))
        lam = torch.linalg.norm(Wc0, dim=2)
        R = Wc0 / lam[:, :, None]
        params = [lam, bc0]
        rates = [eta_w, eta]

        def evaluate(*p, X_, Y_, w_):
            return cost_cumulative(p[0][:, :, None] * R, p[1], *(p[2:] or (Wo, bo)), X_, Y_, w_)

    if train_terminal and Wo is not None:
        params += [Wo, bo]
        rates += [eta_w if mode != "biases" else 0.0, eta]
    for p in params:
        p.requires_grad_(True)
    velocity = [torch.zeros_like(p) for p in params]

    def layer_state():
        if mode in ("biases", "full"):
            return params[:L], params[L:2 * L]
        Wc = params[0][:, :, None] * R if mode == "adapted" else params[0]
        Ws_, bs_ = [Wc[0]], [params[1][0]]
        for l in range(1, L):
            Ws_.append(torch.linalg.solve(Wc[l - 1].T, Wc[l].T).T)
            bs_.append(params[1][l] - Ws_[-1] @ params[1][l - 1])
        return Ws_, bs_

    full_batch = batch_size is None or batch_size == N
    batches = None if full_batch else minibatches(N, batch_size, seed=seed)
    total = torch.sum(w)
    keys = ["step", "cost", "output_weights", "output_biases"]
    keys += ["cumulative_weights", "cumulative_biases"] if square else \
        [f"{k}_{l}" for l in range(1, L + 1) for k in ("weights", "biases")]
    rec = {k: [] for k in keys}
    for step in range(n_steps + 1):
        recording = step % record_every == 0 or step == n_steps
        if full_batch:
            C = evaluate(*params, X_=Xt, Y_=Yt, w_=w)
            grads = torch.autograd.grad(C, params) if step < n_steps else None
        else:
            with torch.no_grad():
                C = evaluate(*params, X_=Xt, Y_=Yt, w_=w) if recording else None
            if step < n_steps:
                idx = torch.as_tensor(next(batches))
                wb = w[idx] * (total / torch.sum(w[idx]))
                Cb = evaluate(*params, X_=Xt[idx], Y_=Yt[idx], w_=wb)
                grads = torch.autograd.grad(Cb, params)
        if recording:
            with torch.no_grad():
                rec["step"].append(step)
                rec["cost"].append(float(C.detach()))
                if square:
                    if mode in ("biases", "full"):
                        Wc, bc = cumulative(torch.stack(params[:L]), torch.stack(params[L:2 * L]))
                    elif mode == "cumulative":
                        Wc, bc = params[0], params[1]
                    else:
                        Wc, bc = params[0][:, :, None] * R, params[1]
                    rec["cumulative_weights"].append(Wc.detach().numpy().copy())
                    rec["cumulative_biases"].append(bc.detach().numpy().copy())
                else:
                    Ws_, bs_ = layer_state()
                    for l in range(L):
                        rec[f"weights_{l + 1}"].append(Ws_[l].detach().numpy().copy())
                        rec[f"biases_{l + 1}"].append(bs_[l].detach().numpy().copy())
                if Wo is not None:
                    rec["output_weights"].append(Wo.detach().numpy().copy())
                    rec["output_biases"].append(bo.detach().numpy().copy())
        if step == n_steps:
            break
        with torch.no_grad():
            for p, g, v, r in zip(params, grads, velocity, rates, strict=True):
                if r:
                    v.mul_(mu).add_(g)
                    p -= r * v
    out = {k: np.asarray(v) for k, v in rec.items() if v}
    return {"time": out["step"] * eta, **out}

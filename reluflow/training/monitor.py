"""Record the truncation picture along any training run: ``with watch(model, X) as mon: … mon.step()``.

The monitor evaluates the model on a fixed set of points X every ``every`` optimiser steps (no gradient, the
model untouched) and records, in one xarray Dataset that follows :mod:`reluflow.results.schema` (dimension
``time``, with ``step`` as a coordinate):

- ``n_truncated`` (time, layer, coordinate): n_{ℓ,k}, the points that unit k of layer ℓ truncates
  (pre-activation ≤ 0); units beyond a layer's width hold −1 (``layer_width`` gives the widths);
- ``dead_units`` (time, layer): units that truncate every point;
- ``truncation_fraction`` (time, point): each point's truncated fraction over all hidden units;
- ``frozen_layer`` (time, point): the first layer that truncates all of the point's units (0: none);
- ``effective`` (time, point) and ``n_effective`` (time): whether the point still has a gradient path to the
  first layer (J_i = D_L W_L ⋯ W_2 D_1 ≠ 0, :func:`reluflow.theory.generic.gradient_path_mask`), and N_eff;
- with ``labels``: ``nc1`` (time, layer), NC1 = tr(Σ_W Σ_B⁺)/Q of the activations x^(ℓ)
  (:func:`reluflow.theory.collapse.nc1_variability`; NaN where the class means coincide), and ``accuracy``
  (time) of the output's argmax (NaN without an output layer W_out, b_out, or with a single output);
- ``finite`` (time): 1 when the parameters, the pre-activations and the outputs on X are finite. A run that
  diverges is recorded, not refused: at a state that is not finite nothing is counted (counts, dead units, frozen
  layers and N_eff −1, fractions, NC1 and accuracy NaN, ``effective`` 0), and :func:`diagnose` flags it unstable.

Every count is the one :mod:`reluflow.theory.generic` gives for the same parameters (the tests recount them
by brute force). Models:

- a PyTorch ``nn.Sequential`` of ``Linear`` and ``ReLU`` modules, Linear → ReLU → … → Linear (the last Linear
  is the output layer; a network that ends with a ReLU has no output layer). Forward hooks on the Linear
  modules of the hidden layers capture the pre-activations of one ``torch.no_grad()`` pass over X; they are
  registered for that pass only and removed after it, so the training loop's own passes run without them.
  Torch is needed only for such a model (the optional ``bench`` extra);
- the project's own engine: any object with attributes ``weights`` and ``biases`` (sequences of the layer
  arrays (d_ℓ, d_{ℓ-1}) and (d_ℓ,)) and optionally ``W_out``, ``b_out``, read afresh at each recorded step,
  so a training loop may update them in place or rebind them; or a callable returning
  ``(weights, biases)`` or ``(weights, biases, W_out, b_out)``.

Plots: :func:`truncation_heatmap`, :func:`effective_set_plot`, :func:`nc1_plot`, and all three in
:func:`monitor_figure`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from reluflow.results.schema import make_dataset
from reluflow.theory import collapse, generic
from reluflow.theory.kernels import forward_pass
from reluflow.validation import as_labels, as_network, as_points, as_positive_float, check_positive_int

__all__ = ["Watch", "watch", "from_trajectory", "trajectory_parameters", "truncation_heatmap", "effective_set_plot",
           "nc1_plot", "monitor_figure", "diagnose"]


@dataclass
class _Snapshot:
    pre: list  # pre-activations (N, d_ℓ) of the hidden layers
    weights: list  # W_1..W_L as numpy arrays
    output: np.ndarray | None  # (N, Q) or None
    post: list | None = None  # activations x^(ℓ) = max(z, 0) when the model computed them
    finite: bool = True  # parameters, pre-activations and outputs all finite


def _all_finite(arrays) -> bool:
    return all(np.isfinite(a).all() for a in arrays if a is not None)


def _is_torch_module(model) -> bool:
    """Whether ``model`` is a torch module, a user's subclass included (torch itself is not imported for this)."""
    return hasattr(model, "named_modules") and any(c.__module__.startswith("torch.") for c in type(model).__mro__)


def _as_float64(tensor, copy: bool) -> np.ndarray:
    """A torch tensor as a float64 numpy array: a view of a float64 CPU tensor unless ``copy`` (then, and for any
    other dtype or device, a copy)."""
    a = tensor.detach().cpu().numpy()
    return a.astype(np.float64, copy=copy)


class _TorchModel:
    """Hooks on the hidden Linear modules of an nn.Sequential of Linear/ReLU layers."""

    def __init__(self, model, X):
        import torch
        from torch import nn

        if not isinstance(model, nn.Sequential):
            raise TypeError("model must be a torch.nn.Sequential of Linear and ReLU modules; "
                            f"got {type(model).__name__}")
        mods = list(model)
        kinds = ["L" if isinstance(m, nn.Linear) else "R" if isinstance(m, nn.ReLU) else "?" for m in mods]
        pattern = "".join(kinds)
        if "?" in pattern or not pattern or pattern[0] != "L" or "LL" in pattern or "RR" in pattern \
                or pattern.count("R") == 0:
            raise ValueError("model must alternate Linear and ReLU modules, Linear → ReLU → … [→ Linear], with at "
                             f"least one hidden layer; got {[type(m).__name__ for m in mods]}")
        self.torch, self.model = torch, model
        self.hidden = [m for m, nxt in zip(mods, mods[1:]) if isinstance(m, nn.Linear) and isinstance(nxt, nn.ReLU)]
        self.relus = [nxt for m, nxt in zip(mods, mods[1:]) if isinstance(m, nn.Linear) and isinstance(nxt, nn.ReLU)]
        self.has_output = isinstance(mods[-1], nn.Linear)
        self.inplace = any(getattr(m, "inplace", False) for m in mods)
        # a plain Sequential's forward is the chain of its modules' calls: the monitor then makes those calls itself
        # and reads each output as it comes, with no hooks; a subclass that overrides forward is evaluated through
        # forward hooks, registered for the pass only
        self.walk = type(model).forward is nn.Sequential.forward
        self.mods = mods
        if self.hidden[0].in_features != X.shape[1]:
            raise ValueError(f"X must have {self.hidden[0].in_features} columns, the model's input width; "
                             f"got shape {X.shape}")
        p = next(model.parameters())
        self.X = torch.as_tensor(X, dtype=p.dtype, device=p.device)

    def _hook(self, i, captured, copy):
        def hook(_module, _inputs, output):
            captured[i] = _as_float64(output, copy)
        return hook

    def _walk(self, pre, post):
        """The model's own forward, module by module (a plain Sequential), each hidden output read as it comes."""
        x, hidden, relus = self.X, {id(m): i for i, m in enumerate(self.hidden)}, {id(m): i for i, m in
                                                                                  enumerate(self.relus)}
        with self.torch.no_grad():
            for m in self.mods:
                x = m(x)
                i = hidden.get(id(m))
                if i is not None:
                    pre[i] = _as_float64(x, self.inplace)
                i = relus.get(id(m))
                if i is not None:
                    post[i] = _as_float64(x, False)
        return x

    def snapshot(self) -> _Snapshot:
        pre, post = {}, {}
        if self.walk:
            # registering and removing 2L hooks cost as much as the no-grad pass itself on the benchmark's medium
            # case (0.22 ms against 0.21 ms)
            out = self._walk(pre, post)
        else:
            # hooks registered for this pass only: a module with forward hooks takes PyTorch's slower call path,
            # which made every training step 2.3 % slower on the benchmark's medium case
            handles = [m.register_forward_hook(self._hook(i, pre, self.inplace)) for i, m in enumerate(self.hidden)]
            handles += [m.register_forward_hook(self._hook(i, post, False)) for i, m in enumerate(self.relus)]
            try:
                with self.torch.no_grad():
                    out = self.model(self.X)
            finally:
                for h in handles:
                    h.remove()
        # the weights change in place at the next optimiser step: copied. A pre-activation is a fresh tensor of this
        # no-grad pass, overwritten later only by an in-place ReLU, so it is shared unless there is one; the ReLU's
        # output (the activation x^(ℓ)) is shared too, since nothing writes it afterwards
        weights = [_as_float64(m.weight, True) for m in self.hidden]
        output = _as_float64(out, False) if self.has_output else None
        L = len(self.hidden)
        pre, post = [pre[i] for i in range(L)], [post[i] for i in range(L)]
        return _Snapshot(pre, weights, output, post, _all_finite(pre) and _all_finite([output]))


class _ArrayModel:
    """The project's engine: layer arrays read from an object or returned by a callable at each snapshot."""

    def __init__(self, model, X):
        self.model, self.X = model, X
        self._shapes = self._shapes_of(self._parameters())  # validated once up front

    def _raw(self):
        m = self.model
        if hasattr(m, "weights") and hasattr(m, "biases"):
            got = (m.weights, m.biases, getattr(m, "W_out", None), getattr(m, "b_out", None))
        elif callable(m):
            got = tuple(m())
            if len(got) == 2:
                got = got + (None, None)
            if len(got) != 4:
                raise ValueError("a callable model must return (weights, biases) or (weights, biases, W_out, b_out); "
                                 f"got a tuple of {len(got)}")
        else:
            raise TypeError("model must be a torch.nn.Sequential, an object with attributes weights and biases, or a "
                            f"callable returning them; got {type(m).__name__}")
        return got

    @staticmethod
    def _shapes_of(layers):
        return [None if a is None else [np.shape(x) for x in a] if isinstance(a, list) else np.shape(a)
                for a in layers]

    def _parameters(self):
        """The model's layers, fully validated (finite, consistent shapes, X's width)."""
        Ws, bs, W_out, b_out = as_network(*self._raw())
        as_points(self.X, "X", dim=Ws[0].shape[1])
        return Ws, bs, W_out, b_out

    def _current(self):
        """The layers as float arrays: checked in full (:meth:`_parameters`) only when their shapes are not the ones
        validated at the start, so a run that diverges is recorded (``finite`` = 0) rather than refused."""
        try:
            Ws, bs, W_out, b_out = self._raw()
            Ws = [np.asarray(W, dtype=float) for W in Ws]
            bs = [np.asarray(b, dtype=float) for b in bs]
            W_out, b_out = (None if a is None else np.asarray(a, dtype=float) for a in (W_out, b_out))
            same = self._shapes_of([Ws, bs, W_out, b_out]) == self._shapes
        except (TypeError, ValueError):
            same = False
        if not same:
            self._parameters()  # raises, naming what is wrong
            raise ValueError("the model's layer shapes must stay those of the first record "
                             f"({self._shapes[0]}, output {self._shapes[2]}); they changed during the run")
        return Ws, bs, W_out, b_out

    def snapshot(self) -> _Snapshot:
        Ws, bs, W_out, b_out = self._current()
        finite = _all_finite(Ws) and _all_finite(bs) and _all_finite([W_out, b_out])
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged run: recorded as not finite
            pre, acts = forward_pass(Ws, bs, self.X)
            post = acts[1:]
            out = None if W_out is None else post[-1] @ W_out.T + b_out
        return _Snapshot(pre, Ws, out, post, finite and _all_finite(pre) and _all_finite([out]))


class Watch:
    """A monitor of one training run; made by :func:`watch`. Call :meth:`step` after each optimiser step and
    :meth:`result` for the Dataset. The state before the first step (step 0) is recorded on entering."""

    def __init__(self, model, X, labels=None, every: int = 1, lr: float | None = None):
        X = as_points(X, "X")
        self.every = check_positive_int(every, "every")
        self.lr = None if lr is None else as_positive_float(lr, "lr")
        self.labels = None
        if labels is not None:
            self.labels = as_labels(labels, "labels", rows=X.shape[0])
        if self.labels is not None and np.unique(self.labels).size < 2:
            raise ValueError("labels must contain at least two classes (NC1 compares classes); "
                             f"got {np.unique(self.labels).size}")
        # the labels' one-hot matrix and class sizes, made once (every class 0..Q-1 must occur)
        self._label_data = None if self.labels is None else collapse._label_data(self.labels, X.shape[0], name="X")
        self._model = _TorchModel(model, X) if _is_torch_module(model) else _ArrayModel(model, X)
        self.N = X.shape[0]
        self.steps, self.times, self.records, self._count, self._open = [], [], [], 0, False

    # context manager
    def __enter__(self) -> Watch:
        self._open = True
        self._record()
        return self

    def __exit__(self, *exc):
        self._open = False
        return False

    def step(self) -> None:
        """Count one optimiser step; every ``every`` steps, evaluate the model on X and record."""
        if not self._open:
            raise RuntimeError("step() must be called inside the `with watch(...)` block")
        self._count += 1
        if self._count % self.every == 0:
            self._record()

    def _record(self, time: float | None = None):
        """Evaluate the model on X and store the record of step ``self._count`` (at ``time``: default step·η)."""
        snap = self._model.snapshot()
        widths = [z.shape[1] for z in snap.pre]
        if not snap.finite:  # a diverged state: nothing is counted (see the module docstring)
            rec = {"counts": [np.full(d, -1) for d in widths], "dead": [-1] * len(widths),
                   "fraction": np.full(self.N, np.nan), "frozen": np.full(self.N, -1),
                   "effective": np.zeros(self.N, dtype=bool), "widths": widths, "finite": False}
            if self.labels is not None:
                rec["nc1"], rec["accuracy"] = [np.nan] * len(widths), np.nan
        else:
            # the kernels of generic.pattern_summary and collapse.nc1_layers: the masks, weights and activations
            # come from the monitor's own forward pass, so their shapes need no second validation
            T = [z <= 0.0 for z in snap.pre]
            summary = generic._summary(T, snap.weights)
            rec = {"counts": summary.counts, "dead": [int(d.sum()) for d in summary.dead],
                   "fraction": summary.fractions, "frozen": summary.frozen, "effective": summary.effective,
                   "widths": widths, "finite": True}
            if self.labels is not None:
                post = snap.post if snap.post is not None else [np.maximum(z, 0.0) for z in snap.pre]
                rec["nc1"] = list(collapse._nc1_each(post, *self._label_data))
                rec["accuracy"] = (float(np.mean(snap.output.argmax(axis=1) == self.labels))
                                   if snap.output is not None and snap.output.shape[1] > 1 else np.nan)
        self.steps.append(self._count)
        self.times.append(float(self._count * (self.lr or 1.0) if time is None else time))
        self.records.append(rec)

    def result(self) -> xr.Dataset:
        """The recorded run as an xarray Dataset (see the module docstring for its variables)."""
        if not self.records:
            raise RuntimeError("nothing recorded yet: use the monitor as `with watch(...) as mon:`")
        S, L = len(self.records), len(self.records[0]["widths"])
        widths = np.array(self.records[0]["widths"])
        n = np.full((S, L, widths.max()), -1, dtype=np.int64)
        for s, rec in enumerate(self.records):
            for l, c in enumerate(rec["counts"]):
                n[s, l, :c.size] = c
        steps, time = np.array(self.steps, dtype=np.int64), np.array(self.times, dtype=float)
        extra = {
            "layer_width": (("layer",), widths, "width d_l of hidden layer l"),
            "dead_units": (("time", "layer"), np.array([r["dead"] for r in self.records]),
                           "units of layer l that truncate every point"),
            "truncation_fraction": (("time", "point"), np.stack([r["fraction"] for r in self.records]),
                                    "fraction of the hidden units that truncate the point"),
            "frozen_layer": (("time", "point"), np.stack([r["frozen"] for r in self.records]),
                             "first layer truncating all of the point's units (0: none)"),
            "effective": (("time", "point"), np.stack([r["effective"] for r in self.records]).astype(np.int8),
                          "1 while the point has a gradient path to the first layer"),
            "n_effective": (("time",), np.array([int(r["effective"].sum()) if r["finite"] else -1
                                                 for r in self.records]),
                            "N_eff, the points with a gradient path to the first layer (-1: not finite)"),
            "finite": (("time",), np.array([r["finite"] for r in self.records], dtype=np.int8),
                       "1 when the parameters, pre-activations and outputs on X are finite; 0 (a diverged state): "
                       "counts -1, fractions and NC1 NaN"),
        }
        if self.labels is not None:
            extra["nc1"] = (("time", "layer"), np.array([r["nc1"] for r in self.records], dtype=float),
                            "NC1 = tr(Sigma_W Sigma_B^+)/Q of the activations of layer l")
            extra["accuracy"] = (("time",), np.array([r["accuracy"] for r in self.records]),
                                 "fraction of X whose output argmax is its label")
        coords = {"time": time, "step": steps, "layer": np.arange(1, L + 1), "coordinate": np.arange(widths.max()),
                  "point": np.arange(self.N)}
        attrs = {"every": self.every, "n_points": self.N,
                 "model": "torch.nn.Sequential" if isinstance(self._model, _TorchModel) else "reluflow arrays",
                 "n_truncated_fill": "-1 for units beyond a layer's width, and at states that are not finite"}
        return make_dataset({"n_truncated": n}, coords, status=0, message=f"recorded {S} states", attrs=attrs,
                            extra_variables=extra)


def watch(model, X, labels=None, every: int = 1, *, lr: float | None = None) -> Watch:
    """Monitor a training run: ``with watch(model, X, labels) as mon:`` …, ``mon.step()`` after each optimiser step,
    ``mon.result()`` for the Dataset.

    Parameters
    ----------
    model : torch.nn.Sequential of Linear/ReLU, an object with ``weights``/``biases`` (and optionally ``W_out``/
        ``b_out``), or a callable returning them (see the module docstring).
    X : array (N, d_0), the points evaluated at every record (e.g. the training set, or a fixed sample of it).
    labels : optional integer labels (N,), for NC1 per layer and the accuracy.
    every : record every this many steps (≥ 1); step 0 is always recorded.
    lr : optional learning rate η; the ``time`` coordinate is then step·η (else the step number).
    """
    return Watch(model, X, labels=labels, every=every, lr=lr)


def trajectory_parameters(ds: xr.Dataset) -> list[tuple]:
    """The layer parameters at each recorded time of a :func:`reluflow.train` trajectory:
    ``[(weights, biases, W_out, b_out), …]`` (W_out, b_out None without a terminal layer).

    A square network's trajectory holds the cumulative parameters (W^(ℓ), b^(ℓ)), turned back into layer ones by
    :func:`reluflow.layer_parameters`; a rectangular one holds ``weights_ℓ``, ``biases_ℓ`` per layer.
    """
    from reluflow.theory.network import layer_parameters

    if not isinstance(ds, xr.Dataset) or "cost" not in ds or "step" not in ds.coords:
        raise TypeError(f"ds must be a trajectory of reluflow.train; got {type(ds).__name__}")
    S = ds.sizes["time"]
    out = []
    for s in range(S):
        if "cumulative_weights" in ds:
            Wc, bc = ds.cumulative_weights.values[s], ds.cumulative_biases.values[s]
            weights, biases = layer_parameters(list(Wc), list(bc), max_condition=np.inf)
        else:
            L = int(ds.attrs.get("n_layers", 0))
            if L < 1 or f"weights_{L}" not in ds:
                raise ValueError("ds holds neither cumulative_weights nor weights_1..weights_L with n_layers")
            weights = [ds[f"weights_{l}"].values[s] for l in range(1, L + 1)]
            biases = [ds[f"biases_{l}"].values[s] for l in range(1, L + 1)]
        if "output_weights" in ds:
            out.append((weights, biases, ds.output_weights.values[s], ds.output_biases.values[s]))
        else:
            out.append((weights, biases, None, None))
    return out


def from_trajectory(ds: xr.Dataset, X, labels=None) -> xr.Dataset:
    """The monitor's Dataset for a run of the project's engine, from its recorded trajectory (:func:`reluflow.train`
    with ``record_every``): every recorded state is evaluated on X, as :func:`watch` would have done at that step.
    The ``time`` and ``step`` coordinates are the trajectory's."""
    states = trajectory_parameters(ds)
    current = {"i": 0}
    mon = Watch(lambda: states[current["i"]], X, labels=labels)
    for i, (step, time) in enumerate(zip(ds.step.values, ds.time.values)):
        current["i"], mon._count = i, int(step)
        mon._record(time=float(time))
    return mon.result()


# ------------------------------------------------------------------------------------------------------ plots


def _check_result(ds):
    if not isinstance(ds, xr.Dataset) or "n_truncated" not in ds or "n_effective" not in ds:
        raise TypeError(f"ds must be the Dataset of Watch.result(); got {type(ds).__name__}")


def _finite_rows(ds, values):
    """``values`` (time, …) as floats, NaN (not drawn) at the states that are not finite."""
    values = np.asarray(values, dtype=float)
    if "finite" in ds:
        values[~ds.finite.values.astype(bool)] = np.nan
    return values


def truncation_heatmap(ds: xr.Dataset, layer: int = 1, ax=None):
    """Heat map of n_{ℓ,k}(t)/N for one layer: units down, time across."""
    import matplotlib.pyplot as plt

    _check_result(ds)
    layer = check_positive_int(layer, "layer")
    if layer not in ds.layer.values:
        raise ValueError(f"layer must be one of {ds.layer.values.tolist()}; got {layer!r}")
    ax = ax if ax is not None else plt.subplots()[1]
    width = int(ds.layer_width.sel(layer=layer))
    frac = _finite_rows(ds, ds.n_truncated.sel(layer=layer).values[:, :width]).T / ds.sizes["point"]
    t = ds.time.values
    im = ax.imshow(frac, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                   extent=(t[0], t[-1] if t[-1] > t[0] else t[0] + 1, -0.5, width - 0.5), interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, label="fraction of points truncated (1)")
    ax.set(xlabel="time (step·η, or step) (1)", ylabel=f"unit k of layer {layer}",
           title=f"truncation counts, layer {layer}")
    return ax


def effective_set_plot(ds: xr.Dataset, ax=None):
    """N_eff(t)/N and the dead units of every layer (as fractions of its width) against time."""
    import matplotlib.pyplot as plt

    _check_result(ds)
    ax = ax if ax is not None else plt.subplots()[1]
    t = ds.time.values
    ax.plot(t, _finite_rows(ds, ds.n_effective.values) / ds.sizes["point"], color="k", lw=2, label="N_eff / N")
    for l in ds.layer.values:
        ax.plot(t, _finite_rows(ds, ds.dead_units.sel(layer=l).values) / int(ds.layer_width.sel(layer=l)), ls="--",
                label=f"dead units, layer {l} (fraction)")
    ax.set(xlabel="time (step·η, or step) (1)", ylabel="fraction (1)", ylim=(-0.02, 1.02),
           title="effective training set and dead units")
    ax.legend(fontsize=8)
    return ax


def nc1_plot(ds: xr.Dataset, ax=None):
    """NC1(t) of every hidden layer, on a log scale (needs a run recorded with labels)."""
    import matplotlib.pyplot as plt

    _check_result(ds)
    if "nc1" not in ds:
        raise ValueError("ds has no nc1: record the run with labels (watch(model, X, labels))")
    ax = ax if ax is not None else plt.subplots()[1]
    for l in ds.layer.values:
        ax.plot(ds.time.values, ds.nc1.sel(layer=l).values, label=f"layer {l}")
    ax.set(xlabel="time (step·η, or step) (1)", ylabel="NC1 (1)", yscale="log", title="within-class variability")
    ax.legend(fontsize=8)
    return ax


def monitor_figure(ds: xr.Dataset, layer: int = 1):
    """The three plots side by side: the truncation heat map of ``layer``, N_eff and dead units, and NC1 (if any)."""
    import matplotlib.pyplot as plt

    _check_result(ds)
    n = 3 if "nc1" in ds else 2
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), layout="constrained")
    truncation_heatmap(ds, layer, ax=axes[0])
    effective_set_plot(ds, ax=axes[1])
    if n == 3:
        nc1_plot(ds, ax=axes[2])
    return fig


from reluflow.training.diagnosis import diagnose  # noqa: E402  (the diagnosis of a record, in its own module)

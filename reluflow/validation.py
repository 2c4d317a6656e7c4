"""Input validation at the library's boundary.

Every public function of reluflow validates its arguments with these helpers, so that bad input
fails at once with a message naming the argument, what was expected and what was received.
Nothing is silently coerced: integer arrays are promoted to float64 (a widening, not a change of
values), but booleans, complex numbers, objects, NaN and inf are refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default bound on the 2-norm condition number of a weight matrix. Matrices above it are refused
#: as ill-conditioned, because inverting them (as the truncation maps do) loses more than half of
#: float64's digits. Every function that inverts weights takes ``max_condition`` to change it.
MAX_CONDITION = 1e8


def as_real_array(value, name: str, *, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """Return ``value`` as a float64 array, or raise a clear error.

    Refuses non-numeric, boolean and complex input (TypeError), a wrong number of dimensions
    and NaN or inf entries (ValueError).
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real numeric array; got {type(value).__name__} ({exc})") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array; got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite; got {bad} NaN or inf entr{'y' if bad == 1 else 'ies'}")
    return arr


def as_points(X, name: str = "X", *, dim: int | None = None) -> np.ndarray:
    """Validate a data matrix with one point per row, shape (N, M)."""
    arr = as_real_array(X, name, ndim=2)
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one point (row); got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}) (points as rows); got shape {arr.shape}")
    return arr



def as_coordinate_problem(X, targets, theta, theta_name: str = "theta"):
    """``(X, targets, theta)`` of a one-layer, identity-frame problem: X (N, M), targets (N, M), theta (M,)."""
    X = as_points(X, "X")
    targets = as_real_array(targets, "targets", ndim=2)
    theta = as_real_array(theta, theta_name, ndim=1)
    if targets.shape != X.shape or theta.shape != (X.shape[1],):
        raise ValueError(f"targets must have shape {X.shape} and {theta_name} ({X.shape[1]},); "
                         f"got {targets.shape} and {theta.shape}")
    return X, targets, theta

def as_square_invertible(W, name: str, *, dim: int | None = None, max_condition: float = MAX_CONDITION) -> np.ndarray:
    """Validate a square, well-conditioned weight matrix of shape (M, M)."""
    arr = as_real_array(W, name, ndim=2)
    if arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a square (M, M) matrix; got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise ValueError(f"{name} must have shape ({dim}, {dim}); got shape {arr.shape}")
    max_condition = as_max_condition(max_condition)
    cond = np.linalg.cond(arr)
    if not np.isfinite(cond) or cond > max_condition:
        raise ValueError(
            f"{name} is singular or ill-conditioned: condition number {cond:.3g} exceeds "
            f"max_condition={max_condition:.3g} (pass a larger max_condition to accept it)"
        )
    return arr


def as_vector(b, name: str, dim: int) -> np.ndarray:
    """Validate a vector of length ``dim``."""
    arr = as_real_array(b, name, ndim=1)
    if arr.shape != (dim,):
        raise ValueError(f"{name} must have shape ({dim},); got shape {arr.shape}")
    return arr


def as_layer_list(values, name: str) -> list:
    """Validate that ``values`` is a non-empty sequence (one entry per layer)."""
    if isinstance(values, np.ndarray):
        if values.ndim < 2:
            raise TypeError(f"{name} must be a sequence of per-layer arrays; got an array of shape {values.shape}")
        values = list(values)
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of per-layer arrays; got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one layer; got an empty sequence")
    return list(values)


def check_same_length(a: Sequence, b: Sequence, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have one entry per layer; got {len(a)} and {len(b)}")


#: Memory budget of one call, in bytes (4 GiB). Sizes whose arrays would need more are refused before anything
#: is allocated, with the estimate in the message (:func:`check_memory`).
MEMORY_BUDGET_BYTES = 4 * 2**30


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}"


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Validate an integer parameter ≥ ``minimum`` (bool, floats and other types are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_memory(nbytes, what: str) -> None:
    """Refuse a computation whose arrays would need more than :data:`MEMORY_BUDGET_BYTES`.

    ``what`` names the sizes that determine the estimate, e.g. ``"M = 10, L = 10**12"``.
    """
    nbytes = float(nbytes)
    if nbytes > MEMORY_BUDGET_BYTES:
        raise ValueError(
            f"{what} needs about {nbytes / 2**30:.3g} GiB of memory, more than the budget "
            f"reluflow.validation.MEMORY_BUDGET_BYTES = {MEMORY_BUDGET_BYTES / 2**30:.3g} GiB; choose smaller sizes"
        )


def check_size(value, name: str, *, minimum: int = 1, bytes_per_unit: float = 0.0, what: str | None = None) -> int:
    """A size (M, L, N, n_per_cluster, ...): an integer ≥ ``minimum``; with ``bytes_per_unit`` > 0 also within
    the memory budget, estimated as ``value * bytes_per_unit`` bytes."""
    value = check_positive_int(value, name, minimum=minimum)
    if bytes_per_unit:
        check_memory(value * bytes_per_unit, what or f"{name} = {value}")
    return value


def as_real(value, name: str, *, minimum: float | None = None, strict: bool = False, maximum: float | None = None,
            allow_inf: bool = False, expectation: str | None = None) -> float:
    """The one real-scalar validator: a real number (bool, None, strings, complex refused), finite unless
    ``allow_inf`` (+inf only), ≥ ``minimum`` (> when ``strict``) and ≤ ``maximum``."""
    if expectation is None:
        parts = ["a finite real number" if not allow_inf else "a real number"]
        if minimum is not None:
            parts.append(f"{'>' if strict else '>='} {minimum:g}")
        if maximum is not None:
            parts.append(f"<= {maximum:g}")
        expectation = " ".join(parts)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {expectation}; got {_describe(value)}")
    value = float(value)
    if np.isnan(value) or (np.isinf(value) and not (allow_inf and value > 0)):
        raise ValueError(f"{name} must be {expectation}; got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ValueError(f"{name} must be {expectation}; got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be {expectation}; got {value!r}")
    return value


def as_interval(value, name: str) -> tuple[float, float]:
    """An interval [low, high] of two finite numbers with 0 < low < high (e.g. a range of data distances)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be an interval [low, high] of two numbers; got {value!r}")
    lo, hi = (as_real(v, f"{name}[{i}]", minimum=0.0, strict=True) for i, v in enumerate(value))
    if not lo < hi:
        raise ValueError(f"{name} must be an interval [low, high] with 0 < low < high; got {value!r}")
    return lo, hi


def as_generator(rng, name: str = "rng"):
    """A :class:`numpy.random.Generator`, passed on as it is (the caller owns the stream and its order of draws)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} must be a numpy.random.Generator (e.g. streams[k]); got {type(rng).__name__}")
    return rng


def as_positive_float(value, name: str) -> float:
    """A positive, finite real scalar (bool refused)."""
    return as_real(value, name, minimum=0.0, strict=True, expectation="a positive finite number")


def as_nonnegative_float(value, name: str) -> float:
    """A non-negative, finite real scalar (bool refused); 0 is allowed."""
    return as_real(value, name, minimum=0.0, expectation="a non-negative finite number")


def as_tolerance(value, name: str = "tol") -> float:
    """A tolerance: a positive finite number (NaN would silently disable the check it bounds)."""
    return as_real(value, name, minimum=0.0, strict=True, expectation="a positive finite tolerance")


def as_max_condition(value, name: str = "max_condition") -> float:
    """A bound on a condition number: a real number >= 1; +inf accepts every invertible matrix."""
    return as_real(value, name, minimum=1.0, allow_inf=True, expectation="a real number >= 1 (or inf)")


def as_bool(value, name: str) -> bool:
    """A flag: True or False (numpy booleans too); 0, 1, None and strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {_describe(value)}")
    return bool(value)


def as_optional_bool(value, name: str) -> bool | None:
    """None (automatic) or a flag."""
    return None if value is None else as_bool(value, name)


def as_choice(value, name: str, choices) -> str:
    """One of the names ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {_describe(value)}")
    return value


def as_terminal_weights(W_out, dim: int, name: str = "W_out") -> np.ndarray:
    """Terminal weights W_out of shape (Q, dim) with Q ≥ 1."""
    W_out = as_real_array(W_out, name, ndim=2)
    if W_out.shape[1] != dim or W_out.shape[0] == 0:
        raise ValueError(f"{name} must have shape (Q, {dim}) with Q >= 1; got shape {W_out.shape}")
    return W_out


def as_terminal_layer(W_out, b_out, dim: int, *, required: bool = False):
    """A terminal layer x^(L+1) = W_out x^(L) + b_out: ``W_out`` (Q, dim) with Q ≥ 1 and ``b_out`` (Q,), given
    together; ``(None, None)`` when both are None and not ``required``."""
    if (W_out is None) != (b_out is None):
        raise ValueError(
            f"W_out and b_out must be given together; got W_out={'None' if W_out is None else 'an array'}, "
            f"b_out={'None' if b_out is None else 'an array'}"
        )
    if W_out is None:
        if required:
            raise ValueError(f"a terminal layer is needed: pass W_out (Q, {dim}) and b_out (Q,); got W_out=None")
        return None, None
    W_out = as_terminal_weights(W_out, dim)
    return W_out, as_vector(b_out, "b_out", W_out.shape[0])


def as_times(t_eval, name: str = "t_eval") -> np.ndarray:
    """Non-empty, non-negative, strictly increasing output times (the flows start at t = 0)."""
    t = as_real_array(t_eval, name, ndim=1)
    if t.size == 0:
        raise ValueError(f"{name} must hold at least one time; got an empty array")
    if np.any(t < 0):
        raise ValueError(f"{name} must be non-negative (the flow starts at t = 0); got minimum {t.min():.6g}")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise ValueError(f"{name} must be strictly increasing; got a non-increasing step at index "
                         f"{int(np.argmax(np.diff(t) <= 0)) + 1}")
    return t


def validate_layers(weights, biases, *, square: bool, max_condition: float, prefix: str = ""):
    """Layer weights and biases as lists of float arrays, checked as a chain; square and invertible (condition
    number at most ``max_condition``) when ``square``. ``prefix`` starts every argument name in messages."""
    if square:
        max_condition = as_max_condition(max_condition)
    weights = as_layer_list(weights, f"{prefix}weights")
    biases = as_layer_list(biases, f"{prefix}biases")
    check_same_length(weights, biases, f"{prefix}weights", f"{prefix}biases")
    Ws, bs = [], []
    for i, (W, b) in enumerate(zip(weights, biases), start=1):
        if square:
            W = as_square_invertible(W, f"{prefix}weights[{i - 1}] (layer {i})", max_condition=max_condition)
            if Ws and W.shape != Ws[0].shape:
                raise ValueError(
                    f"{prefix}weights[{i - 1}] (layer {i}) must have shape {Ws[0].shape} like layer 1; "
                    f"got {W.shape}"
                )
        else:
            W = as_real_array(W, f"{prefix}weights[{i - 1}] (layer {i})", ndim=2)
            if Ws and W.shape[1] != Ws[-1].shape[0]:
                raise ValueError(
                    f"{prefix}weights[{i - 1}] (layer {i}) must have {Ws[-1].shape[0]} columns "
                    f"to follow layer {i - 1}; "
                    f"got shape {W.shape}"
                )
        Ws.append(W)
        bs.append(as_vector(b, f"{prefix}biases[{i - 1}] (layer {i})", W.shape[0]))
    return Ws, bs


def as_labels(labels, name: str = "labels", *, n_classes: int | None = None, ndim=1, rows: int | None = None,
              of: str = "X") -> np.ndarray:
    """Integer class labels 0..Q-1, one per point, shape (N,) (``ndim``: another number of dimensions, or a tuple
    of the allowed ones, e.g. (1, 2) for labels shared by B networks or given per network). With ``rows``, 1-D
    labels must have exactly that many entries, one per row of the array named ``of``."""
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array of class indices; got dtype {arr.dtype}")
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed or arr.size == 0:
        dims = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be a non-empty {dims} array (one label per point); got shape {arr.shape}")
    if arr.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0; got minimum {int(arr.min())}")
    if n_classes is not None and arr.max() >= n_classes:
        raise ValueError(f"{name} must be class indices in 0..{n_classes - 1}; got maximum {int(arr.max())}")
    if rows is not None and arr.shape != (rows,):
        raise ValueError(f"{name} must have shape ({rows},), one label per row of {of}; got shape {arr.shape}")
    return arr.astype(np.intp, copy=False)


def as_targets(targets, N: int, dim: int, name: str = "targets") -> np.ndarray:
    """Per-point targets, shape (N, dim)."""
    arr = as_real_array(targets, name, ndim=2)
    if arr.shape != (N, dim):
        raise ValueError(f"{name} must have shape (N, {dim}) = ({N}, {dim}), one row per point; got shape {arr.shape}")
    return arr


def as_point_weights(point_weights, N: int, name: str = "point_weights") -> np.ndarray:
    """Per-point cost weights w_i ≥ 0, shape (N,); ``None`` means uniform 1/N."""
    if point_weights is None:
        return np.full(N, 1.0 / N)
    arr = as_real_array(point_weights, name, ndim=1)
    if arr.shape != (N,):
        raise ValueError(f"{name} must have shape ({N},), one weight per point; got shape {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative; got minimum {arr.min():.3g}")
    if not np.any(arr > 0):
        raise ValueError(f"{name} must have at least one positive weight (else the cost is identically 0); "
                         "got all zeros")
    return arr


def as_dataset(ds, name: str, variables=()):
    """An xarray Dataset holding ``variables`` (e.g. a result of :func:`reluflow.solve` or :func:`reluflow.train`)."""
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"{name} must be an xarray.Dataset; got {type(ds).__name__}")
    missing = [v for v in variables if v not in ds.variables]
    if missing:
        raise ValueError(f"{name} must hold the variables {list(variables)}; missing {missing}")
    return ds


def as_mapping(value, name: str, keys=()):
    """A mapping holding ``keys``."""
    from collections.abc import Mapping

    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (dict); got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"{name} must hold the keys {list(keys)}; missing {missing} (got {sorted(value)})")
    return value


def as_adapted_network(net, name: str = "net"):
    """An :class:`~reluflow.AdaptedNetwork` (valid by construction)."""
    from reluflow.theory.adapted import AdaptedNetwork

    if not isinstance(net, AdaptedNetwork):
        raise TypeError(f"{name} must be a reluflow.AdaptedNetwork (build one with adapted_network); "
                        f"got {type(net).__name__}")
    return net


def as_network(weights, biases, W_out=None, b_out=None, *, terminal_required: bool = False, prefix: str = ""):
    """The parameters of a ReLU network of any widths, ``(weights, biases, W_out, b_out)``, as float arrays checked
    as a chain (:func:`validate_layers`), with an optional terminal layer W_out (Q, d_L), b_out (Q,) given together
    (required when ``terminal_required``); ``prefix`` starts every argument name in messages."""
    Ws, bs = validate_layers(weights, biases, square=False, max_condition=MAX_CONDITION, prefix=prefix)
    dim = Ws[-1].shape[0]
    if (W_out is None) != (b_out is None):
        raise ValueError(f"{prefix}W_out and {prefix}b_out must be given together; got "
                         f"W_out={'None' if W_out is None else 'an array'}, "
                         f"b_out={'None' if b_out is None else 'an array'}")
    if W_out is None:
        if terminal_required:
            raise ValueError(f"a terminal layer is needed: {prefix}W_out (Q, {dim}) and {prefix}b_out (Q,) must be "
                             "given; got None")
        return Ws, bs, None, None
    W_out = as_terminal_weights(W_out, dim, f"{prefix}W_out")
    return Ws, bs, W_out, as_vector(b_out, f"{prefix}b_out", W_out.shape[0])


def as_network_state(state, name: str = "state", *, terminal_required: bool = False):
    """A network state: the tuple ``(weights, biases, W_out, b_out)`` of :func:`as_network` (W_out, b_out None
    without a terminal layer); messages name the state's fields as ``state: weights[0] (layer 1)``."""
    if isinstance(state, (str, bytes)) or not isinstance(state, Sequence):
        raise TypeError(f"{name} must be a tuple (weights, biases, W_out, b_out); got {type(state).__name__}")
    if len(state) != 4:
        raise ValueError(f"{name} must be a tuple (weights, biases, W_out, b_out); got a sequence of {len(state)}")
    return as_network(*state, terminal_required=terminal_required, prefix=f"{name}: ")


def as_indices(value, name: str, n: int) -> np.ndarray:
    """Row indices into n rows: a non-empty 1-D integer array with entries in 0..n-1 (no wrap-around of negative
    indices, no booleans, no floats)."""
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array of row indices; got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of row indices; got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} must be row indices in 0..{n - 1}; got entries from {int(arr.min())} to "
                         f"{int(arr.max())}")
    return arr.astype(np.intp, copy=False)


def as_data_array(value, name: str, dims=()):
    """An xarray DataArray over the dimensions ``dims`` (in any order)."""
    import xarray as xr

    if not isinstance(value, xr.DataArray):
        raise TypeError(f"{name} must be an xarray.DataArray over {tuple(dims)}; got {type(value).__name__}")
    if dims and set(value.dims) != set(dims):
        raise ValueError(f"{name} must be a DataArray over the dimensions {tuple(dims)}; got {value.dims}")
    return value

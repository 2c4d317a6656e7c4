"""The one schema every trajectory follows: dimension names, variable names, long names, units, status codes.

A trajectory is an :class:`xarray.Dataset` along the dimension ``time``, whether it comes from a
flow (:func:`reluflow.solve`), from gradient descent (:func:`reluflow.train`, where t = step·η and
``step`` is a second coordinate on ``time``) or from a spectrum computed along either
(:func:`reluflow.training.spectral.spectral_trajectory`). Quantities that mean the same thing have one
name, one ``long_name`` and one ``units`` wherever they appear: the number of points truncated in
coordinate k of layer ℓ is always ``n_truncated``. Time and every quantity here are dimensionless
(units ``"1"``).

Every producer ends with :func:`make_dataset`, which takes the ``long_name`` and ``units`` from
:data:`VARIABLES` and :data:`COORDINATES`, so they are written down once; :func:`check_dataset`
confirms that a Dataset follows the schema (the tests run it on every producer).

Status. Every trajectory carries the integer attribute ``status`` and a ``message`` that explains it,
as :func:`scipy.integrate.solve_ivp` does. The codes and their meanings are :data:`STATUS`:

====  ==================  ======================================================================
code  name                meaning
====  ==================  ======================================================================
 0    completed           reached the last requested time (or step)
 1    sliding             the general backend stopped where a point starts to slide (deep networks)
-1    stopped             the solver gave up or ``max_events`` was exceeded
-2    diverged            gradient descent produced a non-finite cost or parameters
-3    ill_conditioned     gradient descent made a weight matrix too ill-conditioned to invert
-4    nonpositive_scale   adapted gradient descent drove a scale λ to zero or below
====  ==================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

__all__ = ["COORDINATES", "STATUS", "STATUS_CODES", "VARIABLES", "check_dataset", "make_dataset", "status_name",
           "variable"]

#: Status code → short name. The message attribute says what happened in words.
STATUS: dict[int, str] = {
    0: "completed",
    1: "sliding",
    -1: "stopped",
    -2: "diverged",
    -3: "ill_conditioned",
    -4: "nonpositive_scale",
}
#: Short name → status code.
STATUS_CODES: dict[str, int] = {name: code for code, name in STATUS.items()}

_TLM = ("time", "layer", "coordinate")

#: Coordinate name → (dimension, long_name). All units are "1".
COORDINATES: dict[str, tuple[str, str]] = {
    "time": ("time", "gradient-flow time t (t = step·η for gradient descent)"),
    "step": ("time", "gradient-descent step"),
    "layer": ("layer", "hidden layer l (1 = first)"),
    "coordinate": ("coordinate", "activation coordinate k (0-based)"),
    "input_coordinate": ("input_coordinate", "input-space coordinate (0-based)"),
    "output": ("output", "output coordinate (0-based)"),
    "event": ("event", "event index, in time order"),
    "point": ("point", "training point i (row of X, 0-based)"),
    "mode": ("mode", "eigenvalue index, ascending"),
    "frame_row": ("frame_row", "row of the frame R_l"),
    "frame_column": ("frame_column", "column of the frame R_l"),
}

#: Variable name → (dimensions, long_name). All units are "1".
VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    # the state of the thresholds, scales and frames
    "thresholds": (_TLM, "threshold theta_(l,k) = -b^(l)_k / lambda_(l,k)"),
    "scales": (_TLM, "scale lambda_(l,k) = |row k of W^(l)|"),
    "frames": (("time", "layer", "frame_row", "frame_column"), "frame R_l"),
    "cumulative_weights": (_TLM + ("input_coordinate",), "cumulative weights W^(l) (rows: coordinate k)"),
    "cumulative_biases": (_TLM, "cumulative biases b^(l)"),
    "output_weights": (("time", "output", "coordinate"), "terminal weights W_out = W_(L+1)"),
    "output_biases": (("time", "output"), "terminal biases b_out = b_(L+1)"),
    "adaptedness": (("time", "layer"), "non-adaptedness |offdiag(W^(l) W^(l)T)|_F / |diag(W^(l) W^(l)T)|_F"),
    # truncation
    "n_truncated": (_TLM, "number of points truncated in coordinate k of layer l"),
    "rate": (_TLM, "relaxation rate -d(dtheta_(l,k)/dt)/dtheta_(l,k) of the pattern in force "
                   "(n_k/(lambda_k^2 N) for one layer, uniform weights)"),
    "sliding": (_TLM, "1 while the threshold rests on a sliding point"),
    # cost
    "cost": (("time",), "cost C"),
    "dissipation": (("time",), "-dC/dt"),
    "cost_decay_rate": (("time",), "instantaneous exponential rate -d log C/dt (0 where C is stationary)"),
    "requested": (("time",), "1 at the times requested in t_eval"),
    # events
    "event_time": (("event",), "time of the event"),
    "event_layer": (("event",), "layer l of the crossed threshold"),
    "event_coordinate": (("event",), "coordinate k of the crossed threshold"),
    "event_point": (("event",), "index i of the crossing point (row of X)"),
    "event_kind": (("event",), "truncated, untruncated or sliding"),
    # spectra along a trajectory
    "gram_eigenvalues": (("time", "mode"), "eigenvalues of D D^T, ascending"),
    "gram_rank": (("time",), "numerical rank of D"),
    "lambda_min": (("time",), "smallest eigenvalue of D D^T"),
    "lambda_min_plus": (("time",), "smallest nonzero eigenvalue of D D^T"),
    "bias_flow_rates": (_TLM, "rates n_(l,k)/lambda_(l,k)^2 of the bias flow"),
    "residual_range_norm": (("time",), "|component of the residual in range(D)|"),
    "residual_orthogonal_norm": (("time",), "|component of the residual orthogonal to range(D)|"),
    "cost_bound": (("time",), "spectral-gap bound C(0) exp(-2 lambda t / N)"),
    "orthogonal_drift": (("time",), "|change of the residual component orthogonal to range(D) since the previous "
                                    "time| (NaN where the truncation pattern changed)"),
}


def status_name(code: int) -> str:
    """The short name of a status code (see :data:`STATUS`)."""
    if code not in STATUS:
        raise ValueError(f"status must be one of {sorted(STATUS)}; got {code!r}")
    return STATUS[code]


def variable(dims, values, long_name: str, units: str = "1") -> xr.Variable:
    """One variable or coordinate of a result Dataset with its ``long_name`` and ``units`` (the schema's two
    required attributes), for the notebook result assemblers that build their Dataset directly."""
    return xr.Variable(dims, np.asarray(values), {"long_name": long_name, "units": units})


def make_dataset(data: Mapping, coords: Mapping, *, status: int, message: str, attrs: Mapping | None = None,
                 extra_variables: Mapping | None = None) -> xr.Dataset:
    """A Dataset in the schema: ``data`` maps names of :data:`VARIABLES` to arrays, ``coords`` names of
    :data:`COORDINATES` to 1-D arrays; dimensions, ``long_name`` and ``units`` come from the tables.

    ``extra_variables`` maps further names to ``(dims, values, long_name)`` for quantities specific to
    one producer (they are not part of the shared schema, and :func:`check_dataset` leaves them alone).
    ``status`` must be a code of :data:`STATUS`; it is stored with ``message`` and ``status_name``.
    """
    status_name(int(status))
    data_vars = {}
    for name, values in data.items():
        if name not in VARIABLES:
            raise ValueError(f"unknown schema variable {name!r}; add it to reluflow.results.schema.VARIABLES "
                             "or pass it in extra_variables")
        dims, long_name = VARIABLES[name]
        data_vars[name] = (dims, values, {"long_name": long_name, "units": "1"})
    for name, (dims, values, long_name) in (extra_variables or {}).items():
        if name in VARIABLES:
            raise ValueError(f"{name!r} is a schema variable: pass it in data, not extra_variables")
        data_vars[name] = (tuple(dims), values, {"long_name": long_name, "units": "1"})
    coordinates = {}
    for name, values in coords.items():
        if name not in COORDINATES:
            raise ValueError(f"unknown schema coordinate {name!r}; add it to reluflow.results.schema.COORDINATES")
        dim, long_name = COORDINATES[name]
        coordinates[name] = (dim, values, {"long_name": long_name, "units": "1"})
    all_attrs = dict(attrs or {})
    all_attrs.update(status=int(status), status_name=STATUS[int(status)], message=str(message))
    return xr.Dataset(data_vars, coords=coordinates, attrs=all_attrs)


def check_dataset(ds: xr.Dataset, *, where: str = "dataset") -> None:
    """Raise ``ValueError`` unless ``ds`` follows the schema.

    Checks: every variable and coordinate whose name is in :data:`VARIABLES` or :data:`COORDINATES` has
    the dimensions, ``long_name`` and ``units`` given there; every variable has ``long_name`` and
    ``units``; the trajectory dimension is called ``time`` (never ``step``); ``status`` is an integer
    code of :data:`STATUS` with a string ``message``.
    """
    problems = []
    if "step" in ds.dims:
        problems.append("has a dimension 'step': trajectories run along 'time' (with 'step' as a coordinate)")
    for name, var in {**ds.coords, **ds.data_vars}.items():
        table = VARIABLES if name in VARIABLES else None
        if name in COORDINATES and name in ds.coords:
            dim, long_name = COORDINATES[name]
            if var.dims != (dim,):
                problems.append(f"coordinate {name!r} has dimensions {var.dims}, expected ({dim!r},)")
            if var.attrs.get("long_name") != long_name:
                problems.append(f"coordinate {name!r} has long_name {var.attrs.get('long_name')!r}, "
                                f"expected {long_name!r}")
        elif table is not None:
            dims, long_name = table[name]
            if var.dims != dims:
                problems.append(f"variable {name!r} has dimensions {var.dims}, expected {dims}")
            if var.attrs.get("long_name") != long_name:
                problems.append(f"variable {name!r} has long_name {var.attrs.get('long_name')!r}, "
                                f"expected {long_name!r}")
        if "long_name" not in var.attrs or var.attrs.get("units") != "1":
            problems.append(f"{name!r} lacks long_name or units '1'")
    status = ds.attrs.get("status")
    if not isinstance(status, (int, np.integer)) or isinstance(status, bool) or int(status) not in STATUS:
        problems.append(f"attribute status must be an integer code of {sorted(STATUS)}; got {status!r}")
    elif ds.attrs.get("status_name") != STATUS[int(status)]:
        problems.append(f"attribute status_name must be {STATUS[int(status)]!r}; got {ds.attrs.get('status_name')!r}")
    if not isinstance(ds.attrs.get("message"), str):
        problems.append("attribute message must be a string")
    if problems:
        raise ValueError(f"{where} does not follow reluflow.results.schema: " + "; ".join(problems))

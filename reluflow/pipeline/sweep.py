"""Parameter sweeps whose results do not depend on scheduling.

- f(p, s_p) over the outer product p ∈ grid_1 × … × grid_D, with the seed of grid point p the
  p-th child of ``numpy.random.SeedSequence(seed).spawn(n)``           → :func:`sweep`

Each grid point gets its own child SeedSequence, in the row-major order of the grid, whatever
executor runs it and in whatever order the work finishes. So a serial run, a process pool and a
dask.distributed cluster (``client.get_executor()``) return identical Datasets.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from concurrent.futures import Executor

import numpy as np
import xarray as xr

__all__ = ["sweep", "grid_points"]


def _validate_grid(grid) -> dict:
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of name -> 1-D values; got {type(grid).__name__}")
    if len(grid) == 0:
        raise ValueError("grid must hold at least one parameter; got an empty dict")
    out = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"grid names must be non-empty strings; got {name!r}")
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty 1-D sequence of values; got shape {arr.shape}")
        if arr.dtype == object or arr.dtype.kind == "c":
            raise TypeError(f"grid[{name!r}] must hold real numbers or strings; got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"grid[{name!r}] must hold finite values; got {arr.tolist()}")
        if np.unique(arr).size != arr.size:
            raise ValueError(f"grid[{name!r}] must not repeat a value (coordinates must be unique); got {arr.tolist()}")
        out[name] = arr
    return out


def grid_points(grid) -> list[dict]:
    """The outer product of ``grid`` as a list of dicts, in row-major order (last name fastest)."""
    grid = _validate_grid(grid)
    names = list(grid)
    return [dict(zip(names, (v.item() for v in combo))) for combo in itertools.product(*grid.values())]


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int; got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed}")
    return int(seed)


def _progress(iterable, total, show):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="sweep", leave=False)


def sweep(func, grid, *, seed, executor: Executor | None = None, progress: bool | None = None) -> xr.Dataset:
    """Evaluate ``func(point, rng_seed)`` on every point of the grid's outer product.

    Parameters
    ----------
    func : callable
        ``func(point, rng_seed)``: ``point`` is a dict name → value (Python scalars), ``rng_seed``
        a :class:`numpy.random.SeedSequence` to build its generator with
        ``numpy.random.default_rng(rng_seed)``. It returns a number, a dict of name → number or
        array (the same shapes at every point), or an :class:`xarray.Dataset` (the same variables,
        dims and coordinates at every point). For a process pool it must be picklable
        (a module-level function).
    grid : dict of name → 1-D values
        The parameter axes, in order; values are unique numbers or strings.
    seed : int
        Root of ``numpy.random.SeedSequence(seed).spawn(n)``; grid point i (row-major) gets child i.
    executor : concurrent.futures.Executor, optional
        Where to run: serial in this process by default, or e.g. a
        ``ProcessPoolExecutor`` or a dask.distributed ``client.get_executor()``.
    progress : bool, optional
        Show a tqdm progress bar. Default: only when stderr is a terminal (so quiet in tests and
        under papermill).

    Returns
    -------
    xarray.Dataset
        One variable per returned quantity, with the grid names as leading dimensions and their
        values as coordinates. A number becomes the variable ``value``; arrays from a dict get
        dims ``<name>_dim0``, …. Variables without metadata get ``long_name`` = their name and
        ``units`` = "1". Attributes ``seed`` and ``n_points``.
    """
    if not callable(func):
        raise TypeError(f"func must be callable as func(point, rng_seed); got {type(func).__name__}")
    if not callable(func):
        raise TypeError(f"func must be callable as func(point, rng_seed); got {type(func).__name__}")
    grid = _validate_grid(grid)
    seed = _check_seed(seed)
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None (automatic); got {type(progress).__name__} "
                        f"{progress!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor (with submit); got {type(executor).__name__}")
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    points = grid_points(grid)
    seeds = np.random.SeedSequence(seed).spawn(len(points))
    results = [None] * len(points)
    if executor is None:
        for i in _progress(range(len(points)), len(points), progress):
            results[i] = _call(func, points[i], seeds[i])
    else:
        futures = [executor.submit(func, p, s) for p, s in zip(points, seeds)]
        for i in _progress(range(len(points)), len(points), progress):
            try:
                results[i] = futures[i].result()
            except Exception as exc:
                exc.add_note(f"sweep: raised at grid point {points[i]}")
                raise
    ds = _assemble(results, grid, points)
    ds.attrs.update({"seed": seed, "n_points": len(points)})
    return ds


def _call(func, point, seed_seq):
    try:
        return func(point, seed_seq)
    except Exception as exc:
        exc.add_note(f"sweep: raised at grid point {point}")
        raise


def _grid_coords(grid):
    return {name: (name, values) for name, values in grid.items()}


def _assemble(results, grid, points) -> xr.Dataset:
    names = list(grid)
    shape = tuple(v.size for v in grid.values())
    first = results[0]
    if isinstance(first, xr.Dataset):
        return _assemble_datasets(results, grid, points, shape)
    if isinstance(first, Mapping):
        keys = list(first)
        if not keys:
            raise ValueError("func returned an empty dict; it must return at least one quantity")
        data_vars = {}
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"func must return a dict with str keys; got key {key!r}")
            arrays = []
            for r, p in zip(results, points):
                if not isinstance(r, Mapping) or set(r) != set(keys):
                    raise ValueError(f"func must return the same keys {sorted(keys)} at every grid point; "
                                     f"got {sorted(r) if isinstance(r, Mapping) else type(r).__name__} at {p}")
                arrays.append(_as_result_array(r[key], key, p))
            vshape = arrays[0].shape
            for a, p in zip(arrays, points):
                if a.shape != vshape:
                    raise ValueError(f"func must return {key!r} with the same shape {vshape} at every grid point; "
                                     f"got {a.shape} at {p}")
            dims = names + [f"{key}_dim{d}" for d in range(len(vshape))]
            clash = set(dims[len(names):]) & set(names)
            if clash:
                raise ValueError(f"result dims {sorted(clash)} clash with grid names")
            data_vars[key] = (dims, np.stack(arrays).reshape(shape + vshape), {"long_name": key, "units": "1"})
        return xr.Dataset(data_vars, coords=_grid_coords(grid))
    arrays = [_as_result_array(r, "value", p) for r, p in zip(results, points)]
    for a, p in zip(arrays, points):
        if a.shape != ():
            raise ValueError(f"func must return a number, a dict or an xarray.Dataset; got shape {a.shape} at {p}")
    return xr.Dataset({"value": (names, np.stack(arrays).reshape(shape), {"long_name": "value", "units": "1"})},
                      coords=_grid_coords(grid))


def _as_result_array(value, key, point):
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"func returned {key!r} of type {type(value).__name__} at {point}; expected a number or array")
    return arr


def _assemble_datasets(results, grid, points, shape) -> xr.Dataset:
    names = list(grid)
    first = results[0]
    clash = set(first.dims) & set(names)
    if clash:
        raise ValueError(f"result dims {sorted(clash)} clash with grid names")
    for r, p in zip(results, points):
        if not isinstance(r, xr.Dataset) or set(r.data_vars) != set(first.data_vars):
            raise ValueError(f"func must return Datasets with the same variables {sorted(first.data_vars)} at every "
                             f"grid point; got a different result at {p}")
        for c in first.coords:
            if c not in r.coords or not np.array_equal(r[c].values, first[c].values):
                raise ValueError(f"func must return the same coordinate {c!r} at every grid point; it differs at {p}")
    data_vars = {}
    for v in first.data_vars:
        var = first[v]
        for r, p in zip(results, points):
            if r[v].dims != var.dims or r[v].shape != var.shape:
                raise ValueError(f"func must return {v!r} with dims {var.dims} and shape {var.shape} at every grid "
                                 f"point; got {r[v].dims} {r[v].shape} at {p}")
        stacked = np.stack([r[v].values for r in results]).reshape(shape + var.shape)
        attrs = {"long_name": v, "units": "1", **var.attrs}
        data_vars[v] = (names + list(var.dims), stacked, attrs)
    coords = _grid_coords(grid)
    for c in first.coords:
        coords[c] = first[c].variable
    return xr.Dataset(data_vars, coords=coords, attrs=dict(first.attrs))

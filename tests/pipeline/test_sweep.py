"""Tests of reluflow.pipeline.sweep: grids, seeding independent of scheduling, executors, errors."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import xarray as xr

from reluflow.pipeline.sweep import grid_points, sweep

GRID = {"a": [0.0, 1.0, 2.0], "variant": ["x", "y"]}


def noisy(point, rng_seed):
    """A module-level function (picklable): a number, a vector and a matrix per grid point."""
    rng = np.random.default_rng(rng_seed)
    shift = point["a"] + (10.0 if point["variant"] == "y" else 0.0)
    return {"mean": rng.normal() + shift, "draws": rng.normal(size=3), "block": np.full((2, 2), shift)}


def scalar(point, rng_seed):
    return float(np.random.default_rng(rng_seed).uniform()) + point["a"]


def dataset(point, rng_seed):
    rng = np.random.default_rng(rng_seed)
    return xr.Dataset(
        {"theta": (("time",), rng.normal(size=4) + point["a"], {"long_name": "threshold", "units": "1"})},
        coords={"time": [0.0, 1.0, 2.0, 3.0]},
        attrs={"title": "per point"},
    )


def failing(point, rng_seed):
    if point["a"] == 1.0:
        raise RuntimeError("boom")
    return 0.0


def test_grid_points_row_major():
    pts = grid_points(GRID)
    assert pts == [{"a": 0.0, "variant": "x"}, {"a": 0.0, "variant": "y"}, {"a": 1.0, "variant": "x"},
                   {"a": 1.0, "variant": "y"}, {"a": 2.0, "variant": "x"}, {"a": 2.0, "variant": "y"}]
    assert all(type(p["a"]) is float and type(p["variant"]) is str for p in pts)


def test_seeds_are_the_spawned_children_in_grid_order():
    ds = sweep(scalar, {"a": [0.0, 5.0, 7.0]}, seed=42)
    children = np.random.SeedSequence(42).spawn(3)
    expected = [np.random.default_rng(c).uniform() + a for c, a in zip(children, [0.0, 5.0, 7.0])]
    np.testing.assert_array_equal(ds.value.values, expected)
    assert ds.attrs["seed"] == 42 and ds.attrs["n_points"] == 3
    assert ds.value.attrs == {"long_name": "value", "units": "1"}


def test_dict_results_become_variables_on_the_grid():
    ds = sweep(noisy, GRID, seed=1)
    assert ds["mean"].dims == ("a", "variant")
    assert ds.draws.dims == ("a", "variant", "draws_dim0")
    assert ds.block.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(ds.a.values, GRID["a"])
    np.testing.assert_array_equal(ds.variant.values, GRID["variant"])
    np.testing.assert_array_equal(ds.block.sel(a=2.0, variant="y").values, np.full((2, 2), 12.0))
    for var in ds.data_vars.values():
        assert {"long_name", "units"} <= set(var.attrs)
    # different grid points draw different numbers
    assert np.unique(ds.draws.values.reshape(6, 3), axis=0).shape[0] == 6


def test_serial_and_process_pool_give_identical_results():
    serial = sweep(noisy, GRID, seed=7)
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = sweep(noisy, GRID, seed=7, executor=pool)
    xr.testing.assert_identical(serial, parallel)
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = sweep(noisy, GRID, seed=7, executor=pool)
    xr.testing.assert_identical(serial, threaded)
    assert not sweep(noisy, GRID, seed=8).identical(serial)


def test_dataset_results_are_stacked_with_their_coordinates():
    ds = sweep(dataset, {"a": [0.0, 1.0]}, seed=3)
    assert ds.theta.dims == ("a", "time")
    np.testing.assert_array_equal(ds.time.values, [0.0, 1.0, 2.0, 3.0])
    assert ds.theta.attrs["long_name"] == "threshold"
    assert ds.attrs["title"] == "per point" and ds.attrs["seed"] == 3
    first = dataset({"a": 0.0}, np.random.SeedSequence(3).spawn(2)[0])
    np.testing.assert_array_equal(ds.theta.sel(a=0.0).values, first.theta.values)


def test_dask_local_cluster_matches_serial():
    distributed = pytest.importorskip("dask.distributed")
    serial = sweep(noisy, GRID, seed=11)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            result = sweep(noisy, GRID, seed=11, executor=client.get_executor())
    xr.testing.assert_identical(serial, result)


def test_errors():
    with pytest.raises(TypeError, match="func must be callable"):
        sweep(3, GRID, seed=0)
    with pytest.raises(TypeError, match="grid must be a dict"):
        sweep(scalar, [1, 2], seed=0)
    with pytest.raises(ValueError, match="grid must hold at least one parameter"):
        sweep(scalar, {}, seed=0)
    with pytest.raises(ValueError, match=r"grid\['a'\] must be a non-empty 1-D sequence"):
        sweep(scalar, {"a": []}, seed=0)
    with pytest.raises(ValueError, match=r"grid\['a'\] must be a non-empty 1-D sequence"):
        sweep(scalar, {"a": [[1, 2]]}, seed=0)
    with pytest.raises(ValueError, match=r"grid\['a'\] must not repeat a value"):
        sweep(scalar, {"a": [1.0, 1.0]}, seed=0)
    with pytest.raises(TypeError, match="grid names must be non-empty strings"):
        sweep(scalar, {1: [1.0]}, seed=0)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        sweep(scalar, GRID, seed=1.5)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        sweep(scalar, GRID, seed=-1)
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        sweep(scalar, GRID, seed=0, executor="pool")
    with pytest.raises(RuntimeError, match="boom") as info:
        sweep(failing, {"a": [0.0, 1.0]}, seed=0)
    assert "grid point {'a': 1.0}" in "".join(getattr(info.value, "__notes__", []))
    with pytest.raises(ValueError, match="the same shape"):
        sweep(lambda p, s: {"v": np.zeros(int(p["a"]) + 1)}, {"a": [0.0, 1.0]}, seed=0)
    with pytest.raises(ValueError, match="the same keys"):
        sweep(lambda p, s: {"v": 1.0} if p["a"] == 0 else {"w": 1.0}, {"a": [0.0, 1.0]}, seed=0)
    with pytest.raises(ValueError, match="clash with grid names"):
        sweep(lambda p, s: {"v": np.zeros(2)}, {"v_dim0": [0.0]}, seed=0)
    with pytest.raises(TypeError, match="expected a number or array"):
        sweep(lambda p, s: {"v": object()}, {"a": [0.0]}, seed=0)

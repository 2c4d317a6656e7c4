"""Result files (netCDF) and figures: schema, provenance, atomic and deterministic writes."""

import json
import os

import numpy as np
import pytest
import xarray as xr

from reluflow.results.figures import figure, savefig
from reluflow.results.netcdf import load_result, same_content, save_result


def _ds(values=(0.0, 1.0, 2.0)):
    return xr.Dataset(
        {"err": (("width",), np.asarray(values), {"long_name": "max error", "units": "1"})},
        coords={"width": [2, 3, 5]},
    )


def test_roundtrip_with_provenance(tmp_path):
    path = save_result(_ds(), tmp_path / "sub" / "r.nc", notebook="nb", parameters={"seed": 3, "w": [1, 2]},
                       title="a test")
    ds = load_result(path)
    xr.testing.assert_identical(ds.drop_attrs(), _ds().drop_attrs())
    assert ds.attrs["Conventions"].startswith("CF-")
    assert ds.attrs["references"] == "arXiv:2501.07400"
    assert ds.attrs["notebook"] == "nb" and ds.attrs["title"] == "a test"
    assert json.loads(ds.attrs["parameters"]) == {"seed": 3, "w": [1, 2]}
    assert ds.attrs["source"].startswith("reluflow ")
    assert ds.err.attrs == {"long_name": "max error", "units": "1"}


def test_unchanged_content_leaves_file_untouched(tmp_path):
    path = save_result(_ds(), tmp_path / "r.nc", notebook="nb", parameters={}, title="t")
    os.utime(path, (1, 1))
    save_result(_ds(), path, notebook="nb", parameters={}, title="t")
    assert os.stat(path).st_mtime == 1  # not rewritten
    save_result(_ds((0.0, 1.0, 2.5)), path, notebook="nb", parameters={}, title="t")
    assert os.stat(path).st_mtime != 1
    assert float(load_result(path).err[2]) == 2.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_same_content_ignores_only_source(tmp_path):
    a = save_result(_ds(), tmp_path / "a.nc", notebook="nb", parameters={}, title="t")
    b = load_result(a)
    b.attrs["source"] = "reluflow 0.0 (git other)"
    assert same_content(a, b)
    b.attrs["title"] = "changed"
    assert not same_content(a, b)


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda d: d.err.attrs.pop("units"), ValueError, r"variable 'err' must have attributes long_name and units"),
        (lambda d: d.attrs.update(flag=True), TypeError, r"attribute 'flag' of the dataset must be a str or a number"),
        (lambda d: d.err.attrs.update(x=None), TypeError, r"attribute 'x' of variable 'err' must be a str or a number"),
    ],
)
def test_schema_is_enforced(tmp_path, mutate, exc, match):
    ds = _ds()
    mutate(ds)
    with pytest.raises(exc, match=match):
        save_result(ds, tmp_path / "r.nc", notebook="nb", parameters={}, title="t")
    assert not list(tmp_path.iterdir())


def test_other_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="ds must be an xarray.Dataset"):
        save_result({"a": 1}, tmp_path / "r.nc", notebook="nb", parameters={}, title="t")
    with pytest.raises(ValueError, match=r"path must end in .nc"):
        save_result(_ds(), tmp_path / "r.txt", notebook="nb", parameters={}, title="t")
    with pytest.raises(TypeError, match="parameters must be JSON-serialisable"):
        save_result(_ds(), tmp_path / "r.nc", notebook="nb", parameters={"f": object()}, title="t")
    with pytest.raises(FileNotFoundError, match="no result file"):
        load_result(tmp_path / "missing.nc")


def _plot():
    fig, ax = figure(1, 2)
    ax[0].plot([0, 1, 2], [1, 0, 2], label="a line")
    ax[0].legend()
    ax[1].scatter([0, 1], [1, 0])
    return fig


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_figures_are_byte_stable_and_free_of_dates(tmp_path, fmt):
    a = savefig(_plot(), tmp_path / f"a.{fmt}").read_bytes()
    b = savefig(_plot(), tmp_path / f"b.{fmt}").read_bytes()
    assert a == b
    assert b"CreationDate" not in a and b"Matplotlib version" not in a


def test_savefig_errors_and_atomicity(tmp_path):
    with pytest.raises(ValueError, match=r"path must end in one of .png, .svg, .pdf"):
        savefig(_plot(), tmp_path / "f.jpg")
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        savefig("not a figure", tmp_path / "f.png")
    path = savefig(_plot(), tmp_path / "f.png")
    os.utime(path, (1, 1))
    savefig(_plot(), path)
    assert os.stat(path).st_mtime == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]

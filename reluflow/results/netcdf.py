"""Results as xarray Datasets, saved to and loaded from netCDF by one pair of functions.

Every result file carries CF-style metadata and provenance:

- each data variable has ``long_name`` and ``units`` (``"1"`` for dimensionless);
- global attributes ``Conventions``, ``title``, ``source`` (reluflow version and git commit),
  ``references`` (arXiv:2501.07400), ``notebook`` and ``parameters`` (JSON text);
- attributes are str or numbers only (no None, no bool).

Writes are atomic (temporary file, then rename), and a file whose content would not change is
left untouched, so rerunning a notebook changes no file. "Content" means values, coordinates and
attributes, except ``source``: identical results computed at a later commit keep their file.
"""

from __future__ import annotations

import json
import numbers
import os
import subprocess
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["save_result", "load_result", "same_content", "provenance", "REFERENCES", "ENGINE"]

REFERENCES = "arXiv:2501.07400"
CONVENTIONS = "CF-1.10"
#: The netCDF engine (see pyproject.toml for why netCDF4).
ENGINE = "netcdf4"
#: Attributes ignored when deciding whether a result file's content changed.
VOLATILE_ATTRS = ("source",)


def provenance() -> str:
    """'reluflow <version> (git <commit>)', or '(git unknown)' outside a git checkout."""
    from reluflow import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"reluflow {__version__} (git {commit or 'unknown'})"


def _check_attrs(attrs: dict, where: str) -> None:
    for key, value in attrs.items():
        ok = isinstance(value, str) or (
            isinstance(value, (numbers.Number, np.number)) and not isinstance(value, (bool, np.bool_))
        )
        if not ok:
            raise TypeError(
                f"attribute {key!r} of {where} must be a str or a number; got {type(value).__name__} {value!r}"
            )


def _check_dataset(ds) -> None:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset; got {type(ds).__name__}")
    if not ds.data_vars:
        raise ValueError("ds must hold at least one data variable; got none")
    for name, var in ds.variables.items():
        if name in ds.data_vars:
            missing = [a for a in ("long_name", "units") if a not in var.attrs]
            if missing:
                raise ValueError(f"variable {name!r} must have attributes long_name and units; missing {missing}")
        _check_attrs(var.attrs, f"variable {name!r}")


def save_result(ds: xr.Dataset, path, *, notebook: str, parameters: dict, title: str) -> Path:
    """Validate ``ds``, add provenance, and write it atomically to ``path`` as netCDF.

    Parameters
    ----------
    ds : xarray.Dataset
        Each data variable must carry ``long_name`` and ``units``.
    path : str or Path
        Destination ``.nc`` file; its folder is created if missing.
    notebook : str
        Name of the notebook (or script) that produced the result.
    parameters : dict
        The parameters used, stored as JSON text (keys sorted).
    title : str
        A one-line description.

    Returns the path. If the file already holds the same content (ignoring ``source``), it is
    left untouched.
    """
    _check_dataset(ds)
    for name, value in (("notebook", notebook), ("title", title)):
        if not isinstance(value, str) or not value.strip():
            raise TypeError(f"{name} must be a non-empty string; got {type(value).__name__} {value!r}")
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict of the parameters used; got {type(parameters).__name__}")
    path = Path(path)
    if path.suffix != ".nc":
        raise ValueError(f"path must end in .nc; got {str(path)!r}")
    try:
        params = json.dumps(parameters, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"parameters must be JSON-serialisable; {exc}") from None
    out = ds.copy()
    out.attrs = {
        **ds.attrs,
        "Conventions": CONVENTIONS,
        "title": str(title),
        "source": provenance(),
        "references": REFERENCES,
        "notebook": str(notebook),
        "parameters": params,
    }
    _check_attrs(out.attrs, "the dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        out.to_netcdf(tmp, engine=ENGINE)
        if not (path.exists() and _same_or_unreadable_false(path, tmp)):
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_result(path) -> xr.Dataset:
    """Load a result file written by :func:`save_result` fully into memory (the file is closed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no result file at {str(path)!r}"
                                + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return xr.load_dataset(path, engine=ENGINE)
    except (OSError, RuntimeError, ValueError) as exc:  # netCDF4's "HDF error", "Unknown file format", ...
        raise ValueError(f"path {str(path)!r} is not a readable netCDF result file "
                         f"({type(exc).__name__}: {exc})") from None


def _same_or_unreadable_false(a, b) -> bool:
    try:
        return same_content(a, b)
    except (OSError, ValueError):
        return False


def same_content(a, b) -> bool:
    """True if two results (paths or Datasets) are identical except for the ``source`` attribute.

    A path that does not hold a readable result raises (FileNotFoundError or ValueError, naming it).
    """

    def _load(x, name):
        if isinstance(x, (str, os.PathLike)):
            try:
                return load_result(x)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{name}: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if not isinstance(x, xr.Dataset):
            raise TypeError(f"{name} must be a path or an xarray.Dataset; got {type(x).__name__}")
        return x

    da, db = _load(a, "a"), _load(b, "b")
    da = da.copy()
    db = db.copy()
    for d in (da, db):
        for key in VOLATILE_ATTRS:
            d.attrs.pop(key, None)
    return bool(da.identical(db))

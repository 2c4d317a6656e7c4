"""Shared test configuration: hypothesis profiles and common fixtures."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _write_toy_project(root, notebooks):
    """Write ``root/notebooks/<stem>.ipynb`` for each ``stem: [(source, tags), ...]`` (code cells, python3 kernel);
    returns ``root``. The pipeline tests run such projects through reproduce, check and seeds."""
    import nbformat

    (root / "notebooks").mkdir(parents=True)
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    for stem, cells in notebooks.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src, metadata={"tags": list(tags)})
                                             for src, tags in cells], metadata=meta)
        nbformat.write(nb, root / "notebooks" / f"{stem}.ipynb")
    return root


@pytest.fixture
def toy_project():
    """A writer of toy notebook projects: ``toy_project(root, {stem: [(source, tags), ...]})``."""
    return _write_toy_project

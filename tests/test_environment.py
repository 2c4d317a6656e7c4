"""environment.yml and pyproject.toml must name the same packages."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in ("notebooks", "test"):
        names |= {_name(r) for r in project["optional-dependencies"][extra]}
    return names


def environment_packages() -> tuple[set[str], list]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names, pip = set(), []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip = dep["pip"]
        else:
            names.add(_name(dep))
    return names - {"python", "pip"}, pip


def test_environment_lists_the_same_packages_as_pyproject():
    conda, pip = environment_packages()
    assert conda == pyproject_packages(), (
        f"only in environment.yml: {sorted(conda - pyproject_packages())}; "
        f"only in pyproject.toml: {sorted(pyproject_packages() - conda)}"
    )
    assert pip == ["-e ."]


def test_name_normalisation_catches_differences():
    assert _name("netCDF4>=1.6") == "netcdf4" and _name("typing_extensions") == "typing-extensions"
    assert _name("papermill[all]>=2") == "papermill"

"""The package layout keeps its promises: layers, no private imports across modules, a true formula map.

Oracle: an identity of the implementation (the source tree itself), read with :mod:`ast`.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reluflow"
LAYERS = {"theory", "dynamics", "training", "testing", "results", "pipeline"}
#: monitor.py, curation.py and schedules.py are the paths a practitioner types (reluflow.monitor.watch,
#: reluflow.curation.scores / prune, reluflow.schedules.flow_step): they only re-export the modules of training/
#: where the code lives (test_practitioner_paths_only_re_export), so no layer imports a top-level module.
TOP_LEVEL = {"__init__.py", "__main__.py", "validation.py", "monitor.py", "curation.py", "schedules.py"}
#: Top-level modules that hold no code of their own: each re-exports one module of a layer.
FACADES = {"monitor.py": "reluflow.training.monitor", "curation.py": "reluflow.training.curation",
           "schedules.py": "reluflow.training.schedules"}


def _sources(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _private_imports(path: Path):
    """(line, text) of every import of another module's _private name, and getattr(mod, "_name")."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_")
                and not node.args[1].value.startswith("__")):
            found.append((node.lineno, f"getattr(..., {node.args[1].value!r})"))
    return found


@pytest.mark.parametrize("path", list(_sources("reluflow", "benchmarks")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_imports_across_modules(path):
    assert _private_imports(path) == [], f"{path.relative_to(ROOT)} uses another module's private names"


def test_private_import_check_catches_a_private_import(tmp_path):
    """Negative control: the check above is able to fail."""
    bad = tmp_path / "bad.py"
    bad.write_text("from reluflow.theory.flows import _adapted_forward\nx = getattr(m, '_secret', None)\n")
    assert [text for _, text in _private_imports(bad)] == [
        "from reluflow.theory.flows import _adapted_forward", "getattr(..., '_secret')"]


def test_every_module_lives_in_a_layer():
    stray = [p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL]
    assert stray == [], f"modules outside the layer subpackages {sorted(LAYERS)}: {stray}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == LAYERS


def test_tests_mirror_the_package():
    for layer in LAYERS - {"testing"}:
        assert list((ROOT / "tests" / layer).glob("test_*.py")), f"tests/{layer}/ has no tests"


def test_core_namespace_leaves_out_oracles_and_the_torch_peer():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert modules and not [m for m in modules if m.startswith("reluflow.testing") or "torch" in m], modules


# --------------------------------------------------------------------------- the formula map in the README


def _formula_table():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## From formula to notebook\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README.md has no section '## From formula to notebook'"
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`reluflow"):
            rows.append(cells)
    return rows


def _ticked(cell):
    return re.findall(r"`([^`]+)`", cell)


def test_formula_table_is_not_empty():
    assert len(_formula_table()) >= 20


@pytest.mark.parametrize("row", _formula_table(), ids=lambda r: r[0][:40])
def test_formula_table_names_exist(row):
    formula, functions, tests, cells = row
    for name in _ticked(functions):
        module, _, attr = name.rpartition(".")
        obj = importlib.import_module(module)
        assert hasattr(obj, attr), f"{name} does not exist"
    for ref in _ticked(tests):
        path, _, test = ref.partition("::")
        src = (ROOT / path).read_text()
        assert re.search(rf"^\s*(def|class) {re.escape(test)}\b", src, re.M), f"{ref} does not exist"
    for ref in _ticked(cells):
        nb, _, cell_id = ref.partition("#")
        ids = {c.get("id") for c in json.loads((ROOT / "notebooks" / f"{nb}.ipynb").read_text())["cells"]}
        assert cell_id in ids, f"notebook {nb} has no cell {cell_id}"


def test_no_layer_imports_a_practitioners_path():
    """The facades sit above the layers: code in the layer subpackages imports the modules they re-export."""
    found = []
    for path in _sources(*(f"reluflow/{layer}" for layer in LAYERS)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "reluflow":
                found += [f"{path.relative_to(ROOT)}: from reluflow import {a.name}" for a in node.names
                          if f"{a.name}.py" in FACADES]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[:2] in (
                    ["reluflow", f[:-3]] for f in FACADES):
                found.append(f"{path.relative_to(ROOT)}: from {node.module} import ...")
    assert found == []


def test_practitioner_paths_only_re_export():
    """Oracle: identity of the implementation. Each facade's public names are the very objects of its module."""
    for name, target in FACADES.items():
        facade = importlib.import_module(f"reluflow.{name[:-3]}")
        module = importlib.import_module(target)
        assert list(facade.__all__) == list(module.__all__)
        assert all(getattr(facade, n) is getattr(module, n) for n in module.__all__)
        tree = ast.parse((PACKAGE / name).read_text())
        assert all(isinstance(node, (ast.ImportFrom, ast.Expr)) for node in tree.body), name

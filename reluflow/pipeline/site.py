"""The browsable site of the executed notebooks: staged from the repository, built by Sphinx, served on loopback.

The site is built from the committed, executed notebooks; no kernel is ever started. :func:`build_site` stages a
Sphinx source tree under ``build/site-src`` (copies of the notebooks, with an anchor per cell, and generated
pages), then runs Sphinx (``docs/conf.py``) into ``build/site``. Everything it needs comes from installed packages
(the ``docs`` extra); the maths is typeset by MathJax copied from the installed ``sphinx-mathjax-offline`` package.

Map from page to function:

- the landing page: the README's claims table, each claim linked to its notebook sections and figures
  (``docs/claims.yaml``)                                                   → :func:`claims_rows`, :func:`landing_page`
- formula → function: the module docstrings' ``formula → :func:`name``` lines   → :func:`docstring_map_entries`
- function → test: the test functions that use the function (resolved imports)  → :func:`tests_using`
- function → cell: the notebook code cells that use the function              → :func:`cells_using`
- the whole formula → function → test → cell map                            → :func:`formula_map`, :func:`map_page`
- the API reference, one page per module, from the docstrings (autodoc)     → :func:`api_pages`
- the site itself (staging and Sphinx)                                      → :func:`stage_sources`, :func:`build_site`
- serving ``build/site`` on 127.0.0.1                                       → :func:`serve_site`

The module is also a Sphinx extension (listed in ``docs/conf.py``): :func:`setup` gives each notebook cell's HTML
element the notebook's cell id, so ``notebooks/01_truncation_maps.html#cell-05`` is the cell the map names, and
copies the vendored MathJax into ``_static/mathjax``.
"""

from __future__ import annotations

import ast
import functools
import html
import importlib
import importlib.util
import inspect
import json
import pkgutil
import re
import shutil
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = Path("build") / "site"
MATHJAX_PACKAGE = "sphinx-mathjax-offline"  # MathJax 3.2.2 (Apache-2.0), shipped as files in a PyPI package
MATHJAX_PATH = "mathjax/tex-chtml.js"  # relative to _static
ROLE = re.compile(r":(func|class|meth|attr|data):`~?([\w.]+)`")
CELL_META_KEY = "reluflow_site"


class SiteError(RuntimeError):
    """The site could not be staged or built (a missing package, a Sphinx error, a dangling claim link)."""


def _root(root) -> Path:
    if not isinstance(root, (str, Path, type(None))):
        raise TypeError(f"root: expected a path (str or pathlib.Path) or None, got {type(root).__name__}")
    path = Path(root) if root is not None else ROOT
    if not (path / "notebooks").is_dir():
        raise ValueError(f"root: expected a reluflow checkout with a notebooks/ folder, got {str(path)!r}")
    return path


# --------------------------------------------------------------------------- formula -> function


@dataclass(frozen=True)
class MapEntry:
    """One row of the formula map: a formula, the functions that compute it, their tests and notebook cells."""

    module: str
    formula: str
    functions: tuple[str, ...]  # qualified names, e.g. reluflow.theory.flows.bias_flow
    missing: tuple[str, ...]  # names in the docstring that resolve to nothing (dangling)
    tests: tuple[str, ...] = ()  # tests/path.py::test_name
    cells: tuple[str, ...] = ()  # notebook_stem#cell-id


def _package_modules(package: str = "reluflow") -> list[str]:
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if not info.name.endswith("__main__"):  # importing it would run the command line
            names.append(info.name)
    return sorted(names)


def _resolve(module, name: str):
    """The object ``name`` names in ``module``'s docstring: relative to the module (``name``), to its package
    (``.sub.name``), or fully qualified (``reluflow.x.name``); None if it names nothing."""
    if name.startswith("."):
        name = (module.__package__ or module.__name__) + name
    parts = name.split(".")
    if module is not None and hasattr(module, parts[0]):
        obj = module
        for attr in parts:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def _qualified(obj, fallback: str) -> str:
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    return f"{mod}.{qual}" if mod and qual else fallback


def docstring_map_entries(module_name: str) -> list[MapEntry]:
    """Formula → function: each ``- formula → :func:`name``` item of the module docstring (continuations joined)."""
    if not isinstance(module_name, str):
        raise TypeError(f"module_name: expected a module name (str), got {type(module_name).__name__}")
    module = importlib.import_module(module_name)
    doc = inspect.getdoc(module) or ""
    items, current, indent = [], None, 0
    for line in doc.splitlines():
        bullet = re.match(r"(\s*)- ", line)
        if bullet:  # an item, or a nested item: each is its own entry
            indent = len(bullet.group(1))
            current = [line[bullet.end():]]
            items.append(current)
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            current.append(line.strip())
        else:
            current = None
    entries = []
    for item in items:
        text = " ".join(part.strip() for part in item)
        if "→" not in text:
            continue
        formula, _, targets = text.partition("→")
        names = [m.group(2) for m in ROLE.finditer(targets)]
        if not names:  # e.g. ``cost="input"`` or :mod: entries: not a function
            continue
        found, missing = [], []
        for name in names:
            obj = _resolve(module, name)
            if obj is None:
                missing.append(name)
            else:
                found.append(_qualified(obj, f"{module_name}.{name}"))
        entries.append(MapEntry(module_name, " ".join(formula.split()), tuple(found), tuple(missing)))
    return entries


# --------------------------------------------------------------------------- function -> test, function -> cell


def _bindings(tree: ast.AST) -> dict[str, object]:
    """Local names bound by ``import reluflow...`` / ``from reluflow... import x`` in ``tree``, resolved."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "reluflow":
                    try:
                        if alias.asname:
                            bound[alias.asname] = importlib.import_module(alias.name)
                        else:
                            bound["reluflow"] = importlib.import_module("reluflow")
                    except ImportError:
                        continue
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "reluflow":
            try:
                mod = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                obj = getattr(mod, alias.name, None)
                if obj is None:
                    try:
                        obj = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        continue
                bound[alias.asname or alias.name] = obj
    return bound


def _used_objects(node: ast.AST, bound: dict[str, object]) -> set[int]:
    """ids of the reluflow objects that ``node`` refers to: bound names and attribute chains on them."""
    used = set()
    for sub in ast.walk(node):
        chain = []
        cur = sub
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name) or cur.id not in bound:
            continue
        obj = bound[cur.id]
        used.add(id(obj))
        for attr in reversed(chain):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
            used.add(id(obj))
    return used


def _targets(functions) -> dict[int, str]:
    out = {}
    for name in functions:
        obj = _resolve(None, name)
        if obj is not None:
            out[id(obj)] = name
    return out


def tests_using(functions, root=None) -> dict[str, tuple[str, ...]]:
    """Function → test: for each qualified name, the ``tests/…::test_x`` functions whose body uses that object."""
    root = _root(root)
    targets = _targets(functions)
    refs: dict[str, list[str]] = {name: [] for name in functions}
    for path in sorted((root / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = _bindings(tree)
        if not bound:
            continue
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                for key in _used_objects(node, bound):
                    if key in targets:
                        refs[targets[key]].append(f"{rel}::{node.name}")
    return {name: tuple(dict.fromkeys(v)) for name, v in refs.items()}


def _code_cells(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        src = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())
        try:
            yield cell.get("id"), ast.parse(src)
        except SyntaxError:
            continue


def cells_using(functions, root=None) -> dict[str, tuple[str, ...]]:
    """Function → cell: for each qualified name, the ``notebook#cell-id`` code cells that use that object."""
    root = _root(root)
    targets = _targets(functions)
    refs: dict[str, list[str]] = {name: [] for name in functions}
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = list(_code_cells(path))
        bound = {}
        for _, tree in cells:
            bound.update(_bindings(tree))
        for cell_id, tree in cells:
            for key in _used_objects(tree, bound):
                if key in targets:
                    refs[targets[key]].append(f"{path.stem}#{cell_id}")
    return {name: tuple(dict.fromkeys(v)) for name, v in refs.items()}


def formula_map(root=None) -> list[MapEntry]:
    """The formula → function → test → cell map of every module docstring in the package."""
    root = _root(root)
    entries = [e for name in _package_modules() if not name.endswith("pipeline.site")
               for e in docstring_map_entries(name)]
    functions = sorted({f for e in entries for f in e.functions})
    tests, cells = tests_using(functions, root), cells_using(functions, root)
    return [MapEntry(e.module, e.formula, e.functions, e.missing,
                     tuple(dict.fromkeys(t for f in e.functions for t in tests[f])),
                     tuple(dict.fromkeys(c for f in e.functions for c in cells[f]))) for e in entries]


# --------------------------------------------------------------------------- pages


def _md_escape(text: str) -> str:
    return re.sub(r"([|*_$`\\<\[\]])", r"\\\1", text)


def _nb_link(ref: str, text: str | None = None, title: str | None = None) -> str:
    stem, _, cell = ref.partition("#")
    href = f"notebooks/{stem}.html" + (f"#{cell}" if cell else "")
    title_attr = f' title="{html.escape(title)}"' if title else ""
    return f'<a href="{href}"{title_attr}>{html.escape(text or ref)}</a>'


def _short(items, limit: int, fmt) -> str:
    shown = ", ".join(fmt(x) for x in items[:limit])
    more = len(items) - limit
    return shown + (f" (+{more} more)" if more > 0 else "") if items else "—"


def map_page(entries) -> str:
    """The formula map as a MyST page: formula | function | tests | notebook cells, grouped by module."""
    lines = [
        "# Formula → function → test → notebook cell",
        "",
        "Generated from the code at build time: each row is a `formula → :func:` line of a module docstring, the "
        "test functions that use that function (their imports resolved), and the notebook code cells that call it. "
        "A test (`tests/site/test_site.py`) checks that no entry dangles.",
        "",
    ]
    by_module: dict[str, list[MapEntry]] = {}
    for e in entries:
        by_module.setdefault(e.module, []).append(e)
    for module, rows in by_module.items():
        lines += [f"## `{module}`", "", "| Formula | Function | Tests | Notebook cells |", "|---|---|---|---|"]
        for e in rows:
            funcs = ", ".join(f"{{py:obj}}`~{f}`" for f in e.functions) or "—"
            tests = _short(e.tests, 3, lambda t: f"`{t.split('::')[-1]}` ({t.split('::')[0].removeprefix('tests/')})")
            cells = _short(e.cells, 4, lambda c: _nb_link(c, f"{c[:2]} {c.partition('#')[2]}", c.partition("#")[0]))
            lines.append(f"| {_md_escape(e.formula)} | {funcs} | {tests} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def _readme_claims(root: Path) -> list[list[str]]:
    text = (root / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## The paper's claims, and where they are shown\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        raise SiteError("README.md has no section '## The paper's claims, and where they are shown'")
    rows = []
    for line in m.group(1).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[A-Z]\d*", cells[0]):
            rows.append(cells)
    return rows


@functools.lru_cache(maxsize=32)
def _notebook_cells(path: Path, mtime: float) -> tuple[dict, ...]:
    return tuple(json.loads(path.read_text(encoding="utf-8"))["cells"])


def _cells(root: Path, stem: str):
    path = root / "notebooks" / f"{stem}.ipynb"
    if not path.exists():
        raise SiteError(f"docs/claims.yaml: no notebook {stem!r} (expected notebooks/{stem}.ipynb)")
    return _notebook_cells(path, path.stat().st_mtime)


def _section_label(root: Path, stem: str, cell_id: str) -> tuple[str, str]:
    for cell in _cells(root, stem):
        if cell.get("id") == cell_id:
            head = next((ln for ln in "".join(cell["source"]).splitlines() if ln.startswith("#")), None)
            if head is None:
                raise SiteError(f"docs/claims.yaml: {stem}#{cell_id} is not a section heading")
            title = head.lstrip("#").strip()
            num = re.match(r"(\d+[a-z]?)\.", title)
            return (f"{stem[:2]} §{num.group(1)}" if num else f"{stem[:2]} · {title[:30]}"), title
    raise SiteError(f"docs/claims.yaml: notebook {stem} has no cell {cell_id!r}")


def _figure_label(root: Path, stem: str, cell_id: str) -> str:
    cells = _cells(root, stem)
    for i, cell in enumerate(cells):
        if cell.get("id") == cell_id:
            if not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
                raise SiteError(f"docs/claims.yaml: {stem}#{cell_id} shows no figure")
            caption = "".join(cells[i + 1]["source"]) if i + 1 < len(cells) else ""
            m = re.match(r"\*(Figure [\w.]+?)\.?\*", caption)
            return m.group(1) if m else f"Figure {stem[:2]}"
    raise SiteError(f"docs/claims.yaml: notebook {stem} has no cell {cell_id!r}")


def claims_rows(root=None, claims_file=None) -> list[dict]:
    """The README's claims table, each claim with links to the sections and figures ``docs/claims.yaml`` names."""
    root = _root(root)
    claims_file = Path(claims_file) if claims_file is not None else root / "docs" / "claims.yaml"
    shown = yaml.safe_load(claims_file.read_text(encoding="utf-8"))
    rows = []
    for cid, claim, configurations, oracles, holds in _readme_claims(root):
        if cid not in shown:
            raise SiteError(f"docs/claims.yaml: claim {cid} of the README has no entry")
        links = []
        for ref in shown[cid]:
            stem = ref["notebook"]
            label, title = _section_label(root, stem, ref["section"])
            links.append(_nb_link(f"{stem}#{ref['section']}", label, title))
            links.append(_nb_link(f"{stem}#{ref['figure']}", _figure_label(root, stem, ref["figure"])))
        rows.append({"id": cid, "claim": claim, "configurations": configurations, "oracles": oracles,
                     "holds": holds, "shown_in": links})
    extra = set(shown) - {r["id"] for r in rows}
    if extra:
        raise SiteError(f"docs/claims.yaml: claims {sorted(extra)} are not in the README's table")
    return rows


def _rewrite_notebook_links(text: str) -> str:
    """README links ``[01](notebooks/01_x.ipynb)`` → links to the notebook's page."""
    return re.sub(r"\[([^\]]+)\]\(notebooks/([\w-]+)\.ipynb\)", lambda m: _nb_link(m.group(2), m.group(1)), text)


def landing_page(root=None) -> str:
    """The landing page: what reluflow is, the claims table with links into the notebooks, and the other pages."""
    root = _root(root)
    readme = (root / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    lines = [
        "# reluflow", "", intro, "",
        "![Three clusters pushed through a three-layer adapted ReLU network, seen in input space]"
        "(figures/01_truncation_layers.png)", "",
        "## The paper's claims, and where they are shown", "",
        "Each claim as this project formulates it, the configurations and oracles it is checked on, how often it "
        "holds, and the notebook section and figure that show it (from the README and `docs/claims.yaml`).", "",
        "| | Claim | Configurations | Independent oracles | Hold rate / checks | Shown in |",
        "|---|---|---|---|---|---|",
    ]
    for r in claims_rows(root):
        cells = [r["id"], r["claim"], _rewrite_notebook_links(r["configurations"]), r["oracles"], r["holds"],
                 "<br>".join(" · ".join(r["shown_in"][i:i + 2]) for i in range(0, len(r["shown_in"]), 2))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "", "## Pages", "",
        "- [The notebooks](notebooks/index.md), executed at paper scale, one page each, with their committed outputs",
        "- [Formula → function → test → notebook cell](formula-map.md), generated from the code",
        "- [API reference](api/index.rst), from the docstrings",
        "- [How to reproduce](reproduce.md) and [how to cite](cite.md)", "",
        "```{toctree}", ":hidden:", "", "notebooks/index", "formula-map", "api/index", "reproduce", "cite", "```", "",
    ]
    return "\n".join(lines)


def _readme_section(readme: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    if not m:
        raise SiteError(f"README.md has no section '## {heading}'")
    return m.group(1).strip()


def reproduce_page(root: Path) -> str:
    readme = (root / "README.md").read_text(encoding="utf-8")
    parts = ["# How to reproduce", ""]
    for heading in ("Two commands", "Changing a parameter", "JupyterLab", "Reproducible on any machine"):
        body = _readme_section(readme, heading)
        body = re.sub(r"!\[[^\]]*\]\([^)]*\)\n*(\*[^\n]*\*\n*)?", "", body)  # the README's figure: on the landing
        parts += [f"## {heading}", "", body, ""]
    parts += ["## This site", "",
              "```bash\nmake site                       # build/site/, from the committed notebooks (never executed)\n"
              ".venv/bin/reluflow site --serve  # serve it on http://127.0.0.1:8000/\n```", ""]
    return "\n".join(parts)


def cite_page(root: Path) -> str:
    cff = yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))
    ref = cff["references"][0]
    authors = " and ".join(f"{a['family-names']}, {a['given-names']}" for a in ref["authors"])
    eprint = ref["identifiers"][0]["value"].removeprefix("arXiv:")
    software = " and ".join(a.get("name") or f"{a['family-names']}, {a['given-names']}" for a in cff["authors"])
    year = str(cff["date-released"])[:4]
    return "\n".join([
        "# How to cite", "", cff["message"], "",
        "The paper:", "", "```bibtex",
        f"@misc{{chen{ref['year']},\n  author = {{{authors}}},\n  title = {{{ref['title']}}},\n"
        f"  year = {{{ref['year']}}},\n  eprint = {{{eprint}}},\n  archivePrefix = {{arXiv}}\n}}", "```", "",
        "The software:", "", "```bibtex",
        f"@software{{reluflow,\n  author = {{{{{software}}}}},\n  title = {{{cff['title']}}},\n"
        f"  version = {{{cff['version']}}},\n  year = {{{year}}}\n}}", "```", "",
        f"Licence: {cff['license']}. The metadata above is read from `CITATION.cff`.", ""])


def api_pages() -> dict[str, str]:
    """The API reference: ``api/index.rst`` and one reStructuredText page per module, rendered by autodoc."""
    modules = _package_modules()
    pages = {}
    for name in modules:
        title = f"``{name}``"
        # a package's page shows its docstring only: its members are documented in the module that defines them
        option = "   :no-members:\n" if hasattr(importlib.import_module(name), "__path__") else ""
        pages[f"api/{name}.rst"] = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n{option}"
    toc = "\n".join(f"   {name}" for name in modules)
    pages["api/index.rst"] = (f"API reference\n=============\n\nGenerated from the docstrings, one page per module.\n\n"
                              f".. toctree::\n   :maxdepth: 1\n\n{toc}\n")
    return pages


# --------------------------------------------------------------------------- staging and building


def _stage_notebook(src: Path, dst: Path) -> None:
    """A copy of an executed notebook with its cell ids as HTML anchors; outputs are left as committed."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        cid = cell.get("id")
        if not cid:
            continue
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"])
            cell["source"] = f'<span id="{html.escape(cid)}"></span>\n\n' + source
        elif cell["cell_type"] == "code":
            cell.setdefault("metadata", {})[CELL_META_KEY] = {"id": cid}
    dst.write_text(json.dumps(nb), encoding="utf-8")


def stage_sources(root=None, source_dir=None) -> Path:
    """Write the Sphinx source tree (copied notebooks, generated pages, conf.py) into ``source_dir``."""
    root = _root(root)
    src = Path(source_dir) if source_dir is not None else root / "build" / "site-src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    (src / "api").mkdir()
    shutil.copy2(root / "docs" / "conf.py", src / "conf.py")
    shutil.copytree(root / "docs" / "_static", src / "_static")
    (src / "figures").mkdir()
    shutil.copy2(root / "figures" / "01_truncation_layers.png", src / "figures")
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SiteError(f"no notebooks in {root / 'notebooks'}")
    for path in notebooks:
        _stage_notebook(path, src / "notebooks" / path.name)
    (src / "notebooks" / "index.md").write_text(
        "# Notebooks\n\nEach notebook as executed at paper scale, with its committed outputs; the site never "
        "re-executes them (`reluflow reproduce` does).\n\n```{toctree}\n:maxdepth: 1\n\n"
        + "\n".join(p.stem for p in notebooks) + "\n```\n", encoding="utf-8")
    (src / "index.md").write_text(landing_page(root), encoding="utf-8")
    (src / "formula-map.md").write_text(map_page(formula_map(root)), encoding="utf-8")
    (src / "reproduce.md").write_text(reproduce_page(root), encoding="utf-8")
    (src / "cite.md").write_text(cite_page(root), encoding="utf-8")
    for rel, text in api_pages().items():
        (src / rel).write_text(text, encoding="utf-8")
    return src


@dataclass(frozen=True)
class SiteBuild:
    """What :func:`build_site` made: the output folder, its HTML pages, the build time and Sphinx's warnings."""

    output_dir: Path
    pages: tuple[Path, ...]
    seconds: float
    warnings: tuple[str, ...]


def mathjax_dir() -> Path:
    """The folder of the installed MathJax (``sphinx-mathjax-offline``), or SiteError naming the extra."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SiteError(f"MathJax: the package {MATHJAX_PACKAGE!r} is not installed (pip install -e '.[docs]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (path / Path(MATHJAX_PATH).name).exists():
        raise SiteError(f"MathJax: expected {MATHJAX_PATH} in {path}, it is missing")
    return path


def build_site(output_dir=None, root=None, *, quiet: bool = True) -> SiteBuild:
    """Stage the sources and build the HTML site into ``output_dir`` (default ``build/site``); no notebook runs."""
    root = _root(root)
    if not isinstance(output_dir, (str, Path, type(None))):
        raise TypeError(f"output_dir: expected a path (str or pathlib.Path) or None, got {type(output_dir).__name__}")
    out = Path(output_dir) if output_dir is not None else root / DEFAULT_OUTPUT
    try:
        from sphinx.cmd.build import build_main
    except ImportError as exc:
        raise SiteError(f"the site needs Sphinx and myst-nb: pip install -e '.[docs]' ({exc})") from exc
    mathjax_dir()
    start = time.perf_counter()
    src = stage_sources(root, out.parent / (out.name + "-src"))
    doctrees = out.parent / (out.name + "-doctrees")
    if out.exists():
        shutil.rmtree(out)
    warnings_file = out.parent / (out.name + "-warnings.txt")
    args = ["-b", "html", "-E", "-d", str(doctrees), "-w", str(warnings_file), str(src), str(out)]
    if quiet:
        args.insert(0, "-q")
    rc = build_main(args)
    seconds = time.perf_counter() - start
    warnings = tuple(ln for ln in warnings_file.read_text(encoding="utf-8").splitlines() if ln.strip()) \
        if warnings_file.exists() else ()
    if rc != 0:
        raise SiteError(f"sphinx-build exited {rc}; see {warnings_file}")
    pages = tuple(sorted(p for p in out.rglob("*.html") if not p.relative_to(out).parts[0].startswith("_")))
    return SiteBuild(out, pages, seconds, warnings)


# --------------------------------------------------------------------------- serving


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def serve_site(directory=None, port: int = 0, *, host: str = "127.0.0.1", quiet: bool = True):
    """A threaded HTTP server for ``directory`` on loopback (port 0: a free one); call ``serve_forever``."""
    directory = Path(directory) if directory is not None else ROOT / DEFAULT_OUTPUT
    if not (directory / "index.html").exists():
        raise FileNotFoundError(f"directory: expected a built site with index.html, got {str(directory)!r} "
                                f"(build it with `make site` or `reluflow site`)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port: expected an integer in [0, 65535], got {port!r}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"host: expected a loopback address (127.0.0.1, localhost or ::1), got {host!r}")
    base = _QuietHandler if quiet else SimpleHTTPRequestHandler
    handler = functools.partial(base, directory=str(directory))
    return ThreadingHTTPServer((host, port), handler)


def serve_in_thread(directory=None, port: int = 0):
    """Start :func:`serve_site` in a daemon thread; returns (server, base URL). Stop with ``server.shutdown()``."""
    server = serve_site(directory, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/"


# --------------------------------------------------------------------------- the Sphinx extension


def _anchor_cells(app, doctree) -> None:
    from docutils import nodes

    for node in doctree.findall(nodes.container):
        if node.get("nb_element") == "cell_code":
            cid = (node.get("cell_metadata") or {}).get(CELL_META_KEY, {}).get("id")
            if cid and cid not in node["ids"]:
                node["ids"].append(cid)


def escape_bars(line: str) -> str:
    """``|x|`` → ``\\|x\\|``, θ_{*,j} → θ_{\\*,j}, φ_* → φ\\_\\*, θ_ → θ\\_: no reStructuredText substitution, emphasis
    or reference where the docstrings mean maths; literals kept."""
    parts = line.split("``")
    return "``".join(p if i % 2 else _escape_maths(p) for i, p in enumerate(parts))


def _escape_maths(text: str) -> str:
    text = text.replace("|", "\\|")
    text = re.sub(r"(?<=\w)_(?=[\s,.;:)\]*]|$)", r"\\_", text)  # θ_ and φ_*: not a reference
    return re.sub(r"(?<=[{_^])\*", r"\\*", text)  # φ_*, θ_{*,j}: not emphasis


def _escape_docstring(app, what, name, obj, options, lines) -> None:
    lines[:] = [escape_bars(line) for line in lines]


def _copy_mathjax(app, exc) -> None:
    if exc is None and app.builder.format == "html":
        dst = Path(app.outdir) / "_static" / "mathjax"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(mathjax_dir(), dst)


def setup(app):
    """Sphinx extension: cell ids as anchors of the notebook pages, and the vendored MathJax in ``_static``."""
    app.connect("doctree-read", _anchor_cells)
    app.connect("autodoc-process-docstring", _escape_docstring)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

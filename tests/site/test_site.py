"""The site: its generated pages are true to the code, and every page works offline in a real browser.

The browser test serves build/site on 127.0.0.1 and opens every HTML page in the system's Chromium through
Playwright. A page fails on: a failed request (network error or HTTP status >= 400); any request to an address
other than loopback; an image with naturalWidth 0; unrendered TeX (defined in ``UNRENDERED_TEX_JS``); a console
error or an uncaught page error; an internal link whose page or #anchor does not exist. Without playwright or
/usr/bin/chromium the browser tests skip, saying so; without the ``docs`` extra the build-dependent tests skip.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

from reluflow.pipeline import site

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
SCREENSHOTS = ROOT / "build" / "site-screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _docs_missing() -> str | None:
    import importlib.util

    for name in ("sphinx", "myst_nb", "furo", site.MATHJAX_PACKAGE):
        if importlib.util.find_spec(name) is None:
            return f"the site needs the docs extra ({name} is not installed): pip install -e '.[docs]'"
    return None


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser test skipped: the python package playwright is not installed (pip install -e '.[docs]')"
    if not CHROMIUM.exists():
        return f"browser test skipped: no browser at {CHROMIUM} (apt-get install -y chromium; .ci/run does)"
    return None


# --------------------------------------------------------------------------- the generated map (no browser)


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


@functools.cache
def _cell_ids(stem: str) -> set[str]:
    return {c.get("id") for c in json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["cells"]}


def test_formula_map_has_no_dangling_entry():
    """Oracle: brute-force recount: every name, test and cell the map gives is looked up again, independently."""
    import importlib

    entries = site.formula_map()
    n_roles = sum(len(re.findall(r"→[^\n]*:func:`", (ROOT / p).read_text())) for p in
                  map(str, Path(ROOT / "reluflow").rglob("*.py")) if not p.endswith("site.py"))
    assert len(entries) >= 100 and len(entries) >= 0.9 * n_roles, (len(entries), n_roles)
    dangling = [(e.module, e.formula, e.missing) for e in entries if e.missing or not e.functions]
    assert dangling == [], f"docstring map names that resolve to nothing: {dangling}"
    for e in entries:
        for name in e.functions:
            module, _, attr = name.partition(".")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        assert all(_test_exists(t) for t in e.tests), e
        assert all(c.partition("#")[2] in _cell_ids(c.partition("#")[0]) for c in e.cells), e
    assert sum(bool(e.tests) for e in entries) >= 0.8 * len(entries), "most formulas have a test that uses them"


def test_formula_map_agrees_with_the_readme_table():
    """Oracle: the README's hand-written formula table (a separate source): where it names a function the
    docstring map also has, the README's test of that function is among the tests the map found."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## From formula to notebook\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    by_function: dict[str, set[str]] = {}
    for e in site.formula_map():
        for f in e.functions:
            by_function.setdefault(f.rsplit(".", 1)[-1], set()).update(e.tests)
    compared = agreed = 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`reluflow"):
            continue
        functions = [f.rsplit(".", 1)[-1] for f in re.findall(r"`([^`]+)`", cells[1])]
        readme_tests = set(re.findall(r"`([^`]+)`", cells[2]))
        found = set().union(*(by_function.get(f, set()) for f in functions))
        if found:
            compared += 1
            agreed += bool(readme_tests & found)
    assert compared >= 20 and agreed >= 0.9 * compared, (agreed, compared)


def test_docstring_map_reports_a_dangling_name(tmp_path, monkeypatch):
    """Negative control (fixture): a docstring line naming a missing function is reported as missing."""
    (tmp_path / "fake_map_module.py").write_text(
        '"""Doc.\n\n- x = 1 → :func:`present`\n- y = 2, continued\n  over two lines → :func:`absent`, :func:`present`\n'
        '- no arrow :func:`present`\n"""\n\ndef present():\n    """p"""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    entries = site.docstring_map_entries("fake_map_module")
    assert [(e.formula, e.functions, e.missing) for e in entries] == [
        ("x = 1", ("fake_map_module.present",), ()),
        ("y = 2, continued over two lines", ("fake_map_module.present",), ("absent",))]
    with pytest.raises(TypeError, match="module_name"):
        site.docstring_map_entries(3)


def test_uses_are_found_through_every_import_form(tmp_path):
    """Oracle: a hand-written fixture of a test file and a notebook using bias_flow through three import forms."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_fake.py").write_text(
        "import reluflow as rf\nfrom reluflow import bias_flow as bf\nfrom reluflow.theory import flows\n\n"
        "def test_a():\n    rf.bias_flow\n\ndef test_b():\n    bf()\n\ndef test_c():\n    flows.bias_flow\n\n"
        "def test_d():\n    rf.forward\n\ndef helper():\n    bf()\n")
    nb = {"cells": [{"cell_type": "code", "id": "c1", "source": ["%matplotlib inline\n", "import reluflow as rf\n"]},
                    {"cell_type": "markdown", "id": "m1", "source": ["rf.bias_flow"]},
                    {"cell_type": "code", "id": "c2", "source": ["rf.bias_flow(1)"]},
                    {"cell_type": "code", "id": "c3", "source": ["rf.forward(1)"]}]}
    (tmp_path / "notebooks" / "01_fake.ipynb").write_text(json.dumps(nb))
    name = "reluflow.theory.flows.bias_flow"
    assert site.tests_using([name], tmp_path)[name] == tuple(f"tests/test_fake.py::test_{x}" for x in "abc")
    assert site.cells_using([name], tmp_path)[name] == ("01_fake#c2",)
    with pytest.raises(ValueError, match="root"):
        site.tests_using([name], tmp_path / "nowhere")
    with pytest.raises(TypeError, match="root: expected a path"):
        site.cells_using([name], 3)


def test_claims_link_every_readme_claim_to_a_section_and_a_figure():
    """Oracle: recount from the README (claim ids) and the notebooks (heading cells, image outputs)."""
    readme_ids = re.findall(r"^\| (A\d|[A-Z]) \|", (ROOT / "README.md").read_text(), re.M)
    rows = site.claims_rows()
    assert [r["id"] for r in rows] == readme_ids and len(rows) >= 7
    for r in rows:
        hrefs = re.findall(r'href="notebooks/(\w+)\.html#([\w-]+)"', " ".join(r["shown_in"]))
        assert len(hrefs) >= 2 and len(hrefs) % 2 == 0
        cells = {}
        for stem, cid in hrefs:
            cells = {c["id"]: c for c in json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["cells"]}
            assert cid in cells
        sections, figures = hrefs[0::2], hrefs[1::2]
        for stem, cid in sections:
            nb = {c["id"]: c for c in json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["cells"]}
            assert "".join(nb[cid]["source"]).lstrip().startswith("#")
        for stem, cid in figures:
            nb = {c["id"]: c for c in json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["cells"]}
            assert any("image/png" in o.get("data", {}) for o in nb[cid]["outputs"])


def test_claims_file_with_a_wrong_cell_is_refused(tmp_path):
    """Negative control: a claims file naming a cell that is not a heading, or no cell, raises SiteError."""
    bad = tmp_path / "claims.yaml"
    ids = re.findall(r"^\| (A\d|S) \|", (ROOT / "README.md").read_text(), re.M)
    entry = "  - {notebook: 01_truncation_maps, section: %s, figure: cell-14}\n"
    bad.write_text("".join(f"{i}:\n" + entry % "cell-03" for i in ids[:-1]) + f"{ids[-1]}:\n" + entry % "cell-14")
    with pytest.raises(site.SiteError, match="not a section heading"):
        site.claims_rows(claims_file=bad)
    bad.write_text("".join(f"{i}:\n" + entry % "cell-99x" for i in ids))
    with pytest.raises(site.SiteError, match="no cell"):
        site.claims_rows(claims_file=bad)


def test_escape_bars_keeps_literals():
    """Oracle: hand-written fixture."""
    assert site.escape_bars("|x − y|² and ``a|b``") == "\\|x − y\\|² and ``a|b``"
    assert site.escape_bars("θ_{*,j} and *emphasis*, x") == "θ_{\\*,j} and *emphasis*, x"
    assert site.escape_bars("φ_* and θ_ of snake_case x_i") == "φ\\_\\* and θ\\_ of snake_case x_i"


def test_serve_site_refuses_bad_arguments(tmp_path):
    """Oracle: the error contract (argument named, expected and received value)."""
    with pytest.raises(FileNotFoundError, match="directory"):
        site.serve_site(tmp_path)
    (tmp_path / "index.html").write_text("<p>x</p>")
    with pytest.raises(ValueError, match=r"port: expected .* got 70000"):
        site.serve_site(tmp_path, 70000)
    with pytest.raises(ValueError, match=r"host: expected a loopback .* got '0.0.0.0'"):
        site.serve_site(tmp_path, 0, host="0.0.0.0")
    with pytest.raises(TypeError, match="output_dir"):
        site.build_site(3)


# --------------------------------------------------------------------------- the browser test

# Unrendered TeX, precisely: (a) an element Sphinx marked as maths (class "math") that holds no MathJax output
# (mjx-container); (b) a MathJax error (mjx-merror); (c) a text node outside code, pre, script, style, textarea and
# MathJax output that contains \( or \[ or $$, or a one-line $...$ span whose content holds a TeX command (\word),
# ^ or _. Text shown as code (code cells, outputs, literals) is never maths.
UNRENDERED_TEX_JS = r"""
() => {
  const found = [];
  for (const el of document.querySelectorAll('.math')) {
    if (!el.querySelector('mjx-container') && el.tagName !== 'MJX-CONTAINER') {
      found.push('math: ' + el.textContent.slice(0, 60));
    }
  }
  for (const el of document.querySelectorAll('mjx-merror')) found.push('mathjax error: ' + el.textContent.slice(0, 60));
  const skip = new Set(['SCRIPT', 'STYLE', 'PRE', 'CODE', 'TEXTAREA', 'MJX-CONTAINER', 'KBD', 'SAMP', 'TITLE']);
  const tex = /\\\(|\\\[|\$\$|\$[^$\n]*(\\[A-Za-z]+|[\^_])[^$\n]*\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let p = n.parentElement, inside = false;
    for (; p; p = p.parentElement) {
      if (skip.has(p.tagName) || p.classList.contains('highlight')) { inside = true; break; }
    }
    if (!inside && tex.test(n.textContent)) found.push('text: ' + n.textContent.trim().slice(0, 80));
  }
  return found;
}
"""

PAGE_STATE_JS = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const imgs = [...document.images];
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return {
    broken_images: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)
           .concat([...document.querySelectorAll('a[name]')].map(e => e.name)),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  };
}
"""


def _pages(site_dir: Path) -> list[str]:
    return sorted(p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html")
                  if not p.relative_to(site_dir).parts[0].startswith("_"))


def audit_site(browser, site_dir: Path, *, screenshots: dict | None = None) -> tuple[list[str], dict]:
    """Open every page of ``site_dir`` over http://127.0.0.1 and return (problems, statistics)."""
    server, base = site.serve_in_thread(site_dir)
    problems, ids, links = [], {}, []
    stats = {"pages": 0, "requests": 0, "images": 0, "links": 0}
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        current = {"page": ""}

        def on_route(route):
            host = urlsplit(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or (host and host in LOOPBACK):
                route.continue_()
            else:
                problems.append(f"{current['page']}: request leaves loopback: {route.request.url}")
                route.abort()

        def on_request(request):
            stats["requests"] += 1

        page.route("**/*", on_route)
        page.on("request", on_request)
        page.on("requestfailed", lambda r: problems.append(
            f"{current['page']}: request failed: {r.url} ({r.failure})")
            if urlsplit(r.url).hostname in LOOPBACK else None)
        page.on("response", lambda r: problems.append(f"{current['page']}: HTTP {r.status}: {r.url}")
                if r.status >= 400 else None)
        page.on("console", lambda m: problems.append(f"{current['page']}: console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"{current['page']}: page error: {e}"))
        for rel in _pages(site_dir):
            current["page"] = rel
            page.goto(base + rel, wait_until="load")
            state = page.evaluate(PAGE_STATE_JS)
            for src in state["broken_images"]:
                problems.append(f"{rel}: image did not load: {src}")
            for text in page.evaluate(UNRENDERED_TEX_JS):
                problems.append(f"{rel}: unrendered TeX: {text}")
            ids[rel] = set(state["ids"])
            links += [(rel, href) for href in state["links"]]
            stats["pages"] += 1
            stats["images"] += page.evaluate("document.images.length")
            if screenshots and rel in screenshots:
                page.screenshot(path=str(screenshots[rel]))
        context.close()
    finally:
        server.shutdown()
        server.server_close()
    for rel, href in links:
        if not href.startswith(base):
            continue
        stats["links"] += 1
        url, fragment = urldefrag(href)
        target = unquote(url[len(base):]) or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if not (site_dir / target).is_file():
            problems.append(f"{rel}: broken link to {href}")
        elif fragment and target.endswith(".html") and unquote(fragment) not in ids.get(target, set()):
            problems.append(f"{rel}: broken anchor {href}")
    return problems, stats


@pytest.fixture(scope="session")
def browser():
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def built_site():
    reason = _docs_missing()
    if reason:
        pytest.skip(reason)
    return site.build_site(SITE, ROOT)


def test_every_page_works_offline_in_chromium(built_site, browser):
    """Oracle: a real browser (Chromium) loading every page from 127.0.0.1, and a recount of links and anchors."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"index.html": SCREENSHOTS / "landing.png",
             "notebooks/01_truncation_maps.html": SCREENSHOTS / "notebook_01.png"}
    start = time.perf_counter()
    problems, stats = audit_site(browser, built_site.output_dir, screenshots=shots)
    seconds = time.perf_counter() - start
    print(f"site: {len(built_site.pages)} pages built in {built_site.seconds:.1f} s; browser: {stats['pages']} pages, "
          f"{stats['requests']} requests, {stats['images']} images, {stats['links']} internal links in {seconds:.1f} s",
          file=sys.stderr)
    assert problems == [], "\n".join(problems[:50])
    assert stats["pages"] == len(built_site.pages) >= 20
    nb_pages = [p for p in built_site.pages if p.parent.name == "notebooks" and p.name[:2].isdigit()]
    assert len(nb_pages) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    assert all(p.stat().st_size > 0 for p in shots.values())


def test_site_has_the_pages_and_no_cdn(built_site):
    """Oracle: recount of the built files: one page per notebook, the map, the API, reproduce, cite; MathJax local.
    Sphinx's own warnings (a docstring that does not parse, an ambiguous cross-reference) must be none."""
    assert built_site.warnings == (), "\n".join(built_site.warnings[:20])
    out = built_site.output_dir
    for rel in ("index.html", "formula-map.html", "api/index.html", "reproduce.html", "cite.html",
                "_static/mathjax/tex-chtml.js"):
        assert (out / rel).is_file(), rel
    page = (out / "notebooks" / "02_effective_flow_equations.html").read_text()
    assert 'src="../_static/mathjax/tex-chtml.js' in page  # Sphinx adds MathJax to the pages with maths
    remote = re.compile(r"<(script|link|img)\b[^>]*\b(src|href)=\"(https?:)?//", re.I)
    assert [p.name for p in built_site.pages if remote.search(p.read_text())] == []
    for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        html_text = (out / "notebooks" / f"{nb.stem}.html").read_text()
        assert html_text.count("<img") >= sum("image/png" in o.get("data", {}) for c in json.loads(nb.read_text())[
            "cells"] if c["cell_type"] == "code" for o in c["outputs"])
        assert 'id="cell-00"' in html_text


BAD_PAGE = """<!doctype html><html><head><title>bad</title>
<link rel="stylesheet" href="http://cdn.example.invalid/theme.css"></head><body>
<p>Raw maths $\\lambda^2 + b^2$ and \\(x\\).</p><span class="math notranslate">y^2</span>
<pre>$\\lambda$ in code is fine</pre>
<img src="missing.png"><a href="index.html#nowhere">a</a><a href="gone.html">b</a><a href="index.html#here">ok</a>
<script>console.error("boom")</script></body></html>"""


def test_browser_audit_catches_every_kind_of_fault(browser, tmp_path):
    """Negative control: a page with one fault of each kind; the audit reports each, and nothing on a clean page."""
    (tmp_path / "index.html").write_text('<!doctype html><html><body><p id="here">clean $5 and $6</p></body></html>')
    (tmp_path / "bad.html").write_text(BAD_PAGE)
    problems, stats = audit_site(browser, tmp_path)
    text = "\n".join(problems)
    assert stats["pages"] == 2
    assert not [p for p in problems if p.startswith("index.html")], text
    for expected in ("request leaves loopback: http://cdn.example.invalid/theme.css", "HTTP 404", "image did not load",
                     "unrendered TeX: text: Raw maths",
                     "unrendered TeX: math: y^2", "console error: boom", "broken anchor", "broken link to"):
        assert expected in text, (expected, text)
    assert "in code is fine" not in text
    shutil.rmtree(tmp_path)


def test_cli_site_subcommand_parses_and_refuses_a_bad_port(tmp_path, capsys):
    """Oracle: the command line's contract (argparse, and the error path of ``reluflow site --serve``)."""
    from reluflow.pipeline.cli import build_parser, main

    args = build_parser().parse_args(["site", "--serve", "--port", "0"])
    assert (args.command, args.serve, args.port, args.output_dir) == ("site", True, 0, None)
    (tmp_path / "index.html").write_text("<p>x</p>")
    assert main(["site", "--serve", "--port", "70000", "--output-dir", str(tmp_path)]) == 1
    assert "port: expected an integer in [0, 65535], got 70000" in capsys.readouterr().err

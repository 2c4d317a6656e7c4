"""Sphinx configuration of the reluflow site (``make site`` / ``reluflow site``; sources staged by reluflow.pipeline.site).

Why Sphinx with myst-nb: it reads the executed notebooks as they are committed (``nb_execution_mode = "off"``: no
kernel is started, the outputs shown are the committed ones), it generates the API reference from the docstrings
(autodoc reads the ``:func:`` roles those docstrings already use), and everything it needs is installed by pip with
the ``docs`` extra: the theme (furo) ships its templates and assets, so nothing is downloaded at build time.
MathJax 3 is vendored from the PyPI package ``sphinx-mathjax-offline`` (MathJax, Apache-2.0) and copied into
``_static/mathjax``: pages render their maths with no network and no CDN.
"""

from __future__ import annotations

import reluflow
from reluflow.pipeline import site as _site

project = "reluflow"
author = "The reluflow developers"
copyright = "The reluflow developers, MIT licence"
release = version = reluflow.__version__

extensions = [
    "myst_nb",  # notebooks (.ipynb) and MyST markdown (.md) pages
    "sphinx.ext.autodoc",  # the API reference, from the docstrings
    "sphinx.ext.napoleon",  # their numpy-style Parameters/Returns sections (part of Sphinx)
    "sphinx.ext.mathjax",  # maths as \(...\) spans, typeset in the browser by the vendored MathJax
    "reluflow.pipeline.site",  # cell anchors (notebook#cell-id) and the vendored MathJax (see reluflow/pipeline/site.py)
]

# Notebooks: shown with their committed outputs, never re-executed.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax: a local copy (relative to _static), never a CDN address.
mathjax_path = _site.MATHJAX_PATH

html_theme = "furo"
html_title = f"reluflow {release}"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
# furo's defaults are system fonts; nothing is loaded from outside the site
html_theme_options = {"navigation_with_keys": True}

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
add_module_names = False

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "toc.not_included"]

# numpy-style sections: types shown as text, not resolved as cross-references (a type such as "array (N, M)"
# would otherwise be linked to whatever attribute is called N)
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_param = False
napoleon_use_rtype = False

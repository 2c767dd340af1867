"""The book build's local Sphinx extension: the kernels know they render the book, and two fixes to stock pages.

* Every kernel that executes a page inherits ``DLDNA_STATIC_WIDGETS=1`` and ``DLDNA_PROGRESS=0`` (unless already
  set): sliders become static HTML, glued values go to myst-nb instead of being printed
  (:mod:`dldna_lite.notebook`), and no progress bar lands on a page. A plain ``jupyter-book build .`` is then the same
  build as ``make book``.

``DLDNA_BOOK_KERNEL=<kernel name>`` executes every page in that Jupyter kernel instead of the one the notebooks
name (``python3``): ``make test`` builds the quick book in the student kernel (``scripts/student_kernel.py``), so that
one execution of each page, from its own install cell at Colab's versions, serves both the book and the test.

The claims ledger (``_ext/dldna_claims.py``, loaded from here): every ``claim(...)`` the pages executed, with its
numbers and verdict, collected from the executed notebooks into the table of the ``claims-ledger`` directive.

Two fixes to stock Jupyter Book 1 pages, so that the built book logs no console error (tests/test_html.py):

* sphinx-thebe 0.3.1 registers its inline configuration script (``const THEBE_JS_URL = ...``) once per read pass,
  and a second copy on the same page throws "Identifier 'THEBE_JS_URL' has already been declared". We keep the
  first copy of every identical script (a body-only script is registered with filename None or "", the same thing).
* pydata-sphinx-theme sets the page's colour mode to ``""`` when ``html_context["default_mode"]`` is not given,
  and a fresh browser (nothing in localStorage) logs "Got invalid theme mode". We give it ``auto`` unless set.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Set at import, before myst-nb starts any kernel: kernels inherit this process's environment.
os.environ.setdefault("DLDNA_STATIC_WIDGETS", "1")
os.environ.setdefault("DLDNA_PROGRESS", "0")


def _default_mode(app, config) -> None:
    config.html_context.setdefault("default_mode", "auto")


def _book_kernel(app, config) -> None:
    kernel = os.environ.get("DLDNA_BOOK_KERNEL")
    if kernel:
        config.nb_kernel_rgx_aliases = {".*": kernel}


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", script) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    if str(Path(__file__).resolve().parent) not in sys.path:   # jupyter-book puts _ext/ there; a bare Sphinx may not
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    app.setup_extension("dldna_claims")
    app.connect("config-inited", _default_mode)
    app.connect("config-inited", _book_kernel)
    app.connect("html-page-context", _dedupe_scripts, priority=900)   # after the themes have added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Two fixes to stock Jupyter Book 1 pages, so that the built book logs no console error (tests/test_html.py).

* sphinx-thebe 0.3.1 registers its inline configuration script (``const THEBE_JS_URL = ...``) once per read pass,
  and a second copy on the same page throws "Identifier 'THEBE_JS_URL' has already been declared". We keep the
  first copy of every identical script (a body-only script is registered with filename None or "", the same thing).
* pydata-sphinx-theme sets the page's colour mode to ``""`` when ``html_context["default_mode"]`` is not given,
  and a fresh browser (nothing in localStorage) logs "Got invalid theme mode". We give it ``auto`` unless set.
"""
from __future__ import annotations


def _default_mode(app, config) -> None:
    config.html_context.setdefault("default_mode", "auto")


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
    app.connect("config-inited", _default_mode)
    app.connect("html-page-context", _dedupe_scripts, priority=900)   # after the themes have added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Helpers every chapter notebook uses: numbers into the prose (``glue``), wherever the notebook runs.

A chapter puts a computed number into a sentence with ``glue("name", value)`` in a cell and ``{glue:text}`name```
in the text. Two places run the same notebook:

* **the book build** (``jupyter-book build``; ``_ext/dldna_book.py`` sets ``DLDNA_STATIC_WIDGETS=1`` for its
  kernels): :func:`glue` hands the value to ``myst_nb.glue``, which stores it for the page and shows nothing (or,
  when the book executes in a kernel without myst-nb, as ``make test``'s student kernel, emits the same record);
* **a student's kernel** (Colab, Binder, a local Jupyter), where myst-nb is not installed and the roles in the text
  show up as raw ``{glue:text}`name``` markup: :func:`glue` prints ``name = value`` under the cell instead, so the
  reader finds every number the sentence refers to.
"""
from __future__ import annotations

import ast
import inspect
import numbers
import textwrap

from .config import env_flag

__all__ = ["in_book_build", "glue", "glue_text", "show_source", "claim", "ClaimError"]


def in_book_build() -> bool:
    """True while the HTML book is being built (``$DLDNA_STATIC_WIDGETS`` set, as ``jupyter-book build`` does here).

    Then sliders are rendered as static HTML (:mod:`dldna_lite.widgets`) and glued values go to myst-nb.
    """
    return env_flag("DLDNA_STATIC_WIDGETS", default=False)


def glue_text(value) -> str:
    """How a glued value reads in a student's notebook: floats with 4 significant digits, Markdown as its text."""
    if isinstance(value, bool) or isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    data = getattr(value, "data", None)  # IPython.display.Markdown and friends
    return str(data) if isinstance(data, str) else str(value)


def glue(name: str, value, display: bool = False) -> None:
    """Make ``value`` available to the page's ``{glue:...}`name``` roles (same signature as ``myst_nb.glue``).

    In the book build this is ``myst_nb.glue(name, value, display=display)``. Anywhere else it prints
    ``name = value`` (see :func:`glue_text`), because there the roles are not rendered; myst-nb is not needed.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty name (str), got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:   # numpy or torch scalar: a plain number,
        value = value.item()                                          # so that format specs like :.2f work
    if in_book_build():
        try:
            from myst_nb import glue as myst_glue
        except ImportError:   # the book executed in a student's kernel (make test): the same record, by hand
            myst_glue = _glue_record
        myst_glue(name, value, display=display)
        return
    print(f"{name} = {glue_text(value)}")


def _glue_record(name: str, value, display: bool = False) -> None:
    """What ``myst_nb.glue`` emits, for a kernel without myst-nb: a display-data output whose MIME types carry
    papermill's record prefix (unless displayed) and whose metadata names the value (scrapbook's convention, which
    myst-nb reads back from the executed notebook). ``tests/test_notebook.py`` compares it with ``myst_nb.glue``."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    bundle, metadata = format_display_data(value)
    prefix = "" if display else "application/papermill.record/"
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def source_text(obj, docstring: bool = True) -> str:
    """The source of a function, method or class as the reader should see it: dedented, and without its docstring
    when ``docstring=False`` (the chapter's prose already says what it does)."""
    source = textwrap.dedent(inspect.getsource(obj))
    if docstring:
        return source
    node = ast.parse(source).body[0]
    first = node.body[0] if getattr(node, "body", None) else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        return source
    lines = source.splitlines(keepends=True)
    return "".join(lines[:first.lineno - 1] + lines[first.end_lineno:])


def show_source(obj, docstring: bool = True) -> None:
    """Print :func:`source_text` under the cell: how a chapter shows the package's real code (never a second copy)."""
    print(source_text(obj, docstring).rstrip("\n"))


class ClaimError(AssertionError):
    """A sentence of the book that the numbers of this run contradict."""


def claim(holds: bool, sentence: str, **measured) -> None:
    """Guard a sentence of the prose: raise :class:`ClaimError` naming it, and the numbers behind it, when this
    run's numbers contradict it. Chapters call it in a hidden cell right after the numbers, so a build (any
    profile) that would print a false sentence fails instead::

        claim(all(r["reached_edge"] for r in runs), "every run reaches 2/lr and stays there", plateaus=plateaus)
    """
    if not holds:
        numbers = ", ".join(f"{k}={glue_text(v)}" for k, v in measured.items())
        raise ClaimError(f"the text says {sentence!r}, but this run measured {numbers or 'otherwise'}")

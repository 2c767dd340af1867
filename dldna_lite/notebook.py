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
import hashlib
import inspect
import itertools
import json
import linecache
import math
import numbers
import os
import sys
import textwrap

from .config import env_flag

__all__ = ["in_book_build", "glue", "glue_text", "show_source", "claim", "ClaimError", "CLAIM_MIME"]


def in_book_build() -> bool:
    """True while the HTML book is being built (``$DLDNA_STATIC_WIDGETS`` set, as ``jupyter-book build`` does here).

    Then sliders are rendered as static HTML (:mod:`dldna_lite.widgets`) and glued values go to myst-nb.
    """
    return env_flag("DLDNA_STATIC_WIDGETS", default=False)


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun`` as prose computed from a size: ``plural(1, "epoch")`` is "1 epoch", ``plural(2500,
    "step")`` is "2,500 steps" (English nouns that take an "s")."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


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

    In the book build every call also leaves a record for the claims ledger (:func:`claim_record`), glued under a
    name of its own (``dldna-claim-00001``, ...) as myst-nb's glue does, with MIME type :data:`CLAIM_MIME`: myst-nb
    collects glued outputs from executed and cached pages alike (and never renders these), and ``_ext/dldna_claims.py``
    reads them back into the ledger page. With ``$DLDNA_CLAIMS_LOG`` set, the record is also appended to that file
    as one JSON line (``scripts/gpu_check.py`` counts the claims of a page this way), before a false claim raises.
    """
    shown = {k: claim_number_text(v) for k, v in measured.items()}
    log, book = os.environ.get("DLDNA_CLAIMS_LOG"), in_book_build()
    if book or log:
        record = claim_record(holds, sentence, shown, _caller_test(), _current_cell())
        if book:
            _glue_claim(record)
        if log:
            _log_claim(log, record)
    if not holds:
        text = ", ".join(f"{k}={v}" for k, v in shown.items())
        raise ClaimError(f"the text says {sentence!r}, but this run measured {text or 'otherwise'}")


CLAIM_MIME = "application/vnd.dldna.claim+json"
CLAIM_GLUE_PREFIX = "dldna-claim-"
_GLUE_RECORD = "application/papermill.record/"   # myst_nb.ext.glue.GLUE_PREFIX
_claims_made = itertools.count(1)


def _glue_claim(record: dict) -> None:
    from IPython.display import display as ipy_display
    name = f"{CLAIM_GLUE_PREFIX}{next(_claims_made):05d}"
    ipy_display({_GLUE_RECORD + CLAIM_MIME: record}, raw=True,
                metadata={"scrapbook": {"name": name, "mime_prefix": _GLUE_RECORD}})


def _log_claim(path: str, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (flushed at once: the process may be killed next)."""
    with open(path, "a", encoding="utf8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def claim_record(holds, sentence: str, numbers: dict, test: str | None = None, cell: str | None = None) -> dict:
    """What the claims ledger gets of one :func:`claim` call: the sentence, the numbers as text, the verdict, the
    condition as written in the cell (``test``, when it could be read back), the profile of the run and the
    :func:`cell_key` of the cell that made the claim (which tells the ledger its section)."""
    from .config import profile
    return {"statement": str(sentence), "numbers": {str(k): str(v) for k, v in numbers.items()},
            "holds": bool(holds), "test": test, "profile": profile(), "cell": cell}


def cell_key(source: str) -> str:
    """A short fingerprint of a code cell's source (``_ext/dldna_claims.py`` computes the same for every cell)."""
    return hashlib.sha1(source.strip().encode("utf8")).hexdigest()[:16]


def _current_cell() -> str | None:
    """:func:`cell_key` of the cell IPython is running (its raw source is the last entry of the input history)."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
        raw = shell.history_manager.input_hist_raw[-1] if shell is not None else None
    except Exception:   # noqa: BLE001 - no IPython, or no history: the ledger puts the claim under the page title
        return None
    return cell_key(raw) if raw else None


def claim_number_text(value, limit: int = 120) -> str:
    """A measured number (or a list, dict, array of them) as the ledger shows it: 4 significant digits, "none"
    for None, "not finite" for NaN/inf, at most ``limit`` characters."""
    if hasattr(value, "tolist"):              # numpy or torch: plain Python numbers or lists
        value = value.tolist()
    if value is None:
        return "none"
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
        return "not finite"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {claim_number_text(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(claim_number_text(v, limit) for v in value) + "]"
    else:
        text = glue_text(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _caller_test() -> str | None:
    """The first argument of the ``claim(...)`` call in the cell that called :func:`claim`, as source text."""
    try:
        frame = sys._getframe(2)
        pos = inspect.getframeinfo(frame).positions   # Python 3.11+: the span of the call expression
        lines = linecache.getlines(frame.f_code.co_filename)
        if pos is None or pos.lineno is None or not lines:
            return None
        span = lines[pos.lineno - 1:pos.end_lineno]
        span[-1] = span[-1][:pos.end_col_offset]
        span[0] = span[0][pos.col_offset:]
        call = ast.parse("".join(span).strip(), mode="eval").body
        return ast.unparse(call.args[0]) if isinstance(call, ast.Call) and call.args else None
    except Exception:   # noqa: BLE001 - the ledger then shows no condition; the claim itself is unaffected
        return None

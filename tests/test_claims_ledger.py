"""The claims ledger (``_ext/dldna_claims.py``, the page ``claims-ledger.md``): one row per ``claim(...)`` executed.

* ``claim`` leaves its record (an output of a private MIME type) only in the book build, also when it fails;
* a throw-away Jupyter Book of two pages and a ledger, built three times (fresh; incremental with one page changed,
  the other neither re-read nor re-executed; ``--all``, every page re-read from jupyter-cache): its ledger always has
  one row per claim call the pages executed;
* the real book (``$DLDNA_HTML_DIR``, set by ``make test``): one row per ``claim(...)`` call of the chapters that the
  build executed.
"""
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import pytest

from dldna_lite import notebook

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
LEDGER_PAGE = "claims-ledger"


def _extension():
    spec = importlib.util.spec_from_file_location("dldna_claims_under_test", ROOT / "_ext" / "dldna_claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- claim() and its record -------------------------------------------------------------------------------------

@pytest.fixture
def displayed(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False, metadata=None: shown.append((obj, metadata)))
    return shown


def test_claim_glues_a_record_in_the_book_build_only(monkeypatch, displayed):
    """What myst_nb.glue(name, value, display=False) emits, with the record under the ledger's MIME type."""
    from myst_nb.ext.glue import GLUE_PREFIX
    monkeypatch.setenv("DLDNA_STATIC_WIDGETS", "1")
    monkeypatch.setenv("DLDNA_PROFILE", "quick")
    notebook.claim(0.9 > 0.5, "it learns", acc=0.91234, runs=[1.0, float("nan")], gap=None)
    with pytest.raises(notebook.ClaimError):
        notebook.claim(False, "it diverges", step=3)           # a failing claim leaves its record, then raises
    (first, meta1), (second, meta2) = displayed
    names = [m["scrapbook"]["name"] for m in (meta1, meta2)]
    assert all(m["scrapbook"]["mime_prefix"] == GLUE_PREFIX for m in (meta1, meta2))
    assert names[0].startswith("dldna-claim-") and names[0] < names[1]
    assert list(first) == [GLUE_PREFIX + notebook.CLAIM_MIME]
    first, second = first[GLUE_PREFIX + notebook.CLAIM_MIME], second[GLUE_PREFIX + notebook.CLAIM_MIME]
    assert first == {"statement": "it learns", "numbers": {"acc": "0.9123", "runs": "[1, not finite]", "gap": "none"},
                     "holds": True, "test": "0.9 > 0.5" if sys.version_info >= (3, 11) else None,
                     "profile": "quick", "cell": None}
    assert second["holds"] is False and second["numbers"] == {"step": "3"}
    monkeypatch.delenv("DLDNA_STATIC_WIDGETS")
    notebook.claim(True, "a student's kernel shows nothing")
    assert len(displayed) == 2


def test_the_extension_reads_the_glued_records():
    ext = _extension()
    assert (ext.CLAIM_MIME, ext.CLAIM_GLUE_PREFIX) == (notebook.CLAIM_MIME, notebook.CLAIM_GLUE_PREFIX)
    assert ext.cell_key(" x = 1\n") == notebook.cell_key("x = 1")
    one, two = (notebook.claim_record(True, s, {"x": "1"}) for s in ("one", "two"))
    glue = {"dldna-claim-00002": {"data": {ext.CLAIM_MIME: two}}, "acc": {"data": {"text/plain": "1"}},
            "dldna-claim-00001": {"data": {ext.CLAIM_MIME: one}}}
    assert ext.glued_claims(glue) == [one, two]


def test_claim_number_text():
    import numpy as np
    import torch
    text = notebook.claim_number_text
    assert text(np.float64(0.000123456)) == "0.0001235" and text(torch.tensor(3)) == "3"
    assert text({"a": [1, None], "b": float("inf")}) == "{a: [1, none], b: not finite}"
    assert text(list(range(100)), limit=20).endswith("…") and len(text(list(range(100)), limit=20)) == 20


# --- a throw-away book -------------------------------------------------------------------------------------------

NOTEBOOK_HEADER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---
"""
PAGE_A = NOTEBOOK_HEADER + """
# Page A

```{code-cell} ipython3
:tags: [remove-cell]
import time
import dldna_lite as dl
dl.claim(True, "a hidden claim", stamp=time.time_ns() % 10**9)
```

## Section two

```{code-cell} ipython3
for k in range(3):
    dl.claim(k < 3, f"claim {k} of a loop", k=k)
```
"""
PAGE_B = NOTEBOOK_HEADER + """
# Page B

## Only section

```{code-cell} ipython3
:tags: [remove-input]
from dldna_lite import claim
claim(1 + 1 == 2, "arithmetic holds")
if False:
    claim(True, "never executed")
```
"""
EXTRA_B = """
```{code-cell} ipython3
:tags: [remove-cell]
claim(2 > 1, "a claim added later")
```
"""


class _LedgerRows(HTMLParser):
    """The rows of the ledger table: per row the cell texts and the links of its first cell."""

    def __init__(self):
        super().__init__()
        self.rows, self.summary, self._in_table, self._in_body, self._cell, self._in_summary = [], "", 0, 0, None, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "table" and "dldna-claims-ledger" in classes:
            self._in_table = 1
        elif tag == "p" and "dldna-claims-summary" in classes:
            self._in_summary = 1
        elif self._in_table and tag == "tbody":
            self._in_body = 1
        elif self._in_body and tag == "tr":
            self.rows.append({"cells": [], "links": []})
        elif self._in_body and tag == "td":
            self._cell = ""
        elif self._in_body and tag == "a" and len(self.rows[-1]["cells"]) == 0:
            self.rows[-1]["links"].append(attrs.get("href", ""))

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(" ".join(self._cell.split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = 0
        elif tag == "table":
            self._in_table = 0
        elif tag == "p":
            self._in_summary = 0

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_summary:
            self.summary += data


def ledger(html_dir: Path) -> _LedgerRows:
    parser = _LedgerRows()
    parser.feed((html_dir / f"{LEDGER_PAGE}.html").read_text(encoding="utf8"))
    return parser


def _build(book: Path, *extra):
    env = {k: v for k, v in os.environ.items() if k != "DLDNA_BOOK_KERNEL"}
    env.update(DLDNA_PROFILE="quick", DLDNA_PROGRESS="0")
    done = subprocess.run([str(JUPYTER_BOOK), "build", str(book), "--warningiserror", *extra],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return ledger(book / "_build" / "html")


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    if not JUPYTER_BOOK.is_file():
        pytest.skip(f"no {JUPYTER_BOOK} (the book's build tools: pip install -e '.[book]')")
    book = tmp_path_factory.mktemp("tiny-book")
    (book / "_config.yml").write_text(textwrap.dedent(f"""\
        title: tiny
        only_build_toc_files: true
        execute: {{execute_notebooks: cache, timeout: 300}}
        sphinx:
          local_extensions: {{dldna_book: {ROOT / '_ext'}}}
          config: {{suppress_warnings: ["mystnb.unknown_mime_type"]}}
        """))
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: a\n  - file: b\n"
                                   f"  - file: {LEDGER_PAGE}\n")
    (book / "intro.md").write_text("# Intro\n\nA tiny book.\n")
    (book / "a.md").write_text(PAGE_A)
    (book / "b.md").write_text(PAGE_B)
    shutil.copy(ROOT / f"{LEDGER_PAGE}.md", book / f"{LEDGER_PAGE}.md")
    return book


def test_tiny_book_ledger_has_one_row_per_executed_claim(tiny_book):
    first = _build(tiny_book)
    statements = [r["cells"][1] for r in first.rows]
    assert statements == ["a hidden claim", "claim 0 of a loop", "claim 1 of a loop", "claim 2 of a loop",
                          "arithmetic holds"]
    assert all(r["cells"][-1] == "holds" for r in first.rows)
    assert "5 claims on 2 pages" in first.summary and "profile quick" in first.summary
    assert [r["cells"][0] for r in first.rows] == ["Page A"] + ["Page A: Section two"] * 3 + ["Page B: Only section"]
    assert first.rows[1]["links"][-1] == "a.html#section-two"
    assert first.rows[4]["cells"][3] == "1 + 1 == 2" or sys.version_info < (3, 11)
    stamp = first.rows[0]["cells"][2]

    (tiny_book / "b.md").write_text(PAGE_B + EXTRA_B)          # b re-executed; a neither re-read nor re-executed
    second = _build(tiny_book)
    assert [r["cells"][1] for r in second.rows] == statements + ["a claim added later"]
    assert second.rows[0]["cells"][2] == stamp

    third = _build(tiny_book, "--all")                         # every page re-read, executed from jupyter-cache
    assert [r["cells"][1] for r in third.rows] == statements + ["a claim added later"]
    assert third.rows[0]["cells"][2] == stamp, "page A was executed again instead of coming from the cache"


# --- the real book ---------------------------------------------------------------------------------------------

def _is_claim(node) -> bool:
    return isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "claim"
                                           or getattr(node.func, "attr", None) == "claim")


def _profile_test(test):
    """``"cpu"`` for a test ``dl.profile() == "cpu"`` (or ``profile() == ...``), else None."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq) \
            and isinstance(test.left, ast.Call) and ast.unparse(test.left.func).split(".")[-1] == "profile" \
            and isinstance(test.comparators[0], ast.Constant):
        return test.comparators[0].value
    return None


def chapter_claims(md: Path):
    """Per ``claim(...)`` call of a chapter: its statement (None when not a constant) and the ``if`` tests above it."""
    out = []
    for cell in jupytext.read(md).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!"))))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in filter(_is_claim, ast.walk(tree)):
            sentence = node.args[1] if len(node.args) > 1 else None
            tests, child = [], node
            while child in parents:
                parent = parents[child]
                if isinstance(parent, ast.If):
                    tests.append((parent.test, child in parent.body))
                assert not isinstance(parent, (ast.For, ast.While, ast.comprehension)), \
                    f"{md.name}: a claim in a loop, the ledger's count cannot be checked: {ast.unparse(node)[:80]}"
                child = parent
            out.append((sentence.value if isinstance(sentence, ast.Constant) else None, tests))
    return out


def expected_rows(md: Path, profile: str, statements: list[str]) -> int:
    """How many claims of ``md`` the build executed: every one, except those under ``if profile() == ...`` of
    another profile; one under any other ``if`` (a GPU-only claim) counts when its statement is in the ledger."""
    n = 0
    for sentence, tests in chapter_claims(md):
        profiles = [(_profile_test(t), in_body) for t, in_body in tests]
        if any(p is not None and (p == profile) != in_body for p, in_body in profiles):
            continue
        if any(p is None for p, _ in profiles) and sentence not in statements:
            continue
        n += 1
    return n


@pytest.mark.built_book
def test_real_book_ledger_lists_every_claim_of_the_chapters():
    html = os.environ.get("DLDNA_HTML_DIR")
    if not html:
        pytest.skip("DLDNA_HTML_DIR is not set (make test sets it to the quick book it built)")
    parsed = ledger(Path(html))
    rows, summary = parsed.rows, parsed.summary
    profile = summary.rsplit("profile ", 1)[-1].strip(" .")
    assert rows, f"{html}/{LEDGER_PAGE}.html has no ledger rows"
    by_page = {}
    for row in rows:
        page = row["links"][0].split("#")[0].removesuffix(".html")
        by_page.setdefault(page, []).append(row["cells"][1])
    chapters = sorted((ROOT / "book").glob("*.md"))
    for md in chapters:
        page = md.relative_to(ROOT).with_suffix("").as_posix()
        found = by_page.get(page, [])
        assert len(found) == expected_rows(md, profile, found), f"{page}: {len(found)} ledger rows"
    assert set(by_page) <= {md.relative_to(ROOT).with_suffix("").as_posix() for md in chapters}
    assert sum(map(len, by_page.values())) == len(rows)

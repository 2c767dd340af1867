"""``dldna_lite.notebook.glue``: myst-nb in the book build, a printed ``name = value`` in a student's kernel."""
import sys
import types

import pytest
from IPython.display import Markdown

from dldna_lite import notebook


@pytest.fixture
def fake_myst_nb(monkeypatch):
    calls = []
    module = types.ModuleType("myst_nb")
    module.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", module)
    return calls


def test_student_kernel_prints_the_value_and_needs_no_myst_nb(monkeypatch, capsys):
    monkeypatch.delenv("DLDNA_STATIC_WIDGETS", raising=False)
    monkeypatch.setitem(sys.modules, "myst_nb", None)   # import myst_nb now raises ImportError
    notebook.glue("acc", 87.31234, display=False)
    notebook.glue("epochs", 3)
    notebook.glue("verdict", Markdown("tuning mattered more"))
    assert capsys.readouterr().out.splitlines() == ["acc = 87.31", "epochs = 3", "verdict = tuning mattered more"]


def test_book_build_hands_the_value_to_myst_nb_and_prints_nothing(monkeypatch, capsys, fake_myst_nb):
    monkeypatch.setenv("DLDNA_STATIC_WIDGETS", "1")
    notebook.glue("acc", 0.5, display=False)
    assert fake_myst_nb == [("acc", 0.5, False)]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("display", [False, True])
def test_book_build_without_myst_nb_emits_what_myst_nb_emits(monkeypatch, display):
    """make test executes the quick book in the student kernel, which has no myst-nb: glue must then display the
    very output that myst_nb.glue would, or the page's {glue} roles find nothing."""
    import IPython.display
    import myst_nb

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setenv("DLDNA_STATIC_WIDGETS", "1")
    values = [0.5, 3, Markdown("**bold**")]
    for value in values:
        myst_nb.glue("x", value, display=display)
    expected, shown[:] = list(shown), []
    monkeypatch.setitem(sys.modules, "myst_nb", None)
    for value in values:
        notebook.glue("x", value, display=display)
    assert shown == expected and len(shown) == 3


@pytest.mark.parametrize("bad", ["", None, 3])
def test_glue_rejects_a_bad_name(bad):
    with pytest.raises(ValueError, match="non-empty name"):
        notebook.glue(bad, 1.0)


def test_glue_text_formats():
    assert notebook.glue_text(True) == "True"
    assert notebook.glue_text(12345678) == "12345678"
    assert notebook.glue_text(0.000123456) == "0.0001235"
    assert notebook.glue_text("diverged at step 4") == "diverged at step 4"


def test_the_book_extension_marks_its_kernels_as_a_book_build(monkeypatch):
    """Importing _ext/dldna_book.py (as Sphinx does) sets the variables every executing kernel inherits."""
    import importlib.util
    import os
    from pathlib import Path

    environ = {k: v for k, v in os.environ.items() if k not in ("DLDNA_STATIC_WIDGETS", "DLDNA_PROGRESS")}
    monkeypatch.setattr(os, "environ", environ)   # a copy: nothing leaks into later tests
    path = Path(__file__).resolve().parents[1] / "_ext" / "dldna_book.py"
    spec = importlib.util.spec_from_file_location("dldna_book_under_test", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert notebook.in_book_build()
    assert environ["DLDNA_STATIC_WIDGETS"] == "1" and environ["DLDNA_PROGRESS"] == "0"


def _documented(x):
    """Say what it does.

    Over two lines."""
    if x:
        return x + 1
    return 0


def test_show_source_prints_the_code_with_or_without_its_docstring(capsys):
    from dldna_lite.notebook import show_source, source_text
    full = source_text(_documented)
    assert '"""Say what it does.' in full and "return x + 1" in full
    body = source_text(_documented, docstring=False)
    assert "Say what it does" not in body and "Over two lines" not in body
    assert body.splitlines()[0] == "def _documented(x):" and body.splitlines()[1] == "    if x:"
    show_source(_documented, docstring=False)
    assert capsys.readouterr().out == body.rstrip("\n") + "\n"
    assert source_text(test_show_source_prints_the_code_with_or_without_its_docstring, docstring=False) \
        .startswith("def test_show_source")          # no docstring: unchanged


def test_claim_names_the_sentence_and_the_numbers():
    from dldna_lite.notebook import ClaimError, claim
    claim(True, "it converges")
    with pytest.raises(ClaimError, match=r"'every run reaches 2/lr'.*plateau=1.234") as info:
        claim(False, "every run reaches 2/lr", plateau=1.23449)
    assert isinstance(info.value, AssertionError)


def test_glue_hands_plain_numbers_to_myst_nb(monkeypatch):
    """A numpy or torch scalar reaches myst-nb as a Python number: its text/plain would be 'np.float64(2.26)',
    which a {glue:text}`name:.2f` role cannot format (the build then fails)."""
    import sys
    import types

    import numpy as np
    import torch

    from dldna_lite import notebook
    seen = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=False: seen.__setitem__(name, value)
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    monkeypatch.setenv("DLDNA_STATIC_WIDGETS", "1")
    notebook.glue("a", np.float64(2.5))
    notebook.glue("b", torch.tensor(3))
    notebook.glue("c", np.arange(3))
    assert type(seen["a"]) is float and type(seen["b"]) is int and isinstance(seen["c"], np.ndarray)


def test_plural_reads_one_and_many():
    from dldna_lite import plural

    assert plural(1, "epoch") == "1 epoch"
    assert plural(2, "epoch") == "2 epochs"
    assert plural(0, "step") == "0 steps"
    assert plural(2500, "step") == "2,500 steps"

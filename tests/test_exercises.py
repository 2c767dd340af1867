"""The exercise checkers: shared machinery, the solutions page, progress, and the student notebooks solved.

The solutions are taken from the one place they live, the gated solution blocks of
``book/09-exercise-solutions.md`` (parsed by :func:`solution_code` below); the student notebooks in
``exercises/`` are also executed with those solutions filled in, and every check must print ✓. The checkers of each
notebook are tried with wrong answers in ``tests/test_exercises_<module>.py`` (one file per module of
``dldna_lite/exercises/``), which import the helpers of this file.
"""
from __future__ import annotations

import copy
import inspect
import random
import re
from functools import lru_cache
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
import torch

from dldna_lite import exercises as ex
from dldna_lite.exercises import check

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book/09-exercise-solutions.md"
NOTEBOOKS = sorted((ROOT / "exercises").glob("*.md"))
STUDENT_TAG = "raises-exception"


def solution_code(page) -> dict[str, str]:
    """The solution of each exercise on the solutions page, ``{label: code}``.

    A solution is the code cells between ``{solution-start} <label>`` and ``{solution-end}`` (sphinx-exercise's
    gated directives), check calls (cells starting with ``check.``) left out. This is the only copy of the solutions.
    """
    out: dict[str, list[str]] = {}
    label = None
    for cell in jupytext.read(page).cells:
        if cell.cell_type == "markdown":
            for m in re.finditer(r"\{solution-(start|end)\}[ \t]*(\S*)", cell.source):
                label = m.group(2) if m.group(1) == "start" else None
        elif label is not None and not cell.source.lstrip().startswith("check."):
            out.setdefault(label, []).append(cell.source)
    return {k: "\n\n".join(v) for k, v in out.items()}


def fill_in(notebook, solutions: dict[str, str]):
    """A copy of a student ``notebook`` (nbformat) whose exercise cells hold the solutions.

    An exercise cell is a code cell tagged with an exercise label (and ``raises-exception``); its source is
    replaced by ``solutions[label]`` and the ``raises-exception`` tag dropped. ``ValueError`` if a label has no
    solution.
    """
    nb = copy.deepcopy(notebook)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        labels = [t for t in tags if t.startswith("ex-")]
        if cell.cell_type != "code" or not labels:
            continue
        missing = [t for t in labels if t not in solutions]
        if missing:
            raise ValueError(f"no solution for {missing}; the solutions page has {', '.join(sorted(solutions))}")
        cell.source = "\n\n".join(solutions[t] for t in labels)
        cell.metadata["tags"] = [t for t in tags if t != STUDENT_TAG and t not in labels]
    return nb


SOLUTIONS = solution_code(PAGE)


@lru_cache(maxsize=None)
def _page_imports() -> dict:
    import matplotlib

    matplotlib.use("Agg")
    cells = [c.source for c in jupytext.read(PAGE).cells if c.cell_type == "code"]
    ns: dict = {}
    exec(next(c for c in cells if "from dldna_lite.exercises import check" in c), ns)
    return ns


def solutions_namespace(*labels: str) -> dict:
    """A namespace holding the page's imports and the solution code of ``labels`` (run in a seeded, isolated RNG)."""
    import matplotlib.pyplot as plt

    ns = dict(_page_imports())
    with ex._isolated_rng(0):
        for label in labels:
            exec(SOLUTIONS[label], ns)
    plt.close("all")
    return ns


def stub(*args, **kwargs):
    raise NotImplementedError


def expect_fail(result, *fragments):
    assert not result, f"should fail: {result}"
    for f in fragments:
        assert f in result.message, f"{f!r} not in {result.message!r}"


# --------------------------------------------------------------------------------------------- the solution page
def test_every_exercise_has_one_solution_and_one_student_cell():
    page_text = PAGE.read_text()
    labels = set(re.findall(r"\{exercise-start\}\s*\n:label: (\S+)", page_text))
    assert labels == set(SOLUTIONS), f"exercises without solution: {labels ^ set(SOLUTIONS)}"
    student = {}
    for md in NOTEBOOKS:
        for cell in jupytext.read(md).cells:
            tags = cell.metadata.get("tags", [])
            for t in (t for t in tags if t.startswith("ex-")):
                assert t not in student, f"{t} has two student cells"
                assert "raises-exception" in tags and "YOUR CODE HERE" in cell.source
                assert "raise NotImplementedError" in cell.source
                student[t] = md.name
    assert set(student) == labels, f"mismatch page/notebooks: {set(student) ^ labels}"
    for label, code in SOLUTIONS.items():
        assert "NotImplementedError" not in code and "YOUR CODE HERE" not in code, label


def test_solutions_live_only_on_the_page():
    """No solution code is copied into a student notebook."""
    for md in NOTEBOOKS:
        text = md.read_text()
        for label, code in SOLUTIONS.items():
            body = [line for line in code.splitlines()  # signatures are given to the student; bodies are not
                    if len(line.strip()) > 40 and not line.lstrip().startswith(("#", "def "))]
            assert not any(line in text for line in body), f"{md.name} contains solution code of {label}"


def test_every_checker_belongs_to_a_notebook_in_its_order():
    """``check.progress(notebook)`` lists a notebook's checkers in the order its check cells call them."""
    for md in NOTEBOOKS:
        calls = re.findall(r"^check\.(\w+)\(", md.read_text(), re.M)
        progress = [c for c in calls if c == "progress"]
        module = re.search(r'^check\.progress\("(\w+)"\)', md.read_text(), re.M).group(1)
        assert len(progress) == 1 and calls[-1] == "progress", md.name
        assert [c for c in calls if c != "progress"] == ex.NOTEBOOKS[module], md.name
    assert sorted(c for names in ex.NOTEBOOKS.values() for c in names) == sorted(ex.CHECKERS)


# --------------------------------------------------------------------------------------------- machinery
def test_checker_prints_one_verdict_and_never_raises(capsys):
    r = check.adam_step(stub)
    out = capsys.readouterr().out
    assert out.startswith("✗ adam_step: not done yet") and out.count("\n") == 1
    assert not r and "YOUR CODE HERE" in r.message
    for bad in ("a string", 3, None, [1, 2]):
        assert not check.adam_step(bad)
    assert "ZeroDivisionError" in check.gd_quadratic(lambda *a: 1 / 0, lambda A, x0: 0.3).message
    # answers of the wrong kind (and the wrong number of them) everywhere: one ✗ line each, never an exception
    for name, run in ex.CHECKERS.items():
        arity = len(inspect.signature(run.__wrapped__).parameters)
        for junk in (object(), torch.ones(2, 2), float("nan"), "text", None, lambda *a: None, lambda *a: torch.ones(2)):
            assert not run(*[junk] * arity), (name, junk)
        assert not run()
    with pytest.raises(AttributeError, match="available: adam_step"):
        check.no_such_check
    assert "adam_step" in dir(check) and "progress" in dir(check)


def test_an_unforeseen_error_inside_a_checker_is_still_one_line():
    def broken():
        raise KeyError("internal")

    result = ex._verdict("broken", broken, (), {})
    assert not result and "could not use your answer" in result.message and "KeyError" in result.message


def test_values_not_given_yet():
    expect_fail(check.sgd_by_hand(None, None), "no answer yet", "w1")
    expect_fail(check.init_experiment(None, None), "no answer yet")
    expect_fail(check.grokking_weight_decay(None, None, None), "no answer yet")
    expect_fail(check.batchnorm_init(None, None), "expected a function")
    expect_fail(check.sgd_by_hand(float("nan"), 1.0), "not a finite number")
    expect_fail(check.sgd_by_hand(torch.ones(3), 1.0), "should be a number", "shape (3,)")
    expect_fail(check.sgd_by_hand(True, 1.0), "should be a number")


def test_the_checkers_own_reference_code_is_not_an_answer():
    expect_fail(check.lion_step(ex.optimizers.lion_reference, 1.0), "checker's own reference")
    expect_fail(check.double_descent(ex.modern_ml.double_descent_reference, 200), "checker's own reference")
    expect_fail(check.gd_quadratic(ex.optimizers.gd_reference, lambda A, x0: 0.3), "checker's own reference")
    from functools import partial

    expect_fail(check.lion_step(partial(ex.optimizers.lion_reference), 1.0), "checker's own reference")
    expect_fail(check.power_iteration(partial(lambda f, m, d, lf, iters: f(m, d, lf),
                                              ex.landscapes.top_eigenvalue_reference)), "checker's own reference")


def test_checks_leave_the_students_random_streams_alone():
    def reseeding(W):  # student code that reseeds everything, as dl.seed_everything does
        torch.manual_seed(123), random.seed(123), np.random.seed(123)
        with torch.no_grad():
            return W.normal_(0, (2 / W.shape[1]) ** 0.5)

    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = torch.rand(3), random.random(), np.random.rand()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    check.init_variance(reseeding, reseeding)
    got = torch.rand(3), random.random(), np.random.rand()
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


# --------------------------------------------------------------------------------------------- progress
def test_progress_reports_done_failing_and_untouched(capsys):
    ns = solutions_namespace("ex-sgd-by-hand", "ex-adam-step")
    check.sgd_by_hand(ns["w1"], ns["w2"])
    check.adam_step(stub)
    check.lion_step(ns["adam_step"], 1.0)  # a wrong answer
    ex._VERDICTS.pop("gd_quadratic", None), ex._VERDICTS.pop("rosenbrock_path", None)
    capsys.readouterr()
    result = check.progress("optimizers")
    out = capsys.readouterr().out
    assert result.status == {"sgd_by_hand": "done", "gd_quadratic": "untouched", "adam_step": "untouched",
                             "lion_step": "failing", "rosenbrock_path": "untouched"}
    assert "1 of 5 done, 1 failing, 3 untouched" in out
    assert "  ✓ sgd_by_hand" in out and "  ✗ lion_step: " in out and "  · gd_quadratic: not checked yet" in out
    assert "  · adam_step: not done yet" in out and out.count("✓") == 1 and out.count("✗") == 1
    with pytest.raises(ValueError, match="choose one of initialization, optimizers"):
        check.progress("01-initialization")


# --------------------------------------------------------------------------------------------- the notebooks, solved
def _outputs(cells) -> str:
    return "\n".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("md", NOTEBOOKS, ids=lambda p: p.name)
def test_student_notebook_passes_every_check_with_the_solutions_filled_in(md):
    from nbclient import NotebookClient

    nb = fill_in(nbformat.read(md.with_suffix(".ipynb"), as_version=4), SOLUTIONS)
    checks = [c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith("check.")]
    progress = [c for c in checks if c.source.lstrip().startswith("check.progress(")]
    checks = [c for c in checks if c not in progress]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = _outputs(checks)
    assert "✗" not in _outputs(nb.cells), _outputs(nb.cells)
    assert text.count("✓") == len(checks) >= 2, text
    assert f"{len(checks)} of {len(checks)} done, 0 failing, 0 untouched" in _outputs(progress), _outputs(progress)

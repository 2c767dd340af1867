"""What a lecturer uses (issue 29): ``check.progress``'s report (JSON, code hashes, atomic save) and
``python -m dldna_lite.exercises grade <folder>`` over a folder of submitted notebooks: solved, blank and broken
copies of the fastest student notebook, ``exercises/03-loss-landscapes.ipynb`` (two exercises; ≈ 20 s per kernel
on a loaded 2-core machine, two kernels at a time here), plus notebooks that cannot be graded."""
from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import io
import json
import linecache
import re
import subprocess
import sys
import textwrap
from datetime import datetime

import nbformat
import pytest
from test_exercises import NOTEBOOKS as STUDENT_MD, ROOT, SOLUTIONS, fill_in, solutions_namespace, stub

import dldna_lite
from dldna_lite import exercises as ex
from dldna_lite.exercises import check, grading
from dldna_lite.exercises.__main__ import main

STUDENT = ROOT / "exercises/03-loss-landscapes.ipynb"
TYPO = "direction.append(D * scale.view(-1, *[1] * (W.dim() - 1))"  # a parenthesis short: a SyntaxError


def _answer(nb, label: str, code: str):
    """What a student hands in: the task cell ``label`` holds ``code``, its tags left as they are."""
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if label in c.metadata.get("tags", []))
    cell.source = code
    return nb


def _run_main(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(list(argv))
    return rc, out.getvalue()


def _table(text: str) -> dict[str, list[str]]:
    """``{notebook: cells}`` of the printed tables (cells split at runs of two or more spaces)."""
    return {cells[0]: cells[1:] for line in text.splitlines()
            if (cells := re.split(r"\s{2,}", line.strip()))[0].endswith(".ipynb")}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The grade command run once over a folder of six submissions; ``(exit status, printed table, JSON rows)``."""
    folder = tmp_path_factory.mktemp("submissions")
    blank = nbformat.read(STUDENT, as_version=4)
    broken = _answer(blank, "ex-filter-direction", SOLUTIONS["ex-filter-direction"].replace(
        "direction.append(D * scale.view(-1, *[1] * (W.dim() - 1)))", TYPO))
    broken = _answer(broken, "ex-power-iteration", "def top_eigenvalue(model, data, loss_fn=None, iters=100):\n"
                                                   "    return 1 / 0\n")
    (folder / "group-b").mkdir()
    nbformat.write(fill_in(blank, SOLUTIONS), folder / "solved.ipynb")
    nbformat.write(blank, folder / "group-b" / "blank.ipynb")
    nbformat.write(broken, folder / "broken.ipynb")
    (folder / "not-json.ipynb").write_text("{ this is not a notebook")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), folder / "other.ipynb")
    (folder / ".ipynb_checkpoints").mkdir()
    nbformat.write(blank, folder / ".ipynb_checkpoints" / "solved-checkpoint.ipynb")  # Jupyter's copy: ignored
    rc, text = _run_main("grade", str(folder), "--jobs", "2", "--timeout", "240", "--json", str(folder / "rows.json"))
    return rc, text, json.loads((folder / "rows.json").read_text())


# --------------------------------------------------------------------------------------------- grading a folder
def test_grade_prints_one_row_per_notebook(graded):
    rc, text, _ = graded
    assert rc == 0, text
    rows = _table(text)
    assert set(rows) == {"solved.ipynb", "group-b/blank.ipynb", "broken.ipynb", "not-json.ipynb", "other.ipynb"}
    assert text.startswith("landscapes (exercises/03-loss-landscapes.ipynb): 3 notebook(s)\n"
                           "notebook             filter_direction  power_iteration  total\n"), text
    assert rows["solved.ipynb"] == ["pass", "pass", "2/2"], text
    assert rows["group-b/blank.ipynb"] == ["not attempted", "not attempted", "0/2"], text
    assert rows["broken.ipynb"] == ["fail", "fail", "0/2"], text
    assert rows["not-json.ipynb"][0].startswith("error: not a readable notebook (NotJSONError"), text
    assert rows["other.ipynb"] == ["error: no check.<exercise>(...) cell: not an exercise notebook"], text
    assert text.index("other.ipynb") > text.index("not graded (unreadable, or not an exercise notebook)")


def test_grade_notes_say_which_cells_raised(graded):
    notes = graded[1].split("\nnotes:\n")[1].split("\n\n")[0].splitlines()
    assert len(notes) == 2, graded[1]
    assert notes[0].startswith("  broken.ipynb: ex-filter-direction: SyntaxError: "), notes  # the task cell, by its tag
    assert notes[1].startswith("  broken.ipynb: check.filter_direction: NameError: "), notes  # so no check ran: fail
    assert ".py, line" not in notes[0] and "(line " in notes[0], notes  # the kernel's temporary file name left out
    by_path = {r["path"]: r for r in graded[2]}
    assert "ZeroDivisionError" in by_path["broken.ipynb"]["report"]["exercises"]["power_iteration"]["message"]
    assert by_path["group-b/blank.ipynb"]["notes"] == []  # NotImplementedError of untouched tasks is no note


def test_grade_hashes_are_those_of_the_submitted_code(graded):
    """A lecturer can compare: the hash in the report is the SHA-256 of the function's code in the submission."""
    solved = fill_in(nbformat.read(STUDENT, as_version=4), SOLUTIONS)
    report = {r["path"]: r for r in graded[2]}["solved.ipynb"]["report"]
    for checker, fn in (("filter_direction", "filter_normalized_direction"), ("power_iteration", "top_eigenvalue")):
        cell = next(c.source for c in solved.cells if f"def {fn}(" in c.source)
        node = next(n for n in ast.parse(cell).body if isinstance(n, ast.FunctionDef) and n.name == fn)
        code = ast.get_source_segment(cell, node).strip() + "\n"
        want = hashlib.sha256(f"# --- {fn}\n{code}".encode()).hexdigest()[:16]
        assert report["exercises"][checker]["code_sha256"] == want, checker
    assert report["passed"] == ["filter_direction", "power_iteration"] and report["dldna_lite"] == "0.1.0"


def test_collect_reads_the_report_cell_and_the_errors():
    """On an executed notebook made by hand: the untouched task's NotImplementedError is no note, a check cell that
    raised is a fail, and a report cell that failed or printed nothing makes the row an error."""
    def cell(source, tags=(), error=None, text=None):
        c = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})
        c.outputs = ([nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=[])] if error else
                     [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else [])
        return c

    report = {"exercises": {"filter_direction": {"status": "not attempted"}, "power_iteration": {"status": "pass"}}}
    syntax = ("SyntaxError", "invalid syntax (3.py, line 1)")
    cells = [cell("def f(:", ["raises-exception", "ex-filter-direction"], syntax),
             cell("check.filter_direction(f)", error=("NameError", "name 'f' is not defined")),
             cell("w = None\nraise NotImplementedError", ["ex-power-iteration"], ("NotImplementedError", "")),
             cell("1 / 0", error=("ZeroDivisionError", "division by zero")),
             cell("check.power_iteration(g)", text="✓ power_iteration: ...\n"),
             cell("x = 1"), cell("x = 2"),
             cell(grading.REPORT_CELL, text=f"noise\n{grading.MARKER}{json.dumps(report)}\n")]
    nb = nbformat.v4.new_notebook(cells=cells)
    got, status, notes = grading._collect(nb, "landscapes")
    assert got == report and status == {"filter_direction": "fail", "power_iteration": "pass"}
    assert notes == ["ex-filter-direction: SyntaxError: invalid syntax (line 1)",
                     "check.filter_direction: NameError: name 'f' is not defined", "(+1 more)"]
    assert grading._errors(nb)[2] == ("cell 4", "ZeroDivisionError: division by zero")
    nb.cells[-1] = cell(grading.REPORT_CELL, error=("ImportError", "no dldna_lite"))
    with pytest.raises(grading._Broken, match=r"the report cell failed \(ImportError: no dldna_lite\)"):
        grading._collect(nb, "landscapes")
    nb.cells[-1] = cell(grading.REPORT_CELL, text=f"{grading.MARKER}{json.dumps(report)}\n")
    with pytest.raises(grading._Broken, match="printed no report"):
        grading._collect(nb, "optimizers")  # a report of another notebook's exercises


def test_a_notebook_that_hangs_or_kills_its_kernel_is_one_error_row(tmp_path):
    cells = {"hangs": "import time\ntime.sleep(600)", "dies": "import os\nos._exit(3)"}
    for name, code in cells.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code),
                                             nbformat.v4.new_code_cell('check.progress("landscapes")')])
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    rows = {r.path: r for r in grading.grade(tmp_path, timeout=8, jobs=2)}
    assert rows["hangs.ipynb"].error == "timed out after 8 s", rows
    assert rows["dies.ipynb"].error.startswith("DeadKernelError"), rows
    assert "hangs.ipynb  error: timed out after 8 s" in grading.format_table(list(rows.values()))


def test_command_line(tmp_path):
    (tmp_path / "not-json.ipynb").write_text("[]")
    run = subprocess.run([sys.executable, "-m", "dldna_lite.exercises", "grade", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "not-json.ipynb  error: not a readable notebook" in run.stdout, run
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run_main("grade", str(empty))[0] == 1
    assert _run_main("grade", str(tmp_path / "missing"))[0] == 2
    for bad in (["grade", str(tmp_path), "--jobs", "0"], ["grade", str(tmp_path), "--timeout", "-1"], ["mark"]):
        with pytest.raises(SystemExit) as exit_, contextlib.redirect_stderr(io.StringIO()):
            main(bad)
        assert exit_.value.code == 2
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        grading.grade(tmp_path, jobs=0)
    with pytest.raises(ValueError, match="no Jupyter kernel named 'nope'; installed kernels: "):
        grading.grade(tmp_path, kernel="nope")


def test_grading_without_nbclient_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbclient", None)
    with pytest.raises(RuntimeError, match="pip install nbclient"):
        grading.grade(tmp_path)


def test_notebook_files_are_the_student_notebooks():
    for md in STUDENT_MD:
        module = re.search(r'^check\.progress\("(\w+)"\)', md.read_text(), re.M).group(1)
        assert grading.NOTEBOOK_FILES[module] == md.with_suffix(".ipynb").name
    assert set(grading.NOTEBOOK_FILES) == set(ex.NOTEBOOKS)


# --------------------------------------------------------------------------------------------- check.progress
def _sha(*parts: tuple[str, str]) -> str:
    return hashlib.sha256("".join(f"# --- {n}\n{s}" for n, s in parts).encode()).hexdigest()[:16]


def test_progress_report_json(capsys, tmp_path):
    ns = solutions_namespace("ex-sgd-by-hand")

    def adam_step(param, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        raise NotImplementedError

    def lion_step(*args, **kwargs):  # a wrong answer
        return None

    for name in ex.NOTEBOOKS["optimizers"]:
        ex._VERDICTS.pop(name, None)
    check.sgd_by_hand(ns["w1"], ns["w2"]), check.adam_step(adam_step), check.lion_step(lion_step, 1.0)
    capsys.readouterr()
    result = check.progress("optimizers", save=tmp_path / "report.json")
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == result.to_dict() and json.loads(result.to_json()) == report
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # atomic_write leaves no temporary behind
    assert report["notebook"] == "optimizers" and report["file"] == "02-optimizers.ipynb"
    assert report["passed"] == ["sgd_by_hand"] and report["failed"] == ["lion_step"]
    assert report["not_attempted"] == ["gd_quadratic", "adam_step", "rosenbrock_path"]
    assert report["dldna_lite"] == dldna_lite.__version__ and datetime.fromisoformat(report["time"]).tzinfo
    lion = report["exercises"]["lion_step"]
    assert lion["status"] == "fail" and lion["message"] == ex._VERDICTS["lion_step"].message
    lion_code = textwrap.dedent('''\
        def lion_step(*args, **kwargs):  # a wrong answer
            return None
        ''')
    assert lion["code_sha256"] == _sha(("test_progress_report_json.<locals>.lion_step", lion_code))
    assert report["exercises"]["sgd_by_hand"]["code_sha256"] is None  # numbers: no code
    assert report["exercises"]["gd_quadratic"] == {"status": "not attempted", "message": None, "code_sha256": None}
    assert f"  ✗ lion_step: {lion['message'][:40]}" in out and f"[code {lion['code_sha256']}]\n" in out
    assert f"  ✓ sgd_by_hand\n" in out and f"report written to {tmp_path}" in out
    assert f"(dldna-lite {dldna_lite.__version__}, {report['time']}; " in out


def test_progress_save_is_atomic(tmp_path, monkeypatch, capsys):
    """A save that fails half-way (here: the final rename) leaves the previous report whole, and no temporary."""
    path = tmp_path / "report.json"
    path.write_text('{"previous": true}')

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        check.progress("landscapes", save=path)
    assert path.read_text() == '{"previous": true}' and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_progress_counts_a_stub_as_untouched_wherever_the_checker_says_so(capsys):
    """filter_direction says where ("on a Linear MLP, not done yet: ..."): still untouched, not failing."""
    check.filter_direction(stub), check.power_iteration(lambda *a, **k: 1 / 0)
    assert check.progress("landscapes").status == {"filter_direction": "untouched", "power_iteration": "failing"}


def test_fingerprint_follows_the_code_not_the_values():
    def f(x):
        return x + 1

    same = grading.fingerprint((f,), {})
    assert same == grading.fingerprint((), {"fn": f}) and same["code_of"] == [f.__qualname__]

    def g(x):
        return x + 2

    assert grading.fingerprint((g,), {})["code_sha256"] != same["code_sha256"]
    import functools

    assert grading.fingerprint((functools.partial(f, 1),), {}) == same
    assert grading.fingerprint((1.5, [1, 2], None, "text"), {}) == {"code_sha256": None, "code_of": []}
    import torch

    assert grading.fingerprint((torch.nn.Linear(2, 2), torch.ones(3), torch.nn.init.kaiming_normal_), {}) == \
        {"code_sha256": None, "code_of": []}  # library code depends on the installed version: left out

    class Weird:
        @property
        def __module__(self):
            raise RuntimeError("no")

    assert grading.fingerprint((Weird(),), {})["code_sha256"] is None


def test_fingerprint_of_a_class_defined_in_a_notebook():
    """In a kernel ``__main__`` has no file, so ``inspect.getsource(cls)`` fails (Python < 3.13): the methods count."""
    source = "import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return 2 * x\n"
    filename = "<ipython-input-fake-1>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # what IPython does
    ns = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), ns)
    got = grading.fingerprint((ns["Net"](),), {})
    method = "def forward(self, x):\n    return 2 * x\n"
    assert got == {"code_sha256": _sha(("Net", f"class Net(Module)\n# forward\n{method}")), "code_of": ["Net"]}
    source2 = source.replace("2 * x", "3 * x")
    linecache.cache[filename] = (len(source2), None, source2.splitlines(True), filename)
    exec(compile(source2, filename, "exec"), ns)
    assert grading.fingerprint((ns["Net"],), {})["code_sha256"] != got["code_sha256"]


def test_format_table():
    rows = [grading.Row("a.ipynb", "landscapes", {"filter_direction": "pass", "power_iteration": "fail"},
                        ["check.power_iteration: NameError: x"]),
            grading.Row("long-name.ipynb", "landscapes", error="timed out after 3 s"),
            grading.Row("x.ipynb", None, error="not a readable notebook")]
    assert grading.format_table(rows) == textwrap.dedent("""\
        landscapes (exercises/03-loss-landscapes.ipynb): 2 notebook(s)
        notebook         filter_direction  power_iteration  total
        ---------------  ----------------  ---------------  -----
        a.ipynb          pass              fail             1/2
        long-name.ipynb  error: timed out after 3 s
        notes:
          a.ipynb: check.power_iteration: NameError: x

        not graded (unreadable, or not an exercise notebook): 1 notebook(s)
        notebook
        --------
        x.ipynb   error: not a readable notebook
        """)

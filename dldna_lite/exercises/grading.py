"""What a course needs from the exercise checkers, without a server.

* **The student's report.** Every check remembers a fingerprint of the answer it ran (:func:`fingerprint`: a SHA-256
  of the source code of the functions and classes handed in), and ``check.progress(notebook, save=...)`` writes, next
  to its printed summary, a small JSON report (:func:`report_dict`): the notebook, the exercises passed, failed and
  not attempted, when, with which package version, and the hash of each checked answer's code. A lecturer who
  grades the submitted notebook (below) gets the same hashes when the code is the same.
* **Grading a folder.** ``python -m dldna_lite.exercises grade <folder>`` (:func:`grade`, :func:`format_table`)
  executes each submitted ``.ipynb`` from the top in a fresh kernel (nbclient, the quick profile, a time limit per
  notebook, errors allowed so that one broken cell does not hide the other exercises), appends one cell that
  prints the kernel's verdicts as JSON, and prints one table per exercise notebook: pass / fail / not attempted per
  exercise, the total, and the cells that raised. A notebook that cannot be read or run (not JSON, timed out, the
  kernel died) is one row ``error: <reason>``; the others are graded all the same. The outputs stored in a
  submission are never read: everything is recomputed. Grading runs the students' code: do it in a container or a
  throw-away account.

nbclient (and a Jupyter kernel, ipykernel) are needed only to grade, not by the notebooks: they are imported when
grading starts, with a clear error when missing.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import os
import platform
import re
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import _VERDICTS, NOTEBOOKS

#: The student notebook (in ``exercises/``) of each checker module.
NOTEBOOK_FILES = {"initialization": "01-initialization.ipynb", "optimizers": "02-optimizers.ipynb",
                  "landscapes": "03-loss-landscapes.ipynb", "modern_ml": "04-modern-ml.ipynb"}
#: How a report and the grading table name the three states of :class:`~dldna_lite.exercises.Progress`.
WORDS = {"done": "pass", "failing": "fail", "untouched": "not attempted"}
#: The line prefix by which the appended report cell hands its JSON to the grader.
MARKER = "dldna-lite-grade-report: "
_LIBRARIES = {"torch", "numpy", "scipy", "dldna_lite", "matplotlib", "sklearn"}


# --------------------------------------------------------------------------------------------- fingerprints
def _normalized(source: str) -> str:
    return textwrap.dedent("\n".join(line.rstrip() for line in source.splitlines())).strip() + "\n"


def _function_source(fn) -> str:
    try:
        return _normalized(inspect.getsource(fn))
    except (OSError, TypeError):  # no source file (exec without linecache): the bytecode identifies it
        return f"<bytecode> {fn.__code__.co_code.hex()}\n"


def _class_source(cls) -> str:
    """The source of a class; in a notebook (``__main__`` has no file, Python < 3.13) that of its methods."""
    try:
        return _normalized(inspect.getsource(cls))
    except (OSError, TypeError):
        parts = [f"class {cls.__qualname__}({', '.join(b.__qualname__ for b in cls.__bases__)})\n"]
        for name, member in vars(cls).items():
            member = getattr(member, "__func__", getattr(member, "fget", member))  # static/class methods, properties
            if inspect.isfunction(member):
                parts.append(f"# {name}\n{_function_source(member)}")
        return "".join(parts)


def _sources(obj, depth: int = 0) -> list[tuple[str, str]]:
    """``(name, source)`` of the student's code in one argument of a check: a function or lambda, a class, the class
    of a model, a ``functools.partial``'s function and arguments. Values (numbers, tensors) have no code, and library
    code (torch, NumPy, the standard library, ...) is left out: its source depends on the installed version."""
    if depth > 3:
        return []
    if isinstance(obj, functools.partial):
        return [*_sources(obj.func, depth + 1), *(s for a in obj.args for s in _sources(a, depth + 1))]
    obj = getattr(obj, "__func__", obj) if inspect.ismethod(obj) else obj
    obj = type(obj) if isinstance(obj, torch.nn.Module) else obj
    root = (getattr(obj, "__module__", None) or "").split(".")[0]
    if root in _LIBRARIES or root in sys.stdlib_module_names:
        return []
    if inspect.isfunction(obj):
        return [(obj.__qualname__, _function_source(obj))]
    if inspect.isclass(obj):
        return [(obj.__qualname__, _class_source(obj))]
    return []


def fingerprint(args: tuple, kwargs: dict) -> dict:
    """``{"code_sha256": 16 hex digits or None, "code_of": [names]}`` of the answer handed to a check: the hash of the
    normalized source (trailing spaces and common indentation removed) of every function and class in it. ``None``
    when the answer holds no code (a number). Never raises: a fingerprint must not change a verdict."""
    try:
        sources = [s for a in (*args, *kwargs.values()) for s in _sources(a)]
    except Exception:  # noqa: BLE001 -- an object whose attributes raise: no fingerprint, the check still runs
        sources = []
    if not sources:
        return {"code_sha256": None, "code_of": []}
    text = "".join(f"# --- {name}\n{source}" for name, source in sources)
    return {"code_sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "code_of": [n for n, _ in sources]}


# --------------------------------------------------------------------------------------------- the student's report
def now() -> str:
    """The time of a report: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def report_dict(progress) -> dict:
    """The JSON report of a :class:`~dldna_lite.exercises.Progress`: ``notebook`` and its ``file``, ``time`` (UTC),
    the versions of ``dldna_lite``, Python and torch, the names ``passed``, ``failed`` and ``not_attempted``, and per
    exercise its ``status`` (pass / fail / not attempted), the checker's ``message`` and ``code_sha256``."""
    words = {name: WORDS[state] for name, state in progress.status.items()}
    exercises = {name: {"status": words[name],
                        "message": _VERDICTS[name].message[:300] if name in _VERDICTS else None,
                        "code_sha256": progress.codes.get(name)} for name in progress.status}
    return {"report": "dldna-lite exercise progress", "notebook": progress.notebook,
            "file": NOTEBOOK_FILES.get(progress.notebook), "time": progress.time, "dldna_lite": progress.version,
            "python": platform.python_version(), "torch": torch.__version__,
            **{key: [n for n, w in words.items() if w == word]
               for key, word in (("passed", "pass"), ("failed", "fail"), ("not_attempted", "not attempted"))},
            "exercises": exercises}


def to_json(report) -> str:
    return json.dumps(report, indent=1, ensure_ascii=False)


def save_json(path, report) -> Path:
    """Write ``report`` as JSON to ``path`` atomically (``distributed.atomic_write``)."""
    from ..distributed import atomic_write

    return atomic_write(path, lambda f: f.write((to_json(report) + "\n").encode()))


def report(notebook: str) -> dict:
    """The report of ``notebook`` in this kernel, printed nowhere (what the grader's appended cell prints)."""
    from . import _progress

    return _progress(notebook).to_dict()


# --------------------------------------------------------------------------------------------- grading a folder
REPORT_CELL = ("import json as _json\nfrom dldna_lite.exercises import grading as _grading\n"
               "print(_grading.MARKER + _json.dumps(_grading.report({notebook!r}), ensure_ascii=True))")


class _Broken(Exception):
    """A notebook that cannot be graded: its row is ``error: <message>``."""


@dataclass
class Row:
    """One graded notebook: its ``path`` (relative to the folder), the exercise ``notebook`` it is (``optimizers``,
    ...; ``None`` when unknown), per exercise pass / fail / not attempted, the cells that raised (``notes``), the
    kernel's ``report`` (:func:`report_dict`), or the ``error`` that kept it from being graded."""

    path: str
    notebook: str | None = None
    status: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report: dict | None = None
    error: str | None = None

    @property
    def total(self) -> str:
        return f"{sum(v == 'pass' for v in self.status.values())}/{len(self.status)}"


def _jupyter(kernel: str):
    """nbclient and nbformat, and a check that ``kernel`` exists: a clear error before any notebook is run."""
    try:
        import nbclient
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError as err:
        raise RuntimeError(f"grading runs the notebooks with nbclient ({err.name} is missing): "
                           "pip install nbclient ipykernel") from None
    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        names = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none (pip install ipykernel)"
        raise ValueError(f"no Jupyter kernel named {kernel!r}; installed kernels: {names}") from None
    return nbclient, nbformat


def notebooks_in(folder) -> list[Path]:
    """The ``.ipynb`` files under ``folder`` (subfolders too; Jupyter's ``.ipynb_checkpoints`` left out), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*.ipynb")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1]))


def exercise_notebook(nb) -> str | None:
    """Which exercise notebook ``nb`` is: the one its ``check.progress("...")`` names, else the one most of its
    ``check.<name>(...)`` calls belong to; ``None`` if neither."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    named = re.search(r"check\.progress\(\s*['\"](\w+)['\"]", code)
    if named and named.group(1) in NOTEBOOKS:
        return named.group(1)
    module = {name: nb_name for nb_name, names in NOTEBOOKS.items() for name in names}
    votes = Counter(module[c] for c in re.findall(r"check\.(\w+)\(", code) if c in module)
    return votes.most_common(1)[0][0] if votes else None


def _read(path: Path, nbformat):
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # noqa: BLE001 -- not JSON, not a notebook, unreadable: the row says which
        raise _Broken(f"not a readable notebook ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None


async def _execute(nb, path: Path, *, timeout: float, kernel: str, env: dict, nbclient) -> None:
    """Run ``nb`` top to bottom in a fresh kernel started in the notebook's folder; ``_Broken`` if it cannot."""
    client = nbclient.NotebookClient(nb, timeout=timeout + 60, kernel_name=kernel, allow_errors=True,
                                     shutdown_kernel="immediate", resources={"metadata": {"path": str(path.parent)}})
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:  # the kernel process's own output (not the cells')
        try:
            await asyncio.wait_for(client.async_execute(env=env, stdout=log, stderr=log), timeout)
        except Exception as err:  # noqa: BLE001 -- timed out, the kernel died or did not start: grade the others
            await _kill(client)
            if time.monotonic() - start >= timeout:  # cancelled by wait_for (nbclient may then raise another error)
                raise _Broken(f"timed out after {timeout:g} s") from None
            log.seek(0)
            tail = [line for line in log.read().splitlines() if line.strip() and "WARNING" not in line][-1:]
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            raise _Broken((reason + (f" (kernel: {tail[0][:100]})" if tail else ""))[:240]) from None


async def _kill(client) -> None:
    """Shut the kernel down if it is still there (a timeout while it started leaves it running)."""
    km = getattr(client, "km", None)
    try:
        if km is not None and km.has_kernel:
            await km.shutdown_kernel(now=True)
    except Exception:  # noqa: BLE001 -- already gone
        pass


def _errors(nb) -> list[tuple[str, str]]:
    """``(where, "Name: message")`` of the cells that raised, except the ``NotImplementedError`` of untouched
    tasks. ``where`` is ``check.<name>`` for a check cell, the exercise tag for a task cell, else ``cell <i>``."""
    out = []
    for i, cell in enumerate(nb.cells[:-1], 1):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.output_type == "error" and o.ename != "NotImplementedError":
                call = re.search(r"check\.(\w+)\(", cell.source)
                tags = [t for t in cell.metadata.get("tags", []) if t.startswith("ex-")]
                where = f"check.{call.group(1)}" if call else tags[0] if tags else f"cell {i}"
                out.append((where, f"{o.ename}: {_first_line(o.evalue)}"))
    return out


def _first_line(evalue) -> str:
    """An error's message, shortened: first line, the kernel's temporary file name left out (``(line 9)``)."""
    line = (str(evalue or "").splitlines() or [""])[0]
    return re.sub(r"\([^()]*\.py, line (\d+)\)", r"(line \1)", line)[:60]


def _collect(nb, notebook: str) -> tuple[dict, dict, list[str]]:
    """The kernel's report from the appended cell, the status per exercise, and the notes."""
    report = None
    for o in nb.cells[-1].get("outputs", []):
        if o.output_type == "error":
            raise _Broken(f"the report cell failed ({o.ename}: {str(o.evalue)[:120]})")
        for line in o.get("text", "").splitlines() if o.output_type == "stream" else []:
            if line.startswith(MARKER):
                report = json.loads(line[len(MARKER):])
    if report is None or set(report.get("exercises", {})) != set(NOTEBOOKS[notebook]):
        raise _Broken("the report cell printed no report")
    status = {name: e["status"] for name, e in report["exercises"].items()}
    errors = _errors(nb)
    for where, _ in errors:  # a check cell that raised (a name not defined, ...) never ran its check: not passed
        name = where.removeprefix("check.")
        if where.startswith("check.") and status.get(name) == "not attempted":
            status[name] = "fail"
    notes = [f"{where}: {what}" for where, what in errors]
    return report, status, notes[:2] + ([f"(+{len(notes) - 2} more)"] if len(notes) > 2 else [])


async def _grade_one(path: Path, folder: Path, options: dict, modules) -> Row:
    nbclient, nbformat = modules
    row = Row(str(path.relative_to(folder)))
    try:
        nb = _read(path, nbformat)
        row.notebook = exercise_notebook(nb)
        if row.notebook is None:
            raise _Broken("no check.<exercise>(...) cell: not an exercise notebook")
        nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL.format(notebook=row.notebook)))
        await _execute(nb, path, nbclient=nbclient, **options)
        row.report, row.status, row.notes = _collect(nb, row.notebook)
    except _Broken as err:
        row.error = str(err)
    return row


def grade(folder, *, timeout: float = 300.0, jobs: int = 1, kernel: str = "python3", profile: str = "quick",
          log=None) -> list[Row]:
    """Grade every notebook of :func:`notebooks_in` ``folder``: each runs in its own kernel with
    ``DLDNA_PROFILE=profile`` and ``DLDNA_PROGRESS=0``, at most ``timeout`` seconds (kernel start included), ``jobs``
    at a time. ``log(row)`` is called as each one is done. Returns one :class:`Row` per notebook, in path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    if not (isinstance(jobs, int) and jobs >= 1) or not timeout > 0:
        raise ValueError(f"jobs must be an integer >= 1 and timeout a positive number of seconds, got {jobs}, "
                         f"{timeout}")
    modules = _jupyter(kernel)
    env = {**os.environ, "DLDNA_PROFILE": profile, "DLDNA_PROGRESS": "0", "MPLBACKEND": "Agg"}
    options = {"timeout": float(timeout), "kernel": kernel, "env": env}

    async def run_all():
        slots = asyncio.Semaphore(jobs)
        asyncio.get_running_loop().set_exception_handler(_quiet)

        async def one(path):
            async with slots:
                row = await _grade_one(path, folder, options, modules)
            if log is not None:
                log(row)
            return row

        return await asyncio.gather(*(one(p) for p in notebooks_in(folder)))

    return list(asyncio.run(run_all()))


def _quiet(loop, context) -> None:
    """Drop "Task exception was never retrieved" of nbclient's kernel-alive poll after a timeout; report the rest."""
    if "never retrieved" not in context.get("message", ""):
        loop.default_exception_handler(context)


# --------------------------------------------------------------------------------------------- the table
def _table(header: list[str], rows: list[list[str]], errors: list[tuple[str, str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    widths[0] = max([widths[0], *(len(p) for p, _ in errors)])

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *map(line, rows),
            *(f"{p.ljust(widths[0])}  error: {e}" for p, e in errors)]


def format_table(rows: list[Row]) -> str:
    """One table per exercise notebook (in the book's order), then the notebooks that are none: per row the path,
    pass / fail / not attempted for each exercise and the total -- or ``error: <reason>``; under a table, the notes
    (the cells that raised), one a line."""
    out = []
    for notebook in [*NOTEBOOKS, None]:
        group = [r for r in rows if r.notebook == notebook]
        if not group:
            continue
        names = NOTEBOOKS.get(notebook, [])
        title = (f"{notebook} (exercises/{NOTEBOOK_FILES[notebook]}): {len(group)} notebook(s)" if notebook else
                 f"not graded (unreadable, or not an exercise notebook): {len(group)} notebook(s)")
        body = [[r.path, *(r.status[n] for n in names), r.total] for r in group if not r.error]
        errors = [(r.path, r.error) for r in group if r.error]
        notes = [f"  {r.path}: {note}" for r in group for note in r.notes]
        header = ["notebook", *names, "total"] if body else ["notebook"]
        out += [title, *_table(header, body, errors), *(["notes:", *notes] if notes else []), ""]
    return "\n".join(out).rstrip() + "\n"


def rows_json(rows: list[Row]) -> list[dict]:
    """The rows as JSON-ready dicts (with each kernel's full report, code hashes included)."""
    return [{**asdict(r), "total": r.total} for r in rows]

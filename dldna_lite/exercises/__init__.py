"""Checkers for the student notebooks in ``exercises/``.

In a notebook::

    from dldna_lite.exercises import check
    check.adam_step(adam_step)           # prints "✓ adam_step: ..." or "✗ adam_step: <what is wrong> (hint: ...)"
    check.progress("optimizers")         # ✓ done, ✗ failing, · untouched, for each exercise of the notebook
    check.progress("optimizers", save="progress-optimizers.json")   # the same report as JSON, for the lecturer

Every checker takes the student's *work* -- a function, a class, a trained model, the rows of a run -- runs it
itself and compares what it does with an independent reference (``torch.optim``, a closed form, an exact Hessian,
a cached rerun of the fixed reference setup). A number the student only types is never enough: where an exercise
reports a measured number, the checker measures it again from the student's code or model. It prints **one**
verdict line: ``✓`` and what was verified, or ``✗``, what is wrong and a hint for the usual mistake. It never raises:
errors of the student's code (``NotImplementedError`` included) and anything unforeseen become the ``✗`` line.
Each checker returns a :class:`Result` (truthy when passed) for tests and scripts.

One module per student notebook; each holds the problem constants of its exercises (re-exported here, so the
notebook, the checker and the solutions page share the same numbers):

==========================  ===================================================  ======================================
notebook (``exercises/``)   checkers (module)                                    reference
==========================  ===================================================  ======================================
01-initialization           ``init_variance``, ``batchnorm_init``,               variance formulas and a normality test,
                            ``init_experiment`` (:mod:`.initialization`)         cached reruns of the setups
02-optimizers               ``sgd_by_hand``, ``gd_quadratic``, ``adam_step``,    autograd, (I − ηA)^k x0, 2/λ_max,
                            ``lion_step``, ``rosenbrock_path``                   ``torch.optim``, Lion's paper
                            (:mod:`.optimizers`)
03-loss-landscapes          ``filter_direction``, ``power_iteration``            ReLU rescaling invariance (Linear and
                            (:mod:`.landscapes`)                                 Conv2d), exact Hessians
04-modern-ml                ``checkpoint_memory``, ``grokking_weight_decay``,    saved-tensor hooks, a cached grokking
                            ``double_descent`` (:mod:`.modern_ml`)               run, min-norm ``lstsq`` (gelsd)
==========================  ===================================================  ======================================

The solutions live once, on the book page ``book/09-exercise-solutions.md`` (gated sphinx-exercise blocks);
``tests/test_exercises*.py`` read them back, paste them into the student notebooks, and try wrong answers on every
checker. For a course, :mod:`.grading` fingerprints the code of each checked answer (the hash in ``progress``'s
report) and ``python -m dldna_lite.exercises grade <folder>`` runs the checks of a folder of submitted notebooks.
"""
from __future__ import annotations

import contextlib
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch


# --------------------------------------------------------------------------------------------- verdicts
@dataclass
class Result:
    """The verdict of one checker: ``passed`` and the message that was printed."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.name}: {self.message}"

    def _ipython_display_(self):  # already printed by the checker: don't echo it a second time
        pass


class Fail(Exception):
    """Raised inside a checker to report what is wrong; becomes a ``✗`` line."""


NOT_DONE = "not done yet: write your code where it says # YOUR CODE HERE (and remove the `raise NotImplementedError`)"
_NO_ANSWER = "no answer yet"

#: Hints for errors that students' code raises often, keyed by a fragment of the error message.
_ERROR_HINTS = {
    "leaf Variable that requires grad": "wrap the in-place change in `with torch.no_grad():`, as torch.nn.init does",
    "mat1 and mat2 shapes cannot be multiplied": "check the shapes: a weight is [out, in], a batch [N, in]",
    "does not require grad": "the tensor you differentiate must come from parameters with requires_grad=True",
}


# --------------------------------------------------------------------------------------------- helpers
def _own_code(fn) -> None:
    """Reject the checkers' own reference code handed in as an answer (it is not the student's work)."""
    for f in (fn, getattr(fn, "func", None), *getattr(fn, "args", ())):  # a functools.partial too
        if (getattr(f, "__module__", None) or "").startswith(__name__):
            raise Fail(f"{getattr(f, '__name__', 'this')} is the checker's own reference code, not yours: "
                       "write your own function")


def _call(fn: Callable, *args, **kwargs):
    """Call the student's code; turn its exceptions into a :class:`Fail` with a readable message."""
    if not callable(fn):
        raise Fail(f"expected a function, got {type(fn).__name__}" +
                   (" (hand in the function itself, not a number: the check runs it)"
                    if isinstance(fn, (int, float)) else ""))
    _own_code(fn)
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise Fail(NOT_DONE) from None
    except Exception as e:  # noqa: BLE001 -- any error of the student's code becomes a message
        hint = next((f" (hint: {h})" for k, h in _ERROR_HINTS.items() if k in str(e)), "")
        raise Fail(f"your code raised {type(e).__name__}: {str(e)[:300]}{hint}") from None


def _need(value, what: str):
    if value is None:
        raise Fail(f"{_NO_ANSWER}: set `{what}` to your result")
    return value


def _number(value, what: str) -> float:
    _need(value, what)
    if isinstance(value, bool):
        raise Fail(f"`{what}` should be a number, got {value}")
    try:
        value = float(value)
    except Exception:  # noqa: BLE001 -- TypeError, ValueError, RuntimeError of a many-element tensor, ...
        raise Fail(f"`{what}` should be a number, got {type(value).__name__}"
                   + (f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else "")) from None
    if not math.isfinite(value):
        raise Fail(f"`{what}` is {value}: not a finite number")
    return value


def _tensor(value, what: str, shape: tuple | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Fail(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise Fail(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if value.is_complex() or not torch.isfinite(value.detach()).all():
        raise Fail(f"{what} contains inf or NaN" if not value.is_complex() else f"{what} is complex")
    return value.detach()


def _module(value, what: str):
    if not isinstance(value, torch.nn.Module):
        raise Fail(f"{what} should be a trained torch.nn.Module, got {type(value).__name__}")
    return value


def _close(got: float, want: float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    return abs(got - want) <= max(abs_, rel * abs(want))


@contextlib.contextmanager
def _isolated_rng(seed: int | None = None):
    """Inside: the global RNGs of torch, Python and NumPy seeded with ``seed`` (when given); after: all three
    restored, so that a check (and the student code it runs, which may call ``dl.seed_everything``) leaves the
    student's random streams as they were."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed), random.seed(seed), np.random.seed(seed % 2 ** 32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


_seeded = _isolated_rng


#: Checkers that keep torch's thread count: they train or solve sizeable problems, or compare with a run the student
#: made outside the check (``init_experiment``'s rows), which the same thread count keeps bitwise equal.
_ALL_THREADS = ("batchnorm_init", "init_experiment", "grokking_weight_decay", "double_descent")


@contextlib.contextmanager
def _one_thread():
    """Run a check of tiny problems on one thread (restored after): on a busy 2-core machine torch's intra-op threads
    made the checks 5-27× slower (measured: power_iteration 21.7 s instead of 0.8 s, init_variance 5.5 s instead of
    1.1 s, checkpoint_memory 2.5 s instead of 0.14 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------- the registry
CHECKERS: dict[str, Callable[..., Result]] = {}
#: Checker names per notebook module (``initialization``, ``optimizers``, ...), in the order of the notebook.
NOTEBOOKS: dict[str, list[str]] = {}
#: The last verdict of each checker in this kernel (what :func:`progress` reports).
_VERDICTS: dict[str, Result] = {}
#: The fingerprint of the answer each checker last saw (``grading.fingerprint``: a hash of its code).
_ANSWERS: dict[str, dict] = {}


#: The global torch seed every check starts from: a verdict never depends on the caller's random state (a test disturbs
#: it and gets the same verdicts), and the caller's state is restored afterwards. Where a task hands the student a
#: ``generator``, the check also seeds the global RNG differently from that generator (``landscapes.GLOBAL_SEEDS``).
CHECK_SEED = 20240607


def _verdict(name: str, fn: Callable[..., str], args, kwargs) -> Result:
    try:
        threads = contextlib.nullcontext() if name in _ALL_THREADS else _one_thread()
        with warnings.catch_warnings(), _isolated_rng(CHECK_SEED), threads:  # one line, no warnings; RNGs restored
            warnings.simplefilter("ignore")
            return Result(name, True, fn(*args, **kwargs))
    except Fail as e:
        return Result(name, False, str(e))
    except Exception as e:  # noqa: BLE001 -- a checker never raises, even on an answer nobody foresaw
        return Result(name, False, f"the check could not use your answer ({type(e).__name__}: {str(e)[:200]}); "
                                   "hint: compare what you hand in with what the task asks for (types, shapes)")


def checker(fn: Callable[..., str]) -> Callable[..., Result]:
    """Register a check: ``fn`` returns the success message or raises :class:`Fail`; the wrapper prints one line."""

    def run(*args, **kwargs) -> Result:
        _ANSWERS[fn.__name__] = grading.fingerprint(args, kwargs)  # never raises
        result = _verdict(fn.__name__, fn, args, kwargs)
        _VERDICTS[fn.__name__] = result
        print(result)
        return result

    run.__name__, run.__doc__, run.__wrapped__ = fn.__name__, fn.__doc__, fn
    CHECKERS[fn.__name__] = run
    NOTEBOOKS.setdefault(fn.__module__.rsplit(".", 1)[-1], []).append(fn.__name__)
    return run


# --------------------------------------------------------------------------------------------- progress
@dataclass
class Progress:
    """What :func:`progress` printed: per exercise ``"done"``, ``"failing"`` or ``"untouched"``, when (``time``, UTC),
    with which package ``version``, and the hash of the code of each checked answer (``codes``; ``None`` for an
    answer without code, such as a number)."""

    notebook: str
    status: dict[str, str]
    time: str = ""
    version: str = ""
    codes: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        counts = {s: sum(v == s for v in self.status.values()) for s in ("done", "failing", "untouched")}
        lines = [f"Progress in {self.notebook} (last check of each exercise in this kernel): "
                 f"{counts['done']} of {len(self.status)} done, {counts['failing']} failing, "
                 f"{counts['untouched']} untouched"]
        for name, state in self.status.items():
            verdict, code = _VERDICTS.get(name), (f" [code {self.codes[name]}]" if self.codes.get(name) else "")
            if state == "done":
                lines.append(f"  ✓ {name}{code}")
            elif state == "failing":
                lines.append(f"  ✗ {name}: {verdict.message[:110]}{'…' if len(verdict.message) > 110 else ''}{code}")
            else:
                lines.append(f"  · {name}: " + ("not done yet" if verdict is not None else "not checked yet"))
        lines.append(f"  (dldna-lite {self.version}, {self.time}; the same as JSON for your lecturer: "
                     f'check.progress("{self.notebook}", save="progress-{self.notebook}.json"))')
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict (:func:`.grading.report_dict`): what a lecturer collects."""
        return grading.report_dict(self)

    def to_json(self) -> str:
        return grading.to_json(self.to_dict())

    def save(self, path) -> Path:
        """Write :meth:`to_json` to ``path``, atomically (a reader never sees half a file); returns the path."""
        return grading.save_json(path, self.to_dict())

    def _ipython_display_(self):
        pass


def _state(name: str) -> str:
    verdict = _VERDICTS.get(name)
    # "not done yet" may come with where (filter_direction: "on a Linear MLP, not done yet: ...")
    if verdict is None or NOT_DONE in verdict.message or verdict.message.startswith(_NO_ANSWER):
        return "untouched"
    return "done" if verdict.passed else "failing"


def _progress(notebook: str) -> Progress:
    """The :class:`Progress` of ``notebook`` now, printed nowhere."""
    if notebook not in NOTEBOOKS:
        raise ValueError(f"unknown exercise notebook {notebook!r}; choose one of {', '.join(NOTEBOOKS)}")
    from .. import __version__

    names = NOTEBOOKS[notebook]
    return Progress(notebook, {name: _state(name) for name in names}, grading.now(), __version__,
                    {name: _ANSWERS.get(name, {}).get("code_sha256") if name in _VERDICTS else None for name in names})


def progress(notebook: str, save: str | Path | None = None) -> Progress:
    """Print, for each exercise of ``notebook`` (``initialization``, ``optimizers``, ``landscapes``,
    ``modern_ml``), whether its last check in this kernel passed (✓), failed (✗) or is still untouched (·), with
    the hash of the code each check ran. With ``save``, also write the report as JSON to that file (atomically), for
    a student to hand in; its fields are described in :func:`.grading.report_dict`."""
    result = _progress(notebook)
    print(result)
    if save is not None:
        print(f"  report written to {result.save(save)}")
    return result


class _Check:
    """All checkers as attributes: ``check.adam_step(adam_step)``; ``check.progress(notebook)``."""

    progress = staticmethod(progress)

    def __getattr__(self, name: str):
        if name in CHECKERS:
            return CHECKERS[name]
        raise AttributeError(f"no checker {name!r}; available: {', '.join(sorted(CHECKERS))}, progress")

    def __dir__(self):
        return sorted([*CHECKERS, "progress"])

    def __repr__(self) -> str:
        return f"<exercise checks: {', '.join(sorted(CHECKERS))}; progress>"


check = _Check()

# --------------------------------------------------------------------------------------------- the notebooks
# Imported last: each module registers its checkers with the machinery above. Re-exported: the problem constants
# and the helpers the notebooks and the solutions page use (``ex.ROSENBROCK_START``, ``ex.deep_relu_mlp``, ...).
from . import grading, initialization, optimizers, landscapes, modern_ml  # noqa: E402
from .initialization import BATCHNORM_SETUP, INIT_EXPERIMENT, INIT_TARGET_LOSS  # noqa: E402
from .landscapes import tiny_hessian_problem  # noqa: E402
from .modern_ml import (CHECKPOINT_SETUP, DOUBLE_DESCENT_SETUP, GROKKING_SETUP, ModularAdditionMLP,  # noqa: E402
                        deep_relu_mlp, double_descent_data, modular_addition_data)
from .optimizers import (ADAM_HPARAMS, LION_HPARAMS, QUADRATIC_A, QUADRATIC_X0, ROSENBROCK_ADAM,  # noqa: E402
                         ROSENBROCK_MIN, ROSENBROCK_START, SGD_PROBLEM, rosenbrock)

__all__ = ["check", "progress", "Progress", "Result", "Fail", "CHECKERS", "NOTEBOOKS", "grading",
           "initialization", "optimizers", "landscapes", "modern_ml",
           "BATCHNORM_SETUP", "INIT_EXPERIMENT", "INIT_TARGET_LOSS", "tiny_hessian_problem",
           "CHECKPOINT_SETUP", "DOUBLE_DESCENT_SETUP", "GROKKING_SETUP", "ModularAdditionMLP", "deep_relu_mlp",
           "double_descent_data", "modular_addition_data",
           "ADAM_HPARAMS", "LION_HPARAMS", "QUADRATIC_A", "QUADRATIC_X0", "ROSENBROCK_ADAM", "ROSENBROCK_MIN",
           "ROSENBROCK_START", "SGD_PROBLEM", "rosenbrock"]

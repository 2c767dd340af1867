"""Checkers for the student notebooks in ``exercises/``.

In a notebook::

    from dldna_lite.exercises import check
    check.adam_step(adam_step)      # prints "✓ adam_step: ..." or "✗ adam_step: <what is wrong> (hint: ...)"

Every checker takes the student's function or value, tests it against an independent reference (``torch.optim``, a
closed form, an exact Hessian, ``torch.nn.init``'s formulas) and prints **one** verdict line: ``✓`` and what was
verified, or ``✗`` and what is wrong (shape, by how much a value is off, a hint for the usual mistakes). It never
shows a bare assertion traceback: errors raised by the student's code (``NotImplementedError`` included) are
reported as a ``✗`` line. Each checker returns a :class:`Result` (truthy when passed) for tests and scripts.

The problems the exercises pose (the tiny SGD problem, the quadratic, the Rosenbrock start, ...) are the
module-level constants below, so the notebook, the checker and the solutions page use the same numbers.

=========================  ===========================================  ====================================
notebook (``exercises/``)  checkers                                     reference
=========================  ===========================================  ====================================
01-initialization          ``init_variance``, ``batchnorm_init``,       variance formulas, ln 10,
                           ``init_experiment``                          ``init.analyze``'s rows
02-optimizers              ``sgd_by_hand``, ``gd_quadratic``,           autograd, (I − ηA)^k x0,
                           ``adam_step``, ``lion_step``,                ``torch.optim.Adam``, Lion's paper,
                           ``rosenbrock_path``                          ``torch.optim`` paths
03-loss-landscapes         ``filter_direction``, ``power_iteration``    rescaling invariance, exact Hessian
04-modern-ml               ``checkpoint_memory``,                       saved-tensor hooks,
                           ``grokking_weight_decay``,                   the measured run,
                           ``double_descent``                           min-norm ``lstsq`` (gelsd)
=========================  ===========================================  ====================================

The solutions live once, on the book page ``book/09-exercise-solutions.md`` (gated sphinx-exercise blocks);
``tests/test_exercises.py`` reads them back and pastes them into the student notebooks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from . import stories
from .hessian import exact_hessian

# --------------------------------------------------------------------------------------------- the problems
#: Exercise 1: one weight, one example, L(w) = ½ (w·x − y)², plain SGD with learning rate ``lr`` from ``w0``.
SGD_PROBLEM = dict(x=2.0, y=4.0, w0=0.5, lr=0.1)
#: Exercise 2: f(x) = ½ xᵀ A x with eigenvalues 6 and 1, started at ``QUADRATIC_X0``.
QUADRATIC_A = torch.tensor([[5.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
QUADRATIC_X0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
#: Exercise 4: Adam's hyperparameters in the check (float64, 10 steps of given gradients).
ADAM_HPARAMS = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
#: Exercise 5: a deep MLP with a bad initialization, trained with and without BatchNorm.
BATCHNORM_SETUP = dict(depth=10, width=128, init_std=0.01, lr=0.1, epochs=2, batch_size=128, train_limit=4000, seed=0)
#: Exercise 6: Lion's hyperparameters in the check.
LION_HPARAMS = dict(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)
#: Exercise 8: Rosenbrock f(x, y) = (1 − x)² + 100 (y − x²)², minimum at (1, 1).
ROSENBROCK_START = (-1.5, 2.0)
ROSENBROCK_MIN = (1.0, 1.0)
ROSENBROCK_ADAM = dict(lr=0.05, steps=500)  # the run whose final distance exercise 8 asks for
#: Exercise 11: a deep ReLU MLP whose saved activations are counted.
CHECKPOINT_SETUP = dict(layers=16, width=256, batch=128, segments=4)
#: Exercise 12: a + b mod p, full-batch AdamW (betas 0.9, 0.98) on a fixed random half of all pairs.
GROKKING_SETUP = dict(p=97, train_fraction=0.5, lr=3e-3, steps=800, seed=0)
#: Exercise 13: random ReLU features of Fashion-MNIST, minimum-norm least squares (float64).
DOUBLE_DESCENT_SETUP = dict(n_train=200, n_test=2000, max_features=2000, seed=0,
                            features=(20, 50, 100, 150, 180, 200, 220, 250, 300, 400, 600, 1000, 2000))
#: Exercise 7: the target loss of ``init.analyze`` (data sizes and epochs: ``dl.sizes("exercises")``).
INIT_TARGET_LOSS = 0.8


# --------------------------------------------------------------------------------------------- machinery
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


def _call(fn: Callable, *args, **kwargs):
    """Call the student's code; turn its exceptions into a :class:`Fail` with a readable message."""
    if not callable(fn):
        raise Fail(f"expected a function, got {type(fn).__name__}")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise Fail(NOT_DONE) from None
    except Exception as e:  # noqa: BLE001 -- any error of the student's code becomes a message
        raise Fail(f"your function raised {type(e).__name__}: {e}") from None


def _need(value, what: str):
    if value is None:
        raise Fail(f"no answer yet: set `{what}` to your result")
    return value


def _number(value, what: str) -> float:
    _need(value, what)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise Fail(f"`{what}` should be a number, got {type(value).__name__}") from None
    if not math.isfinite(value):
        raise Fail(f"`{what}` is {value}: not a finite number")
    return value


def _tensor(value, what: str, shape: tuple | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Fail(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise Fail(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if not torch.isfinite(value).all():
        raise Fail(f"{what} contains inf or NaN")
    return value


def _close(got: float, want: float, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    return abs(got - want) <= max(abs_, rel * abs(want))


def _seeded(seed: int):
    """Context: torch's global RNG seeded with ``seed`` inside, restored after (the student's stream is untouched)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            yield

    return ctx()


CHECKERS: dict[str, Callable[..., Result]] = {}


def checker(fn: Callable[..., str]) -> Callable[..., Result]:
    """Register a check: ``fn`` returns the success message or raises :class:`Fail`; the wrapper prints."""

    def run(*args, **kwargs) -> Result:
        try:
            result = Result(fn.__name__, True, fn(*args, **kwargs))
        except Fail as e:
            result = Result(fn.__name__, False, str(e))
        print(result)
        return result

    run.__name__, run.__doc__, run.__wrapped__ = fn.__name__, fn.__doc__, fn
    CHECKERS[fn.__name__] = run
    return run


# --------------------------------------------------------------------------------------------- 1. SGD by hand
def sgd_by_hand_reference(steps: int = 2) -> list[float]:
    """The weights after 1..``steps`` SGD updates on :data:`SGD_PROBLEM` (via autograd)."""
    p = SGD_PROBLEM
    w = torch.tensor(p["w0"], dtype=torch.float64, requires_grad=True)
    out = []
    for _ in range(steps):
        loss = 0.5 * (w * p["x"] - p["y"]) ** 2
        (g,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= p["lr"] * g
        out.append(w.item())
    return out


@checker
def sgd_by_hand(w1, w2) -> str:
    """Exercise 1: the weight after one (``w1``) and two (``w2``) SGD updates on :data:`SGD_PROBLEM`."""
    p = SGD_PROBLEM
    ref = sgd_by_hand_reference(2)
    for k, (got, want) in enumerate(zip((_number(w1, "w1"), _number(w2, "w2")), ref), start=1):
        if _close(got, want, rel=1e-4):
            continue
        g = (p["w0"] * p["x"] - p["y"]) * p["x"]
        hint = ""
        if k == 1 and _close(got, p["w0"] + p["lr"] * g, rel=1e-4):
            hint = " (hint: you stepped *up* the gradient; SGD subtracts lr·∂L/∂w)"
        elif k == 1 and _close(got, p["w0"] - 2 * p["lr"] * g, rel=1e-4):
            hint = " (hint: your step is twice too long: the ½ in L cancels the 2 of the square's derivative)"
        elif k == 1 and _close(got, p["w0"] - p["lr"] * (p["w0"] * p["x"] - p["y"]), rel=1e-4):
            hint = " (hint: ∂L/∂w = (w·x − y)·x: the chain rule brings a factor x)"
        elif k == 2:
            hint = " (hint: the second gradient is taken at w1, not at w0)"
        raise Fail(f"w{k} = {got:.6g} is off by {got - want:+.4g}{hint}")
    return f"w1 = {ref[0]:.4g}, w2 = {ref[1]:.4g}"


# --------------------------------------------------------------------------------------------- 2. GD on a quadratic
def gd_reference(A: torch.Tensor, x0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Closed form of GD on ½xᵀAx: x_k = (I − lr·A)^k x0, stacked ``[steps + 1, n]``."""
    M = torch.eye(len(A), dtype=A.dtype) - lr * A
    xs = [x0]
    for _ in range(steps):
        xs.append(M @ xs[-1])
    return torch.stack(xs)


@checker
def gd_quadratic(gd, lr_max) -> str:
    """Exercise 2: ``gd(A, x0, lr, steps) -> [steps + 1, n]`` iterates, and the largest convergent ``lr_max``."""
    g = torch.Generator().manual_seed(2)
    Q = torch.randn(3, 3, generator=g, dtype=torch.float64)
    A = Q @ Q.T + 0.5 * torch.eye(3, dtype=torch.float64)
    x0 = torch.randn(3, generator=g, dtype=torch.float64)
    want = gd_reference(A, x0, 0.05, 5)
    got = _call(gd, A.clone(), x0.clone(), 0.05, 5)
    if isinstance(got, torch.Tensor) and got.shape == (5, 3):
        raise Fail("gd returned 5 rows for steps=5: include x0 as row 0, so there are steps + 1 rows")
    got = _tensor(got, "gd(...)", (6, 3)).to(torch.float64)
    if not torch.allclose(got[0], x0):
        raise Fail("row 0 of gd's result should be x0")
    err = (got - want).abs().max().item()
    if err > 1e-6 * want.abs().max().item():
        k = int(((got - want).abs().amax(1) > 1e-6).nonzero()[0])
        raise Fail(f"iterate {k} differs from x_k = (I − lr·A)^k x0 by up to {err:.3g} "
                   "(hint: ∇f(x) = A x for symmetric A)")
    lam = torch.linalg.eigvalsh(QUADRATIC_A)
    bound = 2 / lam.max().item()
    lr_max = _number(lr_max, "lr_max")
    if abs(lr_max - bound) <= 0.03 * bound:
        return f"gd matches the closed form; lr_max = {lr_max:.4g} ≈ 2/λ_max = {bound:.4g}"
    if abs(lr_max - 1 / lam.max().item()) <= 0.03 * bound:
        raise Fail(f"lr_max = {lr_max:.4g} ≈ 1/λ_max: GD still converges above it (it oscillates, "
                   "|1 − lr·λ| < 1), look further")
    if abs(lr_max - 2 / lam.min().item()) <= 0.03 * 2 / lam.min().item():
        raise Fail(f"lr_max = {lr_max:.4g} ≈ 2/λ_min: the steepest direction (λ_max) diverges first")
    raise Fail(f"lr_max = {lr_max:.4g} is off by {lr_max - bound:+.3g} from where GD on QUADRATIC_A stops "
               "converging (hint: scan lr finely or bisect, and call a run convergent when ‖x_k‖ shrinks)")


# --------------------------------------------------------------------------------------------- 3. Xavier and Kaiming
@checker
def init_variance(xavier_normal_, kaiming_normal_) -> str:
    """Exercise 3: ``xavier_normal_(W)`` and ``kaiming_normal_(W)`` (ReLU) fill a Linear weight ``[out, in]``."""
    for name, fn in (("xavier_normal_", xavier_normal_), ("kaiming_normal_", kaiming_normal_)):
        for fan_out, fan_in in ((300, 1200), (1200, 300)):
            W = torch.empty(fan_out, fan_in)
            out = _call(fn, W)
            W = _tensor(W if out is None else out, f"{name}(W)", (fan_out, fan_in)).double()
            var = W.var().item()
            want = 2 / (fan_in + fan_out) if name == "xavier_normal_" else 2 / fan_in
            if abs(W.mean().item()) > 0.05 * math.sqrt(want):
                raise Fail(f"{name}: the weights should have mean 0, got {W.mean().item():.3g}")
            if abs(var - want) <= 0.03 * want:
                continue
            candidates = {"2/fan_out (Kaiming's fan_out mode)": 2 / fan_out, "1/fan_in (LeCun)": 1 / fan_in,
                          "2/(fan_in + fan_out) (Xavier)": 2 / (fan_in + fan_out), "2/fan_in (Kaiming)": 2 / fan_in,
                          "1/(fan_in + fan_out)": 1 / (fan_in + fan_out)}
            match = [k for k, v in candidates.items() if abs(var - v) <= 0.03 * v]
            hint = (f" — that is {match[0]}" if match else "") + (
                "; nn.Linear stores W as [out_features, in_features], so fan_in = W.shape[1]"
                if match and "fan_out" in match[0] else "")
            raise Fail(f"{name}: for W of shape [{fan_out}, {fan_in}] the variance is {var:.3g}, expected "
                       f"{want:.3g} (off by {100 * (var / want - 1):+.0f}%){hint}")
    return "variances match 2/(fan_in + fan_out) and 2/fan_in for W of shapes [300, 1200] and [1200, 300]"


# --------------------------------------------------------------------------------------------- 4. Adam
def _adam_variant(p, g, m, v, t, lr, beta1, beta2, eps, variant="adam"):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    if variant == "no_bias_correction":
        return p - lr * m / (v.sqrt() + eps), m, v
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    if variant == "eps_inside":
        return p - lr * m_hat / (v_hat + eps).sqrt(), m, v
    return p - lr * m_hat / (v_hat.sqrt() + eps), m, v


def _adam_trajectory(step_fn, grads, p0, variant=None):
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    out = []
    for t, g in enumerate(grads, start=1):
        if variant is None:
            res = _call(step_fn, p.clone(), g.clone(), m.clone(), v.clone(), t, **ADAM_HPARAMS)
            if not (isinstance(res, (tuple, list)) and len(res) == 3):
                raise Fail("adam_step should return a tuple (new_param, new_m, new_v)")
            p, m, v = (_tensor(r, f"adam_step's output {i}", p0.shape) for i, r in enumerate(res))
        else:
            p, m, v = _adam_variant(p, g, m, v, t, **ADAM_HPARAMS, variant=variant)
        out.append(p.clone())
    return out


def adam_torch_trajectory(grads, p0) -> list[torch.Tensor]:
    """The parameters after each step of ``torch.optim.Adam`` fed the gradients ``grads`` (the reference)."""
    h = ADAM_HPARAMS
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"])
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return out


@checker
def adam_step(adam_step) -> str:
    """Exercise 4: ``adam_step(param, grad, m, v, t, lr, beta1, beta2, eps) -> (param, m, v)``, t = 1, 2, ...

    Compared with ``torch.optim.Adam`` over 10 steps of given float64 gradients (some of them small, so that a
    misplaced ``eps`` shows).
    """
    gen = torch.Generator().manual_seed(4)
    p0 = torch.randn(7, generator=gen, dtype=torch.float64)
    scales = torch.logspace(-4, 0, 7, dtype=torch.float64)
    grads = [torch.randn(7, generator=gen, dtype=torch.float64) * scales for _ in range(10)]
    want = adam_torch_trajectory(grads, p0)
    got = _adam_trajectory(adam_step, grads, p0)
    for t, (a, b) in enumerate(zip(got, want), start=1):
        if not torch.allclose(a.to(b.dtype), b, rtol=1e-9, atol=1e-12):
            hint = ""
            for variant, text in (("no_bias_correction", "bias correction is missing: divide m by (1 − β1^t) "
                                   "and v by (1 − β2^t)"),
                                  ("eps_inside", "eps belongs outside the square root: √v̂ + eps")):
                alt = _adam_variant(p0, grads[0], torch.zeros_like(p0), torch.zeros_like(p0), 1,
                                    **ADAM_HPARAMS, variant=variant)[0]
                if torch.allclose(got[0].to(alt.dtype), alt, rtol=1e-9, atol=1e-12):
                    hint = f" (hint: {text})"
            raise Fail(f"after step {t} your parameters differ from torch.optim.Adam by up to "
                       f"{(a - b).abs().max().item():.3g}{hint}")
    return "10 steps match torch.optim.Adam to 1e-9 (float64)"


# --------------------------------------------------------------------------------------------- 5. BatchNorm
@checker
def batchnorm_init(loss_plain, loss_bn) -> str:
    """Exercise 5: final training losses of :data:`BATCHNORM_SETUP` without (``loss_plain``) and with BN."""
    chance = math.log(10)
    loss_plain, loss_bn = _number(loss_plain, "loss_plain"), _number(loss_bn, "loss_bn")
    if abs(loss_plain - chance) > 0.02:
        raise Fail(f"loss_plain = {loss_plain:.4f}, but with this init the plain network stays at chance level, "
                   f"ln 10 = {chance:.4f} (hint: initialise *every* Linear weight with N(0, "
                   f"{BATCHNORM_SETUP['init_std']}²) and train without BatchNorm)")
    if loss_bn > chance - 0.5:
        raise Fail(f"loss_bn = {loss_bn:.4f} is not clearly below chance ({chance:.4f}): did you build the "
                   "network with batchnorm=True and train it with the same settings?")
    return (f"without BN the loss stays at ln 10 = {chance:.3f} ({loss_plain:.4f}); with BN it falls to "
            f"{loss_bn:.3f}, {chance - loss_bn:.2f} below chance")


# --------------------------------------------------------------------------------------------- 6. Lion
def lion_reference(p, g, m, lr, beta1, beta2, weight_decay):
    """One step of Lion (Chen et al. 2023), decoupled weight decay: returns ``(param, m)``."""
    c = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * weight_decay) - lr * torch.sign(c)
    return p, beta2 * m + (1 - beta2) * g


@checker
def lion_step(lion_step, update_over_lr) -> str:
    """Exercise 6: ``lion_step(param, grad, m, lr, beta1, beta2, weight_decay) -> (param, m)`` over 10 steps,
    and ``update_over_lr`` = |Δw_i| / lr for every coordinate when ``weight_decay = 0``."""
    gen = torch.Generator().manual_seed(6)
    p0 = torch.randn(9, generator=gen, dtype=torch.float64)
    grads = [torch.randn(9, generator=gen, dtype=torch.float64) for _ in range(10)]
    p, m = p0.clone(), torch.zeros_like(p0)
    rp, rm = p0.clone(), torch.zeros_like(p0)
    sp, sm = p0.clone(), torch.zeros_like(p0)  # the source's simplification: m_t = c_t (β2 = β1)
    for t, g in enumerate(grads, start=1):
        res = _call(lion_step, p.clone(), g.clone(), m.clone(), **LION_HPARAMS)
        if not (isinstance(res, (tuple, list)) and len(res) == 2):
            raise Fail("lion_step should return a tuple (new_param, new_m)")
        p, m = (_tensor(r, "lion_step's output", p0.shape) for r in res)
        rp, rm = lion_reference(rp, g, rm, **LION_HPARAMS)
        sp, sm = lion_reference(sp, g, sm, **{**LION_HPARAMS, "beta2": LION_HPARAMS["beta1"]})
        if not torch.allclose(p, rp, rtol=1e-9, atol=1e-12) or not torch.allclose(m, rm, rtol=1e-9, atol=1e-12):
            hint = ""
            if torch.allclose(p, sp, rtol=1e-9, atol=1e-12):
                hint = (" (hint: this is the simplified update with m_t = c_t; Lion keeps a slower momentum "
                        "m_t = β2·m + (1 − β2)·g and uses β1 only for the sign's interpolation c_t)")
            elif t == 1:
                hint = (" (hint: c = β1·m + (1 − β1)·g; w ← w·(1 − lr·wd) − lr·sign(c); then "
                        "m ← β2·m + (1 − β2)·g)")
            which = "parameters" if not torch.allclose(p, rp, rtol=1e-9, atol=1e-12) else "momentum m"
            raise Fail(f"after step {t} your {which} differ from Lion's by up to "
                       f"{max((p - rp).abs().max().item(), (m - rm).abs().max().item()):.3g}{hint}")
    ratio = _number(update_over_lr, "update_over_lr")
    if not _close(ratio, 1.0, rel=1e-6):
        raise Fail(f"update_over_lr = {ratio:.4g}: measure |w_new − w| / lr with weight_decay = 0; "
                   "sign(c) is ±1 in every coordinate")
    return "10 steps match Lion (decoupled weight decay); every coordinate moves by exactly lr"


# --------------------------------------------------------------------------------------------- 7. init experiment
@checker
def init_experiment(rows, first) -> str:
    """Exercise 7: ``rows`` from ``init.analyze`` for two methods and ``first``, the method reaching the target first."""
    rows = _need(rows, "rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise Fail("rows should be the list returned by dldna_lite.init.analyze")
    if len(rows) < 2:
        raise Fail(f"compare at least two methods; rows has {len(rows)}")
    first = _need(first, "first")
    steps = {r["method"]: (r.get("steps_to_target") if r.get("reached") else None) for r in rows}
    reached = {m: s for m, s in steps.items() if s is not None}
    if not reached:
        raise Fail("no method reached the target loss: raise target_loss or train longer, then answer again")
    best = min(reached, key=reached.get)
    if first not in steps:
        raise Fail(f"first = {first!r} is not one of the methods you ran: {', '.join(steps)}")
    if first != best and steps[first] != reached[best]:  # a tie counts for both
        got = "never reached it" if steps[first] is None else f"needed {steps[first]:.0f} steps"
        raise Fail(f"{first!r} {got}; {best!r} needed {reached[best]:.0f} (read the steps_to_target column)")
    return f"{first!r} reaches the target first, after {reached[best]:.0f} steps"


# --------------------------------------------------------------------------------------------- 8. Rosenbrock
def rosenbrock(xy: torch.Tensor) -> torch.Tensor:
    """f(x, y) = (1 − x)² + 100 (y − x²)² for ``xy`` of shape ``[..., 2]``."""
    x, y = xy[..., 0], xy[..., 1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def rosenbrock_path_reference(make_optimizer: Callable, steps: int, start=ROSENBROCK_START,
                              accumulate: bool = False) -> torch.Tensor:
    """The optimizer's iterates on :func:`rosenbrock` from ``start``: ``[steps + 1, 2]`` (float64)."""
    xy = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([xy])
    path = [xy.detach().clone()]
    for _ in range(steps):
        if not accumulate:
            opt.zero_grad()
        rosenbrock(xy).backward()
        opt.step()
        path.append(xy.detach().clone())
    return torch.stack(path)


def rosenbrock_adam_distance() -> float:
    """Distance to (1, 1) after :data:`ROSENBROCK_ADAM` (torch.optim.Adam) from :data:`ROSENBROCK_START`."""
    path = rosenbrock_path_reference(lambda ps: torch.optim.Adam(ps, lr=ROSENBROCK_ADAM["lr"]),
                                     ROSENBROCK_ADAM["steps"])
    return torch.linalg.vector_norm(path[-1] - torch.tensor(ROSENBROCK_MIN, dtype=torch.float64)).item()


@checker
def rosenbrock_path(optimize, distance_adam) -> str:
    """Exercise 8: ``optimize(make_optimizer, steps) -> [steps + 1, 2]`` path from :data:`ROSENBROCK_START`,
    and ``distance_adam``, the final distance to the minimum of the :data:`ROSENBROCK_ADAM` run."""
    make = lambda ps: torch.optim.SGD(ps, lr=1e-3)  # noqa: E731
    want = rosenbrock_path_reference(make, 50)
    got = _call(optimize, make, 50)
    if isinstance(got, torch.Tensor) and got.shape == (50, 2):
        raise Fail("50 steps gave 50 points: include the starting point, so there are steps + 1 rows")
    got = _tensor(got, "optimize(...)", (51, 2)).to(torch.float64)
    if not torch.allclose(got[0], want[0]):
        raise Fail(f"the path should start at ROSENBROCK_START = {ROSENBROCK_START}, got {got[0].tolist()}")
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        hint = ""
        if torch.allclose(got, rosenbrock_path_reference(make, 50, accumulate=True), rtol=1e-4, atol=1e-5):
            hint = " (hint: call optimizer.zero_grad() before backward(): gradients accumulate otherwise)"
        k = int(((got - want).abs().amax(1) > 1e-5).nonzero()[0])
        raise Fail(f"with SGD(lr=1e-3) your path leaves the reference at step {k}{hint}")
    ref = rosenbrock_adam_distance()
    d = _number(distance_adam, "distance_adam")
    if not _close(d, ref, rel=1e-3):
        raise Fail(f"distance_adam = {d:.4g}, expected {ref:.4g} for Adam(lr={ROSENBROCK_ADAM['lr']}) after "
                   f"{ROSENBROCK_ADAM['steps']} steps (hint: Euclidean distance of the last point to (1, 1))")
    return f"the SGD path matches the reference; Adam ends {ref:.3g} from the minimum"


# --------------------------------------------------------------------------------------------- 9. filter normalization
def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each filter (slice along dim 0) of a weight ``[out, ...]``: ``[out]``."""
    return torch.linalg.vector_norm(t.reshape(len(t), -1), dim=1)


def _small_relu_net(scale: float = 1.0) -> nn.Sequential:
    """A 6 → 16 → 3 ReLU MLP (float64, seed 9); ``scale`` multiplies layer 1 and divides layer 2 (same function)."""
    with _seeded(9):
        net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    with torch.no_grad():
        net[0].weight.mul_(scale), net[0].bias.mul_(scale), net[2].weight.div_(scale)
    return net


def _loss_along(net: nn.Module, direction, alpha: float, data) -> float:
    X, y = data
    params = {name: p + alpha * d for (name, p), d in zip(net.named_parameters(), direction)}
    return F.cross_entropy(torch.func.functional_call(net, params, (X,)), y).item()


def _direction_of(fn, net, seed: int):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        d = _call(fn, net, torch.Generator().manual_seed(seed))
    params = list(net.parameters())
    if not isinstance(d, (list, tuple)) or len(d) != len(params):
        raise Fail(f"return a list with one tensor per model.parameters() entry ({len(params)}), "
                   f"got {type(d).__name__}" + (f" of length {len(d)}" if isinstance(d, (list, tuple)) else ""))
    return [_tensor(t, f"direction[{i}]", p.shape).to(p.dtype) for i, (t, p) in enumerate(zip(d, params))]


@checker
def filter_direction(filter_normalized_direction) -> str:
    """Exercise 9: ``filter_normalized_direction(model, generator) -> list[Tensor]`` (Li et al. 2018).

    Each filter (slice along dim 0) of a weight gets a Gaussian direction rescaled to that filter's norm; 1-d
    parameters (biases, BatchNorm) get zero. Checked: shapes, filter norms, zero biases, randomness, and the
    point of it all -- the loss along the direction is the same for a rescaled but equivalent ReLU network.
    """
    net = _small_relu_net()
    d = _direction_of(filter_normalized_direction, net, seed=0)
    for i, (t, p) in enumerate(zip(d, net.parameters())):
        if p.dim() <= 1:
            if t.abs().max() > 0:
                raise Fail(f"direction[{i}] (a bias, shape {tuple(p.shape)}) should be zero: filter "
                           "normalization leaves 1-d parameters out")
            continue
        want, got = _filter_norms(p.detach()), _filter_norms(t)
        if torch.allclose(got, want, rtol=1e-5):
            continue
        if torch.allclose(got, torch.ones_like(got), rtol=1e-5):
            hint = "each filter has norm 1: multiply it by the norm of the same filter of the weight"
        elif _close(torch.linalg.vector_norm(t).item(), torch.linalg.vector_norm(p).item(), rel=1e-5):
            hint = "you matched the whole layer's norm; match each filter (row W[i]) separately"
        else:
            hint = "rescale each filter d[i] to ‖d[i]‖ = ‖W[i]‖"
        fmt = lambda t: ", ".join(f"{v:.3g}" for v in t[:3].tolist())  # noqa: E731
        raise Fail(f"direction[{i}]: filter norms [{fmt(got)}, ...] should equal the weight's [{fmt(want)}, ...] "
                   f"({hint})")
    cos = torch.nn.functional.cosine_similarity(d[0].flatten(), next(net.parameters()).detach().flatten(), dim=0)
    if cos.abs() > 0.9:
        raise Fail("the direction is (almost) the weight itself: draw a random Gaussian direction first")
    d_other = _direction_of(filter_normalized_direction, net, seed=1)
    if all(torch.equal(a, b) for a, b in zip(d, d_other)):
        raise Fail("two different seeds gave the same direction: draw it with torch.randn (use the generator)")
    gen = torch.Generator().manual_seed(9)
    data = (torch.randn(64, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (64,), generator=gen))
    scaled = _small_relu_net(scale=10.0)
    d_scaled = _direction_of(filter_normalized_direction, scaled, seed=0)
    a, b = _loss_along(net, d, 0.5, data), _loss_along(scaled, d_scaled, 0.5, data)
    if not _close(a, b, rel=1e-6):
        raise Fail(f"the loss at α = 0.5 differs between the network and its rescaled twin ({a:.6f} vs {b:.6f}): "
                   "draw the Gaussian in the same order for every parameter")
    return (f"filter norms match, biases are zero, and the loss at α = 0.5 is the same ({a:.4f}) for the "
            "network and its ×10/÷10 rescaled twin")


# --------------------------------------------------------------------------------------------- 10. power iteration
def tiny_hessian_problem():
    """A 5 → 8 → 3 tanh MLP in float64 (seed 10) with 40 examples and cross-entropy: small enough for an exact Hessian."""
    with _seeded(10):
        net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    gen = torch.Generator().manual_seed(10)
    data = (torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (40,), generator=gen))
    return net, F.cross_entropy, data


def top_eigenvalue_reference(model, loss_fn, data) -> float:
    """The eigenvalue of largest magnitude of :func:`exact_hessian` (signed)."""
    ev = torch.linalg.eigvalsh(exact_hessian(model, loss_fn, data))
    return ev[ev.abs().argmax()].item()


@checker
def power_iteration(top_eigenvalue) -> str:
    """Exercise 10: ``top_eigenvalue(model, loss_fn, data, iters) -> float`` by power iteration on Hessian-vector
    products, against the eigenvalues of the exact Hessian of a tiny float64 network."""
    net, loss_fn, data = tiny_hessian_problem()
    before = [p.detach().clone() for p in net.parameters()]
    got = _number(_call(top_eigenvalue, net, loss_fn, data, 300), "top_eigenvalue(...)")
    if any(not torch.equal(a, b) for a, b in zip(before, net.parameters())):
        raise Fail("the model's parameters changed: power iteration must only read them")
    ev = torch.linalg.eigvalsh(exact_hessian(net, loss_fn, data))
    want = ev[ev.abs().argmax()].item()
    if _close(got, want, rel=1e-3):
        return f"λ_max = {got:.5g}, the exact Hessian's is {want:.5g}"
    hint = ""
    if _close(got, ev.sum().item(), rel=1e-2):
        hint = " (that is the trace, the sum of all eigenvalues)"
    elif any(_close(got, e, rel=1e-3) for e in ev.tolist()):
        hint = " (that is another eigenvalue: did the iteration run long enough from a random start?)"
    raise Fail(f"top eigenvalue {got:.5g}, exact {want:.5g} (off by {100 * (got / want - 1):+.2f}%){hint}; "
               "hint: normalise v each iteration and return the Rayleigh quotient vᵀHv with ‖v‖ = 1")


# --------------------------------------------------------------------------------------------- 11. checkpointing
def deep_relu_mlp(layers: int, width: int = CHECKPOINT_SETUP["width"]) -> nn.Sequential:
    """``layers`` blocks of Linear(width, width) → ReLU (seed 11)."""
    with _seeded(11):
        return nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width), nn.ReLU())])


def count_saved_reference(forward: Callable[[], torch.Tensor], params) -> int:
    """Distinct tensors (by storage) that autograd saves for backward while ``forward()`` runs, parameters excluded."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: set[int] = set()

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen.add(ptr)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return len(seen)


def checkpoint_counts(layers: int = CHECKPOINT_SETUP["layers"], segments: int = CHECKPOINT_SETUP["segments"]):
    """Saved activations of :func:`deep_relu_mlp` without and with ``checkpoint_sequential(segments)``."""
    from torch.utils.checkpoint import checkpoint_sequential

    net = deep_relu_mlp(layers)
    x = torch.randn(CHECKPOINT_SETUP["batch"], CHECKPOINT_SETUP["width"], requires_grad=True)
    plain = count_saved_reference(lambda: net(x), net.parameters())
    ckpt = count_saved_reference(lambda: checkpoint_sequential(net, segments, x, use_reentrant=False),
                                 net.parameters())
    return plain, ckpt


@checker
def checkpoint_memory(count_saved, saved_plain, saved_checkpointed) -> str:
    """Exercise 11: ``count_saved(model, x) -> int`` distinct saved activations (parameters excluded), and the
    counts for :data:`CHECKPOINT_SETUP` without and with ``checkpoint_sequential``."""
    for layers in (2, 5):
        net = deep_relu_mlp(layers, width=32)
        x = torch.randn(8, 32, requires_grad=True)
        want = count_saved_reference(lambda: net(x), net.parameters())
        got = _call(count_saved, net, x)
        if not isinstance(got, int) or isinstance(got, bool):
            raise Fail(f"count_saved should return an int, got {type(got).__name__}")
        if got != want:
            once = "a ReLU's output is also the next Linear's input: count each storage once (t.untyped_storage().data_ptr())"
            skip = "skip parameters: Linear saves its weight too, for the input's gradient"
            hint = {2 * layers: f" (hint: {once})", want + layers: f" (hint: {skip})",
                    3 * layers: f" (hint: {once}; and {skip})"}.get(got, "")
            raise Fail(f"{layers} Linear+ReLU blocks save {want} distinct activations, you counted {got}{hint}")
    plain, ckpt = checkpoint_counts()
    for name, value, want in (("saved_plain", saved_plain, plain), ("saved_checkpointed", saved_checkpointed, ckpt)):
        if int(_number(value, name)) != want:
            raise Fail(f"{name} = {value}, expected {want} for {CHECKPOINT_SETUP['layers']} layers "
                       f"(segments = {CHECKPOINT_SETUP['segments']})")
    return f"count_saved is right; {plain} saved activations without checkpointing, {ckpt} with it"


# --------------------------------------------------------------------------------------------- 12. grokking
def modular_addition_data(p: int = GROKKING_SETUP["p"], train_fraction: float = GROKKING_SETUP["train_fraction"],
                          seed: int = GROKKING_SETUP["seed"]):
    """All pairs ``(a, b)`` with label ``(a + b) mod p``, split at random: ``((X_tr, y_tr), (X_val, y_val))``.

    ``X`` is int64 ``[N, 2]`` (the two operands), ``y`` int64 ``[N]``: the chapter's
    :func:`dldna_lite.stories.modular_addition` with this exercise's defaults.
    """
    return stories.modular_addition(p, train_fraction, seed)


class ModularAdditionMLP(stories.ModularMLP):
    """The chapter's :class:`dldna_lite.stories.ModularMLP` with this exercise's ``p`` as default.

    ``[N, 2]`` int64 operands → ``[N, p]`` logits.
    """

    def __init__(self, p: int = GROKKING_SETUP["p"], dim: int = 64, width: int = 128):
        super().__init__(p, dim, width)


@checker
def grokking_weight_decay(val_acc_wd, val_acc_no_wd, grokked_without_wd) -> str:
    """Exercise 12: validation accuracies after :data:`GROKKING_SETUP` with weight decay 1 and 0, and the answer
    to "did the network generalise without weight decay?" (``True``/``False``)."""
    chance = 1 / GROKKING_SETUP["p"]
    acc_wd, acc_no = _number(val_acc_wd, "val_acc_wd"), _number(val_acc_no_wd, "val_acc_no_wd")
    for name, acc in (("val_acc_wd", acc_wd), ("val_acc_no_wd", acc_no)):
        if not 0 <= acc <= 1:
            raise Fail(f"{name} = {acc:.4g}: give the accuracy as a fraction in [0, 1]")
    if acc_wd < 0.9:
        raise Fail(f"val_acc_wd = {acc_wd:.3f}: with weight decay 1 the network should generalise (> 0.9) within "
                   f"{GROKKING_SETUP['steps']} full-batch AdamW steps; check lr = {GROKKING_SETUP['lr']}, betas "
                   "(0.9, 0.98) and that you evaluate on the validation split")
    if acc_no > 0.5:
        raise Fail(f"val_acc_no_wd = {acc_no:.3f}: did you really set weight_decay=0 (AdamW's default is 0.01)?")
    if grokked_without_wd is None or not isinstance(grokked_without_wd, bool):
        raise Fail("set grokked_without_wd to True or False")
    if grokked_without_wd:
        raise Fail(f"your own numbers say otherwise: {acc_no:.3f} without weight decay vs {acc_wd:.3f} with it")
    return (f"with weight decay the validation accuracy reaches {acc_wd:.3f}; without it, {acc_no:.3f} "
            f"(chance {chance:.3f}): here weight decay is what makes the network generalise")


# --------------------------------------------------------------------------------------------- 13. double descent
_DD_CACHE: dict = {}


def double_descent_data():
    """Random ReLU features of :data:`DOUBLE_DESCENT_SETUP`: ``(F_train [n_train, K], y_train, F_test [n_test, K],
    y_test)`` with ``F = relu((X − mean_train) @ W)``, ``W ~ N(0, 1/784)`` of shape ``[784, K]``, float64.

    The first ``k`` columns are the features of a model with ``k`` random features.
    """
    if "data" not in _DD_CACHE:
        from .data import load_fashion_mnist

        s = DOUBLE_DESCENT_SETUP
        X_tr, y_tr = load_fashion_mnist("train", limit=s["n_train"], flatten=True)
        X_te, y_te = load_fashion_mnist("test", limit=s["n_test"], flatten=True)
        W, mean = stories.random_features(X_tr, s["max_features"], generator=torch.Generator().manual_seed(s["seed"]))
        _DD_CACHE["data"] = (stories.apply_features(X_tr, W, mean), y_tr, stories.apply_features(X_te, W, mean), y_te)
    return tuple(t.clone() for t in _DD_CACHE["data"])


def double_descent_reference(k: int) -> float:
    """Test error of the minimum-norm least-squares fit (one-hot targets) on the first ``k`` random features."""
    F_tr, y_tr, F_te, y_te = double_descent_data()
    B = stories.min_norm_fit(F_tr[:, :k], F.one_hot(y_tr, 10).double())
    return (F_te[:, :k] @ B).argmax(1).ne(y_te).double().mean().item()


@checker
def double_descent(test_error, k_peak) -> str:
    """Exercise 13: ``test_error(k) -> float`` of the minimum-norm least-squares fit on ``k`` random features, and
    ``k_peak``, the number of features with the worst test error."""
    n = DOUBLE_DESCENT_SETUP["n_train"]
    for k in (50, 1000):  # away from the peak, where the fit is well conditioned
        got, want = _number(_call(test_error, k), f"test_error({k})"), double_descent_reference(k)
        if abs(got - want) > 0.01:
            hint = ""
            if k > n:
                hint = (" (hint: with more features than examples there are many exact fits; least squares "
                        "must return the one of minimum norm, e.g. torch.linalg.lstsq(..., driver='gelsd') or pinv)")
            raise Fail(f"test_error({k}) = {got:.3f}, expected {want:.3f}{hint}")
    k_peak = int(_number(k_peak, "k_peak"))
    errors = {k: double_descent_reference(k) for k in DOUBLE_DESCENT_SETUP["features"]}
    worst = max(errors, key=errors.get)
    if k_peak != worst:
        best = min(errors, key=errors.get)
        hint = " (that is the *best* k)" if k_peak == best else ""
        raise Fail(f"k_peak = {k_peak}{hint}: the test error is worst at k = {worst} "
                   f"({errors[worst]:.3f}); compare with the number of training examples")
    return (f"the test error peaks at k = {worst} features (n_train = {n}) at {errors[worst]:.3f} and falls again "
            f"to {errors[max(errors)]:.3f} at k = {max(errors)}")


# --------------------------------------------------------------------------------------------- the namespace
class _Check:
    """All checkers as attributes: ``check.adam_step(adam_step)``. ``dir(check)`` lists them."""

    def __getattr__(self, name: str):
        if name in CHECKERS:
            return CHECKERS[name]
        raise AttributeError(f"no checker {name!r}; available: {', '.join(sorted(CHECKERS))}")

    def __dir__(self):
        return sorted(CHECKERS)

    def __repr__(self) -> str:
        return f"<exercise checks: {', '.join(sorted(CHECKERS))}>"


check = _Check()

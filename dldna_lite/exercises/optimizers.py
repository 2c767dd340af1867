"""Checkers of ``exercises/02-optimizers``: SGD by hand, GD's stability bound, Adam's and Lion's steps, Rosenbrock.

References: autograd for the SGD steps, the closed form ``x_k = (I − ηA)^k x0`` and ``2/λ_max`` for GD on a
quadratic, ``torch.optim.Adam`` for Adam, Lion's paper (checked against ``lion_pytorch`` in the tests) for Lion,
and ``torch.optim`` paths on the Rosenbrock function for ``optimize_rosenbrock``.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import torch

from .. import surfaces
from . import Fail, _call, _close, _number, _tensor, checker

# --------------------------------------------------------------------------------------------- the problems
#: Exercise 1: one weight, one example, L(w) = ½ (w·x − y)², plain SGD with learning rate ``lr`` from ``w0``.
SGD_PROBLEM = dict(x=2.0, y=4.0, w0=0.5, lr=0.1)
#: Exercise 2: f(x) = ½ xᵀ A x with eigenvalues 6 and 1, started at ``QUADRATIC_X0``.
QUADRATIC_A = torch.tensor([[5.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
QUADRATIC_X0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
#: Exercise 3: Adam's hyperparameters in the check (float64, 10 steps of given gradients).
ADAM_HPARAMS = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
#: Exercise 4: Lion's hyperparameters in the check.
LION_HPARAMS = dict(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)
#: Exercise 5: Rosenbrock f(x, y) = (1 − x)² + 100 (y − x²)², minimum at (1, 1).
ROSENBROCK_START = (-1.5, 2.0)
ROSENBROCK_MIN = (1.0, 1.0)
ROSENBROCK_ADAM = dict(lr=0.05, steps=500)  # the run whose final distance exercise 5 asks for


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


def _sgd_hint(k: int, got: float) -> str:
    p = SGD_PROBLEM
    g = (p["w0"] * p["x"] - p["y"]) * p["x"]
    if k == 2:
        return " (hint: the second gradient is taken at w1, not at w0)"
    for wrong, hint in ((p["w0"] + p["lr"] * g, "you stepped *up* the gradient; SGD subtracts lr·∂L/∂w"),
                        (p["w0"] - 2 * p["lr"] * g, "your step is twice too long: the ½ in L cancels the 2 of the "
                                                    "square's derivative"),
                        (p["w0"] - p["lr"] * (p["w0"] * p["x"] - p["y"]), "∂L/∂w = (w·x − y)·x: the chain rule "
                                                                          "brings a factor x")):
        if _close(got, wrong, rel=1e-4):
            return f" (hint: {hint})"
    return ""


@checker
def sgd_by_hand(w1, w2) -> str:
    """Exercise 1: the weight after one (``w1``) and two (``w2``) SGD updates on :data:`SGD_PROBLEM`.

    A pen-and-paper exercise: the answer *is* the number, checked to 1e-4 against autograd.
    """
    ref = sgd_by_hand_reference(2)
    for k, (got, want) in enumerate(zip((_number(w1, "w1"), _number(w2, "w2")), ref), start=1):
        if not _close(got, want, rel=1e-4):
            raise Fail(f"w{k} = {got:.6g} is off by {got - want:+.4g}{_sgd_hint(k, got)}")
    return f"w1 = {ref[0]:.4g}, w2 = {ref[1]:.4g}"


# --------------------------------------------------------------------------------------------- 2. GD on a quadratic
def gd_reference(A: torch.Tensor, x0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Closed form of GD on ½xᵀAx: x_k = (I − lr·A)^k x0, stacked ``[steps + 1, n]``."""
    M = torch.eye(len(A), dtype=A.dtype) - lr * A
    xs = [x0]
    for _ in range(steps):
        xs.append(M @ xs[-1])
    return torch.stack(xs)


def _other_quadratic() -> tuple[torch.Tensor, torch.Tensor]:
    """A random 3×3 SPD matrix (seed 2, λ_max ≈ 4.2) and start: the check's second problem."""
    g = torch.Generator().manual_seed(2)
    Q = torch.randn(3, 3, generator=g, dtype=torch.float64)
    return Q @ Q.T + 0.5 * torch.eye(3, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)


def _check_gd(gd) -> None:
    A, x0 = _other_quadratic()
    for lr, steps in ((0.05, 5), (0.4, 3)):
        want = gd_reference(A, x0, lr, steps)
        got = _call(gd, A.clone(), x0.clone(), lr, steps)
        if isinstance(got, torch.Tensor) and got.shape == (steps, 3):
            raise Fail(f"gd returned {steps} rows for steps={steps}: include x0 as row 0, so there are steps + 1")
        got = _tensor(got, "gd(...)", (steps + 1, 3)).to(torch.float64)
        if not torch.allclose(got[0], x0):
            raise Fail("row 0 of gd's result should be x0" + (
                " (hint: `x -= ...` changes x0 in place; write x = x - lr * (A @ x))"
                if torch.allclose(got[0], got[-1]) else ""))
        bad = (got - want).abs().amax(1) > 1e-6 * max(1.0, want.abs().max().item())  # one threshold, no IndexError
        if bad.any():
            k = int(bad.nonzero()[0, 0])
            raise Fail(f"with lr = {lr}, iterate {k} differs from x_k = (I − lr·A)^k x0 by up to "
                       f"{(got - want).abs().max().item():.3g} (hint: ∇f(x) = A x for symmetric A)")


# The answer is judged by its consequence, GD on that A from that x0 (the closed form, float64) over LR_HORIZON steps:
# it must converge at lr (‖x‖ shrinks by a measurable factor per step over the second half of the run) and diverge
# at lr × (1 + LR_ABOVE) (‖x‖ grows). So the window is [2/λ_max / (1 + LR_ABOVE), 2/λ_max): a bisection on "did not
# blow up in 100 steps" (1.01 × 2/λ_max) diverges at its answer, and one on "shrinks 1000× in 100 steps" (3.5% below)
# still converges 2% above. The solution (bisection on "shrinks 1000× in 1000 steps") sits 0.34% below the bound on
# both of the check's problems, and 0.18%-0.34% below over random SPD matrices and starts of seeds 0-19 (3×3 to 6×6).
LR_HORIZON, LR_ABOVE = 4000, 0.02


def gd_growth(A: torch.Tensor, x0: torch.Tensor, lr: float, steps: int = LR_HORIZON) -> float:
    """Per-step growth factor of ‖x_k‖ over the second half of ``steps`` steps of GD on ½xᵀAx from ``x0`` (renormalised
    each step, so that a divergent run never overflows): < 1 converges, > 1 diverges."""
    M = torch.eye(len(A), dtype=torch.float64) - lr * A.double()
    x, log_norm = x0.double() / x0.double().norm(), 0.0
    for k in range(steps):
        x = M @ x
        n = x.norm().item()
        if n == 0:  # an exact zero (lr = 1/λ on a 1-d problem): converged
            return 0.0
        log_norm, x = log_norm + (math.log(n) if k >= steps // 2 else 0.0), x / n
    return math.exp(log_norm / (steps - steps // 2))


def _check_lr_max(find_lr_max, A, x0, which: str) -> float:
    lam = torch.linalg.eigvalsh(A)
    bound, got = 2 / lam.max().item(), _number(_call(find_lr_max, A.clone(), x0.clone()), f"find_lr_max({which})")
    at, above = gd_growth(A, x0, got), gd_growth(A, x0, got * (1 + LR_ABOVE))
    where = f"find_lr_max({which}) = {got:.6g} (2/λ_max = {bound:.6g})"
    if got > 0 and at < 1 - 1e-9 and above > 1:
        return got
    if at >= 1 - 1e-9:
        growth = "stays the same size (it oscillates forever)" if abs(at - 1) <= 1e-9 else f"grows ×{at:.4g} per step"
        raise Fail(f"{where}: GD at your learning rate does not converge: over {LR_HORIZON} steps ‖x‖ {growth}; "
                   "hint: a run that has not blown up after a few hundred steps may still diverge slowly: call a "
                   "run convergent when ‖x_k‖ keeps shrinking over many steps (bisect on that)")
    if _close(got, 1 / lam.max().item(), rel=1e-2):
        raise Fail(f"{where}: you found 1/λ_max; above it GD still converges (it oscillates, |1 − lr·λ| < 1)")
    raise Fail(f"{where}: GD still converges at {1 + LR_ABOVE:g} × your learning rate (‖x‖ shrinks ×{above:.4g} per "
               "step): your lr_max is too small; near the bound |1 − lr·λ_max| ≈ 1 and GD converges slowly: run "
               "more steps, or a finer bisection (hint: bisect on lr, with gd(A, x0, lr, steps) from *this* A and x0)")


@checker
def gd_quadratic(gd, find_lr_max) -> str:
    """Exercise 2: ``gd(A, x0, lr, steps) -> [steps + 1, n]`` iterates (checked against the closed form) and
    ``find_lr_max(A, x0) -> float``, the largest convergent learning rate found numerically, run by the check on
    :data:`QUADRATIC_A` and on a second matrix (a typed number cannot fit both) and judged by its consequence: GD
    converges at the answer and diverges :data:`LR_ABOVE` above it, over :data:`LR_HORIZON` steps."""
    _check_gd(gd)
    if not callable(find_lr_max):
        raise Fail("hand in your function find_lr_max(A, x0), not a number: the check runs it on two matrices")
    mine = _check_lr_max(find_lr_max, QUADRATIC_A, QUADRATIC_X0, "QUADRATIC_A, QUADRATIC_X0")
    _check_lr_max(find_lr_max, *_other_quadratic(), "another A, x0")
    bound = 2 / torch.linalg.eigvalsh(QUADRATIC_A).max().item()
    return (f"gd matches the closed form; GD converges at lr_max = {mine:.4g} and diverges {100 * LR_ABOVE:g}% above "
            f"it (2/λ_max = {bound:.4g}), over {LR_HORIZON} steps, on QUADRATIC_A and on a second matrix")


# --------------------------------------------------------------------------------------------- 3. Adam
def _adam_variant(p, g, m, v, t, lr, beta1, beta2, eps, variant="adam"):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    if variant == "no_bias_correction":
        return p - lr * m / (v.sqrt() + eps), m, v
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    if variant == "eps_inside":
        return p - lr * m_hat / (v_hat + eps).sqrt(), m, v
    return p - lr * m_hat / (v_hat.sqrt() + eps), m, v


def _adam_trajectory(step_fn, grads, p0) -> list[torch.Tensor]:
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    out = []
    for t, g in enumerate(grads, start=1):
        res = _call(step_fn, p.clone(), g.clone(), m.clone(), v.clone(), t, **ADAM_HPARAMS)
        if not (isinstance(res, (tuple, list)) and len(res) == 3):
            raise Fail("adam_step should return a tuple (new_param, new_m, new_v)")
        p, m, v = (_tensor(r, f"adam_step's output {i}", p0.shape).to(p0.dtype) for i, r in enumerate(res))
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


def _adam_hint(first: torch.Tensor, p0, g0) -> str:
    for variant, text in (("no_bias_correction", "bias correction is missing: divide m by (1 − β1^t) and v by "
                                                 "(1 − β2^t)"),
                          ("eps_inside", "eps belongs outside the square root: √v̂ + eps")):
        alt = _adam_variant(p0, g0, torch.zeros_like(p0), torch.zeros_like(p0), 1, **ADAM_HPARAMS, variant=variant)
        if torch.allclose(first, alt[0], rtol=1e-9, atol=1e-12):
            return f" (hint: {text})"
    return ""


@checker
def adam_step(adam_step) -> str:
    """Exercise 3: ``adam_step(param, grad, m, v, t, lr, beta1, beta2, eps) -> (param, m, v)``, t = 1, 2, ...

    Compared with ``torch.optim.Adam`` over 10 steps of given float64 gradients (some of them small, so that a
    misplaced ``eps`` shows); the new ``m`` and ``v`` are fed back, so returning stale moments fails at step 2.
    """
    gen = torch.Generator().manual_seed(4)
    p0 = torch.randn(7, generator=gen, dtype=torch.float64)
    scales = torch.logspace(-4, 0, 7, dtype=torch.float64)
    grads = [torch.randn(7, generator=gen, dtype=torch.float64) * scales for _ in range(10)]
    want = adam_torch_trajectory(grads, p0)
    got = _adam_trajectory(adam_step, grads, p0)
    for t, (a, b) in enumerate(zip(got, want), start=1):
        if not torch.allclose(a, b, rtol=1e-9, atol=1e-12):
            raise Fail(f"after step {t} your parameters differ from torch.optim.Adam by up to "
                       f"{(a - b).abs().max().item():.3g}{_adam_hint(got[0], p0, grads[0])}")
    return "10 steps match torch.optim.Adam to 1e-9 (float64)"


# --------------------------------------------------------------------------------------------- 4. Lion
def lion_reference(p, g, m, lr, beta1, beta2, weight_decay):
    """One step of Lion (Chen et al. 2023), decoupled weight decay: returns ``(param, m)``."""
    c = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * weight_decay) - lr * torch.sign(c)
    return p, beta2 * m + (1 - beta2) * g


def _lion_fail(t, p, m, rp, rm, sp) -> Fail:
    def close(a, b):
        return torch.allclose(a, b, rtol=1e-9, atol=1e-12)

    hint = ""
    if close(p, sp):
        hint = (" (hint: this is the simplified update with m_t = c_t; Lion keeps a slower momentum "
                "m_t = β2·m + (1 − β2)·g and uses β1 only for the sign's interpolation c_t)")
    elif t == 1:
        hint = " (hint: c = β1·m + (1 − β1)·g; w ← w·(1 − lr·wd) − lr·sign(c); then m ← β2·m + (1 − β2)·g)"
    which = "parameters" if not close(p, rp) else "momentum m"
    err = max((p - rp).abs().max().item(), (m - rm).abs().max().item())
    return Fail(f"after step {t} your {which} differ from Lion's by up to {err:.3g}{hint}")


# Steps of known |Δθ_i| / lr: plain SGD (|g_i|); a sign step, decay 0.5 unless told otherwise (1 if weight_decay=0).
def _sgd_probe(p, g, m, lr, beta1=0.9, beta2=0.99, weight_decay=0.0):
    return p * (1 - lr * weight_decay) - lr * g, m


def _decaying_sign_probe(p, g, m, lr, beta1=0.9, beta2=0.99, weight_decay=0.5):
    return p * (1 - lr * weight_decay) - lr * torch.sign(g), m


def _ratios(update_over_lr, step, p, g, lr: float, what: str) -> torch.Tensor:
    got = _call(update_over_lr, step, p.clone(), g.clone(), lr)
    if isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.dim() == 0):
        raise Fail(f"update_over_lr returns one number; return one ratio per coordinate (a tensor of the shape of "
                   f"param): the check compares them coordinate by coordinate ({what})")
    return _tensor(got, f"update_over_lr({what})", p.shape).to(torch.float64)


def _check_update_over_lr(update_over_lr, lion_step) -> None:
    if not callable(update_over_lr):
        raise Fail("hand in your function update_over_lr(step, param, grad, lr), not a number: the check runs it on "
                   "steps whose answer it knows, and on your lion_step")
    gen = torch.Generator().manual_seed(7)
    p, g = (torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(2))
    lr = 3e-3
    if not torch.allclose(_ratios(update_over_lr, _sgd_probe, p, g, lr, "an SGD step"), g.abs(), rtol=1e-6, atol=1e-9):
        raise Fail("on a plain SGD step (where |Δθ_i| / lr = |g_i|) update_over_lr does not return |g_i|: take one "
                   "step of the `step` you are given, new, _ = step(param, grad, torch.zeros_like(param), lr=lr, "
                   "weight_decay=0.0), and return (new - param).abs() / lr")
    if not torch.allclose(_ratios(update_over_lr, _decaying_sign_probe, p, g, lr, "a sign step"),
                          torch.ones_like(p), rtol=1e-6):
        raise Fail("on a sign step with weight decay update_over_lr does not return 1 everywhere: call the step "
                   "with weight_decay=0.0")
    mine = _ratios(update_over_lr, lion_step, p, g, lr, "your lion_step")
    if not torch.allclose(mine, torch.ones_like(mine), rtol=1e-6):
        raise Fail(f"update_over_lr on your lion_step gives ratios from {mine.min().item():.4g} to "
                   f"{mine.max().item():.4g}, not 1 in every coordinate")


@checker
def lion_step(lion_step, update_over_lr) -> str:
    """Exercise 4: ``lion_step(param, grad, m, lr, beta1, beta2, weight_decay) -> (param, m)`` over 10 steps, and
    ``update_over_lr(step, param, grad, lr)``, which measures |Δθ_i| / lr of one ``step`` (from m = 0, with
    ``weight_decay=0``) coordinate by coordinate. A typed ratio is not an answer: the check runs ``update_over_lr`` on
    steps whose ratios it knows (plain SGD: |g_i|) and then on the student's ``lion_step`` (1 everywhere)."""
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
        p, m = (_tensor(r, "lion_step's output", p0.shape).to(p0.dtype) for r in res)
        rp, rm = lion_reference(rp, g, rm, **LION_HPARAMS)
        sp, sm = lion_reference(sp, g, sm, **{**LION_HPARAMS, "beta2": LION_HPARAMS["beta1"]})
        if not (torch.allclose(p, rp, rtol=1e-9, atol=1e-12) and torch.allclose(m, rm, rtol=1e-9, atol=1e-12)):
            raise _lion_fail(t, p, m, rp, rm, sp)
    _check_update_over_lr(update_over_lr, lion_step)
    return ("10 steps match Lion (decoupled weight decay); your update_over_lr measures an SGD step right and finds "
            "that Lion moves every coordinate by exactly lr")


# --------------------------------------------------------------------------------------------- 5. Rosenbrock
def rosenbrock(xy: torch.Tensor) -> torch.Tensor:
    """f(x, y) = (1 − x)² + 100 (y − x²)² for ``xy`` of shape ``[..., 2]`` (:func:`dldna_lite.surfaces.rosenbrock`)."""
    return surfaces.rosenbrock(xy[..., 0], xy[..., 1])


def rosenbrock_path_reference(make_optimizer: Callable, steps: int, start=ROSENBROCK_START,
                              accumulate: bool = False) -> torch.Tensor:
    """The optimizer's iterates on :func:`rosenbrock` from ``start``: ``[steps + 1, 2]`` (float64), by
    :func:`dldna_lite.surfaces.optimizer_path` (``accumulate``: without ``zero_grad``, the classic bug)."""
    path, _ = surfaces.optimizer_path(surfaces.rosenbrock, make_optimizer, start, steps, zero_grad=not accumulate)
    return torch.from_numpy(path)


#: The optimizers the check runs ``optimize_rosenbrock`` with: (name, factory, steps). Three different update rules,
#: so an ``optimize`` that ignores ``make_optimizer`` (or hard-codes the number of steps) cannot match them all.
ROSENBROCK_CASES = (
    ("SGD(lr=1e-3)", lambda ps: torch.optim.SGD(ps, lr=1e-3), 40),
    ("SGD(lr=1e-3, momentum=0.9)", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9), 60),
    (f"Adam(lr={ROSENBROCK_ADAM['lr']})", lambda ps: torch.optim.Adam(ps, lr=ROSENBROCK_ADAM["lr"]),
     ROSENBROCK_ADAM["steps"]),
)


@lru_cache(maxsize=None)
def _rosenbrock_reference(case: int, accumulate: bool = False) -> torch.Tensor:
    _, make, steps = ROSENBROCK_CASES[case]
    return rosenbrock_path_reference(make, steps, accumulate=accumulate)


def _path_hint(case: int, got: torch.Tensor, calls: list) -> str:
    def same(ref):
        return torch.allclose(got, ref, rtol=1e-4, atol=1e-5)

    if not calls:
        return " (hint: build the optimizer with make_optimizer([xy]); your function never called it)"
    if case > 0 and same(rosenbrock_path_reference(ROSENBROCK_CASES[0][1], len(got) - 1)):
        return " (hint: that is plain SGD's path: step with the optimizer that make_optimizer returns)"
    if same(_rosenbrock_reference(case, accumulate=True)):
        return " (hint: call optimizer.zero_grad() before backward(): gradients accumulate otherwise)"
    return ""


def _check_path(optimize, case: int) -> torch.Tensor:
    name, make, steps = ROSENBROCK_CASES[case]
    calls: list = []
    got = _call(optimize, lambda params: calls.append(params) or make(params), steps)
    if isinstance(got, torch.Tensor) and got.shape == (steps, 2):
        raise Fail(f"{steps} steps gave {steps} points: include the starting point, so there are steps + 1 rows")
    got = _tensor(got, f"optimize(<{name}>, {steps})", (steps + 1, 2))
    want = _rosenbrock_reference(case)
    if not torch.allclose(got[0].double(), want[0]):
        raise Fail(f"the path should start at ROSENBROCK_START = {ROSENBROCK_START}, got {got[0].tolist()}")
    if got.dtype != torch.float64:
        raise Fail(f"the path is {got.dtype}: start from a float64 tensor (dtype=torch.float64), as the task says")
    bad = (got - want).abs().amax(1) > 1e-5 + 1e-4 * want.abs().amax(1)
    if bad.any():
        k = int(bad.nonzero()[0, 0])
        raise Fail(f"with {name} your path leaves the reference at step {k} of {steps}{_path_hint(case, got, calls)}")
    return got


@checker
def rosenbrock_path(optimize_rosenbrock, distance_adam) -> str:
    """Exercise 5: ``optimize_rosenbrock(make_optimizer, steps) -> [steps + 1, 2]`` path from
    :data:`ROSENBROCK_START`, run with the three optimizers of :data:`ROSENBROCK_CASES` against ``torch.optim``'s
    paths, and ``distance_adam``, the final distance to the minimum of the :data:`ROSENBROCK_ADAM` run (compared with
    the distance of the path the student's own function produces)."""
    paths = [_check_path(optimize_rosenbrock, case) for case in range(len(ROSENBROCK_CASES))]
    mine = torch.linalg.vector_norm(paths[-1][-1] - torch.tensor(ROSENBROCK_MIN, dtype=torch.float64)).item()
    d = _number(distance_adam, "distance_adam")
    if not _close(d, mine, rel=1e-3):
        raise Fail(f"distance_adam = {d:.4g}, but your own Adam path ends {mine:.4g} from (1, 1) after "
                   f"{ROSENBROCK_ADAM['steps']} steps (hint: Euclidean distance of the last point to (1, 1))")
    return (f"the paths of {', '.join(c[0] for c in ROSENBROCK_CASES)} match torch.optim's; Adam ends "
            f"{mine:.3g} from the minimum")

"""Training dynamics: what to watch while a network trains, and how to steer it.

Chapter "Training dynamics". :func:`dldna_lite.train.train` with ``track_steps=True`` already records, per step
:math:`t`, the minibatch loss :math:`L_t`, the gradient norm :math:`\\lVert g_t \\rVert_2` (before clipping), the
parameter change :math:`\\lVert \\theta_{t+1} - \\theta_t \\rVert_2`, the weight norm :math:`\\lVert \\theta_{t+1}
\\rVert_2` and the learning rate. This module adds what the chapter needs on top:

* :func:`monitor` -- *Deep Learning DNA*'s five monitor curves as arrays (adding the loss improvement per step and the
  relative update size), and :func:`diagnose`, a small "training doctor" that names likely problems;
* :func:`clip_grad_norm_` / :func:`clip_grad_value_` -- gradient clipping written out (``torch.nn.utils`` is the
  reference);
* :func:`monitored_run` -- one seeded run of ``dl.fit(track_steps=True)``, optionally under a per-step learning
  rate from :mod:`dldna_lite.schedules` (the schedules, and the exponential learning rate of Li & Arora 2019);
* :func:`gd_with_sharpness` -- full-batch gradient descent that tracks the top Hessian eigenvalue (via
  :func:`dldna_lite.hessian.top_eigenvalues`, warm-started) for the edge of stability (Cohen et al. 2021);
* :func:`batch_size_sweep` -- large-batch training with and without the linear scaling rule (Goyal et al. 2017).

Devices (CONTRIBUTING.md): a function given a model computes on the model's device and moves the data there; a
function that builds its models (:func:`monitored_run`, :func:`batch_size_sweep`) takes ``device=``. Random draws
(batch order, Lanczos start vectors) are made on the CPU and moved, so a seed gives the same run on every device.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import hessian
from .config import seed_everything
from .schedules import lr_schedule, scheduler
from .train import History, evaluate, on_device_of, progress_enabled
from .train import train as fit

__all__ = ["monitor", "diagnose", "PROBLEMS", "clip_grad_norm_", "clip_grad_value_", "monitored_run", "half_mse",
           "eos_data", "gd_with_sharpness", "edge_plateau", "sharpness", "batch_size_sweep"]


# --- the monitor ---------------------------------------------------------------------------------------------------

def monitor(history: History) -> dict[str, np.ndarray]:
    """The monitor curves of a history recorded with ``track_steps=True``, as float arrays.

    Keys (``T`` = number of steps): ``step [T]`` (1-based), ``loss``, ``grad_norm``, ``param_change``,
    ``weight_norm``, ``lr`` ``[T]``; ``loss_improvement [T-1]`` = :math:`L_{t-1} - L_t` for ``t = 2..T`` (positive
    = the loss went down); ``relative_update [T]`` = :math:`\\lVert\\theta_{t+1} - \\theta_t\\rVert / \\lVert\\theta_{t+1}\\rVert`
    (the size of a step relative to the weights; around 1e-3 is the usual rule of thumb for a healthy SGD step).
    """
    missing = [k for k in ("grad_norm", "param_change", "weight_norm", "lr") if k not in history.steps]
    if missing:
        raise ValueError(f"history has no {', '.join(missing)}: train with track_steps=True")
    out = {k: np.asarray(history.steps[k], dtype=float) for k in ("loss", "grad_norm", "param_change",
                                                                   "weight_norm", "lr")}
    out["step"] = np.arange(1, len(out["loss"]) + 1)
    out["loss_improvement"] = out["loss"][:-1] - out["loss"][1:]
    with np.errstate(invalid="ignore", over="ignore"):   # a diverged run may end with inf weights
        out["relative_update"] = out["param_change"] / np.maximum(out["weight_norm"], 1e-30)
    return out


#: The problems :func:`diagnose` can name, in the order it checks them.
PROBLEMS = ("diverged", "exploding gradients", "lr too high", "plateau", "lr too small")


def _window_means(values: np.ndarray, n_windows: int) -> np.ndarray:
    """Means of ``n_windows`` consecutive, equally long chunks of ``values`` (the last few values may be dropped)."""
    width = max(1, len(values) // n_windows)
    usable = (len(values) // width) * width
    return values[:usable].reshape(-1, width).mean(1)


def diagnose(history: History, *, n_windows: int = 10, spike_factor: float = 10.0, rise: float = 0.1,
             plateau_tol: float = 0.01, small_update: float = 1e-3) -> list[tuple[str, str]]:
    """Name likely problems of a training run from its per-step history; ``[]`` means nothing looks wrong.

    Returns ``(problem, evidence)`` pairs, ``problem`` from :data:`PROBLEMS`. The loss is averaged over
    ``n_windows`` equal windows (minibatch noise cancels); with ``m_1..m_W`` those means and ``m_*`` their minimum:

    * **diverged** -- a non-finite loss (``history.diverged``), or ``m_W > 2 m_1`` (it blew up without reaching NaN);
    * **exploding gradients** -- a gradient norm above ``spike_factor`` times the median gradient norm;
    * **lr too high** -- the loss rose: some ``m_w > (1 + rise) m_{w-1}``, or ``m_W > (1 + rise) m_*``;
    * **plateau** -- the last third of the windows improved by less than ``plateau_tol`` (relative), while the
      median relative update :math:`\\lVert\\Delta\\theta\\rVert/\\lVert\\theta\\rVert` is not tiny;
    * **lr too small** -- the median relative update is below ``small_update`` and the loss fell by less than half
      (``m_W > m_1 / 2``): the weights barely move and little was learned.

    Gradient-based checks need ``track_steps=True``; without it only the loss rules run.
    """
    found: list[tuple[str, str]] = []
    if history.diverged:
        return [("diverged", f"the loss became non-finite at step {history.diverged_at}")]
    loss = np.asarray(history.steps["loss"], dtype=float)
    if len(loss) < 2 * n_windows:
        raise ValueError(f"diagnose needs at least {2 * n_windows} steps, the history has {len(loss)}")
    m = _window_means(loss, n_windows)
    if m[-1] > 2 * m[0]:
        return [("diverged", f"the mean loss grew from {m[0]:.3g} (first window) to {m[-1]:.3g} (last window)")]
    tracked = "grad_norm" in history.steps and len(history.steps["grad_norm"]) == len(loss)
    if tracked:
        mon = monitor(history)
        g = mon["grad_norm"]
        median = float(np.median(g))
        if g.max() > spike_factor * median:
            t = int(g.argmax()) + 1
            found.append(("exploding gradients", f"gradient norm {g.max():.3g} at step {t} is "
                                                 f"{g.max() / median:.0f}x the median {median:.3g}"))
    jumps = m[1:] / m[:-1] - 1
    if jumps.max() > rise or m[-1] > (1 + rise) * m.min():
        w = int(jumps.argmax()) + 2
        found.append(("lr too high", f"the windowed loss rose by {100 * max(jumps.max(), m[-1] / m.min() - 1):.0f}%"
                                     f" (largest jump into window {w} of {len(m)})"))
    rel_update = float(np.median(mon["relative_update"])) if tracked else None
    third = max(2, len(m) // 3)
    late = (m[-third] - m[-1]) / max(abs(m[-third]), 1e-12)
    tiny = rel_update is not None and rel_update < small_update and m[-1] > 0.5 * m[0]
    if late < plateau_tol and not tiny and not any(p == "lr too high" for p, _ in found):
        found.append(("plateau", f"the loss improved by {100 * late:.2f}% over the last {third} of {len(m)} windows"
                                 f" (stuck near {m[-1]:.3g})"))
    if tiny:
        found.append(("lr too small", f"median relative update |dθ|/|θ| = {rel_update:.1e} < {small_update:.0e}"))
    return found


# --- gradient clipping ---------------------------------------------------------------------------------------------

def clip_grad_norm_(params: Sequence[torch.Tensor] | Sequence[nn.Parameter], max_norm: float) -> float:
    """Rescale the gradients in place so that their global norm is at most ``max_norm``:

    :math:`g \\leftarrow g \\cdot \\min(1, c / \\lVert g \\rVert_2)`. The direction is kept. Returns the norm
    before clipping. (``torch.nn.utils.clip_grad_norm_`` adds ``1e-6`` to the denominator; this caps exactly.)
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if total > max_norm:
        torch._foreach_mul_(grads, (max_norm / total).item())
    return total.item()


def clip_grad_value_(params: Sequence[torch.Tensor] | Sequence[nn.Parameter], clip_value: float) -> None:
    """Clamp every gradient entry into :math:`[-c, c]` in place (the source's :math:`\\min(\\max(g, -c), c)`).

    Unlike norm clipping this changes the gradient's direction when some entries are clamped and others are not.
    """
    if clip_value <= 0:
        raise ValueError(f"clip_value must be positive, got {clip_value!r}")
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(-clip_value, clip_value)


# --- one monitored run ---------------------------------------------------------------------------------------------

def monitored_run(model_fn: Callable[[], nn.Module], train_data, *, optimizer_fn: Callable, epochs: int,
                  seed: int = 0, lrs: Sequence[float] | None = None, device: torch.device | str | None = None,
                  **fit_kw) -> tuple[nn.Module, History]:
    """One whole run: seed, build ``model_fn()`` (then ``.to(device)`` when ``device`` is given: the initial weights
    are drawn the same way on every device), train it on ``train_data = (X, y)`` (moved to the model's device) with
    ``optimizer_fn(params)`` for ``epochs`` via ``dl.fit(track_steps=True)`` (``fit_kw``: ``batch_size``,
    ``test_data``, clipping, ...).

    ``lrs`` (e.g. from :func:`dldna_lite.schedules.lr_schedule`) installs a per-step schedule. Returns
    ``(model, history)``; ``history.diverged_at`` says whether and where it diverged. Several seeds:
    ``dl.train.run_seeds(lambda seed: monitored_run(..., seed=seed), seeds)``.
    """
    seed_everything(seed)
    model = model_fn() if device is None else model_fn().to(device)
    opt = optimizer_fn([p for p in model.parameters() if p.requires_grad])
    sched = scheduler(opt, lrs) if lrs is not None else None
    history = fit(model, opt, train_data, epochs, track_steps=True, scheduler=sched, seed=seed, **fit_kw)
    return model, history


# --- the edge of stability -----------------------------------------------------------------------------------------

def half_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """:math:`\\frac{1}{2N}\\sum_i \\lVert f(x_i) - y_i \\rVert^2` for ``outputs, targets [N, C]`` (one-hot targets)."""
    return 0.5 * (outputs - targets).pow(2).sum(1).mean()


def eos_data(n: int, offset: int = 0, *, device: torch.device | str | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Fashion-MNIST training images ``[n, 784]`` (from ``offset``), centred per pixel and divided by the global
    std, with one-hot float targets ``[n, 10]`` -- Cohen et al.'s preprocessing, for :func:`half_mse`. Computed on the
    CPU (the same numbers everywhere), returned on ``device`` (default: the CPU)."""
    from .data import load_fashion_mnist

    X, y = load_fashion_mnist("train", limit=offset + n, flatten=True)
    X, y = X[offset:], y[offset:]
    X = X - X.mean(0)
    return (X / X.std()).to(device), F.one_hot(y, 10).to(X.dtype).to(device)


def sharpness(model: nn.Module, data, *, loss_fn: Callable = half_mse, max_iter: int = 100, tol: float = 1e-5,
              init=None, seed: int = 0):
    """Top Hessian eigenvalue :math:`\\lambda_{max}` of ``loss_fn`` on ``data`` (full batch) and its eigenvector,
    by :func:`dldna_lite.hessian.top_eigenvalues` (Lanczos; ``init`` = a previous eigenvector), on the model's device
    (``data`` is moved there; the random start is drawn on the CPU from ``seed`` and moved)."""
    data = on_device_of(model, data)
    values, vectors = hessian.top_eigenvalues(model, data, loss_fn=loss_fn, k=1, max_iter=max_iter, tol=tol,
                                              init=None if init is None else [init],
                                              generator=torch.Generator().manual_seed(seed))
    return values[0], vectors[0]


def _read_losses(losses: list[float], pending: list[torch.Tensor]) -> int | None:
    """The one host read of the losses waiting on the device: appended to ``losses``; the 1-based step of the first
    non-finite one (counting all of ``losses``), or ``None``."""
    start = len(losses)
    if pending:
        losses += torch.stack([t.reshape(()) for t in pending]).double().tolist()
    return next((start + i + 1 for i, v in enumerate(losses[start:]) if not math.isfinite(v)), None)


def gd_with_sharpness(model: nn.Module, data, lr: float, steps: int, *, every: int = 50, power_iters: int = 10,
                      loss_fn: Callable = half_mse, seed: int = 0, progress: bool | None = None) -> dict:
    """Full-batch gradient descent :math:`\\theta \\leftarrow \\theta - \\eta \\nabla L(\\theta)` for ``steps``
    steps, in place, measuring the sharpness every ``every`` steps.

    The sharpness is at most ``power_iters`` Hessian-vector products of Lanczos warm-started from the previous
    eigenvector (at least as accurate as that many power iterations from it; cheap, and accurate once the
    eigenvector moves slowly). Returns ``dict(lr, loss [T], sharp_step [K], sharpness [K], diverged_at,
    time)`` with numpy arrays; a non-finite loss stops the run (``diverged_at`` = its 1-based step, else ``None``).
    A live notebook shows a ``tqdm`` bar over the steps (``progress``, default ``$DLDNA_PROGRESS``). Runs on the
    model's device (``data`` is moved there once; the model is not moved).

    Host reads: the losses stay on the device and are read back once per sharpness measurement (and at the end),
    so a non-finite loss at step k is noticed at the next measurement (at most ``every`` steps later): ``loss``
    ends before step k and ``diverged_at`` = k, as an immediate stop would give, and no sharpness is measured at or
    after step k; the model itself went on to that point (its parameters may be non-finite).
    """
    if not (np.isfinite(lr) and lr > 0) or steps < 1 or every < 1:
        raise ValueError(f"need a finite lr > 0, steps >= 1 and every >= 1, got {lr!r}, {steps!r}, {every!r}")
    data = on_device_of(model, data)
    X, Y = data
    params = [p for p in model.parameters() if p.requires_grad]
    losses, pending, sharp_step, sharp, vec, diverged_at = [], [], [], [], None, None
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"gradient descent, lr {lr:.3g}", leave=False, disable=not progress_enabled(progress))
    for t in bar:
        loss = loss_fn(model(X), Y)
        pending.append(loss.detach())
        if t % every == 0:                  # at the same parameters as the loss; never at a non-finite loss
            diverged_at, pending = _read_losses(losses, pending), []
            if diverged_at is not None:
                break
            value, vec = sharpness(model, data, loss_fn=loss_fn, max_iter=power_iters, tol=1e-12, init=vec,
                                   seed=seed)
            sharp_step.append(t)
            sharp.append(value)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-lr)
    bar.close()
    if diverged_at is None:
        diverged_at = _read_losses(losses, pending)
    return dict(lr=lr, loss=np.array(losses[:diverged_at - 1] if diverged_at else losses),
                sharp_step=np.array(sharp_step), sharpness=np.array(sharp),
                diverged_at=diverged_at, time=time.perf_counter() - start)


def edge_plateau(run: dict, tail: float = 0.25) -> float:
    """Mean sharpness over the last ``tail`` fraction of the measurements of a :func:`gd_with_sharpness` run."""
    s = run["sharpness"]
    k = max(1, int(round(tail * len(s))))
    return float(np.mean(s[-k:]))


# --- large batches -------------------------------------------------------------------------------------------------

def batch_size_sweep(model_fn: Callable[[], nn.Module], train_data, test_data, batch_sizes: Sequence[int],
                     epochs: int, *, base_lr: float, base_batch: int, rule: str = "linear", warmup_epochs: float = 0.0,
                     momentum: float = 0.9, seed: int = 0, sharpness_data=None, sharpness_iters: int = 20,
                     device: torch.device | str | None = None) -> list[dict]:
    """Train one model per batch size for the same number of epochs (SGD with momentum), each built by
    ``model_fn()`` and put on ``device`` (default: where ``model_fn`` puts it); the data follow the model.

    ``rule="linear"``: :math:`\\eta = \\eta_0 \\cdot B / B_0` (Goyal et al. 2017), linearly warmed up over
    ``warmup_epochs`` epochs; ``rule="none"``: :math:`\\eta = \\eta_0` for every batch size. One row per batch size:
    ``batch_size, lr, steps, train_loss, train_acc, test_loss, test_acc`` (full-data evaluation after training),
    ``gap = test_loss - train_loss``, ``sharpness`` (top Hessian eigenvalue on ``sharpness_data`` if given),
    ``time`` and ``diverged_at`` (``None``, or the step where the loss became non-finite: the metrics are then
    ``None``; :func:`dldna_lite.train.describe_divergence` says it in words).
    """
    if rule not in ("linear", "none"):
        raise ValueError(f"unknown rule {rule!r}; choose one of linear, none")
    rows = []
    n = len(train_data[0])
    for b in batch_sizes:
        lr = base_lr * b / base_batch if rule == "linear" else base_lr
        steps_per_epoch = math.ceil(n / b)
        total = steps_per_epoch * epochs
        warm = int(round(warmup_epochs * steps_per_epoch))
        lrs = (lr_schedule("warmup_cosine", total, lr, warmup=warm, min_lr=lr) if 1 <= warm < total
               else lr_schedule("constant", total, lr))
        start = time.perf_counter()
        sgd = lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum)  # noqa: E731
        model, h = monitored_run(model_fn, train_data, optimizer_fn=sgd, epochs=epochs, seed=seed, lrs=lrs,
                                 batch_size=b, device=device)
        row = dict(batch_size=b, lr=lr, steps=len(h["loss"]), diverged_at=h.diverged_at)
        if h.diverged:
            row.update(train_loss=None, train_acc=None, test_loss=None, test_acc=None, gap=None, sharpness=None)
        else:
            row["train_loss"], row["train_acc"] = evaluate(model, train_data)
            row["test_loss"], row["test_acc"] = evaluate(model, test_data)
            row["gap"] = row["test_loss"] - row["train_loss"]
            row["sharpness"] = (sharpness(model, sharpness_data, loss_fn=F.cross_entropy, max_iter=sharpness_iters,
                                          tol=1e-3)[0] if sharpness_data is not None else None)
        row["time"] = time.perf_counter() - start
        rows.append(row)
    return rows

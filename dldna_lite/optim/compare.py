"""Fair optimizer comparisons on a classifier: a learning-rate sweep per optimizer, then seeds at the best rate."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import seed_everything
from ..train import train as fit
from . import OPTIMIZERS
from .sophia import GaussNewtonBartlett

#: The optimizers of the Fashion-MNIST comparison, in the order of the chapter.
LABELS = ("SGD", "SGD+momentum", "Adagrad", "RMSprop", "Adam", "AdamW", "Adafactor", "Lion", "Sophia")

#: Five learning rates per optimizer, a factor ~3 apart, centred on the usual default; :func:`lr_grid` picks n.
LR_GRIDS = {
    "SGD": (0.01, 0.03, 0.1, 0.3, 1.0), "SGD+momentum": (1e-3, 3e-3, 0.01, 0.03, 0.1),
    "Adagrad": (1e-3, 3e-3, 0.01, 0.03, 0.1), "RMSprop": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
    "Adam": (1e-4, 3e-4, 1e-3, 3e-3, 0.01), "AdamW": (1e-4, 3e-4, 1e-3, 3e-3, 0.01),
    "Adafactor": (1e-3, 3e-3, 0.01, 0.03, 0.1), "Lion": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
    "Sophia": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
}


def lr_grid(label: str, n: int = 5) -> tuple[float, ...]:
    """The ``n`` (1, 3 or 5) central learning rates of :data:`LR_GRIDS` for ``label``."""
    if n not in (1, 3, 5):
        raise ValueError(f"n must be 1, 3 or 5, got {n!r}")
    grid = LR_GRIDS[label]
    return grid[(5 - n) // 2:(5 + n) // 2]


def build_optimizer(label: str, model: nn.Module, lr: float, seed: int = 0):
    """The optimizer called ``label`` (one of :data:`LABELS`) on ``model``'s parameters at learning rate ``lr``.

    "SGD+momentum" is SGD with momentum 0.9; Sophia is SophiaG (Gauss-Newton-Bartlett estimate every 10 steps on
    the current minibatch, rho 0.04, weight decay 0.1 as in the paper's defaults). The rest use their defaults.
    """
    if label not in LABELS:
        raise ValueError(f"unknown optimizer {label!r}; choose one of {', '.join(LABELS)}")
    params = model.parameters()
    if label == "SGD+momentum":
        return OPTIMIZERS["SGD"](params, lr=lr, momentum=0.9)
    if label == "Sophia":
        estimator = GaussNewtonBartlett(model, generator=torch.Generator().manual_seed(seed))
        return OPTIMIZERS["Sophia"](params, lr=lr, estimator=estimator)
    return OPTIMIZERS[label](params, lr=lr)


def run(label: str, lr: float, model_fn: Callable[[], nn.Module], train_data, test_data, epochs: int,
        batch_size: int = 128, seed: int = 0) -> dict:
    """Train a fresh ``model_fn()`` (seeded) with one optimizer; return its history and what the chapter tabulates.

    Keys: ``history`` (:class:`~dldna_lite.train.History`, steps tracked), ``grad_norm`` (mean ‖∇L‖₂ per epoch),
    ``state_bytes`` (optimizer state after training), ``test_acc``/``test_loss`` (final, ``None`` if diverged),
    ``status`` ("ok" or "diverged at step k").
    """
    seed_everything(seed)
    model = model_fn()
    opt = build_optimizer(label, model, lr, seed)
    history = fit(model, opt, train_data, epochs, batch_size=batch_size, test_data=test_data, track_steps=True,
                  seed=seed, progress=False, desc=label)
    if hasattr(opt, "estimator") and opt.estimator is not None:
        opt.estimator.remove()
    per_epoch = math.ceil(len(train_data[0]) / batch_size)
    norms = np.asarray(history["grad_norm"], dtype=float)
    grad_norm = [float(norms[i:i + per_epoch].mean()) for i in range(0, len(norms) - per_epoch + 1, per_epoch)]
    return dict(label=label, lr=lr, seed=seed, history=history, grad_norm=grad_norm, state_bytes=opt.state_bytes(),
                test_acc=history.final("test_acc"), test_loss=history.final("test_loss"), status=history.status)


def lr_sweep(label: str, lrs: Sequence[float], model_fn, train_data, val_data, epochs: int, batch_size: int = 128,
             seed: int = 0) -> dict:
    """Run every learning rate in ``lrs``; return ``{"runs": {lr: run}, "best_lr": lr with the best validation
    accuracy}`` (validation data, not the test set, picks the rate). ``best_lr`` is ``None`` if all diverged."""
    runs = {lr: run(label, lr, model_fn, train_data, val_data, epochs, batch_size, seed) for lr in lrs}
    finished = {lr: r["test_acc"] for lr, r in runs.items() if r["test_acc"] is not None}
    return dict(runs=runs, best_lr=max(finished, key=finished.get) if finished else None)


def summarize(runs: Sequence[dict], key: str = "test_acc") -> str:
    """``"mean ± std"`` of ``key`` over seeds (``"x"`` for one seed). Runs that diverged are counted, never
    averaged: ``"diverged at step k"`` for a single run, else ``"2 of 3 seeds diverged (steps 4, 9); 0.8123 over
    the other 1"``."""
    bad = [r["status"] for r in runs if r[key] is None]
    values = np.array([r[key] for r in runs if r[key] is not None], dtype=float)
    if bad and len(runs) == 1:
        return bad[0]
    stats = ("" if not len(values) else f"{values.mean():.4f}" if len(values) == 1
             else f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
    if not bad:
        return stats
    steps = ", ".join(s.removeprefix("diverged at step ") for s in bad)
    text = f"{len(bad)} of {len(runs)} seeds diverged (step{'s' if len(bad) > 1 else ''} {steps})"
    return text + (f"; {stats} over the other {len(values)}" if len(values) else "")

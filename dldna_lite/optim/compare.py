"""Fair optimizer comparisons on a classifier (chapter 02): a learning-rate sweep per optimizer, then seeds at the best
rate (:func:`~dldna_lite.train.run_seeds`, summarized by :func:`~dldna_lite.train.mean_std`)."""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..config import device_of, seed_everything
from ..train import mean_std, run_seeds
from ..train import train as fit
from . import build, default_foreach

#: The optimizers of the Fashion-MNIST comparison, in the order of the chapter (names of :func:`~dldna_lite.optim.build`;
#: Sophia is SophiaG with the paper's defaults: a Gauss-Newton-Bartlett estimate every 10 steps on the current
#: minibatch, rho 0.04, weight decay 0.1).
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
    if label not in LR_GRIDS:
        raise ValueError(f"unknown optimizer label {label!r}; choose one of {', '.join(LR_GRIDS)}")
    grid = LR_GRIDS[label]
    return grid[(5 - n) // 2:(5 + n) // 2]


def run(label: str, lr: float, model_fn: Callable[[], nn.Module], train_data, test_data, epochs: int,
        batch_size: int = 128, seed: int = 0, *, foreach: bool | None = None) -> dict:
    """Train a fresh ``model_fn()`` (seeded) with one optimizer; return its history and what the chapter tabulates.
    The optimizer is the multi-tensor version of ``label`` (:mod:`~dldna_lite.optim.foreach`, the same numbers as
    the readable one) when ``foreach`` is true; ``None`` decides by the model's device and the optimizer
    (:func:`~dldna_lite.optim.default_foreach`: on CUDA always, on the CPU all but Adafactor).

    ``model_fn()`` builds the model on the device to train on (``lambda: net().to(device)``); the data are moved to
    that device by :func:`~dldna_lite.train.train` (batches are indices into the tensors, no data loader).

    Keys: ``history`` (:class:`~dldna_lite.train.History`, steps tracked), ``grad_norm`` (mean ‖∇L‖₂ per epoch),
    ``state_bytes`` (optimizer state after training), ``test_acc``/``test_loss`` (final, ``None`` if diverged),
    ``diverged_at`` (the step of the first non-finite loss, ``None`` if none).
    """
    seed_everything(seed)
    model = model_fn()
    foreach = default_foreach(device_of(model), label) if foreach is None else foreach
    opt = build(label, model.parameters(), lr, model=model, seed=seed, foreach=foreach)
    history = fit(model, opt, train_data, epochs, batch_size=batch_size, test_data=test_data, track_steps=True,
                  seed=seed, progress=False, desc=label)
    if hasattr(opt, "estimator") and opt.estimator is not None:
        opt.estimator.remove()
    per_epoch = math.ceil(len(train_data[0]) / batch_size)
    norms = np.asarray(history["grad_norm"], dtype=float)
    grad_norm = [float(norms[i:i + per_epoch].mean()) for i in range(0, len(norms) - per_epoch + 1, per_epoch)]
    return dict(label=label, lr=lr, seed=seed, history=history, grad_norm=grad_norm, state_bytes=opt.state_bytes(),
                test_acc=history.final("test_acc"), test_loss=history.final("test_loss"),
                diverged_at=history.diverged_at)


def state_memory(label: str, model: nn.Module, in_features: int = 784) -> int:
    """Bytes of optimizer state of ``label`` (:func:`~dldna_lite.optim.build`) after one step on a copy of ``model``
    (a dummy loss on a random batch of 8 inputs of ``in_features``, drawn on the CPU and moved to the model's device):
    what the chapter's memory table lists. The copy stays on the model's device."""
    model = copy.deepcopy(model)
    opt = build(label, model.parameters(), 1e-4, model=model)
    model(torch.randn(8, in_features).to(device_of(model))).logsumexp(1).mean().backward()
    opt.step()
    if getattr(opt, "estimator", None) is not None:
        opt.estimator.remove()
    return opt.state_bytes()


def lr_sweep(label: str, lrs: Sequence[float], model_fn, train_data, val_data, epochs: int, batch_size: int = 128,
             seed: int = 0) -> dict:
    """Run every learning rate in ``lrs``; return ``{"runs": {lr: run}, "best_lr": lr with the best validation
    accuracy}`` (validation data, not the test set, picks the rate). ``best_lr`` is ``None`` if all diverged."""
    if len(lrs) == 0:
        raise ValueError(f"lrs is empty: pass at least one learning rate, e.g. lrs=lr_grid({label!r})")
    runs = {lr: run(label, lr, model_fn, train_data, val_data, epochs, batch_size, seed) for lr in lrs}
    finished = {lr: r["test_acc"] for lr, r in runs.items() if r["test_acc"] is not None}
    return dict(runs=runs, best_lr=max(finished, key=finished.get) if finished else None)


def run_over_seeds(label: str, lr: float, model_fn, train_data, test_data, epochs: int, seeds: Sequence[int],
                   batch_size: int = 128) -> list[dict]:
    """:func:`run` once per seed (:func:`~dldna_lite.train.run_seeds`): the chapter's final comparison of ``label``."""
    return run_seeds(lambda seed: run(label, lr, model_fn, train_data, test_data, epochs, batch_size, seed), seeds,
                     progress=False, desc=label)


def summarize(runs: Sequence[dict], key: str = "test_acc", fmt: str = "{:.4f}") -> str:
    """:func:`~dldna_lite.train.mean_std` of ``key`` over the seeds' ``runs``: ``"mean ± std"`` (``"x"`` for one
    seed); runs that diverged are counted, never averaged (``"diverged at step k"`` for a single run, else
    ``"2 of 3 seeds diverged (steps 4, 9); 0.8123 over the other 1"``)."""
    return mean_std([r[key] for r in runs], [r["diverged_at"] for r in runs], fmt)

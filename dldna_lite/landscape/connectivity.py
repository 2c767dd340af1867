"""Are two trained networks in separate valleys? Mode connectivity along lines and Bezier curves (chapter 04).

:func:`bezier_point` and :func:`train_bezier` (Garipov et al. 2018, with ``torch.func.functional_call``),
:func:`path_metrics` (loss and accuracy along a curve) and :func:`barrier` (Frankle et al. 2020). Endpoints and the
control point are flat vectors ``[P]`` (:mod:`dldna_lite.landscape.flat`).

Devices: both functions compute on the model's device; the data, endpoints and control point they are given are
moved there (the model is not moved), and the batch order and the ``t``'s are drawn from a CPU generator, so a seed
gives the same draws on every device.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from ..config import device_of
from ..data import batches
from ..train import on_device_of
from .flat import param_dict

__all__ = ["bezier_point", "path_metrics", "train_bezier", "barrier"]


def _loss_acc(model: nn.Module, data, vector: torch.Tensor, loss_fn: Callable) -> tuple[float, float]:
    X, y = data
    out = functional_call(model, param_dict(model, vector), (X,))
    return loss_fn(out, y).item(), (out.argmax(1) == y).float().mean().item()


def bezier_point(w0: torch.Tensor, theta: torch.Tensor, w1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Quadratic Bezier curve ``(1-t)^2 w0 + 2t(1-t) theta + t^2 w1`` (Garipov et al. 2018, eq. 3); ``[P]``.

    With ``theta = (w0 + w1) / 2`` it is the straight segment ``(1-t) w0 + t w1``.
    """
    return (1 - t) ** 2 * w0 + 2 * t * (1 - t) * theta + t ** 2 * w1


def path_metrics(model: nn.Module, data, w0: torch.Tensor, theta: torch.Tensor, w1: torch.Tensor, ts, *,
                 loss_fn: Callable = F.cross_entropy) -> dict:
    """Loss and accuracy of ``model``'s architecture at ``bezier_point(w0, theta, w1, t)`` for each ``t`` in ``ts``.

    ``data = (X, y)`` is one full batch. Returns ``dict(t=[n], loss=[n], acc=[n])`` numpy arrays; ``model`` unchanged.
    Evaluated on the model's device (data and the three points moved there).
    """
    dev = device_of(model)
    data, (w0, theta, w1) = on_device_of(model, data), (w.to(dev) for w in (w0, theta, w1))
    losses, accs = [], []
    with torch.no_grad():
        for t in ts:
            loss, acc = _loss_acc(model, data, bezier_point(w0, theta, w1, float(t)), loss_fn)
            losses.append(loss)
            accs.append(acc)
    return dict(t=np.asarray(ts, dtype=float), loss=np.asarray(losses), acc=np.asarray(accs))


def train_bezier(model: nn.Module, data, w0: torch.Tensor, w1: torch.Tensor, *, epochs: int,
                 loss_fn: Callable = F.cross_entropy, lr: float = 0.05, momentum: float = 0.9, batch_size: int = 128,
                 seed: int = 0, optimizer_cls=None) -> dict:
    """Train the control point ``theta`` of a quadratic Bezier curve between fixed endpoints ``w0, w1`` ``[P]``.

    Minimises ``E_{t ~ U(0,1)} L(bezier_point(w0, theta, w1, t))`` on the training data ``data = (X, y)`` with SGD
    (momentum), one ``t`` per minibatch, evaluating ``model``'s architecture with ``torch.func.functional_call``.
    ``theta`` starts at the midpoint (the straight line); ``seed`` draws the batches and the ``t``'s.
    ``optimizer_cls`` defaults to :class:`dldna_lite.optim.SGD`. Returns ``dict(theta, losses, diverged_at)``:
    the control point, the loss of every step, and the 1-based step of the first non-finite loss (training stops
    there; ``theta`` is then the last finite one) or ``None``. ``model`` is unchanged. Training runs on the model's
    device: ``data``, ``w0`` and ``w1`` are moved there and ``theta`` is created there.
    """
    if optimizer_cls is None:
        from ..optim import SGD as optimizer_cls
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    dev = device_of(model)
    data, w0, w1 = on_device_of(model, data), w0.to(dev), w1.to(dev)
    theta = ((w0 + w1) / 2).clone().requires_grad_(True)
    opt = optimizer_cls([theta], lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        for xb, yb in batches(*data, batch_size, shuffle=True, generator=generator):
            t = torch.rand((), generator=generator).item()
            loss = loss_fn(functional_call(model, param_dict(model, bezier_point(w0, theta, w1, t)), (xb,)), yb)
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                return dict(theta=theta.detach(), losses=losses, diverged_at=len(losses))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return dict(theta=theta.detach(), losses=losses, diverged_at=None)


def barrier(losses, ts=None) -> float:
    """Loss barrier along a path: ``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` (Frankle et al. 2020).

    ``losses`` at increasing ``ts`` in [0, 1] (default: evenly spaced); first and last entries are the endpoints.
    It is 0 when the path is never above the chord between its endpoint losses, and it is what a straight line
    between two minima of a convex loss would give.
    """
    losses = np.asarray(losses, dtype=float)
    ts = np.linspace(0.0, 1.0, len(losses)) if ts is None else np.asarray(ts, dtype=float)
    if len(ts) != len(losses) or len(losses) < 2:
        raise ValueError(f"need >= 2 losses and as many ts, got {len(losses)} losses and {len(ts)} ts")
    chord = (1 - ts) * losses[0] + ts * losses[-1]
    return float(np.max(losses - chord))

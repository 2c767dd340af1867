"""Loss-landscape sightseeing: a plane on which the loss draws a chosen picture (chapter "Loss landscapes II").

Skorokhodov & Burtsev (2019) train a whole two-dimensional family of networks,
:math:`w(a, b) = w_0 + a\\,u + b\\,v`, with :math:`w_0, u, v` all trainable (*multi-point optimization*), so that the
loss at the points of a grid in :math:`(a, b)` matches a target picture: low loss on the picture's pixels, high loss
elsewhere. :func:`fit_pattern` does this for any model that :func:`torch.func.functional_call` can run, evaluating
all grid points at once with :func:`torch.func.vmap`; :func:`plane_losses` evaluates the trained plane on any grid;
:func:`pattern_agreement` says how much of the picture is drawn.

Devices: everything runs on the model's device (the data are moved there, the model is not); the random starting
directions ``u, v`` are drawn on the CPU from ``generator`` and then moved, so a seed gives the same start on every
device.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..config import device_of
from ..train import on_device_of, progress_enabled

__all__ = ["SMILEY", "PARTS", "fit_pattern", "plane_losses", "pattern_agreement", "pattern_coords"]

#: A 9 x 9 picture (1 = low loss); row 0 is the top row, as an image is shown.
SMILEY = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0],
                   [0, 0, 1, 0, 0, 0, 1, 0, 0],
                   [0, 0, 1, 0, 0, 0, 1, 0, 0],
                   [0, 0, 0, 0, 0, 0, 0, 0, 0],
                   [0, 0, 0, 0, 1, 0, 0, 0, 0],
                   [0, 0, 0, 0, 0, 0, 0, 0, 0],
                   [0, 1, 0, 0, 0, 0, 0, 1, 0],
                   [0, 0, 1, 1, 1, 1, 1, 0, 0],
                   [0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=bool)


def _plane_loss(model: nn.Module, data, loss_fn: Callable, w0: dict, u: dict, v: dict) -> Callable:
    """``loss(a, b)`` of the network ``w0 + a u + b v`` on ``data``, for :func:`torch.func.vmap`."""
    X, y = data

    def loss(a, b):
        params = {k: w0[k] + a * u[k] + b * v[k] for k in w0}
        return loss_fn(functional_call(model, params, (X,)), y)
    return loss


def pattern_coords(pattern: np.ndarray, span: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid coordinates ``(a, b)`` ``[rows * cols]`` of every pixel, on the CPU: column -> a, row -> b (row 0 at the
    top, b = +span), both in ``[-span, span]``."""
    rows, cols = pattern.shape
    b, a = torch.meshgrid(torch.linspace(span, -span, rows), torch.linspace(-span, span, cols), indexing="ij")
    return a.reshape(-1), b.reshape(-1)


def fit_pattern(model: nn.Module, data, pattern=SMILEY, *, loss_fn: Callable = F.cross_entropy,
                low: float = 0.5, high: float = 3.0, span: float = 1.0, steps: int = 300, lr: float = 3e-3,
                generator: torch.Generator | None = None, progress: bool | None = None) -> dict:
    """Train ``w0, u, v`` so that the loss at pixel ``(i, j)`` of ``pattern`` (a 2D boolean array) is ``low`` where
    the pixel is set and ``high`` elsewhere: Adam on the mean squared difference, all pixels in one batched pass.

    ``w0`` starts at the model's weights, ``u`` and ``v`` at Gaussian directions with the norm of each weight
    tensor (``generator``, a CPU generator, draws them on the CPU; they are then moved to the model's device).
    Returns ``w0``, ``u``, ``v`` (dicts of tensors on the model's device), the pattern, ``span``, ``low``, ``high``,
    the ``objective`` per step and ``losses`` (``[rows, cols]`` numpy, the loss at every pixel after training).
    ``model`` is unchanged (its weights are only the starting ``w0``).
    """
    pattern = np.asarray(pattern, dtype=bool)
    if pattern.ndim != 2 or pattern.all() or not pattern.any():
        raise ValueError(f"pattern must be a 2D boolean array with both values, got shape {pattern.shape}")
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
    dev, data = device_of(model), on_device_of(model, data)
    w0 = {k: p.detach().clone().requires_grad_() for k, p in model.named_parameters()}
    u, v = ({k: (torch.randn(p.shape, generator=generator, dtype=p.dtype).to(dev) * p.detach().norm()
                 / p.numel() ** 0.5).requires_grad_() for k, p in w0.items()} for _ in range(2))
    a, b = (c.to(dev) for c in pattern_coords(pattern, span))
    target = torch.where(torch.as_tensor(pattern.reshape(-1)), low, high).to(dev)
    opt = torch.optim.Adam([*w0.values(), *u.values(), *v.values()], lr=lr)
    losses_at = vmap(_plane_loss(model, data, loss_fn, w0, u, v))
    objective = []
    for _ in tqdm(range(steps), desc="sightseeing", disable=not progress_enabled(progress), leave=False):
        opt.zero_grad()
        value = ((losses_at(a, b) - target) ** 2).mean()
        value.backward()
        opt.step()
        objective.append(value.item())
    detached = [{k: t.detach() for k, t in d.items()} for d in (w0, u, v)]
    result = dict(zip(("w0", "u", "v"), detached), pattern=pattern, span=span, low=low, high=high,
                  objective=np.array(objective))
    result["losses"] = plane_losses(model, data, result, *pattern_coords(pattern, span), loss_fn=loss_fn) \
        .reshape(pattern.shape)
    return result


@torch.no_grad()
def plane_losses(model: nn.Module, data, plane: dict, a, b, *, loss_fn: Callable = F.cross_entropy,
                 chunk: int = 256) -> np.ndarray:
    """Loss of ``w0 + a u + b v`` (from :func:`fit_pattern`) at the points ``(a[i], b[i])``, ``chunk`` at a time;
    numpy ``[len(a)]``. ``model`` gives the architecture and the device (data, coordinates and the plane are moved
    there); its weights are not used."""
    dev = device_of(model)
    a, b = (torch.as_tensor(c, dtype=torch.float32).reshape(-1).to(dev) for c in (a, b))
    w0, u, v = ({k: t.to(dev) for k, t in plane[key].items()} for key in ("w0", "u", "v"))
    losses_at = vmap(_plane_loss(model, on_device_of(model, data), loss_fn, w0, u, v))
    return torch.cat([losses_at(a[i:i + chunk], b[i:i + chunk]) for i in range(0, len(a), chunk)]).cpu().numpy()


PARTS = ("all", "picture", "background")


def pattern_agreement(plane: dict, part: str = "all") -> float:
    """Share of pixels whose loss is on the pattern's side of ``(low + high) / 2``: 1.0 = the picture is drawn.

    ``part``: ``"all"`` pixels, only the ``"picture"``'s (set pixels, which should be low) or only the
    ``"background"`` (which should be high). Look at the picture's share too: a plane that is high everywhere
    already agrees on every background pixel, most of a sparse picture.
    """
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    pattern = np.asarray(plane["pattern"], dtype=bool)
    right = (np.asarray(plane["losses"]) < (plane["low"] + plane["high"]) / 2) == pattern
    chosen = {"all": np.ones_like(pattern), "picture": pattern, "background": ~pattern}[part]
    return float(right[chosen].mean())

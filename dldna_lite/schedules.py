"""Learning-rate schedules as closed forms (chapter ``book/05-training-dynamics``).

* :func:`lr_schedule` -- constant, step, cosine, warm-up + cosine, one-cycle and exponential learning rates, one
  array per run (the tests compare each with the ``torch.optim.lr_scheduler`` that implements it);
* :func:`scheduler` -- makes any optimizer follow such an array (a ``torch.optim.lr_scheduler.LambdaLR``; ``dl.fit``
  steps it);
* :func:`li_arora_lrs` -- the exponentially growing learning rates that equal weight decay on a scale-invariant
  network (Li & Arora 2019), for :func:`dldna_lite.models.scale_invariant_mlp`.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch

__all__ = ["SCHEDULES", "lr_schedule", "scheduler", "li_arora_lrs"]

SCHEDULES = ("constant", "step", "cosine", "warmup_cosine", "one_cycle", "exponential")


def _cos_anneal(start, end, pct):
    return end + (start - end) / 2 * (np.cos(np.pi * pct) + 1)


def lr_schedule(name: str, total_steps: int, peak_lr: float, *, warmup: int = 0, step_size: int | None = None,
                gamma: float = 0.1, min_lr: float = 0.0, pct_start: float = 0.3, div_factor: float = 25.0,
                final_div_factor: float = 1e4, growth: float = 1.0) -> np.ndarray:
    """The learning rate :math:`\\eta_t` used at steps ``t = 0..total_steps-1``, as an array ``[total_steps]``.

    * ``constant``: :math:`\\eta_t = \\eta`;
    * ``step``: :math:`\\eta\\,\\gamma^{\\lfloor t / s \\rfloor}` (``torch``'s ``StepLR``; ``s = step_size``,
      default a third of the run);
    * ``cosine``: :math:`\\eta_{min} + (\\eta - \\eta_{min})(1 + \\cos(\\pi t / T))/2` (``CosineAnnealingLR``);
    * ``warmup_cosine``: :math:`\\eta (t+1)/w` for :math:`t < w`, then the cosine over the remaining
      :math:`T - w` steps (``LinearLR`` then ``CosineAnnealingLR`` in a ``SequentialLR``);
    * ``one_cycle``: from :math:`\\eta/\\text{div}` up to :math:`\\eta` (cosine) during the first
      ``pct_start`` of the run, then down to :math:`\\eta/(\\text{div}\\cdot\\text{final\\_div})`
      (``OneCycleLR`` with ``anneal_strategy="cos"``);
    * ``exponential``: :math:`\\eta\\,g^t` with ``g = growth`` (``ExponentialLR``; ``g > 1`` grows).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    for key, value, ok, want in (("peak_lr", peak_lr, lambda v: v > 0, "> 0"),
                                 ("min_lr", min_lr, lambda v: v >= 0, ">= 0"),
                                 ("gamma", gamma, lambda v: v > 0, "> 0"),
                                 ("pct_start", pct_start, lambda v: 0 < v < 1, "in (0, 1)"),
                                 ("div_factor", div_factor, lambda v: v > 0, "> 0"),
                                 ("final_div_factor", final_div_factor, lambda v: v > 0, "> 0"),
                                 ("growth", growth, lambda v: v > 0, "> 0")):
        if not (isinstance(value, numbers.Real) and np.isfinite(value) and ok(value)):
            raise ValueError(f"{key} must be a finite number {want}, got {value!r}")
    if not isinstance(warmup, numbers.Integral) or warmup < 0 or (
            step_size is not None and (not isinstance(step_size, numbers.Integral) or step_size < 1)):
        raise ValueError(f"warmup must be an int >= 0 and step_size None or an int >= 1, got {warmup!r}, "
                         f"{step_size!r}")
    t = np.arange(total_steps, dtype=float)
    T = float(total_steps)
    if name == "constant":
        return np.full(total_steps, float(peak_lr))
    if name == "step":
        s = step_size or max(1, total_steps // 3)
        return peak_lr * gamma ** np.floor(t / s)
    if name == "cosine":
        return min_lr + (peak_lr - min_lr) * (1 + np.cos(np.pi * t / T)) / 2
    if name == "warmup_cosine":
        if not 1 <= warmup < total_steps:
            raise ValueError(f"warmup must be in [1, total_steps), got {warmup!r}")
        ramp = peak_lr * (t + 1) / warmup
        cos = min_lr + (peak_lr - min_lr) * (1 + np.cos(np.pi * (t - warmup) / (T - warmup))) / 2
        return np.where(t < warmup, ramp, cos)
    if name == "one_cycle":
        initial = peak_lr / div_factor
        end_up, end_down = pct_start * T - 1, T - 1
        up = _cos_anneal(initial, peak_lr, t / end_up)
        down = _cos_anneal(peak_lr, initial / final_div_factor, (t - end_up) / (end_down - end_up))
        return np.where(t <= end_up, up, down)
    return peak_lr * growth ** t  # exponential


def scheduler(optimizer: torch.optim.Optimizer, lrs: Sequence[float] | np.ndarray
              ) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that makes ``optimizer`` use ``lrs[t]`` at step ``t`` (the last value after the end).

    Sets every group's ``lr`` to ``lrs[0]`` first; step it once after each ``optimizer.step()`` (``dl.fit`` does).
    """
    lrs = np.asarray(lrs, dtype=float)
    if lrs.ndim != 1 or len(lrs) == 0 or not np.all(np.isfinite(lrs) & (lrs >= 0)):
        raise ValueError("lrs must be a non-empty 1D array of finite, non-negative learning rates")
    base = float(lrs[0]) if lrs[0] > 0 else 1.0
    for group in optimizer.param_groups:
        group["lr"] = lrs[0]
        group["initial_lr"] = base
    factors = lrs / base
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: float(factors[min(t, len(factors) - 1)]))


def li_arora_lrs(lr: float, weight_decay: float, total_steps: int) -> np.ndarray:
    """The exponentially growing learning rates :math:`\\tilde\\eta_t = \\eta\\,\\alpha^{-2t-1}`,
    :math:`\\alpha = 1 - \\eta\\lambda`, ``[total_steps]``.

    For a scale-invariant loss (:math:`L(c\\theta) = L(\\theta)`, e.g. every weight feeds a BatchNorm), plain SGD with
    constant ``lr`` and ``weight_decay`` :math:`\\lambda` and SGD with these rates and no weight decay give the same
    network function at every step: :math:`\\tilde\\theta_t = \\alpha^{-t}\\theta_t` (Li & Arora 2019, Thm. 1.1
    without momentum).
    """
    if not 0 < lr * weight_decay < 1:
        raise ValueError(f"need 0 < lr * weight_decay < 1, got {lr * weight_decay!r}")
    alpha = 1 - lr * weight_decay
    return lr * alpha ** (-2.0 * np.arange(total_steps) - 1)

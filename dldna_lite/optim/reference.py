"""Our optimizers against a reference implementation, step for step (chapter 02's check; tests/test_optim.py).

:func:`max_difference` builds a seeded float64 problem (:func:`make_problem`: a ``Linear -> Tanh -> Linear``
regression and a fixed stream of random batches), copies the model, runs ``steps`` identical steps of our optimizer
on one copy and of the reference (``torch.optim``, ``lion_pytorch``, ...) on the other, and returns the largest
absolute difference between the two sets of parameters.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: Steps of the comparison (chapter 02 and the tests).
STEPS = 100


def make_problem(seed: int = 0, *, sizes: Sequence[int] = (5, 8, 3), steps: int = STEPS,
                 batch_size: int = 16) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A float64 ``Linear(d_in, width) -> Tanh -> Linear(width, d_out)`` (``sizes = (d_in, width, d_out)``,
    initialized after ``torch.manual_seed(seed)``) and ``steps`` regression batches ``(x, y)`` of ``batch_size``
    standard normal entries, drawn from a generator seeded with ``seed + 1``."""
    d_in, width, d_out = sizes
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, d_out)).double()
    g = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(batch_size, d_in, generator=g, dtype=torch.float64),
             torch.randn(batch_size, d_out, generator=g, dtype=torch.float64)) for _ in range(steps)]
    return model, data


def run_steps(model: nn.Module, opt: torch.optim.Optimizer, data, after_step: Callable[[int], None] | None = None):
    """One optimizer step of the mean squared error per batch of ``data``; ``after_step(t)`` after step ``t``
    (0-based), on the model's device (each batch is moved there). Returns ``model``."""
    from ..train import on_device_of

    for t, batch in enumerate(data):
        x, y = on_device_of(model, batch)
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
        if after_step is not None:
            after_step(t)
    return model


def max_difference(ours: Callable, reference: Callable, *, seed: int = 0, sizes: Sequence[int] = (5, 8, 3),
                   steps: int = STEPS, **kwargs) -> float:
    """Largest ``|θ_ours − θ_reference|`` over all parameters after ``steps`` identical float64 steps of
    ``ours(params, **kwargs)`` and ``reference(params, **kwargs)`` from the same start on :func:`make_problem`."""
    model, data = make_problem(seed, sizes=sizes, steps=steps)
    twin = copy.deepcopy(model)
    run_steps(model, ours(model.parameters(), **kwargs), data)
    run_steps(twin, reference(twin.parameters(), **kwargs), data)
    return max((p - q).abs().max().item() for p, q in zip(model.parameters(), twin.parameters()))

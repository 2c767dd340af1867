"""The arithmetic of the scan engine's plain-MLP fast path (:mod:`dldna_lite.landscape.engine`): activations
applied in place and the cross-entropy of a block of logits, both on scratch buffers that the engine reuses for
every block of images (a fresh multi-megabyte tensor per block costs more in page faults than its arithmetic)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Activations the plain-MLP fast path applies as they are (parameter-free, elementwise).
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Identity, nn.Dropout)

_IN_PLACE = {nn.ReLU: lambda x, m: x.relu_(), nn.Tanh: lambda x, m: x.tanh_(), nn.Sigmoid: lambda x, m: x.sigmoid_(),
             nn.LeakyReLU: lambda x, m: F.leaky_relu_(x, m.negative_slope), nn.ELU: lambda x, m: F.elu_(x, m.alpha),
             nn.SiLU: lambda x, m: F.silu(x, inplace=True), nn.Identity: lambda x, m: x}


def activate_(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for one of :data:`ELEMENTWISE`, in place where torch has an in-place form (``x`` is a scratch
    buffer of the fast path); GELU and Dropout (the scan runs in eval mode) out of place."""
    f = _IN_PLACE.get(type(module))
    return module(x) if f is None else f(x, module)


def cross_entropy_(out: torch.Tensor, y: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy (float64) and number of correct argmaxes, ``[G]`` each, of logits ``out [G, C, n]``
    for labels ``y [n]``. The logits are first copied classes-last into ``scratch`` (reductions over the last
    dimension are fast, over the middle one slow), which is then overwritten."""
    G, C, n = out.shape
    logits = scratch[:G * n * C].view(G, n, C).copy_(out.transpose(1, 2))
    labels = y.expand(G, -1).unsqueeze(-1)
    correct = (logits.argmax(-1) == y).sum(-1)
    top = logits.amax(-1, keepdim=True)
    picked = logits.gather(-1, labels).sub_(top)
    lse = logits.sub_(top).exp_().sum(-1, keepdim=True).log_()
    return (lse - picked).sum((1, 2), dtype=torch.float64), correct

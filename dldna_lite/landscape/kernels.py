"""The arithmetic of the scan engine's plain-MLP fast path (:mod:`dldna_lite.landscape.engine`): activations
applied in place and the cross-entropy of a block of logits, both on scratch buffers that the engine reuses for
every block of images (a fresh multi-megabyte tensor per block costs more in page faults than its arithmetic);
which losses take that path (:func:`standard_loss`) and how large a block may be on a device
(:func:`block_budget`)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: The scan engine's block budget on a CPU (tuned there: blocks that stay in cache), and its floor elsewhere.
CPU_BLOCK_BUDGET = 2 ** 20
#: On a CUDA device: this fraction of the free memory, rounded down to a power of two, at most :data:`CUDA_CAP`.
CUDA_FRACTION, CUDA_CAP = 1 / 128, 2 ** 27

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


def standard_loss(loss_fn):
    """``F.cross_entropy`` for ``nn.CrossEntropyLoss()`` and ``F.mse_loss`` for ``nn.MSELoss()`` with every attribute
    at its default (mean reduction; no class weights, label smoothing or ignored index; no hooks): the functions
    they call, which the engine's fast paths recognise. Any other ``loss_fn`` is returned as it is (general path)."""
    if type(loss_fn) not in (nn.CrossEntropyLoss, nn.MSELoss) or loss_fn._forward_hooks or \
            loss_fn._forward_pre_hooks or getattr(loss_fn, "reduction", None) != "mean":
        return loss_fn
    if type(loss_fn) is nn.MSELoss:
        return F.mse_loss
    plain = (loss_fn.weight is None and loss_fn.ignore_index == -100 and loss_fn.label_smoothing == 0.0)
    return F.cross_entropy if plain else loss_fn


def block_budget(device: torch.device | str) -> int:
    """How large the engine's blocks may be (points x images x features, in ``float32`` numbers or bytes, see the
    engine) on ``device``: :data:`CPU_BLOCK_BUDGET` on a CPU (and any device but CUDA); on CUDA
    :data:`CUDA_FRACTION` of the free memory (``torch.cuda.mem_get_info``) rounded down to a power of two (the same
    value for every process on a GPU with that much free), between :data:`CPU_BLOCK_BUDGET` and :data:`CUDA_CAP`.
    With 1 MiB a GPU would evaluate one grid point per call."""
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BLOCK_BUDGET
    free, _total = torch.cuda.mem_get_info(device)
    share = int(free * CUDA_FRACTION)
    return min(CUDA_CAP, max(CPU_BLOCK_BUDGET, 1 << max(0, share.bit_length() - 1)))

"""Directions through the weights: the axes of every loss-landscape slice (chapters 03 and 04).

A *direction* is a list of tensors, one per ``model.parameters()`` entry, in order (what the scan engine,
:mod:`dldna_lite.landscape.engine`, takes); a *flat* direction is a vector ``[P]`` over the trainable parameters
(:mod:`dldna_lite.landscape.flat`).

* :func:`random_direction` -- Gaussian, normalised per filter (Li et al. 2018), per layer, or not at all;
* :func:`random_plane` -- two filter-normalised directions as flat vectors (chapter 04's planes);
* :func:`hessian_directions` -- the top Hessian eigenvectors (chapter 03's "Hessian view");
* :func:`rescale_layers` -- the ReLU rescaling that leaves the function unchanged but not an unnormalised slice;
* :func:`direction_norms` -- per-filter norms, to check the normalisation.

Devices: directions live on the model's device. Random ones are drawn on the CPU (from a CPU ``generator``) and
then moved, so the same seed gives the same bits on every device.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import hessian
from ..data import check_data
from ..train import on_device_of
from .flat import unflatten

NORMS = ("filter", "layer", "none")
__all__ = ["NORMS", "random_direction", "random_plane", "hessian_directions", "rescale_layers", "direction_norms",
           "full_direction", "check_direction"]


def _row_norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each output row/filter ``t[i]``, shaped ``[n_out, 1, ..., 1]`` for broadcasting."""
    return t.reshape(len(t), -1).norm(dim=1).reshape(-1, *[1] * (t.dim() - 1))


def direction_norms(direction: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per-filter norms ``[n_out]`` of each tensor of a direction (whole-tensor norm for 1-D tensors)."""
    return [d.reshape(len(d), -1).norm(dim=1) if d.dim() > 1 else d.norm().reshape(1) for d in direction]


def _scaled(w: torch.Tensor, d: torch.Tensor, norm: str, ignore_1d: bool) -> torch.Tensor:
    """The Gaussian draw ``d`` for the weight ``w`` scaled as :func:`random_direction` describes."""
    if w.dim() <= 1:
        if ignore_1d:
            return d.zero_()
        if norm == "filter":
            return w.clone()
    elif norm == "filter":
        return d * (_row_norms(w) / _row_norms(d).clamp_min(1e-10))
    if norm == "layer":
        return d * (w.norm() / d.norm().clamp_min(1e-10))
    return d


def random_direction(model: nn.Module, *, norm: str = "filter", ignore_1d: bool = True,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """A Gaussian direction :math:`d \\sim \\mathcal N(0, I)` scaled like the weights.

    * ``"filter"`` (Li et al. 2018): each output row/filter :math:`d_{i}` of a weight with ``dim > 1`` is rescaled
      to :math:`d_i \\,\\lVert\\theta_i\\rVert / \\lVert d_i\\rVert`, the norm of the matching row of the weights;
    * ``"layer"``: each tensor rescaled to the norm of the whole parameter tensor;
    * ``"none"``: the raw Gaussian.

    1-D parameters (biases, BatchNorm) are zero when ``ignore_1d`` (the default, as in the paper's plots);
    otherwise, with ``"filter"``, they are set to the parameters themselves (Li et al.'s choice), and scaled like
    any tensor with ``"layer"``/``"none"``. Returns one tensor per ``model.parameters()`` entry, in order, on the
    parameter's device: each Gaussian is drawn on the CPU from ``generator`` (a CPU ``torch.Generator``) and then
    moved, so a seed gives bitwise the same direction on the CPU and on a GPU.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    out = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        out.append(_scaled(w, d, norm, ignore_1d))
    return out


def random_plane(model: nn.Module, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two filter-normalised random directions (Li et al. 2018) as flat vectors ``[P]``, biases set to zero:
    ``random_direction(model, norm="filter", ignore_1d=True)`` twice, flattened; drawn on the CPU from
    ``generator``, returned on the model's device."""
    pairs = []
    for _ in range(2):
        d = random_direction(model, norm="filter", ignore_1d=True, generator=generator)
        pairs.append(torch.cat([t.reshape(-1) for t, p in zip(d, model.parameters()) if p.requires_grad]))
    return pairs[0], pairs[1]


def full_direction(model: nn.Module, vector: torch.Tensor) -> list[torch.Tensor]:
    """A flat vector over the trainable parameters as a direction over *all* ``model.parameters()`` (zeros for
    frozen ones)."""
    parts = iter(unflatten(model, vector))
    return [next(parts) if p.requires_grad else torch.zeros_like(p) for p in model.parameters()]


def hessian_directions(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy, k: int = 2,
                       max_iter: int = 100, tol: float = 1e-4, generator: torch.Generator | None = None
                       ) -> list[list[torch.Tensor]]:
    """The ``k`` Hessian eigenvectors of largest ``|λ|`` (unit norm, descending) as directions over all
    ``model.parameters()`` (zeros for frozen ones); :func:`dldna_lite.hessian.top_eigenvalues` gives the values.
    Computed on the model's device (``data`` moved there); the random start vectors come from the CPU ``generator``."""
    _, vectors = hessian.top_eigenvalues(model, on_device_of(model, check_data(data)), loss_fn=loss_fn, k=k,
                                         max_iter=max_iter, tol=tol, generator=generator)
    dirs = []
    for vec in vectors:
        parts = iter(vec)
        dirs.append([next(parts).detach() if p.requires_grad else torch.zeros_like(p) for p in model.parameters()])
    return dirs


def rescale_layers(model: nn.Module, first: nn.Linear, second: nn.Linear, c: float) -> nn.Module:
    """A copy of ``model`` with ``first``'s weight and bias multiplied by ``c > 0`` and ``second``'s weight by
    ``1/c``: for a ReLU between them (positively homogeneous) the function is unchanged."""
    if not 0 < c < float("inf"):                       # NaN fails too
        raise ValueError(f"c must be positive (ReLU(cz) = c ReLU(z) only for c > 0), got {c!r}")
    index = {id(m): name for name, m in model.named_modules()}
    if id(first) not in index or id(second) not in index:
        raise ValueError("first and second must be modules of model")
    out = copy.deepcopy(model)
    a, b = out.get_submodule(index[id(first)]), out.get_submodule(index[id(second)])
    with torch.no_grad():
        a.weight.mul_(c)
        if a.bias is not None:
            a.bias.mul_(c)
        b.weight.div_(c)
    return out


def check_direction(model: nn.Module, direction, name: str) -> list[torch.Tensor]:
    """``direction`` detached, on the parameters' device and in their dtypes; ``ValueError`` unless it holds one
    tensor per ``model.parameters()`` entry with the same shape."""
    params = list(model.parameters())
    direction = list(direction)
    if len(direction) != len(params) or any(d.shape != p.shape for d, p in zip(direction, params)):
        raise ValueError(f"{name} must hold one tensor per model.parameters() entry with the same shapes "
                         f"({len(params)} tensors), got {len(direction)}")
    return [d.detach().to(device=p.device, dtype=p.dtype) for d, p in zip(direction, params)]

"""Flat parameter vectors, the one place that turns a model's weights into a vector ``[P]`` and back.

Chapters 03 and 04 (loss landscapes), and :mod:`dldna_lite.hessian` (chapters 03 and 05), use it. A *flat vector*
is a model's trainable parameters (``requires_grad``) concatenated in ``model.parameters()`` order; a *tensor list*
is one tensor per trainable parameter, shaped like it (what :func:`torch.autograd.grad` returns).

* :func:`flat_params` / :func:`unflatten` -- model weights to a vector and a vector to a list shaped like them;
* :func:`set_flat` -- load a vector into a model's trainable parameters (in place);
* :func:`flatten` / :func:`split` -- the same for any list of tensors (a gradient, a Hessian-vector product);
* :func:`param_dict` -- a vector as the ``{name: tensor}`` dict ``torch.func.functional_call`` takes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["trainable", "flat_params", "unflatten", "set_flat", "flatten", "split", "param_dict"]


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the parameters that require gradients, in ``model.named_parameters()`` order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors of a list concatenated into one vector (a view of nothing: a new tensor)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def split(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A vector ``[sum of numel]`` cut into tensors shaped like ``like`` (views of ``vector``)."""
    sizes = [t.numel() for t in like]
    if vector.numel() != sum(sizes):
        raise ValueError(f"vector has {vector.numel()} entries but the tensors hold {sum(sizes)}")
    return [part.view(t.shape) for part, t in zip(torch.split(vector.reshape(-1), sizes), like)]


def flat_params(model: nn.Module) -> torch.Tensor:
    """The trainable parameters of ``model`` as one detached vector ``[P]`` (a copy)."""
    return flatten([p.detach() for _, p in trainable(model)]).clone()


def unflatten(model: nn.Module, vector: torch.Tensor) -> list[torch.Tensor]:
    """Split a flat vector ``[P]`` into tensors shaped like the trainable parameters of ``model`` (a direction)."""
    params = [p for _, p in trainable(model)]
    size = sum(p.numel() for p in params)
    if vector.numel() != size:
        raise ValueError(f"vector has {vector.numel()} entries but the model has {size} trainable parameters")
    return split(vector, params)


def set_flat(model: nn.Module, vector: torch.Tensor) -> nn.Module:
    """Copy the flat vector ``[P]`` into ``model``'s trainable parameters, in place; returns ``model``."""
    with torch.no_grad():
        for (_, p), t in zip(trainable(model), unflatten(model, vector)):
            p.copy_(t)
    return model


def param_dict(model: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the trainable parameters set to ``vector``, for ``torch.func.functional_call``."""
    return {n: t for (n, _), t in zip(trainable(model), unflatten(model, vector))}

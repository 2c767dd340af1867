"""Small models used across the book.

* :class:`SimpleNetwork` -- the source's MLP (Flatten -> [Linear -> activation]* -> Linear), PReLU or any activation.
* :func:`mlp` -- a plain MLP from a list of widths, with optional BatchNorm and dropout.
* :class:`SmallCNN` -- two conv blocks and a linear head for ``[N, 1, 28, 28]`` images.

All take ``[N, 1, 28, 28]`` or ``[N, 784]`` inputs and return logits ``[N, num_classes]``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name; ``ValueError`` lists the valid names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = list(widths)
    if any(not isinstance(w, int) or w <= 0 for w in widths):
        raise ValueError(f"layer widths must be positive ints, got {widths}")
    return widths


class SimpleNetwork(nn.Module):
    """The source's ``SimpleNetwork``: ``784 -> hidden_shape... -> num_labels`` with one activation type.

    ``act_func`` is a module (deep-copied per layer, so PReLU slopes are per layer) or an activation name.
    """

    def __init__(self, act_func: nn.Module | str = "relu", input_shape: int = 784, num_labels: int = 10,
                 hidden_shape: Sequence[int] = (512, 64)):
        super().__init__()
        widths = _check_widths([input_shape, *hidden_shape, num_labels])
        make_act = (lambda: activation(act_func)) if isinstance(act_func, str) else (lambda: _copy(act_func))
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(widths[:-2], widths[1:-1]):
            layers += [nn.Linear(n_in, n_out), make_act()]
        layers.append(nn.Linear(widths[-2], widths[-1]))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def mlp(widths: Sequence[int], activation_name: str = "relu", batchnorm: bool = False,
        dropout: float = 0.0) -> nn.Sequential:
    """``Flatten -> [Linear -> (BatchNorm) -> act -> (Dropout)]* -> Linear`` for ``widths = [in, h1, ..., out]``."""
    widths = _check_widths(widths)
    if len(widths) < 2:
        raise ValueError(f"an MLP needs at least input and output widths, got {widths}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(widths[:-2], widths[1:-1]):
        layers.append(nn.Linear(n_in, n_out))
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(activation(activation_name))
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """``[N, C, 28, 28]`` -> two (conv 3x3, ReLU, max-pool 2) blocks -> linear head. ~ 20k params by default."""

    def __init__(self, channels: Sequence[int] = (16, 32), num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        c1, c2 = _check_widths(channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(c2 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.view(len(x), 1, 28, 28)
        return self.head(self.features(x).flatten(1))


MODELS = {"simple": SimpleNetwork, "mlp": mlp, "cnn": SmallCNN}


def build(name: str, **kwargs) -> nn.Module:
    """Build a model by name (``simple``, ``mlp``, ``cnn``); ``ValueError`` lists the valid names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

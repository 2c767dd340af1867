"""Small models used across the book.

* :class:`SimpleNetwork` -- the source's MLP (Flatten -> [Linear -> activation]* -> Linear), PReLU or any activation.
* :func:`mlp` -- a plain MLP from a list of widths, with optional BatchNorm and dropout.
* :func:`deep_mlp` -- chapter 01's deep MLP: ``depth`` weight layers of one ``width``.
* :class:`SmallCNN` -- two conv blocks and a linear head for ``[N, 1, 28, 28]`` images.
* Chapters 05-07: :func:`tanh_mlp` (edge of stability), :func:`scale_invariant_mlp` (weight decay as an exponential
  learning rate), :class:`ModularMLP` (grokking; ``[N, 2]`` int64 operands), :func:`chain_mlp` (a chain of
  Linear-ReLU blocks for the memory of backprop) and :func:`scaled_relu_mlp` (vanishing gradients).

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


_new_activation = activation  # for the builders whose ``activation`` argument shadows the function


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = list(widths)
    if any(not isinstance(w, int) or w <= 0 for w in widths):
        raise ValueError(f"layer widths must be positive ints, got {widths}")
    return widths


class SimpleNetwork(nn.Module):
    """The source's ``SimpleNetwork``: ``in_features -> widths... -> num_classes`` with one activation type.

    ``act_func`` is a module (deep-copied per layer, so PReLU slopes are per layer) or an activation name;
    ``widths`` are the hidden layers' sizes.
    """

    def __init__(self, act_func: nn.Module | str = "relu", *, in_features: int = 784, num_classes: int = 10,
                 widths: Sequence[int] = (512, 64)):
        super().__init__()
        widths = _check_widths([in_features, *widths, num_classes])
        make_act = (lambda: _new_activation(act_func)) if isinstance(act_func, str) else (lambda: _copy(act_func))
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


def mlp(widths: Sequence[int], *, activation: str = "relu", batchnorm: bool = False,
        dropout: float = 0.0) -> nn.Sequential:
    """``Flatten -> [Linear -> (BatchNorm) -> act -> (Dropout)]* -> Linear`` for ``widths = [in, h1, ..., out]``;
    ``activation`` is a name of :data:`ACTIVATIONS`."""
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
        layers.append(_new_activation(activation))
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


# --- chapter 01 -----------------------------------------------------------------------------------------------------
def deep_mlp(*, depth: int, width: int = 128, in_features: int = 784, num_classes: int = 10,
             activation: str = "relu", batchnorm: bool = False) -> nn.Sequential:
    """Chapter 01's plain MLP with ``depth`` weight layers: ``in_features -> width × (depth - 1) -> num_classes``
    (:func:`mlp`, so the same draws of the random number generator)."""
    if not isinstance(depth, int) or depth < 2:
        raise ValueError(f"depth must be an int >= 2, got {depth!r}")
    return mlp([in_features] + [width] * (depth - 1) + [num_classes], activation=activation, batchnorm=batchnorm)


# --- chapters 05-07 -------------------------------------------------------------------------------------------------
def tanh_mlp(*, in_features: int = 784, width: int = 100, depth: int = 2, num_classes: int = 10, seed: int = 0
             ) -> nn.Sequential:
    """Chapter 05's edge-of-stability network: ``in_features -> width × depth (tanh) -> num_classes`` with PyTorch's
    default initialization, drawn after ``seed_everything(seed)``."""
    from .config import seed_everything

    seed_everything(seed)
    widths = [in_features] + [width] * depth
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))


def scale_invariant_mlp(*, widths: Sequence[int], activation: str = "relu", eps: float = 1e-5, seed: int = 0
                        ) -> nn.Sequential:
    """Chapter 05's ``Flatten -> [Linear(no bias) -> BatchNorm(no affine) -> act]* -> Linear (frozen)`` for
    ``widths = [in, h1, ..., out]``, drawn after ``seed_everything(seed)``.

    Every trainable weight feeds a BatchNorm, so the training loss is invariant to rescaling them; the last layer is a
    fixed random classifier (``requires_grad=False``) so that it does not break the invariance. ``eps`` is
    BatchNorm's, the only thing that makes the invariance approximate.
    """
    from .config import seed_everything

    seed_everything(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out, affine=False, eps=eps),
                   _new_activation(activation)]
    head = nn.Linear(widths[-2], widths[-1])
    head.requires_grad_(False)
    return nn.Sequential(*layers, head)


class ModularMLP(nn.Module):
    """Chapter 06's grokking network for :math:`a + b \\bmod p` with ``p = num_classes``: one embedding table for both
    operands (``p → embed_dim``), concatenated, then ``Linear(2·embed_dim, width) → ReLU → Linear(width, p)``.
    ``[N, 2]`` int64 → ``[N, p]`` logits."""

    def __init__(self, *, num_classes: int, embed_dim: int = 64, width: int = 128):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(2 * embed_dim, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(x).flatten(1))


class ModularTransformer(nn.Module):
    """Chapter 06's grokking transformer for :math:`a + b \\bmod p` (``p = num_classes``), after Power et al. (2022)
    and Nanda et al. (2023): the sequence ``a b =`` (token ``p`` is "="), learned token and position embeddings of
    size ``width``, ``depth`` pre-norm ``nn.TransformerEncoderLayer`` blocks (``heads`` heads, feed-forward
    ``4 · width``, ReLU, no dropout), a final LayerNorm and a linear read-out of the logits at "=".
    ``[N, 2]`` int64 → ``[N, p]`` logits.

    Only the "=" position is read out, so the last block computes that position alone (its query, attention and
    feed-forward), with the block's own modules: the same logits as the full block, at about a third of the cost.
    """

    def __init__(self, *, num_classes: int, width: int = 128, depth: int = 1, heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(num_classes + 1, width)
        self.position = nn.Parameter(torch.randn(3, width) / width ** 0.5)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(depth))
        self.norm, self.unembed = nn.LayerNorm(width), nn.Linear(width, num_classes)

    @staticmethod
    def last_position(block: nn.TransformerEncoderLayer, h: torch.Tensor) -> torch.Tensor:
        """``block(h)[:, -1:]`` of a pre-norm, ReLU, dropout-free block, computed for that position only."""
        x = block.norm1(h)
        h = h[:, -1:] + block.self_attn(x[:, -1:], x, x, need_weights=False)[0]
        return h + block.linear2(torch.relu(block.linear1(block.norm2(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        equals = torch.full_like(x[:, :1], self.unembed.out_features)
        h = self.embed(torch.cat([x, equals], 1)) + self.position
        for block in self.blocks[:-1]:
            h = block(h)
        return self.unembed(self.norm(self.last_position(self.blocks[-1], h)[:, 0]))


def chain_mlp(*, depth: int, width: int = 256, seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    """Chapter 07's chain: ``depth`` blocks ``Linear(width, width) → ReLU``, each block one ``nn.Sequential`` (one
    node of the chain), Kaiming-normal weights from ``torch.Generator().manual_seed(seed)`` and zero biases."""
    import math

    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(depth):
        lin = nn.Linear(width, width).to(dtype)
        with torch.no_grad():  # Kaiming-normal weights, zero bias: the signal keeps its scale through the chain
            lin.weight.copy_(torch.randn(width, width, generator=gen, dtype=dtype) * math.sqrt(2 / width))
            lin.bias.zero_()
        blocks.append(nn.Sequential(lin, nn.ReLU()))
    return nn.Sequential(*blocks)


def scaled_relu_mlp(*, depth: int, width: int, gain: float, in_features: int = 784, num_classes: int = 10,
                    seed: int = 0) -> nn.Sequential:
    r"""Chapter 07's deep ReLU network: ``depth`` Linear layers (``in_features → width → ... → width →
    num_classes``) with ReLU between them, weights :math:`N(0, \text{gain}^2 \cdot 2/\text{fan\_in})` (``gain = 1``
    is Kaiming's rule) from ``torch.Generator().manual_seed(seed)``, and zero biases."""
    import math

    gen = torch.Generator().manual_seed(seed)
    dims = [in_features] + [width] * (depth - 1) + [num_classes]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen) * gain * math.sqrt(2 / a))
            lin.bias.zero_()
        layers += [lin, nn.ReLU()] if i < depth - 1 else [lin]
    return nn.Sequential(*layers)


# --- residual MLP (chapters 03 and 04)
class ResidualMLP(nn.Module):
    r"""A ResNet-style MLP, the deep network of the skip-connection comparisons in chapters 03 and 04.

    ``in_features → width`` (ReLU), then ``depth`` residual blocks of two ``width → width`` layers, then a linear
    head ``width → num_classes``: ``2 depth + 2`` linear layers. The block is ResNet's basic block (He et al. 2016)
    with linear layers, :math:`h \leftarrow \mathrm{ReLU}(h + W_2\,\mathrm{ReLU}(W_1 h + b_1) + b_2)` with
    ``skip=True``, and the same block without the ":math:`h +`", :math:`h \leftarrow \mathrm{ReLU}(W_2\,
    \mathrm{ReLU}(W_1 h + b_1) + b_2)`, with ``skip=False``. ``skip`` creates no parameter, so the two networks built
    after the same seed have the same initial weights and differ only in the skip. PyTorch's default
    initialization. Inputs ``[N, in_features]`` or ``[N, 1, 28, 28]``; logits ``[N, num_classes]``.
    """

    def __init__(self, *, width: int, depth: int, skip: bool = True, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        sizes = dict(width=width, depth=depth, in_features=in_features, num_classes=num_classes)
        bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"width, depth, in_features and num_classes must be positive ints, got {bad}")
        if not isinstance(skip, bool):
            raise ValueError(f"skip must be True (residual blocks) or False (plain blocks), got {skip!r}")
        self.skip = skip
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x.flatten(1)))
        for block in self.blocks:
            h = _block_step(block, h, self.skip)
        return self.head(h)

    def as_sequential(self) -> nn.Sequential:
        """The same network as an ``nn.Sequential`` of its own modules (the parameters are shared, not copied), whose
        first parametrised layer is the stem: the scan engine's first-layer fast path reads it
        (:mod:`dldna_lite.landscape.engine`). Built on demand, so ``state_dict`` keeps its own names."""
        steps = [_BlockStep(block, self.skip) for block in self.blocks]
        return nn.Sequential(nn.Flatten(), self.stem, nn.ReLU(), *steps, self.head)


def _block_step(block: nn.Module, h: torch.Tensor, skip: bool) -> torch.Tensor:
    """One block of :class:`ResidualMLP`: ReLU(h + block(h)) with the skip, ReLU(block(h)) without."""
    return torch.relu(h + block(h)) if skip else torch.relu(block(h))


class _BlockStep(nn.Module):
    """:func:`_block_step` as a module, for :meth:`ResidualMLP.as_sequential`."""

    def __init__(self, block: nn.Module, skip: bool):
        super().__init__()
        self.block, self.skip = block, skip

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return _block_step(self.block, h, self.skip)

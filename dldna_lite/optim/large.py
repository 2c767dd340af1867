"""The source's larger comparison (chapter 02): a CNN (~1.2M parameters) and a small patch Transformer on CIFAR-100.

On a CUDA device :func:`experiment_data` returns CIFAR-100 (from ``$DLDNA_DATA_DIR`` or the book's cache, downloaded
there by torchvision when missing and the network is there, as on Colab) as tensors on the GPU; training then
batches by indexing them, with no data loader. Elsewhere it returns Fashion-MNIST at small size so the same code
still runs on a CPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import device as default_device
from ..data import cache_dir, load_fashion_mnist, positive_int

CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def cifar_cnn(in_channels: int = 3, num_classes: int = 100, image_size: int = 32, width: float = 1.0) -> nn.Module:
    """Three (conv 3x3 -> BatchNorm -> ReLU -> max-pool) blocks, 64/128/256 channels times ``width``, then
    ``Linear(., 200) -> ReLU -> Linear(200, num_classes)``. ~1.2M parameters at width 1 on 32x32x3."""
    c1, c2, c3 = (max(8, int(c * width)) for c in (64, 128, 256))
    blocks, c_in = [], in_channels
    for c in (c1, c2, c3):
        blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    side = image_size // 8
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(c3 * side * side, 200), nn.ReLU(),
                         nn.Linear(200, num_classes))


class PatchTransformer(nn.Module):
    """A small Vision-Transformer-style classifier: 4x4 patches -> pre-norm Transformer encoder -> mean pool.

    Width 1: model dim 192, 6 layers, 6 heads (~1.8M parameters); ``width`` scales dim and depth.
    Input ``[N, C, H, W]`` (``[N, H*W]`` is reshaped for one channel), output logits ``[N, num_classes]``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 100, image_size: int = 32, width: float = 1.0,
                 patch: int = 4):
        super().__init__()
        dim = max(32, int(192 * width) // 32 * 32)
        depth = max(1, round(6 * width))
        self.in_channels, self.image_size = in_channels, image_size
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))
        layer = nn.TransformerEncoderLayer(dim, dim // 32, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.view(len(x), self.in_channels, self.image_size, self.image_size)
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.encoder(tokens).mean(1))


def _cifar_root() -> Path | None:
    for root in filter(None, (os.environ.get("DLDNA_DATA_DIR"), str(cache_dir()))):
        if (Path(root) / "cifar-100-python").is_dir():
            return Path(root)
    return None


def load_cifar100(split: str, limit: int | None = None, download: bool = False):
    """CIFAR-100 as standardised tensors ``([N, 3, 32, 32], [N])``, or ``None`` when it is not available.
    ``limit`` (a positive int, or ``None`` for all) keeps the first ``limit`` images."""
    limit, root = positive_int("limit", limit, allow_none=True), _cifar_root()
    if root is None and not download:
        return None
    try:
        from torchvision.datasets import CIFAR100

        ds = CIFAR100(str(root or cache_dir()), train=split == "train", download=root is None)
    except Exception:  # no torchvision, no network: say "not available", the caller falls back
        return None
    X = torch.tensor(np.asarray(ds.data), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    X = (X - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    y = torch.tensor(ds.targets)
    return (X[:limit], y[:limit]) if limit else (X, y)


def experiment_data(train_limit: int | None, test_limit: int | None, device: torch.device | str | None = None) -> dict:
    """CIFAR-100 on a GPU when possible, else Fashion-MNIST: ``dict(name, train, test, in_channels, num_classes,
    image_size, device)``, the tensors on ``device`` (default :func:`dldna_lite.config.device`). CIFAR-100 needs a
    CUDA ``device``; the fallback keeps the chapter executable on any CPU."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        train, test = load_cifar100("train", train_limit, download=True), load_cifar100("test", test_limit)
        if train is not None and test is not None:
            return dict(name="CIFAR-100", train=tuple(t.to(dev) for t in train), test=tuple(t.to(dev) for t in test),
                        in_channels=3, num_classes=100, image_size=32, device=dev)
    train = load_fashion_mnist("train", limit=train_limit, flatten=False, device=dev)
    test = load_fashion_mnist("test", limit=test_limit, flatten=False, device=dev)
    return dict(name="Fashion-MNIST", train=train, test=test, in_channels=1, num_classes=10, image_size=28,
                device=dev)

"""One epoch of Fashion-MNIST training: torchvision Dataset + DataLoader vs dldna_lite's in-memory tensors.

Same model (MLP 784-512-64-10), same initial weights, batch 256, SGD, one epoch each, timed in the same run.
Target (issue "Foundation"): the tensor pipeline is at least 5x faster. Run: `.venv/bin/python benchmarks/train_throughput.py`.
"""
from __future__ import annotations

import copy
import time

import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import models

BATCH = 256


def one_epoch(model, batches) -> float:
    """Train ``model`` for one pass over ``batches`` with SGD; return the wall time in seconds."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = time.perf_counter()
    for xb, yb in batches:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def torchvision_batches():
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dl.data.MEAN,), (dl.data.STD,))])
    ds = FashionMNIST(str(dl.data.torchvision_root()), train=True, download=False, transform=tf)
    return DataLoader(ds, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))


def main() -> None:
    dl.seed_everything(0)
    model = models.SimpleNetwork(act_func="relu", hidden_shape=(512, 64))
    X, y = dl.load_fashion_mnist("train")
    t_loader = one_epoch(copy.deepcopy(model), torchvision_batches())
    t_tensor = one_epoch(copy.deepcopy(model), dl.batches(X, y, BATCH, generator=torch.Generator().manual_seed(0)))
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"(a) torchvision FashionMNIST + DataLoader + ToTensor: {t_loader:6.2f} s / epoch")
    print(f"(b) dldna_lite in-memory tensor batches:             {t_tensor:6.2f} s / epoch")
    print(f"ratio (a)/(b): {t_loader / t_tensor:.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()

"""Small models, data and the slow reference scan shared by the ``tests/test_landscape_*.py`` files."""
import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import models


def data(n=64, d=20, classes=4, seed=0, image=False):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 8, 8, generator=gen) if image else torch.randn(n, d, generator=gen)
    return X, torch.randint(0, classes, (n,), generator=gen)


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return models.mlp([20, 16, 12, 4], dropout=dropout)


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 4)

    def forward(self, x):
        return self.head(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2).flatten(1))


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def row_norms(t):
    return t.reshape(len(t), -1).norm(dim=1)


def scan_2d_naive(model, data, d1, d2, xs, ys, loss_fn=F.cross_entropy):
    """Reference for ``landscape.scan_2d``: a fresh ``deepcopy`` of the model per grid point, parameters set, full
    forward pass (slow on purpose). Returns ``dict(xs, ys, loss [Y, X], acc [Y, X])``."""
    X, y = data
    loss, acc = np.zeros((len(ys), len(xs))), np.zeros((len(ys), len(xs)))
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            m = copy.deepcopy(model).eval()
            with torch.no_grad():
                for p, u, v in zip(m.parameters(), d1, d2):
                    p.copy_(p + float(a) * u + float(b) * v)
                out = m(X)
            loss[i, j] = loss_fn(out, y).item()
            acc[i, j] = (out.argmax(1) == y).double().mean().item()
    return dict(xs=np.asarray(xs, float), ys=np.asarray(ys, float), loss=loss, acc=acc)

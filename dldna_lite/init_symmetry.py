"""Symmetry breaking (chapter 01, re-exported by :mod:`dldna_lite.init`): why the initial weights of a layer must not
all be equal. With a constant initialization every hidden unit of a layer computes the same function, receives the
same gradient and stays a copy of the others through training; a random initialization breaks the symmetry."""
from __future__ import annotations

import torch
from torch import nn



def constant_(model: nn.Module, value: float | None = None) -> nn.Module:
    """Every Linear/Conv weight set to ``value`` (default ``1 / fan_in``), every bias to 0, in place: the
    initialization that never breaks the symmetry between the units of a layer."""
    from .init import fans, weight_layers   # here, not at the top: dldna_lite.init re-exports this module

    for _, layer in weight_layers(model):
        with torch.no_grad():
            layer.weight.fill_(1.0 / fans(layer.weight)[0] if value is None else value)
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def unit_spread(W: torch.Tensor) -> float:
    """How different the units of a layer are: the largest distance of a row of ``W`` (one unit's incoming weights)
    from the first row, relative to the mean row norm. Exactly 0 when every unit is a copy of the first."""
    W = W.detach().reshape(W.shape[0], -1)
    return float((W - W[0]).norm(dim=1).max() / W.norm(dim=1).mean())


def symmetry_run(train_data, test_data, *, method: str, width: int = 32, epochs: int = 3, lr: float = 0.1,
                 batch_size: int = 128, seed: int = 0, device: torch.device | str | None = None) -> dict:
    """Train ``in_features -> width -> width -> 10`` (ReLU, built on ``device``, default the CPU) with SGD from
    ``method`` ("constant": :func:`constant_`, else a method of :func:`initialize`). Returns ``spread``, an array
    ``[epochs + 1, 2]`` of :func:`unit_spread` of both hidden layers after each epoch (row 0: at initialization),
    ``test_acc`` (``None`` if diverged) and ``diverged_at``."""
    import numpy as np

    from .config import seed_everything
    from .init import initialize, weight_layers
    from .models import mlp
    from .train import evaluate, train

    generator = seed_everything(seed)
    model = mlp([train_data[0].shape[1], width, width, 10]).to(device or "cpu")
    constant_(model) if method == "constant" else initialize(model, method, generator=generator)
    hidden = [layer.weight for _, layer in weight_layers(model)][:2]
    spread, opt = [[unit_spread(W) for W in hidden]], torch.optim.SGD(model.parameters(), lr=lr)
    for epoch in range(epochs):
        history = train(model, opt, train_data, 1, batch_size=batch_size, seed=seed + epoch, progress=False)
        if history.diverged:
            return dict(method=method, spread=np.array(spread), test_acc=None, diverged_at=history.diverged_at)
        spread.append([unit_spread(W) for W in hidden])
    return dict(method=method, spread=np.array(spread), test_acc=evaluate(model, test_data)[1], diverged_at=None)

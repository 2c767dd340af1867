"""landscape.interpolate at interior points, on models with batch norm (and dropout), against a naive rebuild.

tests/test_landscape_engine.py checks the batch-norm path of :func:`dldna_lite.landscape.interpolate` at the end
points only (where any weighting of the two models that is right at 0 and 1 passes) and the loss only. Here the
loss AND the accuracy at interior and exterior points are compared with a naive rebuild that follows the documented
convention (dldna_lite/landscape/engine.py): every parameter and every floating-point buffer (batch-norm running
mean and variance) set to ``(1 - alpha) * a + alpha * b`` in a copy of ``model_a``, integer buffers
(``num_batches_tracked``) left as ``model_a``'s, and the copy evaluated in eval mode on the whole batch.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import landscape as L

ALPHAS = np.array([-0.4, 0.0, 0.15, 0.35, 0.5, 0.65, 0.85, 1.0, 1.3])


def _data(n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 10, generator=gen, dtype=torch.float64)
    y = (X[:, :4] @ torch.randn(4, 4, generator=gen, dtype=torch.float64)).argmax(1)   # learnable labels
    return X, y


def _bn_mlp(seed, batch_norm=True):
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(12)] if batch_norm else []
    return nn.Sequential(nn.Linear(10, 12), *norm, nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 4)).double()


def _trained(seed, data, batch_norm=True, steps=60):
    """A model trained a little (so that the path between two of them has accuracies that vary), left in training
    mode with its own running statistics."""
    model = _bn_mlp(seed, batch_norm)
    X, y = data
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    gen = torch.Generator().manual_seed(seed + 10)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(X), (32,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(X[idx] * (1 + 0.5 * seed)), y[idx]).backward()   # different statistics per model
        opt.step()
    return model


def naive_interpolation(model_a, model_b, data, alphas):
    """The reference: one fresh copy of ``model_a`` per alpha, every parameter and floating-point buffer set by
    hand, evaluated in eval mode."""
    X, y = data
    losses, accs = [], []
    for alpha in alphas:
        m = copy.deepcopy(model_a)
        with torch.no_grad():
            for (name, t), (_, ta), (_, tb) in zip(
                    list(m.named_parameters()) + list(m.named_buffers()),
                    list(model_a.named_parameters()) + list(model_a.named_buffers()),
                    list(model_b.named_parameters()) + list(model_b.named_buffers())):
                if t.is_floating_point():
                    t.copy_((1 - alpha) * ta + alpha * tb)
            m.eval()
            out = m(X)
        losses.append(F.cross_entropy(out, y).item())
        accs.append((out.argmax(1) == y).double().mean().item())
    return np.array(losses), np.array(accs)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["batchnorm", "no-batchnorm"])
def test_interpolate_matches_a_naive_rebuild_at_interior_points(batch_norm):
    data = _data()
    a, b = _trained(0, data, batch_norm), _trained(1, data, batch_norm)
    if batch_norm:                                   # the two models' statistics differ: interpolating them matters
        assert (a[1].running_var - b[1].running_var).abs().max() > 0.1
    before = [t.clone() for t in list(a.state_dict().values()) + list(b.state_dict().values())]
    out = L.interpolate(a, data, b, ALPHAS, progress=False)
    loss, acc = naive_interpolation(a, b, data, ALPHAS)
    assert len(set(acc.round(6))) >= 4, acc          # the accuracies vary along the path: the test has teeth
    np.testing.assert_allclose(out["alpha"], ALPHAS)
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-9, atol=0)
    np.testing.assert_allclose(out["acc"], acc, rtol=0, atol=1e-12)
    after = list(a.state_dict().values()) + list(b.state_dict().values())
    assert all(torch.equal(p, q) for p, q in zip(before, after)), "interpolate changed a model"
    assert a.training and b.training


def test_interpolating_the_statistics_is_not_the_same_as_keeping_either():
    """Sanity of the reference: with model_a's (or model_b's) statistics kept fixed, the interior losses differ
    from the documented convention by far more than the tolerance above."""
    data = _data()
    a, b = _trained(0, data), _trained(1, data)
    loss, _ = naive_interpolation(a, b, data, ALPHAS)
    for keep in (a, b):
        a_kept, b_kept = copy.deepcopy(a), copy.deepcopy(b)
        for m in (a_kept, b_kept):
            m[1].load_state_dict(keep[1].state_dict() | {"weight": m[1].weight, "bias": m[1].bias})
        kept, _ = naive_interpolation(a_kept, b_kept, data, ALPHAS)
        assert np.abs(kept - loss)[2:7].min() > 1e-4

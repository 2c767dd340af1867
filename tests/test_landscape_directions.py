"""dldna_lite.landscape.directions: filter/layer normalisation, Hessian directions, ReLU rescaling, random planes."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import landscape as L
from dldna_lite import models
from landscape_helpers import TinyCNN, data, mlp, row_norms


@pytest.mark.parametrize("model_fn", [mlp, lambda: TinyCNN()])
def test_filter_normalised_rows_match_weight_rows(model_fn):
    model = model_fn()
    d = L.random_direction(model, norm="filter", generator=torch.Generator().manual_seed(1))
    assert len(d) == len(list(model.parameters()))
    for t, p in zip(d, model.parameters()):
        assert t.shape == p.shape
        if p.dim() > 1:
            torch.testing.assert_close(row_norms(t), row_norms(p.detach()), rtol=1e-5, atol=1e-7)
            assert not torch.allclose(t, p.detach())                       # random, not the weights
        else:
            assert torch.count_nonzero(t) == 0                              # biases / BN ignored by default
    kept = L.random_direction(model, norm="filter", ignore_1d=False, generator=torch.Generator().manual_seed(1))
    for t, p in zip(kept, model.parameters()):
        if p.dim() == 1:
            torch.testing.assert_close(t, p.detach())                       # Li et al.: bias direction = bias

def test_layer_and_none_normalisation_and_seeding():
    model = mlp()
    gen = lambda: torch.Generator().manual_seed(3)
    layer = L.random_direction(model, norm="layer", generator=gen())
    raw = L.random_direction(model, norm="none", generator=gen())
    for t, r, p in zip(layer, raw, model.parameters()):
        if p.dim() > 1:
            assert t.norm().item() == pytest.approx(p.detach().norm().item(), rel=1e-5)
            torch.testing.assert_close(t / t.norm(), r / r.norm())          # same Gaussian draw, rescaled
    again = L.random_direction(model, norm="layer", generator=gen())
    assert all(torch.equal(a, b) for a, b in zip(layer, again))
    with pytest.raises(ValueError, match="filter, layer, none"):
        L.random_direction(model, norm="unit")

def test_hessian_directions_are_unit_eigenvectors():
    from dldna_lite import hessian

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,))
    dirs = L.hessian_directions(net, (X, y), k=2, max_iter=2000, tol=1e-12,
                                generator=torch.Generator().manual_seed(0))
    values, _ = hessian.top_eigenvalues(net, (X, y), k=2, max_iter=2000, tol=1e-12,
                                        generator=torch.Generator().manual_seed(0))
    for d, lam in zip(dirs, values):
        flat = torch.cat([t.flatten() for t in d])
        assert flat.norm().item() == pytest.approx(1.0)
        hv = torch.cat([t.flatten() for t in hessian.hvp(net, (X, y), d)])
        torch.testing.assert_close(hv, lam * flat, atol=1e-6 * abs(lam), rtol=0)
    dot = sum((a * b).sum() for a, b in zip(*dirs)).item()
    assert abs(dot) < 1e-6

def test_relu_rescaling_changes_unnormalised_plots_but_not_filter_normalised_ones():
    X, y = data()
    torch.manual_seed(0)
    model = models.mlp([20, 16, 4])                     # Linear -> ReLU -> Linear
    scaled = L.rescale_layers(model, model[1], model[3], c=4.0)
    torch.testing.assert_close(model(X), scaled(X), rtol=1e-5, atol=1e-5)           # same function
    alphas = np.linspace(-1, 1, 11)
    curves = {}
    for norm in ("filter", "none"):
        for name, net in (("orig", model), ("scaled", scaled)):
            d = L.random_direction(net, norm=norm, generator=torch.Generator().manual_seed(7))
            curves[norm, name] = L.scan_1d(net, (X, y), d, alphas, progress=False)["loss"]
    np.testing.assert_allclose(curves["filter", "orig"], curves["filter", "scaled"], rtol=1e-5)
    assert np.abs(curves["none", "orig"] - curves["none", "scaled"]).max() > 1e-2
    with pytest.raises(ValueError, match="positive"):
        L.rescale_layers(model, model[1], model[3], c=-1.0)

def test_random_plane_is_filter_normalized_with_zero_biases():
    model = models.mlp([6, 5, 3])
    d1, _ = L.random_plane(model, generator=torch.Generator().manual_seed(0))
    for p, d in zip(model.parameters(), L.unflatten(model, d1)):
        if p.dim() == 1:
            assert torch.all(d == 0)
        else:
            torch.testing.assert_close(d.norm(dim=1), p.detach().norm(dim=1))

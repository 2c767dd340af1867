"""dldna_lite.landscape: direction normalisation, scans against a naive loop, in-place safety, ReLU rescaling."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import landscape as L
from dldna_lite import models


def _data(n=64, d=20, classes=4, seed=0, image=False):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 8, 8, generator=gen) if image else torch.randn(n, d, generator=gen)
    return X, torch.randint(0, classes, (n,), generator=gen)


def _mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return models.mlp([20, 16, 12, 4], dropout=dropout)


class _TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 4)

    def forward(self, x):
        return self.head(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2).flatten(1))


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _row_norms(t):
    return t.reshape(len(t), -1).norm(dim=1)


# ------------------------------------------------------------------------------------------------- directions
@pytest.mark.parametrize("model_fn", [_mlp, lambda: _TinyCNN()])
def test_filter_normalised_rows_match_weight_rows(model_fn):
    model = model_fn()
    d = L.random_direction(model, "filter", generator=torch.Generator().manual_seed(1))
    assert len(d) == len(list(model.parameters()))
    for t, p in zip(d, model.parameters()):
        assert t.shape == p.shape
        if p.dim() > 1:
            torch.testing.assert_close(_row_norms(t), _row_norms(p.detach()), rtol=1e-5, atol=1e-7)
            assert not torch.allclose(t, p.detach())                       # random, not the weights
        else:
            assert torch.count_nonzero(t) == 0                              # biases / BN ignored by default
    kept = L.random_direction(model, "filter", ignore_1d=False, generator=torch.Generator().manual_seed(1))
    for t, p in zip(kept, model.parameters()):
        if p.dim() == 1:
            torch.testing.assert_close(t, p.detach())                       # Li et al.: bias direction = bias


def test_layer_and_none_normalisation_and_seeding():
    model = _mlp()
    gen = lambda: torch.Generator().manual_seed(3)
    layer = L.random_direction(model, "layer", generator=gen())
    raw = L.random_direction(model, "none", generator=gen())
    for t, r, p in zip(layer, raw, model.parameters()):
        if p.dim() > 1:
            assert t.norm().item() == pytest.approx(p.detach().norm().item(), rel=1e-5)
            torch.testing.assert_close(t / t.norm(), r / r.norm())          # same Gaussian draw, rescaled
    again = L.random_direction(model, "layer", generator=gen())
    assert all(torch.equal(a, b) for a, b in zip(layer, again))
    with pytest.raises(ValueError, match="filter, layer, none"):
        L.random_direction(model, "unit")


def test_hessian_directions_are_unit_eigenvectors():
    from dldna_lite import hessian

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,))
    dirs = L.hessian_directions(net, F.cross_entropy, (X, y), k=2, max_iter=2000, tol=1e-12,
                                generator=torch.Generator().manual_seed(0))
    values, _ = hessian.top_eigenvalues(net, F.cross_entropy, (X, y), k=2, max_iter=2000, tol=1e-12,
                                        generator=torch.Generator().manual_seed(0))
    for d, lam in zip(dirs, values):
        flat = torch.cat([t.flatten() for t in d])
        assert flat.norm().item() == pytest.approx(1.0)
        hv = torch.cat([t.flatten() for t in hessian.hvp(net, F.cross_entropy, (X, y), d)])
        torch.testing.assert_close(hv, lam * flat, atol=1e-6 * abs(lam), rtol=0)
    dot = sum((a * b).sum() for a, b in zip(*dirs)).item()
    assert abs(dot) < 1e-6


# ------------------------------------------------------------------------------------------------------ scans
@pytest.mark.parametrize("kind", ["mlp", "mlp-dropout", "simple", "cnn"])
def test_scan_2d_equals_naive_loop_and_leaves_model_unchanged(kind):
    image = kind == "cnn"
    X, y = _data(image=image)
    if kind == "cnn":
        torch.manual_seed(0)
        model = _TinyCNN()
        model.train()
        model(X)                       # give BatchNorm non-trivial running statistics
    elif kind == "simple":
        torch.manual_seed(0)
        model = models.SimpleNetwork("relu", input_shape=20, num_labels=4, hidden_shape=(16,))
    else:
        model = _mlp(dropout=0.2 if kind == "mlp-dropout" else 0.0)
    model.train()
    before, buffers = _params(model), [b.clone() for b in model.buffers()]
    gen = torch.Generator().manual_seed(0)
    d1 = L.random_direction(model, "filter", ignore_1d=False, generator=gen)
    d2 = L.random_direction(model, "filter", generator=gen)
    xs, ys = np.linspace(-1, 1.5, 6), np.linspace(-0.5, 1, 5)
    got = L.scan_2d(model, d1, d2, xs, ys, F.cross_entropy, (X, y), progress=False)
    want = L.scan_2d_naive(model, d1, d2, xs, ys, F.cross_entropy, (X, y))
    assert got["loss"].shape == (len(ys), len(xs))
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["acc"], want["acc"], atol=1.0 / len(X) + 1e-12)
    # an independent check of one grid point (row i = ys[i]) with a plain forward pass
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p, u, v in zip(probe.parameters(), d1, d2):
            p.add_(xs[4] * u + ys[1] * v)
        assert got["loss"][1, 4] == pytest.approx(F.cross_entropy(probe(X), y).item(), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert model.training


def test_scan_1d_matches_scan_2d_and_generic_path():
    X, y = _data()
    model = _mlp()
    gen = torch.Generator().manual_seed(5)
    d1 = L.random_direction(model, generator=gen)
    zero = [torch.zeros_like(p) for p in model.parameters()]
    alphas = np.linspace(-2, 2, 9)
    one = L.scan_1d(model, d1, alphas, F.cross_entropy, (X, y), progress=False)
    slow = L.scan_1d(model, d1, alphas, F.cross_entropy, (X, y), progress=False, fast=False)
    two = L.scan_2d(model, d1, zero, alphas, [0.0], F.cross_entropy, (X, y), progress=False)
    np.testing.assert_allclose(one["loss"], two["loss"][0], rtol=1e-6)
    np.testing.assert_allclose(one["loss"], slow["loss"], rtol=1e-5)
    assert one["loss"][4] == pytest.approx(dl.evaluate(model, (X, y))[0], rel=1e-5)   # alpha = 0: the model
    with pytest.raises(ValueError, match="one tensor per"):
        L.scan_1d(model, d1[:-1], alphas, F.cross_entropy, (X, y))


def test_interpolate_endpoints_and_extrapolation():
    X, y = _data()
    a, b = _mlp(0), _mlp(1)
    before = _params(a) + _params(b)
    alphas = np.array([-0.5, 0.0, 0.25, 1.0, 1.5])
    out = L.interpolate(a, b, alphas, F.cross_entropy, (X, y), progress=False)
    assert out["loss"][1] == pytest.approx(dl.evaluate(a, (X, y))[0], rel=1e-5)
    assert out["loss"][3] == pytest.approx(dl.evaluate(b, (X, y))[0], rel=1e-5)
    mid = copy.deepcopy(a)
    torch.nn.utils.vector_to_parameters(0.75 * torch.nn.utils.parameters_to_vector(a.parameters())
                                        + 0.25 * torch.nn.utils.parameters_to_vector(b.parameters()),
                                        mid.parameters())
    assert out["loss"][2] == pytest.approx(dl.evaluate(mid, (X, y))[0], rel=1e-5)
    assert np.isfinite(out["loss"]).all()
    assert all(torch.equal(p, q) for p, q in zip(before, _params(a) + _params(b)))


def test_interpolate_with_batchnorm_buffers():
    X, y = _data(image=True)
    torch.manual_seed(0)
    a, b = _TinyCNN(), _TinyCNN()
    for m in (a, b):
        m.train()
        m(X)
    out = L.interpolate(a, b, [0.0, 1.0], F.cross_entropy, (X, y), progress=False)
    assert out["loss"][0] == pytest.approx(dl.evaluate(a, (X, y))[0], rel=1e-5)
    assert out["loss"][1] == pytest.approx(dl.evaluate(b, (X, y))[0], rel=1e-5)


# -------------------------------------------------------------------------------------- ReLU rescaling invariance
def test_relu_rescaling_changes_unnormalised_plots_but_not_filter_normalised_ones():
    X, y = _data()
    torch.manual_seed(0)
    model = models.mlp([20, 16, 4])                     # Linear -> ReLU -> Linear
    scaled = L.rescale_layers(model, model[1], model[3], c=4.0)
    torch.testing.assert_close(model(X), scaled(X), rtol=1e-5, atol=1e-5)           # same function
    alphas = np.linspace(-1, 1, 11)
    curves = {}
    for norm in ("filter", "none"):
        for name, net in (("orig", model), ("scaled", scaled)):
            d = L.random_direction(net, norm, generator=torch.Generator().manual_seed(7))
            curves[norm, name] = L.scan_1d(net, d, alphas, F.cross_entropy, (X, y), progress=False)["loss"]
    np.testing.assert_allclose(curves["filter", "orig"], curves["filter", "scaled"], rtol=1e-5)
    assert np.abs(curves["none", "orig"] - curves["none", "scaled"]).max() > 1e-2
    with pytest.raises(ValueError, match="positive"):
        L.rescale_layers(model, model[1], model[3], c=-1.0)


# ----------------------------------------------------------------------------------------- skip connections, shape
def test_nonconvex_fraction_closed_forms():
    xs = ys = np.linspace(-1, 1, 21)
    A, B = np.meshgrid(xs, ys)
    bowl = dict(xs=xs, ys=ys, loss=A ** 2 + 3 * B ** 2 + 0.5 * A * B)
    saddle = dict(xs=xs, ys=ys, loss=A ** 2 - B ** 2)
    tilted = dict(xs=xs, ys=ys, loss=(A + B) ** 2 - 0.1 * (A - B) ** 2)   # a negative eigenvalue along (1, -1)
    assert L.nonconvex_fraction(bowl) == 0.0
    assert L.nonconvex_fraction(saddle) == 1.0
    assert L.nonconvex_fraction(tilted) == 1.0
    half = dict(xs=xs, ys=ys, loss=np.where(A < 0, A ** 2, -A ** 2) + B ** 2)   # convex for α < 0 only
    assert 0.3 < L.nonconvex_fraction(half) < 0.7
    with pytest.raises(ValueError):
        L.nonconvex_fraction(dict(xs=xs[:2], ys=ys, loss=A[:, :2]))


def test_residual_mlp_skip_switch():
    torch.manual_seed(0)
    a = L.ResidualMLP(depth=3, width=8, skip=True, in_features=20, classes=4)
    b = L.ResidualMLP(depth=3, width=8, skip=False, in_features=20, classes=4)
    b.load_state_dict(a.state_dict())                                   # same parameters, different function
    X, _ = _data()
    assert a(X).shape == (64, 4)
    h = torch.relu(a.stem(X))
    ref_skip, ref_plain = h, h
    for blk in a.blocks:
        ref_skip = torch.relu(ref_skip + blk(ref_skip))
        ref_plain = torch.relu(blk(ref_plain))
    torch.testing.assert_close(a(X), a.head(ref_skip))
    torch.testing.assert_close(b(X), a.head(ref_plain))
    with pytest.raises(ValueError):
        L.ResidualMLP(depth=0)


def test_scan_falls_back_when_vmap_cannot_batch_the_model():
    class DataDependent(nn.Module):                  # python control flow on a tensor value: vmap refuses it
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(20, 4)

        def forward(self, x):
            out = self.lin(x)
            return out * 2 if out.sum() > 1e6 else out

    X, y = _data()
    torch.manual_seed(0)
    model = DataDependent()
    gen = torch.Generator().manual_seed(0)
    d1, d2 = (L.random_direction(model, "layer", ignore_1d=False, generator=gen) for _ in range(2))
    xs = np.linspace(-1, 1, 3)
    with pytest.warns(RuntimeWarning, match="vmap cannot batch DataDependent.*one at a time"):
        got = L.scan_2d(model, d1, d2, xs, xs, F.cross_entropy, (X, y), progress=False)
    want = L.scan_2d_naive(model, d1, d2, xs, xs, F.cross_entropy, (X, y))
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    engine = L.point_evaluator(model, [d1, d2], F.cross_entropy, (X, y))
    with pytest.warns(RuntimeWarning):
        engine.batch(np.zeros((2, 2)))
    assert engine.path == "loop"


@pytest.mark.parametrize("kind,path", [("mlp", "first-layer+vmap"), ("simple", "first-layer+vmap"),
                                       ("mlp-generic", "vmap"), ("cnn", "vmap")])
def test_scan_engine_path_is_the_fast_one(kind, path, recwarn):
    """The book's MLPs take the first-layer fast path and batch the rest with vmap; nothing falls back silently."""
    X, y = _data(image=kind == "cnn")
    torch.manual_seed(0)
    model = {"mlp": _mlp, "mlp-generic": _mlp, "cnn": _TinyCNN,
             "simple": lambda: models.SimpleNetwork("relu", input_shape=20, num_labels=4, hidden_shape=(16,))}[kind]()
    gen = torch.Generator().manual_seed(0)
    dirs = [L.random_direction(model, generator=gen) for _ in range(2)]
    engine = L.point_evaluator(model, dirs, F.cross_entropy, (X, y), fast=kind != "mlp-generic")
    loss, _ = engine.batch(np.array([[0.1, -0.2], [0.0, 0.3]]))
    assert engine.path == path and np.isfinite(loss).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_nonconvex_fraction_leaves_out_non_finite_regions():
    xs = ys = np.linspace(-1, 1, 21)
    A, B = np.meshgrid(xs, ys)
    for bad in (np.nan, np.inf):
        saddle = A ** 2 - B ** 2
        saddle[:6, :6] = bad                               # an overflowed corner
        assert L.nonconvex_fraction(dict(xs=xs, ys=ys, loss=saddle)) == 1.0
        bowl = A ** 2 + B ** 2
        bowl[-4:, 8:12] = bad
        assert L.nonconvex_fraction(dict(xs=xs, ys=ys, loss=bowl)) == 0.0
    with pytest.raises(ValueError, match="nowhere defined"):
        L.nonconvex_fraction(dict(xs=xs, ys=ys, loss=np.where(A > -2, np.nan, 0.0)))


@pytest.mark.parametrize("log", [True, False])
def test_contour_levels_ignore_non_finite_losses(log):
    import matplotlib

    matplotlib.use("Agg")
    from dldna_lite import viz

    xs = ys = np.linspace(-1, 1, 11)
    A, B = np.meshgrid(xs, ys)
    Z = 0.5 + A ** 2 + B ** 2
    Z[0, :3], Z[-1, -1] = np.inf, np.nan
    ax = viz.plot_landscape_contour(dict(xs=xs, ys=ys, loss=Z), log=log)
    levels = np.concatenate([c.levels for c in ax.collections if hasattr(c, "levels")])
    finite = Z[np.isfinite(Z)]
    assert np.isfinite(levels).all() and levels.min() >= finite.min() - 1e-12 and levels.max() <= finite.max() + 1e-12
    with pytest.raises(ValueError, match="no finite loss"):
        viz.plot_landscape_contour(dict(xs=xs, ys=ys, loss=np.full_like(Z, np.nan)))
    import matplotlib.pyplot as plt

    plt.close("all")

"""dldna_lite.landscape.engine: scans against a naive loop, in-place safety, interpolation, the engine's paths,
non-convexity of a slice."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import landscape as L
from dldna_lite import models
from landscape_helpers import TinyCNN, data, mlp, params, scan_2d_naive


@pytest.mark.parametrize("kind", ["mlp", "mlp-dropout", "simple", "cnn"])
def test_scan_2d_equals_naive_loop_and_leaves_model_unchanged(kind):
    image = kind == "cnn"
    X, y = data(image=image)
    if kind == "cnn":
        torch.manual_seed(0)
        model = TinyCNN()
        model.train()
        model(X)                       # give BatchNorm non-trivial running statistics
    elif kind == "simple":
        torch.manual_seed(0)
        model = models.SimpleNetwork("relu", in_features=20, num_classes=4, widths=(16,))
    else:
        model = mlp(dropout=0.2 if kind == "mlp-dropout" else 0.0)
    model.train()
    before, buffers = params(model), [b.clone() for b in model.buffers()]
    gen = torch.Generator().manual_seed(0)
    d1 = L.random_direction(model, norm="filter", ignore_1d=False, generator=gen)
    d2 = L.random_direction(model, norm="filter", generator=gen)
    xs, ys = np.linspace(-1, 1.5, 6), np.linspace(-0.5, 1, 5)
    got = L.scan_2d(model, (X, y), d1, d2, xs, ys, progress=False)
    want = scan_2d_naive(model, (X, y), d1, d2, xs, ys)
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
    X, y = data()
    model = mlp()
    gen = torch.Generator().manual_seed(5)
    d1 = L.random_direction(model, generator=gen)
    zero = [torch.zeros_like(p) for p in model.parameters()]
    alphas = np.linspace(-2, 2, 9)
    one = L.scan_1d(model, (X, y), d1, alphas, progress=False)
    slow = L.scan_1d(model, (X, y), d1, alphas, progress=False, fast=False)
    two = L.scan_2d(model, (X, y), d1, zero, alphas, [0.0], progress=False)
    np.testing.assert_allclose(one["loss"], two["loss"][0], rtol=1e-6)
    np.testing.assert_allclose(one["loss"], slow["loss"], rtol=1e-5)
    assert one["loss"][4] == pytest.approx(dl.evaluate(model, (X, y))[0], rel=1e-5)   # alpha = 0: the model
    with pytest.raises(ValueError, match="one tensor per"):
        L.scan_1d(model, (X, y), d1[:-1], alphas)

def test_interpolate_endpoints_and_extrapolation():
    X, y = data()
    a, b = mlp(0), mlp(1)
    before = params(a) + params(b)
    alphas = np.array([-0.5, 0.0, 0.25, 1.0, 1.5])
    out = L.interpolate(a, (X, y), b, alphas, progress=False)
    assert out["loss"][1] == pytest.approx(dl.evaluate(a, (X, y))[0], rel=1e-5)
    assert out["loss"][3] == pytest.approx(dl.evaluate(b, (X, y))[0], rel=1e-5)
    mid = copy.deepcopy(a)
    torch.nn.utils.vector_to_parameters(0.75 * torch.nn.utils.parameters_to_vector(a.parameters())
                                        + 0.25 * torch.nn.utils.parameters_to_vector(b.parameters()),
                                        mid.parameters())
    assert out["loss"][2] == pytest.approx(dl.evaluate(mid, (X, y))[0], rel=1e-5)
    assert np.isfinite(out["loss"]).all()
    assert all(torch.equal(p, q) for p, q in zip(before, params(a) + params(b)))

def test_interpolate_with_batchnorm_buffers():
    X, y = data(image=True)
    torch.manual_seed(0)
    a, b = TinyCNN(), TinyCNN()
    for m in (a, b):
        m.train()
        m(X)
    out = L.interpolate(a, (X, y), b, [0.0, 1.0], progress=False)
    assert out["loss"][0] == pytest.approx(dl.evaluate(a, (X, y))[0], rel=1e-5)
    assert out["loss"][1] == pytest.approx(dl.evaluate(b, (X, y))[0], rel=1e-5)

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

def test_scan_falls_back_when_vmap_cannot_batch_the_model():
    class DataDependent(nn.Module):                  # python control flow on a tensor value: vmap refuses it
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(20, 4)

        def forward(self, x):
            out = self.lin(x)
            return out * 2 if out.sum() > 1e6 else out

    X, y = data()
    torch.manual_seed(0)
    model = DataDependent()
    gen = torch.Generator().manual_seed(0)
    d1, d2 = (L.random_direction(model, norm="layer", ignore_1d=False, generator=gen) for _ in range(2))
    xs = np.linspace(-1, 1, 3)
    with pytest.warns(RuntimeWarning, match="vmap cannot batch DataDependent.*one at a time"):
        got = L.scan_2d(model, (X, y), d1, d2, xs, xs, progress=False)
    want = scan_2d_naive(model, (X, y), d1, d2, xs, xs)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    engine = L.point_evaluator(model, (X, y), [d1, d2])
    with pytest.warns(RuntimeWarning):
        engine.batch(np.zeros((2, 2)))
    assert engine.path == "loop"


@pytest.mark.parametrize("kind,path", [("mlp", "first-layer+bmm"), ("simple", "first-layer+bmm"),
                                       ("prelu", "first-layer+vmap"), ("mlp-generic", "vmap"), ("cnn", "vmap")])
def test_scan_engine_path_is_the_fast_one(kind, path, recwarn):
    """The book's MLPs take the first-layer fast path with batched matrix products; an MLP with a parametrised
    activation batches the rest with vmap; nothing falls back silently."""
    X, y = data(image=kind == "cnn")
    torch.manual_seed(0)
    model = {"mlp": mlp, "mlp-generic": mlp, "cnn": TinyCNN,
             "prelu": lambda: models.mlp([20, 16, 4], activation="prelu"),
             "simple": lambda: models.SimpleNetwork("relu", in_features=20, num_classes=4, widths=(16,))}[kind]()
    gen = torch.Generator().manual_seed(0)
    dirs = [L.random_direction(model, generator=gen) for _ in range(2)]
    engine = L.point_evaluator(model, (X, y), dirs, fast=kind != "mlp-generic")
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


@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu", "gelu", "sigmoid"])
def test_batched_mlp_path_equals_the_vmap_path_over_data_blocks(activation):
    """The plain-MLP path (blocks of images in reused buffers, activations in place, float64 sums) gives the vmap
    path's losses and accuracies, also when the data are cut into many blocks and the batch is smaller than a row."""
    X, y = data()
    torch.manual_seed(0)
    model = models.mlp([20, 16, 12, 4], activation=activation)
    gen = torch.Generator().manual_seed(0)
    dirs = [L.random_direction(model, generator=gen) for _ in range(2)]
    coords = np.random.default_rng(0).uniform(-1, 1, (70, 2))
    fast = L.point_evaluator(model, (X, y), dirs)
    fast.rows_per_block = 7                                  # many blocks, the last one short
    slow = L.point_evaluator(model, (X, y), dirs, loss_fn=lambda o, t: F.cross_entropy(o, t))
    assert fast.path == "first-layer+bmm" and slow.path == "first-layer+vmap"
    (fl, fa), (sl, sa) = fast.batch(coords), slow.batch(coords)
    np.testing.assert_allclose(fl, sl, rtol=1e-6)
    np.testing.assert_array_equal(fa, sa)
    one = np.concatenate([fast.batch(coords[i:i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(one, fl[:3], rtol=1e-6)      # one point at a time: the same values (to rounding)


ACTIVATION_CASES = [nn.ReLU(), nn.LeakyReLU(0.3), nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.ELU(0.7), nn.SiLU(),
                    nn.Identity(), nn.Dropout(0.5).eval()]


def test_every_fast_path_activation_is_tested():
    from dldna_lite.landscape import kernels

    assert {type(m) for m in ACTIVATION_CASES} == set(kernels.ELEMENTWISE)


@pytest.mark.parametrize("module", ACTIVATION_CASES, ids=lambda m: type(m).__name__)
def test_fast_path_activations_equal_the_modules(module):
    """``kernels.activate_`` (in place where torch can) computes what the module computes, on a strided view as the
    engine passes it."""
    from dldna_lite.landscape import kernels

    x = torch.randn(3, 7, 5).transpose(1, 2)
    torch.testing.assert_close(kernels.activate_(module, x.clone()), module(x.clone()), rtol=0, atol=0)

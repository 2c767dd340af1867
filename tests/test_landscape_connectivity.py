"""dldna_lite.landscape.connectivity: closed forms of the curve and the barrier, a model with loaded weights, and
the quick-profile mode-connectivity experiment."""
import copy

import numpy as np
import pytest
import torch

import dldna_lite as dl
from dldna_lite import landscape as L
from dldna_lite import models


def test_bezier_endpoints_and_straight_line():
    g = torch.Generator().manual_seed(0)
    w0, w1, theta = (torch.randn(7, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(L.bezier_point(w0, theta, w1, 0.0), w0)
    torch.testing.assert_close(L.bezier_point(w0, theta, w1, 1.0), w1)
    torch.testing.assert_close(L.bezier_point(w0, theta, w1, 0.5), 0.25 * w0 + 0.5 * theta + 0.25 * w1)
    for t in (0.1, 0.37, 0.9):
        torch.testing.assert_close(L.bezier_point(w0, (w0 + w1) / 2, w1, t), (1 - t) * w0 + t * w1)

def test_path_metrics_match_a_model_with_loaded_weights(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    a, b = models.mlp([784, 16, 10]), models.mlp([784, 16, 10])
    w0, w1 = L.flat_params(a), L.flat_params(b)
    theta = torch.randn_like(w0) * 0.05
    out = L.path_metrics(a, (X[:500], y[:500]), w0, theta, w1, [0.0, 0.3, 1.0])
    for t, loss, acc in zip(out["t"], out["loss"], out["acc"]):
        ref = models.mlp([784, 16, 10])
        torch.nn.utils.vector_to_parameters(L.bezier_point(w0, theta, w1, t), ref.parameters())
        ref_loss, ref_acc = dl.evaluate(ref, (X[:500], y[:500]))
        assert loss == pytest.approx(ref_loss, rel=1e-5) and acc == pytest.approx(ref_acc)
    torch.testing.assert_close(L.flat_params(a), w0)                          # model unchanged

def test_path_metrics_straight_line_agrees_with_landscape_interpolate(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    a, b = models.mlp([784, 16, 10]), models.mlp([784, 16, 10])
    w0, w1 = L.flat_params(a), L.flat_params(b)
    ts = np.linspace(0, 1, 5)
    ours = L.path_metrics(a, (X[:500], y[:500]), w0, (w0 + w1) / 2, w1, ts)
    theirs = L.interpolate(a, (X[:500], y[:500]), b, ts)
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-4)

def test_barrier_closed_forms():
    ts = np.linspace(0, 1, 11)
    assert L.barrier(ts ** 2, ts) == pytest.approx(0.0, abs=1e-12)          # convex: never above the chord
    assert L.barrier(1 + np.sin(np.pi * ts), ts) == pytest.approx(1.0)       # a bump of height 1 over a flat chord
    assert L.barrier(2 * ts + np.sin(np.pi * ts)) == pytest.approx(1.0)      # chord from 0 to 2 removed
    with pytest.raises(ValueError):
        L.barrier([1.0])

def test_bezier_barrier_is_lower_than_the_straight_line_on_quick_models():
    size = dl.sizes("analysis", "quick")
    X, y = dl.load_fashion_mnist("train", limit=size["train_limit"], flatten=True)
    ends = []
    for seed in (1, 2):
        dl.seed_everything(seed)
        net = models.mlp([784, size["hidden"], 10])
        dl.fit(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), (X, y), size["mc_epochs"],
               batch_size=size["batch_size"], seed=seed)
        ends.append(L.flat_params(net))
    bezier = L.train_bezier(net, (X, y), ends[0], ends[1], epochs=size["bezier_epochs"], lr=0.05, momentum=0.9,
                            batch_size=size["batch_size"])
    assert bezier["diverged_at"] is None and len(bezier["losses"]) > 0
    theta = bezier["theta"]
    ts = np.linspace(0, 1, 11)
    ev = (X[:2000], y[:2000])
    line = L.path_metrics(net, ev, ends[0], (ends[0] + ends[1]) / 2, ends[1], ts)
    curve = L.path_metrics(net, ev, ends[0], theta, ends[1], ts)
    assert L.barrier(line["loss"], ts) > 0.3
    assert L.barrier(curve["loss"], ts) < 0.25 * L.barrier(line["loss"], ts)


def test_train_bezier_reports_divergence_and_checks_epochs(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    net = models.mlp([784, 8, 10])
    w0 = L.flat_params(net)
    w1 = w0 + 0.1 * torch.randn(w0.shape, generator=torch.Generator().manual_seed(0))
    out = L.train_bezier(net, (X[:256], y[:256]), w0, w1, epochs=2, lr=1e8, momentum=0.9, batch_size=64)
    assert out["diverged_at"] is not None and out["diverged_at"] == len(out["losses"])
    assert not np.isfinite(out["losses"][-1]) and np.isfinite(out["losses"][:-1]).all()
    torch.testing.assert_close(L.flat_params(net), w0)                            # model unchanged
    with pytest.raises(ValueError, match="epochs"):
        L.train_bezier(net, (X[:256], y[:256]), w0, w1, epochs=0)

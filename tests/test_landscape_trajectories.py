"""dldna_lite.landscape.trajectories against NumPy's SVD, a model with loaded weights and fit's own history."""
import copy

import numpy as np
import pytest
import torch

import dldna_lite as dl
from dldna_lite import landscape as L
from dldna_lite import models


def test_pca_matches_svd_and_ratios_sum_below_one():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(30, 50, generator=g, dtype=torch.float64).cumsum(0)   # a random walk [T, P]
    out = L.trajectory_pca(W, n_components=3)
    ratios = out["explained_variance_ratio"]
    assert ratios.sum() <= 1 + 1e-12 and np.all(np.diff(ratios) <= 0)
    M = (W - W[-1]).numpy()
    s = np.linalg.svd(M - M.mean(0), compute_uv=False)
    np.testing.assert_allclose(ratios, s[:3] ** 2 / np.sum(s ** 2), rtol=1e-10)
    D = out["directions"]
    np.testing.assert_allclose((D @ D.T).numpy(), np.eye(3), atol=1e-10)
    largest = D.gather(1, D.abs().argmax(1, keepdim=True))
    assert (largest > 0).all()                                             # scikit-learn's sign convention
    np.testing.assert_allclose(out["coords"][-1], 0, atol=1e-12)          # the origin (last point) is (0, 0)
    np.testing.assert_allclose(out["coords"], M @ D.T.numpy(), atol=1e-10)

def test_pca_of_a_planar_path_puts_everything_in_two_components():
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(40, 2, generator=g, dtype=torch.float64))[0].T   # [2, P]
    t = torch.linspace(0, 1, 25, dtype=torch.float64)
    W = torch.stack([torch.cos(3 * t), t ** 2], 1) @ basis
    joint = L.trajectory_pca({"a": W, "b": 0.5 * W}, origin=torch.zeros(40, dtype=torch.float64))
    assert joint["explained_variance_ratio"].sum() == pytest.approx(1.0, abs=1e-10)
    D = joint["directions"]
    torch.testing.assert_close(basis @ D.T @ D, basis)                        # the PCA plane is the path's plane
    assert set(joint["coords"]) == {"a", "b"} and joint["coords"]["a"].shape == (25, 2)

def test_record_trajectory_rows_and_endpoints(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    model = models.mlp([784, 16, 10])
    w_init = L.flat_params(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    W, history = L.record_trajectory(model, (X[:640], y[:640]), opt, epochs=2, every=3, batch_size=64)
    steps = len(history["loss"])
    assert steps == 20 and W.shape == (1 + steps // 3 + 1, L.flat_params(model).numel())
    torch.testing.assert_close(W[0], w_init)
    torch.testing.assert_close(W[-1], L.flat_params(model))
    assert not opt._optimizer_step_post_hooks                                  # the hook was removed
    ratios = L.trajectory_pca(W)["explained_variance_ratio"]                   # a real path: mostly 2D
    assert ratios.sum() <= 1 + 1e-9 and ratios.sum() > 0.5

def test_plane_surface_matches_a_loop_over_loaded_models(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    model = models.ResidualMLP(width=8, depth=2)
    w = L.flat_params(model)
    d1, d2 = L.random_plane(model, generator=torch.Generator().manual_seed(0))
    origin = w + 0.1 * d2                                                        # a plane not through the model
    xs, ys = np.array([-0.5, 0.0, 0.7]), np.array([-1.0, 0.3])
    out = L.plane_surface(model, (X[:300], y[:300]), origin, d1, d2, xs, ys)
    assert out["loss"].shape == (2, 3)
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            ref = copy.deepcopy(model)
            torch.nn.utils.vector_to_parameters(origin + a * d1 + b * d2, ref.parameters())
            loss, acc = dl.evaluate(ref, (X[:300], y[:300]))
            assert out["loss"][i, j] == pytest.approx(loss, rel=1e-5) and out["acc"][i, j] == pytest.approx(acc)
    torch.testing.assert_close(L.flat_params(model), w)                          # model unchanged

def test_tsne_shape_and_bad_perplexity():
    W = np.random.default_rng(0).normal(size=(12, 8))
    assert L.tsne_embedding(W, perplexity=3).shape == (12, 2)
    with pytest.raises(ValueError, match="perplexity"):
        L.tsne_embedding(W, perplexity=20)


def test_record_trajectory_per_epoch_matches_one_fit_call_per_epoch(fmnist_small, pinned_threads):
    (X, y), _ = fmnist_small
    data = (X[:640], y[:640])
    dl.seed_everything(0)
    model = models.mlp([784, 16, 10])
    reference = copy.deepcopy(model)
    with pinned_threads(1):                         # the same run two ways, compared bitwise: one thread count
        W, history = L.record_trajectory(model, data, torch.optim.Adam(model.parameters(), lr=1e-3), epochs=3,
                                         every="epoch", batch_size=64, seed=5)
        opt = torch.optim.Adam(reference.parameters(), lr=1e-3)
        rows = [L.flat_params(reference)]
        for epoch in range(3):                      # chapter 03's loop: epoch e shuffled with seed + e
            dl.fit(reference, opt, data, 1, batch_size=64, seed=5 + epoch)
            rows.append(L.flat_params(reference))
    torch.testing.assert_close(W, torch.stack(rows), rtol=0, atol=0)
    assert [row["epoch"] for row in history.epochs] == [1, 2, 3] and history.diverged_at is None
    assert len(history["loss"]) == 30
    with pytest.raises(ValueError, match="positive int or 'epoch'"):
        L.record_trajectory(model, data, opt, epochs=1, every="step")


def test_record_trajectory_reports_divergence(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    model = models.mlp([784, 16, 10])
    W, history = L.record_trajectory(model, (X[:640], y[:640]), torch.optim.SGD(model.parameters(), lr=1e6),
                                     epochs=2, every="epoch", batch_size=64)
    assert history.diverged_at is not None and 1 <= history.diverged_at <= 20
    assert len(W) <= 2


def test_random_walks_keep_the_steps_lengths_and_match_the_random_walk_pca():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(41, 500, generator=g).cumsum(0)
    walks = L.random_walks(W, generator=torch.Generator().manual_seed(1))
    assert set(walks) == {"gaussian", "signs"} and walks["gaussian"].shape == (40, 500)
    steps = torch.diff(W.double(), dim=0)
    torch.testing.assert_close(torch.diff(walks["signs"], dim=0).norm(dim=1), steps[1:].norm(dim=1))
    ratios = L.trajectory_pca(walks["gaussian"], n_components=2)["explained_variance_ratio"]
    # Antognini & Sohl-Dickstein (2018): component k of a long random walk explains about 6 / (pi k)^2
    assert ratios[0] == pytest.approx(6 / np.pi ** 2, abs=0.15) and ratios[1] == pytest.approx(1.5 / np.pi ** 2,
                                                                                                  abs=0.1)
    with pytest.raises(ValueError, match="at least 3 points"):
        L.random_walks(W[:2])

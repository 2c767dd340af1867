"""dldna_lite.analysis against independent references: NumPy SVD, ripser's own lower-star routine, closed forms,
Parseval's identity, a model with loaded weights, and the quick-profile mode-connectivity experiment."""
import copy

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import analysis as A
from dldna_lite import landscape, models

WELLS = np.array([[1.0, -1.5, -1.0, 0.5, 0.5], [0.7, 1.5, 1.0, 0.6, 0.4], [0.5, 0.0, 2.0, 0.4, 0.4]])


def _three_wells(nx=48, ny=40):
    xs, ys = np.linspace(-3, 3, nx), np.linspace(-3, 3, ny)
    return xs, ys, A.GaussianSurface(WELLS, 2.0).grid(xs, ys)


# ---------------------------------------------------------------------------------------------- trajectories / PCA


def test_pca_matches_svd_and_ratios_sum_below_one():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(30, 50, generator=g, dtype=torch.float64).cumsum(0)   # a random walk [T, P]
    out = A.trajectory_pca(W, n_components=3)
    ratios = out["explained_variance_ratio"]
    assert ratios.sum() <= 1 + 1e-12 and np.all(np.diff(ratios) <= 0)
    M = (W - W[-1]).numpy()
    s = np.linalg.svd(M - M.mean(0), compute_uv=False)
    np.testing.assert_allclose(ratios, s[:3] ** 2 / np.sum(s ** 2), rtol=1e-10)
    D = out["directions"]
    np.testing.assert_allclose((D @ D.T).numpy(), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(out["coords"][-1], 0, atol=1e-12)          # the origin (last point) is (0, 0)
    np.testing.assert_allclose(out["coords"], M @ D.T.numpy(), atol=1e-10)


def test_pca_of_a_planar_path_puts_everything_in_two_components():
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(40, 2, generator=g, dtype=torch.float64))[0].T   # [2, P]
    t = torch.linspace(0, 1, 25, dtype=torch.float64)
    W = torch.stack([torch.cos(3 * t), t ** 2], 1) @ basis
    joint = A.trajectory_pca({"a": W, "b": 0.5 * W}, origin=torch.zeros(40, dtype=torch.float64))
    assert joint["explained_variance_ratio"].sum() == pytest.approx(1.0, abs=1e-10)
    D = joint["directions"]
    torch.testing.assert_close(basis @ D.T @ D, basis)                        # the PCA plane is the path's plane
    assert set(joint["coords"]) == {"a", "b"} and joint["coords"]["a"].shape == (25, 2)


def test_record_trajectory_rows_and_endpoints(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    model = models.mlp([784, 16, 10])
    w_init = A.flat_params(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    W, history = A.record_trajectory(model, opt, (X[:640], y[:640]), epochs=2, every=3, batch_size=64)
    steps = len(history["loss"])
    assert steps == 20 and W.shape == (1 + steps // 3 + 1, A.flat_params(model).numel())
    torch.testing.assert_close(W[0], w_init)
    torch.testing.assert_close(W[-1], A.flat_params(model))
    assert not opt._optimizer_step_post_hooks                                  # the hook was removed
    ratios = A.trajectory_pca(W)["explained_variance_ratio"]                   # a real path: mostly 2D
    assert ratios.sum() <= 1 + 1e-9 and ratios.sum() > 0.5


def test_plane_surface_matches_a_loop_over_loaded_models(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    model = A.ResidualMLP(width=8, depth=2)
    w = A.flat_params(model)
    d1, d2 = A.random_plane(model, generator=torch.Generator().manual_seed(0))
    origin = w + 0.1 * d2                                                        # a plane not through the model
    xs, ys = np.array([-0.5, 0.0, 0.7]), np.array([-1.0, 0.3])
    out = A.plane_surface(model, origin, d1, d2, xs, ys, F.cross_entropy, (X[:300], y[:300]))
    assert out["loss"].shape == (2, 3)
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            ref = copy.deepcopy(model)
            torch.nn.utils.vector_to_parameters(origin + a * d1 + b * d2, ref.parameters())
            loss, acc = dl.evaluate(ref, (X[:300], y[:300]))
            assert out["loss"][i, j] == pytest.approx(loss, rel=1e-5) and out["acc"][i, j] == pytest.approx(acc)
    torch.testing.assert_close(A.flat_params(model), w)                          # model unchanged


def test_random_plane_is_filter_normalized_with_zero_biases():
    model = models.mlp([6, 5, 3])
    d1, _ = A.random_plane(model, generator=torch.Generator().manual_seed(0))
    for p, d in zip(model.parameters(), A.unflatten(model, d1)):
        if p.dim() == 1:
            assert torch.all(d == 0)
        else:
            torch.testing.assert_close(d.norm(dim=1), p.detach().norm(dim=1))


def test_tsne_shape_and_bad_perplexity():
    W = np.random.default_rng(0).normal(size=(12, 8))
    assert A.tsne_embedding(W, perplexity=3).shape == (12, 2)
    with pytest.raises(ValueError, match="perplexity"):
        A.tsne_embedding(W, perplexity=20)


def test_unflatten_round_trip_and_size_check():
    model = models.mlp([5, 4, 3])
    parts = A.unflatten(model, A.flat_params(model))
    for p, q in zip(model.parameters(), parts):
        torch.testing.assert_close(p.detach(), q)
    with pytest.raises(ValueError, match="trainable"):
        A.unflatten(model, torch.zeros(3))


# ---------------------------------------------------------------------------------------------- toy surfaces


def test_gaussian_surface_gradient_and_optimizer_path_match_closed_form():
    s = A.GaussianSurface(WELLS[:1], 2.0)
    a, mx, my, sx, sy = WELLS[0]

    def grad(x, y):   # closed form of d f / d(x, y)
        e = a * np.exp(-(x - mx) ** 2 / (2 * sx ** 2) - (y - my) ** 2 / (2 * sy ** 2))
        return np.array([e * (x - mx) / sx ** 2, e * (y - my) / sy ** 2])

    lr, pos, manual = 0.2, np.array([0.3, 0.4]), [np.array([0.3, 0.4])]
    for _ in range(30):
        pos = pos - lr * grad(*pos)
        manual.append(pos)
    path = A.optimizer_path(s, lambda p: torch.optim.SGD(p, lr=lr), (0.3, 0.4), steps=30)
    np.testing.assert_allclose(path, np.array(manual), rtol=1e-10)
    assert np.linalg.norm(path[-1] - [mx, my]) < np.linalg.norm(path[0] - [mx, my])


def test_fit_gaussian_surface_recovers_the_wells():
    xs, ys, Z = _three_wells()
    Z = Z + 0.01 * np.random.default_rng(0).normal(size=Z.shape)
    fit, rmse = A.fit_gaussian_surface(xs, ys, Z, n_wells=3)
    assert rmse < 0.02 and fit.offset == pytest.approx(2.0, abs=0.01)
    found = fit.params[np.argsort(-fit.params[:, 0])]
    np.testing.assert_allclose(found, WELLS, atol=0.03)


# ---------------------------------------------------------------------------------------------- wavelets


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "coif1"])
def test_wavelet_energy_parseval(wavelet):
    Z = np.random.default_rng(0).normal(size=(32, 32)) + np.linspace(0, 3, 32)[None, :] ** 2
    e = A.wavelet_energy(Z, wavelet)
    assert e["approx"] + sum(e["detail"]) == pytest.approx(np.sum(Z ** 2), rel=1e-10)
    assert e["total"] == pytest.approx(np.sum(Z ** 2))


def test_wavelet_energy_is_not_parseval_for_a_biorthogonal_wavelet():
    Z = np.random.default_rng(0).normal(size=(32, 32))
    e = A.wavelet_energy(Z, "bior2.2")
    assert abs(e["approx"] + sum(e["detail"]) - e["total"]) > 1e-3 * e["total"]


def test_wavelet_energy_separates_smooth_from_rough():
    x = np.linspace(-1, 1, 64)
    smooth = x[None, :] ** 2 + x[:, None] ** 2
    e = A.wavelet_energy(smooth, "haar", center=True)
    # a differentiable surface: Haar details ~ slope * spacing, so each finer level holds ~1/4 of the energy
    d = np.array(e["detail"])
    np.testing.assert_allclose(d[-2:] / d[-3:-1], 0.25, atol=0.005)
    # white noise: equal energy per coefficient, so the finest level holds 3/4 of it
    noise = A.wavelet_energy(np.random.default_rng(0).normal(size=(64, 64)), "haar", center=True)
    assert noise["detail"][-1] / noise["total"] == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="wavelet"):
        A.wavelet_energy(smooth, "no-such-wavelet")


# ---------------------------------------------------------------------------------------------- topology


def test_persistence_counts_the_known_minima_and_matches_ripser_lower_star():
    from ripser import lower_star_img
    from scipy.ndimage import minimum_filter

    xs, ys, Z = _three_wells()
    h0, h1 = A.sublevel_persistence(Z)
    assert A.count_minima(h0, min_persistence=0.05) == 3
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    strict = Z < minimum_filter(Z, footprint=ring, mode="constant", cval=np.inf)
    assert strict.sum() == 3                                                  # independent count of strict minima
    ref = lower_star_img(Z.astype(np.float32))
    np.testing.assert_allclose(np.sort(h0, 0), np.sort(ref, 0), rtol=1e-5)
    # the three wells have depths 1.0, 0.7, 0.5 below the plateau 2.0: births at the bottoms
    np.testing.assert_allclose(np.sort(h0[:, 0]), 2.0 - np.sort(WELLS[:, 0])[::-1], atol=0.02)
    assert np.all(h1[:, 1] - h1[:, 0] < 0.01)                                 # no loop of any size


def test_persistence_h1_of_a_ring_valley_around_a_bump():
    x = np.linspace(-3, 3, 61)                                                # contains 0: the bump top is on the grid
    X, Y = np.meshgrid(x, x)
    R = np.hypot(X, Y)
    Z = (R - 2) ** 2 + 0.5 * np.exp(-R ** 2)
    h0, h1 = A.sublevel_persistence(Z)
    life = h1[:, 1] - h1[:, 0]
    assert np.sum(life > 0.5) == 1
    birth, death = h1[np.argmax(life)]
    assert death == pytest.approx(Z[30, 30])                                   # filled when the level reaches the top
    assert birth < 0.1 and A.count_minima(h0, 0.05) == 1


def test_diagram_distance_zero_for_same_and_positive_for_different():
    _, _, Z = _three_wells()
    h0 = A.sublevel_persistence(Z)[0]
    assert A.diagram_distance(h0, h0) == 0
    shallower = A.sublevel_persistence(0.5 * Z)[0]
    assert A.diagram_distance(h0, shallower) > 0.05
    with pytest.raises(ValueError, match="non-finite"):
        A.sublevel_persistence(np.array([[0, np.nan], [1, 2]]))


# ---------------------------------------------------------------------------------------------- mode connectivity


def test_bezier_endpoints_and_straight_line():
    g = torch.Generator().manual_seed(0)
    w0, w1, theta = (torch.randn(7, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(A.bezier_point(w0, theta, w1, 0.0), w0)
    torch.testing.assert_close(A.bezier_point(w0, theta, w1, 1.0), w1)
    torch.testing.assert_close(A.bezier_point(w0, theta, w1, 0.5), 0.25 * w0 + 0.5 * theta + 0.25 * w1)
    for t in (0.1, 0.37, 0.9):
        torch.testing.assert_close(A.bezier_point(w0, (w0 + w1) / 2, w1, t), (1 - t) * w0 + t * w1)


def test_path_metrics_match_a_model_with_loaded_weights(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    a, b = models.mlp([784, 16, 10]), models.mlp([784, 16, 10])
    w0, w1 = A.flat_params(a), A.flat_params(b)
    theta = torch.randn_like(w0) * 0.05
    out = A.path_metrics(a, w0, theta, w1, [0.0, 0.3, 1.0], F.cross_entropy, (X[:500], y[:500]))
    for t, loss, acc in zip(out["t"], out["loss"], out["acc"]):
        ref = models.mlp([784, 16, 10])
        torch.nn.utils.vector_to_parameters(A.bezier_point(w0, theta, w1, t), ref.parameters())
        ref_loss, ref_acc = dl.evaluate(ref, (X[:500], y[:500]))
        assert loss == pytest.approx(ref_loss, rel=1e-5) and acc == pytest.approx(ref_acc)
    torch.testing.assert_close(A.flat_params(a), w0)                          # model unchanged


def test_path_metrics_straight_line_agrees_with_landscape_interpolate(fmnist_small):
    (X, y), _ = fmnist_small
    dl.seed_everything(0)
    a, b = models.mlp([784, 16, 10]), models.mlp([784, 16, 10])
    w0, w1 = A.flat_params(a), A.flat_params(b)
    ts = np.linspace(0, 1, 5)
    ours = A.path_metrics(a, w0, (w0 + w1) / 2, w1, ts, F.cross_entropy, (X[:500], y[:500]))
    theirs = landscape.interpolate(a, b, ts, F.cross_entropy, (X[:500], y[:500]))
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-4)


def test_barrier_closed_forms():
    ts = np.linspace(0, 1, 11)
    assert A.barrier(ts ** 2, ts) == pytest.approx(0.0, abs=1e-12)          # convex: never above the chord
    assert A.barrier(1 + np.sin(np.pi * ts), ts) == pytest.approx(1.0)       # a bump of height 1 over a flat chord
    assert A.barrier(2 * ts + np.sin(np.pi * ts)) == pytest.approx(1.0)      # chord from 0 to 2 removed
    with pytest.raises(ValueError):
        A.barrier([1.0])


def test_bezier_barrier_is_lower_than_the_straight_line_on_quick_models():
    size = dl.sizes("analysis", "quick")
    X, y = dl.load_fashion_mnist("train", limit=size["train_limit"], flatten=True)
    ends = []
    for seed in (1, 2):
        dl.seed_everything(seed)
        net = models.mlp([784, size["hidden"], 10])
        dl.fit(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), (X, y), size["mc_epochs"],
               batch_size=size["batch_size"], seed=seed)
        ends.append(A.flat_params(net))
    theta, _ = A.train_bezier(net, ends[0], ends[1], (X, y), size["bezier_epochs"], lr=0.05, momentum=0.9,
                              batch_size=size["batch_size"])
    ts = np.linspace(0, 1, 11)
    ev = (X[:2000], y[:2000])
    line = A.path_metrics(net, ends[0], (ends[0] + ends[1]) / 2, ends[1], ts, F.cross_entropy, ev)
    curve = A.path_metrics(net, ends[0], theta, ends[1], ts, F.cross_entropy, ev)
    assert A.barrier(line["loss"], ts) > 0.3
    assert A.barrier(curve["loss"], ts) < 0.25 * A.barrier(line["loss"], ts)

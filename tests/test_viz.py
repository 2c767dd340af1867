"""Smoke test of dldna_lite.viz: every public plot_* draws tiny data on the Agg backend and returns its axes."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dldna_lite import viz  # noqa: E402
from dldna_lite.train import History  # noqa: E402

EPOCHS = [dict(epoch=e, train_loss=1.0 / e, train_acc=0.5, test_loss=1.2 / e, test_acc=0.4 + 0.1 * e, time=e)
          for e in (1, 2, 3)]


def _history():
    return History(epochs=[dict(row) for row in EPOCHS], steps={"loss": list(np.linspace(2, 1, 12)),
                                                                "grad_norm": list(np.linspace(3, 1, 12))})


def _scan():
    xs = ys = np.linspace(-1, 1, 5)
    X, Y = np.meshgrid(xs, ys)
    return dict(xs=xs, ys=ys, loss=1 + X ** 2 + Y ** 2)


ALPHAS = np.linspace(-1, 1, 5)


def _slice(scale=1.0):
    """A ``scan_1d`` / ``interpolate`` dict over ``ALPHAS``."""
    return dict(alpha=ALPHAS, loss=scale * (1 + ALPHAS ** 2), acc=0.9 - 0.1 * ALPHAS ** 2)


def _monitor():
    loss = np.linspace(2, 1, 10)
    return dict(loss=loss, grad_norm=loss, param_change=loss[1:], weight_norm=loss, loss_improvement=-np.diff(loss))


def _coeffs():
    import pywt   # a runtime dependency of the package (chapter 04's wavelets): never skipped

    return pywt.wavedec2(np.random.default_rng(0).normal(size=(8, 8)), "haar", level=2)


CALLS = {
    "plot_history": lambda: viz.plot_history(_history(), label="Adam"),
    "plot_steps": lambda: viz.plot_steps(_history(), smooth=3, logy=True),
    "plot_layer_profile": lambda: viz.plot_layer_profile({"naive": dict(act_std=[1.0, 0.5, 0.0],
                                                                        grad_std=[0.1, 0.2, 0.3])}, title="t"),
    "plot_singular_values": lambda: viz.plot_singular_values({"orthogonal": [3.0, 2.0, 1.0]}),
    "plot_trajectory": lambda: viz.plot_trajectory(_scan_grid(), {"SGD": np.array([[1.0, 1.0], [0.5, 0.2]])},
                                                   minimum=(0, 0), title="t"),
    "plot_surface_run": lambda: viz.plot_surface_run("rosenbrock", "Adam", 0.05, 0.9, steps=20),
    "plot_optimizer_runs": lambda: viz.plot_optimizer_runs(
        {"SGD": [dict(history=_history(), grad_norm=[3.0, 2.0, 1.0]), dict(history=_history(), grad_norm=[2, 2, 1])]}),
    "plot_landscape_1d": lambda: viz.plot_landscape_1d({"init": dict(alpha=np.linspace(-1, 1, 5),
                                                                     loss=np.linspace(1, 2, 5))}, logy=True),
    "plot_landscape_contour": lambda: viz.plot_landscape_contour(_scan(), title="t"),
    "plot_landscape_3d": lambda: viz.plot_landscape_3d(_scan(), log=True, zmax=2.5),
    "plot_hessian_spectrum": lambda: viz.plot_hessian_spectrum({"trained": dict(grid=np.linspace(-1, 5, 9),
                                                                               density=np.linspace(0, 1, 9))}),
    "plot_persistence": lambda: viz.plot_persistence([np.array([[0.1, 0.5], [0.2, np.inf]]), np.array([[0.3, 0.4]])]),
    "plot_wavelet_energy": lambda: viz.plot_wavelet_energy({"filter": dict(detail=[1.0, 2.0, 3.0], total=10.0)}),
    "plot_wavelet_decomposition": lambda: viz.plot_wavelet_decomposition(_coeffs(), title="t"),
    "plot_path_losses": lambda: viz.plot_path_losses({"straight line": dict(t=np.linspace(0, 1, 5),
                                                                            loss=np.array([1, 2, 3, 2, 1.0]))}),
    "plot_monitor": lambda: viz.plot_monitor({"lr good": _monitor()}, smooth=2),
    "plot_sharpness": lambda: viz.plot_sharpness({"lr good": dict(sharp_step=[1, 5], sharpness=[1.0, 2.0], lr=0.5,
                                                                  loss=[1.0, 0.5, 0.2])}),
    "plot_grokking": lambda: viz.plot_grokking({"weight decay": dict(
        step=np.array([1, 10, 100]), train_acc=np.array([0.1, 0.9, 1.0]), val_acc=np.array([0.0, 0.1, 0.9]))},
        threshold=0.9),
    "plot_double_descent": lambda: viz.plot_double_descent(
        {"clean labels": dict(features=np.array([10, 100, 1000]), test_error=np.array([0.5, 0.9, 0.3]),
                              train_error=np.array([0.4, 0.0, 0.0]), test_mse=np.array([1.0, 9.0, 0.5]), n_train=100)}),
    "plot_backprop_cost": lambda: viz.plot_backprop_cost({"vanilla": dict(depth=[2, 4, 8], peak=[3, 5, 9],
                                                                          time=[1e-3, 2e-3, 4e-3])}),
    # the chapters' figures (issue 28), called with the shapes and keys the chapters pass
    "plot_batchnorm_runs": lambda: viz.plot_batchnorm_runs({"kaiming_normal": _history()},
                                                           {"kaiming_normal": _history()}, title="t", smooth=3),
    "plot_interpolations": lambda: viz.plot_interpolations(
        {label: {"train": _slice(), "test": _slice()} for label in ("init", "epoch 1")}, end="epoch 3"),
    "plot_split_slices": lambda: viz.plot_split_slices(
        {split: {(name, state): _slice() for name in ("no dropout", "dropout 0.2") for state in ("init", "final")}
         for split in ("test", "train")}),
    "plot_rescaling_slices": lambda: viz.plot_rescaling_slices(
        ALPHAS, {(norm, label): _slice() for norm in ("none", "filter") for label in ("original", "rescaled")}),
    "plot_planes": lambda: viz.plot_planes({"no dropout": _scan(), "dropout 0.2": _scan()}),
    "plot_eigenvector_plane": lambda: viz.plot_eigenvector_plane(_scan()),
    "plot_curvature_history": lambda: viz.plot_curvature_history(
        np.array([0, 1, 2]), {"top eigenvalue": np.array([5.0, 9.0, 7.0]), "trace": np.array([50.0, 80.0, 60.0])}),
    "plot_slice_marker": lambda: viz.plot_slice_marker({0: _slice(), 1: _slice(2.0)}, 1, 0.3, "final"),
    "plot_paths_on_plane": lambda: viz.plot_paths_on_plane(
        _scan_grid(), {"SGD lr=0.1": np.array([[1.0, 1.0], [0.5, 0.2]])}, figsize=(4, 3), xlabel="a", ylabel="b",
        minimum=(0, 0), log_levels=False, title="t"),
    "plot_embeddings": lambda: viz.plot_embeddings(
        {"PCA": (np.random.default_rng(0).normal(size=(6, 2)), "a", "b"),
         "t-SNE": (np.random.default_rng(1).normal(size=(6, 2)), "t-SNE 1", "t-SNE 2")},
        {"SGD lr=0.1": 3, "Adam lr=0.01": 3}),
    "plot_filled_contour": lambda: viz.plot_filled_contour(*(_scan()[k] for k in ("xs", "ys", "loss")), label="error",
                                                           xlabel="a", ylabel="b", title="t"),
    "plot_loss_pictures": lambda: viz.plot_loss_pictures({"target": np.eye(5), "trained plane": _scan()["loss"]},
                                                         span=1.0, vmax=3.0),
    "plot_schedule_run": lambda: viz.plot_schedule_run(np.linspace(0, 0.1, 12), _history(), lr_max=0.1, smooth=3),
    "plot_batch_sweep": lambda: viz.plot_batch_sweep({"linear scaling": [
        dict(batch_size=b, diverged_at=None, test_acc=0.8, gap=0.1 * b, sharpness=5.0 / b) for b in (32, 64)]
        + [dict(batch_size=128, diverged_at=3, test_acc=None, gap=None, sharpness=None)]}),
    "plot_grokking_loss": lambda: viz.plot_grokking_loss({"weight decay": dict(
        step=np.array([1, 10, 100]), train_loss=np.array([2.0, 0.1, 0.01]), val_loss=np.array([2.0, 3.0, 0.1]),
        weight_norm=np.array([30.0, 40.0, 20.0]))}),
    "plot_layer_grad_norms": lambda: viz.plot_layer_grad_norms({f"gain {g}": dict(
        preact=[g ** k for k in range(3)], weight=[0.5 * g ** k for k in range(4)]) for g in (0.8, 1.25)}),
}


def _scan_grid():
    s = _scan()
    X, Y = np.meshgrid(s["xs"], s["ys"])
    return X, Y, s["loss"]


def _axes(result):
    """The axes a plot returned: an axis, a sequence or array of them, or a figure (its axes)."""
    if isinstance(result, matplotlib.figure.Figure):
        return list(result.axes)
    return list(np.ravel(result)) if isinstance(result, (list, tuple, np.ndarray)) else [result]


def test_every_public_plot_is_covered():
    public = {name for name in viz.__all__ if name.startswith("plot_")}
    assert public == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_plot_draws_on_axes(name):
    plt.close("all")
    try:
        axes = _axes(CALLS[name]())
        assert axes and all(isinstance(ax, matplotlib.axes.Axes) for ax in axes)
        assert any(ax.has_data() or ax.images for ax in axes), f"{name} drew nothing"
    finally:
        plt.close("all")


def test_eigenvector_plane_draws_a_pair_into_given_axes():
    fig = plt.figure()
    try:
        axes = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d")
        assert viz.plot_eigenvector_plane(_scan(), pair=(3, 4), axes=axes) is fig and len(fig.axes) == 2
        assert "3, 4" in axes[0].get_title() and axes[0].get_xlabel() == r"$\lambda_{3}$-direction step"
    finally:
        plt.close("all")


def test_plots_draw_on_a_given_axis_and_new_axes_makes_one_otherwise():
    fig, ax = plt.subplots()
    try:
        assert viz.plot_singular_values({"lecun": [2.0, 1.0]}, ax=ax) is ax and ax.lines
        assert viz.new_axes(ax) is ax
        assert len(viz.new_axes(None, 3, figsize=(6, 2))) == 3
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        assert viz.color("Adam") == viz.PALETTE["Adam"] and viz.color("unknown", 1) == cycle[1 % len(cycle)]
    finally:
        plt.close("all")

"""Chapter 02 "Optimizers from scratch": optimizer paths on toy surfaces and per-epoch curves of the Fashion-MNIST
comparison."""
from __future__ import annotations

from functools import lru_cache

from .base import color, finish, log_norm, new_axes


def plot_trajectory(grid, paths: dict, ax=None, minimum=None, title: str | None = None, log_levels: bool = True):
    """Optimizer paths on a contour plot. ``grid = (X, Y, Z)`` (e.g. ``Surface.grid()``), ``paths`` maps a label
    (palette name) to an array ``[k, 2]`` of visited points. Levels are log-spaced when ``Z`` spans decades."""
    import numpy as np

    ax = new_axes(ax, figsize=(4.6, 3.6))
    X, Y, Z = grid
    if log_levels:
        shifted = Z - Z.min() + 1e-3
        levels = np.geomspace(shifted.min(), shifted.max(), 16)
        ax.contourf(X, Y, shifted, levels=levels, cmap="Greys_r", norm=log_norm())
    else:
        ax.contourf(X, Y, Z, levels=16, cmap="Greys_r")
    for k, (label, path) in enumerate(paths.items()):
        c = color(label.split(" ")[0], k)
        ax.plot(path[:, 0], path[:, 1], "-", color=c, lw=1.4, label=label)
        ax.plot(path[:1, 0], path[:1, 1], "o", color="black", ms=4)
        ax.plot(path[-1:, 0], path[-1:, 1], "x", color=c, ms=7, mew=2)
    if minimum is not None:
        ax.plot(*minimum, "*", color="gold", ms=12, mec="black", label="minimum")
    ax.set_xlim(X.min(), X.max())
    ax.set_ylim(Y.min(), Y.max())
    return finish(ax, "$x$", "$y$", title, legend="upper right")


def plot_optimizer_runs(runs: dict, axes=None, metrics=("train_loss", "test_acc", "grad_norm")):
    """Per-epoch curves of several optimizers: ``runs`` maps a label to a list of run dicts over seeds (with
    ``history`` and ``grad_norm``, as from ``dldna_lite.optim.compare.run``); mean line and min-max band."""
    import numpy as np

    axes = new_axes(axes, len(metrics), figsize=(2.5 * len(metrics), 2.8))  # 7.5 in: a page-wide row
    ylabels = {"train_loss": "train loss (cross-entropy)", "test_acc": "test accuracy (fraction)",
               "test_loss": "test loss (cross-entropy)", "grad_norm": "mean gradient norm ‖∇L‖₂"}
    for k, (label, seeds) in enumerate(runs.items()):
        ok = [r for r in seeds if not r["history"].diverged]
        if not ok:
            continue
        for ax, key in zip(axes, metrics):
            series = [r["grad_norm"] if key == "grad_norm" else r["history"][key] for r in ok]
            values = np.array([s[:min(map(len, series))] for s in series], dtype=float)
            epochs = np.arange(1, values.shape[1] + 1)
            ax.plot(epochs, values.mean(0), marker="o", ms=3, color=color(label, k), label=label)
            if len(values) > 1:
                ax.fill_between(epochs, values.min(0), values.max(0), color=color(label, k), alpha=0.2)
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes, metrics):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabels.get(key, key))
        ax.grid(alpha=0.3)
        if key in ("train_loss", "grad_norm"):
            ax.set_yscale("log")
    axes[-1].legend(fontsize=8, ncol=2)
    return axes


@lru_cache(maxsize=None)
def _surface_grid(name: str, n: int = 120):
    from .. import surfaces

    return surfaces.surface(name).grid(n)


def plot_surface_run(name: str, optimizer: str, lr: float, momentum: float = 0.0, steps: int = 200, ax=None):
    """One optimizer's path on the toy surface ``name`` (chapter 02's widgets): :func:`plot_trajectory` of
    :func:`dldna_lite.surfaces.trajectory` on a 120×120 grid, the settings and the outcome (final value, or the step
    at which the run diverged) in the title. Returns the axis."""
    from .. import surfaces
    from ..train import describe_divergence

    s = surfaces.surface(name)
    path, diverged_at = surfaces.trajectory(name, optimizer, lr, momentum, steps=steps)
    outcome = (describe_divergence(diverged_at) if diverged_at
               else f"f = {s.f(*path[-1]):.3g} after {len(path) - 1} steps")
    ax = new_axes(ax, figsize=(4.2, 3.3))
    return plot_trajectory(_surface_grid(name), {optimizer: path}, ax=ax, minimum=s.minimum,
                           title=f"{name}: {optimizer}, lr={lr:.3g}, momentum={momentum}\n{outcome}")

"""Plot helpers: one function per kind of plot, one palette for the whole book.

Colours are fixed per optimizer / initializer / variant name through :data:`PALETTE`, so "Adam" is the same colour
in every chapter. Unknown names fall back to matplotlib's cycle.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

#: Colour per name used anywhere in the book (optimizers, initializers, variants).
PALETTE: dict[str, str] = {
    # optimizers
    "SGD": "#1f77b4", "SGD+momentum": "#17becf", "Nesterov": "#0e6f7a", "Adagrad": "#8c564b", "RMSprop": "#bcbd22",
    "Adam": "#d62728", "AdamW": "#ff7f0e", "Adafactor": "#9467bd", "Lion": "#2ca02c", "Sophia": "#e377c2",
    # initializers
    "naive": "#7f7f7f", "lecun": "#8c564b", "xavier_normal": "#1f77b4", "xavier_uniform": "#aec7e8",
    "kaiming_normal": "#d62728", "kaiming_uniform": "#ff9896", "orthogonal": "#2ca02c",
    "scaled_orthogonal": "#98df8a", "l_momentum": "#9467bd",
    # generic variants
    "train": "#1f77b4", "test": "#ff7f0e", "init": "#7f7f7f", "final": "#d62728",
    # paths and architectures (loss landscapes II)
    "straight line": "#7f7f7f", "Bezier curve": "#2ca02c", "skip": "#2ca02c", "no skip": "#9467bd",
    "trained": "#d62728",
}


def color(name: str, index: int = 0) -> str:
    """The palette colour of ``name``, or the ``index``-th colour of matplotlib's cycle."""
    if name in PALETTE:
        return PALETTE[name]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[index % len(cycle)]


def plot_history(history, metrics=("train_loss", "test_loss", "test_acc"), axes=None, label: str | None = None,
                 color_name: str | None = None):
    """Per-epoch curves of a :class:`~dldna_lite.train.History`, one axis per metric. Returns the axes."""
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), constrained_layout=True)
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    c = color(color_name or label or "train")
    for ax, key in zip(axes, metrics):
        values = [v for v in history[key] if v is not None]
        ax.plot(range(1, len(values) + 1), values, marker="o", color=c, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " ") + (" (fraction)" if key.endswith("acc") else ""))
        ax.grid(alpha=0.3)
    if label:
        axes[-1].legend()
    return axes


def plot_steps(history, key: str = "loss", ax=None, label: str | None = None, logy: bool = False,
               color_name: str | None = None, smooth: int = 1):
    """One per-step metric (optionally a moving average over ``smooth`` steps). Returns the axis."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3), constrained_layout=True)
    values = np.asarray(history[key], dtype=float)
    if smooth > 1 and len(values) >= smooth:
        values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
    ax.plot(np.arange(1, len(values) + 1), values, color=color(color_name or label or key), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(key.replace("_", " "))
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return ax


# --- optimizers chapter -------------------------------------------------------------------------------------------

def plot_trajectory(grid, paths: dict, ax=None, minimum=None, title: str | None = None, log_levels: bool = True):
    """Optimizer paths on a contour plot. ``grid = (X, Y, Z)`` (e.g. ``Surface.grid()``), ``paths`` maps a label
    (palette name) to an array ``[k, 2]`` of visited points. Levels are log-spaced when ``Z`` spans decades."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.6), constrained_layout=True)
    X, Y, Z = grid
    if log_levels:
        shifted = Z - Z.min() + 1e-3
        levels = np.geomspace(shifted.min(), shifted.max(), 16)
        ax.contourf(X, Y, shifted, levels=levels, cmap="Greys_r", norm=_log_norm())
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
    ax.set_xlabel("$x$")
    ax.set_ylabel("$y$")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return ax


def _log_norm():
    from matplotlib.colors import LogNorm

    return LogNorm()


def plot_optimizer_runs(runs: dict, axes=None, metrics=("train_loss", "test_acc", "grad_norm")):
    """Per-epoch curves of several optimizers: ``runs`` maps a label to a list of run dicts over seeds (with
    ``history`` and ``grad_norm``, as from ``dldna_lite.optim.compare.run``); mean line and min-max band."""
    import numpy as np

    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), constrained_layout=True)
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
    axes[-1].legend(fontsize=7, ncol=2)
    return axes


# --- loss landscapes II: persistence, wavelets, paths between minima ----------------------------------------------

def plot_persistence(dgms, ax=None, title: str | None = None, labels=("$H_0$ (basins)", "$H_1$ (loops)")):
    """Persistence diagram: one point (birth, death) per feature, in loss units; the essential $H_0$ class (death
    ``inf``) is drawn on a dashed line at the top. ``dgms`` = ``[H0, H1, ...]`` arrays ``[n, 2]``. Returns the axis."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4), constrained_layout=True)
    finite = np.concatenate([d[np.isfinite(d)] for d in dgms if len(d)])
    lo, hi = finite.min(), finite.max()
    top = hi + 0.08 * (hi - lo + 1e-12)
    for k, (dgm, label) in enumerate(zip(dgms, labels)):
        if not len(dgm):
            continue
        deaths = np.where(np.isfinite(dgm[:, 1]), dgm[:, 1], top)
        ax.scatter(dgm[:, 0], deaths, s=18, color=f"C{k}", label=f"{label}: {len(dgm)}", zorder=3)
    ax.plot([lo, top], [lo, top], color="grey", lw=0.8)
    ax.axhline(top, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("birth (loss)")
    ax.set_ylabel("death (loss); dashed = never")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_wavelet_energy(energies: dict, ax=None):
    """Share of a surface's energy per wavelet level (coarsest detail left, finest right), one line per surface.

    ``energies`` maps a label (palette name) to a ``dldna_lite.analysis.wavelet_energy`` dict. Log scale."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 3.2), constrained_layout=True)
    for k, (label, e) in enumerate(energies.items()):
        shares = np.array(e["detail"]) / e["total"]
        levels = np.arange(len(shares), 0, -1)
        ax.plot(levels, shares, marker="o", color=color(label, k), label=label)
    ax.set_xlabel("detail level (1 = finest, grid scale)")
    ax.set_ylabel("share of the surface's energy")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_wavelet_decomposition(coeffs, ax=None, title: str | None = None):
    """The 2D wavelet coefficients (``pywt.wavedec2`` output) tiled in the usual pyramid, log magnitude."""
    import numpy as np
    import pywt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4), constrained_layout=True)
    arr, _ = pywt.coeffs_to_array(coeffs)
    image = ax.imshow(np.log10(np.abs(arr) + 1e-6), cmap="magma", origin="lower")
    plt.colorbar(image, ax=ax, label="log10 |coefficient|", shrink=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_path_losses(paths: dict, key: str = "loss", ax=None):
    """Loss (or accuracy) along paths between two networks: ``paths`` maps a label (palette name) to a dict with
    ``t`` and ``key`` arrays (``dldna_lite.analysis.path_metrics``). Returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 3.2), constrained_layout=True)
    for k, (label, p) in enumerate(paths.items()):
        ax.plot(p["t"], p[key], marker="o", ms=3, color=color(label, k), label=label)
    ax.set_xlabel("position on the path $t$ (0 = network A, 1 = network B)")
    ax.set_ylabel({"loss": "loss (cross-entropy)", "acc": "accuracy (fraction)"}.get(key, key))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_layer_profile(profiles: dict, axes=None, title: str | None = None):
    """Signal propagation per layer (chapter "Initialization"): ``profiles[name] = dict(act_std=[L], grad_std=[L])``
    (from :func:`dldna_lite.init.propagation_stats`) on two log-scale axes, forward and backward. Returns the axes."""
    import numpy as np

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for i, (name, prof) in enumerate(profiles.items()):
        for ax, key in zip(axes, ("act_std", "grad_std")):
            values = np.asarray(prof[key], dtype=float)
            values = np.where(values > 0, values, np.nan)  # log axis: a gap where a signal is exactly zero
            ax.plot(np.arange(1, len(values) + 1), values, marker=".", color=color(name, i), label=name)
    axes[0].set_ylabel(r"std of pre-activation $z_\ell$")
    axes[1].set_ylabel(r"std of $\partial L / \partial z_\ell$")
    for ax in axes:
        ax.set_xlabel(r"layer $\ell$ (input side = 1)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7)
    if title:
        axes[0].figure.suptitle(title, fontsize=10)
    return axes


def plot_singular_values(spectra: dict, ax=None):
    """Sorted singular values of one weight matrix per name (chapter "Initialization"). Returns the axis."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3), constrained_layout=True)
    for i, (name, s) in enumerate(spectra.items()):
        s = np.asarray(s, dtype=float)
        ax.plot(np.arange(1, len(s) + 1), s, color=color(name, i), label=name)
    ax.set_xlabel("index $i$ (descending)")
    ax.set_ylabel(r"singular value $\sigma_i$")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return ax

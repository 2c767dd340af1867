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
    # loss landscapes I
    "epoch 1": "#ff7f0e", "no dropout": "#1f77b4", "dropout 0.2": "#e377c2", "filter": "#2ca02c",
    "unnormalized": "#8c564b",
    # training dynamics
    "lr too low": "#9467bd", "lr good": "#2ca02c", "lr too high": "#d62728", "no clipping": "#7f7f7f",
    "clip norm": "#1f77b4", "clip value": "#ff7f0e", "constant": "#7f7f7f", "step": "#8c564b", "cosine": "#1f77b4",
    "warmup_cosine": "#2ca02c", "one_cycle": "#e377c2", "weight decay": "#1f77b4", "exponential lr": "#ff7f0e",
    "BN": "#2ca02c", "no BN": "#7f7f7f", "linear scaling": "#d62728", "no scaling": "#1f77b4",
    # modern stories
    "no weight decay": "#7f7f7f", "clean labels": "#1f77b4", "label noise": "#d62728", "vanilla": "#1f77b4",
    "memory_poor": "#d62728", "checkpoint": "#2ca02c", "torch_checkpoint": "#98df8a",
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

def plot_persistence(dgms, ax=None, title: str | None = None, labels=("$H_0$ (basins)", "$H_1$ (loops)"),
                     value_range=None):
    """Persistence diagram: one point (birth, death) per feature, in loss units; the essential $H_0$ class (death
    ``inf``) is drawn on a dashed line at the top. ``dgms`` = ``[H0, H1, ...]`` arrays ``[n, 2]``; ``value_range``
    = (min, max) of the surface sets the axes (default: the finite values). Returns the axis."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4), constrained_layout=True)
    if value_range is None:
        finite = np.concatenate([d[np.isfinite(d)] for d in dgms if len(d)])
        value_range = (finite.min(), finite.max())
    lo, hi = value_range
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


# --- loss landscapes I: slices and spectra ------------------------------------------------------------------------

def plot_landscape_1d(curves: dict, ax=None, key: str = "loss", xlabel: str = r"step along the direction $\alpha$",
                      title: str | None = None, logy: bool = False):
    """1D slices: ``curves`` maps a label (palette name) to a dict with ``alpha`` and ``key`` arrays (as returned
    by :func:`dldna_lite.landscape.scan_1d` / ``interpolate``). Returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 3.2), constrained_layout=True)
    for k, (label, c) in enumerate(curves.items()):
        ax.plot(c["alpha"], c[key], color=color(label, k), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel({"loss": "loss (cross-entropy)", "acc": "accuracy (fraction)"}.get(key, key))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_landscape_contour(scan: dict, ax=None, levels: int = 12, title: str | None = None, log: bool = True,
                           xlabel: str = r"$\alpha$ (direction 1)", ylabel: str = r"$\beta$ (direction 2)"):
    """Labelled contour lines of a 2D slice ``scan = dict(xs, ys, loss [Y, X])`` (:func:`landscape.scan_2d`),
    log-spaced levels by default, the centre (the model itself) marked. Returns the axis.

    Non-finite losses (where the network overflowed) are masked: left blank, and never used for a level;
    ``ValueError`` when no loss is finite."""
    import numpy as np

    Z = np.ma.masked_invalid(np.asarray(scan["loss"], dtype=float))
    if Z.count() == 0:
        raise ValueError("no finite loss on this slice: nothing to draw")
    lo, hi = float(Z.min()), float(Z.max())
    if log:
        lo = max(lo, 1e-4)
    hi = max(hi, lo * (1 + 1e-9) + 1e-12)                   # a flat slice still gets increasing levels
    if ax is None:
        _, ax = plt.subplots(figsize=(3.8, 3.4), constrained_layout=True)
    lv = np.geomspace(lo, hi, levels) if log else np.linspace(lo, hi, levels)
    ax.contourf(scan["xs"], scan["ys"], Z, levels=lv, cmap="viridis", norm=_log_norm() if log else None, alpha=0.85)
    lines = ax.contour(scan["xs"], scan["ys"], Z, levels=lv, colors="white", linewidths=0.6)
    ax.clabel(lines, lines.levels[::2], fmt="%.2g", fontsize=6)
    ax.plot(0, 0, "*", color="gold", ms=10, mec="black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_landscape_3d(scan: dict, ax=None, title: str | None = None, log: bool = False, zmax: float | None = None):
    """3D surface of a 2D slice ``scan = dict(xs, ys, loss [Y, X])``; ``zmax`` clips tall walls. Returns the axis."""
    import numpy as np

    if ax is None:
        fig = plt.figure(figsize=(4.2, 3.6), constrained_layout=True)
        ax = fig.add_subplot(projection="3d")
    Z = np.asarray(scan["loss"], dtype=float)
    if zmax is not None:
        Z = np.minimum(Z, zmax)
    Z = np.log10(Z) if log else Z
    Xg, Yg = np.meshgrid(scan["xs"], scan["ys"])
    ax.plot_surface(Xg, Yg, Z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.9)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(r"$\beta$")
    ax.set_zlabel("log10 loss" if log else "loss")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_hessian_spectrum(densities: dict, ax=None, logy: bool = True):
    """Hessian eigenvalue densities from :func:`dldna_lite.hessian.eigen_density` (one line per label, palette
    colours), log density axis so that the few large outliers stay visible. Returns the axis."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2), constrained_layout=True)
    for k, (label, d) in enumerate(densities.items()):
        dens = np.asarray(d["density"], dtype=float)
        ax.plot(d["grid"], np.maximum(dens, 1e-8) if logy else dens, color=color(label, k), label=label)
    ax.set_xlabel(r"eigenvalue $\lambda$ of the Hessian")
    ax.set_ylabel("density (smoothed)")
    if logy:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


# --- training dynamics --------------------------------------------------------------------------------------------

_MONITOR_LABELS = {"loss": "minibatch loss", "grad_norm": r"gradient norm $\|g_t\|_2$",
                   "param_change": r"step $\|\Delta\theta_t\|_2$", "weight_norm": r"weight norm $\|\theta_t\|_2$",
                   "loss_improvement": r"improvement $L_{t-1}-L_t$", "relative_update": r"$\|\Delta\theta_t\|/\|\theta_t\|$",
                   "lr": r"learning rate $\eta_t$"}


def plot_monitor(monitors: dict, keys=("loss", "grad_norm", "param_change", "weight_norm", "loss_improvement"),
                 axes=None, smooth: int = 1, log=("loss", "grad_norm", "param_change", "relative_update")):
    """The monitor of :func:`dldna_lite.dynamics.monitor`, one panel per key, one line per run (``monitors`` maps a
    label, a palette name, to a monitor dict). ``smooth`` = moving-average window (steps). Returns the axes."""
    import numpy as np

    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(3.1 * len(keys), 2.7), constrained_layout=True)
    axes = np.atleast_1d(axes)
    for k, (label, mon) in enumerate(monitors.items()):
        for ax, key in zip(axes, keys):
            v = np.asarray(mon[key], dtype=float)
            steps = np.arange(len(mon["loss"]) - len(v) + 1, len(mon["loss"]) + 1)
            keep = np.isfinite(v)
            v, steps = v[keep], steps[keep]
            if smooth > 1 and len(v) >= smooth:
                v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
                steps = steps[smooth - 1:]
            ax.plot(steps, v, color=color(label, k), label=label, lw=1)
    for ax, key in zip(axes, keys):
        ax.set_xlabel("step")
        ax.set_ylabel(_MONITOR_LABELS.get(key, key), fontsize=8)
        if key in log:
            ax.set_yscale("log")
        if key == "loss_improvement":
            ax.axhline(0, color="black", lw=0.6)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return axes


def plot_sharpness(runs: dict, axes=None):
    """Edge of stability: for each ``label -> run`` of :func:`dldna_lite.dynamics.gd_with_sharpness`, the sharpness
    over steps with its 2/eta line (left) and the full-batch loss (right). Returns the axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for k, (label, run) in enumerate(runs.items()):
        c = color(label, k)
        axes[0].plot(run["sharp_step"], run["sharpness"], marker=".", color=c, label=label)
        axes[0].axhline(2 / run["lr"], color=c, ls="--", lw=0.8)
        axes[1].plot(range(1, len(run["loss"]) + 1), run["loss"], color=c, lw=1, label=label)
    axes[0].set_ylabel(r"sharpness $\lambda_{max}(\nabla^2 L)$")
    axes[0].set_title(r"dashed: $2/\eta$", fontsize=9)
    axes[1].set_ylabel("full-batch loss (½ MSE)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step of gradient descent")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return axes



# ------------------------------------------------------------------------------------------ modern stories
def plot_grokking(runs: dict, ax=None, threshold: float | None = None):
    """Grokking: train (dashed) and validation (solid) accuracy against the step, log axis, for each
    ``label -> run`` of :func:`dldna_lite.stories.train_grokking`; ``threshold`` draws a horizontal line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    for k, (label, run) in enumerate(runs.items()):
        c = color(label, k)
        ax.plot(run["step"], 100 * run["train_acc"], ls="--", color=c, label=f"{label}: train")
        ax.plot(run["step"], 100 * run["val_acc"], color=c, label=f"{label}: validation")
    if threshold is not None:
        ax.axhline(100 * threshold, color="black", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("optimization step (full batch, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_double_descent(curves: dict, axes=None):
    """Double descent: test error (left) and test MSE (right, log) against the number of random features (log),
    one curve per ``label -> curve`` of :func:`dldna_lite.stories.double_descent_curve`; the dotted line is the
    interpolation threshold (#features = #training samples)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for k, (label, curve) in enumerate(curves.items()):
        c = color(label, k)
        axes[0].plot(curve["features"], 100 * curve["test_error"], marker=".", color=c, label=f"{label}: test")
        axes[0].plot(curve["features"], 100 * curve["train_error"], ls="--", color=c, lw=0.8,
                     label=f"{label}: train")
        axes[1].plot(curve["features"], curve["test_mse"], marker=".", color=c, label=label)
    n = next(iter(curves.values()))["n_train"]
    for ax in axes:
        ax.axvline(n, color="black", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("number of random features $K$ (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("classification error (%)")
    axes[1].set_ylabel("test MSE to one-hot targets")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    return axes


def plot_backprop_cost(profile: dict, axes=None):
    """Memory of backprop: peak stored activations (left) and time of one forward+backward (right) against depth
    ``n`` (log-log), per strategy of :func:`dldna_lite.stories.backprop_profile`, with the theory curves
    ``n + 1``, ``2√n`` and a constant on the left."""
    import numpy as np

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.3), constrained_layout=True)
    for k, (name, res) in enumerate(profile.items()):
        c = color(name, k)
        axes[0].plot(res["depth"], res["peak"], marker="o", color=c, label=name)
        axes[1].plot(res["depth"], 1e3 * np.asarray(res["time"]), marker="o", color=c, label=name)
    n = np.asarray(next(iter(profile.values()))["depth"], dtype=float)
    for curve, text in ((n + 1, "$n+1$"), (2 * np.sqrt(n), r"$2\sqrt{n}$"), (np.full_like(n, 3.0), "3")):
        axes[0].plot(n, curve, color="black", ls=":", lw=0.8)
        axes[0].annotate(text, (n[-1], curve[-1]), fontsize=8, xytext=(4, 0), textcoords="offset points")
    axes[0].set_ylabel("peak stored activations (count)")
    axes[1].set_ylabel("forward + backward time (ms)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth $n$ (blocks, log scale)")
        ax.grid(alpha=0.3)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    axes[1].legend(fontsize=7)
    return axes

"""Chapter 01 "Initialization": signal propagation per layer and singular-value spectra."""
from __future__ import annotations

from .base import color, new_axes


def plot_layer_profile(profiles: dict, axes=None, title: str | None = None):
    """Signal propagation per layer (chapter "Initialization"): ``profiles[name] = dict(act_std=[L], grad_std=[L])``
    (from :func:`dldna_lite.init.propagation_stats`) on two log-scale axes, forward and backward. Returns the axes."""
    import numpy as np

    axes = new_axes(axes, 2, figsize=(7.5, 3.0))
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
    axes[1].legend(fontsize=8)
    if title:
        axes[0].figure.suptitle(title, fontsize=10)
    return axes


def plot_singular_values(spectra: dict, ax=None):
    """Sorted singular values of one weight matrix per name (chapter "Initialization"). Returns the axis."""
    import numpy as np

    ax = new_axes(ax, figsize=(5, 3))
    for i, (name, s) in enumerate(spectra.items()):
        s = np.asarray(s, dtype=float)
        ax.plot(np.arange(1, len(s) + 1), s, color=color(name, i), label=name)
    ax.set_xlabel("index $i$ (descending)")
    ax.set_ylabel(r"singular value $\sigma_i$")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return ax


def plot_batchnorm_runs(bn_runs: dict, plain_runs: dict, ax=None, title: str | None = None, smooth: int = 20):
    """Per-step training loss of each initialization with BatchNorm (solid) and without (dotted), chapter
    "Initialization": ``bn_runs[name]`` and ``plain_runs[name]`` are :class:`~dldna_lite.train.History` objects of the
    same network; moving average over ``smooth`` steps, palette colour of ``name``. Returns the axis."""
    from .training import plot_steps

    ax = new_axes(ax, figsize=(5.5, 3.2))
    for name, history in bn_runs.items():
        plot_steps(history, ax=ax, label=f"{name} + BN", color_name=name, smooth=smooth)
        plot_steps(plain_runs[name], ax=ax, label=f"{name}, no BN", color_name=name, smooth=smooth)
        ax.lines[-1].set_linestyle(":")
    ax.set_ylabel("training loss (cross-entropy)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax

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

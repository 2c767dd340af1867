"""Training curves from a :class:`~dldna_lite.train.History` (chapters 00 "Quickstart", 01 "Initialization",
05 "Training dynamics")."""
from __future__ import annotations

from .base import color, new_axes


def plot_history(history, metrics=("train_loss", "test_loss", "test_acc"), axes=None, label: str | None = None,
                 color_name: str | None = None):
    """Per-epoch curves of a :class:`~dldna_lite.train.History`, one axis per metric. Returns the axes."""
    axes = new_axes(axes, len(metrics), figsize=(2.5 * len(metrics), 2.8))
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

    ax = new_axes(ax, figsize=(5, 3))
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

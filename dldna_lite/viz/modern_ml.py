"""Plots of the chapters "Stories from modern ML" (06: grokking, double descent; 07: the memory of backpropagation).

Sized for a book column of about 7.5 inches."""
from __future__ import annotations

from .base import color, new_axes


def plot_grokking(runs: dict, ax=None, threshold: float | None = None):
    """Grokking: train (dashed) and validation (solid) accuracy against the step, log axis, for each
    ``label -> run`` of :func:`dldna_lite.generalization.train_grokking`; ``threshold`` draws a horizontal line."""
    ax = new_axes(ax, figsize=(6.5, 3.4))
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
    ax.legend(fontsize=8)
    return ax


def plot_double_descent(curves: dict, axes=None):
    """Double descent: test error (left) and test MSE (right, log) against the number of random features (log),
    one curve per ``label -> curve`` of :func:`dldna_lite.generalization.double_descent_curve`; the dotted line is the
    interpolation threshold (#features = #training samples)."""
    axes = new_axes(axes, 2, figsize=(7.5, 3.2))
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
    axes[0].legend(fontsize=8)
    return axes


def plot_backprop_cost(profile: dict, axes=None):
    """Memory of backprop: peak stored activations (left) and time of one forward+backward (right) against depth
    ``n`` (log-log), per strategy of :func:`dldna_lite.backprop.backprop_profile`, with the theory curves
    ``n + 1``, ``2√n`` and a constant on the left."""
    import numpy as np

    axes = new_axes(axes, 2, figsize=(7.5, 3.3))
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
    axes[1].legend(fontsize=8)
    return axes


def plot_grokking_loss(runs: dict, axes=None):
    """Grokking, the other half: train (dashed) and validation (solid) cross-entropy (left, log) and the weight norm
    (right) against the step (log axis), for each ``label -> run`` of :func:`dldna_lite.generalization.train_grokking`.
    Returns the axes."""
    axes = new_axes(axes, 2, figsize=(7.5, 3.2))
    for k, (name, run) in enumerate(runs.items()):
        c = color(name, k)
        axes[0].plot(run["step"], run["train_loss"], ls="--", color=c, label=f"{name}: train")
        axes[0].plot(run["step"], run["val_loss"], color=c, label=f"{name}: validation")
        axes[1].plot(run["step"], run["weight_norm"], color=c, label=name)
    axes[0].set_ylabel("cross-entropy")
    axes[0].set_yscale("log")
    axes[1].set_ylabel(r"weight norm $\|\theta\|_2$")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("optimization step (log scale)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return axes


def plot_layer_grad_norms(norms: dict, axes=None):
    """Vanishing and exploding gradients: the norms of the backward signal :math:`\\delta_\\ell` (left) and of the
    weight gradients (right) per layer (log scale), one line per ``label -> norms`` of
    :func:`dldna_lite.backprop.layer_grad_norms` (keys ``preact`` and ``weight``). Returns the axes."""
    axes = new_axes(axes, 2, figsize=(7.5, 3.2))
    for k, (label, nm) in enumerate(norms.items()):
        for ax, key in zip(axes, ("preact", "weight")):
            ax.plot(range(1, len(nm[key]) + 1), nm[key], marker=".", color=color(label, k), label=label)
    axes[0].set_ylabel(r"$\|\delta_\ell\|_F = \|\partial L / \partial z_\ell\|_F$")
    axes[1].set_ylabel(r"$\|\partial L / \partial W_\ell\|_F$")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("layer $\\ell$ (1 = input side)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return axes

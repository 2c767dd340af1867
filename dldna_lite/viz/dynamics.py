"""Chapter 05 "Training dynamics": the training monitor and the edge of stability (sized for a ~7.5 inch column:
at most three panels per row)."""
from __future__ import annotations

from .base import color, new_axes


_MONITOR_LABELS = {"loss": "minibatch loss", "grad_norm": r"gradient norm $\|g_t\|_2$",
                   "param_change": r"step $\|\Delta\theta_t\|_2$", "weight_norm": r"weight norm $\|\theta_t\|_2$",
                   "loss_improvement": r"improvement $L_{t-1}-L_t$",
                   "relative_update": r"$\|\Delta\theta_t\|/\|\theta_t\|$", "lr": r"learning rate $\eta_t$"}


def plot_monitor(monitors: dict, keys=("loss", "grad_norm", "param_change", "weight_norm", "loss_improvement"),
                 axes=None, smooth: int = 1, log=("loss", "grad_norm", "param_change", "relative_update")):
    """The monitor of :func:`dldna_lite.dynamics.monitor`, one panel per key, one line per run (``monitors`` maps a
    label, a palette name, to a monitor dict). ``smooth`` = moving-average window (steps). Without ``axes`` the
    panels fill a grid of at most three per row (unused cells hidden). Returns the used axes, a flat array."""
    import matplotlib.pyplot as plt
    import numpy as np

    if axes is None:
        ncols = min(3, len(keys))
        nrows = -(-len(keys) // ncols)
        _, grid = plt.subplots(nrows, ncols, figsize=(2.5 * ncols, 2.3 * nrows), constrained_layout=True,
                               squeeze=False)
        for ax in grid.flat[len(keys):]:
            ax.set_visible(False)
        axes = grid.flat[:len(keys)]
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
    axes[0].legend(fontsize=8)
    return axes


def plot_sharpness(runs: dict, axes=None):
    """Edge of stability: for each ``label -> run`` of :func:`dldna_lite.dynamics.gd_with_sharpness`, the sharpness
    over steps with its 2/eta line (left) and the full-batch loss (right). Returns the axes."""
    axes = new_axes(axes, 2, figsize=(7.5, 3.2))
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


def plot_schedule_run(lrs, history, *, lr_max: float, smooth: int = 10, loss_ylim=(0.2, 3)):
    """One run under a learning-rate schedule: the schedule ``lrs`` (left, y axis up to ``1.05 * lr_max`` so that
    runs of several peaks share it) and the ``smooth``-step moving average of the minibatch loss of ``history``
    (right, log scale, ``loss_ylim``), titled with its test accuracy. Returns the figure (for
    :func:`dldna_lite.widgets.interactive_figure`)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(7.5, 3), constrained_layout=True)
    ax_lr.plot(lrs, color=color("warmup_cosine"))
    ax_lr.set(ylim=(0, 1.05 * lr_max), xlabel="step", ylabel=r"learning rate $\eta_t$")
    loss = np.convolve(history["loss"], np.ones(smooth) / smooth, mode="valid")
    ax_loss.plot(np.arange(smooth, len(history["loss"]) + 1), loss, color=color("warmup_cosine"))
    ax_loss.set(ylim=loss_ylim, yscale="log", xlabel="step", ylabel=f"minibatch loss ({smooth}-step mean)")
    ax_loss.set_title(f"test accuracy: {history.describe('test_acc', '{:.3f}')}", fontsize=9)
    for ax in (ax_lr, ax_loss):
        ax.grid(alpha=0.3)
    return fig


def plot_batch_sweep(sweeps: dict, axes=None):
    """Large-batch training: test accuracy, generalization gap and sharpness against the batch size (log 2), one
    line per ``rule label -> rows`` of :func:`dldna_lite.dynamics.batch_size_sweep`; diverged runs are left out.
    Returns the axes."""
    axes = new_axes(axes, 3, figsize=(7.5, 2.6))
    for rule, rows in sweeps.items():
        ok = [r for r in rows if r["diverged_at"] is None]
        for ax, key in zip(axes, ("test_acc", "gap", "sharpness")):
            ax.plot([r["batch_size"] for r in ok], [r[key] for r in ok], marker="o", color=color(rule), label=rule)
    for ax, ylabel in zip(axes, ("test accuracy (fraction)", "test − train loss", "sharpness λ_max")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return axes

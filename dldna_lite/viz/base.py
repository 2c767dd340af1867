"""What every plot of the book shares (all chapters): one palette, and a new figure when no axis is given."""
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


def new_axes(ax=None, ncols: int = 1, *, figsize=(5, 3), projection: str | None = None):
    """``ax`` itself when given (an axis, or a sequence of axes), else a new constrained-layout figure's: one axis
    (``ncols=1``), a row of ``ncols`` axes, or one axis with ``projection`` (e.g. ``"3d"``)."""
    if ax is not None:
        return ax
    if projection is not None:
        return plt.figure(figsize=figsize, constrained_layout=True).add_subplot(projection=projection)
    _, ax = plt.subplots(1, ncols, figsize=figsize, constrained_layout=True)
    return ax


def log_norm():
    """A fresh ``LogNorm`` for log-spaced filled contours."""
    from matplotlib.colors import LogNorm

    return LogNorm()


def finish(ax, xlabel: str, ylabel: str, title: str | None = None, legend: str | None = "best"):
    """Label the axes, set the title (if any) and draw the legend at ``legend`` (``None``: no legend); returns ``ax``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    if legend is not None:
        ax.legend(fontsize=7, loc=legend)
    return ax

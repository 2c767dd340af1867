"""Loss landscapes: slices, 3D surfaces and Hessian spectra (chapter 03 "Loss landscapes I"); persistence
diagrams, wavelet energies and paths between minima (chapter 04 "Loss landscapes II")."""
from __future__ import annotations

import matplotlib.pyplot as plt

from .base import color, finish, log_norm, new_axes


def plot_landscape_1d(curves: dict, ax=None, key: str = "loss", xlabel: str = r"step along the direction $\alpha$",
                      title: str | None = None, logy: bool = False):
    """1D slices: ``curves`` maps a label (palette name) to a dict with ``alpha`` and ``key`` arrays (as returned
    by :func:`dldna_lite.landscape.scan_1d` / ``interpolate``). Returns the axis."""
    ax = new_axes(ax, figsize=(4.4, 3.2))
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
    ax = new_axes(ax, figsize=(3.8, 3.4))
    lv = np.geomspace(lo, hi, levels) if log else np.linspace(lo, hi, levels)
    ax.contourf(scan["xs"], scan["ys"], Z, levels=lv, cmap="viridis", norm=log_norm() if log else None, alpha=0.85)
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

    ax = new_axes(ax, figsize=(4.2, 3.6), projection="3d")
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

    ax = new_axes(ax, figsize=(5, 3.2))
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


def plot_persistence(dgms, ax=None, title: str | None = None, labels=("$H_0$ (basins)", "$H_1$ (loops)"),
                     value_range=None):
    """Persistence diagram: one point (birth, death) per feature, in loss units; the essential $H_0$ class (death
    ``inf``) is drawn on a dashed line at the top. ``dgms`` = ``[H0, H1, ...]`` arrays ``[n, 2]``; ``value_range``
    = (min, max) of the surface sets the axes (default: the finite values). Returns the axis."""
    import numpy as np

    ax = new_axes(ax, figsize=(3.6, 3.4))
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
    return finish(ax, "birth (loss)", "death (loss); dashed = never", title, legend="lower right")


def plot_wavelet_energy(energies: dict, ax=None):
    """Share of a surface's energy per wavelet level (coarsest detail left, finest right), one line per surface.

    ``energies`` maps a label (palette name) to a ``dldna_lite.analysis.wavelet_energy`` dict. Log scale."""
    import numpy as np

    ax = new_axes(ax, figsize=(4.4, 3.2))
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

    ax = new_axes(ax, figsize=(3.6, 3.4))
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
    ax = new_axes(ax, figsize=(4.4, 3.2))
    for k, (label, p) in enumerate(paths.items()):
        ax.plot(p["t"], p[key], marker="o", ms=3, color=color(label, k), label=label)
    ax.set_xlabel("position on the path $t$ (0 = network A, 1 = network B)")
    ax.set_ylabel({"loss": "loss (cross-entropy)", "acc": "accuracy (fraction)"}.get(key, key))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


# --- figures of the chapters' cells (issue 28: the plotting boilerplate of a cell, kept out of the notebook) --------

def plot_interpolations(lines: dict, end: str, axes=None):
    """One panel per starting point of a linear interpolation (chapter 03): ``lines`` maps a start label (``"init"``,
    ``"epoch 1"``) to ``{split: interpolate(...) dict}``; ``end`` names the final weights in the x label. Log loss
    axis, the segment ``[0, 1]`` shaded. Returns the axes."""
    axes = new_axes(axes, len(lines), figsize=(7.5, 3.0))
    for ax, (label, curves) in zip(axes, lines.items()):
        plot_landscape_1d(curves, ax=ax, xlabel=rf"$\alpha$ (0 = {label}, 1 = {end})",
                          title=f"from {label} to the final weights", logy=True)
        ax.axvspan(0, 1, color="grey", alpha=0.1)
    return axes


def plot_rescaling_slices(alphas, slices: dict, axes=None):
    """The ReLU-rescaling check of chapter 03: one panel per direction (unnormalized, filter-normalized), the slice
    of the network (``"original"``, solid) and of its rescaled twin (``"rescaled"``, dashed); ``slices[norm, label]``
    is a ``scan_1d`` dict over ``alphas``, ``norm`` in ``"none"``, ``"filter"``. Returns the axes."""
    axes = new_axes(axes, 2, figsize=(7.5, 3.0))
    titles = ("unnormalized direction", "filter-normalized direction")
    for ax, norm, title in zip(axes, ("none", "filter"), titles):
        for label, style, name in (("original", "-", "final"), ("rescaled", "--", "epoch 1")):
            ax.plot(alphas, slices[norm, label]["loss"], style, label=label, color=color(name))
        ax.set(xlabel=r"$\alpha$", ylabel="test loss (cross-entropy)", title=title, yscale="log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return axes


def plot_planes(planes: dict):
    """One column per 2D slice (``planes`` maps a name to a ``scan_2d`` dict): labelled log contours above, the
    surface in 3D (log loss) below. Returns the figure."""
    fig = plt.figure(figsize=(3.75 * len(planes), 6.4), constrained_layout=True)
    for k, (name, scan) in enumerate(planes.items()):
        plot_landscape_contour(scan, ax=fig.add_subplot(2, len(planes), k + 1), title=f"{name}: contours")
        plot_landscape_3d(scan, ax=fig.add_subplot(2, len(planes), k + 1 + len(planes), projection="3d"),
                          title=f"{name}: surface", log=True)
    return fig


def plot_eigenvector_plane(scan: dict, pair=(1, 2), axes=None):
    """The plane of two Hessian eigenvectors (chapter 03), a ``scan_2d`` dict: linear contours next to the 3D
    surface. ``pair`` numbers the eigenvectors, for the titles and axis labels (``(3, 4)``: the third and fourth);
    ``axes`` (a 2D axis and a 3D one) draws into a figure of the caller's, e.g. one column per pair, instead of a
    new figure. Returns the figure."""
    i, j = pair
    if axes is None:
        fig = plt.figure(figsize=(7.5, 3.2), constrained_layout=True)
        axes = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d")
    flat, surface = axes
    plot_landscape_contour(scan, ax=flat, log=False, title=f"eigenvectors {i}, {j}: contours",
                           xlabel=rf"$\lambda_{{{i}}}$-direction step",
                           ylabel=rf"$\lambda_{{{j}}}$-direction step")
    plot_landscape_3d(scan, ax=surface, title=f"eigenvectors {i}, {j}: surface")
    return flat.figure


def plot_curvature_history(epochs, series: dict, axes=None):
    """Curvature over the saved epochs (chapter 03): one panel per entry of ``series`` (y label -> values, e.g. the
    top eigenvalue and the Hutchinson trace), against ``epochs`` (0 = initialization). Returns the axes."""
    axes = new_axes(axes, len(series), figsize=(7.5, 2.8))
    for ax, (label, values) in zip(axes, series.items()):
        ax.plot(epochs, values, marker="o", color=color("final"))
        ax.set(xlabel="epoch (0 = initialization)", ylabel=label)
        ax.grid(alpha=0.3)
    return axes


def plot_slice_marker(scans: dict, chosen, alpha: float, name: str):
    """The slider figure of chapter 03: several 1D slices through the same weights (``scans`` maps a direction seed
    to a ``scan_1d`` dict, one ``alpha`` grid), the others light grey, ``chosen`` in the palette colour of ``name``,
    and a marker at the grid point nearest ``alpha`` whose loss and accuracy the title gives. Returns the figure."""
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter

    scan = scans[chosen]
    i = int(np.argmin(np.abs(scan["alpha"] - alpha)))
    fig, ax = plt.subplots(figsize=(5, 3.2), constrained_layout=True)
    for s, other in scans.items():
        ax.plot(scan["alpha"], other["loss"], color="lightgray" if s != chosen else color(name))
    ax.plot(scan["alpha"][i], scan["loss"][i], "o", color="black")
    ax.set(xlabel=r"$\alpha$", ylabel="test loss (cross-entropy)", yscale="log",
           title=f"{name}, direction seed {chosen}: loss {scan['loss'][i]:.3f}, accuracy {scan['acc'][i]:.3f}")
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))   # plain numbers within a decade, not 2.4x10^0
    ax.grid(alpha=0.3)
    return fig


def plot_paths_on_plane(grid, paths: dict, *, figsize, xlabel: str, ylabel: str, **kwargs):
    """A figure of optimizer paths on a surface (chapter 04's sliders): :func:`plot_trajectory` of ``grid = (X, Y,
    Z)`` and ``paths`` with ``kwargs`` (``minimum``, ``title``, ``log_levels``), the axis labels, and the legend
    outside the axis on the right. Returns the figure."""
    from .optimizers import plot_trajectory

    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    plot_trajectory(grid, paths, ax=ax, **kwargs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return fig


def plot_embeddings(panels: dict, runs: dict, axes=None):
    """Side by side, 2D embeddings of the same stacked checkpoints (chapter 04: PCA and t-SNE): ``panels`` maps a
    title to ``(points [n, 2], xlabel, ylabel)``, ``runs`` maps each run's label to its number of rows, in stacking
    order. A run is a line of dots coloured by the first word of its label; the legend is on the last axis. Returns
    the axes."""
    axes = new_axes(axes, len(panels), figsize=(7.5, 3.4))
    for ax, (title, (points, xlabel, ylabel)) in zip(axes, panels.items()):
        offset = 0
        for k, (label, n) in enumerate(runs.items()):
            ax.plot(*points[offset:offset + n].T, "-o", ms=2, lw=0.8, color=color(label.split(" ")[0], k),
                    alpha=0.5 + 0.5 * (k % 2), label=label)
            offset += n
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[-1].legend(fontsize=6)
    return axes


def plot_filled_contour(xs, ys, Z, ax=None, *, label: str, title: str | None = None, xlabel: str = r"$\alpha$",
                        ylabel: str = r"$\beta$", levels: int = 30):
    """Filled contours of a surface ``Z [Y, X]`` over the grid ``xs``, ``ys``, with a colour bar labelled ``label``.
    Returns the axis."""
    ax = new_axes(ax, figsize=(3.8, 3.4))
    image = ax.contourf(xs, ys, Z, levels=levels, cmap="viridis")
    plt.colorbar(image, ax=ax, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_loss_pictures(pictures: dict, span: float, vmax: float, axes=None):
    """Loss images side by side (chapter 04's sightseeing plane): ``pictures`` maps a title to an array ``[n, n]``
    (row 0 at the top) over the square ``[-span, span]^2``, pixel centres on the grid points, one colour scale from 0
    to ``vmax`` and one colour bar for all. Returns the axes."""
    axes = new_axes(axes, len(pictures), figsize=(7.5, 3.4))
    for ax, (title, Z) in zip(axes, pictures.items()):
        half = span / (len(Z) - 1)                                # pixel centres at the grid points
        image = ax.imshow(Z, cmap="viridis", vmin=0, vmax=vmax,
                          extent=(-span - half, span + half, -span - half, span + half))
        ax.set(title=title, xlabel="$a$ (along $u$)", ylabel="$b$ (along $v$)")
    axes[0].figure.colorbar(image, ax=axes, label="loss (cross-entropy)")
    return axes


def plot_split_slices(scans: dict, axes=None):
    """1D slices on several data splits, overlaid (chapter 03): ``scans`` maps a split (``"test"``, ``"train"``) to
    ``{(network, state): scan_1d dict}``. One panel per network (one log loss axis for all), each state (``"init"``,
    ``"final"``) in its palette colour, the first split solid, the next dashed, then dotted. Returns the axes."""
    networks = list(dict.fromkeys(name for name, _ in next(iter(scans.values()))))
    if axes is None:
        _, axes = plt.subplots(1, len(networks), figsize=(7.5, 3.0), constrained_layout=True, sharey=True,
                               squeeze=False)
        axes = axes[0]
    for ax, name in zip(axes, networks):
        for (split, curves), style in zip(scans.items(), ("-", "--", ":")):
            for state, scan in ((s, c) for (n, s), c in curves.items() if n == name):
                ax.plot(scan["alpha"], scan["loss"], style, color=color(state), label=f"{state}, {split}")
        ax.set(xlabel=r"step along the direction $\alpha$", title=name, yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("loss (cross-entropy)")
    return axes

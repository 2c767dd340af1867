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

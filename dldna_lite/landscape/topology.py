"""How rough is a surface, how many valleys has it: wavelets and persistent homology of a gridded loss (chapter 04).

* **Multi-scale** -- :func:`wavelet_decompose`, :func:`wavelet_energy`: a 2D discrete wavelet decomposition
  (PyWavelets) and the energy per scale.
* **Topology** -- :func:`sublevel_persistence`: persistence diagrams of the sublevel sets of a gridded surface
  (ripser on the lower-star filtration of the 8-neighbour grid); :func:`count_minima`, :func:`basins` (significant
  basins and loops of a surface), :func:`diagram_distance`.

Surfaces are numpy arrays ``Z [h, w]``, e.g. the ``"loss"`` of :func:`dldna_lite.landscape.scan_2d`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["wavelet_decompose", "wavelet_energy", "sublevel_persistence", "count_minima", "basins", "diagram_distance"]


# ------------------------------------------------------------------------------------------------ wavelets
def wavelet_decompose(Z, wavelet: str = "haar", level: int | None = None):
    """``pywt.wavedec2`` of ``Z`` with periodic extension: ``[cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)]``.

    Periodization keeps the transform square (as many coefficients as samples), hence orthogonal for orthogonal
    wavelets (Haar, Daubechies, Symlets, Coiflets).
    """
    import pywt

    if wavelet not in pywt.wavelist(kind="discrete"):
        raise ValueError(f"unknown discrete wavelet {wavelet!r}; choose one of e.g. haar, db2, db4, sym4, coif1")
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2D, got shape {Z.shape}")
    return pywt.wavedec2(Z, wavelet, mode="periodization", level=level)


def wavelet_energy(Z, wavelet: str = "haar", level: int | None = None, center: bool = False) -> dict:
    """Energy ``sum c^2`` of the 2D wavelet coefficients of ``Z`` per scale.

    Returns ``dict(approx=float, detail=[E_L, ..., E_1], total=float)``: ``detail[0]`` is the coarsest detail level
    ``L`` and ``detail[-1]`` the finest (level 1, grid-scale roughness). For an orthogonal wavelet
    ``approx + sum(detail) == total == sum(Z ** 2)`` (Parseval). ``center`` subtracts the mean of ``Z`` first.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if center:
        Z = Z - Z.mean()
    coeffs = wavelet_decompose(Z, wavelet, level)
    detail = [float(sum(np.sum(c ** 2) for c in band)) for band in coeffs[1:]]
    return dict(approx=float(np.sum(coeffs[0] ** 2)), detail=detail, total=float(np.sum(Z ** 2)))


# ------------------------------------------------------------------------------------------------ topology
def _grid_edges(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(h * w).reshape(h, w)
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]),          # right, down
             (idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])]    # the two diagonals
    return (np.concatenate([a.ravel() for a, _ in pairs]), np.concatenate([b.ravel() for _, b in pairs]))


def sublevel_persistence(Z, maxdim: int = 1) -> list[np.ndarray]:
    """Persistence diagrams of the sublevel sets ``{Z <= c}`` of a gridded surface ``Z [h, w]``.

    The grid is the flag complex of its 8-neighbour graph (each unit square is filled), filtered by the lower-star
    rule: a vertex enters at its value, an edge at the larger of its two values. Computed by ripser on that sparse
    filtration. Returns ``[H0, H1, ...]`` (up to ``maxdim``), arrays ``[n, 2]`` of (birth, death) in loss units;
    the component of the global minimum never dies (death ``inf``).

    H0 points are basins: one is born at every local minimum and dies when its basin merges with a deeper one
    (at the saddle between them). H1 points are loops of the sublevel set: a ring of low values around a bump,
    born when the ring closes and filled when the level reaches the bump's top.
    """
    from ripser import ripser
    from scipy.sparse import coo_matrix

    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or min(Z.shape) < 2:
        raise ValueError(f"Z must be a 2D grid of at least 2x2, got shape {Z.shape}")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z has non-finite values; clip or mask them first")
    h, w = Z.shape
    shift = Z.min() - 1.0                      # ripser keeps strictly positive entries: work with values >= 1
    f = Z.ravel() - shift
    I, J = _grid_edges(h, w)
    n = h * w
    rows = np.concatenate([np.arange(n), I])
    cols = np.concatenate([np.arange(n), J])
    vals = np.concatenate([f, np.maximum(f[I], f[J])])
    D = coo_matrix((vals, (rows, cols)), shape=(n, n))
    dgms = ripser(D, maxdim=maxdim, distance_matrix=True)["dgms"]
    return [d + shift for d in dgms]


def count_minima(h0: np.ndarray, min_persistence: float) -> int:
    """Number of H0 points living longer than ``min_persistence`` (the essential class counts): significant minima."""
    life = h0[:, 1] - h0[:, 0]
    return int(np.sum(life > min_persistence))


def basins(Z, *, fraction: float = 0.05) -> dict:
    """Persistence diagrams of the surface ``Z`` and how many basins (H0) and loops (H1) are *significant*: live
    longer than ``fraction`` of the surface's range ``max Z - min Z``.

    Returns ``dict(h0, h1, minima, loops)``; ``len(h0)`` is the number of local minima on the grid.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1) (a share of the surface's range), got {fraction!r}")
    h0, h1 = sublevel_persistence(Z)
    threshold = fraction * np.ptp(np.asarray(Z, dtype=np.float64))
    return dict(h0=h0, h1=h1, minima=count_minima(h0, threshold), loops=int(np.sum(h1[:, 1] - h1[:, 0] > threshold)))


def diagram_distance(dgm_a: np.ndarray, dgm_b: np.ndarray) -> float:
    """Bottleneck distance (persim) between two diagrams, ignoring points at infinity."""
    from persim import bottleneck

    finite = [d[np.isfinite(d[:, 1])] if len(d) else np.zeros((0, 2)) for d in (dgm_a, dgm_b)]
    return float(bottleneck(*finite))



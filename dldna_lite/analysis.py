"""Loss landscapes II: trajectories, multi-scale and topological views, mode connectivity.

Five small toolkits, each a handful of functions named for what they return:

* **Trajectories** -- :func:`record_trajectory` keeps flattened weights ``[T, P]`` during :func:`dldna_lite.fit`;
  :func:`trajectory_pca` projects them on their top principal directions (scikit-learn PCA, as in Li et al. 2018 §7);
  :func:`tsne_embedding` embeds checkpoints with t-SNE; :func:`plane_surface` scans the loss on a plane of flat
  directions with :func:`dldna_lite.landscape.scan_2d`; :func:`random_plane`, and :class:`ResidualMLP` (with or
  without skip connections) for the comparison of Li et al. (2018).
* **Toy surfaces** -- :class:`GaussianSurface` (an offset minus a sum of Gaussian wells, the source's fitted toy),
  :func:`fit_gaussian_surface` (SciPy least squares on a scanned grid) and :func:`optimizer_path` (any
  ``torch.optim``-style optimizer walking on it).
* **Multi-scale** -- :func:`wavelet_energy`: a 2D discrete wavelet decomposition (PyWavelets) and the energy per scale.
* **Topology** -- :func:`sublevel_persistence`: persistence diagrams of the sublevel sets of a gridded surface
  (ripser on the lower-star filtration of the 8-neighbour grid); :func:`count_minima`, :func:`diagram_distance`.
* **Mode connectivity** -- :func:`bezier_point`, :func:`train_bezier` (Garipov et al. 2018, with
  ``torch.func.functional_call``), :func:`path_metrics` and :func:`barrier`.

Flat vectors: a model's trainable parameters concatenated in ``model.parameters()`` order, shape ``[P]``.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from .data import batches
from .train import History
from .train import train as _fit

# ----------------------------------------------------------------------------------------------------------------
# flat vectors
# ----------------------------------------------------------------------------------------------------------------


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def flat_params(model: nn.Module) -> torch.Tensor:
    """The trainable parameters of ``model`` as one detached vector ``[P]``."""
    return torch.cat([p.detach().reshape(-1) for _, p in _trainable(model)]).clone()


def unflatten(model: nn.Module, vector: torch.Tensor) -> list[torch.Tensor]:
    """Split a flat vector ``[P]`` into tensors shaped like the trainable parameters of ``model`` (a direction)."""
    shapes = [p.shape for _, p in _trainable(model)]
    sizes = [int(np.prod(s)) if len(s) else 1 for s in shapes]
    if vector.numel() != sum(sizes):
        raise ValueError(f"vector has {vector.numel()} entries but the model has {sum(sizes)} trainable parameters")
    return [chunk.reshape(s) for chunk, s in zip(torch.split(vector.reshape(-1), sizes), shapes)]


def _param_dict(model: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    return {n: t for (n, _), t in zip(_trainable(model), unflatten(model, vector))}


def _loss_acc(model: nn.Module, vector: torch.Tensor, loss_fn: Callable, data) -> tuple[float, float]:
    X, y = data
    out = functional_call(model, _param_dict(model, vector), (X,))
    return loss_fn(out, y).item(), (out.argmax(1) == y).float().mean().item()


# ----------------------------------------------------------------------------------------------------------------
# trajectories
# ----------------------------------------------------------------------------------------------------------------


def record_trajectory(model: nn.Module, optimizer: torch.optim.Optimizer, train_data, epochs: int, every: int = 1,
                      **fit_kwargs) -> tuple[torch.Tensor, History]:
    """Train with :func:`dldna_lite.fit` and keep the flat weights every ``every`` optimizer steps.

    Returns ``(W, history)`` with ``W`` of shape ``[T, P]``: row 0 is the initial point, then one row per ``every``
    steps (and the final point if it was not recorded). ``fit_kwargs`` go to :func:`dldna_lite.fit`.
    """
    if not isinstance(every, int) or every <= 0:
        raise ValueError(f"every must be a positive int, got {every!r}")
    points, counter = [flat_params(model)], [0]

    def keep(_opt, _args, _kwargs):
        counter[0] += 1
        if counter[0] % every == 0:
            points.append(flat_params(model))

    handle = optimizer.register_step_post_hook(keep)
    try:
        history = _fit(model, optimizer, train_data, epochs, **fit_kwargs)
    finally:
        handle.remove()
    if counter[0] % every:
        points.append(flat_params(model))
    return torch.stack(points), history


def trajectory_pca(trajectories: dict[str, torch.Tensor] | torch.Tensor, origin: torch.Tensor | None = None,
                   n_components: int = 2) -> dict:
    """PCA of checkpoints relative to ``origin`` (Li et al. 2018 §7), with scikit-learn.

    ``trajectories``: one ``[T, P]`` tensor or a dict of them (fitted jointly, e.g. several optimizers from one
    init). ``origin`` ``[P]`` defaults to the last point of the (first) trajectory. The PCA is fitted on the rows of
    ``W - origin`` (scikit-learn centres them); the returned coordinates are ``(W - origin) @ directions.T``, so the
    origin sits at ``(0, 0)``. Returns ``dict(directions=[k, P] tensor (orthonormal rows), coords={name: [T, k]},
    explained_variance_ratio=[k] array)``.
    """
    from sklearn.decomposition import PCA

    single = isinstance(trajectories, torch.Tensor)
    trajs = {"path": trajectories} if single else dict(trajectories)
    if not trajs:
        raise ValueError("give at least one trajectory")
    first = next(iter(trajs.values()))
    origin = first[-1] if origin is None else origin
    stacked = torch.cat([w - origin for w in trajs.values()]).double().numpy()
    if n_components > min(stacked.shape):
        raise ValueError(f"n_components={n_components} exceeds min(#points, P) = {min(stacked.shape)}")
    # randomized SVD with 10 power iterations: exact to ~1e-10 on trajectories (fast-decaying spectra), 3-10x faster
    # than the full SVD of a [T, P] matrix with P ~ 1e5
    pca = PCA(n_components=n_components, svd_solver="randomized", iterated_power=10, n_oversamples=20,
              random_state=0).fit(stacked)
    directions = torch.from_numpy(pca.components_).to(first.dtype)
    coords = {name: ((w - origin) @ directions.T).numpy() for name, w in trajs.items()}
    return dict(directions=directions, coords=coords["path"] if single else coords,
                explained_variance_ratio=pca.explained_variance_ratio_.copy())


def tsne_embedding(points: torch.Tensor | np.ndarray, perplexity: float = 5.0, seed: int = 0) -> np.ndarray:
    """2D t-SNE embedding ``[T, 2]`` of checkpoints ``[T, P]`` (scikit-learn). Distances in it are not metric."""
    from sklearn.manifold import TSNE

    points = np.asarray(points, dtype=np.float64)
    if not 0 < perplexity < len(points):
        raise ValueError(f"perplexity must be in (0, {len(points)}) for {len(points)} points, got {perplexity}")
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def plane_surface(model: nn.Module, origin: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, xs, ys,
                  loss_fn: Callable, data) -> dict:
    """Loss and accuracy on the plane ``origin + x d1 + y d2`` (flat vectors ``[P]``), via ``landscape.scan_2d``.

    Returns ``dict(loss=[len(ys), len(xs)], acc=[len(ys), len(xs)])`` (row i is ``ys[i]``); ``model`` is unchanged.
    """
    from .landscape import scan_2d

    probe = copy.deepcopy(model)
    with torch.no_grad():
        for p, t in zip([p for _, p in _trainable(probe)], unflatten(probe, origin)):
            p.copy_(t)
    full = _full_direction(probe)
    return scan_2d(probe, full(d1), full(d2), list(xs), list(ys), loss_fn, data)


def random_plane(model: nn.Module, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two filter-normalised random directions (Li et al. 2018) as flat vectors ``[P]``, biases set to zero:
    ``landscape.random_direction(model, norm="filter", ignore_1d=True)`` twice, flattened."""
    from .landscape import random_direction

    pairs = []
    for _ in range(2):
        d = random_direction(model, norm="filter", ignore_1d=True, generator=generator)
        pairs.append(torch.cat([t.reshape(-1) for t, p in zip(d, model.parameters()) if p.requires_grad]))
    return pairs[0], pairs[1]


def _full_direction(model: nn.Module) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """Map a flat vector over trainable parameters to a direction over *all* ``model.parameters()``
    (zeros for frozen ones)."""
    def full(vector):
        parts = iter(unflatten(model, vector))
        return [next(parts) if p.requires_grad else torch.zeros_like(p) for p in model.parameters()]
    return full


class ResidualMLP(nn.Module):
    """``784 -> width``, then ``depth`` blocks ``h <- h + relu(W h + b)`` (``skip=True``) or ``h <- relu(W h + b)``,
    then ``width -> 10``. The pair with and without skips compares loss surfaces as Li et al. (2018) do for ResNets.
    Input ``[N, 784]`` or ``[N, 1, 28, 28]``; output logits ``[N, 10]``.
    """

    def __init__(self, width: int = 64, depth: int = 8, skip: bool = True, in_features: int = 784,
                 num_classes: int = 10):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"width and depth must be positive, got width={width}, depth={depth}")
        self.skip = skip
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x.flatten(1)))
        for block in self.blocks:
            h = h + torch.relu(block(h)) if self.skip else torch.relu(block(h))
        return self.out(h)


# ----------------------------------------------------------------------------------------------------------------
# toy surfaces
# ----------------------------------------------------------------------------------------------------------------


class GaussianSurface:
    """``f(x, y) = offset - sum_k a_k exp(-(x - mx_k)^2 / (2 sx_k^2) - (y - my_k)^2 / (2 sy_k^2))``.

    ``params``: array ``[K, 5]`` of ``(a, mx, my, sx, sy)`` rows. Call with torch tensors ``x, y`` (any shape, same
    shape) for a differentiable value, or use :meth:`grid` for numpy arrays.
    """

    def __init__(self, params, offset: float):
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        if params.shape[1] != 5:
            raise ValueError(f"params must have rows (a, mx, my, sx, sy), got shape {params.shape}")
        self.params, self.offset = params, float(offset)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = torch.as_tensor(self.params, dtype=x.dtype)
        a, mx, my, sx, sy = (p[:, i].reshape(-1, *[1] * x.dim()) for i in range(5))
        wells = a * torch.exp(-(x - mx) ** 2 / (2 * sx ** 2) - (y - my) ** 2 / (2 * sy ** 2))
        return self.offset - wells.sum(0)

    def grid(self, xs, ys) -> np.ndarray:
        """Values ``[len(ys), len(xs)]`` on a grid (row i is ``ys[i]``)."""
        Y, X = torch.meshgrid(torch.as_tensor(ys, dtype=torch.float64), torch.as_tensor(xs, dtype=torch.float64),
                              indexing="ij")
        return self(X, Y).numpy()


def _gaussians_flat(xy, offset, *flat):
    x, y = xy
    p = np.asarray(flat).reshape(-1, 5)
    z = np.full_like(x, offset)
    for a, mx, my, sx, sy in p:
        z -= a * np.exp(-(x - mx) ** 2 / (2 * sx ** 2) - (y - my) ** 2 / (2 * sy ** 2))
    return z


def fit_gaussian_surface(xs, ys, Z, n_wells: int = 1) -> tuple[GaussianSurface, float]:
    """Least-squares fit (``scipy.optimize.curve_fit``) of a :class:`GaussianSurface` with ``n_wells`` wells to
    ``Z [len(ys), len(xs)]``. Returns ``(surface, rmse)``.

    Starting guess: one well at each of the ``n_wells`` deepest local minima of the grid (depth ``max - min``,
    width a quarter of the window). Bounds keep amplitudes non-negative, widths between 1/1000 and twice the window
    and centres within one window of it, so that a bowl is not fitted as an infinitely wide, infinitely deep well.
    """
    from scipy.ndimage import minimum_filter
    from scipy.optimize import curve_fit

    xs, ys, Z = np.asarray(xs, float), np.asarray(ys, float), np.asarray(Z, float)
    if Z.shape != (len(ys), len(xs)):
        raise ValueError(f"Z must have shape (len(ys), len(xs)) = {(len(ys), len(xs))}, got {Z.shape}")
    if not isinstance(n_wells, int) or n_wells < 1:
        raise ValueError(f"n_wells must be a positive int, got {n_wells!r}")
    Y, X = np.meshgrid(ys, xs, indexing="ij")
    local = np.flatnonzero(Z == minimum_filter(Z, size=3, mode="nearest"))
    local = local[np.argsort(Z.flat[local])]
    order = np.concatenate([local, np.argsort(Z, axis=None)])
    depth, lx, ly = Z.max() - Z.min(), xs[-1] - xs[0], ys[-1] - ys[0]
    p0, lower, upper = [Z.max()], [-np.inf], [np.inf]
    for k in range(n_wells):
        i = order[k]
        p0 += [depth / n_wells, X.flat[i], Y.flat[i], lx / 4, ly / 4]
        lower += [0.0, xs[0] - lx, ys[0] - ly, 1e-3 * lx, 1e-3 * ly]
        upper += [np.inf, xs[-1] + lx, ys[-1] + ly, 2 * lx, 2 * ly]
    popt, _ = curve_fit(_gaussians_flat, (X.ravel(), Y.ravel()), Z.ravel(), p0=p0, bounds=(lower, upper),
                        maxfev=20000)
    surface = GaussianSurface(np.asarray(popt[1:]).reshape(-1, 5), popt[0])
    rmse = float(np.sqrt(np.mean((surface.grid(xs, ys) - Z) ** 2)))
    return surface, rmse


def optimizer_path(surface: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], make_optimizer: Callable,
                   start: Sequence[float], steps: int) -> np.ndarray:
    """Positions ``[steps + 1, 2]`` of an optimizer minimising ``surface(x, y)`` from ``start``.

    ``make_optimizer(params) -> Optimizer`` (e.g. ``lambda p: Adam(p, lr=0.1)``). A non-finite position stops the path
    early (the returned array is then shorter).
    """
    xy = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([xy])
    path = [xy.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        surface(xy[0], xy[1]).backward()
        opt.step()
        if not torch.isfinite(xy).all():
            break
        path.append(xy.detach().clone())
    return torch.stack(path).numpy()


# ----------------------------------------------------------------------------------------------------------------
# multi-scale: wavelets
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# topology: persistence of sublevel sets
# ----------------------------------------------------------------------------------------------------------------


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


def diagram_distance(dgm_a: np.ndarray, dgm_b: np.ndarray) -> float:
    """Bottleneck distance (persim) between two diagrams, ignoring points at infinity."""
    from persim import bottleneck

    finite = [d[np.isfinite(d[:, 1])] if len(d) else np.zeros((0, 2)) for d in (dgm_a, dgm_b)]
    return float(bottleneck(*finite))


# ----------------------------------------------------------------------------------------------------------------
# mode connectivity
# ----------------------------------------------------------------------------------------------------------------


def bezier_point(w0: torch.Tensor, theta: torch.Tensor, w1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Quadratic Bezier curve ``(1-t)^2 w0 + 2t(1-t) theta + t^2 w1`` (Garipov et al. 2018, eq. 3); ``[P]``.

    With ``theta = (w0 + w1) / 2`` it is the straight segment ``(1-t) w0 + t w1``.
    """
    return (1 - t) ** 2 * w0 + 2 * t * (1 - t) * theta + t ** 2 * w1


def path_metrics(model: nn.Module, w0: torch.Tensor, theta: torch.Tensor, w1: torch.Tensor, ts, loss_fn: Callable,
                 data) -> dict:
    """Loss and accuracy of ``model``'s architecture at ``bezier_point(w0, theta, w1, t)`` for each ``t`` in ``ts``.

    ``data = (X, y)`` is one full batch. Returns ``dict(t=[n], loss=[n], acc=[n])`` numpy arrays; ``model`` unchanged.
    """
    losses, accs = [], []
    with torch.no_grad():
        for t in ts:
            loss, acc = _loss_acc(model, bezier_point(w0, theta, w1, float(t)), loss_fn, data)
            losses.append(loss)
            accs.append(acc)
    return dict(t=np.asarray(ts, dtype=float), loss=np.asarray(losses), acc=np.asarray(accs))


def train_bezier(model: nn.Module, w0: torch.Tensor, w1: torch.Tensor, train_data, epochs: int, lr: float = 0.05,
                 momentum: float = 0.9, batch_size: int = 128, loss_fn: Callable | None = None, seed: int = 0,
                 optimizer_cls=None) -> tuple[torch.Tensor, list[float]]:
    """Train the control point ``theta`` of a quadratic Bezier curve between fixed endpoints ``w0, w1`` ``[P]``.

    Minimises ``E_{t ~ U(0,1)} L(bezier_point(w0, theta, w1, t))`` with SGD (momentum), one ``t`` per minibatch,
    evaluating ``model``'s architecture with ``torch.func.functional_call``. ``theta`` starts at the midpoint
    (the straight line). ``optimizer_cls`` defaults to :class:`dldna_lite.optim.SGD`.
    Returns ``(theta, losses per step)``; ``model`` is unchanged.
    """
    if optimizer_cls is None:
        from .optim import SGD as optimizer_cls
    loss_fn = loss_fn or F.cross_entropy
    theta = ((w0 + w1) / 2).clone().requires_grad_(True)
    opt = optimizer_cls([theta], lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    X, y = train_data
    losses = []
    for _ in range(epochs):
        for xb, yb in batches(X, y, batch_size, shuffle=True, generator=generator):
            t = torch.rand((), generator=generator).item()
            out = functional_call(model, _param_dict(model, bezier_point(w0, theta, w1, t)), (xb,))
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return theta.detach(), losses


def barrier(losses, ts=None) -> float:
    """Loss barrier along a path: ``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` (Frankle et al. 2020).

    ``losses`` at increasing ``ts`` in [0, 1] (default: evenly spaced); first and last entries are the endpoints.
    It is 0 when the path is never above the chord between its endpoint losses, and it is what a straight line
    between two minima of a convex loss would give.
    """
    losses = np.asarray(losses, dtype=float)
    ts = np.linspace(0.0, 1.0, len(losses)) if ts is None else np.asarray(ts, dtype=float)
    if len(ts) != len(losses) or len(losses) < 2:
        raise ValueError(f"need >= 2 losses and as many ts, got {len(losses)} losses and {len(ts)} ts")
    chord = (1 - ts) * losses[0] + ts * losses[-1]
    return float(np.max(losses - chord))
